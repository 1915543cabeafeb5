/* The API port's own routes: health, readiness, metrics, and test routes. */
#include "base/log.h"
#include "cli/api-compat.h"
#include "cli/api-rca.h"
#include "cli/up.h"
#include "console/console.h"
#include "http/json.h"
#include "http/metrics.h"
#include "telemetry/render.h"
#include "telemetry/seg.h"
#include "version.h"

static void h_healthz(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    static const char ok[] = "ok\n";
    cn_http_reply(req, 200, "text/plain; charset=utf-8", ok, sizeof(ok) - 1, NULL, 0);
}

static void h_readyz(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    if (atomic_load(&up->api.draining)) {
        cn_http_reply_text(req, 503, "draining");
        return;
    }
    cn_http_reply_text(req, 200, "ready");
}

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static void write_store_metrics(struct cn_buf *b, struct cn_store *store, struct cn_receiver *rc)
{
    const struct cn_store_stats *st = cn_store_stats(store);
    unsigned long long corrupt_blocks = (unsigned long long)cn_store_corrupt_blocks(store);
    struct cn_seg_cache_stats bc, fc;
    cn_seg_bloom_cache_stats(&bc);
    cn_seg_footer_cache_stats(&fc);
    cn_buf_printf(
        b,
        "# HELP cairn_telemetry_records_total Spans and log records stored.\n"
        "# TYPE cairn_telemetry_records_total counter\n"
        "cairn_telemetry_records_total{signal=\"spans\"} %llu\n"
        "cairn_telemetry_records_total{signal=\"logs\"} %llu\n"
        "# HELP cairn_telemetry_rejected_total Records refused as invalid (partial success).\n"
        "# TYPE cairn_telemetry_rejected_total counter\n"
        "cairn_telemetry_rejected_total{signal=\"spans\"} %llu\n"
        "cairn_telemetry_rejected_total{signal=\"logs\"} %llu\n"
        "# HELP cairn_telemetry_truncated_total Values cut or dropped by the telemetry limits.\n"
        "# TYPE cairn_telemetry_truncated_total counter\n"
        "cairn_telemetry_truncated_total{what=\"attributes\"} %llu\n"
        "cairn_telemetry_truncated_total{what=\"attribute_values\"} %llu\n"
        "cairn_telemetry_truncated_total{what=\"events\"} %llu\n"
        "cairn_telemetry_truncated_total{what=\"links\"} %llu\n"
        "# HELP cairn_telemetry_exports_total Export requests by outcome.\n"
        "# TYPE cairn_telemetry_exports_total counter\n"
        "cairn_telemetry_exports_total{result=\"received\"} %llu\n"
        "cairn_telemetry_exports_total{result=\"bad_request\"} %llu\n"
        "cairn_telemetry_exports_total{result=\"refused_full\"} %llu\n"
        "# HELP cairn_telemetry_wal_commits_total Group commits of the write-ahead log.\n"
        "# TYPE cairn_telemetry_wal_commits_total counter\n"
        "cairn_telemetry_wal_commits_total %llu\n"
        "# HELP cairn_telemetry_wal_bytes_total Bytes appended to the write-ahead log.\n"
        "# TYPE cairn_telemetry_wal_bytes_total counter\n"
        "cairn_telemetry_wal_bytes_total %llu\n"
        "# HELP cairn_telemetry_wal_errors_total Failed write-ahead log commits.\n"
        "# TYPE cairn_telemetry_wal_errors_total counter\n"
        "cairn_telemetry_wal_errors_total %llu\n"
        "# HELP cairn_telemetry_head_bytes Memory held by the in-memory head.\n"
        "# TYPE cairn_telemetry_head_bytes gauge\n"
        "cairn_telemetry_head_bytes %llu\n"
        "# HELP cairn_telemetry_queue_bytes Bytes waiting for the write-ahead log.\n"
        "# TYPE cairn_telemetry_queue_bytes gauge\n"
        "cairn_telemetry_queue_bytes %llu\n"
        "# HELP cairn_telemetry_wal_replayed_total Records replayed from the write-ahead log.\n"
        "# TYPE cairn_telemetry_wal_replayed_total counter\n"
        "cairn_telemetry_wal_replayed_total %llu\n"
        "# HELP cairn_telemetry_corrupt_total Damaged WAL records found and skipped.\n"
        "# TYPE cairn_telemetry_corrupt_total counter\n"
        "cairn_telemetry_corrupt_total %llu\n"
        "# HELP cairn_telemetry_segments Segment files served.\n"
        "# TYPE cairn_telemetry_segments gauge\n"
        "cairn_telemetry_segments %llu\n"
        "# HELP cairn_telemetry_segment_bytes Bytes of segment files served.\n"
        "# TYPE cairn_telemetry_segment_bytes gauge\n"
        "cairn_telemetry_segment_bytes %llu\n"
        "# HELP cairn_telemetry_seals_total Heads written out as segments, by result.\n"
        "# TYPE cairn_telemetry_seals_total counter\n"
        "cairn_telemetry_seals_total{result=\"ok\"} %llu\n"
        "cairn_telemetry_seals_total{result=\"error\"} %llu\n"
        "# HELP cairn_telemetry_retention_removed_total Segments removed by retention.\n"
        "# TYPE cairn_telemetry_retention_removed_total counter\n"
        "cairn_telemetry_retention_removed_total %llu\n"
        "# HELP cairn_telemetry_corrupt_segments Segments not served: damaged beyond use.\n"
        "# TYPE cairn_telemetry_corrupt_segments gauge\n"
        "cairn_telemetry_corrupt_segments %llu\n"
        "# HELP cairn_telemetry_corrupt_blocks Segment blocks failing their checksum; their rows "
        "are skipped.\n"
        "# TYPE cairn_telemetry_corrupt_blocks gauge\n"
        "cairn_telemetry_corrupt_blocks %llu\n"
        "# HELP cairn_telemetry_compactions_total Small segments merged into one.\n"
        "# TYPE cairn_telemetry_compactions_total counter\n"
        "cairn_telemetry_compactions_total %llu\n"
        "# HELP cairn_telemetry_read_errors_total Reads that met a damaged block.\n"
        "# TYPE cairn_telemetry_read_errors_total counter\n"
        "cairn_telemetry_read_errors_total %llu\n"
        "# HELP cairn_telemetry_derive_rebuild_segments Span segments the derived tables (RED, "
        "edges, trace summaries) still read after a restart.\n"
        "# TYPE cairn_telemetry_derive_rebuild_segments gauge\n"
        "cairn_telemetry_derive_rebuild_segments %llu\n"
        "# HELP cairn_telemetry_trace_map_entries Entries of the in-memory map from trace IDs to "
        "the segments holding them (one per trace and segment of the recent partitions; those of "
        "removed segments until they are half of the map).\n"
        "# TYPE cairn_telemetry_trace_map_entries gauge\n"
        "cairn_telemetry_trace_map_entries %llu\n"
        "# HELP cairn_telemetry_trace_map_bytes Memory of that map.\n"
        "# TYPE cairn_telemetry_trace_map_bytes gauge\n"
        "cairn_telemetry_trace_map_bytes %llu\n"
        "# HELP cairn_telemetry_trace_map_files Older partitions' trace map files.\n"
        "# TYPE cairn_telemetry_trace_map_files gauge\n"
        "cairn_telemetry_trace_map_files %llu\n"
        "# HELP cairn_telemetry_trace_map_file_bytes Bytes of those files on disk.\n"
        "# TYPE cairn_telemetry_trace_map_file_bytes gauge\n"
        "cairn_telemetry_trace_map_file_bytes %llu\n"
        "# HELP cairn_telemetry_trace_map_file_memory_bytes Memory their lookups keep (segment "
        "lists, each block's first key).\n"
        "# TYPE cairn_telemetry_trace_map_file_memory_bytes gauge\n"
        "cairn_telemetry_trace_map_file_memory_bytes %llu\n"
        "# HELP cairn_telemetry_bloom_cache_bytes Memory of the segments' bloom filters kept "
        "(telemetry.bloom_cache).\n"
        "# TYPE cairn_telemetry_bloom_cache_bytes gauge\n"
        "cairn_telemetry_bloom_cache_bytes %llu\n"
        "# HELP cairn_telemetry_bloom_cache_loads_total Bloom filters read from segment files.\n"
        "# TYPE cairn_telemetry_bloom_cache_loads_total counter\n"
        "cairn_telemetry_bloom_cache_loads_total %llu\n"
        "# HELP cairn_telemetry_bloom_cache_evictions_total Bloom filters dropped for room.\n"
        "# TYPE cairn_telemetry_bloom_cache_evictions_total counter\n"
        "cairn_telemetry_bloom_cache_evictions_total %llu\n"
        "# HELP cairn_telemetry_footer_cache_bytes Memory of the segments' footer tables kept "
        "(telemetry.footer_cache).\n"
        "# TYPE cairn_telemetry_footer_cache_bytes gauge\n"
        "cairn_telemetry_footer_cache_bytes %llu\n"
        "# HELP cairn_telemetry_footer_cache_loads_total Footer tables read again from segment "
        "files after they were dropped.\n"
        "# TYPE cairn_telemetry_footer_cache_loads_total counter\n"
        "cairn_telemetry_footer_cache_loads_total %llu\n"
        "# HELP cairn_telemetry_footer_cache_evictions_total Footer tables dropped for room.\n"
        "# TYPE cairn_telemetry_footer_cache_evictions_total counter\n"
        "cairn_telemetry_footer_cache_evictions_total %llu\n",
        LD(st->spans), LD(st->logs), LD(st->rejected_spans), LD(st->rejected_logs),
        LD(st->truncated_attrs), LD(st->truncated_values), LD(st->truncated_events),
        LD(st->truncated_links), LD(rc->requests), LD(rc->bad_requests), LD(rc->refused),
        LD(st->wal_commits), LD(st->wal_bytes), LD(st->wal_errors), LD(st->head_bytes),
        LD(st->queue_bytes), LD(st->replayed_records), LD(st->replay_corrupt), LD(st->segments),
        LD(st->segment_bytes), LD(st->seals), LD(st->seal_errors), LD(st->retention_removed),
        LD(st->corrupt_segments), corrupt_blocks, LD(st->compactions), LD(st->read_errors),
        LD(st->rebuild_segments_left), LD(st->trace_map_entries), LD(st->trace_map_bytes),
        LD(st->trace_map_files), LD(st->trace_map_file_bytes), LD(st->trace_map_file_mem),
        (unsigned long long)bc.bytes, (unsigned long long)bc.loads,
        (unsigned long long)bc.evictions, (unsigned long long)fc.bytes,
        (unsigned long long)fc.loads, (unsigned long long)fc.evictions);
}

/* The derived tables' span-name lists (the compatibility APIs' operation lists). */
static void write_derive_metrics(struct cn_buf *b, struct cn_derive *d)
{
    struct cn_derive_stats st;
    if (!d)
        return;
    cn_derive_stats(d, &st);
    cn_buf_printf(b,
                  "# HELP cairn_telemetry_span_names (service, span name, kind) listed as "
                  "operations.\n"
                  "# TYPE cairn_telemetry_span_names gauge\n"
                  "cairn_telemetry_span_names %llu\n"
                  "# HELP cairn_telemetry_span_names_dropped_total Spans whose (name, kind) was "
                  "not listed: past the service's cap of %u.\n"
                  "# TYPE cairn_telemetry_span_names_dropped_total counter\n"
                  "cairn_telemetry_span_names_dropped_total %llu\n",
                  (unsigned long long)st.span_names, cn_derive_opts(d)->max_span_names,
                  (unsigned long long)st.span_names_dropped);
}

static void h_metrics(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    struct cn_buf b;
    cn_buf_init(&b, 16u << 20);
    cn_buf_printf(&b,
                  "# HELP cairn_build_info Version of this binary.\n"
                  "# TYPE cairn_build_info gauge\n"
                  "cairn_build_info{version=\"%s\",git=\"%s\"} 1\n"
                  "# HELP cairn_workers Worker threads.\n"
                  "# TYPE cairn_workers gauge\n"
                  "cairn_workers %d\n"
                  "# HELP cairn_config_reloads_total Configuration reloads (SIGHUP), by result.\n"
                  "# TYPE cairn_config_reloads_total counter\n"
                  "cairn_config_reloads_total{result=\"ok\"} %llu\n"
                  "cairn_config_reloads_total{result=\"error\"} %llu\n",
                  CAIRN_VERSION, CAIRN_GIT, up->nworkers,
                  (unsigned long long)atomic_load(&up->reloads),
                  (unsigned long long)atomic_load(&up->reload_failures));
    cn_http_metrics_write(&b, &up->api);
    if (up->store) {
        write_store_metrics(&b, up->store, &up->receiver);
        write_derive_metrics(&b, cn_store_derive(up->store));
    }
    if (up->reg)
        cn_reg_metrics_write(up->reg, &b);
    if (up->gw)
        cn_gw_metrics_write(&b, up->gw); /* gateway.config */
    cn_metrics_write_process(&b);
    cn_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.ptr, b.len, NULL, 0);
    cn_buf_release(&b);
}

/* ---- test routes (api.test_routes: true) ----------------------------------------------- */

static void h_hello(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    static const char hello[] = "hello\n";
    cn_http_reply(req, 200, "text/plain", hello, sizeof(hello) - 1, NULL, 0);
}

static void h_echo(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    const struct cn_slice *ct = cn_http_req_header(req, "content-type");
    char ctype[128] = "application/octet-stream";
    if (ct && ct->len < sizeof(ctype))
        snprintf(ctype, sizeof(ctype), "%.*s", (int)ct->len, ct->ptr);
    cn_http_reply(req, 200, ctype, req->body.ptr, req->body.len, NULL, 0);
}

static void h_chunked(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    char v[32];
    long n = cn_http_req_query(req, "n", v, sizeof(v)) > 0 ? strtol(v, NULL, 10) : 3;
    long size = cn_http_req_query(req, "size", v, sizeof(v)) > 0 ? strtol(v, NULL, 10) : 5;
    if (n < 0 || n > 10000 || size < 1 || size > 65536) {
        cn_http_reply_json_error(req, 400, n < 0 || n > 10000 ? "n" : "size",
                                 "n must be 0..10000 and size 1..65536");
        return;
    }
    char *chunk = malloc((size_t)size);
    if (!chunk) {
        cn_http_reply_text(req, 503, "out of memory");
        return;
    }
    cn_http_reply_start(req, 200, "text/plain", NULL, 0);
    for (long i = 0; i < n; i++) {
        memset(chunk, 'a' + (int)(i % 26), (size_t)size);
        cn_http_reply_chunk(req, chunk, (size_t)size);
    }
    free(chunk);
    cn_http_reply_end(req);
}

static void h_headers(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    json_t *j = json_object();
    json_t *hs = json_array();
    for (size_t i = 0; i < req->num_headers; i++) {
        json_t *h = json_array();
        json_array_append_new(h, json_stringn(req->headers[i].name.ptr, req->headers[i].name.len));
        json_array_append_new(h,
                              json_stringn(req->headers[i].value.ptr, req->headers[i].value.len));
        json_array_append_new(hs, h);
    }
    json_object_set_new(j, "method", json_stringn(req->method_name.ptr, req->method_name.len));
    json_object_set_new(j, "path", json_stringn(req->path.ptr, req->path.len));
    json_object_set_new(j, "query", json_stringn(req->query.ptr, req->query.len));
    json_object_set_new(j, "headers", hs);
    json_object_set_new(j, "body_bytes", json_integer((json_int_t)req->body.len));
    cn_http_reply_json(req, 200, j);
}

static void h_params(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    json_t *j = json_object();
    for (size_t i = 0; i < req->params.num; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)req->params.names[i].len,
                 req->params.names[i].ptr);
        json_object_set_new(j, name,
                            json_stringn(req->params.values[i].ptr, req->params.values[i].len));
    }
    cn_http_reply_json(req, 200, j);
}

/* GET /debug/slow?ms=N answers after N ms from a timer: an in-flight request for drain
 * tests and an asynchronous reply for pipelining tests. */
struct slow {
    uv_timer_t timer;
    struct cn_http_req *req;
};

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
    struct slow *s = t->data;
    if (s->req) {
        s->req->abort_cb = NULL;
        s->req->data = NULL;
        cn_http_reply_text(s->req, 200, "slow");
    }
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void slow_abort(struct cn_http_req *req)
{
    struct slow *s = req->data;
    s->req = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void h_slow(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    char v[32];
    long ms = cn_http_req_query(req, "ms", v, sizeof(v)) > 0 ? strtol(v, NULL, 10) : 100;
    if (ms < 0 || ms > 60000) {
        cn_http_reply_json_error(req, 400, "ms", "ms must be 0..60000");
        return;
    }
    struct slow *s = calloc(1, sizeof(*s));
    if (!s) {
        cn_http_reply_text(req, 503, "out of memory");
        return;
    }
    s->req = req;
    req->data = s;
    req->abort_cb = slow_abort;
    uv_timer_init(req->worker->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, slow_fire, (uint64_t)ms, 0);
}

int cn_api_routes(struct cn_up *up, struct cn_router *r, int test_routes)
{
    const unsigned get = CN_M(HTTP_GET);
    int rc = 0;
    if ((rc = cn_router_add(r, get, "/healthz", h_healthz, up)) < 0 ||
        (rc = cn_router_set_flags(r, rc, CN_ROUTE_PUBLIC)) < 0 ||
        (rc = cn_router_add(r, get, "/readyz", h_readyz, up)) < 0 ||
        (rc = cn_router_set_flags(r, rc, CN_ROUTE_PUBLIC)) < 0 ||
        (rc = cn_router_add(r, get, "/metrics", h_metrics, up)) < 0 ||
        (rc = cn_api_query_routes(up, r)) < 0 || (rc = cn_api_compat_routes(up, r)) < 0 ||
        (rc = cn_api_rca_routes(up, r)) < 0 || (rc = cn_api_demo_routes(up, r)) < 0 ||
        (rc = cn_console_routes(r)) < 0)
        return rc;
    if (!test_routes)
        return 0;
    const unsigned body = CN_M(HTTP_POST) | CN_M(HTTP_PUT);
    if ((rc = cn_router_add(r, get, "/debug/hello", h_hello, up)) < 0 ||
        (rc = cn_router_add(r, body, "/debug/echo", h_echo, up)) < 0 ||
        (rc = cn_router_add(r, get, "/debug/chunked", h_chunked, up)) < 0 ||
        (rc = cn_router_add(r, get | body, "/debug/headers", h_headers, up)) < 0 ||
        (rc = cn_router_add(r, get, "/debug/slow", h_slow, up)) < 0 ||
        (rc = cn_router_add(r, get, "/debug/params/{id}/{rest...}", h_params, up)) < 0)
        return rc;
    return 0;
}
