// Gateway: what the gateway runs (the admin API's status, docs/gateway.md "Admin API"):
// routes with their matches and weighted backends, clusters with their endpoints' health and
// ejection state, RED per route and cluster (rates from two polls), and the configuration
// generation each worker runs. Refreshed every few seconds; ?route= / ?cluster= select one.
import { useEffect, useRef, useState } from 'preact/hooks';

import { api } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { fmtDuration, fmtRate, fmtPct, fmtCount, fmtTime } from '../lib/fmt.js';
import { ErrorBox, Loading, Empty } from '../components.jsx';

const POLL_MS = 3000;

/* Polls the status; keeps the previous answer to turn counters into rates. */
function useStatus() {
  const [state, setState] = useState({ data: null, prev: null, error: null, loading: true });
  const last = useRef(null);
  useEffect(() => {
    let live = true;
    let timer;
    const ac = new AbortController();
    const tick = async () => {
      try {
        const s = await api('/api/v1/gateway/status', {}, { signal: ac.signal });
        s.at = performance.now();
        if (!live) return;
        const prev = last.current;
        last.current = s;
        setState({ data: s, prev, error: null, loading: false });
      } catch (e) {
        if (!live || ac.signal.aborted) return;
        setState((st) => ({ ...st, error: e, loading: false }));
      }
      if (live) timer = setTimeout(tick, POLL_MS);
    };
    tick();
    return () => { live = false; ac.abort(); clearTimeout(timer); };
  }, []);
  return state;
}

/* Requests/s and error ratio between two polls (null on the first). */
function rates(cur, prev, dt) {
  if (!prev || dt <= 0) return { rate: null, errRatio: null };
  const dn = cur.requests - prev.requests;
  const de = cur.errors - prev.errors;
  return { rate: Math.max(0, dn) / dt, errRatio: dn > 0 ? Math.max(0, de) / dn : null };
}

function matchText(m) {
  const parts = [];
  if (m.method) parts.push(m.method);
  parts.push(`${m.path.type === 'Exact' ? '=' : m.path.type === 'PathPrefix' ? '' : '~'}${m.path.value}${m.path.type === 'PathPrefix' && m.path.value !== '/' ? '/*' : m.path.type === 'PathPrefix' ? '*' : ''}`);
  for (const h of m.headers || []) parts.push(`${h.name}${h.type === 'Exact' ? '=' : '~'}${h.value}`);
  for (const q of m.queryParams || []) parts.push(`?${q.name}${q.type === 'Exact' ? '=' : '~'}${q.value}`);
  return parts.join(' ');
}

function Red({ stats, r }) {
  return (
    <>
      <td class="num">{fmtCount(stats.requests)}</td>
      <td class="num">{r.rate == null ? '–' : fmtRate(r.rate)}</td>
      <td class={`num${stats.errors > 0 ? ' bad' : ''}`}>{fmtCount(stats.errors)}{r.errRatio != null && r.errRatio > 0 ? ` (${fmtPct(r.errRatio)})` : ''}</td>
      <td class="num">{stats.p50_s == null ? '–' : `≤ ${fmtDuration(stats.p50_s * 1000)}`}</td>
      <td class="num">{stats.p99_s == null ? '–' : `≤ ${fmtDuration(stats.p99_s * 1000)}`}</td>
    </>
  );
}

function Endpoints({ cluster }) {
  return (
    <div class="panel" data-panel="endpoints">
      <h2>{cluster.name} <span class="muted">{cluster.policy}{cluster.health_check ? ' · health checks' : ''}{cluster.outlier_detection ? ' · outlier detection' : ''}</span></h2>
      <table class="grid endpoints">
        <thead><tr><th>Endpoint</th><th class="num">Weight</th><th>State</th><th>Health check</th><th>Ejected</th><th class="num">Errors in a row</th></tr></thead>
        <tbody>
          {cluster.endpoints.map((e) => (
            <tr data-endpoint={e.address}>
              <td><code>{e.address}</code></td>
              <td class="num">{e.weight}</td>
              <td class={e.state === 'up' ? 'ok' : 'bad'}>{e.state}</td>
              <td class={e.healthy ? '' : 'bad'}>{e.healthy ? 'healthy' : 'unhealthy'}</td>
              <td class={e.ejected ? 'bad' : ''}>{e.ejected ? `for ${fmtDuration(e.ejected_for_ms)}` : 'no'}</td>
              <td class="num">{e.consecutive_errors}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted">Upstream errors: {Object.entries(cluster.stats.upstream_errors || {}).map(([k, v]) => `${k} ${v}`).join(' · ')}</p>
    </div>
  );
}

export default function Gateway({ path, query }) {
  const { data, prev, error, loading } = useStatus();
  const selRoute = query.get('route') || '';
  const selCluster = query.get('cluster') || '';
  const pick = (k, v) => navigate(href(path, { ...queryObject(query), [k]: v }), { replace: true });
  const missing = error && error.status === 404;
  const dt = data && prev ? (data.at - prev.at) / 1000 : 0;
  const prevRoutes = new Map((prev?.routes || []).map((r) => [r.name, r.stats]));
  const prevClusters = new Map((prev?.clusters || []).map((c) => [c.name, c.stats]));
  const cluster = data && data.clusters.find((c) => c.name === selCluster);
  return (
    <section>
      <header class="page-head">
        <h1>Gateway</h1>
        {data && (
          <span class="muted" data-generation={data.generation}>
            generation {data.generation} · revision {data.revision} ({data.source}) · changed {fmtTime(data.changed_ms)} · workers{' '}
            {data.workers.map((w) => <span class={w.generation === data.generation ? '' : 'bad'} data-worker={w.id}>#{w.id}:{w.generation} </span>)}
            {data.converged ? '' : ' (adopting)'}
          </span>
        )}
        <Loading on={loading} />
      </header>
      {missing ? <div class="error-box">The gateway is not running in this server (gateway.config, or cairn up --demo).</div> : <ErrorBox error={error} />}
      {data && (
        <>
          <p class="muted">Listeners: {data.listeners.map((l) => <code>{l.name} {l.address} </code>)}</p>
          <h3>Routes ({data.routes.length})</h3>
          {!data.routes.length && <Empty>No route.</Empty>}
          {data.routes.length > 0 && (
            <table class="grid routes">
              <thead><tr><th>Route</th><th>Hosts</th><th>Matches</th><th>Backends</th><th>Filters</th><th class="num">Requests</th><th class="num">Rate</th><th class="num">5xx</th><th class="num">p50</th><th class="num">p99</th></tr></thead>
              <tbody>
                {data.routes.map((r) => (
                  <tr data-route={r.name} class={r.name === selRoute ? 'selected' : ''}>
                    <td><a href={href(path, { ...queryObject(query), route: r.name })} onClick={(e) => { e.preventDefault(); pick('route', r.name); }}>{r.name}</a></td>
                    <td>{r.hostnames.length ? r.hostnames.join(', ') : <span class="muted">any</span>}</td>
                    <td>{r.matches.map((m) => <div><code>{matchText(m)}</code></div>)}</td>
                    <td>{r.backends.length ? r.backends.map((b) => (
                      <div><a href={href(path, { ...queryObject(query), cluster: b.cluster })} onClick={(e) => { e.preventDefault(); pick('cluster', b.cluster); }}>{b.cluster}</a>{r.backends.length > 1 ? <span class="muted"> ×{b.weight}</span> : ''}</div>
                    )) : <span class="muted">redirect</span>}</td>
                    <td>{r.filters.join(', ')}</td>
                    <Red stats={r.stats} r={rates(r.stats, prevRoutes.get(r.name), dt)} />
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h3>Clusters ({data.clusters.length})</h3>
          {data.clusters.length > 0 && (
            <table class="grid clusters">
              <thead><tr><th>Cluster</th><th>Policy</th><th>Endpoints up</th><th class="num">Requests</th><th class="num">Rate</th><th class="num">5xx</th><th class="num">p50</th><th class="num">p99</th></tr></thead>
              <tbody>
                {data.clusters.map((c) => (
                  <tr data-cluster={c.name} class={c.name === selCluster ? 'selected' : ''}>
                    <td><a href={href(path, { ...queryObject(query), cluster: c.name })} onClick={(e) => { e.preventDefault(); pick('cluster', c.name); }}>{c.name}</a></td>
                    <td>{c.policy}</td>
                    <td class={c.endpoints_up < c.endpoints.length ? 'bad' : ''}>{c.endpoints_up}/{c.endpoints.length}{' '}
                      {c.endpoints.map((e) => <code class={e.state === 'up' ? '' : 'bad'} data-endpoint={e.address}>{e.address} </code>)}
                    </td>
                    <Red stats={c.stats} r={rates(c.stats, prevClusters.get(c.name), dt)} />
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {cluster && <Endpoints cluster={cluster} />}
        </>
      )}
    </section>
  );
}
