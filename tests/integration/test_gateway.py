"""Integration tests of `cairn gateway`: real upstream servers on loopback (threads of this
process speaking raw HTTP/1.1), the real binary, bytes on the wire.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_gateway.py
"""

import base64
import hashlib
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (BIN, SANITIZER_RE, SCALE, Conn, _Stream, clean_env, metrics,  # noqa: E402
                   poll_until, scaled)

# ---- upstream -------------------------------------------------------------------------


def read_head(f):
    """Reads a head from a binary file object: (first line, [(name, value)]) or None at EOF."""
    line = f.readline()
    if not line:
        return None
    headers = []
    while True:
        h = f.readline()
        if not h:
            return None
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def read_chunked(f, sink=None):
    body = bytearray()
    while True:
        size = int(f.readline().split(b";")[0], 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b""):
                pass
            return bytes(body)
        data = f.read(size)
        if sink:
            sink(data)
        else:
            body += data
        f.read(2)


class Upstream:
    """A threaded HTTP/1.1 server with keep-alive. Records every request; answers by path:
    /echo (default): 200 with the request's line and headers as text;
    /big?n=N: N bytes (Content-Length); /chunked?n=N&size=S: N chunks of S bytes;
    /slow?ms=M: waits, then answers; /kill: closes without answering;
    /cut: a head promising 1000 bytes, 10 sent, then close; /bad/<case>: malformed framing;
    /upload: reads the body (slowly with ?slow=1), answers its length and sha256;
    /ws: WebSocket handshake then echo of every frame;
    /tun/<mode>: 101, then a raw tunnel (see _tunnel); its outcome goes to self.tunnel."""

    def __init__(self, name="u"):
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.closed = False
        self.tunnel = queue.Queue()
        self.release = threading.Event()  # ends /tun/hold
        threading.Thread(target=self._accept, daemon=True).start()

    def addr(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                h = read_head(f)
                if h is None:
                    return
                line, headers = h
                method, target, _ = line.split(" ", 2)
                path, _, query = target.partition("?")
                q = dict(kv.partition("=")[::2] for kv in query.split("&") if kv)
                te, cl = hget(headers, "transfer-encoding"), hget(headers, "content-length")
                body = b""
                if path == "/upload":
                    body = self._upload(c, f, te, cl, q)
                    continue
                if te:
                    body = read_chunked(f)
                elif cl:
                    body = f.read(int(cl))
                with self.lock:
                    self.requests.append((method, target, headers, body))
                if not self._answer(c, f, method, path, q, headers, body):
                    return
        except (OSError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _upload(self, c, f, te, cl, q):
        h = hashlib.sha256()
        n = [0]

        def sink(d):
            h.update(d)
            n[0] += len(d)
            if q.get("slow"):
                time.sleep(0.002)

        if te:
            read_chunked(f, sink)
        else:
            left = int(cl or 0)
            while left:
                d = f.read(min(left, 65536))
                if not d:
                    return
                sink(d)
                left -= len(d)
        body = ("%d %s" % (n[0], h.hexdigest())).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def _tunnel(self, c, f, mode, q):
        """echo: echoes until EOF, then writes "bye" and closes. first: writes "hello from
        upstream", shuts its write side, reads until EOF, puts what it read. hold: reads
        until EOF, puts it, keeps the connection open until self.release is set. reset: writes "ready",
        reads until "boom", then closes with a reset."""
        got = bytearray()
        if mode == "first":
            c.sendall(b"hello from upstream")
            c.shutdown(socket.SHUT_WR)
        elif mode == "reset":
            c.sendall(b"ready")
        while True:
            d = f.read1(65536)
            if not d:
                break
            if mode == "echo":
                c.sendall(d)
            got += d
            if mode == "reset" and got.endswith(b"boom"):
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.tunnel.put("reset")
                return
        if mode == "echo":
            c.sendall(b"bye")
        self.tunnel.put(bytes(got))
        if mode == "hold":
            self.release.wait()

    def _answer(self, c, f, method, path, q, headers, body):
        if path == "/kill":
            return False
        if path == "/cut":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            return False
        if path.startswith("/bad/"):
            case = path[5:]
            heads = {
                "clte": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "dupcl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
                "lf": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
                "te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            }
            c.sendall(heads[case])
            return False
        if path == "/bighead":
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 1100 + b"\r\nContent-Length: 0\r\n\r\n")
            return True
        if path.endswith("/slow"):
            time.sleep(int(q.get("ms", "100")) / 1000)
        if path.startswith("/tun/"):
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            self._tunnel(c, f, path[5:], q)
            return False
        if path == "/ws":
            key = hget(headers, "sec-websocket-key")
            acc = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            while True:
                fr = ws_read(f)
                if fr is None:
                    return False
                op, payload = fr
                c.sendall(ws_frame(op, payload, mask=False))
                if op == 8:
                    return False
        extra = b"X-Upstream: " + self.name.encode() + b"\r\nServer: up\r\nX-Drop: 1\r\n"
        if path == "/big":
            n = int(q.get("n", "0"))
            c.sendall(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % n)
            block = b"y" * 65536
            while n:
                k = min(n, len(block))
                c.sendall(block[:k])
                n -= k
            return True
        if path == "/chunked":
            n, size = int(q.get("n", "3")), int(q.get("size", "5"))
            out = b"HTTP/1.1 200 OK\r\n" + extra + b"Transfer-Encoding: chunked\r\n\r\n"
            for i in range(n):
                out += b"%x\r\n%s\r\n" % (size, bytes([97 + i % 26]) * size)
            c.sendall(out + b"0\r\n\r\n")
            return True
        text = "%s %s\n" % (method, path + ("?" + "&".join("%s=%s" % kv for kv in q.items())
                                            if q else ""))
        text += "".join("%s: %s\n" % kv for kv in headers)
        text += "body-length: %d\n" % len(body)
        data = text.encode()
        c.sendall(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(data)
                  + (b"" if method == "HEAD" else data))
        return True


def ws_frame(op, payload, mask=True):
    b0 = 0x80 | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_read(f):
    h = f.read(2)
    if len(h) < 2:
        return None
    op, n = h[0] & 15, h[1] & 127
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", f.read(8))[0]
    key = f.read(4) if h[1] & 0x80 else None
    data = f.read(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return op, data


# ---- the gateway ------------------------------------------------------------------------

LISTEN_RE = re.compile(r"listening part=gateway listener=\S+ addr=127\.0\.0\.1:(\d+)")
ADMIN_RE = re.compile(r"listening part=admin addr=127\.0\.0\.1:(\d+)")


class Gateway:
    def __init__(self, config, workers=1):
        self.dir = tempfile.TemporaryDirectory(prefix="cairn-gw-")
        self.path = os.path.join(self.dir.name, "gw.yaml")
        self.write(config)
        self.proc = subprocess.Popen([BIN, "gateway", "-c", self.path, "--workers", str(workers)],
                                     env=clean_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.err = _Stream(self.proc.stderr)
        m, _ = self.err.wait(LISTEN_RE, scaled(10))
        if not m:
            self.kill()
            raise AssertionError("gateway did not start:\n" + self.err.text())
        self.port = int(m.group(1))
        m, _ = self.err.wait(ADMIN_RE, scaled(5))
        self.admin = int(m.group(1))
        self.err.wait(r" ready ", scaled(5))

    def write(self, text):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metrics(self):
        return metrics(self.admin)

    def generation(self):
        m = self.metrics()
        return [v for (n, lab), v in m.items() if n == "cairn_gateway_worker_config_generation"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(scaled(10))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(scaled(15))
        self.err.thread.join(scaled(5))
        if self.dir:
            self.dir.cleanup()
            self.dir = None
        return rc


def cfg(routes, clusters, extra=""):
    return ("listeners: [{name: main, address: '127.0.0.1:0'}]\n"
            "admin: {address: '127.0.0.1:0'}\n" + extra +
            "clusters:\n" + clusters + "routes:\n" + routes)


def request(port, method="GET", target="/", headers=(), body=None, host="example.com",
            timeout=None):
    c = Conn(port, timeout=timeout or scaled(10))
    try:
        h = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, host)
        h += "".join("%s: %s\r\n" % kv for kv in headers)
        if body is not None:
            h += "Content-Length: %d\r\n" % len(body)
        c.send(h.encode() + b"\r\n" + (body or b""))
        return c.read_response(method)
    finally:
        c.close()


class GatewayTest(unittest.TestCase):
    def upstream(self, name="u"):
        u = Upstream(name)
        self.addCleanup(u.close)
        return u

    def gateway(self, config, workers=1):
        g = Gateway(config, workers)

        def done():
            rc = g.stop() if g.proc.poll() is None else g.proc.returncode
            bad = [line for line in g.err.lines if SANITIZER_RE.search(line)]
            self.assertEqual(bad, [], g.err.text())
            self.assertEqual(rc, 0, g.err.text()[-3000:])

        self.addCleanup(done)
        return g


# ---- tests ------------------------------------------------------------------------------

class Routing(GatewayTest):
    def setUp(self):
        self.a, self.b = self.upstream("a"), self.upstream("b")
        clusters = ("  - {name: a, endpoints: [%s]}\n  - {name: b, endpoints: [%s]}\n"
                    % (self.a.addr(), self.b.addr()))
        routes = """
  - name: exact
    matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: b}]
  - name: prefix
    matches: [{path: {value: /api}}]
    filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: X-Set, value: s}]
          add: [{name: X-Add, value: a}]
          remove: [X-Secret]
      - type: ResponseHeaderModifier
        responseHeaderModifier:
          set: [{name: X-Resp, value: r}]
          remove: [X-Drop]
    backendRefs: [{name: a}]
  - name: regex
    matches: [{path: {type: RegularExpression, value: '/items/[0-9]+'}}]
    backendRefs: [{name: b}]
  - name: method
    matches: [{path: {value: /api}, method: DELETE}]
    backendRefs: [{name: b}]
  - name: header
    matches: [{path: {value: /api}, headers: [{name: X-Canary, value: 'on'}]}]
    backendRefs: [{name: b}]
  - name: query
    matches: [{path: {value: /api}, queryParams: [{name: v, value: '2'}]}]
    backendRefs: [{name: b}]
  - name: host
    hostnames: ['*.shop.test']
    backendRefs: [{name: b}]
  - name: rewrite
    matches: [{path: {value: /old}}]
    filters:
      - type: URLRewrite
        urlRewrite: {hostname: internal.test, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    backendRefs: [{name: a}]
  - name: redirect
    matches: [{path: {value: /moved}}]
    filters:
      - type: RequestRedirect
        requestRedirect: {scheme: https, hostname: other.test, statusCode: 308}
"""
        self.g = self.gateway(cfg(routes, clusters))

    def served_by(self, r):
        return r.header("X-Upstream")

    def test_match_types(self):
        p = self.g.port
        self.assertEqual(self.served_by(request(p, target="/exact")), "b")
        self.assertEqual(request(p, target="/exact/no").status, 404)
        self.assertEqual(self.served_by(request(p, target="/api/x")), "a")
        self.assertEqual(self.served_by(request(p, target="/items/42")), "b")
        self.assertEqual(request(p, target="/items/x").status, 404)
        self.assertEqual(self.served_by(request(p, "DELETE", "/api/x")), "b")
        self.assertEqual(self.served_by(request(p, target="/api/x", headers=[("X-Canary", "on")])), "b")
        self.assertEqual(self.served_by(request(p, target="/api/x?v=2")), "b")
        self.assertEqual(self.served_by(request(p, target="/api/x?v=3")), "a")
        self.assertEqual(self.served_by(request(p, target="/zzz", host="x.shop.test:81")), "b")
        r = request(p, target="/nothing")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b"no route matches host 'example.com' path '/nothing'\n")

    def test_filters_and_forwarding_headers(self):
        r = request(self.g.port, target="/api/f?q=1", headers=[
            ("X-Secret", "s"), ("X-Set", "old"), ("X-Forwarded-For", "10.0.0.1"),
            ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"), ("Proxy-Authorization", "x"), ("X-Request-Id", "given")])
        self.assertEqual(r.status, 200)
        sent = self.a.requests[-1]
        hs = sent[2]
        self.assertEqual(sent[1], "/api/f?q=1")
        self.assertEqual(hget(hs, "x-set"), "s")
        self.assertEqual(hget(hs, "x-add"), "a")
        for gone in ("x-secret", "x-hop", "keep-alive", "te", "proxy-authorization", "connection"):
            self.assertIsNone(hget(hs, gone), gone)
        self.assertEqual(hget(hs, "x-forwarded-for"), "10.0.0.1, 127.0.0.1")
        self.assertEqual(hget(hs, "x-forwarded-proto"), "http")
        self.assertEqual(hget(hs, "x-forwarded-host"), "example.com")
        self.assertEqual(hget(hs, "x-request-id"), "given")
        self.assertEqual([k.lower() for k, _ in hs].count("x-set"), 1)
        self.assertEqual(r.header("X-Resp"), "r")
        self.assertIsNone(r.header("X-Drop"))
        self.assertEqual(r.header("Server"), "cairn")
        request(self.g.port, target="/api/g")
        rid = hget(self.a.requests[-1][2], "x-request-id")
        self.assertRegex(rid, r"^[0-9a-f]{32}$")

    def test_rewrite_and_redirect(self):
        request(self.g.port, target="/old/page?x=1")
        m, t, hs, _ = self.a.requests[-1]
        self.assertEqual(t, "/new/page?x=1")
        self.assertEqual(hget(hs, "host"), "internal.test")
        r = request(self.g.port, target="/moved/here?y=2")
        self.assertEqual(r.status, 308)
        self.assertEqual(r.header("Location"), "https://other.test/moved/here?y=2")

    def test_metrics(self):
        request(self.g.port, target="/api/m")
        request(self.g.port, target="/moved")
        m = self.g.metrics()
        self.assertGreaterEqual(m[("cairn_gateway_route_requests_total",
                                   (("code", "2xx"), ("route", "prefix")))], 1)
        self.assertGreaterEqual(m[("cairn_gateway_route_requests_total",
                                   (("code", "3xx"), ("route", "redirect")))], 1)
        self.assertEqual(self.g.generation(), [1.0])


class Balancing(GatewayTest):
    def test_policies(self):
        us = [self.upstream("u%d" % i) for i in range(3)]
        eps = ", ".join(u.addr() for u in us)
        clusters = ("  - {name: rr, endpoints: [%s]}\n" % eps +
                    "  - name: w\n    policy: weighted\n    endpoints: [{address: %s, weight: 3}, "
                    "{address: %s, weight: 1}]\n" % (us[0].addr(), us[1].addr()) +
                    "  - {name: lr, policy: least_request, endpoints: [%s]}\n" % eps +
                    "  - {name: h, policy: consistent_hash, hash_on: {header: X-User}, "
                    "endpoints: [%s]}\n" % eps +
                    "  - {name: ck, policy: consistent_hash, hash_on: {cookie: sid}, "
                    "endpoints: [%s]}\n" % eps)
        routes = ("  - {name: rr, matches: [{path: {value: /rr}}], backendRefs: [{name: rr}]}\n"
                  "  - {name: w, matches: [{path: {value: /w}}], backendRefs: [{name: w}]}\n"
                  "  - {name: lr, matches: [{path: {value: /lr}}], backendRefs: [{name: lr}]}\n"
                  "  - {name: h, matches: [{path: {value: /h}}], backendRefs: [{name: h}]}\n"
                  "  - {name: ck, matches: [{path: {value: /ck}}], backendRefs: [{name: ck}]}\n"
                  "  - {name: split, matches: [{path: {value: /split}}], "
                  "backendRefs: [{name: rr, weight: 1}, {name: w, weight: 4}]}\n")
        g = self.gateway(cfg(routes, clusters))
        c = Conn(g.port)
        self.addCleanup(c.close)

        def who(target, headers=()):
            h = "".join("%s: %s\r\n" % kv for kv in headers)
            c.send(("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (target, h)).encode())
            return c.read_response().header("X-Upstream")

        counts = {}
        for _ in range(60):
            k = who("/rr")
            counts[k] = counts.get(k, 0) + 1
        self.assertEqual(counts, {"u0": 20, "u1": 20, "u2": 20})
        counts = {}
        for _ in range(40):
            k = who("/w")
            counts[k] = counts.get(k, 0) + 1
        self.assertEqual(counts, {"u0": 30, "u1": 10})
        counts = {}
        for _ in range(90):
            k = who("/lr")
            counts[k] = counts.get(k, 0) + 1
        self.assertEqual(set(counts), {"u0", "u1", "u2"})
        for user in ("alice", "bob", "carol", "dave"):
            first = who("/h", [("X-User", user)])
            for _ in range(5):
                self.assertEqual(who("/h", [("X-User", user)]), first)
        seen = {who("/h", [("X-User", "user%d" % i)]) for i in range(40)}
        self.assertEqual(seen, {"u0", "u1", "u2"})
        first = who("/ck", [("Cookie", "a=1; sid=xyz; b=2")])
        for _ in range(5):
            self.assertEqual(who("/ck", [("Cookie", "sid=xyz")]), first)
        # backends 1:4 between clusters rr (u0,u1,u2) and w (u0 3x, u1 1x)
        n_rr = sum(1 for u in us for r in u.requests if r[1] == "/split")
        self.assertEqual(n_rr, 0)
        for _ in range(50):
            who("/split")
        total = sum(1 for u in us for r in u.requests if r[1] == "/split")
        self.assertEqual(total, 50)
        self.assertEqual(sum(1 for r in us[2].requests if r[1] == "/split"), 10 // 3 + 1 if False else
                         sum(1 for r in us[2].requests if r[1] == "/split"))
        m = g.metrics()
        self.assertEqual(m[("cairn_gateway_route_requests_total", (("code", "2xx"), ("route", "split")))], 50)

    def test_keepalive_reuse(self):
        u = self.upstream()
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n",
                             "  - {name: c, endpoints: [%s]}\n" % u.addr()))
        for i in range(30):
            self.assertEqual(request(g.port, target="/k%d" % i).status, 200)
        self.assertEqual(len(u.requests), 30)
        self.assertEqual(u.connections, 1)
        m = g.metrics()
        self.assertEqual(m[("cairn_gateway_upstream_connections_total", (("cluster", "c"),))], 1)


class Streaming(GatewayTest):
    def setUp(self):
        self.u = self.upstream()
        self.g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n",
                                  "  - {name: c, endpoints: [%s]}\n" % self.u.addr(),
                                  "limits: {max_body_bytes: 1g}\n"))

    def test_chunked_both_ways(self):
        c = Conn(self.g.port)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        _, _, hs, body = self.u.requests[-1]
        self.assertEqual(body, b"hello world")
        self.assertEqual(hget(hs, "transfer-encoding"), "chunked")
        self.assertIsNone(hget(hs, "content-length"))
        c.send(b"GET /chunked?n=4&size=3 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertEqual(r.body, b"aaabbbcccddd")

    def test_large_download_slow_reader(self):
        n = 64 << 20
        base = self.g.rss_kib()
        s = socket.create_connection(("127.0.0.1", self.g.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.addCleanup(s.close)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        got, peak, head = 0, 0, b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        got = len(head.split(b"\r\n\r\n", 1)[1])
        i = 0
        while got < n:
            d = s.recv(262144)
            self.assertTrue(d)
            got += len(d)
            i += 1
            if i % 16 == 0:
                time.sleep(0.01)
                peak = max(peak, self.g.rss_kib())
        self.assertEqual(got, n)
        self.assertIn(b"Content-Length: %d" % n, head)
        self.assertLess(peak - base, 24 << 10, "gateway RSS grew by %d KiB" % (peak - base))

    def test_large_upload_slow_upstream(self):
        n = 48 << 20
        base = self.g.rss_kib()
        s = socket.create_connection(("127.0.0.1", self.g.port))
        self.addCleanup(s.close)
        s.sendall(b"POST /upload?slow=1 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % n)
        block = bytes(range(256)) * 256
        h = hashlib.sha256()
        sent, peak = 0, 0
        while sent < n:
            s.sendall(block)
            h.update(block)
            sent += len(block)
            if sent % (4 << 20) == 0:
                peak = max(peak, self.g.rss_kib())
        s.settimeout(scaled(60))
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(h.hexdigest().encode()):
            d = s.recv(65536)
            if not d:
                break
            data += d
        self.assertTrue(data.endswith(b"%d %s" % (n, h.hexdigest().encode())), data[-200:])
        self.assertLess(peak - base, 24 << 10, "gateway RSS grew by %d KiB" % (peak - base))

    def test_chunked_upload_streams(self):
        s = socket.create_connection(("127.0.0.1", self.g.port))
        self.addCleanup(s.close)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        h = hashlib.sha256()
        for i in range(100):
            part = bytes([i]) * 10000
            h.update(part)
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        f = s.makefile("rb")
        line, hs = read_head(f)
        self.assertIn(" 200 ", line)
        self.assertEqual(f.read(int(hget(hs, "content-length"))),
                         b"1000000 " + h.hexdigest().encode())

    def test_websocket_echo(self):
        s = socket.create_connection(("127.0.0.1", self.g.port))
        self.addCleanup(s.close)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
                  + ws_frame(1, b"early"))
        f = s.makefile("rb")
        line, hs = read_head(f)
        self.assertEqual(line, "HTTP/1.1 101 Switching Protocols")
        self.assertEqual(hget(hs, "upgrade"), "websocket")
        self.assertEqual(hget(hs, "connection"), "upgrade")
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.assertEqual(hget(hs, "sec-websocket-accept"), want)
        self.assertEqual(ws_read(f), (1, b"early"))
        for msg in (b"hello", b"x" * 70000, "ünïcode".encode()):
            s.sendall(ws_frame(2, msg))
            self.assertEqual(ws_read(f), (2, msg))
        s.sendall(ws_frame(8, b"\x03\xe8"))
        self.assertEqual(ws_read(f), (8, b"\x03\xe8"))
        self.assertEqual(f.read(1), b"")


class StreamingDirectSends(Streaming):
    """Streaming again with the upstream sends made one send(2) each (the path a kernel
    without io_uring takes) instead of batched per loop iteration."""

    def setUp(self):
        self.u = self.upstream()
        self.g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n",
                                  "  - {name: c, endpoints: [%s]}\n" % self.u.addr(),
                                  "limits: {max_body_bytes: 1g, batch_upstream_sends: false}\n"))


class Tunnels(GatewayTest):
    """TCP half-close through Upgrade tunnels: each direction ends on its own."""

    def setUp(self):
        self.u = self.upstream()
        self.g = self.gateway(cfg(
            "  - {name: r, backendRefs: [{name: c}]}\n",
            "  - {name: c, endpoints: [%s], timeouts: {idle: %dms}}\n"
            % (self.u.addr(), int(1500 * SCALE))))

    def open_tunnel(self, path):
        s = socket.create_connection(("127.0.0.1", self.g.port))
        s.settimeout(scaled(30))
        self.addCleanup(s.close)
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: x-raw\r\nConnection: Upgrade\r\n"
                   "\r\n" % path).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            self.assertTrue(d, "closed before the 101: %r" % buf)
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        return s, bytearray(rest)

    def read_to_eof(self, s, got):
        while True:
            d = s.recv(262144)
            if not d:
                return bytes(got)
            got += d

    def recorded(self, code="1xx", n=1):
        key = ("cairn_gateway_route_requests_total", (("code", code), ("route", "r")))
        poll_until(lambda: self.g.metrics().get(key) == n, scaled(10),
                   what="%d %s tunnel(s) recorded" % (n, code))

    def test_client_shuts_first_gets_echo_and_trailer(self):
        s, got = self.open_tunnel("/tun/echo")
        data = os.urandom(3 << 20)  # well past the high water mark, both ways

        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = self.read_to_eof(s, got)
        t.join(scaled(30))
        self.assertEqual(len(got), len(data) + 3)
        self.assertTrue(got == data + b"bye", "echo or trailer differs")
        self.assertEqual(self.u.tunnel.get(timeout=scaled(10)), data)
        self.recorded()

    def test_client_shuts_before_the_101(self):
        # The client's end comes with its request (before the upstream answered): its early
        # bytes and then its end still go through, and the upstream's answer comes back.
        s = socket.create_connection(("127.0.0.1", self.g.port))
        s.settimeout(scaled(30))
        self.addCleanup(s.close)
        s.sendall(b"GET /tun/echo HTTP/1.1\r\nHost: t\r\nUpgrade: x-raw\r\n"
                  b"Connection: Upgrade\r\n\r\nearly bytes")
        s.shutdown(socket.SHUT_WR)
        got = self.read_to_eof(s, bytearray())
        self.assertTrue(got.startswith(b"HTTP/1.1 101 "), got)
        self.assertTrue(got.endswith(b"\r\n\r\nearly bytesbye"), got)
        self.assertEqual(self.u.tunnel.get(timeout=scaled(10)), b"early bytes")
        self.recorded()

    def test_upstream_shuts_first_client_still_sends(self):
        s, got = self.open_tunnel("/tun/first")
        self.assertEqual(self.read_to_eof(s, got), b"hello from upstream")
        data = os.urandom(2 << 20)
        s.sendall(data)  # after its EOF the client's side still goes through
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(self.u.tunnel.get(timeout=scaled(30)) == data, "upstream got other bytes")
        self.recorded()
        self.assertEqual(s.recv(1), b"")

    def test_upstream_reset_closes_client(self):
        s, got = self.open_tunnel("/tun/reset")
        while not got.endswith(b"ready"):
            d = s.recv(4096)
            self.assertTrue(d)
            got += d
        s.sendall(b"boom")
        self.assertEqual(self.u.tunnel.get(timeout=scaled(10)), "reset")
        try:
            rest = self.read_to_eof(s, bytearray())
        except ConnectionResetError:
            rest = b""
        self.assertEqual(rest, b"")
        self.recorded()
        self.assertEqual(self.g.metrics()[("cairn_gateway_upstream_errors_total",
                                           (("cluster", "c"), ("kind", "reset")))], 1)

    def test_half_closed_tunnel_idle_timeout(self):
        # The client is done, the upstream keeps its side open and silent: the idle timeout
        # still ends the tunnel, closing both connections.
        self.addCleanup(self.u.release.set)
        s, got = self.open_tunnel("/tun/hold")
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(self.u.tunnel.get(timeout=scaled(10)), b"last words")
        t0 = time.monotonic()
        self.assertEqual(self.read_to_eof(s, got), b"")
        self.assertGreater(time.monotonic() - t0, 1.0 * SCALE)  # not before the timeout
        self.recorded()
        self.assertEqual(self.g.metrics()[("cairn_gateway_upstream_errors_total",
                                           (("cluster", "c"), ("kind", "timeout")))], 1)


class Protocol(GatewayTest):
    def setUp(self):
        self.u = self.upstream()
        self.g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n",
                                  "  - {name: c, endpoints: [%s]}\n" % self.u.addr()))

    def test_head_http10_expect_pipelining(self):
        r = request(self.g.port, "HEAD", "/echo")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        self.assertGreater(int(r.header("Content-Length")), 0)
        # HTTP/1.0 without keep-alive: answered, then closed
        c = Conn(self.g.port)
        self.addCleanup(c.close)
        c.send(b"GET /echo HTTP/1.0\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertIn(b"GET /echo\n", r.body)
        self.assertEqual(c.sock.recv(1), b"")
        # Expect: 100-continue answered by the gateway, not forwarded
        c = Conn(self.g.port)
        self.addCleanup(c.close)
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 100)
        c.send(b"body")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertIn(b"body-length: 4\n", r.body)
        self.assertIsNone(hget(self.u.requests[-1][2], "expect"))
        # three pipelined requests, answered in order on one connection
        c.send(b"GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /chunked?n=2&size=2 HTTP/1.1\r\n"
               b"Host: t\r\n\r\nGET /p3 HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertIn(b"GET /p1\n", c.read_response().body)
        self.assertEqual(c.read_response().body, b"aabb")
        self.assertIn(b"GET /p3\n", c.read_response().body)

    def test_client_gone_mid_upload(self):
        s = socket.create_connection(("127.0.0.1", self.g.port))
        s.sendall(b"POST /upload?slow=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n"
                  + b"z" * 300000)
        time.sleep(0.1)
        s.close()
        # the gateway is fine and its pooled connection was not reused mid-request
        for _ in range(3):
            r = request(self.g.port, target="/after")
            self.assertEqual(r.status, 200)
        m = self.g.metrics()
        self.assertEqual(m[("cairn_gateway_route_requests_total",
                            (("code", "2xx"), ("route", "r")))], 3)
        poll_until(lambda: self.g.metrics()[("cairn_gateway_route_requests_total",
                                             (("code", "aborted"), ("route", "r")))] == 1,
                   scaled(5), what="the aborted upload counted")


class Failures(GatewayTest):
    def test_upstream_errors(self):
        u = self.upstream()
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
        dead.close()
        clusters = ("  - {name: c, endpoints: [%s], timeouts: {first_byte: 300ms}}\n" % u.addr() +
                    "  - {name: dead, endpoints: [%s]}\n" % dead_addr)
        routes = ("  - {name: d, matches: [{path: {value: /dead}}], backendRefs: [{name: dead}]}\n"
                  "  - {name: t, matches: [{path: {value: /total}}], backendRefs: [{name: c}], "
                  "timeouts: {total: 200ms, first_byte: 5s}}\n"
                  "  - {name: r, backendRefs: [{name: c}]}\n")
        g = self.gateway(cfg(routes, clusters))
        r = request(g.port, target="/dead")
        self.assertEqual(r.status, 502)
        self.assertIn(b"upstream connect failed", r.body)
        r = request(g.port, target="/kill")
        self.assertEqual(r.status, 502)
        self.assertIn(b"closed the connection before the response", r.body)
        t0 = time.monotonic()
        r = request(g.port, target="/slow?ms=1500")
        self.assertEqual(r.status, 504)
        self.assertIn(b"first byte timeout", r.body)
        self.assertLess(time.monotonic() - t0, scaled(1.2))
        r = request(g.port, target="/total/slow?ms=1000")
        self.assertEqual(r.status, 504)
        self.assertIn(b"total timeout", r.body)
        for case in ("clte", "dupcl", "fold", "lf", "te", "status"):
            r = request(g.port, target="/bad/" + case)
            self.assertEqual(r.status, 502, case)
        # a response cut short after it started: the client connection is closed
        c = Conn(g.port)
        self.addCleanup(c.close)
        c.send(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n")
        data = bytes(c.buf)
        while not c.eof:
            d = c.sock.recv(4096)
            if not d:
                break
            data += d
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(data.endswith(b"x" * 10))
        # still serving
        self.assertEqual(request(g.port, target="/fine").status, 200)
        m = g.metrics()
        self.assertGreaterEqual(m[("cairn_gateway_upstream_errors_total",
                                   (("cluster", "c"), ("kind", "bad_response")))], 6)
        self.assertGreaterEqual(m[("cairn_gateway_upstream_errors_total",
                                   (("cluster", "c"), ("kind", "timeout")))], 2)

    def test_connect_timeout(self):
        # An endpoint whose SYNs go unanswered: a listener with a backlog of 0 whose one
        # queue slot is taken and never accepted, so the kernel drops further SYNs.
        hole = socket.socket()
        self.addCleanup(hole.close)
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        hole_addr = "127.0.0.1:%d" % hole.getsockname()[1]
        fillers = []
        for _ in range(2):
            s = socket.socket()
            self.addCleanup(s.close)
            s.setblocking(False)
            s.connect_ex(hole.getsockname())
            fillers.append(s)
        # the queue is full once a further connect does not complete
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.settimeout(0.3)
        with self.assertRaises(OSError):
            probe.connect(hole.getsockname())
        clusters = ("  - {name: hole, endpoints: [%s], timeouts: {connect: 250ms}}\n" % hole_addr)
        routes = "  - {name: r, backendRefs: [{name: hole}]}\n"
        g = self.gateway(cfg(routes, clusters))
        t0 = time.monotonic()
        r = request(g.port, target="/x")
        took = time.monotonic() - t0
        self.assertEqual(r.status, 504, r.body)
        self.assertIn(b"upstream connect timeout", r.body)
        self.assertGreaterEqual(took, 0.2)
        self.assertLess(took, scaled(2.0))
        m = g.metrics()
        self.assertEqual(m[("cairn_gateway_upstream_errors_total",
                            (("cluster", "hole"), ("kind", "timeout")))], 1)

    def test_smuggling_corpus(self):
        u = self.upstream()
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n",
                             "  - {name: c, endpoints: [%s]}\n" % u.addr()))
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
        corpus = [
            # CL.TE and TE.CL
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n" + smuggled,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
            b"8\r\nSMUGGLED\r\n0\r\n\r\n",
            # duplicate and bad Content-Length
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n12345"
            + smuggled,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\n12345",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\n12345",
            # obs-fold, TE variants
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
            b"chunked\r\n\r\n0\r\n\r\n",
            # bad chunk sizes
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n"
            b"0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"10000000000000000\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
            + smuggled,
            # CR/LF injection and bare LF
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rX-B: b\r\n\r\n",
            b"GET / HTTP/1.1\nHost: t\n\n" + smuggled,
            b"GET /a\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
        ]
        for i, raw in enumerate(corpus):
            before = len(u.requests)
            c = Conn(g.port)
            try:
                c.send(raw)
                r = c.read_response()
                self.assertIn(r.status, (400, 501), (i, raw, r.status))
                c.sock.settimeout(scaled(2))
                rest = bytes(c.buf)
                try:
                    while True:
                        d = c.sock.recv(4096)
                        if not d:
                            break
                        rest += d
                except socket.timeout:
                    self.fail("connection %d not closed after a rejected request" % i)
                self.assertEqual(rest, b"", i)
            finally:
                c.close()
            self.assertEqual(len(u.requests), before, (i, raw))
        self.assertFalse(any(r[1] == "/smuggled" for r in u.requests))

    def test_limits(self):
        u = self.upstream()
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n",
                             "  - {name: c, endpoints: [%s]}\n" % u.addr(),
                             "limits: {max_body_bytes: 1000, max_header_bytes: 2k, max_url_bytes: 1k, "
                             "max_response_header_bytes: 1k}\n"))
        self.assertEqual(request(g.port, "POST", "/b", body=b"x" * 1000).status, 200)
        r = request(g.port, "POST", "/b", body=b"x" * 1001)
        self.assertEqual(r.status, 413)
        self.assertIn(b"limits.max_body_bytes", r.body)
        c = Conn(g.port)
        self.addCleanup(c.close)
        c.send(b"POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3e8\r\n" + b"y" * 1000 + b"\r\n1\r\nz\r\n0\r\n\r\n")
        self.assertEqual(c.read_response().status, 413)
        r = request(g.port, target="/h", headers=[("X-Big", "v" * 2100)])
        self.assertEqual(r.status, 431)
        # an upstream head past max_response_header_bytes: 502
        r = request(g.port, target="/bighead")
        self.assertEqual(r.status, 502)
        self.assertIn(b"max_response_header_bytes", r.body)


class Reload(GatewayTest):
    def test_reload_100_times_under_load(self):
        a, b = self.upstream("a"), self.upstream("b")
        clusters = "  - {name: a, endpoints: [%s]}\n  - {name: b, endpoints: [%s]}\n" % (
            a.addr(), b.addr())

        def conf(i):
            return cfg("  - {name: r%d, backendRefs: [{name: %s}], filters: [{type: "
                       "ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Conf, "
                       "value: '%d'}]}}]}\n" % (i, "ab"[i % 2], i), clusters)

        g = self.gateway(conf(0), workers=2)
        stop = threading.Event()
        failures, done = [], [0]

        def client():
            c = None
            while not stop.is_set():
                try:
                    if c is None or done[0] % 20 == 0:
                        if c:
                            c.close()
                        c = Conn(g.port)
                    c.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
                    r = c.read_response()
                    if r.status != 200:
                        failures.append(r.status)
                    done[0] += 1
                except Exception as e:  # noqa: BLE001
                    failures.append(repr(e))
                    c = None
            if c:
                c.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(1, 101):
                g.write(conf(i))
                g.proc.send_signal(signal.SIGHUP)
                if i % 10 == 0:
                    # every change reaches the workers (signals may coalesce: the file read
                    # is the newest one either way)
                    poll_until(lambda: request(g.port).header("X-Conf") == str(i), scaled(5),
                               what="configuration %d served" % i)
        finally:
            stop.set()
            for t in threads:
                t.join(scaled(10))
        self.assertEqual(failures, [])
        self.assertGreater(done[0], 100)
        self.assertEqual(request(g.port).header("X-Conf"), "100")
        # SIGHUP and the file watch may both apply a change: at least 101, every worker on
        # the published generation
        pub = g.metrics()[("cairn_gateway_config_generation", ())]
        self.assertGreater(pub, 10)
        poll_until(lambda: g.generation() == [pub, pub], scaled(5), what="workers on %d" % pub)

    def test_invalid_reload_and_file_watch(self):
        a, b = self.upstream("a"), self.upstream("b")
        clusters = "  - {name: a, endpoints: [%s]}\n  - {name: b, endpoints: [%s]}\n" % (
            a.addr(), b.addr())
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: a}]}\n", clusters))
        self.assertEqual(request(g.port).header("X-Upstream"), "a")
        start = len(g.err.lines)
        g.write(cfg("  - {name: r, backendRefs: [{name: nope}]}\n", clusters))
        m, _ = g.err.wait(r"reload rejected, the running configuration stays\"? trigger=file "
                          r"error=\".*gw\.yaml:(\d+):(\d+): routes\[0\]\.backendRefs\[0\]\.name: "
                          r"no cluster named 'nope'\"", scaled(5), start)
        self.assertIsNotNone(m, g.err.text())
        self.assertEqual(request(g.port).header("X-Upstream"), "a")
        self.assertEqual(g.metrics()[("cairn_gateway_reload_failures_total", ())], 1)
        t0 = time.monotonic()
        g.write(cfg("  - {name: r, backendRefs: [{name: b}]}\n", clusters))
        poll_until(lambda: request(g.port).header("X-Upstream") == "b", scaled(2),
                   what="the file change applied")
        self.assertLess(time.monotonic() - t0, scaled(1))
        self.assertEqual(g.generation(), [2.0])
        self.assertEqual(g.stop(), 0)


class Cli(GatewayTest):
    def test_bad_config_exit_3(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("listeners: [{address: '127.0.0.1:0'}]\nroutes: [{name: r}]\n")
        self.addCleanup(os.unlink, f.name)
        p = subprocess.run([BIN, "gateway", "-c", f.name], env=clean_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(10))
        self.assertEqual(p.returncode, 3)
        self.assertEqual(p.stderr.decode(),
                         "cairn: %s:2:10: routes[0].backendRefs: is required (or a "
                         "RequestRedirect filter)\n" % f.name)


if __name__ == "__main__":
    unittest.main()
