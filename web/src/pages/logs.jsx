// Logs: search (GET /api/v1/logs) and live tail (GET /api/v1/logs/tail, newline-delimited
// JSON), severity colours, links to the record's trace and span and to its code.
import { useEffect, useState } from 'preact/hooks';

import { api, stream } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { windowOf, apiWindow } from '../lib/time.js';
import { fmtTime, nsToMs, anyValue, attr, severityClass, serviceColor } from '../lib/fmt.js';
import { useLoad, ErrorBox, Loading, TimeRange, Empty } from '../components.jsx';

const TAIL_MAX = 500;

/* "a b \"c d\"" -> ["a", "b", "c d"]: quoted runs stay one term. */
function terms(text) {
  return [...text.matchAll(/"([^"]+)"|(\S+)/g)].map((m) => m[1] || m[2]);
}

function SearchForm({ path, query, services }) {
  const init = () => ({
    service: query.get('service') || '', severity: query.get('severity') || '',
    q: query.getAll('q').map((t) => (/\s/.test(t) ? `"${t}"` : t)).join(' '),
    attr: query.getAll('attr').join(' '), traceId: query.get('traceId') || '', limit: query.get('limit') || '',
  });
  const [f, setF] = useState(init);
  useEffect(() => setF(init()), [query.toString()]);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value });
  const submit = (e) => {
    e.preventDefault();
    const keep = queryObject(query);
    navigate(href(path, {
      range: keep.range, start: keep.start, end: keep.end, tail: keep.tail,
      service: f.service, severity: f.severity, q: terms(f.q), attr: f.attr.split(/\s+/).filter(Boolean),
      traceId: f.traceId.trim(), limit: f.limit,
    }));
  };
  return (
    <form class="search" onSubmit={submit} aria-label="log search">
      <label>Service
        <select name="service" value={f.service} onChange={set('service')}>
          <option value="">any</option>
          {services.map((s) => <option value={s}>{s}</option>)}
        </select>
      </label>
      <label>Severity ≥
        <select name="severity" value={f.severity} onChange={set('severity')}>
          <option value="">any</option>
          {['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map((s) => <option value={s}>{s}</option>)}
        </select>
      </label>
      <label class="wide">Text<input name="q" value={f.q} onInput={set('q')} placeholder='timeout "connection refused"' /></label>
      <label class="wide">Attributes<input name="attr" value={f.attr} onInput={set('attr')} placeholder="code.lineno>80" /></label>
      <label>Trace ID<input name="traceId" value={f.traceId} onInput={set('traceId')} size="34" /></label>
      <label>Limit<input name="limit" value={f.limit} onInput={set('limit')} placeholder="20" size="4" /></label>
      <button type="submit">Search</button>
    </form>
  );
}

function LogRow({ r }) {
  const sev = severityClass(r.severityNumber);
  const code = attr(r.attributes, 'code.filepath');
  const line = attr(r.attributes, 'code.lineno');
  return (
    <tr class={`log sev-${sev}`} data-trace={r.traceId || ''}>
      <td class="time">{fmtTime(nsToMs(r.timeUnixNano !== '0' ? r.timeUnixNano : r.observedTimeUnixNano))}</td>
      <td><span class={`sev sev-${sev}`}>{r.severityText || sev}</span></td>
      <td><span class="chip" style={{ borderColor: serviceColor(r.service) }}>{r.service}</span></td>
      <td class="body">{anyValue(r.body)}
        {r.attributes && r.attributes.length > 0 && (
          <span class="attrs">{r.attributes.filter((a) => !a.key.startsWith('code.')).map((a) => <span class="attr">{a.key}={anyValue(a.value)}</span>)}</span>
        )}
      </td>
      <td class="links">
        {r.traceId && <a class="trace-link" href={href(`/traces/${r.traceId}`, { span: r.spanId })} title={`span ${r.spanId}`}>trace {r.traceId.slice(0, 8)}</a>}
        {code && (r.codeUrl ? <a class="code-link" href={r.codeUrl} target="_blank" rel="noopener noreferrer">{code.split('/').pop()}:{line}</a> : <span class="muted">{code.split('/').pop()}:{line}</span>)}
      </td>
    </tr>
  );
}

function filters(query) {
  return {
    service: query.get('service') || '', severity: query.get('severity') || '', q: query.getAll('q'),
    attr: query.getAll('attr'), traceId: query.get('traceId') || '',
  };
}

function Tail({ query }) {
  const [rows, setRows] = useState([]);
  const [state, setState] = useState({ error: null, dropped: 0, ended: false });
  useEffect(() => {
    const ac = new AbortController();
    setRows([]);
    setState({ error: null, dropped: 0, ended: false });
    let pending = [];
    let timer = 0;
    const flush = () => {
      timer = 0;
      const add = pending.reverse();
      pending = [];
      setRows((old) => add.concat(old).slice(0, TAIL_MAX));
    };
    stream('/api/v1/logs/tail', filters(query), (rec) => {
      if (rec.dropped) { setState((s) => ({ ...s, dropped: s.dropped + rec.dropped })); return; }
      pending.push(rec);
      if (!timer) timer = setTimeout(flush, 100);
    }, { signal: ac.signal }).then(
      () => setState((s) => ({ ...s, ended: true })),
      (e) => { if (!ac.signal.aborted) setState((s) => ({ ...s, error: e })); },
    );
    return () => { ac.abort(); clearTimeout(timer); };
  }, [query.toString()]);
  return (
    <>
      <p class="tail-state">
        {state.ended ? <span>the stream ended (server draining)</span> : <span class="live">● live</span>}
        {' '}{rows.length} records{rows.length >= TAIL_MAX ? ` (the newest ${TAIL_MAX})` : ''}
        {state.dropped > 0 && <span class="bad"> · {state.dropped} dropped (reader fell behind)</span>}
      </p>
      <ErrorBox error={state.error} />
      {!rows.length && !state.error && <Empty>Waiting for matching records…</Empty>}
      <LogTable rows={rows} />
    </>
  );
}

function LogTable({ rows }) {
  if (!rows.length) return null;
  return (
    <table class="grid logs">
      <thead><tr><th>Time</th><th>Severity</th><th>Service</th><th>Message</th><th /></tr></thead>
      <tbody>{rows.map((r) => <LogRow r={r} />)}</tbody>
    </table>
  );
}

function Results({ query }) {
  const w = windowOf(query);
  const res = useLoad((signal) => api('/api/v1/logs', { ...apiWindow(w), ...filters(query), limit: query.get('limit') || '' }, { signal }),
    [query.toString()]);
  return (
    <>
      <Loading on={res.loading} />
      <ErrorBox error={res.error} />
      {res.data && !res.data.logs.length && <Empty>No log record matches in this window.</Empty>}
      {res.data && res.data.logs.length > 0 && (
        <p class="muted">{res.data.logs.length} records, newest first{res.data.truncated ? ' (search stopped at its scan limit)' : ''}</p>
      )}
      {res.data && <LogTable rows={res.data.logs} />}
    </>
  );
}

export default function Logs({ path, query }) {
  const services = useLoad((signal) => api('/api/v1/services', {}, { signal }), []);
  const tail = query.get('tail') === '1';
  const toggle = () => {
    const o = queryObject(query, ['q', 'attr']);
    if (tail) delete o.tail;
    else o.tail = '1';
    navigate(href(path, o));
  };
  return (
    <section>
      <header class="page-head">
        <h1>Logs</h1>
        {!tail && <TimeRange path={path} query={query} />}
        <button type="button" class={`toggle${tail ? ' on' : ''}`} onClick={toggle} aria-pressed={tail}>{tail ? 'Stop live tail' : 'Live tail'}</button>
      </header>
      <SearchForm path={path} query={query} services={services.data ? services.data.services : []} />
      {tail ? <Tail query={query} /> : <Results query={query} />}
    </section>
  );
}
