#!/usr/bin/env bash
# Runs every test in each build directory given (release, then ASan+UBSan) and prints one
# closing line CI reads: "N passed, N failed".
set -uo pipefail
pass=0
fail=0
jobs="${CAIRN_TEST_JOBS:-2}"
for dir in "$@"; do
  echo "== ctest in $dir"
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j "$jobs") 2>&1 | tee "$log"
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "test.sh: ctest in $dir printed no summary" >&2
    fail=$((fail + 1))
  else
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
    t=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/')
    pass=$((pass + t - f))
    fail=$((fail + f))
  fi
  rm -f "$log"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
