// recommendations: products a user may like, filtered to what is in stock.
const CATALOGUE = ['sku-101', 'sku-102', 'sku-205', 'sku-311', 'sku-412', 'sku-518', 'sku-620', 'sku-777'];

export default {
  name: 'recommendations',
  version: '0.9.3',
  badVersion: '0.10.0',
  peers: ['inventory'],
  routes: {
    async 'GET /recommendations'(c) {
      const user = c.url.searchParams.get('user') || 'anonymous';
      const picks = CATALOGUE.filter(() => Math.random() < 0.5).slice(0, 4);
      await c.sleep(4 + Math.random() * 8); // model scoring
      const stock = await c.call('inventory', 'GET', `/stock?skus=${picks.join(',')}`);
      if (stock.status !== 200) {
        c.log.warn(`stock check failed (${stock.reason || `HTTP ${stock.status}`}): recommending without it`);
        return { status: 200, body: { items: picks, filtered: false } };
      }
      const items = picks.filter((s) => stock.body.stock[s] > 0);
      c.log.info(`${items.length} recommendations for ${user}`);
      return { status: 200, body: { items, filtered: true } };
    },
  },
  async slow(c, ms) {
    c.log.warn('embedding index rebuilt on the request path');
    await c.sleep(ms);
  },
  fail() {
    throw new Error('model server returned an empty ranking for a non-empty catalogue');
  },
  failBadVersion() {
    throw new Error('feature vector length 128 does not match the model (expected 256)');
  },
};
