#!/usr/bin/env bash
# Installs, idempotently and quietly, the Debian packages Cairn's build and tests need.
#   scripts/deps.sh           install what is missing (build + tests)
#   scripts/deps.sh --check   exit 0 when nothing is missing, 1 otherwise; installs nothing
#   scripts/deps.sh --bench   also the benchmark peers (nginx, haproxy, wrk, ClickHouse, etcd)
# Then, with `npm ci` from each committed package-lock.json, the npm modules of
# tests/integration/otel (the OpenTelemetry JS SDK the telemetry integration tests export
# with), web/ (the console's build: Vite and the libraries embedded into the binary),
# tests/integration/console (playwright-core, driving Debian's chromium) and demo/ (the shop
# behind `cairn up --demo`: the OpenTelemetry JS SDK and the nacos client).
set -euo pipefail

build_pkgs=(gcc g++ make cmake ninja-build pkg-config git
            libuv1-dev node-llhttp libssl-dev zlib1g-dev libjansson-dev libyaml-dev
            libcmocka-dev libxxhash-dev libzstd-dev libcurl4-openssl-dev libsqlite3-dev
            liburing-dev)
test_pkgs=(python3 clang libclang-rt-14-dev curl procps chromium openssl)
bench_pkgs=(nginx-light haproxy wrk util-linux clickhouse-server etcd-server etcd-client)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
# Node.js for the OpenTelemetry JS SDK. The machine image ships its own Node 20 (whose nodejs
# package carries npm): Debian's packages only when the commands are absent.
command -v node >/dev/null 2>&1 || want+=(nodejs)
command -v npm >/dev/null 2>&1 || want+=(npm)
check=0
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    --bench) want+=("${bench_pkgs[@]}") ;;
    *) echo "deps.sh: unknown flag '$a'" >&2; exit 2 ;;
  esac
done

# Each npm project needs `npm ci` when its node_modules is missing, or older than
# package-lock.json (npm writes node_modules/.package-lock.json at the end of an install).
root="$(cd "$(dirname "$0")/.." && pwd)"
npm_dirs=(tests/integration/otel tests/integration/nacos web tests/integration/console demo)
npm_stale() {
  [ -f "$root/$1/package-lock.json" ] || return 1
  [ -f "$root/$1/node_modules/.package-lock.json" ] || return 0
  [ "$root/$1/package-lock.json" -nt "$root/$1/node_modules/.package-lock.json" ]
}
npm_modules() {
  for d in "${npm_dirs[@]}"; do
    npm_stale "$d" || continue
    if [ "$check" = 1 ]; then
      echo "deps.sh: missing npm modules in $d" >&2
      return 1
    fi
    if ! (cd "$root/$d" && npm ci --no-audit --no-fund --loglevel=error) \
         >/tmp/cairn-npm.log 2>&1; then
      echo "deps.sh: npm ci in $d failed; see /tmp/cairn-npm.log" >&2
      tail -n 20 /tmp/cairn-npm.log >&2
      return 1
    fi
  done
}

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  npm_modules
  exit 0
fi
if [ "$check" = 1 ]; then
  echo "deps.sh: missing packages: ${missing[*]}" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has empty package lists: update once, then install.
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/cairn-apt.log 2>&1; then
  $sudo apt-get update -qq >>/tmp/cairn-apt.log 2>&1
  if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/cairn-apt.log 2>&1; then
    echo "deps.sh: apt-get install failed; see /tmp/cairn-apt.log" >&2
    tail -n 20 /tmp/cairn-apt.log >&2
    exit 1
  fi
fi
npm_modules
