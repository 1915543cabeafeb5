/* Registry: naming model, heartbeat expiry on an injected clock, protection threshold,
 * configuration center with history and rollback on the SQLite store across a reopen, and
 * concurrent lock-free reads against writers. */
#include "registry/registry.h"
#include "registry/store.h"
#include "registry/util.h"
#include "../../common/tmpdir.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <uv.h>

static struct cn_reg *new_reg(void)
{
    struct cn_reg_opts o;
    cn_reg_opts_default(&o);
    char err[256];
    struct cn_reg *r = cn_reg_new(&o, NULL, 0, err, sizeof(err));
    assert_non_null(r);
    return r;
}

static struct cn_reg_instance inst(const char *svc, const char *ip, uint16_t port, const char *meta)
{
    struct cn_reg_instance in = {cn_slice_of(""),
                                 CN_SLICE_LIT("DEFAULT_GROUP"),
                                 cn_slice_of(svc),
                                 CN_SLICE_LIT("DEFAULT"),
                                 cn_slice_of(ip),
                                 port,
                                 1.0,
                                 1,
                                 1,
                                 1,
                                 cn_slice_of(meta)};
    return in;
}

/* The list answer for svc, parsed. */
static json_t *list(struct cn_reg *r, const char *svc, const char *clusters, int healthy_only)
{
    struct cn_reg_query q = {cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"), cn_slice_of(svc),
                             cn_slice_of(clusters), healthy_only};
    struct cn_buf b;
    cn_buf_init(&b, 1u << 20);
    assert_int_equal(cn_reg_list_json(r, &q, 1234, &b), 0);
    json_error_t e;
    json_t *j = json_loadb(b.ptr, b.len, 0, &e);
    if (!j)
        fail_msg("list answer is not JSON: %.*s (%s)", (int)b.len, b.ptr, e.text);
    cn_buf_release(&b);
    return j;
}

static size_t num_hosts(json_t *j)
{
    return json_array_size(json_object_get(j, "hosts"));
}

static json_t *host(json_t *j, size_t i)
{
    return json_array_get(json_object_get(j, "hosts"), i);
}

static void test_register_list_exact(void **state)
{
    (void)state;
    struct cn_reg *r = new_reg();
    struct cn_reg_error e = {0};
    struct cn_reg_instance a = inst("orders", "10.0.0.1", 8080, "{\"zone\":\"a\",\"n\":1}");
    a.weight = 2.5;
    assert_int_equal(cn_reg_register(r, &a, 1000, &e), 0);
    struct cn_reg_query q = {cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"), CN_SLICE_LIT("orders"),
                             CN_SLICE_LIT(""), 0};
    struct cn_buf b;
    cn_buf_init(&b, 1u << 20);
    assert_int_equal(cn_reg_list_json(r, &q, 5555, &b), 0);
    /* Byte for byte: the field order and spelling Nacos clients parse. */
    static const char want[] =
        "{\"name\":\"DEFAULT_GROUP@@orders\",\"groupName\":\"DEFAULT_GROUP\",\"clusters\":\"\","
        "\"cacheMillis\":10000,\"hosts\":[{\"instanceId\":\"10.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@"
        "orders\",\"ip\":\"10.0.0.1\",\"port\":8080,\"weight\":2.5,\"healthy\":true,\"enabled\":"
        "true,\"ephemeral\":true,\"clusterName\":\"DEFAULT\",\"serviceName\":\"DEFAULT_GROUP@@"
        "orders\",\"metadata\":{\"n\":\"1\",\"zone\":\"a\"},\"instanceHeartBeatInterval\":5000,"
        "\"instanceHeartBeatTimeOut\":15000,\"ipDeleteTimeout\":30000,\"instanceIdGenerator\":"
        "\"simple\"}],\"lastRefTime\":5555,\"checksum\":\"";
    assert_true(b.len > sizeof(want));
    assert_memory_equal(b.ptr, want, sizeof(want) - 1);
    static const char tail[] =
        "\",\"allIPs\":false,\"reachProtectionThreshold\":false,\"valid\":true}";
    assert_memory_equal(b.ptr + b.len - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    cn_buf_release(&b);
    /* Unknown service: an empty, valid answer. */
    json_t *j = list(r, "nope", "", 0);
    assert_int_equal(num_hosts(j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "DEFAULT_GROUP@@nope");
    json_decref(j);
    cn_reg_free(r);
}

static void test_register_replace_deregister(void **state)
{
    (void)state;
    struct cn_reg *r = new_reg();
    struct cn_reg_error e = {0};
    struct cn_reg_instance a = inst("s", "10.0.0.1", 80, "");
    struct cn_reg_instance b = inst("s", "10.0.0.2", 80, "k=v,x=y");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    assert_int_equal(cn_reg_register(r, &b, 0, &e), 0);
    a.weight = 7;
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0); /* replaces, keeps order */
    json_t *j = list(r, "s", "", 0);
    assert_int_equal(num_hosts(j), 2);
    assert_string_equal(json_string_value(json_object_get(host(j, 0), "ip")), "10.0.0.1");
    assert_true(json_real_value(json_object_get(host(j, 0), "weight")) == 7.0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(host(j, 1), "metadata"), "x")), "y");
    json_decref(j);
    assert_int_equal(cn_reg_deregister(r, cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"),
                                       CN_SLICE_LIT("s"), CN_SLICE_LIT("DEFAULT"),
                                       CN_SLICE_LIT("10.0.0.1"), 80, 1, 0, &e),
                     0);
    j = list(r, "s", "", 0);
    assert_int_equal(num_hosts(j), 1);
    json_decref(j);
    /* Deregistering what is absent is fine (Nacos answers ok). */
    assert_int_equal(cn_reg_deregister(r, cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"),
                                       CN_SLICE_LIT("s"), CN_SLICE_LIT("DEFAULT"),
                                       CN_SLICE_LIT("10.9.9.9"), 80, 1, 0, &e),
                     0);
    /* The last instance gone, the implicit service goes too. */
    assert_int_equal(cn_reg_deregister(r, cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"),
                                       CN_SLICE_LIT("s"), CN_SLICE_LIT("DEFAULT"),
                                       CN_SLICE_LIT("10.0.0.2"), 80, 1, 0, &e),
                     0);
    struct cn_reg_stats st;
    cn_reg_stats(r, &st);
    assert_int_equal(st.services, 0);
    cn_reg_free(r);
}

static void test_bad_fields(void **state)
{
    (void)state;
    struct cn_reg *r = new_reg();
    struct cn_reg_error e = {0};
    struct cn_reg_instance a = inst("s", "10.0.0.1", 0, "");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_EINVAL);
    assert_string_equal(e.param, "port");
    a = inst("s", "10.0.0.1 x", 80, "");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_EINVAL);
    assert_string_equal(e.param, "ip");
    a = inst("a@@b", "10.0.0.1", 80, "");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_EINVAL);
    assert_string_equal(e.param, "serviceName");
    a = inst("s", "10.0.0.1", 80, "{\"x\":[1]}");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_EINVAL);
    assert_string_equal(e.param, "metadata");
    a = inst("s", "10.0.0.1", 80, "");
    a.weight = 10000.5;
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_EINVAL);
    assert_string_equal(e.param, "weight");
    a.weight = 10000; /* the edge is accepted */
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    /* An ephemeral instance cannot be re-registered as persistent under the same address. */
    a.ephemeral = 0;
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_EINVAL);
    assert_string_equal(e.param, "ephemeral");
    cn_reg_free(r);
}

static void test_limits_at_edge(void **state)
{
    (void)state;
    struct cn_reg_opts o;
    cn_reg_opts_default(&o);
    o.max_services = 2;
    o.max_instances_per_service = 2;
    char err[128];
    struct cn_reg *r = cn_reg_new(&o, NULL, 0, err, sizeof(err));
    struct cn_reg_error e = {0};
    struct cn_reg_instance a = inst("s1", "10.0.0.1", 80, "");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    a.port = 81;
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    a.port = 82;
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_ELIMIT);
    assert_string_equal(e.param, "ip");
    a = inst("s2", "10.0.0.1", 80, "");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    a = inst("s3", "10.0.0.1", 80, "");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), CN_ELIMIT);
    assert_string_equal(e.param, "serviceName");
    cn_reg_free(r);
}

static int healthy_of(struct cn_reg *r, const char *svc, size_t i)
{
    json_t *j = list(r, svc, "", 0);
    int h = json_is_true(json_object_get(host(j, i), "healthy"));
    json_decref(j);
    return h;
}

static void test_heartbeat_expiry(void **state)
{
    (void)state;
    struct cn_reg *r = new_reg();
    struct cn_reg_error e = {0};
    struct cn_reg_instance a = inst("s", "10.0.0.1", 80, "");
    /* Overrides through the preserved.* metadata. */
    struct cn_reg_instance b = inst("s", "10.0.0.2", 80,
                                    "{\"preserved.heart.beat.timeout\":\"3000\","
                                    "\"preserved.ip.delete.timeout\":\"6000\","
                                    "\"preserved.heart.beat.interval\":\"1000\"}");
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    assert_int_equal(cn_reg_register(r, &b, 0, &e), 0);
    json_t *j = list(r, "s", "", 0);
    assert_int_equal(json_integer_value(json_object_get(host(j, 1), "instanceHeartBeatTimeOut")),
                     3000);
    json_decref(j);
    uint64_t interval = 0;
    assert_int_equal(cn_reg_beat(r, &b, 0, 500, &interval, &e), 0);
    assert_int_equal(interval, 1000);
    /* b silent for 3000 ms after its beat at 500: still healthy at 3500, not at 3501. */
    assert_int_equal(cn_reg_tick(r, 3500), 0);
    assert_true(healthy_of(r, "s", 1));
    assert_int_equal(cn_reg_tick(r, 3501), 1);
    assert_false(healthy_of(r, "s", 1));
    assert_true(healthy_of(r, "s", 0));
    /* A beat brings it back. */
    assert_int_equal(cn_reg_beat(r, &b, 0, 4000, &interval, &e), 0);
    assert_true(healthy_of(r, "s", 1));
    /* b silent 11 s since its beat at 4000: past its 6 s delete timeout, removed; a (15 s
     * timeout, beat at 0) still healthy at 15000, unhealthy at 15001. */
    assert_int_equal(cn_reg_tick(r, 15000), 1);
    j = list(r, "s", "", 0);
    assert_int_equal(num_hosts(j), 1);
    json_decref(j);
    assert_true(healthy_of(r, "s", 0));
    assert_int_equal(cn_reg_tick(r, 15001), 1);
    assert_false(healthy_of(r, "s", 0));
    assert_int_equal(cn_reg_tick(r, 10001), 0); /* the clock went back: nothing happens */
    assert_int_equal(cn_reg_tick(r, 30000), 0);
    assert_int_equal(cn_reg_tick(r, 30001), 1); /* removed 30 s after its last beat */
    j = list(r, "s", "", 0);
    assert_int_equal(num_hosts(j), 0);
    json_decref(j);
    /* A beat for an unknown instance: 20404 unless it carries the instance. */
    assert_int_equal(cn_reg_beat(r, &a, 0, 31000, &interval, &e), CN_ENOENT);
    assert_int_equal(cn_reg_beat(r, &a, 1, 31000, &interval, &e), 0);
    assert_int_equal(interval, 5000);
    j = list(r, "s", "", 0);
    assert_int_equal(num_hosts(j), 1);
    json_decref(j);
    struct cn_reg_stats st;
    cn_reg_stats(r, &st);
    assert_int_equal(st.expired_removed, 2);
    cn_reg_free(r);
}

static void test_protection_threshold(void **state)
{
    (void)state;
    struct cn_reg *r = new_reg();
    struct cn_reg_error e = {0};
    struct cn_reg_service sv = {cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"), CN_SLICE_LIT("p"),
                                0.5, CN_SLICE_LIT("")};
    assert_int_equal(cn_reg_service_put(r, &sv, 0, &e), 0);
    assert_int_equal(cn_reg_service_put(r, &sv, 0, &e), CN_EINVAL); /* exists */
    for (int i = 0; i < 4; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        struct cn_reg_instance a = inst("p", ip, 80, "");
        a.healthy = i < 2; /* 2 of 4 healthy: share 0.5, not below 0.5 */
        a.ephemeral = 0;
        assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    }
    json_t *j = list(r, "p", "", 1);
    assert_int_equal(num_hosts(j), 2);
    assert_false(json_is_true(json_object_get(j, "reachProtectionThreshold")));
    json_decref(j);
    /* One more down: 1 of 4 < 0.5 -> every host, all marked healthy. */
    struct cn_reg_check c = {"public", "DEFAULT_GROUP", "p", "DEFAULT", "10.0.0.2", "", 80};
    cn_reg_set_health(r, &c, 0, 0);
    j = list(r, "p", "", 1);
    assert_int_equal(num_hosts(j), 4);
    assert_true(json_is_true(json_object_get(j, "reachProtectionThreshold")));
    for (size_t i = 0; i < 4; i++)
        assert_true(json_is_true(json_object_get(host(j, i), "healthy")));
    json_decref(j);
    /* Without healthyOnly the answer is the same set. */
    j = list(r, "p", "", 0);
    assert_int_equal(num_hosts(j), 4);
    json_decref(j);
    /* Threshold 0 (the default): never reached. */
    sv.protect_threshold = 0;
    assert_int_equal(cn_reg_service_put(r, &sv, 1, &e), 0);
    j = list(r, "p", "", 1);
    assert_int_equal(num_hosts(j), 1);
    assert_false(json_is_true(json_object_get(j, "reachProtectionThreshold")));
    json_decref(j);
    /* A service with instances cannot be deleted. */
    assert_int_equal(cn_reg_service_delete(r, cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"),
                                           CN_SLICE_LIT("p"), &e),
                     CN_EINVAL);
    cn_reg_free(r);
}

static void test_clusters_and_disabled(void **state)
{
    (void)state;
    struct cn_reg *r = new_reg();
    struct cn_reg_error e = {0};
    struct cn_reg_instance a = inst("c", "10.0.0.1", 80, "");
    struct cn_reg_instance b = inst("c", "10.0.0.2", 80, "");
    b.cluster = CN_SLICE_LIT("BJ");
    struct cn_reg_instance d = inst("c", "10.0.0.3", 80, "");
    d.enabled = 0;
    assert_int_equal(cn_reg_register(r, &a, 0, &e), 0);
    assert_int_equal(cn_reg_register(r, &b, 0, &e), 0);
    assert_int_equal(cn_reg_register(r, &d, 0, &e), 0);
    json_t *j = list(r, "c", "", 0);
    assert_int_equal(num_hosts(j), 2); /* disabled ones are not listed */
    json_decref(j);
    j = list(r, "c", "BJ", 0);
    assert_int_equal(num_hosts(j), 1);
    assert_string_equal(json_string_value(json_object_get(host(j, 0), "clusterName")), "BJ");
    assert_string_equal(json_string_value(json_object_get(j, "clusters")), "BJ");
    json_decref(j);
    j = list(r, "c", "DEFAULT,BJ", 0);
    assert_int_equal(num_hosts(j), 2);
    json_decref(j);
    cn_reg_free(r);
}

static void test_listener_parse(void **state)
{
    (void)state;
    struct cn_listen_key k[4];
    struct cn_slice s = CN_SLICE_LIT("a\x02g\x02m1\x01"
                                     "b\x02g2\x02\x02t1\x01");
    assert_int_equal(cn_listen_parse(s, k, 4), 2);
    assert_true(cn_slice_eq(k[0].data_id, CN_SLICE_LIT("a")));
    assert_true(cn_slice_eq(k[0].md5, CN_SLICE_LIT("m1")));
    assert_false(k[0].has_tenant);
    assert_true(cn_slice_eq(k[1].group, CN_SLICE_LIT("g2")));
    assert_int_equal(k[1].md5.len, 0);
    assert_true(k[1].has_tenant);
    assert_true(cn_slice_eq(k[1].tenant, CN_SLICE_LIT("t1")));
    /* Trailing bytes without \x01 are ignored, as Nacos does. */
    assert_int_equal(cn_listen_parse(CN_SLICE_LIT("a\x02g\x02m\x01zz\x02"), k, 4), 1);
    assert_int_equal(cn_listen_parse(CN_SLICE_LIT("a\x02m\x01"), k, 4), CN_ESYNTAX);
    assert_int_equal(cn_listen_parse(CN_SLICE_LIT("a\x02g\x02m\x02t\x02x\x01"), k, 4), CN_ESYNTAX);
    assert_int_equal(cn_listen_parse(CN_SLICE_LIT("\x02g\x02m\x01"), k, 4), CN_ESYNTAX);
    /* The limit, at its edge. */
    assert_int_equal(cn_listen_parse(CN_SLICE_LIT("a\x02g\x02\x01"
                                                  "b\x02g\x02\x01"),
                                     k, 2),
                     2);
    assert_int_equal(cn_listen_parse(CN_SLICE_LIT("a\x02g\x02\x01"
                                                  "b\x02g\x02\x01"
                                                  "c\x02g\x02\x01"),
                                     k, 2),
                     CN_ELIMIT);
}

static void test_forms_and_encoding(void **state)
{
    (void)state;
    /* Doubles as Java prints them; past +-1e15 (and past int64, where a cast to it would be
     * undefined) in %.15g. */
    static const struct {
        double v;
        const char *want;
    } dbl[] = {{1.0, "1.0"}, {0.5, "0.5"}, {-3, "-3.0"}, {1e300, "1e+300"}, {-1e19, "-1e+19"}};
    for (size_t i = 0; i < CN_ARRAY_LEN(dbl); i++) {
        struct cn_buf b;
        cn_buf_init(&b, 64);
        assert_int_equal(cn_reg_json_double(&b, dbl[i].v), 0);
        assert_true(cn_slice_eq(cn_buf_slice(&b), cn_slice_of(dbl[i].want)));
        cn_buf_release(&b);
    }
    struct cn_form f;
    cn_form_init(&f, 4096);
    /* Nothing, with no buffer yet on either side (an empty body). */
    assert_int_equal(cn_form_parse(&f, (struct cn_slice){NULL, 0}), 0);
    assert_int_equal((int)f.num, 0);
    struct cn_buf dec;
    cn_buf_init(&dec, 64);
    assert_int_equal(cn_url_decode(&dec, (struct cn_slice){NULL, 0}, 1), 0);
    assert_int_equal((int)dec.len, 0);
    cn_buf_release(&dec);
    assert_int_equal(cn_form_parse(&f, CN_SLICE_LIT("a=1&b=x+y%21&a=2&empty=&flag")), 0);
    assert_int_equal(cn_form_parse(&f, CN_SLICE_LIT("c=%E4%BD%A0")), 0);
    struct cn_slice v;
    assert_true(cn_form_get(&f, "a", &v) && cn_slice_eq(v, CN_SLICE_LIT("1"))); /* first wins */
    assert_true(cn_form_get(&f, "b", &v) && cn_slice_eq(v, CN_SLICE_LIT("x y!")));
    assert_true(cn_form_get(&f, "empty", &v) && v.len == 0);
    assert_true(cn_form_get(&f, "flag", &v) && v.len == 0);
    assert_true(cn_form_get(&f, "c", &v) && cn_slice_eq(v, CN_SLICE_LIT("\xe4\xbd\xa0")));
    assert_false(cn_form_get(&f, "zz", &v));
    assert_int_equal(cn_form_parse(&f, CN_SLICE_LIT("d=%4")), CN_ESYNTAX);
    assert_int_equal(cn_form_parse(&f, CN_SLICE_LIT("d=%zz")), CN_ESYNTAX);
    cn_form_release(&f);
    /* Past the parameter limit. */
    cn_form_init(&f, 1u << 20);
    struct cn_buf q;
    cn_buf_init(&q, 1u << 20);
    for (int i = 0; i <= CN_FORM_MAX_PARAMS; i++)
        cn_buf_printf(&q, "p%d=1&", i);
    assert_int_equal(cn_form_parse(&f, cn_buf_slice(&q)), CN_ELIMIT);
    cn_buf_release(&q);
    cn_form_release(&f);
    /* Java's URLEncoder: the listener answer's encoding. */
    struct cn_buf b;
    cn_buf_init(&b, 1024);
    assert_int_equal(cn_url_encode_java(&b, CN_SLICE_LIT("a.b-c_*\x02g x\x01/")), 0);
    assert_int_equal(b.len, strlen("a.b-c_*%02g+x%01%2F"));
    assert_memory_equal(b.ptr, "a.b-c_*%02g+x%01%2F", b.len);
    cn_buf_release(&b);
    char md5[33];
    cn_reg_md5_hex("", 0, md5);
    assert_string_equal(md5, "d41d8cd98f00b204e9800998ecf8427e");
    cn_reg_md5_hex("x: 1", 4, md5);
    assert_string_equal(md5, "be28de7266b359a1a33699e95bfbb29a");
}

struct ctr {
    int n;
    char last[64];
};

static void on_change(void *ctx, const struct cn_reg_cfg_key *k)
{
    struct ctr *c = ctx;
    c->n++;
    snprintf(c->last, sizeof(c->last), "%.*s", (int)k->data_id.len, k->data_id.ptr);
}

/* Removes a store's directory made by a test: its files, then itself. */

/* A registry on an SQLite store in dir (made or reopened). */
static struct cn_reg *stored_reg(const char *dir, const struct cn_reg_opts *o)
{
    char err[256];
    struct cn_reg_store *st = cn_reg_store_sqlite_open(dir, err, sizeof(err));
    assert_non_null(st);
    struct cn_reg *r = cn_reg_new(o, st, 0, err, sizeof(err));
    assert_non_null(r);
    return r;
}

static void test_config_store_history_rollback(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-reg-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct cn_reg_opts o;
    cn_reg_opts_default(&o);
    o.max_history = 3;
    o.max_config_bytes = 8;
    struct cn_reg *r = stored_reg(dir, &o);
    struct ctr c = {0};
    cn_reg_set_cfg_change_cb(r, on_change, &c);
    struct cn_reg_cfg_key k = {CN_SLICE_LIT("public"), CN_SLICE_LIT("G"), CN_SLICE_LIT("app.yaml")};
    struct cn_reg_error e = {0};
    uint64_t v1, v2, v3;
    assert_int_equal(cn_reg_cfg_publish(r, &k, CN_SLICE_LIT("a: 1"), CN_SLICE_LIT("yaml"),
                                        "1.2.3.4", 100, &v1, &e),
                     0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.last, "app.yaml");
    assert_int_equal(
        cn_reg_cfg_publish(r, &k, CN_SLICE_LIT("a: 2"), CN_SLICE_LIT("yaml"), "bob", 200, &v2, &e),
        0);
    assert_true(v2 > v1);
    /* The size limit at its edge: 8 bytes fit, 9 do not. */
    assert_int_equal(
        cn_reg_cfg_publish(r, &k, CN_SLICE_LIT("123456789"), CN_SLICE_LIT(""), "x", 300, NULL, &e),
        CN_ELIMIT);
    assert_string_equal(e.param, "content");
    /* "" and "public" are one namespace. */
    struct cn_reg_cfg_key k0 = {CN_SLICE_LIT(""), CN_SLICE_LIT("G"), CN_SLICE_LIT("app.yaml")};
    struct cn_buf b;
    cn_buf_init(&b, 1024);
    char md5[33], type[64];
    assert_int_equal(cn_reg_cfg_get(r, &k0, &b, md5, type, NULL, NULL), 0);
    assert_memory_equal(b.ptr, "a: 2", 4);
    assert_string_equal(type, "yaml");
    /* Rollback to v1 publishes its content again. */
    assert_int_equal(cn_reg_cfg_rollback(r, &k, v1, "carol", 400, &v3, &e), 0);
    assert_true(v3 > v2);
    assert_int_equal(cn_reg_cfg_rollback(r, &k, 999999, "carol", 400, NULL, &e), CN_ENOENT);
    assert_string_equal(e.param, "version");
    cn_buf_reset(&b);
    assert_int_equal(cn_reg_cfg_history_json(r, &k, 10, &b), 0);
    json_t *h = json_loadb(b.ptr, b.len, 0, NULL);
    assert_int_equal(json_array_size(h), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "op")), "rollback");
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "who")), "carol");
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 2), "who")), "1.2.3.4");
    json_decref(h);
    /* A persistent instance and an ephemeral one. */
    struct cn_reg_instance p = inst("db", "10.1.1.1", 5432, "{\"role\":\"primary\"}");
    p.ephemeral = 0;
    struct cn_reg_instance q = inst("db", "10.1.1.2", 5432, "");
    assert_int_equal(cn_reg_register(r, &p, 0, &e), 0);
    assert_int_equal(cn_reg_register(r, &q, 0, &e), 0);
    assert_int_equal(
        cn_reg_cfg_publish(r, &k, CN_SLICE_LIT("a: 4"), CN_SLICE_LIT("yaml"), "bob", 500, NULL, &e),
        0);
    cn_reg_free(r);

    /* Reopen: configuration, pruned history (3 rows), the persistent instance; not the
     * ephemeral one. */
    r = stored_reg(dir, &o);
    cn_buf_reset(&b);
    assert_int_equal(cn_reg_cfg_get(r, &k, &b, md5, type, NULL, NULL), 0);
    assert_memory_equal(b.ptr, "a: 4", 4);
    char want[33];
    cn_reg_md5_hex("a: 4", 4, want);
    assert_string_equal(md5, want);
    cn_buf_reset(&b);
    assert_int_equal(cn_reg_cfg_history_json(r, &k, 10, &b), 0);
    h = json_loadb(b.ptr, b.len, 0, NULL);
    assert_int_equal(json_array_size(h), 3);
    json_decref(h);
    json_t *j = list(r, "db", "", 0);
    assert_int_equal(num_hosts(j), 1);
    assert_string_equal(json_string_value(json_object_get(host(j, 0), "ip")), "10.1.1.1");
    assert_false(json_is_true(json_object_get(host(j, 0), "ephemeral")));
    json_decref(j);
    /* Delete, then it is gone after another reopen. */
    assert_int_equal(cn_reg_cfg_delete(r, &k, "bob", 600, &e), 0);
    assert_int_equal(cn_reg_cfg_get(r, &k, NULL, md5, NULL, NULL, NULL), CN_ENOENT);
    cn_reg_free(r);
    r = stored_reg(dir, &o);
    assert_int_equal(cn_reg_cfg_get(r, &k, NULL, md5, NULL, NULL, NULL), CN_ENOENT);
    cn_reg_free(r);
    cn_buf_release(&b);
    assert_int_equal(cn_test_remove_dir(dir), 0);
}

/* Readers list while writers register, beat and expire: no torn answers, no use after free
 * (the ASan build runs this too). */
struct race {
    struct cn_reg *r;
    atomic_int stop;
    atomic_long reads;
};

static void reader(void *arg)
{
    struct race *x = arg;
    struct cn_buf b;
    cn_buf_init(&b, 1u << 20);
    struct cn_reg_query q = {cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"), CN_SLICE_LIT("hot"),
                             CN_SLICE_LIT(""), 0};
    while (!atomic_load(&x->stop)) {
        cn_buf_reset(&b);
        if (cn_reg_list_json(x->r, &q, 1, &b) != 0 || b.ptr[b.len - 1] != '}')
            abort();
        atomic_fetch_add(&x->reads, 1);
    }
    cn_buf_release(&b);
}

static void test_concurrent_reads(void **state)
{
    (void)state;
    struct race x = {.r = new_reg()};
    uv_thread_t t[3];
    for (int i = 0; i < 3; i++)
        uv_thread_create(&t[i], reader, &x);
    struct cn_reg_error e = {0};
    for (int round = 0; round < 2000; round++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.%d.%d", round % 7, round % 200);
        struct cn_reg_instance a = inst("hot", ip, (uint16_t)(1000 + round % 13), "");
        cn_reg_register(x.r, &a, (uint64_t)round * 100, &e);
        if (round % 3 == 0)
            cn_reg_deregister(x.r, cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"),
                              CN_SLICE_LIT("hot"), CN_SLICE_LIT("DEFAULT"), cn_slice_of(ip),
                              (uint16_t)(1000 + round % 13), 1, 0, &e);
        cn_reg_tick(x.r, (uint64_t)round * 100);
    }
    atomic_store(&x.stop, 1);
    for (int i = 0; i < 3; i++)
        uv_thread_join(&t[i]);
    assert_true(atomic_load(&x.reads) > 0);
    cn_reg_free(x.r);
}

/* A service of many instances: each found by its address after others left (the index),
 * a register of a known address replacing it, and expiry finding them all on time although
 * it skips services until their earliest expiry. */
static void test_many_instances(void **state)
{
    (void)state;
    struct cn_reg *r = new_reg();
    struct cn_reg_error e = {0};
    char ip[32];
    for (int i = 0; i < 300; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 100, i % 100);
        struct cn_reg_instance in = inst("m", ip, (uint16_t)(1000 + i % 3), "");
        assert_int_equal(cn_reg_register(r, &in, (uint64_t)i, &e), 0);
    }
    for (int i = 1; i < 300; i += 2) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 100, i % 100);
        assert_int_equal(cn_reg_deregister(r, cn_slice_of(""), CN_SLICE_LIT("DEFAULT_GROUP"),
                                           CN_SLICE_LIT("m"), CN_SLICE_LIT("DEFAULT"),
                                           cn_slice_of(ip), (uint16_t)(1000 + i % 3), 1, 0, &e),
                         0);
    }
    uint64_t interval;
    for (int i = 0; i < 300; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 100, i % 100);
        struct cn_reg_instance in = inst("m", ip, (uint16_t)(1000 + i % 3), "");
        assert_int_equal(cn_reg_beat(r, &in, 0, 1000, &interval, &e), i % 2 ? CN_ENOENT : 0);
        in.port = (uint16_t)(1000 + (i + 1) % 3); /* same ip, another port: unknown */
        assert_int_equal(cn_reg_beat(r, &in, 0, 1000, &interval, &e), CN_ENOENT);
    }
    for (int i = 0; i < 300; i += 2) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 100, i % 100);
        struct cn_reg_instance in = inst("m", ip, (uint16_t)(1000 + i % 3), "");
        in.weight = 7;
        assert_int_equal(cn_reg_register(r, &in, 2000, &e), 0);
    }
    json_t *j = list(r, "m", "", 0);
    assert_int_equal(num_hosts(j), 150);
    for (size_t i = 0; i < 150; i++) {
        snprintf(ip, sizeof(ip), "10.0.%zu.%zu", 2 * i / 100, 2 * i % 100);
        assert_string_equal(json_string_value(json_object_get(host(j, i), "ip")), ip);
        assert_true(json_real_value(json_object_get(host(j, i), "weight")) == 7.0);
    }
    json_decref(j);
    /* Registered again at 2000: unhealthy past 17000, removed past 32000, not before. */
    assert_int_equal(cn_reg_tick(r, 17000), 0);
    assert_int_equal(cn_reg_tick(r, 17001), 150);
    assert_int_equal(cn_reg_tick(r, 32000), 0);
    assert_int_equal(cn_reg_tick(r, 32001), 150);
    j = list(r, "m", "", 0);
    assert_int_equal(num_hosts(j), 0);
    json_decref(j);
    cn_reg_free(r);
}

/* Persistent writes on the SQLite store from several threads at once (group commit): each
 * answered, memory and store agreeing after a reopen, the last of two writes of one instance
 * winning in both, an ephemeral register of an instance whose persistent put is in flight
 * refused. */
struct pwriter {
    struct cn_reg *r;
    int id, del;
    atomic_int failures;
};

static void pwriter(void *arg)
{
    struct pwriter *w = arg;
    struct cn_reg_error e = {0};
    for (int i = 0; i < 100; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.%d.0.%d", w->id, i);
        struct cn_reg_instance in = inst("p", ip, 80, "");
        in.ephemeral = 0;
        int rc = w->del ? cn_reg_deregister(w->r, in.ns, in.group, in.service, in.cluster, in.ip,
                                            80, 0, 0, &e)
                        : cn_reg_register(w->r, &in, 0, &e);
        if (rc)
            atomic_fetch_add(&w->failures, 1);
    }
}

/* max_instances_per_service with persistent puts in flight: those adding an instance count
 * as added, so one batch (writes committed together) cannot pass the limit either. */
static void test_persistent_limit_at_edge(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-reg-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct cn_reg_opts o;
    cn_reg_opts_default(&o);
    o.max_instances_per_service = 3;
    struct cn_reg *r = stored_reg(dir, &o);
    struct cn_reg_error e = {0};
    struct cn_reg_instance in = inst("lim", "10.3.0.1", 80, "");
    in.ephemeral = 0;
    assert_int_equal(cn_reg_register(r, &in, 0, &e), 0);
    /* A batch of four: a new one fills the service, a replacement of the one there is still
     * taken, the two other new ones are refused. */
    struct cn_reg_put p[4];
    struct cn_reg_put *pp[4];
    for (int i = 0; i < 4; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        p[i].in = inst("lim", "10.3.0.2", 80, "");
        p[i].in.ephemeral = 0;
        pp[i] = &p[i];
    }
    p[1].in.ip = cn_slice_of("10.3.0.3");
    p[2].in.ip = cn_slice_of("10.3.0.1");
    p[2].in.weight = 5;
    p[3].in.ip = cn_slice_of("10.3.0.4");
    cn_reg_put_batch(r, pp, 4, 0);
    assert_int_equal(p[0].rc, 0);
    assert_int_equal(p[1].rc, 0);
    assert_int_equal(p[2].rc, 0);
    assert_int_equal(p[3].rc, CN_ELIMIT);
    assert_string_equal(p[3].err.param, "ip");
    json_t *j = list(r, "lim", "", 0);
    assert_int_equal(num_hosts(j), 3);
    json_decref(j);
    /* Applied: nothing counts twice; one leaving makes room for exactly one. */
    in = inst("lim", "10.3.0.9", 80, "");
    assert_int_equal(cn_reg_register(r, &in, 0, &e), CN_ELIMIT);
    assert_int_equal(cn_reg_deregister(r, in.ns, in.group, in.service, in.cluster,
                                       cn_slice_of("10.3.0.2"), 80, 0, 0, &e),
                     0);
    assert_int_equal(cn_reg_register(r, &in, 0, &e), 0);
    in.port = 81;
    assert_int_equal(cn_reg_register(r, &in, 0, &e), CN_ELIMIT);
    cn_reg_free(r);
    assert_int_equal(cn_test_remove_dir(dir), 0);
}

static void test_persistent_group_commit(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-reg-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct cn_reg_opts o;
    cn_reg_opts_default(&o);
    struct cn_reg *r = stored_reg(dir, &o);
    /* Four writers of 100 each, then two of them again removing theirs, while ephemeral
     * registers and lists of the same service go on. */
    for (int round = 0; round < 2; round++) {
        struct pwriter w[4];
        uv_thread_t t[4];
        for (int i = 0; i < 4; i++) {
            w[i] = (struct pwriter){.r = r, .id = i, .del = round == 1 && i < 2};
            if (round == 0 || i < 2)
                uv_thread_create(&t[i], pwriter, &w[i]);
        }
        struct cn_reg_error e = {0};
        for (int i = 0; i < 200; i++) {
            char ip[32];
            snprintf(ip, sizeof(ip), "10.9.%d.%d", round, i);
            struct cn_reg_instance in = inst("p", ip, 80, "");
            assert_int_equal(cn_reg_register(r, &in, 0, &e), 0);
            json_decref(list(r, "p", "", 0));
        }
        for (int i = 0; i < 4; i++)
            if (round == 0 || i < 2) {
                uv_thread_join(&t[i]);
                assert_int_equal(atomic_load(&w[i].failures), 0);
            }
    }
    json_t *j = list(r, "p", "", 0);
    assert_int_equal(num_hosts(j), 200 + 400 + 200 - 200);
    json_decref(j);
    /* One batch: two puts of one instance (the last wins), an ephemeral one of it while they
     * are in flight (refused), an update of an instance only this batch registers (not found:
     * the batch's writes are concurrent), a bad one. */
    struct cn_reg_put p[5];
    struct cn_reg_put *pp[5];
    for (int i = 0; i < 5; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        p[i].in = inst("q", "10.1.1.1", 81, "");
        p[i].in.ephemeral = 0;
        pp[i] = &p[i];
    }
    p[0].in.weight = 2;
    p[1].in.weight = 3;
    p[2].in.ephemeral = 1;
    p[3].in = inst("q", "10.1.1.2", 81, "");
    p[3].in.ephemeral = 0;
    p[3].must_exist = 1;
    p[4].in.port = 0;
    cn_reg_put_batch(r, pp, 5, 0);
    assert_int_equal(p[0].rc, 0);
    assert_int_equal(p[1].rc, 0);
    assert_int_equal(p[2].rc, CN_EINVAL);
    assert_string_equal(p[2].err.param, "ephemeral");
    assert_int_equal(p[3].rc, CN_ENOENT);
    assert_int_equal(p[4].rc, CN_EINVAL);
    j = list(r, "q", "", 0);
    assert_int_equal(num_hosts(j), 1);
    assert_true(json_real_value(json_object_get(host(j, 0), "weight")) == 3.0);
    json_decref(j);
    cn_reg_free(r);
    /* What was stored: the persistent ones left (writers 2 and 3's), q's at weight 3. */
    r = stored_reg(dir, &o);
    j = list(r, "p", "", 0);
    assert_int_equal(num_hosts(j), 200);
    for (size_t i = 0; i < num_hosts(j); i++) {
        const char *ip = json_string_value(json_object_get(host(j, i), "ip"));
        assert_true(strncmp(ip, "10.2.0.", 7) == 0 || strncmp(ip, "10.3.0.", 7) == 0);
    }
    json_decref(j);
    j = list(r, "q", "", 0);
    assert_int_equal(num_hosts(j), 1);
    assert_true(json_real_value(json_object_get(host(j, 0), "weight")) == 3.0);
    json_decref(j);
    cn_reg_free(r);
    assert_int_equal(cn_test_remove_dir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_list_exact),
        cmocka_unit_test(test_register_replace_deregister),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_limits_at_edge),
        cmocka_unit_test(test_heartbeat_expiry),
        cmocka_unit_test(test_protection_threshold),
        cmocka_unit_test(test_clusters_and_disabled),
        cmocka_unit_test(test_listener_parse),
        cmocka_unit_test(test_forms_and_encoding),
        cmocka_unit_test(test_config_store_history_rollback),
        cmocka_unit_test(test_concurrent_reads),
        cmocka_unit_test(test_many_instances),
        cmocka_unit_test(test_persistent_group_commit),
        cmocka_unit_test(test_persistent_limit_at_edge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
