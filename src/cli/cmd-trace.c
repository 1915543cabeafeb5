/* cairn trace get ID: one trace from a running server, as an indented tree or JSON. */
#include "cli/client.h"
#include "cli/cmd.h"

#include <jansson.h>

static const char *const kind_names[] = {"unspecified", "internal", "server",
                                         "client",      "producer", "consumer"};

struct node {
    json_t *span;
    const char *id, *parent;
    uint64_t start, end;
    size_t *kids;
    size_t num_kids;
    int has_parent;
};

static uint64_t ns(json_t *span, const char *key)
{
    const char *s = json_string_value(json_object_get(span, key));
    return s ? strtoull(s, NULL, 10) : 0;
}

static const struct node *nodes_sorted_base;

static int by_start(const void *a, const void *b)
{
    const struct node *x = &nodes_sorted_base[*(const size_t *)a];
    const struct node *y = &nodes_sorted_base[*(const size_t *)b];
    return x->start < y->start ? -1 : x->start > y->start;
}

static void print_node(const struct node *nodes, size_t i, uint64_t t0, char *prefix, size_t plen,
                       int last, int root)
{
    const struct node *n = &nodes[i];
    json_t *s = n->span;
    json_t *res = json_object_get(s, "resource");
    const char *svc = json_string_value(json_object_get(res, "serviceName"));
    json_int_t kind = json_integer_value(json_object_get(s, "kind"));
    json_t *st = json_object_get(s, "status");
    json_int_t code = json_integer_value(json_object_get(st, "code"));
    const char *msg = json_string_value(json_object_get(st, "message"));
    printf("%s%s%s  %s  %s  +%.3fms  %.3fms%s%s%s\n", prefix,
           root ? "" : (last ? "\u2514\u2500\u2500 " : "\u251c\u2500\u2500 "),
           json_string_value(json_object_get(s, "name")), svc ? svc : "?",
           kind >= 0 && kind <= 5 ? kind_names[kind] : "?", (double)(n->start - t0) / 1e6,
           (double)(n->end - n->start) / 1e6, code == 2 ? "  ERROR" : "",
           code == 2 && msg && *msg ? " " : "", code == 2 && msg ? msg : "");
    size_t add = root ? 0 : 4;
    if (plen + 8 >= 4096)
        return; /* deeper than a terminal shows */
    if (!root)
        memcpy(prefix + plen, last ? "    " : "\u2502   ", last ? 4 : 6);
    size_t np = plen + (root ? 0 : (last ? 4 : 6));
    prefix[np] = '\0';
    (void)add;
    for (size_t k = 0; k < n->num_kids; k++)
        print_node(nodes, n->kids[k], t0, prefix, np, k + 1 == n->num_kids, 0);
    prefix[plen] = '\0';
}

static int print_tree(json_t *doc)
{
    json_t *spans = json_object_get(doc, "spans");
    size_t n = json_array_size(spans);
    struct node *nodes = calloc(n ? n : 1, sizeof(*nodes));
    if (!nodes)
        return CN_EXIT_FAIL;
    uint64_t t0 = UINT64_MAX, t1 = 0;
    json_t *services = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(spans, i);
        nodes[i].span = s;
        nodes[i].id = json_string_value(json_object_get(s, "spanId"));
        nodes[i].parent = json_string_value(json_object_get(s, "parentSpanId"));
        nodes[i].start = ns(s, "startTimeUnixNano");
        nodes[i].end = ns(s, "endTimeUnixNano");
        if (nodes[i].end < nodes[i].start)
            nodes[i].end = nodes[i].start;
        t0 = CN_MIN(t0, nodes[i].start);
        t1 = CN_MAX(t1, nodes[i].end);
        const char *svc =
            json_string_value(json_object_get(json_object_get(s, "resource"), "serviceName"));
        if (svc)
            json_object_set_new(services, svc, json_true());
    }
    /* Link children to parents; spans whose parent is not in the trace become roots. */
    for (size_t i = 0; i < n; i++) {
        if (!nodes[i].parent || !*nodes[i].parent)
            continue;
        for (size_t p = 0; p < n; p++) {
            if (p != i && nodes[p].id && strcmp(nodes[p].id, nodes[i].parent) == 0) {
                size_t *k = realloc(nodes[p].kids, (nodes[p].num_kids + 1) * sizeof(*k));
                if (!k)
                    break;
                nodes[p].kids = k;
                k[nodes[p].num_kids++] = i;
                nodes[i].has_parent = 1;
                break;
            }
        }
    }
    nodes_sorted_base = nodes;
    size_t *roots = calloc(n ? n : 1, sizeof(*roots));
    size_t num_roots = 0;
    for (size_t i = 0; i < n; i++) {
        if (nodes[i].num_kids > 1)
            qsort(nodes[i].kids, nodes[i].num_kids, sizeof(size_t), by_start);
        if (!nodes[i].has_parent && roots)
            roots[num_roots++] = i;
    }
    if (roots && num_roots > 1)
        qsort(roots, num_roots, sizeof(size_t), by_start);
    printf("trace %s  %zu spans, %zu services, %.3fms\n",
           json_string_value(json_object_get(doc, "traceId")), n, json_object_size(services),
           n ? (double)(t1 - t0) / 1e6 : 0.0);
    char prefix[4096] = "";
    for (size_t r = 0; roots && r < num_roots; r++) {
        const struct node *root = &nodes[roots[r]];
        if (root->parent && *root->parent)
            printf("(parent %s not in the trace)\n", root->parent);
        print_node(nodes, roots[r], t0, prefix, 0, 1, 1);
    }
    for (size_t i = 0; i < n; i++)
        free(nodes[i].kids);
    free(nodes);
    free(roots);
    json_decref(services);
    return CN_EXIT_OK;
}

static int trace_get(int argc, char **argv)
{
    struct cn_client cl;
    cn_client_defaults(&cl);
    int json = 0;
    const char *id = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--server") == 0 || strcmp(argv[i], "--token") == 0) {
            if (i + 1 >= argc)
                return cn_usage_error("trace", "flag '%s' needs a value", argv[i]);
            if (argv[i][2] == 's')
                cl.server = argv[++i];
            else
                cl.token = argv[++i];
        } else if (argv[i][0] == '-') {
            return cn_usage_error("trace", "unknown flag '%s'", argv[i]);
        } else if (!id) {
            id = argv[i];
        } else {
            return cn_usage_error("trace", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!id)
        return cn_usage_error("trace", "trace get needs a trace ID");
    size_t len = strlen(id);
    int hex = len == 32;
    for (size_t i = 0; hex && i < len; i++)
        hex = strchr("0123456789abcdefABCDEF", id[i]) != NULL;
    if (!hex)
        return cn_usage_error("trace", "'%s' is not a trace ID (32 hex digits)", id);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/traces/%s", id);
    struct cn_buf body;
    cn_buf_init(&body, 256u << 20);
    long status = 0;
    char err[512];
    if (cn_client_get(&cl, path, &body, &status, err, sizeof(err)) != 0) {
        fprintf(stderr, "cairn: %s\n", err);
        cn_buf_release(&body);
        return CN_EXIT_FAIL;
    }
    if (status != 200) {
        json_t *e = json_loadb(body.ptr ? body.ptr : "", body.len, 0, NULL);
        const char *m = json_string_value(json_object_get(e, "error"));
        fprintf(
            stderr, "cairn: trace %s: %s (HTTP %ld)\n", id,
            m ? m
              : (status == 401 ? "unauthorized: set --token or CAIRN_API_TOKEN" : "request failed"),
            status);
        json_decref(e);
        cn_buf_release(&body);
        return CN_EXIT_FAIL;
    }
    int rc = CN_EXIT_OK;
    if (json) {
        fwrite(body.ptr, 1, body.len, stdout);
    } else {
        json_error_t je;
        json_t *doc = json_loadb(body.ptr, body.len, 0, &je);
        if (!doc) {
            fprintf(stderr, "cairn: the server's answer is not JSON: %s\n", je.text);
            rc = CN_EXIT_FAIL;
        } else {
            rc = print_tree(doc);
            json_decref(doc);
        }
    }
    cn_buf_release(&body);
    return rc;
}

int cmd_trace(int argc, char **argv)
{
    if (argc < 2)
        return cn_usage_error("trace", "missing subcommand");
    if (strcmp(argv[1], "get") == 0)
        return trace_get(argc, argv);
    if (strcmp(argv[1], "search") == 0)
        return cn_trace_search(argc, argv);
    return cn_usage_error("trace", "unknown subcommand '%s'", argv[1]);
}
