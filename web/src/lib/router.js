// Client-side routing on the History API: the path names the page, the query string holds
// its state, so every view is a URL that can be shared. The server answers index.html for
// the console's page paths (src/console/console.c).
import { useEffect, useState } from 'preact/hooks';

const listeners = new Set();

function notify() {
  for (const f of listeners) f();
}

window.addEventListener('popstate', notify);

/* Goes to url (path + query). replace: change the current history entry (state that is
 * refined in place, like a sort order) instead of adding one. */
export function navigate(url, { replace = false } = {}) {
  const next = new URL(url, location.href);
  if (next.pathname + next.search === location.pathname + location.search) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', next.pathname + next.search + next.hash);
  window.scrollTo(0, 0);
  notify();
}

/* The current path and query; re-renders the caller when either changes. */
export function useLocation() {
  const [, bump] = useState(0);
  useEffect(() => {
    const f = () => bump((n) => n + 1);
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search), search: location.search };
}

/* Plain <a href="/..."> links within the console navigate without reloading the page. */
export function interceptLinks(root) {
  root.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest && e.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download')) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
    e.preventDefault();
    navigate(url.pathname + url.search + url.hash);
  });
}

/* A URL: path plus the non-empty parameters (arrays repeat the key). */
export function href(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.filter((x) => x !== '' && x != null).forEach((x) => q.append(k, x));
    else if (v !== '' && v != null && v !== false) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/* The query string as an object for href(): keys that repeat become arrays. */
export function queryObject(query, multi = []) {
  const o = {};
  for (const k of new Set(query.keys())) o[k] = multi.includes(k) ? query.getAll(k) : query.get(k);
  return o;
}
