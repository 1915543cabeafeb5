/* Configuration: one table of settings drives the defaults, the YAML file, CAIRN_*
 * environment variables, flags (cn_config_set), validation, the dump and the docs check. */
#include "cli/config.h"
#include "base/buf.h"
#include "base/utf8.h"
#include "telemetry/query.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define KIB  UINT64_C(1024)
#define MIB  (UINT64_C(1024) * KIB)
#define GIB  (UINT64_C(1024) * MIB)
#define SECS UINT64_C(1000)
#define MINS (UINT64_C(60) * SECS)
#define HRS  (UINT64_C(60) * MINS)

/* A configuration file larger than this is refused before parsing. */
#define MAX_FILE_BYTES MIB

/* Input quoted in a message is cut after SHOW_BYTES bytes; each may take 4 (\xNN), plus
 * quotes, "..." and the NUL. */
#define SHOW_BYTES 48
#define SHOW_MAX   (4 * SHOW_BYTES + 6)

enum type {
    T_UINT,     /* uint64_t, decimal */
    T_SIZE,     /* uint64_t bytes: 16k, 8MiB, 4g (powers of 1024) */
    T_DURATION, /* uint64_t milliseconds: 250ms, 10s, 2m, 1h, or a bare number of ms */
    T_BOOL,     /* int 0/1: true/false, yes/no, on/off */
    T_LEVEL,    /* enum cn_log_level: debug, info, warn, error */
    T_STRING,   /* char *, heap: any UTF-8 without control characters */
    T_TOKEN,    /* char *, heap: a bearer token (RFC 6750 b64token characters) */
    T_LISTEN,   /* char *, heap: HOST:PORT as cn_config_parse_listen accepts */
    T_LINKS,    /* char *, heap: a mapping service -> code link template, stored as a YAML
                   flow mapping of double-quoted strings (its canonical text form) */
};

enum setting_flags {
    S_RESTART = 1 << 0, /* SIGHUP does not apply it: threads, sockets, routes are set up once */
    S_SECRET = 1 << 1,  /* never echoed in messages; redacted by CN_CONFIG_DUMP_REDACT */
};

/* One setting. min and max bound the value for numeric types and the length in bytes for
 * T_STRING and T_TOKEN; they are unused for the others. def is parsed by the same code as
 * user input, so a default is always a value a user could have written. */
struct setting {
    const char *key;
    enum type type;
    size_t off;
    const char *def;
    uint64_t min, max;
    unsigned flags;
    const char *doc;
};

#define AT(member) offsetof(struct cn_config, member)

/* Keys sharing a group ("http.") must be next to each other: the dump writes one mapping
 * per group in table order. */
static const struct setting settings[] = {
    {"workers", T_UINT, AT(workers), "0", 0, 256, S_RESTART, "worker threads; 0 = one per core"},
    {"log.level", T_LEVEL, AT(log_level), "info", 0, 0, 0,
     "least severe level logged: debug, info, warn or error"},
    {"data_dir", T_STRING, AT(data_dir), "./cairn-data", 1, 4096, S_RESTART,
     "directory where Cairn keeps its data"},
    {"api.listen", T_LISTEN, AT(api.listen), "127.0.0.1:9000", 0, 0, S_RESTART,
     "console, API and metrics address; port 0 picks a free port"},
    {"api.token", T_TOKEN, AT(api.token), "", 0, 4096, S_RESTART | S_SECRET,
     "bearer token the API requires; needed when api.listen is not loopback"},
    {"api.test_routes", T_BOOL, AT(api.test_routes), "false", 0, 1, S_RESTART,
     "enables debug routes for tests and benchmarks"},
    {"http.max_url_bytes", T_SIZE, AT(http.max_url_bytes), "8k", 64, MIB, 0,
     "longest request target; longer gets 414"},
    {"http.max_header_bytes", T_SIZE, AT(http.max_header_bytes), "32k", 256, MIB, 0,
     "longest request line plus headers; longer gets 431"},
    {"http.max_headers", T_UINT, AT(http.max_headers), "100", 1, 10000, 0,
     "most header fields in a request; more gets 431"},
    {"http.max_body_bytes", T_SIZE, AT(http.max_body_bytes), "8m", 0, 4 * GIB, 0,
     "largest request body, after gzip decoding too; larger gets 413"},
    {"http.header_timeout", T_DURATION, AT(http.header_timeout_ms), "10s", 10, HRS, 0,
     "time to receive a request head; slower gets 408 and a close"},
    {"http.body_timeout", T_DURATION, AT(http.body_timeout_ms), "30s", 10, HRS, 0,
     "time to receive the body after the head; slower gets 408 and a close"},
    {"http.idle_timeout", T_DURATION, AT(http.idle_timeout_ms), "60s", 10, HRS, 0,
     "keep-alive connection idle between requests; then closed silently"},
    {"http.send_timeout", T_DURATION, AT(http.send_timeout_ms), "30s", 10, HRS, 0,
     "time the client has to read a response; then closed"},
    {"http.max_connections", T_UINT, AT(http.max_connections), "10000", 1, 1000000, 0,
     "open connections per process; past it 503 and a close"},
    {"http.busy_poll_us", T_UINT, AT(http.busy_poll_us), "50", 0, 10000, 0,
     "after a burst of I/O a worker polls without sleeping this many microseconds; 0 = off"},
    {"shutdown.drain_timeout", T_DURATION, AT(shutdown.drain_timeout_ms), "10s", 0, HRS, 0,
     "on SIGTERM or SIGINT, time in-flight requests get to finish"},
    {"otlp.listen", T_LISTEN, AT(otlp.listen), "127.0.0.1:4318", 0, 0, S_RESTART,
     "OTLP/HTTP (/v1/traces, /v1/logs) and Zipkin (/api/v2/spans) receiver address"},
    {"otlp.token", T_TOKEN, AT(otlp.token), "", 0, 4096, S_RESTART | S_SECRET,
     "bearer token senders must present; needed when otlp.listen is not loopback"},
    {"otlp.max_body_bytes", T_SIZE, AT(otlp.max_body_bytes), "16m", KIB, GIB, 0,
     "largest export request body (after gzip decoding); larger gets 413"},
    {"telemetry.memory", T_SIZE, AT(telemetry.memory_bytes), "512m", 16 * MIB, 64 * GIB, S_RESTART,
     "memory budget of the in-memory head; past it exports get 429"},
    {"telemetry.queue_bytes", T_SIZE, AT(telemetry.queue_bytes), "64m", MIB, 4 * GIB, S_RESTART,
     "bytes of exports waiting for the write-ahead log; past it exports get 429"},
    {"telemetry.wal_segment_bytes", T_SIZE, AT(telemetry.wal_segment_bytes), "64m", MIB, GIB,
     S_RESTART, "size at which the write-ahead log starts a new file"},
    {"telemetry.fsync", T_BOOL, AT(telemetry.fsync), "true", 0, 1, S_RESTART,
     "fdatasync the write-ahead log before acknowledging (false: survives kill -9, not power "
     "loss)"},
    {"telemetry.wal_direct", T_BOOL, AT(telemetry.wal_direct), "true", 0, 1, S_RESTART,
     "write the write-ahead log with O_DIRECT, past the page cache, where the file system "
     "allows it (false: buffered writes)"},
    {"telemetry.max_attributes", T_UINT, AT(telemetry.max_attributes), "128", 1, 100000, S_RESTART,
     "attributes kept per span, event, link, log record and resource"},
    {"telemetry.max_attribute_value_bytes", T_SIZE, AT(telemetry.max_attribute_value_bytes), "4k",
     16, MIB, S_RESTART, "longer string and bytes attribute values are cut"},
    {"telemetry.max_events", T_UINT, AT(telemetry.max_events), "128", 1, 100000, S_RESTART,
     "events kept per span"},
    {"telemetry.max_links", T_UINT, AT(telemetry.max_links), "128", 1, 100000, S_RESTART,
     "links kept per span"},
    {"telemetry.retry_after", T_DURATION, AT(telemetry.retry_after_ms), "1s", 1000, HRS, S_RESTART,
     "Retry-After given with 429 and 503 answers to exports"},
    {"telemetry.seal_bytes", T_SIZE, AT(telemetry.seal_bytes), "16m", MIB, 4 * GIB, S_RESTART,
     "the in-memory head is written out as segment files past this size"},
    {"telemetry.seal_interval", T_DURATION, AT(telemetry.seal_interval_ms), "10s", 100, HRS,
     S_RESTART, "or when its oldest batch is this old"},
    {"telemetry.retention", T_DURATION, AT(telemetry.retention_ms), "168h", 0, 87600 * HRS,
     S_RESTART, "whole days of segments older than this are removed; 0 keeps everything"},
    {"telemetry.disk_budget", T_SIZE, AT(telemetry.disk_budget), "20g", 0, 1024 * 1024 * GIB,
     S_RESTART, "segment bytes kept at most, oldest removed first; 0 = no budget"},
    {"telemetry.bloom_cache", T_SIZE, AT(telemetry.bloom_cache), "64m", MIB, 64 * GIB, S_RESTART,
     "memory for the bloom filters of segment files, least recently used dropped past it"},
    {"telemetry.footer_cache", T_SIZE, AT(telemetry.footer_cache), "64m", MIB, 64 * GIB, S_RESTART,
     "memory for the footers' tables of segment files, least recently used dropped"},
    {"telemetry.trace_map_days", T_UINT, AT(telemetry.trace_map_days), "2", 1, 36500, S_RESTART,
     "days of partitions (today counts) whose trace IDs stay in memory; older in files"},
    {"telemetry.max_spans_per_trace", T_UINT, AT(telemetry.max_spans_per_trace), "100000", 0,
     10000000, S_RESTART, "spans of one trace kept; past it they are refused; 0 = no limit"},
    {"telemetry.code_links", T_LINKS, AT(telemetry.code_links), "{}", 0, 64 * KIB, 0,
     "service -> code URL template ({repo}, {revision}, {filepath}, {lineno}...); \"*\": default"},
    {"query.default_limit", T_UINT, AT(query.default_limit), "20", 1, 100000, 0,
     "results of a query that names no limit"},
    {"query.max_limit", T_UINT, AT(query.max_limit), "1000", 1, 100000, 0,
     "largest limit a query may ask for; more gets 400"},
    {"query.max_scan_records", T_UINT, AT(query.max_scan_records), "2000000", 1000, 1000000000, 0,
     "spans or log records one query reads at most; then it answers what it found"},
    {"query.max_range", T_DURATION, AT(query.max_range_ms), "168h", SECS, 87600 * HRS, 0,
     "widest time range of a search; wider gets 400"},
    {"query.max_tag_values", T_UINT, AT(query.max_tag_values), "10000", 10, 10000000, 0,
     "distinct attribute keys or values one autocomplete query counts"},
    {"registry.listen", T_LISTEN, AT(registry.listen), "127.0.0.1:8848", 0, 0, S_RESTART,
     "Nacos v1 API address (/nacos/v1/ns, /nacos/v1/cs)"},
    {"registry.auth", T_BOOL, AT(registry.auth), "false", 0, 1, S_RESTART,
     "require a Nacos login (accessToken, or username and password); needed off loopback"},
    {"registry.username", T_STRING, AT(registry.username), "nacos", 1, 64, S_RESTART,
     "the user name a Nacos client logs in with"},
    {"registry.password", T_TOKEN, AT(registry.password), "", 0, 4096, S_RESTART | S_SECRET,
     "its password; required when registry.auth is on"},
    {"registry.token_ttl", T_DURATION, AT(registry.token_ttl_ms), "5h", SECS, 720 * HRS, S_RESTART,
     "lifetime of an accessToken from /nacos/v1/auth/login"},
    {"registry.max_services", T_UINT, AT(registry.max_services), "100000", 1, 10000000, S_RESTART,
     "services across namespaces; past it a register gets 400"},
    {"registry.max_instances_per_service", T_UINT, AT(registry.max_instances_per_service), "10000",
     1, 1000000, S_RESTART, "instances of one service; past it a register gets 400"},
    {"registry.max_configs", T_UINT, AT(registry.max_configs), "100000", 1, 10000000, S_RESTART,
     "configuration items across namespaces; past it a publish gets 400"},
    {"registry.max_config_bytes", T_SIZE, AT(registry.max_config_bytes), "1m", 1, 64 * MIB,
     S_RESTART, "content of one configuration item; larger gets 400"},
    {"registry.max_history", T_UINT, AT(registry.max_history), "100", 1, 100000, S_RESTART,
     "history rows kept per configuration item, oldest pruned"},
    {"registry.beat_interval", T_DURATION, AT(registry.beat_interval_ms), "5s", 100, HRS, S_RESTART,
     "heartbeat period told to clients (preserved.heart.beat.interval overrides)"},
    {"registry.beat_timeout", T_DURATION, AT(registry.beat_timeout_ms), "15s", 100, HRS, S_RESTART,
     "an ephemeral instance silent this long turns unhealthy"},
    {"registry.delete_timeout", T_DURATION, AT(registry.delete_timeout_ms), "30s", 100, HRS,
     S_RESTART, "an ephemeral instance silent this long is removed"},
    {"registry.cache_millis", T_DURATION, AT(registry.cache_ms), "10s", 100, HRS, S_RESTART,
     "cacheMillis of instance lists: how often clients poll a subscribed service"},
    {"registry.max_listen_keys", T_UINT, AT(registry.max_listen_keys), "10000", 1, 1000000,
     S_RESTART, "keys in one configuration listener request; more gets 400"},
    {"registry.max_hold", T_DURATION, AT(registry.max_hold_ms), "90s", 10 * SECS, HRS, S_RESTART,
     "longest a listener request is held, whatever its Long-Pulling-Timeout"},
    {"registry.max_parked", T_UINT, AT(registry.max_parked), "100000", 0, 10000000, S_RESTART,
     "listener requests held per worker; past it they are answered at once"},
    {"registry.tick", T_DURATION, AT(registry.tick_ms), "500ms", 10, 60 * SECS, S_RESTART,
     "how often heartbeat expiry runs"},
    {"registry.check_interval", T_DURATION, AT(registry.check_interval_ms), "5s", 100, HRS,
     S_RESTART, "one round of health checks of persistent instances every this often"},
    {"registry.check_timeout", T_DURATION, AT(registry.check_timeout_ms), "2s", 10, 60 * SECS,
     S_RESTART, "a health check not answered in time marks the instance unhealthy"},
    {"registry.check_concurrency", T_UINT, AT(registry.check_concurrency), "64", 1, 10000,
     S_RESTART, "health checks in flight at once"},
    {"registry.etcd.endpoints", T_STRING, AT(registry.etcd_endpoints), "", 0, 4096, S_RESTART,
     "cluster mode: etcd members as http://HOST:PORT, comma-separated; empty: embedded SQLite"},
    {"registry.etcd.prefix", T_STRING, AT(registry.etcd_prefix), "/cairn", 1, 256, S_RESTART,
     "cluster mode: the prefix of every key the registry writes to etcd"},
    {"registry.etcd.dial_timeout", T_DURATION, AT(registry.etcd_dial_timeout_ms), "2s", 10,
     60 * SECS, S_RESTART, "cluster mode: connecting to one etcd member, before trying the next"},
    {"registry.etcd.request_timeout", T_DURATION, AT(registry.etcd_request_timeout_ms), "5s", 100,
     5 * 60 * SECS, S_RESTART,
     "cluster mode: one etcd call across every member (an election takes a couple of seconds)"},
    {"registry.etcd.lease_ttl", T_DURATION, AT(registry.etcd_lease_ttl_ms), "10s", 2 * SECS, HRS,
     S_RESTART, "cluster mode: a stopped node's ephemeral instances vanish after this"},
    {"registry.etcd.reconcile_interval", T_DURATION, AT(registry.etcd_reconcile_ms), "60s",
     1 * SECS, 24 * HRS, S_RESTART, "cluster mode: full re-read of etcd besides the watch"},
    {"registry.etcd.max_response", T_SIZE, AT(registry.etcd_max_response), "256m", 64 * KIB,
     4 * GIB, S_RESTART, "cluster mode: the largest etcd answer read (a full read included)"},
    {"gateway.config", T_STRING, AT(gateway.config), "", 0, 4096, S_RESTART,
     "gateway configuration file whose listeners run inside cairn up (SIGHUP reloads it); "
     "empty: no gateway"},
};

#define NUM_SETTINGS CN_ARRAY_LEN(settings)

/* CAIRN_* variables that are not settings; a final '*' matches any rest. */
static const char *const env_not_settings[] = {"CAIRN_BIN", "CAIRN_CONFIG", "CAIRN_TEST_*",
                                               "CAIRN_BENCH_*"};

/* A parsed value before it is stored. */
union value {
    uint64_t u;
    int b;
    enum cn_log_level level;
    char *s; /* heap; owned by the union until stored */
};

static int is_heap(enum type t)
{
    return t == T_STRING || t == T_TOKEN || t == T_LISTEN || t == T_LINKS;
}

static int is_number(enum type t)
{
    return t == T_UINT || t == T_SIZE || t == T_DURATION;
}

static void *field(struct cn_config *cfg, const struct setting *s)
{
    return (char *)cfg + s->off;
}

static const void *cfield(const struct cn_config *cfg, const struct setting *s)
{
    return (const char *)cfg + s->off;
}

static const struct setting *find(const char *key, size_t len)
{
    for (size_t i = 0; i < NUM_SETTINGS; i++)
        if (strlen(settings[i].key) == len && memcmp(settings[i].key, key, len) == 0)
            return &settings[i];
    return NULL;
}

/* 1 when key[0..len) is a group: some setting's key continues it with a '.'. */
static int is_group(const char *key, size_t len)
{
    for (size_t i = 0; i < NUM_SETTINGS; i++) {
        const char *k = settings[i].key;
        if (strlen(k) > len && k[len] == '.' && memcmp(k, key, len) == 0)
            return 1;
    }
    return 0;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int case_eq(struct cn_slice t, const char *word)
{
    size_t n = strlen(word);
    if (t.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)t.ptr[i]) != word[i])
            return 0;
    return 1;
}

/* Writes t for a message, quoted when quote is set: printable ASCII as is, other bytes as
 * \xNN, at most SHOW_BYTES bytes of t then "...". dst holds SHOW_MAX bytes. */
static const char *show(char *dst, struct cn_slice t, int quote)
{
    size_t n = 0, lim = CN_MIN(t.len, (size_t)SHOW_BYTES);
    if (quote)
        dst[n++] = '\'';
    for (size_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)t.ptr[i];
        if (c >= 0x20 && c < 0x7f) {
            dst[n++] = (char)c;
        } else {
            static const char hex[] = "0123456789abcdef";
            dst[n++] = '\\';
            dst[n++] = 'x';
            dst[n++] = hex[c >> 4];
            dst[n++] = hex[c & 15];
        }
    }
    if (lim < t.len) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    if (quote)
        dst[n++] = '\'';
    dst[n] = '\0';
    return dst;
}

/* Human forms, as the dump writes them and messages quote bounds. */
static void fmt_size(char *dst, size_t len, uint64_t v)
{
    if (v && v % GIB == 0)
        snprintf(dst, len, "%" PRIu64 "GiB", v / GIB);
    else if (v && v % MIB == 0)
        snprintf(dst, len, "%" PRIu64 "MiB", v / MIB);
    else if (v && v % KIB == 0)
        snprintf(dst, len, "%" PRIu64 "KiB", v / KIB);
    else
        snprintf(dst, len, "%" PRIu64, v);
}

static void fmt_duration(char *dst, size_t len, uint64_t ms)
{
    if (ms == 0)
        snprintf(dst, len, "0s");
    else if (ms % HRS == 0)
        snprintf(dst, len, "%" PRIu64 "h", ms / HRS);
    else if (ms % MINS == 0)
        snprintf(dst, len, "%" PRIu64 "m", ms / MINS);
    else if (ms % SECS == 0)
        snprintf(dst, len, "%" PRIu64 "s", ms / SECS);
    else
        snprintf(dst, len, "%" PRIu64 "ms", ms);
}

static void fmt_number(char *dst, size_t len, enum type t, uint64_t v)
{
    if (t == T_SIZE)
        fmt_size(dst, len, v);
    else if (t == T_DURATION)
        fmt_duration(dst, len, v);
    else
        snprintf(dst, len, "%" PRIu64, v);
}

/* Splits t into leading digits and the rest; the digits' value saturates at UINT64_MAX so
 * that an overlong number reads as "above the maximum". Returns 0 when there are no digits. */
static int split_number(struct cn_slice t, uint64_t *out_v, struct cn_slice *out_unit)
{
    size_t n = 0;
    while (n < t.len && t.ptr[n] >= '0' && t.ptr[n] <= '9')
        n++;
    if (n == 0)
        return 0;
    if (cn_slice_to_u64((struct cn_slice){t.ptr, n}, out_v) != 0)
        *out_v = UINT64_MAX;
    *out_unit = (struct cn_slice){t.ptr + n, t.len - n};
    return 1;
}

static uint64_t mul_sat(uint64_t v, uint64_t m)
{
    return v > UINT64_MAX / m ? UINT64_MAX : v * m;
}

static int parse_size(struct cn_slice t, uint64_t *out_v)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {{"", 1},      {"k", KIB}, {"kib", KIB}, {"m", MIB},
                 {"mib", MIB}, {"g", GIB}, {"gib", GIB}};
    uint64_t v;
    struct cn_slice unit;
    if (!split_number(t, &v, &unit))
        return CN_EINVAL;
    for (size_t i = 0; i < CN_ARRAY_LEN(units); i++) {
        if (case_eq(unit, units[i].unit)) {
            *out_v = mul_sat(v, units[i].mul);
            return 0;
        }
    }
    return CN_EINVAL;
}

static int parse_duration(struct cn_slice t, uint64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {{"", 1}, {"ms", 1}, {"s", SECS}, {"m", MINS}, {"h", HRS}};
    uint64_t v;
    struct cn_slice unit;
    if (!split_number(t, &v, &unit))
        return CN_EINVAL;
    for (size_t i = 0; i < CN_ARRAY_LEN(units); i++) {
        /* Case matters: "m" is minutes, "M" would be a guess. */
        if (cn_slice_eq(unit, cn_slice_of(units[i].unit))) {
            *out_ms = mul_sat(v, units[i].mul);
            return 0;
        }
    }
    return CN_EINVAL;
}

/* RFC 6750 b64token: letters, digits, - . _ ~ + /, then optional trailing '='. */
static int token_valid(struct cn_slice t)
{
    size_t i = 0;
    while (i < t.len) {
        char c = t.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              memchr("-._~+/", c, 6) != NULL))
            break;
        i++;
    }
    if (i == 0 && t.len > 0)
        return 0;
    while (i < t.len && t.ptr[i] == '=')
        i++;
    return i == t.len;
}

/* The listen address grammar, shared by parsing and cn_config_parse_listen. Writes the
 * numeric host (NUL-terminated, at most 45 bytes) into host[46]. */
static int split_listen(struct cn_slice t, char *host, int *out_family, uint16_t *out_port,
                        int *out_bad_port)
{
    struct cn_slice h, port;
    *out_bad_port = 0;
    if (t.len > 0 && t.ptr[0] == '[') {
        const char *close = memchr(t.ptr, ']', t.len);
        if (!close || close + 1 == t.ptr + t.len || close[1] != ':')
            return CN_EINVAL;
        h = (struct cn_slice){t.ptr + 1, (size_t)(close - t.ptr - 1)};
        port = (struct cn_slice){close + 2, (size_t)(t.ptr + t.len - close - 2)};
        *out_family = AF_INET6;
    } else {
        const char *colon = memchr(t.ptr, ':', t.len);
        if (!colon)
            return CN_EINVAL;
        h = (struct cn_slice){t.ptr, (size_t)(colon - t.ptr)};
        port = (struct cn_slice){colon + 1, (size_t)(t.ptr + t.len - colon - 1)};
        *out_family = AF_INET;
    }
    if (h.len == 0 || h.len > 45 || memchr(h.ptr, '\0', h.len))
        return CN_EINVAL;
    if (*out_family == AF_INET && cn_slice_eq(h, CN_SLICE_LIT("localhost"))) {
        strcpy(host, "127.0.0.1");
    } else {
        unsigned char addr[16];
        memcpy(host, h.ptr, h.len);
        host[h.len] = '\0';
        if (inet_pton(*out_family, host, addr) != 1)
            return CN_EINVAL;
    }
    uint64_t p;
    if (port.len == 0 || port.len > 5 || cn_slice_to_u64(port, &p) != 0)
        return CN_EINVAL;
    if (p > 65535) {
        *out_bad_port = 1;
        return CN_EINVAL;
    }
    *out_port = (uint16_t)p;
    return 0;
}

static char *dup_slice(struct cn_slice t)
{
    char *s = malloc(t.len + 1);
    if (s) {
        if (t.len)
            memcpy(s, t.ptr, t.len);
        s[t.len] = '\0';
    }
    return s;
}

/* ---- code link maps (T_LINKS) ---- */

/* Appends t double-quoted for YAML (the strings hold no control characters). */
static int put_quoted(struct cn_buf *b, struct cn_slice t)
{
    int rc = cn_buf_puts(b, "\"");
    for (size_t i = 0; i < t.len && rc == 0; i++) {
        if (t.ptr[i] == '"' || t.ptr[i] == '\\')
            rc = cn_buf_puts(b, "\\");
        if (rc == 0)
            rc = cn_buf_append(b, t.ptr + i, 1);
    }
    return rc ? rc : cn_buf_puts(b, "\"");
}

/* Checks a mapping node of service -> template and writes its canonical text into out.
 * On failure *out_bad is the node at fault (for its line) and msg says why. */
static int links_from_node(yaml_document_t *doc, const yaml_node_t *map, struct cn_buf *out,
                           const yaml_node_t **out_bad, char *msg, size_t msg_len)
{
    *out_bad = map;
    if (map->type != YAML_MAPPING_NODE) {
        snprintf(msg, msg_len, "expected a mapping of service: template");
        return CN_EINVAL;
    }
    int rc = cn_buf_puts(out, "{");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         rc == 0 && p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (CN_NEVER(!k || !v))
            return CN_EINVAL;
        *out_bad = k;
        if (k->type != YAML_SCALAR_NODE || k->data.scalar.length == 0) {
            snprintf(msg, msg_len, "a service name must be a non-empty string");
            return CN_EINVAL;
        }
        *out_bad = v;
        if (v->type != YAML_SCALAR_NODE) {
            snprintf(msg, msg_len, "the template of '%.*s' must be a string",
                     (int)CN_MIN(k->data.scalar.length, 64), (const char *)k->data.scalar.value);
            return CN_EINVAL;
        }
        struct cn_slice ks = {(const char *)k->data.scalar.value, k->data.scalar.length};
        struct cn_slice vs = {(const char *)v->data.scalar.value, v->data.scalar.length};
        for (size_t i = 0; i < ks.len + vs.len; i++) {
            unsigned char c = (unsigned char)(i < ks.len ? ks.ptr[i] : vs.ptr[i - ks.len]);
            if (c < 0x20 || c == 0x7f) {
                snprintf(msg, msg_len, "control character in a code link");
                return CN_EINVAL;
            }
        }
        char why[256];
        if (cn_code_template_check((const char *)v->data.scalar.value, why, sizeof(why)) != 0) {
            snprintf(msg, msg_len, "%.*s: %s", (int)CN_MIN(ks.len, 64), ks.ptr, why);
            return CN_EINVAL;
        }
        if (p != map->data.mapping.pairs.start)
            rc = cn_buf_puts(out, ", ");
        if (rc == 0)
            rc = put_quoted(out, ks);
        if (rc == 0)
            rc = cn_buf_puts(out, ": ");
        if (rc == 0)
            rc = put_quoted(out, vs);
    }
    if (rc == 0)
        rc = cn_buf_puts(out, "}");
    if (rc) {
        *out_bad = map;
        snprintf(msg, msg_len, "too long");
        return CN_EINVAL;
    }
    return 0;
}

/* The text form (a YAML flow mapping, as flags and the environment give it) into canonical
 * text in out. */
static int links_from_text(struct cn_slice t, struct cn_buf *out, char *msg, size_t msg_len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(msg, msg_len, "out of memory");
        return CN_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)t.ptr, t.len);
    int rc = CN_EINVAL;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(msg, msg_len, "not a YAML mapping: %s", parser.problem ? parser.problem : "?");
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        const yaml_node_t *bad;
        if (!root)
            snprintf(msg, msg_len, "expected a mapping of service: template");
        else
            rc = links_from_node(&doc, root, out, &bad, msg, msg_len);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* Checks a number against the setting's bounds. text is what the user wrote, or NULL to
 * quote v itself. */
static int check_range(const struct setting *s, uint64_t v, const char *text, char *msg,
                       size_t msg_len)
{
    char bound[32], val[32];
    if (!text) {
        fmt_number(val, sizeof(val), s->type, v);
        text = val;
    }
    if (v < s->min) {
        fmt_number(bound, sizeof(bound), s->type, s->min);
        snprintf(msg, msg_len, "%s is below the minimum %s", text, bound);
        return CN_EINVAL;
    }
    if (v > s->max) {
        fmt_number(bound, sizeof(bound), s->type, s->max);
        snprintf(msg, msg_len, "%s is above the maximum %s", text, bound);
        return CN_EINVAL;
    }
    return 0;
}

/* Checks a string's length and characters against the setting. Secrets are not echoed. */
static int check_string(const struct setting *s, struct cn_slice t, char *msg, size_t msg_len)
{
    char q[SHOW_MAX];
    if (t.len < s->min) {
        snprintf(msg, msg_len, "must not be empty");
        return CN_EINVAL;
    }
    if (t.len > s->max) {
        snprintf(msg, msg_len, "is longer than %" PRIu64 " bytes", s->max);
        return CN_EINVAL;
    }
    if (s->type == T_TOKEN) {
        if (!token_valid(t)) {
            snprintf(msg, msg_len,
                     "has a character a bearer token cannot hold (use letters, digits, "
                     "- . _ ~ + / and a trailing =)");
            return CN_EINVAL;
        }
        return 0;
    }
    for (size_t i = 0; i < t.len; i++) {
        unsigned char c = (unsigned char)t.ptr[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(msg, msg_len, "%s contains a control character", show(q, t, 1));
            return CN_EINVAL;
        }
    }
    if (!cn_utf8_valid(t.ptr, t.len)) {
        snprintf(msg, msg_len, "%s is not valid UTF-8", show(q, t, 1));
        return CN_EINVAL;
    }
    return 0;
}

/* Parses the text form of setting s. Returns 0 with *out set (a heap string for string
 * types, which the caller then owns), or CN_EINVAL / CN_ENOMEM with a message that does not
 * name the setting (callers prefix it: the key, or the environment variable). */
static int parse(const struct setting *s, struct cn_slice t, union value *out, char *msg,
                 size_t msg_len)
{
    char q[SHOW_MAX];
    switch (s->type) {
    case T_UINT: {
        int rc = cn_slice_to_u64(t, &out->u);
        if (rc == CN_ESYNTAX) {
            snprintf(msg, msg_len, "%s is not a number", show(q, t, 1));
            return CN_EINVAL;
        }
        if (rc == CN_ERANGE)
            out->u = UINT64_MAX;
        return check_range(s, out->u, show(q, t, 0), msg, msg_len);
    }
    case T_SIZE:
        if (parse_size(t, &out->u) != 0) {
            snprintf(msg, msg_len, "%s is not a size (use a number with optional k, m, g)",
                     show(q, t, 1));
            return CN_EINVAL;
        }
        return check_range(s, out->u, show(q, t, 0), msg, msg_len);
    case T_DURATION:
        if (parse_duration(t, &out->u) != 0) {
            snprintf(msg, msg_len, "%s is not a duration (use a number with ms, s, m or h)",
                     show(q, t, 1));
            return CN_EINVAL;
        }
        return check_range(s, out->u, show(q, t, 0), msg, msg_len);
    case T_BOOL:
        if (case_eq(t, "true") || case_eq(t, "yes") || case_eq(t, "on")) {
            out->b = 1;
            return 0;
        }
        if (case_eq(t, "false") || case_eq(t, "no") || case_eq(t, "off")) {
            out->b = 0;
            return 0;
        }
        snprintf(msg, msg_len, "%s is not a boolean (use true or false)", show(q, t, 1));
        return CN_EINVAL;
    case T_LEVEL:
        for (int l = CN_LOG_DEBUG; l <= CN_LOG_ERROR; l++) {
            if (case_eq(t, cn_log_level_name((enum cn_log_level)l))) {
                out->level = (enum cn_log_level)l;
                return 0;
            }
        }
        snprintf(msg, msg_len, "%s is not a log level (use debug, info, warn or error)",
                 show(q, t, 1));
        return CN_EINVAL;
    case T_LISTEN: {
        char host[46];
        int family, bad_port;
        uint16_t port;
        if (split_listen(t, host, &family, &port, &bad_port) != 0) {
            if (bad_port)
                snprintf(msg, msg_len, "%s has a port above the maximum 65535", show(q, t, 1));
            else
                snprintf(msg, msg_len,
                         "%s is not a listen address (use HOST:PORT with an IPv4 address, "
                         "localhost or [IPv6])",
                         show(q, t, 1));
            return CN_EINVAL;
        }
        break;
    }
    case T_STRING:
    case T_TOKEN: {
        int rc = check_string(s, t, msg, msg_len);
        if (rc)
            return rc;
        break;
    }
    case T_LINKS: {
        struct cn_buf b;
        cn_buf_init(&b, s->max);
        int rc = links_from_text(t, &b, msg, msg_len);
        if (rc == 0)
            rc = cn_buf_append(&b, "", 1) == 0 ? 0 : CN_EINVAL;
        if (rc) {
            cn_buf_release(&b);
            return rc;
        }
        out->s = b.ptr; /* NUL-terminated above */
        return 0;
    }
    }
    /* Only string types reach here. */
    out->s = dup_slice(t);
    if (!out->s) {
        snprintf(msg, msg_len, "out of memory");
        return CN_ENOMEM;
    }
    return 0;
}

static void store(struct cn_config *cfg, const struct setting *s, union value v)
{
    void *p = field(cfg, s);
    switch (s->type) {
    case T_UINT:
    case T_SIZE:
    case T_DURATION:
        *(uint64_t *)p = v.u;
        break;
    case T_BOOL:
        *(int *)p = v.b;
        break;
    case T_LEVEL:
        *(enum cn_log_level *)p = v.level;
        break;
    case T_STRING:
    case T_TOKEN:
    case T_LISTEN:
    case T_LINKS: {
        char **sp = p;
        free(*sp);
        *sp = v.s;
        break;
    }
    }
}

static int parse_store(struct cn_config *cfg, const struct setting *s, struct cn_slice t, char *msg,
                       size_t msg_len)
{
    union value v;
    int rc = parse(s, t, &v, msg, msg_len);
    if (rc == 0)
        store(cfg, s, v);
    return rc;
}

/* ---- lifecycle ---- */

struct cn_config *cn_config_new(void)
{
    struct cn_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    atomic_init(&cfg->refs, 1);
    for (size_t i = 0; i < NUM_SETTINGS; i++) {
        char msg[256];
        int rc = parse_store(cfg, &settings[i], cn_slice_of(settings[i].def), msg, sizeof(msg));
        if (rc == CN_ENOMEM) {
            cn_config_unref(cfg);
            return NULL;
        }
        /* A default the parser refuses is a bug in the table. */
        CN_BUG_ON(rc != 0);
    }
    return cfg;
}

struct cn_config *cn_config_ref(struct cn_config *cfg)
{
    int old = atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    CN_BUG_ON(old <= 0);
    return cfg;
}

void cn_config_unref(struct cn_config *cfg)
{
    if (!cfg)
        return;
    int old = atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel);
    CN_BUG_ON(old <= 0);
    if (old != 1)
        return;
    for (size_t i = 0; i < NUM_SETTINGS; i++)
        if (is_heap(settings[i].type))
            cn_free((char **)field(cfg, &settings[i]));
    cn_free(&cfg->path);
    free(cfg);
}

/* ---- errors ---- */

static int fail(struct cn_config_error *e, unsigned long line, unsigned long col, int rc,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(struct cn_config_error *e, unsigned long line, unsigned long col, int rc,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->line = line;
    e->column = line ? col : 0;
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return rc;
}

static void format_error(char *err, size_t err_len, const char *name,
                         const struct cn_config_error *e)
{
    if (!err || err_len == 0)
        return;
    if (e->line)
        snprintf(err, err_len, "%s:%lu:%lu: %s", name, e->line, e->column, e->message);
    else
        snprintf(err, err_len, "%s: %s", name, e->message);
}

static void put_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---- YAML ---- */

/* State of one load. key holds the dotted name of the mapping being walked. */
struct loader {
    struct cn_config *cfg;
    yaml_document_t *doc;
    struct cn_config_error *e;
    yaml_mark_t first[NUM_SETTINGS]; /* where each setting was set, when seen[i] */
    unsigned char seen[NUM_SETTINGS];
    char key[128];
};

#define LINE(m) ((unsigned long)(m).line + 1)
#define COL(m)  ((unsigned long)(m).column + 1)

static struct cn_slice scalar(const yaml_node_t *n)
{
    return (struct cn_slice){(const char *)n->data.scalar.value, n->data.scalar.length};
}

/* A plain empty, ~ or null scalar: YAML's null, as in "workers:" with nothing after. */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    struct cn_slice t = scalar(n);
    return t.len == 0 || cn_slice_eq(t, CN_SLICE_LIT("~")) ||
           cn_slice_eq(t, CN_SLICE_LIT("null")) || cn_slice_eq(t, CN_SLICE_LIT("Null")) ||
           cn_slice_eq(t, CN_SLICE_LIT("NULL"));
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a value";
    }
}

static int set_from_node(struct loader *l, const struct setting *s, const yaml_node_t *v)
{
    char msg[400];
    if (s->type == T_LINKS && v->type == YAML_MAPPING_NODE) {
        struct cn_buf b;
        const yaml_node_t *bad;
        cn_buf_init(&b, s->max);
        int rc = links_from_node(l->doc, v, &b, &bad, msg, sizeof(msg));
        if (rc == 0)
            rc = cn_buf_append(&b, "", 1) == 0 ? 0 : CN_EINVAL;
        if (rc) {
            cn_buf_release(&b);
            return fail(l->e, LINE(bad->start_mark), COL(bad->start_mark), rc, "%s: %s", s->key,
                        msg);
        }
        store(l->cfg, s, (union value){.s = b.ptr});
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE)
        return fail(l->e, LINE(v->start_mark), COL(v->start_mark), CN_EINVAL,
                    "%s: expected a value, found %s", s->key, node_kind(v));
    if (is_null(v))
        return fail(l->e, LINE(v->start_mark), COL(v->start_mark), CN_EINVAL,
                    "%s: no value (remove the line to keep the default)", s->key);
    int rc = parse_store(l->cfg, s, scalar(v), msg, sizeof(msg));
    if (rc)
        return fail(l->e, LINE(v->start_mark), COL(v->start_mark), rc, "%s: %s", s->key, msg);
    return 0;
}

/* Walks a mapping whose dotted name is l->key[0..plen) (empty at the top). Recursion only
 * follows groups, so its depth is bounded by the dots in the table's keys, whatever the
 * input nests or aliases. */
static int walk(struct loader *l, const yaml_node_t *map, size_t plen)
{
    const yaml_node_pair_t *start = map->data.mapping.pairs.start;
    const yaml_node_pair_t *top = map->data.mapping.pairs.top;
    char a[SHOW_MAX], b[SHOW_MAX];
    struct cn_slice prefix = {l->key, plen};

    for (const yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        if (CN_NEVER(!k || !v))
            return fail(l->e, 0, 0, CN_EINVAL, "malformed YAML document");
        if (k->type != YAML_SCALAR_NODE)
            return fail(l->e, LINE(k->start_mark), COL(k->start_mark), CN_EINVAL,
                        "%s%sexpected a setting name, found %s", plen ? show(a, prefix, 0) : "",
                        plen ? ": " : "", node_kind(k));
        struct cn_slice name = scalar(k);
        size_t flen = plen + (plen ? 1 : 0) + name.len;
        if (flen >= sizeof(l->key) || memchr(name.ptr, '\0', name.len)) {
            return fail(l->e, LINE(k->start_mark), COL(k->start_mark), CN_EINVAL,
                        "unknown setting '%s%s%s'", plen ? show(a, prefix, 0) : "", plen ? "." : "",
                        show(b, name, 0));
        }
        if (plen)
            l->key[plen] = '.';
        memcpy(l->key + flen - name.len, name.ptr, name.len);
        l->key[flen] = '\0';
        struct cn_slice full = {l->key, flen};

        /* Every earlier key of this mapping is a distinct known name (else we stopped), so
         * this loop runs at most as many times as the table has keys and groups. */
        for (const yaml_node_pair_t *q = start; q < p; q++) {
            yaml_node_t *kq = yaml_document_get_node(l->doc, q->key);
            if (kq && kq->type == YAML_SCALAR_NODE && cn_slice_eq(scalar(kq), name))
                return fail(l->e, LINE(k->start_mark), COL(k->start_mark), CN_EINVAL,
                            "duplicate key '%s' (first at %lu:%lu)", show(a, full, 0),
                            LINE(kq->start_mark), COL(kq->start_mark));
        }

        const struct setting *s = find(l->key, flen);
        if (s) {
            size_t i = (size_t)(s - settings);
            if (l->seen[i])
                return fail(l->e, LINE(k->start_mark), COL(k->start_mark), CN_EINVAL,
                            "duplicate key '%s' (first at %lu:%lu)", s->key, LINE(l->first[i]),
                            COL(l->first[i]));
            l->seen[i] = 1;
            l->first[i] = k->start_mark;
            int rc = set_from_node(l, s, v);
            if (rc)
                return rc;
        } else if (is_group(l->key, flen)) {
            if (v->type == YAML_MAPPING_NODE) {
                int rc = walk(l, v, flen);
                if (rc)
                    return rc;
            } else if (!is_null(v)) {
                return fail(l->e, LINE(v->start_mark), COL(v->start_mark), CN_EINVAL,
                            "%s: expected a mapping of settings, found %s", show(a, full, 0),
                            node_kind(v));
            }
        } else {
            return fail(l->e, LINE(k->start_mark), COL(k->start_mark), CN_EINVAL,
                        "unknown setting '%s'", show(a, full, 0));
        }
    }
    return 0;
}

static int yaml_error(const yaml_parser_t *p, const char *data, size_t len,
                      struct cn_config_error *e)
{
    const char *problem = p->problem ? p->problem : "malformed YAML";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return fail(e, 0, 0, CN_ENOMEM, "out of memory while parsing YAML");
    case YAML_READER_ERROR: {
        /* Reader errors carry a byte offset, not a mark. */
        unsigned long line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (data[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
        if (p->problem_value != -1)
            return fail(e, line, col, CN_ESYNTAX, "%s (0x%x)", problem, (unsigned)p->problem_value);
        return fail(e, line, col, CN_ESYNTAX, "%s", problem);
    }
    default:
        if (p->context)
            return fail(e, LINE(p->problem_mark), COL(p->problem_mark), CN_ESYNTAX,
                        "%s (%s at %lu:%lu)", problem, p->context, LINE(p->context_mark),
                        COL(p->context_mark));
        return fail(e, LINE(p->problem_mark), COL(p->problem_mark), CN_ESYNTAX, "%s", problem);
    }
}

static int load_yaml(struct cn_config *cfg, const char *data, size_t len, struct cn_config_error *e)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 0;

    if (!yaml_parser_initialize(&parser))
        return fail(e, 0, 0, CN_ENOMEM, "out of memory while parsing YAML");
    /* libyaml asserts on a NULL input, which an empty buffer may legitimately be. */
    yaml_parser_set_input_string(&parser, (const unsigned char *)(data ? data : ""),
                                 data ? len : 0);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_error(&parser, data, len, e);
        goto out;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) { /* no document at all: an empty file, or only comments */
        yaml_document_delete(&doc);
        goto out;
    }
    if (root->type == YAML_MAPPING_NODE) {
        struct loader *l = calloc(1, sizeof(*l));
        if (!l) {
            rc = fail(e, 0, 0, CN_ENOMEM, "out of memory");
        } else {
            l->cfg = cfg;
            l->doc = &doc;
            l->e = e;
            rc = walk(l, root, 0);
            free(l);
        }
    } else if (!is_null(root)) {
        rc = fail(e, LINE(root->start_mark), COL(root->start_mark), CN_EINVAL,
                  "expected a mapping of settings at the top level, found %s", node_kind(root));
    }
    yaml_document_delete(&doc);
    if (rc)
        goto out;

    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_error(&parser, data, len, e);
        goto out;
    }
    if (yaml_document_get_root_node(&doc))
        rc = fail(e, LINE(doc.start_mark), COL(doc.start_mark), CN_EINVAL,
                  "a second YAML document: a configuration is a single mapping");
    yaml_document_delete(&doc);
out:
    yaml_parser_delete(&parser);
    return rc;
}

int cn_config_load_buffer(struct cn_config *cfg, const char *name, const char *data, size_t len,
                          char *err, size_t err_len)
{
    struct cn_config_error e;
    int rc = load_yaml(cfg, data, len, &e);
    if (rc)
        format_error(err, err_len, name, &e);
    return rc;
}

static int read_all(int fd, struct cn_buf *b, struct cn_config_error *e)
{
    for (;;) {
        size_t room = b->max - b->len;
        char one;
        char *dst = &one;
        size_t want = 1;
        if (room > 0) {
            want = CN_MIN(room, (size_t)65536);
            if (cn_buf_reserve(b, want) != 0)
                return fail(e, 0, 0, CN_ENOMEM, "out of memory");
            dst = b->ptr + b->len;
        }
        ssize_t n = read(fd, dst, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail(e, 0, 0, -errno, "cannot read: %s", strerror(errno));
        if (n == 0)
            return 0;
        if (room == 0) /* a byte past the limit */
            return fail(e, 0, 0, CN_ELIMIT, "larger than 1MiB, the limit for a configuration");
        b->len += (size_t)n;
    }
}

int cn_config_load_file_ex(struct cn_config *cfg, const char *path, struct cn_config_error *e)
{
    struct stat st;
    struct cn_buf b;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(e, 0, 0, -errno, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return fail(e, 0, 0, -EISDIR, "cannot read: %s", strerror(EISDIR));
    }
    cn_buf_init(&b, MAX_FILE_BYTES);
    int rc = read_all(fd, &b, e);
    close(fd);
    if (rc == 0)
        rc = load_yaml(cfg, b.ptr ? b.ptr : "", b.len, e);
    cn_buf_release(&b);
    if (rc)
        return rc;
    char *copy = strdup(path);
    if (!copy)
        return fail(e, 0, 0, CN_ENOMEM, "out of memory");
    free(cfg->path);
    cfg->path = copy;
    return 0;
}

int cn_config_load_file(struct cn_config *cfg, const char *path, char *err, size_t err_len)
{
    struct cn_config_error e;
    int rc = cn_config_load_file_ex(cfg, path, &e);
    if (rc)
        format_error(err, err_len, path, &e);
    return rc;
}

/* ---- environment and flags ---- */

/* 1 when name (after "CAIRN_") is the variable of key: uppercase, '.' as '_'. */
static int env_matches(const char *key, struct cn_slice name)
{
    size_t n = strlen(key);
    if (n != name.len)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char want = key[i] == '.' ? '_' : (key[i] >= 'a' && key[i] <= 'z') ? key[i] - 32 : key[i];
        if (name.ptr[i] != want)
            return 0;
    }
    return 1;
}

static int env_ignored(struct cn_slice name)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(env_not_settings); i++) {
        const char *pat = env_not_settings[i];
        size_t n = strlen(pat);
        if (pat[n - 1] == '*') {
            if (name.len >= n - 1 && memcmp(name.ptr, pat, n - 1) == 0)
                return 1;
        } else if (cn_slice_eq(name, (struct cn_slice){pat, n})) {
            return 1;
        }
    }
    return 0;
}

int cn_config_apply_env(struct cn_config *cfg, char *const *envp, char *err, size_t err_len)
{
    static const char prefix[] = "CAIRN_";
    char q[SHOW_MAX], msg[400];
    for (; envp && *envp; envp++) {
        const char *eq = strchr(*envp, '=');
        if (!eq || strncmp(*envp, prefix, sizeof(prefix) - 1) != 0)
            continue;
        struct cn_slice name = {*envp, (size_t)(eq - *envp)};
        if (env_ignored(name))
            continue;
        struct cn_slice rest = {name.ptr + sizeof(prefix) - 1, name.len - (sizeof(prefix) - 1)};
        const struct setting *s = NULL;
        for (size_t i = 0; i < NUM_SETTINGS && !s; i++)
            if (env_matches(settings[i].key, rest))
                s = &settings[i];
        if (!s) {
            put_err(err, err_len, "%s: unknown setting", show(q, name, 0));
            return CN_EINVAL;
        }
        int rc = parse_store(cfg, s, cn_slice_of(eq + 1), msg, sizeof(msg));
        if (rc) {
            put_err(err, err_len, "%s: %s", show(q, name, 0), msg);
            return rc;
        }
    }
    return 0;
}

int cn_config_set(struct cn_config *cfg, const char *key, const char *value, char *err,
                  size_t err_len)
{
    char q[SHOW_MAX], msg[400];
    const struct setting *s = find(key, strlen(key));
    if (!s) {
        put_err(err, err_len, "unknown setting %s", show(q, cn_slice_of(key), 1));
        return CN_EINVAL;
    }
    int rc = parse_store(cfg, s, cn_slice_of(value), msg, sizeof(msg));
    if (rc)
        put_err(err, err_len, "%s: %s", s->key, msg);
    return rc;
}

/* ---- listen addresses ---- */

int cn_config_parse_listen(const char *listen, char *out_host, size_t host_len, int *out_family,
                           uint16_t *out_port)
{
    char host[46];
    int bad_port;
    if (!listen || split_listen(cn_slice_of(listen), host, out_family, out_port, &bad_port) != 0)
        return CN_EINVAL;
    size_t n = strlen(host);
    if (n >= host_len)
        return CN_ERANGE;
    memcpy(out_host, host, n + 1);
    return 0;
}

int cn_config_listen_is_loopback(const char *listen)
{
    char host[46];
    int family;
    uint16_t port;
    unsigned char a[16];
    if (cn_config_parse_listen(listen, host, sizeof(host), &family, &port) != 0 ||
        inet_pton(family, host, a) != 1)
        return 0;
    if (family == AF_INET)
        return a[0] == 127;
    static const unsigned char v6_loopback[16] = {[15] = 1};
    static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    return memcmp(a, v6_loopback, 16) == 0 || (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
}

/* ---- validation ---- */

/* Re-checks a stored value, for configurations built or edited by code. */
static int check_stored(const struct cn_config *cfg, const struct setting *s, char *msg,
                        size_t msg_len)
{
    const void *p = cfield(cfg, s);
    if (is_number(s->type))
        return check_range(s, *(const uint64_t *)p, NULL, msg, msg_len);
    if (s->type == T_LEVEL) {
        enum cn_log_level l = *(const enum cn_log_level *)p;
        if (l < CN_LOG_DEBUG || l > CN_LOG_ERROR) {
            snprintf(msg, msg_len, "%d is not a log level", (int)l);
            return CN_EINVAL;
        }
        return 0;
    }
    if (is_heap(s->type)) {
        const char *str = *(char *const *)p;
        union value v;
        if (!str) {
            snprintf(msg, msg_len, "is not set");
            return CN_EINVAL;
        }
        int rc = parse(s, cn_slice_of(str), &v, msg, msg_len);
        if (rc == 0)
            free(v.s);
        return rc;
    }
    return 0;
}

int cn_config_validate(const struct cn_config *cfg, char *err, size_t err_len)
{
    char msg[400];
    for (size_t i = 0; i < NUM_SETTINGS; i++) {
        int rc = check_stored(cfg, &settings[i], msg, sizeof(msg));
        if (rc) {
            put_err(err, err_len, "%s: %s", settings[i].key, msg);
            return rc;
        }
    }
    if (!cn_config_listen_is_loopback(cfg->api.listen) && cfg->api.token[0] == '\0') {
        put_err(err, err_len,
                "api.listen is not a loopback address: set api.token to require a bearer token");
        return CN_EINVAL;
    }
    if (!cn_config_listen_is_loopback(cfg->otlp.listen) && cfg->otlp.token[0] == '\0') {
        put_err(err, err_len,
                "otlp.listen is not a loopback address: set otlp.token to require a bearer "
                "token");
        return CN_EINVAL;
    }
    /* The request line counts toward the header limit: a larger URL limit could never
     * answer 414, only 431. */
    if (!cfg->registry.auth && !cn_config_listen_is_loopback(cfg->registry.listen)) {
        put_err(err, err_len,
                "registry.listen is not a loopback address: set registry.auth and "
                "registry.password to require a login");
        return CN_EINVAL;
    }
    if (cfg->registry.auth && (!cfg->registry.password || !*cfg->registry.password)) {
        put_err(err, err_len, "registry.auth is on: set registry.password");
        return CN_EINVAL;
    }
    if (cfg->query.default_limit > cfg->query.max_limit) {
        put_err(err, err_len, "query.default_limit (%llu) is above query.max_limit (%llu)",
                (unsigned long long)cfg->query.default_limit,
                (unsigned long long)cfg->query.max_limit);
        return CN_EINVAL;
    }
    if (cfg->http.max_url_bytes > cfg->http.max_header_bytes) {
        char u[32], h[32];
        fmt_size(u, sizeof(u), cfg->http.max_url_bytes);
        fmt_size(h, sizeof(h), cfg->http.max_header_bytes);
        put_err(err, err_len,
                "http.max_url_bytes (%s) is larger than http.max_header_bytes (%s), which "
                "includes the request line",
                u, h);
        return CN_EINVAL;
    }
    return 0;
}

/* ---- comparison and the table ---- */

static int same(const struct cn_config *a, const struct cn_config *b, const struct setting *s)
{
    const void *x = cfield(a, s), *y = cfield(b, s);
    switch (s->type) {
    case T_UINT:
    case T_SIZE:
    case T_DURATION:
        return *(const uint64_t *)x == *(const uint64_t *)y;
    case T_BOOL:
        return !*(const int *)x == !*(const int *)y;
    case T_LEVEL:
        return *(const enum cn_log_level *)x == *(const enum cn_log_level *)y;
    case T_STRING:
    case T_TOKEN:
    case T_LISTEN:
    case T_LINKS: {
        const char *sx = *(char *const *)x, *sy = *(char *const *)y;
        return sx == sy || (sx && sy && strcmp(sx, sy) == 0);
    }
    }
    return 0;
}

size_t cn_config_diff(const struct cn_config *a, const struct cn_config *b, size_t from)
{
    for (size_t i = from; i < NUM_SETTINGS; i++)
        if (!same(a, b, &settings[i]))
            return i;
    return NUM_SETTINGS;
}

size_t cn_config_num_settings(void)
{
    return NUM_SETTINGS;
}

const char *cn_config_setting_key(size_t i)
{
    return i < NUM_SETTINGS ? settings[i].key : NULL;
}

int cn_config_setting_env(size_t i, char *out, size_t out_len)
{
    if (i >= NUM_SETTINGS)
        return CN_EINVAL;
    const char *k = settings[i].key;
    size_t n = strlen(k);
    if (out_len < n + 7)
        return CN_ERANGE;
    memcpy(out, "CAIRN_", 6);
    for (size_t j = 0; j < n; j++)
        out[6 + j] = k[j] == '.' ? '_' : (k[j] >= 'a' && k[j] <= 'z') ? (char)(k[j] - 32) : k[j];
    out[6 + n] = '\0';
    return 0;
}

int cn_config_setting_needs_restart(size_t i)
{
    return i < NUM_SETTINGS && (settings[i].flags & S_RESTART) != 0;
}

/* ---- dump ---- */

static int put_value(struct cn_buf *b, const struct cn_config *cfg, const struct setting *s,
                     unsigned flags)
{
    const void *p = cfield(cfg, s);
    char num[32];
    switch (s->type) {
    case T_UINT:
    case T_SIZE:
    case T_DURATION:
        fmt_number(num, sizeof(num), s->type, *(const uint64_t *)p);
        return cn_buf_puts(b, num);
    case T_BOOL:
        return cn_buf_puts(b, *(const int *)p ? "true" : "false");
    case T_LEVEL:
        return cn_buf_puts(b, cn_log_level_name(*(const enum cn_log_level *)p));
    case T_LINKS: {
        /* The canonical text is a YAML flow mapping already. */
        const char *str = *(char *const *)p;
        return cn_buf_puts(b, str ? str : "{}");
    }
    case T_STRING:
    case T_TOKEN:
    case T_LISTEN: {
        /* Double-quoted: stored strings hold no control characters and are UTF-8, so
         * escaping the quote and the backslash is enough. */
        const char *str = *(char *const *)p;
        int rc;
        if (!str)
            str = "";
        if ((s->flags & S_SECRET) && (flags & CN_CONFIG_DUMP_REDACT) && *str)
            str = "<redacted>";
        rc = cn_buf_puts(b, "\"");
        for (; *str && rc == 0; str++) {
            if (*str == '"' || *str == '\\')
                rc = cn_buf_puts(b, "\\");
            if (rc == 0)
                rc = cn_buf_append(b, str, 1);
        }
        return rc ? rc : cn_buf_puts(b, "\"");
    }
    }
    return CN_EINVAL;
}

/* Length of the group part of key: up to its last '.', 0 for a top-level key. */
static size_t group_len(const char *key)
{
    const char *dot = strrchr(key, '.');
    return dot ? (size_t)(dot - key) : 0;
}

int cn_config_dump_ex(const struct cn_config *cfg, FILE *out, unsigned flags)
{
    struct cn_buf line;
    const char *prev = "";
    int rc = 0;

    cn_buf_init(&line, 16384);
    fputs("# cairn configuration (defaults < file < CAIRN_* environment < flags)\n", out);
    for (size_t i = 0; i < NUM_SETTINGS && rc == 0; i++) {
        const struct setting *s = &settings[i];
        size_t glen = group_len(s->key), plen = group_len(prev);
        size_t pos = 0, depth = 0;
        /* Skip the group segments this key shares with the previous one... */
        while (pos < glen && pos < plen) {
            size_t end = pos;
            while (end < glen && s->key[end] != '.')
                end++;
            if (end > plen || (end < plen && prev[end] != '.') ||
                memcmp(s->key + pos, prev + pos, end - pos) != 0)
                break;
            pos = end + 1;
            depth++;
        }
        /* ...and open the rest. */
        while (pos < glen) {
            size_t end = pos;
            while (end < glen && s->key[end] != '.')
                end++;
            fprintf(out, "%*s%.*s:\n", (int)(2 * depth), "", (int)(end - pos), s->key + pos);
            pos = end + 1;
            depth++;
        }
        cn_buf_reset(&line);
        rc = cn_buf_printf(&line, "%*s%s: ", (int)(2 * depth), "", s->key + (glen ? glen + 1 : 0));
        if (rc == 0)
            rc = put_value(&line, cfg, s, flags);
        while (rc == 0 && line.len < 40)
            rc = cn_buf_puts(&line, " ");
        if (rc == 0)
            rc = cn_buf_printf(&line, "  # %s\n", s->doc);
        if (rc == 0)
            fwrite(line.ptr, 1, line.len, out);
        prev = s->key;
    }
    cn_buf_release(&line);
    if (rc)
        return rc;
    return ferror(out) ? CN_EIO : 0;
}

int cn_config_dump(const struct cn_config *cfg, FILE *out)
{
    return cn_config_dump_ex(cfg, out, 0);
}

struct cn_code_links *cn_config_code_links(const struct cn_config *cfg, char *err, size_t err_len)
{
    struct cn_code_links *cl = cn_code_links_new();
    if (!cl) {
        put_err(err, err_len, "out of memory");
        return NULL;
    }
    const char *text = cfg->telemetry.code_links ? cfg->telemetry.code_links : "{}";
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        cn_code_links_free(cl);
        put_err(err, err_len, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int rc = CN_EINVAL;
    if (yaml_parser_load(&parser, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        rc = root && root->type == YAML_MAPPING_NODE ? 0 : CN_EINVAL;
        for (yaml_node_pair_t *p = root ? root->data.mapping.pairs.start : NULL;
             rc == 0 && p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
                rc = CN_EINVAL;
                break;
            }
            rc = cn_code_links_add(cl, (const char *)k->data.scalar.value,
                                   (const char *)v->data.scalar.value, err, err_len);
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    if (rc) {
        cn_code_links_free(cl);
        put_err(err, err_len, "telemetry.code_links: malformed");
        return NULL;
    }
    return cl;
}

void cn_config_query_limits(const struct cn_config *cfg, struct cn_query_limits *out)
{
    cn_query_limits_default(out);
    out->default_limit = (uint32_t)cfg->query.default_limit;
    out->max_limit = (uint32_t)cfg->query.max_limit;
    out->max_scan_records = cfg->query.max_scan_records;
    out->max_range_ns = cfg->query.max_range_ms * 1000000u;
    out->max_tag_values = (uint32_t)cfg->query.max_tag_values;
}
