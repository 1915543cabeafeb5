/* Private to src/gateway: the YAML loader's helpers (config.c) for the filters and sections
 * loaded in config-ext.c. Each reports errors as FILE:LINE:COL: FIELD: message, the field
 * path kept with push/pop. */
#ifndef CN_GATEWAY_CONFIG_LD_H
#define CN_GATEWAY_CONFIG_LD_H

#include "base/base.h"

#include <yaml.h>

struct ld;
struct gw_filter;
struct gw_tracing;
struct cn_gw_snapshot;

int gw_ld_fail(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t gw_ld_push(struct ld *l, const char *key);
size_t gw_ld_push_index(struct ld *l, size_t i);
void gw_ld_pop(struct ld *l, size_t old);
/* The value of key in map, NULL when absent or null. */
yaml_node_t *gw_ld_get(struct ld *l, const yaml_node_t *map, const char *key);
yaml_node_t *gw_ld_item(struct ld *l, const yaml_node_t *seq, size_t i);
/* A mapping whose keys are among keys (NULL-terminated), none repeated. */
int gw_ld_map(struct ld *l, const yaml_node_t *n, const char *const *keys);
int gw_ld_seq(struct ld *l, const yaml_node_t *n, size_t *out_len);
/* A string copied into the snapshot's arena (NUL-terminated). */
int gw_ld_str(struct ld *l, const yaml_node_t *n, struct cn_slice *out);
int gw_ld_u64(struct ld *l, const yaml_node_t *n, uint64_t lo, uint64_t hi, uint64_t *out);
int gw_ld_bool(struct ld *l, const yaml_node_t *n, int *out);
int gw_ld_duration(struct ld *l, const yaml_node_t *n, uint64_t hi_ms, uint64_t *out_ms);
int gw_ld_size(struct ld *l, const yaml_node_t *n, uint64_t lo, uint64_t hi, uint64_t *out);
int gw_ld_header_name(struct ld *l, const yaml_node_t *n, struct cn_slice s);
struct cn_gw_snapshot *gw_ld_snap(struct ld *l);
const char *gw_ld_file(struct ld *l);

/* config-ext.c: the JWT, KeyAuth and CORS filter bodies (f->kind set), the tracing section,
 * and what they hold outside the arena. */
int gw_ext_load_filter(struct ld *l, const yaml_node_t *body, struct gw_filter *f);
void gw_ext_tracing_defaults(struct gw_tracing *t);
int gw_ext_load_tracing(struct ld *l, const yaml_node_t *map);
void gw_ext_snapshot_free(struct cn_gw_snapshot *s);

/* In a loader with `l` and `map` in scope: when map has key, runs stmt with v its node and key
 * pushed on the field path; a nonzero result returns from the caller. */
#define OPTF(v, key, stmt)                                                                         \
    do {                                                                                           \
        yaml_node_t *v = gw_ld_get(l, map, key);                                                   \
        if (v) {                                                                                   \
            size_t o_ = gw_ld_push(l, key);                                                        \
            int rc_ = (stmt);                                                                      \
            if (rc_)                                                                               \
                return rc_;                                                                        \
            gw_ld_pop(l, o_);                                                                      \
        }                                                                                          \
    } while (0)

#endif
