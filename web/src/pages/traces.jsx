// Trace search: the form's fields are the URL's parameters (docs/query.md, GET
// /api/v1/traces); results as a duration-over-time scatter and a list.
import { useState, useEffect } from 'preact/hooks';

import { api } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { windowOf, apiWindow } from '../lib/time.js';
import { fmtDuration, fmtTime, nsToMs, serviceColor } from '../lib/fmt.js';
import { useLoad, ErrorBox, Loading, TimeRange, DurationScatter, Empty } from '../components.jsx';

const FIELDS = ['service', 'operation', 'minDuration', 'maxDuration', 'status', 'kind', 'limit', 'order'];

function SearchForm({ path, query, services }) {
  const init = () => ({ ...Object.fromEntries(FIELDS.map((f) => [f, query.get(f) || ''])), tags: query.getAll('tag').join(' ') });
  const [f, setF] = useState(init);
  useEffect(() => setF(init()), [query.toString()]);
  const ops = useLoad((signal) => (f.service
    ? api(`/api/v1/services/${encodeURIComponent(f.service)}/operations`, {}, { signal })
    : Promise.resolve({ operations: [] })), [f.service]);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value, ...(k === 'service' ? { operation: '' } : {}) });
  const submit = (e) => {
    e.preventDefault();
    const keep = queryObject(query);
    const o = { range: keep.range, start: keep.start, end: keep.end };
    for (const k of FIELDS) o[k] = f[k];
    o.tag = f.tags.split(/\s+/).filter(Boolean);
    navigate(href(path, o));
  };
  const opNames = ops.data ? [...new Set(ops.data.operations.map((o) => o.name))].sort() : [];
  return (
    <form class="search" onSubmit={submit} aria-label="trace search">
      <label>Service
        <select name="service" value={f.service} onChange={set('service')}>
          <option value="">any</option>
          {services.map((s) => <option value={s}>{s}</option>)}
        </select>
      </label>
      <label>Operation
        <select name="operation" value={f.operation} onChange={set('operation')} disabled={!f.service}>
          <option value="">any</option>
          {opNames.map((o) => <option value={o}>{o}</option>)}
        </select>
      </label>
      <label class="wide">Attributes
        <input name="tags" value={f.tags} onInput={set('tags')} placeholder="http.route=/cart user.id=~u-4" />
      </label>
      <label>Min duration<input name="minDuration" value={f.minDuration} onInput={set('minDuration')} placeholder="100ms" size="7" /></label>
      <label>Max duration<input name="maxDuration" value={f.maxDuration} onInput={set('maxDuration')} placeholder="2s" size="7" /></label>
      <label>Status
        <select name="status" value={f.status} onChange={set('status')}>
          <option value="">any</option><option value="error">error</option><option value="ok">ok</option><option value="unset">unset</option>
        </select>
      </label>
      <label>Kind
        <select name="kind" value={f.kind} onChange={set('kind')}>
          <option value="">any</option>
          {['server', 'client', 'producer', 'consumer', 'internal'].map((k) => <option value={k}>{k}</option>)}
        </select>
      </label>
      <label>Limit<input name="limit" value={f.limit} onInput={set('limit')} placeholder="20" size="4" /></label>
      <label>Order
        <select name="order" value={f.order} onChange={set('order')}>
          <option value="">newest</option><option value="duration">longest</option>
        </select>
      </label>
      <button type="submit">Search</button>
    </form>
  );
}

export default function Traces({ path, query }) {
  const w = windowOf(query);
  const services = useLoad((signal) => api('/api/v1/services', {}, { signal }), []);
  const params = { ...apiWindow(w), tag: query.getAll('tag') };
  for (const k of FIELDS) params[k] = query.get(k) || '';
  const res = useLoad((signal) => api('/api/v1/traces', params, { signal }), [query.toString()]);
  const traces = res.data ? res.data.traces : [];
  const points = traces.map((t) => ({ t: nsToMs(t.startTimeUnixNano), ms: Math.max(t.durationMs, 0.001), error: t.errorCount > 0 }));
  return (
    <section>
      <header class="page-head">
        <h1>Traces</h1>
        <TimeRange path={path} query={query} />
        <Loading on={res.loading} />
      </header>
      <SearchForm path={path} query={query} services={services.data ? services.data.services : []} />
      <ErrorBox error={res.error || services.error} />
      {res.data && !traces.length && <Empty>No trace matches in this window.</Empty>}
      {traces.length > 0 && (
        <>
          <DurationScatter points={points} onPick={(i) => navigate(`/traces/${traces[i].traceId}`)} />
          <p class="muted">{traces.length} traces{res.data.truncated ? ' (search stopped at its scan limit: newest matches shown)' : ''}</p>
          <table class="grid traces">
            <thead><tr><th>Started</th><th>Trace</th><th class="num">Duration</th><th class="num">Spans</th><th class="num">Errors</th><th>Services</th></tr></thead>
            <tbody>
              {traces.map((t) => (
                <tr data-trace={t.traceId} class={t.errorCount ? 'has-error' : ''}>
                  <td class="time">{fmtTime(nsToMs(t.startTimeUnixNano))}</td>
                  <td><a class="trace-link" href={`/traces/${t.traceId}`}>{t.rootService}: {t.rootOperation}</a> <code class="muted">{t.traceId.slice(0, 8)}</code></td>
                  <td class="num">{fmtDuration(t.durationMs)}</td>
                  <td class="num">{t.spanCount}</td>
                  <td class={`num${t.errorCount ? ' bad' : ''}`}>{t.errorCount}</td>
                  <td>{t.services.map((s) => <span class="chip" style={{ borderColor: serviceColor(s) }}>{s}</span>)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
