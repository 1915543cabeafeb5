// What `cairn up --demo` (src/cli/demo.c) passes to every demo process, read in one place.
// docs/demo.md lists the variables; each process can also be started by hand with them.
function addr(v, what) {
  if (!v) return null;
  const m = /^(.+):(\d+)$/.exec(v);
  if (!m) throw new Error(`${what}: '${v}' is not HOST:PORT`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export function demoEnv(env = process.env) {
  const gateway = addr(env.DEMO_GATEWAY, 'DEMO_GATEWAY');
  const registry = env.DEMO_REGISTRY || '';
  const peers = {};
  for (const p of (env.DEMO_PEERS || '').split(',').filter(Boolean)) {
    const [name, a] = p.split('=');
    peers[name] = addr(a, `DEMO_PEERS ${name}`);
  }
  const route = env.DEMO_ROUTE || (gateway ? 'gateway' : registry ? 'registry' : 'direct');
  if (!['gateway', 'registry', 'direct'].includes(route)) throw new Error(`DEMO_ROUTE: '${route}' is not gateway, registry or direct`);
  if (route === 'gateway' && !gateway) throw new Error('DEMO_ROUTE=gateway needs DEMO_GATEWAY');
  if (route === 'registry' && !registry) throw new Error('DEMO_ROUTE=registry needs DEMO_REGISTRY');
  return {
    otlp: env.OTEL_EXPORTER_OTLP_ENDPOINT || 'http://127.0.0.1:4318',
    listenFd: env.DEMO_LISTEN_FD ? Number(env.DEMO_LISTEN_FD) : null,
    port: Number(env.DEMO_PORT || 0),
    route, gateway, peers,
    registry: registry ? {
      server: registry, username: env.DEMO_REGISTRY_USERNAME || '', password: env.DEMO_REGISTRY_PASSWORD || '',
      cacheDir: env.DEMO_CACHE_DIR || undefined,
    } : null,
    rps: Number(env.DEMO_RPS || 5),
  };
}

// Where a call to peer goes: the gateway (Host header = the service name, which its demo
// routes match), an instance the registry lists, or the address in DEMO_PEERS. null when
// the registry knows no instance yet.
export function targetOf(e, registry, peer) {
  if (e.route === 'gateway') return { host: e.gateway.host, port: e.gateway.port, hostHeader: peer, peer };
  if (e.route === 'registry') {
    const inst = registry && registry.pick(peer);
    return inst ? { host: inst.ip, port: inst.port, peer } : null;
  }
  const a = e.peers[peer];
  return a ? { host: a.host, port: a.port, peer } : null;
}

// Exits when the parent process (cairn) is gone, whatever killed it.
export function exitWithParent(onExit) {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) onExit('parent exited');
  }, 1000).unref();
}
