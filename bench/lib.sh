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
