// payments: charges cards through an external processor (simulated). About 3% of cards are
// declined (a 402, not a failure of the service).
export default {
  name: 'payments',
  version: '1.8.0',
  badVersion: '1.9.0',
  peers: [],
  routes: {
    async 'POST /charge'(c) {
      await c.sleep(10 + Math.random() * 25); // the processor's round trip
      if (Math.random() < 0.03) {
        c.log.warn(`order ${c.json.order}: card declined by the issuer`);
        return { status: 402, body: { error: 'card declined' } };
      }
      c.log.info(`order ${c.json.order}: charged ${c.json.amount} ${c.json.currency}`);
      return { status: 200, body: { charged: c.json.amount } };
    },
  },
  async slow(c, ms) {
    c.log.warn('fraud check took the slow path: manual rules evaluated');
    await c.sleep(ms);
  },
  fail() {
    throw new Error('payment processor timeout: psp-gateway did not answer within 2000 ms');
  },
  failBadVersion() {
    throw new Error('schema mismatch: field currency is required by the 1.9 API');
  },
};
