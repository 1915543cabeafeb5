/* How the registry lays its records out in etcd (cluster mode, store-etcd.c). Under a prefix P
 * (registry.etcd.prefix, "/cairn" by default):
 *
 *   P/registry/{ns}/{group}/{service}/service                    explicit service (JSON)
 *   P/registry/{ns}/{group}/{service}/instances/{cluster}/{ip}:{port}   instance (JSON);
 *                                       ephemeral ones are attached to their node's lease
 *   P/config/{ns}/{group}/{dataId}                               item: header JSON \n content
 *   P/config-history/{ns}/{group}/{dataId}/{id}                  history row, same format
 *
 * Each name component is written with '%' as "%25" and '/' as "%2F" (names may hold '/'), so
 * a key splits back into its components on '/'. An instance's and a service's value:
 * {"weight":1.0,"healthy":true,"enabled":true,"ephemeral":false,"metadata":"{...}"} and
 * {"protectThreshold":0.0,"metadata":"{...}"} (metadata: the canonical JSON text as a
 * string). A configuration value: {"md5","type","time","who"[,"op"]} on one line, a newline,
 * then the content's bytes as they are. */
#ifndef CN_REG_ETCD_LAYOUT_H
#define CN_REG_ETCD_LAYOUT_H

#include "base/buf.h"
#include "registry/registry.h"

enum cn_etcd_key_kind {
    CN_EK_NONE = 0, /* not a registry key (or malformed) */
    CN_EK_SERVICE,
    CN_EK_INSTANCE,
    CN_EK_CONFIG,
    CN_EK_HISTORY
};

/* A parsed key; names are NUL-terminated (service holds the dataId of a configuration). */
struct cn_etcd_key {
    enum cn_etcd_key_kind kind;
    char ns[CN_REG_MAX_NAME_BYTES + 1], group[CN_REG_MAX_NAME_BYTES + 1];
    char service[CN_REG_MAX_NAME_BYTES + 1], cluster[CN_REG_MAX_NAME_BYTES + 1];
    char ip[CN_REG_MAX_IP_BYTES + 1];
    uint16_t port;
};

/* Appends one escaped component. */
int cn_etcd_key_component(struct cn_buf *out, struct cn_slice name);
/* Appends the keys (prefix without a trailing '/'). */
int cn_etcd_key_service(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                        const char *group, const char *service);
int cn_etcd_key_instance(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                         const char *group, const char *service, const char *cluster,
                         const char *ip, uint16_t port);
int cn_etcd_key_config(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                       const char *group, const char *data_id);
/* The history rows' prefix of an item (ends with '/'). */
int cn_etcd_key_history(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                        const char *group, const char *data_id);
/* Parses key (which must start with prefix + '/'). Returns 0 with out->kind set (CN_EK_NONE
 * for a key of another kind or shape), never reads past key.len. */
int cn_etcd_key_parse(struct cn_slice key, struct cn_slice prefix, struct cn_etcd_key *out);

/* Values. Strings of the outputs point into storage freed by cn_etcd_value_release. */
struct cn_etcd_value {
    double weight, protect_threshold;
    int healthy, enabled, ephemeral;
    const char *metadata;              /* instance, service */
    const char *md5, *type, *who, *op; /* configuration, history */
    uint64_t time_ms;
    struct cn_slice content;
    void *json; /* owns the strings */
};
/* kind: CN_EK_SERVICE, CN_EK_INSTANCE, CN_EK_CONFIG or CN_EK_HISTORY. Returns 0 or
 * CN_ESYNTAX with why (a static string) set. */
int cn_etcd_value_parse(enum cn_etcd_key_kind kind, struct cn_slice v, struct cn_etcd_value *out,
                        const char **why);
void cn_etcd_value_release(struct cn_etcd_value *v);

#endif
