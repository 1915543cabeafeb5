"""Trace and logs search over sealed segments (store.h cn_store_scan_*_where): the store
checks service, name, kind, status and duration on the cheap columns and skips segments by
their token blooms; the answers must be the same as a full read, with less read.

Eight batches, each sealed before the next (compaction may merge them): 80 traces (frontend ->
payment), every tenth failing with http.status_code=500 (an integer attribute), a user per
trace (a string attribute), one log per payment span with the trace's order number, and a
few logs whose bodies are numbers or booleans (the blooms hold no such bodies)."""

import time

from cairn import CairnTestCase, main, poll_until, scaled
from test_query import api, attr, hexid, post

NOW = time.time_ns()
BASE = NOW - 600 * 10**9  # ten minutes ago: inside a one-hour range
MS = 10**6
BATCHES = 8
PER_BATCH = 10
# A value no segment holds, of ten tokens and longer than the blooms' whole values: a bloom
# answers "may hold" for it only if all ten tokens are false positives (about 0.008^10).
ABSENT = "-".join("nosuch%d" % k for k in range(10))


def batch(b):
    spans = {"frontend": [], "payment": []}
    logs = []
    for k in range(PER_BATCH):
        i = b * PER_BATCH + k
        tid = hexid(0xB000 + i, 32)
        t0 = BASE + i * 1000 * MS
        fail = i % 10 == 3
        root = hexid(i * 10 + 1, 16)
        spans["frontend"].append({
            "traceId": tid, "spanId": root, "name": "GET /pay", "kind": 2,
            "startTimeUnixNano": str(t0), "endTimeUnixNano": str(t0 + (20 + i) * MS),
            "attributes": [attr("enduser.id", "user-%05d" % i)]})
        spans["payment"].append({
            "traceId": tid, "spanId": hexid(i * 10 + 2, 16), "parentSpanId": root,
            "name": "charge", "kind": 2, "startTimeUnixNano": str(t0 + MS),
            "endTimeUnixNano": str(t0 + (10 + i) * MS),
            "attributes": [attr("http.status_code", 500 if fail else 200),
                           attr("enduser.id", "user-%05d" % i), attr("retry", i % 2 == 0)],
            "status": {"code": 2 if fail else 1}})
        logs.append({"timeUnixNano": str(t0 + 2 * MS), "severityNumber": 17 if fail else 9,
                     "body": {"stringValue": "charge for order ord-%06d %s" %
                              (i, "failed: Connection refused" if fail else "done")},
                     "traceId": tid, "spanId": hexid(i * 10 + 2, 16),
                     "attributes": [attr("order.id", "ord-%06d" % i)]})
    # Bodies that are not strings: the text search reads them as text, the blooms do not.
    logs.append({"timeUnixNano": str(BASE + (b * PER_BATCH) * 1000 * MS + 5 * MS),
                 "severityNumber": 9, "body": {"intValue": str(4200 + b)}})
    logs.append({"timeUnixNano": str(BASE + (b * PER_BATCH) * 1000 * MS + 6 * MS),
                 "severityNumber": 9, "body": {"boolValue": b % 2 == 0}})
    traces = {"resourceSpans": [
        {"resource": {"attributes": [attr("service.name", s)]},
         "scopeSpans": [{"scope": {"name": "t"}, "spans": spans[s]}]} for s in spans]}
    logs = {"resourceLogs": [{"resource": {"attributes": [attr("service.name", "payment")]},
                              "scopeLogs": [{"scope": {"name": "t"}, "logRecords": logs}]}]}
    return traces, logs


class ScanTest(CairnTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.start_class(settings={"telemetry.seal_interval": "1s"})
        cls.port = cls.srv.port
        for b in range(BATCHES):
            traces, logs = batch(b)
            assert post(cls.srv.otlp_port, "/v1/traces", traces) == 200
            assert post(cls.srv.otlp_port, "/v1/logs", logs) == 200
            seals = cls.srv.metric("cairn_telemetry_seals_total", result="ok")
            # Sealed: the head is empty, so every answer below comes from segment files.
            poll_until(lambda: cls.srv.metric("cairn_telemetry_seals_total", result="ok") > seals
                       and cls.srv.metric("cairn_telemetry_head_bytes") == 0,
                       scaled(20), what="seal")
        assert cls.srv.metric("cairn_telemetry_segments") >= 2

    def traces(self, params):
        st, j = api(self.port, "/api/v1/traces", params + [("limit", "1000")])
        self.assertEqual(st, 200, j)
        return sorted(t["traceId"] for t in j["traces"]), j["scanned"]

    def logs(self, params):
        st, j = api(self.port, "/api/v1/logs", params + [("limit", "1000")])
        self.assertEqual(st, 200, j)
        return j["logs"], j["scanned"]

    def test_service_and_conditions_on_cheap_columns(self):
        ids, scanned = self.traces([("service", "payment")])
        self.assertEqual(len(ids), BATCHES * PER_BATCH)
        self.assertEqual(scanned, BATCHES * PER_BATCH)  # frontend's spans never built
        ids, scanned = self.traces([("service", "payment"), ("status", "error")])
        self.assertEqual(ids, [hexid(0xB000 + i, 32) for i in range(3, 80, 10)])
        self.assertEqual(scanned, 8)
        # payment's span of trace i lasts 9 + i ms.
        ids, scanned = self.traces([("service", "payment"), ("minDuration", "80ms")])
        self.assertEqual(ids, [hexid(0xB000 + i, 32) for i in range(71, 80)])
        self.assertEqual(scanned, 9)
        ids, scanned = self.traces([("service", "nosuch")])
        self.assertEqual((ids, scanned), ([], 0))

    def test_string_predicate_prunes_segments(self):
        ids, _ = self.traces([("tag", "enduser.id=user-00042")])
        self.assertEqual(ids, [hexid(0xB000 + 42, 32)])
        ids, scanned = self.traces([("tag", "enduser.id=" + ABSENT)])
        self.assertEqual((ids, scanned), ([], 0))  # every segment skipped by its bloom
        # The same value as a regex: no bloom, every span read.
        ids, scanned = self.traces([("tag", "enduser.id=~" + ABSENT)])
        self.assertEqual((ids, scanned), ([], 2 * BATCHES * PER_BATCH))

    def test_integer_and_boolean_predicates_still_match(self):
        # Integers and booleans are not in the blooms: these must not prune.
        ids, _ = self.traces([("service", "payment"), ("tag", "http.status_code=500")])
        self.assertEqual(ids, [hexid(0xB000 + i, 32) for i in range(3, 80, 10)])
        ids, _ = self.traces([("tag", "http.status_code=500"), ("tag", "enduser.id=user-00013")])
        self.assertEqual(ids, [hexid(0xB000 + 13, 32)])
        ids, _ = self.traces([("service", "payment"), ("tag", "retry=true")])
        self.assertEqual(len(ids), BATCHES * PER_BATCH // 2)

    def test_logs_terms_prune_segments(self):
        logs, scanned = self.logs([("q", "ord-000042")])
        self.assertEqual([l["body"]["stringValue"] for l in logs],
                         ["charge for order ord-000042 done"])
        logs, scanned = self.logs([("q", "connection refused"), ("q", "ORD-000073")])
        self.assertEqual(len(logs), 1)
        self.assertIn("ord-000073 failed", logs[0]["body"]["stringValue"])
        logs, scanned = self.logs([("q", ABSENT)])
        self.assertEqual((logs, scanned), ([], 0))
        logs, _ = self.logs([("attr", "order.id=ord-000005")])
        self.assertEqual(len(logs), 1)

    def test_logs_number_and_boolean_bodies_still_match(self):
        logs, _ = self.logs([("q", "4203")])
        self.assertEqual([l["body"] for l in logs], [{"intValue": "4203"}])
        logs, _ = self.logs([("q", "true")])
        self.assertEqual(len(logs), BATCHES // 2)

    def test_severity_and_trace_id(self):
        logs, scanned = self.logs([("severity", "error")])
        self.assertEqual(len(logs), 8)
        self.assertEqual(scanned, 8)  # read from the cheap columns, not built
        logs, _ = self.logs([("traceId", hexid(0xB000 + 33, 32))])
        self.assertEqual(len(logs), 1)
        self.assertIn("ord-000033", logs[0]["body"]["stringValue"])


if __name__ == "__main__":
    main()
