// Formatting of times, durations, rates and OTLP values.

/* Nanoseconds since the epoch (a decimal string, past 2^53) to milliseconds. */
export function nsToMs(ns) {
  if (ns == null || ns === '') return 0;
  const s = String(ns);
  return s.length > 6 ? Number(s.slice(0, -6)) + Number(s.slice(-6)) / 1e6 : Number(s) / 1e6;
}

/* b - a, both nanosecond strings, in milliseconds (exact to the nanosecond). */
export function diffMs(a, b) {
  return Number(BigInt(b) - BigInt(a)) / 1e6;
}

export function fmtDuration(ms) {
  if (ms == null || Number.isNaN(ms)) return '–';
  if (ms === 0) return '0';
  if (ms < 1) return `${(ms * 1000).toFixed(ms < 0.01 ? 2 : 0)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

export function fmtRate(perSec) {
  if (perSec == null) return '–';
  if (perSec === 0) return '0';
  if (perSec < 0.01) return `${(perSec * 60).toFixed(2)}/min`;
  return `${perSec < 10 ? perSec.toFixed(2) : perSec.toFixed(1)}/s`;
}

export function fmtPct(ratio) {
  if (ratio == null) return '–';
  if (ratio === 0) return '0%';
  const p = ratio * 100;
  return `${p < 1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}

export function fmtCount(n) {
  if (n == null) return '–';
  return n >= 10000 ? `${(n / 1000).toFixed(1)}k` : String(Math.round(n * 100) / 100);
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/* A local wall-clock time with milliseconds: "2024-05-01 12:00:00.123". */
export function fmtTime(ms, withDate = true) {
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
}

/* An OTLP AnyValue as text. */
export function anyValue(v) {
  if (v == null) return '';
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return String(v.intValue);
  if ('doubleValue' in v) return String(v.doubleValue);
  if ('boolValue' in v) return String(v.boolValue);
  if ('bytesValue' in v) return v.bytesValue;
  if ('arrayValue' in v) return `[${(v.arrayValue.values || []).map(anyValue).join(', ')}]`;
  if ('kvlistValue' in v) return `{${(v.kvlistValue.values || []).map((kv) => `${kv.key}: ${anyValue(kv.value)}`).join(', ')}}`;
  return JSON.stringify(v);
}

export function attr(list, key) {
  const a = (list || []).find((x) => x.key === key);
  return a ? anyValue(a.value) : undefined;
}

export const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
export const STATUS = ['unset', 'ok', 'error'];

/* OTLP severity number (1..24) to its class: trace, debug, info, warn, error, fatal. */
export function severityClass(n) {
  const names = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  return n >= 1 && n <= 24 ? names[Math.floor((n - 1) / 4)] : 'unset';
}

/* A stable colour per service name. */
export function serviceColor(name) {
  let h = 0;
  for (const c of name || '') h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 55%, 55%)`;
}
