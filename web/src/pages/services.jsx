// Services: the RED figures of every service over the window (from the topology's nodes)
// with per-step sparklines (from /api/v1/red), sortable.
import { api } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { windowOf, apiWindow } from '../lib/time.js';
import { fmtDuration, fmtRate, fmtPct, fmtCount } from '../lib/fmt.js';
import { useLoad, ErrorBox, Loading, TimeRange, Sparkline, SortHeader, Empty } from '../components.jsx';

async function load(w, signal) {
  const win = apiWindow(w);
  const [{ services }, topo] = await Promise.all([
    api('/api/v1/services', {}, { signal }),
    api('/api/v1/topology', win, { signal }),
  ]);
  const nodes = new Map(topo.nodes.map((n) => [n.service, n]));
  const reds = await Promise.all(services.map((s) =>
    api('/api/v1/red', { service: s, ...win }, { signal }).catch(() => ({ points: [] }))));
  return services.map((s, i) => {
    const n = nodes.get(s) || {};
    const pts = reds[i].points || [];
    return {
      service: s, count: n.count ?? 0, rate: n.rate ?? 0, errorRatio: n.errorRatio ?? 0,
      p50Ms: n.p50Ms, p95Ms: n.p95Ms, p99Ms: n.p99Ms,
      xs: pts.map((p) => Number(String(p.timeUnixNano).slice(0, -9))),
      rates: pts.map((p) => p.rate), errs: pts.map((p) => p.errorRatio),
      p99s: pts.map((p) => (p.count ? p.p99Ms : null)),
    };
  });
}

export default function Services({ path, query }) {
  const w = windowOf(query);
  const sort = query.get('sort') || 'rate';
  const dir = query.get('dir') || 'desc';
  const { data, error, loading } = useLoad((signal) => load(w, signal), [query.get('range'), query.get('start'), query.get('end')]);
  const onSort = (field, d) => navigate(href(path, { ...queryObject(query), sort: field, dir: d }), { replace: true });
  const rows = data ? [...data].sort((a, b) => {
    const x = a[sort] ?? -1, y = b[sort] ?? -1;
    const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
    return dir === 'asc' ? c : -c;
  }) : [];
  const win = { start: Math.floor(w.start), end: Math.ceil(w.end) };
  const h = { sort, dir, onSort };
  return (
    <section>
      <header class="page-head">
        <h1>Services</h1>
        <TimeRange path={path} query={query} />
        <Loading on={loading} />
      </header>
      <ErrorBox error={error} />
      {data && !rows.length && <Empty>No service has sent telemetry yet.</Empty>}
      {rows.length > 0 && (
        <table class="grid services">
          <thead>
            <tr>
              <SortHeader label="Service" field="service" {...h} />
              <SortHeader label="Requests" field="count" num {...h} />
              <SortHeader label="Rate" field="rate" num {...h} />
              <th>Rate over time</th>
              <SortHeader label="Errors" field="errorRatio" num {...h} />
              <th>Errors over time</th>
              <SortHeader label="p50" field="p50Ms" num {...h} />
              <SortHeader label="p95" field="p95Ms" num {...h} />
              <SortHeader label="p99" field="p99Ms" num {...h} />
              <th>p99 over time</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.service} data-service={r.service}>
                <td><a href={href('/traces', { service: r.service, range: w.range, ...(w.range ? {} : win) })}>{r.service}</a></td>
                <td class="num">{fmtCount(r.count)}</td>
                <td class="num">{fmtRate(r.rate)}</td>
                <td><Sparkline xs={r.xs} ys={r.rates} title="requests per second" /></td>
                <td class={`num${r.errorRatio > 0.05 ? ' bad' : ''}`}>{fmtPct(r.errorRatio)}</td>
                <td><Sparkline xs={r.xs} ys={r.errs} color="#c53030" title="error ratio" /></td>
                <td class="num">{fmtDuration(r.p50Ms)}</td>
                <td class="num">{fmtDuration(r.p95Ms)}</td>
                <td class="num">{fmtDuration(r.p99Ms)}</td>
                <td><Sparkline xs={r.xs} ys={r.p99s} color="#805ad5" title="p99 latency (ms)" /></td>
                <td class="links">
                  <a href={href('/topology', { service: r.service })}>graph</a>
                  <a href={href('/logs', { service: r.service })}>logs</a>
                  <a href={href('/rca', { service: r.service })}>root cause</a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
