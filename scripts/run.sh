#!/usr/bin/env bash
# `make run`: `cairn up --demo` in the foreground with its embedded defaults: every part of
# Cairn, plus the demo shop (docs/demo.md) feeding it traces and logs. Extra settings:
# CAIRN_* variables or a file in CAIRN_CONFIG.
set -euo pipefail
bin="$1"
shift || true
listen="${CAIRN_API_LISTEN:-127.0.0.1:9000}"
otlp="${CAIRN_OTLP_LISTEN:-127.0.0.1:4318}"
cat <<MSG
Cairn is starting with the demo shop (Ctrl-C stops both; SIGHUP reloads the configuration).
  console:     http://$listen/            (services, topology, traces, logs, root cause)
  Jaeger API:  http://$listen/api/services, /api/traces?service=checkout
  health:      http://$listen/healthz, metrics: http://$listen/metrics
  OTLP in:     http://$otlp/v1/traces, /v1/logs (your own services: OTEL_EXPORTER_OTLP_ENDPOINT)
Then, in another terminal (build/release/cairn, or put it on PATH):
  cairn topo                               the service graph with rates, errors, latency
  cairn demo fault payments error          half of payments' requests start failing
  cairn rca --service checkout --since 1m  payments ranks first, with traces and logs
  cairn demo fault payments clear          back to normal (also: latency, bad-version)
Data is kept in ./cairn-data. More: docs/demo.md, docs/configuration.md.
MSG
exec "$bin" up --demo "$@"
