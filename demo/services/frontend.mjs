// frontend: the shop's web tier. GET /products shows the catalogue with recommendations
// (served without them when recommendations fails); POST /checkout places an order through
// checkout.
export default {
  name: 'frontend',
  version: '1.12.0',
  badVersion: '1.13.0',
  peers: ['recommendations', 'checkout'],
  routes: {
    async 'GET /products'(c) {
      const user = c.url.searchParams.get('user') || 'anonymous';
      const recs = await c.call('recommendations', 'GET', `/recommendations?user=${encodeURIComponent(user)}`);
      if (recs.status !== 200) {
        c.log.warn(`recommendations unavailable (${recs.reason || `HTTP ${recs.status}`}): page served without them`);
        return { status: 200, body: { products: 24, recommendations: [] } };
      }
      c.log.info(`catalogue page for ${user} with ${recs.body.items.length} recommendations`);
      return { status: 200, body: { products: 24, recommendations: recs.body.items } };
    },
    async 'POST /checkout'(c) {
      const order = await c.call('checkout', 'POST', '/orders', { user: c.json.user, items: c.json.items });
      if (order.status >= 500) {
        c.log.error(`checkout failed for ${c.json.user}: ${order.reason || `HTTP ${order.status}`}`);
        return { status: 502, body: { error: 'checkout failed' }, error: `checkout failed: ${order.reason || order.status}` };
      }
      if (order.status !== 200) return { status: order.status, body: order.body };
      c.log.info(`order ${order.body.order} confirmed for ${c.json.user}`);
      return { status: 200, body: order.body };
    },
  },
  async slow(c, ms) {
    c.log.warn(`template cache miss: rendering the page from scratch`);
    await c.sleep(ms);
  },
  fail() {
    throw new Error('session store unreachable: redis-sessions:6379 connection reset');
  },
  failBadVersion() {
    throw new Error('TypeError: cannot read properties of undefined (reading \'currency\') in cart.render');
  },
};
