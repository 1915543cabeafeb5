// Root cause: GET /api/v1/rca (docs/rca.md) for a service and window, or for one trace;
// the ranked suspects with their evidence, linking to traces and logs.
import { useEffect, useState } from 'preact/hooks';

import { api } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { windowOf, apiWindow } from '../lib/time.js';
import { fmtDuration, fmtTime, fmtPct, fmtCount, nsToMs, anyValue, severityClass, serviceColor } from '../lib/fmt.js';
import { useLoad, ErrorBox, Loading, TimeRange, Empty } from '../components.jsx';

const KIND_LABEL = { new_error: 'new error', error_origin: 'error origin', latency: 'latency', traffic_change: 'traffic change' };

function Form({ path, query, services }) {
  const [f, setF] = useState({ service: query.get('service') || '', trace: query.get('trace') || '' });
  useEffect(() => setF({ service: query.get('service') || '', trace: query.get('trace') || '' }), [query.toString()]);
  const submit = (e) => {
    e.preventDefault();
    const keep = queryObject(query);
    navigate(href(path, { service: f.service, trace: f.trace.trim(), range: keep.range, start: keep.start, end: keep.end }));
  };
  return (
    <form class="search" onSubmit={submit} aria-label="root cause analysis">
      <label>Service
        <select name="service" value={f.service} onChange={(e) => setF({ ...f, service: e.target.value })}>
          <option value="">{f.trace ? "the trace's root" : 'choose…'}</option>
          {services.map((s) => <option value={s}>{s}</option>)}
        </select>
      </label>
      <label>or trace ID<input name="trace" value={f.trace} size="34" onInput={(e) => setF({ ...f, trace: e.target.value })} /></label>
      <button type="submit">Analyse</button>
    </form>
  );
}

function Figures({ before, after }) {
  const rows = [
    ['requests', 'count', fmtCount], ['errors', 'errors', fmtCount], ['p50', 'p50Ms', fmtDuration], ['p99', 'p99Ms', fmtDuration],
    ['self time (mean)', 'selfMs', fmtDuration], ['self time p99', 'selfP99Ms', fmtDuration],
    ['calls per request', 'callsPerRequest', (v) => (v == null ? '–' : v.toFixed(2))],
    ['error origin share', 'errorOriginShare', fmtPct], ['critical path share', 'criticalPathShare', fmtPct],
  ];
  return (
    <table class="kv figures-table">
      <thead><tr><th /><th class="num">baseline</th><th class="num">window</th></tr></thead>
      <tbody>
        {rows.filter(([, k]) => (before && before[k] != null) || (after && after[k] != null)).map(([label, k, f]) => (
          <tr><th>{label}</th><td class="num">{before ? f(before[k]) : '–'}</td><td class="num">{after ? f(after[k]) : '–'}</td></tr>
        ))}
      </tbody>
    </table>
  );
}

function Suspect({ s, open, onToggle }) {
  const ev = s.evidence || {};
  const span = ev.span;
  const logsWin = span ? { start: Math.floor(nsToMs(span.startTimeUnixNano) - 5 * 60e3), end: Math.ceil(nsToMs(span.startTimeUnixNano) + 5 * 60e3) } : {};
  return (
    <li class={`suspect${open ? ' open' : ''}`} data-suspect={`${s.service}|${s.operation}|${s.kind}`}>
      <button type="button" class="suspect-head" onClick={onToggle} aria-expanded={open}>
        <span class="rank">#{s.rank}</span>
        <span class="score"><span style={{ width: `${Math.round(s.score * 100)}%` }} /></span>
        <span class="score-num">{s.score.toFixed(2)}</span>
        <span class={`kind kind-${s.kind}`}>{KIND_LABEL[s.kind] || s.kind}</span>
        <span class="chip" style={{ borderColor: serviceColor(s.service) }}>{s.service}</span>
        <span class="op">{s.operation}</span>
      </button>
      <p class="reason">{s.reason}</p>
      {open && (
        <div class="evidence">
          <div class="ev-cols">
            <div>
              <h4>Figures</h4>
              <Figures before={ev.before} after={ev.after} />
              {(ev.versionsBefore || ev.versionsAfter) && (
                <p>Versions: {(ev.versionsBefore || []).join(', ') || '–'} → {(ev.versionsAfter || []).join(', ') || '–'}{ev.versionChanged ? <strong class="bad"> (changed)</strong> : ''}</p>
              )}
              {ev.errorMessages && ev.errorMessages.length > 0 && (
                <>
                  <h4>Error messages</h4>
                  <ul>{ev.errorMessages.map((m) => <li>{m.new && <span class="badge">new</span>} {m.message} <span class="muted">×{m.count}</span></li>)}</ul>
                </>
              )}
            </div>
            <div>
              <h4>Example traces</h4>
              <ul>{(ev.traces || []).map((t) => <li><a class="trace-link" href={href(`/traces/${t}`, span && span.traceId === t ? { span: span.spanId } : {})}>{t}</a></li>)}</ul>
              {span && (
                <p>Span: <a href={href(`/traces/${span.traceId}`, { span: span.spanId })}>{span.service}: {span.operation}</a>{' '}
                  {fmtDuration(span.durationMs)} (self {fmtDuration(span.selfMs)}){span.message ? ` · ${span.message}` : ''}</p>
              )}
              <p class="links">
                <a href={href('/logs', { service: s.service, ...logsWin })}>Logs of {s.service}</a>
                <a href={href('/traces', { service: s.service, operation: s.operation, ...(s.kind.includes('error') ? { status: 'error' } : {}), ...logsWin })}>Traces of {s.operation}</a>
              </p>
            </div>
          </div>
          {ev.logs && ev.logs.length > 0 && (
            <>
              <h4>Log lines</h4>
              <table class="grid logs">
                <tbody>
                  {ev.logs.map((r) => {
                    const sev = severityClass(r.severityNumber);
                    return (
                      <tr class={`log sev-${sev}`}>
                        <td class="time">{fmtTime(nsToMs(r.timeUnixNano))}</td>
                        <td><span class={`sev sev-${sev}`}>{r.severityText || sev}</span></td>
                        <td>{r.service}</td>
                        <td class="body">{anyValue(r.body)}</td>
                        <td class="muted">{r.relation}</td>
                        <td class="links">{r.traceId && <a class="trace-link" href={href(`/traces/${r.traceId}`, { span: r.spanId })}>trace</a>}
                          {r.codeUrl && <a class="code-link" href={r.codeUrl} target="_blank" rel="noopener noreferrer">code</a>}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </>
          )}
        </div>
      )}
    </li>
  );
}

function Window({ label, w }) {
  if (!w) return null;
  return (
    <span>{label}: {fmtTime(nsToMs(w.start))} → {fmtTime(nsToMs(w.end), false)}, {fmtCount(w.requests)} requests, {fmtCount(w.errorRequests)} failed</span>
  );
}

export default function Rca({ path, query }) {
  const services = useLoad((signal) => api('/api/v1/services', {}, { signal }), []);
  const service = query.get('service') || '';
  const trace = query.get('trace') || '';
  const w = windowOf(query, '15m');
  const [open, setOpen] = useState(0);
  const res = useLoad((signal) => {
    if (!service && !trace) return Promise.resolve(null);
    const p = trace ? { trace, service } : { service, ...apiWindow(w) };
    return api('/api/v1/rca', p, { signal });
  }, [query.toString()]);
  useEffect(() => setOpen(0), [query.toString()]);
  const missing = res.error && res.error.status === 404 && !res.error.param;
  return (
    <section>
      <header class="page-head">
        <h1>Root cause</h1>
        {!trace && <TimeRange path={path} query={query} />}
        <Loading on={res.loading && (service || trace)} />
      </header>
      <Form path={path} query={query} services={services.data ? services.data.services : []} />
      {missing ? <div class="error-box">Root cause analysis is not available on this server (no /api/v1/rca).</div> : <ErrorBox error={res.error} />}
      {!service && !trace && <Empty>Choose a service to rank the likely causes of its errors and latency in the window against the window before it, or give a trace ID.</Empty>}
      {res.data && (
        <>
          <p class="rca-summary">
            {res.data.mode === 'trace' ? <>Trace <a href={`/traces/${res.data.traceId}`}>{res.data.traceId}</a> of {res.data.service}. </> : <>Service {res.data.service}. </>}
            <Window label="window" w={res.data.window} /> · <Window label="baseline" w={res.data.baseline} />
            {res.data.examined && res.data.examined.sampled ? ' · sampled' : ''}
          </p>
          {!res.data.suspects.length && <Empty>No suspect: nothing changed enough to explain.</Empty>}
          <ol class="suspects">
            {res.data.suspects.map((s, i) => <Suspect s={s} open={open === i} onToggle={() => setOpen(open === i ? -1 : i)} />)}
          </ol>
        </>
      )}
    </section>
  );
}
