"""Integration tests of the registry: the real `cairn up`, the real npm `nacos` client 2.x
(tests/integration/nacos, installed by scripts/deps.sh) and raw Nacos v1 bytes on loopback.

What is checked: register, discover, subscribe to changes, deregister through the client;
heartbeats keep an ephemeral instance healthy and their absence marks it unhealthy, then
removes it, on time (per-instance preserved.* timeouts so the test takes seconds); publish,
get, listen and receive a change, delete; the exact list JSON and listener answers; the hold
of a long poll; Nacos-style 400s for malformed parameters; login when registry.auth is on;
configuration, its history and persistent instances survive a restart, ephemeral ones do not;
the native API and `cairn registry` / `cairn config` commands.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_registry.py
"""

import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (CairnTestCase, Conn, Server, main, poll_until, request_bytes,  # noqa: E402
                   run_cli, scaled)

HERE = os.path.dirname(os.path.abspath(__file__))
NACOS_DIR = os.path.join(HERE, "nacos")
DRIVER = os.path.join(NACOS_DIR, "driver.js")
REG_RE = re.compile(r" info up listening part=registry addr=(\S+):(\d+) ")

# Fast clocks for the tests: clients poll subscribed services every 300 ms, expiry runs every
# 50 ms.
FAST = {"registry.cache_millis": "300ms", "registry.tick": "50ms",
        "registry.listen": "127.0.0.1:0", "registry.check_interval": "200ms",
        "registry.check_timeout": "500ms"}


def log(msg):
    sys.stderr.write("    " + msg + "\n")
    sys.stderr.flush()


def reg_port(srv):
    m, _ = srv.err.wait(REG_RE, scaled(5))
    assert m, "no registry listening line\n" + srv.logs()
    return int(m.group(2))


def nacos(port, method, path, params=None, body=None, headers=None):
    """One request to the Nacos API; (status, headers dict, body bytes)."""
    q = ("?" + urllib.parse.urlencode(params)) if params else ""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = urllib.parse.urlencode(body).encode()
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    with Conn(port, timeout=scaled(20)) as c:
        c.send(request_bytes(method, "/nacos/v1" + path + q, headers=hdrs, body=body))
        r = c.read_response(method=method, timeout=scaled(20))
        return r.status, {k.lower(): v for k, v in r.headers}, r.body


def hosts(port, service, **kw):
    st, _, body = nacos(port, "GET", "/ns/instance/list", dict(serviceName=service, **kw))
    assert st == 200, body
    return json.loads(body)


class Driver:
    """tests/integration/nacos/driver.js: the npm client, one JSON command per line."""

    def __init__(self, port, cache_dir, **extra):
        node = shutil.which("node")
        if not node or not os.path.isdir(os.path.join(NACOS_DIR, "node_modules", "nacos")):
            raise AssertionError("node or tests/integration/nacos/node_modules missing: run "
                                 "scripts/deps.sh")
        argv = [node, DRIVER, "--server", "127.0.0.1:%d" % port, "--cache-dir", cache_dir]
        for k, v in extra.items():
            argv += ["--" + k, v]
        self.proc = subprocess.Popen(argv, cwd=NACOS_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.answers = {}
        self.events = queue.Queue()
        self.cond = threading.Condition()
        self.next_id = 1
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            try:
                msg = json.loads(line)
            except ValueError:  # a library printing to stdout: keep it for the report
                self.stderr.append("stdout: " + line.decode("utf-8", "replace"))
                continue
            if "event" in msg:
                self.events.put(msg)
            else:
                with self.cond:
                    self.answers[msg.get("id")] = msg
                    self.cond.notify_all()

    def _read_err(self):
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr.append(line.decode("utf-8", "replace"))

    def call(self, op, timeout=None, **kw):
        i = self.next_id
        self.next_id += 1
        kw.update(id=i, op=op)
        self.proc.stdin.write((json.dumps(kw) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + (timeout or scaled(20))
        with self.cond:
            while i not in self.answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("driver: no answer to %s\n%s" % (op, "".join(self.stderr)))
                self.cond.wait(left)
            a = self.answers.pop(i)
        if not a["ok"]:
            raise AssertionError("driver %s failed: %s" % (op, a["error"]))
        return a["result"]

    def event(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("driver: no event %s within %.1fs\n%s"
                                     % (what, timeout, "".join(self.stderr[-20:])))
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if pred(e):
                return e

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class RegistryTest(CairnTestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-nacos-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def driver(self, port, **extra):
        d = Driver(port, os.path.join(self.tmp, "cache-%d" % len(os.listdir(self.tmp))), **extra)
        self.addCleanup(d.kill)
        return d

    # ---- naming through the real client ---------------------------------------------------

    def test_register_discover_subscribe_deregister(self):
        srv = self.start(settings=FAST)
        port = reg_port(srv)
        a, b = self.driver(port), self.driver(port)
        self.assertEqual(a.call("status"), "UP")
        b.call("subscribe", service="web")
        a.call("register", service="web", ip="10.1.0.1", port=8080, metadata={"v": "1"})
        a.call("register", service="web", ip="10.1.0.2", port=8080, weight=2)
        got = a.call("all", service="web")
        self.assertEqual(sorted(h["ip"] for h in got), ["10.1.0.1", "10.1.0.2"])
        h1 = next(h for h in got if h["ip"] == "10.1.0.1")
        self.assertEqual(h1["instanceId"], "10.1.0.1#8080#DEFAULT#DEFAULT_GROUP@@web")
        self.assertEqual(h1["metadata"], {"v": "1"})
        self.assertEqual(h1["serviceName"], "DEFAULT_GROUP@@web")
        self.assertTrue(h1["healthy"] and h1["enabled"] and h1["ephemeral"])
        self.assertEqual(len(a.call("select", service="web")), 2)
        # The subscriber sees both, then the change when one leaves.
        b.event(lambda e: e["service"] == "web" and len(e["hosts"]) == 2, scaled(10),
                "two hosts")
        t0 = time.monotonic()
        a.call("deregister", service="web", ip="10.1.0.2", port=8080)
        e = b.event(lambda e: e["service"] == "web" and len(e["hosts"]) == 1, scaled(10),
                    "one host after deregister")
        self.assertEqual(e["hosts"][0]["ip"], "10.1.0.1")
        log("subscriber saw the deregistration after %.0f ms" % ((time.monotonic() - t0) * 1000))
        self.assertEqual(a.call("services"), {"count": 1, "data": ["web"]})
        # Exact bytes of the list answer for a filtered cluster that has no hosts.
        doc = hosts(port, "DEFAULT_GROUP@@web", clusters="NONE")
        self.assertEqual(list(doc), ["name", "groupName", "clusters", "cacheMillis", "hosts",
                                     "lastRefTime", "checksum", "allIPs",
                                     "reachProtectionThreshold", "valid"])
        self.assertEqual((doc["name"], doc["clusters"], doc["cacheMillis"], doc["hosts"]),
                         ("DEFAULT_GROUP@@web", "NONE", 300, []))
        full = hosts(port, "web")["hosts"][0]
        self.assertEqual(list(full), ["instanceId", "ip", "port", "weight", "healthy", "enabled",
                                      "ephemeral", "clusterName", "serviceName", "metadata",
                                      "instanceHeartBeatInterval", "instanceHeartBeatTimeOut",
                                      "ipDeleteTimeout", "instanceIdGenerator"])

    def test_udp_push(self):
        # Clients poll a subscribed service every cacheMillis (10 s here); a change reaches
        # them sooner only through the Nacos 1.x UDP push to their udpPort.
        srv = self.start(settings=dict(FAST, **{"registry.cache_millis": "10s"}))
        port = reg_port(srv)
        a, b = self.driver(port), self.driver(port)
        a.call("register", service="pushed", ip="10.7.0.1", port=80)
        b.call("subscribe", service="pushed")
        b.event(lambda e: e["service"] == "pushed" and len(e["hosts"]) == 1, scaled(10),
                "the first list")
        time.sleep(1.5)  # past the client's first scheduled poll (1 s); the next is 10 s away
        t0 = time.monotonic()
        a.call("register", service="pushed", ip="10.7.0.2", port=80)
        b.event(lambda e: e["service"] == "pushed" and len(e["hosts"]) == 2, scaled(5),
                "the pushed change")
        dt = time.monotonic() - t0
        log("pushed change seen after %.0f ms" % (dt * 1000))
        self.assertLess(dt, scaled(2.0))

    def test_heartbeats_keep_alive_then_expiry(self):
        srv = self.start(settings=FAST)
        port = reg_port(srv)
        beater = self.driver(port)
        meta = {"preserved.heart.beat.interval": "300",
                "preserved.heart.beat.timeout": "1500",
                "preserved.ip.delete.timeout": "3000"}
        beater.call("register", service="hb", ip="10.2.0.1", port=9000, metadata=meta)
        doc = hosts(port, "hb")
        self.assertEqual(doc["hosts"][0]["instanceHeartBeatInterval"], 300)
        self.assertEqual(doc["hosts"][0]["instanceHeartBeatTimeOut"], 1500)
        self.assertEqual(doc["hosts"][0]["ipDeleteTimeout"], 3000)
        # The client's first beat round comes up to 10 s after it starts; each beat carries
        # the instance, so a beat also re-registers it if it had expired meanwhile. From the
        # first beat on the server's interval (300 ms) applies.
        _, body = self.native(srv, "GET", "/api/v1/registry/services/public/DEFAULT_GROUP/hb")
        registered = json.loads(body)["instances"][0]["last_beat_ms"]

        def beating():
            _, body = self.native(srv, "GET", "/api/v1/registry/services/public/DEFAULT_GROUP/hb")
            inst = json.loads(body)["instances"]
            return inst and inst[0]["healthy"] and inst[0]["last_beat_ms"] > registered and inst
        first = poll_until(beating, scaled(15), what="a heartbeat")
        last = first[0]["last_beat_ms"]
        # Over twice the timeout, it stays healthy and its beats keep coming.
        until = time.monotonic() + 3.2
        while time.monotonic() < until:
            doc = hosts(port, "hb")
            self.assertEqual(len(doc["hosts"]), 1)
            self.assertTrue(doc["hosts"][0]["healthy"], doc)
            time.sleep(0.1)
        _, body = self.native(srv, "GET", "/api/v1/registry/services/public/DEFAULT_GROUP/hb")
        self.assertGreater(json.loads(body)["instances"][0]["last_beat_ms"], last + 2000)
        # Beats stop: unhealthy after 1.5 s, removed after 3 s (never early). A second client
        # watches, started beforehand so that its start-up does not eat into the window.
        observer = self.driver(port)
        self.assertEqual([h["healthy"] for h in observer.call("all", service="hb")], [True])
        beater.kill()
        t0 = time.monotonic()
        poll_until(lambda: not hosts(port, "hb")["hosts"][0]["healthy"], scaled(5),
                   interval=0.02, what="unhealthy")
        t_unhealthy = time.monotonic() - t0
        seen = observer.call("all", service="hb")
        self.assertEqual([h["healthy"] for h in seen], [False])
        poll_until(lambda: hosts(port, "hb")["hosts"] == [], scaled(6), interval=0.02,
                   what="removed")
        t_removed = time.monotonic() - t0
        log("unhealthy %.2fs, removed %.2fs after the last beats" % (t_unhealthy, t_removed))
        self.assertGreater(t_unhealthy, 1.5 - 0.35)  # the last beat can be up to 300 ms old
        self.assertLess(t_unhealthy, 1.5 + scaled(1.0))
        self.assertGreater(t_removed, 3.0 - 0.35)
        self.assertLess(t_removed, 3.0 + scaled(1.0))

    def test_beat_wire(self):
        srv = self.start(settings=FAST)
        port = reg_port(srv)
        p = dict(serviceName="DEFAULT_GROUP@@bw", ip="10.3.0.1", port="80")
        st, h, body = nacos(port, "PUT", "/ns/instance/beat", p)
        self.assertEqual((st, body), (200, b'{"clientBeatInterval":5000,"code":20404}'))
        self.assertTrue(h["content-type"].startswith("application/json"))
        # Re-register on 20404, as the Java client does; the next beat is 10200.
        self.assertEqual(nacos(port, "POST", "/ns/instance", p)[2], b"ok")
        self.assertEqual(nacos(port, "PUT", "/ns/instance/beat", p)[2],
                         b'{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":true}')
        # A beat that carries the instance registers it.
        beat = json.dumps({"serviceName": "DEFAULT_GROUP@@bw2", "ip": "10.3.0.2", "port": 81,
                           "cluster": "DEFAULT", "weight": 1,
                           "metadata": {"preserved.heart.beat.interval": "700"}})
        st, _, body = nacos(port, "PUT", "/ns/instance/beat",
                            dict(serviceName="DEFAULT_GROUP@@bw2", beat=beat))
        self.assertEqual(body, b'{"clientBeatInterval":700,"code":10200,"lightBeatEnabled":true}')
        self.assertEqual(hosts(port, "DEFAULT_GROUP@@bw2")["hosts"][0]["ip"], "10.3.0.2")

    # ---- configuration through the real client -------------------------------------------

    def test_config_publish_get_listen(self):
        srv = self.start(settings=FAST)
        port = reg_port(srv)
        a, b = self.driver(port), self.driver(port)
        self.assertIsNone(a.call("get", dataId="app.yaml", group="DEFAULT_GROUP"))
        self.assertTrue(a.call("publish", dataId="app.yaml", group="DEFAULT_GROUP",
                               content="port: 1\n", type="yaml"))
        self.assertEqual(a.call("get", dataId="app.yaml", group="DEFAULT_GROUP"), "port: 1\n")
        b.call("listen", dataId="app.yaml", group="DEFAULT_GROUP")
        b.event(lambda e: e["content"] == "port: 1\n", scaled(10), "initial content")
        time.sleep(0.3)  # the listener's long poll is parked on the server by now
        lat = []
        for i in range(2, 6):
            t0 = time.time() * 1000
            a.call("publish", dataId="app.yaml", group="DEFAULT_GROUP", content="port: %d\n" % i)
            e = b.event(lambda e, i=i: e["content"] == "port: %d\n" % i, scaled(10),
                        "content %d" % i)
            lat.append(e["at"] - t0)
            time.sleep(0.1)
        log("publish -> listener callback: %s ms" % ", ".join("%.0f" % x for x in lat))
        self.assertLess(max(lat), scaled(1500))
        # Exact answer bytes: Content-MD5 of what is stored.
        st, h, body = nacos(port, "GET", "/cs/configs",
                            dict(dataId="app.yaml", group="DEFAULT_GROUP", tenant="public"))
        self.assertEqual((st, body), (200, b"port: 5\n"))
        import hashlib
        self.assertEqual(h["content-md5"], hashlib.md5(b"port: 5\n").hexdigest())
        self.assertTrue(a.call("remove", dataId="app.yaml", group="DEFAULT_GROUP"))
        self.assertIsNone(a.call("get", dataId="app.yaml", group="DEFAULT_GROUP"))
        st, _, body = nacos(port, "GET", "/cs/configs", dict(dataId="app.yaml",
                                                             group="DEFAULT_GROUP"))
        self.assertEqual((st, body), (404, b"config data not exist"))

    def test_listener_wire(self):
        srv = self.start(settings=FAST)
        port = reg_port(srv)
        self.assertEqual(nacos(port, "POST", "/cs/configs", body=dict(
            dataId="d1", group="G", content="x", tenant="t1"))[2], b"true")
        self.assertEqual(nacos(port, "POST", "/cs/configs", body=dict(
            dataId="d 2", group="G", content="y"))[2], b"true")
        # Stale md5, with a tenant and without (public): answered at once, the changed keys
        # URL-encoded as Java's URLEncoder does, then a newline.
        lc = "d1\x02G\x02stale\x02t1\x01" "d 2\x02G\x02\x01"
        st, h, body = nacos(port, "POST", "/cs/configs/listener",
                            body={"Listening-Configs": lc},
                            headers={"Long-Pulling-Timeout": "30000"})
        self.assertEqual((st, body), (200, b"d1%02G%02t1%01d+2%02G%01\n"))
        self.assertEqual(h["cache-control"], "no-cache,no-store")
        # "public" as a tenant is the same namespace as none.
        st, h, body = nacos(port, "POST", "/cs/configs/listener",
                            body={"Listening-Configs": "d 2\x02G\x02\x02public\x01"})
        self.assertEqual((st, body), (200, b"d+2%02G%02public%01\n"))

    def test_listener_holds_until_timeout_or_change(self):
        srv = self.start(settings=FAST)
        port = reg_port(srv)
        import hashlib
        nacos(port, "POST", "/cs/configs", body=dict(dataId="h", group="G", content="v1"))
        md5 = hashlib.md5(b"v1").hexdigest()
        lc = "h\x02G\x02%s\x01" % md5
        # Up to date: held for Long-Pulling-Timeout - 500 ms (10.5 s -> 10 s), then empty.
        t0 = time.monotonic()
        st, _, body = nacos(port, "POST", "/cs/configs/listener", body={"Listening-Configs": lc},
                            headers={"Long-Pulling-Timeout": "10500"})
        held = time.monotonic() - t0
        log("listener held %.2fs" % held)
        self.assertEqual((st, body), (200, b""))
        self.assertGreater(held, 9.9)
        self.assertLess(held, 10.0 + scaled(1.0))
        # Without Long-Pulling-Timeout (or with No-Hangup) it is answered at once.
        t0 = time.monotonic()
        self.assertEqual(nacos(port, "POST", "/cs/configs/listener",
                               body={"Listening-Configs": lc})[:3:2], (200, b""))
        self.assertEqual(nacos(port, "POST", "/cs/configs/listener",
                               body={"Listening-Configs": lc},
                               headers={"Long-Pulling-Timeout": "30000",
                                        "Long-Pulling-No-Hangup": "true"})[:3:2], (200, b""))
        self.assertLess(time.monotonic() - t0, scaled(1.0))
        # Held, then woken by a publish within milliseconds.
        out = {}

        def poll():
            t = time.monotonic()
            out["r"] = nacos(port, "POST", "/cs/configs/listener",
                             body={"Listening-Configs": lc},
                             headers={"Long-Pulling-Timeout": "30000"})
            out["t"] = time.monotonic() - t
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        t1 = time.monotonic()
        nacos(port, "POST", "/cs/configs", body=dict(dataId="h", group="G", content="v2"))
        th.join(scaled(5))
        woke = time.monotonic() - t1
        self.assertEqual(out["r"][2], b"h%02G%01\n")
        self.assertGreater(out["t"], 0.45)
        log("held listener answered %.1f ms after the publish was sent" % (woke * 1000))
        self.assertLess(woke, scaled(0.5))

    # ---- malformed input ---------------------------------------------------------------------

    def test_malformed_parameters(self):
        srv = self.start(settings=FAST)
        port = reg_port(srv)
        cases = [
            ("POST", "/ns/instance", dict(ip="1.2.3.4", port="80"),
             b"caused: Param 'serviceName' is required.;"),
            ("POST", "/ns/instance", dict(serviceName="s", port="80"),
             b"caused: Param 'ip' is required.;"),
            ("POST", "/ns/instance", dict(serviceName="s", ip="1.2.3.4", port="abc"),
             b"caused: Param 'port' is illegal: 'abc' is not a number in 0..65535.;"),
            ("POST", "/ns/instance", dict(serviceName="s", ip="1.2.3.4", port="65536"),
             b"caused: Param 'port' is illegal: '65536' is not a number in 0..65535.;"),
            ("POST", "/ns/instance", dict(serviceName="s", ip="1.2.3.4", port="0"),
             b"caused: Param 'port' is illegal: 1..65535;"),
            ("POST", "/ns/instance", dict(serviceName="s", ip="1.2.3.4", port="1",
                                          healthy="maybe"),
             b"caused: Param 'healthy' is illegal: 'maybe' is not true or false.;"),
            ("POST", "/ns/instance", dict(serviceName="s", ip="1.2.3.4", port="1", weight="x"),
             b"caused: Param 'weight' is illegal: 'x' is not a number.;"),
            ("POST", "/ns/instance", dict(serviceName="s", ip="1.2.3.4", port="1",
                                          metadata="{bad"),
             b"caused: Param 'metadata' is illegal: a JSON object or k=v,k2=v2;"),
            ("POST", "/ns/instance", dict(serviceName="a@@b@@c", ip="1.2.3.4", port="1"),
             b"caused: Param 'serviceName' is illegal, it should be format as "
             b"'groupName@@serviceName';"),
            ("GET", "/ns/instance/list", dict(serviceName="s", healthyOnly="2"),
             b"caused: Param 'healthyOnly' is illegal: '2' is not true or false.;"),
            ("PUT", "/ns/instance/beat", dict(serviceName="s", beat="[1]"),
             b"caused: Param 'beat' is illegal: not a JSON object;"),
            ("GET", "/ns/service/list", dict(pageSize="10"),
             b"caused: Param 'pageNo' is required.;"),
            ("GET", "/cs/configs", dict(group="G"), b"caused: Param 'dataId' is required.;"),
            ("POST", "/cs/configs", dict(dataId="d", group="G"),
             b"caused: Param 'content' is required.;"),
            ("GET", "/ns/instance/list", {"serviceName": "s", "x": "%zz"}, None),
        ]
        for method, path, params, want in cases:
            if want is None:
                # A raw malformed escape in the query string.
                with Conn(port) as c:
                    c.send(request_bytes("GET", "/nacos/v1" + path + "?serviceName=s&x=%zz"))
                    r = c.read_response()
                self.assertEqual((r.status, r.body),
                                 (400, b"caused: malformed percent-encoding in the parameters;"))
                continue
            st, _, body = nacos(port, method, path, params)
            self.assertEqual((st, body), (400, want), (method, path, params))
        # Listener: garbage records, a bad timeout header.
        for lc, want in [("nofields\x01", b"caused: invalid probeModify;"),
                         ("a\x02b\x02c\x02d\x02e\x01", b"caused: invalid probeModify;")]:
            st, _, body = nacos(port, "POST", "/cs/configs/listener",
                                body={"Listening-Configs": lc},
                                headers={"Long-Pulling-Timeout": "30000"})
            self.assertEqual((st, body), (400, want))
        st, _, body = nacos(port, "POST", "/cs/configs/listener",
                            body={"Listening-Configs": "a\x02b\x02\x01"},
                            headers={"Long-Pulling-Timeout": "soon"})
        self.assertEqual((st, body), (400, b"caused: header 'Long-Pulling-Timeout' is not a "
                                           b"number of milliseconds;"))
        st, _, _ = nacos(port, "PATCH", "/ns/instance", dict(serviceName="s"))
        self.assertEqual(st, 405)
        self.assertTrue(srv.running())

    def test_listen_key_limit_at_edge(self):
        srv = self.start(settings=dict(FAST, **{"registry.max_listen_keys": "3"}))
        port = reg_port(srv)
        three = "".join("k%d\x02G\x02\x01" % i for i in range(3))
        st, _, body = nacos(port, "POST", "/cs/configs/listener",
                            body={"Listening-Configs": three})
        self.assertEqual((st, body), (200, b""))
        st, _, body = nacos(port, "POST", "/cs/configs/listener",
                            body={"Listening-Configs": three + "k9\x02G\x02\x01"})
        self.assertEqual((st, body), (400, b"caused: invalid protocol, too much listener "
                                           b"(registry.max_listen_keys is 3);"))

    # ---- auth ----------------------------------------------------------------------------------

    def test_auth(self):
        srv = self.start(settings=dict(FAST, **{"registry.auth": "true",
                                                "registry.password": "pw"}))
        port = reg_port(srv)
        p = dict(serviceName="s", ip="10.0.0.1", port="80")
        self.assertEqual(nacos(port, "POST", "/ns/instance", p)[:3:2], (403, b"user not found!"))
        st, _, body = nacos(port, "POST", "/auth/login",
                            body=dict(username="nacos", password="wrong"))
        self.assertEqual((st, body), (403, b"unknown user!"))
        st, _, body = nacos(port, "POST", "/auth/login", body=dict(username="nacos", password="pw"))
        self.assertEqual(st, 200)
        tok = json.loads(body)
        self.assertEqual((len(tok["accessToken"]), tok["tokenTtl"], tok["globalAdmin"]),
                         (32, 18000, True))
        self.assertEqual(nacos(port, "POST", "/ns/instance",
                               dict(p, accessToken=tok["accessToken"]))[2], b"ok")
        # The npm client sends username and password with every request.
        d = self.driver(port, username="nacos", password="pw")
        self.assertTrue(d.call("publish", dataId="a", group="G", content="1"))
        self.assertEqual(d.call("get", dataId="a", group="G"), "1")

    # ---- restart -------------------------------------------------------------------------------

    def test_restart_keeps_config_and_persistent_instances(self):
        data = os.path.join(self.tmp, "data")
        settings = dict(FAST, data_dir=data)
        srv = self.start(settings=settings)
        port = reg_port(srv)
        d = self.driver(port)
        # A live TCP listener for the health checker to find.
        live = socket.socket()
        live.bind(("127.0.0.1", 0))
        live.listen(64)
        self.addCleanup(live.close)
        live_port = live.getsockname()[1]
        d.call("register", service="db", ip="127.0.0.1", port=live_port, ephemeral=False)
        d.call("register", service="db", ip="10.9.0.2", port=5432)
        d.call("publish", dataId="keep", group="G", content="v1")
        d.call("publish", dataId="keep", group="G", content="v2")
        d.kill()
        self.assertEqual(srv.stop(), 0)
        srv2 = self.start(settings=settings)
        port = reg_port(srv2)
        self.assertEqual(nacos(port, "GET", "/cs/configs", dict(dataId="keep", group="G"))[2],
                         b"v2")
        doc = hosts(port, "db")
        self.assertEqual([(h["ip"], h["ephemeral"]) for h in doc["hosts"]],
                         [("127.0.0.1", False)])
        # The history survived too, with who wrote it.
        rc, out, err = run_cli(["config", "history", "keep", "--group", "G", "--json",
                                "--server", "http://127.0.0.1:%d" % srv2.port])
        self.assertEqual(rc, 0, err)
        hist = json.loads(out)["history"]
        self.assertEqual([h["op"] for h in hist], ["publish", "publish"])
        self.assertEqual(hist[0]["who"], "127.0.0.1")
        # The persistent instance points at a live port (the API): the checker keeps it
        # healthy; one pointing at a closed port turns unhealthy.
        nacos(port, "POST", "/ns/instance", dict(serviceName="db", ip="127.0.0.1", port="1",
                                                 ephemeral="false"))
        poll_until(lambda: [h["healthy"] for h in hosts(port, "db")["hosts"]] == [True, False],
                   scaled(5), what="the health checker")

    # ---- native API and CLI --------------------------------------------------------------------

    def native(self, srv, method, path, body=None):
        with Conn(srv.port) as c:
            c.send(request_bytes(method, path, body=body,
                                 headers={"Content-Type": "application/json"} if body else None))
            r = c.read_response(method=method)
            return r.status, r.body

    def test_cli(self):
        srv = self.start(settings=FAST)
        server = ["--server", "http://127.0.0.1:%d" % srv.port]
        rc, out, err = run_cli(["registry", "put", "pay", "10.5.0.1:8080", "--weight", "3",
                                "--metadata", "zone=a"] + server)
        self.assertEqual((rc, err), (0, ""))
        rc, out, err = run_cli(["registry", "ls"] + server)
        self.assertEqual(rc, 0, err)
        self.assertIn("pay", out)
        rc, out, err = run_cli(["registry", "get", "pay", "--json"] + server)
        inst = json.loads(out)["instances"]
        self.assertEqual((inst[0]["ip"], inst[0]["port"], inst[0]["weight"], inst[0]["ephemeral"],
                          inst[0]["metadata"]), ("10.5.0.1", 8080, 3.0, False, {"zone": "a"}))
        rc, out, err = run_cli(["registry", "get", "pay"] + server)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"10\.5\.0\.1\s+8080\s+DEFAULT\s+3\s+(yes|no)")
        rc, out, err = run_cli(["registry", "rm", "pay", "10.5.0.1:8080"] + server)
        self.assertEqual(rc, 0, err)
        rc, out, err = run_cli(["registry", "get", "pay", "--json"] + server)
        self.assertEqual(json.loads(out)["instances"], [])
        # Configuration: put, get, history, rollback.
        for v in ("a: 1\n", "a: 2\n"):
            rc, out, err = run_cli(["config", "put", "app.yaml", "--type", "yaml", "--content", v]
                                   + server)
            self.assertEqual(rc, 0, err)
        rc, out, err = run_cli(["config", "get", "app.yaml"] + server)
        self.assertEqual((rc, out), (0, "a: 2\n"))
        rc, out, err = run_cli(["config", "history", "app.yaml", "--json"] + server)
        hist = json.loads(out)["history"]
        self.assertEqual(len(hist), 2)
        rc, out, err = run_cli(["config", "history", "app.yaml"] + server)
        self.assertRegex(out, r"VERSION\s+OP\s+")
        rc, out, err = run_cli(["config", "rollback", "app.yaml", str(hist[1]["version"])]
                               + server)
        self.assertEqual(rc, 0, err)
        rc, out, err = run_cli(["config", "get", "app.yaml"] + server)
        self.assertEqual(out, "a: 1\n")
        rc, out, err = run_cli(["config", "rollback", "app.yaml", "999999"] + server)
        self.assertEqual(rc, 1)
        self.assertIn("version", err)
        rc, out, err = run_cli(["config", "get", "missing.yaml"] + server)
        self.assertEqual(rc, 1)
        # The native API's own errors name the field.
        st, body = self.native(srv, "PUT", "/api/v1/registry/services/public/G/s/instances",
                               b'{"ip":"1.2.3.4","port":0}')
        self.assertEqual((st, json.loads(body)["param"]), (400, "port"))


if __name__ == "__main__":
    main()
