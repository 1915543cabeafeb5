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
    /* The exporter thread's own (OTLP/HTTP): its libcurl handle and the body buffer. */
    CURL *curl;
    struct curl_slist *curl_hdrs;
    struct cn_buf body;
};

#define EXPORT_BODY_MAX (64u << 20) /* bytes of one encoded export request at most */

/* ---- protobuf writer --------------------------------------------------------------------------
 *
 * Each record is written into room reserved up front for its worst case (REC_PB_MAX), so a
 * field is a few stores: no capacity check and no call per field. The lengths of the
 * attribute messages are computed before they are written (exact varints); a record's own
 * message gets a 2-byte padded length (it is shorter than 2^14, REC_PB_MAX), the wrappers
 * around all the records a 5-byte one. Protobuf decoders accept padded varints. */

/* Worst case of one encoded record: its strings (at most sizeof(struct gw_rec) bytes, each
 * written once in the attributes, the route, method and path a second time in the span name
 * or the log line) plus the constant keys, tags and lengths (under 1 KiB). */
#define REC_PB_MAX (3 * sizeof(struct gw_rec) + 1024)

/* The helpers below are forced inline: as calls they were half of the encoder's work. */
#define ENC static inline __attribute__((always_inline))

ENC size_t varint_len(uint64_t v)
{
    if (v < 0x80)
        return 1;
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

ENC uint8_t *w_varint(uint8_t *p, uint64_t v)
{
    if (v < 0x80) {
        *p = (uint8_t)v;
        return p + 1;
    }
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

ENC uint8_t *w_tag(uint8_t *p, unsigned field, unsigned wt)
{
    return w_varint(p, (uint64_t)field << 3 | wt);
}

ENC uint8_t *w_bytes(uint8_t *p, unsigned field, const void *d, size_t n)
{
    p = w_tag(p, field, 2);
    p = w_varint(p, n);
    memcpy(p, d, n);
    return p + n;
}

ENC uint8_t *w_fixed64(uint8_t *p, unsigned field, uint64_t v)
{
    p = w_tag(p, field, 1);
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

ENC uint8_t *w_fixed32(uint8_t *p, unsigned field, uint32_t v)
{
    p = w_tag(p, field, 5);
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* A KeyValue {key, AnyValue {string_value}} as field `field`. */
ENC uint8_t *w_kv_str(uint8_t *p, unsigned field, struct cn_slice k, const char *v, size_t vl)
{
    size_t any = 1 + varint_len(vl) + vl;
    p = w_tag(p, field, 2);
    p = w_varint(p, 1 + varint_len(k.len) + k.len + 1 + varint_len(any) + any);
    p = w_bytes(p, 1, k.ptr, k.len);
    p = w_tag(p, 2, 2);
    p = w_varint(p, any);
    return w_bytes(p, 1, v, vl);
}

/* A KeyValue {key, AnyValue {int_value}} (non-negative values only). */
static uint8_t *w_kv_uint(uint8_t *p, unsigned field, struct cn_slice k, uint64_t v)
{
    size_t any = 1 + varint_len(v);
    p = w_tag(p, field, 2);
    p = w_varint(p, 1 + varint_len(k.len) + k.len + 1 + varint_len(any) + any);
    p = w_bytes(p, 1, k.ptr, k.len);
    p = w_tag(p, 2, 2);
    p = w_varint(p, any);
    p = w_tag(p, 3, 0);
    return w_varint(p, v);
}

#define KV(p, f, key, v, vl) w_kv_str(p, f, CN_SLICE_LIT(key), v, vl)

/* Opens a record's message: its tag, then 2 bytes for its length (rec_end). */
static uint8_t *rec_begin(uint8_t *p, unsigned field, uint8_t **out_at)
{
    p = w_tag(p, field, 2);
    *out_at = p;
    return p + 2;
}

static void rec_end(uint8_t *at, const uint8_t *p)
{
    size_t n = (size_t)(p - at - 2);
    CN_BUG_ON(n >= (1u << 14));
    at[0] = (uint8_t)(0x80 | (n & 0x7f));
    at[1] = (uint8_t)(n >> 7);
}

/* Decimal digits of v (at most 20) at p. */
static uint8_t *w_dec(uint8_t *p, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = (uint8_t)t[--n];
    return p;
}

static uint8_t *rec_attrs(uint8_t *p, unsigned field, const struct gw_rec *r)
{
    p = KV(p, field, "http.request.method", r->method, r->method_len);
    p = KV(p, field, "url.path", r->path, r->path_len);
    if (r->host_len)
        p = KV(p, field, "server.address", r->host, r->host_len);
    if (r->ip_len)
        p = KV(p, field, "client.address", r->ip, r->ip_len);
    if (r->status)
        p = w_kv_uint(p, field, CN_SLICE_LIT("http.response.status_code"), (uint64_t)r->status);
    else
        p = KV(p, field, "cairn.gateway.outcome", "aborted", 7);
    p = KV(p, field, "http.route", r->route, r->route_len);
    if (r->cluster_len)
        p = KV(p, field, "cairn.gateway.cluster", r->cluster, r->cluster_len);
    if (r->endpoint_len)
        p = KV(p, field, "cairn.gateway.endpoint", r->endpoint, r->endpoint_len);
    return p;
}

/* A Span (ScopeSpans field 2). */
static uint8_t *w_span(uint8_t *p, const struct gw_rec *r)
{
    uint8_t *at;
    p = rec_begin(p, 2, &at);
    p = w_bytes(p, 1, r->trace_id, 16);
    p = w_bytes(p, 2, r->span_id, 8);
    if (r->has_parent)
        p = w_bytes(p, 4, r->parent_id, 8);
    /* name: "METHOD route" */
    p = w_tag(p, 5, 2);
    p = w_varint(p, (size_t)r->method_len + 1 + r->route_len);
    memcpy(p, r->method, r->method_len);
    p += r->method_len;
    *p++ = ' ';
    memcpy(p, r->route, r->route_len);
    p += r->route_len;
    p = w_tag(p, 6, 0);
    p = w_varint(p, 2); /* SPAN_KIND_SERVER */
    p = w_fixed64(p, 7, r->start_ns);
    p = w_fixed64(p, 8, r->end_ns);
    p = rec_attrs(p, 9, r);
    if (r->status >= 500) {
        /* Status {message "HTTP nnn", code STATUS_CODE_ERROR} */
        uint8_t msg[32];
        memcpy(msg, "HTTP ", 5);
        size_t ml = (size_t)(w_dec(msg + 5, (uint64_t)r->status) - msg);
        p = w_tag(p, 15, 2);
        p = w_varint(p, 2 + ml + 2);
        p = w_bytes(p, 2, msg, ml);
        p = w_tag(p, 3, 0);
        p = w_varint(p, 2);
    }
    p = w_fixed32(p, 16, r->flags);
    rec_end(at, p);
    return p;
}

/* A LogRecord (ScopeLogs field 2); its body is "METHOD path status|aborted D.DDDms". */
static uint8_t *w_log(uint8_t *p, const struct gw_rec *r)
{
    int warn = r->status >= 500 || r->status == 0;
    uint8_t *at;
    p = rec_begin(p, 2, &at);
    p = w_fixed64(p, 1, r->end_ns);
    p = w_tag(p, 2, 0);
    p = w_varint(p, warn ? 13 : 9); /* WARN / INFO */
    p = warn ? w_bytes(p, 3, "WARN", 4) : w_bytes(p, 3, "INFO", 4);
    uint8_t line[2 * GW_REC_STR + 64], *l = line;
    memcpy(l, r->method, r->method_len);
    l += r->method_len;
    *l++ = ' ';
    memcpy(l, r->path, r->path_len);
    l += r->path_len;
    *l++ = ' ';
    if (r->status) {
        l = w_dec(l, (uint64_t)r->status);
    } else {
        memcpy(l, "aborted", 7);
        l += 7;
    }
    *l++ = ' ';
    /* milliseconds with 3 decimals, rounded to the microsecond */
    uint64_t us = (r->end_ns - r->start_ns + 500) / 1000;
    l = w_dec(l, us / 1000);
    *l++ = '.';
    *l++ = (uint8_t)('0' + us / 100 % 10);
    *l++ = (uint8_t)('0' + us / 10 % 10);
    *l++ = (uint8_t)('0' + us % 10);
    memcpy(l, "ms", 2);
    l += 2;
    size_t ll = (size_t)(l - line);
    p = w_tag(p, 5, 2); /* AnyValue {string_value} */
    p = w_varint(p, 1 + varint_len(ll) + ll);
    p = w_bytes(p, 1, line, ll);
    p = rec_attrs(p, 6, r);
    p = w_fixed32(p, 8, r->flags);
    p = w_bytes(p, 9, r->trace_id, 16);
    p = w_bytes(p, 10, r->span_id, 8);
    p = w_fixed64(p, 11, r->end_ns);
    rec_end(at, p);
    return p;
}

/* Opens a wrapper message around the records: its tag and 5 bytes for its length. */
static size_t wrap_begin(struct cn_buf *o, unsigned field)
{
    uint8_t *p = (uint8_t *)o->ptr + o->len;
    p = w_tag(p, field, 2);
    o->len += 1 + 5;
    return o->len - 5;
}

static void wrap_end(struct cn_buf *o, size_t at)
{
    uint64_t n = o->len - at - 5;
    uint8_t *d = (uint8_t *)o->ptr + at;
    for (int i = 0; i < 5; i++) {
        d[i] = (uint8_t)((n & 0x7f) | (i < 4 ? 0x80 : 0));
        n >>= 7;
    }
}

int gw_tel_encode(struct cn_buf *out, const struct gw_batch *b, struct cn_slice service, int logs)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += logs || b->recs[i].sampled;
    if (n == 0)
        return 0;
    if (service.len > 4096)
        service.len = 4096; /* the configuration keeps it far shorter */
    /* The wrappers: 3 opened (6 bytes each), the resource (under 64 bytes besides the
     * name), the scope's name. */
    int rc = cn_buf_reserve(out, 3 * 6 + 64 + service.len + 64);
    if (rc)
        return rc;
    size_t outer = wrap_begin(out, 1); /* ResourceSpans / ResourceLogs */
    uint8_t *p = (uint8_t *)out->ptr + out->len;
    /* Resource {attributes [service.name]} */
    size_t kv = 1 + 1 + 12 + 1 + varint_len(1 + varint_len(service.len) + service.len) + 1 +
                varint_len(service.len) + service.len;
    p = w_tag(p, 1, 2);
    p = w_varint(p, 1 + varint_len(kv) + kv);
    p = KV(p, 1, "service.name", service.ptr, service.len);
    out->len = (size_t)(p - (uint8_t *)out->ptr);
    size_t scoped = wrap_begin(out, 2); /* ScopeSpans / ScopeLogs */
    p = (uint8_t *)out->ptr + out->len;
    /* InstrumentationScope {name} */
    struct cn_slice scope =
        logs ? CN_SLICE_LIT("cairn-gateway.access") : CN_SLICE_LIT("cairn-gateway");
    p = w_tag(p, 1, 2);
    p = w_varint(p, 2 + scope.len);
    p = w_bytes(p, 1, scope.ptr, scope.len);
    out->len = (size_t)(p - (uint8_t *)out->ptr);
    for (size_t i = 0; i < b->n; i++) {
        const struct gw_rec *r = &b->recs[i];
        if (!logs && !r->sampled)
            continue;
        if ((rc = cn_buf_reserve(out, REC_PB_MAX)) != 0)
            return rc;
        uint8_t *start = (uint8_t *)out->ptr + out->len;
        p = logs ? w_log(start, r) : w_span(start, r);
        CN_BUG_ON((size_t)(p - start) > REC_PB_MAX);
        out->len += (size_t)(p - start);
    }
    wrap_end(out, scoped);
    wrap_end(out, outer);
    return (int)n;
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

/* POSTs body to endpoint + path over the exporter's one libcurl handle, which keeps its
 * connection to the collector alive between exports (a new connection per batch cost a
 * connect, a TIME_WAIT socket and curl's setup each time). On the exporter's thread. */
static int to_otlp(struct gw_tel *t, const char *endpoint, const char *path, const void *body,
                   size_t len)
{
    char url[1100];
    size_t el = strlen(endpoint);
    while (el && endpoint[el - 1] == '/')
        el--;
    snprintf(url, sizeof(url), "%.*s%s", (int)el, endpoint, path);
    if (!t->curl) {
        if (!(t->curl = curl_easy_init()))
            return -1;
        /* "Expect:" off: libcurl would wait up to a second for a 100 Continue before a body
         * past 1 MiB (a large batch_size), which collectors need not send. */
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-protobuf");
        if (h && !(t->curl_hdrs = curl_slist_append(h, "Expect:")))
            curl_slist_free_all(h);
        if (!t->curl_hdrs) {
            curl_easy_cleanup(t->curl);
            t->curl = NULL;
            return -1;
        }
        curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, t->curl_hdrs);
        curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    }
    CURL *c = t->curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status / 100 != 2) {
        cn_warn("gateway", "otlp export failed", "url=\"%s\" status=%ld error=\"%s\"", url, status,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "status");
        return -1;
    }
    return 0;
}

static size_t num_recs(const struct gw_batch *b, int logs)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += logs || b->recs[i].sampled;
    return n;
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
        size_t n = num_recs(b, logs);
        if (n == 0)
            continue;
        atomic_uint_fast64_t *ok = logs ? &t->logs : &t->spans;
        atomic_uint_fast64_t *dropped = logs ? &t->dropped_logs : &t->dropped_spans;
        int rc = -1;
        if (t->store) {
            /* The body moves into the store's submission: a buffer of its own. */
            struct cn_buf body;
            cn_buf_init(&body, EXPORT_BODY_MAX);
            if (gw_tel_encode(&body, b, cn_slice_of(service), logs) > 0) {
                rc = to_store(t, (uint8_t *)body.ptr, body.len,
                              logs ? CN_BODY_LOGS_PB : CN_BODY_TRACES_PB);
                body.ptr = NULL; /* owned by to_store from here */
            }
            cn_buf_release(&body);
        } else if (endpoint[0]) {
            /* One buffer kept for every export: no growth nor page faults per batch. */
            cn_buf_reset(&t->body);
            if (gw_tel_encode(&t->body, b, cn_slice_of(service), logs) > 0)
                rc = to_otlp(t, endpoint, logs ? "/v1/logs" : "/v1/traces", t->body.ptr,
                             t->body.len);
            if (rc)
                atomic_fetch_add(&t->export_errors, 1);
        }
        atomic_fetch_add(rc == 0 ? ok : dropped, n);
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
    cn_buf_init(&t->body, EXPORT_BODY_MAX);
    uv_async_init(&t->loop, &t->kick, on_kick);
    t->kick.data = t;
    cn_mailbox_init(&t->mailbox, &t->loop);
    if (pthread_create(&t->thread, NULL, tel_main, t) != 0) {
        uv_close((uv_handle_t *)&t->kick, NULL);
        cn_mailbox_close(&t->mailbox);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
        pthread_mutex_destroy(&t->lock);
        cn_buf_release(&t->body);
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
    /* The exporter's thread has ended: its handle and buffer are ours. */
    if (t->curl)
        curl_easy_cleanup(t->curl);
    curl_slist_free_all(t->curl_hdrs);
    cn_buf_release(&t->body);
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

/* Copies s, cut to cap bytes, into dst; returns the length kept. */
static uint8_t copy(char *dst, size_t cap, struct cn_slice s)
{
    size_t n = CN_MIN(s.len, cap);
    memcpy(dst, s.ptr, n);
    return (uint8_t)n;
}

_Static_assert(GW_REC_STR <= UINT8_MAX && sizeof(((struct gw_rec *)0)->host) <= UINT8_MAX,
               "a record's string lengths are kept in one byte");
#define COPY(r, field, s) ((r)->field##_len = copy((r)->field, sizeof((r)->field), (s)))

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
    COPY(r, route, d->route);
    COPY(r, cluster, d->cluster);
    COPY(r, endpoint, d->endpoint);
    r->method_len = r->path_len = r->host_len = r->ip_len = 0;
    if (d->creq) {
        COPY(r, method, d->creq->method_name);
        COPY(r, path, d->creq->path);
        COPY(r, host, d->host);
        COPY(r, ip, cn_slice_of(cn_http_req_peer_ip((struct cn_http_req *)d->creq)));
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
