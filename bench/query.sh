#!/usr/bin/env bash
# Queries: the same synthetic spans and logs (bench/qgen.c: bench/otlpgen.c's traces spread
# over HOURS hours ending now, one log record per server span) loaded into `cairn up` over
# OTLP/HTTP and into Debian's ClickHouse 18.16, then the same four queries against both over
# the same time ranges:
#   trace   trace by ID (random existing traces; ClickHouse: a trace_id-ordered copy of the
#           spans kept by a materialized view, index_granularity 1024, as Jaeger's
#           ClickHouse plugin keeps a trace_id-ordered table)
#   attr    one hour, service + http.response.status_code=500 + enduser.id=<user>: the
#           newest 20 matching traces (probes are failed requests, so each finds one or more)
#   topo    one hour: services with request count, errors and p50/p95/p99, and the
#           caller -> callee edges with the same (ClickHouse: client/server span join, and
#           a GROUP BY service)
#   logs    one hour, full text: the newest 20 log records holding a request ID
# Each server alone on core 0 (SERVER_CORE), the loaders and the query client on core 1
# (LOAD_CORE). Queries run one at a time, REPS per kind and system, in ROUNDS alternating
# rounds (which system goes first alternates). Prints p50/p99 side by side and the ratios,
# then each server's CPU time per query (from /proc/PID/stat, steady under load).
#
#   bench/query.sh                                   # 10M spans over 8 h, 100 reps
#   SPANS=2000000 HOURS=2 REPS=40 bench/query.sh
#   KEEP=1 bench/query.sh                            # keep the scratch directory
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
CAIRN="${CAIRN_BIN:-$here/../build/release/cairn}"
SPANS="${SPANS:-10000000}"
HOURS="${HOURS:-8}"
REPS="${REPS:-100}"
ROUNDS="${ROUNDS:-5}"
PER_BODY="${PER_BODY:-500}"
CONNS="${CONNS:-4}"
SERVER_CORE="${SERVER_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
KEEP="${KEEP:-0}"

for tool in clickhouse-server curl taskset cc python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/deps.sh --bench)" >&2; exit 1; }
done
[ -x "$CAIRN" ] || { echo "bench: $CAIRN missing (make build)" >&2; exit 1; }
[ "$HOURS" -ge 1 ] || { echo "bench: HOURS must be at least 1" >&2; exit 1; }
[ "$REPS" -ge "$ROUNDS" ] || { echo "bench: REPS must be at least ROUNDS" >&2; exit 1; }

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
t_start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t_start ))s"; }

cc -O2 -I"$here" -o "$tmp/qgen" "$here/qgen.c"
cc -O2 -pthread -o "$tmp/otlpload" "$here/otlpload.c"
cc -O2 -o "$tmp/qbench" "$here/qbench.c" -lcurl
# The data ends two minutes ago: inside the ring of the tables Cairn derives at ingest (24 h).
end_ns=$(( ($(date +%s) - 120) * 1000000000 ))
range_s=$(( HOURS * 3600 ))
gen() { "$tmp/qgen" "$1" "$SPANS" "$PER_BODY" "$end_ns" "$range_s"; }
echo "[$(elapsed)] data: $SPANS spans over $HOURS h and their logs, generated as each loader reads them"
gen probes >"$tmp/probes.txt" 2>"$tmp/gen.txt"
cat "$tmp/gen.txt"
n_logs=$(sed -E 's/.* logs=([0-9]+).*/\1/' "$tmp/gen.txt")

# ---- Cairn: load ----
api_port=$(free_port)
otlp_port=$(free_port)
taskset -c "$SERVER_CORE" "$CAIRN" up --workers 1 --api-listen "127.0.0.1:$api_port" \
  --set otlp.listen="127.0.0.1:$otlp_port" --set data_dir="$tmp/cairn" \
  --set telemetry.memory=8g --set otlp.max_body_bytes=64m --log-level warn \
  >"$tmp/cairn.log" 2>&1 &
cairn_pid=$!
pids+=($cairn_pid)
wait_port "$otlp_port"
wait_port "$api_port"
metric() { curl -s "127.0.0.1:$api_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# Progress: records stored, every 10 s, until the loaders are done.
( while sleep 10; do
    echo "[$(elapsed)] cairn: $(metric 'cairn_telemetry_records_total{signal="spans"}') spans, $(metric 'cairn_telemetry_records_total{signal="logs"}') logs stored"
  done ) &
prog_pid=$!
pids+=($prog_pid)
echo "[$(elapsed)] cairn: loading spans..."
gen spans.bin 2>/dev/null | taskset -c "$LOAD_CORE" "$tmp/otlpload" 127.0.0.1 "$otlp_port" /dev/stdin "$CONNS"
echo "[$(elapsed)] cairn: loading logs..."
gen logs.bin 2>/dev/null | OTLPLOAD_PATH=/v1/logs taskset -c "$LOAD_CORE" "$tmp/otlpload" \
  127.0.0.1 "$otlp_port" /dev/stdin "$CONNS"
kill "$prog_pid"
# At rest: the head sealed into segments, and compaction done (segment count steady 5 s).
for _ in $(seq 1 1200); do [ "$(metric cairn_telemetry_head_bytes)" = 0 ] && break; sleep 0.1; done
last=-1
for _ in $(seq 1 120); do
  n=$(metric cairn_telemetry_segments)
  [ "$n" = "$last" ] && break
  last=$n
  sleep 5
done
echo "[$(elapsed)] cairn: at rest, $(metric cairn_telemetry_segments) segments, $(metric cairn_telemetry_segment_bytes) bytes"

# ---- ClickHouse: load ----
ch_http=$(free_port)
ch_tcp=$(free_port)
mkdir -p "$tmp/ch"/{data,tmp,log,user_files,format_schemas}
cat > "$tmp/ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$tmp/ch/log/server.log</log><errorlog>$tmp/ch/log/err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$ch_http</http_port>
  <tcp_port>$ch_tcp</tcp_port>
  <path>$tmp/ch/data/</path>
  <tmp_path>$tmp/ch/tmp/</tmp_path>
  <user_files_path>$tmp/ch/user_files/</user_files_path>
  <format_schema_path>$tmp/ch/format_schemas/</format_schema_path>
  <users_config>$tmp/ch/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>1073741824</mark_cache_size>
</yandex>
XML
cat > "$tmp/ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>8000000000</max_memory_usage><max_threads>1</max_threads></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
taskset -c "$SERVER_CORE" clickhouse-server --config-file="$tmp/ch/config.xml" >"$tmp/ch/stdout" 2>&1 &
ch_pid=$!
pids+=($ch_pid)
for _ in $(seq 1 300); do curl -s "127.0.0.1:$ch_http/ping" >/dev/null && break; sleep 0.1; done
q() { curl -s --fail "127.0.0.1:$ch_http/" --data-binary "$1"; }
day='intDiv(start_time, 86400000000000)'
q "CREATE TABLE spans (trace_id String, span_id String, parent_span_id String, service String,
   operation String, kind UInt8, start_time UInt64, duration UInt64, status_code UInt8,
   attr_keys Array(String), attr_values Array(String), res_keys Array(String),
   res_values Array(String)) ENGINE = MergeTree() PARTITION BY $day
   ORDER BY (service, operation, start_time)"
q "CREATE MATERIALIZED VIEW spans_by_trace ENGINE = MergeTree() PARTITION BY $day
   ORDER BY trace_id SETTINGS index_granularity = 1024 AS SELECT * FROM spans"
q "CREATE TABLE logs (trace_id String, span_id String, service String, time UInt64,
   severity UInt8, body String, attr_keys Array(String), attr_values Array(String))
   ENGINE = MergeTree() PARTITION BY intDiv(time, 86400000000000) ORDER BY (service, time)"
ch_load() { # TABLE: qgen's rows in inserts of 1M rows, one after the other, streamed (-T -)
  export ch_http
  gen "$1.tsv" 2>/dev/null | taskset -c "$LOAD_CORE" split -l 1000000 --filter="curl -s --fail -o /dev/null -T - -X POST \
    '127.0.0.1:$ch_http/?query=INSERT%20INTO%20$1%20FORMAT%20TabSeparated' &&
    echo \"[\$(( \$(date +%s) - $t_start ))s] clickhouse: $1 +1M rows\"" - "$tmp/ch-$1."
}
ch_load spans
ch_load logs
# At rest: no merge running (at most 10 min).
for _ in $(seq 1 600); do [ "$(q 'SELECT count() FROM system.merges')" = 0 ] && break; sleep 1; done
echo "[$(elapsed)] clickhouse: at rest, $(q "SELECT count() FROM system.parts WHERE active AND table IN ('spans', '.inner.spans_by_trace', 'logs')") parts, $(q "SELECT sum(bytes_on_disk) FROM system.parts WHERE active") bytes"
ch_spans=$(q "SELECT count() FROM spans")
ch_logs=$(q "SELECT count() FROM logs")
c_spans=$(metric 'cairn_telemetry_records_total{signal="spans"}')
c_logs=$(metric 'cairn_telemetry_records_total{signal="logs"}')
echo "stored: cairn $c_spans spans, $c_logs logs; clickhouse $ch_spans spans, $ch_logs logs"
[ "$c_spans" = "$ch_spans" ] && [ "$c_logs" = "$ch_logs" ] && [ "$c_logs" = "$n_logs" ] ||
  { echo "bench: the two stores hold different data" >&2; exit 1; }

# ---- Queries: the same probes and hours for both ----
python3 "$here/qurls.py" "$tmp/probes.txt" "$tmp" "$REPS" "$end_ns" "$range_s" "$api_port" "$ch_http"

# The same answers: the first probe of each search, by both (trace IDs, record counts).
check() { # KIND
  local c h
  c=$(head -1 "$tmp/$1.cairn")
  h=$(head -1 "$tmp/$1.clickhouse")
  case $1 in
    trace) echo "check trace: cairn $(curl -s "$c" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["spans"]))') spans, clickhouse $(curl -s "$h" | wc -l) spans" ;;
    attr) echo "check attr: cairn $(curl -s "$c" | python3 -c 'import json,sys; print(" ".join(sorted(t["traceId"] for t in json.load(sys.stdin)["traces"])))'), clickhouse $(curl -s "$h" | cut -f1 | sort | tr '\n' ' ')" ;;
    topo) echo "check topo: cairn $(curl -s "$c" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["nodes"]), "nodes", len(d["edges"]), "edges", sum(e["count"] for e in d["edges"]), "calls")'), clickhouse $(curl -s "${h%%$'\t'*}" | wc -l) nodes $(curl -s "${h#*$'\t'}" | awk '{n++; s += $3} END {print n, "edges", s, "calls"}')" ;;
    logs) echo "check logs: cairn $(curl -s "$c" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["logs"]))') records, clickhouse $(curl -s "$h" | wc -l) records" ;;
  esac
}
for k in trace attr topo logs; do check "$k"; done

# Warm-up (not measured): a few queries of each kind on each system.
for k in trace attr topo logs; do
  for s in cairn clickhouse; do taskset -c "$LOAD_CORE" "$tmp/qbench" "$tmp/$k.$s" 0 3 >/dev/null; done
done
per=$(( REPS / ROUNDS ))
# Server CPU (user + system, in clock ticks) from /proc/PID/stat around each run of queries:
# steadier than latencies when the machine is shared.
cpu_ticks() { # SYSTEM
  local p=$cairn_pid
  [ "$1" = clickhouse ] && p=$ch_pid
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="cairn clickhouse"; else order="clickhouse cairn"; fi
  for k in trace attr topo logs; do
    for s in $order; do
      c0=$(cpu_ticks "$s")
      taskset -c "$LOAD_CORE" "$tmp/qbench" "$tmp/$k.$s" $(( (r - 1) * per )) "$per" >>"$tmp/lat.$k.$s"
      echo $(( $(cpu_ticks "$s") - c0 )) >>"$tmp/cpu.$k.$s"
    done
  done
  echo "[$(elapsed)] round $r/$ROUNDS done"
done

pct() { # FILE P
  awk '{print $1}' "$1" | sort -g | awk -v p="$2" '{a[NR] = $1} END {i = int(p * NR + 0.999999); if (i < 1) i = 1; printf "%.2f", a[i]}'
}
echo
echo "$(( SPANS )) spans and $n_logs logs over $HOURS h; $((per * ROUNDS)) queries of each kind per system, $ROUNDS alternating rounds"
printf '%-7s %12s %12s %12s %12s %9s %9s\n' query 'cairn p50' 'cairn p99' 'ch p50' 'ch p99' 'p50 ratio' 'p99 ratio'
for k in trace attr topo logs; do
  c50=$(pct "$tmp/lat.$k.cairn" 0.5); c99=$(pct "$tmp/lat.$k.cairn" 0.99)
  h50=$(pct "$tmp/lat.$k.clickhouse" 0.5); h99=$(pct "$tmp/lat.$k.clickhouse" 0.99)
  printf '%-7s %9s ms %9s ms %9s ms %9s ms %8.3fx %8.3fx\n' "$k" "$c50" "$c99" "$h50" "$h99" \
    "$(awk -v a="$c50" -v b="$h50" 'BEGIN {print a / b}')" "$(awk -v a="$c99" -v b="$h99" 'BEGIN {print a / b}')"
done
echo "(ratio = cairn / clickhouse; lower is better for cairn)"
tck=$(getconf CLK_TCK)
cpu_ms() { # FILE: server CPU ms per query
  awk -v t="$tck" -v n="$((per * ROUNDS))" '{s += $1} END {printf "%.2f", s * 1000 / t / n}' "$1"
}
printf '%-7s %16s %16s %9s\n' query 'cairn cpu/query' 'ch cpu/query' ratio
for k in trace attr topo logs; do
  cc=$(cpu_ms "$tmp/cpu.$k.cairn"); hc=$(cpu_ms "$tmp/cpu.$k.clickhouse")
  printf '%-7s %13s ms %13s ms %8.3fx\n' "$k" "$cc" "$hc" "$(awk -v a="$cc" -v b="$hc" 'BEGIN {print (b > 0 ? a / b : 0)}')"
done
echo "(server CPU: user + system time of the server process over the measured queries; load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "[$(elapsed)] done"
