/* OTLP/HTTP JSON: decoding ExportTraceServiceRequest and ExportLogsServiceRequest bodies into a
 * cn_tel_batch, and encoding the JSON export responses.
 *
 * The JSON form follows the OTLP JSON mapping (opentelemetry-proto docs/specification.md):
 * keys in lowerCamelCase or in the proto's snake_case, trace and span IDs as hex (any case),
 * 64-bit integers as JSON numbers or decimal strings, enums as numbers or their names, bytes
 * as base64, null as an absent field. IDs in base64 of the raw bytes are accepted too, as some
 * exporters (opentelemetry-swift's OtlpTraceJsonExporter, issue #537) sent them. */
#ifndef CN_TELEMETRY_OTLP_JSON_H
#define CN_TELEMETRY_OTLP_JSON_H

#include "base/buf.h"
#include "telemetry/model.h"

/* Decodes an ExportTraceServiceRequest body of len bytes into b, which holds no spans yet.
 * Every string is copied into b->arena, nothing points into buf. lim may be NULL (no limits);
 * a zero limit means unlimited.
 *
 * A span with a missing, malformed or all-zero traceId or spanId, a malformed parentSpanId or
 * link ID, a kind or status code outside the enum, or an end before its start is skipped and
 * counted in b->rejected with the first reason in b->reject_msg (partial success), not an
 * error. Attributes, events, links and values past the limits are cut and counted.
 *
 * Returns 0; CN_ESYNTAX for invalid JSON or a known field of the wrong JSON type, with a message
 * naming the JSON path in err (e.g. "resourceSpans[0].scopeSpans[0].spans[2].startTimeUnixNano:
 * not an integer"); CN_ENOMEM when b's arena limit or memory runs out. On failure b holds no
 * spans and its counters are as before the call (its arena may keep memory until
 * cn_tel_batch_release). err is always NUL-terminated printable ASCII when err_len > 0. */
int cn_otlp_json_decode_traces(struct cn_tel_batch *b, const char *buf, size_t len,
                               const struct cn_tel_limits *lim, char *err, size_t err_len);

/* The same for an ExportLogsServiceRequest, filling b->logs. A log record is rejected for a
 * malformed traceId or spanId (both may be absent or empty) or a severityNumber outside 0..24.
 * Bodies are not cut by max_attr_value_bytes: that limit is for attribute values. */
int cn_otlp_json_decode_logs(struct cn_tel_batch *b, const char *buf, size_t len,
                             const struct cn_tel_limits *lim, char *err, size_t err_len);

/* Writes x into dst (32 bytes) as JavaScript's Number#toString does, which is how the JS SDK
 * writes doubles: the fewest digits that read back as x, plain decimals for 1e-6 <= |x| < 1e21
 * ("100", "0.1", "1.5e+300", "0" for -0); "NaN", "Infinity", "-Infinity" for the others. One
 * difference: integers of 2^63 and more are written in exponent form ("1e+20"), which parsers
 * that read integers as int64 accept. Returns the length. */
size_t cn_otlp_json_double(char *dst, double x);

/* Appends the ExportTraceServiceResponse: "{}" when rejected is 0 and msg is NULL or empty,
 * else {"partialSuccess":{"rejectedSpans":"N","errorMessage":"msg"}} (errorMessage only when
 * msg is not empty; the count is a string, as the mapping writes int64). Returns 0, or
 * CN_ELIMIT / CN_ENOMEM from out, which is then unchanged. */
int cn_otlp_json_encode_trace_response(struct cn_buf *out, uint64_t rejected, const char *msg);
/* The same for ExportLogsServiceResponse, with "rejectedLogRecords". */
int cn_otlp_json_encode_logs_response(struct cn_buf *out, uint64_t rejected, const char *msg);

#endif
