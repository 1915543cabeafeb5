/* Live tail of log records: subscribers on event loops receive the records that match their
 * filter as the store makes them durable, rendered as newline-delimited JSON.
 *
 * The store's writer thread calls cn_tail_publish for each ingested batch (its ingest hook);
 * it renders the matching records into each subscriber's pending buffer and wakes the
 * subscriber's loop. A subscriber whose pending buffer would pass max_pending_bytes loses
 * the records that do not fit, counted in cn_tail_take's dropped, never blocking ingest.
 *
 * Threads: cn_tail_publish runs on any one thread at a time; subscribe, take and
 * unsubscribe run on the subscriber's loop. */
#ifndef CN_TELEMETRY_TAIL_H
#define CN_TELEMETRY_TAIL_H

#include "base/buf.h"
#include "telemetry/query.h"

#include <uv.h>

struct cn_tail;
struct cn_tail_sub;

/* Runs on the subscriber's loop when records are pending. */
typedef void (*cn_tail_cb)(struct cn_tail_sub *s, void *data);

/* NULL on allocation failure. Free with cn_tail_free once no subscriber is left and the
 * store no longer publishes. */
struct cn_tail *cn_tail_new(void);
void cn_tail_free(struct cn_tail *t);
/* Number of subscribers now (for metrics). */
size_t cn_tail_subscribers(struct cn_tail *t);

/* The store's ingest hook (cn_store_ingest_cb); ctx is the cn_tail. */
void cn_tail_publish(void *ctx, const struct cn_tel_batch *b);

/* Subscribes on loop with filter q (the subscription takes q and everything it points to,
 * and cl: both are freed by q_free(q_data) and cn_code_links_free at unsubscribe). Returns
 * the subscription, or NULL (nothing taken). */
struct cn_tail_sub *cn_tail_subscribe(struct cn_tail *t, uv_loop_t *loop,
                                      const struct cn_log_query *q, void (*q_free)(void *),
                                      void *q_data, struct cn_code_links *cl,
                                      size_t max_pending_bytes, cn_tail_cb cb, void *data);
/* Moves the pending lines into out (appended, bounded by out->max: what does not fit stays
 * pending) and the count of records dropped since the last take into *out_dropped. */
void cn_tail_take(struct cn_tail_sub *s, struct cn_buf *out, uint64_t *out_dropped);
/* Ends the subscription: no callback runs after it; freed once its handle closed. */
void cn_tail_unsubscribe(struct cn_tail_sub *s);

#endif
