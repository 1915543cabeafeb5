/* OTLP/HTTP and Zipkin receivers: POST /v1/traces, /v1/logs (protobuf or JSON, gzip),
 * POST /api/v2/spans (Zipkin v2 JSON). A body is decoded on the receiving worker, then
 * handed to the store; the answer goes out once the store says the batch is durable. */
#ifndef CN_TELEMETRY_RECEIVER_H
#define CN_TELEMETRY_RECEIVER_H

#include "ev/mailbox.h"
#include "http/server.h"
#include "telemetry/store.h"

/* Per worker: where the store's answers arrive, and how many are awaited. */
struct cn_receiver_worker {
    struct cn_mailbox mailbox;
    uint64_t inflight;
    void (*on_idle)(struct cn_receiver_worker *rw); /* inflight fell to 0 */
    void *data;
};

struct cn_receiver {
    struct cn_store *store;
    struct cn_tel_limits limits;
    size_t decode_budget; /* arena bytes per decoded body */
    uint32_t retry_after_s;
    /* Per-worker state, found by worker id. */
    struct cn_receiver_worker *workers;
    atomic_uint_fast64_t requests, bad_requests, refused;
};

/* The OTLP port's cn_http_error_body_cb: errors the server core answers by itself (a body
 * past otlp.max_body_bytes, bad chunked framing or gzip) to /v1/traces and /v1/logs come as
 * a google.rpc.Status in the request's encoding, as to a decoding error; Zipkin's as JSON. */
size_t cn_receiver_error_body(void *ctx, const struct cn_http_req *req, int status,
                              const char *reason, char *out, size_t cap, const char **content_type);

/* Registers the routes on r with rc as their context. Returns 0 or a CN_E* code. */
int cn_receiver_routes(struct cn_receiver *rc, struct cn_router *r);

#endif
