/* Stored spans in the shapes other tools parse (docs/compat.md):
 *
 * - Jaeger's UI model (jaeger model/json): a trace {traceID, spans, processes, warnings};
 *   spans carry references (CHILD_OF the parent, FOLLOWS_FROM each link), times and
 *   durations in microseconds, typed tags, logs from events, and a processID naming a
 *   process {serviceName, tags} built from the resource. Span kind, status and scope become
 *   tags as Jaeger's OTLP receiver writes them: span.kind, otel.status_code, error=true,
 *   otel.status_description, otel.scope.name, otel.scope.version, w3c.tracestate.
 * - Zipkin v2 (zipkin2-api.yaml): {traceId, parentId, id, kind, name, timestamp, duration,
 *   localEndpoint, remoteEndpoint, annotations, tags} with string tags.
 * - Tempo: OTLP resource spans grouped by resource and scope, in Tempo's JSON (protobuf
 *   JSON mapping: IDs in base64, enums by name, 64-bit integers as strings, empty fields
 *   left out) or in protobuf (tempopb.Trace, wire-compatible with OTLP TracesData).
 *
 * Builders copy what they need from each span, so they may be fed from store callbacks. */
#ifndef CN_TELEMETRY_RENDER_COMPAT_H
#define CN_TELEMETRY_RENDER_COMPAT_H

#include "base/buf.h"
#include "telemetry/model.h"

#include <jansson.h>

/* Jaeger tags of one attribute list: [{key, type, value}]. New reference. */
json_t *cn_jaeger_tags(const struct cn_kvs *kvs);

/* A Jaeger trace being built. States: after init, spans and processes are empty arrays /
 * objects; add appends; finish hands back the trace and leaves the builder released. */
struct cn_jaeger_trace {
    json_t *spans;
    json_t *procs; /* array of process objects, index i is "p<i+1>" */
};

void cn_jaeger_trace_init(struct cn_jaeger_trace *t);
/* Adds span s (rendered now). Returns 0 or CN_ENOMEM. */
int cn_jaeger_trace_add(struct cn_jaeger_trace *t, const struct cn_span *s);
/* The trace object {traceID, spans (by start time), processes, warnings: null} for
 * trace_id; NULL on allocation failure. Releases t either way. */
json_t *cn_jaeger_trace_finish(struct cn_jaeger_trace *t, const uint8_t trace_id[16]);
void cn_jaeger_trace_release(struct cn_jaeger_trace *t);

/* One Zipkin v2 span. New reference, NULL on allocation failure. */
json_t *cn_zipkin_render_span(const struct cn_span *s);

/* Tempo's resource spans being built, grouped by resource and scope in order of first
 * appearance. */
struct cn_tempo_trace {
    json_t *batches; /* [{resource, scopeSpans: [{scope, spans}]}] */
};

void cn_tempo_trace_init(struct cn_tempo_trace *t);
int cn_tempo_trace_add(struct cn_tempo_trace *t, const struct cn_span *s);
/* The batches array (Tempo JSON); the builder is released. NULL on allocation failure. */
json_t *cn_tempo_trace_finish(struct cn_tempo_trace *t);
void cn_tempo_trace_release(struct cn_tempo_trace *t);

/* Encodes batches (as cn_tempo_trace_finish returns) as protobuf: each batch one
 * length-delimited field number `field` (1 for tempopb.Trace.batches and OTLP
 * TracesData.resource_spans) appended to out. Returns 0, CN_ENOMEM / CN_ELIMIT (out's
 * maximum), or CN_ESYNTAX when batches is not in that shape. */
int cn_tempo_encode_pb(struct cn_buf *out, const json_t *batches, uint32_t field);

#endif
