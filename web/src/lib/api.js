// The console's only way to data: the public API on the same origin (docs/query.md,
// docs/rca.md), with the bearer token when the server asks for one (api.token).
const TOKEN_KEY = 'cairn.token';

export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new Event('cairn-token'));
}

function headers() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

export function apiUrl(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.filter((x) => x !== '' && x != null).forEach((x) => q.append(k, x));
    else if (v !== '' && v != null) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function failure(r) {
  let msg = `${r.status} ${r.statusText}`;
  let param;
  const text = await r.text();
  try {
    const j = JSON.parse(text);
    if (j.error) msg = typeof j.error === 'string' ? j.error : JSON.stringify(j.error);
    param = j.param;
  } catch {
    if (text.trim()) msg = text.trim();
  }
  if (r.status === 401) window.dispatchEvent(new Event('cairn-unauthorized'));
  return new ApiError(r.status, msg, param);
}

/* GET path?params as JSON. Rejects with ApiError (status, message, param). */
export async function api(path, params = {}, { signal } = {}) {
  const r = await fetch(apiUrl(path, params), { headers: headers(), signal });
  if (!r.ok) throw await failure(r);
  return r.json();
}

/* POST path with a JSON body; the answer as JSON. Rejects with ApiError. */
export async function apiPost(path, body, { signal } = {}) {
  const r = await fetch(path, {
    method: 'POST', signal, body: JSON.stringify(body),
    headers: { ...headers(), 'Content-Type': 'application/json' },
  });
  if (!r.ok) throw await failure(r);
  return r.json();
}

/* Follows a newline-delimited JSON stream (the live log tail): onRecord for every object,
 * empty keep-alive lines skipped. Resolves when the stream ends; abort with signal. */
export async function stream(path, params, onRecord, { signal } = {}) {
  const r = await fetch(apiUrl(path, params), { headers: headers(), signal });
  if (!r.ok) throw await failure(r);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onRecord(JSON.parse(line));
    }
  }
}
