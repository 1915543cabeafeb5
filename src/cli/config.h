/* Cairn's configuration: one YAML file, defaults for everything, CAIRN_* environment
 * overrides, then command-line flags (in that order of precedence, lowest first). */
#ifndef CN_CONFIG_H
#define CN_CONFIG_H

#include "base/log.h"
#include "http/http-t.h"

#include <stdatomic.h>

/* A loaded configuration. Immutable once published; shared between threads by reference
 * count (cn_config_ref / cn_config_unref). Strings are heap-owned by the struct. */
struct cn_config {
    atomic_int refs;
    char *path;       /* the file it was loaded from, or NULL */
    uint64_t workers; /* 0 = one per core */
    enum cn_log_level log_level;
    char *data_dir;
    struct {
        char *listen; /* "host:port" */
        char *token;  /* bearer token; required when listen is not loopback */
        int test_routes;
    } api;
    struct cn_http_limits http;
    struct {
        uint64_t drain_timeout_ms;
    } shutdown;
    struct {
        char *listen; /* OTLP/HTTP and Zipkin receivers */
        char *token;  /* bearer token; required when listen is not loopback */
        uint64_t max_body_bytes;
    } otlp;
    struct {
        uint64_t memory_bytes; /* head budget */
        uint64_t queue_bytes;
        uint64_t wal_segment_bytes;
        int fsync;
        int wal_direct;
        uint64_t max_attributes;
        uint64_t max_attribute_value_bytes;
        uint64_t max_events;
        uint64_t max_links;
        uint64_t retry_after_ms;
        uint64_t seal_bytes;
        uint64_t seal_interval_ms;
        uint64_t retention_ms;
        uint64_t disk_budget;
        uint64_t bloom_cache;
        uint64_t footer_cache;
        uint64_t trace_map_days;
        uint64_t max_spans_per_trace;
        char *code_links; /* canonical YAML flow mapping: service -> template */
    } telemetry;
    struct {
        uint64_t default_limit, max_limit, max_scan_records, max_range_ms, max_tag_values;
    } query;
    struct {
        char *listen; /* Nacos v1 API */
        int auth;
        char *username;
        char *password; /* required when auth is on */
        uint64_t token_ttl_ms;
        uint64_t max_services, max_instances_per_service, max_configs, max_config_bytes;
        uint64_t max_history;
        uint64_t beat_interval_ms, beat_timeout_ms, delete_timeout_ms, cache_ms;
        uint64_t max_listen_keys, max_hold_ms, max_parked;
        uint64_t tick_ms, check_interval_ms, check_timeout_ms, check_concurrency;
        char *etcd_endpoints; /* "" : embedded SQLite store */
        char *etcd_prefix;
        uint64_t etcd_dial_timeout_ms, etcd_request_timeout_ms, etcd_lease_ttl_ms;
        uint64_t etcd_reconcile_ms, etcd_max_response;
    } registry;
    struct {
        char *config; /* gateway file (docs/gateway.md), "" when cairn up runs no gateway */
    } gateway;
};

/* A configuration with every default set, refs = 1. NULL on allocation failure. */
struct cn_config *cn_config_new(void);
struct cn_config *cn_config_ref(struct cn_config *cfg);
/* Drops a reference; frees on the last. NULL does nothing. */
void cn_config_unref(struct cn_config *cfg);

/* Loads a YAML file over cfg. On failure returns a negative code and writes
 * "FILE:LINE:COL: message" into err; cfg may then be partly updated (callers discard it). */
int cn_config_load_file(struct cn_config *cfg, const char *path, char *err, size_t err_len);
/* Same for a buffer; name is used in error messages in place of FILE. */
int cn_config_load_buffer(struct cn_config *cfg, const char *name, const char *data, size_t len,
                          char *err, size_t err_len);
/* Applies CAIRN_* variables from envp (NULL-terminated "K=V" strings). Unknown CAIRN_*
 * variables are errors ("CAIRN_X: unknown setting"). */
int cn_config_apply_env(struct cn_config *cfg, char *const *envp, char *err, size_t err_len);
/* Sets one dotted key ("http.max_body_bytes") from its text form, as a flag would. */
int cn_config_set(struct cn_config *cfg, const char *key, const char *value, char *err,
                  size_t err_len);
/* Checks relations between settings (e.g. a token when the API is exposed). */
int cn_config_validate(const struct cn_config *cfg, char *err, size_t err_len);
/* Writes the effective configuration as YAML. */
int cn_config_dump(const struct cn_config *cfg, FILE *out);

/* The first error a load found, in parts (cn_config_load_file formats it as
 * "FILE:LINE:COL: message", or "FILE: message" when line is 0). */
struct cn_config_error {
    unsigned long line;   /* 1-based; 0 when the error has no position (file unreadable) */
    unsigned long column; /* 1-based, in characters; 0 when line is 0 */
    char message[512];    /* one line, naming the setting: "workers: 'x' is not a number" */
};

/* As cn_config_load_file, with the error's position and message apart. On success sets
 * cfg->path (a copy of path) and leaves out_err untouched. */
int cn_config_load_file_ex(struct cn_config *cfg, const char *path,
                           struct cn_config_error *out_err);

enum cn_config_dump_flags {
    CN_CONFIG_DUMP_REDACT = 1 << 0, /* secrets (api.token) written as "<redacted>", which does
                                       not load: a copied dump fails loudly, never silently */
};

/* As cn_config_dump with flags. cn_config_dump writes secrets in clear so that its output
 * loads back to an equal configuration. Returns 0, or CN_EIO when writing failed. */
int cn_config_dump_ex(const struct cn_config *cfg, FILE *out, unsigned flags);

/* The settings table, for docs checks and reload: i < cn_config_num_settings(). */
size_t cn_config_num_settings(void);
/* The dotted key of setting i ("http.max_body_bytes"); NULL past the end. */
const char *cn_config_setting_key(size_t i);
/* Writes setting i's environment variable ("CAIRN_HTTP_MAX_BODY_BYTES") into out.
 * Returns 0, CN_ERANGE when out is too small, CN_EINVAL past the end. */
int cn_config_setting_env(size_t i, char *out, size_t out_len);
/* 1 when a change to setting i applies only after a restart, not on SIGHUP reload. */
int cn_config_setting_needs_restart(size_t i);
/* Index of the first setting at or after from whose value differs between a and b, or
 * cn_config_num_settings() when none does. Loop with it to list every change. */
size_t cn_config_diff(const struct cn_config *a, const struct cn_config *b, size_t from);

/* Splits an address accepted by api.listen into a numeric host for uv_ip4_addr or
 * uv_ip6_addr ("localhost" gives "127.0.0.1", "[::1]:80" gives "::1") and a port.
 * *out_family is AF_INET or AF_INET6. host_len of 46 (INET6_ADDRSTRLEN) always suffices.
 * Returns 0, CN_EINVAL for a malformed address, CN_ERANGE when host_len is too small. */
int cn_config_parse_listen(const char *listen, char *out_host, size_t host_len, int *out_family,
                           uint16_t *out_port);
/* 1 when the host of a valid listen address is loopback (127.0.0.0/8, ::1, localhost). */
int cn_config_listen_is_loopback(const char *listen);

struct cn_code_links;
struct cn_query_limits;
/* The code link table of telemetry.code_links (query.h). NULL with a message in err on
 * failure. The caller frees it with cn_code_links_free. */
struct cn_code_links *cn_config_code_links(const struct cn_config *cfg, char *err, size_t err_len);
/* The query.* settings as the query layer's limits. */
void cn_config_query_limits(const struct cn_config *cfg, struct cn_query_limits *out);

#endif
