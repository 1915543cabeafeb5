/* Tests src/cli/config.c: defaults, every type's parse and bounds, exact error lines, the
 * environment, precedence, dump round trips, validation, and docs coverage of the table. */
#include "cli/config.h"
#include "telemetry/query.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)

static char err[1024];

/* A fresh configuration with YAML text loaded as "cairn.yaml"; the load must succeed. */
static struct cn_config *load_ok(const char *yaml)
{
    struct cn_config *cfg = cn_config_new();
    assert_non_null(cfg);
    err[0] = '\0';
    int rc = cn_config_load_buffer(cfg, "cairn.yaml", yaml, strlen(yaml), err, sizeof(err));
    if (rc != 0)
        fail_msg("load failed: %s", err);
    return cfg;
}

/* The load must fail with exactly this error line. */
static void load_err(const char *yaml, const char *want)
{
    struct cn_config *cfg = cn_config_new();
    assert_non_null(cfg);
    err[0] = '\0';
    int rc = cn_config_load_buffer(cfg, "cairn.yaml", yaml, strlen(yaml), err, sizeof(err));
    assert_true(rc < 0);
    assert_string_equal(err, want);
    cn_config_unref(cfg);
}

static void set_ok(struct cn_config *cfg, const char *key, const char *value)
{
    err[0] = '\0';
    if (cn_config_set(cfg, key, value, err, sizeof(err)) != 0)
        fail_msg("set %s=%s failed: %s", key, value, err);
}

static void set_err(const char *key, const char *value, const char *want)
{
    struct cn_config *cfg = cn_config_new();
    assert_non_null(cfg);
    err[0] = '\0';
    assert_int_equal(cn_config_set(cfg, key, value, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, want);
    cn_config_unref(cfg);
}

static size_t index_of(const char *key)
{
    for (size_t i = 0; i < cn_config_num_settings(); i++)
        if (strcmp(cn_config_setting_key(i), key) == 0)
            return i;
    fail_msg("no setting %s", key);
    return 0;
}

/* Text of a FILE *, via open_memstream. */
struct capture {
    char *text;
    size_t len;
    FILE *f;
};

static FILE *capture_open(struct capture *c)
{
    c->text = NULL;
    c->len = 0;
    c->f = open_memstream(&c->text, &c->len);
    assert_non_null(c->f);
    return c->f;
}

static const char *capture_close(struct capture *c)
{
    assert_int_equal(fclose(c->f), 0);
    return c->text;
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    (void)state;
    struct cn_config *cfg = cn_config_new();
    assert_non_null(cfg);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    assert_null(cfg->path);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->log_level, CN_LOG_INFO);
    assert_string_equal(cfg->data_dir, "./cairn-data");
    assert_string_equal(cfg->api.listen, "127.0.0.1:9000");
    assert_string_equal(cfg->api.token, "");
    assert_int_equal(cfg->api.test_routes, 0);
    assert_int_equal(cfg->http.max_url_bytes, 8 * KIB);
    assert_int_equal(cfg->http.max_header_bytes, 32 * KIB);
    assert_int_equal(cfg->http.max_headers, 100);
    assert_int_equal(cfg->http.max_body_bytes, 8 * MIB);
    assert_int_equal(cfg->http.header_timeout_ms, 10000);
    assert_int_equal(cfg->http.body_timeout_ms, 30000);
    assert_int_equal(cfg->http.idle_timeout_ms, 60000);
    assert_int_equal(cfg->http.send_timeout_ms, 30000);
    assert_int_equal(cfg->http.max_connections, 10000);
    assert_int_equal(cfg->http.busy_poll_us, 50);
    assert_int_equal(cfg->shutdown.drain_timeout_ms, 10000);
    assert_int_equal(cfg->otlp.max_body_bytes, 16 * MIB);
    assert_string_equal(cfg->otlp.listen, "127.0.0.1:4318");
    assert_int_equal(cfg->telemetry.memory_bytes, 512 * MIB);
    assert_int_equal(cfg->telemetry.fsync, 1);
    assert_int_equal(cfg->telemetry.wal_direct, 1);
    assert_int_equal(cfg->telemetry.max_attributes, 128);
    assert_int_equal(cfg->telemetry.retry_after_ms, 1000);
    assert_string_equal(cfg->telemetry.code_links, "{}");
    assert_int_equal(cfg->telemetry.bloom_cache, 64 * MIB);
    assert_int_equal(cfg->telemetry.footer_cache, 64 * MIB);
    assert_int_equal(cfg->telemetry.trace_map_days, 2);
    assert_int_equal(cfg->query.default_limit, 20);
    assert_int_equal(cfg->query.max_limit, 1000);
    assert_int_equal(cfg->query.max_scan_records, 2000000);
    assert_int_equal(cfg->query.max_range_ms, 168 * 3600 * 1000ull);
    assert_int_equal(cfg->query.max_tag_values, 10000);
    assert_int_equal(cn_config_num_settings(), 73);
    assert_string_equal(cfg->gateway.config, "");
    assert_string_equal(cfg->registry.listen, "127.0.0.1:8848");
    assert_int_equal(cfg->registry.beat_timeout_ms, 15000);
    assert_int_equal(cfg->registry.delete_timeout_ms, 30000);
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), 0);
    cn_config_unref(cfg);
}

static void test_refcount(void **state)
{
    (void)state;
    struct cn_config *cfg = cn_config_new();
    assert_ptr_equal(cn_config_ref(cfg), cfg);
    assert_int_equal(atomic_load(&cfg->refs), 2);
    cn_config_unref(cfg);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    assert_string_equal(cfg->data_dir, "./cairn-data"); /* still alive */
    cn_config_unref(cfg);                               /* frees; ASan reports a leak if not */
    cn_config_unref(NULL);
}

/* ---- YAML shapes ---- */

static void test_nested_and_dotted_keys(void **state)
{
    (void)state;
    struct cn_config *cfg = load_ok("workers: 3\n"
                                    "log:\n"
                                    "  level: debug\n"
                                    "http:\n"
                                    "  max_body_bytes: 1m\n"
                                    "  max_headers: 50\n"
                                    "http.idle_timeout: 5s\n"
                                    "api.listen: \"[::1]:8080\"\n"
                                    "shutdown: {drain_timeout: 2s}\n");
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->log_level, CN_LOG_DEBUG);
    assert_int_equal(cfg->http.max_body_bytes, MIB);
    assert_int_equal(cfg->http.max_headers, 50);
    assert_int_equal(cfg->http.idle_timeout_ms, 5000);
    assert_string_equal(cfg->api.listen, "[::1]:8080");
    assert_int_equal(cfg->shutdown.drain_timeout_ms, 2000);
    /* Untouched settings keep their defaults. */
    assert_int_equal(cfg->http.max_url_bytes, 8 * KIB);
    cn_config_unref(cfg);
}

static void test_empty_documents_are_defaults(void **state)
{
    (void)state;
    static const char *const inputs[] = {"",      "\n\n",       "# only a comment\n",
                                         "---\n", "---\n...\n", "{}\n",
                                         "~\n",   "http:\n",    "api: {}\n"};
    struct cn_config *def = cn_config_new();
    for (size_t i = 0; i < CN_ARRAY_LEN(inputs); i++) {
        struct cn_config *cfg = load_ok(inputs[i]);
        assert_int_equal(cn_config_diff(def, cfg, 0), cn_config_num_settings());
        cn_config_unref(cfg);
    }
    struct cn_config *cfg = cn_config_new();
    assert_int_equal(cn_config_load_buffer(cfg, "none", NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(cn_config_diff(def, cfg, 0), cn_config_num_settings());
    cn_config_unref(cfg);
    cn_config_unref(def);
}

static void test_scalar_styles_anchors_and_aliases(void **state)
{
    (void)state;
    struct cn_config *cfg = load_ok("workers: \"4\"\n"
                                    "data_dir: '/var/lib/cairn # not a comment'\n"
                                    "api:\n"
                                    "  token: !!str abc123\n"
                                    "  test_routes: yes\n"
                                    "http:\n"
                                    "  header_timeout: &t 20s\n"
                                    "  body_timeout: *t\n"
                                    "  max_url_bytes: >-\n"
                                    "    16k\n");
    assert_int_equal(cfg->workers, 4);
    assert_string_equal(cfg->data_dir, "/var/lib/cairn # not a comment");
    assert_string_equal(cfg->api.token, "abc123");
    assert_int_equal(cfg->api.test_routes, 1);
    assert_int_equal(cfg->http.header_timeout_ms, 20000);
    assert_int_equal(cfg->http.body_timeout_ms, 20000);
    assert_int_equal(cfg->http.max_url_bytes, 16 * KIB);
    cn_config_unref(cfg);
}

/* ---- numeric types: exactly min and max accepted, one past rejected ---- */

struct bound {
    const char *key;
    size_t off;
    const char *at_min; /* NULL when the minimum is 0 and nothing lies below */
    uint64_t min;
    const char *below;
    const char *at_max;
    uint64_t max;
    const char *above;
};

#define AT(m) offsetof(struct cn_config, m)

static const struct bound bounds[] = {
    {"workers", AT(workers), "0", 0, NULL, "256", 256, "workers: 257 is above the maximum 256"},
    {"http.max_url_bytes", AT(http.max_url_bytes), "64", 64,
     "http.max_url_bytes: 63 is below the minimum 64", "1m", MIB,
     "http.max_url_bytes: 1048577 is above the maximum 1MiB"},
    {"http.max_header_bytes", AT(http.max_header_bytes), "256", 256,
     "http.max_header_bytes: 255 is below the minimum 256", "1024KiB", MIB,
     "http.max_header_bytes: 1025k is above the maximum 1MiB"},
    {"http.max_headers", AT(http.max_headers), "1", 1, "http.max_headers: 0 is below the minimum 1",
     "10000", 10000, "http.max_headers: 10001 is above the maximum 10000"},
    {"http.max_body_bytes", AT(http.max_body_bytes), "0", 0, NULL, "4g", 4 * GIB,
     "http.max_body_bytes: 4294967297 is above the maximum 4GiB"},
    {"http.header_timeout", AT(http.header_timeout_ms), "10ms", 10,
     "http.header_timeout: 9ms is below the minimum 10ms", "1h", 3600000,
     "http.header_timeout: 3600001 is above the maximum 1h"},
    {"http.body_timeout", AT(http.body_timeout_ms), "10", 10,
     "http.body_timeout: 9 is below the minimum 10ms", "60m", 3600000,
     "http.body_timeout: 3601s is above the maximum 1h"},
    {"http.idle_timeout", AT(http.idle_timeout_ms), "10ms", 10,
     "http.idle_timeout: 0s is below the minimum 10ms", "3600s", 3600000,
     "http.idle_timeout: 2h is above the maximum 1h"},
    {"http.send_timeout", AT(http.send_timeout_ms), "10ms", 10,
     "http.send_timeout: 9ms is below the minimum 10ms", "1h", 3600000,
     "http.send_timeout: 61m is above the maximum 1h"},
    {"http.max_connections", AT(http.max_connections), "1", 1,
     "http.max_connections: 0 is below the minimum 1", "1000000", 1000000,
     "http.max_connections: 1000001 is above the maximum 1000000"},
    {"shutdown.drain_timeout", AT(shutdown.drain_timeout_ms), "0", 0, NULL, "1h", 3600000,
     "shutdown.drain_timeout: 3600001ms is above the maximum 1h"},
    {"telemetry.trace_map_days", AT(telemetry.trace_map_days), "1", 1,
     "telemetry.trace_map_days: 0 is below the minimum 1", "36500", 36500,
     "telemetry.trace_map_days: 36501 is above the maximum 36500"},
};

/* The value text a message quotes: what follows "KEY: " up to " is ". */
static void value_of(const char *msg, const char *key, char *out, size_t out_len)
{
    const char *start = msg + strlen(key) + 2, *end = strstr(start, " is ");
    assert_non_null(end);
    snprintf(out, out_len, "%.*s", (int)(end - start), start);
}

static void test_numeric_bounds(void **state)
{
    (void)state;
    for (size_t i = 0; i < CN_ARRAY_LEN(bounds); i++) {
        const struct bound *b = &bounds[i];
        struct cn_config *cfg = cn_config_new();
        uint64_t *field = (uint64_t *)((char *)cfg + b->off);
        set_ok(cfg, b->key, b->at_min);
        assert_int_equal(*field, b->min);
        set_ok(cfg, b->key, b->at_max);
        assert_int_equal(*field, b->max);
        cn_config_unref(cfg);

        char text[64];
        if (b->below) {
            value_of(b->below, b->key, text, sizeof(text));
            set_err(b->key, text, b->below);
        }
        value_of(b->above, b->key, text, sizeof(text));
        set_err(b->key, text, b->above);
    }
}

static void test_bounds_from_yaml(void **state)
{
    (void)state;
    struct cn_config *cfg = load_ok("http:\n  max_headers: 1\n  max_connections: 1000000\n");
    assert_int_equal(cfg->http.max_headers, 1);
    assert_int_equal(cfg->http.max_connections, 1000000);
    cn_config_unref(cfg);
    load_err("http:\n  max_headers: 0\n",
             "cairn.yaml:2:16: http.max_headers: 0 is below the minimum 1");
    load_err("workers: 257\n", "cairn.yaml:1:10: workers: 257 is above the maximum 256");
}

static void test_uint_parse(void **state)
{
    (void)state;
    struct cn_config *cfg = cn_config_new();
    set_ok(cfg, "workers", "007");
    assert_int_equal(cfg->workers, 7);
    cn_config_unref(cfg);
    set_err("workers", "x", "workers: 'x' is not a number");
    set_err("workers", "", "workers: '' is not a number");
    set_err("workers", "-1", "workers: '-1' is not a number");
    set_err("workers", "+1", "workers: '+1' is not a number");
    set_err("workers", "4 ", "workers: '4 ' is not a number");
    set_err("workers", "1k", "workers: '1k' is not a number");
    set_err("workers", "99999999999999999999999",
            "workers: 99999999999999999999999 is above the maximum 256");
}

static void test_size_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t v;
    } ok[] = {{"0", 0},          {"1000", 1000},      {"16k", 16 * KIB},
              {"16K", 16 * KIB}, {"16KiB", 16 * KIB}, {"16kib", 16 * KIB},
              {"8m", 8 * MIB},   {"8MiB", 8 * MIB},   {"8M", 8 * MIB},
              {"1g", GIB},       {"1GiB", GIB},       {"3G", 3 * GIB}};
    struct cn_config *cfg = cn_config_new();
    for (size_t i = 0; i < CN_ARRAY_LEN(ok); i++) {
        set_ok(cfg, "http.max_body_bytes", ok[i].text);
        assert_int_equal(cfg->http.max_body_bytes, ok[i].v);
    }
    cn_config_unref(cfg);
    static const char *const bad[] = {"12q", "k", "", "-1", "1.5k", "16 k", "16kb", "1t", "0x10"};
    for (size_t i = 0; i < CN_ARRAY_LEN(bad); i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "http.max_body_bytes: '%s' is not a size (use a number with optional k, m, g)",
                 bad[i]);
        set_err("http.max_body_bytes", bad[i], want);
    }
    /* A product past 64 bits saturates rather than wrapping to something small. */
    set_err("http.max_body_bytes", "17179869184g",
            "http.max_body_bytes: 17179869184g is above the maximum 4GiB");
}

static void test_duration_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } ok[] = {{"250ms", 250}, {"10s", 10000}, {"2m", 120000}, {"1h", 3600000}, {"1500", 1500}};
    struct cn_config *cfg = cn_config_new();
    for (size_t i = 0; i < CN_ARRAY_LEN(ok); i++) {
        set_ok(cfg, "http.header_timeout", ok[i].text);
        assert_int_equal(cfg->http.header_timeout_ms, ok[i].ms);
    }
    cn_config_unref(cfg);
    static const char *const bad[] = {"10 s", "1.5s", "s", "1d", "1M", "10S", "", "-5s", "1m30s"};
    for (size_t i = 0; i < CN_ARRAY_LEN(bad); i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "http.header_timeout: '%s' is not a duration (use a number with ms, s, m or h)",
                 bad[i]);
        set_err("http.header_timeout", bad[i], want);
    }
}

static void test_bool_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int v;
    } ok[] = {{"true", 1},  {"yes", 1}, {"on", 1},  {"TRUE", 1},
              {"false", 0}, {"no", 0},  {"off", 0}, {"Off", 0}};
    struct cn_config *cfg = cn_config_new();
    for (size_t i = 0; i < CN_ARRAY_LEN(ok); i++) {
        cfg->api.test_routes = !ok[i].v;
        set_ok(cfg, "api.test_routes", ok[i].text);
        assert_int_equal(cfg->api.test_routes, ok[i].v);
    }
    cn_config_unref(cfg);
    set_err("api.test_routes", "maybe",
            "api.test_routes: 'maybe' is not a boolean (use true or false)");
    set_err("api.test_routes", "1", "api.test_routes: '1' is not a boolean (use true or false)");
    set_err("api.test_routes", "", "api.test_routes: '' is not a boolean (use true or false)");
}

static void test_log_level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum cn_log_level v;
    } ok[] = {{"debug", CN_LOG_DEBUG},
              {"info", CN_LOG_INFO},
              {"warn", CN_LOG_WARN},
              {"error", CN_LOG_ERROR},
              {"WARN", CN_LOG_WARN}};
    struct cn_config *cfg = cn_config_new();
    for (size_t i = 0; i < CN_ARRAY_LEN(ok); i++) {
        set_ok(cfg, "log.level", ok[i].text);
        assert_int_equal(cfg->log_level, ok[i].v);
    }
    cn_config_unref(cfg);
    set_err("log.level", "verbose",
            "log.level: 'verbose' is not a log level (use debug, info, warn or error)");
    set_err("log.level", "off",
            "log.level: 'off' is not a log level (use debug, info, warn or error)");
}

static void test_listen_parse(void **state)
{
    (void)state;
    static const char *const ok[] = {"127.0.0.1:0",    "localhost:65535", "[::1]:80",
                                     "0.0.0.0:9000",   "[::]:443",        "10.1.2.3:08080",
                                     "[fe80::1]:12345"};
    struct cn_config *cfg = cn_config_new();
    for (size_t i = 0; i < CN_ARRAY_LEN(ok); i++) {
        set_ok(cfg, "api.listen", ok[i]);
        assert_string_equal(cfg->api.listen, ok[i]);
    }
    cn_config_unref(cfg);
    static const char *const bad[] = {"127.0.0.1",
                                      "127.0.0.1:",
                                      ":80",
                                      "example.com:80",
                                      "::1:80",
                                      "[::1]",
                                      "[::1]80",
                                      "[::1]:",
                                      "1.2.3:80",
                                      "1.2.3.4.5:80",
                                      "256.0.0.1:1",
                                      "[1.2.3.4]:1",
                                      "127.0.0.1:-1",
                                      "127.0.0.1:x",
                                      "127.0.0.1:1 ",
                                      "01.2.3.4:1",
                                      "",
                                      "[]:1"};
    for (size_t i = 0; i < CN_ARRAY_LEN(bad); i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "api.listen: '%s' is not a listen address (use HOST:PORT with an IPv4 address, "
                 "localhost or [IPv6])",
                 bad[i]);
        set_err("api.listen", bad[i], want);
    }
    set_err("api.listen", "127.0.0.1:65536",
            "api.listen: '127.0.0.1:65536' has a port above the maximum 65535");
    set_err("api.listen", "[::1]:99999",
            "api.listen: '[::1]:99999' has a port above the maximum 65535");

    char host[46];
    int family;
    uint16_t port;
    assert_int_equal(cn_config_parse_listen("localhost:80", host, sizeof(host), &family, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(family, AF_INET);
    assert_int_equal(port, 80);
    assert_int_equal(cn_config_parse_listen("[::1]:0", host, sizeof(host), &family, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(family, AF_INET6);
    assert_int_equal(port, 0);
    assert_int_equal(cn_config_parse_listen("nope", host, sizeof(host), &family, &port), CN_EINVAL);
    assert_int_equal(cn_config_parse_listen("10.0.0.1:1", host, 4, &family, &port), CN_ERANGE);
}

static void test_string_parse(void **state)
{
    (void)state;
    struct cn_config *cfg = cn_config_new();
    char long_dir[4098];
    memset(long_dir, 'a', 4096);
    long_dir[4096] = '\0';
    set_ok(cfg, "data_dir", long_dir);
    assert_int_equal(strlen(cfg->data_dir), 4096);
    set_ok(cfg, "data_dir", "/srv/cairn \xc3\xa9t\xc3\xa9");
    assert_string_equal(cfg->data_dir, "/srv/cairn \xc3\xa9t\xc3\xa9");
    set_ok(cfg, "api.token", "abc-._~+/XYZ09==");
    assert_string_equal(cfg->api.token, "abc-._~+/XYZ09==");
    set_ok(cfg, "api.token", "");
    assert_string_equal(cfg->api.token, "");
    cn_config_unref(cfg);

    long_dir[4096] = 'a';
    long_dir[4097] = '\0';
    set_err("data_dir", long_dir, "data_dir: is longer than 4096 bytes");
    set_err("data_dir", "", "data_dir: must not be empty");
    set_err("data_dir", "a\tb", "data_dir: 'a\\x09b' contains a control character");
    set_err("data_dir", "bad\xff", "data_dir: 'bad\\xff' is not valid UTF-8");
    set_err("data_dir", "\xed\xa0\x80", "data_dir: '\\xed\\xa0\\x80' is not valid UTF-8");

    /* A token is never echoed: messages end up in logs. */
    static const char *const bad_tokens[] = {"s3cret value", "=abc", "abc=d", "tok\xc3\xa9n",
                                             "a\"b"};
    for (size_t i = 0; i < CN_ARRAY_LEN(bad_tokens); i++)
        set_err("api.token", bad_tokens[i],
                "api.token: has a character a bearer token cannot hold (use letters, digits, "
                "- . _ ~ + / and a trailing =)");
}

/* ---- error lines ---- */

static void test_error_positions(void **state)
{
    (void)state;
    load_err("workers: 4\n"
             "http:\n"
             "    max_bdy_bytes: 1m\n",
             "cairn.yaml:3:5: unknown setting 'http.max_bdy_bytes'");
    load_err("workers: 1\n"
             "http:\n"
             "    max_headers: 10\n"
             "    max_body_bytes: 12q\n",
             "cairn.yaml:4:21: http.max_body_bytes: '12q' is not a size (use a number with "
             "optional k, m, g)");
    load_err("http.max_body_bytes: 12q\n", "cairn.yaml:1:22: http.max_body_bytes: '12q' is not a "
                                           "size (use a number with optional k, m, g)");
    load_err("wrkers: 1\n", "cairn.yaml:1:1: unknown setting 'wrkers'");
    load_err("http.nope: 1\n", "cairn.yaml:1:1: unknown setting 'http.nope'");
    /* A group name alone is not a setting, and a setting is not a group. */
    load_err("workers:\n  count: 2\n",
             "cairn.yaml:2:3: workers: expected a value, found a mapping");
    load_err("http: 5\n", "cairn.yaml:1:7: http: expected a mapping of settings, found a value");
    load_err("http:\n  - a\n",
             "cairn.yaml:2:3: http: expected a mapping of settings, found a list");
    load_err("http:\n  max_headers: {a: 1}\n",
             "cairn.yaml:2:16: http.max_headers: expected a value, found a mapping");
    load_err("http:\n  max_headers: [1, 2]\n",
             "cairn.yaml:2:16: http.max_headers: expected a value, found a list");
    load_err("? [a]\n: 1\n", "cairn.yaml:1:3: expected a setting name, found a list");
    load_err("http:\n  ? {a: 1}\n  : 2\n",
             "cairn.yaml:2:5: http: expected a setting name, found a mapping");
    load_err("workers:\n",
             "cairn.yaml:1:9: workers: no value (remove the line to keep the default)");
    load_err("api:\n  token: ~\n",
             "cairn.yaml:2:10: api.token: no value (remove the line to keep the default)");
    load_err("- workers\n",
             "cairn.yaml:1:1: expected a mapping of settings at the top level, found a list");
    load_err("hello\n",
             "cairn.yaml:1:1: expected a mapping of settings at the top level, found a value");
    load_err("workers: 1\n---\nworkers: 2\n",
             "cairn.yaml:2:1: a second YAML document: a configuration is a single mapping");
    /* Unprintable input is escaped, long input cut, so an error stays one readable line. */
    load_err("\"we\\nird\": 1\n", "cairn.yaml:1:1: unknown setting 'we\\x0aird'");
    load_err(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: 1\n",
        "cairn.yaml:1:1: unknown setting 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    load_err("workers: 4\n  bad: x\n",
             "cairn.yaml:2:6: mapping values are not allowed in this context");
    load_err("workers: [4\n",
             "cairn.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence at "
             "1:10)");
    load_err("workers: \"4\n",
             "cairn.yaml:2:1: found unexpected end of stream (while scanning a quoted scalar at "
             "1:10)");
    load_err("workers: *nope\n", "cairn.yaml:1:10: found undefined alias");
    load_err("workers: \xff\n", "cairn.yaml:1:10: invalid leading UTF-8 octet (0xff)");
    load_err("workers: 1\x01\n", "cairn.yaml:1:11: control characters are not allowed (0x1)");
    /* A syntax error after a semantic one still wins: the file is parsed first. */
    load_err("wrkers: 1\nx: [\n",
             "cairn.yaml:3:1: did not find expected node content (while parsing a flow node at "
             "3:1)");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    load_err("workers: 4\nworkers: 5\n", "cairn.yaml:2:1: duplicate key 'workers' (first at 1:1)");
    load_err("http:\n  max_headers: 4\n  max_headers: 5\n",
             "cairn.yaml:3:3: duplicate key 'http.max_headers' (first at 2:3)");
    /* The same setting written flat and nested. */
    load_err("http.max_headers: 4\nhttp:\n  max_headers: 5\n",
             "cairn.yaml:3:3: duplicate key 'http.max_headers' (first at 1:1)");
    /* The same group twice, even with different settings inside. */
    load_err("http:\n  max_headers: 4\nhttp:\n  max_body_bytes: 1m\n",
             "cairn.yaml:3:1: duplicate key 'http' (first at 1:1)");
}

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-test-config-XXXXXX", path[128], want[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cairn.yaml", dir);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("workers: 2\nhttp:\n  max_headers: 0\n", f);
    fclose(f);
    struct cn_config *cfg = cn_config_new();
    snprintf(want, sizeof(want), "%s:3:16: http.max_headers: 0 is below the minimum 1", path);
    assert_int_equal(cn_config_load_file(cfg, path, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, want);
    struct cn_config_error e;
    assert_int_equal(cn_config_load_file_ex(cfg, path, &e), CN_EINVAL);
    assert_int_equal(e.line, 3);
    assert_int_equal(e.column, 16);
    assert_string_equal(e.message, "http.max_headers: 0 is below the minimum 1");
    assert_null(cfg->path);
    cn_config_unref(cfg);

    f = fopen(path, "w");
    fputs("workers: 2\n", f);
    fclose(f);
    cfg = cn_config_new();
    assert_int_equal(cn_config_load_file(cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg->workers, 2);
    assert_string_equal(cfg->path, path);
    cn_config_unref(cfg);

    /* Exactly at the size limit loads; one byte more does not. */
    f = fopen(path, "w");
    for (size_t i = 0; i < MIB / 64; i++)
        fprintf(f, "#%62s\n", "");
    fclose(f);
    cfg = cn_config_new();
    assert_int_equal(cn_config_load_file(cfg, path, err, sizeof(err)), 0);
    f = fopen(path, "a");
    fputc('\n', f);
    fclose(f);
    snprintf(want, sizeof(want), "%s: larger than 1MiB, the limit for a configuration", path);
    assert_int_equal(cn_config_load_file(cfg, path, err, sizeof(err)), CN_ELIMIT);
    assert_string_equal(err, want);
    cn_config_unref(cfg);

    cfg = cn_config_new();
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
    assert_true(cn_config_load_file(cfg, dir, err, sizeof(err)) < 0);
    assert_string_equal(err, want);
    unlink(path);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_int_equal(cn_config_load_file(cfg, path, err, sizeof(err)), CN_ENOENT);
    assert_string_equal(err, want);
    assert_int_equal(cn_config_load_file_ex(cfg, path, &e), CN_ENOENT);
    assert_int_equal(e.line, 0);
    assert_int_equal(e.column, 0);
    assert_string_equal(e.message, "cannot open: No such file or directory");
    cn_config_unref(cfg);
    rmdir(dir);
}

/* ---- environment, flags, precedence ---- */

static void test_env(void **state)
{
    (void)state;
    char *env[] = {"PATH=/usr/bin",
                   "CAIRN_WORKERS=4",
                   "CAIRN_HTTP_MAX_BODY_BYTES=1m",
                   "CAIRN_API_LISTEN=[::1]:0",
                   "CAIRN_LOG_LEVEL=debug",
                   "CAIRN_SHUTDOWN_DRAIN_TIMEOUT=0",
                   "CAIRN_BIN=/usr/bin/cairn",
                   "CAIRN_CONFIG=/etc/cairn.yaml",
                   "CAIRN_TEST_JOBS=8",
                   "CAIRN_BENCH_SECONDS=5",
                   "cairn_workers=9",
                   "NOEQUALS",
                   NULL};
    struct cn_config *cfg = cn_config_new();
    assert_int_equal(cn_config_apply_env(cfg, env, err, sizeof(err)), 0);
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->http.max_body_bytes, MIB);
    assert_string_equal(cfg->api.listen, "[::1]:0");
    assert_int_equal(cfg->log_level, CN_LOG_DEBUG);
    assert_int_equal(cfg->shutdown.drain_timeout_ms, 0);
    assert_int_equal(cn_config_apply_env(cfg, NULL, err, sizeof(err)), 0);
    cn_config_unref(cfg);

    static const struct {
        const char *var;
        const char *want;
    } bad[] = {
        {"CAIRN_FOO=1", "CAIRN_FOO: unknown setting"},
        {"CAIRN_=1", "CAIRN_: unknown setting"},
        {"CAIRN_TEST=1", "CAIRN_TEST: unknown setting"},
        {"CAIRN_workers=1", "CAIRN_workers: unknown setting"},
        {"CAIRN_HTTP.MAX_HEADERS=1", "CAIRN_HTTP.MAX_HEADERS: unknown setting"},
        {"CAIRN_WORKERS=x", "CAIRN_WORKERS: 'x' is not a number"},
        {"CAIRN_WORKERS=", "CAIRN_WORKERS: '' is not a number"},
        {"CAIRN_HTTP_MAX_HEADERS=0", "CAIRN_HTTP_MAX_HEADERS: 0 is below the minimum 1"},
        {"CAIRN_API_TOKEN=not secret", "CAIRN_API_TOKEN: has a character a bearer token cannot "
                                       "hold (use letters, digits, - . _ ~ + / and a trailing =)"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(bad); i++) {
        char *one[] = {"CAIRN_LOG_LEVEL=warn", (char *)bad[i].var, NULL};
        cfg = cn_config_new();
        assert_int_equal(cn_config_apply_env(cfg, one, err, sizeof(err)), CN_EINVAL);
        assert_string_equal(err, bad[i].want);
        cn_config_unref(cfg);
    }
}

/* Every setting has a distinct variable, and applying each one's default through it works. */
static void test_env_names(void **state)
{
    (void)state;
    size_t n = cn_config_num_settings();
    char names[96][64];
    static const char *const defaults[] = {"0",
                                           "info",
                                           "./cairn-data",
                                           "127.0.0.1:9000",
                                           "",
                                           "false",
                                           "8k",
                                           "32k",
                                           "100",
                                           "8m",
                                           "10s",
                                           "30s",
                                           "60s",
                                           "30s",
                                           "10000",
                                           "50",
                                           "10s",
                                           "127.0.0.1:4318",
                                           "",
                                           "16m",
                                           "512m",
                                           "64m",
                                           "64m",
                                           "true",
                                           "true",
                                           "128",
                                           "4k",
                                           "128",
                                           "128",
                                           "1s",
                                           "16m",
                                           "10s",
                                           "168h",
                                           "20g",
                                           "64m",
                                           "64m",
                                           "2",
                                           "100000",
                                           "{}",
                                           "20",
                                           "1000",
                                           "2000000",
                                           "168h",
                                           "10000",
                                           "127.0.0.1:8848",
                                           "false",
                                           "nacos",
                                           "",
                                           "5h",
                                           "100000",
                                           "10000",
                                           "100000",
                                           "1m",
                                           "100",
                                           "5s",
                                           "15s",
                                           "30s",
                                           "10s",
                                           "10000",
                                           "90s",
                                           "100000",
                                           "500ms",
                                           "5s",
                                           "2s",
                                           "64",
                                           "",
                                           "/cairn",
                                           "2s",
                                           "5s",
                                           "10s",
                                           "60s",
                                           "256m",
                                           ""};
    assert_int_equal(n, CN_ARRAY_LEN(defaults));
    struct cn_config *def = cn_config_new(), *cfg = cn_config_new();
    cfg->workers = 99;
    cfg->http.max_body_bytes = 1;
    set_ok(cfg, "data_dir", "/elsewhere");
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cn_config_setting_env(i, names[i], sizeof(names[i])), 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(names[i], names[j]);
        char var[128];
        assert_true(snprintf(var, sizeof(var), "%s=%s", names[i], defaults[i]) < (int)sizeof(var));
        char *one[] = {var, NULL};
        assert_int_equal(cn_config_apply_env(cfg, one, err, sizeof(err)), 0);
    }
    assert_int_equal(cn_config_diff(def, cfg, 0), n);
    assert_string_equal(names[index_of("http.max_body_bytes")], "CAIRN_HTTP_MAX_BODY_BYTES");
    assert_string_equal(names[index_of("api.listen")], "CAIRN_API_LISTEN");
    char small[8];
    assert_int_equal(cn_config_setting_env(0, small, sizeof(small)), CN_ERANGE);
    assert_int_equal(cn_config_setting_env(n, small, sizeof(small)), CN_EINVAL);
    assert_null(cn_config_setting_key(n));
    cn_config_unref(def);
    cn_config_unref(cfg);
}

static void test_set(void **state)
{
    (void)state;
    struct cn_config *cfg = cn_config_new();
    set_ok(cfg, "http.max_body_bytes", "1m");
    assert_int_equal(cfg->http.max_body_bytes, MIB);
    cn_config_unref(cfg);
    set_err("nope", "1", "unknown setting 'nope'");
    set_err("http", "1", "unknown setting 'http'");
    set_err("HTTP.MAX_HEADERS", "1", "unknown setting 'HTTP.MAX_HEADERS'");
    set_err("workers", "x", "workers: 'x' is not a number");
}

static void test_precedence(void **state)
{
    (void)state;
    /* defaults < file < CAIRN_* < flags, each step seen on its own. */
    struct cn_config *cfg = load_ok("workers: 2\nlog.level: warn\nhttp:\n  max_headers: 20\n");
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->http.max_body_bytes, 8 * MIB);
    char *env[] = {"CAIRN_WORKERS=3", "CAIRN_HTTP_MAX_BODY_BYTES=2m", NULL};
    assert_int_equal(cn_config_apply_env(cfg, env, err, sizeof(err)), 0);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->http.max_body_bytes, 2 * MIB);
    set_ok(cfg, "workers", "4");
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->http.max_body_bytes, 2 * MIB);
    assert_int_equal(cfg->log_level, CN_LOG_WARN);      /* file only */
    assert_int_equal(cfg->http.max_headers, 20);        /* file only */
    assert_int_equal(cfg->http.max_url_bytes, 8 * KIB); /* default */
    cn_config_unref(cfg);
}

/* ---- dump ---- */

static struct cn_config *reload_dump(const struct cn_config *cfg, unsigned flags, int want_rc)
{
    struct capture c;
    assert_int_equal(cn_config_dump_ex(cfg, capture_open(&c), flags), 0);
    const char *text = capture_close(&c);
    struct cn_config *again = cn_config_new();
    err[0] = '\0';
    int rc = cn_config_load_buffer(again, "dump.yaml", text, strlen(text), err, sizeof(err));
    if (rc != want_rc)
        fail_msg("reload of the dump gave %d (%s); dump:\n%s", rc, err, text);
    free(c.text);
    return again;
}

static void test_dump_text(void **state)
{
    (void)state;
    struct cn_config *cfg = cn_config_new();
    set_ok(cfg, "http.header_timeout", "1500");
    set_ok(cfg, "http.body_timeout", "90s");
    set_ok(cfg, "http.max_url_bytes", "1000");
    set_ok(cfg, "shutdown.drain_timeout", "0");
    struct capture c;
    assert_int_equal(cn_config_dump(cfg, capture_open(&c)), 0);
    const char *text = capture_close(&c);
    static const char *const lines[] = {
        "\nworkers: 0 ",
        "\nlog:\n  level: info ",
        "\ndata_dir: \"./cairn-data\" ",
        "\napi:\n  listen: \"127.0.0.1:9000\" ",
        "\n  token: \"\" ",
        "\n  test_routes: false ",
        "\nhttp:\n  max_url_bytes: 1000 ",
        "\n  max_header_bytes: 32KiB ",
        "\n  max_body_bytes: 8MiB ",
        "\n  header_timeout: 1500ms ",
        "\n  body_timeout: 90s ",
        "\n  idle_timeout: 1m ",
        "\nshutdown:\n  drain_timeout: 0s ",
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(lines); i++)
        if (!strstr(text, lines[i]))
            fail_msg("dump lacks \"%s\":\n%s", lines[i], text);
    /* Each group opens once. */
    assert_null(strstr(strstr(text, "\nhttp:") + 1, "\nhttp:"));
    free(c.text);
    cn_config_unref(cfg);
}

static void test_dump_round_trip(void **state)
{
    (void)state;
    struct cn_config *def = cn_config_new();
    struct cn_config *again = reload_dump(def, 0, 0);
    assert_int_equal(cn_config_diff(def, again, 0), cn_config_num_settings());
    cn_config_unref(again);

    /* Every setting away from its default, strings with characters YAML cares about. */
    struct cn_config *cfg = cn_config_new();
    set_ok(cfg, "workers", "7");
    set_ok(cfg, "log.level", "error");
    set_ok(cfg, "data_dir", "/srv/\"ca\\irn\": #x \xc3\xa9 'q' [a] {b} &c *d !e %f @g `h");
    set_ok(cfg, "api.listen", "[::1]:0");
    set_ok(cfg, "api.token", "tok+/en==");
    set_ok(cfg, "api.test_routes", "on");
    set_ok(cfg, "http.max_url_bytes", "1025");
    set_ok(cfg, "http.max_header_bytes", "1023k");
    set_ok(cfg, "http.max_headers", "1");
    set_ok(cfg, "http.max_body_bytes", "4g");
    set_ok(cfg, "http.header_timeout", "10ms");
    set_ok(cfg, "http.body_timeout", "61s");
    set_ok(cfg, "http.idle_timeout", "1h");
    set_ok(cfg, "http.send_timeout", "2m");
    set_ok(cfg, "http.max_connections", "1000000");
    set_ok(cfg, "http.busy_poll_us", "0");
    set_ok(cfg, "shutdown.drain_timeout", "0");
    set_ok(cfg, "otlp.listen", "0.0.0.0:4319");
    set_ok(cfg, "otlp.token", "otlp-token");
    set_ok(cfg, "otlp.max_body_bytes", "1g");
    set_ok(cfg, "telemetry.memory", "16m");
    set_ok(cfg, "telemetry.queue_bytes", "1m");
    set_ok(cfg, "telemetry.wal_segment_bytes", "1g");
    set_ok(cfg, "telemetry.fsync", "false");
    set_ok(cfg, "telemetry.wal_direct", "false");
    set_ok(cfg, "telemetry.max_attributes", "1");
    set_ok(cfg, "telemetry.max_attribute_value_bytes", "16");
    set_ok(cfg, "telemetry.max_events", "100000");
    set_ok(cfg, "telemetry.max_links", "1");
    set_ok(cfg, "telemetry.retry_after", "1h");
    set_ok(cfg, "telemetry.seal_bytes", "1m");
    set_ok(cfg, "telemetry.seal_interval", "100ms");
    set_ok(cfg, "telemetry.retention", "0");
    set_ok(cfg, "telemetry.disk_budget", "0");
    set_ok(cfg, "telemetry.bloom_cache", "1m");
    set_ok(cfg, "telemetry.footer_cache", "1m");
    set_ok(cfg, "telemetry.trace_map_days", "1");
    set_ok(cfg, "telemetry.max_spans_per_trace", "0");
    set_ok(cfg, "telemetry.code_links",
           "{\"*\": \"https://g/{repo}/'{filepath}'#L{lineno}\", svc: 'x{function}'}");
    set_ok(cfg, "query.default_limit", "1");
    set_ok(cfg, "query.max_limit", "100000");
    set_ok(cfg, "query.max_scan_records", "1000");
    set_ok(cfg, "query.max_range", "1s");
    set_ok(cfg, "query.max_tag_values", "10");
    set_ok(cfg, "registry.listen", "0.0.0.0:18848");
    set_ok(cfg, "registry.auth", "on");
    set_ok(cfg, "registry.username", "admin");
    set_ok(cfg, "registry.password", "s3cret");
    set_ok(cfg, "registry.token_ttl", "1s");
    set_ok(cfg, "registry.max_services", "1");
    set_ok(cfg, "registry.max_instances_per_service", "1000000");
    set_ok(cfg, "registry.max_configs", "1");
    set_ok(cfg, "registry.max_config_bytes", "64m");
    set_ok(cfg, "registry.max_history", "1");
    set_ok(cfg, "registry.beat_interval", "100ms");
    set_ok(cfg, "registry.beat_timeout", "1h");
    set_ok(cfg, "registry.delete_timeout", "100");
    set_ok(cfg, "registry.cache_millis", "1s");
    set_ok(cfg, "registry.max_listen_keys", "1");
    set_ok(cfg, "registry.max_hold", "10s");
    set_ok(cfg, "registry.max_parked", "0");
    set_ok(cfg, "registry.tick", "10ms");
    set_ok(cfg, "registry.check_interval", "1h");
    set_ok(cfg, "registry.check_timeout", "60s");
    set_ok(cfg, "registry.check_concurrency", "1");
    set_ok(cfg, "registry.etcd.endpoints", "http://127.0.0.1:2379,http://127.0.0.1:2381");
    set_ok(cfg, "registry.etcd.prefix", "/other");
    set_ok(cfg, "registry.etcd.dial_timeout", "10ms");
    set_ok(cfg, "registry.etcd.request_timeout", "5m");
    set_ok(cfg, "registry.etcd.lease_ttl", "2s");
    set_ok(cfg, "registry.etcd.reconcile_interval", "24h");
    set_ok(cfg, "registry.etcd.max_response", "64k");
    set_ok(cfg, "gateway.config", "/etc/cairn/gateway.yaml");
    assert_int_equal(cn_config_diff(def, cfg, 0), 0);
    for (size_t i = 0; i < cn_config_num_settings(); i++)
        assert_int_equal(cn_config_diff(def, cfg, i), i); /* every one differs */
    again = reload_dump(cfg, 0, 0);
    assert_int_equal(cn_config_diff(cfg, again, 0), cn_config_num_settings());
    cn_config_unref(again);

    /* Redacted: the token is not written, and the dump does not load as if it were. */
    struct capture c;
    assert_int_equal(cn_config_dump_ex(cfg, capture_open(&c), CN_CONFIG_DUMP_REDACT), 0);
    const char *text = capture_close(&c);
    assert_null(strstr(text, "tok+/en"));
    assert_non_null(strstr(text, "\n  token: \"<redacted>\" "));
    free(c.text);
    again = reload_dump(cfg, CN_CONFIG_DUMP_REDACT, CN_EINVAL);
    assert_non_null(strstr(err, "api.token: has a character a bearer token cannot hold"));
    cn_config_unref(again);
    /* An empty token is shown as empty. */
    again = reload_dump(def, CN_CONFIG_DUMP_REDACT, 0);
    assert_int_equal(cn_config_diff(def, again, 0), cn_config_num_settings());
    cn_config_unref(again);
    cn_config_unref(cfg);
    cn_config_unref(def);
}

/* ---- validation, diff ---- */

static void validate_with(const char *listen, const char *token, const char *want)
{
    struct cn_config *cfg = cn_config_new();
    set_ok(cfg, "api.listen", listen);
    set_ok(cfg, "api.token", token);
    err[0] = '\0';
    int rc = cn_config_validate(cfg, err, sizeof(err));
    if (want) {
        assert_int_equal(rc, CN_EINVAL);
        assert_string_equal(err, want);
    } else if (rc != 0) {
        fail_msg("%s with token '%s': %s", listen, token, err);
    }
    assert_int_equal(cn_config_listen_is_loopback(listen), !want || *token);
    cn_config_unref(cfg);
}

static void test_validate_token_rule(void **state)
{
    (void)state;
    static const char *const loopback[] = {"127.0.0.1:9000", "127.1.2.3:1", "localhost:80",
                                           "[::1]:0", "[::ffff:127.0.0.1]:5"};
    for (size_t i = 0; i < CN_ARRAY_LEN(loopback); i++)
        validate_with(loopback[i], "", NULL);
    static const char *const exposed[] = {"0.0.0.0:9000", "10.0.0.1:9000", "128.0.0.1:1",
                                          "[::]:9000",    "[::2]:1",       "[::ffff:10.0.0.1]:1"};
    for (size_t i = 0; i < CN_ARRAY_LEN(exposed); i++) {
        validate_with(exposed[i], "",
                      "api.listen is not a loopback address: set api.token to require a bearer "
                      "token");
        struct cn_config *cfg = cn_config_new();
        set_ok(cfg, "api.listen", exposed[i]);
        set_ok(cfg, "api.token", "0123456789abcdef");
        assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), 0);
        assert_int_equal(cn_config_listen_is_loopback(exposed[i]), 0);
        cn_config_unref(cfg);
    }
}

static void test_validate_other_rules(void **state)
{
    (void)state;
    struct cn_config *cfg = cn_config_new();
    set_ok(cfg, "http.max_url_bytes", "64k");
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "http.max_url_bytes (64KiB) is larger than http.max_header_bytes "
                             "(32KiB), which includes the request line");
    set_ok(cfg, "http.max_header_bytes", "64k");
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), 0);

    /* A configuration edited by code is held to the same bounds as parsed input. */
    cfg->workers = 1000;
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "workers: 1000 is above the maximum 256");
    cfg->workers = 0;
    cfg->http.idle_timeout_ms = 5;
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "http.idle_timeout: 5ms is below the minimum 10ms");
    cfg->http.idle_timeout_ms = 60000;
    char *saved = cfg->data_dir;
    cfg->data_dir = NULL;
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "data_dir: is not set");
    cfg->data_dir = saved;
    cfg->log_level = CN_LOG_OFF;
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "log.level: 4 is not a log level");
    cfg->log_level = CN_LOG_INFO;
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), 0);
    /* The Nacos port off loopback needs a login; a login needs a password. */
    set_ok(cfg, "registry.listen", "0.0.0.0:8848");
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "registry.listen is not a loopback address: set registry.auth and "
                             "registry.password to require a login");
    set_ok(cfg, "registry.auth", "true");
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "registry.auth is on: set registry.password");
    set_ok(cfg, "registry.password", "pw");
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), 0);
    cn_config_unref(cfg);
}

static void test_diff_and_restart(void **state)
{
    (void)state;
    size_t n = cn_config_num_settings();
    struct cn_config *a = cn_config_new(), *b = cn_config_new();
    assert_int_equal(cn_config_diff(a, b, 0), n);
    set_ok(b, "http.max_headers", "5");
    set_ok(b, "api.listen", "127.0.0.1:1");
    size_t first = cn_config_diff(a, b, 0), second = cn_config_diff(a, b, first + 1);
    assert_string_equal(cn_config_setting_key(first), "api.listen");
    assert_string_equal(cn_config_setting_key(second), "http.max_headers");
    assert_int_equal(cn_config_diff(a, b, second + 1), n);
    assert_int_equal(cn_config_setting_needs_restart(first), 1);
    assert_int_equal(cn_config_setting_needs_restart(second), 0);
    /* SIGHUP applies limits, log level and drain time; the rest waits for a restart. */
    static const char *const restart[] = {"workers",
                                          "data_dir",
                                          "api.listen",
                                          "api.token",
                                          "api.test_routes",
                                          "otlp.listen",
                                          "otlp.token",
                                          "telemetry.memory",
                                          "telemetry.queue_bytes",
                                          "telemetry.wal_segment_bytes",
                                          "telemetry.fsync",
                                          "telemetry.wal_direct",
                                          "telemetry.max_attributes",
                                          "telemetry.max_attribute_value_bytes",
                                          "telemetry.max_events",
                                          "telemetry.max_links",
                                          "telemetry.retry_after",
                                          "telemetry.seal_bytes",
                                          "telemetry.seal_interval",
                                          "telemetry.retention",
                                          "telemetry.disk_budget",
                                          "telemetry.bloom_cache",
                                          "telemetry.footer_cache",
                                          "telemetry.trace_map_days",
                                          "telemetry.max_spans_per_trace",
                                          "registry.listen",
                                          "registry.auth",
                                          "registry.username",
                                          "registry.password",
                                          "registry.token_ttl",
                                          "registry.max_services",
                                          "registry.max_instances_per_service",
                                          "registry.max_configs",
                                          "registry.max_config_bytes",
                                          "registry.max_history",
                                          "registry.beat_interval",
                                          "registry.beat_timeout",
                                          "registry.delete_timeout",
                                          "registry.cache_millis",
                                          "registry.max_listen_keys",
                                          "registry.max_hold",
                                          "registry.max_parked",
                                          "registry.tick",
                                          "registry.check_interval",
                                          "registry.check_timeout",
                                          "registry.check_concurrency",
                                          "registry.etcd.endpoints",
                                          "registry.etcd.prefix",
                                          "registry.etcd.dial_timeout",
                                          "registry.etcd.request_timeout",
                                          "registry.etcd.lease_ttl",
                                          "registry.etcd.reconcile_interval",
                                          "registry.etcd.max_response",
                                          "gateway.config"};
    size_t num_restart = 0;
    for (size_t i = 0; i < n; i++) {
        int want = 0;
        for (size_t j = 0; j < CN_ARRAY_LEN(restart); j++)
            want |= strcmp(cn_config_setting_key(i), restart[j]) == 0;
        assert_int_equal(cn_config_setting_needs_restart(i), want);
        num_restart += (size_t)want;
    }
    assert_int_equal(num_restart, CN_ARRAY_LEN(restart));
    assert_int_equal(cn_config_setting_needs_restart(n), 0);
    cn_config_unref(a);
    cn_config_unref(b);
}

/* ---- docs ---- */

/* docs/configuration.md, found from this file's path: tests/unit/cli/ is three below the
 * root. Returns the heap text. */
static char *read_docs(void)
{
    char path[PATH_MAX];
    const char *slash = strrchr(__FILE__, '/');
    int dir_len = slash ? (int)(slash - __FILE__) : 0;
    snprintf(path, sizeof(path), "%.*s%s../../../docs/configuration.md", dir_len, __FILE__,
             slash ? "/" : "");
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    struct capture c;
    FILE *out = capture_open(&c);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, out);
    fclose(f);
    capture_close(&c);
    return c.text;
}

static void test_docs_cover_every_setting(void **state)
{
    (void)state;
    char *docs = read_docs();
    char want[160];
    for (size_t i = 0; i < cn_config_num_settings(); i++) {
        const char *key = cn_config_setting_key(i);
        /* A row of the reference table, and a section of its own. */
        snprintf(want, sizeof(want), "\n| `%s` |", key);
        if (!strstr(docs, want))
            fail_msg("docs/configuration.md has no table row for %s", key);
        snprintf(want, sizeof(want), "\n### `%s`\n", key);
        if (!strstr(docs, want))
            fail_msg("docs/configuration.md has no section for %s", key);
        char env[96];
        assert_int_equal(cn_config_setting_env(i, env, sizeof(env)), 0);
        snprintf(want, sizeof(want), "`%s`", env);
        if (!strstr(docs, want))
            fail_msg("docs/configuration.md does not name %s", env);
    }
    /* And every row of the reference table is a setting: no documented key that does not
     * exist. The table is the "## Reference" section, up to the next "## ". */
    char *table = strstr(docs, "\n## Reference\n");
    assert_non_null(table);
    char *table_end = strstr(table + 1, "\n## ");
    assert_non_null(table_end);
    *table_end = '\0';
    size_t rows = 0;
    for (const char *p = strstr(table, "\n| `"); p; p = strstr(p + 1, "\n| `")) {
        const char *start = p + 4, *end = strchr(start, '`');
        assert_non_null(end);
        size_t i;
        for (i = 0; i < cn_config_num_settings(); i++) {
            const char *key = cn_config_setting_key(i);
            if (strlen(key) == (size_t)(end - start) && memcmp(key, start, strlen(key)) == 0)
                break;
        }
        if (i == cn_config_num_settings())
            fail_msg("docs/configuration.md documents '%.*s', which is not a setting",
                     (int)(end - start), start);
        rows++;
    }
    assert_int_equal(rows, cn_config_num_settings());
    *table_end = '\n';
    static const char *const not_settings[] = {"`CAIRN_BIN`", "`CAIRN_CONFIG`", "`CAIRN_TEST_*`",
                                               "`CAIRN_BENCH_*`"};
    for (size_t i = 0; i < CN_ARRAY_LEN(not_settings); i++)
        if (!strstr(docs, not_settings[i]))
            fail_msg("docs/configuration.md does not list %s", not_settings[i]);
    free(docs);
}

/* telemetry.code_links: a mapping in the file, a flow mapping from flags; templates are
 * checked with the position of the bad one; the table built from it gives URLs. */
static void test_code_links(void **state)
{
    (void)state;
    struct cn_config *cfg =
        load_ok("telemetry:\n"
                "  code_links:\n"
                "    \"*\": \"https://g.example/{repo}/b/{revision}/{filepath}\"\n"
                "    pay: \"https://p/{service}/{filepath}#L{lineno}\"\n");
    assert_string_equal(cfg->telemetry.code_links,
                        "{\"*\": \"https://g.example/{repo}/b/{revision}/{filepath}\", "
                        "\"pay\": \"https://p/{service}/{filepath}#L{lineno}\"}");
    struct cn_code_links *cl = cn_config_code_links(cfg, err, sizeof(err));
    assert_non_null(cl);
    struct cn_kv rattrs[] = {
        {CN_SLICE_LIT("service.version"), {CN_VAL_STR, {.s = CN_SLICE_LIT("v1")}}},
        {CN_SLICE_LIT("vcs.repository.name"), {CN_VAL_STR, {.s = CN_SLICE_LIT("org/a b")}}}};
    struct cn_resource res = {{rattrs, 2, 0}, CN_SLICE_LIT("pay"), {NULL, 0}};
    struct cn_kv attrs[] = {
        {CN_SLICE_LIT("code.filepath"), {CN_VAL_STR, {.s = CN_SLICE_LIT("a/b?.c")}}},
        {CN_SLICE_LIT("code.lineno"), {CN_VAL_INT, {.i = 12}}}};
    struct cn_kvs kvs = {attrs, 2, 0};
    char url[256];
    assert_int_equal(cn_code_url(cl, &res, &kvs, url, sizeof(url)), 26);
    assert_string_equal(url, "https://p/pay/a/b%3F.c#L12");
    res.service = CN_SLICE_LIT("other"); /* the "*" default; the space is escaped */
    assert_true(cn_code_url(cl, &res, &kvs, url, sizeof(url)) > 0);
    assert_string_equal(url, "https://g.example/org/a%20b/b/v1/a/b%3F.c");
    assert_int_equal(cn_code_url(cl, &res, &kvs, url, 10), CN_ERANGE);
    kvs.num = 1; /* no line number: pay's template gives no link */
    res.service = CN_SLICE_LIT("pay");
    assert_int_equal(cn_code_url(cl, &res, &kvs, url, sizeof(url)), 0);
    kvs.num = 0; /* no code.filepath: no link */
    res.service = CN_SLICE_LIT("other");
    assert_int_equal(cn_code_url(cl, &res, &kvs, url, sizeof(url)), 0);
    cn_code_links_free(cl);
    cn_config_unref(cfg);
    load_err("telemetry:\n  code_links:\n    a: \"x\"\n    b: \"https://x/{nope}\"\n",
             "cairn.yaml:4:8: telemetry.code_links: b: unknown placeholder {nope} (known: "
             "{service}, {repo}, {revision}, {filepath}, {lineno}, {function})");
    load_err("telemetry:\n  code_links:\n    a: \"x{lineno\"\n",
             "cairn.yaml:3:8: telemetry.code_links: a: unclosed '{' in the code link template");
    load_err("telemetry:\n  code_links:\n    a: \"https://x/a b/{filepath}\"\n",
             "cairn.yaml:3:8: telemetry.code_links: a: byte 0x20 at position 11 of the code link "
             "template is not allowed in a URL");
    /* A repository given as a URL stays one: ':' and '/' are not escaped in {repo}. */
    cl = cn_code_links_new();
    assert_non_null(cl);
    assert_int_equal(
        cn_code_links_add(cl, "*", "{repo}/blob/{revision}/{filepath}", err, sizeof(err)), 0);
    rattrs[1] = (struct cn_kv){CN_SLICE_LIT("vcs.repository.url.full"),
                               {CN_VAL_STR, {.s = CN_SLICE_LIT("https://git.example/org/r x")}}};
    kvs.num = 2;
    assert_true(cn_code_url(cl, &res, &kvs, url, sizeof(url)) > 0);
    assert_string_equal(url, "https://git.example/org/r%20x/blob/v1/a/b%3F.c");
    cn_code_links_free(cl);
    load_err("telemetry:\n  code_links:\n    a: [1]\n",
             "cairn.yaml:3:8: telemetry.code_links: the template of 'a' must be a string");
    set_err("telemetry.code_links", "[a]",
            "telemetry.code_links: expected a mapping of service: template");
    set_err("telemetry.code_links", "{a: \"{x}\"}",
            "telemetry.code_links: a: unknown placeholder {x} (known: {service}, {repo}, "
            "{revision}, {filepath}, {lineno}, {function})");
    cfg = cn_config_new();
    set_ok(cfg, "query.default_limit", "2000");
    assert_int_equal(cn_config_validate(cfg, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "query.default_limit (2000) is above query.max_limit (1000)");
    cn_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_nested_and_dotted_keys),
        cmocka_unit_test(test_empty_documents_are_defaults),
        cmocka_unit_test(test_scalar_styles_anchors_and_aliases),
        cmocka_unit_test(test_numeric_bounds),
        cmocka_unit_test(test_bounds_from_yaml),
        cmocka_unit_test(test_uint_parse),
        cmocka_unit_test(test_size_parse),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_bool_parse),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test(test_string_parse),
        cmocka_unit_test(test_error_positions),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_env_names),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_dump_text),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_validate_token_rule),
        cmocka_unit_test(test_validate_other_rules),
        cmocka_unit_test(test_diff_and_restart),
        cmocka_unit_test(test_docs_cover_every_setting),
        cmocka_unit_test(test_code_links),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
