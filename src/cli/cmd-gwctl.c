/* cairn gateway status|routes|clusters: a running gateway's state from its admin API
 * (GET /api/v1/gateway/status, docs/gateway.md), as tables or --json. */
#include "cli/client.h"
#include "cli/cmd.h"

#include <jansson.h>

#define MAX_ANSWER (64u << 20)

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long long inum(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* A latency bound in seconds (or null: past the last bucket) for a table cell. */
static void fmt_secs(char *dst, size_t len, json_t *v)
{
    if (!json_is_number(v))
        snprintf(dst, len, "-");
    else if (json_number_value(v) < 1)
        snprintf(dst, len, "%.3gms", json_number_value(v) * 1000);
    else
        snprintf(dst, len, "%.3gs", json_number_value(v));
}

/* Appends the strings of a JSON array joined by sep ("*" when empty) into dst. */
static void join(char *dst, size_t len, json_t *arr, const char *sep)
{
    size_t off = 0;
    size_t i;
    json_t *v;
    dst[0] = '\0';
    json_array_foreach(arr, i, v)
    {
        int n = snprintf(dst + off, len - off, "%s%s", i ? sep : "", json_string_value(v));
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
    if (!off)
        snprintf(dst, len, "*");
}

static void print_status(json_t *st)
{
    json_t *ws = json_object_get(st, "workers");
    printf("generation %lld, revision %lld (changed by %s), %zu workers, %s\n",
           inum(st, "generation"), inum(st, "revision"), str(st, "source"), json_array_size(ws),
           json_is_true(json_object_get(st, "converged")) ? "all on it" : "not all on it yet");
    size_t i;
    json_t *v;
    json_array_foreach(ws, i, v)
        printf("  worker %lld  generation %lld\n", inum(v, "id"), inum(v, "generation"));
    printf("listeners:\n");
    json_array_foreach(json_object_get(st, "listeners"), i, v)
        printf("  %-16s %s\n", str(v, "name"), str(v, "address"));
    long long up = 0, total = 0;
    json_array_foreach(json_object_get(st, "clusters"), i, v)
    {
        up += inum(v, "endpoints_up");
        total += (long long)json_array_size(json_object_get(v, "endpoints"));
    }
    printf("%zu routes, %zu clusters, %lld of %lld endpoints up\n",
           json_array_size(json_object_get(st, "routes")),
           json_array_size(json_object_get(st, "clusters")), up, total);
}

static void print_routes(json_t *st)
{
    printf("%-20s %-24s %-28s %-24s %10s %6s %9s %9s\n", "ROUTE", "HOSTS", "MATCHES", "BACKENDS",
           "REQUESTS", "5XX", "P50", "P99");
    size_t i;
    json_t *rt;
    json_array_foreach(json_object_get(st, "routes"), i, rt)
    {
        char hosts[256], match[256], backends[256], p50[32], p99[32];
        join(hosts, sizeof(hosts), json_object_get(rt, "hostnames"), ",");
        json_t *ms = json_object_get(rt, "matches");
        json_t *m0 = json_array_get(ms, 0), *path = json_object_get(m0, "path");
        const char *method = str(m0, "method");
        int n = snprintf(match, sizeof(match), "%s%s%s %s", method, *method ? " " : "",
                         str(path, "type"), str(path, "value"));
        if (json_array_size(ms) > 1 && n > 0 && (size_t)n < sizeof(match))
            snprintf(match + n, sizeof(match) - (size_t)n, " (+%zu)", json_array_size(ms) - 1);
        size_t off = 0, k;
        json_t *b;
        backends[0] = '\0';
        json_array_foreach(json_object_get(rt, "backends"), k, b)
        {
            int w = snprintf(backends + off, sizeof(backends) - off, "%s%s:%lld", k ? "," : "",
                             str(b, "cluster"), inum(b, "weight"));
            if (w < 0 || (size_t)w >= sizeof(backends) - off)
                break;
            off += (size_t)w;
        }
        json_t *s = json_object_get(rt, "stats");
        fmt_secs(p50, sizeof(p50), json_object_get(s, "p50_s"));
        fmt_secs(p99, sizeof(p99), json_object_get(s, "p99_s"));
        printf("%-20s %-24s %-28s %-24s %10lld %6lld %9s %9s\n", str(rt, "name"), hosts, match,
               off ? backends : "-", inum(s, "requests"), inum(s, "errors"), p50, p99);
    }
}

static void print_clusters(json_t *st)
{
    printf("%-20s %-16s %-24s %6s %-10s %10s %6s %9s\n", "CLUSTER", "POLICY", "ENDPOINT", "WEIGHT",
           "STATE", "REQUESTS", "5XX", "P99");
    size_t i;
    json_t *cl;
    json_array_foreach(json_object_get(st, "clusters"), i, cl)
    {
        json_t *s = json_object_get(cl, "stats"), *eps = json_object_get(cl, "endpoints");
        char p99[32];
        fmt_secs(p99, sizeof(p99), json_object_get(s, "p99_s"));
        if (!json_array_size(eps))
            printf("%-20s %-16s %-24s %6s %-10s %10lld %6lld %9s\n", str(cl, "name"),
                   str(cl, "policy"), "(none)", "-", "-", inum(s, "requests"), inum(s, "errors"),
                   p99);
        size_t k;
        json_t *ep;
        json_array_foreach(eps, k, ep)
        {
            char state[48];
            if (json_is_true(json_object_get(ep, "ejected")))
                snprintf(state, sizeof(state), "ejected %llds",
                         (inum(ep, "ejected_for_ms") + 999) / 1000);
            else
                snprintf(state, sizeof(state), "%s", str(ep, "state"));
            /* the cluster's own figures stand on its first endpoint's row */
            if (k == 0)
                printf("%-20s %-16s %-24s %6lld %-10s %10lld %6lld %9s\n", str(cl, "name"),
                       str(cl, "policy"), str(ep, "address"), inum(ep, "weight"), state,
                       inum(s, "requests"), inum(s, "errors"), p99);
            else
                printf("%-20s %-16s %-24s %6lld %-10s\n", "", "", str(ep, "address"),
                       inum(ep, "weight"), state);
        }
    }
}

int cn_gateway_ctl(int argc, char **argv)
{
    const char *what = argv[1];
    struct cn_client cl;
    cn_client_defaults(&cl);
    int json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (strcmp(a, "--server") != 0 && strcmp(a, "--token") != 0)
            return cn_usage_error(
                "gateway", a[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", a);
        if (i + 1 >= argc)
            return cn_usage_error("gateway", "flag '%s' needs a value", a);
        if (a[2] == 's')
            cl.server = argv[++i];
        else
            cl.token = argv[++i];
    }
    char name[64];
    snprintf(name, sizeof(name), "gateway %s", what);
    int rc;
    json_t *st =
        cn_client_json(&cl, "GET", "/api/v1/gateway/status", NULL, name, 0, MAX_ANSWER, &rc);
    if (!st)
        return rc;
    int status = strcmp(what, "status") == 0, routes = strcmp(what, "routes") == 0;
    if (json) {
        /* --json: the whole status, or just its routes or clusters array */
        json_t *part = status ? st : json_object_get(st, routes ? "routes" : "clusters");
        if (json_dumpf(part, stdout, JSON_INDENT(2)) != 0)
            rc = CN_EXIT_FAIL;
        putchar('\n');
    } else if (status) {
        print_status(st);
    } else if (routes) {
        print_routes(st);
    } else {
        print_clusters(st);
    }
    json_decref(st);
    return rc;
}
