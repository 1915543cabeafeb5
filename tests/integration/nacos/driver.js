// The real npm `nacos` client (2.x) driven line by line for tests/integration/test_registry.py.
//
// Usage: node driver.js --server 127.0.0.1:PORT [--namespace NS] --cache-dir DIR
// stdin:  one JSON command per line: {"id": 1, "op": "register", ...}
// stdout: one JSON line per answer {"id": 1, "ok": true, "result": ...} or
//         {"id": 1, "ok": false, "error": "..."}, and events as they happen:
//         {"event": "hosts", "service": S, "hosts": [...]} (subscribe),
//         {"event": "config", "dataId": D, "group": G, "content": C, "at": ms} (listen).
// The clients' own logs go to stderr.
'use strict';

const readline = require('readline');
const { NacosNamingClient, NacosConfigClient } = require('nacos');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const server = arg('--server');
const namespace = arg('--namespace', 'public');
const cacheDir = arg('--cache-dir');
const username = arg('--username');
const password = arg('--password');

const quiet = {
  debug() {},
  info() {},
  warn(...a) { process.stderr.write('[nacos warn] ' + a.map(String).join(' ') + '\n'); },
  error(...a) { process.stderr.write('[nacos error] ' + a.map(String).join(' ') + '\n'); },
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const namingOpts = { logger: quiet, serverList: server, namespace };
const configOpts = { serverAddr: server, namespace: namespace === 'public' ? '' : namespace,
                     cacheDir, requestTimeout: 5000 };
if (username) {
  Object.assign(namingOpts, { username, password });
  Object.assign(configOpts, { username, password });
}

let naming = null;
let config = null;

async function getNaming() {
  if (!naming) {
    naming = new NacosNamingClient(namingOpts);
    await naming.ready();
  }
  return naming;
}

function getConfig() {
  if (!config) {
    config = new NacosConfigClient(configOpts);
    config.on('error', (err) => quiet.error(err && err.message));
  }
  return config;
}

const ops = {
  async status() {
    return (await getNaming()).getServerStatus();
  },
  async register(c) {
    await (await getNaming()).registerInstance(c.service, {
      ip: c.ip, port: c.port, weight: c.weight || 1, metadata: c.metadata || {},
      ephemeral: c.ephemeral !== false, clusterName: c.cluster || 'DEFAULT',
    }, c.group || 'DEFAULT_GROUP');
    return true;
  },
  async deregister(c) {
    await (await getNaming()).deregisterInstance(c.service, {
      ip: c.ip, port: c.port, clusterName: c.cluster || 'DEFAULT',
      ephemeral: c.ephemeral !== false,
    }, c.group || 'DEFAULT_GROUP');
    return true;
  },
  async all(c) {
    // Straight from the server, not the client's cache.
    return (await getNaming()).getAllInstances(c.service, c.group || 'DEFAULT_GROUP', '', false);
  },
  async select(c) {
    return (await getNaming()).selectInstances(c.service, c.group || 'DEFAULT_GROUP', '', true,
                                              false);
  },
  async subscribe(c) {
    (await getNaming()).subscribe({ serviceName: c.service, groupName: c.group }, (hosts) => {
      emit({ event: 'hosts', service: c.service, hosts, at: Date.now() });
    });
    return true;
  },
  async services(c) {
    return (await getNaming())._serverProxy.getServiceList(1, c.pageSize || 100,
                                                          c.group || 'DEFAULT_GROUP');
  },
  async publish(c) {
    return getConfig().publishSingle(c.dataId, c.group, c.content,
                                     c.type ? { type: c.type } : undefined);
  },
  async get(c) {
    return getConfig().getConfig(c.dataId, c.group);
  },
  async remove(c) {
    return getConfig().remove(c.dataId, c.group);
  },
  async listen(c) {
    getConfig().subscribe({ dataId: c.dataId, group: c.group }, (content) => {
      emit({ event: 'config', dataId: c.dataId, group: c.group, content, at: Date.now() });
    });
    return true;
  },
  async close() {
    if (naming) await naming.close();
    if (config) config.close();
    naming = null;
    config = null;
    return true;
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    emit({ ok: false, error: 'bad command: ' + line });
    return;
  }
  if (cmd.op === 'exit') {
    process.exit(0);
  }
  const fn = ops[cmd.op];
  if (!fn) {
    emit({ id: cmd.id, ok: false, error: 'unknown op ' + cmd.op });
    return;
  }
  try {
    const result = await fn(cmd);
    emit({ id: cmd.id, ok: true, result: result === undefined ? null : result });
  } catch (e) {
    emit({ id: cmd.id, ok: false, error: String(e && e.message ? e.message : e) });
  }
});
rl.on('close', () => process.exit(0));
