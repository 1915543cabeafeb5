/* Private to src/gateway: TLS listeners (tls.c). A listener's `tls` block compiles into a
 * struct gw_tls of the snapshot: the certificate set (ev/tls.h) that new handshakes use once
 * a worker runs that snapshot, and what /metrics and the file watch need. */
#ifndef CN_GATEWAY_TLS_H
#define CN_GATEWAY_TLS_H

#include "base/buf.h"

#include <yaml.h>

struct ld;
struct gw_listener;
struct cn_gw;
struct cn_gw_snapshot;

#define GW_TLS_MAX_FILE_BYTES (1u << 20) /* a certificate or key file */

/* Loads listener li's `tls` mapping n (the field path is the caller's: "...tls"): reads the
 * certificate and key files (relative to the configuration's directory) and builds li->tls.
 * 0, or an error FILE:LINE:COL: FIELD: message naming the file at fault. */
int gw_tls_load(struct ld *l, const yaml_node_t *n, struct gw_listener *li);
/* The store's current certificate set (a new reference; tests and the hook). */
struct gw_tls;
struct cn_tls_ctx *gw_tls_current(struct gw_tls *t);
/* Drops what the snapshot's listeners hold (a snapshot that owns its listeners). */
void gw_tls_snapshot_free(struct cn_gw_snapshot *s);
/* TLS metrics of the current snapshot and of the attached listeners; under gw->lock. */
void gw_tls_metrics_write(struct cn_buf *b, struct cn_gw *gw);
/* Frees what cn_gw_tls_attach allocated (cn_gw_free). */
void gw_tls_root_free(struct cn_gw *gw);

#endif
