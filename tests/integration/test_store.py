"""The telemetry store past its head: sealing into segment files, serving traces from
them across restarts, damaged segments, retention by disk budget."""
import glob
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from cairn import Server, poll_until, scaled


def trace_body(trace_hex, service, n_spans, t0_ns):
    spans = []
    for i in range(n_spans):
        s = {"traceId": trace_hex, "spanId": "%016x" % (i + 1), "name": "op-%d" % (i % 3),
             "kind": 2 if i == 0 else 3,
             "startTimeUnixNano": str(t0_ns + i * 1000),
             "endTimeUnixNano": str(t0_ns + i * 1000 + 5000000),
             "attributes": [{"key": "http.route", "value": {"stringValue": "/cart/%d" % i}},
                            {"key": "retry", "value": {"intValue": str(i)}},
                            {"key": "ratio", "value": {"doubleValue": 0.25 * i}},
                            {"key": "ok", "value": {"boolValue": i % 2 == 0}}],
             "events": [{"timeUnixNano": str(t0_ns + 10), "name": "cache miss",
                         "attributes": [{"key": "k", "value": {"stringValue": "v"}}]}],
             "status": {"code": 2 if i == n_spans - 1 else 0,
                        "message": "boom" if i == n_spans - 1 else ""}}
        if i:
            s["parentSpanId"] = "%016x" % 1
        spans.append(s)
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}},
                                    {"key": "host.name", "value": {"stringValue": "h1"}}]},
        "scopeSpans": [{"scope": {"name": "store-test", "version": "1"}, "spans": spans}]}]}


def post(port, body):
    req = urllib.request.Request("http://127.0.0.1:%d/v1/traces" % port,
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=scaled(10)) as r:
        assert r.status == 200, r.status
        return json.loads(r.read())


def get_trace(port, trace_hex):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/traces/%s" % (port, trace_hex),
                                    timeout=scaled(10)) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def wait_metric(srv, name, at_least, timeout=10, **labels):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        v = srv.metric(name, **labels)
        if v is not None and v >= at_least:
            return v
        time.sleep(0.05)
    raise AssertionError("%s stayed below %s: %s" % (name, at_least, srv.metric(name, **labels)))


TRACES = ["%032x" % (0xabc000 + i) for i in range(20)]


class Sealing(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cairn-store-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if s.running():
                s.stop()
            s.cleanup()

    def start(self, **settings):
        base = {"data_dir": self.dir, "telemetry.seal_interval": "200ms"}
        base.update(settings)
        srv = Server(settings=base)
        self.servers.append(srv)
        return srv

    def test_sealed_traces_are_served_whole_and_survive_restart(self):
        srv = self.start()
        t0 = time.time_ns()
        for i, tid in enumerate(TRACES):
            post(srv.otlp_port, trace_body(tid, "svc-%d" % (i % 3), 5, t0 + i * 1000000))
        before = {tid: get_trace(srv.port, tid) for tid in TRACES}
        self.assertTrue(all(before.values()))
        wait_metric(srv, "cairn_telemetry_seals_total", 1, result="ok")
        wait_metric(srv, "cairn_telemetry_segments", 1)
        # On a slow machine the posts may straddle a seal: the rest goes in the next one.
        poll_until(lambda: srv.metric("cairn_telemetry_head_bytes") == 0, scaled(10),
                   what="head sealed")
        # Served from the segment now: byte-for-byte the same answer as from the head.
        for tid in TRACES:
            self.assertEqual(get_trace(srv.port, tid), before[tid], tid)
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(glob.glob(os.path.join(self.dir, "telemetry/parts/*/*.spans")))
        # The WAL behind the segments is gone; a restart replays nothing and serves all.
        srv2 = self.start()
        self.assertEqual(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        self.assertGreaterEqual(srv2.metric("cairn_telemetry_segments"), 1)
        for tid in TRACES:
            self.assertEqual(get_trace(srv2.port, tid), before[tid], tid)
        self.assertIsNone(get_trace(srv2.port, "%032x" % 0xdead))
        self.assertEqual(srv2.stop(), 0)
        # New records after that restart go to a log that continues past the checkpoint:
        # not sealed this time (long interval), they must come back from the WAL.
        srv3 = self.start(**{"telemetry.seal_interval": "1h"})
        late = "%032x" % 0xfeed
        post(srv3.otlp_port, trace_body(late, "late", 2, time.time_ns()))
        self.assertEqual(srv3.stop(), 0)
        srv4 = self.start(**{"telemetry.seal_interval": "1h"})
        self.assertEqual(srv4.metric("cairn_telemetry_wal_replayed_total"), 1)
        self.assertEqual(len(get_trace(srv4.port, late)["spans"]), 2)
        for tid in TRACES:
            self.assertEqual(get_trace(srv4.port, tid), before[tid], tid)

    def test_damaged_segment_is_reported_and_the_rest_served(self):
        srv = self.start()
        t0 = time.time_ns()
        # Two seals: two span segments.
        post(srv.otlp_port, trace_body(TRACES[0], "a", 3, t0))
        wait_metric(srv, "cairn_telemetry_seals_total", 1, result="ok")
        post(srv.otlp_port, trace_body(TRACES[1], "b", 3, t0 + 1000))
        wait_metric(srv, "cairn_telemetry_seals_total", 2, result="ok")
        good = get_trace(srv.port, TRACES[1])
        self.assertEqual(srv.stop(), 0)
        segs = sorted(glob.glob(os.path.join(self.dir, "telemetry/parts/*/*.spans")))
        self.assertEqual(len(segs), 2)
        # Damage the first segment's footer (just before the 32-byte trailer).
        with open(segs[0], "r+b") as f:
            f.seek(-40, os.SEEK_END)
            b = f.read(1)
            f.seek(-40, os.SEEK_END)
            f.write(bytes([b[0] ^ 0xff]))
        srv2 = self.start()
        srv2.wait_log(r"error telemetry \"segment not served\".*%s" % os.path.basename(segs[0]))
        self.assertEqual(srv2.metric("cairn_telemetry_corrupt_segments"), 1)
        self.assertIsNone(get_trace(srv2.port, TRACES[0]))
        self.assertEqual(get_trace(srv2.port, TRACES[1]), good)

    def test_spans_per_trace_limit(self):
        srv = self.start(**{"telemetry.max_spans_per_trace": "5"})
        tid = "%032x" % 0x5a5a
        t0 = time.time_ns()
        self.assertEqual(post(srv.otlp_port, trace_body(tid, "a", 3, t0)), {})
        # 4 more: 2 fit, 2 are refused as a partial success naming the trace and the setting.
        more = trace_body(tid, "a", 4, t0)
        for i, s in enumerate(more["resourceSpans"][0]["scopeSpans"][0]["spans"]):
            s["spanId"] = "%016x" % (0x100 + i)
        answer = post(srv.otlp_port, more)
        self.assertEqual(answer, {"partialSuccess": {
            "rejectedSpans": "2",
            "errorMessage": "trace %s already has 5 spans (telemetry.max_spans_per_trace)"
                            % tid}})
        self.assertEqual(len(get_trace(srv.port, tid)["spans"]), 5)
        self.assertEqual(srv.metric("cairn_telemetry_rejected_total", signal="spans"), 2)
        # Other traces are not affected.
        other = "%032x" % 0x5a5b
        self.assertEqual(post(srv.otlp_port, trace_body(other, "a", 5, t0)), {})

    def test_derived_tables_rebuilt_after_restart(self):
        """RED, edges and trace summaries live in memory: after a restart they are rebuilt
        from the segments, so services and their figures do not vanish."""
        srv = self.start()
        t0 = time.time_ns()
        for i, tid in enumerate(TRACES):
            post(srv.otlp_port, trace_body(tid, "svc-%d" % (i % 3), 5, t0 + i * 1000000))
        wait_metric(srv, "cairn_telemetry_seals_total", 1, result="ok")
        poll_until(lambda: srv.metric("cairn_telemetry_head_bytes") == 0, scaled(10),
                   what="head sealed")

        def services(s):
            with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/services" % s.port,
                                        timeout=scaled(10)) as r:
                return json.loads(r.read())

        before = services(srv)
        self.assertEqual(sorted(x["name"] if isinstance(x, dict) else x
                                for x in before["services"]), ["svc-0", "svc-1", "svc-2"])
        self.assertEqual(srv.stop(), 0)
        srv2 = self.start()
        srv2.wait_log(r"info telemetry \"derived tables rebuilt from segments\" segments=\d+ "
                      r"spans=100 ")
        self.assertEqual(srv2.metric("cairn_telemetry_derive_rebuild_segments"), 0)
        self.assertEqual(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        self.assertEqual(services(srv2), before)

    def interrupted_seal(self, extra_path):
        """A kill -9 after a seal wrote its segments but before CHECKPOINT moved: rebuilt by
        sealing, killing, then putting CHECKPOINT back, the WAL as it was before the seal,
        and the SEALING manifest the seal had written first (with extra_path, a segment it
        never got to write)."""
        # The seal waits 2 s for its batch to age: time to copy the WAL before it. Once the
        # checkpoint moves, the writer removes the WAL within 200 ms, possibly before the kill.
        srv = self.start(**{"telemetry.seal_interval": "2s"})
        t0 = time.time_ns()
        # One request, so one seal holds every span: posted one by one, they could straddle
        # two seals, and the first seal's WAL records may be gone by the kill (sealed and
        # checkpointed for real), so undoing "the" seal could not bring them back.
        body = {"resourceSpans": []}
        for i, tid in enumerate(TRACES[:5]):
            body["resourceSpans"] += trace_body(tid, "svc", 4, t0 + i * 1000000)["resourceSpans"]
        post(srv.otlp_port, body)
        tel = os.path.join(self.dir, "telemetry")
        wal_copy = os.path.join(self.dir, "wal-before-seal")
        shutil.copytree(os.path.join(tel, "wal"), wal_copy)
        self.assertEqual(srv.metric("cairn_telemetry_seals_total", result="ok"), 0)
        wait_metric(srv, "cairn_telemetry_seals_total", 1, result="ok")
        poll_until(lambda: srv.metric("cairn_telemetry_head_bytes") == 0, scaled(10),
                   what="head sealed")
        self.assertEqual(srv.metric("cairn_telemetry_seals_total", result="ok"), 1)
        srv.send_signal(signal.SIGKILL)
        srv.wait(scaled(10))
        shutil.rmtree(os.path.join(tel, "wal"))
        shutil.move(wal_copy, os.path.join(tel, "wal"))
        with open(os.path.join(tel, "CHECKPOINT")) as f:
            lsn = int(f.readline())  # "LSN\n" then the paths of the last seal
        segs = sorted(glob.glob(os.path.join(tel, "parts/*/*.spans")))
        self.assertTrue(segs)
        with open(os.path.join(tel, "CHECKPOINT"), "w") as f:
            f.write("0\n")
        with open(os.path.join(tel, "SEALING"), "w") as f:
            f.write("%d\n%s\n" % (lsn, "\n".join(segs + ([extra_path] if extra_path else []))))
        srv2 = self.start()
        for tid in TRACES[:5]:
            got = get_trace(srv2.port, tid)
            self.assertEqual(sorted(s["spanId"] for s in got["spans"]),
                             ["%016x" % (i + 1) for i in range(4)], tid)
        self.assertFalse(os.path.exists(os.path.join(tel, "SEALING")))
        return srv2, segs

    def test_interrupted_seal_is_completed_at_start(self):
        """Every segment the manifest names is there: the checkpoint moves past them and the
        WAL's copies of their records are not replayed (they would be served twice)."""
        srv2, segs = self.interrupted_seal(None)
        srv2.wait_log(r"info telemetry \"interrupted seal completed\"")
        self.assertEqual(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        self.assertTrue(all(os.path.exists(p) for p in segs))

    def test_partly_written_seal_is_undone_at_start(self):
        """A segment the manifest names is missing: the ones written are removed and the WAL
        brings the records back, once."""
        srv2, segs = self.interrupted_seal(os.path.join(self.dir, "telemetry/parts/x.logs"))
        srv2.wait_log(r"info telemetry \"segment of an interrupted seal removed\"")
        self.assertGreater(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        self.assertFalse(any(os.path.exists(p) for p in segs))

    def seal_one(self, srv, tid, n):
        """Posts one trace and waits until the seal that holds it is written."""
        post(srv.otlp_port, trace_body(tid, "svc", 4, time.time_ns()))
        wait_metric(srv, "cairn_telemetry_seals_total", n, result="ok")
        poll_until(lambda: srv.metric("cairn_telemetry_head_bytes") == 0, scaled(10),
                   what="head sealed")

    def test_checkpoint_and_manifest_are_rewritten_in_place(self):
        """After a process's first seal, CHECKPOINT and SEALING are rewritten in place (same
        file, same size, an fdatasync): no new file, rename or directory sync per seal. The
        manifest of the last seal stays while the store runs (its LSN is the checkpoint's:
        a finished seal) and goes at a clean stop."""
        srv = self.start()
        tel = os.path.join(self.dir, "telemetry")
        cp, sm = os.path.join(tel, "CHECKPOINT"), os.path.join(tel, "SEALING")

        def lsn(path):
            with open(path) as f:
                return int(f.readline().split()[0])

        self.seal_one(srv, TRACES[0], 1)
        first = (os.stat(cp), os.stat(sm))
        self.assertEqual(first[0].st_size, 64)
        self.assertEqual(lsn(sm), lsn(cp))
        lsn1 = lsn(cp)
        self.seal_one(srv, TRACES[1], 2)
        self.seal_one(srv, TRACES[2], 3)
        self.assertEqual(os.stat(cp).st_ino, first[0].st_ino)
        self.assertEqual(os.stat(sm).st_ino, first[1].st_ino)
        self.assertEqual(os.stat(cp).st_size, 64)
        self.assertEqual(os.stat(sm).st_size, first[1].st_size)
        self.assertGreater(lsn(cp), lsn1)
        self.assertEqual(lsn(sm), lsn(cp))
        with open(cp) as f:
            self.assertRegex(f.read(), r"^\d+\nsum=[0-9a-f]{16}\n+$")
        self.assertEqual(srv.stop(), 0)
        self.assertFalse(os.path.exists(sm))
        srv2 = self.start()
        self.assertEqual(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        for tid in TRACES[:3]:
            self.assertEqual(len(get_trace(srv2.port, tid)["spans"]), 4, tid)

    def test_finished_seal_manifest_leaves_segments_alone(self):
        """A kill -9 leaves the last seal's manifest behind, finished (its LSN is the
        checkpoint's). A segment it names may be gone since (compacted, removed by retention):
        nothing is undone for that, and nothing is replayed."""
        srv = self.start()
        self.seal_one(srv, TRACES[0], 1)
        srv.send_signal(signal.SIGKILL)
        srv.wait(scaled(10))
        tel = os.path.join(self.dir, "telemetry")
        with open(os.path.join(tel, "CHECKPOINT")) as f:
            lsn = int(f.readline())
        segs = sorted(glob.glob(os.path.join(tel, "parts/*/*.spans")))
        self.assertEqual(len(segs), 1)
        with open(os.path.join(tel, "SEALING")) as f:
            self.assertEqual(int(f.readline().split()[0]), lsn)
        gone = os.path.join(tel, "parts/x.logs")
        with open(os.path.join(tel, "SEALING"), "w") as f:
            f.write("%d\n%s\n%s\n" % (lsn, segs[0], gone))
        srv2 = self.start()
        self.assertEqual(len(get_trace(srv2.port, TRACES[0])["spans"]), 4)
        self.assertTrue(os.path.exists(segs[0]))
        self.assertEqual(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        self.assertFalse(os.path.exists(os.path.join(tel, "SEALING")))
        self.assertNotRegex(srv2.logs(), r"interrupted seal")

    def test_torn_seal_manifest_is_ignored(self):
        """A manifest whose checksum fails was cut short while being written, before its
        seal wrote any segment: ignored (the WAL still holds everything after the
        checkpoint)."""
        srv = self.start(**{"telemetry.seal_interval": "1h"})
        post(srv.otlp_port, trace_body(TRACES[0], "svc", 4, time.time_ns()))
        srv.send_signal(signal.SIGKILL)
        srv.wait(scaled(10))
        tel = os.path.join(self.dir, "telemetry")
        with open(os.path.join(tel, "SEALING"), "w") as f:
            f.write("%d sum=0000000000000000\n%s\n" % (1 << 40, os.path.join(tel, "parts/y.spans")))
        srv2 = self.start()
        srv2.wait_log(r"warn telemetry \"SEALING fails its checksum, ignored\"")
        self.assertEqual(len(get_trace(srv2.port, TRACES[0])["spans"]), 4)
        self.assertGreater(srv2.metric("cairn_telemetry_wal_replayed_total"), 0)
        self.assertFalse(os.path.exists(os.path.join(tel, "SEALING")))

    def test_answered_spans_are_in_the_derived_tables(self):
        """A client that had its answer finds its spans in the derived tables (services, the
        spans-per-trace limit's count) however soon it asks: six clients at once, so that
        group commits hold several batches."""
        srv = self.start(**{"telemetry.max_spans_per_trace": "6"})
        errors = []

        def client(c):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=scaled(10))
            try:
                for i in range(15):
                    svc = "rw-%d-%d" % (c, i)
                    body = trace_body("%032x" % 0, svc, 5, time.time_ns())
                    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    body["resourceSpans"][0]["scopeSpans"][0]["spans"] = [
                        dict(sp, traceId="%032x" % (0xbeef000000 + c * 100000 + i * 1000 + k))
                        for k in range(100) for sp in spans]
                    post(srv.otlp_port, body)
                    conn.request("GET", "/api/v1/services")
                    names = [x["name"] if isinstance(x, dict) else x
                             for x in json.loads(conn.getresponse().read())["services"]]
                    if svc not in names:
                        errors.append(svc)
                    # The spans-per-trace limit counts the 5 just answered: 1 of 3 more fits.
                    tid = "%032x" % (0xbeef000000 + c * 100000 + i * 1000)
                    more = trace_body(tid, svc, 3, time.time_ns())
                    for k, sp in enumerate(more["resourceSpans"][0]["scopeSpans"][0]["spans"]):
                        sp["spanId"] = "%016x" % (0x100 + k)
                    if post(srv.otlp_port, more).get("partialSuccess", {}).get(
                            "rejectedSpans") != "2":
                        errors.append(tid)
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_small_segments_are_compacted(self):
        srv = self.start()
        t0 = time.time_ns()
        before = {}
        for i in range(5):
            tid = TRACES[i]
            post(srv.otlp_port, trace_body(tid, "svc-%d" % i, 4, t0 + i))
            before[tid] = get_trace(srv.port, tid)
            wait_metric(srv, "cairn_telemetry_seals_total", i + 1, result="ok")
        wait_metric(srv, "cairn_telemetry_compactions_total", 1)
        srv.wait_log(r"info telemetry \"segments compacted\" inputs=[45] ")
        self.assertLessEqual(srv.metric("cairn_telemetry_segments"), 2)
        for tid, want in before.items():
            self.assertEqual(get_trace(srv.port, tid), want, tid)
        self.assertEqual(srv.stop(), 0)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "telemetry/COMPACTING")))
        srv2 = self.start()
        for tid, want in before.items():
            self.assertEqual(get_trace(srv2.port, tid), want, tid)

    def test_small_log_segments_are_compacted(self):
        srv = self.start()
        before = {}
        for i in range(5):
            tid = TRACES[10 + i]
            logs = {"resourceLogs": [{
                "resource": {"attributes": [{"key": "service.name",
                                             "value": {"stringValue": "svc-%d" % i}}]},
                "scopeLogs": [{"scope": {"name": "logger", "version": "2"}, "logRecords": [
                    {"timeUnixNano": str(time.time_ns()), "severityNumber": 17,
                     "severityText": "ERROR", "body": {"stringValue": "boom %d" % n},
                     "traceId": tid, "spanId": "%016x" % (n + 1),
                     "attributes": [{"key": "code.lineno", "value": {"intValue": str(n)}},
                                    {"key": "k", "value": {"stringValue": "v%d" % n}}]}
                    for n in range(3)]}]}]}
            req = urllib.request.Request("http://127.0.0.1:%d/v1/logs" % srv.otlp_port,
                                         data=json.dumps(logs).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=scaled(10)) as r:
                self.assertEqual(r.status, 200)
            with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/traces/%s/logs"
                                        % (srv.port, tid), timeout=scaled(10)) as r:
                before[tid] = json.loads(r.read())
            self.assertEqual(len(before[tid]["logs"]), 3)
            wait_metric(srv, "cairn_telemetry_seals_total", i + 1, result="ok")
        wait_metric(srv, "cairn_telemetry_compactions_total", 1)
        srv.wait_log(r"info telemetry \"segments compacted\" inputs=[45] .*\.logs$")
        self.assertLessEqual(len(glob.glob(os.path.join(self.dir, "telemetry/parts/*/*.logs"))), 2)
        for tid, want in before.items():
            with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/traces/%s/logs"
                                        % (srv.port, tid), timeout=scaled(10)) as r:
                self.assertEqual(json.loads(r.read()), want, tid)

    def test_cut_short_compaction_is_finished_at_start(self):
        # A crash after the merged segment and the manifest were written, before the inputs
        # were removed: the next start removes the inputs the manifest names.
        srv = self.start()
        post(srv.otlp_port, trace_body(TRACES[0], "a", 2, time.time_ns()))
        wait_metric(srv, "cairn_telemetry_seals_total", 1, result="ok")
        self.assertEqual(srv.stop(), 0)
        segs = glob.glob(os.path.join(self.dir, "telemetry/parts/*/*.spans"))
        self.assertEqual(len(segs), 1)
        with open(os.path.join(self.dir, "telemetry/COMPACTING"), "w") as f:
            f.write(segs[0] + "\n")
        srv2 = self.start()
        srv2.wait_log(r"info telemetry \"compacted segment removed after a restart\"")
        self.assertFalse(os.path.exists(segs[0]))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "telemetry/COMPACTING")))
        self.assertIsNone(get_trace(srv2.port, TRACES[0]))

    def test_compaction_cut_before_its_segment_keeps_the_inputs(self):
        # A crash after the manifest was written, before the merged segment appeared: the
        # next start keeps the inputs (the manifest's merged segment is not there) and serves
        # each span once.
        srv = self.start()
        post(srv.otlp_port, trace_body(TRACES[0], "a", 2, time.time_ns()))
        wait_metric(srv, "cairn_telemetry_seals_total", 1, result="ok")
        before = get_trace(srv.port, TRACES[0])
        self.assertEqual(srv.stop(), 0)
        segs = glob.glob(os.path.join(self.dir, "telemetry/parts/*/*.spans"))
        self.assertEqual(len(segs), 1)
        merged = os.path.join(os.path.dirname(segs[0]), "00000000000000ff.spans")
        with open(os.path.join(self.dir, "telemetry/COMPACTING"), "w") as f:
            f.write("merged:%s\n%s\n" % (merged, segs[0]))
        srv2 = self.start()
        srv2.wait_log(r"info telemetry \"compaction cut short, its inputs kept\"")
        self.assertTrue(os.path.exists(segs[0]))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "telemetry/COMPACTING")))
        self.assertEqual(get_trace(srv2.port, TRACES[0]), before)

    def test_retention_applies_without_ingest(self):
        """Retention follows each seal, but a store that receives nothing seals nothing: a
        restart with a smaller disk budget removes what is over it at once, idle."""
        srv = self.start()
        t0 = time.time_ns()
        for i in range(2):
            post(srv.otlp_port, trace_body(TRACES[i], "idle-%d" % i, 3, t0 + i))
            wait_metric(srv, "cairn_telemetry_seals_total", i + 1, result="ok")
        self.assertEqual(srv.stop(), 0)
        srv2 = self.start(**{"telemetry.disk_budget": "1"})
        wait_metric(srv2, "cairn_telemetry_retention_removed_total", 2)
        self.assertEqual(srv2.metric("cairn_telemetry_segments"), 0)
        self.assertEqual(srv2.metric("cairn_telemetry_seals_total", result="ok"), 0)
        self.assertEqual(glob.glob(os.path.join(self.dir, "telemetry/parts/*/*.spans")), [])

    def test_trace_map_forgets_compacted_segments(self):
        """The map from trace IDs to segments drops the entries of segments compaction (or
        retention) removed, instead of holding every trace ever sealed, and keeps the rest."""
        srv = self.start()
        t0 = time.time_ns()
        tids = []
        for k in range(5):
            spans = []
            for i in range(300):
                tid = "%032x" % (0xfeed0000 + k * 1000 + i)
                tids.append(tid)
                spans += trace_body(tid, "svc-%d" % k, 1, t0 + i)["resourceSpans"][0][
                    "scopeSpans"][0]["spans"]
            body = trace_body(tids[-1], "svc-%d" % k, 1, t0)
            body["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans
            post(srv.otlp_port, body)
            wait_metric(srv, "cairn_telemetry_seals_total", k + 1, result="ok")
        wait_metric(srv, "cairn_telemetry_compactions_total", 1)
        # 4 segments of 300 traces merged: their 1200 entries were dropped, the merged
        # segment's 1200 and the fifth segment's 300 stay.
        poll_until(lambda: srv.metric("cairn_telemetry_trace_map_entries") == 1500, scaled(10),
                   what="trace map entries at 1500, were %s"
                   % srv.metric("cairn_telemetry_trace_map_entries"))
        # 1500 entries fit the smallest map: 4096 cells of 8 bytes.
        self.assertEqual(srv.metric("cairn_telemetry_trace_map_bytes"), 4096 * 8)
        for tid in tids[::29] + tids[-1:]:
            t = get_trace(srv.port, tid)
            self.assertIsNotNone(t, tid)

    def test_segments_renumbered_after_many_compactions(self):
        """Slots of compacted segments are dropped from the segment table once they are half
        of it, and the trace map renumbered with it: every trace is still found by ID."""
        srv = self.start(**{"log.level": "debug"})
        t0 = time.time_ns()
        before = {}
        for i in range(24):
            tid = "%032x" % (0xdead0000 + i)
            post(srv.otlp_port, trace_body(tid, "renum-%d" % (i % 3), 2, t0 + i))
            before[tid] = get_trace(srv.port, tid)
            self.assertIsNotNone(before[tid], tid)
            wait_metric(srv, "cairn_telemetry_seals_total", i + 1, result="ok")
        m = srv.wait_log(r"debug telemetry \"removed segments pruned\" .*slots_dropped=(\d+)")
        self.assertGreaterEqual(int(m.group(1)), 16)
        for tid, want in before.items():
            self.assertEqual(get_trace(srv.port, tid), want, tid)
        # A segment sealed after the renumbering is found too.
        post(srv.otlp_port, trace_body(TRACES[0], "after", 2, t0 + 100))
        wait_metric(srv, "cairn_telemetry_seals_total", 25, result="ok")
        self.assertIsNotNone(get_trace(srv.port, TRACES[0]))
        for tid, want in before.items():
            self.assertEqual(get_trace(srv.port, tid), want, tid)

    def test_disk_budget_removes_whole_oldest_segments(self):
        srv = self.start(**{"telemetry.disk_budget": "1"})
        t0 = time.time_ns()
        post(srv.otlp_port, trace_body(TRACES[0], "a", 3, t0))
        wait_metric(srv, "cairn_telemetry_seals_total", 1, result="ok")
        wait_metric(srv, "cairn_telemetry_retention_removed_total", 1)
        srv.wait_log(r"info telemetry \"segment removed by retention\".*reason=disk_budget")
        self.assertEqual(srv.metric("cairn_telemetry_segments"), 0)
        self.assertEqual(glob.glob(os.path.join(self.dir, "telemetry/parts/*/*.spans")), [])
        self.assertEqual(srv.metric("cairn_telemetry_trace_map_entries"), 1)  # under 1024


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]])
