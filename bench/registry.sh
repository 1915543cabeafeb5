#!/usr/bin/env bash
# Registry benchmark (issue 6): `cairn up --workers 1` on one core, the load generator
# (bench/regload.c: C keep-alive connections, one request in flight each) on the other.
#
#   register    POST /nacos/v1/ns/instance, a new ephemeral instance every request (Nacos
#               clients' default; memory, rebuilt by heartbeats)
#   register-p  the same with ephemeral=false: stored in SQLite (fsync) before the answer
#   list        GET /nacos/v1/ns/instance/list (SERVICES services of ~10 instances each)
#   beat        PUT /nacos/v1/ns/instance/beat
#   push        config publish -> LISTENERS held long polls answered (p50/p99 from the publish)
#   etcd put / etcd range  etcd 3.4's own JSON gateway (/v3/kv/put, /v3/kv/range) on the same
#               core with the same load generator: the reference for cluster mode
#   cl register / cl list  register and list on a second `cairn up --workers 1` in cluster mode
#               (registry.etcd.endpoints = that etcd): a register is an etcd put under the
#               node's lease, a list is answered from the node's memory. CPU per request for
#               cl register counts cairn's and etcd's CPU together
#   hello       cairn's GET /debug/hello: the HTTP core's own ceiling on this machine
#
# Besides requests/s (which on a shared machine depends on what else runs) the script reads
# each server's CPU time from /proc and reports requests per CPU-second of the server, the
# figure comparable across rounds. Rounds alternate the workloads so drift hits all alike.
#
#   bench/registry.sh                          # 3 rounds of 5 s, 32 connections
#   ROUNDS=5 SECONDS_PER_ROUND=10 CONNS=64 bench/registry.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
CAIRN="${CAIRN_BIN:-$here/../build/release/cairn}"
ROUNDS="${ROUNDS:-3}"
SECS="${SECONDS_PER_ROUND:-5}"
CONNS="${CONNS:-32}"
SERVICES="${SERVICES:-1000}"
# Services the cluster-mode node lists (10 instances each): fewer, since filling them is one
# etcd write each, one at a time per node.
CL_SERVICES="${CL_SERVICES:-100}"
PUSH_ROUNDS="${PUSH_ROUNDS:-100}"
LISTENERS="${LISTENERS:-50}"
SERVER_CORE="${SERVER_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"

bench_setup etcd wrk taskset python3 cc bc

cc -O2 -o "$tmp/regload" "$here/regload.c" -lcrypto

api_port=$(free_port)
reg_port=$(free_port)
# The instances registered below get no heartbeats but for the beat workload's: timeouts of an
# hour keep them (and their lists' size) as they are through every round, and keep the
# cluster-mode node from writing expiries to etcd while it is measured. Health checks of the
# persistent instances register-p leaves behind (one TCP connect each every check interval)
# would run through the later workloads and count in their CPU: the first round of checks is
# an hour away too.
keep=(--set registry.beat_timeout=1h --set registry.delete_timeout=1h
      --set registry.check_interval=1h)
taskset -c "$SERVER_CORE" "$CAIRN" up --workers 1 --api-listen "127.0.0.1:$api_port" \
  --set api.test_routes=true --set otlp.listen=127.0.0.1:0 "${keep[@]}" \
  --set "registry.listen=127.0.0.1:$reg_port" --set "data_dir=$tmp/cairn" \
  --log-level warn > "$tmp/cairn.log" 2>&1 &
cairn_pid=$!
pids+=("$cairn_pid")
etcd_port=$(free_port)
etcd_peer=$(free_port)
taskset -c "$SERVER_CORE" etcd --name n1 --data-dir "$tmp/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "n1=http://127.0.0.1:$etcd_peer" --initial-cluster-state new \
  --log-level error > "$tmp/etcd.log" 2>&1 &
etcd_pid=$!
pids+=("$etcd_pid")
wait_port "$reg_port"
wait_port "$api_port"
wait_port "$etcd_port"
cl_api_port=$(free_port)
cl_reg_port=$(free_port)
taskset -c "$SERVER_CORE" "$CAIRN" up --workers 1 --api-listen "127.0.0.1:$cl_api_port" \
  --set otlp.listen=127.0.0.1:0 --set "registry.listen=127.0.0.1:$cl_reg_port" "${keep[@]}" \
  --set "data_dir=$tmp/cairn-cl" --set "registry.etcd.endpoints=http://127.0.0.1:$etcd_port" \
  --log-level warn > "$tmp/cairn-cl.log" 2>&1 &
cl_pid=$!
pids+=("$cl_pid")
wait_port "$cl_reg_port"

# Instances for list and beat: services bench-N of 10 instances each, SERVICES on the
# embedded node and CL_SERVICES on the cluster-mode node (register writes to services of its
# own).
python3 - "$reg_port" "$SERVICES" "$cl_reg_port" "$CL_SERVICES" <<'PY'
import sys, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
def put(port, services, i):
    a, b, d = (i >> 16) & 255, (i >> 8) & 255, i & 255
    url = ("http://127.0.0.1:%d/nacos/v1/ns/instance?serviceName=DEFAULT_GROUP%%40%%40bench-%d"
           "&ip=10.%d.%d.%d&port=8080" % (port, i % services, a, b, d))
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="POST")).read()
    except urllib.error.HTTPError as e:
        sys.exit("bench: register on port %d: %d %s" % (port, e.code, e.read().decode()))
args = sys.argv[1:]
for port, services in zip(map(int, args[0::2]), map(int, args[1::2])):
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: put(port, services, i), range(services * 10)))
PY

printf "%-6s %-11s %10s %10s %10s %12s %7s\n" round workload req/s p50_ms p99_ms req/cpu-s errors
results="$tmp/results"
: > "$results"
run() { # round name "pid..." command...: CPU per request counts the pids given
  local round=$1 name=$2 pid=$3
  shift 3
  local c0 c1 out
  c0=$(cpu_s $pid)
  out=$(taskset -c "$LOAD_CORE" "$@")
  c1=$(cpu_s $pid)
  echo "$out" | awk -v r="$round" -v n="$name" -v c="$(echo "$c1 - $c0" | bc)" '{
    per = c > 0 ? $2 / c : 0
    printf "%-6s %-11s %10.0f %10.3f %10.3f %12.0f %7d\n", r, n, $4, $6, $8, per, $10
    printf "%s %f %f %f %f\n", n, $4, $6, $8, per >> "'"$results"'" }'
}
for r in $(seq 1 "$ROUNDS"); do
  run "$r" register "$cairn_pid" "$tmp/regload" register 127.0.0.1 "$reg_port" "$SECS" "$CONNS" "$SERVICES"
  run "$r" "etcd put" "$etcd_pid" "$tmp/regload" etcd-put 127.0.0.1 "$etcd_port" "$SECS" "$CONNS" "$SERVICES"
  run "$r" list "$cairn_pid" "$tmp/regload" list 127.0.0.1 "$reg_port" "$SECS" "$CONNS" "$SERVICES"
  run "$r" "etcd range" "$etcd_pid" "$tmp/regload" etcd-range 127.0.0.1 "$etcd_port" "$SECS" "$CONNS" "$SERVICES"
  run "$r" beat "$cairn_pid" "$tmp/regload" beat 127.0.0.1 "$reg_port" "$SECS" "$CONNS" "$SERVICES"
  run "$r" register-p "$cairn_pid" "$tmp/regload" register-persistent 127.0.0.1 "$reg_port" "$SECS" "$CONNS" "$SERVICES"
  run "$r" "cl register" "$cl_pid $etcd_pid" "$tmp/regload" register 127.0.0.1 "$cl_reg_port" "$SECS" "$CONNS" "$SERVICES"
  run "$r" "cl list" "$cl_pid" "$tmp/regload" list 127.0.0.1 "$cl_reg_port" "$SECS" "$CONNS" "$CL_SERVICES"
  c0=$(cpu_s "$cairn_pid")
  hello=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"$SECS"s "http://127.0.0.1:$api_port/debug/hello" |
          awk '/Requests\/sec:/ { print $2 } /requests in/ { n = $1 } END { print n }')
  c1=$(cpu_s "$cairn_pid")
  rps=$(echo "$hello" | head -1); n=$(echo "$hello" | tail -1)
  per=$(echo "$n / ($c1 - $c0)" | bc)
  printf "%-6s %-11s %10.0f %10s %10s %12.0f %7d\n" "$r" hello "$rps" - - "$per" 0
  echo "hello $rps 0 0 $per" >> "$results"
done

push=$(taskset -c "$LOAD_CORE" "$tmp/regload" push 127.0.0.1 "$reg_port" "$PUSH_ROUNDS" "$LISTENERS")
echo
echo "push (publish -> $LISTENERS held listeners answered, $PUSH_ROUNDS rounds): $push"

echo
echo "median over rounds   req/s   req/cpu-s   p99_ms"
for w in register register-p list beat hello "etcd put" "etcd range" "cl register" "cl list"; do
  m_rps=$(grep "^$w [0-9]" "$results" | awk '{ print $(NF-3) }' | median)
  m_cpu=$(grep "^$w [0-9]" "$results" | awk '{ print $NF }' | median)
  m_p99=$(grep "^$w [0-9]" "$results" | awk '{ print $(NF-1) }' | median)
  printf "%-16s %9.0f %11.0f %8.3f\n" "$w" "$m_rps" "$m_cpu" "$m_p99"
done
ratio() { # a b: median per-cpu-s ratio a/b
  a=$(grep "^$1 [0-9]" "$results" | awk '{ print $NF }' | median)
  b=$(grep "^$2 [0-9]" "$results" | awk '{ print $NF }' | median)
  echo "scale=2; $a / $b" | bc
}
echo
echo "requests per CPU-second, ratios: register/etcd put $(ratio register "etcd put")x," \
     "register-p/etcd put $(ratio register-p "etcd put")x, list/etcd range $(ratio list "etcd range")x," \
     "list/hello $(ratio list hello)x, register/hello $(ratio register hello)x," \
     "cl register/etcd put $(ratio "cl register" "etcd put")x, cl list/list $(ratio "cl list" list)x"
