#include "http/metrics.h"

#include "base/proc.h"

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void label_escape(struct cn_buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            cn_buf_append(out, "\\", 1);
        if (*s == '\n') {
            cn_buf_append(out, "\\n", 2);
            continue;
        }
        cn_buf_append(out, s, 1);
    }
}

int cn_http_metrics_write(struct cn_buf *out, const struct cn_http_server *srv)
{
    int nw = srv->nworkers;
    size_t nroutes = cn_router_num_routes(srv->router);

    cn_buf_puts(out, "# HELP cairn_http_connections_open Open HTTP connections.\n"
                     "# TYPE cairn_http_connections_open gauge\n");
    for (int i = 0; i < nw; i++)
        cn_buf_printf(out, "cairn_http_connections_open{worker=\"%d\"} %lld\n", i,
                      (long long)LOAD(srv->workers[i]->stats.open));
    cn_buf_puts(out, "# HELP cairn_http_connections_accepted_total Accepted connections.\n"
                     "# TYPE cairn_http_connections_accepted_total counter\n");
    for (int i = 0; i < nw; i++)
        cn_buf_printf(out, "cairn_http_connections_accepted_total{worker=\"%d\"} %llu\n", i,
                      (unsigned long long)LOAD(srv->workers[i]->stats.accepted));
    cn_buf_puts(out, "# HELP cairn_config_generation Configuration generation each worker "
                     "runs.\n# TYPE cairn_config_generation gauge\n");
    for (int i = 0; i < nw; i++)
        cn_buf_printf(out, "cairn_config_generation{worker=\"%d\"} %llu\n", i,
                      (unsigned long long)LOAD(srv->workers[i]->stats.config_generation));

    cn_buf_puts(out, "# HELP cairn_http_protocol_errors_total Requests rejected before a "
                     "handler ran, and connections closed by a limit.\n"
                     "# TYPE cairn_http_protocol_errors_total counter\n");
    for (int k = 0; k < CN_PE_COUNT; k++) {
        uint64_t sum = 0;
        for (int i = 0; i < nw; i++)
            sum += LOAD(srv->workers[i]->stats.proto_errs[k]);
        cn_buf_printf(out, "cairn_http_protocol_errors_total{reason=\"%s\"} %llu\n",
                      cn_http_proto_err_names[k], (unsigned long long)sum);
    }

    cn_buf_puts(out, "# HELP cairn_http_requests_total HTTP requests answered, by route and "
                     "status class.\n# TYPE cairn_http_requests_total counter\n");
    for (size_t r = 0; r <= nroutes; r++) {
        const char *pattern = r < nroutes ? cn_router_route(srv->router, r)->pattern : "";
        for (int cls = 1; cls <= 5; cls++) {
            uint64_t sum = 0;
            for (int i = 0; i < nw; i++)
                sum += LOAD(srv->workers[i]->route_stats[r].by_class[cls]);
            if (!sum && r == nroutes)
                continue;
            if (!sum && cls != 2)
                continue;
            cn_buf_puts(out, "cairn_http_requests_total{route=\"");
            label_escape(out, pattern);
            cn_buf_printf(out, "\",code=\"%dxx\"} %llu\n", cls, (unsigned long long)sum);
        }
    }
    cn_buf_puts(out, "# HELP cairn_http_request_duration_seconds Time from the first byte of "
                     "a request to its reply being queued.\n"
                     "# TYPE cairn_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= nroutes; r++) {
        const char *pattern = r < nroutes ? cn_router_route(srv->router, r)->pattern : "";
        uint64_t cum = 0, sum_us = 0;
        uint64_t b[CN_HTTP_LAT_BUCKETS + 1] = {0};
        for (int i = 0; i < nw; i++) {
            for (int k = 0; k <= CN_HTTP_LAT_BUCKETS; k++)
                b[k] += LOAD(srv->workers[i]->route_stats[r].lat[k]);
            sum_us += LOAD(srv->workers[i]->route_stats[r].lat_sum_us);
        }
        for (int k = 0; k <= CN_HTTP_LAT_BUCKETS; k++) {
            cum += b[k];
            cn_buf_puts(out, "cairn_http_request_duration_seconds_bucket{route=\"");
            label_escape(out, pattern);
            if (k < CN_HTTP_LAT_BUCKETS)
                cn_buf_printf(out, "\",le=\"%g\"} %llu\n", cn_http_lat_bounds[k],
                              (unsigned long long)cum);
            else
                cn_buf_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        cn_buf_puts(out, "cairn_http_request_duration_seconds_sum{route=\"");
        label_escape(out, pattern);
        cn_buf_printf(out, "\"} %.6f\n", (double)sum_us / 1e6);
        cn_buf_puts(out, "cairn_http_request_duration_seconds_count{route=\"");
        label_escape(out, pattern);
        cn_buf_printf(out, "\"} %llu\n", (unsigned long long)cum);
    }
    return 0;
}

int cn_metrics_write_process(struct cn_buf *out)
{
    struct cn_proc_stats ps;
    cn_proc_stats_read(&ps);
    return cn_buf_printf(
        out,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total %.2f\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes %llu\n"
        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
        "# TYPE process_virtual_memory_bytes gauge\n"
        "process_virtual_memory_bytes %llu\n"
        "# HELP process_open_fds Number of open file descriptors.\n"
        "# TYPE process_open_fds gauge\n"
        "process_open_fds %llu\n"
        "# HELP process_max_fds Maximum number of open file descriptors.\n"
        "# TYPE process_max_fds gauge\n"
        "process_max_fds %llu\n"
        "# HELP process_threads Number of OS threads.\n"
        "# TYPE process_threads gauge\n"
        "process_threads %llu\n"
        "# HELP process_start_time_seconds Start time of the process since unix epoch.\n"
        "# TYPE process_start_time_seconds gauge\n"
        "process_start_time_seconds %.2f\n",
        ps.cpu_seconds, (unsigned long long)ps.rss_bytes, (unsigned long long)ps.vsize_bytes,
        (unsigned long long)ps.open_fds, (unsigned long long)ps.max_fds,
        (unsigned long long)ps.threads, ps.start_time);
}
