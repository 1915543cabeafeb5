# Shared helpers for bench/*.sh (sourced).

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$1 accepts connections (up to 10 s).
wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench: port $1 never opened" >&2
  return 1
}

# Runs wrk pinned to a core and prints "REQ_PER_SEC P99_MS".
#   run_wrk CORE URL SECONDS CONNECTIONS
run_wrk() {
  taskset -c "$1" wrk -t1 -c"$4" -d"$3"s --latency "$2" | awk '
    /Requests\/sec:/ { rps = $2 }
    /^ +99%/ { v = $2; unit = v; gsub(/[0-9.]/, "", unit); gsub(/[a-z]/, "", v);
               if (unit == "us") v = v / 1000; else if (unit == "s") v = v * 1000;
               p99 = v }
    END { printf "%.0f %.3f\n", rps, p99 }'
}

# Median of the numbers on stdin.
median() {
  sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# The prologue bench/registry.sh and bench/http-hello.sh share: checks the tools given and
# $CAIRN, makes the scratch directory $tmp, and on exit stops every pid in pids (append
# what you start: pids+=($!)) and removes $tmp.
#   bench_setup TOOL...
bench_setup() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/deps.sh --bench)" >&2; exit 1; }
  done
  [ -x "$CAIRN" ] || { echo "bench: $CAIRN missing (make build)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}

# CPU seconds (user + system) the processes given have used so far, summed.
cpu_s() {
  local p
  for p in "$@"; do cat "/proc/$p/stat"; done | awk '{ t += $14 + $15 } END { printf "%.2f\n", t / 100 }'
}
