#!/usr/bin/env bash
# Installs, idempotently and quietly, the Debian packages Cairn's build and tests need.
#   scripts/deps.sh           install what is missing (build + tests)
#   scripts/deps.sh --check   exit 0 when nothing is missing, 1 otherwise; installs nothing
#   scripts/deps.sh --bench   also the benchmark peers (nginx, wrk)
set -euo pipefail

build_pkgs=(gcc g++ make cmake ninja-build pkg-config git
            libuv1-dev node-llhttp libssl-dev zlib1g-dev libjansson-dev libyaml-dev
            libcmocka-dev libxxhash-dev libzstd-dev libcurl4-openssl-dev)
test_pkgs=(python3 clang libclang-rt-14-dev curl procps)
bench_pkgs=(nginx-light wrk util-linux clickhouse-server)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
check=0
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    --bench) want+=("${bench_pkgs[@]}") ;;
    *) echo "deps.sh: unknown flag '$a'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
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
