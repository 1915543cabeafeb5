"""`cairn trace get`: a trace exported over OTLP comes back as an indented tree."""
import json
import sys
import unittest
import urllib.request

from cairn import Server, run_cli

TRACE = "5b8efff798038103d269b633813fc60c"


def span(span_id, parent, name, kind, start_ms, end_ms, status=None):
    s = {"traceId": TRACE, "spanId": span_id, "name": name, "kind": kind,
         "startTimeUnixNano": str(1700000000000000000 + start_ms * 1000000),
         "endTimeUnixNano": str(1700000000000000000 + end_ms * 1000000)}
    if parent:
        s["parentSpanId"] = parent
    if status:
        s["status"] = status
    return s


def export(port, service, spans):
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}
    req = urllib.request.Request("http://127.0.0.1:%d/v1/traces" % port,
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, r.status


class TraceGet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        # Two services in two batches; the child's batch arrives first.
        export(cls.srv.otlp_port, "db", [
            span("00000000000000b2", "00000000000000b1", "SELECT cart", 3, 10, 50,
                 {"code": 2, "message": "deadlock"})])
        export(cls.srv.otlp_port, "checkout", [
            span("00000000000000b1", "", "GET /cart", 2, 0, 120),
            span("00000000000000b3", "00000000000000b1", "render", 1, 60, 70)])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def server(self):
        return "http://127.0.0.1:%d" % self.srv.port

    def test_tree(self):
        rc, out, err = run_cli(["trace", "get", TRACE, "--server", self.server()])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines(), [
            "trace %s  3 spans, 2 services, 120.000ms" % TRACE,
            "GET /cart  checkout  server  +0.000ms  120.000ms",
            "\u251c\u2500\u2500 SELECT cart  db  client  +10.000ms  40.000ms  ERROR deadlock",
            "\u2514\u2500\u2500 render  checkout  internal  +60.000ms  10.000ms",
        ])

    def test_json(self):
        rc, out, err = run_cli(["trace", "get", TRACE.upper(), "--server", self.server(),
                                "--json"])
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc["traceId"], TRACE)
        self.assertEqual([s["name"] for s in doc["spans"]], ["GET /cart", "SELECT cart", "render"])

    def test_not_found(self):
        rc, out, err = run_cli(["trace", "get", "0" * 31 + "1", "--server", self.server()])
        self.assertEqual(rc, 1)
        self.assertIn("trace not found (HTTP 404)", err)

    def test_bad_id_is_usage(self):
        rc, out, err = run_cli(["trace", "get", "nothex", "--server", self.server()])
        self.assertEqual(rc, 2)
        self.assertTrue(err.startswith("cairn: 'nothex' is not a trace ID (32 hex digits)\n"))

    def test_unreachable(self):
        rc, out, err = run_cli(["trace", "get", TRACE, "--server", "http://127.0.0.1:1"])
        self.assertEqual(rc, 1)
        self.assertTrue(err.startswith("cairn: http://127.0.0.1:1/api/v1/traces/"), err)

    def test_api_bad_id(self):
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(self.server() + "/api/v1/traces/xyz", timeout=10)
        self.assertEqual(cm.exception.code, 400)
        self.assertEqual(json.loads(cm.exception.read()),
                         {"error": "trace id must be 32 hex digits, not all zero", "param": "id"})


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]])
