/* The gateway's own telemetry: a server span and an access-log record per request. Workers
 * copy each finished request into a per-worker batch (no lock, no allocation but one batch
 * per batch_size requests) and hand full batches (or a partial one after flush_interval) to
 * one exporter thread through a bounded queue: a full queue drops the batch and counts it,
 * the worker never waits. The exporter encodes OTLP protobuf (ExportTraceServiceRequest and
 * ExportLogsServiceRequest) and either submits it to the telemetry store in-process (cairn
 * up, as a receiver does) or POSTs it over OTLP/HTTP with libcurl (the gateway alone). */
#include "gateway/internal.h"

#include "base/log.h"
#include "ev/mailbox.h"
#include "telemetry/store.h"

#include <curl/curl.h>
#include <pthread.h>

#define REC_STR 192 /* bytes kept of each string of a record */

struct gw_rec {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    uint8_t flags, has_parent, sampled;
    uint64_t start_ns, end_ns;
    int status;
    char method[24], path[REC_STR], host[128], ip[48], route[REC_STR], cluster[REC_STR],
        endpoint[REC_STR];
};

struct gw_batch {
    struct gw_batch *next;
    size_t n, cap;
    struct gw_rec recs[];
};

/* Per worker: the batch being filled and its flush timer. */
struct gw_tel_w {
    uv_timer_t timer; /* first: on_timer_closed frees the struct from it */
    struct gw_batch *cur;
    struct cn_gw *gw;
    int timer_armed;
};

/* The exporter. queue/nqueued/stop/cfg under lock; inflight on the exporter's loop. */
struct gw_tel {
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t kick;
    struct cn_mailbox mailbox;
    pthread_mutex_t lock;
    struct gw_batch *head, *tail;
    uint64_t nqueued, max_queued;
    int stop, closing;
    uint64_t inflight;
    struct cn_store *store;
    char endpoint[1024];
    char service[256];
    int access_log;
    uint64_t timeout_ms;
    atomic_uint_fast64_t spans, logs, dropped_spans, dropped_logs, export_errors;
};

/* ---- protobuf writer --------------------------------------------------------------------------
 */

struct pb {
    struct cn_buf b;
    int err;
};

static void pb_raw(struct pb *p, const void *d, size_t n)
{
    if (!p->err && cn_buf_append(&p->b, d, n) != 0)
        p->err = 1;
}

static void pb_varint(struct pb *p, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    pb_raw(p, t, n);
}

static void pb_tag(struct pb *p, unsigned field, unsigned wt)
{
    pb_varint(p, (uint64_t)field << 3 | wt);
}

static void pb_bytes(struct pb *p, unsigned field, const void *d, size_t n)
{
    pb_tag(p, field, 2);
    pb_varint(p, n);
    pb_raw(p, d, n);
}

static void pb_str(struct pb *p, unsigned field, const char *s)
{
    pb_bytes(p, field, s, strlen(s));
}

static void pb_fixed64(struct pb *p, unsigned field, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    pb_tag(p, field, 1);
    pb_raw(p, t, 8);
}

static void pb_fixed32(struct pb *p, unsigned field, uint32_t v)
{
    uint8_t t[4];
    for (int i = 0; i < 4; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    pb_tag(p, field, 5);
    pb_raw(p, t, 4);
}

/* A nested message: its length is written as a 5-byte varint (padded, which protobuf
 * decoders accept) once the message is complete. */
static size_t pb_begin(struct pb *p, unsigned field)
{
    pb_tag(p, field, 2);
    size_t at = p->b.len;
    pb_raw(p, "\x80\x80\x80\x80\x00", 5);
    return at;
}

static void pb_end(struct pb *p, size_t at)
{
    if (p->err)
        return;
    uint64_t n = p->b.len - at - 5;
    uint8_t *d = (uint8_t *)p->b.ptr + at;
    for (int i = 0; i < 5; i++) {
        d[i] = (uint8_t)((n & 0x7f) | (i < 4 ? 0x80 : 0));
        n >>= 7;
    }
}

static void kv_str(struct pb *p, unsigned field, const char *k, const char *v)
{
    size_t kv = pb_begin(p, field);
    pb_str(p, 1, k);
    size_t av = pb_begin(p, 2);
    pb_str(p, 1, v);
    pb_end(p, av);
    pb_end(p, kv);
}

static void kv_int(struct pb *p, unsigned field, const char *k, int64_t v)
{
    size_t kv = pb_begin(p, field);
    pb_str(p, 1, k);
    size_t av = pb_begin(p, 2);
    pb_tag(p, 3, 0);
    pb_varint(p, (uint64_t)v);
    pb_end(p, av);
    pb_end(p, kv);
}

static void rec_attrs(struct pb *p, unsigned field, const struct gw_rec *r)
{
    kv_str(p, field, "http.request.method", r->method);
    kv_str(p, field, "url.path", r->path);
    if (r->host[0])
        kv_str(p, field, "server.address", r->host);
    if (r->ip[0])
        kv_str(p, field, "client.address", r->ip);
    if (r->status)
        kv_int(p, field, "http.response.status_code", r->status);
    else
        kv_str(p, field, "cairn.gateway.outcome", "aborted");
    kv_str(p, field, "http.route", r->route);
    if (r->cluster[0])
        kv_str(p, field, "cairn.gateway.cluster", r->cluster);
    if (r->endpoint[0])
        kv_str(p, field, "cairn.gateway.endpoint", r->endpoint);
}

static void resource(struct pb *p, const char *service)
{
    size_t res = pb_begin(p, 1);
    kv_str(p, 1, "service.name", service);
    pb_end(p, res);
}

/* ExportTraceServiceRequest of the batch's sampled records; 0 spans: nothing written. */
static size_t encode_spans(struct pb *p, const struct gw_batch *b, const char *service)
{
    size_t n = 0;
    size_t rs = pb_begin(p, 1);
    resource(p, service);
    size_t ss = pb_begin(p, 2);
    size_t sc = pb_begin(p, 1);
    pb_str(p, 1, "cairn-gateway");
    pb_end(p, sc);
    for (size_t i = 0; i < b->n; i++) {
        const struct gw_rec *r = &b->recs[i];
        if (!r->sampled)
            continue;
        n++;
        size_t sp = pb_begin(p, 2);
        pb_bytes(p, 1, r->trace_id, 16);
        pb_bytes(p, 2, r->span_id, 8);
        if (r->has_parent)
            pb_bytes(p, 4, r->parent_id, 8);
        char name[REC_STR + 32];
        snprintf(name, sizeof(name), "%s %s", r->method, r->route);
        pb_str(p, 5, name);
        pb_tag(p, 6, 0);
        pb_varint(p, 2); /* SPAN_KIND_SERVER */
        pb_fixed64(p, 7, r->start_ns);
        pb_fixed64(p, 8, r->end_ns);
        rec_attrs(p, 9, r);
        if (r->status >= 500) {
            size_t st = pb_begin(p, 15);
            char msg[32];
            snprintf(msg, sizeof(msg), "HTTP %d", r->status);
            pb_str(p, 2, msg);
            pb_tag(p, 3, 0);
            pb_varint(p, 2); /* STATUS_CODE_ERROR */
            pb_end(p, st);
        }
        pb_fixed32(p, 16, r->flags);
        pb_end(p, sp);
    }
    pb_end(p, ss);
    pb_end(p, rs);
    return n;
}

static size_t encode_logs(struct pb *p, const struct gw_batch *b, const char *service)
{
    size_t rl = pb_begin(p, 1);
    resource(p, service);
    size_t sl = pb_begin(p, 2);
    size_t sc = pb_begin(p, 1);
    pb_str(p, 1, "cairn-gateway.access");
    pb_end(p, sc);
    for (size_t i = 0; i < b->n; i++) {
        const struct gw_rec *r = &b->recs[i];
        size_t lr = pb_begin(p, 2);
        pb_fixed64(p, 1, r->end_ns);
        pb_tag(p, 2, 0);
        pb_varint(p, r->status >= 500 || r->status == 0 ? 13 : 9); /* WARN / INFO */
        pb_str(p, 3, r->status >= 500 || r->status == 0 ? "WARN" : "INFO");
        char line[REC_STR * 2];
        if (r->status)
            snprintf(line, sizeof(line), "%s %s %d %.3fms", r->method, r->path, r->status,
                     (double)(r->end_ns - r->start_ns) / 1e6);
        else
            snprintf(line, sizeof(line), "%s %s aborted %.3fms", r->method, r->path,
                     (double)(r->end_ns - r->start_ns) / 1e6);
        size_t body = pb_begin(p, 5);
        pb_str(p, 1, line);
        pb_end(p, body);
        rec_attrs(p, 6, r);
        pb_fixed32(p, 8, r->flags);
        pb_bytes(p, 9, r->trace_id, 16);
        pb_bytes(p, 10, r->span_id, 8);
        pb_fixed64(p, 11, r->end_ns);
        pb_end(p, lr);
    }
    pb_end(p, sl);
    pb_end(p, rl);
    return b->n;
}

/* ---- the exporter thread ----------------------------------------------------------------------
 */

static void maybe_close(struct gw_tel *t)
{
    pthread_mutex_lock(&t->lock);
    int done = t->stop && !t->head;
    pthread_mutex_unlock(&t->lock);
    if (done && !t->inflight && !t->closing) {
        t->closing = 1;
        uv_close((uv_handle_t *)&t->kick, NULL);
        cn_mailbox_close(&t->mailbox);
    }
}

static void on_stored(struct cn_mail *m)
{
    struct cn_store_sub *sub = (struct cn_store_sub *)m;
    struct gw_tel *t = sub->data;
    if (sub->status != 0)
        atomic_fetch_add(&t->export_errors, 1);
    cn_store_sub_free(sub);
    t->inflight--;
    maybe_close(t);
}

/* Hands body (malloc'd, owned from here) to the store. Returns 0 or -1 (dropped). */
static int to_store(struct gw_tel *t, uint8_t *body, size_t len, enum cn_body_kind kind)
{
    struct cn_store_sub *sub = calloc(1, sizeof(*sub));
    if (!sub) {
        free(body);
        return -1;
    }
    sub->body = body;
    sub->len = len;
    sub->kind = kind;
    sub->data = t;
    sub->mail.cb = on_stored;
    cn_tel_batch_init(&sub->batch, len * 8 + (1u << 20));
    char err[256];
    if (cn_tel_decode(&sub->batch, kind, body, len, NULL, err, sizeof(err)) != 0) {
        cn_error("gateway", "own telemetry did not decode", "error=\"%s\"", err);
        cn_store_sub_free(sub);
        return -1;
    }
    if (cn_store_submit(t->store, sub, &t->mailbox) != 0) {
        cn_store_sub_free(sub);
        return -1; /* the store is full: dropped and counted by the caller */
    }
    t->inflight++;
    return 0;
}

/* The answer's body is not used (libcurl would write it to stdout). */
static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

static int to_otlp(struct gw_tel *t, const char *endpoint, const char *path, const void *body,
                   size_t len)
{
    char url[1100];
    size_t el = strlen(endpoint);
    while (el && endpoint[el - 1] == '/')
        el--;
    snprintf(url, sizeof(url), "%.*s%s", (int)el, endpoint, path);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-protobuf");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status / 100 != 2) {
        cn_warn("gateway", "otlp export failed", "url=\"%s\" status=%ld error=\"%s\"", url, status,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "status");
        return -1;
    }
    return 0;
}

static void export_batch(struct gw_tel *t, struct gw_batch *b)
{
    char endpoint[sizeof(t->endpoint)], service[sizeof(t->service)];
    pthread_mutex_lock(&t->lock);
    memcpy(endpoint, t->endpoint, sizeof(endpoint));
    memcpy(service, t->service, sizeof(service));
    int access_log = t->access_log;
    pthread_mutex_unlock(&t->lock);
    for (int logs = 0; logs < 2; logs++) {
        if (logs && !access_log)
            break;
        struct pb p = {.err = 0};
        cn_buf_init(&p.b, 64u << 20);
        size_t n = logs ? encode_logs(&p, b, service) : encode_spans(&p, b, service);
        atomic_uint_fast64_t *ok = logs ? &t->logs : &t->spans;
        atomic_uint_fast64_t *dropped = logs ? &t->dropped_logs : &t->dropped_spans;
        int rc = -1;
        if (n == 0) {
            cn_buf_release(&p.b);
            continue;
        }
        if (!p.err && t->store) {
            uint8_t *body = (uint8_t *)p.b.ptr;
            size_t len = p.b.len;
            p.b.ptr = NULL; /* moved into the submission */
            p.b.len = p.b.cap = 0;
            rc = to_store(t, body, len, logs ? CN_BODY_LOGS_PB : CN_BODY_TRACES_PB);
        } else if (!p.err && endpoint[0]) {
            rc = to_otlp(t, endpoint, logs ? "/v1/logs" : "/v1/traces", p.b.ptr, p.b.len);
            if (rc)
                atomic_fetch_add(&t->export_errors, 1);
        }
        atomic_fetch_add(rc == 0 ? ok : dropped, n);
        cn_buf_release(&p.b);
    }
}

static void on_kick(uv_async_t *a)
{
    struct gw_tel *t = a->data;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        struct gw_batch *b = t->head;
        if (b) {
            t->head = b->next;
            if (!t->head)
                t->tail = NULL;
            t->nqueued--;
        }
        pthread_mutex_unlock(&t->lock);
        if (!b)
            break;
        export_batch(t, b);
        free(b);
    }
    maybe_close(t);
}

static void *tel_main(void *arg)
{
    struct gw_tel *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Creates the exporter (under gw->lock, from cn_gw_publish). */
static struct gw_tel *tel_new(void)
{
    struct gw_tel *t = calloc(1, sizeof(*t));
    if (!t || uv_loop_init(&t->loop) != 0) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    uv_async_init(&t->loop, &t->kick, on_kick);
    t->kick.data = t;
    cn_mailbox_init(&t->mailbox, &t->loop);
    if (pthread_create(&t->thread, NULL, tel_main, t) != 0) {
        uv_close((uv_handle_t *)&t->kick, NULL);
        cn_mailbox_close(&t->mailbox);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    return t;
}

void gw_tel_configure(struct cn_gw *gw, const struct cn_gw_snapshot *s)
{
    /* Under gw->lock. */
    const struct gw_tracing *tr = &s->tracing;
    if (!tr->enabled || (!gw->store && !tr->otlp_endpoint.len))
        return; /* an exporter once made stays (workers may still hand it batches) */
    if (!gw->tel && !(gw->tel = tel_new())) {
        cn_error("gateway", "cannot start the span exporter, spans are not recorded", NULL);
        return;
    }
    struct gw_tel *t = gw->tel;
    pthread_mutex_lock(&t->lock);
    t->store = gw->store;
    snprintf(t->endpoint, sizeof(t->endpoint), "%.*s", (int)tr->otlp_endpoint.len,
             tr->otlp_endpoint.ptr);
    snprintf(t->service, sizeof(t->service), "%.*s", (int)tr->service_name.len,
             tr->service_name.ptr);
    t->access_log = tr->access_log;
    t->max_queued = tr->queue_batches;
    t->timeout_ms = tr->export_timeout_ms;
    pthread_mutex_unlock(&t->lock);
}

void gw_tel_free(struct cn_gw *gw)
{
    struct gw_tel *t = gw->tel;
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_mutex_unlock(&t->lock);
    uv_async_send(&t->kick);
    pthread_join(t->thread, NULL);
    uv_loop_close(&t->loop);
    while (t->head) {
        struct gw_batch *b = t->head;
        t->head = b->next;
        free(b);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
    gw->tel = NULL;
}

/* ---- the worker side --------------------------------------------------------------------------
 */

static void push_batch(struct gw_worker *w)
{
    struct gw_tel_w *tw = w->tel;
    struct gw_batch *b = tw->cur;
    struct gw_tel *t = w->gw->tel;
    tw->cur = NULL;
    if (!b || b->n == 0) {
        free(b);
        return;
    }
    int queued = 0;
    if (t) {
        pthread_mutex_lock(&t->lock);
        if (!t->stop && t->nqueued < t->max_queued) {
            if (t->tail)
                t->tail->next = b;
            else
                t->head = b;
            t->tail = b;
            t->nqueued++;
            queued = 1;
        }
        pthread_mutex_unlock(&t->lock);
    }
    if (queued) {
        uv_async_send(&t->kick);
        return;
    }
    size_t sampled = 0;
    for (size_t i = 0; i < b->n; i++)
        sampled += b->recs[i].sampled;
    if (t) {
        atomic_fetch_add(&t->dropped_spans, sampled);
        if (t->access_log)
            atomic_fetch_add(&t->dropped_logs, b->n);
    }
    free(b);
}

static void on_flush(uv_timer_t *timer)
{
    struct gw_worker *w = timer->data;
    w->tel->timer_armed = 0;
    push_batch(w);
}

static void copy(char *dst, size_t cap, struct cn_slice s)
{
    size_t n = CN_MIN(s.len, cap - 1);
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

void gw_tel_record(struct gw_worker *w, const struct gw_req_done *d)
{
    struct gw_tel_w *tw = w->tel;
    if (!tw || !w->gw->tel || !w->view)
        return;
    const struct gw_tracing *tr = &w->view->snap->tracing;
    if (!d->st->sampled && !tr->access_log)
        return;
    if (!tw->cur) {
        size_t cap = (size_t)tr->batch_size;
        tw->cur = malloc(sizeof(*tw->cur) + cap * sizeof(tw->cur->recs[0]));
        if (!tw->cur)
            return;
        tw->cur->next = NULL;
        tw->cur->n = 0;
        tw->cur->cap = cap;
    }
    struct gw_rec *r = &tw->cur->recs[tw->cur->n++];
    const struct gw_ext_state *st = d->st;
    memcpy(r->trace_id, st->trace_id, 16);
    memcpy(r->span_id, st->span_id, 8);
    memcpy(r->parent_id, st->parent_id, 8);
    r->flags = st->flags;
    r->has_parent = st->has_parent;
    r->sampled = st->sampled;
    r->start_ns = st->start_wall_ns;
    r->end_ns = st->start_wall_ns + d->duration_ns;
    r->status = d->status;
    copy(r->route, sizeof(r->route), d->route);
    copy(r->cluster, sizeof(r->cluster), d->cluster);
    copy(r->endpoint, sizeof(r->endpoint), d->endpoint);
    r->method[0] = r->path[0] = r->host[0] = r->ip[0] = '\0';
    if (d->creq) {
        copy(r->method, sizeof(r->method), d->creq->method_name);
        copy(r->path, sizeof(r->path), d->creq->path);
        const struct cn_slice *h = cn_http_req_header(d->creq, "host");
        if (h)
            copy(r->host, sizeof(r->host), *h);
        snprintf(r->ip, sizeof(r->ip), "%s", cn_http_req_peer_ip((struct cn_http_req *)d->creq));
    }
    if (tw->cur->n == tw->cur->cap) {
        if (tw->timer_armed) {
            uv_timer_stop(&tw->timer);
            tw->timer_armed = 0;
        }
        push_batch(w);
    } else if (!tw->timer_armed) {
        uv_timer_start(&tw->timer, on_flush, tr->flush_ms, 0);
        tw->timer_armed = 1;
    }
}

int gw_tel_worker_init(struct gw_worker *w)
{
    struct gw_tel_w *tw = calloc(1, sizeof(*tw));
    if (!tw)
        return CN_ENOMEM;
    uv_timer_init(w->loop, &tw->timer);
    tw->timer.data = w;
    tw->gw = w->gw;
    w->tel = tw;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    free((struct gw_tel_w *)(void *)h); /* the timer is the first member */
}

void gw_tel_worker_release(struct gw_worker *w)
{
    struct gw_tel_w *tw = w->tel;
    if (!tw)
        return;
    push_batch(w);
    w->tel = NULL;
    uv_close((uv_handle_t *)&tw->timer, on_timer_closed);
}

void gw_tel_metrics_write(struct cn_buf *b, struct cn_gw *gw)
{
    struct gw_tel *t = gw->tel;
    unsigned long long v[5] = {0};
    if (t) {
        v[0] = atomic_load(&t->spans);
        v[1] = atomic_load(&t->logs);
        v[2] = atomic_load(&t->dropped_spans);
        v[3] = atomic_load(&t->dropped_logs);
        v[4] = atomic_load(&t->export_errors);
    }
    cn_buf_printf(b,
                  "# HELP cairn_gateway_spans_exported_total Server spans handed to telemetry.\n"
                  "# TYPE cairn_gateway_spans_exported_total counter\n"
                  "cairn_gateway_spans_exported_total %llu\n"
                  "# HELP cairn_gateway_access_logs_exported_total Access-log records handed to "
                  "telemetry.\n"
                  "# TYPE cairn_gateway_access_logs_exported_total counter\n"
                  "cairn_gateway_access_logs_exported_total %llu\n"
                  "# HELP cairn_gateway_spans_dropped_total Spans dropped (queue or store full, "
                  "export failed).\n"
                  "# TYPE cairn_gateway_spans_dropped_total counter\n"
                  "cairn_gateway_spans_dropped_total %llu\n"
                  "# HELP cairn_gateway_access_logs_dropped_total Access-log records dropped.\n"
                  "# TYPE cairn_gateway_access_logs_dropped_total counter\n"
                  "cairn_gateway_access_logs_dropped_total %llu\n"
                  "# HELP cairn_gateway_export_errors_total Failed exports (OTLP/HTTP or store "
                  "writes).\n"
                  "# TYPE cairn_gateway_export_errors_total counter\n"
                  "cairn_gateway_export_errors_total %llu\n",
                  v[0], v[1], v[2], v[3], v[4]);
}
