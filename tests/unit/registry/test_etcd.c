/* Cluster mode pieces that need no etcd: the key layout (escaping, parsing back, what is not
 * a registry key), the JSON gateway's answers (range, watch events, errors, int64 strings,
 * limits), the stored values, and the apply path: a change that arrives by watch fires the
 * service- and config-change callbacks like a local write, and an older revision is ignored;
 * and calls failing at once after etcd was found unreachable. */
#include "registry/etcd-layout.h"
#include "registry/etcd.h"
#include "registry/internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PFX CN_SLICE_LIT("/cairn")

static void test_key_escaping_round_trip(void **state)
{
    (void)state;
    struct cn_buf b;
    cn_buf_init(&b, 4096);
    assert_int_equal(
        cn_etcd_key_instance(&b, PFX, "public", "G/1", "a%b", "DEFAULT", "fe80::1", 8080), 0);
    assert_string_equal((cn_buf_append(&b, "", 1), b.ptr),
                        "/cairn/registry/public/G%2F1/a%25b/instances/DEFAULT/fe80::1:8080");
    struct cn_etcd_key k;
    assert_int_equal(cn_etcd_key_parse((struct cn_slice){b.ptr, b.len - 1}, PFX, &k), 0);
    assert_int_equal(k.kind, CN_EK_INSTANCE);
    assert_string_equal(k.group, "G/1");
    assert_string_equal(k.service, "a%b");
    assert_string_equal(k.ip, "fe80::1"); /* the port is after the last ':' */
    assert_int_equal(k.port, 8080);

    cn_buf_reset(&b);
    cn_etcd_key_config(&b, PFX, "ns", "DEFAULT_GROUP", "app.yaml");
    assert_int_equal(cn_etcd_key_parse(cn_buf_slice(&b), PFX, &k), 0);
    assert_int_equal(k.kind, CN_EK_CONFIG);
    assert_string_equal(k.service, "app.yaml");
    cn_buf_reset(&b);
    cn_etcd_key_service(&b, PFX, "public", "G", "pay");
    assert_int_equal(cn_etcd_key_parse(cn_buf_slice(&b), PFX, &k), 0);
    assert_int_equal(k.kind, CN_EK_SERVICE);
    cn_buf_reset(&b);
    cn_etcd_key_history(&b, PFX, "public", "G", "a");
    assert_string_equal((cn_buf_append(&b, "", 1), b.ptr), "/cairn/config-history/public/G/a/");
    cn_buf_release(&b);

    /* Not registry keys: other prefix, wrong shapes, bad escapes, bad ports. */
    const char *bad[] = {"/cairnx/config/a/b/c",
                         "/other/config/a/b/c",
                         "/cairn/config/a/b",
                         "/cairn/config/a/b/c/d",
                         "/cairn/config/a//c",
                         "/cairn/config/a/b%2/c",
                         "/cairn/config/a/b%41/c",
                         "/cairn/registry/a/b/c/instances/D/1.2.3.4",
                         "/cairn/registry/a/b/c/instances/D/1.2.3.4:0",
                         "/cairn/registry/a/b/c/instances/D/1.2.3.4:65536",
                         "/cairn/registry/a/b/c/instances/D/:80",
                         "/cairn/registry/a/b/c/nothing",
                         "/cairn/unknown/a/b/c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cn_etcd_key_parse(cn_slice_of(bad[i]), PFX, &k), 0);
        assert_int_equal(k.kind, CN_EK_NONE);
    }
    /* A component past the name limit is not a key either. */
    char long_key[1200];
    snprintf(long_key, sizeof(long_key), "/cairn/config/public/G/%0600d", 1);
    assert_int_equal(cn_etcd_key_parse(cn_slice_of(long_key), PFX, &k), 0);
    assert_int_equal(k.kind, CN_EK_NONE);
}

static void test_parse_range_and_errors(void **state)
{
    (void)state;
    /* key "/a" value "hello"; int64 as strings, as the gateway writes them. */
    const char *range = "{\"header\":{\"revision\":\"9223372036854775807\"},\"kvs\":[{\"key\":"
                        "\"L2E=\",\"create_revision\":\"5\",\"mod_revision\":\"7\",\"version\":"
                        "\"2\",\"lease\":\"-1\",\"value\":\"aGVsbG8=\"}],\"count\":\"1\","
                        "\"more\":true}";
    struct cn_etcd_resp r;
    cn_etcd_resp_init(&r);
    assert_int_equal(cn_etcd_parse(CN_ETCD_RANGE, range, strlen(range), 1 << 20, &r), 0);
    assert_int_equal(r.revision, INT64_MAX);
    assert_int_equal(r.num_kvs, 1);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.more, 1);
    assert_int_equal(r.kvs[0].mod_rev, 7);
    assert_int_equal(r.kvs[0].create_rev, 5);
    assert_int_equal(r.kvs[0].lease, -1);
    assert_memory_equal(r.kvs[0].key.ptr, "/a", 2);
    assert_int_equal(r.kvs[0].value.len, 5);
    assert_memory_equal(r.kvs[0].value.ptr, "hello", 5);
    cn_etcd_resp_release(&r);

    /* An empty range omits kvs and count (proto3 defaults). */
    const char *empty = "{\"header\":{\"revision\":\"3\"}}";
    assert_int_equal(cn_etcd_parse(CN_ETCD_RANGE, empty, strlen(empty), 1 << 20, &r), 0);
    assert_int_equal(r.num_kvs, 0);
    assert_int_equal(r.revision, 3);
    cn_etcd_resp_release(&r);

    /* The limit on the decoded keys and values together, at its edge: room for n/4*3+3 bytes
     * of each base64 string of n bytes, 6 + 9 here. */
    assert_int_equal(cn_etcd_parse(CN_ETCD_RANGE, range, strlen(range), 15, &r), 0);
    cn_etcd_resp_release(&r);
    assert_int_equal(cn_etcd_parse(CN_ETCD_RANGE, range, strlen(range), 14, &r), CN_ELIMIT);
    cn_etcd_resp_release(&r);

    const char *err = "{\"error\":\"etcdserver: no leader\",\"code\":14,\"message\":\"etcdserver: "
                      "no leader\"}";
    assert_int_equal(cn_etcd_parse(CN_ETCD_PUT, err, strlen(err), 1 << 20, &r), CN_EIO);
    assert_string_equal(r.error, "etcdserver: no leader");
    cn_etcd_resp_release(&r);

    const char *bad[] = {"",
                         "[]",
                         "{",
                         "{\"header\":{\"revision\":\"x\"}}",
                         "{\"header\":{\"revision\":\"99999999999999999999\"}}",
                         "{\"header\":{},\"kvs\":[{\"key\":\"***\"}]}",
                         "{\"header\":{},\"kvs\":{}}",
                         "{\"kvs\":[]}",
                         "{\"header\":{},\"kvs\":[1]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cn_etcd_parse(CN_ETCD_RANGE, bad[i], strlen(bad[i]), 1 << 20, &r),
                         CN_ESYNTAX);
        assert_true(r.error[0] != '\0');
        cn_etcd_resp_release(&r);
    }
}

static void test_parse_watch_and_lease(void **state)
{
    (void)state;
    const char *w = "{\"result\":{\"header\":{\"revision\":\"12\"},\"events\":[{\"type\":"
                    "\"DELETE\",\"kv\":{\"key\":\"L2E=\",\"mod_revision\":\"11\"}},{\"kv\":{"
                    "\"key\":\"L2I=\",\"value\":\"dg==\",\"mod_revision\":\"12\",\"lease\":"
                    "\"7587\"}}]}}";
    struct cn_etcd_resp r;
    cn_etcd_resp_init(&r);
    assert_int_equal(cn_etcd_parse(CN_ETCD_WATCH, w, strlen(w), 1 << 20, &r), 0);
    assert_int_equal(r.num_kvs, 2);
    assert_int_equal(r.event_delete[0], 1);
    assert_int_equal(r.event_delete[1], 0); /* PUT is the default, omitted */
    assert_int_equal(r.kvs[0].mod_rev, 11);
    assert_int_equal(r.kvs[1].lease, 7587);
    assert_memory_equal(r.kvs[1].value.ptr, "v", 1);
    cn_etcd_resp_release(&r);

    const char *comp = "{\"result\":{\"header\":{\"revision\":\"30\"},\"canceled\":true,"
                       "\"compact_revision\":\"20\"}}";
    assert_int_equal(cn_etcd_parse(CN_ETCD_WATCH, comp, strlen(comp), 1 << 20, &r), 0);
    assert_int_equal(r.canceled, 1);
    assert_int_equal(r.compact_revision, 20);
    cn_etcd_resp_release(&r);

    const char *bad_type = "{\"result\":{\"header\":{},\"events\":[{\"type\":\"MOVE\"}]}}";
    assert_int_equal(cn_etcd_parse(CN_ETCD_WATCH, bad_type, strlen(bad_type), 1 << 20, &r),
                     CN_ESYNTAX);
    cn_etcd_resp_release(&r);

    const char *ka = "{\"result\":{\"header\":{\"revision\":\"4\"},\"ID\":\"7587\"}}";
    assert_int_equal(cn_etcd_parse(CN_ETCD_LEASE_KEEPALIVE, ka, strlen(ka), 1 << 20, &r), 0);
    assert_int_equal(r.lease_id, 7587);
    assert_int_equal(r.ttl, 0); /* omitted: the lease is gone */
    cn_etcd_resp_release(&r);
}

static void test_values(void **state)
{
    (void)state;
    struct cn_etcd_value v;
    const char *why = NULL;
    const char *inst = "{\"weight\":2.5,\"healthy\":false,\"enabled\":true,\"ephemeral\":true,"
                       "\"metadata\":\"{\\\"zone\\\":\\\"a\\\"}\"}";
    assert_int_equal(cn_etcd_value_parse(CN_EK_INSTANCE, cn_slice_of(inst), &v, &why), 0);
    assert_true(v.weight == 2.5);
    assert_int_equal(v.healthy, 0);
    assert_int_equal(v.ephemeral, 1);
    assert_string_equal(v.metadata, "{\"zone\":\"a\"}");
    cn_etcd_value_release(&v);
    const char *cfg = "{\"md5\":\"abc\",\"type\":\"yaml\",\"time\":5,\"who\":\"me\"}\na: 1\n\x00z";
    assert_int_equal(
        cn_etcd_value_parse(CN_EK_CONFIG, (struct cn_slice){cfg, strlen(cfg) + 2}, &v, &why), 0);
    assert_int_equal(v.content.len, 7); /* bytes as they are, NUL included */
    assert_memory_equal(v.content.ptr, "a: 1\n\x00z", 7);
    assert_string_equal(v.type, "yaml");
    cn_etcd_value_release(&v);
    assert_int_equal(cn_etcd_value_parse(CN_EK_CONFIG, CN_SLICE_LIT("{}"), &v, &why), CN_ESYNTAX);
    assert_int_equal(cn_etcd_value_parse(CN_EK_HISTORY, cn_slice_of(cfg), &v, &why), CN_ESYNTAX);
    assert_int_equal(cn_etcd_value_parse(CN_EK_INSTANCE, CN_SLICE_LIT("{\"weight\":1}"), &v, &why),
                     CN_ESYNTAX);
    assert_non_null(why);
}

static int svc_calls, cfg_calls;
static void on_svc(void *ctx, const char *ns, const char *group, const char *service)
{
    (void)ctx, (void)ns, (void)group, (void)service;
    svc_calls++;
}
static void on_cfg(void *ctx, const struct cn_reg_cfg_key *k)
{
    (void)ctx, (void)k;
    cfg_calls++;
}

static void test_apply_fires_callbacks(void **state)
{
    (void)state;
    struct cn_reg_opts o;
    cn_reg_opts_default(&o);
    char err[256];
    struct cn_reg *reg = cn_reg_new(&o, NULL, 0, err, sizeof(err));
    assert_non_null(reg);
    cn_reg_set_svc_change_cb(reg, on_svc, NULL);
    cn_reg_set_cfg_change_cb(reg, on_cfg, NULL);
    struct cn_reg_inst_rec r = {"public", "G", "pay", "DEFAULT", "10.0.0.1", "{}", 80, 1, 1, 1, 1};
    assert_int_equal(reg_apply_inst(reg, &r, 1, 10, 0, 1000), 0);
    /* a second instance changes the list: the callback fires as for a local register */
    struct cn_reg_inst_rec r2 = r;
    r2.ip = "10.0.0.2";
    int before = svc_calls;
    assert_int_equal(reg_apply_inst(reg, &r2, 1, 11, 0, 1000), 0);
    assert_true(svc_calls > before);
    /* the same revision again (an echo) or an older one changes nothing */
    before = svc_calls;
    r2.weight = 5;
    assert_int_equal(reg_apply_inst(reg, &r2, 1, 11, 0, 1000), 0);
    assert_int_equal(svc_calls, before);
    struct cn_reg_inst_view *v;
    long n =
        cn_reg_instances(reg, CN_SLICE_LIT("public"), CN_SLICE_LIT("G"), CN_SLICE_LIT("pay"), &v);
    assert_int_equal(n, 2);
    assert_true(v[1].weight == 1);
    cn_reg_instances_free(v, n);
    /* a remote ephemeral instance is not expired by this node's clock */
    assert_int_equal(cn_reg_tick(reg, 10000000), 0);
    /* a deletion older than the instance is ignored; a newer one removes it */
    assert_int_equal(reg_apply_inst_del(reg, "public", "G", "pay", "DEFAULT", "10.0.0.2", 80, 9, 0),
                     0);
    n = cn_reg_instances(reg, CN_SLICE_LIT("public"), CN_SLICE_LIT("G"), CN_SLICE_LIT("pay"), &v);
    assert_int_equal(n, 2);
    cn_reg_instances_free(v, n);
    before = svc_calls;
    assert_int_equal(
        reg_apply_inst_del(reg, "public", "G", "pay", "DEFAULT", "10.0.0.2", 80, 12, 0), 0);
    assert_true(svc_calls > before);

    struct cn_reg_cfg_rec c = {"", "G", "app", "x: 1", 4, "md5a", "yaml", 20, 5, NULL, "w"};
    assert_int_equal(reg_apply_cfg(reg, &c, 0), 0);
    assert_int_equal(cfg_calls, 1);
    assert_int_equal(reg_apply_cfg(reg, &c, 0), 0); /* echo */
    assert_int_equal(cfg_calls, 1);
    struct cn_buf b;
    cn_buf_init(&b, 1024);
    struct cn_reg_cfg_key k = {CN_SLICE_LIT(""), CN_SLICE_LIT("G"), CN_SLICE_LIT("app")};
    uint64_t ver = 0;
    assert_int_equal(cn_reg_cfg_get(reg, &k, &b, NULL, NULL, &ver, NULL), 0);
    assert_int_equal(ver, 20);
    assert_memory_equal(b.ptr, "x: 1", 4);
    cn_buf_release(&b);
    /* a reconciliation at revision 30 that did not see the item removes it, and notifies */
    reg_cfg_sweep(reg, 1, 30);
    assert_int_equal(cfg_calls, 2);
    assert_int_equal(cn_reg_cfg_get(reg, &k, NULL, NULL, NULL, NULL, NULL), CN_ENOENT);
    /* ...and one that did not see the remote instance drops it */
    reg_sync_sweep(reg, 1, 30, 0);
    n = cn_reg_instances(reg, CN_SLICE_LIT("public"), CN_SLICE_LIT("G"), CN_SLICE_LIT("pay"), &v);
    assert_int_equal(n, 0);
    cn_reg_instances_free(v, n);
    cn_reg_free(reg);
}

static void test_endpoints(void **state)
{
    (void)state;
    char err[256];
    struct cn_etcd_opts o = {"http://127.0.0.1:2379, http://127.0.0.1:2380", 0, 0, 0};
    struct cn_etcd *e = cn_etcd_new(&o, err, sizeof(err));
    assert_non_null(e);
    assert_int_equal(cn_etcd_num_endpoints(e), 2);
    assert_string_equal(cn_etcd_endpoint(e, 1), "http://127.0.0.1:2380");
    cn_etcd_free(e);
    const char *bad[] = {"", "https://127.0.0.1:2379", "127.0.0.1:2379", "http://h:1/path",
                         "http://nohost"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.endpoints = bad[i];
        assert_null(cn_etcd_new(&o, err, sizeof(err)));
        assert_non_null(strstr(err, "registry.etcd.endpoints"));
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* No member answers (nothing listens on the port): the first call spends its request timeout
 * trying, the calls right after it fail at once, and once CN_ETCD_DOWN_MS has passed a call
 * tries again. */
static void test_unreachable_fails_fast(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd); /* a port nothing listens on: connections are refused */
    char ep[64], err[256];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", ntohs(a.sin_port));
    struct cn_etcd_opts o = {ep, 100, 1000, 0};
    struct cn_etcd *e = cn_etcd_new(&o, err, sizeof(err));
    assert_non_null(e);
    struct cn_etcd_conn *c = cn_etcd_conn_new(e);
    assert_non_null(c);
    struct cn_etcd_resp r;
    memset(&r, 0, sizeof(r));
    uint64_t t0 = now_ms();
    assert_int_equal(cn_etcd_put(c, CN_SLICE_LIT("k"), CN_SLICE_LIT("v"), 0, &r, err, sizeof(err)),
                     CN_EIO);
    assert_true(now_ms() - t0 >= 800); /* tries until 100 ms before the timeout */
    assert_int_equal(cn_etcd_fast_failures(e), 0);
    t0 = now_ms();
    for (int i = 0; i < 20; i++)
        assert_int_equal(
            cn_etcd_put(c, CN_SLICE_LIT("k"), CN_SLICE_LIT("v"), 0, &r, err, sizeof(err)), CN_EIO);
    assert_true(now_ms() - t0 < 500);
    assert_int_equal(cn_etcd_fast_failures(e), 20);
    assert_non_null(strstr(err, "next try in"));
    /* past the window (CN_ETCD_DOWN_MS, the request timeout here) */
    struct timespec ts = {1, 100 * 1000000L};
    nanosleep(&ts, NULL);
    t0 = now_ms();
    assert_int_equal(cn_etcd_put(c, CN_SLICE_LIT("k"), CN_SLICE_LIT("v"), 0, &r, err, sizeof(err)),
                     CN_EIO);
    assert_true(now_ms() - t0 >= 800); /* tries until 100 ms before the timeout */
    assert_int_equal(cn_etcd_fast_failures(e), 20);
    cn_etcd_resp_release(&r);
    cn_etcd_conn_free(c);
    cn_etcd_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_escaping_round_trip),
        cmocka_unit_test(test_parse_range_and_errors),
        cmocka_unit_test(test_parse_watch_and_lease),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_apply_fires_callbacks),
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_unreachable_fails_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
