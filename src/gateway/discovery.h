/* Private to src/gateway: clusters whose endpoints come from a registry service (Nacos v1
 * instance lists, from the registry in-process under cairn up or over HTTP). The configuration
 * snapshot is a template; every published snapshot is the template with each discovering
 * cluster's endpoints replaced by the last set read (discovery.c). docs/gateway.md. */
#ifndef CN_GATEWAY_DISCOVERY_H
#define CN_GATEWAY_DISCOVERY_H

#include "base/base.h"
#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

struct ld;
struct gw_cluster;
struct cn_gw;
struct cn_gw_snapshot;

#define GW_DISC_MAX_NAME     512 /* namespace, group, service, cluster (as the registry) */
#define GW_DISC_MAX_URL      1024
#define GW_DISC_WEIGHT_SCALE 100 /* gateway weight = registry weight (0..10000) x 100 */
#define GW_DISC_IP_LEN       48  /* a numeric IPv4 or IPv6 address and its NUL */

/* A cluster's discovery block, in the snapshot's arena. Strings are NUL-terminated. */
struct gw_disc_cfg {
    struct cn_slice service, ns, group;
    struct cn_slice clusters; /* a Nacos cluster name, "" for every cluster */
    struct cn_slice registry; /* "local" or an http(s) URL without a trailing '/' */
    int local;
    uint64_t interval_ms; /* between reads (remote), between reconciliations (local) */
    uint64_t timeout_ms;  /* one remote read */
    uint64_t max_endpoints;
    uint64_t max_response_bytes;
    int protect;           /* no healthy instance: use every enabled one (Nacos' protection) */
    struct cn_slice where; /* "FILE:LINE:COL: clusters[i].discovery" for later messages */
};

/* Loads clusters[i].discovery (the loader's path already ends in "discovery") into cl->disc.
 * 0 or CN_EINVAL with the loader's error set. */
int gw_disc_load(struct ld *l, const yaml_node_t *map, struct gw_cluster *cl);

/* ---- instance lists ------------------------------------------------------------------------- */

struct gw_disc_ep {
    char ip[GW_DISC_IP_LEN];
    uint16_t port;
    uint32_t weight; /* scaled, >= 1 */
};

/* Endpoints read from one instance list: sorted by (ip text, port), no duplicates. States:
 * zeroed (empty) -> filled by gw_disc_parse -> released. */
struct gw_disc_set {
    struct gw_disc_ep *eps;
    size_t num;
    int protected_;  /* no instance was healthy: every enabled one is here (protect) */
    size_t skipped;  /* instances left out as malformed (host name, port 0, bad weight) */
    size_t excluded; /* left out as unhealthy, disabled or of weight 0 */
};

/* Parses a Nacos v1 /nacos/v1/ns/instance/list answer into out (released first): enabled,
 * healthy instances with a weight above 0; when none is healthy and protect is set, every
 * enabled one with a weight. Returns 0, CN_ESYNTAX (err says why; out is empty) or
 * CN_ENOMEM. */
int gw_disc_parse(const char *json, size_t len, int protect, struct gw_disc_set *out, char *err,
                  size_t err_len);
void gw_disc_set_release(struct gw_disc_set *s);
/* Compares two sets (endpoints, weights, protection). Returns 1 when they are equal; counts
 * what b adds, removes and reweights relative to a in the outputs (may be NULL). */
int gw_disc_set_diff(const struct gw_disc_set *a, const struct gw_disc_set *b, size_t *out_added,
                     size_t *out_removed, size_t *out_reweighted);

/* ---- snapshots --------------------------------------------------------------------------------
 */

/* A new snapshot (one reference): tpl with the endpoints of each discovering cluster c
 * replaced by sets[c] (NULL: nothing read yet, no endpoint), at most its max_endpoints. Routes,
 * matches and clusters are copied, the rest is shared with tpl (held by a reference). NULL
 * when out of memory. */
struct cn_gw_snapshot *gw_disc_derive(struct cn_gw_snapshot *tpl,
                                      const struct gw_disc_set *const *sets);
/* Frees a derived snapshot (config.c's unref calls it when s->base is set). */
void gw_disc_snapshot_free(struct cn_gw_snapshot *s);

/* ---- the runtime (struct cn_gw) ------------------------------------------------------------ */

struct gw_disc;

/* Under gw->publish_lock: the template is tpl now (watches follow its discovering clusters).
 * Returns the snapshot to publish (one reference): derived when tpl discovers, else tpl
 * itself with a reference taken. NULL when out of memory. */
struct cn_gw_snapshot *gw_disc_apply(struct cn_gw *gw, struct cn_gw_snapshot *tpl);
void gw_disc_free(struct gw_disc *d);
/* /metrics (under gw->lock). */
void gw_disc_metrics_write(struct cn_buf *b, struct cn_gw *gw);

#endif
