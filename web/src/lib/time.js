// The time window of a page: a relative range (range=15m, the default 1h) ending now, or an
// absolute start/end in milliseconds since the epoch (start=...&end=...), both in the URL.
export const RANGES = [
  ['5m', 5 * 60e3], ['15m', 15 * 60e3], ['1h', 3600e3], ['6h', 6 * 3600e3], ['24h', 24 * 3600e3], ['7d', 7 * 24 * 3600e3],
];

export function windowOf(query, fallback = '1h') {
  const s = Number(query.get('start'));
  const e = Number(query.get('end'));
  if (s > 0 && e > s) return { start: s, end: e, range: '' };
  const name = query.get('range') || fallback;
  const r = RANGES.find(([n]) => n === name) || RANGES.find(([n]) => n === fallback);
  const end = Date.now();
  return { start: end - r[1], end, range: r[0] };
}

/* The API's form of a window: integers with their unit. */
export function apiWindow(w) {
  return { start: `${Math.floor(w.start)}ms`, end: `${Math.ceil(w.end)}ms` };
}
