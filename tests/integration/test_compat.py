"""Integration tests of the compatibility query APIs (docs/compat.md): the real `cairn up`, a
three-service app on the real OpenTelemetry JS SDK (tests/integration/otel/compat-app.mjs:
frontend -> cart, frontend -> payments over HTTP with W3C trace context, every third payment
failing), then every Jaeger, Zipkin v2 and Tempo endpoint checked field by field against what
the Jaeger UI, Grafana and the Zipkin UI parse, and each 400 in that API's own error shape.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_compat.py
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import CairnTestCase, get, main, poll_until, scaled  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OTEL_DIR = os.path.join(HERE, "otel")
APP = os.path.join(OTEL_DIR, "compat-app.mjs")
REQUESTS = 6
# The class server's query.* limits, smaller than the defaults (1000, 10000) so that every
# API's edge proves the configured value is the one in force.
MAX_LIMIT = 50
MAX_TAG_VALUES = 100

JAEGER_SPAN_KEYS = {"traceID", "spanID", "operationName", "references", "startTime", "duration",
                    "tags", "logs", "processID", "warnings", "flags"}
ZIPKIN_SPAN_KEYS = {"traceId", "parentId", "id", "kind", "name", "timestamp", "duration",
                    "localEndpoint", "remoteEndpoint", "annotations", "tags"}


def q(params):
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


class CompatTest(CairnTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class(settings={"query.max_limit": MAX_LIMIT,
                                            "query.max_tag_values": MAX_TAG_VALUES})
        cls.tmp = tempfile.mkdtemp(prefix="cairn-compat-")
        node = shutil.which("node")
        if not node or not os.path.isdir(os.path.join(OTEL_DIR, "node_modules")):
            raise AssertionError("node or tests/integration/otel/node_modules missing: run "
                                 "scripts/deps.sh")
        out = os.path.join(cls.tmp, "app.json")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        cls.t0_us = int(time.time() * 1e6) - 1000000
        p = subprocess.run([node, APP, "--url", "http://127.0.0.1:%d" % cls.srv.otlp_port,
                            "--out", out, "--requests", str(REQUESTS)], cwd=OTEL_DIR, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 + scaled(15))
        if p.returncode != 0:
            raise AssertionError("compat-app.mjs exited %d: %s" % (p.returncode, p.stderr[-2000:]))
        with open(out) as f:
            cls.app = json.load(f)
        cls.t1_us = int(time.time() * 1e6) + 1000000
        cls.traces = {t["traceId"]: t for t in cls.app["traces"]}
        assert len(cls.traces) == REQUESTS, cls.app
        cls.errors = {t for t, v in cls.traces.items() if v["error"]}
        assert len(cls.errors) == REQUESTS // 3, cls.errors
        # Pairing in the derived tables happens at ingest; wait until every edge is there.
        poll_until(lambda: cls.get_json("/api/dependencies")[1]["total"] == 2
                   and sum(d["callCount"] for d in cls.get_json("/api/dependencies")[1]["data"])
                   == 2 * REQUESTS, scaled(10), what="both edges with every call")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)
        super().tearDownClass()

    @classmethod
    def get_json(cls, path, headers=None):
        r = get(cls.srv.port, path, headers=headers)
        return r.status, json.loads(r.body) if r.body.startswith((b"{", b"[")) else r.body, r

    def ok(self, path, headers=None):
        status, body, r = self.get_json(path, headers)
        self.assertEqual(status, 200, "%s: %r" % (path, r.body[:500]))
        self.assertEqual(r.header("Content-Type"), "application/json")
        return body

    # ---- Jaeger ------------------------------------------------------------------------

    def jaeger_envelope(self, body, n):
        self.assertEqual(set(body), {"data", "total", "limit", "offset", "errors"})
        self.assertEqual((body["total"], body["limit"], body["offset"], body["errors"]),
                         (n, 0, 0, None))
        self.assertEqual(len(body["data"]), n)

    def jaeger_400(self, path, needle):
        status, body, r = self.get_json(path)
        self.assertEqual(status, 400, path)
        self.assertEqual(body["data"], None)
        self.assertEqual((body["total"], body["limit"], body["offset"]), (0, 0, 0))
        self.assertEqual(len(body["errors"]), 1)
        self.assertEqual(body["errors"][0]["code"], 400)
        self.assertIn(needle, body["errors"][0]["msg"], path)

    def test_jaeger_services_operations(self):
        b = self.ok("/api/services")
        self.jaeger_envelope(b, 3)
        self.assertEqual(b["data"], ["cart", "frontend", "payments"])
        b = self.ok("/api/services/payments/operations")
        self.jaeger_envelope(b, 1)
        self.assertEqual(b["data"], ["POST /pay"])
        # Every span name, CLIENT ones too (RED counts only the SERVER one).
        b = self.ok("/api/services/frontend/operations")
        self.jaeger_envelope(b, 3)
        self.assertEqual(b["data"], ["GET /cart", "GET /checkout", "POST /pay"])
        b = self.ok("/api/operations?service=frontend&spanKind=server")
        self.assertEqual(b["data"], [{"name": "GET /checkout", "spanKind": "server"}])
        b = self.ok("/api/operations?service=frontend&spanKind=client")
        self.assertEqual(b["data"], [{"name": "GET /cart", "spanKind": "client"},
                                     {"name": "POST /pay", "spanKind": "client"}])
        b = self.ok("/api/operations?service=frontend")
        self.jaeger_envelope(b, 3)
        self.assertEqual({(o["name"], o["spanKind"]) for o in b["data"]},
                         {("GET /checkout", "server"), ("GET /cart", "client"),
                          ("POST /pay", "client")})
        b = self.ok("/api/services/nosuch/operations")
        self.jaeger_envelope(b, 0)

    def check_jaeger_trace(self, t, sent):
        self.assertEqual(set(t), {"traceID", "spans", "processes", "warnings"})
        self.assertEqual(t["traceID"], sent["traceId"])
        self.assertIsNone(t["warnings"])
        self.assertEqual(len(t["spans"]), len(sent["spans"]))
        by_id = {s["spanId"]: s for s in sent["spans"]}
        procs = t["processes"]
        self.assertEqual(sorted(p["serviceName"] for p in procs.values()),
                         ["cart", "frontend", "payments"])
        for p in procs.values():
            self.assertEqual(set(p), {"serviceName", "tags"})
            tags = {x["key"]: (x["type"], x["value"]) for x in p["tags"]}
            self.assertEqual(tags["service.version"], ("string", "1.0.0"))
            self.assertNotIn("service.name", tags)
        starts = [s["startTime"] for s in t["spans"]]
        self.assertEqual(starts, sorted(starts))
        for s in t["spans"]:
            self.assertLessEqual(set(s), JAEGER_SPAN_KEYS)
            self.assertLessEqual(JAEGER_SPAN_KEYS - {"flags"}, set(s))
            e = by_id[s["spanID"]]
            self.assertEqual(s["traceID"], sent["traceId"])
            self.assertEqual(s["operationName"], e["name"])
            self.assertEqual(procs[s["processID"]]["serviceName"], e["service"])
            self.assertEqual(s["startTime"], e["startUs"])
            self.assertIsInstance(s["duration"], int)
            if e["parentSpanId"]:
                self.assertEqual(s["references"], [{"refType": "CHILD_OF",
                                                    "traceID": sent["traceId"],
                                                    "spanID": e["parentSpanId"]}])
            else:
                self.assertEqual(s["references"], [])
            tags = {x["key"]: (x["type"], x["value"]) for x in s["tags"]}
            kind = ["internal", "server", "client", "producer", "consumer"][e["kind"]]
            self.assertEqual(tags["span.kind"], ("string", kind))
            self.assertEqual(tags["otel.scope.name"], ("string", "shop/" + e["service"]))
            self.assertEqual(tags["http.request.method"][0], "string")
            self.assertEqual(tags["http.response.status_code"][0], "int64")
            if e["status"] == 2:
                self.assertEqual(tags["error"], ("bool", True))
                self.assertEqual(tags["otel.status_code"], ("string", "ERROR"))
            else:
                self.assertNotIn("error", tags)
            if e["name"] == "POST /pay" and e["kind"] == 1:
                self.assertEqual(len(s["logs"]), 1)
                f = {x["key"]: (x["type"], x["value"]) for x in s["logs"][0]["fields"]}
                self.assertEqual(f["event"], ("string", "charge.attempt"))
                self.assertEqual(f["charge.amount"], ("float64", 12.5))
                self.assertGreaterEqual(s["logs"][0]["timestamp"], s["startTime"])

    def test_jaeger_trace_by_id(self):
        for tid, sent in self.traces.items():
            b = self.ok("/api/traces/" + tid)
            self.jaeger_envelope(b, 1)
            self.check_jaeger_trace(b["data"][0], sent)
        status, body, _ = self.get_json("/api/traces/" + "ab" * 16)
        self.assertEqual(status, 404)
        self.assertEqual(body["errors"][0]["code"], 404)
        self.assertEqual(body["data"], None)
        self.jaeger_400("/api/traces/xyz", "malformed trace ID 'xyz'")
        self.jaeger_400("/api/traces/" + "0" * 32, "not all zero")
        self.jaeger_400("/api/traces/" + "a" * 33, "malformed trace ID")
        self.jaeger_400("/api/traces/%s?bogus=1" % tid, "unknown parameter 'bogus'")

    def test_jaeger_search(self):
        base = {"start": self.t0_us, "end": self.t1_us, "lookback": "custom"}
        b = self.ok("/api/traces?" + q(dict(base, service="frontend", limit=20)))
        self.jaeger_envelope(b, REQUESTS)
        self.assertEqual({t["traceID"] for t in b["data"]}, set(self.traces))
        for t in b["data"]:
            self.check_jaeger_trace(t, self.traces[t["traceID"]])
        b = self.ok("/api/traces?" + q(dict(base, service="frontend", limit=2)))
        self.jaeger_envelope(b, 2)
        # error=true as the Jaeger UI's tag box writes it.
        b = self.ok("/api/traces?" + q(dict(base, service="payments",
                                            tags=json.dumps({"error": "true"}))))
        self.assertEqual({t["traceID"] for t in b["data"]}, self.errors)
        b = self.ok("/api/traces?" + q(dict(base, service="payments",
                                            tags=json.dumps({"http.response.status_code": "502"}))))
        self.assertEqual({t["traceID"] for t in b["data"]}, self.errors)
        b = self.ok("/api/traces?" + q(dict(base, service="cart", tag="cart.items:3")))
        self.assertEqual(b["total"], REQUESTS)
        b = self.ok("/api/traces?" + q(dict(base, service="frontend", operation="GET /checkout",
                                            minDuration="1ns", maxDuration="1h")))
        self.assertEqual(b["total"], REQUESTS)
        b = self.ok("/api/traces?" + q(dict(base, service="frontend", minDuration="1h")))
        self.assertEqual(b["total"], 0)
        ids = sorted(self.traces)[:2]
        b = self.ok("/api/traces?" + "&".join("traceID=" + i for i in ids))
        self.assertEqual(sorted(t["traceID"] for t in b["data"]), ids)
        # The 400s, each naming its parameter.
        self.jaeger_400("/api/traces?" + q(base), "parameter 'service' is required")
        self.jaeger_400("/api/traces?service=a&minDuration=fast", "'minDuration'")
        self.jaeger_400("/api/traces?service=a&minDuration=2s&maxDuration=1s",
                        "'maxDuration' should be greater than 'minDuration'")
        self.jaeger_400("/api/traces?service=a&start=20&end=10", "'end' should be after 'start'")
        self.jaeger_400("/api/traces?service=a&start=x", "param 'start'")
        self.jaeger_400("/api/traces?service=a&limit=100000", "parameter 'limit' must be 1..")
        # query.max_limit as configured, at its edge.
        b = self.ok("/api/traces?" + q(dict(base, service="frontend", limit=MAX_LIMIT)))
        self.assertEqual(b["total"], REQUESTS)
        self.jaeger_400("/api/traces?service=a&limit=%d" % (MAX_LIMIT + 1),
                        "parameter 'limit' must be 1..%d" % MAX_LIMIT)
        self.jaeger_400("/api/traces?" + "&".join(["traceID=1"] * (MAX_LIMIT + 1)),
                        "more than %d traceID parameters" % MAX_LIMIT)
        self.jaeger_400("/api/traces?service=a&tags=%7Bnot", "malformed 'tags' parameter")
        self.jaeger_400("/api/traces?service=a&tags=" + urllib.parse.quote('{"a":1}'),
                        "malformed 'tags' parameter")
        self.jaeger_400("/api/traces?service=a&tag=nocolon", "malformed 'tag' parameter")
        self.jaeger_400("/api/traces?service=a&lookback=forever", "param 'lookback'")
        self.jaeger_400("/api/traces?service=a&traceID=zz", "cannot parse traceID")
        self.jaeger_400("/api/traces?service=a&colour=red", "unknown parameter 'colour'")
        self.jaeger_400("/api/traces?service=a&start=1&end=%d" % (30 * 86400 * 10**6),
                        "wider than")
        self.jaeger_400("/api/operations", "parameter 'service' is required")
        self.jaeger_400("/api/operations?service=a&spanKind=sideways", "'spanKind'")

    def test_jaeger_dependencies(self):
        b = self.ok("/api/dependencies?endTs=%d&lookback=3600000" % (self.t1_us // 1000))
        self.jaeger_envelope(b, 2)
        self.assertEqual(b["data"], [
            {"parent": "frontend", "child": "cart", "callCount": REQUESTS},
            {"parent": "frontend", "child": "payments", "callCount": REQUESTS}])
        b = self.ok("/api/dependencies?endTs=%d&lookback=1000" % (self.t0_us // 1000 - 3600000))
        self.jaeger_envelope(b, 0)
        self.jaeger_400("/api/dependencies?endTs=abc", "param 'endTs'")
        self.jaeger_400("/api/dependencies?lookback=0", "'lookback' must be")

    # ---- Zipkin ------------------------------------------------------------------------

    def zipkin_400(self, path, needle):
        r = get(self.srv.port, path)
        self.assertEqual(r.status, 400, path)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        self.assertIn(needle, r.body.decode(), path)

    def check_zipkin_spans(self, spans, sent):
        self.assertEqual(len(spans), len(sent["spans"]))
        by_id = {s["spanId"]: s for s in sent["spans"]}
        self.assertEqual([s["timestamp"] for s in spans], sorted(s["timestamp"] for s in spans))
        for s in spans:
            self.assertLessEqual(set(s), ZIPKIN_SPAN_KEYS)
            e = by_id[s["id"]]
            self.assertEqual(s["traceId"], sent["traceId"])
            self.assertEqual(s.get("parentId", ""), e["parentSpanId"])
            self.assertEqual(s["kind"], ["", "SERVER", "CLIENT"][e["kind"]])
            self.assertEqual(s["name"], e["name"])
            self.assertEqual(s["timestamp"], e["startUs"])
            self.assertGreaterEqual(s["duration"], 1)
            self.assertEqual(s["localEndpoint"], {"serviceName": e["service"]})
            for k, v in s["tags"].items():
                self.assertIsInstance(v, str, k)
            self.assertEqual(s["tags"]["http.response.status_code"].isdigit(), True)
            if e["status"] == 2:
                self.assertEqual(s["tags"]["otel.status_code"], "ERROR")
                self.assertIn("error", s["tags"])
            if e["kind"] == 2:
                self.assertEqual(s["remoteEndpoint"], {"serviceName": "127.0.0.1"})
            if e["name"] == "POST /pay" and e["kind"] == 1:
                self.assertEqual([a["value"] for a in s["annotations"]], ["charge.attempt"])

    def test_zipkin(self):
        self.assertEqual(self.ok("/api/v2/services"), ["cart", "frontend", "payments"])
        self.assertEqual(self.ok("/api/v2/spans?serviceName=cart"), ["GET /cart"])
        self.assertEqual(self.ok("/api/v2/spans?serviceName=frontend"),
                         ["GET /cart", "GET /checkout", "POST /pay"])
        self.assertEqual(self.ok("/api/v2/spans?serviceName=nosuch"), [])
        self.assertEqual(self.ok("/api/v2/remoteServices?serviceName=frontend"),
                         ["cart", "payments"])
        for tid, sent in self.traces.items():
            self.check_zipkin_spans(self.ok("/api/v2/trace/" + tid), sent)
        r = get(self.srv.port, "/api/v2/trace/" + "cd" * 16)
        self.assertEqual(r.status, 404)
        end = self.t1_us // 1000
        ts = self.ok("/api/v2/traces?serviceName=frontend&limit=10&endTs=%d&lookback=600000"
                     % end)
        self.assertEqual(len(ts), REQUESTS)
        for spans in ts:
            self.check_zipkin_spans(spans, self.traces[spans[0]["traceId"]])
        ts = self.ok("/api/v2/traces?" + q({"serviceName": "payments", "annotationQuery": "error",
                                            "endTs": end, "lookback": 600000}))
        self.assertEqual({s[0]["traceId"] for s in ts}, self.errors)
        ts = self.ok("/api/v2/traces?" + q({"annotationQuery":
                                            "http.response.status_code=502 and http.route",
                                            "serviceName": "payments", "spanName": "POST /pay",
                                            "endTs": end, "lookback": 600000}))
        self.assertEqual({s[0]["traceId"] for s in ts}, self.errors)
        ts = self.ok("/api/v2/traces?serviceName=frontend&minDuration=3600000000&endTs=%d" % end)
        self.assertEqual(ts, [])
        deps = self.ok("/api/v2/dependencies?endTs=%d&lookback=3600000" % end)
        self.assertEqual(deps, [
            {"parent": "frontend", "child": "cart", "callCount": REQUESTS, "errorCount": 0},
            {"parent": "frontend", "child": "payments", "callCount": REQUESTS,
             "errorCount": len(self.errors)}])
        self.zipkin_400("/api/v2/dependencies", "endTs is required")
        self.zipkin_400("/api/v2/spans", "serviceName is required")
        self.zipkin_400("/api/v2/trace/nothex", "invalid trace id")
        self.zipkin_400("/api/v2/traces?minDuration=1.5s", "param 'minDuration'")
        self.zipkin_400("/api/v2/traces?minDuration=20&maxDuration=10", "maxDuration")
        self.zipkin_400("/api/v2/traces?limit=0", "'limit' must be")
        self.assertEqual(len(self.ok("/api/v2/traces?serviceName=frontend&limit=%d&endTs=%d"
                                     % (MAX_LIMIT, end))), REQUESTS)
        self.zipkin_400("/api/v2/traces?limit=%d" % (MAX_LIMIT + 1),
                        "'limit' must be 1..%d" % MAX_LIMIT)
        self.zipkin_400("/api/v2/traces?annotationQuery=" + urllib.parse.quote("a=~(x"),
                        "annotationQuery")
        self.zipkin_400("/api/v2/traces?serviceName=a&foo=1", "unknown parameter 'foo'")

    # ---- Tempo -------------------------------------------------------------------------

    def tempo_400(self, path, needle):
        r = get(self.srv.port, path)
        self.assertEqual(r.status, 400, path)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        self.assertIn(needle, r.body.decode(), path)

    def tempo_search(self, query, **kw):
        params = dict(kw, start=self.t0_us // 10**6, end=self.t1_us // 10**6 + 1)
        if query is not None:
            params["q"] = query
        return self.ok("/api/search?" + q(params))

    def test_tempo_search(self):
        b = self.tempo_search("{}", limit=MAX_LIMIT)
        self.assertEqual(set(b), {"traces", "metrics"})
        # SearchMetrics' fields only (64-bit ones as strings): jsonpb clients refuse others.
        self.assertEqual(set(b["metrics"]), {"inspectedTraces", "inspectedBytes",
                                             "completedJobs", "totalJobs", "inspectedSpans"})
        self.assertEqual(b["metrics"]["inspectedSpans"], str(5 * REQUESTS))
        self.assertEqual(b["metrics"]["inspectedTraces"], REQUESTS)
        self.assertEqual({t["traceID"] for t in b["traces"]}, set(self.traces))
        for t in b["traces"]:
            sent = self.traces[t["traceID"]]
            root = [s for s in sent["spans"] if not s["parentSpanId"]][0]
            self.assertEqual(t["rootServiceName"], "frontend")
            self.assertEqual(t["rootTraceName"], "GET /checkout")
            self.assertEqual(t["startTimeUnixNano"], root["startNs"])
            self.assertIsInstance(t["durationMs"], int)
            self.assertEqual(len(t["spanSets"]), 1)
            ss = t["spanSets"][0]
            self.assertEqual(ss["matched"], 5)
            self.assertEqual(len(ss["spans"]), 3)  # spss default
            for s in ss["spans"]:
                self.assertEqual(set(s), {"spanID", "name", "startTimeUnixNano", "durationNanos"})
        b = self.tempo_search("{ status = error }")
        self.assertEqual({t["traceID"] for t in b["traces"]}, self.errors)
        b = self.tempo_search('{ resource.service.name = "payments" && span.http.response.'
                              'status_code >= 500 } && { .http.route =~ "/check.*" }')
        self.assertEqual({t["traceID"] for t in b["traces"]}, self.errors)
        b = self.tempo_search('{ name = "GET /cart" && kind = server && duration < 1h }')
        self.assertEqual(len(b["traces"]), REQUESTS)
        b = self.tempo_search('{ .http.route =~ "cart" }')  # anchored: no match
        self.assertEqual(b["traces"], [])
        b = self.tempo_search('{ span.http.route != "/cart" && resource.service.name = "cart" }')
        self.assertEqual(b["traces"], [])
        b = self.tempo_search("{}", limit=2)
        self.assertEqual(len(b["traces"]), 2)
        b = self.tempo_search("{}", spss=0)  # Tempo's "every span", here at most 16
        self.assertTrue(all(len(t["spanSets"][0]["spans"]) == 5 for t in b["traces"]))
        self.assertTrue(all(t["spanSet"] == t["spanSets"][0] for t in b["traces"]))
        b = self.tempo_search("{}", minDuration="1h")
        self.assertEqual(b["traces"], [])
        b = self.tempo_search(None, tags="service.name=payments status=error")
        self.assertEqual({t["traceID"] for t in b["traces"]}, self.errors)
        b = self.tempo_search(None, tags='http.route="/pay"')
        self.assertEqual(len(b["traces"]), REQUESTS)
        self.tempo_400("/api/search?q=" + urllib.parse.quote("{ .a = }"),
                       "invalid TraceQL query: at offset 7: expected a value")
        self.tempo_400("/api/search?q=" + urllib.parse.quote('{ .a =~ "(" }'),
                       "regular expression does not compile")
        # One request that would have made glibc's regcomp take gigabytes (base/regex.h).
        self.tempo_400("/api/search?q=" + urllib.parse.quote('{ .a =~ "a%s" }' % ("+" * 40)),
                       "regular expression too large")
        self.tempo_400("/api/search?start=20&end=10", "invalid start")
        self.tempo_400("/api/search?limit=1000000", "'limit' must be")
        self.tempo_400("/api/search?limit=%d" % (MAX_LIMIT + 1), "'limit' must be 1..%d"
                       % MAX_LIMIT)
        self.tempo_400("/api/search?spss=17", "'spss' must be 0..16")
        self.tempo_400("/api/search?q=%7B%7D&tags=a%3Db", "can't specify tags and q")
        self.tempo_400("/api/search?minDuration=soon", "'minDuration'")
        self.tempo_400("/api/search?tags=novalue", "invalid tags")
        self.tempo_400("/api/search?x=1", "unknown parameter 'x'")

    def test_tempo_trace_by_id(self):
        tid = sorted(self.traces)[0]
        sent = self.traces[tid]
        b = self.ok("/api/v2/traces/" + tid)
        self.assertEqual(set(b), {"trace"})  # status COMPLETE is the zero value: left out
        rs = b["trace"]["resourceSpans"]
        services = {}
        for batch in rs:
            attrs = {a["key"]: a["value"] for a in batch["resource"]["attributes"]}
            svc = attrs["service.name"]["stringValue"]
            self.assertNotIn(svc, services)  # one batch per resource
            for ss in batch["scopeSpans"]:
                self.assertEqual(ss["scope"], {"name": "shop/" + svc, "version": "0.1.0"})
                services[svc] = ss["spans"]
        self.assertEqual(sorted(services), ["cart", "frontend", "payments"])
        by_id = {s["spanId"]: s for s in sent["spans"]}
        n = 0
        for svc, spans in services.items():
            for s in spans:
                n += 1
                sid = base64.b64decode(s["spanId"]).hex()
                e = by_id[sid]
                self.assertEqual(base64.b64decode(s["traceId"]).hex(), tid)
                self.assertEqual(e["service"], svc)
                self.assertEqual(s["kind"], ["SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                                             "SPAN_KIND_CLIENT"][e["kind"]])
                self.assertEqual(s["startTimeUnixNano"], e["startNs"])
                if e["parentSpanId"]:
                    self.assertEqual(base64.b64decode(s["parentSpanId"]).hex(),
                                     e["parentSpanId"])
                if e["status"] == 2:
                    self.assertEqual(s["status"]["code"], "STATUS_CODE_ERROR")
        self.assertEqual(n, len(sent["spans"]))
        # Protobuf: tempopb.Trace (what Grafana's Tempo data source asks for). Check the wire
        # holds every span ID and the trace ID, field 1 of the top level repeated per batch.
        r = get(self.srv.port, "/api/traces/" + tid, headers={"Accept": "application/protobuf"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "application/protobuf")
        self.assertEqual(r.body[0], 0x0A)
        for e in sent["spans"]:
            self.assertIn(bytes.fromhex(e["spanId"]), r.body)
        self.assertIn(bytes.fromhex(tid), r.body)
        r2 = get(self.srv.port, "/api/v2/traces/" + tid, headers={"Accept": "application/protobuf"})
        self.assertEqual(r2.status, 200)
        self.assertEqual(r2.body[0], 0x0A)  # TraceByIDResponse.trace
        self.assertIn(r.body, r2.body)
        r = get(self.srv.port, "/api/v2/traces/" + "ef" * 16)
        self.assertEqual(r.status, 404)
        self.tempo_400("/api/v2/traces/g1", "invalid trace id")

    def test_tempo_tags(self):
        rng = "start=%d&end=%d" % (self.t0_us // 10**6, self.t1_us // 10**6 + 1)
        span_keys = {"http.route", "http.request.method", "cart.items", "user.id",
                     "http.response.status_code", "url.path", "server.address", "server.port"}
        res_keys = {"service.name", "service.version", "deployment.environment"}
        b = self.ok("/api/search/tags?" + rng)
        self.assertEqual(set(b), {"tagNames"})
        self.assertLessEqual(span_keys | res_keys, set(b["tagNames"]))
        self.assertEqual(len(b["tagNames"]), len(set(b["tagNames"])))
        b = self.ok("/api/search/tags?scope=span&" + rng)
        self.assertLessEqual(span_keys, set(b["tagNames"]))
        self.assertFalse(res_keys & set(b["tagNames"]))
        b = self.ok("/api/search/tags?scope=resource&" + rng)
        self.assertLessEqual(res_keys, set(b["tagNames"]))
        self.assertFalse(span_keys & set(b["tagNames"]))
        b = self.ok("/api/search/tags?scope=intrinsic")
        self.assertEqual(b["tagNames"], ["duration", "kind", "name", "status", "statusMessage"])
        # v2: one list per scope, names without their scope prefix (Grafana adds it).
        b = self.ok("/api/v2/search/tags?limit=%d&%s" % (MAX_TAG_VALUES, rng))
        self.assertEqual(set(b), {"scopes"})
        scopes = {s["name"]: s["tags"] for s in b["scopes"]}
        self.assertEqual([s["name"] for s in b["scopes"]], ["span", "resource", "intrinsic"])
        self.assertLessEqual(span_keys, set(scopes["span"]))
        self.assertFalse(res_keys & set(scopes["span"]))
        self.assertLessEqual(res_keys, set(scopes["resource"]))
        self.assertFalse(span_keys & set(scopes["resource"]))
        self.assertEqual(scopes["intrinsic"], ["duration", "kind", "name", "status",
                                               "statusMessage"])
        b = self.ok("/api/v2/search/tags?scope=resource&" + rng)
        self.assertEqual([s["name"] for s in b["scopes"]], ["resource"])
        b = self.ok("/api/v2/search/tags?scope=span&limit=1&" + rng)
        self.assertEqual(len(b["scopes"][0]["tags"]), 1)
        # Values. v1: plain strings, span or resource attribute.
        b = self.ok("/api/search/tag/http.route/values")
        self.assertEqual(sorted(b["tagValues"]), ["/cart", "/checkout", "/pay"])
        b = self.ok("/api/search/tag/service.name/values")
        self.assertEqual(sorted(b["tagValues"]), ["cart", "frontend", "payments"])
        b = self.ok("/api/search/tag/http.response.status_code/values")
        self.assertEqual(sorted(b["tagValues"]), ["200", "502"])
        # v2: typed as Tempo types them, scoped names.
        b = self.ok("/api/v2/search/tag/resource.service.name/values")
        self.assertEqual(sorted(b["tagValues"], key=lambda v: v["value"]),
                         [{"type": "string", "value": s} for s in ("cart", "frontend",
                                                                   "payments")])
        b = self.ok("/api/v2/search/tag/span.http.response.status_code/values")
        self.assertEqual(sorted(b["tagValues"], key=lambda v: v["value"]),
                         [{"type": "int", "value": "200"}, {"type": "int", "value": "502"}])
        b = self.ok("/api/v2/search/tag/span.service.name/values")  # a resource attribute
        self.assertEqual(b["tagValues"], [])
        b = self.ok("/api/v2/search/tag/resource.http.route/values")  # a span attribute
        self.assertEqual(b["tagValues"], [])
        b = self.ok("/api/v2/search/tag/.http.route/values")
        self.assertEqual(sorted(v["value"] for v in b["tagValues"]), ["/cart", "/checkout",
                                                                       "/pay"])
        # Intrinsics: span names of every kind from the derived tables; keyword enums.
        b = self.ok("/api/v2/search/tag/name/values")
        self.assertEqual(b["tagValues"], [{"type": "string", "value": n}
                                          for n in ("GET /cart", "GET /checkout", "POST /pay")])
        b = self.ok("/api/search/tag/name/values")
        self.assertEqual(b["tagValues"], ["GET /cart", "GET /checkout", "POST /pay"])
        b = self.ok("/api/v2/search/tag/status/values")
        self.assertEqual(b["tagValues"], [{"type": "keyword", "value": v}
                                          for v in ("error", "ok", "unset")])
        b = self.ok("/api/v2/search/tag/kind/values")
        self.assertEqual([v["value"] for v in b["tagValues"]],
                         ["unspecified", "internal", "server", "client", "producer",
                          "consumer"])
        self.assertEqual(self.ok("/api/v2/search/tag/duration/values"), {"tagValues": []})
        # Limits: 1..query.max_tag_values (Grafana asks for 5000 by default).
        self.ok("/api/v2/search/tags?limit=%d" % MAX_TAG_VALUES)
        self.tempo_400("/api/v2/search/tags?limit=%d" % (MAX_TAG_VALUES + 1),
                       "'limit' must be 1..%d" % MAX_TAG_VALUES)
        self.tempo_400("/api/v2/search/tag/.x/values?limit=0", "'limit' must be")
        self.tempo_400("/api/search/tags?scope=everything", "invalid scope")
        self.tempo_400("/api/v2/search/tags?scope=everything", "invalid scope")
        self.tempo_400("/api/search/tags?start=9&end=3", "invalid start")
        self.tempo_400("/api/v2/search/tag/span./values", "invalid tag name")
        self.tempo_400("/api/v2/search/tag/http.route/values", "invalid tag name 'http.route'")
        self.tempo_400("/api/v2/search/tags?colour=1", "unknown parameter 'colour'")
        r = get(self.srv.port, "/api/echo")
        self.assertEqual((r.status, r.body), (200, b"echo"))

    def test_metrics_span_names(self):
        r = get(self.srv.port, "/metrics")
        self.assertEqual(r.status, 200)
        lines = dict(ln.rsplit(" ", 1) for ln in r.body.decode().splitlines()
                     if ln and not ln.startswith("#"))
        # frontend: GET /checkout server, GET /cart and POST /pay client; cart and payments:
        # one server span name each.
        self.assertEqual(lines["cairn_telemetry_span_names"], "5")
        self.assertEqual(lines["cairn_telemetry_span_names_dropped_total"], "0")

if __name__ == "__main__":
    main()
