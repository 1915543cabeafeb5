#!/usr/bin/env bash
# `make run`: starts `cairn up` in the foreground with its embedded defaults and says where to
# look. Extra settings: CAIRN_* variables or a file in CAIRN_CONFIG.
set -euo pipefail
bin="$1"
shift || true
listen="${CAIRN_API_LISTEN:-127.0.0.1:9000}"
otlp="${CAIRN_OTLP_LISTEN:-127.0.0.1:4318}"
cat <<MSG
Cairn is starting (Ctrl-C stops it; SIGHUP reloads the configuration).
  health:   http://$listen/healthz
  ready:    http://$listen/readyz
  metrics:  http://$listen/metrics
  a trace:  http://$listen/api/v1/traces/TRACE_ID   (or: cairn trace get TRACE_ID)
  OTLP in:  http://$otlp/v1/traces, /v1/logs (protobuf or JSON); Zipkin: /api/v2/spans
            e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://$otlp for an OpenTelemetry SDK
Data is kept in ./cairn-data. Configuration reference: docs/configuration.md.
MSG
exec "$bin" up "$@"
