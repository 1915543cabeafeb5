"""Integration tests of the demo (`cairn up --demo`, docs/demo.md): the real binary spawns the
real demo shop (demo/: six Node services on the OpenTelemetry JS SDK and the npm nacos client,
a load generator) on free ports with a temporary data_dir, behind cairn up's own gateway.

- The topology fills with the shop's six services and six edges; the gateway's admin API
  shows the demo's routes, endpoints and traffic; a fault switched on through
  POST /api/v1/demo/faults makes /api/v1/rca rank that service first, with code-linked logs;
  SIGTERM stops cairn and every process it started (checked by pid).
- A crashed service is restarted on the same port; SIGKILL of cairn takes every demo process
  down with it (parent-death signal).
- Without node or demo/node_modules, --demo refuses to start and names scripts/deps.sh.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_demo.py
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (CairnTestCase, Conn, main, poll_until,  # noqa: E402
                   request_bytes, run_cli, scaled)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_DIR = os.path.join(ROOT, "demo")
SERVICES = {"frontend", "recommendations", "checkout", "inventory", "payments", "shipping"}
EDGES = {("frontend", "recommendations"), ("frontend", "checkout"),
         ("recommendations", "inventory"), ("checkout", "inventory"),
         ("checkout", "shipping"), ("checkout", "payments")}
STARTED_RE = r" info demo started name=loadgen pid=(\d+)"


def need_demo():
    if not shutil.which("node") or not os.path.isdir(os.path.join(DEMO_DIR, "node_modules")):
        raise AssertionError("node or demo/node_modules missing: run scripts/deps.sh")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose only once reaped; cairn reaps its own children.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def q(params):
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


class DemoTest(CairnTestCase):
    def start_demo(self, rps=20, demo_dir=DEMO_DIR, settings=None):
        need_demo()
        srv = self.start(settings=dict({"registry.listen": "127.0.0.1:0"}, **(settings or {})),
                         args=["--demo", "--demo-dir", demo_dir, "--demo-gateway", "127.0.0.1:0",
                               "--demo-rps", str(rps)], workers=2)
        srv.wait_log(STARTED_RE, scaled(10))
        return srv

    def api(self, srv, path, method="GET", body=None):
        with Conn(srv.port) as c:
            c.send(request_bytes(method, path, body=body, headers={
                "Content-Type": "application/json"} if body is not None else None))
            r = c.read_response()
        return r.status, json.loads(r.body) if r.body else None

    def demo_logs(self, srv):
        """The tail of every demo process's log, for a failure message."""
        out = []
        for n, p in sorted(self.processes(srv).items()):
            try:
                with open(p["log"], errors="replace") as f:
                    out.append("--- %s\n%s" % (n, f.read()[-2000:]))
            except OSError as e:
                out.append("--- %s: %s" % (n, e))
        return "\n".join(out)

    def processes(self, srv):
        st, doc = self.api(srv, "/api/v1/demo")
        self.assertEqual(st, 200, doc)
        return {p["name"]: p for p in doc["processes"]}

    def test_topology_fault_rca_and_stop(self):
        srv = self.start_demo()
        procs = self.processes(srv)
        self.assertEqual(set(procs), SERVICES | {"loadgen"})
        pids = {n: p["pid"] for n, p in procs.items()}
        for n, p in procs.items():
            self.assertEqual(p["state"], "running", p)
            self.assertTrue(alive(p["pid"]), n)

        def topology():
            st, doc = self.api(srv, "/api/v1/topology")
            nodes = {n["service"] for n in doc["nodes"]}
            edges = {(e["caller"], e["callee"]) for e in doc["edges"]}
            return (nodes, edges) if SERVICES <= nodes and EDGES <= edges else None
        nodes, edges = poll_until(topology, scaled(30), 0.5, "the demo's topology")
        self.assertEqual(nodes, SERVICES)  # the gateway is transparent, the loadgen silent
        self.assertEqual(edges, EDGES)

        # The gateway is cairn up's own: its admin API shows the demo's routes, clusters
        # (one endpoint each: the services' ports) and the traffic that went through it.
        st, gw = self.api(srv, "/api/v1/gateway/status")
        self.assertEqual(st, 200, gw)
        self.assertEqual([r["name"] for r in gw["routes"]],
                         [p for p in procs if p != "loadgen"] + ["shop"])
        ports = {c["name"]: c["endpoints"] for c in gw["clusters"]}
        self.assertEqual(ports, {n: [{"address": "127.0.0.1:%d" % procs[n]["port"], "weight": 1,
                                      "healthy": True, "ejected": False, "ejected_for_ms": 0,
                                      "consecutive_errors": 0, "state": "up"}]
                                 for n in SERVICES})
        self.assertGreater(sum(r["stats"]["requests"] for r in gw["routes"]), 10)
        self.assertEqual([w["generation"] for w in gw["workers"]], [gw["generation"]] * 2)

        # Switch a fault on; the requests from now on are the window.
        start_ns = time.time_ns()
        st, doc = self.api(srv, "/api/v1/demo/faults", "POST",
                           json.dumps({"service": "payments", "fault": "error"}).encode())
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["faults"], {"payments": {"fault": "error", "errorRate": 0.5}})
        st, doc = self.api(srv, "/api/v1/demo/faults", "POST",
                           json.dumps({"service": "payments", "fault": "melt"}).encode())
        self.assertEqual((st, doc["param"]), (400, "fault"), doc)
        st, doc = self.api(srv, "/api/v1/demo/faults", "POST",
                           json.dumps({"service": "billing", "fault": "error"}).encode())
        self.assertEqual((st, doc["param"]), (400, "service"), doc)

        seen = {}  # the last answer, for the failure message

        def ranked():
            st, doc = self.api(srv, "/api/v1/rca?" + q({"service": "checkout",
                                                         "start": "%dns" % start_ns}))
            self.assertEqual(st, 200, doc)
            s = doc["suspects"]
            seen["window"] = doc["window"]
            seen["baseline"] = doc["baseline"]
            seen["top"] = [(x["service"], x["operation"], x.get("kind"), x.get("score"))
                           for x in s[:3]]
            # The services learn of the fault through the config center (a long poll): the
            # window's first requests may precede it, so the score grows while it fills.
            if doc["window"]["errorRequests"] < 5 or not s or s[0]["score"] <= 0.2:
                return None
            if (s[0]["service"], s[0]["operation"]) != ("payments", "POST /charge"):
                return None
            # The example is the newest failing trace whose span has its log line; the
            # services export logs in batches of their own, so right after the fault none
            # of the examples may have its line yet.
            seen["logs"] = [(l.get("service"), l["relation"]) for l in s[0]["evidence"]["logs"]]
            return doc if ("payments", "span") in seen["logs"] else None
        try:
            doc = poll_until(ranked, scaled(30), 0.5,
                             "RCA to rank payments first, over 0.2, with the span's log line")
        except AssertionError as e:
            raise AssertionError("%s; the last answer: %r" % (e, seen)) from None
        top = doc["suspects"][0]
        self.assertIn(top["kind"], ("new_error", "error_origin"))
        self.assertGreater(top["score"], 0.2)
        msgs = [m["message"] for m in top["evidence"]["errorMessages"]]
        self.assertIn("payment processor timeout: psp-gateway did not answer within 2000 ms", msgs)
        # The failing span's log line links to the code that threw.
        logs = [l for l in top["evidence"]["logs"] if l.get("service") == "payments"
                and l["relation"] == "span"]
        self.assertTrue(logs, top["evidence"]["logs"])
        self.assertRegex(logs[0].get("codeUrl", ""),
                         r"^vscode://file/.*/demo/services/payments\.mjs:\d+$")

        # The CLI sees the same switches, and clears them.
        rc, out, err = run_cli(["demo", "fault", "payments", "clear", "--server",
                                "http://127.0.0.1:%d" % srv.port])
        self.assertEqual(rc, 0, err)
        self.assertIn("none", out)

        self.assertEqual(srv.stop(), 0)
        poll_until(lambda: not any(alive(p) for p in pids.values()), scaled(5), 0.1,
                   "every demo process to be gone")
        self.assertIn("info demo stopped processes=7", srv.logs())

    def topology_nodes(self, srv):
        st, doc = self.api(srv, "/api/v1/topology")
        self.assertEqual(st, 200, doc)
        return {n["service"] for n in doc["nodes"]}

    def test_restart_and_parent_death(self):
        # Relative demo and data directories, as `make run` has them (./demo, ./cairn-data):
        # the services run in the demo directory and must still find their scripts (they did
        # not: "Cannot find module demo/demo/service.mjs", every service restarting forever)
        # and put the Nacos client's cache under the data directory, not under demo/.
        # cairn runs in its own temporary directory (srv.data_dir's parent) under
        # tempfile.gettempdir().
        rel = os.path.relpath(DEMO_DIR, os.path.join(tempfile.gettempdir(), "cairn-it-x"))
        srv = self.start_demo(rps=5, demo_dir=rel, settings={"data_dir": "data"})
        poll_until(lambda: SERVICES <= self.topology_nodes(srv), scaled(30), 0.5,
                   "every demo service to send traces")
        self.assertNotIn("process exited", srv.logs())
        cache = os.path.join(srv.data_dir, "demo", "nacos-cache")
        # The nacos client writes its cache when it fetches the fault document. Its first
        # fetch at start may time out on a loaded machine (5 s), and a long poll for a
        # document that does not exist yet is held for 30 s: write the document, which every
        # subscribed client then fetches.
        st, doc = self.api(srv, "/api/v1/demo/faults", "POST",
                           json.dumps({"service": "all", "fault": "clear"}).encode())
        self.assertEqual(st, 200, doc)
        try:
            poll_until(lambda: os.path.isdir(cache), scaled(10), 0.1, "the Nacos cache in data_dir")
        except AssertionError as e:
            raise AssertionError("%s\n%s\n--- cairn\n%s" % (e, self.demo_logs(srv),
                                                           srv.logs()[-4000:])) from None
        self.assertFalse(os.path.exists(os.path.join(DEMO_DIR, "data")))
        before = self.processes(srv)
        os.kill(before["inventory"]["pid"], signal.SIGKILL)

        def restarted():
            p = self.processes(srv)["inventory"]
            return p if p["state"] == "running" and p["pid"] != before["inventory"]["pid"] \
                else None
        p = poll_until(restarted, scaled(15), 0.1, "inventory to be restarted")
        self.assertEqual((p["restarts"], p["port"]), (1, before["inventory"]["port"]))
        srv.wait_log(r' warn demo "process exited, restarting" name=inventory status=0 signal=9 ',
                     scaled(5))
        pids = [q["pid"] for q in self.processes(srv).values()]
        srv.send_signal(signal.SIGKILL)  # no chance to stop anything
        self.assertIsNotNone(srv.wait(scaled(5)))
        poll_until(lambda: not any(alive(x) for x in pids), scaled(15), 0.1,
                   "the demo's processes to die with cairn")

    def test_missing_prerequisites(self):
        tmp = tempfile.mkdtemp(prefix="cairn-demo-")
        self.addCleanup(shutil.rmtree, tmp, True)
        bare = os.path.join(tmp, "demo")
        os.mkdir(bare)
        open(os.path.join(bare, "service.mjs"), "w").close()
        args = ["up", "--api-listen", "127.0.0.1:0", "--set", "otlp.listen=127.0.0.1:0",
                "--set", "registry.listen=127.0.0.1:0", "--set", "data_dir=" + tmp + "/data"]
        rc, out, err = run_cli(args + ["--demo", "--demo-dir", bare])
        self.assertEqual(rc, 1, err)
        self.assertIn("node_modules is missing or incomplete: run scripts/deps.sh", err)
        rc, out, err = run_cli(args + ["--demo", "--demo-dir", DEMO_DIR],
                               env={"PATH": os.path.join(tmp, "empty")})
        self.assertEqual(rc, 1, err)
        self.assertIn("node is not on PATH: run scripts/deps.sh", err)
        rc, out, err = run_cli(args + ["--demo", "--demo-rps", "0"])
        self.assertEqual(rc, 2, err)
        self.assertIn("--demo-rps: '0' is not a number from 1 to 1000", err)


if __name__ == "__main__":
    main()
