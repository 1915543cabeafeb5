// inventory: stock levels and reservations, backed by a (simulated) database.
export default {
  name: 'inventory',
  version: '3.0.4',
  badVersion: '3.1.0',
  peers: [],
  routes: {
    async 'GET /stock'(c) {
      const skus = (c.url.searchParams.get('skus') || '').split(',').filter(Boolean);
      await c.sleep(2 + Math.random() * 6); // SELECT sku, qty FROM stock WHERE sku IN (...)
      const stock = Object.fromEntries(skus.map((s) => [s, Math.random() < 0.9 ? 1 + Math.floor(Math.random() * 40) : 0]));
      return { status: 200, body: { stock } };
    },
    async 'POST /reserve'(c) {
      await c.sleep(3 + Math.random() * 8); // UPDATE stock SET qty = qty - 1 ...
      if (Math.random() < 0.02) {
        c.log.info(`order ${c.json.order}: ${c.json.items[0]} sold out`);
        return { status: 409, body: { error: 'out of stock' } };
      }
      c.log.info(`order ${c.json.order}: reserved ${c.json.items.length} items`);
      return { status: 200, body: { reserved: c.json.items.length } };
    },
  },
  async slow(c, ms) {
    c.log.warn('stock query fell back to a sequential scan (index rebuilding)');
    await c.sleep(ms);
  },
  fail() {
    throw new Error('db pool exhausted: 0 of 16 connections free (db-inventory:5432)');
  },
  failBadVersion() {
    throw new Error('column "reserved_until" does not exist (migration 42 not applied)');
  },
};
