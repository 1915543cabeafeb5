// The demo's fault switches (POST /api/v1/demo/faults, docs/demo.md): pick a service and a
// fault, inject it, clear it. On the Demo page, while `cairn up --demo` runs.
import { useEffect, useState } from 'preact/hooks';

import { api, apiPost } from './lib/api.js';
import { ErrorBox } from './components.jsx';

const LABELS = { error: 'errors', latency: 'added latency', 'bad-version': 'bad version' };

function describe(f) {
  if (f.fault === 'latency') return `+${f.latencyMs} ms`;
  return `${LABELS[f.fault] || f.fault}${f.errorRate != null ? ` ${Math.round(f.errorRate * 100)}%` : ''}`;
}

export default function DemoFaults() {
  const [state, setState] = useState(null); // {services, kinds, faults}
  const [service, setService] = useState('payments');
  const [fault, setFault] = useState('error');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  useEffect(() => {
    const ac = new AbortController();
    api('/api/v1/demo/faults', {}, { signal: ac.signal }).then(setState, () => {});
    return () => ac.abort();
  }, []);
  if (!state) return null; // no demo in this server
  const send = async (svc, f) => {
    setBusy(true);
    setError(null);
    try {
      setState(await apiPost('/api/v1/demo/faults', { service: svc, fault: f }));
    } catch (e) {
      setError(e);
    }
    setBusy(false);
  };
  const active = Object.entries(state.faults || {});
  return (
    <div class="panel demo-faults" data-panel="demo-faults">
      <form onSubmit={(e) => { e.preventDefault(); send(service, fault); }}>
        <strong>Demo faults</strong>{' '}
        <select name="service" aria-label="demo service" value={service} onChange={(e) => setService(e.target.value)}>
          {state.services.map((s) => <option value={s}>{s}</option>)}
        </select>{' '}
        <select name="fault" aria-label="fault" value={fault} onChange={(e) => setFault(e.target.value)}>
          {state.kinds.filter((k) => k !== 'clear').map((k) => <option value={k}>{LABELS[k] || k}</option>)}
        </select>{' '}
        <button type="submit" name="inject" disabled={busy}>Inject</button>{' '}
        <button type="button" name="clear-all" disabled={busy || !active.length} onClick={() => send('all', 'clear')}>Clear all</button>
        {' '}
        {active.length === 0 && <span class="muted">no fault injected</span>}
        {active.map(([svc, f]) => (
          <span class="fault" data-fault={svc}>
            {' '}<span class="bad">{svc}: {describe(f)}</span>{' '}
            <button type="button" name={`clear-${svc}`} disabled={busy} onClick={() => send(svc, 'clear')}>clear</button>
          </span>
        ))}
      </form>
      <ErrorBox error={error} />
    </div>
  );
}
