/* cairn rca: root cause analysis (docs/rca.md) of a running server's telemetry, as a ranked
 * table with the evidence of the first suspects, or --json. */
#include "cli/client.h"
#include "cli/cmd.h"
#include "telemetry/query.h"

#include <jansson.h>
#include <time.h>

#define EVIDENCE_SHOWN 3 /* suspects whose evidence the table prints */

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static double num(json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static long long inum(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static void fmt_time(char *dst, size_t len, const char *ns)
{
    uint64_t v = strtoull(ns, NULL, 10);
    time_t s = (time_t)(v / 1000000000u);
    struct tm tm;
    gmtime_r(&s, &tm);
    char b[32];
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(dst, len, "%s.%03uZ", b, (unsigned)(v / 1000000u % 1000u));
}

static int add(struct cn_buf *path, int *sep, const char *name, const char *value)
{
    if (cn_buf_puts(path, *sep ? "&" : "?") != 0 || cn_buf_puts(path, name) != 0 ||
        cn_buf_puts(path, "=") != 0 || cn_client_escape(path, value) != 0)
        return -1;
    *sep = 1;
    return 0;
}

static void print_figs(const char *label, json_t *f)
{
    printf("    %-8s count %lld, errors %lld, p50 %.3f ms, p99 %.3f ms, self %.3f ms/call, "
           "%.3f calls/request\n",
           label, inum(f, "count"), inum(f, "errors"), num(f, "p50Ms"), num(f, "p99Ms"),
           num(f, "selfMs"), num(f, "callsPerRequest"));
}

static void print_log(json_t *l)
{
    char when[40];
    fmt_time(when, sizeof(when), str(l, "timeUnixNano"));
    json_t *body = json_object_get(l, "body");
    const char *text = json_string_value(json_object_get(body, "stringValue"));
    char *dumped = text ? NULL : json_dumps(body, JSON_COMPACT);
    printf("      %s  %-6s  %-5s  %s  %s\n", when, str(l, "relation"), str(l, "severityText"),
           str(l, "service"),
           text     ? text
           : dumped ? dumped
                    : "");
    free(dumped);
}

static void print_table(json_t *doc)
{
    json_t *w = json_object_get(doc, "window"), *b = json_object_get(doc, "baseline");
    char t0[40], t1[40], b0[40], b1[40];
    fmt_time(t0, sizeof(t0), str(w, "start"));
    fmt_time(t1, sizeof(t1), str(w, "end"));
    fmt_time(b0, sizeof(b0), str(b, "start"));
    fmt_time(b1, sizeof(b1), str(b, "end"));
    if (strcmp(str(doc, "mode"), "trace") == 0)
        printf("trace %s, service %s\n", str(doc, "traceId"), str(doc, "service"));
    else
        printf("service %s\n", str(doc, "service"));
    printf("window    %s .. %s: %lld requests, %lld with errors (slow: >= %.3f ms)\n", t0, t1,
           inum(w, "requests"), inum(w, "errorRequests"), num(w, "slowThresholdMs"));
    printf("baseline  %s .. %s: %lld requests, %lld with errors\n", b0, b1, inum(b, "requests"),
           inum(b, "errorRequests"));
    json_t *ex = json_object_get(doc, "examined");
    if (json_is_true(json_object_get(ex, "sampled")) ||
        json_is_true(json_object_get(ex, "truncated")))
        printf("(bounded: %s%s%lld spans read; see docs/rca.md)\n",
               json_is_true(json_object_get(ex, "sampled")) ? "traces sampled, " : "",
               json_is_true(json_object_get(ex, "truncated")) ? "scan cut short, " : "",
               inum(ex, "spansRead"));
    json_t *sus = json_object_get(doc, "suspects");
    if (json_array_size(sus) == 0) {
        printf("\nno suspect: nothing changed or failed enough to rank\n");
        return;
    }
    printf("\n%4s  %6s  %-14s  %-20s  %-28s  %s\n", "RANK", "SCORE", "KIND", "SERVICE", "OPERATION",
           "WHY");
    size_t i;
    json_t *s;
    json_array_foreach(sus, i, s)
    {
        printf("%4lld  %6.3f  %-14s  %-20s  %-28s  %s\n", inum(s, "rank"), num(s, "score"),
               str(s, "kind"), str(s, "service"), str(s, "operation"), str(s, "reason"));
    }
    json_array_foreach(sus, i, s)
    {
        if (i >= EVIDENCE_SHOWN)
            break;
        json_t *ev = json_object_get(s, "evidence");
        printf("\n#%lld %s %s (%s)\n", inum(s, "rank"), str(s, "service"), str(s, "operation"),
               str(s, "kind"));
        print_figs("before", json_object_get(ev, "before"));
        print_figs("after", json_object_get(ev, "after"));
        json_t *vb = json_object_get(ev, "versionsBefore"),
               *va = json_object_get(ev, "versionsAfter");
        if (json_is_true(json_object_get(ev, "versionChanged"))) {
            char *x = json_dumps(vb, JSON_COMPACT), *y = json_dumps(va, JSON_COMPACT);
            printf("    service.version %s -> %s\n", x ? x : "", y ? y : "");
            free(x);
            free(y);
        }
        size_t k;
        json_t *m;
        json_array_foreach(json_object_get(ev, "errorMessages"), k, m)
        {
            if (k >= 3)
                break;
            printf("    error   %lldx \"%s\"%s\n", inum(m, "count"), str(m, "message"),
                   json_is_true(json_object_get(m, "new")) ? " (new)" : "");
        }
        json_t *t;
        printf("    traces ");
        json_array_foreach(json_object_get(ev, "traces"), k, t) printf(" %s", json_string_value(t));
        putchar('\n');
        json_t *sp = json_object_get(ev, "span");
        if (sp)
            printf("    span    %s %s: %.3f ms, self %.3f ms, %s%s%s\n", str(sp, "spanId"),
                   str(sp, "operation"), num(sp, "durationMs"), num(sp, "selfMs"),
                   str(sp, "status"), *str(sp, "message") ? ": " : "", str(sp, "message"));
        json_t *logs = json_object_get(ev, "logs");
        if (json_array_size(logs))
            printf("    logs\n");
        json_array_foreach(logs, k, t) print_log(t);
    }
}

/* "NNNns" for a query parameter. */
static void ns_param(char *dst, size_t len, uint64_t v)
{
    snprintf(dst, len, "%lluns", (unsigned long long)v);
}

int cmd_rca(int argc, char **argv)
{
    static const struct {
        const char *flag, *param;
    } flags[] = {
        {"--service", "service"},
        {"--trace", "trace"},
        {"--start", "start"},
        {"--end", "end"},
        {"--baseline-start", "baseline_start"},
        {"--baseline-end", "baseline_end"},
        {"--limit", "limit"},
    };
    struct cn_client cl;
    cn_client_defaults(&cl);
    struct cn_buf path;
    cn_buf_init(&path, 16384);
    cn_buf_puts(&path, "/api/v1/rca");
    int sep = 0, json = 0, rc = CN_EXIT_OK, has_start = 0, has_end = 0, has_target = 0;
    const char *since = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        size_t f = 0;
        while (f < CN_ARRAY_LEN(flags) && strcmp(flags[f].flag, a) != 0)
            f++;
        int conn = strcmp(a, "--server") == 0 || strcmp(a, "--token") == 0;
        int is_since = strcmp(a, "--since") == 0;
        if (f == CN_ARRAY_LEN(flags) && !conn && !is_since) {
            rc = cn_usage_error("rca",
                                a[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", a);
            goto out;
        }
        if (i + 1 >= argc) {
            rc = cn_usage_error("rca", "flag '%s' needs a value", a);
            goto out;
        }
        const char *v = argv[++i];
        if (conn) {
            if (a[2] == 's')
                cl.server = v;
            else
                cl.token = v;
        } else if (is_since) {
            since = v;
        } else {
            has_start |= strcmp(flags[f].param, "start") == 0;
            has_end |= strcmp(flags[f].param, "end") == 0;
            has_target |= f < 2; /* --service, --trace */
            if (add(&path, &sep, flags[f].param, v) != 0) {
                rc = cn_usage_error("rca", "query too long");
                goto out;
            }
        }
    }
    if (since) {
        uint64_t d;
        if (has_start || has_end) {
            rc = cn_usage_error("rca", "--since takes the place of --start and --end");
            goto out;
        }
        if (cn_query_parse_duration(cn_slice_of(since), &d) != 0 || d == 0) {
            rc = cn_usage_error("rca", "--since takes a duration such as 15m or 1h");
            goto out;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        char v[32];
        ns_param(v, sizeof(v), now > d ? now - d : 0);
        char e[32];
        ns_param(e, sizeof(e), now);
        if (add(&path, &sep, "start", v) != 0 || add(&path, &sep, "end", e) != 0) {
            rc = cn_usage_error("rca", "query too long");
            goto out;
        }
    }
    if (cn_buf_append(&path, "", 1) != 0) {
        rc = cn_usage_error("rca", "query too long");
        goto out;
    }
    if (!has_target) {
        rc = cn_usage_error("rca", "--service or --trace is required");
        goto out;
    }
    struct cn_buf body;
    cn_buf_init(&body, 256u << 20);
    long status = 0;
    char err[512];
    cl.timeout_ms = cl.timeout_ms > 120000 ? cl.timeout_ms : 120000;
    if (cn_client_get(&cl, path.ptr, &body, &status, err, sizeof(err)) != 0) {
        fprintf(stderr, "cairn: %s\n", err);
        rc = CN_EXIT_FAIL;
    } else if (status != 200) {
        rc = cn_client_report("rca", status, &body);
    } else if (json) {
        fwrite(body.ptr, 1, body.len, stdout);
        putchar('\n');
    } else {
        json_error_t je;
        json_t *doc = json_loadb(body.ptr, body.len, 0, &je);
        if (!doc) {
            fprintf(stderr, "cairn: the server's answer is not JSON: %s\n", je.text);
            rc = CN_EXIT_FAIL;
        } else {
            print_table(doc);
            json_decref(doc);
        }
    }
    cn_buf_release(&body);
out:
    cn_buf_release(&path);
    return rc;
}
