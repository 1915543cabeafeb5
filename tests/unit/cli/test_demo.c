/* Tests src/cli/demo.c: the demo's flags taken out of `cairn up`'s argv, the executable
 * search on PATH, and the fault document's changes (exact JSON, every refused field). */
#include "cli/demo.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char err[512];

static int take(struct cn_demo_opts *o, int *argc, char **argv)
{
    err[0] = '\0';
    return cn_demo_take_flags(o, argc, argv, err, sizeof(err));
}

static void flags_taken_out(void **state)
{
    (void)state;
    char *argv[] = {"up",
                    "--workers",
                    "2",
                    "--demo",
                    "--demo-rps=12",
                    "--set",
                    "a=b",
                    "--demo-gateway",
                    "127.0.0.1:0",
                    "--demo-route",
                    "registry",
                    "--demo-dir=/x/demo",
                    NULL};
    int argc = 12;
    struct cn_demo_opts o;
    assert_int_equal(take(&o, &argc, argv), 0);
    assert_int_equal(argc, 5);
    assert_string_equal(argv[1], "--workers");
    assert_string_equal(argv[2], "2");
    assert_string_equal(argv[3], "--set");
    assert_string_equal(argv[4], "a=b");
    assert_null(argv[5]);
    assert_true(o.enabled);
    assert_int_equal(o.rps, 12);
    assert_string_equal(o.gateway, "127.0.0.1:0");
    assert_string_equal(o.route, "registry");
    assert_string_equal(o.dir, "/x/demo");
}

static void flags_defaults(void **state)
{
    (void)state;
    char *argv[] = {"up", "--demo-rpsx", NULL};
    int argc = 2;
    struct cn_demo_opts o;
    assert_int_equal(take(&o, &argc, argv), 0);
    assert_int_equal(argc, 2); /* not ours: left for up's own parser to refuse */
    assert_false(o.enabled);
    assert_int_equal(o.rps, 5);
    assert_string_equal(o.gateway, "127.0.0.1:8080");
    assert_string_equal(o.route, "gateway");
    assert_null(o.dir);
}

static void flags_refused(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b, *msg;
    } cases[] = {
        {"--demo-rps", "0", "--demo-rps: '0' is not a number from 1 to 1000"},
        {"--demo-rps", "1001", "--demo-rps: '1001' is not a number from 1 to 1000"},
        {"--demo-rps", "-5", "--demo-rps: '-5' is not a number from 1 to 1000"},
        {"--demo-rps", "5x", "--demo-rps: '5x' is not a number from 1 to 1000"},
        {"--demo-route", "shell", "--demo-route: 'shell' is not gateway, registry or direct"},
        {"--demo-gateway", "nowhere", "--demo-gateway: 'nowhere' is not HOST:PORT"},
        {"--demo-dir", NULL, "flag '--demo-dir' needs a value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[] = {"up", (char *)cases[i].a, (char *)cases[i].b, NULL};
        int argc = cases[i].b ? 3 : 2;
        struct cn_demo_opts o;
        assert_int_equal(take(&o, &argc, argv), -1);
        assert_string_equal(err, cases[i].msg);
    }
}

static void find_exe(void **state)
{
    (void)state;
    char dir[] = "/tmp/cn-demo-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[64], b[64], exe[128], out[512];
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b, sizeof(b), "%s/b", dir);
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(b, 0700), 0);
    /* a/node exists but is not executable; b/node is. */
    snprintf(exe, sizeof(exe), "%s/node", a);
    FILE *f = fopen(exe, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(exe, sizeof(exe), "%s/node", b);
    f = fopen(exe, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(chmod(exe, 0700), 0);
    char path[600];
    snprintf(path, sizeof(path), "/nonexistent:%s:%s", a, b);
    assert_int_equal(cn_demo_find_exe(path, "node", out, sizeof(out)), 0);
    assert_string_equal(out, exe);
    assert_int_equal(cn_demo_find_exe(path, "nodejs", out, sizeof(out)), CN_ENOENT);
    assert_string_equal(out, "");
    assert_int_equal(cn_demo_find_exe(path, "b/node", out, sizeof(out)), CN_ENOENT);
    assert_int_equal(cn_demo_find_exe(NULL, "node", out, sizeof(out)), CN_ENOENT);
    /* A directory named like the command is not it. */
    snprintf(path, sizeof(path), "%s", dir);
    assert_int_equal(cn_demo_find_exe(path, "a", out, sizeof(out)), CN_ENOENT);
    unlink(exe);
    snprintf(exe, sizeof(exe), "%s/node", a);
    unlink(exe);
    rmdir(a);
    rmdir(b);
    rmdir(dir);
}

/* Applies a fault to doc; returns the new document (static buffer) or fails. */
static const char *apply(const char *doc, const char *svc, const char *fault, double rate,
                         unsigned lat)
{
    static char text[1024];
    struct cn_buf out;
    cn_buf_init(&out, 4096);
    struct cn_demo_fault f = {svc, fault, rate, lat};
    err[0] = '\0';
    int rc = cn_demo_fault_apply(doc, doc ? strlen(doc) : 0, &f, &out, err, sizeof(err));
    if (rc)
        fail_msg("apply failed: %s", err);
    snprintf(text, sizeof(text), "%.*s", (int)out.len, out.ptr);
    cn_buf_release(&out);
    return text;
}

static void faults_applied(void **state)
{
    (void)state;
    assert_string_equal(apply(NULL, "payments", "error", 0, 0),
                        "{\"payments\":{\"errorRate\":0.5,\"fault\":\"error\"}}");
    assert_string_equal(apply("{\"payments\":{\"fault\":\"error\",\"errorRate\":0.5}}", "checkout",
                              "latency", 0, 250),
                        "{\"checkout\":{\"fault\":\"latency\",\"latencyMs\":250},"
                        "\"payments\":{\"errorRate\":0.5,\"fault\":\"error\"}}");
    assert_string_equal(apply("{}", "shipping", "bad-version", 0, 0),
                        "{\"shipping\":{\"errorRate\":0.4,\"fault\":\"bad-version\"}}");
    assert_string_equal(apply("{}", "inventory", "error", 0.25, 0),
                        "{\"inventory\":{\"errorRate\":0.25,\"fault\":\"error\"}}");
    assert_string_equal(apply("{}", "frontend", "latency", 0, 0),
                        "{\"frontend\":{\"fault\":\"latency\",\"latencyMs\":400}}");
    /* A second fault on a service replaces the first. */
    assert_string_equal(apply("{\"payments\":{\"fault\":\"error\",\"errorRate\":0.5}}", "payments",
                              "latency", 0, 0),
                        "{\"payments\":{\"fault\":\"latency\",\"latencyMs\":400}}");
    assert_string_equal(
        apply("{\"payments\":{\"fault\":\"error\"},\"checkout\":{\"fault\":\"latency\"}}",
              "payments", "clear", 0, 0),
        "{\"checkout\":{\"fault\":\"latency\"}}");
    assert_string_equal(
        apply("{\"payments\":{\"fault\":\"error\"},\"checkout\":{\"fault\":\"latency\"}}", "all",
              "clear", 0, 0),
        "{}");
    /* A document broken by hand starts again from nothing. */
    assert_string_equal(apply("[1, 2", "payments", "clear", 0, 0), "{}");
}

static void faults_refused(void **state)
{
    (void)state;
    static const struct {
        const char *svc, *fault;
        double rate;
        unsigned lat;
        const char *msg;
    } cases[] = {
        {"payments", "melt", 0, 0, "fault: 'melt' is not error, latency, bad-version or clear"},
        {"payments", NULL, 0, 0, "fault: '' is not error, latency, bad-version or clear"},
        {"billing", "error", 0, 0,
         "service: 'billing' is not a demo service (frontend, recommendations, checkout, "
         "inventory, payments, shipping)"},
        {NULL, "clear", 0, 0,
         "service: '' is not a demo service (frontend, recommendations, checkout, inventory, "
         "payments, shipping, all)"},
        {"all", "error", 0, 0, "service: 'all' goes only with clear"},
        {"payments", "error", 1.5, 0, "errorRate: must be from 0 to 1"},
        {"payments", "error", -0.1, 0, "errorRate: must be from 0 to 1"},
        {"payments", "latency", 0, 60001, "latencyMs: must be at most 60000"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cn_buf out;
        cn_buf_init(&out, 4096);
        struct cn_demo_fault f = {cases[i].svc, cases[i].fault, cases[i].rate, cases[i].lat};
        err[0] = '\0';
        assert_int_equal(cn_demo_fault_apply("{}", 2, &f, &out, err, sizeof(err)), CN_EINVAL);
        assert_string_equal(err, cases[i].msg);
        assert_int_equal(out.len, 0);
        cn_buf_release(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flags_taken_out), cmocka_unit_test(flags_defaults),
        cmocka_unit_test(flags_refused),   cmocka_unit_test(find_exe),
        cmocka_unit_test(faults_applied),  cmocka_unit_test(faults_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
