// shipping: delivery quotes from a carrier API (simulated) that rate-limits about 2% of
// calls: steady background errors that checkout absorbs with a default rate.
export default {
  name: 'shipping',
  version: '1.2.0',
  badVersion: '1.3.0',
  peers: [],
  routes: {
    async 'GET /quote'(c) {
      await c.sleep(5 + Math.random() * 10);
      if (Math.random() < 0.02) {
        throw new Error('carrier API rate limited: 429 from api.carrier.example');
      }
      const items = Number(c.url.searchParams.get('items') || 1);
      return { status: 200, body: { rate: Math.round((3.5 + items * 0.75) * 100) / 100 } };
    },
  },
  async slow(c, ms) {
    c.log.warn('carrier API slow: retrying the quote');
    await c.sleep(ms);
  },
  fail() {
    throw new Error('carrier credentials expired: 401 from api.carrier.example');
  },
  failBadVersion() {
    throw new Error('unknown zone "EU-WEST" in the 1.3 rate table');
  },
};
