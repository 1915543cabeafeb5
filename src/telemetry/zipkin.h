/* Zipkin v2 JSON (POST /api/v2/spans): decoding a list of spans into a cn_tel_batch.
 *
 * Mapping: traceId (1 to 32 hex digits, any case, left-padded with zeros to 16 bytes, as the
 * Zipkin server pads), id and parentId (1 to 16 hex digits, padded to 8 bytes; an all-zero
 * parentId is a root), kind CLIENT/SERVER/PRODUCER/CONSUMER to the OTLP kinds 3/2/4/5 and
 * absent to INTERNAL, timestamp and duration in microseconds to start and end in nanoseconds,
 * annotations to events, tags to string attributes (numbers and booleans as their text).
 * Spans of one localEndpoint.serviceName share one cn_resource holding the service.name
 * attribute (cut by max_attr_value_bytes like any attribute value, while cn_resource.service
 * keeps the whole name; "unknown_service" and no attribute without a name); all spans share
 * one empty scope. Attributes
 * added after the tags, in this order: remoteEndpoint.serviceName as net.peer.name and, but for
 * SERVER spans whose peer is the client, server.address; remoteEndpoint ipv4 (else ipv6) as
 * net.peer.ip and port as net.peer.port (int); localEndpoint ipv4 (else ipv6) as net.host.ip
 * and port as net.host.port; zipkin.debug and zipkin.shared (bool) when true. Addresses that
 * do not parse are ignored, as the Zipkin server ignores them. Status: the otel.status_code tag
 * (OK, ERROR, UNSET) with otel.status_description as message on ERROR; a tag "error" makes the
 * status ERROR with the tag's value, when not empty, as message. */
#ifndef CN_TELEMETRY_ZIPKIN_H
#define CN_TELEMETRY_ZIPKIN_H

#include "telemetry/model.h"

/* Decodes a Zipkin v2 JSON body of len bytes into b, which holds no spans yet. Strings of the
 * body are copied into b->arena, nothing points into buf or jansson's tree (the others, such
 * as the added attributes' keys, are literals). lim may be NULL (no limits); a zero limit means
 * unlimited.
 *
 * A span with a missing, malformed or all-zero traceId or id, a malformed parentId, an unknown
 * kind or otel.status_code, or no timestamp (0 or absent: Zipkin's unfinished spans) is
 * skipped and counted in b->rejected with the first reason in b->reject_msg; it adds nothing
 * to the truncation counters. Tags and annotations past the limits are dropped and counted,
 * tag values past max_attr_value_bytes cut at a UTF-8 boundary and counted; limits never
 * change which spans are accepted (dropped tags and annotations are checked too).
 *
 * Returns 0; CN_ESYNTAX for invalid JSON, a top level that is not an array, a known field of
 * the wrong JSON type, an annotation without timestamp or value, or a time past 2^64 ns, with
 * the JSON path in err (e.g. "[3].annotations[0].timestamp: not an integer"); CN_ENOMEM when
 * b's arena limit or memory runs out ("batch too large for the decode budget"). On failure b
 * holds no spans and its counters are as before the call. err may be NULL; otherwise it is
 * always NUL-terminated printable ASCII when err_len > 0. */
int cn_zipkin_decode(struct cn_tel_batch *b, const char *buf, size_t len,
                     const struct cn_tel_limits *lim, char *err, size_t err_len);

#endif
