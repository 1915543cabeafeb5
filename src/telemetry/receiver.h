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

/* Registers the routes on r with rc as their context. Returns 0 or a CN_E* code. */
int cn_receiver_routes(struct cn_receiver *rc, struct cn_router *r);

#endif
