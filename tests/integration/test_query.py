"""The native query API (/api/v1, docs/query.md) and its CLI commands, against the real
binary with a known data set: four services (frontend -> checkout -> {payment, inventory})
exported as OTLP JSON, with attributes, errors, logs linked to spans, and code attributes.

Checks the topology edges and counts, trace search with every predicate type, trace <-> log
links, code links from telemetry.code_links, the live tail, and each 400."""

import http.client
import json
import select
import subprocess
import time
import urllib.parse
import urllib.request

from cairn import BIN, CairnTestCase, main, poll_until, run_cli, scaled

NOW = time.time_ns()
BASE = NOW - 120 * 10**9  # two minutes ago: inside the default one-hour range
MS = 10**6

CODE_LINKS = (
    "telemetry:\n"
    "  code_links:\n"
    "    \"*\": \"https://git.example/{repo}/blob/{revision}/{filepath}#L{lineno}\"\n"
    "    payment: \"https://code.example/{service}/{revision}/{filepath}?fn={function}\"\n"
)


def hexid(n, width):
    return ("%0*x" % (width, n))


def attr(k, v):
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    if isinstance(v, float):
        return {"key": k, "value": {"doubleValue": v}}
    return {"key": k, "value": {"stringValue": v}}


RESOURCES = {
    "frontend": [attr("service.name", "frontend"), attr("service.version", "1.4.0"),
                 attr("vcs.repository.name", "shop/frontend")],
    "checkout": [attr("service.name", "checkout"), attr("vcs.revision", "abc123"),
                 attr("vcs.repository.name", "shop/checkout")],
    "payment": [attr("service.name", "payment"), attr("service.version", "2.0.1")],
    "inventory": [attr("service.name", "inventory"), attr("service.version", "0.9")],
}


def build():
    """Twenty traces. Trace i: frontend SERVER GET /cart -> CLIENT -> checkout SERVER
    /checkout -> CLIENT -> payment SERVER charge, and (odd i) -> inventory SERVER reserve.
    payment fails in traces 0, 5, 10, 15 (status ERROR). Durations grow with i."""
    spans = {s: [] for s in RESOURCES}
    logs = {s: [] for s in RESOURCES}
    ids = []
    for i in range(20):
        tid = hexid(0xA000 + i, 32)
        ids.append(tid)
        t0 = BASE + i * 1000 * MS
        sid = iter(range(1, 100))

        def span(svc, name, kind, parent, start, dur, attrs=(), status=0, msg=""):
            s = {"traceId": tid, "spanId": hexid(i * 100 + next(sid), 16),
                 "parentSpanId": parent, "name": name, "kind": kind,
                 "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + dur),
                 "attributes": list(attrs), "status": {"code": status, "message": msg}}
            spans[svc].append(s)
            return s["spanId"]

        d = (10 + i) * MS
        root = span("frontend", "GET /cart", 2, "", t0, d + 8 * MS,
                    [attr("http.method", "GET"), attr("http.status_code", 200),
                     attr("user.tier", "gold" if i % 2 else "silver")])
        c1 = span("frontend", "POST /checkout", 3, root, t0 + 1 * MS, d + 6 * MS)
        s2 = span("checkout", "/checkout", 2, c1, t0 + 2 * MS, d + 4 * MS,
                  [attr("cart.items", i), attr("code.filepath", "src/cart/checkout.py"),
                   attr("code.lineno", 42), attr("code.function", "do_checkout")])
        c2 = span("checkout", "charge", 3, s2, t0 + 3 * MS, d)
        fail = i % 5 == 0
        pay = span("payment", "charge", 2, c2, t0 + 3 * MS + MS // 2, d - MS,
                   [attr("payment.amount", 10.5 + i), attr("card.brand", "visa" if i % 3 else
                                                            "amex")],
                   status=2 if fail else 1, msg="card declined" if fail else "")
        if i % 2:
            c3 = span("checkout", "reserve", 3, s2, t0 + 3 * MS, 2 * MS)
            span("inventory", "reserve", 2, c3, t0 + 3 * MS + 100000, MS)
        sev, text = (17, "payment failed: card declined for order %d" % i) if fail else \
            (9, "charged order %d" % i)
        logs["payment"].append({
            "timeUnixNano": str(t0 + 4 * MS), "severityNumber": sev,
            "severityText": "ERROR" if fail else "INFO", "body": {"stringValue": text},
            "traceId": tid, "spanId": pay,
            "attributes": [attr("order.id", i), attr("code.filepath", "pay/charge.go"),
                           attr("code.lineno", 77), attr("code.function", "Charge")]})
        logs["checkout"].append({
            "timeUnixNano": str(t0 + 2 * MS), "severityNumber": 5,
            "severityText": "DEBUG", "body": {"stringValue": "Connection refused by cache"
                                              if i == 7 else "cart loaded"},
            "traceId": tid, "spanId": s2,
            "attributes": [attr("code.filepath", "src/cart/load.py"),
                           attr("code.lineno", 7)]})
    # A log without a trace.
    logs["frontend"].append({"timeUnixNano": str(BASE), "severityNumber": 13,
                             "body": {"stringValue": "slow start"}})
    return spans, logs, ids


SPANS, LOGS, IDS = build()


def trace_body():
    return {"resourceSpans": [
        {"resource": {"attributes": RESOURCES[s]},
         "scopeSpans": [{"scope": {"name": "test"}, "spans": SPANS[s]}]} for s in RESOURCES]}


def logs_body():
    return {"resourceLogs": [
        {"resource": {"attributes": RESOURCES[s]},
         "scopeLogs": [{"scope": {"name": "test"}, "logRecords": LOGS[s]}]}
        for s in RESOURCES if LOGS[s]]}


def post(port, path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=scaled(10)) as r:
        return r.status


def api(port, path, params=None):
    """GET path with params (a list of pairs); returns (status, parsed JSON)."""
    q = urllib.parse.urlencode(params or [])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10))
    conn.request("GET", path + ("?" + q if q else ""))
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, json.loads(body)


class QueryTest(CairnTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class(config=CODE_LINKS)
        port = cls.srv.otlp_port
        assert post(port, "/v1/traces", trace_body()) == 200
        assert post(port, "/v1/logs", logs_body()) == 200
        cls.port = cls.srv.port

    def search(self, params):
        st, j = api(self.port, "/api/v1/traces", params)
        self.assertEqual(st, 200, j)
        return j

    def ids(self, params):
        return sorted(t["traceId"] for t in self.search(params)["traces"])

    # ---- services, operations, tags -----------------------------------------------------

    def test_services_and_operations(self):
        st, j = api(self.port, "/api/v1/services")
        self.assertEqual(st, 200)
        self.assertEqual(j["services"], ["checkout", "frontend", "inventory", "payment"])
        st, j = api(self.port, "/api/v1/services/checkout/operations")
        self.assertEqual(st, 200)
        # Every span name, whatever its kind (RED counts only the server one).
        self.assertEqual(j["operations"], [{"name": "/checkout", "kind": "server"},
                                           {"name": "charge", "kind": "client"},
                                           {"name": "reserve", "kind": "client"}])
        st, j = api(self.port, "/api/v1/services/checkout/operations", [("kind", "client")])
        self.assertEqual([o["name"] for o in j["operations"]], ["charge", "reserve"])
        st, j = api(self.port, "/api/v1/services/nosuch/operations")
        self.assertEqual((st, j["operations"]), (200, []))

    def test_tags(self):
        st, j = api(self.port, "/api/v1/tags", [("service", "payment")])
        self.assertEqual(st, 200, j)
        keys = {k["key"]: k["count"] for k in j["keys"]}
        self.assertEqual(keys["payment.amount"], 20)
        self.assertEqual(keys["card.brand"], 20)
        self.assertEqual(keys["service.version"], 20)  # resource attributes count too
        self.assertNotIn("http.method", keys)
        st, j = api(self.port, "/api/v1/tags/card.brand/values", [("service", "payment")])
        self.assertEqual(st, 200, j)
        # i % 3 == 0 is amex: 0,3,...,18 = 7 traces.
        self.assertEqual(j["values"], [{"value": "visa", "count": 13},
                                       {"value": "amex", "count": 7}])
        st, j = api(self.port, "/api/v1/tags/card.brand/values", [("limit", "1")])
        self.assertEqual([v["value"] for v in j["values"]], ["visa"])

    # ---- trace search -------------------------------------------------------------------

    def test_search_service_and_operation(self):
        self.assertEqual(self.ids([("service", "inventory"), ("limit", "100")]),
                         sorted(IDS[i] for i in range(1, 20, 2)))
        self.assertEqual(len(self.ids([("service", "payment"), ("operation", "charge"),
                                       ("limit", "100")])), 20)
        self.assertEqual(self.ids([("service", "payment"), ("operation", "nosuch")]), [])

    def test_search_predicates(self):
        # k=v on a span attribute, on an int, on a resource attribute
        self.assertEqual(self.ids([("tag", "user.tier=gold"), ("limit", "100")]),
                         sorted(IDS[i] for i in range(1, 20, 2)))
        self.assertEqual(self.ids([("tag", "cart.items=7")]), [IDS[7]])
        self.assertEqual(len(self.ids([("tag", "service.version=2.0.1"), ("limit", "100")])),
                         20)
        # k!=v: absent or different; combined with service it stays span-level
        self.assertEqual(self.ids([("service", "payment"), ("tag", "card.brand!=visa"),
                                   ("limit", "100")]),
                         sorted(IDS[i] for i in range(0, 20, 3)))
        # k=~regex
        self.assertEqual(self.ids([("tag", "card.brand=~^am"), ("limit", "100")]),
                         sorted(IDS[i] for i in range(0, 20, 3)))
        # numeric > and < on a double attribute (10.5 + i)
        self.assertEqual(self.ids([("tag", "payment.amount>27"), ("limit", "100")]),
                         sorted(IDS[i] for i in (17, 18, 19)))
        self.assertEqual(self.ids([("tag", "payment.amount<11"), ("limit", "100")]), [IDS[0]])
        # all predicates must hold on one span: user.tier is on frontend, card.brand on
        # payment, so no single span has both
        self.assertEqual(self.ids([("tag", "user.tier=gold"), ("tag", "card.brand=visa")]), [])

    def test_search_status_kind_duration(self):
        self.assertEqual(self.ids([("status", "error"), ("limit", "100")]),
                         sorted(IDS[i] for i in (0, 5, 10, 15)))
        self.assertEqual(len(self.ids([("kind", "client"), ("service", "frontend"),
                                       ("limit", "100")])), 20)
        self.assertEqual(self.ids([("kind", "consumer")]), [])
        # payment spans last (10 + i - 1) ms: 25ms..27ms is i = 16, 17, 18
        self.assertEqual(self.ids([("service", "payment"), ("minDuration", "25ms"),
                                   ("maxDuration", "27ms"), ("limit", "100")]),
                         sorted(IDS[i] for i in (16, 17, 18)))

    def test_search_summary_order_limit_range(self):
        j = self.search([("service", "payment"), ("limit", "3")])
        got = [t["traceId"] for t in j["traces"]]
        self.assertEqual(got, [IDS[19], IDS[18], IDS[17]])  # newest first
        t = j["traces"][0]
        self.assertEqual(t["rootService"], "frontend")
        self.assertEqual(t["rootOperation"], "GET /cart")
        self.assertEqual(t["spanCount"], 7)
        self.assertEqual(t["errorCount"], 0)
        self.assertEqual(t["services"], ["frontend", "checkout", "payment", "inventory"])
        self.assertEqual(t["startTimeUnixNano"], str(BASE + 19 * 1000 * MS))
        self.assertEqual(t["link"], "/api/v1/traces/" + IDS[19])
        j = self.search([("order", "duration"), ("limit", "2"), ("status", "error")])
        self.assertEqual([t["traceId"] for t in j["traces"]], [IDS[15], IDS[10]])
        # explicit range in each time syntax: [trace 5 start, trace 8 start)
        for fmt in ("ns", "us", "ms", "rfc"):
            a, b = BASE + 5000 * MS, BASE + 8000 * MS
            if fmt == "rfc":
                def rfc(n):
                    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(n // 10**9))
                    return "%s.%09dZ" % (s, n % 10**9)
                sa, sb = rfc(a), rfc(b)
            else:
                div = {"ns": 1, "us": 1000, "ms": 10**6}[fmt]
                sa, sb = "%d%s" % (a // div, fmt), "%d%s" % (b // div, fmt)
            self.assertEqual(self.ids([("service", "payment"), ("start", sa), ("end", sb)]),
                             sorted(IDS[i] for i in (5, 6, 7)), fmt)

    # ---- trace by ID, logs, links -------------------------------------------------------

    def test_trace_and_its_logs_and_code_links(self):
        st, j = api(self.port, "/api/v1/traces/" + IDS[7])
        self.assertEqual(st, 200)
        self.assertEqual(len(j["spans"]), 7)
        co = [s for s in j["spans"] if s["name"] == "/checkout"][0]
        self.assertEqual(co["resource"]["serviceName"], "checkout")
        # "*" template; {repo} keeps its '/', {revision} from vcs.revision
        self.assertEqual(co["codeUrl"],
                         "https://git.example/shop/checkout/blob/abc123/src/cart/checkout.py#L42")
        self.assertNotIn("codeUrl", [s for s in j["spans"] if s["name"] == "GET /cart"][0])
        st, j = api(self.port, "/api/v1/traces/%s/logs" % IDS[7])
        self.assertEqual(st, 200)
        self.assertEqual(len(j["logs"]), 2)
        for log in j["logs"]:
            self.assertEqual(log["traceId"], IDS[7])
        pay = [l for l in j["logs"] if l["resource"]["serviceName"] == "payment"][0]
        # payment's own template: {function} and {revision} from service.version
        self.assertEqual(pay["codeUrl"],
                         "https://code.example/payment/2.0.1/pay/charge.go?fn=Charge")
        # checkout log: "*" template
        ck = [l for l in j["logs"] if l["resource"]["serviceName"] == "checkout"][0]
        self.assertEqual(ck["codeUrl"],
                         "https://git.example/shop/checkout/blob/abc123/src/cart/load.py#L7")
        # the log's span is one of the trace's spans
        st, t = api(self.port, "/api/v1/traces/" + IDS[7])
        self.assertIn(pay["spanId"], [s["spanId"] for s in t["spans"]])
        # log -> trace: a search result links to its trace
        st, j = api(self.port, "/api/v1/logs", [("traceId", IDS[7]), ("service", "payment")])
        self.assertEqual(j["logs"][0]["traceLink"], "/api/v1/traces/" + IDS[7])
        self.assertEqual(j["logs"][0]["spanId"], pay["spanId"])
        self.assertEqual(j["logs"][0]["codeUrl"], pay["codeUrl"])
        st, j = api(self.port, "/api/v1/traces/" + "0" * 31 + "1")
        self.assertEqual((st, j["param"]), (404, "id"))

    def test_logs_search(self):
        st, j = api(self.port, "/api/v1/logs", [("service", "payment"), ("severity", "error")])
        self.assertEqual(st, 200, j)
        self.assertEqual([l["traceId"] for l in j["logs"]],
                         [IDS[15], IDS[10], IDS[5], IDS[0]])  # newest first
        # full-text: every term, case-insensitive, whole tokens, phrases as runs
        st, j = api(self.port, "/api/v1/logs", [("q", "CONNECTION refused")])
        self.assertEqual([l["traceId"] for l in j["logs"]], [IDS[7]])
        st, j = api(self.port, "/api/v1/logs", [("q", "card"), ("q", "order")])
        self.assertEqual(len(j["logs"]), 4)
        st, j = api(self.port, "/api/v1/logs", [("q", "conn")])  # a token prefix is no match
        self.assertEqual(j["logs"], [])
        st, j = api(self.port, "/api/v1/logs", [("q", "refused connection")])
        self.assertEqual(j["logs"], [])
        st, j = api(self.port, "/api/v1/logs", [("attr", "order.id>17")])
        self.assertEqual(sorted(l["traceId"] for l in j["logs"]), [IDS[18], IDS[19]])
        st, j = api(self.port, "/api/v1/logs", [("traceId", IDS[3])])
        self.assertEqual(len(j["logs"]), 2)
        # (the live tail test adds newer records: read up to the data set's end)
        st, j = api(self.port, "/api/v1/logs", [("limit", "5"),
                                                ("end", "%dns" % (BASE + 30 * 10**9))])
        self.assertEqual(len(j["logs"]), 5)
        times = [int(l["timeUnixNano"]) for l in j["logs"]]
        self.assertEqual(times, sorted(times, reverse=True))
        self.assertEqual(times[0], BASE + 19 * 1000 * MS + 4 * MS)
        st, j = api(self.port, "/api/v1/logs", [("service", "frontend")])
        self.assertEqual(len(j["logs"]), 1)
        self.assertEqual(j["logs"][0]["traceId"], "")
        self.assertNotIn("traceLink", j["logs"][0])

    # ---- topology and RED ---------------------------------------------------------------

    def test_topology(self):
        st, j = api(self.port, "/api/v1/topology")
        self.assertEqual(st, 200, j)
        edges = {(e["caller"], e["callee"]): e for e in j["edges"]}
        self.assertEqual(set(edges), {("frontend", "checkout"), ("checkout", "payment"),
                                      ("checkout", "inventory")})
        self.assertEqual(edges["frontend", "checkout"]["count"], 20)
        self.assertEqual(edges["checkout", "payment"]["count"], 20)
        self.assertEqual(edges["checkout", "payment"]["errors"], 4)
        self.assertAlmostEqual(edges["checkout", "payment"]["errorRatio"], 0.2)
        self.assertEqual(edges["checkout", "inventory"]["count"], 10)
        self.assertEqual(edges["checkout", "inventory"]["errors"], 0)
        self.assertGreater(edges["checkout", "payment"]["p99Ms"], 20)
        nodes = {n["service"]: n for n in j["nodes"]}
        self.assertEqual(set(nodes), {"frontend", "checkout", "payment", "inventory"})
        self.assertEqual(nodes["payment"]["count"], 20)
        self.assertEqual(nodes["payment"]["errors"], 4)
        self.assertEqual(nodes["inventory"]["count"], 10)
        # around one service, one hop
        st, j = api(self.port, "/api/v1/topology", [("service", "payment"), ("depth", "1")])
        self.assertEqual(st, 200, j)
        self.assertEqual([(e["caller"], e["callee"]) for e in j["edges"]],
                         [("checkout", "payment")])
        self.assertEqual(sorted(n["service"] for n in j["nodes"]), ["checkout", "payment"])
        st, j = api(self.port, "/api/v1/topology", [("service", "payment"), ("depth", "2")])
        self.assertEqual(len(j["edges"]), 3)
        st, j = api(self.port, "/api/v1/topology", [("service", "nosuch")])
        self.assertEqual((st, j["param"]), (404, "service"))

    def test_red(self):
        st, j = api(self.port, "/api/v1/red", [("service", "payment"), ("step", "10m")])
        self.assertEqual(st, 200, j)
        self.assertEqual(sum(p["count"] for p in j["points"]), 20)
        self.assertEqual(sum(p["errors"] for p in j["points"]), 4)
        st, j = api(self.port, "/api/v1/red", [("service", "checkout"),
                                               ("operation", "/checkout"), ("step", "1h")])
        self.assertEqual(st, 200, j)
        self.assertEqual(sum(p["count"] for p in j["points"]), 20)
        st, j = api(self.port, "/api/v1/red", [("service", "payment"), ("step", "15s")])
        self.assertEqual((st, j["param"]), (400, "step"))
        st, j = api(self.port, "/api/v1/red", [("service", "nosuch")])
        self.assertEqual((st, j["param"]), (404, "service"))

    # ---- bad queries --------------------------------------------------------------------

    def test_bad_queries(self):
        cases = [
            ("/api/v1/traces", [("bogus", "1")], "bogus"),
            ("/api/v1/traces", [("limit", "0")], "limit"),
            ("/api/v1/traces", [("limit", "1001")], "limit"),  # query.max_limit
            ("/api/v1/traces", [("limit", "x")], "limit"),
            ("/api/v1/traces", [("start", "2024-13-01T00:00:00Z")], "start"),
            ("/api/v1/traces", [("start", "1714564800")], "start"),  # no unit
            ("/api/v1/traces", [("end", "yesterday")], "end"),
            ("/api/v1/traces", [("start", "%ds" % (NOW // 10**9)),
                                ("end", "%ds" % (NOW // 10**9 - 60))], "start"),
            ("/api/v1/traces", [("start", "1s")], "start"),  # wider than query.max_range
            ("/api/v1/traces", [("tag", "a=~(")], "tag"),
            ("/api/v1/traces", [("tag", "a=~" + "x" * 257)], "tag"),
            ("/api/v1/traces", [("tag", "novalue")], "tag"),
            ("/api/v1/traces", [("tag", "=v")], "tag"),
            ("/api/v1/traces", [("tag", "n>abc")], "tag"),
            ("/api/v1/traces", [("minDuration", "5")], "minDuration"),
            ("/api/v1/traces", [("maxDuration", "1x")], "maxDuration"),
            ("/api/v1/traces", [("minDuration", "2s"), ("maxDuration", "1s")], "maxDuration"),
            ("/api/v1/traces", [("status", "bad")], "status"),
            ("/api/v1/traces", [("kind", "sideways")], "kind"),
            ("/api/v1/traces", [("order", "name")], "order"),
            ("/api/v1/traces/xyz", [], "id"),
            ("/api/v1/traces/" + "0" * 32, [], "id"),
            ("/api/v1/traces/%s/logs" % ("g" * 32), [], "id"),
            ("/api/v1/logs", [("traceId", "12")], "traceId"),
            ("/api/v1/logs", [("severity", "loud")], "severity"),
            ("/api/v1/logs", [("attr", "a=~[")], "attr"),
            ("/api/v1/logs", [("q", "x" * 257)], "q"),
            ("/api/v1/logs", [("limit", "100000")], "limit"),
            ("/api/v1/logs/tail", [("since", "1s")], "since"),
            ("/api/v1/tags", [("key", "x")], "key"),
            ("/api/v1/topology", [("depth", "2")], "depth"),
            ("/api/v1/topology", [("service", "payment"), ("depth", "-1")], "depth"),
            ("/api/v1/red", [], "service"),
            ("/api/v1/services", [("x", "1")], "x"),
        ]
        for path, params, param in cases:
            st, j = api(self.port, path, params)
            self.assertEqual(st, 400, (path, params, j))
            self.assertEqual(j.get("param"), param, (path, params, j))
            self.assertTrue(j["error"], (path, params))
        # the limit's edge passes
        st, j = api(self.port, "/api/v1/traces", [("limit", "1000")])
        self.assertEqual(st, 200, j)
        st, j = api(self.port, "/api/v1/traces", [("tag", "a=~" + "x" * 256)])
        self.assertEqual(st, 200, j)

    # ---- live tail ----------------------------------------------------------------------

    def test_live_tail(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=scaled(10))
        conn.request("GET", "/api/v1/logs/tail?service=payment&q=tailmark")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Type"), "application/x-ndjson")
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        tid = hexid(0xBEEF, 32)

        def send(svc, text):
            body = {"resourceLogs": [{"resource": {"attributes": RESOURCES[svc]},
                                      "scopeLogs": [{"logRecords": [
                                          {"timeUnixNano": str(time.time_ns()),
                                           "severityNumber": 9, "traceId": tid,
                                           "body": {"stringValue": text}}]}]}]}
            self.assertEqual(post(self.srv.otlp_port, "/v1/logs", body), 200)

        send("checkout", "tailmark from checkout")  # another service: filtered out
        send("payment", "no mark here")  # no term: filtered out
        send("payment", "first tailmark")
        send("payment", "second tailmark")
        got = []
        while len(got) < 2:
            line = r.readline()  # http.client dechunks
            self.assertTrue(line, "stream ended")
            if line.strip():
                got.append(json.loads(line))
        self.assertEqual([g["body"]["stringValue"] for g in got],
                         ["first tailmark", "second tailmark"])
        self.assertEqual(got[0]["service"], "payment")
        self.assertEqual(got[0]["traceLink"], "/api/v1/traces/" + tid)
        conn.close()
        # the server forgets the subscriber: a later export still succeeds
        send("payment", "after close tailmark")

    # ---- CLI ----------------------------------------------------------------------------

    def test_cli(self):
        server = "http://127.0.0.1:%d" % self.port
        rc, out, err = run_cli(["trace", "search", "--server", server, "--service", "payment",
                                "--tag", "card.brand=amex", "--limit", "2"])
        self.assertEqual(rc, 0, err)
        rows = out.splitlines()
        self.assertEqual(len(rows), 3, out)  # header + 2
        self.assertTrue(rows[1].startswith(IDS[18]), out)
        self.assertTrue(rows[2].startswith(IDS[15]), out)
        self.assertIn("frontend: GET /cart", rows[1])
        rc, out, err = run_cli(["trace", "search", "--server", server, "--status", "error",
                                "--json"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out)["traces"]), 4)
        rc, out, err = run_cli(["trace", "search", "--server", server, "--tag", "a=~("])
        self.assertEqual(rc, 1)
        self.assertIn("parameter 'tag'", err)
        self.assertIn("HTTP 400", err)
        rc, out, err = run_cli(["topo", "--server", server])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"checkout\s+->\s+payment\s+20\s+4\s+20\.0%")
        self.assertRegex(out, r"\ninventory\s+10\s+0\s")
        rc, out, err = run_cli(["topo", "--server", server, "--json", "--service", "inventory"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["edges"][0]["callee"], "inventory")
        rc, out, err = run_cli(["logs", "--server", server, "--service", "payment",
                                "--severity", "error", "--limit", "2"])
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertIn("ERROR  payment  payment failed: card declined for order 15", lines[0])
        self.assertIn("trace=" + IDS[15], lines[0])
        self.assertIn("code=https://code.example/payment/2.0.1/pay/charge.go?fn=Charge",
                      lines[0])
        rc, out, err = run_cli(["logs", "--server", server, "--bogus"])
        self.assertEqual(rc, 2)
        rc, out, err = run_cli(["logs", "-f", "--limit", "3", "--server", server])
        self.assertEqual(rc, 2)
        rc, out, err = run_cli(["topo", "--server", "http://127.0.0.1:1"])
        self.assertEqual(rc, 1)

    def test_cli_follow(self):
        server = "http://127.0.0.1:%d" % self.port
        p = subprocess.Popen([BIN, "logs", "-f", "--server", server, "--grep", "followmark"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            def sent_and_seen():
                body = {"resourceLogs": [{"resource": {"attributes": RESOURCES["checkout"]},
                                          "scopeLogs": [{"logRecords": [
                                              {"timeUnixNano": str(time.time_ns()),
                                               "severityNumber": 13, "severityText": "WARN",
                                               "body": {"stringValue": "followmark x"}}]}]}]}
                post(self.srv.otlp_port, "/v1/logs", body)
                return select.select([p.stdout], [], [], 0.2)[0]
            # The subscription starts when the request arrives: send until a line shows.
            poll_until(sent_and_seen, scaled(10), what="a followed record")
            line = p.stdout.readline().decode()
            self.assertIn("WARN   checkout  followmark x", line)
        finally:
            p.terminate()
            p.wait(scaled(5))
            p.stdout.close()
            p.stderr.close()


if __name__ == "__main__":
    main()
