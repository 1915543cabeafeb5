"""Integration tests of `cairn up`'s lifecycle: signals (drain, deadline, reload), workers,
configuration sources and their precedence.

Run: CAIRN_BIN=build/cairn python3 tests/integration/test_lifecycle.py
"""

import os
import resource
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import (CairnTestCase, Conn, get, main, metric, metrics, poll_until,  # noqa: E402
                   request_bytes, scaled, send_raw)

HELLO = request_bytes("GET", "/debug/hello")


def post(n):
    return request_bytes("POST", "/debug/echo", body=b"b" * n)


def refused(port):
    """True when a connection to port is refused (nothing listening)."""
    s = socket.socket()
    s.settimeout(scaled(2))
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # accepted into the backlog as the listener closed: ask again
    finally:
        s.close()


def wait_draining(srv):
    """Waits until the (single) worker has started draining. The "stopping" log line comes
    from the main thread before the workers are told; a worker closes its listener when it
    starts draining, so a refused connection is the observable sign."""
    srv.wait_log(r" info up stopping ")
    poll_until(lambda: refused(srv.port), scaled(5), what="listener closed (draining)")


class Drain(CairnTestCase):

    def in_flight(self, srv, ms):
        """A connection with /debug/slow?ms=ms being handled: it is pipelined behind a
        /debug/hello, so once hello's reply is read the server has dispatched the slow one."""
        c = Conn(srv.port)
        self.addCleanup(c.close)
        c.send(HELLO + request_bytes("GET", "/debug/slow?ms=%d" % ms))
        r = c.read_response()
        self.assertEqual((r.body, r.header("Connection")), (b"hello\n", None))
        return c

    def test_sigterm_lets_in_flight_request_finish(self):
        srv = self.start()
        t_req = time.monotonic()
        c = self.in_flight(srv, 1500)
        srv.send_signal(signal.SIGTERM)
        srv.wait_log(r" info up stopping signal=SIGTERM ")
        # No new connections once draining.
        wait_draining(srv)
        r = c.read_response(timeout=scaled(10))
        self.assertEqual((r.status, r.body, r.header("Connection")), (200, b"slow\n", "close"))
        self.assertGreaterEqual(time.monotonic() - t_req, 1.4)
        self.assertClosed(c)
        self.assertEqual(srv.wait(scaled(10)), 0, srv.logs())
        srv.wait_log(r" info up stopped exit=0", timeout=1)

    def test_body_upload_in_progress_finishes(self):
        srv = self.start()
        c = Conn(srv.port)
        self.addCleanup(c.close)
        c.send(HELLO + request_bytes("POST", "/debug/echo", headers={"Content-Length": "10"}) +
               b"01234")
        self.assertEqual(c.read_response().body, b"hello\n")
        srv.send_signal(signal.SIGTERM)
        wait_draining(srv)
        c.send(b"56789")
        r = c.read_response()
        self.assertEqual((r.status, r.body, r.header("Connection")),
                         (200, b"0123456789", "close"))
        self.assertClosed(c)
        self.assertEqual(srv.wait(scaled(10)), 0)

    def test_idle_connection_closed_on_drain(self):
        srv = self.start()  # drain_timeout 10s: the idle connection must not wait for it
        c = Conn(srv.port)
        self.addCleanup(c.close)
        c.send(HELLO)
        self.assertEqual(c.read_response().body, b"hello\n")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(c.wait_closed(scaled(5)), ("eof", b""))
        self.assertEqual(srv.wait(scaled(5)), 0, srv.logs())
        self.assertLess(time.monotonic() - t0, scaled(2))

    def test_readyz_503_while_draining(self):
        srv = self.start()
        self.assertEqual(get(srv.port, "/readyz").status, 200)
        # A request whose head is half sent when the drain starts, completed afterwards.
        c = Conn(srv.port)
        self.addCleanup(c.close)
        c.send(HELLO + b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        self.assertEqual(c.read_response().body, b"hello\n")
        srv.send_signal(signal.SIGTERM)
        wait_draining(srv)
        c.send(b"\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (503, b"draining\n"))
        self.assertClosed(c)
        self.assertEqual(srv.wait(scaled(10)), 0)

    def test_drain_deadline(self):
        srv = self.start(settings={"shutdown.drain_timeout": "300ms"})
        c = self.in_flight(srv, 5000)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait(scaled(4))
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.logs())
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, min(4.0, 0.3 + scaled(1)), "exit well before the 5 s request")
        srv.wait_log(r" warn up \"drain deadline passed\" open_connections=1", timeout=1)
        srv.wait_log(r" info up stopped exit=0", timeout=1)
        # The unfinished request gets no reply.
        how, extra = c.wait_closed(scaled(2))
        self.assertIn(how, ("eof", "reset"))
        self.assertEqual(extra, b"")

    def test_drain_timeout_zero_closes_at_once(self):
        srv = self.start(settings={"shutdown.drain_timeout": "0"})
        c = self.in_flight(srv, 5000)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(scaled(3)), 0, srv.logs())
        self.assertLess(time.monotonic() - t0, scaled(1))
        self.assertIn(c.wait_closed(scaled(2))[0], ("eof", "reset"))

    def test_second_signal_closes_everything(self):
        srv = self.start()  # drain_timeout 10s
        self.in_flight(srv, 5000)
        srv.send_signal(signal.SIGTERM)
        srv.wait_log(r" info up stopping ")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGINT)
        self.assertEqual(srv.wait(scaled(3)), 0, srv.logs())
        self.assertLess(time.monotonic() - t0, scaled(1))
        srv.wait_log(r"second stop signal", timeout=1)

    def test_sigint(self):
        srv = self.start()
        c = Conn(srv.port)
        self.addCleanup(c.close)
        c.send(HELLO)
        c.read_response()
        self.assertEqual(srv.stop(signal.SIGINT), 0, srv.logs())
        self.assertEqual(c.wait_closed(scaled(2)), ("eof", b""))
        srv.wait_log(r" info up stopping signal=SIGINT ", timeout=1)
        srv.wait_log(r" info up stopped exit=0", timeout=1)

    def test_sigterm_idle_server_exits_promptly(self):
        srv = self.start(workers=3)
        t0 = time.monotonic()
        self.assertEqual(srv.stop(signal.SIGTERM), 0, srv.logs())
        self.assertLess(time.monotonic() - t0, scaled(2))


class Reload(CairnTestCase):

    def test_sighup_applies_new_limits(self):
        srv = self.start(config="http:\n  max_body_bytes: 1k\n")
        self.assertEqual(send_raw(srv.port, post(600))[0], 200)
        m = metrics(srv.port)
        self.assertEqual(metric(m, "cairn_config_generation", worker="0"), 1)
        self.assertEqual(metric(m, "cairn_config_reloads_total", result="ok"), 0)
        srv.write_config("http:\n  max_body_bytes: 512\n")
        n = srv.log_count()
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r" info up \"configuration reloaded\" generation=2 ", start=n)
        # Workers pick the new generation up asynchronously.
        poll_until(lambda: metric(srv.port, "cairn_config_generation", worker="0") == 2,
                   scaled(5), what="generation 2")
        status, _, body = send_raw(srv.port, post(513))
        self.assertEqual((status, body), (413, b"request body too large (http.max_body_bytes)\n"))
        self.assertEqual(send_raw(srv.port, post(512))[0], 200)
        m = metrics(srv.port)
        self.assertEqual(metric(m, "cairn_config_reloads_total", result="ok"), 1)
        self.assertEqual(metric(m, "cairn_config_reloads_total", result="error"), 0)
        self.assertTrue(srv.running())

    def test_sighup_invalid_file_rejected_old_limits_stay(self):
        srv = self.start(config="http:\n  max_body_bytes: 1k\n")
        srv.write_config("http:\n  max_body_bytes: 12q\n")
        n = srv.log_count()
        srv.send_signal(signal.SIGHUP)
        line = srv.wait_log(r" error up \"reload rejected, the running configuration stays\" "
                            r"error=\"(.*)\"$", start=n)
        self.assertEqual(line.group(1), "%s:2:19: http.max_body_bytes: '12q' is not a size "
                         "(use a number with optional k, m, g)" % srv.config_path)
        m = metrics(srv.port)
        self.assertEqual(metric(m, "cairn_config_reloads_total", result="error"), 1)
        self.assertEqual(metric(m, "cairn_config_reloads_total", result="ok"), 0)
        self.assertEqual(metric(m, "cairn_config_generation", worker="0"), 1)
        self.assertEqual(send_raw(srv.port, post(1024))[0], 200)
        self.assertEqual(send_raw(srv.port, post(1025))[0], 413)
        # A later valid reload still works.
        srv.write_config("http:\n  max_body_bytes: 100\n")
        srv.send_signal(signal.SIGHUP)
        poll_until(lambda: metric(srv.port, "cairn_config_generation", worker="0") == 2,
                   scaled(5), what="generation 2")
        self.assertEqual(send_raw(srv.port, post(101))[0], 413)

    def test_sighup_missing_file_rejected(self):
        srv = self.start(config="http:\n  max_body_bytes: 1k\n")
        os.unlink(srv.config_path)
        n = srv.log_count()
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r"reload rejected.*cannot open: No such file or directory", start=n)
        self.assertEqual(send_raw(srv.port, post(1025))[0], 413)
        self.assertEqual(send_raw(srv.port, post(1024))[0], 200)

    def test_sighup_flags_still_win(self):
        # The reload rebuilds defaults < file < env < flags: a flag keeps overriding the file.
        srv = self.start(config="http:\n  max_body_bytes: 1k\n",
                         settings={"http.max_body_bytes": 100})
        self.assertEqual(send_raw(srv.port, post(101))[0], 413)
        srv.write_config("http:\n  max_body_bytes: 2k\n  max_headers: 5\n")
        srv.send_signal(signal.SIGHUP)
        poll_until(lambda: metric(srv.port, "cairn_config_generation", worker="0") == 2,
                   scaled(5), what="generation 2")
        self.assertEqual(send_raw(srv.port, post(101))[0], 413)
        self.assertEqual(send_raw(srv.port, post(100))[0], 200)
        # ...while the file's other settings did apply.
        many = request_bytes("GET", "/debug/hello", headers=[("X-%d" % i, "v") for i in range(5)])
        self.assertEqual(send_raw(srv.port, many)[0], 431)

    def test_sighup_all_workers_reloaded(self):
        srv = self.start(config="http:\n  max_body_bytes: 1k\n", workers=3)
        srv.write_config("http:\n  max_body_bytes: 10\n")
        srv.send_signal(signal.SIGHUP)

        def all_gen2():
            m = metrics(srv.port)
            return all(metric(m, "cairn_config_generation", worker=str(i)) == 2
                       for i in range(3))
        poll_until(all_gen2, scaled(5), what="generation 2 on every worker")
        # Whatever worker a new connection lands on, the new limit holds.
        for _ in range(20):
            self.assertEqual(send_raw(srv.port, post(11))[0], 413)


class Workers(CairnTestCase):

    def test_two_workers_serve_many_connections(self):
        srv = self.start(workers=2)
        self.assertEqual(srv.workers, 2)
        conns = [Conn(srv.port) for _ in range(64)]
        for c in conns:
            self.addCleanup(c.close)
        for i, c in enumerate(conns):
            c.send(request_bytes("GET", "/debug/params/%d/x" % i))
        for i, c in enumerate(conns):
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b'{"id":"%d","rest":"x"}\n' % i))
        m = metrics(srv.port)
        self.assertEqual(metric(m, "cairn_workers"), 2)
        for w in ("0", "1"):
            self.assertEqual(metric(m, "cairn_config_generation", worker=w), 1)
            self.assertIsNotNone(metric(m, "cairn_http_connections_open", worker=w))
            # SO_REUSEPORT spreads 65 connections over both listeners.
            self.assertGreater(metric(m, "cairn_http_connections_accepted_total", worker=w), 0,
                               "worker %s accepted nothing" % w)
        self.assertIsNone(metric(m, "cairn_http_connections_open", worker="2"))
        total_open = sum(metric(m, "cairn_http_connections_open", worker=w) for w in "01")
        self.assertEqual(total_open, 65)
        self.assertEqual(metric(m, "cairn_http_requests_total", route="/debug/params/{id}/{rest...}",
                                code="2xx"), 64)


class Settings(CairnTestCase):
    """Configuration sources: defaults < file < env < flags."""

    def body_limit(self, srv, limit):
        self.assertEqual(send_raw(srv.port, post(limit))[0], 200, "at the limit %d" % limit)
        self.assertEqual(send_raw(srv.port, post(limit + 1))[0], 413, "over the limit %d" % limit)

    def test_env_override(self):
        srv = self.start(env={"CAIRN_HTTP_MAX_BODY_BYTES": "10"})
        self.body_limit(srv, 10)

    def test_precedence_file_env_flag(self):
        cfg = "http:\n  max_body_bytes: 100\n"
        with self.subTest("file"):
            self.body_limit(self.start(config=cfg), 100)
        with self.subTest("env over file"):
            self.body_limit(self.start(config=cfg, env={"CAIRN_HTTP_MAX_BODY_BYTES": "50"}), 50)
        with self.subTest("flag over env"):
            self.body_limit(self.start(config=cfg, env={"CAIRN_HTTP_MAX_BODY_BYTES": "50"},
                                       settings={"http.max_body_bytes": 20}), 20)

    def test_config_file_from_cairn_config_env(self):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "c.yaml")
        with open(path, "w") as f:
            f.write("http.max_body_bytes: 30   # dotted key\n")
        self.body_limit(self.start(env={"CAIRN_CONFIG": path}), 30)

    def test_workers_from_file_flag_wins(self):
        srv = self.start(config="workers: 3\n", workers=2)
        self.assertEqual(srv.workers, 2)
        self.assertEqual(metric(srv.port, "cairn_workers"), 2)

    def test_test_routes_off_by_default(self):
        srv = self.start(test_routes=False)
        self.assertEqual(get(srv.port, "/debug/hello").status, 404)
        self.assertEqual(get(srv.port, "/healthz").status, 200)


class OpenFiles(CairnTestCase):
    """Every open segment holds a file descriptor: `cairn up` raises its soft limit of open
    files to the hard one instead of failing at the first 1024."""

    def test_soft_limit_raised_to_hard(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        if want <= 256:
            self.skipTest("hard limit of open files %d leaves nothing to raise" % hard)
        # The server inherits a low soft limit from this process, for as long as it starts.
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        try:
            srv = self.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.assertEqual(metric(srv.port, "process_max_fds"), want)
        with open("/proc/%d/limits" % srv.pid) as f:
            line = next(ln for ln in f if ln.startswith("Max open files"))
        self.assertEqual(line.split()[3:5], [str(want), str(hard)], line)


if __name__ == "__main__":
    main()
