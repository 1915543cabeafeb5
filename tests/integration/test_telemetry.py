"""Integration tests of telemetry ingest: the real `cairn up`, the real OpenTelemetry JS SDK
(tests/integration/otel, installed by scripts/deps.sh) and raw OTLP/Zipkin bytes on loopback.

What is checked: every field the SDK exported comes back from /api/v1/traces/{id} (and its
/logs) exactly, for protobuf and JSON, with and without gzip; chunked bodies; partial success
in both encodings; 400/413/415 answers; 429 with Retry-After when the store is full, losing
nothing acknowledged; Zipkin v2; that every acknowledged batch survives kill -9 (with and
without fsync) and a clean restart.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_telemetry.py
"""

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (CairnTestCase, Conn, get, gz, main, metric, metrics,  # noqa: E402
                   request_bytes, scaled)

HERE = os.path.dirname(os.path.abspath(__file__))
OTEL_DIR = os.path.join(HERE, "otel")
EXPORT_MJS = os.path.join(OTEL_DIR, "export.mjs")

PB = "application/x-protobuf"
JSON_CT = "application/json"

SPAN_KEYS = {"traceId", "spanId", "parentSpanId", "traceState", "name", "kind",
             "startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount",
             "events", "droppedEventsCount", "links", "droppedLinksCount", "status", "flags",
             "resource", "scope"}
LOG_KEYS = {"timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body",
            "attributes", "droppedAttributesCount", "flags", "traceId", "spanId", "eventName",
            "resource", "scope"}


def log(msg):
    """A line for the person reading the test output (counts, timings)."""
    sys.stderr.write("    " + msg + "\n")
    sys.stderr.flush()


# ---- a tiny protobuf encoder/decoder (field numbers from opentelemetry-proto) ------------

def pb_varint(n):
    n &= (1 << 64) - 1  # int64 negatives are ten-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_key(field, wire):
    return pb_varint(field << 3 | wire)


def pb_uint(field, n):
    return pb_key(field, 0) + pb_varint(n)


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return pb_key(field, 2) + pb_varint(len(data)) + data


def pb_fixed64(field, n):
    return pb_key(field, 1) + struct.pack("<Q", n)


def pb_fixed32(field, n):
    return pb_key(field, 5) + struct.pack("<I", n)


def pb_double(field, x):
    return pb_key(field, 1) + struct.pack("<d", x)


def pb_any(v):
    """AnyValue from a Python value: str, bool, int, float, bytes, list, dict."""
    if isinstance(v, bool):
        return pb_uint(2, int(v))
    if isinstance(v, str):
        return pb_bytes(1, v)
    if isinstance(v, int):
        return pb_uint(3, v)
    if isinstance(v, float):
        return pb_double(4, v)
    if isinstance(v, bytes):
        return pb_bytes(7, v)
    if isinstance(v, list):
        return pb_bytes(5, b"".join(pb_bytes(1, pb_any(x)) for x in v))
    if isinstance(v, dict):
        return pb_bytes(6, b"".join(pb_bytes(1, pb_kv(k, x)) for k, x in v.items()))
    raise TypeError(v)


def pb_kv(key, v):
    return pb_bytes(1, key) + pb_bytes(2, pb_any(v))


def pb_attrs(field, attrs):
    return b"".join(pb_bytes(field, pb_kv(k, v)) for k, v in attrs.items())


def pb_span(trace_id, span_id, name, start, end, parent=b"", kind=1, attrs=None, events=(),
            links=(), status=None, trace_state="", flags=None):
    out = pb_bytes(1, trace_id) + pb_bytes(2, span_id)
    if trace_state:
        out += pb_bytes(3, trace_state)
    if parent:
        out += pb_bytes(4, parent)
    out += pb_bytes(5, name) + pb_uint(6, kind) + pb_fixed64(7, start) + pb_fixed64(8, end)
    out += pb_attrs(9, attrs or {})
    for t, ename, eattrs in events:
        out += pb_bytes(11, pb_fixed64(1, t) + pb_bytes(2, ename) + pb_attrs(3, eattrs))
    for ltid, lsid, lstate, lattrs in links:
        out += pb_bytes(13, pb_bytes(1, ltid) + pb_bytes(2, lsid) + pb_bytes(3, lstate) +
                        pb_attrs(4, lattrs))
    if status:
        out += pb_bytes(15, pb_bytes(2, status[1]) + pb_uint(3, status[0]))
    if flags is not None:
        out += pb_fixed32(16, flags)
    return out


def pb_traces_request(spans, service="pb-svc", scope=("pb-scope", "1.0")):
    resource = pb_attrs(1, {"service.name": service})
    sc = pb_bytes(1, scope[0]) + pb_bytes(2, scope[1])
    scope_spans = pb_bytes(1, sc) + b"".join(pb_bytes(2, s) for s in spans)
    resource_spans = pb_bytes(1, resource) + pb_bytes(2, scope_spans)
    return pb_bytes(1, resource_spans)


def pb_decode(data):
    """[(field, wire type, value)]: ints for varint/fixed, bytes for length-delimited."""
    out, i = [], 0
    while i < len(data):
        key, i = _pb_read_varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _pb_read_varint(data, i)
        elif wire == 1:
            v, i = struct.unpack_from("<Q", data, i)[0], i + 8
        elif wire == 5:
            v, i = struct.unpack_from("<I", data, i)[0], i + 4
        elif wire == 2:
            n, i = _pb_read_varint(data, i)
            if i + n > len(data):
                raise ValueError("length past the end")
            v, i = data[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wire)
        out.append((field, wire, v))
    return out


def _pb_read_varint(data, i):
    n, shift = 0, 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


# ---- OTLP JSON bodies --------------------------------------------------------------------

def js_span(trace_id, span_id, name, start, end, parent="", kind=1, attrs=None, **more):
    s = {"traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
         "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
         "attributes": [{"key": k, "value": {"stringValue": v}}
                        for k, v in (attrs or {}).items()]}
    if parent:
        s["parentSpanId"] = parent
    s.update(more)
    return s


def js_traces_request(spans, service="it-svc"):
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "it", "version": "1"}, "spans": spans}]}]},
        ensure_ascii=False).encode()


def new_trace_id():
    return os.urandom(16).hex()


def new_span_id():
    return os.urandom(8).hex()


def batch_body(num_traces, spans_per_trace, pad=0, service="it-svc"):
    """A JSON export of num_traces new traces (a root and its children each); returns
    (body, {trace id: [span ids]})."""
    now = time.time_ns()
    spans, want = [], {}
    for _ in range(num_traces):
        tid = new_trace_id()
        root = new_span_id()
        ids = [root]
        spans.append(js_span(tid, root, "root", now, now + 5000, kind=2,
                             attrs={"pad": "r" * pad} if pad else None))
        for k in range(spans_per_trace - 1):
            sid = new_span_id()
            ids.append(sid)
            spans.append(js_span(tid, sid, "child-%d" % k, now + 10 + k, now + 900 + k,
                                 parent=root, kind=3, attrs={"pad": "c" * pad} if pad else None))
        want[tid] = ids
    return js_traces_request(spans, service), want


def otlp_post(path, body, ctype=JSON_CT, headers=None):
    """A POST to the OTLP port as bytes (Content-Length framing)."""
    hs = [("Content-Type", ctype)] if ctype else []
    return request_bytes("POST", path, headers=hs + list(headers or []), body=body)


def chunk_body(data, sizes):
    """data in chunks of the given sizes (the last size repeats), then the last chunk."""
    out, i, k = b"", 0, 0
    while i < len(data):
        n = sizes[min(k, len(sizes) - 1)]
        part = data[i:i + n]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
        i += n
        k += 1
    return out + b"0\r\n\r\n"


# ---- reading back ------------------------------------------------------------------------

def fetch_json(port, path):
    r = get(port, path)
    return r.status, (json.loads(r.body) if r.body else None), r


class Reader:
    """GETs on one keep-alive connection to the API port (many traces, fast)."""

    def __init__(self, port):
        self.port = port
        self.conn = Conn(port)

    def get(self, path):
        for attempt in (0, 1):
            try:
                self.conn.send(request_bytes("GET", path))
                r = self.conn.read_response()
                if (r.header("Connection") or "").lower() == "close":
                    self.conn.close()
                    self.conn = Conn(self.port)
                return r
            except (OSError, ConnectionError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = Conn(self.port)

    def trace_span_ids(self, trace_id):
        r = self.get("/api/v1/traces/" + trace_id)
        if r.status == 404:
            return []
        if r.status != 200:
            raise AssertionError("GET trace %s: %d %r" % (trace_id, r.status, r.body[:300]))
        return [s["spanId"] for s in json.loads(r.body)["spans"]]

    def close(self):
        self.conn.close()


def norm_attrs(test, attrs, where):
    """Attributes as {key: value}: OTLP attributes are a map; the order is not compared, but a
    key given twice is an error."""
    test.assertIsInstance(attrs, list, where)
    d = {}
    for kv in attrs:
        test.assertEqual(set(kv), {"key", "value"}, "%s: %r" % (where, kv))
        test.assertNotIn(kv["key"], d, "%s: key %r twice" % (where, kv["key"]))
        d[kv["key"]] = kv["value"]
    return d


def norm_resource(test, r, where):
    r = dict(r)
    r["attributes"] = norm_attrs(test, r["attributes"], where + ".resource")
    return r


def norm_scope(test, s, where):
    s = dict(s)
    s["attributes"] = norm_attrs(test, s.get("attributes", []), where + ".scope")
    return s


def norm_span(test, s):
    w = "span %s %r" % (s.get("spanId"), s.get("name"))
    s = dict(s)
    s["attributes"] = norm_attrs(test, s["attributes"], w)
    s["events"] = [dict(e, attributes=norm_attrs(test, e["attributes"], w + ".event"))
                   for e in s["events"]]
    s["links"] = [dict(l, attributes=norm_attrs(test, l["attributes"], w + ".link"))
                  for l in s["links"]]
    s["resource"] = norm_resource(test, s["resource"], w)
    s["scope"] = norm_scope(test, s["scope"], w)
    return s


def norm_log(test, l):
    w = "log %s@%s" % (l.get("spanId"), l.get("timeUnixNano"))
    l = dict(l)
    l["attributes"] = norm_attrs(test, l["attributes"], w)
    l["resource"] = norm_resource(test, l["resource"], w)
    l["scope"] = norm_scope(test, l["scope"], w)
    return l


def log_order(l):
    return (int(l["timeUnixNano"]), l["spanId"], json.dumps(l["body"], sort_keys=True))


# ---- the OpenTelemetry JS SDK ------------------------------------------------------------

def node_env():
    """The environment for node, without OTEL_* settings that would change the exporters."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def run_export(srv, protocol, use_gzip, out_dir):
    """Runs export.mjs against srv's OTLP port; returns its description of what it sent."""
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(OTEL_DIR, "node_modules", "@opentelemetry")):
        raise AssertionError("node or tests/integration/otel/node_modules missing: run "
                             "scripts/deps.sh")
    out = os.path.join(out_dir, "sent-%s%s.json" % (protocol, "-gzip" if use_gzip else ""))
    argv = [node, EXPORT_MJS, "--url", "http://127.0.0.1:%d" % srv.otlp_port,
            "--protocol", protocol, "--out", out] + (["--gzip"] if use_gzip else [])
    p = subprocess.run(argv, cwd=OTEL_DIR, env=node_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60 + scaled(15))
    desc = None
    if os.path.exists(out):
        with open(out) as f:
            desc = json.load(f)
    if p.returncode != 0:
        raise AssertionError("export.mjs exited %d\nstderr: %s\nexports: %s\nserver log:\n%s"
                             % (p.returncode, p.stderr.decode("utf-8", "replace")[-3000:],
                                desc and desc.get("exports"), srv.logs()[-3000:]))
    return desc


class TelemetryCase(CairnTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-tel-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def otlp(self, srv, data, timeout=None):
        """Sends raw bytes to srv's OTLP port on a new connection; the reply."""
        with Conn(srv.otlp_port, timeout=timeout) as c:
            c.send(data)
            return c.read_response()

    def assertJsonError(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        err = json.loads(r.body)
        self.assertIsInstance(err.get("error"), str, r)
        self.assertTrue(err["error"], r)
        return err

    def check_described(self, srv, desc):
        """Every trace of the description (what export.mjs sent) served back field by field;
        returns (spans, logs) checked."""
        reader = Reader(srv.port)
        self.addCleanup(reader.close)
        num_spans = num_logs = 0
        res = desc["resource"]
        for t in desc["traces"]:
            tid = t["traceId"]
            r = reader.get("/api/v1/traces/" + tid)
            self.assertEqual(r.status, 200, "trace %s: %r\n%s" % (tid, r, srv.logs()[-2000:]))
            self.assertEqual(r.header("Content-Type"), "application/json")
            got = json.loads(r.body)
            self.assertEqual(set(got), {"traceId", "spans"})
            self.assertEqual(got["traceId"], tid)
            spans = got["spans"]
            starts = [int(s["startTimeUnixNano"]) for s in spans]
            self.assertEqual(starts, sorted(starts), "spans not sorted by start")
            want = sorted(t["spans"], key=lambda s: (int(s["startTimeUnixNano"]), s["spanId"]))
            self.assertEqual([s["spanId"] for s in spans], [s["spanId"] for s in want],
                             "trace %s: span IDs in start order" % tid)
            for g, w in zip(spans, want):
                self.assertEqual(set(g), SPAN_KEYS, "span %s keys" % w["spanId"])
                for k in ("startTimeUnixNano", "endTimeUnixNano"):
                    self.assertIsInstance(g[k], str, k)
                for e in g["events"]:
                    self.assertIsInstance(e["timeUnixNano"], str)
                self.assertEqual(g["resource"]["serviceName"], res["serviceName"])
                self.assertEqual(norm_span(self, g), norm_span(self, w),
                                 "span %s %r" % (w["spanId"], w["name"]))
                num_spans += 1
            r = reader.get("/api/v1/traces/%s/logs" % tid)
            self.assertEqual(r.status, 200, r)
            got = json.loads(r.body)
            self.assertEqual(set(got), {"traceId", "logs"})
            self.assertEqual(got["traceId"], tid)
            glogs = sorted(got["logs"], key=log_order)
            wlogs = sorted(t["logs"], key=log_order)
            self.assertEqual(len(glogs), len(wlogs), "trace %s: logs\n%r" % (tid, glogs))
            for g, w in zip(glogs, wlogs):
                self.assertEqual(set(g), LOG_KEYS)
                self.assertIsInstance(g["timeUnixNano"], str)
                self.assertEqual(norm_log(self, g), norm_log(self, w),
                                 "log of span %s at %s" % (w["spanId"], w["timeUnixNano"]))
                num_logs += 1
        return num_spans, num_logs


# ---- the real SDK, field by field --------------------------------------------------------

class TestOtelSdk(TelemetryCase):
    """export.mjs (OpenTelemetry JS SDK 2.x, the OTLP proto and http exporters) against a fresh
    server; everything it sent is read back."""

    def roundtrip(self, protocol, use_gzip):
        srv = self.start(workers=2)
        desc = run_export(srv, protocol, use_gzip, self.tmp)
        self.assertEqual(desc["problems"], [])
        self.assertEqual([(e["signal"], e["records"], e["code"]) for e in desc["exports"]],
                         [("traces", 5, 0), ("logs", 4, 0)])
        self.assertEqual(len(desc["traces"]), 2)
        # What the description promises: the shapes the SDK was asked to make.
        spans = [s for t in desc["traces"] for s in t["spans"]]
        self.assertEqual(sorted(s["kind"] for s in spans), [1, 2, 3, 4, 5])
        self.assertTrue(any(s["status"]["code"] == 2 and s["status"]["message"] for s in spans))
        self.assertTrue(any(e["name"] == "exception" for s in spans for e in s["events"]))
        self.assertTrue(any(s["links"] for s in spans))
        self.assertTrue(any(s["traceState"] for s in spans))
        num_spans, num_logs = self.check_described(srv, desc)
        self.assertEqual((num_spans, num_logs), (5, 4))
        m = metrics(srv.port)
        self.assertEqual(metric(m, "cairn_telemetry_records_total", signal="spans"), 5)
        self.assertEqual(metric(m, "cairn_telemetry_records_total", signal="logs"), 4)
        self.assertEqual(metric(m, "cairn_telemetry_rejected_total", signal="spans"), 0)
        self.assertEqual(metric(m, "cairn_telemetry_exports_total", result="received"), 2)
        self.assertEqual(metric(m, "cairn_telemetry_exports_total", result="bad_request"), 0)
        for what in ("attributes", "attribute_values", "events", "links"):
            self.assertEqual(metric(m, "cairn_telemetry_truncated_total", what=what), 0, what)
        # An unknown trace is 404; a malformed ID 400.
        st, body, _ = fetch_json(srv.port, "/api/v1/traces/" + new_trace_id())
        self.assertEqual(st, 404, body)
        st, body, _ = fetch_json(srv.port, "/api/v1/traces/" + "0" * 32)
        self.assertEqual(st, 400, body)

    def test_proto(self):
        self.roundtrip("proto", False)

    def test_json(self):
        self.roundtrip("json", False)

    def test_proto_gzip(self):
        self.roundtrip("proto", True)

    def test_json_gzip(self):
        self.roundtrip("json", True)


# ---- raw OTLP bytes ----------------------------------------------------------------------

class TestOtlpWire(TelemetryCase):
    def test_chunked_json_and_gzip_proto(self):
        srv = self.start()
        # JSON in odd-sized chunks, one boundary inside a multi-byte character.
        tid, sid = new_trace_id(), new_span_id()
        t0 = 1_700_000_000_123_456_789
        body = js_traces_request([js_span(tid, sid, "chunked é span", t0, t0 + 42, kind=2,
                                          attrs={"note": "ünïcødé ✓"})])
        cut = body.index("é".encode()) + 1
        with Conn(srv.otlp_port) as c:
            c.send(request_bytes("POST", "/v1/traces", headers=[
                ("Content-Type", JSON_CT), ("Transfer-Encoding", "chunked")]))
            c.send(chunk_body(body[:cut], [1, 7, 300]) [:-5])  # no last chunk yet
            c.send(chunk_body(body[cut:], [3, 4096]))
            r = c.read_response()
            self.assertEqual((r.status, r.header("Content-Type"), r.body),
                             (200, JSON_CT, b"{}"), r)
            # The same connection takes a second export.
            tid2 = new_trace_id()
            body2 = js_traces_request([js_span(tid2, new_span_id(), "second", t0, t0 + 1)])
            c.send(request_bytes("POST", "/v1/traces", headers=[
                ("Content-Type", JSON_CT), ("Transfer-Encoding", "chunked")]) +
                chunk_body(body2, [10]))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"{}"), r)
        st, got, _ = fetch_json(srv.port, "/api/v1/traces/" + tid)
        self.assertEqual(st, 200, got)
        (s,) = got["spans"]
        self.assertEqual((s["name"], s["spanId"], s["kind"], s["startTimeUnixNano"],
                          s["endTimeUnixNano"], s["attributes"]),
                         ("chunked é span", sid, 2, str(t0), str(t0 + 42),
                          [{"key": "note", "value": {"stringValue": "ünïcødé ✓"}}]))
        st, got, _ = fetch_json(srv.port, "/api/v1/traces/" + tid2)
        self.assertEqual((st, len(got["spans"])), (200, 1))

        # Protobuf, gzip, chunked: a span with every field, built by hand.
        ptid, psid, pparent = os.urandom(16), os.urandom(8), os.urandom(8)
        ltid, lsid = os.urandom(16), os.urandom(8)
        span = pb_span(ptid, psid, "pb span", t0, t0 + 999_999_999, parent=pparent, kind=3,
                       attrs={"s": "str", "i": -9_000_000_000_000_000_000, "d": -0.125,
                              "b": False, "y": b"\x00\xffraw", "a": ["x", 1, 2.5, True],
                              "m": {"k": "v", "n": 7}},
                       events=[(t0 + 5, "ev", {"e.i": 3})],
                       links=[(ltid, lsid, "k=v", {"l.s": "ok"})],
                       status=(2, "boom"), trace_state="congo=t61rcWkgMzE", flags=0x301)
        body = gz(pb_traces_request([span], service="pb-svc", scope=("pb-scope", "3.1")))
        with Conn(srv.otlp_port) as c:
            c.send(request_bytes("POST", "/v1/traces", headers=[
                ("Content-Type", PB), ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked")]) + chunk_body(body, [5, 11, 64]))
            r = c.read_response()
        self.assertEqual((r.status, r.header("Content-Type"), r.body), (200, PB, b""), r)
        st, got, _ = fetch_json(srv.port, "/api/v1/traces/" + ptid.hex())
        self.assertEqual(st, 200, got)
        (s,) = got["spans"]
        want = {
            "traceId": ptid.hex(), "spanId": psid.hex(), "parentSpanId": pparent.hex(),
            "traceState": "congo=t61rcWkgMzE", "name": "pb span", "kind": 3,
            "startTimeUnixNano": str(t0), "endTimeUnixNano": str(t0 + 999_999_999),
            "attributes": [
                {"key": "s", "value": {"stringValue": "str"}},
                {"key": "i", "value": {"intValue": "-9000000000000000000"}},
                {"key": "d", "value": {"doubleValue": -0.125}},
                {"key": "b", "value": {"boolValue": False}},
                {"key": "y", "value": {"bytesValue": base64.b64encode(b"\x00\xffraw").decode()}},
                {"key": "a", "value": {"arrayValue": {"values": [
                    {"stringValue": "x"}, {"intValue": "1"}, {"doubleValue": 2.5},
                    {"boolValue": True}]}}},
                {"key": "m", "value": {"kvlistValue": {"values": [
                    {"key": "k", "value": {"stringValue": "v"}},
                    {"key": "n", "value": {"intValue": "7"}}]}}}],
            "droppedAttributesCount": 0,
            "events": [{"timeUnixNano": str(t0 + 5), "name": "ev",
                        "attributes": [{"key": "e.i", "value": {"intValue": "3"}}],
                        "droppedAttributesCount": 0}],
            "droppedEventsCount": 0,
            "links": [{"traceId": ltid.hex(), "spanId": lsid.hex(), "traceState": "k=v",
                       "attributes": [{"key": "l.s", "value": {"stringValue": "ok"}}],
                       "droppedAttributesCount": 0, "flags": 0}],
            "droppedLinksCount": 0,
            "status": {"code": 2, "message": "boom"},
            "flags": 0x301,
            "resource": {"serviceName": "pb-svc", "droppedAttributesCount": 0, "attributes": [
                {"key": "service.name", "value": {"stringValue": "pb-svc"}}]},
            "scope": {"name": "pb-scope", "version": "3.1", "attributes": []},
        }
        self.assertEqual(norm_span(self, s), norm_span(self, want))
        self.assertEqual(srv.metric("cairn_telemetry_records_total", signal="spans"), 3)

    def test_json_number_past_int64(self):
        """JavaScript's JSON.stringify and Go's encoding/json write the double 1e20 in plain
        digits: an integer literal past int64. The export is still taken whole, every other
        number (kind, flags, counts) read as before."""
        srv = self.start()
        tid, sid = new_trace_id(), new_span_id()
        t0 = 1_700_000_003_000_000_007
        span = js_span(tid, sid, "big numbers", t0, t0 + 10, kind=2, flags=257,
                       droppedAttributesCount=0)
        span["attributes"] = [{"key": "bytes.total", "value": {"doubleValue": "@BIG@"}},
                              {"key": "n", "value": {"intValue": 7}}]
        body = js_traces_request([span]).replace(b'"@BIG@"', b"100000000000000000000")
        r = self.otlp(srv, otlp_post("/v1/traces", body))
        self.assertEqual((r.status, r.body), (200, b"{}"), r)
        st, got, _ = fetch_json(srv.port, "/api/v1/traces/" + tid)
        self.assertEqual(st, 200, got)
        (s,) = got["spans"]
        self.assertEqual((s["kind"], s["flags"], s["startTimeUnixNano"]), (2, 257, str(t0)))
        self.assertEqual(norm_attrs(self, s["attributes"], "span"),
                         {"bytes.total": {"doubleValue": 1e20}, "n": {"intValue": "7"}})

    def test_partial_success_json(self):
        srv = self.start()
        tid = new_trace_id()
        good = js_span(tid, new_span_id(), "good", 1000, 2000)
        bad = js_span("0" * 32, new_span_id(), "bad", 1000, 2000)
        r = self.otlp(srv, otlp_post("/v1/traces", js_traces_request([good, bad])))
        self.assertEqual((r.status, r.header("Content-Type")), (200, JSON_CT), r)
        st, body, _ = fetch_json(srv.port, "/api/v1/traces/" + tid)
        self.assertEqual((st, [s["name"] for s in body["spans"]]), (200, ["good"]))
        self.assertEqual(srv.metric("cairn_telemetry_rejected_total", signal="spans"), 1)
        self.assertEqual(srv.metric("cairn_telemetry_records_total", signal="spans"), 1)
        got = json.loads(r.body)
        self.assertEqual(set(got), {"partialSuccess"}, got)
        ps = got["partialSuccess"]
        self.assertEqual(set(ps), {"rejectedSpans", "errorMessage"}, ps)
        self.assertEqual(ps["rejectedSpans"], "1")
        self.assertIsInstance(ps["errorMessage"], str)
        self.assertIn("traceid", ps["errorMessage"].lower().replace("_", ""), ps)

    def test_partial_success_all_refused(self):
        """Every span refused: still 200 with the count (both encodings), nothing stored."""
        srv = self.start()
        bad = js_span("0" * 32, new_span_id(), "bad", 1000, 2000)
        r = self.otlp(srv, otlp_post("/v1/traces", js_traces_request([bad, bad])))
        self.assertEqual(r.status, 200, r)
        ps = json.loads(r.body)["partialSuccess"]
        self.assertEqual(ps["rejectedSpans"], "2")
        self.assertEqual(ps["errorMessage"],
                         "resourceSpans[0].scopeSpans[0].spans[0].traceId: all zero")
        pbad = pb_span(b"\x00" * 16, os.urandom(8), "bad", 1000, 2000)
        r = self.otlp(srv, otlp_post("/v1/traces", pb_traces_request([pbad]), PB))
        self.assertEqual((r.status, r.header("Content-Type")), (200, PB), r)
        inner = pb_decode(r.body)
        self.assertEqual([(f, w) for f, w, _ in inner], [(1, 2)], r.body)
        fields = pb_decode(inner[0][2])
        self.assertEqual([(f, w, v if f == 1 else None) for f, w, v in fields],
                         [(1, 0, 1), (2, 2, None)], r.body)
        self.assertTrue(fields[1][2], r.body)
        self.assertEqual(srv.metric("cairn_telemetry_records_total", signal="spans"), 0)
        self.assertEqual(srv.metric("cairn_telemetry_rejected_total", signal="spans"), 3)

    def test_partial_success_proto(self):
        srv = self.start()
        tid = os.urandom(16)
        good = pb_span(tid, os.urandom(8), "good", 1000, 2000)
        bad = pb_span(b"\x00" * 16, os.urandom(8), "bad", 1000, 2000)
        r = self.otlp(srv, otlp_post("/v1/traces", pb_traces_request([good, bad]), PB))
        self.assertEqual((r.status, r.header("Content-Type")), (200, PB), r)
        st, body, _ = fetch_json(srv.port, "/api/v1/traces/" + tid.hex())
        self.assertEqual((st, [s["name"] for s in body["spans"]]), (200, ["good"]))
        self.assertEqual(srv.metric("cairn_telemetry_rejected_total", signal="spans"), 1)
        fields = pb_decode(r.body)
        self.assertEqual([(f, w) for f, w, _ in fields], [(1, 2)], r.body)
        inner = pb_decode(fields[0][2])
        self.assertEqual([(f, w) for f, w, _ in inner], [(1, 0), (2, 2)], fields[0][2])
        self.assertEqual(inner[0][2], 1)
        msg = inner[1][2].decode()
        self.assertIn("trace", msg.lower(), msg)
        # Exact bytes: ExportTraceServiceResponse{partial_success{rejected_spans: 1,
        # error_message: msg}}.
        self.assertEqual(r.body, pb_bytes(1, pb_uint(1, 1) + pb_bytes(2, msg)))

    def test_bad_requests(self):
        srv = self.start(settings={"otlp.max_body_bytes": "64k"})
        limit = 64 * 1024
        # Malformed JSON, JSON of the wrong shape, malformed protobuf: 400 with a message.
        for path, body, ctype in (("/v1/traces", b'{"resourceSpans": [', JSON_CT),
                                  ("/v1/logs", b'{"resourceLogs": [{]}', JSON_CT),
                                  ("/v1/traces", b'{"resourceSpans": 5}', JSON_CT),
                                  ("/v1/logs", b'{"resourceLogs": [{"scopeLogs": {}}]}',
                                   JSON_CT),
                                  ("/v1/traces", b"\x0a\xff\xff\xff\xff\x0f\x01", PB),
                                  ("/v1/logs", b"\x0a\x05\x12\x03\x0a", PB)):
            r = self.otlp(srv, otlp_post(path, body, ctype))
            if ctype == PB:
                # A google.rpc.Status in protobuf: code 3 (INVALID_ARGUMENT), a message.
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.header("Content-Type"), "application/x-protobuf", r)
                self.assertEqual(r.body[:3], b"\x08\x03\x12", r)
                self.assertEqual(r.body[3], len(r.body) - 4, r)
                self.assertTrue(r.body[4:].decode(), r)
            else:
                err = self.assertJsonError(r, 400)
                self.assertEqual((err["code"], err["message"]), (3, err["error"]), r)
        # Malformed gzip: 400, a google.rpc.Status like any decoding error.
        r = self.otlp(srv, otlp_post("/v1/traces", b"\x1f\x8b\x08\x00garbage", JSON_CT,
                                     [("Content-Encoding", "gzip")]))
        err = self.assertJsonError(r, 400)
        self.assertEqual((err["code"], err["message"]), (3, err["error"]), r)
        # Wrong or missing Content-Type: 415.
        ok_body = js_traces_request([js_span(new_trace_id(), new_span_id(), "x", 1, 2)])
        for ctype in ("text/plain", "application/xml", "application/protobuf", None):
            r = self.otlp(srv, otlp_post("/v1/traces", ok_body, ctype))
            self.assertJsonError(r, 415)
        # Over otlp.max_body_bytes by Content-Length: 413 from the head alone, still a
        # google.rpc.Status in the request's encoding (the server core answers it).
        with Conn(srv.otlp_port) as c:
            c.send(request_bytes("POST", "/v1/traces", headers=[
                ("Content-Type", JSON_CT), ("Content-Length", str(limit + 1))]))
            r = c.read_response()
        err = self.assertJsonError(r, 413)
        self.assertEqual(err["code"], 3, r)
        self.assertIn("otlp.max_body_bytes", err["message"], r)
        with Conn(srv.otlp_port) as c:
            c.send(request_bytes("POST", "/v1/logs", headers=[
                ("Content-Type", PB), ("Content-Length", str(limit + 1))]))
            r = c.read_response()
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.header("Content-Type"), "application/x-protobuf", r)
        self.assertEqual(r.body[:3], b"\x08\x03\x12", r)
        self.assertIn(b"otlp.max_body_bytes", r.body, r)
        # Exactly at the limit is taken (a valid body padded with spaces).
        at_limit = ok_body + b" " * (limit - len(ok_body))
        r = self.otlp(srv, otlp_post("/v1/traces", at_limit))
        self.assertEqual((r.status, r.body), (200, b"{}"), r)
        # Over the limit in chunks: 413.
        over = ok_body + b" " * (limit + 1 - len(ok_body))
        with Conn(srv.otlp_port) as c:
            c.send(request_bytes("POST", "/v1/traces", headers=[
                ("Content-Type", JSON_CT), ("Transfer-Encoding", "chunked")]))
            try:
                c.send(chunk_body(over, [16384]))
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
        self.assertEqual(self.assertJsonError(r, 413)["code"], 3, r)
        # A gzip bomb: 2 KiB on the wire, 16 MiB decoded: 413, the limit counts decoded bytes.
        bomb = gz(b" " * (16 << 20))
        self.assertLess(len(bomb), limit)
        r = self.otlp(srv, otlp_post("/v1/traces", bomb, JSON_CT, [("Content-Encoding", "gzip")]))
        self.assertEqual(self.assertJsonError(r, 413)["code"], 3, r)
        # Still serving, and only the one good export stored.
        r = self.otlp(srv, otlp_post("/v1/traces", gz(ok_body), JSON_CT,
                                     [("Content-Encoding", "gzip")]))
        self.assertEqual((r.status, r.body), (200, b"{}"), r)
        self.assertEqual(srv.metric("cairn_telemetry_records_total", signal="spans"), 2)

    def test_413_names_the_otlp_limit(self):
        """A 413 on the OTLP port tells which setting to raise: otlp.max_body_bytes (the
        API port's http.max_body_bytes does not apply there)."""
        srv = self.start(settings={"otlp.max_body_bytes": "4k"})
        answers = []
        with Conn(srv.otlp_port) as c:
            c.send(request_bytes("POST", "/v1/traces", headers=[
                ("Content-Type", JSON_CT), ("Content-Length", "5000")]))
            answers.append(("Content-Length", c.read_response()))
        answers.append(("gzip", self.otlp(srv, otlp_post(
            "/v1/traces", gz(b" " * 5000), JSON_CT, [("Content-Encoding", "gzip")]))))
        for how, r in answers:
            self.assertEqual(r.status, 413, r)
        self.assertEqual([(how, r.body) for how, r in answers
                          if b"otlp.max_body_bytes" not in r.body], [])

    def test_store_full(self):
        srv = self.start(settings={"telemetry.memory": "16m"})
        acked = {}
        refused = None
        with Conn(srv.otlp_port) as c:
            for i in range(400):  # 16 MiB / 170 KiB bodies: refused well before 400
                body, want = batch_body(1, 40, pad=4000, service="full")
                c.send(otlp_post("/v1/traces", body))
                r = c.read_response()
                if r.status == 200:
                    self.assertEqual(r.body, b"{}")
                    acked.update(want)
                    continue
                refused = r
                break
        self.assertIsNotNone(refused, "never refused after %d exports" % len(acked))
        self.assertEqual(refused.status, 429, refused)
        self.assertEqual(refused.header("Retry-After"), "1", refused)
        self.assertGreater(len(acked), 10)
        log("store full: %d exports (%d spans) acknowledged before 429"
            % (len(acked), 40 * len(acked)))
        # Still full: nothing was freed, the same export is refused again.
        r = self.otlp(srv, otlp_post("/v1/traces", body))
        self.assertEqual((r.status, r.header("Retry-After")), (429, "1"), r)
        m = metrics(srv.port)
        self.assertGreaterEqual(metric(m, "cairn_telemetry_exports_total", result="refused_full"),
                                2)
        self.assertEqual(metric(m, "cairn_telemetry_records_total", signal="spans"),
                         40 * len(acked))
        self.assertLessEqual(metric(m, "cairn_telemetry_head_bytes"), 16 << 20)
        self.check_all(srv, acked, pad=4000)
        # And after a restart (the WAL replayed into the same 16 MiB head).
        self.assertEqual(srv.stop(), 0)
        srv2 = self.start(settings={"telemetry.memory": "16m", "data_dir": srv.data_dir})
        self.check_all(srv2, acked, pad=4000)

    def check_all(self, srv, acked, pad):
        reader = Reader(srv.port)
        try:
            for tid, ids in acked.items():
                r = reader.get("/api/v1/traces/" + tid)
                self.assertEqual(r.status, 200, "acknowledged trace %s lost" % tid)
                spans = json.loads(r.body)["spans"]
                self.assertEqual(sorted(s["spanId"] for s in spans), sorted(ids))
                for s in spans:
                    self.assertEqual(len(s["attributes"][0]["value"]["stringValue"]), pad)
        finally:
            reader.close()

    def test_logs_partial_and_json_logs(self):
        """Hand-made JSON logs: every field, and a record with a malformed trace ID refused."""
        srv = self.start()
        tid, sid = new_trace_id(), new_span_id()
        t0 = 1_700_000_001_000_000_001
        rec = {"timeUnixNano": str(t0), "observedTimeUnixNano": str(t0 + 1),
               "severityNumber": 17, "severityText": "ERROR",
               "body": {"kvlistValue": {"values": [
                   {"key": "msg", "value": {"stringValue": "disk full"}},
                   {"key": "free", "value": {"intValue": "0"}}]}},
               "attributes": [{"key": "path", "value": {"stringValue": "/var"}},
                              {"key": "ratio", "value": {"doubleValue": 1.5}}],
               "flags": 1, "traceId": tid, "spanId": sid, "eventName": "disk.full"}
        bad = dict(rec, traceId="abc")
        body = json.dumps({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name",
                                         "value": {"stringValue": "logsvc"}}]},
            "scopeLogs": [{"scope": {"name": "lg", "version": "2"},
                           "logRecords": [rec, bad]}]}]}).encode()
        r = self.otlp(srv, otlp_post("/v1/logs", body))
        self.assertEqual((r.status, r.header("Content-Type")), (200, JSON_CT), r)
        st, got, _ = fetch_json(srv.port, "/api/v1/traces/%s/logs" % tid)
        self.assertEqual(st, 200, got)
        (l,) = got["logs"]
        want = dict(rec, droppedAttributesCount=0,
                    resource={"serviceName": "logsvc", "droppedAttributesCount": 0,
                              "attributes": [{"key": "service.name",
                                              "value": {"stringValue": "logsvc"}}]},
                    scope={"name": "lg", "version": "2", "attributes": []})
        self.assertEqual(norm_log(self, l), norm_log(self, want))
        self.assertEqual(srv.metric("cairn_telemetry_rejected_total", signal="logs"), 1)
        self.assertEqual(srv.metric("cairn_telemetry_records_total", signal="logs"), 1)
        got = json.loads(r.body)
        self.assertEqual(set(got), {"partialSuccess"}, got)
        ps = got["partialSuccess"]
        self.assertEqual(ps["rejectedLogRecords"], "1", ps)
        self.assertIn("traceId", ps.get("errorMessage", ""), ps)


# ---- Zipkin ------------------------------------------------------------------------------

class TestZipkin(TelemetryCase):
    def test_two_spans(self):
        srv = self.start()
        trace16 = os.urandom(8).hex()
        root, child = os.urandom(8).hex(), os.urandom(8).hex()
        ts = 1_700_000_002_000_001  # microseconds
        spans = [
            {"traceId": trace16, "id": root, "name": "get /orders", "kind": "SERVER",
             "timestamp": ts, "duration": 1500,
             "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080},
             "tags": {"http.method": "GET", "http.status_code": "200"},
             "annotations": [{"timestamp": ts + 10, "value": "wr"}]},
            {"traceId": trace16, "parentId": root, "id": child, "name": "select",
             "kind": "CLIENT", "timestamp": ts + 100, "duration": 800,
             "localEndpoint": {"serviceName": "frontend"},
             "remoteEndpoint": {"serviceName": "postgres", "ipv4": "10.0.0.9", "port": 5432},
             "tags": {"db.statement": "SELECT 1", "error": "timeout"},
             "annotations": [{"timestamp": ts + 150, "value": "cs"},
                             {"timestamp": ts + 890, "value": "cr"}]},
        ]
        r = self.otlp(srv, otlp_post("/api/v2/spans", json.dumps(spans).encode()))
        self.assertEqual((r.status, r.body), (202, b""), r)
        st, got, _ = fetch_json(srv.port, "/api/v1/traces/" + "0" * 16 + trace16)
        self.assertEqual(st, 200, got)
        self.assertEqual(got["traceId"], "0" * 16 + trace16)
        s1, s2 = got["spans"]
        self.assertEqual((s1["spanId"], s1["parentSpanId"], s1["name"], s1["kind"]),
                         (root, "", "get /orders", 2))
        self.assertEqual((s2["spanId"], s2["parentSpanId"], s2["name"], s2["kind"]),
                         (child, root, "select", 3))
        self.assertEqual((s1["startTimeUnixNano"], s1["endTimeUnixNano"]),
                         (str(ts * 1000), str((ts + 1500) * 1000)))
        self.assertEqual((s2["startTimeUnixNano"], s2["endTimeUnixNano"]),
                         (str((ts + 100) * 1000), str((ts + 900) * 1000)))
        for s in (s1, s2):
            self.assertEqual(s["resource"]["serviceName"], "frontend")
            self.assertEqual(norm_attrs(self, s["resource"]["attributes"], "resource"),
                             {"service.name": {"stringValue": "frontend"}})
        a1 = norm_attrs(self, s1["attributes"], "s1")
        self.assertEqual(a1, {"http.method": {"stringValue": "GET"},
                              "http.status_code": {"stringValue": "200"},
                              "net.host.ip": {"stringValue": "10.0.0.1"},
                              "net.host.port": {"intValue": "8080"}})
        a2 = norm_attrs(self, s2["attributes"], "s2")
        self.assertEqual(a2["db.statement"], {"stringValue": "SELECT 1"})
        self.assertEqual(a2["error"], {"stringValue": "timeout"})
        self.assertEqual(a2["net.peer.name"], {"stringValue": "postgres"})
        self.assertEqual(a2["net.peer.ip"], {"stringValue": "10.0.0.9"})
        self.assertEqual(a2["net.peer.port"], {"intValue": "5432"})
        self.assertEqual(s1["status"], {"code": 0, "message": ""})
        self.assertEqual(s2["status"], {"code": 2, "message": "timeout"})
        self.assertEqual([(e["name"], e["timeUnixNano"], e["attributes"]) for e in s1["events"]],
                         [("wr", str((ts + 10) * 1000), [])])
        self.assertEqual([(e["name"], e["timeUnixNano"]) for e in s2["events"]],
                         [("cs", str((ts + 150) * 1000)), ("cr", str((ts + 890) * 1000))])
        self.assertEqual(srv.metric("cairn_telemetry_records_total", signal="spans"), 2)
        # Not JSON: 400; not a list: 400.
        r = self.otlp(srv, otlp_post("/api/v2/spans", b"[{"))
        self.assertJsonError(r, 400)
        r = self.otlp(srv, otlp_post("/api/v2/spans", b'{"traceId": "1"}'))
        self.assertJsonError(r, 400)


# ---- durability --------------------------------------------------------------------------

class Pump:
    """Clients POSTing JSON exports in a loop over keep-alive connections until stopped or
    the connection dies; acked holds {trace id: [span ids]} of every export answered 200, and
    inflight the exports sent but not answered when a connection died."""

    def __init__(self, port, conns, traces_per_batch=2, spans_per_trace=3):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}
        self.batches = 0
        self.inflight = []
        self.refused = []
        self.errors = []
        self.tpb, self.spt = traces_per_batch, spans_per_trace
        self.killed = threading.Event()  # set by the test just before it kills the server
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(conns)]
        for t in self.threads:
            t.start()

    def run(self):
        try:
            c = Conn(self.port, timeout=scaled(10))
        except OSError as e:
            self.errors.append(repr(e))
            return
        try:
            while not self.stop.is_set():
                body, want = batch_body(self.tpb, self.spt, service="durable")
                try:
                    c.send(otlp_post("/v1/traces", body))
                    r = c.read_response()
                except Exception as e:  # noqa: BLE001 (reset, EOF mid-reply: killed)
                    with self.lock:
                        self.inflight.append(want)
                        if not self.killed.is_set():
                            self.errors.append(repr(e))
                    return
                with self.lock:
                    if r.status == 200 and r.body == b"{}":
                        self.acked.update(want)
                        self.batches += 1
                    else:
                        self.refused.append(r)
                        return
        finally:
            c.close()

    def count(self):
        with self.lock:
            return self.batches

    def join(self, timeout):
        for t in self.threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self.threads)


class TestDurability(TelemetryCase):
    MIN_BATCHES = 300
    MIN_SECONDS = 1.0

    def kill9(self, fsync):
        srv = self.start(workers=2, settings={"telemetry.fsync": "true" if fsync else "false"})
        pump = Pump(srv.otlp_port, conns=3)
        t0 = time.monotonic()
        deadline = t0 + scaled(15)
        while (pump.count() < self.MIN_BATCHES or time.monotonic() - t0 < self.MIN_SECONDS):
            if time.monotonic() > deadline or pump.refused or pump.errors:
                break
            time.sleep(0.02)
        # Mid-stream: the clients are still sending.
        pump.killed.set()
        srv.send_signal(signal.SIGKILL)
        self.assertEqual(srv.wait(scaled(10)), -signal.SIGKILL)
        elapsed = time.monotonic() - t0
        self.assertTrue(pump.join(scaled(10)), "clients did not notice the kill")
        pump.stop.set()
        self.assertEqual(pump.refused, [], "an export was refused before the kill")
        self.assertEqual(pump.errors, [])
        batches = pump.batches
        self.assertGreaterEqual(batches, self.MIN_BATCHES,
                                "only %d exports acknowledged in %.1fs" % (batches, elapsed))
        srv2 = self.start(workers=2, settings={"data_dir": srv.data_dir,
                                               "telemetry.fsync": "true" if fsync else "false"})
        self.assertGreater(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        reader = Reader(srv2.port)
        self.addCleanup(reader.close)
        lost = []
        for tid, ids in pump.acked.items():
            got = reader.trace_span_ids(tid)
            if sorted(got) != sorted(ids):
                lost.append((tid, len(got), len(ids)))
        self.assertEqual(lost, [], "%d of %d acknowledged traces lost or incomplete after kill -9"
                         % (len(lost), len(pump.acked)))
        # What was in flight is whole or absent: a batch is never half stored.
        partial = []
        inflight_present = 0
        for want in pump.inflight:
            present = [len(reader.trace_span_ids(tid)) for tid in want]
            full = [len(ids) for ids in want.values()]
            if present == full:
                inflight_present += 1
            elif any(present):
                partial.append((list(want), present, full))
        self.assertEqual(partial, [], "an unacknowledged batch came back in part")
        spans = sum(len(v) for v in pump.acked.values())
        log("kill -9 (fsync=%s): %d exports acknowledged in %.2fs (%.0f/s); %d traces, %d spans "
            "checked after restart; %d of %d in flight came back whole"
            % (fsync, batches, elapsed, batches / elapsed, len(pump.acked), spans,
               inflight_present, len(pump.inflight)))

    def test_kill9_fsync(self):
        self.kill9(True)

    def test_kill9_no_fsync(self):
        self.kill9(False)

    def test_restart_replay(self):
        srv = self.start(workers=2)
        desc = run_export(srv, "proto", True, self.tmp)
        zbody = json.dumps([{"traceId": "abc", "id": "1", "name": "z", "timestamp": 5,
                             "duration": 1, "localEndpoint": {"serviceName": "zz"}}]).encode()
        r = self.otlp(srv, otlp_post("/api/v2/spans", zbody))
        self.assertEqual(r.status, 202, r)
        self.assertEqual(srv.metric("cairn_telemetry_wal_replayed_total"), 0)
        self.assertEqual(srv.stop(signal.SIGTERM), 0)
        srv2 = self.start(workers=2, settings={"data_dir": srv.data_dir})
        m = metrics(srv2.port)
        self.assertEqual(metric(m, "cairn_telemetry_wal_replayed_total"), 3)  # 3 exports
        self.assertEqual(metric(m, "cairn_telemetry_corrupt_total"), 0)
        self.assertEqual(self.check_described(srv2, desc), (5, 4))
        st, got, _ = fetch_json(srv2.port, "/api/v1/traces/" + "0" * 29 + "abc")
        self.assertEqual((st, [s["name"] for s in got["spans"]]), (200, ["z"]), got)
        # It takes new exports after the replay, and keeps the old ones; then a second restart
        # replays both generations.
        desc2 = run_export(srv2, "json", False, self.tmp)
        self.assertEqual(self.check_described(srv2, desc2), (5, 4))
        self.assertEqual(srv2.stop(signal.SIGTERM), 0)
        srv3 = self.start(workers=2, settings={"data_dir": srv.data_dir})
        self.assertEqual(srv3.metric("cairn_telemetry_wal_replayed_total"), 5)
        self.assertEqual(self.check_described(srv3, desc), (5, 4))
        self.assertEqual(self.check_described(srv3, desc2), (5, 4))


if __name__ == "__main__":
    main()
