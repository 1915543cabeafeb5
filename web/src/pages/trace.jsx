// One trace (GET /api/v1/traces/{id}): a waterfall of its spans with the critical path
// marked, and the selected span's details (attributes, events, links, status, code link).
import { api } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { fmtDuration, fmtTime, nsToMs, diffMs, anyValue, attr, KINDS, STATUS, serviceColor } from '../lib/fmt.js';
import { useLoad, ErrorBox, Loading } from '../components.jsx';

/* Spans as a tree in start order: [{span, depth, children}] flattened depth-first. Spans
 * whose parent is missing are roots. */
function layout(spans) {
  const byId = new Map(spans.map((s) => [s.spanId, { span: s, children: [] }]));
  const roots = [];
  for (const n of byId.values()) {
    const p = n.span.parentSpanId && byId.get(n.span.parentSpanId);
    if (p && p !== n) p.children.push(n);
    else roots.push(n);
  }
  const order = (a, b) => (BigInt(a.span.startTimeUnixNano) < BigInt(b.span.startTimeUnixNano) ? -1 : 1);
  const rows = [];
  const seen = new Set();
  const walk = (n, depth) => {
    if (seen.has(n)) return; // a parent cycle in damaged data
    seen.add(n);
    rows.push({ ...n, depth });
    n.children.sort(order).forEach((c) => walk(c, depth + 1));
  };
  roots.sort(order).forEach((r) => walk(r, 0));
  return { rows, byId, roots };
}

/* The critical path, walked back from each root's end: among the children still running
 * at the cursor, the one that ends last is on the path up to its end (recursively); the
 * gaps are the parent's own time. Returns Map spanId -> [[startMs, endMs]] (relative to t0). */
export function criticalPath(roots, t0) {
  const segs = new Map();
  const add = (id, a, b) => {
    if (b <= a) return;
    if (!segs.has(id)) segs.set(id, []);
    segs.get(id).push([a, b]);
  };
  const walk = (n, cap, depth) => {
    if (depth > 512) return;
    const s = diffMs(t0, n.span.startTimeUnixNano);
    const e = Math.min(diffMs(t0, n.span.endTimeUnixNano), cap);
    let cursor = e;
    const kids = n.children.map((c) => ({ c, s: diffMs(t0, c.span.startTimeUnixNano), e: diffMs(t0, c.span.endTimeUnixNano) }))
      .sort((a, b) => b.e - a.e || a.s - b.s);
    for (const k of kids) {
      if (cursor <= s) break;
      if (k.s >= cursor) continue;
      const ke = Math.min(k.e, cursor);
      add(n.span.spanId, ke, cursor);
      walk(k.c, ke, depth + 1);
      cursor = Math.max(k.s, s);
    }
    add(n.span.spanId, s, cursor);
  };
  roots.forEach((r) => walk(r, Infinity, 0));
  return segs;
}

function Attrs({ list }) {
  if (!list || !list.length) return <p class="muted">none</p>;
  return (
    <table class="kv">
      <tbody>{list.map((a) => <tr><th>{a.key}</th><td>{anyValue(a.value)}</td></tr>)}</tbody>
    </table>
  );
}

function SpanDetails({ span, t0, traceId, win }) {
  const code = attr(span.attributes, 'code.filepath');
  const st = span.status || {};
  return (
    <aside class="panel span-details" data-span={span.spanId}>
      <h2><span class="dot" style={{ background: serviceColor(span.resource.serviceName) }} />{span.resource.serviceName}: {span.name}</h2>
      <dl class="figures">
        <dt>Kind</dt><dd>{KINDS[span.kind] || span.kind}</dd>
        <dt>Status</dt><dd class={st.code === 2 ? 'bad' : ''}>{STATUS[st.code] || st.code}{st.message ? `: ${st.message}` : ''}</dd>
        <dt>Start</dt><dd>+{fmtDuration(diffMs(t0, span.startTimeUnixNano))}</dd>
        <dt>Duration</dt><dd>{fmtDuration(diffMs(span.startTimeUnixNano, span.endTimeUnixNano))}</dd>
        <dt>Span ID</dt><dd><code>{span.spanId}</code></dd>
        <dt>Parent</dt><dd><code>{span.parentSpanId || '–'}</code></dd>
        {code && <><dt>Code</dt><dd>{span.codeUrl ? <a class="code-link" href={span.codeUrl} target="_blank" rel="noopener noreferrer">{code}:{attr(span.attributes, 'code.lineno') || ''}</a> : `${code}:${attr(span.attributes, 'code.lineno') || ''}`}</dd></>}
      </dl>
      <p class="links">
        <a class="logs-link" href={href('/logs', { traceId, ...win })}>Logs of this trace</a>
      </p>
      <h3>Attributes</h3>
      <Attrs list={span.attributes} />
      <h3>Events</h3>
      {span.events && span.events.length ? (
        <ul class="events">
          {span.events.map((e) => (
            <li><strong>{e.name}</strong> <span class="muted">+{fmtDuration(diffMs(t0, e.timeUnixNano))}</span><Attrs list={e.attributes} /></li>
          ))}
        </ul>
      ) : <p class="muted">none</p>}
      <h3>Links</h3>
      {span.links && span.links.length ? (
        <ul class="events">
          {span.links.map((l) => (
            <li><a href={href(`/traces/${l.traceId}`, { span: l.spanId })}>{l.traceId}</a> <code class="muted">{l.spanId}</code><Attrs list={l.attributes} /></li>
          ))}
        </ul>
      ) : <p class="muted">none</p>}
      <h3>Resource</h3>
      <Attrs list={span.resource.attributes} />
      <p class="muted">Scope {span.scope.name} {span.scope.version}</p>
    </aside>
  );
}

export default function Trace({ path, query, id }) {
  const res = useLoad((signal) => api(`/api/v1/traces/${encodeURIComponent(id)}`, {}, { signal }), [id]);
  const spanSel = query.get('span') || '';
  const select = (sid) => navigate(href(path, { ...queryObject(query), span: sid }), { replace: true });
  if (!res.data) {
    return (
      <section>
        <header class="page-head"><h1>Trace <code>{id}</code></h1><Loading on={res.loading} /></header>
        <ErrorBox error={res.error} />
      </section>
    );
  }
  const spans = res.data.spans;
  const { rows, roots } = layout(spans);
  let t0 = spans[0].startTimeUnixNano;
  let t1 = spans[0].endTimeUnixNano;
  for (const s of spans) {
    if (BigInt(s.startTimeUnixNano) < BigInt(t0)) t0 = s.startTimeUnixNano;
    if (BigInt(s.endTimeUnixNano) > BigInt(t1)) t1 = s.endTimeUnixNano;
  }
  const total = Math.max(diffMs(t0, t1), 1e-6);
  const cp = criticalPath(roots, t0);
  const root = roots[0].span;
  const services = [...new Set(spans.map((s) => s.resource.serviceName))];
  const errors = spans.filter((s) => s.status && s.status.code === 2).length;
  const sel = spans.find((s) => s.spanId === spanSel) || root;
  const startMs = nsToMs(t0);
  const win = { start: Math.floor(startMs - 60e3), end: Math.ceil(nsToMs(t1) + 60e3) };
  const pct = (ms) => `${(100 * ms) / total}%`;
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return (
    <section>
      <header class="page-head">
        <h1>{root.resource.serviceName}: {root.name}</h1>
        <span class="muted"><code>{id}</code></span>
      </header>
      <p class="trace-summary">
        <span>{fmtTime(startMs)}</span>
        <span>duration <strong>{fmtDuration(total)}</strong></span>
        <span>{spans.length} spans</span>
        <span class={errors ? 'bad' : ''}>{errors} errors</span>
        <span>{services.map((s) => <span class="chip" style={{ borderColor: serviceColor(s) }}>{s}</span>)}</span>
        <a class="logs-link" href={href('/logs', { traceId: id, ...win })}>Logs of this trace</a>
        <a href={href('/rca', { trace: id })}>Root cause of this trace</a>
      </p>
      <div class="trace-body">
        <div class="waterfall" role="tree">
          <div class="wf-row wf-head">
            <div class="wf-name">Span <span class="cp-key">critical path</span></div>
            <div class="wf-bar">{ticks.map((t) => <span class="tick" style={{ left: `${t * 100}%` }}>{fmtDuration(total * t)}</span>)}</div>
          </div>
          {rows.map(({ span, depth }) => {
            const s = diffMs(t0, span.startTimeUnixNano);
            const d = Math.max(diffMs(span.startTimeUnixNano, span.endTimeUnixNano), 0);
            const err = span.status && span.status.code === 2;
            const onCp = cp.has(span.spanId);
            return (
              <div class={`wf-row${span.spanId === sel.spanId ? ' selected' : ''}${err ? ' error' : ''}${onCp ? ' critical' : ''}`}
                role="treeitem" data-span={span.spanId} onClick={() => select(span.spanId)}>
                <div class="wf-name" style={{ paddingLeft: `${6 + depth * 14}px` }} title={`${span.resource.serviceName}: ${span.name}`}>
                  <span class="dot" style={{ background: serviceColor(span.resource.serviceName) }} />
                  <span class="svc">{span.resource.serviceName}</span> {span.name}
                </div>
                <div class="wf-bar">
                  <span class="bar" style={{ left: pct(s), width: `max(2px, ${pct(d)})`, background: err ? '#c53030' : serviceColor(span.resource.serviceName) }} />
                  {(cp.get(span.spanId) || []).map(([a, b]) => <span class="cp" style={{ left: pct(a), width: pct(b - a) }} />)}
                  <span class="dur" style={{ left: `calc(${pct(s + d)} + 4px)` }}>{fmtDuration(d)}</span>
                </div>
              </div>
            );
          })}
        </div>
        <SpanDetails span={sel} t0={t0} traceId={id} win={win} />
      </div>
    </section>
  );
}
