#!/usr/bin/env bash
# Telemetry ingest: the same synthetic spans (bench/otlpgen.c: 10 services, traces of depth
# 3-5, 11 attributes, ~400 bytes of OTLP protobuf per span) sent to `cairn up` over
# OTLP/HTTP protobuf and loaded into ClickHouse (Debian's 18.16) with a Jaeger-like MergeTree
# schema ordered by service, operation, time. Each server runs alone on core 0; the loaders
# run on core 1. Reports spans/s to durable storage (acknowledged after the WAL's fdatasync),
# spans/s until everything is sealed into segments, CPU time per span (the server's user +
# system time, which the machine's other load does not inflate), bytes per span on disk,
# peak RSS, and the ratios; and Cairn's CPU per span by thread (sealer, WAL, worker). 3
# million spans by default: long enough for Cairn's memory to reach its steady state (a run
# of 1M is mostly first-touch page faults of a growing heap).
# Cairn runs with its default memory budget (telemetry.memory=512m): exports it cannot take
# would be answered 429 and retried by the loader, and counted in "retries".
#
# 8 connections by default, each with one request of 500 spans in flight: a fleet exports
# over many connections, and with 4 the server idled between group commits (~70% of its
# core busy: with every client's request in the commit, none was sending while its
# fdatasync ran). With 8 it was 80-90% busy and acknowledged ~15% more spans/s at the same
# CPU per span; 16 measured no better than 8 and held ~20 MiB more. ClickHouse's loaders
# get the same number. "busy" is the server's CPU time while the loader sent, over the
# sending time: how close it came to its one core.
#
# The page cache may matter on this VM: right after writing (and syncing) this script's 3.5 GB
# of input, with 3 GB more cached, the Cairn half took 12-23% more CPU per span than without
# those files in two paired rounds, and the same in two others. The script prints the page
# cache before each server's run; DROP_CACHES=1 (root) syncs and drops it before each, for
# both servers alike.
#
#   bench/ingest.sh                      # 3,000,000 spans, 500 per request, 8 connections
#   SPANS=200000 CONNS=2 bench/ingest.sh
#   DROP_CACHES=1 bench/ingest.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
CAIRN="${CAIRN_BIN:-$here/../build/release/cairn}"
SPANS="${SPANS:-3000000}"
PER_BODY="${PER_BODY:-500}"
CONNS="${CONNS:-8}"
SERVER_CORE="${SERVER_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"

for tool in clickhouse-server curl taskset cc; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/deps.sh --bench)" >&2; exit 1; }
done
[ -x "$CAIRN" ] || { echo "bench: $CAIRN missing (make build)" >&2; exit 1; }

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

cc -O2 -o "$tmp/otlpgen" "$here/otlpgen.c"
cc -O2 -pthread -o "$tmp/otlpload" "$here/otlpload.c"
echo "generating $SPANS spans..."
"$tmp/otlpgen" "$SPANS" "$PER_BODY" "$tmp/bodies.bin" "$tmp/spans.jsonl" | tee "$tmp/gen.txt"
otlp_bps=$(sed -E 's/.*bytes_per_span=([0-9]+).*/\1/' "$tmp/gen.txt")

# Before each server: the page cache (dropped first with DROP_CACHES=1).
settle() {
  if [ "${DROP_CACHES:-0}" = 1 ]; then
    sync
    echo 1 > /proc/sys/vm/drop_caches || { echo "bench: DROP_CACHES=1 needs root" >&2; exit 1; }
  fi
  echo "$1: page cache before the run: $(awk '/^Cached:/ {printf "%d", $2 / 1024}' /proc/meminfo) MiB"
}

# ---- Cairn ----
settle cairn
api_port=$(free_port)
otlp_port=$(free_port)
taskset -c "$SERVER_CORE" "$CAIRN" up --workers 1 --api-listen "127.0.0.1:$api_port" \
  --set otlp.listen="127.0.0.1:$otlp_port" --set data_dir="$tmp/cairn" \
  --set otlp.max_body_bytes=64m --set telemetry.seal_interval=1s \
  --log-level warn &
cairn_pid=$!
pids+=($cairn_pid)
wait_port "$otlp_port"
cpu_of() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
# Each thread's user and system ticks (name, then the two counts), to see which thread a
# change moved: steadier than spans/s, which the WAL's fdatasync latency also moves.
threads_of() { for t in /proc/"$1"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done; }
c_cpu0=$(cpu_of "$cairn_pid")
threads_of "$cairn_pid" > "$tmp/threads0"
cres=$(taskset -c "$LOAD_CORE" "$tmp/otlpload" 127.0.0.1 "$otlp_port" "$tmp/bodies.bin" "$CONNS")
c_cpu1=$(cpu_of "$cairn_pid")
threads_of "$cairn_pid" > "$tmp/threads1"
# The loader reports the seconds it spent sending (after reading the bodies file into
# memory, which can take seconds): "sealed/s" counts those plus the time from its last
# acknowledgement until every span is sealed.
t_acked=$(date +%s.%N)
c_send=$(echo "$cres" | sed -E 's/.*seconds=([0-9.]+).*/\1/')
echo "cairn:      $cres"
c_busy=$(awk -v a="$c_cpu0" -v b="$c_cpu1" -v s="$c_send" 'BEGIN { printf "%.0f", 100 * (b - a) / s }')
c_rps=$(echo "$cres" | sed -E 's/.*spans_per_s=([0-9]+).*/\1/')
c_spans=$(echo "$cres" | sed -E 's/^spans=([0-9]+).*/\1/')
c_rss=$(awk '/VmHWM/ {print $2 * 1024}' "/proc/$cairn_pid/status")
# Disk is measured at rest: once the head is sealed into segments and the WAL behind it gone.
for _ in $(seq 1 600); do
  hb=$(curl -s "127.0.0.1:$api_port/metrics" | awk '/^cairn_telemetry_head_bytes / {print $2}')
  [ "$hb" = 0 ] && break
  sleep 0.1
done
t_sealed=$(date +%s.%N)
c_cpu=$(cpu_of "$cairn_pid")
sleep 0.5
seg_bytes=$(curl -s "127.0.0.1:$api_port/metrics" | awk '/^cairn_telemetry_segment_bytes / {print $2}')
kill -TERM "$cairn_pid"
wait "$cairn_pid" || true
c_disk=$(du -sb "$tmp/cairn/telemetry" | awk '{print $1}')

# ---- ClickHouse ----
settle clickhouse
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
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
XML
cat > "$tmp/ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>8000000000</max_memory_usage><input_format_skip_unknown_fields>1</input_format_skip_unknown_fields></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
taskset -c "$SERVER_CORE" clickhouse-server --config-file="$tmp/ch/config.xml" >"$tmp/ch/stdout" 2>&1 &
ch_pid=$!
pids+=($ch_pid)
for _ in $(seq 1 300); do curl -s "127.0.0.1:$ch_http/ping" >/dev/null && break; sleep 0.1; done
q() { curl -s --fail "127.0.0.1:$ch_http/" --data-binary "$1"; }
q "CREATE TABLE spans (trace_id String, span_id String, parent_span_id String, service String,
   operation String, kind UInt8, start_time UInt64, duration UInt64, status_code UInt8,
   attr_keys Array(String), attr_values Array(String), res_keys Array(String),
   res_values Array(String)) ENGINE = MergeTree() PARTITION BY intDiv(start_time, 86400000000000)
   ORDER BY (service, operation, start_time)"
split -l 20000 "$tmp/spans.jsonl" "$tmp/ch-part."
# Batches of 20,000 rows, $CONNS loaders in parallel, like the OTLP side.
t0=$(date +%s.%N)
ls "$tmp"/ch-part.* | taskset -c "$LOAD_CORE" xargs -P "$CONNS" -I{} \
  curl -s --fail -o /dev/null -X POST \
  "127.0.0.1:$ch_http/?query=INSERT%20INTO%20spans%20FORMAT%20JSONEachRow" --data-binary @{}
t1=$(date +%s.%N)
ch_rows=$(q "SELECT count() FROM spans")
ch_disk=$(q "SELECT sum(bytes_on_disk) FROM system.parts WHERE table = 'spans' AND active")
ch_rss=$(awk '/VmHWM/ {print $2 * 1024}' "/proc/$ch_pid/status")
# ClickHouse merges parts in the background after the inserts: its CPU is read once no merge
# runs any more (its steady state), like Cairn's after sealing.
for _ in $(seq 1 600); do
  [ "$(q "SELECT count() FROM system.merges")" = 0 ] && break
  sleep 0.1
done
ch_cpu=$(cpu_of "$ch_pid")
ch_rps=$(awk -v n="$ch_rows" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
echo "clickhouse: rows=$ch_rows seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') spans_per_s=$ch_rps"

echo
c_sealed_rps=$(awk -v n="$c_spans" -v s="$c_send" -v a="$t_acked" -v b="$t_sealed" \
  'BEGIN { printf "%.0f", n / (s + b - a) }')
printf '%-11s %10s %12s %14s %12s %12s %13s\n' server spans 'spans/s' 'sealed/s' 'CPU us/span' \
  'B/span disk' 'peak RSS MiB'
printf '%-11s %10s %12s %14s %12.2f %12.1f %13.0f\n' cairn "$c_spans" "$c_rps" "$c_sealed_rps" \
  "$(awk -v c="$c_cpu" -v n="$c_spans" 'BEGIN {print c * 1e6 / n}')" \
  "$(awk -v d="$c_disk" -v n="$c_spans" 'BEGIN {print d / n}')" "$(awk -v r="$c_rss" 'BEGIN {print r / 1048576}')"
printf '%-11s %10s %12s %14s %12.2f %12.1f %13.0f\n' clickhouse "$ch_rows" "$ch_rps" - \
  "$(awk -v c="$ch_cpu" -v n="$ch_rows" 'BEGIN {print c * 1e6 / n}')" \
  "$(awk -v d="$ch_disk" -v n="$ch_rows" 'BEGIN {print d / n}')" "$(awk -v r="$ch_rss" 'BEGIN {print r / 1048576}')"
echo "OTLP protobuf: $otlp_bps B/span on the wire; cairn segment files alone: $(awk -v d="$seg_bytes" -v n="$c_spans" 'BEGIN {printf "%.1f", d / n}') B/span"
echo "cairn busy while the loader sent: $c_busy% of one core ($CONNS connections)"
echo "cairn CPU by thread while the loader sent (ns/span, user + system):$(
  awk -v hz="$(getconf CLK_TCK)" -v n="$c_spans" 'NR == FNR { u[$1] = $2; s[$1] = $3; next }
    $1 in u && ($2 - u[$1]) + ($3 - s[$1]) > 0 {
      printf " %s %.0f + %.0f", $1, ($2 - u[$1]) * 1e9 / hz / n, ($3 - s[$1]) * 1e9 / hz / n }' \
    "$tmp/threads0" "$tmp/threads1")"
awk -v c="$c_rps" -v h="$ch_rps" 'BEGIN { printf "ratio cairn/clickhouse ingest: %.2fx\n", c / h }'
awk -v c="$c_cpu" -v h="$ch_cpu" -v n="$c_spans" -v m="$ch_rows" \
  'BEGIN { printf "ratio clickhouse/cairn CPU per span: %.2fx (one core: cairn %.0f spans per CPU-second)\n", (h / m) / (c / n), n / c }'
