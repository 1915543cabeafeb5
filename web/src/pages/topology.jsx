// Topology: the service graph from /api/v1/topology drawn by cytoscape. Nodes are sized by
// request rate, edges coloured by error ratio, p99 on hover; clicking a service shows its
// figures, operations and links to its traces, logs and root cause.
import { useEffect, useRef } from 'preact/hooks';
import cytoscape from 'cytoscape';

import { api } from '../lib/api.js';
import { navigate, href, queryObject } from '../lib/router.js';
import { windowOf, apiWindow } from '../lib/time.js';
import { fmtDuration, fmtRate, fmtPct, fmtCount } from '../lib/fmt.js';
import { useLoad, ErrorBox, Loading, TimeRange, Empty } from '../components.jsx';

/* Red as the error ratio goes from 0 to 20%. */
function edgeColor(ratio) {
  const t = Math.min(1, (ratio || 0) / 0.2);
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(110, 197)}, ${mix(140, 48)}, ${mix(160, 48)})`;
}

function Graph({ topo, selected, onSelect }) {
  const el = useRef(null);
  const tip = useRef(null);
  const cyRef = useRef(null);
  useEffect(() => {
    const rates = topo.nodes.map((n) => n.rate || 0);
    const maxRate = Math.max(1e-9, ...rates);
    const known = new Set(topo.nodes.map((n) => n.service));
    const elements = [];
    for (const n of topo.nodes) {
      elements.push({ data: { id: n.service, label: n.service, size: 34 + 46 * Math.sqrt((n.rate || 0) / maxRate), color: n.errorRatio > 0.05 ? '#c53030' : '#3b6ea8', n } });
    }
    for (const e of topo.edges) {
      for (const s of [e.caller, e.callee]) {
        if (!known.has(s)) {
          known.add(s);
          elements.push({ data: { id: s, label: s, size: 30, color: '#a0aec0', n: { service: s, uninstrumented: true } } });
        }
      }
      elements.push({ data: { id: `${e.caller}->${e.callee}`, source: e.caller, target: e.callee, color: edgeColor(e.errorRatio), width: 1.5 + Math.min(6, Math.log10(1 + e.count)), e } });
    }
    const cy = cytoscape({
      container: el.current,
      elements,
      wheelSensitivity: 0.3,
      style: [
        { selector: 'node', style: { 'background-color': 'data(color)', width: 'data(size)', height: 'data(size)', label: 'data(label)', 'font-size': 12, 'text-valign': 'bottom', 'text-margin-y': 5, color: '#1a202c' } },
        { selector: 'node:selected', style: { 'border-width': 4, 'border-color': '#f6ad55' } },
        { selector: 'edge', style: { width: 'data(width)', 'line-color': 'data(color)', 'target-arrow-color': 'data(color)', 'target-arrow-shape': 'triangle', 'curve-style': 'bezier', 'arrow-scale': 1.2 } },
      ],
      layout: { name: 'breadthfirst', directed: true, padding: 30, spacingFactor: 1.2 },
    });
    cy.maxZoom(2.5);
    el.current._cy = cy; // for the console's browser tests: node positions to click
    cyRef.current = cy;
    const show = (evt, text) => {
      const t = tip.current;
      t.textContent = text;
      t.style.left = `${evt.renderedPosition.x + 12}px`;
      t.style.top = `${evt.renderedPosition.y + 12}px`;
      t.hidden = false;
    };
    cy.on('mouseover', 'node', (evt) => {
      const n = evt.target.data('n');
      show(evt, n.uninstrumented ? `${n.service} (not instrumented)` :
        `${n.service}\n${fmtRate(n.rate)} · errors ${fmtPct(n.errorRatio)}\np50 ${fmtDuration(n.p50Ms)} · p99 ${fmtDuration(n.p99Ms)}`);
    });
    cy.on('mouseover', 'edge', (evt) => {
      const e = evt.target.data('e');
      show(evt, `${e.caller} → ${e.callee}\n${fmtCount(e.count)} calls · errors ${fmtPct(e.errorRatio)}\np99 ${fmtDuration(e.p99Ms)} (client ${fmtDuration(e.clientP99Ms)})`);
    });
    cy.on('mouseout', () => { tip.current.hidden = true; });
    cy.on('tap', 'node', (evt) => onSelect(evt.target.id()));
    cy.on('tap', (evt) => { if (evt.target === cy) onSelect(''); });
    return () => cy.destroy();
  }, [topo]);
  useEffect(() => {
    const cy = cyRef.current;
    if (!cy) return;
    cy.nodes().unselect();
    if (selected) cy.getElementById(selected).select();
  }, [topo, selected]);
  return (
    <div class="graph-wrap">
      <div class="graph" ref={el} data-nodes={topo.nodes.length} data-edges={topo.edges.length} />
      <div class="tip" ref={tip} hidden />
      <div class="legend">node size: request rate · edge colour: error ratio (grey 0% → red ≥ 20%) · hover for p99</div>
    </div>
  );
}

function ServicePanel({ service, node, edges, w }) {
  const ops = useLoad((signal) => api(`/api/v1/services/${encodeURIComponent(service)}/operations`, {}, { signal }), [service]);
  const win = w.range ? { range: w.range } : { start: Math.floor(w.start), end: Math.ceil(w.end) };
  return (
    <aside class="panel" data-panel="service">
      <h2>{service}</h2>
      {node && node.count != null && (
        <dl class="figures">
          <dt>Requests</dt><dd>{fmtCount(node.count)} ({fmtRate(node.rate)})</dd>
          <dt>Errors</dt><dd>{fmtPct(node.errorRatio)}</dd>
          <dt>p50 / p95 / p99</dt><dd>{fmtDuration(node.p50Ms)} / {fmtDuration(node.p95Ms)} / {fmtDuration(node.p99Ms)}</dd>
        </dl>
      )}
      <p class="links">
        <a href={href('/traces', { service, ...win })}>Traces</a>
        <a href={href('/logs', { service, ...win })}>Logs</a>
        <a href={href('/rca', { service })}>Root cause</a>
      </p>
      <h3>Operations</h3>
      <ErrorBox error={ops.error} />
      <ul class="ops">
        {ops.data && ops.data.operations.map((o) => (
          <li><a href={href('/traces', { service, operation: o.name, ...win })}>{o.name}</a> <span class="muted">{o.kind}</span></li>
        ))}
      </ul>
      {edges.length > 0 && <h3>Calls</h3>}
      <ul class="ops">
        {edges.map((e) => (
          <li>{e.caller} → {e.callee}: {fmtCount(e.count)} calls, {fmtPct(e.errorRatio)} errors, p99 {fmtDuration(e.p99Ms)}</li>
        ))}
      </ul>
    </aside>
  );
}

export default function Topology({ path, query }) {
  const w = windowOf(query);
  const selected = query.get('service') || '';
  const { data, error, loading } = useLoad((signal) => api('/api/v1/topology', apiWindow(w), { signal }),
    [query.get('range'), query.get('start'), query.get('end')]);
  const onSelect = (s) => navigate(href(path, { ...queryObject(query), service: s }), { replace: true });
  const node = data && data.nodes.find((n) => n.service === selected);
  return (
    <section>
      <header class="page-head">
        <h1>Topology</h1>
        <TimeRange path={path} query={query} />
        <Loading on={loading} />
      </header>
      <ErrorBox error={error} />
      {data && !data.nodes.length && !data.edges.length && <Empty>No calls between services in this window.</Empty>}
      {data && (data.nodes.length > 0 || data.edges.length > 0) && (
        <div class="topology">
          <Graph topo={data} selected={selected} onSelect={onSelect} />
          {selected ? <ServicePanel service={selected} node={node} w={w} edges={data.edges.filter((e) => e.caller === selected || e.callee === selected)} />
            : <aside class="panel muted">Click a service for its operations, traces and logs.</aside>}
        </div>
      )}
      {data && data.edges.length > 0 && (
        <table class="grid edges">
          <thead><tr><th>Caller</th><th>Callee</th><th class="num">Calls</th><th class="num">Errors</th><th class="num">p50</th><th class="num">p99</th><th class="num">Client p99</th></tr></thead>
          <tbody>
            {data.edges.map((e) => (
              <tr data-edge={`${e.caller}->${e.callee}`}>
                <td><a href={href(path, { ...queryObject(query), service: e.caller })}>{e.caller}</a></td>
                <td><a href={href(path, { ...queryObject(query), service: e.callee })}>{e.callee}</a>{e.uninstrumented ? ' (not instrumented)' : ''}</td>
                <td class="num">{fmtCount(e.count)}</td>
                <td class={`num${e.errorRatio > 0.05 ? ' bad' : ''}`}>{fmtPct(e.errorRatio)}</td>
                <td class="num">{fmtDuration(e.p50Ms)}</td>
                <td class="num">{fmtDuration(e.p99Ms)}</td>
                <td class="num">{fmtDuration(e.clientP99Ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

