#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, starting from a scratch copy of
# its committed corpus (the committed corpus is not modified). Crashes land in build/fuzz-out.
set -euo pipefail
dir="$1"
secs="${2:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build/fuzz-out"
mkdir -p "$out"
status=0
for bin in "$dir"/fuzz_*; do
  [ -x "$bin" ] || continue
  name="$(basename "$bin")"
  corpus="$root/tests/fuzz/corpus/${name#fuzz_}"
  work="$(mktemp -d)"
  cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  echo "== $name for ${secs}s (corpus $(ls "$corpus" | wc -l) files)"
  if ! "$bin" -max_total_time="$secs" -artifact_prefix="$out/$name-" "$work" 2>"$out/$name.log"; then
    echo "$name: found a crash; see $out/$name.log and $out/$name-*" >&2
    status=1
  fi
  tail -n 2 "$out/$name.log"
  rm -rf "$work"
done
exit $status
