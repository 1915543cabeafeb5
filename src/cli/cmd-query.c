/* cairn trace search, cairn topo, cairn logs [-f]: the native query API (docs/query.md)
 * from the command line, as tables or --json. */
#include "cli/client.h"
#include "cli/cmd.h"

#include <jansson.h>
#include <time.h>

/* A flag that becomes a query parameter. */
struct qflag {
    const char *flag;  /* "--service" */
    const char *param; /* "service" */
};

/* What every query command shares: the client, --json, the query being built. */
struct qcmd {
    const char *name; /* for usage errors: "trace", "topo", "logs" */
    struct cn_client cl;
    int json, follow;
    struct cn_buf path;
};

/* Parses argv[from..] against flags plus --json, --server, --token (and -f/--follow when
 * follow_ok). Returns 0, or the usage error's exit code. */
static int parse_flags(struct qcmd *q, int argc, char **argv, int from, const struct qflag *flags,
                       size_t num_flags, int follow_ok)
{
    cn_client_defaults(&q->cl);
    int sep = 0; /* the paths given carry no query yet */
    for (int i = from; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            q->json = 1;
            continue;
        }
        if (follow_ok && (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0)) {
            q->follow = 1;
            continue;
        }
        const struct qflag *f = NULL;
        for (size_t k = 0; k < num_flags && !f; k++)
            if (strcmp(flags[k].flag, a) == 0)
                f = &flags[k];
        int is_conn = strcmp(a, "--server") == 0 || strcmp(a, "--token") == 0;
        if (!f && !is_conn)
            return cn_usage_error(
                q->name, a[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", a);
        if (i + 1 >= argc)
            return cn_usage_error(q->name, "flag '%s' needs a value", a);
        const char *v = argv[++i];
        if (is_conn) {
            if (a[2] == 's')
                q->cl.server = v;
            else
                q->cl.token = v;
            continue;
        }
        if (cn_buf_puts(&q->path, sep ? "&" : "?") != 0 || cn_buf_puts(&q->path, f->param) != 0 ||
            cn_buf_puts(&q->path, "=") != 0 || cn_client_escape(&q->path, v) != 0)
            return cn_usage_error(q->name, "query too long");
        sep = 1;
    }
    return cn_buf_append(&q->path, "", 1) == 0 ? 0 : cn_usage_error(q->name, "query too long");
}

/* GETs q->path; on 200 returns the parsed document (or prints it raw with --json and returns
 * NULL with *rc 0). */
static json_t *fetch(struct qcmd *q, const char *what, int *rc)
{
    return cn_client_json(&q->cl, "GET", q->path.ptr, NULL, what, q->json, 256u << 20, rc);
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* "2024-05-01T12:00:00.123Z" from a string of nanoseconds. */
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

/* ---- trace search ---------------------------------------------------------------------- */

int cn_trace_search(int argc, char **argv)
{
    static const struct qflag flags[] = {
        {"--service", "service"},
        {"--operation", "operation"},
        {"--tag", "tag"},
        {"--min-duration", "minDuration"},
        {"--max-duration", "maxDuration"},
        {"--status", "status"},
        {"--kind", "kind"},
        {"--start", "start"},
        {"--end", "end"},
        {"--limit", "limit"},
        {"--order", "order"},
    };
    struct qcmd q = {.name = "trace"};
    cn_buf_init(&q.path, 16384);
    cn_buf_puts(&q.path, "/api/v1/traces");
    int rc = parse_flags(&q, argc, argv, 2, flags, CN_ARRAY_LEN(flags), 0);
    if (rc) {
        cn_buf_release(&q.path);
        return rc;
    }
    json_t *doc = fetch(&q, "trace search", &rc);
    cn_buf_release(&q.path);
    if (!doc)
        return rc;
    json_t *traces = json_object_get(doc, "traces");
    printf("%-32s  %-24s  %12s  %5s  %6s  %s\n", "TRACE ID", "START (UTC)", "DURATION", "SPANS",
           "ERRORS", "ROOT");
    size_t i;
    json_t *t;
    json_array_foreach(traces, i, t)
    {
        char when[40];
        fmt_time(when, sizeof(when), str(t, "startTimeUnixNano"));
        printf("%-32s  %-24s  %10.3fms  %5lld  %6lld  %s: %s\n", str(t, "traceId"), when,
               json_real_value(json_object_get(t, "durationMs")),
               (long long)json_integer_value(json_object_get(t, "spanCount")),
               (long long)json_integer_value(json_object_get(t, "errorCount")),
               str(t, "rootService"), str(t, "rootOperation"));
    }
    if (json_is_true(json_object_get(doc, "truncated")))
        printf("(the scan stopped at query.max_scan_records: older matches may exist)\n");
    json_decref(doc);
    return CN_EXIT_OK;
}

/* ---- topology -------------------------------------------------------------------------- */

int cmd_topo(int argc, char **argv)
{
    static const struct qflag flags[] = {
        {"--service", "service"}, {"--depth", "depth"}, {"--start", "start"}, {"--end", "end"}};
    struct qcmd q = {.name = "topo"};
    cn_buf_init(&q.path, 16384);
    cn_buf_puts(&q.path, "/api/v1/topology");
    int rc = parse_flags(&q, argc, argv, 1, flags, CN_ARRAY_LEN(flags), 0);
    if (rc) {
        cn_buf_release(&q.path);
        return rc;
    }
    json_t *doc = fetch(&q, "topology", &rc);
    cn_buf_release(&q.path);
    if (!doc)
        return rc;
    size_t i;
    json_t *n;
    printf("%-24s  %8s  %7s  %6s  %8s  %9s  %9s  %9s\n", "SERVICE", "REQUESTS", "ERRORS", "ERR%",
           "RATE/S", "P50", "P95", "P99");
    json_array_foreach(json_object_get(doc, "nodes"), i, n)
    {
        printf("%-24s  %8lld  %7lld  %5.1f%%  %8.3f  %7.2fms  %7.2fms  %7.2fms\n",
               str(n, "service"), (long long)json_integer_value(json_object_get(n, "count")),
               (long long)json_integer_value(json_object_get(n, "errors")),
               100 * json_real_value(json_object_get(n, "errorRatio")),
               json_real_value(json_object_get(n, "rate")),
               json_real_value(json_object_get(n, "p50Ms")),
               json_real_value(json_object_get(n, "p95Ms")),
               json_real_value(json_object_get(n, "p99Ms")));
    }
    printf("\n%-20s    %-20s  %8s  %7s  %6s  %9s  %9s  %9s\n", "CALLER", "CALLEE", "CALLS",
           "ERRORS", "ERR%", "P50", "P95", "P99");
    json_array_foreach(json_object_get(doc, "edges"), i, n)
    {
        printf("%-20s -> %-20s  %8lld  %7lld  %5.1f%%  %7.2fms  %7.2fms  %7.2fms%s\n",
               str(n, "caller"), str(n, "callee"),
               (long long)json_integer_value(json_object_get(n, "count")),
               (long long)json_integer_value(json_object_get(n, "errors")),
               100 * json_real_value(json_object_get(n, "errorRatio")),
               json_real_value(json_object_get(n, "p50Ms")),
               json_real_value(json_object_get(n, "p95Ms")),
               json_real_value(json_object_get(n, "p99Ms")),
               json_is_true(json_object_get(n, "uninstrumented")) ? "  (uninstrumented)" : "");
    }
    json_decref(doc);
    return CN_EXIT_OK;
}

/* ---- logs ------------------------------------------------------------------------------ */

static void print_log(json_t *l)
{
    char when[40];
    fmt_time(when, sizeof(when), str(l, "timeUnixNano"));
    const char *sev = str(l, "severityText");
    char sevnum[8];
    if (!*sev) {
        snprintf(sevnum, sizeof(sevnum), "SEV%lld",
                 (long long)json_integer_value(json_object_get(l, "severityNumber")));
        sev = sevnum;
    }
    json_t *body = json_object_get(l, "body");
    const char *text = json_string_value(json_object_get(body, "stringValue"));
    char *dumped = text ? NULL : json_dumps(body, JSON_COMPACT);
    printf("%s  %-5s  %s  %s", when, sev, str(l, "service"), text ? text : dumped ? dumped : "");
    free(dumped);
    if (*str(l, "traceId"))
        printf("  trace=%s span=%s", str(l, "traceId"), str(l, "spanId"));
    if (*str(l, "codeUrl"))
        printf("  code=%s", str(l, "codeUrl"));
    putchar('\n');
}

static int on_line(void *ctx, const char *line, size_t len)
{
    struct qcmd *q = ctx;
    if (len == 0)
        return 0; /* heartbeat */
    if (q->json) {
        fwrite(line, 1, len, stdout);
        putchar('\n');
    } else {
        json_t *l = json_loadb(line, len, 0, NULL);
        if (json_object_get(l, "dropped"))
            printf("(%lld records dropped: the tail fell behind)\n",
                   (long long)json_integer_value(json_object_get(l, "dropped")));
        else if (l)
            print_log(l);
        json_decref(l);
    }
    fflush(stdout);
    return 0;
}

int cmd_logs(int argc, char **argv)
{
    static const struct qflag flags[] = {
        {"--service", "service"}, {"--severity", "severity"},
        {"--grep", "q"},          {"-q", "q"},
        {"--attr", "attr"},       {"--trace", "traceId"},
        {"--start", "start"},     {"--end", "end"},
        {"--limit", "limit"},
    };
    struct qcmd q = {.name = "logs"};
    cn_buf_init(&q.path, 16384);
    cn_buf_puts(&q.path, "/api/v1/logs");
    int rc = parse_flags(&q, argc, argv, 1, flags, CN_ARRAY_LEN(flags), 1);
    if (rc) {
        cn_buf_release(&q.path);
        return rc;
    }
    if (q.follow) {
        const char *p = q.path.ptr;
        if (strstr(p, "start=") || strstr(p, "end=") || strstr(p, "limit=")) {
            cn_buf_release(&q.path);
            return cn_usage_error("logs", "-f follows new records: --start, --end and --limit "
                                          "do not apply");
        }
        struct cn_buf tail;
        cn_buf_init(&tail, 16384);
        cn_buf_puts(&tail, "/api/v1/logs/tail");
        cn_buf_puts(&tail, q.path.ptr + strlen("/api/v1/logs"));
        cn_buf_append(&tail, "", 1);
        struct cn_buf errb;
        cn_buf_init(&errb, 1u << 20);
        long status = 0;
        char err[512];
        rc = CN_EXIT_OK;
        if (cn_client_stream(&q.cl, tail.ptr, on_line, &q, &errb, &status, err, sizeof(err)) != 0) {
            fprintf(stderr, "cairn: %s\n", err);
            rc = CN_EXIT_FAIL;
        } else if (status != 200) {
            rc = cn_client_report("logs", status, &errb);
        }
        cn_buf_release(&errb);
        cn_buf_release(&tail);
        cn_buf_release(&q.path);
        return rc;
    }
    json_t *doc = fetch(&q, "logs", &rc);
    cn_buf_release(&q.path);
    if (!doc)
        return rc;
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(doc, "logs"), i, l) print_log(l);
    if (json_is_true(json_object_get(doc, "truncated")))
        fprintf(stderr, "(the scan stopped at query.max_scan_records: older matches may "
                        "exist)\n");
    json_decref(doc);
    return CN_EXIT_OK;
}
