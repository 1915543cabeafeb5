/* Prometheus text exposition of the HTTP server's and the process's figures. */
#ifndef CN_HTTP_METRICS_H
#define CN_HTTP_METRICS_H

#include "base/buf.h"
#include "http/server.h"

/* Appends the server's metrics (connections, requests per route and code class, latency
 * histograms, protocol errors, configuration generation per worker). Reads every worker's
 * counters with relaxed loads: safe from any thread. */
int cn_http_metrics_write(struct cn_buf *out, const struct cn_http_server *srv);
/* Appends process_* metrics (CPU, RSS, fds, threads, start time). */
int cn_metrics_write_process(struct cn_buf *out);

#endif
