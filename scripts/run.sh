#!/usr/bin/env bash
# `make run`: starts `cairn up` in the foreground with its embedded defaults and says where to
# look. Extra settings: CAIRN_* variables or a file in CAIRN_CONFIG.
set -euo pipefail
bin="$1"
shift || true
listen="${CAIRN_API_LISTEN:-127.0.0.1:9000}"
cat <<MSG
Cairn is starting (Ctrl-C stops it; SIGHUP reloads the configuration).
  health:   http://$listen/healthz
  ready:    http://$listen/readyz
  metrics:  http://$listen/metrics
Configuration reference: docs/configuration.md.
MSG
exec "$bin" up "$@"
