#!/usr/bin/env python3
"""Query URLs for bench/query.sh from the probes bench/qgen.c sampled.

  qurls.py PROBES OUTDIR REPS END_NS RANGE_S CAIRN_API_PORT CLICKHOUSE_HTTP_PORT

Writes OUTDIR/{trace,attr,topo,logs}.{cairn,clickhouse}: REPS lines each, line i of both
files the same query (same trace ID, same hour, same values) for the two systems; a line of
several tab-separated URLs is one operation (qbench.c). Hours start on 10 s boundaries, the
buckets of Cairn's derived tables, so both systems count over the same range."""
import random, sys, urllib.parse as up
probes, out, reps, end, rng, api, ch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
H = 3600 * 10**9
lo, hi = end - rng * 10**9, end
kinds = {"trace": [], "err": [], "log": []}
for line in open(probes):
    f = line.split()
    kinds[f[0]].append(f[1:])
rnd = random.Random(42)
B = 10 * 10**9  # Cairn's derived tables count in 10 s buckets: hours start on one
def hour(t):  # an hour holding t, inside the data
    s = min(max(t - rnd.randrange(0, H), lo), hi - H) // B * B
    if t >= s + H:  # floored past it
        s += B
    return s, s + H
cairn = lambda p, **a: "http://127.0.0.1:%s%s?%s" % (api, p, up.urlencode(a, doseq=True))
chq = lambda sql: "http://127.0.0.1:%s/?query=%s" % (ch, up.quote(" ".join(sql.split())))
lines = {k: ([], []) for k in ("trace", "attr", "topo", "logs")}
for i in range(reps):
    tid = rnd.choice(kinds["trace"])[0]
    lines["trace"][0].append("http://127.0.0.1:%s/api/v1/traces/%s" % (api, tid))
    lines["trace"][1].append(chq("SELECT * FROM spans_by_trace WHERE trace_id = '%s'" % tid))
    svc, user, t = rnd.choice(kinds["err"])
    a, b = hour(int(t))
    lines["attr"][0].append(cairn("/api/v1/traces", service=svc, start="%dns" % a, end="%dns" % b,
        limit=20, tag=["http.response.status_code=500", "enduser.id=" + user]))
    lines["attr"][1].append(chq("""SELECT trace_id, min(start_time) AS t FROM spans
        WHERE service = '%s' AND start_time >= %d AND start_time < %d
        AND attr_values[indexOf(attr_keys, 'http.response.status_code')] = '500'
        AND attr_values[indexOf(attr_keys, 'enduser.id')] = '%s'
        GROUP BY trace_id ORDER BY t DESC LIMIT 20""" % (svc, a, b, user)))
    a, b = hour(int(rnd.choice(kinds["trace"])[1]))
    lines["topo"][0].append(cairn("/api/v1/topology", start="%dns" % a, end="%dns" % b))
    lines["topo"][1].append(chq("""SELECT service, count() AS n, countIf(status_code = 2) AS errors,
        quantiles(0.5, 0.95, 0.99)(duration) FROM spans
        WHERE (kind = 2 OR parent_span_id = '') AND start_time >= %d AND start_time < %d
        GROUP BY service""" % (a, b)) + "\t" + chq("""SELECT caller, callee, count() AS n,
        countIf(c_status = 2 OR s_status = 2) AS errors, quantiles(0.5, 0.95, 0.99)(s_duration)
        FROM (SELECT trace_id, span_id, service AS caller, status_code AS c_status FROM spans
              WHERE kind = 3 AND start_time >= %d AND start_time < %d)
        ALL INNER JOIN
             (SELECT trace_id, parent_span_id AS span_id, service AS callee,
                     status_code AS s_status, duration AS s_duration FROM spans
              WHERE kind = 2 AND start_time >= %d AND start_time < %d)
        USING (trace_id, span_id) GROUP BY caller, callee""" % (a - 60 * 10**9, b, a, b)))
    term, t = rnd.choice(kinds["log"])
    a, b = hour(int(t))
    lines["logs"][0].append(cairn("/api/v1/logs", start="%dns" % a, end="%dns" % b, q=term, limit=20))
    lines["logs"][1].append(chq("""SELECT * FROM logs WHERE time >= %d AND time < %d
        AND positionCaseInsensitive(body, '%s') > 0 ORDER BY time DESC LIMIT 20""" % (a, b, term)))
for k, (c, h) in lines.items():
    open("%s/%s.cairn" % (out, k), "w").write("\n".join(c) + "\n")
    open("%s/%s.clickhouse" % (out, k), "w").write("\n".join(h) + "\n")
