"""Integration tests of root cause analysis (/api/v1/rca, `cairn rca`, docs/rca.md): the real
`cairn up` fed by a four-service app on the real OpenTelemetry JS SDK
(tests/integration/otel/rca-app.mjs: frontend -> checkout -> inventory, payments over HTTP with
W3C trace context, traces and logs), healthy first, then with a fault injected:

- an error in a leaf service (inventory fails every other request),
- latency in a middle tier (checkout spends 150 ms of its own time),
- a new error after a version change (payments 2.0.0 fails with a message never seen),

with payments declining every fifth card in both phases as background noise. In each, the
injected service and operation must rank first, with evidence that holds: example traces that
exist and show the fault, the failing span, and log lines that belong to it.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_rca.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import CairnTestCase, get, main, run_cli, scaled  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OTEL_DIR = os.path.join(HERE, "otel")
APP = os.path.join(OTEL_DIR, "rca-app.mjs")
N = 20  # requests per phase


def q(params):
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


class RcaTest(CairnTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-rca-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def scenario(self, inject):
        """A fresh server fed by the app with inject; returns (server, the app's record)."""
        srv = self.start()
        node = shutil.which("node")
        if not node or not os.path.isdir(os.path.join(OTEL_DIR, "node_modules")):
            raise AssertionError("node or tests/integration/otel/node_modules missing: run "
                                 "scripts/deps.sh")
        out = os.path.join(self.tmp, "app-%s.json" % inject)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        p = subprocess.run([node, APP, "--url", "http://127.0.0.1:%d" % srv.otlp_port,
                            "--out", out, "--baseline", str(N), "--requests", str(N),
                            "--inject", inject], cwd=OTEL_DIR, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 + scaled(30))
        if p.returncode != 0:
            raise AssertionError("rca-app.mjs exited %d: %s" % (p.returncode, p.stderr[-2000:]))
        with open(out) as f:
            app = json.load(f)
        self.assertEqual(app["failures"], [])
        self.assertEqual(len(app["traces"]), 2 * N + 3)  # and 3 of warm-up
        app["by_id"] = {t["traceId"]: t for t in app["traces"]}
        return srv, app

    def rca(self, srv, params, status=200):
        r = get(srv.port, "/api/v1/rca?" + q(params))
        body = json.loads(r.body)
        self.assertEqual(r.status, status, body)
        self.assertEqual(r.header("Content-Type"), "application/json")
        return body

    def window(self, app):
        return {"start": app["phases"]["mid"] + "ns", "end": app["phases"]["end"] + "ns"}

    def check_evidence(self, app, s, svc, op, want_error):
        """The suspect's evidence: trace IDs the app made in the window, the span of svc/op in
        the first of them, logs that belong to it."""
        ev = s["evidence"]
        self.assertTrue(ev["traces"], s)
        for tid in ev["traces"]:
            t = app["by_id"].get(tid)
            self.assertIsNotNone(t, "evidence trace %s was never sent" % tid)
            self.assertEqual(t["phase"], "window", tid)
            self.assertTrue(any(x["service"] == svc and x["name"] == op for x in t["spans"]))
            if want_error:
                self.assertTrue(t["error"], tid)
        span = ev["span"]
        self.assertEqual(span["traceId"], ev["traces"][0])
        self.assertEqual((span["service"], span["operation"]), (svc, op))
        sent = [x for x in app["by_id"][span["traceId"]]["spans"] if x["spanId"] == span["spanId"]]
        self.assertEqual(len(sent), 1, span)
        self.assertEqual((sent[0]["service"], sent[0]["name"]), (svc, op))
        self.assertEqual(span["status"], "error" if want_error else span["status"])
        self.assertEqual(span["link"], "/api/v1/traces/" + span["traceId"])
        # The trace is there under the link.
        r = get(self.srv.port, span["link"])
        self.assertEqual(r.status, 200)
        logs = ev["logs"]
        self.assertTrue(logs, s)
        # Span-linked lines first, then the trace's, then the service's nearby lines.
        order = {"span": 0, "trace": 1, "nearby": 2}
        rel = [order[l["relation"]] for l in logs]
        self.assertEqual(rel, sorted(rel), [l["relation"] for l in logs])
        self.assertEqual(logs[0]["relation"], "span", logs)
        sent_logs = {(l["traceId"], l["spanId"], l["body"]) for l in app["logs"]}
        for l in logs:
            body = l["body"]["stringValue"]
            if l["relation"] == "span":
                self.assertEqual((l["traceId"], l["spanId"]), (span["traceId"], span["spanId"]))
            elif l["relation"] == "trace":
                self.assertEqual(l["traceId"], span["traceId"])
            else:
                self.assertEqual(l["service"], svc)
            self.assertIn((l.get("traceId", ""), l.get("spanId", ""), body), sent_logs)
        return logs

    # ---- the scenarios -----------------------------------------------------------------

    def test_leaf_error(self):
        self.srv, app = self.scenario("leaf-error")
        # The default baseline: the window of equal length just before it.
        out = self.rca(self.srv, dict(self.window(app), service="frontend"))
        self.assertEqual(out["mode"], "service")
        self.assertEqual(out["window"]["requests"], N)
        self.assertEqual(out["window"]["errorRequests"], N // 2 + 2)
        mid, end = int(app["phases"]["mid"]), int(app["phases"]["end"])
        self.assertEqual((out["baseline"]["start"], out["baseline"]["end"]),
                         (str(2 * mid - end), str(mid)))
        self.assertGreater(out["baseline"]["requests"], 0)
        self.assertLessEqual(out["baseline"]["requests"], N + 3)  # warm-up included or not
        top = out["suspects"][0]
        self.assertEqual((top["service"], top["operation"]), ("inventory", "GET /stock"), out)
        self.assertIn(top["kind"], ("error_origin", "new_error"))
        self.assertAlmostEqual(top["score"], 0.5, places=3)
        # The callers that only passed the error on are no origin.
        for s in out["suspects"]:
            if s["kind"] in ("error_origin", "new_error"):
                self.assertNotIn(s["service"], ("frontend", "checkout"), s)
        logs = self.check_evidence(app, top, "inventory", "GET /stock", True)
        self.assertIn("stock lookup failed", logs[0]["body"]["stringValue"])
        self.assertTrue(any(l["relation"] == "nearby" and
                            l["body"]["stringValue"].startswith("db pool exhausted")
                            for l in logs), logs)
        ev = top["evidence"]
        self.assertEqual(ev["before"]["errors"], 0)
        self.assertEqual(ev["after"]["errors"], N // 2)
        self.assertEqual(ev["after"]["count"], N)
        self.assertIn("stock lookup failed: connection refused",
                      [m["message"] for m in ev["errorMessages"]])
        # Deterministic: the same answer twice.
        again = self.rca(self.srv, dict(self.window(app), service="frontend"))
        self.assertEqual(again, out)

        # One failing trace on its own: its origin, whatever the baseline says.
        tid = top["evidence"]["traces"][0]
        one = self.rca(self.srv, {"trace": tid})
        self.assertEqual((one["mode"], one["traceId"], one["service"]), ("trace", tid, "frontend"))
        self.assertEqual(one["window"]["requests"], 1)
        first = one["suspects"][0]
        self.assertEqual((first["service"], first["operation"], first["kind"], first["score"]),
                         ("inventory", "GET /stock", "error_origin", 1.0))
        self.assertEqual(first["evidence"]["traces"], [tid])

        # The command line: the table's first row, and --json as the API answers.
        url = "http://127.0.0.1:%d" % self.srv.port
        w = self.window(app)
        rc, text, err = run_cli(["rca", "--service", "frontend", "--start", w["start"], "--end",
                                 w["end"], "--server", url], timeout=scaled(30))
        self.assertEqual(rc, 0, err)
        lines = text.splitlines()
        head = [i for i, l in enumerate(lines) if l.split()[:2] == ["RANK", "SCORE"]]
        self.assertEqual(len(head), 1, text)
        row = lines[head[0] + 1].split()
        self.assertEqual(row[0], "1", text)
        self.assertEqual(row[3:6], ["inventory", "GET", "/stock"], text)
        self.assertIn("stock lookup failed", text)
        rc, text, err = run_cli(["rca", "--service", "frontend", "--start", w["start"], "--end",
                                 w["end"], "--server", url, "--json"], timeout=scaled(30))
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(text), out)
        rc, text, err = run_cli(["rca", "--trace", tid, "--server", url], timeout=scaled(30))
        self.assertEqual(rc, 0, err)
        self.assertIn("trace " + tid, text)

    def test_slow_middle(self):
        self.srv, app = self.scenario("slow-middle")
        p = app["phases"]
        out = self.rca(self.srv, dict(self.window(app), service="frontend",
                                      baseline_start=p["t0"] + "ns", baseline_end=p["mid"] + "ns"))
        self.assertEqual(out["baseline"]["requests"], N)
        top = out["suspects"][0]
        self.assertEqual((top["service"], top["operation"], top["kind"]),
                         ("checkout", "POST /checkout", "latency"), out)
        self.assertGreater(top["score"], 0.5)
        ev = top["evidence"]
        self.assertGreaterEqual(ev["after"]["selfMs"], 150)
        self.assertLess(ev["before"]["selfMs"], 50)
        self.assertGreater(ev["after"]["criticalPathShare"], 0.5)
        self.assertGreater(ev["after"]["p50Ms"], ev["before"]["p50Ms"] + 100)
        self.assertGreaterEqual(out["window"]["slowThresholdMs"], 150)
        logs = self.check_evidence(app, top, "checkout", "POST /checkout", False)
        self.assertIn("pricing cache cold", logs[0]["body"]["stringValue"])
        # Background declines happen in both windows alike: no error suspect outranks it, and
        # none scores much.
        for s in out["suspects"][1:]:
            self.assertLess(s["score"], top["score"] / 2, s)

    def test_new_version(self):
        self.srv, app = self.scenario("new-version")
        p = app["phases"]
        out = self.rca(self.srv, dict(self.window(app), service="frontend",
                                      baseline_start=p["t0"] + "ns", baseline_end=p["mid"] + "ns"))
        self.assertEqual(out["baseline"]["start"], p["t0"])
        self.assertEqual(out["baseline"]["errorRequests"], N // 5)
        top = out["suspects"][0]
        self.assertEqual((top["service"], top["operation"], top["kind"]),
                         ("payments", "POST /pay", "new_error"), out)
        self.assertAlmostEqual(top["score"], 0.5, places=3)
        ev = top["evidence"]
        self.assertTrue(ev["versionChanged"])
        self.assertEqual((ev["versionsBefore"], ev["versionsAfter"]), (["1.0.0"], ["2.0.0"]))
        self.assertEqual(ev["span"]["serviceVersion"], "2.0.0")
        self.assertTrue(ev["span"]["message"].startswith("schema mismatch"), ev["span"])
        msgs = {m["message"]: m for m in ev["errorMessages"]}
        self.assertTrue(msgs["schema mismatch: field currency is required"]["new"])
        self.assertFalse(msgs["card declined"]["new"])
        logs = self.check_evidence(app, top, "payments", "POST /pay", True)
        self.assertIn("schema mismatch", logs[0]["body"]["stringValue"])
        # The old decline is background: more origins than before, but far from first.
        second = [s for s in out["suspects"] if s["kind"] == "error_origin"
                  and s["service"] == "payments"]
        self.assertTrue(second and second[0]["score"] < top["score"], out["suspects"])

    # ---- bad input ---------------------------------------------------------------------

    def test_bad_requests(self):
        srv = self.start()
        cases = [
            ({}, 400, "service"),
            ({"service": ""}, 400, "service"),
            ({"service": "a", "bogus": "1"}, 400, "bogus"),
            ({"trace": "xyz"}, 400, "trace"),
            ({"trace": "0" * 32}, 400, "trace"),
            ({"trace": "1" * 32}, 404, "trace"),
            ({"trace": "1" * 32, "start": "1s"}, 400, "start"),
            ({"service": "a", "start": "yesterday"}, 400, "start"),
            ({"service": "a", "end": "5"}, 400, "end"),
            ({"service": "a", "start": "2000s", "end": "1000s"}, 400, "start"),
            ({"service": "a", "start": "1000s", "end": "99999999s"}, 400, "start"),
            ({"service": "a", "baseline_start": "1000s"}, 400, "baseline_end"),
            ({"service": "a", "baseline_end": "1000s"}, 400, "baseline_start"),
            ({"service": "a", "baseline_start": "2000s", "baseline_end": "1000s"}, 400,
             "baseline_start"),
            ({"service": "a", "limit": "0"}, 400, "limit"),
            ({"service": "a", "limit": "51"}, 400, "limit"),
            ({"service": "a", "limit": "x"}, 400, "limit"),
        ]
        for params, status, param in cases:
            body = self.rca(srv, params, status)
            self.assertEqual(body.get("param"), param, (params, body))
            self.assertTrue(body["error"], body)
        # A service with no requests: an empty, well-formed answer.
        body = self.rca(srv, {"service": "nobody", "limit": "50"})
        self.assertEqual(body["suspects"], [])
        self.assertEqual(body["window"]["requests"], 0)
        # The command line's usage errors exit 2, the server's refusals 1 naming the parameter.
        url = "http://127.0.0.1:%d" % srv.port
        rc, _, err = run_cli(["rca", "--server", url])
        self.assertEqual(rc, 2, err)
        rc, _, err = run_cli(["rca", "--service", "a", "--since", "5m", "--start", "1s"])
        self.assertEqual(rc, 2, err)
        rc, _, err = run_cli(["rca", "--service", "a", "--since", "soon"])
        self.assertEqual(rc, 2, err)
        rc, _, err = run_cli(["rca", "--service", "a", "--bogus", "1"])
        self.assertEqual(rc, 2, err)
        rc, _, err = run_cli(["rca", "--service", "a", "--limit", "99", "--server", url])
        self.assertEqual(rc, 1, err)
        self.assertIn("parameter 'limit'", err)
        rc, text, err = run_cli(["rca", "--service", "a", "--since", "1h", "--server", url])
        self.assertEqual(rc, 0, err)
        self.assertIn("no suspect", text)


if __name__ == "__main__":
    main()
