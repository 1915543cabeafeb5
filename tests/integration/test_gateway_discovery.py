"""Gateway discovery from the registry: a cluster names a registry service and routes to its
healthy, enabled instances. The real binary (`cairn up` with the registry in-process, and
`cairn gateway` reading a registry over HTTP), real upstreams on loopback registered through
the Nacos v1 HTTP API, bytes and counts on the wire.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_gateway_discovery.py
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (BIN, SANITIZER_RE, Conn, Server, _Stream, clean_env, metrics,  # noqa: E402
                   poll_until, scaled)
from test_gateway import Upstream, request  # noqa: E402

LONG_BEATS = {"preserved.heart.beat.timeout": "600000", "preserved.ip.delete.timeout": "600000"}


class KUpstream(Upstream):
    """An upstream that can die: kill() closes the listener and every connection at once."""

    def __init__(self, name):
        self.conns = set()
        super().__init__(name)

    def _serve(self, c):
        with self.lock:
            self.conns.add(c)
        try:
            super()._serve(c)
        finally:
            with self.lock:
                self.conns.discard(c)

    def served(self):
        with self.lock:
            return len(self.requests)

    def kill(self):
        self.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def nacos(nport, method, path, **params):
    """A Nacos v1 call (form body); returns (status, body text)."""
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (nport, path), data=data,
                                 method=method)
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=scaled(5)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def register(port, service, u, weight=1.0, meta=None, **extra):
    md = dict(LONG_BEATS)
    md.update(meta or {})
    st, body = nacos(port, "POST", "/nacos/v1/ns/instance", serviceName=service, ip="127.0.0.1",
                     port=u.port, weight=weight, ephemeral="true",
                     metadata=",".join("%s=%s" % kv for kv in md.items()), **extra)
    assert (st, body) == (200, "ok"), (st, body)


def deregister(port, service, u):
    st, body = nacos(port, "DELETE", "/nacos/v1/ns/instance", serviceName=service,
                     ip="127.0.0.1", port=u.port, ephemeral="true")
    assert (st, body) == (200, "ok"), (st, body)


def beat(port, service, u):
    return nacos(port, "PUT", "/nacos/v1/ns/instance/beat", serviceName=service,
                 ip="127.0.0.1", port=u.port)


def gw_config(cluster_extra="", discovery="{service: shop}", policy="round_robin"):
    return ("listeners: [{name: edge, address: '127.0.0.1:0'}]\n"
            "clusters:\n"
            "  - name: shop\n"
            "    policy: %s\n"
            "    discovery: %s\n%s"
            "routes: [{name: all, backendRefs: [{name: shop}]}]\n"
            % (policy, discovery, cluster_extra))


class Load:
    """Keep-alive clients in threads, each sending GETs in a loop: every answer's status and
    upstream is counted; a connection that breaks counts as a failure and is reopened."""

    def __init__(self, port, clients=4):
        self.port = port
        self.stop_ = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.by_upstream = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self):
        c = None
        while not self.stop_.is_set():
            try:
                if c is None:
                    c = Conn(self.port, timeout=scaled(10))
                c.send(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
                r = c.read_response("GET")
                up = r.header("X-Upstream")
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                        self.by_upstream[up] = self.by_upstream.get(up, 0) + 1
                    else:
                        self.failures.append((r.status, r.body[:200]))
                if (r.header("Connection") or "").lower() == "close":
                    c.close()
                    c = None
            except Exception as e:  # a broken connection is a failed request
                with self.lock:
                    self.failures.append(("error", repr(e)))
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def count(self, name):
        with self.lock:
            return self.by_upstream.get(name, 0)

    def total(self):
        with self.lock:
            return self.ok + len(self.failures)

    def stop(self):
        self.stop_.set()
        for t in self.threads:
            t.join(scaled(10))


class DiscoveryTest(unittest.TestCase):
    def upstream(self, name):
        u = KUpstream(name)
        self.addCleanup(u.kill)
        return u

    def up(self, gw_text, workers=1, settings=None):
        d = tempfile.TemporaryDirectory(prefix="cairn-disc-")
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "gw.yaml")
        with open(path, "w") as f:
            f.write(gw_text)
        s = {"gateway.config": path, "telemetry.fsync": "false"}
        s.update(settings or {})
        srv = Server(settings=s, workers=workers)
        self.addCleanup(srv.cleanup)
        m, _ = srv.err.wait(r"part=gateway listener=edge addr=127\.0\.0\.1:(\d+)", scaled(5))
        self.assertIsNotNone(m, srv.logs())
        srv.gw_port = int(m.group(1))
        m, _ = srv.err.wait(r"listening part=registry addr=127\.0\.0\.1:(\d+)", scaled(5))
        self.assertIsNotNone(m, srv.logs())
        srv.nacos = int(m.group(1))
        srv.gw_path = path

        def done():
            rc = srv.stop()
            self.assertEqual(rc, 0, srv.logs()[-3000:])
            self.assertEqual([x for x in srv.log_lines() if SANITIZER_RE.search(x)], [])
        self.addCleanup(done)
        return srv

    def endpoints(self, port, cluster="shop"):
        return metrics(port).get(("cairn_gateway_discovery_endpoints", (("cluster", cluster),)))

    def converged(self, port):
        """Every worker runs the published generation."""
        m = metrics(port)
        gen = m.get(("cairn_gateway_config_generation", ()))
        return all(v == gen for (n, _), v in m.items()
                   if n == "cairn_gateway_worker_config_generation")

    def generations(self, port):
        m = metrics(port)
        return [v for (n, _), v in m.items() if n == "cairn_gateway_worker_config_generation"]


class InProcess(DiscoveryTest):
    def test_weights_and_deregister_within_100ms(self):
        a, b = self.upstream("a"), self.upstream("b")
        srv = self.up(gw_config(policy="weighted"), workers=2)
        # nothing registered yet: a 503 that names the cluster
        r = request(srv.gw_port, target="/echo")
        self.assertEqual(r.status, 503)
        self.assertIn(b"no endpoint for cluster shop", r.body)
        register(srv.nacos, "shop", a, weight=1.0)
        register(srv.nacos, "shop", b, weight=3.0)
        poll_until(lambda: self.endpoints(srv.port) == 2, scaled(2), what="2 endpoints")
        poll_until(lambda: min(self.generations(srv.port)) == max(self.generations(srv.port)),
                   scaled(2), what="every worker on the same generation")
        # weighted: exactly 1:3 per worker over whole rounds (smooth weighted round robin);
        # one connection lands on one worker
        c = Conn(srv.gw_port, timeout=scaled(10))
        self.addCleanup(c.close)
        seen = {"a": 0, "b": 0}
        for _ in range(400):
            c.send(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
            r = c.read_response("GET")
            self.assertEqual(r.status, 200)
            seen[r.header("X-Upstream")] += 1
        self.assertEqual(seen, {"a": 100, "b": 300})
        # a deregistration reaches every worker within 100 ms
        gen0 = max(self.generations(srv.port))
        t0 = time.monotonic()
        deregister(srv.nacos, "shop", b)
        poll_until(lambda: min(self.generations(srv.port)) > gen0
                   and self.endpoints(srv.port) == 1, scaled(2), interval=0.002,
                   what="the deregistration on every worker")
        elapsed = time.monotonic() - t0
        # The server's own figure, from the registry's change to each worker running the
        # configuration without it: what this client sees adds its own polling and, on a
        # loaded machine, its scheduling.
        m = metrics(srv.port)
        lags = [v for (n, _), v in m.items()
                if n == "cairn_gateway_worker_config_adopt_last_seconds"]
        self.assertEqual(len(lags), 2)
        print("deregister -> every worker on the new endpoints: %.1f ms (server: %.1f ms)"
              % (elapsed * 1000, max(lags) * 1000), file=sys.stderr)
        self.assertLess(max(lags), scaled(0.1))
        before = b.served()
        for _ in range(50):
            c.send(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
            r = c.read_response("GET")
            self.assertEqual((r.status, r.header("X-Upstream")), (200, "a"))
        self.assertEqual(b.served(), before)
        m = metrics(srv.port)
        self.assertGreaterEqual(m[("cairn_gateway_discovery_updates_total",
                                   (("cluster", "shop"),))], 3)
        age = m[("cairn_gateway_discovery_last_update_age_seconds", (("cluster", "shop"),))]
        self.assertGreaterEqual(age, 0)
        self.assertLess(age, 2)
        # the last instance leaving empties the service: the cluster follows (503 again)
        gen0 = max(self.generations(srv.port))
        deregister(srv.nacos, "shop", a)
        poll_until(lambda: min(self.generations(srv.port)) > gen0
                   and self.endpoints(srv.port) == 0, scaled(2), interval=0.002,
                   what="the empty service on every worker")
        c.send(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
        r = c.read_response("GET")
        self.assertEqual(r.status, 503)
        self.assertIn(b"no endpoint for cluster shop", r.body)

    def test_disabled_weight_zero_and_other_cluster_excluded(self):
        a, b, c, d = (self.upstream(n) for n in "abcd")
        srv = self.up(gw_config(discovery="{service: shop, cluster: east}"))
        register(srv.nacos, "shop", a, clusterName="east")
        register(srv.nacos, "shop", b, clusterName="east", enabled="false")
        register(srv.nacos, "shop", c, clusterName="east", weight=0)
        register(srv.nacos, "shop", d, clusterName="west")
        poll_until(lambda: self.endpoints(srv.port) == 1, scaled(2), what="1 endpoint")
        for _ in range(20):
            r = request(srv.gw_port, target="/echo")
            self.assertEqual((r.status, r.header("X-Upstream")), (200, "a"))
        # enabling b (PUT) brings it in
        st, body = nacos(srv.nacos, "PUT", "/nacos/v1/ns/instance", serviceName="shop",
                         ip="127.0.0.1", port=b.port, clusterName="east", enabled="true",
                         ephemeral="true", weight=1,
                         metadata=",".join("%s=%s" % kv for kv in LONG_BEATS.items()))
        self.assertEqual((st, body), (200, "ok"))
        poll_until(lambda: self.endpoints(srv.port) == 2, scaled(2), what="2 endpoints")
        ups = {request(srv.gw_port, target="/echo").header("X-Upstream") for _ in range(10)}
        self.assertEqual(ups, {"a", "b"})

    def test_reload_keeps_discovered_endpoints(self):
        a = self.upstream("a")
        srv = self.up(gw_config())
        register(srv.nacos, "shop", a)
        poll_until(lambda: self.endpoints(srv.port) == 1, scaled(2), what="1 endpoint")
        # the file changes (a second route): the new snapshot keeps the discovered endpoint
        with open(srv.gw_path, "w") as f:
            f.write(gw_config().replace(
                "routes: [", "routes: [{name: other, matches: [{path: {type: PathPrefix, "
                "value: /other}}], backendRefs: [{name: shop}]}, "))
        gen0 = max(self.generations(srv.port))
        srv.send_signal(signal.SIGHUP)
        poll_until(lambda: min(self.generations(srv.port)) > gen0, scaled(5), what="reload")
        self.assertEqual(self.endpoints(srv.port), 1)
        for path in ("/echo", "/other/x"):
            r = request(srv.gw_port, target=path)
            self.assertEqual((r.status, r.header("X-Upstream")), (200, "a"), r)

    def test_join_and_leave_under_load(self):
        ups = [self.upstream(n) for n in ("u0", "u1", "u2")]
        srv = self.up(gw_config(), workers=2)
        register(srv.nacos, "shop", ups[0])
        register(srv.nacos, "shop", ups[1])
        poll_until(lambda: self.endpoints(srv.port) == 2, scaled(2), what="2 endpoints")
        load = Load(srv.gw_port, clients=6)
        self.addCleanup(load.stop)
        poll_until(lambda: load.total() > 200, scaled(5), what="load running")
        # three rounds: one joins, one leaves gracefully (deregistered, then stopped)
        for rnd in range(3):
            joining, leaving = ups[(rnd + 2) % 3], ups[rnd % 3]
            n0 = load.count(joining.name)
            register(srv.nacos, "shop", joining)
            poll_until(lambda: load.count(joining.name) > n0 + 20, scaled(5),
                       what="traffic to %s" % joining.name)
            deregister(srv.nacos, "shop", leaving)
            poll_until(lambda: self.endpoints(srv.port) == 2 and self.converged(srv.port),
                       scaled(2), what="it left, on every worker")
            # what was in flight to it finishes; then it stops
            served = leaving.served()
            time.sleep(scaled(0.2))
            self.assertLessEqual(leaving.served() - served, 6)  # at most one per client
            leaving.kill()
            ups[rnd % 3] = self.upstream(leaving.name)  # a new process for the next round
            n1 = load.total()
            poll_until(lambda: load.total() > n1 + 100, scaled(5), what="load goes on")
        load.stop()
        print("join/leave under load: %d requests, %d failed, by upstream %r"
              % (load.total(), len(load.failures), load.by_upstream), file=sys.stderr)
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 600)

    def test_killed_instance_fails_only_toward_it_then_expires(self):
        a, b = self.upstream("a"), self.upstream("b")
        srv = self.up(gw_config(
            "    outlier: {consecutive_errors: 2, base_ejection: 30s, max_ejected_percent: 50}\n"
            "    retry: {attempts: 1}\n"), workers=2)
        register(srv.nacos, "shop", a)
        # b lives by heartbeats: unhealthy 1 s after its last beat, removed after 2 s
        register(srv.nacos, "shop", b, meta={"preserved.heart.beat.timeout": "1000",
                                             "preserved.ip.delete.timeout": "2000"})
        beating = threading.Event()
        beating.set()

        def beats():
            while beating.is_set():
                beat(srv.nacos, "shop", b)
                time.sleep(0.2)
        t = threading.Thread(target=beats, daemon=True)
        t.start()
        self.addCleanup(beating.clear)
        poll_until(lambda: self.endpoints(srv.port) == 2, scaled(2), what="2 endpoints")
        load = Load(srv.gw_port, clients=4)
        self.addCleanup(load.stop)
        poll_until(lambda: load.count("b") > 50 and load.count("a") > 50, scaled(5),
                   what="traffic to both")
        # b dies without deregistering: its beats stop with it
        beating.clear()
        t.join(scaled(2))
        killed_at = time.monotonic()
        b.kill()
        poll_until(lambda: self.endpoints(srv.port) == 1, scaled(6), interval=0.05,
                   what="b expired from the registry")
        gone_after = time.monotonic() - killed_at
        n1 = load.total()
        poll_until(lambda: load.total() > n1 + 200, scaled(5), what="load goes on")
        load.stop()
        print("killed instance: %d failed of %d, removed after %.2f s"
              % (len(load.failures), load.total(), gone_after), file=sys.stderr)
        # failures only toward b: each worker ejects it after 2 failures (counted across
        # workers), and a request in flight on each client's connection may fail
        self.assertLessEqual(len(load.failures), 2 + 4, load.failures)
        for st, body in load.failures:
            self.assertIn(st, (502, 503, "error"), body)
            if st == 502:
                self.assertIn(b"127.0.0.1:%d" % b.port, body)
        self.assertLess(gone_after, scaled(4))


class Alone(DiscoveryTest):
    def gateway(self, text):
        d = tempfile.TemporaryDirectory(prefix="cairn-discgw-")
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "gw.yaml")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.Popen([BIN, "gateway", "-c", path, "--workers", "2"], env=clean_env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        err = _Stream(p.stderr)

        def done():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            rc = p.wait(scaled(15))
            err.thread.join(scaled(5))
            self.assertEqual([x for x in err.lines if SANITIZER_RE.search(x)], [])
            self.assertEqual(rc, 0, err.text()[-3000:])
        self.addCleanup(done)
        m, _ = err.wait(r"listening part=gateway listener=edge addr=127\.0\.0\.1:(\d+)",
                        scaled(10))
        self.assertIsNotNone(m, err.text())
        p.port = int(m.group(1))
        m, _ = err.wait(r"listening part=admin addr=127\.0\.0\.1:(\d+)", scaled(5))
        p.admin = int(m.group(1))
        p.err = err
        return p

    def test_remote_registry_push_and_last_good_set(self):
        reg = Server()
        self.addCleanup(reg.cleanup)
        m, _ = reg.err.wait(r"listening part=registry addr=127\.0\.0\.1:(\d+)", scaled(5))
        nport = int(m.group(1))
        a, b = self.upstream("a"), self.upstream("b")
        register(nport, "shop", a)
        # a long poll interval: changes must come through the registry's UDP push
        g = self.gateway(
            "listeners: [{name: edge, address: '127.0.0.1:0'}]\n"
            "admin: {address: '127.0.0.1:0'}\n" +
            gw_config(discovery="{service: shop, registry: 'http://127.0.0.1:%d/', "
                      "interval: 3s, timeout: 500ms}" % nport).split("\n", 1)[1])
        # read before the workers started: the first request is answered
        r = request(g.port, target="/echo")
        self.assertEqual((r.status, r.header("X-Upstream")), (200, "a"))
        t0 = time.monotonic()
        register(nport, "shop", b)
        poll_until(lambda: self.endpoints(g.admin) == 2, scaled(2), interval=0.005,
                   what="b through the push")
        print("remote registry: register -> gateway endpoints: %.1f ms"
              % ((time.monotonic() - t0) * 1000), file=sys.stderr)
        self.assertLess(time.monotonic() - t0, scaled(1))
        ups = {request(g.port, target="/echo").header("X-Upstream") for _ in range(10)}
        self.assertEqual(ups, {"a", "b"})
        # the registry goes away: the last good set stays, errors are counted
        self.assertEqual(reg.stop(), 0)
        poll_until(lambda: (metrics(g.admin).get(("cairn_gateway_discovery_errors_total",
                                                  (("cluster", "shop"), ("kind", "unreachable"))))
                            or 0) >= 1, scaled(8), what="an unreachable registry counted")
        self.assertEqual(self.endpoints(g.admin), 2)
        ups = {request(g.port, target="/echo").header("X-Upstream") for _ in range(10)}
        self.assertEqual(ups, {"a", "b"})
        g.err.wait(r"discovery read failed, the last endpoints stay", scaled(2))

    def test_local_registry_needs_cairn_up(self):
        d = tempfile.TemporaryDirectory(prefix="cairn-discgw-")
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "gw.yaml")
        with open(path, "w") as f:
            f.write(gw_config())
        p = subprocess.run([BIN, "gateway", "-c", path], env=clean_env(), capture_output=True,
                           timeout=scaled(10))
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn(b"gw.yaml:5:16: cluster 'shop' discovery: registry: local needs the "
                      b"registry in the same process (cairn up)", p.stderr)


if __name__ == "__main__":
    unittest.main()
