#!/usr/bin/env bash
# Reverse proxy benchmark (issue 5): one keep-alive upstream (nginx `return 200 "hello\n"`,
# 1 worker) behind nginx (1 worker, upstream keepalive 64, HTTP/1.1, Connection ""), haproxy
# (nbthread 1, http-reuse always) and `cairn gateway` (1 worker), wrk -t1 from the other core.
# Two core layouts (../shared/REFERENCE.md):
#   A: proxy and upstream on core 0, wrk on core 1
#   B: proxy alone on core 0, upstream and wrk on core 1
# Rounds alternate the order of the proxies so drift on a shared machine hits all alike;
# ratios are medians of per-round ratios against nginx. Each row also shows how busy cores 0
# and 1 were: in layout B, core 1 (wrk and the upstream) saturates before a fast proxy's core 0
# does, and then the row measures the load side (see "load core alone").
#
#   bench/proxy.sh                          # 5 rounds of 5 s, 50 connections, both layouts
#   ROUNDS=3 SECONDS_PER_ROUND=3 LAYOUTS=A bench/proxy.sh
#   TRACING=1 bench/proxy.sh                # the gateway with tracing on (spans exported)
# Besides `cairn` (one catch-all route), `cairn50` is a second gateway whose 50 routes mix every
# match type (Exact, PathPrefix, RegularExpression paths, header, method and query matches);
# its requests (GET /shop/v46/items) select route 47 of them.
#   TLS=0 bench/proxy.sh                    # without the TLS row
#
# The TLS row: nginx and Cairn terminating TLS with the same certificate (ECDSA P-256, made
# with the openssl CLI for the run), TLS 1.2-1.3 with each one's default ciphers (wrk and both
# servers settle on TLS 1.3 TLS_AES_256_GCM_SHA384), keep-alive (wrk's 50 connections each
# handshake once), the same plain keep-alive upstream behind them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
CAIRN="${CAIRN_BIN:-$here/../build/release/cairn}"
ROUNDS="${ROUNDS:-5}"
SECS="${SECONDS_PER_ROUND:-5}"
CONNS="${CONNS:-50}"
LAYOUTS="${LAYOUTS:-A B}"
TLS="${TLS:-1}"

for tool in nginx haproxy wrk taskset python3 openssl; do
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

up_port=$(free_port)
nginx_port=$(free_port)
haproxy_port=$(free_port)
cairn_port=$(free_port)
admin_port=$(free_port)
nginx_tls_port=$(free_port)
cairn_tls_port=$(free_port)
cairn50_port=$(free_port)
admin50_port=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -subj "/CN=bench.local" \
  -addext "subjectAltName=DNS:bench.local,IP:127.0.0.1" 2>/dev/null

cat > "$tmp/upstream.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $tmp/upstream.pid;
error_log $tmp/upstream-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$up_port;
    location / { return 200 "hello\n"; }
  }
}
CONF

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
  upstream backend {
    server 127.0.0.1:$up_port;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$nginx_tls_port ssl;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF

cat > "$tmp/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$haproxy_port
  default_backend be
backend be
  server s1 127.0.0.1:$up_port
CONF

cat > "$tmp/gateway.yaml" <<CONF
listeners:
  - name: bench
    address: 127.0.0.1:$cairn_port
  - name: bench-tls
    address: 127.0.0.1:$cairn_tls_port
    tls:
      certificates: [{certificateFile: $tmp/cert.pem, keyFile: $tmp/key.pem}]
      minVersion: "1.2"
admin:
  address: 127.0.0.1:$admin_port
workers: 1
clusters:
  - name: hello
    endpoints: [127.0.0.1:$up_port]
    max_idle_per_worker: 64
limits:
  busy_poll_us: ${BUSY_POLL_US:-0}
routes:
  - name: all
    backendRefs: [{name: hello}]
CONF
if [ "${TRACING:-0}" = 1 ]; then
  # Tracing on: traceparent propagated, a span and an access-log record per request, batched
  # to the exporter thread and POSTed over OTLP/HTTP to the upstream nginx (it answers any
  # path 200), so export costs show up on the same cores.
  cat >> "$tmp/gateway.yaml" <<CONF
tracing:
  enabled: true
  otlp: {endpoint: "http://127.0.0.1:$up_port", batch_size: 512, flush_interval: 1s}
CONF
fi

# The 50-route gateway: kinds in turn; the bench's path matches only the PathPrefix of i=46.
{
  echo "listeners: [{name: bench, address: '127.0.0.1:$cairn50_port'}]"
  echo "admin: {address: '127.0.0.1:$admin50_port'}"
  echo "workers: 1"
  echo "limits: {busy_poll_us: ${BUSY_POLL_US:-0}}"
  echo "clusters: [{name: hello, endpoints: ['127.0.0.1:$up_port'], max_idle_per_worker: 64}]"
  echo "routes:"
  for i in $(seq 0 49); do
    case $((i % 5)) in
      0) m="{path: {type: Exact, value: /exact/$i}}" ;;
      1) m="{path: {type: PathPrefix, value: /shop/v$i}}" ;;
      2) m="{path: {type: RegularExpression, value: '/re/$i/[0-9]+'}}" ;;
      3) m="{path: {type: PathPrefix, value: /hdr/$i}, headers: [{name: X-Tenant, value: t$i}]}" ;;
      4) m="{path: {type: PathPrefix, value: /q/$i}, method: POST, queryParams: [{name: v, value: '$i'}]}" ;;
    esac
    echo "  - {name: r$i, matches: [$m], backendRefs: [{name: hello}]}"
  done
} > "$tmp/gateway50.yaml"

nginx -c "$tmp/upstream.conf" -p "$tmp" & pids+=($!); up_pid=$!
nginx -c "$tmp/nginx.conf" -p "$tmp" & pids+=($!); nginx_pid=$!
haproxy -f "$tmp/haproxy.cfg" -q & pids+=($!); haproxy_pid=$!
"$CAIRN" gateway -c "$tmp/gateway.yaml" --log-level warn & pids+=($!); cairn_pid=$!
"$CAIRN" gateway -c "$tmp/gateway50.yaml" --log-level warn & pids+=($!); cairn50_pid=$!
for p in $up_port $nginx_port $haproxy_port $cairn_port $nginx_tls_port $cairn_tls_port $cairn50_port; do wait_port "$p"; done
for p in $up_port $nginx_port $haproxy_port $cairn_port; do
  [ "$(curl -s "http://127.0.0.1:$p/")" = hello ] || { echo "bench: port $p does not answer hello" >&2; exit 1; }
done
[ "$(curl -s "http://127.0.0.1:$cairn50_port/shop/v46/items")" = hello ] ||
  { echo "bench: the 50-route gateway does not answer hello" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$cairn50_port/")" = 404 ] ||
  { echo "bench: the 50-route gateway answers / (it must not)" >&2; exit 1; }
for p in $nginx_tls_port $cairn_tls_port; do
  [ "$(curl -sk "https://127.0.0.1:$p/")" = hello ] || { echo "bench: port $p does not answer hello over TLS" >&2; exit 1; }
done

# Pins every thread of a process (and its children) to a core.
pin() { taskset -a -p -c "$2" "$1" >/dev/null; }

# CPU time (user + system, clock ticks) of a process and its threads.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Busy (not idle, not iowait) clock ticks and all ticks of cores 0 and 1: "B0 T0 B1 T1".
core_ticks() {
  awk '/^cpu[01] / { b = $2 + $3 + $4 + $7 + $8 + $9; t = b + $5 + $6; printf "%d %d ", b, t }' /proc/stat
}

# wrk on core $1 against port $2 (proxy pid $3): prints "REQ_PER_SEC P50_MS P99_MS CPU_US
# CORE0 CORE1" where CPU_US is the proxy's CPU time per request in microseconds and CORE0/1 how
# busy each core was (%, everything on it, not only this bench). On a shared machine throughput
# moves with whatever else runs on the core; CPU time per request much less. A load core near
# 100% busy means the rate is what wrk (and, in layout B, the upstream beside it) can drive, not
# what the proxy can serve.
wrk_run() {
  local t0 t1 c0 c1 out
  t0=$(cpu_ticks "$3")
  c0=$(core_ticks)
  out=$(wrk_raw "$1" "$2" "${4:-http}" "${5:-/}")
  c1=$(core_ticks)
  t1=$(cpu_ticks "$3")
  echo "$out $c0 $c1" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v s="$SECS" \
    '{ printf "%s %s %s %.2f %.0f %.0f\n", $1, $2, $3, ($1 > 0 ? t / hz * 1e6 / ($1 * s) : 0),
              100 * ($8 - $4) / ($9 - $5 + ($9 == $5)), 100 * ($10 - $6) / ($11 - $7 + ($11 == $7)) }'
}

wrk_raw() {
  taskset -c "$1" wrk -t1 -c"$CONNS" -d"$SECS"s --latency "${3:-http}://127.0.0.1:$2${4:-/}" | awk '
    function ms(v,  unit) { unit = v; gsub(/[0-9.]/, "", unit); gsub(/[a-z]/, "", v);
                            if (unit == "us") return v / 1000; if (unit == "s") return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

declare -A port=([nginx]=$nginx_port [haproxy]=$haproxy_port [cairn]=$cairn_port
                 [cairn50]=$cairn50_port [nginx-tls]=$nginx_tls_port [cairn-tls]=$cairn_tls_port)
declare -A ppid=([nginx]=$nginx_pid [haproxy]=$haproxy_pid [cairn]=$cairn_pid
                 [cairn50]=$cairn50_pid [nginx-tls]=$nginx_pid [cairn-tls]=$cairn_pid)
declare -A scheme=([nginx]=http [haproxy]=http [cairn]=http [nginx-tls]=https [cairn-tls]=https)
declare -A path=([nginx]=/ [haproxy]=/ [cairn]=/ [cairn50]=/shop/v46/items)
proxies=(nginx haproxy cairn cairn50)
tls_proxies=(nginx-tls cairn-tls)

for layout in $LAYOUTS; do
  if [ "$layout" = A ]; then up_core=0; load_core=1; else up_core=1; load_core=1; fi
  pin "$up_pid" "$up_core"
  for s in "${proxies[@]}"; do pin "${ppid[$s]}" 0; done
  echo
  echo "layout $layout: proxies on core 0, upstream on core $up_core, wrk -t1 -c$CONNS -d${SECS}s on core $load_core"
  if [ "$layout" = A ]; then
    direct=$(wrk_run "$load_core" "$up_port" "$up_pid")
    echo "upstream direct: $direct (req/s, p50 ms, p99 ms, upstream CPU us/request, core0 %, core1 %)"
  else
    # What core 1 can drive with no proxy at all: wrk and the upstream alone on it. When the
    # proxies' rows show core 1 ~100% busy and core 0 not, layout B measures this side.
    direct=$(wrk_run "$load_core" "$up_port" "$up_pid")
    echo "load core alone (wrk -> upstream, both on core 1, no proxy): $direct (req/s, p50 ms, p99 ms, upstream CPU us/request, core0 %, core1 %)"
  fi
  for s in "${proxies[@]}"; do wrk_raw "$load_core" "${port[$s]}" http "${path[$s]}" >/dev/null; done # warm up
  printf '%-6s %-8s %10s %8s %8s %12s %8s %8s\n' round proxy 'req/s' 'p50 ms' 'p99 ms' 'cpu us/req' 'core0 %' 'core1 %'
  for s in "${proxies[@]}"; do : > "$tmp/$layout.$s"; done
  for r in $(seq 1 "$ROUNDS"); do
    k=$((r % ${#proxies[@]}))
    order=("${proxies[@]:$k}" "${proxies[@]:0:$k}")
    for s in "${order[@]}"; do
      res=$(wrk_run "$load_core" "${port[$s]}" "${ppid[$s]}" http "${path[$s]}")
      echo "$res" >> "$tmp/$layout.$s"
      printf '%-6s %-8s %10s %8s %8s %12s %8s %8s\n' "$r" "$s" $res
    done
  done
  echo "median:"
  for s in "${proxies[@]}"; do
    printf '  %-8s %10.0f req/s  p50 %.3f ms  p99 %.3f ms  cpu %.2f us/req  core0 %.0f%%  core1 %.0f%%\n' "$s" \
      "$(awk '{print $1}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $2}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $3}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $4}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $5}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $6}' "$tmp/$layout.$s" | median)"
  done
  for s in haproxy cairn cairn50; do
    paste "$tmp/$layout.$s" "$tmp/$layout.nginx" |
      awk '{ print $1 / $7, $3 / $9, ($4 > 0 ? $10 / $4 : 0) }' > "$tmp/$layout.$s.ratio"
    printf 'layout %s ratio %s/nginx (median of per-round ratios): req/s %.2fx, p99 %.2fx (lower is better), requests per CPU second %.2fx\n' \
      "$layout" "$s" "$(awk '{print $1}' "$tmp/$layout.$s.ratio" | median)" \
      "$(awk '{print $2}' "$tmp/$layout.$s.ratio" | median)" \
      "$(awk '{print $3}' "$tmp/$layout.$s.ratio" | median)"
  done
  [ "$TLS" = 1 ] || continue
  echo "layout $layout, TLS: nginx and cairn terminating TLS (same certificate), keep-alive, wrk over https"
  for s in "${tls_proxies[@]}"; do wrk_raw "$load_core" "${port[$s]}" https >/dev/null; done # warm up
  printf '%-6s %-10s %10s %8s %8s %12s %8s %8s\n' round proxy 'req/s' 'p50 ms' 'p99 ms' 'cpu us/req' 'core0 %' 'core1 %'
  for s in "${tls_proxies[@]}"; do : > "$tmp/$layout.$s"; done
  for r in $(seq 1 "$ROUNDS"); do
    k=$((r % 2))
    order=("${tls_proxies[@]:$k}" "${tls_proxies[@]:0:$k}")
    for s in "${order[@]}"; do
      res=$(wrk_run "$load_core" "${port[$s]}" "${ppid[$s]}" https)
      echo "$res" >> "$tmp/$layout.$s"
      printf '%-6s %-10s %10s %8s %8s %12s %8s %8s\n' "$r" "$s" $res
    done
  done
  echo "median:"
  for s in "${tls_proxies[@]}"; do
    printf '  %-10s %10.0f req/s  p50 %.3f ms  p99 %.3f ms  cpu %.2f us/req  core0 %.0f%%  core1 %.0f%%\n' "$s" \
      "$(awk '{print $1}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $2}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $3}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $4}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $5}' "$tmp/$layout.$s" | median)" \
      "$(awk '{print $6}' "$tmp/$layout.$s" | median)"
  done
  paste "$tmp/$layout.cairn-tls" "$tmp/$layout.nginx-tls" |
    awk '{ print $1 / $7, $3 / $9, ($4 > 0 ? $10 / $4 : 0) }' > "$tmp/$layout.tls.ratio"
  printf 'layout %s TLS ratio cairn/nginx (median of per-round ratios): req/s %.2fx, p99 %.2fx (lower is better), requests per CPU second %.2fx\n' \
    "$layout" "$(awk '{print $1}' "$tmp/$layout.tls.ratio" | median)" \
    "$(awk '{print $2}' "$tmp/$layout.tls.ratio" | median)" \
    "$(awk '{print $3}' "$tmp/$layout.tls.ratio" | median)"
done
