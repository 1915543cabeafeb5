"""A full disk: exports are refused with 507 and Retry-After, nothing acknowledged is lost,
the server keeps running, and ingest resumes when space returns. The data directory sits on
a small tmpfs this test mounts (it needs root, as CI runs)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from cairn import Server, scaled


def body(trace_hex, n_spans, pad):
    spans = [{"traceId": trace_hex, "spanId": "%016x" % (i + 1), "name": "op",
              "kind": 2, "startTimeUnixNano": str(time.time_ns()),
              "endTimeUnixNano": str(time.time_ns() + 1000),
              "attributes": [{"key": "pad", "value": {"stringValue": pad}}]}
             for i in range(n_spans)]
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "df"}}]},
        "scopeSpans": [{"spans": spans}]}]}).encode()


def post(port, data):
    req = urllib.request.Request("http://127.0.0.1:%d/v1/traces" % port, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=scaled(10)) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def trace_spans(port, trace_hex):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/traces/%s" % (port, trace_hex),
                                    timeout=scaled(10)) as r:
            return len(json.loads(r.read())["spans"])
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return 0
        raise


class DiskFull(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a small tmpfs needs root (CI runs as root)")
        self.mnt = tempfile.mkdtemp(prefix="cairn-df-")
        self.addCleanup(shutil.rmtree, self.mnt, True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", self.mnt], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt])
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if s.running():
                s.stop()
            s.cleanup()

    def start(self):
        srv = Server(settings={"data_dir": os.path.join(self.mnt, "data"),
                               "telemetry.seal_interval": "1h",
                               "telemetry.retry_after": "2s"})
        self.servers.append(srv)
        return srv

    def test_refuse_then_recover(self):
        srv = self.start()
        pad = "x" * 2000
        acked = []
        refused = None
        for i in range(200):
            tid = "%032x" % (0xd15c0000 + i)
            status, headers, _ = post(srv.otlp_port, body(tid, 50, pad))
            if status == 200:
                acked.append(tid)
                continue
            refused = (status, headers)
            break
        self.assertIsNotNone(refused, "3 MiB never filled up")
        status, headers = refused
        self.assertEqual(status, 507)
        self.assertEqual(headers.get("Retry-After"), "2")
        self.assertGreater(len(acked), 3)
        self.assertTrue(srv.running())
        self.assertGreaterEqual(srv.metric("cairn_telemetry_wal_errors_total"), 1)
        srv.wait_log(r"error telemetry \"wal write failed, batches refused\"")
        # Everything acknowledged is there.
        for tid in acked:
            self.assertEqual(trace_spans(srv.port, tid), 50, tid)
        # Space returns: ingest resumes.
        subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], check=True)
        late = "%032x" % 0xd15cffff
        status, _, _ = post(srv.otlp_port, body(late, 50, pad))
        self.assertEqual(status, 200)
        acked.append(late)
        self.assertEqual(srv.stop(), 0)
        # The log is whole: a restart replays every acknowledged export.
        srv2 = self.start()
        self.assertEqual(srv2.metric("cairn_telemetry_wal_replayed_total"), len(acked))
        self.assertEqual(srv2.metric("cairn_telemetry_corrupt_total"), 0)
        for tid in acked:
            self.assertEqual(trace_spans(srv2.port, tid), 50, tid)


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]])
