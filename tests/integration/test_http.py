"""Integration tests of the HTTP/1.1 server core: the real `cairn up` on loopback, raw bytes.

Run: CAIRN_BIN=build/cairn python3 tests/integration/test_http.py
"""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (CairnTestCase, Conn, get, gz, main, metric, metrics,  # noqa: E402
                   ProtocolError, parse_metrics, poll_until, request_bytes, scaled, send_raw)

HELLO = request_bytes("GET", "/debug/hello")
TEXT = "text/plain; charset=utf-8"


def chunked(*parts, ext=None, trailers=None):
    """A chunked body of the given parts (bytes), optional extension on every size line and
    trailer lines."""
    out = b""
    for p in parts:
        out += b"%x%s\r\n%s\r\n" % (len(p), (";" + ext).encode() if ext else b"", p)
    out += b"0\r\n"
    for t in trailers or ():
        out += t.encode() + b"\r\n"
    return out + b"\r\n"


def letters(n, size):
    """The body /debug/chunked?n=N&size=S sends."""
    return b"".join(bytes([ord("a") + i % 26]) * size for i in range(n))


def pe(srv, reason):
    # Timeouts' server answers /metrics under its own 300 ms send timeout too: a reader this
    # test process leaves unscheduled that long (a loaded machine) has the answer cut short
    # by design, so such a read is made again.
    for attempt in range(5):
        try:
            return metric(srv.port, "cairn_http_protocol_errors_total", reason=reason)
        except (ConnectionResetError, ProtocolError):
            if attempt == 4:
                raise


# ---- default configuration -------------------------------------------------------------

class Basics(CairnTestCase):
    """Features on one server with the default limits."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class()
        cls.port = cls.srv.port

    def conn(self, **kw):
        c = Conn(self.port, **kw)
        self.addCleanup(c.close)
        return c

    # -- reply format, keep-alive ------------------------------------------------------

    def test_healthz_exact_reply_bytes(self):
        c = self.conn()
        c.send(request_bytes("GET", "/healthz"))
        r = c.read_response()
        self.assertRegex(r.raw, re.compile(
            rb"\AHTTP/1\.1 200 OK\r\nServer: cairn\r\n"
            rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
            rb"Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n"
            rb"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nok\n\Z"))
        self.assertOpen(c)

    def test_readyz(self):
        r = get(self.port, "/readyz")
        self.assertEqual((r.status, r.body), (200, b"ready\n"))

    def test_keep_alive_many_requests_one_connection(self):
        c = self.conn()
        for i in range(100):
            path = "/debug/params/%d/r%d" % (i, i)
            c.send(request_bytes("GET", path))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header("Connection"))
            self.assertEqual(json.loads(r.body), {"id": str(i), "rest": "r%d" % i})
        self.assertOpen(c)

    def test_connection_close_honoured(self):
        c = self.conn()
        c.send(request_bytes("GET", "/debug/hello", headers={"Connection": "close"}) + HELLO)
        r = c.read_response()
        self.assertEqual((r.status, r.body, r.header("Connection")), (200, b"hello\n", "close"))
        # The pipelined second request must not be answered.
        self.assertClosed(c)

    # -- pipelining ----------------------------------------------------------------------

    def test_pipelining_in_order(self):
        c = self.conn()
        reqs = b"".join(request_bytes("GET", "/debug/params/%d/x" % i) for i in range(20))
        c.send(reqs + HELLO)
        for i in range(20):
            r = c.read_response()
            self.assertEqual((r.status, json.loads(r.body)), (200, {"id": str(i), "rest": "x"}))
        self.assertEqual(c.read_response().body, b"hello\n")
        self.assertOpen(c)

    def test_pipelining_async_first_reply(self):
        c = self.conn()
        c.send(request_bytes("GET", "/debug/slow?ms=200") + HELLO +
               request_bytes("POST", "/debug/echo", body=b"third") +
               request_bytes("GET", "/debug/params/4/four"))
        t0 = time.monotonic()
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"slow\n"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.15)
        self.assertEqual(c.read_response().body, b"hello\n")
        self.assertEqual(c.read_response().body, b"third")
        self.assertEqual(json.loads(c.read_response().body), {"id": "4", "rest": "four"})
        self.assertOpen(c)

    def test_pipelining_many_requests_while_async_reply_pending(self):
        # 1000 pipelined requests (~40 KB) behind a slow one: more than the read buffer holds.
        c = self.conn()
        c.send(request_bytes("GET", "/debug/slow?ms=100") + HELLO * 1000)
        self.assertEqual(c.read_response().body, b"slow\n")
        for _ in range(1000):
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"hello\n"))
        self.assertOpen(c)

    def test_pipelining_large_replies(self):
        # 10 x 1 MiB chunked replies in one write: the server must pause and resume parsing.
        c = self.conn()
        c.send(request_bytes("GET", "/debug/chunked?n=16&size=65536") * 10 + HELLO)
        want = letters(16, 65536)
        for _ in range(10):
            r = c.read_response(timeout=scaled(20))
            self.assertEqual(r.status, 200)
            self.assertTrue(r.body == want, "chunked body differs")
        self.assertEqual(c.read_response().body, b"hello\n")

    def test_request_trickled_byte_by_byte(self):
        c = self.conn()
        req = request_bytes("POST", "/debug/echo", headers={"Content-Type": "text/x-a"},
                            body=b"0123456789")
        for i in range(len(req)):
            c.send(req[i:i + 1])
        r = c.read_response()
        self.assertEqual((r.status, r.body, r.header("Content-Type")),
                         (200, b"0123456789", "text/x-a"))

    def test_leading_empty_line_ignored(self):
        # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request.
        c = self.conn()
        c.send(b"\r\n" + HELLO)
        self.assertEqual(c.read_response().body, b"hello\n")

    # -- request bodies ------------------------------------------------------------------

    def test_content_length_body_echo(self):
        body = bytes(range(256)) * 4096  # 1 MiB, every byte value
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo",
                             headers={"Content-Type": "application/x-test"}, body=body))
        r = c.read_response()
        self.assertEqual((r.status, r.header("Content-Type"), r.header("Content-Length")),
                         (200, "application/x-test", str(len(body))))
        self.assertTrue(r.body == body, "echoed body differs")

    def test_put_and_empty_body(self):
        c = self.conn()
        c.send(request_bytes("PUT", "/debug/echo", body=b""))
        r = c.read_response()
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "0"))
        c.send(request_bytes("PUT", "/debug/echo", body=b"put!"))
        self.assertEqual(c.read_response().body, b"put!")

    def test_chunked_body_with_extensions_and_trailers(self):
        c = self.conn()
        body = (b"5;name=value\r\nhello\r\n"
                b"6;quoted=\"x y\"\r\n world\r\n"
                b"A;flag\r\n0123456789\r\n"
                b"0;last\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n")
        c.send(request_bytes("POST", "/debug/echo",
                             headers={"Transfer-Encoding": "chunked"}) + body)
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello world0123456789"))
        # The trailers were consumed: the connection carries on.
        c.send(HELLO)
        self.assertEqual(c.read_response().body, b"hello\n")

    def test_chunked_body_trickled_byte_by_byte(self):
        c = self.conn()
        req = CHUNKED_HEAD + b"5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\n"
        for i in range(len(req)):
            c.send(req[i:i + 1])
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello world"))
        c.send(HELLO)
        self.assertEqual(c.read_response().body, b"hello\n")

    def test_chunked_body_then_pipelined_request(self):
        # The bytes right after the last chunk / trailers belong to the next request.
        c = self.conn()
        c.send(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n\r\n" + HELLO +
               CHUNKED_HEAD + b"3\r\ndef\r\n0\r\nX-T: 1\r\n\r\n" + HELLO)
        self.assertEqual(c.read_response().body, b"abc")
        self.assertEqual(c.read_response().body, b"hello\n")
        self.assertEqual(c.read_response().body, b"def")
        self.assertEqual(c.read_response().body, b"hello\n")
        self.assertOpen(c)

    def test_chunk_size_leading_zeros(self):
        c = self.conn()
        c.send(CHUNKED_HEAD + b"0005\r\nhello\r\n000\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello"))

    def test_chunked_body_several_extensions_per_chunk(self):
        # RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
        for ext in ("a;b", "a;b=1", "a=1;b", "a=b;c=d", 'q="x;y";r=s'):
            with self.subTest(ext=ext):
                c = self.conn()
                c.send(CHUNKED_HEAD + b"5;" + ext.encode() + b"\r\nhello\r\n0\r\n\r\n")
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, b"hello"))

    def test_trailers_not_merged_into_header_fields(self):
        # RFC 9110 6.5.1: trailer fields must not be merged into the header section; a
        # trailer must not be able to supply, e.g., the Content-Type the handler sees.
        c = self.conn()
        c.send(b"POST /debug/headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nX-Trailer: tv\r\nContent-Type: text/evil\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body)["headers"],
                         [["Host", "x"], ["Transfer-Encoding", "chunked"]])
        c.send(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nContent-Type: text/evil\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.header("Content-Type")), (200, "application/octet-stream"))

    def test_upgrade_request_is_answered_then_connection_consistent(self):
        # The server does not upgrade. A request asking to is answered as plain HTTP; what
        # follows on the connection is either served normally or never answered (close).
        c = self.conn()
        c.send(b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n"
               b"Upgrade: websocket\r\n\r\n" + request_bytes("GET", "/debug/params/1/after"))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello\n"))
        if r.header("Connection") == "close":
            self.assertClosed(c)
        else:
            r2 = c.read_response()
            self.assertEqual((r2.status, r2.body), (200, b'{"id":"1","rest":"after"}\n'))

    def test_chunked_body_large_and_uppercase_hex(self):
        parts = [bytes([65 + i % 26]) * 40000 for i in range(30)]
        raw = b"".join(b"%X\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo",
                             headers={"Transfer-Encoding": "chunked"}) + raw)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body == b"".join(parts))

    def test_headers_route_sees_method_path_query_headers(self):
        c = self.conn()
        c.send(b"POST /debug/headers?a=1&b=two HTTP/1.1\r\nHost: example\r\n"
               b"X-Mixed-Case:   padded value \t\r\nX-Empty:\r\nContent-Length: 3\r\n\r\nabc")
        r = c.read_response()
        self.assertEqual((r.status, r.header("Content-Type")), (200, "application/json"))
        j = json.loads(r.body)
        self.assertEqual(j["method"], "POST")
        self.assertEqual(j["path"], "/debug/headers")
        self.assertEqual(j["query"], "a=1&b=two")
        self.assertEqual(j["body_bytes"], 3)
        self.assertEqual(j["headers"], [["Host", "example"], ["X-Mixed-Case", "padded value"],
                                        ["X-Empty", ""], ["Content-Length", "3"]])

    # -- chunked replies -------------------------------------------------------------------

    def test_chunked_reply_exact_bytes(self):
        c = self.conn()
        c.send(request_bytes("GET", "/debug/chunked?n=3&size=4"))
        r = c.read_response()
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertIsNone(r.header("Content-Length"))
        self.assertTrue(r.raw.endswith(b"\r\n\r\n4\r\naaaa\r\n4\r\nbbbb\r\n4\r\ncccc\r\n0\r\n\r\n"),
                        r.raw)
        self.assertEqual(r.body, b"aaaabbbbcccc")
        self.assertOpen(c)

    def test_chunked_reply_empty_and_large(self):
        c = self.conn()
        c.send(request_bytes("GET", "/debug/chunked?n=0&size=10"))
        r = c.read_response()
        self.assertTrue(r.raw.endswith(b"chunked\r\n\r\n0\r\n\r\n"), r.raw)
        self.assertEqual(r.body, b"")
        c.send(request_bytes("GET", "/debug/chunked?n=60&size=1000"))
        r = c.read_response()
        self.assertEqual(r.body, letters(60, 1000))

    def test_chunked_reply_bad_query_is_400_json(self):
        r = get(self.port, "/debug/chunked?n=10001&size=1")
        self.assertEqual((r.status, r.header("Content-Type")), (400, "application/json"))
        self.assertEqual(json.loads(r.body)["param"], "n")

    # -- Expect: 100-continue ----------------------------------------------------------------

    def test_expect_100_continue(self):
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo",
                             headers=[("Expect", "100-continue"), ("Content-Length", "5")]))
        interim = c.read_response()
        self.assertEqual(interim.raw, b"HTTP/1.1 100 Continue\r\n\r\n")
        c.send(b"hello")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello"))
        self.assertOpen(c)

    def test_expect_100_continue_chunked(self):
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo", headers=[
            ("Expect", "100-Continue"), ("Transfer-Encoding", "chunked")]))
        self.assertEqual(c.read_response().raw, b"HTTP/1.1 100 Continue\r\n\r\n")
        c.send(chunked(b"abc", b"def"))
        self.assertEqual(c.read_response().body, b"abcdef")

    def test_expect_100_continue_too_large_gets_413_without_100(self):
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo", headers=[
            ("Expect", "100-continue"), ("Content-Length", str(8 * 1024 * 1024 + 1))]))
        r = c.read_response()
        self.assertEqual((r.status, r.body, r.header("Connection")),
                         (413, b"request body too large (http.max_body_bytes)\n", "close"))
        self.assertClosed(c)

    def test_expect_100_continue_without_body_sends_no_100(self):
        c = self.conn()
        c.send(request_bytes("GET", "/debug/hello", headers={"Expect": "100-continue"}))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello\n"))

    def test_expect_100_continue_http10_sends_no_100(self):
        # RFC 9110 10.1.1: no 100 (Continue) to an HTTP/1.0 client.
        c = self.conn()
        c.send(b"POST /debug/echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hi"))

    # -- HEAD --------------------------------------------------------------------------------

    def test_head_same_headers_no_body(self):
        c = self.conn()
        c.send(request_bytes("GET", "/debug/hello"))
        g = c.read_response()
        c.send(request_bytes("HEAD", "/debug/hello"))
        h = c.read_response(method="HEAD")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("Content-Length"), "6")
        self.assertEqual(h.header("Content-Type"), g.header("Content-Type"))
        # No body bytes follow the head: the next reply parses straight after it.
        c.send(request_bytes("GET", "/healthz"))
        self.assertEqual(c.read_response().body, b"ok\n")

    def test_head_chunked_route_and_404(self):
        c = self.conn()
        c.send(request_bytes("HEAD", "/debug/chunked?n=3&size=4"))
        h = c.read_response(method="HEAD")
        self.assertEqual(h.status, 200)
        c.send(request_bytes("HEAD", "/nope"))
        h = c.read_response(method="HEAD")
        self.assertEqual((h.status, h.header("Content-Length")), (404, "10"))
        c.send(HELLO)
        self.assertEqual(c.read_response().body, b"hello\n")
        self.assertOpen(c)

    # -- gzip request bodies ---------------------------------------------------------------

    def test_gzip_body(self):
        data = b"compressible line\n" * 1000
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo", headers={
            "Content-Encoding": "gzip", "Content-Type": "text/x-log"}, body=gz(data)))
        r = c.read_response()
        self.assertEqual((r.status, r.header("Content-Type")), (200, "text/x-log"))
        self.assertTrue(r.body == data)

    def test_gzip_body_chunked_and_case_insensitive(self):
        data = os.urandom(50000)
        z = gz(data)
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo", headers={
            "Content-Encoding": "GZIP", "Transfer-Encoding": "chunked"}) +
            chunked(z[:1000], z[1000:20000], z[20000:]))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body == data)

    def test_gzip_multi_member(self):
        body = gz(b"first member, ") + gz(b"second member, ") + gz(b"third")
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo", headers={"Content-Encoding": "gzip"},
                             body=body))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"first member, second member, third"))

    def test_gzip_identity_passes_through(self):
        c = self.conn()
        c.send(request_bytes("POST", "/debug/echo", headers={"Content-Encoding": "identity"},
                             body=b"plain"))
        self.assertEqual(c.read_response().body, b"plain")

    def test_gzip_malformed_is_400(self):
        bad = {
            "garbage": b"\x1f\x8b\x08\x00this is not deflate data at all",
            "not_gzip": b"plain text, no gzip header",
            "truncated": gz(b"x" * 5000)[:-6],
            "trailing_garbage": gz(b"member") + b"junk",
            "bad_crc": gz(b"member")[:-8] + b"\0\0\0\0" + gz(b"member")[-4:],
        }
        for name, body in bad.items():
            with self.subTest(name):
                before = pe(self.srv, "bad_request")
                c = self.conn()
                c.send(request_bytes("POST", "/debug/echo", headers={"Content-Encoding": "gzip"},
                                     body=body))
                r = c.read_response()
                self.assertEqual(r.status, 400, r)
                self.assertIn(b"gzip request body", r.body)
                self.assertEqual(pe(self.srv, "bad_request"), before + 1)

    # -- routing ---------------------------------------------------------------------------

    def test_404(self):
        c = self.conn()
        c.send(request_bytes("GET", "/no/such/path"))
        r = c.read_response()
        self.assertEqual((r.status, r.reason, r.body, r.header("Content-Type")),
                         (404, "Not Found", b"not found\n", TEXT))
        self.assertOpen(c)

    def allow_set(self, r):
        return {m.strip() for m in r.header("Allow").split(",")}

    def test_405_with_allow(self):
        cases = [("POST", "/healthz", {"GET"}), ("DELETE", "/debug/echo", {"POST", "PUT"}),
                 ("GET", "/debug/echo", {"POST", "PUT"}),
                 ("PATCH", "/debug/headers", {"GET", "POST", "PUT"})]
        c = self.conn()
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                c.send(request_bytes(method, path, body=b"" if method != "GET" else None))
                r = c.read_response()
                self.assertEqual((r.status, r.reason, r.body), (405, "Method Not Allowed",
                                                                b"method not allowed\n"))
                got = self.allow_set(r)
                # HEAD may be listed too wherever GET is.
                self.assertTrue(allowed <= got <= allowed | {"HEAD"}, r.header("Allow"))
        self.assertOpen(c)

    def test_router_params(self):
        cases = {
            "/debug/params/42/a": {"id": "42", "rest": "a"},
            "/debug/params/x-y/a/b/c.txt": {"id": "x-y", "rest": "a/b/c.txt"},
            "/debug/params/7/deep/path?q=1": {"id": "7", "rest": "deep/path"},
        }
        for path, want in cases.items():
            with self.subTest(path):
                r = get(self.port, path)
                self.assertEqual((r.status, json.loads(r.body)), (200, want))
        for path in ("/debug/params", "/debug/params/", "/debug/params/42"):
            with self.subTest(path):
                self.assertEqual(get(self.port, path).status, 404)

    # -- HTTP/1.0 ----------------------------------------------------------------------------

    def test_http10_closes_after_reply(self):
        c = self.conn()
        c.send(b"GET /debug/hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"hello\n"))
        self.assertEqual(r.version, "HTTP/1.1")
        self.assertNotEqual((r.header("Connection") or "").lower(), "keep-alive")
        self.assertClosed(c)

    def test_http10_keep_alive(self):
        c = self.conn()
        c.send(b"GET /debug/hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body, r.header("Connection")),
                         (200, b"hello\n", "keep-alive"))
        c.send(b"POST /debug/echo HTTP/1.0\r\nConnection: keep-alive\r\n"
               b"Content-Length: 4\r\n\r\nbody")
        r = c.read_response()
        self.assertEqual((r.body, r.header("Connection")), (b"body", "keep-alive"))
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(c.read_response().body, b"ok\n")
        self.assertClosed(c)

    def test_http10_streamed_reply_until_close(self):
        c = self.conn()
        c.send(b"GET /debug/chunked?n=3&size=4 HTTP/1.0\r\n\r\n")
        raw = c.read_until_close()
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertNotIn(b"\r\ntransfer-encoding:", head.lower())
        self.assertNotIn(b"\r\ncontent-length:", head.lower())
        self.assertEqual(body, b"aaaabbbbcccc")

    # -- metrics ---------------------------------------------------------------------------

    def test_metrics_requests_total_and_histogram_move(self):
        m0 = metrics(self.port)
        key = dict(route="/healthz", code="2xx")
        for _ in range(3):
            self.assertEqual(get(self.port, "/healthz").status, 200)
        m1 = metrics(self.port)
        self.assertEqual(metric(m1, "cairn_http_requests_total", **key) -
                         (metric(m0, "cairn_http_requests_total", **key) or 0), 3)
        self.assertEqual(
            metric(m1, "cairn_http_request_duration_seconds_count", route="/healthz") -
            (metric(m0, "cairn_http_request_duration_seconds_count", route="/healthz") or 0), 3)
        self.assertEqual(metric(m1, "cairn_http_request_duration_seconds_bucket",
                                route="/healthz", le="+Inf"),
                         metric(m1, "cairn_http_request_duration_seconds_count",
                                route="/healthz"))
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m1.items()
                         if k[0] == "cairn_http_request_duration_seconds_bucket"
                         and dict(k[1])["route"] == "/healthz")
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))

    def test_metrics_404_and_protocol_errors_move(self):
        before404 = metric(self.port, "cairn_http_requests_total", route="", code="4xx") or 0
        before = pe(self.srv, "bad_request")
        self.assertEqual(get(self.port, "/nope").status, 404)
        status, _, _ = send_raw(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n")
        self.assertEqual(status, 400)
        m = metrics(self.port)
        self.assertEqual(metric(m, "cairn_http_protocol_errors_total", reason="bad_request"),
                         before + 1)
        # The 404 and the 400 are both answered without a route.
        self.assertEqual(metric(m, "cairn_http_requests_total", route="", code="4xx"),
                         before404 + 2)

    def test_metrics_gauges_and_process(self):
        c1, c2 = self.conn(), self.conn()
        for c in (c1, c2):
            c.send(HELLO)
            c.read_response()
        m = metrics(self.port)
        # The two idle keep-alive connections and the one asking.
        self.assertGreaterEqual(metric(m, "cairn_http_connections_open", worker="0"), 3)
        self.assertEqual(metric(m, "cairn_workers"), 1)
        self.assertEqual(metric(m, "cairn_config_generation", worker="0"), 1)
        self.assertEqual(metric(m, "cairn_config_reloads_total", result="ok"), 0)
        for reason in ("bad_request", "url_too_long", "header_too_large", "body_too_large",
                       "timeout", "idle_close", "send_timeout", "overload", "unsupported"):
            self.assertIsNotNone(metric(m, "cairn_http_protocol_errors_total", reason=reason),
                                 reason)
        self.assertGreater(metric(m, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(metric(m, "process_open_fds"), 3)
        self.assertGreaterEqual(metric(m, "process_cpu_seconds_total"), 0)
        start = metric(m, "process_start_time_seconds")
        self.assertTrue(time.time() - 3600 < start <= time.time() + 1, start)
        c1.close()
        c2.close()
        poll_until(lambda: metric(self.port, "cairn_http_connections_open", worker="0") == 1,
                   scaled(5), what="connections_open back to 1")


class TrailerSplit(CairnTestCase):
    """On a fresh server, so the read buffer a connection gets is deterministic."""

    def test_trailer_split_across_reads(self):
        # A trailer field arriving in two TCP reads. First fill the read buffer with ASCII (a
        # 60 KB body) so a slice gone wrong reads far, then send the trailer in two parts.
        srv = self.start()
        c = Conn(srv.port)
        self.addCleanup(c.close)
        c.send(request_bytes("POST", "/debug/echo", body=b"A" * 60000))
        self.assertEqual(c.read_response().status, 200)
        c.send(b"POST /debug/headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nX-Trailer-Long-Name")
        time.sleep(0.1)  # not readiness: makes the two parts arrive in separate reads
        c.send(b"-Rest: value\r\n\r\n")
        try:
            r = c.read_response()
        except (ConnectionError, OSError, Exception) as e:
            self.fail("no reply (server crashed?): %r\n%s" % (e, srv.logs()[-3000:]))
        self.assertEqual(r.status, 200)
        headers = json.loads(r.body)["headers"]
        self.assertEqual(headers[:2], [["Host", "x"], ["Transfer-Encoding", "chunked"]])
        for h in headers:
            self.assertEqual(len(h), 2, "a header lost its name: %r" % headers)
        self.assertTrue(srv.running(), srv.logs()[-3000:])


class BearerToken(CairnTestCase):
    """api.token set: every route but /healthz and /readyz needs Authorization: Bearer."""

    def test_token_required(self):
        srv = self.start(settings={"api.token": "s3cr3t.Tok-en_~+/="})
        with Conn(srv.port) as c:
            for path in ("/healthz", "/readyz"):
                c.send(request_bytes("GET", path))
                self.assertEqual(c.read_response().status, 200, path)
            for hdrs in ({}, {"Authorization": "Bearer wrong"},
                         {"Authorization": "Bearer s3cr3t.Tok-en_~+/"},
                         {"Authorization": "Bearer s3cr3t.Tok-en_~+/=x"},
                         {"Authorization": "Basic s3cr3t.Tok-en_~+/="}):
                with self.subTest(hdrs=hdrs):
                    c.send(request_bytes("GET", "/metrics", headers=hdrs))
                    r = c.read_response()
                    self.assertEqual((r.status, r.header("WWW-Authenticate")),
                                     (401, 'Bearer realm="cairn"'))
                    self.assertNotIn(b"s3cr3t", r.body)
            for scheme in ("Bearer", "bearer", "BEARER"):
                with self.subTest(scheme=scheme):
                    c.send(request_bytes("GET", "/debug/hello", headers={
                        "Authorization": scheme + " s3cr3t.Tok-en_~+/="}))
                    self.assertEqual(c.read_response().body, b"hello\n")
            self.assertOpen(c)
        self.assertNotIn("s3cr3t", srv.logs())


# ---- strictness: every case is rejected and the connection closed -----------------------

CHUNKED_HEAD = b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

# name, raw request, accepted statuses (the first is the one expected; RFC alternatives after)
STRICT_CASES = [
    ("cl_and_te", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,)),
    ("te_and_cl", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", (400,)),
    ("empty_te_and_cl", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n"
     b"Content-Length: 3\r\n\r\nabc", (400,)),
    ("two_cl_same", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Content-Length: 5\r\n\r\nhello", (400,)),
    ("two_cl_different", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", (400,)),
    ("obs_fold_space", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", (400,)),
    ("obs_fold_tab", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tc\r\n\r\n", (400,)),
    ("space_before_colon", b"GET /debug/hello HTTP/1.1\r\nHost : x\r\n\r\n", (400,)),
    ("tab_before_colon", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n", (400,)),
    ("space_in_name", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", (400,)),
    ("invalid_char_in_name", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX@A: b\r\n\r\n", (400,)),
    ("empty_name", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", (400,)),
    ("bare_lf_request_line", b"GET /debug/hello HTTP/1.1\nHost: x\r\n\r\n", (400,)),
    ("bare_lf_header_line", b"GET /debug/hello HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", (400,)),
    ("bare_lf_final_line", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\n\n", (400,)),
    ("bare_lf_everywhere", b"GET /debug/hello HTTP/1.1\nHost: x\n\n", (400,)),
    ("cr_without_lf_in_header", b"GET /debug/hello HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", (400,)),
    ("cr_without_lf_request_line", b"GET /debug/hello HTTP/1.1\rHost: x\r\n\r\n", (400,)),
    ("cr_inside_value", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", (400,)),
    ("cr_final_line", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\n\rX", (400,)),
    ("te_in_http10", b"POST /debug/echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", (400,)),
    ("te_chunked_not_last", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", (400,)),
    ("te_unknown", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n"
     b"0\r\n\r\n", (400, 501)),
    ("te_unknown_then_chunked", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: foo, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", (400, 501)),
    # gzip is refused as a transfer coding (accepted only as Content-Encoding): passing the
    # still-coded body to the handler would be wrong.
    ("te_gzip_then_chunked", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", (400, 501)),
    ("te_chunked_twice", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,)),
    ("te_empty", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", (400,)),
    ("chunk_size_invalid", CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk_size_negative", CHUNKED_HEAD + b"-5\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk_size_0x", CHUNKED_HEAD + b"0x5\r\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk_size_overflow", CHUNKED_HEAD + b"1000000000000000000005\r\nhello\r\n0\r\n\r\n",
     (400,)),
    ("chunk_size_bare_lf", CHUNKED_HEAD + b"5\nhello\r\n0\r\n\r\n", (400,)),
    ("chunk_data_then_xx", CHUNKED_HEAD + b"5\r\nhelloXX0\r\n\r\n", (400,)),
    ("chunk_data_then_x_lf", CHUNKED_HEAD + b"5\r\nhelloX\n0\r\n\r\n", (400,)),
    ("chunk_data_then_cr_x", CHUNKED_HEAD + b"5\r\nhello\rX0\r\n\r\n", (400,)),
    ("chunk_data_then_bare_lf", CHUNKED_HEAD + b"5\r\nhello\n0\r\n\r\n", (400,)),
    ("last_chunk_bare_lf", CHUNKED_HEAD + b"5\r\nhello\r\n0\n\r\n", (400,)),
    ("chunked_final_bare_lf", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\n", (400,)),
    ("trailer_obs_fold", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", (400,)),
    ("trailer_space_before_colon", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n",
     (400,)),
    ("trailer_bare_lf_end", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-T: 1\r\n\n", (400,)),
    ("trailer_ctl_in_value", CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n", (400,)),
    ("missing_host_http11", b"GET /debug/hello HTTP/1.1\r\nX-A: b\r\n\r\n", (400,)),
    ("two_hosts", b"GET /debug/hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", (400,)),
    ("ctl_in_value_soh", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", (400,)),
    ("ctl_in_value_nul", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", (400,)),
    ("ctl_in_value_del", b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", (400,)),
    ("cl_plus", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
     (400,)),
    ("cl_minus", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nhello",
     (400,)),
    ("cl_two_numbers", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n"
     b"hello", (400,)),
    ("cl_hex", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
     (400,)),
    ("cl_empty", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\nhello", (400,)),
    ("cl_overflow", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 99999999999999999999999\r\n\r\nhello", (400, 413)),
    ("request_line_extra_space", b"GET /debug/hello  HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("request_line_http09", b"GET /debug/hello\r\n\r\n", (400,)),
    ("request_line_lowercase_version", b"GET /debug/hello http/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("request_line_nul", b"GET /debug/\x00hello HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("request_target_not_absolute", b"GET debug/hello HTTP/1.1\r\nHost: x\r\n\r\n", (400,)),
    ("method_lowercase", b"get /debug/hello HTTP/1.1\r\nHost: x\r\n\r\n", (400, 501)),
    ("http_1_2", b"GET /debug/hello HTTP/1.2\r\nHost: x\r\n\r\n", (400, 505)),
    ("http_2_0", b"GET /debug/hello HTTP/2.0\r\nHost: x\r\n\r\n", (505, 400)),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (505, 400)),
    ("expect_unknown", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n"
     b"Content-Length: 5\r\n\r\nhello", (417,)),
    ("content_encoding_unknown", b"POST /debug/echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Encoding: br\r\nContent-Length: 5\r\n\r\nhello", (415,)),
]

REASON_OF = {400: "bad_request", 413: "body_too_large", 414: "url_too_long",
             415: "unsupported", 417: "unsupported", 431: "header_too_large",
             501: "unsupported", 505: "unsupported"}


class Strictness(CairnTestCase):
    """Each malformed or ambiguous request gets its status, then the connection is closed
    and nothing pipelined after it is answered."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class()
        cls.port = cls.srv.port

    def check(self, raw, statuses):
        before = {r: pe(self.srv, r) for r in set(REASON_OF.values())}
        with Conn(self.port) as c:
            c.send(raw + HELLO)  # the pipelined GET must never be answered
            r = c.read_response()
            self.assertIn(r.status, statuses, r)
            self.assertEqual(r.header("Connection"), "close", r)
            self.assertEqual(r.header("Content-Type"), TEXT, r)
            self.assertTrue(r.body.endswith(b"\n") and r.body.count(b"\n") == 1, r.body)
            self.assertClosed(c)
        after = {r: pe(self.srv, r) for r in before}
        moved = {k: after[k] - before[k] for k in before if after[k] != before[k]}
        self.assertEqual(moved, {REASON_OF[r.status]: 1}, "protocol error counters")

    def test_server_still_serves_after_bad_requests(self):
        self.assertEqual(get(self.port, "/healthz").body, b"ok\n")


def _make_strict(raw, statuses):
    def t(self):
        self.check(raw, statuses)
    t.__doc__ = None
    return t


for _name, _raw, _statuses in STRICT_CASES:
    setattr(Strictness, "test_" + _name, _make_strict(_raw, _statuses))


# ---- limits at their edges --------------------------------------------------------------

URL_MAX, HEAD_MAX, HEADERS_MAX, BODY_MAX = 100, 512, 10, 1024


class Limits(CairnTestCase):
    """Exactly at each limit is accepted; one more is rejected with the limit's status."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class(settings={
            "http.max_url_bytes": URL_MAX, "http.max_header_bytes": HEAD_MAX,
            "http.max_headers": HEADERS_MAX, "http.max_body_bytes": "1k"})
        cls.port = cls.srv.port

    def rejected(self, raw, status, reason, text):
        before = pe(self.srv, reason)
        with Conn(self.port) as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual((r.status, r.body, r.header("Connection")), (status, text, "close"))
            self.assertClosed(c)
        self.assertEqual(pe(self.srv, reason), before + 1)
        return r

    def accepted(self, raw):
        with Conn(self.port) as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertOpen(c)
            return r

    # max_url_bytes
    def target(self, n):
        t = "/debug/hello?q="
        return t + "u" * (n - len(t))

    def test_url_at_limit(self):
        t = self.target(URL_MAX)
        self.assertEqual(len(t), URL_MAX)
        self.assertEqual(self.accepted(request_bytes("GET", t)).body, b"hello\n")

    def test_url_path_at_limit(self):
        t = "/debug/params/1/" + "p" * (URL_MAX - 16)
        self.assertEqual(len(t), URL_MAX)
        r = self.accepted(request_bytes("GET", t))
        self.assertEqual(json.loads(r.body)["rest"], "p" * (URL_MAX - 16))

    def test_url_one_over(self):
        r = self.rejected(request_bytes("GET", self.target(URL_MAX + 1)), 414, "url_too_long",
                          b"request target too long (http.max_url_bytes)\n")
        self.assertEqual(r.reason, "URI Too Long")

    def test_url_far_over_without_line_end(self):
        # Rejected as soon as the target passes the limit, without waiting for the line end.
        self.rejected(b"GET /" + b"u" * 300, 414, "url_too_long",
                      b"request target too long (http.max_url_bytes)\n")

    # max_header_bytes: request line + header lines + the final CRLF
    def head_of(self, n):
        pre = b"GET /debug/hello HTTP/1.1\r\nHost: x\r\nX-Pad: "
        post = b"\r\n\r\n"
        h = pre + b"p" * (n - len(pre) - len(post)) + post
        assert len(h) == n
        return h

    def test_header_bytes_at_limit(self):
        self.assertEqual(self.accepted(self.head_of(HEAD_MAX)).body, b"hello\n")

    def test_header_bytes_one_over(self):
        r = self.rejected(self.head_of(HEAD_MAX + 1), 431, "header_too_large",
                          b"request header too large (http.max_header_bytes)\n")
        self.assertEqual(r.reason, "Request Header Fields Too Large")

    def test_header_bytes_over_without_head_end(self):
        # An endless head is rejected once it passes the limit, not at header_timeout.
        t0 = time.monotonic()
        self.rejected(self.head_of(HEAD_MAX + 200)[:-4], 431, "header_too_large",
                      b"request header too large (http.max_header_bytes)\n")
        self.assertLess(time.monotonic() - t0, scaled(2))

    # max_headers
    def with_fields(self, n):
        # Host plus n-1 more fields.
        return request_bytes("GET", "/debug/headers",
                             headers=[("X-F%d" % i, "v") for i in range(n - 1)])

    def test_headers_at_limit(self):
        r = self.accepted(self.with_fields(HEADERS_MAX))
        self.assertEqual(len(json.loads(r.body)["headers"]), HEADERS_MAX)

    def test_headers_one_over(self):
        self.rejected(self.with_fields(HEADERS_MAX + 1), 431, "header_too_large",
                      b"too many header fields (http.max_headers)\n")

    # max_body_bytes
    def test_body_content_length_at_limit(self):
        body = os.urandom(BODY_MAX)
        r = self.accepted(request_bytes("POST", "/debug/echo", body=body))
        self.assertEqual(r.body, body)

    def test_body_content_length_one_over_before_body_is_sent(self):
        # Only the head is sent: the 413 must come without waiting for the body.
        self.rejected(request_bytes("POST", "/debug/echo",
                                    headers={"Content-Length": str(BODY_MAX + 1)}),
                      413, "body_too_large", b"request body too large (http.max_body_bytes)\n")

    def test_body_content_length_one_over_with_body(self):
        # The body arrives with the head; lingering close lets the client read the 413.
        self.rejected(request_bytes("POST", "/debug/echo", body=b"b" * (BODY_MAX + 1)), 413,
                      "body_too_large", b"request body too large (http.max_body_bytes)\n")

    def test_body_chunked_at_limit(self):
        body = os.urandom(BODY_MAX)
        r = self.accepted(request_bytes("POST", "/debug/echo",
                                        headers={"Transfer-Encoding": "chunked"}) +
                          chunked(body[:1000], body[1000:]))
        self.assertEqual(r.body, body)

    def test_body_chunked_one_over(self):
        body = b"c" * (BODY_MAX + 1)
        self.rejected(request_bytes("POST", "/debug/echo",
                                    headers={"Transfer-Encoding": "chunked"}) +
                      chunked(body[:1000], body[1000:]), 413, "body_too_large",
                      b"request body too large (http.max_body_bytes)\n")

    def test_trailer_section_over_header_bytes(self):
        # Trailers are bounded like a head: a trailer section past max_header_bytes is 431.
        raw = (request_bytes("POST", "/debug/echo", headers={"Transfer-Encoding": "chunked"}) +
               b"5\r\nhello\r\n0\r\nX-Big: " + b"t" * (HEAD_MAX + 100) + b"\r\n\r\n")
        before = pe(self.srv, "header_too_large")
        with Conn(self.port) as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual((r.status, r.header("Connection")), (431, "close"), r)
            self.assertClosed(c)
        self.assertEqual(pe(self.srv, "header_too_large"), before + 1)

    def test_trailer_fields_over_max_headers(self):
        trailers = b"".join(b"X-T%d: v\r\n" % i for i in range(HEADERS_MAX + 1))
        raw = (request_bytes("POST", "/debug/echo", headers={"Transfer-Encoding": "chunked"}) +
               b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n")
        with Conn(self.port) as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual((r.status, r.header("Connection")), (431, "close"), r)
            self.assertClosed(c)

    def test_body_gzip_decoded_at_limit(self):
        data = b"z" * BODY_MAX
        r = self.accepted(request_bytes("POST", "/debug/echo",
                                        headers={"Content-Encoding": "gzip"}, body=gz(data)))
        self.assertEqual(r.body, data)

    def test_body_gzip_decoded_at_limit_incompressible(self):
        data = os.urandom(BODY_MAX - 100)  # compressed: a little larger, under the limit
        z = gz(data)
        self.assertLessEqual(len(z), BODY_MAX)
        r = self.accepted(request_bytes("POST", "/debug/echo",
                                        headers={"Content-Encoding": "gzip"}, body=z))
        self.assertEqual(r.body, data)

    def test_body_gzip_decoded_one_over(self):
        before = pe(self.srv, "body_too_large")
        with Conn(self.port) as c:
            c.send(request_bytes("POST", "/debug/echo", headers={"Content-Encoding": "gzip"},
                                 body=gz(b"z" * (BODY_MAX + 1))))
            r = c.read_response()
            self.assertEqual((r.status, r.body),
                             (413, b"decoded request body too large (http.max_body_bytes)\n"))
        self.assertEqual(pe(self.srv, "body_too_large"), before + 1)

    def test_body_gzip_bomb(self):
        # 512 KiB of zeros compresses to ~0.5 KiB; decoding must stop at the limit.
        z = gz(b"\0" * (512 << 10))
        self.assertLess(len(z), BODY_MAX)
        status, _, body = send_raw(self.port, request_bytes(
            "POST", "/debug/echo", headers={"Content-Encoding": "gzip"}, body=z))
        self.assertEqual((status, body),
                         (413, b"decoded request body too large (http.max_body_bytes)\n"))


class ZeroBodyLimit(CairnTestCase):
    def test_max_body_bytes_zero_refuses_every_body(self):
        srv = self.start(settings={"http.max_body_bytes": 0})
        with Conn(srv.port) as c:
            c.send(request_bytes("POST", "/debug/echo", body=b""))
            self.assertEqual(c.read_response().status, 200)
            c.send(request_bytes("POST", "/debug/echo", body=b"x"))
            self.assertEqual(c.read_response().status, 413)
        status, _, _ = send_raw(srv.port, request_bytes(
            "POST", "/debug/echo", headers={"Transfer-Encoding": "chunked"}) + chunked(b"x"))
        self.assertEqual(status, 413)


# ---- timeouts ---------------------------------------------------------------------------

HEADER_T, BODY_T, IDLE_T, SEND_T = 0.3, 0.5, 0.7, 0.3


class Timeouts(CairnTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class(settings={
            "http.header_timeout": "300ms", "http.body_timeout": "500ms",
            "http.idle_timeout": "700ms", "http.send_timeout": "300ms"})
        cls.port = cls.srv.port

    def assertElapsed(self, t0, expected):
        el = time.monotonic() - t0
        self.assertGreaterEqual(el, expected - 0.05, "fired early")
        self.assertLess(el, expected + scaled(1.5), "fired late")

    def timed_out(self, c, t0, expected, text):
        r = c.read_response(timeout=scaled(5) + expected)
        self.assertElapsed(t0, expected)
        self.assertEqual((r.status, r.reason, r.body, r.header("Connection")),
                         (408, "Request Timeout", text, "close"))
        self.assertClosed(c)

    def test_header_timeout(self):
        before = pe(self.srv, "timeout")
        with Conn(self.port) as c:
            t0 = time.monotonic()
            c.send(b"GET /debug/hello HTTP/1.1\r\nHo")
            self.timed_out(c, t0, HEADER_T, b"request header timeout (http.header_timeout)\n")
        self.assertEqual(pe(self.srv, "timeout"), before + 1)

    def test_header_timeout_counts_from_first_byte(self):
        # A client trickling a byte every 50 ms does not extend its deadline.
        with Conn(self.port) as c:
            head = b"GET /debug/hello HTTP/1.1\r\nX-Slow: " + b"s" * 200
            t0 = time.monotonic()
            for b in head:
                c.send(bytes([b]))
                if c.readable_now(0.05):
                    break
            self.timed_out(c, t0, HEADER_T, b"request header timeout (http.header_timeout)\n")

    def test_body_timeout(self):
        before = pe(self.srv, "timeout")
        with Conn(self.port) as c:
            c.send(request_bytes("POST", "/debug/echo", headers={"Content-Length": "10"}) +
                   b"hello")
            t0 = time.monotonic()
            self.timed_out(c, t0, BODY_T, b"request body timeout (http.body_timeout)\n")
        self.assertEqual(pe(self.srv, "timeout"), before + 1)

    def test_body_timeout_chunked(self):
        with Conn(self.port) as c:
            c.send(request_bytes("POST", "/debug/echo", headers={"Transfer-Encoding": "chunked"})
                   + b"5\r\nhello\r\n")
            t0 = time.monotonic()
            self.timed_out(c, t0, BODY_T, b"request body timeout (http.body_timeout)\n")

    def test_idle_timeout_after_request(self):
        before = pe(self.srv, "idle_close")
        with Conn(self.port) as c:
            c.send(HELLO)
            self.assertEqual(c.read_response().body, b"hello\n")
            t0 = time.monotonic()
            how, extra = c.wait_closed(scaled(5))
            self.assertEqual((how, extra), ("eof", b""), "closed silently")
            self.assertElapsed(t0, IDLE_T)
        self.assertEqual(pe(self.srv, "idle_close"), before + 1)

    def test_idle_timeout_fresh_connection(self):
        with Conn(self.port) as c:
            t0 = time.monotonic()
            self.assertEqual(c.wait_closed(scaled(5)), ("eof", b""))
            self.assertElapsed(t0, IDLE_T)

    def test_no_timeout_while_reply_pending(self):
        # The handler takes longer than idle, header and body timeouts together.
        with Conn(self.port) as c:
            c.send(request_bytes("GET", "/debug/slow?ms=1600"))
            r = c.read_response(timeout=scaled(5))
            self.assertEqual((r.status, r.body), (200, b"slow\n"))

    def test_activity_resets_idle(self):
        # Requests 400 ms apart (under idle 700 ms) keep the connection for 1.2 s.
        with Conn(self.port) as c:
            for _ in range(3):
                c.send(HELLO)
                self.assertEqual(c.read_response().body, b"hello\n")
                self.assertFalse(c.readable_now(0.4), "closed while in use")
            c.send(HELLO)
            self.assertEqual(c.read_response().body, b"hello\n")

    def test_send_timeout(self):
        before = pe(self.srv, "send_timeout")
        n, size = 300, 65536  # ~19.7 MB: far more than the socket buffers hold
        with Conn(self.port, rcvbuf=4096) as c:
            c.send(request_bytes("GET", "/debug/chunked?n=%d&size=%d" % (n, size)))
            t0 = time.monotonic()
            poll_until(lambda: pe(self.srv, "send_timeout") == before + 1, scaled(10),
                       what="send_timeout counter")
            self.assertGreaterEqual(time.monotonic() - t0, SEND_T - 0.05)
            # Whatever was buffered can still be read, then the connection ends short.
            got = 0
            try:
                while True:
                    data = c.sock.recv(1 << 20)
                    if not data:
                        break
                    got += len(data)
            except ConnectionResetError:
                pass
            self.assertLess(got, n * size)


class MaxConnections(CairnTestCase):
    def test_connection_past_max_gets_503(self):
        srv = self.start(settings={"http.max_connections": 3})
        conns = [Conn(srv.port) for _ in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            c.send(HELLO)
            self.assertEqual(c.read_response().status, 200)
        with Conn(srv.port) as c4:
            raw = c4.read_until_close()
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), raw)
        self.assertEqual(body, b"too many open connections (http.max_connections)\n")
        self.assertIn(b"\r\nConnection: close", head)
        # The three admitted connections still work; ask /metrics over one of them (a new
        # connection would itself be refused while the server is full).
        for c in conns:
            c.send(HELLO)
            self.assertEqual(c.read_response().body, b"hello\n")

        def metrics_via(c):
            c.send(request_bytes("GET", "/metrics"))
            return parse_metrics(c.read_response().body.decode())
        m = metrics_via(conns[1])
        self.assertEqual(metric(m, "cairn_http_protocol_errors_total", reason="overload"), 1)
        # Closing one makes room again.
        conns[0].close()
        poll_until(lambda: metric(metrics_via(conns[1]), "cairn_http_connections_open",
                                  worker="0") == 2, scaled(5), what="the closed slot freed")
        with Conn(srv.port) as c:
            c.send(HELLO)
            self.assertEqual(c.read_response().body, b"hello\n")
        self.assertEqual(metric(metrics_via(conns[1]), "cairn_http_protocol_errors_total",
                                reason="overload"), 1)

    def test_503_content_length_matches_body(self):
        srv = self.start(settings={"http.max_connections": 1})
        with Conn(srv.port) as c1:
            c1.send(HELLO)
            self.assertEqual(c1.read_response().status, 200)
            with Conn(srv.port) as c2:
                raw = c2.read_until_close()
        head, _, body = raw.partition(b"\r\n\r\n")
        cl = re.search(rb"\r\nContent-Length: (\d+)\r\n", head + b"\r\n")
        self.assertIsNotNone(cl, head)
        self.assertEqual(int(cl.group(1)), len(body),
                         "Content-Length does not match the body %r" % body)

    def test_503_when_request_already_sent(self):
        # A client that writes its request right after connecting still reads the 503.
        srv = self.start(settings={"http.max_connections": 1})
        with Conn(srv.port) as c1:
            c1.send(HELLO)
            self.assertEqual(c1.read_response().status, 200)
            with Conn(srv.port) as c2:
                c2.send(HELLO)
                r = c2.read_response()
                self.assertEqual(r.status, 503)


if __name__ == "__main__":
    main()
