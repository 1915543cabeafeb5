// checkout: places an order: reserves stock (inventory), quotes shipping (shipping; a
// default rate when it fails), then charges the card (payments).
let seq = 0;

export default {
  name: 'checkout',
  version: '2.3.1',
  badVersion: '2.4.0',
  peers: ['inventory', 'shipping', 'payments'],
  routes: {
    async 'POST /orders'(c) {
      const order = `ord-${process.pid}-${++seq}`;
      const items = Array.isArray(c.json.items) ? c.json.items : ['sku-101'];
      const reserve = await c.call('inventory', 'POST', '/reserve', { order, items });
      if (reserve.status >= 500) {
        c.log.error(`order ${order}: stock reservation failed: ${reserve.reason || `HTTP ${reserve.status}`}`);
        return { status: 502, body: { error: 'inventory unavailable' }, error: 'inventory unavailable' };
      }
      if (reserve.status === 409) {
        c.log.info(`order ${order}: out of stock`);
        return { status: 409, body: { error: 'out of stock' } };
      }
      let rate = 4.99;
      const quote = await c.call('shipping', 'GET', `/quote?items=${items.length}`);
      if (quote.status === 200) rate = quote.body.rate;
      else c.log.warn(`order ${order}: shipping quote failed (${quote.reason || `HTTP ${quote.status}`}), default rate used`);
      const amount = Math.round((items.length * 19.9 + rate) * 100) / 100;
      const charge = await c.call('payments', 'POST', '/charge', { order, amount, currency: 'EUR' });
      if (charge.status >= 500) {
        c.log.error(`order ${order}: payment failed: ${charge.reason || `HTTP ${charge.status}`}`);
        return { status: 502, body: { error: 'payment failed' }, error: 'payment failed' };
      }
      if (charge.status !== 200) {
        c.log.warn(`order ${order}: card declined`);
        return { status: 402, body: { error: 'card declined' } };
      }
      c.log.info(`order ${order} placed: ${items.length} items, ${amount} EUR`);
      return { status: 200, body: { order, amount } };
    },
  },
  async slow(c, ms) {
    c.log.warn('pricing cache cold: recomputing prices for every item');
    await c.sleep(ms);
  },
  fail() {
    throw new Error('order table locked: deadlock detected while inserting the order');
  },
  failBadVersion() {
    throw new Error('coupon service client not configured: missing COUPONS_URL in 2.4.0');
  },
};
