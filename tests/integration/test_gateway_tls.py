"""Integration tests of TLS termination in the gateway: the real binary (`cairn gateway`, and
the gateway inside `cairn up`), certificates made with the `openssl` CLI into a temporary
directory at test time (two names, a wildcard, a default), Python's ssl module and `openssl
s_client` as clients, real upstreams on loopback (test_gateway.Upstream).

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_gateway_tls.py
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (BIN, SCALE, Conn, ProtocolError, Server, clean_env, metric,  # noqa: E402
                   metrics, poll_until, scaled)
from test_gateway import GatewayTest, hget, ws_frame, ws_read  # noqa: E402

# ---- certificates -----------------------------------------------------------------------

CERTS = tempfile.TemporaryDirectory(prefix="cairn-tls-certs-")


def make_cert(name, cn, san, days=30, key="ec"):
    """NAME.crt and NAME.key in CERTS (self-signed); returns the SHA-256 of the DER form."""
    crt, k = cert_path(name), os.path.join(CERTS.name, name + ".key")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else \
        ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509"] + newkey +
                   ["-nodes", "-keyout", k, "-out", crt, "-days", str(days), "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=" + san],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return fingerprint_file(crt)


def cert_path(name):
    return os.path.join(CERTS.name, name + ".crt")


def key_path(name):
    return os.path.join(CERTS.name, name + ".key")


def fingerprint_file(crt):
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"], check=True,
                         stdout=subprocess.PIPE).stdout
    return hashlib.sha256(der).hexdigest()


FP = {
    "a": make_cert("a", "a.example.com", "DNS:a.example.com"),
    "b": make_cert("b", "b.example.com", "DNS:b.example.com"),
    "w": make_cert("w", "*.example.com", "DNS:*.example.com"),
    "d": make_cert("d", "default.local", "DNS:default.local", key="rsa"),
}


def tls_block(timeout="10s", extra=""):
    return """    tls:
      mode: Terminate
      handshakeTimeout: %s
%s      certificates:
        - hostnames: [a.example.com]
          certificateFile: %s
          keyFile: %s
        - hostnames: [b.example.com]
          certificateFile: %s
          keyFile: %s
        - hostnames: ["*.example.com"]
          certificateFile: %s
          keyFile: %s
        - certificateFile: %s
          keyFile: %s
""" % (timeout, extra, cert_path("a"), key_path("a"), cert_path("b"), key_path("b"),
       cert_path("w"), key_path("w"), cert_path("d"), key_path("d"))


def config(upstream, tls=None, routes=None):
    return ("listeners:\n  - name: web\n    address: '127.0.0.1:0'\n" + (tls or tls_block()) +
            "  - name: plain\n    address: '127.0.0.1:0'\n"
            "admin: {address: '127.0.0.1:0'}\n"
            "clusters: [{name: u, endpoints: [%s]}]\n" % upstream.addr() +
            "routes:\n" + (routes or "  - {name: all, backendRefs: [{name: u}]}\n"))


# ---- clients ----------------------------------------------------------------------------

def client_ctx(alpn=None, cafiles=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafiles:
        for f in cafiles:
            ctx.load_verify_locations(f)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TlsConn(Conn):
    """Conn (cairn.py: one reply at a time, exact bytes) over TLS."""

    def __init__(self, port, sni=None, alpn=None, ctx=None, timeout=None):
        self.timeout = timeout if timeout is not None else scaled(10)
        raw = socket.create_connection(("127.0.0.1", port), self.timeout)
        self.sock = (ctx or client_ctx(alpn)).wrap_socket(raw, server_hostname=sni)
        self.buf = bytearray()  # as Conn's: see there
        self.eof = False

    def fingerprint(self):
        return hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()

    def request(self, method="GET", target="/", headers=(), body=None, host="a.example.com"):
        h = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, host)
        h += "".join("%s: %s\r\n" % kv for kv in headers)
        if body is not None:
            h += "Content-Length: %d\r\n" % len(body)
        self.send(h.encode() + b"\r\n" + (body or b""))
        return self.read_response(method)


class HalfCloseTls:
    """A TLS client over memory BIOs, which (unlike ssl.SSLSocket) can send its close_notify
    and go on reading."""

    def __init__(self, port, version):
        ctx = client_ctx()
        ctx.minimum_version = ctx.maximum_version = version
        self.sock = socket.create_connection(("127.0.0.1", port), scaled(30))
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="a.example.com")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    raise AssertionError("closed during the handshake")
        self._flush()

    def _flush(self):
        d = self.out.read()
        if d:
            self.sock.sendall(d)

    def _feed(self):
        d = self.sock.recv(65536)
        if d:
            self.inc.write(d)
        else:
            self.inc.write_eof()
        return d

    def send(self, data):
        self.tls.write(data)
        self._flush()

    def close_notify(self):
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # sent; the peer's is not here yet
        self._flush()

    def recv(self):
        """Plaintext; b"" at the peer's close_notify (or a bare TCP end)."""
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed():
                    return b""

    def close(self):
        self.sock.close()


def served(port, sni):
    """The fingerprint of the certificate served for an SNI name (None: no SNI)."""
    with TlsConn(port, sni) as c:
        return c.fingerprint()


def closed_cleanly(sock, timeout):
    """True when the peer ends the connection with a FIN (recv gives b'') within timeout;
    False when it is still open then; raises on a reset."""
    r, _, _ = select.select([sock], [], [], timeout)
    if not r:
        return False
    data = sock.recv(4096)
    while data:
        data = sock.recv(4096)
    return True


LISTEN_RE = re.compile(r"listening part=gateway listener=(\S+) addr=127\.0\.0\.1:(\d+) "
                       r"workers=\d+ tls=(on|off)")


def ports(g):
    """{listener: port} from the gateway's log."""
    out = {}
    for line in g.err.lines:
        m = LISTEN_RE.search(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def handshakes(port, result="ok", reason=None, listener="web"):
    labels = {"listener": listener, "result": result}
    if reason:
        labels["reason"] = reason
    return metric(port, "cairn_gateway_tls_handshakes_total", **labels)


# ---- tests ------------------------------------------------------------------------------

class Tls(GatewayTest):
    def setUp(self):
        self.u = self.upstream("u")

    def start(self, tls=None, routes=None):
        g = self.gateway(config(self.u, tls, routes))
        p = ports(g)
        self.assertIn("tls=on", "\n".join(g.err.lines))
        return g, p["web"], p["plain"]

    def test_sni_picks_the_certificate(self):
        g, port, _ = self.start()
        for sni, want in [("a.example.com", "a"), ("b.example.com", "b"),
                          ("c.example.com", "w"), ("x.y.example.com", "w"),
                          ("B.Example.COM", "b"), ("example.com", "d"), ("other.org", "d"),
                          (None, "d")]:
            self.assertEqual(served(port, sni), FP[want], "SNI %r" % sni)
        # A verifying client trusts each certificate and checks the name.
        ctx = client_ctx(cafiles=[cert_path(n) for n in "abwd"])
        with TlsConn(port, "b.example.com", ctx=ctx) as c:
            self.assertEqual(c.request(host="b.example.com").status, 200)
        # openssl s_client agrees.
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-servername", "a.example.com", "-alpn", "http/1.1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=scaled(10))
        out = p.stdout.decode()
        self.assertRegex(out, r"subject=CN ?= ?a\.example\.com")
        self.assertIn("ALPN protocol: http/1.1", out)
        # (a client that closes right after its Finished may be counted a moment later)
        poll_until(lambda: handshakes(g.admin) == 10, scaled(2), what="10 handshakes counted")
        for name, sni in [("a.example.com", "a.example.com"), ("*.example.com", "*.example.com"),
                          ("*", "*")]:
            v = metric(g.admin, "cairn_gateway_tls_cert_not_after_seconds", listener="web",
                       sni=sni)
            self.assertIsNotNone(v, name)
            self.assertGreater(v, time.time() + 29 * 86400)
            self.assertLess(v, time.time() + 31 * 86400)

    def test_alpn_and_versions(self):
        g, port, _ = self.start()
        for offer, want in [(["h2", "http/1.1"], "http/1.1"), (["http/1.1"], "http/1.1"),
                            (["http/1.0"], "http/1.0"), (None, None)]:
            with TlsConn(port, "a.example.com", alpn=offer) as c:
                self.assertEqual(c.sock.selected_alpn_protocol(), want, offer)
                self.assertEqual(c.request().status, 200)
        # h2 alone: the handshake fails with alert no_application_protocol (as nginx does).
        with self.assertRaisesRegex(ssl.SSLError, "(?i)no.application.protocol"):
            TlsConn(port, "a.example.com", alpn=["h2"])
        # TLS 1.1 is not offered; TLS 1.2 and 1.3 are.
        for version, ok in [(ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_3, True)]:
            ctx = client_ctx()
            ctx.minimum_version = ctx.maximum_version = version
            with TlsConn(port, "a.example.com", ctx=ctx) as c:
                self.assertEqual(c.sock.version(), version.name.replace("_", "."))
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=scaled(10))
        self.assertNotEqual(p.returncode, 0)
        poll_until(lambda: handshakes(g.admin, "failed", "version") == 1, scaled(2),
                   what="the version failure counted")
        self.assertEqual(handshakes(g.admin, "failed", "alpn"), 1)
        self.assertEqual(handshakes(g.admin), 6)

    def test_proxying_over_tls(self):
        g, port, plain = self.start()
        with TlsConn(port, "a.example.com") as c:
            # GET: the upstream sees X-Forwarded-Proto: https (plain listener: http).
            r = c.request(target="/echo?x=1", headers=[("X-Forwarded-Proto", "forged")])
            self.assertEqual(r.status, 200)
            self.assertIn(b"GET /echo?x=1\n", r.body)
            self.assertIn(b"X-Forwarded-Proto: https\n", r.body)
            self.assertNotIn(b"forged", r.body)
            # a streamed (chunked) POST body, 1 MiB in 64 KiB chunks
            data = os.urandom(1 << 20)
            head = (b"POST /upload HTTP/1.1\r\nHost: a.example.com\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
            c.send(head)
            for i in range(0, len(data), 65536):
                piece = data[i:i + 65536]
                c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            c.send(b"0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body.decode(), "%d %s" % (len(data), hashlib.sha256(data).hexdigest()))
            # a Content-Length upload and an 8 MiB download read slowly, on the same connection
            r = c.request("POST", "/upload", body=data[:300000])
            self.assertEqual(r.body.decode().split()[0], "300000")
            c.send(b"GET /big?n=8388608 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            time.sleep(0.3)
            r = c.read_response(timeout=scaled(30))
            self.assertEqual(len(r.body), 8388608)
            self.assertEqual(r.body, b"y" * 8388608)
            # keep-alive: the connection was reused for every request, one handshake
            for i in range(3):
                self.assertEqual(c.request(target="/k%d" % i).status, 200)
        self.assertEqual(handshakes(g.admin), 1)
        self.assertEqual(self.u.connections, 1)
        methods = [(m, t) for m, t, _, _ in self.u.requests]
        self.assertEqual(methods, [("GET", "/echo?x=1"), ("GET", "/big?n=8388608"),
                                   ("GET", "/k0"), ("GET", "/k1"), ("GET", "/k2")])
        with Conn(plain) as c:
            c.send(b"GET /echo HTTP/1.1\r\nHost: p\r\n\r\n")
            self.assertIn(b"X-Forwarded-Proto: http\n", c.read_response().body)

    def test_websocket_and_redirect_over_tls(self):
        routes = ("  - name: go\n"
                  "    matches: [{path: {type: PathPrefix, value: /go}}]\n"
                  "    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301}}]\n"
                  "  - {name: all, backendRefs: [{name: u}]}\n")
        g, port, plain = self.start(routes=routes)
        with TlsConn(port, "a.example.com") as c:
            r = c.request(target="/go/x", host="a.example.com:8443")
            self.assertEqual(r.status, 301)
            self.assertEqual(r.header("Location"), "https://a.example.com:8443/go/x")
        with Conn(plain) as c:
            c.send(b"GET /go/x HTTP/1.1\r\nHost: a.example.com:8080\r\n\r\n")
            self.assertEqual(c.read_response().header("Location"),
                             "http://a.example.com:8080/go/x")
        with TlsConn(port, "a.example.com") as c:
            c.send(b"GET /ws HTTP/1.1\r\nHost: a.example.com\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 101)
            f = c.sock.makefile("rb")
            for payload in (b"hello", os.urandom(70000)):
                c.send(ws_frame(2, payload))
                self.assertEqual(ws_read(f), (2, payload))
            c.send(ws_frame(8, b""))
            self.assertEqual(ws_read(f), (8, b""))

    def test_tunnel_half_close_over_tls(self):
        # The upstream ends its side first: the client reads its bytes, then a close_notify
        # (its EOF), and still sends; the upstream gets those bytes, then the client's end.
        g, port, _ = self.start()
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_ctx()
            ctx.minimum_version = ctx.maximum_version = version
            with TlsConn(port, "a.example.com", ctx=ctx, timeout=scaled(30)) as c:
                c.send(b"GET /tun/first HTTP/1.1\r\nHost: a.example.com\r\n"
                       b"Upgrade: x-raw\r\nConnection: Upgrade\r\n\r\n")
                self.assertEqual(c.read_response().status, 101)
                got = bytearray(c.buf)
                while True:
                    d = c.sock.recv(65536)
                    if not d:
                        break
                    got += d
                self.assertEqual(bytes(got), b"hello from upstream", version)
                data = os.urandom(1 << 20)
                c.sock.sendall(data)
                raw = c.sock.unwrap()  # our close_notify (theirs came already)
                self.assertTrue(self.u.tunnel.get(timeout=scaled(30)) == data, version)
                self.assertEqual(raw.recv(1), b"")  # then the gateway closes
        poll_until(lambda: metric(g.admin, "cairn_gateway_route_requests_total", route="all",
                                  code="1xx") == 2, scaled(10), what="2 tunnels recorded")

    def test_tunnel_client_half_close_over_tls(self):
        # The client ends its side first with a close_notify and keeps reading: the echo of
        # what it sent and the upstream's last words still come, then the gateway's end.
        g, port, _ = self.start()
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            c = HalfCloseTls(port, version)
            self.addCleanup(c.close)
            c.send(b"GET /tun/echo HTTP/1.1\r\nHost: a.example.com\r\n"
                   b"Upgrade: x-raw\r\nConnection: Upgrade\r\n\r\n")
            got = bytearray()
            while b"\r\n\r\n" not in got:
                d = c.recv()
                self.assertTrue(d, version)
                got += d
            head, rest = bytes(got).split(b"\r\n\r\n", 1)
            self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
            data = os.urandom(64 << 10)
            c.send(data)
            c.close_notify()
            got = bytearray(rest)
            while True:
                d = c.recv()
                if not d:
                    break
                got += d
            self.assertTrue(got == data + b"bye", (version, len(got)))
            self.assertEqual(self.u.tunnel.get(timeout=scaled(30)), data)
        poll_until(lambda: metric(g.admin, "cairn_gateway_route_requests_total", route="all",
                                  code="1xx") == 2, scaled(10), what="2 tunnels recorded")

    def test_plain_http_on_the_tls_port(self):
        g, port, _ = self.start()
        s = socket.create_connection(("127.0.0.1", port), scaled(5))
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        t0 = time.monotonic()
        # A clean close: FIN (recv gives b''), no reply bytes, no reset; at once.
        r, _, _ = select.select([s], [], [], scaled(5))
        self.assertTrue(r)
        self.assertEqual(s.recv(4096), b"")
        self.assertLess(time.monotonic() - t0, scaled(1))
        s.close()
        self.assertEqual(handshakes(g.admin, "failed", "plain_http"), 1)
        self.assertEqual(len(self.u.requests), 0)

    def test_handshake_timeout_at_its_edge(self):
        ms = int(1000 * SCALE)
        g, port, _ = self.start(tls=tls_block("%dms" % ms))
        t = ms / 1000.0
        # Silent client, and one that sent part of a ClientHello: open just before the
        # timeout, closed (FIN) just after it.
        a = socket.create_connection(("127.0.0.1", port))
        b = socket.create_connection(("127.0.0.1", port))
        t0 = time.monotonic()
        b.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01")
        self.assertFalse(closed_cleanly(a, t * 0.75))
        self.assertFalse(closed_cleanly(b, 0))
        self.assertTrue(closed_cleanly(a, t * 0.25 + scaled(0.5)))
        self.assertTrue(closed_cleanly(b, scaled(0.2)))
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, t * 0.95)
        self.assertLess(elapsed, t + scaled(0.7))
        a.close()
        b.close()
        # A slow handshake that finishes within the timeout works, and then the connection
        # lives past it (the idle timeout applies, 60 s).
        raw = socket.create_connection(("127.0.0.1", port))
        time.sleep(t * 0.6)
        c = client_ctx().wrap_socket(raw, server_hostname="a.example.com")
        time.sleep(t * 0.6)
        c.sendall(b"GET /late HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        self.assertTrue(c.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n"))
        c.close()
        self.assertEqual(handshakes(g.admin, "failed", "timeout"), 2)
        self.assertEqual(handshakes(g.admin), 1)

    def test_certificate_replaced_on_disk(self):
        # Its own copies of a's files, so other tests keep theirs.
        d = tempfile.TemporaryDirectory(prefix="cairn-tls-rot-")
        self.addCleanup(d.cleanup)
        crt, key = os.path.join(d.name, "a.crt"), os.path.join(d.name, "a.key")
        shutil.copy(cert_path("a"), crt)
        shutil.copy(key_path("a"), key)
        tls = tls_block().replace(cert_path("a"), crt).replace(key_path("a"), key)
        g, port, _ = self.start(tls=tls)
        keep = TlsConn(port, "a.example.com")
        self.addCleanup(keep.close)
        self.assertEqual(keep.fingerprint(), FP["a"])
        self.assertEqual(keep.request(target="/before").status, 200)
        before = metric(g.admin, "cairn_gateway_tls_cert_not_after_seconds", listener="web",
                        sni="a.example.com")
        # A new certificate for the same name (valid 90 days), written beside and renamed in.
        new = make_cert("a2", "a.example.com", "DNS:a.example.com", days=90)
        os.replace(key_path("a2"), key)
        os.replace(cert_path("a2"), crt)
        t0 = time.monotonic()
        poll_until(lambda: served(port, "a.example.com") == new, scaled(5),
                   what="new handshakes on the new certificate")
        self.assertLess(time.monotonic() - t0, scaled(3))
        # The open keep-alive connection goes on with its session.
        r = keep.request(target="/after")
        self.assertEqual(r.status, 200)
        self.assertEqual(served(port, "b.example.com"), FP["b"])
        m = metrics(g.admin)
        self.assertEqual(m[("cairn_gateway_tls_certificate_reloads_total",
                            (("listener", "web"), ("result", "ok")))], 1)
        after = m[("cairn_gateway_tls_cert_not_after_seconds",
                   (("listener", "web"), ("sni", "a.example.com")))]
        self.assertGreater(after, before + 59 * 86400)
        # A broken replacement (b's key beside a's certificate) is refused with the file named;
        # the running certificate stays.
        start = len(g.err.lines)
        shutil.copy(key_path("b"), key + ".tmp")
        os.replace(key + ".tmp", key)
        m_, _ = g.err.wait(r"certificate reload rejected, the running certificates stay\"? "
                           r"listener=web error=\"'%s': the private key does not match the "
                           r"certificate in '%s'\"" % (re.escape(key), re.escape(crt)),
                           scaled(5), start)
        self.assertIsNotNone(m_, g.err.text()[-2000:])
        self.assertEqual(served(port, "a.example.com"), new)
        self.assertEqual(keep.request(target="/still").status, 200)
        self.assertEqual(metric(g.admin, "cairn_gateway_tls_certificate_reloads_total",
                                listener="web", result="failed"), 1)
        # An unreadable certificate too; then the good key back: served again.
        os.unlink(crt)
        m_, _ = g.err.wait(r"error=\"cannot open '%s': No such file" % re.escape(crt), scaled(5),
                           start)
        self.assertIsNotNone(m_, g.err.text()[-2000:])
        self.assertEqual(served(port, "a.example.com"), new)
        fix = make_cert("a3", "a.example.com", "DNS:a.example.com")
        os.replace(key_path("a3"), key)
        os.replace(cert_path("a3"), crt)
        poll_until(lambda: served(port, "a.example.com") == fix, scaled(5),
                   what="the fixed pair served")
        self.assertEqual(keep.request(target="/last").status, 200)

    def test_certificates_of_a_new_snapshot(self):
        # A configuration change (the file, then SIGHUP) publishes a new snapshot whose
        # certificates new handshakes use: here a.example.com gets b's pair.
        g, port, _ = self.start()
        keep = TlsConn(port, "a.example.com")
        self.addCleanup(keep.close)
        swapped = tls_block().replace(cert_path("a"), cert_path("b")).replace(
            key_path("a"), key_path("b"))
        g.write(config(self.u, swapped))
        poll_until(lambda: served(port, "a.example.com") == FP["b"], scaled(5),
                   what="the new snapshot's certificate")
        self.assertEqual(keep.request().status, 200)
        # A snapshot with a bad pair is refused whole; the running certificates stay.
        broken = tls_block().replace(key_path("a"), key_path("b"))
        start = len(g.err.lines)
        g.write(config(self.u, broken))
        m, _ = g.err.wait(r"reload rejected, the running configuration stays.*"
                          r"listeners\[0\]\.tls\.certificates\[0\]\.keyFile: '%s': the private key "
                          r"does not match the certificate in '%s'"
                          % (re.escape(key_path("b")), re.escape(cert_path("a"))),
                          scaled(5), start)
        self.assertIsNotNone(m, g.err.text()[-2000:])
        self.assertEqual(served(port, "a.example.com"), FP["b"])
        # SIGHUP with the original file: back to a's certificate.
        g.write(config(self.u))
        g.proc.send_signal(signal.SIGHUP)
        poll_until(lambda: served(port, "a.example.com") == FP["a"], scaled(5),
                   what="a's certificate after SIGHUP")
        self.assertEqual(keep.request().status, 200)
        # The admin API publishes snapshots the same way: a document whose tls block gives
        # a.example.com w's pair changes what new handshakes get.
        doc = json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/api/v1/gateway/config" % g.admin, timeout=scaled(5)).read())
        cfg = doc["config"]
        entry = cfg["listeners"][0]["tls"]["certificates"][0]
        self.assertEqual(entry["hostnames"], ["a.example.com"])
        entry["certificateFile"], entry["keyFile"] = cert_path("w"), key_path("w")
        req = urllib.request.Request("http://127.0.0.1:%d/api/v1/gateway/config" % g.admin,
                                     data=json.dumps(cfg).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
        self.assertEqual(urllib.request.urlopen(req, timeout=scaled(5)).status, 200)
        poll_until(lambda: served(port, "a.example.com") == FP["w"], scaled(5),
                   what="the admin API's certificate")
        self.assertEqual(served(port, "b.example.com"), FP["b"])
        # ... and a bad pair through the API is a 400 naming the field and the file.
        entry["keyFile"] = key_path("a")
        req = urllib.request.Request("http://127.0.0.1:%d/api/v1/gateway/config" % g.admin,
                                     data=json.dumps(cfg).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=scaled(5))
        self.assertEqual(e.exception.code, 400)
        err = json.loads(e.exception.read())
        self.assertEqual(err["param"], "listeners[0].tls.certificates[0].keyFile")
        self.assertIn("'%s': the private key does not match the certificate in '%s'"
                      % (key_path("a"), cert_path("w")), err["error"])
        self.assertEqual(served(port, "a.example.com"), FP["w"])
        self.assertEqual(keep.request().status, 200)


class TlsCli(unittest.TestCase):
    def test_bad_key_exits_3_naming_the_file(self):
        d = tempfile.TemporaryDirectory(prefix="cairn-tls-cli-")
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "gw.yaml")
        line = "      certificates: [{certificateFile: %s, keyFile: %s}]" % (cert_path("a"),
                                                                          key_path("b"))
        with open(path, "w") as f:
            f.write("listeners:\n  - address: '127.0.0.1:0'\n    tls:\n" + line + "\n"
                    "clusters: [{name: u, endpoints: ['127.0.0.1:9']}]\n"
                    "routes: [{name: r, backendRefs: [{name: u}]}]\n")
        p = subprocess.run([BIN, "gateway", "-c", path], env=clean_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(10))
        self.assertEqual(p.returncode, 3)
        self.assertEqual(p.stderr.decode(),
                         "cairn: %s:4:%d: listeners[0].tls.certificates[0].keyFile: '%s': the "
                         "private key does not match the certificate in '%s'\n"
                         % (path, line.index(key_path("b")) + 1, key_path("b"), cert_path("a")))


class TlsUnderUp(GatewayTest):
    def test_tls_listener_under_cairn_up(self):
        u = self.upstream("u")
        d = tempfile.TemporaryDirectory(prefix="cairn-tls-up-")
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "gw.yaml")
        with open(path, "w") as f:
            f.write("listeners:\n  - name: edge\n    address: '127.0.0.1:0'\n" + tls_block() +
                    "clusters: [{name: u, endpoints: [%s]}]\n" % u.addr() +
                    "routes: [{name: all, backendRefs: [{name: u}]}]\n")
        srv = Server(settings={"gateway.config": path})
        self.addCleanup(srv.cleanup)
        m, _ = srv.err.wait(r"part=gateway listener=edge addr=127\.0\.0\.1:(\d+) workers=\d+ "
                            r"tls=on", scaled(5))
        self.assertIsNotNone(m, srv.err.text())
        port = int(m.group(1))
        self.assertEqual(served(port, "b.example.com"), FP["b"])
        with TlsConn(port, "a.example.com", alpn=["h2", "http/1.1"]) as c:
            self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
            r = c.request(target="/up")
            self.assertEqual(r.status, 200)
            self.assertIn(b"X-Forwarded-Proto: https\n", r.body)
        poll_until(lambda: metric(srv.port, "cairn_gateway_tls_handshakes_total",
                                  listener="edge", result="ok") == 2, scaled(2),
                   what="2 handshakes counted")
        self.assertIsNotNone(metric(srv.port, "cairn_gateway_tls_cert_not_after_seconds",
                                    listener="edge", sni="*"))


if __name__ == "__main__":
    unittest.main()
