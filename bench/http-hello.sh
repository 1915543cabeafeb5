#!/usr/bin/env bash
# Fixed-200 benchmark: `cairn up` answering GET /debug/hello ("hello\n") against nginx
# `return 200 "hello\n"`, each server alone on core 0 (one worker), wrk on core 1.
# Rounds alternate between the two so drift on a shared machine hits both alike. Then the
# same servers under an open-loop load at 70% of nginx's throughput (bench/openloop.c), so
# p99 compares the servers at one request rate rather than queueing inside wrk.
#
#   bench/http-hello.sh                      # 7 rounds of 5 s, 50 connections
#   ROUNDS=3 SECONDS_PER_ROUND=5 CONNS=100 bench/http-hello.sh
#
# Prints a table of every round, the medians and the ratios; exit 0 when it ran.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
CAIRN="${CAIRN_BIN:-$here/../build/release/cairn}"
ROUNDS="${ROUNDS:-7}"
SECS="${SECONDS_PER_ROUND:-5}"
CONNS="${CONNS:-50}"
SERVER_CORE="${SERVER_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"

bench_setup nginx wrk taskset python3 cc

nginx_port=$(free_port)
cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200 "hello\n"; }
  }
}
CONF
taskset -c "$SERVER_CORE" nginx -c "$tmp/nginx.conf" -p "$tmp" &
pids+=($!)

cairn_port=$(free_port)
taskset -c "$SERVER_CORE" "$CAIRN" up --workers 1 --api-listen "127.0.0.1:$cairn_port" \
  --log-level warn --set api.test_routes=true --set data_dir="$tmp/data" \
  --set otlp.listen=127.0.0.1:0 &
pids+=($!)

wait_port "$nginx_port"
wait_port "$cairn_port"
nginx_url="http://127.0.0.1:$nginx_port/"
cairn_url="http://127.0.0.1:$cairn_port/debug/hello"
[ "$(curl -s "$nginx_url")" = hello ] || { echo "bench: nginx does not answer hello" >&2; exit 1; }
[ "$(curl -s "$cairn_url")" = hello ] || { echo "bench: cairn does not answer hello" >&2; exit 1; }

# Warm both up.
run_wrk "$LOAD_CORE" "$nginx_url" 2 "$CONNS" >/dev/null
run_wrk "$LOAD_CORE" "$cairn_url" 2 "$CONNS" >/dev/null

echo "fixed 200: wrk -t1 -c$CONNS -d${SECS}s on core $LOAD_CORE; servers on core $SERVER_CORE, 1 worker"
printf '%-6s %-8s %12s %10s\n' round server 'req/s' 'p99 ms'
: > "$tmp/nginx.res"
: > "$tmp/cairn.res"
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which goes first.
  if [ $((r % 2)) = 1 ]; then order="nginx cairn"; else order="cairn nginx"; fi
  for s in $order; do
    if [ "$s" = nginx ]; then url="$nginx_url"; else url="$cairn_url"; fi
    res=$(run_wrk "$LOAD_CORE" "$url" "$SECS" "$CONNS")
    echo "$res" >> "$tmp/$s.res"
    printf '%-6s %-8s %12s %10s\n' "$r" "$s" $res
  done
done

# Per-round ratios: both servers ran back to back in the same round, so a machine-wide slow
# spell (common on shared VMs) moves both; the median of the ratios is the robust figure.
paste "$tmp/cairn.res" "$tmp/nginx.res" | awk '{ print $1 / $3, $2 / $4 }' > "$tmp/ratios"
n_rps=$(awk '{print $1}' "$tmp/nginx.res" | median)
c_rps=$(awk '{print $1}' "$tmp/cairn.res" | median)
n_p99=$(awk '{print $2}' "$tmp/nginx.res" | median)
c_p99=$(awk '{print $2}' "$tmp/cairn.res" | median)
echo
printf '%-8s %12s %10s\n' median 'req/s' 'p99 ms'
printf '%-8s %12.0f %10.3f\n' nginx "$n_rps" "$n_p99"
printf '%-8s %12.0f %10.3f\n' cairn "$c_rps" "$c_p99"
# Latency at a fixed rate both can sustain (70% of nginx's closed-loop median): an open-loop
# client (bench/openloop.c) charges a late reply from when its request was due, so the
# figure is the servers' latency, not queueing inside a saturated client.
cc -O2 -o "$tmp/openloop" "$here/openloop.c"
rate=$(awk -v n="$n_rps" 'BEGIN { printf "%d", n * 0.7 }')
echo
echo "open loop: $rate req/s for ${SECS}s over $CONNS connections (latency from when due)"
printf '%-6s %-8s %10s %10s %10s\n' round server 'p50 ms' 'p99 ms' 'p99.9 ms'
: > "$tmp/nginx.ol"
: > "$tmp/cairn.ol"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="nginx cairn"; else order="cairn nginx"; fi
  for s in $order; do
    if [ "$s" = nginx ]; then port=$nginx_port path=/; else port=$cairn_port path=/debug/hello; fi
    res=$(taskset -c "$LOAD_CORE" "$tmp/openloop" 127.0.0.1 "$port" "$path" "$rate" "$SECS" "$CONNS")
    echo "$res" | sed -E 's/.*p50=([0-9.]+) p90=[0-9.]+ p99=([0-9.]+) p999=([0-9.]+).*/\1 \2 \3/' >> "$tmp/$s.ol"
    printf '%-6s %-8s %10s %10s %10s\n' "$r" "$s" $(tail -n 1 "$tmp/$s.ol")
  done
done
paste "$tmp/cairn.ol" "$tmp/nginx.ol" | awk '{ print $2 / $5 }' > "$tmp/ol.ratios"
ol_c=$(awk '{print $2}' "$tmp/cairn.ol" | median)
ol_n=$(awk '{print $2}' "$tmp/nginx.ol" | median)
ol_r=$(median < "$tmp/ol.ratios")

echo
r_rps=$(awk '{print $1}' "$tmp/ratios" | median)
r_p99=$(awk '{print $2}' "$tmp/ratios" | median)
printf 'closed loop, ratio cairn/nginx (median of per-round ratios): req/s %.2fx, p99 %.2fx (lower is better)\n' \
  "$r_rps" "$r_p99"
printf 'open loop at %d req/s: p99 nginx %.3f ms, cairn %.3f ms, ratio %.2fx (median of per-round ratios)\n' \
  "$rate" "$ol_n" "$ol_c" "$ol_r"
