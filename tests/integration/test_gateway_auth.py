"""Integration tests of the gateway's JWT, key auth and CORS filters and of its tracing: the
real binary (`cairn gateway`, and the gateway inside `cairn up`), real upstreams on loopback
(test_gateway.Upstream), tokens signed here with keys made by `cryptography`.

Run: CAIRN_BIN=build/release/cairn python3 tests/integration/test_gateway_auth.py
"""

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import SANITIZER_RE, Server, get, poll_until, scaled  # noqa: E402
from test_gateway import GatewayTest, hget  # noqa: E402

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature  # noqa: E402


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def uint_b64u(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(size, "big"))


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
SECRET = b"s3cret-s3cret-s3cret-s3cret-s3cret!!"


def jwks():
    rn = RSA_KEY.public_key().public_numbers()
    en = EC_KEY.public_key().public_numbers()
    return {"keys": [
        {"kty": "RSA", "kid": "r1", "alg": "RS256", "n": uint_b64u(rn.n), "e": uint_b64u(rn.e)},
        {"kty": "EC", "kid": "e1", "crv": "P-256", "x": uint_b64u(en.x, 32),
         "y": uint_b64u(en.y, 32)},
    ]}


def token(alg, claims, kid=None, header=None):
    h = header or {"alg": alg, "typ": "JWT"}
    if kid:
        h["kid"] = kid
    signing = (b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
    if alg == "RS256":
        sig = RSA_KEY.sign(signing, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(EC_KEY.sign(signing, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":
        sig = hmac.new(SECRET, signing, hashlib.sha256).digest()
    else:
        sig = b""
    return signing.decode() + "." + b64u(sig)


def claims(**kw):
    c = {"iss": "https://idp.test", "aud": "shop", "sub": "u-42", "tier": "gold",
         "exp": int(time.time()) + 600}
    c.update(kw)
    return c


def echoed(resp):
    """The upstream's echo body as {lower-case name: value}."""
    out = {}
    for line in resp.body.decode("latin-1").split("\n")[1:]:
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip().lower()] = v.strip()
    return out


class Auth(GatewayTest):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="cairn-gwauth-")
        self.addCleanup(self.dir.cleanup)
        d = self.dir.name
        with open(os.path.join(d, "jwks.json"), "w") as f:
            json.dump(jwks(), f)
        with open(os.path.join(d, "hs.secret"), "wb") as f:
            f.write(SECRET + b"\n")
        with open(os.path.join(d, "keys.txt"), "w") as f:
            f.write("# api keys\nkey-one\n\n  key-two  \n")
        self.u = self.upstream("u")
        self.g = self.gateway("""
listeners: [{name: main, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
clusters: [{name: u, endpoints: [%s]}]
routes:
  - name: jwt
    matches: [{path: {value: /jwt}}]
    filters:
      - type: JWT
        jwt:
          issuer: https://idp.test
          audiences: [shop, admin]
          jwks_file: %s/jwks.json
          secret: %s/hs.secret
          algorithms: [RS256, ES256, HS256]
          claims_to_headers: [{claim: sub, header: X-User}, {claim: tier, header: X-Tier}]
          clock_skew: 5s
    backendRefs: [{name: u}]
  - name: jwt-fwd
    matches: [{path: {value: /fwd}}]
    filters:
      - type: JWT
        jwt: {jwks_file: %s/jwks.json, forward: true}
    backendRefs: [{name: u}]
  - name: key
    matches: [{path: {value: /key}}]
    filters:
      - type: KeyAuth
        keyAuth: {header: X-Api-Key, keys_file: %s/keys.txt}
    backendRefs: [{name: u}]
  - name: keyq
    matches: [{path: {value: /keyq}}]
    filters:
      - type: KeyAuth
        keyAuth: {query: api_key, keys_file: %s/keys.txt}
    backendRefs: [{name: u}]
  - name: cors-jwt
    matches: [{path: {value: /cj}}]
    filters:
      - type: JWT
        jwt: {jwks_file: %s/jwks.json}
      - type: CORS
        cors: {allowOrigins: ["https://app.test"]}
    backendRefs: [{name: u}]
  - name: cors-rl
    matches: [{path: {value: /crl}}]
    filters:
      - type: RateLimit
        rateLimit: {rate: 1/h, burst: 1}
      - type: CORS
        cors: {allowOrigins: ["https://app.test"]}
    backendRefs: [{name: u}]
  - name: cors
    matches: [{path: {value: /cors}}]
    filters:
      - type: CORS
        cors:
          allowOrigins: ["https://app.test", "*.shop.test"]
          allowMethods: [GET, PUT]
          allowHeaders: [Content-Type, X-Token]
          exposeHeaders: [X-Total]
          allowCredentials: true
          maxAge: 600
    backendRefs: [{name: u}]
""" % (self.u.addr(), d, d, d, d, d, d))

    def get(self, path, headers=None):
        return get(self.g.port, path, headers)

    def expect_401(self, path, headers, why):
        n = len(self.u.requests)
        r = self.get(path, headers)
        self.assertEqual(r.status, 401, r.body)
        self.assertEqual(r.header("WWW-Authenticate"),
                         'Bearer error="invalid_token", error_description="%s"' % why)
        self.assertEqual(len(self.u.requests), n, "a refused request reached the upstream")

    def test_jwt_accepts_each_algorithm(self):
        for alg, kid in (("RS256", "r1"), ("ES256", "e1"), ("HS256", None)):
            r = self.get("/jwt", {"Authorization": "Bearer " + token(alg, claims(), kid),
                                  "X-User": "spoofed"})
            self.assertEqual(r.status, 200, (alg, r.body))
            e = echoed(r)
            self.assertEqual(e.get("x-user"), "u-42", alg)
            self.assertEqual(e.get("x-tier"), "gold", alg)
            self.assertNotIn("authorization", e)  # forward: false
            self.assertNotIn("spoofed", r.body.decode())
        # forward: true passes the token on
        t = token("RS256", claims())
        r = self.get("/fwd", {"Authorization": "Bearer " + t})
        self.assertEqual(r.status, 200)
        self.assertEqual(echoed(r).get("authorization"), "Bearer " + t)
        # audiences: any listed one
        r = self.get("/jwt", {"Authorization": "Bearer " + token("ES256", claims(aud=["x", "admin"]))})
        self.assertEqual(r.status, 200)

    def test_jwt_refusals(self):
        now = int(time.time())
        self.expect_401("/jwt", {}, "no bearer token")
        self.expect_401("/jwt", {"Authorization": "Basic dTpw"}, "no bearer token")
        self.expect_401("/jwt", {"Authorization": "Bearer " + token("RS256", claims(exp=now - 60))},
                        "token expired")
        self.expect_401("/jwt", {"Authorization": "Bearer " + token("RS256", claims(nbf=now + 60))},
                        "token not valid yet (nbf)")
        self.expect_401("/jwt", {"Authorization": "Bearer " + token("ES256", claims(aud="other"))},
                        "wrong audience")
        self.expect_401("/jwt", {"Authorization": "Bearer " + token("ES256", claims(iss="evil"))},
                        "wrong issuer")
        self.expect_401("/jwt", {"Authorization": "Bearer " + token("none", claims())},
                        "malformed token (empty segment)")
        t = token("RS256", claims())
        self.expect_401("/jwt", {"Authorization": "Bearer " + t[:-4] + ("AAAA" if t[-4:] != "AAAA"
                                                                        else "BBBB")},
                        "bad signature")
        self.expect_401("/jwt", {"Authorization": "Bearer a.b"},
                        "malformed token (not three segments)")
        # HS256 is not allowed on /fwd (default algorithms RS256, ES256)
        self.expect_401("/fwd", {"Authorization": "Bearer " + token("HS256", claims())},
                        "algorithm HS256 not allowed")
        m = self.g.metrics()
        self.assertGreaterEqual(m[("cairn_gateway_route_requests_total",
                                   (("code", "4xx"), ("route", "jwt")))], 9)

    def test_key_auth(self):
        self.assertEqual(self.get("/key", {"X-Api-Key": "key-one"}).status, 200)
        self.assertEqual(self.get("/key", {"X-Api-Key": "key-two"}).status, 200)
        n = len(self.u.requests)
        for h in ({"X-Api-Key": "key-on"}, {"X-Api-Key": "key-one2"}, {}, {"X-Other": "key-one"}):
            r = self.get("/key", h)
            self.assertEqual(r.status, 401, h)
        self.assertEqual(len(self.u.requests), n)
        r = self.get("/key", {"X-Api-Key": "key-one"})
        self.assertNotIn("x-api-key", echoed(r))  # not forwarded by default
        self.assertEqual(self.get("/keyq?api_key=key-two").status, 200)
        self.assertEqual(self.get("/keyq?api_key=key%2Dtwo").status, 200)
        self.assertEqual(self.get("/keyq?api_key=nope").status, 401)
        self.assertEqual(self.get("/keyq").status, 401)

    def test_cors(self):
        n = len(self.u.requests)
        r = self.g_options("/cors", {"Origin": "https://a.shop.test",
                                      "Access-Control-Request-Method": "PUT",
                                      "Access-Control-Request-Headers": "content-type, x-token"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://a.shop.test")
        self.assertEqual(r.header("Access-Control-Allow-Methods"), "GET, PUT")
        self.assertEqual(r.header("Access-Control-Allow-Headers"), "Content-Type, X-Token")
        self.assertEqual(r.header("Access-Control-Allow-Credentials"), "true")
        self.assertEqual(r.header("Access-Control-Max-Age"), "600")
        self.assertIn("Origin", r.header("Vary"))
        # refused preflights: origin, method, header
        for h in ({"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"},
                  {"Origin": "https://app.test", "Access-Control-Request-Method": "DELETE"},
                  {"Origin": "https://app.test", "Access-Control-Request-Method": "GET",
                   "Access-Control-Request-Headers": "x-secret"}):
            r = self.g_options("/cors", h)
            self.assertEqual(r.status, 204)
            self.assertIsNone(r.header("Access-Control-Allow-Origin"), h)
        self.assertEqual(len(self.u.requests), n, "a preflight reached the upstream")
        # simple requests
        r = self.get("/cors", {"Origin": "https://app.test"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://app.test")
        self.assertEqual(r.header("Access-Control-Expose-Headers"), "X-Total")
        self.assertEqual(r.header("Vary"), "Origin")
        r = self.get("/cors", {"Origin": "https://evil.test"})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        self.assertEqual(r.header("Vary"), "Origin")
        r = self.get("/cors")
        self.assertIsNone(r.header("Vary"))
        # a preflight is answered even where an auth filter comes first in the chain
        r = self.g_options("/cj", {"Origin": "https://app.test",
                                    "Access-Control-Request-Method": "GET"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://app.test")
        self.assertEqual(len(self.u.requests), n + 3)
        # the gateway's own refusals carry the CORS fields, so the page's script can read them
        r = self.get("/cj", {"Origin": "https://app.test"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://app.test")
        self.assertEqual(r.header("Vary"), "Origin")
        self.assertIsNotNone(r.header("WWW-Authenticate"))
        r = self.get("/cj", {"Origin": "https://evil.test"})
        self.assertEqual(r.status, 401)
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        self.assertEqual(r.header("Vary"), "Origin")
        self.assertEqual(self.get("/crl", {"Origin": "https://app.test"}).status, 200)
        r = self.get("/crl", {"Origin": "https://app.test"})
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://app.test")
        self.assertIsNotNone(r.header("Retry-After"))

    def g_options(self, path, headers):
        from cairn import Conn, request_bytes
        with Conn(self.g.port) as c:
            c.send(request_bytes("OPTIONS", path, headers=headers))
            return c.read_response()


class BadConfig(unittest.TestCase):
    def test_errors_name_file_line_col(self):
        import subprocess
        from cairn import BIN, clean_env
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "gw.yaml")
            cases = [
                ("      - type: JWT\n        jwt: {issuer: x}\n",
                 r"gw.yaml:8:14: routes\[0\]\.filters\[0\]\.jwt: needs jwks_file, jwks_url or secret"),
                ("      - type: JWT\n        jwt: {jwks_file: nope.json}\n",
                 r"gw.yaml:8:26: routes\[0\]\.filters\[0\]\.jwt\.jwks_file: cannot open"),
                ("      - type: JWT\n        jwt: {jwks_file: j.json, algorithms: [none]}\n",
                 r"routes\[0\]\.filters\[0\]\.jwt\.algorithms\[0\]: 'none' is not HS256"),
                ("      - type: CORS\n        cors: {allowOrigins: ['*'], allowCredentials: true}\n",
                 r"gw.yaml:8:31: .*allowOrigins\[0\]: '\*' with allowCredentials"),
                ("      - type: KeyAuth\n        keyAuth: {header: X-K, query: k, keys_file: k}\n",
                 r"gw.yaml:8:18: routes\[0\]\.filters\[0\]\.keyAuth: needs exactly one of header"),
            ]
            with open(os.path.join(d, "j.json"), "w") as f:
                f.write('{"keys": []}')
            for body, want in cases:
                with open(p, "w") as f:
                    f.write("listeners: [{address: '127.0.0.1:0'}]\nclusters: [{name: u, endpoints: "
                            "['127.0.0.1:1']}]\nroutes:\n  - name: r\n    backendRefs: [{name: u}]\n"
                            "    filters:\n" + body)
                r = subprocess.run([BIN, "gateway", "-c", p], env=clean_env(),
                                   capture_output=True, timeout=scaled(10))
                self.assertEqual(r.returncode, 3, r.stderr)
                self.assertRegex(r.stderr.decode(), want)


TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class Tracing(GatewayTest):
    def test_propagation(self):
        u = self.upstream("u")
        g = self.gateway("""
listeners: [{address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
tracing: {enabled: true, max_tracestate_bytes: 32}
clusters: [{name: u, endpoints: [%s]}]
routes: [{name: all, backendRefs: [{name: u}]}]
""" % u.addr())
        tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        for flags in ("01", "00"):
            r = get(g.port, "/x", {"traceparent": "00-%s-%s-%s" % (tid, sid, flags),
                                   "tracestate": "vendor=abc"})
            e = echoed(r)
            m = TP_RE.match(e["traceparent"])
            self.assertIsNotNone(m, e["traceparent"])
            self.assertEqual(m.group(1), tid)
            self.assertNotEqual(m.group(2), sid)  # a new span for this hop
            self.assertEqual(m.group(3), flags)  # sampled flag honoured
            self.assertEqual(e["tracestate"], "vendor=abc")
            self.assertEqual(r.body.decode().count("traceparent"), 1)
        # none, or an invalid one: a new sampled trace; a long tracestate is dropped
        for h in ({}, {"traceparent": "00-%s-%s-01" % (tid.upper(), sid)},
                  {"traceparent": "00-%s-0000000000000000-01" % tid,
                   "tracestate": "v=" + "x" * 40}):
            e = echoed(get(g.port, "/x", h))
            m = TP_RE.match(e["traceparent"])
            self.assertIsNotNone(m)
            self.assertNotEqual(m.group(1), tid)
            self.assertEqual(m.group(3), "01")
            self.assertNotIn("tracestate", e)

    def test_span_stored_under_cairn_up(self):
        u = self.upstream("u")
        d = tempfile.TemporaryDirectory(prefix="cairn-gwup-")
        self.addCleanup(d.cleanup)
        path = os.path.join(d.name, "gw.yaml")
        with open(path, "w") as f:
            f.write("""
listeners: [{name: edge, address: "127.0.0.1:0"}]
tracing: {enabled: true, service_name: edge-gw, otlp: {flush_interval: 100ms}}
clusters: [{name: u, endpoints: [%s]}]
routes: [{name: all, backendRefs: [{name: u}]}]
""" % u.addr())
        srv = Server(settings={"gateway.config": path, "telemetry.fsync": "false"})
        self.addCleanup(srv.cleanup)
        m, _ = srv.err.wait(r"part=gateway listener=edge addr=127\.0\.0\.1:(\d+)", scaled(5))
        self.assertIsNotNone(m, srv.logs())
        port = int(m.group(1))
        tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        r = get(port, "/shop?q=1", {"traceparent": "00-%s-%s-01" % (tid, sid)})
        self.assertEqual(r.status, 200)
        ours = TP_RE.match(echoed(r)["traceparent"]).group(2)

        def trace():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/traces/%s"
                                            % (srv.port, tid), timeout=scaled(2)) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError:
                return None
        doc = poll_until(trace, scaled(10), interval=0.1, what="the gateway's span")
        spans = [s for s in json.dumps(doc) and _spans(doc)]
        self.assertEqual(len(spans), 1, doc)
        s = spans[0]
        self.assertEqual(s["spanId"], ours)
        self.assertEqual(s["parentSpanId"], sid)
        self.assertEqual(s["name"], "GET all")
        self.assertEqual(s["kind"], 2)
        attrs = json.dumps(s["attributes"])
        for want in ("http.response.status_code", "url.path", "/shop", "cairn.gateway.cluster"):
            self.assertIn(want, attrs)
        self.assertIn("edge-gw", json.dumps(doc))
        # the gateway's metrics are on /metrics of cairn up
        self.assertGreaterEqual(srv.metric("cairn_gateway_spans_exported_total"), 1)
        rc = srv.stop()
        self.assertEqual(rc, 0, srv.logs()[-3000:])
        self.assertEqual([line for line in srv.log_lines() if SANITIZER_RE.search(line)], [])


class OtlpExport(GatewayTest):
    def test_alone_exports_over_otlp(self):
        """The gateway alone sends its spans and access logs over OTLP/HTTP (here to a cairn
        up's receiver, where they are found by trace ID)."""
        srv = Server(settings={"telemetry.fsync": "false"})
        self.addCleanup(srv.cleanup)
        u = self.upstream("u")
        g = self.gateway("""
listeners: [{address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
tracing:
  enabled: true
  service_name: gw-alone
  otlp: {endpoint: "http://127.0.0.1:%d", flush_interval: 100ms, batch_size: 4}
clusters: [{name: u, endpoints: [%s]}]
routes: [{name: r1, backendRefs: [{name: u}]}]
""" % (srv.otlp_port, u.addr()))
        tids = []
        for i in range(6):  # one full batch of 4, then a partial one sent by the timer
            r = get(g.port, "/p%d" % i)
            self.assertEqual(r.status, 200)
            tids.append(TP_RE.match(echoed(r)["traceparent"]).group(1))

        def found():
            out = []
            for t in tids:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/traces/%s"
                                                % (srv.port, t), timeout=scaled(2)) as resp:
                        out += _spans(json.loads(resp.read()))
                except urllib.error.HTTPError:
                    return None
            return out if len(out) == len(tids) else None
        spans = poll_until(found, scaled(10), interval=0.1, what="the exported spans")
        self.assertEqual(sorted(s["name"] for s in spans), ["GET r1"] * 6)
        self.assertTrue(all(s["parentSpanId"] == "" for s in spans))
        # counted once the receiver's answer is back, a moment after the spans are readable
        m = poll_until(lambda: (lambda m: m if m[("cairn_gateway_access_logs_exported_total", ())]
                                == 6 else None)(g.metrics()), scaled(5), what="the counters")
        self.assertEqual(m[("cairn_gateway_spans_exported_total", ())], 6)
        self.assertEqual(m[("cairn_gateway_spans_dropped_total", ())], 0)


def _spans(doc):
    """Every span object in an /api/v1/traces/{id} answer."""
    out = []

    def walk(x):
        if isinstance(x, dict):
            if "spanId" in x and "parentSpanId" in x:
                out.append(x)
            else:
                for v in x.values():
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc)
    return out


if __name__ == "__main__":
    unittest.main()
