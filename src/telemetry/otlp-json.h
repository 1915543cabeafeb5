/* OTLP/HTTP JSON: decoding ExportTraceServiceRequest and ExportLogsServiceRequest bodies into a
 * cn_tel_batch, and encoding the JSON export responses.
 *
 * The JSON form follows the OTLP JSON mapping (opentelemetry-proto docs/specification.md):
 * keys in lowerCamelCase or in the proto's snake_case, trace and span IDs as hex (any case),
 * 64-bit integers as JSON numbers or decimal strings, enums as numbers or their names, bytes
 * as base64 (standard or URL-safe, padded or not), null as an absent field; unknown keys are
 * ignored. IDs in base64 of the raw bytes are accepted too, as some exporters sent them
 * (opentelemetry-swift's OtlpTraceJsonExporter, issue #537). A body holding an integer literal
 * past int64 (a double such as 1e20 in plain digits) is read with every number as a double.
 *
 * The rules follow the protobuf decoder (otlp-pb.h) so that both encodings of a request give
 * the same batch: the same refusals, limits, service name and nesting limit. */
#ifndef CN_TELEMETRY_OTLP_JSON_H
#define CN_TELEMETRY_OTLP_JSON_H

#include "base/buf.h"
#include "telemetry/model.h"

/* Decodes an ExportTraceServiceRequest body of len bytes into b, which holds no spans yet.
 * Strings of the body are copied into b->arena, nothing points into buf or jansson's tree
 * (the others are literals: "", "unknown_service"). One cn_resource per resourceSpans and one
 * cn_scope per scopeSpans, never NULL. Arrays and kvlists keep their canonical OTLP JSON text
 * (ints as strings). The service is the last string service.name resource attribute, whole
 * even when the attribute is cut or dropped by a limit; "unknown_service" when there is none
 * or it is empty.
 *
 * A span with a missing, malformed or all-zero traceId or spanId, a malformed parentSpanId, a
 * malformed link traceId or spanId (empty ones are accepted), a kind or status code outside
 * its enum, or an end before its start is skipped and counted in b->rejected with the first
 * reason in b->reject_msg (partial success), e.g. "resourceSpans[0].scopeSpans[0].spans[1].
 * traceId: all zero"; it adds nothing to the truncation counters.
 *
 * Limits from lim (NULL, or 0 fields, mean unlimited): attributes (of spans, events, links,
 * resources, scopes), events and links past their maximum are dropped and counted in the
 * batch's truncation counters and the item's dropped counter, to which the sender's
 * dropped*Count is added; string and bytes attribute values, also inside arrays and kvlists,
 * are cut to max_attr_value_bytes (strings at a UTF-8 boundary) and counted. Limits never
 * change which records are accepted: dropped items are checked like kept ones.
 *
 * Returns 0; CN_ESYNTAX for invalid JSON (with jansson's line and column), a top level that is
 * not an object, a known field of the wrong JSON type or out of range, bytes that are not
 * base64, an AnyValue with two values, or arrays and kvlists nested deeper than 16 levels,
 * with a message naming the JSON path in err (e.g. "resourceSpans[0].scopeSpans[0].spans[2].
 * startTimeUnixNano: not an integer"; a path too long for err keeps its two ends); CN_ENOMEM
 * when b's arena reaches its maximum ("batch too large for the decode budget"). On failure b
 * holds no spans and its counters are as before the call; what was allocated stays in the
 * arena until cn_tel_batch_release. err may be NULL; otherwise, with err_len > 0, it is always
 * NUL-terminated printable ASCII, "" on success. */
int cn_otlp_json_decode_traces(struct cn_tel_batch *b, const char *buf, size_t len,
                               const struct cn_tel_limits *lim, char *err, size_t err_len);

/* The same for an ExportLogsServiceRequest, filling b->logs. A log record is refused for a
 * malformed traceId or spanId (both may be absent, empty or all zero: a log without trace) or
 * a severityNumber outside 0..24. Bodies are not cut by max_attr_value_bytes: that limit is
 * for attribute values. */
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
