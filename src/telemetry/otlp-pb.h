/* OTLP/protobuf: a zero-copy decoder for ExportTraceServiceRequest and
 * ExportLogsServiceRequest bodies into the telemetry model, and the encoders of the two
 * response messages. Field numbers follow opentelemetry-proto (trace/v1, logs/v1, common/v1,
 * resource/v1, collector/{trace,logs}/v1); no generated code is involved. */
#ifndef CN_TELEMETRY_OTLP_PB_H
#define CN_TELEMETRY_OTLP_PB_H

#include "base/buf.h"
#include "telemetry/model.h"

/* Decodes an ExportTraceServiceRequest in buf into b->spans / b->num_spans.
 *
 * Ownership: string slices (names, keys, string and bytes values, trace states) point into
 * buf, which the caller keeps alive and unchanged as long as the batch. The span array, the
 * attribute/event/link arrays, one cn_resource per ResourceSpans and one cn_scope per
 * ScopeSpans (never NULL, shared by their spans), and the OTLP JSON text of array and
 * kvlist values live in b->arena. b should be fresh from cn_tel_batch_init.
 *
 * Per-record checks refuse a span through cn_tel_batch_reject (partial success, the rest of
 * the batch is kept): trace_id not 16 bytes or all zero, span_id not 8 bytes or all zero,
 * parent_span_id neither empty nor 8 bytes, kind > 5, status code > 2, end before start, a
 * link whose trace_id/span_id is neither empty nor 16/8 bytes. A refused span adds nothing
 * to the truncation counters.
 *
 * Limits from lim (NULL or 0 fields mean unlimited) cut what passes them and count it in
 * the batch's truncation counters and the record's dropped counters; the sender's
 * dropped_*_count fields are added to the latter. Limits never change which records are
 * accepted: dropped items are still checked for well-formedness.
 *
 * Unknown fields of any non-group wire type are skipped. Strings are not checked for UTF-8
 * (they are kept as sent); the JSON text of arrays and kvlists is always valid UTF-8, with
 * U+FFFD for bytes that are not.
 *
 * Returns 0; CN_ESYNTAX when buf is not protobuf of this shape (bad varint, a length past
 * its message, a known field with the wrong wire type, a group wire type, field number 0,
 * AnyValue nesting deeper than 16), with err naming the place, e.g.
 * "resource_spans[0].scope_spans[1].spans[3]: truncated field 5 (name)"; CN_ENOMEM when the
 * arena's maximum is reached ("batch too large for the decode budget"). On failure
 * b->num_spans is 0; what was allocated stays in the arena until cn_tel_batch_release.
 * err may be NULL. */
int cn_otlp_pb_decode_traces(struct cn_tel_batch *b, const uint8_t *buf, size_t len,
                             const struct cn_tel_limits *lim, char *err, size_t err_len);

/* Decodes an ExportLogsServiceRequest into b->logs / b->num_logs, as
 * cn_otlp_pb_decode_traces does for spans. A record is refused when its trace_id is neither
 * empty nor 16 bytes, its span_id neither empty nor 8 bytes, or its severity_number > 24.
 * Attribute limits apply to the record's attributes; the body is not cut (it is not an
 * attribute). */
int cn_otlp_pb_decode_logs(struct cn_tel_batch *b, const uint8_t *buf, size_t len,
                           const struct cn_tel_limits *lim, char *err, size_t err_len);

/* Appends an ExportTraceServiceResponse to out: nothing (the empty message) when
 * rejected_spans is 0 and error_message is NULL or "", otherwise partial_success with the
 * fields that are not zero/empty. Returns 0, or CN_ELIMIT / CN_ENOMEM from out, which is
 * then unchanged. */
int cn_otlp_pb_encode_trace_response(struct cn_buf *out, uint64_t rejected_spans,
                                     const char *error_message);

/* Same for ExportLogsServiceResponse (partial_success.rejected_log_records). */
int cn_otlp_pb_encode_logs_response(struct cn_buf *out, uint64_t rejected_log_records,
                                    const char *error_message);

#endif
