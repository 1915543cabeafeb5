"""The web console (web/, embedded by src/console/) on the API port.

- ConsoleHttpTest: the files as served, byte-exact: content types, index.html for the
  console's page paths and a plain 404 elsewhere, ETag and 304, gzip, caching, security
  headers, HEAD, no token needed for the files when the API needs one.
- ConsoleBrowserTest: headless Chromium (Debian's /usr/bin/chromium, npm playwright-core)
  drives the console against `cairn up` fed by tests/integration/otel/console-app.mjs (three
  services on the real OpenTelemetry JS SDK, traces and logs): every page renders without a
  console error, the topology shows the services and edges, search -> trace -> its logs ->
  back to the trace works by clicking, the live tail shows a record as it is ingested.
- ConsoleDemoBrowserTest: the same against `cairn up --demo` (console/demo.mjs): every demo
  service on the Services page; the topology draws them with the edges of its table and the
  demo's calls; search -> trace -> its logs -> back to the trace by clicking; the Logs, Root
  cause and Registry pages without console errors; the Gateway page shows the demo's routes
  and endpoints; a fault injected by clicking on the Demo page makes the Root cause page name
  that service; clicking clears it.
  Screenshots go to artifacts/console/ beside the binary (build/<dir>/artifacts/console/).
"""

import gzip
import re
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from cairn import BIN, CairnTestCase, Conn, get, main, poll_until, request_bytes, scaled

HERE = os.path.dirname(os.path.abspath(__file__))
OTEL_DIR = os.path.join(HERE, "otel")
APP = os.path.join(OTEL_DIR, "console-app.mjs")
CONSOLE_DIR = os.path.join(HERE, "console")
DRIVER = os.path.join(CONSOLE_DIR, "console.mjs")
DEMO_DRIVER = os.path.join(CONSOLE_DIR, "demo.mjs")
DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "demo")
CHROMIUM = "/usr/bin/chromium"
REQUESTS = 30
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"


def assets_of(index_html):
    """The /assets/... paths index.html loads."""
    import re
    return re.findall(r'(?:src|href)="(/assets/[^"]+)"', index_html)


DOCS_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs")


def documented_api():
    """The API routes docs/*.md document (`/api/v1/...` with {param} placeholders), as
    regexes of whole paths."""
    pats = set()
    for name in os.listdir(DOCS_DIR):
        if name.endswith(".md"):
            with open(os.path.join(DOCS_DIR, name), encoding="utf-8") as f:
                pats.update(re.findall(r"/api/v1/[A-Za-z0-9_/{}.-]*[A-Za-z0-9_}]", f.read()))
    return [re.compile("^" + re.sub(r"\\{[^}]*\\}", "[^/]+", re.escape(p)) + "$")
            for p in pats if "..." not in p]


def assert_public_api(test, out):
    """The console asked only for documented routes (no private endpoint the CLI cannot
    use): the driver's "API [...]" line against documented_api()."""
    lines = [l for l in out.splitlines() if l.startswith("API ")]
    test.assertEqual(len(lines), 1, out)
    used = json.loads(lines[0][4:])
    test.assertTrue(used, "the console made no API request")
    pats = documented_api()
    private = [p for p in used if not any(r.match(p) for r in pats)]
    test.assertEqual(private, [], "API paths the docs do not document: %s" % private)


class ConsoleHttpTest(CairnTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class(settings={"api.token": "s3cret",
                                            "registry.listen": "127.0.0.1:0"})
        cls.index = get(cls.srv.port, "/").body

    def head_of(self, r):
        return {k.lower(): v for k, v in r.headers}

    def assertSecurityHeaders(self, r):
        h = self.head_of(r)
        self.assertEqual(h.get("content-security-policy"), CSP)
        self.assertEqual(h.get("x-content-type-options"), "nosniff")
        self.assertEqual(h.get("x-frame-options"), "DENY")
        self.assertEqual(h.get("referrer-policy"), "same-origin")

    def test_index_at_root_and_page_paths(self):
        r = get(self.srv.port, "/")
        self.assertEqual((r.status, r.header("Content-Type")), (200, HTML))
        self.assertTrue(r.body.startswith(b"<!doctype html>"), r.body[:100])
        self.assertIn(b'<div id="app"></div>', r.body)
        self.assertEqual(r.header("Cache-Control"), "no-cache")
        self.assertEqual(r.header("Content-Length"), str(len(r.body)))
        self.assertSecurityHeaders(r)
        # No inline script: the CSP allows none.
        self.assertNotRegex(r.body.decode(), r"<script(?![^>]*\bsrc=)[^>]*>")
        for path in ("/services", "/topology", "/traces", "/traces/", "/logs", "/rca", "/registry",
                     "/gateway", "/gateway?cluster=payments", "/demo",
                     "/traces/0123456789abcdef0123456789abcdef", "/services?range=15m",
                     "/traces/x/y/z", "/index.html"):
            with self.subTest(path):
                p = get(self.srv.port, path)
                self.assertEqual((p.status, p.header("Content-Type"), p.body),
                                 (200, HTML, r.body))
                self.assertEqual(p.header("ETag"), r.header("ETag"))

    def test_unknown_paths_stay_404(self):
        for path in ("/nope", "/no/such/path", "/assets/nope.js", "/assets/", "/servicesx",
                     "/api/v1/nope", "/Traces"):
            with self.subTest(path):
                r = get(self.srv.port, path)
                self.assertEqual((r.status, r.body, r.header("Content-Type")),
                                 (404, b"not found\n", "text/plain; charset=utf-8"))

    def test_assets_types_caching_gzip(self):
        paths = assets_of(self.index.decode())
        self.assertTrue(any(p.endswith(".js") for p in paths), paths)
        self.assertTrue(any(p.endswith(".css") for p in paths), paths)
        for path in paths + ["/favicon.svg"]:
            with self.subTest(path):
                plain = get(self.srv.port, path)
                want = {".js": JS, ".css": "text/css; charset=utf-8",
                        ".svg": "image/svg+xml"}[os.path.splitext(path)[1]]
                self.assertEqual((plain.status, plain.header("Content-Type")), (200, want))
                self.assertIsNone(plain.header("Content-Encoding"))
                self.assertSecurityHeaders(plain)
                cache = plain.header("Cache-Control")
                if path.startswith("/assets/"):
                    self.assertEqual(cache, "public, max-age=31536000, immutable")
                else:
                    self.assertEqual(cache, "no-cache")
                z = get(self.srv.port, path, headers={"Accept-Encoding": "br, gzip;q=0.8"})
                self.assertEqual(z.status, 200)
                if plain.header("Vary") == "Accept-Encoding":
                    self.assertEqual(z.header("Content-Encoding"), "gzip")
                    self.assertLess(len(z.body), len(plain.body))
                    self.assertEqual(gzip.decompress(z.body), plain.body)
                    # The two representations have different ETags.
                    self.assertEqual(z.header("ETag"), plain.header("ETag")[:-1] + '-gz"')
                    refused = get(self.srv.port, path, headers={"Accept-Encoding": "gzip;q=0"})
                    self.assertIsNone(refused.header("Content-Encoding"))
                    self.assertEqual(refused.body, plain.body)
                else:
                    self.assertIsNone(z.header("Content-Encoding"))
                    self.assertEqual(z.body, plain.body)
        # The main script is big enough for gzip to pay.
        js = [p for p in paths if p.endswith(".js")][0]
        self.assertEqual(get(self.srv.port, js).header("Vary"), "Accept-Encoding")

    def test_etag_304(self):
        r = get(self.srv.port, "/")
        etag = r.header("ETag")
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        for inm in (etag, "W/" + etag, '"other", ' + etag, "*"):
            with self.subTest(inm):
                n = get(self.srv.port, "/traces", headers={"If-None-Match": inm})
                self.assertEqual((n.status, n.body), (304, b""))
                self.assertEqual(n.header("ETag"), etag)
                self.assertIsNone(n.header("Content-Length"))
                self.assertEqual(n.header("Cache-Control"), "no-cache")
        m = get(self.srv.port, "/", headers={"If-None-Match": '"0000000000000000"'})
        self.assertEqual((m.status, m.body), (200, r.body))
        # The gzip representation's ETag matches only the gzip one.
        js = [p for p in assets_of(self.index.decode()) if p.endswith(".js")][0]
        z = get(self.srv.port, js, headers={"Accept-Encoding": "gzip"})
        n = get(self.srv.port, js, headers={"Accept-Encoding": "gzip", "If-None-Match": z.header("ETag")})
        self.assertEqual(n.status, 304)
        n = get(self.srv.port, js, headers={"If-None-Match": z.header("ETag")})
        self.assertEqual(n.status, 200)

    def test_head_and_methods(self):
        with Conn(self.srv.port) as c:
            c.send(request_bytes("HEAD", "/logs"))
            h = c.read_response(method="HEAD")
            self.assertEqual((h.status, h.header("Content-Length"), h.body),
                             (200, str(len(self.index)), b""))
            c.send(request_bytes("POST", "/", body=b"x"))
            r = c.read_response()
            self.assertEqual(r.status, 405)

    def test_files_public_data_not(self):
        # api.token is set: the console's files hold no data and need no token; the API does.
        self.assertEqual(get(self.srv.port, "/").status, 200)
        self.assertEqual(get(self.srv.port, "/api/v1/services").status, 401)
        ok = get(self.srv.port, "/api/v1/services", headers={"Authorization": "Bearer s3cret"})
        self.assertEqual(ok.status, 200)


def node_or_fail(d):
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(d, "node_modules")):
        raise AssertionError("node or %s/node_modules missing: run scripts/deps.sh" % d)
    return node


class ConsoleBrowserTest(CairnTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError(CHROMIUM + " missing: run scripts/deps.sh")
        cls.node = node_or_fail(OTEL_DIR)
        node_or_fail(CONSOLE_DIR)
        cls.srv = cls.start_class(workers=2, settings={
            "registry.listen": "127.0.0.1:0",
            "telemetry.code_links":
            '{"*": "https://git.example.com/{repo}/blob/{revision}/{filepath}#L{lineno}"}'})
        cls.tmp = tempfile.mkdtemp(prefix="cairn-console-")
        cls.app_out = os.path.join(cls.tmp, "app.json")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        p = subprocess.run([cls.node, APP, "--url", "http://127.0.0.1:%d" % cls.srv.otlp_port,
                            "--out", cls.app_out, "--requests", str(REQUESTS)], cwd=OTEL_DIR,
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 + scaled(15))
        if p.returncode != 0:
            raise AssertionError("console-app.mjs exited %d: %s" % (p.returncode, p.stderr[-2000:]))
        with open(cls.app_out) as f:
            cls.app = json.load(f)
        assert len(cls.app["traces"]) == REQUESTS, len(cls.app["traces"])
        # Edges are paired at ingest and logs become searchable once durable: wait for both.
        port = cls.srv.port

        def api(path):
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path)) as r:
                return json.load(r)
        poll_until(lambda: sum(e["count"] for e in api("/api/v1/topology")["edges"])
                   == 2 * REQUESTS, scaled(10), what="both edges with every call")
        poll_until(lambda: len(api("/api/v1/logs?limit=1000")["logs"]) == len(cls.app["logs"]),
                   scaled(10), what="every log record")
        # The registry page's data: an instance and a configuration changed once (history).
        def put(path, body):
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method="PUT",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                return json.load(r)
        put("/api/v1/registry/services/public/DEFAULT_GROUP/inventory/instances",
            {"ip": "10.0.0.7", "port": 8080, "weight": 2, "metadata": {"zone": "a"}})
        put("/api/v1/registry/configs/public/DEFAULT_GROUP/shop.yaml",
            {"content": "timeout: 3s\n", "type": "yaml"})
        put("/api/v1/registry/configs/public/DEFAULT_GROUP/shop.yaml",
            {"content": "timeout: 5s\n", "type": "yaml"})

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)
        super().tearDownClass()

    def test_pages(self):
        artifacts = os.path.join(os.path.dirname(os.path.abspath(BIN)), "artifacts", "console")
        # The console's target is a page in under a second on this data; the budget grows
        # with the sanitizer build's slowness and with a machine loaded past its cores (the
        # tests share two cores with whatever else runs).
        load = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
        budget = int(1000 * scaled(1) * load)
        t0 = time.monotonic()
        p = subprocess.run([self.node, DRIVER, "--url", "http://127.0.0.1:%d" % self.srv.port,
                            "--otlp", "http://127.0.0.1:%d" % self.srv.otlp_port,
                            "--app", self.app_out, "--artifacts", artifacts,
                            "--budget-ms", str(budget)],
                           cwd=CONSOLE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=scaled(120))
        out = p.stdout.decode("utf-8", "replace")
        self.assertNotEqual(p.returncode, 2, p.stderr.decode("utf-8", "replace"))
        checks = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        names = [c["check"] for c in checks]
        self.assertEqual(names, ["services page", "topology page",
                                 "search, trace, its logs, back to the trace",
                                 "pages load from their URLs within the budget", "live tail",
                                 "root cause page", "registry page", "unknown page"], out)
        for c in checks:
            with self.subTest(c["check"]):
                self.assertTrue(c["ok"], c["detail"])
        print("console checks (budget %d ms) in %.1fs: %s" % (
            budget, time.monotonic() - t0, "; ".join("%s: %s" % (c["check"], c["detail"])
                                                      for c in checks if c["ok"] and c["detail"])))
        self.assertEqual(p.returncode, 0, out + p.stderr.decode("utf-8", "replace"))
        assert_public_api(self, out)
        for name in ("services", "topology", "traces", "trace", "logs", "logs-tail", "rca",
                     "registry"):
            self.assertGreater(os.path.getsize(os.path.join(artifacts, name + ".png")), 10000)


class ConsoleDemoBrowserTest(CairnTestCase):
    def test_pages_gateway_and_fault_switches(self):
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError(CHROMIUM + " missing: run scripts/deps.sh")
        node = node_or_fail(CONSOLE_DIR)
        node_or_fail(DEMO_DIR)
        srv = self.start(settings={"registry.listen": "127.0.0.1:0"}, workers=2,
                         args=["--demo", "--demo-dir", DEMO_DIR, "--demo-gateway", "127.0.0.1:0",
                               "--demo-rps", "20"])
        srv.wait_log(r" info demo started name=loadgen ", scaled(10))
        artifacts = os.path.join(os.path.dirname(os.path.abspath(BIN)), "artifacts", "console")
        p = subprocess.run([node, DEMO_DRIVER, "--url", "http://127.0.0.1:%d" % srv.port,
                            "--artifacts", artifacts],
                           cwd=CONSOLE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=scaled(150))
        out = p.stdout.decode("utf-8", "replace")
        self.assertNotEqual(p.returncode, 2, p.stderr.decode("utf-8", "replace"))
        checks = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        self.assertEqual([c["check"] for c in checks],
                         ["demo services and topology",
                          "demo search, trace, its logs, back to the trace",
                          "demo pages load without console errors",
                          "gateway page",
                          "fault injected by clicking, named by the root cause page"], out)
        for c in checks:
            with self.subTest(c["check"]):
                self.assertTrue(c["ok"], c["detail"])
        print("demo console checks: " + "; ".join("%s: %s" % (c["check"], c["detail"])
                                                   for c in checks))
        self.assertEqual(p.returncode, 0, out + p.stderr.decode("utf-8", "replace"))
        assert_public_api(self, out)
        for name in ("demo-services", "demo-topology", "demo-traces", "demo-trace", "demo-logs",
                     "demo-registry", "gateway", "demo", "rca-demo"):
            self.assertGreater(os.path.getsize(os.path.join(artifacts, name + ".png")), 10000)
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    main()
