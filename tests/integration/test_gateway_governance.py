"""Integration tests of the gateway's traffic governance: active health checks, passive outlier
detection, retries and their budget, circuit breaking, local rate limits. Real upstreams on
loopback (threads of this process), the real binary; every wait is on a condition.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_gateway_governance.py
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import tempfile
import time
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import Conn, poll_until, scaled  # noqa: E402
from test_gateway import GatewayTest, Upstream, cfg, request  # noqa: E402


def peer_closed(sock):
    """True when the peer closed sock (EOF or reset waiting in the kernel)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Switchable(Upstream):
    """An upstream whose answers can be switched: /health answers health_status; every other
    path answers status when set (else as Upstream); /hold waits until gate is set."""

    def __init__(self, name):
        self.health_status = 200
        self.status = None
        self.gate = threading.Event()
        self.health_checks = 0
        self.health_hold = None
        super().__init__(name)

    def _answer(self, c, f, method, path, q, headers, body):
        if path == "/health" and self.health_hold is not None:
            # held open until the checker gives up and closes it; concurrency recorded
            hold = self.health_hold
            with hold["lock"]:
                # Counted: the held connections the checker has not closed yet, as the
                # kernel sees them (a thread may not have woken up to a close yet).
                hold["socks"] = {s for s in hold["socks"] if not peer_closed(s)}
                hold["socks"].add(c)
                hold["max"] = max(hold["max"], len(hold["socks"]))
                hold["total"] += 1
            try:
                c.recv(1)
            finally:
                with hold["lock"]:
                    hold["socks"].discard(c)
            return False
        if path == "/health":
            with self.lock:
                self.health_checks += 1
            st = self.health_status
            c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % st)
            return False
        if path == "/hold":
            self.gate.wait(scaled(20))
        if self.status:
            out = b"failing %s" % self.name.encode()
            c.sendall(b"HTTP/1.1 %d X\r\nX-Upstream: %s\r\nContent-Length: %d\r\n\r\n%s"
                      % (self.status, self.name.encode(), len(out), out))
            return True
        return super()._answer(c, f, method, path, q, headers, body)

    def count(self, path=None):
        with self.lock:
            return sum(1 for r in self.requests if path is None or r[1].startswith(path))


def dead_addr():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    return addr


def metric(g, name, **labels):
    want = tuple(sorted(labels.items()))
    return g.metrics().get((name, want))


class Governance(GatewayTest):
    def up(self, name):
        u = Switchable(name)
        self.addCleanup(u.close)
        self.addCleanup(u.gate.set)
        return u

    def test_active_health_checks_eject_and_return(self):
        a, b = self.up("a"), self.up("b")
        clusters = ("  - name: c\n    endpoints: [%s, %s]\n"
                    "    health_check: {path: /health, interval: 50ms, timeout: 1s, "
                    "healthy_threshold: 2, unhealthy_threshold: 2, expected_statuses: [200, 204]}\n"
                    % (a.addr(), b.addr()))
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n", clusters), workers=2)

        def healthy(u):
            return metric(g, "cairn_gateway_endpoint_healthy", cluster="c", endpoint=u.addr())

        poll_until(lambda: a.health_checks >= 2 and b.health_checks >= 2, scaled(5),
                   what="health checks of both endpoints")
        self.assertEqual(healthy(b), 1)
        b.health_status = 503
        poll_until(lambda: healthy(b) == 0, scaled(5), what="b marked unhealthy")
        served = [request(g.port, target="/x").header("X-Upstream") for _ in range(20)]
        self.assertEqual(served, ["a"] * 20)
        b.health_status = 204  # an expected status other than 200
        poll_until(lambda: healthy(b) == 1, scaled(5), what="b healthy again")
        served = {request(g.port, target="/x").header("X-Upstream") for _ in range(8)}
        self.assertEqual(served, {"a", "b"})
        self.assertGreater(metric(g, "cairn_gateway_health_checks_total", cluster="c",
                                  result="failed"), 1)
        # a reload keeps the checker running against the new snapshot
        checks = a.health_checks
        g.write(cfg("  - {name: r2, backendRefs: [{name: c}]}\n", clusters))
        poll_until(lambda: request(g.port, target="/x").status == 200 and
                   metric(g, "cairn_gateway_config_generation") == 2, scaled(5),
                   what="the reload applied")
        poll_until(lambda: a.health_checks > checks + 2, scaled(5), what="checks after reload")

    def test_health_checks_bounded_concurrency(self):
        hold = {"lock": threading.Lock(), "socks": set(), "max": 0, "total": 0}
        ups = [self.up("u%d" % i) for i in range(5)]
        for u in ups:
            u.health_hold = hold
        clusters = ("  - name: c\n    endpoints: [%s]\n"
                    "    health_check: {path: /health, interval: 20ms, timeout: 100ms, "
                    "max_concurrent: 2}\n" % ", ".join(u.addr() for u in ups))
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n", clusters))
        # every check hangs until its timeout: rounds go on two at a time
        poll_until(lambda: hold["total"] >= 8, scaled(10), what="eight checks")
        self.assertEqual(hold["max"], 2)
        poll_until(lambda: metric(g, "cairn_gateway_health_checks_total", cluster="c",
                                  result="failed") >= 6, scaled(5), what="timeouts counted")

    def test_passive_ejection_with_cap(self):
        a, b, c = self.up("a"), self.up("b"), self.up("c")
        a.status = b.status = 500
        clusters = ("  - name: c\n    endpoints: [%s, %s, %s]\n"
                    "    outlier: {consecutive_errors: 3, base_ejection: 1m, max_ejection: 5m, "
                    "max_ejected_percent: 34}\n" % (a.addr(), b.addr(), c.addr()))
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n", clusters))
        # round robin: a, b, c, a, b, c, a (3rd error: ejected), b (3rd: the cap of 1 is
        # reached, not ejected), c ...
        for _ in range(9):
            request(g.port, target="/x")

        def ejected(u):
            return metric(g, "cairn_gateway_endpoint_ejected", cluster="c", endpoint=u.addr())

        self.assertEqual([ejected(u) for u in (a, b, c)], [1, 0, 0])
        self.assertEqual(metric(g, "cairn_gateway_outlier_ejections_total", cluster="c",
                                result="ejected"), 1)
        self.assertGreaterEqual(metric(g, "cairn_gateway_outlier_ejections_total", cluster="c",
                                       result="capped"), 1)
        na = a.count()
        served = [request(g.port, target="/x").header("X-Upstream") for _ in range(10)]
        self.assertEqual(a.count(), na)  # ejected: no traffic
        self.assertEqual(sorted(set(served)), ["b", "c"])

    def test_ejection_ends(self):
        a, b = self.up("a"), self.up("b")
        a.status = 502
        clusters = ("  - name: c\n    endpoints: [%s, %s]\n"
                    "    outlier: {consecutive_errors: 2, base_ejection: 300ms, max_ejection: 1s, "
                    "max_ejected_percent: 50}\n" % (a.addr(), b.addr()))
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n", clusters))
        for _ in range(4):
            request(g.port, target="/x")
        self.assertEqual(metric(g, "cairn_gateway_endpoint_ejected", cluster="c",
                                endpoint=a.addr()), 1)
        a.status = None
        poll_until(lambda: request(g.port, target="/x").header("X-Upstream") == "a", scaled(5),
                   what="a back after its ejection")

    def test_retry_on_connect_failure_goes_elsewhere(self):
        u = self.up("live")
        clusters = ("  - name: c\n    endpoints: [%s, %s]\n"
                    "    retry: {attempts: 2, on: [connect-failure], budget_percent: 100, "
                    "attempts_header: true}\n" % (dead_addr(), u.addr()))
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n", clusters))
        attempts = []
        for i in range(10):
            r = request(g.port, target="/x%d" % i)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header("X-Upstream"), "live")
            attempts.append(r.header("X-Cairn-Attempts"))
        # round robin: the retry takes the next turn, so the dead endpoint is first every time
        self.assertEqual(set(attempts), {"2"})
        retried = attempts.count("2")
        self.assertEqual(metric(g, "cairn_gateway_retries_total", cluster="c", result="retried"),
                         retried)
        # a body buffered while connecting goes to the next endpoint whole
        for _ in range(2):
            r = request(g.port, "POST", "/echo", body=b"z" * 5000)
            self.assertEqual(r.status, 200)
            self.assertIn(b"body-length: 5000\n", r.body)

    def test_retry_budget_stops_a_storm(self):
        u = self.up("u")
        u.status = 503
        clusters = ("  - name: storm\n    endpoints: [%s]\n"
                    "    retry: {attempts: 3, on: ['503'], budget_percent: 20, "
                    "min_retries_per_second: 0}\n"
                    "  - name: open\n    endpoints: [%s]\n"
                    "    retry: {attempts: 3, on: ['503'], budget_percent: 100, "
                    "min_retries_per_second: 0, attempts_header: true}\n" % (u.addr(), u.addr()))
        routes = ("  - {name: s, matches: [{path: {value: /storm}}], backendRefs: [{name: storm}]}\n"
                  "  - {name: o, matches: [{path: {value: /open}}], backendRefs: [{name: open}]}\n")
        g = self.gateway(cfg(routes, clusters))
        for _ in range(20):
            self.assertEqual(request(g.port, target="/storm").status, 503)
        # one request in flight: a retry would be 100% of it, past 20%
        self.assertEqual(u.count("/storm"), 20)
        self.assertEqual(metric(g, "cairn_gateway_retries_total", cluster="storm",
                                result="budget_exhausted"), 20)
        self.assertEqual(metric(g, "cairn_gateway_retries_total", cluster="storm",
                                result="retried"), 0)
        # the same failure with a budget of 100%: every attempt made, the last answer passed on
        for _ in range(5):
            r = request(g.port, target="/open")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.header("X-Cairn-Attempts"), "3")
        self.assertEqual(u.count("/open"), 15)
        self.assertEqual(metric(g, "cairn_gateway_retries_total", cluster="open",
                                result="retried"), 10)
        # POST is not idempotent: never retried on a status
        c = Conn(g.port)
        self.addCleanup(c.close)
        c.send(b"POST /open HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        self.assertEqual(c.read_response().header("X-Cairn-Attempts"), "1")

    def test_circuit_breaker_max_requests(self):
        u = self.up("u")
        clusters = ("  - name: c\n    endpoints: [%s]\n"
                    "    circuit_breaker: {max_requests: 2}\n" % u.addr())
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n", clusters))
        results = []

        def held():
            results.append(request(g.port, target="/hold", timeout=scaled(20)).status)

        threads = [threading.Thread(target=held) for _ in range(2)]
        for t in threads:
            t.start()
        poll_until(lambda: u.count("/hold") == 2, scaled(5), what="two requests held upstream")
        for _ in range(3):
            r = request(g.port, target="/more")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.header("X-Cairn-Circuit-Breaker"), "max_requests")
            self.assertIn(b"circuit breaker open: max_requests 2 reached (cluster c)", r.body)
        self.assertEqual(u.count("/more"), 0)
        u.gate.set()
        for t in threads:
            t.join(scaled(10))
        self.assertEqual(results, [200, 200])
        self.assertEqual(request(g.port, target="/more").status, 200)
        self.assertEqual(metric(g, "cairn_gateway_circuit_breaker_rejections_total",
                                cluster="c", limit="max_requests"), 3)

    def test_circuit_breaker_max_connections(self):
        u = self.up("u")
        clusters = ("  - name: c\n    endpoints: [%s]\n"
                    "    circuit_breaker: {max_connections: 1}\n" % u.addr())
        g = self.gateway(cfg("  - {name: r, backendRefs: [{name: c}]}\n", clusters))
        t = threading.Thread(target=lambda: request(g.port, target="/hold", timeout=scaled(20)))
        t.start()
        poll_until(lambda: u.count("/hold") == 1, scaled(5), what="one request held upstream")
        r = request(g.port, target="/more")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header("X-Cairn-Circuit-Breaker"), "max_connections")
        u.gate.set()
        t.join(scaled(10))
        # the connection went back to the pool: reused, no new one needed
        self.assertEqual(request(g.port, target="/more").status, 200)

    def test_rate_limit_at_the_edge(self):
        u = self.up("u")
        routes = """
  - name: ip
    matches: [{path: {value: /ip}}]
    filters: [{type: RateLimit, rateLimit: {rate: 1/m, burst: 3}}]
    backendRefs: [{name: c}]
  - name: hdr
    matches: [{path: {value: /hdr}}]
    filters: [{type: RateLimit, rateLimit: {rate: 2/h, burst: 2, key: 'header:X-Key', max_keys: 2}}]
    backendRefs: [{name: c}]
"""
        g = self.gateway(cfg(routes, "  - {name: c, endpoints: [%s]}\n" % u.addr()), workers=2)
        statuses = [request(g.port, target="/ip").status for _ in range(4)]
        self.assertEqual(statuses, [200, 200, 200, 429])
        r = request(g.port, target="/ip")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("Retry-After"), "60")
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(json.loads(r.body), {
            "error": "rate limited", "route": "ip", "retry_after": 60,
            "limit": {"rate": "1/m", "burst": 3, "key": "client_ip"}})
        self.assertEqual(u.count("/ip"), 3)

        def hdr(k):
            return request(g.port, target="/hdr", headers=[("X-Key", k)])

        self.assertEqual([hdr("A").status for _ in range(3)], [200, 200, 429])
        r = hdr("A")
        self.assertEqual(r.header("Retry-After"), "1800")
        self.assertEqual(hdr("B").status, 200)
        # a third key evicts the least recently used one (A): A starts over with a full bucket
        self.assertEqual(hdr("C").status, 200)
        self.assertEqual(hdr("A").status, 200)
        self.assertGreaterEqual(metric(g, "cairn_gateway_rate_limit_evictions_total",
                                       route="hdr"), 1)
        self.assertEqual(metric(g, "cairn_gateway_rate_limited_total", route="ip"), 2)
        # a reload with the same limit keeps the buckets
        g.write(cfg(routes + "  - {name: extra, matches: [{path: {value: /z}}], "
                    "backendRefs: [{name: c}]}\n", "  - {name: c, endpoints: [%s]}\n" % u.addr()))
        poll_until(lambda: request(g.port, target="/z").status == 200, scaled(5),
                   what="the reload applied")
        self.assertEqual(request(g.port, target="/ip").status, 429)

    def test_rate_limit_by_verified_jwt_claim(self):
        u = self.up("u")
        secret = b"s" * 40
        with tempfile.NamedTemporaryFile("wb", suffix=".key", delete=False) as f:
            f.write(secret)
        self.addCleanup(os.unlink, f.name)

        def token(sub):
            def b64(b):
                return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
            head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
            sig = hmac.new(secret, ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
            return "%s.%s.%s" % (head, body, b64(sig))

        routes = ("  - name: r\n    filters:\n      - {type: JWT, jwt: {secret: '%s', algorithms: [HS256]}}\n"
                  "      - {type: RateLimit, rateLimit: {rate: 1/h, burst: 2, "
                  "key: 'jwt_claim:sub'}}\n    backendRefs: [{name: c}]\n" % f.name)
        g = self.gateway(cfg(routes, "  - {name: c, endpoints: [%s]}\n" % u.addr()))

        def get(sub):
            return request(g.port, target="/x",
                           headers=[("Authorization", "Bearer " + token(sub))]).status

        self.assertEqual([get("alice") for _ in range(3)], [200, 200, 429])
        self.assertEqual(get("bob"), 200)  # another claim, another bucket
        self.assertEqual(request(g.port, target="/x").status, 401)  # refused first: no token
        self.assertEqual(get("bob"), 200)
        self.assertEqual(get("bob"), 429)


if __name__ == "__main__":
    unittest.main()
