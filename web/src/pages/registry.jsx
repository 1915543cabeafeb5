// Registry: the services of a namespace with their instances, and the configurations with
// their content and history (the native registry API, docs/registry.md). Read-only.
import { api } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { fmtTime } from '../lib/fmt.js';
import { useLoad, ErrorBox, Loading, Empty } from '../components.jsx';

const enc = encodeURIComponent;
const when = (t) => (typeof t === 'number' && t > 0 ? fmtTime(t) : t ? String(t) : '–');

/* "group@@name" (the list's form without a group) to [group, name]. */
function split(s) {
  const i = s.indexOf('@@');
  return i < 0 ? ['DEFAULT_GROUP', s] : [s.slice(0, i), s.slice(i + 2)];
}

function Instances({ ns, service }) {
  const [group, name] = split(service);
  const res = useLoad((signal) => api(`/api/v1/registry/services/${enc(ns)}/${enc(group)}/${enc(name)}`, {}, { signal }), [ns, service]);
  return (
    <div class="panel" data-panel="instances">
      <h2>{name} <span class="muted">{group}</span></h2>
      <ErrorBox error={res.error} />
      {res.data && !res.data.instances.length && <p class="muted">No instance.</p>}
      {res.data && res.data.instances.length > 0 && (
        <table class="grid instances">
          <thead><tr><th>Address</th><th>Cluster</th><th class="num">Weight</th><th>Health</th><th>Enabled</th><th>Ephemeral</th><th>Last beat</th><th>Metadata</th></tr></thead>
          <tbody>
            {res.data.instances.map((i) => (
              <tr data-instance={`${i.ip}:${i.port}`}>
                <td><code>{i.ip}:{i.port}</code></td>
                <td>{i.cluster}</td>
                <td class="num">{i.weight}</td>
                <td class={i.healthy ? '' : 'bad'}>{i.healthy ? 'healthy' : 'unhealthy'}</td>
                <td>{i.enabled ? 'yes' : 'no'}</td>
                <td>{i.ephemeral ? 'yes' : 'no'}</td>
                <td class="time">{i.ephemeral ? when(i.last_beat_ms) : '–'}</td>
                <td>{Object.entries(i.metadata || {}).map(([k, v]) => <span class="attr">{k}={v} </span>)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Config({ ns, config }) {
  const slash = config.indexOf('/');
  const group = config.slice(0, slash);
  const id = config.slice(slash + 1);
  const base = `/api/v1/registry/configs/${enc(ns)}/${enc(group)}/${enc(id)}`;
  const res = useLoad((signal) => Promise.all([api(base, {}, { signal }), api(`${base}/history`, { limit: 20 }, { signal })]), [ns, config]);
  const [cfg, hist] = res.data || [];
  return (
    <div class="panel" data-panel="config">
      <h2>{id} <span class="muted">{group}</span></h2>
      <ErrorBox error={res.error} />
      {cfg && (
        <>
          <p class="muted">version {cfg.version} · {cfg.type} · md5 <code>{cfg.md5}</code> · {when(cfg.time)}</p>
          <pre class="config-content">{cfg.content}</pre>
          <h3>History</h3>
          <table class="grid history">
            <thead><tr><th class="num">Version</th><th>Change</th><th>Type</th><th class="num">Size</th><th>MD5</th><th>By</th><th>Time</th></tr></thead>
            <tbody>
              {hist.history.map((h) => (
                <tr><td class="num">{h.version}</td><td>{h.op}</td><td>{h.type}</td><td class="num">{h.size}</td><td><code>{h.md5}</code></td><td>{h.who}</td><td class="time">{when(h.time)}</td></tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}

export default function Registry({ path, query }) {
  const ns = query.get('namespace') || 'public';
  const service = query.get('service') || '';
  const config = query.get('config') || '';
  const res = useLoad((signal) => Promise.all([
    api('/api/v1/registry/services', { namespace: ns }, { signal }),
    api('/api/v1/registry/configs', { namespace: ns }, { signal }),
  ]), [ns]);
  const [svcs, cfgs] = res.data || [];
  const pick = (k, v) => navigate(href(path, { ...queryObject(query), [k]: v }), { replace: true });
  const missing = res.error && res.error.status === 404 && !res.error.param;
  return (
    <section>
      <header class="page-head">
        <h1>Registry</h1>
        <form onSubmit={(e) => { e.preventDefault(); navigate(href(path, { namespace: e.target.namespace.value.trim() })); }}>
          <label class="range"><span>Namespace</span><input name="namespace" value={ns} size="12" /></label>
        </form>
        <Loading on={res.loading} />
      </header>
      {missing ? <div class="error-box">The registry is not running in this server.</div> : <ErrorBox error={res.error} />}
      {res.data && (
        <div class="registry">
          <div>
            <h3>Services ({svcs.count})</h3>
            {!svcs.services.length && <Empty>No service registered in {ns}.</Empty>}
            <ul class="ops pick">
              {svcs.services.map((s) => (
                <li class={s === service ? 'selected' : ''}><a href={href(path, { ...queryObject(query), service: s })} onClick={(e) => { e.preventDefault(); pick('service', s); }}>{s}</a></li>
              ))}
            </ul>
            {service && <Instances ns={ns} service={service} />}
          </div>
          <div>
            <h3>Configurations ({cfgs.configs.length})</h3>
            {!cfgs.configs.length && <Empty>No configuration in {ns}.</Empty>}
            <ul class="ops pick">
              {cfgs.configs.map((c) => {
                const key = `${c.group}/${c.dataId}`;
                return (
                  <li class={key === config ? 'selected' : ''}>
                    <a href={href(path, { ...queryObject(query), config: key })} onClick={(e) => { e.preventDefault(); pick('config', key); }}>{c.dataId}</a>
                    {' '}<span class="muted">{c.group} · v{c.version} · {c.type}</span>
                  </li>
                );
              })}
            </ul>
            {config && <Config ns={ns} config={config} />}
          </div>
        </div>
      )}
    </section>
  );
}
