// Demo: the processes of `cairn up --demo` (GET /api/v1/demo) and the fault switches
// (POST /api/v1/demo/faults, docs/demo.md): inject an error, added latency or a bad version
// into one service, then watch the Root cause page name it.
import { api } from '../lib/api.js';
import { href } from '../lib/router.js';
import { useLoad, ErrorBox, Loading } from '../components.jsx';
import DemoFaults from '../faults.jsx';

export default function Demo() {
  const res = useLoad((signal) => api('/api/v1/demo', {}, { signal }), []);
  const missing = res.error && res.error.status === 404;
  const d = res.data;
  return (
    <section>
      <header class="page-head">
        <h1>Demo</h1>
        <Loading on={res.loading} />
      </header>
      {missing ? <div class="error-box">The demo is not running in this server: start cairn up --demo.</div> : <ErrorBox error={res.error} />}
      {d && (
        <>
          <DemoFaults />
          <p class="muted">
            The shop behind the gateway at <code>{d.gateway}</code>, {d.rps} requests/s, calls via {d.route}.
            After injecting a fault, open <a href={href('/rca', { service: 'checkout', range: '5m' })}>the root cause of checkout</a> or
            the <a href="/gateway">Gateway</a> page.
          </p>
          <table class="grid processes">
            <thead><tr><th>Process</th><th>Kind</th><th class="num">PID</th><th class="num">Port</th><th>State</th><th class="num">Restarts</th><th /></tr></thead>
            <tbody>
              {d.processes.map((p) => (
                <tr data-process={p.name}>
                  <td>{p.name}</td>
                  <td>{p.kind}</td>
                  <td class="num">{p.pid || '–'}</td>
                  <td class="num">{p.port || '–'}</td>
                  <td class={p.state === 'running' ? 'ok' : 'bad'}>{p.state}</td>
                  <td class="num">{p.restarts}</td>
                  <td class="links">{p.kind === 'service' && <a href={href('/rca', { service: p.name, range: '5m' })}>root cause</a>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
