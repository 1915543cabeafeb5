// Pieces shared by the pages: time range picker, charts (uPlot), messages, helpers for
// loading data.
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

import { navigate, href, queryObject } from './lib/router.js';
import { RANGES } from './lib/time.js';
import { fmtTime } from './lib/fmt.js';

/* Runs load(signal) whenever deps change; { data, error, loading }. A newer load aborts the
 * older one, so a slow answer never overwrites a newer one. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  useEffect(() => {
    const ac = new AbortController();
    setState((s) => ({ data: s.data, error: null, loading: true }));
    load(ac.signal).then(
      (data) => { if (!ac.signal.aborted) setState({ data, error: null, loading: false }); },
      (error) => { if (!ac.signal.aborted) setState({ data: null, error, loading: false }); },
    );
    return () => ac.abort();
  }, deps);
  return state;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return (
    <div class="error-box" role="alert">
      {error.status ? `${error.status}: ` : ''}{error.message}{error.param ? ` (parameter ${error.param})` : ''}
    </div>
  );
}

export function Loading({ on }) {
  return on ? <span class="loading">loading…</span> : null;
}

/* Relative ranges, or the absolute window the URL holds; changing it keeps the other
 * parameters of the page. */
export function TimeRange({ path, query }) {
  const absolute = Number(query.get('start')) > 0 && Number(query.get('end')) > 0;
  const value = absolute ? 'custom' : query.get('range') || '1h';
  const change = (e) => {
    const o = queryObject(query, ['tag', 'attr', 'q']);
    delete o.start;
    delete o.end;
    o.range = e.target.value;
    navigate(href(path, o));
  };
  return (
    <label class="range">
      <span>Time</span>
      <select value={value} onChange={change} name="range" aria-label="time range">
        {absolute && <option value="custom">{fmtTime(Number(query.get('start')))} → {fmtTime(Number(query.get('end')), false)}</option>}
        {RANGES.map(([n]) => <option value={n}>Last {n}</option>)}
      </select>
    </label>
  );
}

/* A uPlot chart bound to a div; rebuilt when data or options change. */
function UPlot({ opts, data, class: cls, onCreate }) {
  const el = useRef(null);
  useEffect(() => {
    const width = opts.width || el.current.clientWidth || 600;
    const u = new uPlot({ ...opts, width }, data, el.current);
    if (onCreate) onCreate(u);
    let ro;
    if (!opts.width && window.ResizeObserver) {
      ro = new ResizeObserver(() => {
        const w = el.current && el.current.clientWidth;
        if (w && w !== u.width) u.setSize({ width: w, height: opts.height });
      });
      ro.observe(el.current);
    }
    return () => { if (ro) ro.disconnect(); u.destroy(); };
  }, [opts, data]);
  return <div class={cls} ref={el} />;
}

/* A tiny line without axes: xs in seconds, ys the values (null for gaps). */
export function Sparkline({ xs, ys, color = '#3b6ea8', title }) {
  const [opts] = useState(() => ({
    width: 120, height: 28, legend: { show: false }, cursor: { show: false },
    scales: { x: { time: false }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: color, width: 1.5, fill: color + '22', points: { show: false } }],
  }));
  return <span class="spark" title={title}><UPlot opts={opts} data={[xs, ys]} /></span>;
}

/* Durations over time: one point per trace, errors in red; clicking a point calls onPick
 * with its index in points. points: [{t (ms), ms, error}]. */
export function DurationScatter({ points, onPick }) {
  const pick = useRef(onPick);
  pick.current = onPick;
  const sorted = [...points.map((p, i) => ({ ...p, i }))].sort((a, b) => a.t - b.t);
  const xs = sorted.map((p) => p.t / 1000);
  const ok = sorted.map((p) => (p.error ? null : p.ms));
  const bad = sorted.map((p) => (p.error ? p.ms : null));
  const data = [xs, ok, bad];
  const dot = (stroke, fill) => ({ stroke, fill, paths: () => null, points: { show: true, size: 7, stroke, fill } });
  const opts = {
    height: 180,
    legend: { show: false },
    scales: { y: { distr: 3 } },
    cursor: { points: { size: 10 }, drag: { x: false, y: false } },
    axes: [{}, { label: 'duration', size: 60, values: (u, vs) => vs.map((v) => (v == null ? '' : v >= 1000 ? `${v / 1000}s` : `${v}ms`)) }],
    series: [{}, { label: 'ok', ...dot('#3b6ea8', '#3b6ea888') }, { label: 'error', ...dot('#c53030', '#c53030aa') }],
    hooks: {
      ready: [(u) => {
        u.over.addEventListener('click', () => {
          const i = u.cursor.idx;
          if (i != null && sorted[i]) pick.current(sorted[i].i);
        });
        u.over.style.cursor = 'pointer';
      }],
    },
  };
  return <UPlot class="scatter" opts={opts} data={data} />;
}

/* A sortable column header: clicking sets sort (and flips dir when already sorted by it). */
export function SortHeader({ label, field, sort, dir, onSort, num }) {
  const active = sort === field;
  return (
    <th class={`sortable${num ? ' num' : ''}${active ? ' sorted' : ''}`} aria-sort={active ? (dir === 'asc' ? 'ascending' : 'descending') : 'none'}>
      <button type="button" onClick={() => onSort(field, active && dir === 'desc' ? 'asc' : 'desc')}>
        {label}{active ? (dir === 'asc' ? ' ▲' : ' ▼') : ''}
      </button>
    </th>
  );
}

export function Empty({ children }) {
  return <div class="empty">{children}</div>;
}
