// The console's shell: navigation, the token prompt, and the page table. Each page is its
// own chunk, loaded when first shown.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';

import { useLocation, interceptLinks } from './lib/router.js';
import { setToken, token } from './lib/api.js';
import './style.css';

import Services from './pages/services.jsx';
import Traces from './pages/traces.jsx';
import Trace from './pages/trace.jsx';
import Logs from './pages/logs.jsx';
import Rca from './pages/rca.jsx';
import Registry from './pages/registry.jsx';
import Gateway from './pages/gateway.jsx';
import Demo from './pages/demo.jsx';

/* The pages: path prefix, title, component. They are small and come in the first script,
 * except the topology, whose graph library is most of the console's bytes: it loads when
 * first shown. A page's name is in src/console/console.c's page list too. */
const loadTopology = () => import('./pages/topology.jsx');
const PAGES = [
  { name: 'services', title: 'Services', page: Services },
  { name: 'topology', title: 'Topology', load: loadTopology },
  { name: 'traces', title: 'Traces', page: Traces },
  { name: 'logs', title: 'Logs', page: Logs },
  { name: 'rca', title: 'Root cause', page: Rca },
  { name: 'gateway', title: 'Gateway', page: Gateway },
  { name: 'registry', title: 'Registry', page: Registry },
  { name: 'demo', title: 'Demo', page: Demo },
];

function Lazy({ load, ...props }) {
  const [mod, setMod] = useState(null);
  const [err, setErr] = useState(null);
  useEffect(() => {
    let live = true;
    setMod(null);
    load().then((m) => live && setMod(m), (e) => live && setErr(e));
    return () => { live = false; };
  }, [load]);
  if (err) return <div class="error-box">Could not load this page: {String(err)}</div>;
  if (!mod) return <span class="loading">loading…</span>;
  const Page = mod.default;
  return <Page {...props} />;
}

function TokenPrompt() {
  const [shown, setShown] = useState(false);
  const [value, setValue] = useState('');
  useEffect(() => {
    const f = () => setShown(true);
    window.addEventListener('cairn-unauthorized', f);
    return () => window.removeEventListener('cairn-unauthorized', f);
  }, []);
  if (!shown) return null;
  return (
    <form class="token" onSubmit={(e) => { e.preventDefault(); setToken(value.trim()); setShown(false); location.reload(); }}>
      <span>{token() ? 'The API refused the token.' : 'This server needs an API token (api.token).'}</span>
      <input type="password" value={value} onInput={(e) => setValue(e.target.value)} placeholder="token" aria-label="API token" />
      <button type="submit">Use</button>
    </form>
  );
}

function NotFound({ path }) {
  return (
    <section>
      <h1>Not found</h1>
      <p>The console has no page at <code>{path}</code>. <a href="/services">Services</a></p>
    </section>
  );
}

function App() {
  const { path, query } = useLocation();
  const parts = path.split('/').filter(Boolean);
  const first = parts[0] || 'services';
  const page = PAGES.find((p) => p.name === first);
  useEffect(() => {
    document.title = `${page ? page.title : 'Not found'} · Cairn`;
  }, [first]);
  let body;
  if (first === 'traces' && parts.length === 2) {
    body = <Trace path={path} query={query} id={decodeURIComponent(parts[1])} />;
  } else if (page && parts.length <= 1) {
    const Page = page.page;
    body = Page ? <Page path={`/${page.name}`} query={query} /> : <Lazy load={page.load} path={`/${page.name}`} query={query} />;
  } else {
    body = <NotFound path={path} />;
  }
  return (
    <>
      <nav class="top">
        <a class="brand" href="/services">Cairn</a>
        {PAGES.map((p) => <a href={`/${p.name}`} class={p.name === first ? 'active' : ''}>{p.title}</a>)}
      </nav>
      <TokenPrompt />
      <main>{body}</main>
    </>
  );
}

interceptLinks(document);
render(<App />, document.getElementById('app'));
