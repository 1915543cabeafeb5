// The demo's use of Cairn's registry through the real npm `nacos` client (Nacos v1 HTTP API):
// each service registers an ephemeral instance (heartbeats every 5 s, metadata carrying its
// version), finds its peers there when calls do not go through the gateway, and listens to
// the fault switches, a configuration item of the configuration center that Cairn's
// POST /api/v1/demo/faults writes (docs/demo.md).
import nacos from 'nacos';

const { NacosNamingClient, NacosConfigClient } = nacos;

export const FAULTS_DATA_ID = 'cairn-demo-faults';
export const FAULTS_GROUP = 'CAIRN_DEMO';

const quiet = {
  debug() {}, info() {},
  warn(...a) { process.stderr.write(`[nacos warn] ${a.map(String).join(' ')}\n`); },
  error(...a) { process.stderr.write(`[nacos error] ${a.map(String).join(' ')}\n`); },
};

// The fault document: {"SERVICE": {"fault": "error"|"latency"|"bad-version", ...}}. Anything
// malformed reads as "no fault" (and is reported once on stderr).
export function parseFaults(text) {
  if (!text) return {};
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
  } catch (e) {
    process.stderr.write(`demo: ignoring a fault document that is not JSON: ${e.message}\n`);
    return {};
  }
}

export class Registry {
  // opts: {server: "HOST:PORT", username, password, cacheDir}
  constructor(opts) {
    this.opts = opts;
    const auth = opts.username ? { username: opts.username, password: opts.password } : {};
    this.naming = new NacosNamingClient({ logger: quiet, serverList: opts.server, namespace: 'public', ...auth });
    this.config = null;
    this.instances = new Map(); // service -> hosts, kept current by subscriptions
    this.registered = null;
  }

  async ready() {
    await this.naming.ready();
  }

  async register(service, port, metadata) {
    const inst = { ip: '127.0.0.1', port, metadata, ephemeral: true, clusterName: 'DEFAULT' };
    await this.naming.registerInstance(service, inst, 'DEFAULT_GROUP');
    this.registered = { service, inst };
  }

  async deregister() {
    if (!this.registered) return;
    const { service, inst } = this.registered;
    this.registered = null;
    await this.naming.deregisterInstance(service, inst, 'DEFAULT_GROUP');
  }

  // Subscribes to a peer's instances so that pick() answers from memory.
  watch(service) {
    if (this.instances.has(service)) return;
    this.instances.set(service, []);
    this.naming.subscribe({ serviceName: service, groupName: 'DEFAULT_GROUP' }, (hosts) => {
      this.instances.set(service, hosts.filter((h) => h.healthy !== false && h.enabled !== false));
    });
  }

  // A random healthy instance of service, or null.
  pick(service) {
    const hosts = this.instances.get(service) || [];
    return hosts.length ? hosts[Math.floor(Math.random() * hosts.length)] : null;
  }

  // Calls cb(faults) now and on every change of the fault document. Once: service.mjs
  // calls it again when it retries a failed registration, and a second client would poll too.
  onFaults(cb) {
    if (this.config) return;
    const auth = this.opts.username ? { username: this.opts.username, password: this.opts.password } : {};
    this.config = new NacosConfigClient({
      serverAddr: this.opts.server, namespace: '', cacheDir: this.opts.cacheDir, requestTimeout: 5000, ...auth,
    });
    this.config.on('error', (err) => quiet.error(err && err.message));
    this.config.subscribe({ dataId: FAULTS_DATA_ID, group: FAULTS_GROUP }, (content) => cb(parseFaults(content)));
  }

  async close() {
    try { await this.deregister(); } catch (e) { quiet.warn(`deregister failed: ${e.message}`); }
    if (this.config) this.config.close();
    await this.naming.close();
  }
}
