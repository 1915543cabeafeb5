"""Helpers for the integration tests: run the real `cairn` binary, talk to it byte-exactly.

Python 3 standard library only. The binary comes from $CAIRN_BIN (set by ctest).

- Server: starts `cairn up` on 127.0.0.1:0, waits (with a deadline) for the `listening`
  log line to learn the port, captures stdout/stderr, stops by pid. Every server started
  is killed at exit even when a test fails.
- Conn: a raw TCP connection with a read buffer: send bytes, parse exactly one HTTP/1.1
  reply (Content-Length, chunked or until close), detect EOF/reset.
- metrics(): /metrics parsed into {(name, ((label, value), ...)): float}.

Timeouts scale with $CAIRN_TEST_TIMEOUT_SCALE, or by 4 when the binary is built with
AddressSanitizer (detected from the binary itself).
"""

import atexit
import gzip
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

__all__ = [
    "BIN", "SCALE", "scaled", "Server", "Conn", "Response", "ProtocolError", "request_bytes",
    "send_raw", "get", "metrics", "metric", "parse_metrics", "gz", "poll_until", "run_cli", "CairnTestCase", "main",
]

# ---- the binary ------------------------------------------------------------------------

BIN = os.environ.get("CAIRN_BIN", "")


def _sanitized(path):
    """True when the binary carries the AddressSanitizer runtime (slower: scale timeouts)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"AddressSanitizer" in data or b"__asan_init" in data


def _scale():
    v = os.environ.get("CAIRN_TEST_TIMEOUT_SCALE")
    if v:
        return float(v)
    return 4.0 if _sanitized(BIN) else 1.0


SCALE = _scale()


def scaled(seconds):
    """A timeout or margin for waiting, stretched for slow (sanitized) builds."""
    return seconds * SCALE


def poll_until(fn, timeout, interval=0.02, what="condition"):
    """Calls fn until it returns something truthy; returns that. Raises AssertionError after
    timeout seconds. For states the test cannot be told about (e.g. a counter moving)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.2fs waiting for %s (last: %r)"
                                 % (timeout, what, v))
        time.sleep(interval)


# ---- environment -----------------------------------------------------------------------

def clean_env(extra=None):
    """The test's environment without CAIRN_* settings (a stray one would change the server
    under test), plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CAIRN_") or k.startswith("CAIRN_TEST_") or k == "CAIRN_BIN"}
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update(extra)
    return env


SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|"
                          r"runtime error:|SUMMARY: (Address|Undefined|Leak)")


def run_cli(args, env=None, timeout=None, input_bytes=None):
    """Runs `cairn ARGS`; returns (exit code, stdout str, stderr str)."""
    p = subprocess.run([BIN] + list(args), env=clean_env(env), stdin=subprocess.DEVNULL
                       if input_bytes is None else None, input=input_bytes,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout or scaled(10))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---- the server ------------------------------------------------------------------------

_live = set()


@atexit.register
def _kill_all():
    for s in list(_live):
        s.kill()


class ServerError(Exception):
    pass


LISTENING_RE = re.compile(r" info up listening part=api addr=(\S+):(\d+) workers=(\d+)")
READY_RE = re.compile(r" info up ready ")
OTLP_LISTENING_RE = re.compile(r" info up listening part=otlp addr=(\S+):(\d+) workers=(\d+)")


class _Stream:
    """Collects a pipe's lines in a thread; lets callers wait for a line matching a regex."""

    def __init__(self, pipe):
        self.lines = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        for raw in iter(pipe.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        pipe.close()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def text(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait(self, regex, timeout, start=0):
        """Returns (match, index) of the first line at or after start matching regex, or
        (None, None) after timeout or when the stream ends."""
        rx = re.compile(regex) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m, i
                    i += 1
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return None, None
                self.cond.wait(left)


class Server:
    """`cairn up` on 127.0.0.1:0 with the test routes.

    settings: {key: value} given as --set flags; env: extra environment (CAIRN_* settings);
    config: YAML text written to a temporary file given with -c (rewrite it with
    write_config); args: more command-line arguments."""

    def __init__(self, settings=None, env=None, config=None, args=(), workers=1,
                 test_routes=True, listen="127.0.0.1:0", ready_timeout=None):
        self.config_path = None
        # Every server gets its own data directory and free OTLP and registry ports, so
        # servers of tests running side by side never share a write-ahead log or a port.
        self._tmpdir = tempfile.TemporaryDirectory(prefix="cairn-it-")
        self.data_dir = os.path.join(self._tmpdir.name, "data")
        argv = [BIN, "up", "--api-listen", listen, "--workers", str(workers)]
        if test_routes:
            argv += ["--set", "api.test_routes=true"]
        settings = dict(settings or {})
        text = (config or "") + " ".join("%s=%s" % kv for kv in (env or {}).items())
        if "data_dir" not in settings and "data_dir" not in text and "DATA_DIR" not in text:
            settings["data_dir"] = self.data_dir
        if "otlp.listen" not in settings and "otlp" not in text and "OTLP_LISTEN" not in text:
            settings["otlp.listen"] = "127.0.0.1:0"
        if ("registry.listen" not in settings and "registry" not in text
                and "REGISTRY_LISTEN" not in text):
            settings["registry.listen"] = "127.0.0.1:0"  # not the fixed Nacos port 8848
        if config is not None:
            self.config_path = os.path.join(self._tmpdir.name, "cairn.yaml")
            self.write_config(config)
            argv += ["-c", self.config_path]
        for k, v in settings.items():
            argv += ["--set", "%s=%s" % (k, v)]
        argv += list(args)
        self.argv = argv
        self.returncode = None
        self.signalled = False  # a test sent a stop signal or killed it on purpose
        self.proc = subprocess.Popen(argv, env=clean_env(env), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=self._tmpdir.name if self._tmpdir else None)
        self.pid = self.proc.pid
        _live.add(self)
        self.err = _Stream(self.proc.stderr)
        self.out = _Stream(self.proc.stdout)
        m, _ = self.err.wait(LISTENING_RE, ready_timeout or scaled(10))
        if not m:
            self.kill()
            raise ServerError("cairn up did not report listening (exit %r); argv=%r\n%s"
                              % (self.proc.poll(), argv, self.logs()))
        self.host = m.group(1)
        self.port = int(m.group(2))
        self.workers = int(m.group(3))
        m, _ = self.err.wait(READY_RE, ready_timeout or scaled(10))
        if not m:
            self.kill()
            raise ServerError("cairn up did not report ready\n" + self.logs())
        m, _ = self.err.wait(OTLP_LISTENING_RE, scaled(1))
        self.otlp_port = int(m.group(2)) if m else None

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def logs(self):
        return self.err.text()

    def log_lines(self):
        with self.err.cond:
            return list(self.err.lines)

    def wait_log(self, regex, timeout=None, start=0):
        """The first stderr line at or after index start matching regex; AssertionError when
        none comes within timeout."""
        m, _ = self.err.wait(regex, timeout if timeout is not None else scaled(10), start)
        if not m:
            raise AssertionError("no log line matching %r; log:\n%s" % (regex, self.logs()))
        return m

    def log_count(self):
        with self.err.cond:
            return len(self.err.lines)

    def send_signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self.signalled = True
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code, or None if still running after timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.err.thread.join(scaled(5))
        self.out.thread.join(scaled(5))
        _live.discard(self)
        return self.returncode

    def running(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Sends sig and waits for the exit code. If it does not exit within timeout, kills
        it and raises AssertionError."""
        self.signalled = True
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        rc = self.wait(timeout if timeout is not None else scaled(15))
        if rc is None:
            self.kill()
            raise AssertionError("cairn (pid %d) did not exit within %ss of %s\n%s"
                                 % (self.pid, timeout, sig, self.logs()))
        return rc

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(scaled(10))
        except subprocess.TimeoutExpired:
            pass
        _live.discard(self)

    def sanitizer_report(self):
        """Lines of a sanitizer report in stderr (empty when clean)."""
        return [l for l in self.log_lines() if SANITIZER_RE.search(l)]

    def cleanup(self):
        if self._tmpdir:
            self._tmpdir.cleanup()
            self._tmpdir = None

    # conveniences
    def conn(self, **kw):
        return Conn(self.port, **kw)

    def metrics(self):
        return metrics(self.port)

    def metric(self, name, **labels):
        return metric(self.port, name, **labels)


# ---- raw HTTP --------------------------------------------------------------------------

class ProtocolError(Exception):
    """The server's bytes are not a well-formed HTTP/1.1 reply."""


class Response:
    def __init__(self, version, status, reason, headers, body, raw, head_raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in order, as sent
        self.body = body        # decoded (de-chunked) body
        self.raw = raw          # every byte of this reply as received
        self.head_raw = head_raw

    def header(self, name):
        """The value of the only header called name (case-insensitive), None if absent;
        ProtocolError if repeated."""
        vals = self.header_all(name)
        if len(vals) > 1:
            raise ProtocolError("header %s repeated: %r" % (name, vals))
        return vals[0] if vals else None

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                         self.body[:200])


STATUS_RE = re.compile(rb"^(HTTP/\d\.\d) (\d{3}) ([^\r\n]*)$")
HEADER_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([^\r\n]*)$")


class Conn:
    """A raw connection to 127.0.0.1:port with a read buffer, so pipelined replies parse one
    after the other. Default timeout for each read operation: scaled(10) seconds.

    buf is a bytearray: a bytes buffer grown by += is copied whole on every read, and in a
    fresh process each larger copy is a fresh mmap faulted in page by page (glibc's mmap
    threshold trails the growing size): an 8 MiB body read over TLS (16 KiB records) took
    10 s of CPU that way, 75 s at a load of 15, where a bytearray takes 0.1 s."""

    def __init__(self, port, host="127.0.0.1", timeout=None, rcvbuf=None):
        self.timeout = timeout if timeout is not None else scaled(10)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(self.timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline):
        """Reads more bytes into buf. Returns False at EOF. TimeoutError at the deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply within the deadline; got %r" % bytes(self.buf[:500]))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no reply within the deadline; got %r" % bytes(self.buf[:500]))
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = self._take(i + 1)
                if not line.endswith(b"\r\n"):
                    raise ProtocolError("line not ended by CRLF: %r" % line)
                return line
            if not self._fill(deadline):
                raise ProtocolError("connection closed mid-line; got %r" % bytes(self.buf))

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ProtocolError("connection closed after %d of %d body bytes"
                                    % (len(self.buf), n))
        return self._take(n)

    def read_response(self, method="GET", timeout=None):
        """Parses exactly one reply (an interim 1xx reply counts as one). The reply to a HEAD
        request has no body whatever its headers say."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        raw = b""
        line = self._line(deadline)
        raw += line
        m = STATUS_RE.match(line[:-2])
        if not m:
            raise ProtocolError("bad status line %r" % line)
        version, status, reason = m.group(1).decode(), int(m.group(2)), m.group(3).decode(
            "latin-1")
        headers = []
        while True:
            line = self._line(deadline)
            raw += line
            if line == b"\r\n":
                break
            hm = HEADER_RE.match(line[:-2])
            if not hm:
                raise ProtocolError("bad header line %r" % line)
            headers.append((hm.group(1).decode("latin-1"), hm.group(2).decode("latin-1")))
        head_raw = raw
        resp = Response(version, status, reason, headers, b"", raw, head_raw)
        if method == "HEAD" or status < 200 or status in (204, 304):
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if te is not None:
            if cl is not None:
                raise ProtocolError("reply has both Transfer-Encoding and Content-Length")
            if te.lower() != "chunked":
                raise ProtocolError("unexpected Transfer-Encoding %r" % te)
            body = b""
            while True:
                line = self._line(deadline)
                raw += line
                if not re.match(rb"^[0-9a-f]+\r\n$", line):
                    raise ProtocolError("bad chunk size line %r" % line)
                n = int(line[:-2], 16)
                if n == 0:
                    break
                data = self._exact(n + 2, deadline)
                raw += data
                if data[-2:] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF: %r" % data[-10:])
                body += data[:-2]
            while True:  # trailers
                line = self._line(deadline)
                raw += line
                if line == b"\r\n":
                    break
        elif cl is not None:
            if not re.match(r"^[0-9]+$", cl):
                raise ProtocolError("bad Content-Length %r" % cl)
            body = self._exact(int(cl), deadline)
            raw += body
        else:
            while self._fill(deadline):
                pass
            body = self._take(len(self.buf))
            raw += body
        resp.body = body
        resp.raw = raw
        return resp

    def read_until_close(self, timeout=None):
        """Every byte up to EOF (ConnectionResetError propagates)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while self._fill(deadline):
            pass
        return self._take(len(self.buf))

    def wait_closed(self, timeout=None):
        """Waits for the peer to close. Returns (how, extra) where how is "eof" (clean FIN),
        "reset" (RST) or "open" (still open after timeout), and extra holds any bytes that
        arrived meanwhile (a closed connection should have sent none)."""
        deadline = time.monotonic() + (timeout if timeout is not None else scaled(5))
        try:
            while True:
                try:
                    if not self._fill(deadline):
                        return "eof", self._take(len(self.buf))
                except TimeoutError:
                    return "open", self._take(len(self.buf))
        except (ConnectionResetError, BrokenPipeError):
            return "reset", self._take(len(self.buf))

    def readable_now(self, wait=0.0):
        """True when something (bytes or EOF) can be read within wait seconds."""
        if self.buf or self.eof:
            return True
        r, _, _ = select.select([self.sock], [], [], wait)
        return bool(r)


def request_bytes(method="GET", path="/", headers=None, body=None, version="HTTP/1.1",
                  host="x"):
    """A request as bytes: Host first (unless host is None), then headers (list of pairs or
    dict), then Content-Length when body is given and no framing header is."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    names = {k.lower() for k, _ in headers}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        head += body if isinstance(body, bytes) else body.encode()
    return head


def send_raw(port, data, method="GET", timeout=None):
    """Sends data on a new connection and parses one reply: (status, headers, body).
    headers is a dict with lower-case names (the last value wins)."""
    with Conn(port, timeout=timeout) as c:
        c.send(data)
        r = c.read_response(method=method)
        return r.status, {k.lower(): v for k, v in r.headers}, r.body


def get(port, path, headers=None):
    """GET on a new connection; the Response."""
    with Conn(port) as c:
        c.send(request_bytes("GET", path, headers=headers))
        return c.read_response()


# ---- metrics ---------------------------------------------------------------------------

METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        if not m:
            raise ProtocolError("bad metrics line %r" % line)
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        key = (m.group(1), labels)
        if key in out:
            raise ProtocolError("metric repeated: %r" % line)
        out[key] = float(m.group(3))
    return out


def metrics(port):
    r = get(port, "/metrics")
    if r.status != 200:
        raise ProtocolError("/metrics answered %d" % r.status)
    return parse_metrics(r.body.decode())


def metric(port_or_parsed, name, **labels):
    """One sample's value (None when absent). port_or_parsed: a port or parse_metrics()."""
    m = metrics(port_or_parsed) if isinstance(port_or_parsed, int) else port_or_parsed
    return m.get((name, tuple(sorted(labels.items()))))


# ---- unittest glue ---------------------------------------------------------------------

def gz(data, mtime=0):
    return gzip.compress(data, mtime=mtime)


class CairnTestCase(unittest.TestCase):
    """Servers started with self.start() are stopped after the test; a server that does not
    exit 0 on SIGTERM, or that printed a sanitizer report, fails the test. Class-wide
    servers: cls.start_class()."""

    def start(self, **kw):
        s = Server(**kw)
        self.addCleanup(self._finish_server, s)
        return s

    def _finish_server(self, s):
        try:
            if not s.running() and not s.signalled:
                self.fail("cairn died during the test (exit %r)\n%s"
                          % (s.proc.returncode, s.logs()[-4000:]))
            if s.running() and s.signalled:
                # Already told to stop by the test: wait, do not signal again.
                rc = s.wait(scaled(15))
                if rc is None:
                    s.kill()
                    self.fail("cairn did not exit after the test's signal\n" + s.logs())
                self.assertEqual(rc, 0, "cairn exited %r\n%s" % (rc, s.logs()))
            elif s.running():
                rc = s.stop(signal.SIGTERM)
                self.assertEqual(rc, 0, "cairn exited %r on SIGTERM\n%s" % (rc, s.logs()))
            self.assertEqual(s.sanitizer_report(), [], s.logs())
        finally:
            s.kill()
            s.cleanup()

    @classmethod
    def start_class(cls, **kw):
        s = Server(**kw)
        cls._class_servers = getattr(cls, "_class_servers", []) + [s]
        return s

    @classmethod
    def tearDownClass(cls):
        problems = []
        for s in getattr(cls, "_class_servers", []):
            try:
                if not s.running() and not s.signalled:
                    problems.append("cairn died (exit %r)\n%s" % (s.proc.returncode,
                                                                   s.logs()[-4000:]))
                elif s.running():
                    rc = s.stop(signal.SIGTERM)
                    if rc != 0:
                        problems.append("exit %r\n%s" % (rc, s.logs()))
                if s.sanitizer_report():
                    problems.append(s.logs())
            except AssertionError as e:
                problems.append(str(e))
            finally:
                s.kill()
                s.cleanup()
        cls._class_servers = []
        if problems:
            raise AssertionError("class server did not stop cleanly:\n" + "\n".join(problems))

    # assertion helpers
    def assertClosed(self, conn, timeout=None, msg=None):
        how, extra = conn.wait_closed(timeout if timeout is not None else scaled(5))
        self.assertEqual((how, extra), ("eof", b""),
                         msg or "expected the server to close the connection (FIN, no bytes)")

    def assertOpen(self, conn, wait=0.1):
        self.assertFalse(conn.readable_now(wait), "connection unexpectedly readable/closed: "
                         "%r" % bytes(conn.buf[:200]))


def main():
    if not BIN or not os.access(BIN, os.X_OK):
        raise SystemExit("CAIRN_BIN must name the cairn binary (got %r)" % BIN)
    unittest.main(verbosity=2)
