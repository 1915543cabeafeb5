#include "http/router.h"

/* A node per path segment. Literal children are tried before the parameter child, which is
 * tried before a rest ("{name...}") child, so "/a/static" wins over "/a/{x}". */
struct node {
    char *literal; /* NULL for the root and for parameter nodes */
    char *param;   /* parameter name for parameter and rest nodes */
    int rest;
    struct node **kids;
    size_t num_kids;
    struct node *param_kid;
    struct node *rest_kid;
    int *routes; /* ids of routes ending here */
    size_t num_routes;
};

struct cn_router {
    struct node root;
    struct cn_route *routes;
    size_t num_routes;
};

struct cn_router *cn_router_new(void)
{
    return calloc(1, sizeof(struct cn_router));
}

static void node_release(struct node *n)
{
    for (size_t i = 0; i < n->num_kids; i++) {
        node_release(n->kids[i]);
        free(n->kids[i]);
    }
    free(n->kids);
    if (n->param_kid) {
        node_release(n->param_kid);
        free(n->param_kid);
    }
    if (n->rest_kid) {
        node_release(n->rest_kid);
        free(n->rest_kid);
    }
    free(n->literal);
    free(n->param);
    free(n->routes);
}

void cn_router_free(struct cn_router *r)
{
    if (!r)
        return;
    node_release(&r->root);
    for (size_t i = 0; i < r->num_routes; i++)
        free(r->routes[i].pattern);
    free(r->routes);
    free(r);
}

static struct node *child(struct node *n, const char *seg, size_t len)
{
    int is_param = len >= 2 && seg[0] == '{' && seg[len - 1] == '}';
    if (is_param) {
        int rest = len > 5 && memcmp(seg + len - 4, "...}", 4) == 0;
        size_t nlen = len - 2 - (rest ? 3 : 0);
        if (nlen == 0)
            return NULL;
        struct node **slot = rest ? &n->rest_kid : &n->param_kid;
        if (*slot) {
            if (strlen((*slot)->param) != nlen || memcmp((*slot)->param, seg + 1, nlen) != 0)
                return NULL; /* two names for one position */
            return *slot;
        }
        struct node *k = calloc(1, sizeof(*k));
        if (!k || !(k->param = strndup(seg + 1, nlen))) {
            free(k);
            return NULL;
        }
        k->rest = rest;
        *slot = k;
        return k;
    }
    for (size_t i = 0; i < len; i++)
        if (seg[i] == '{' || seg[i] == '}')
            return NULL;
    for (size_t i = 0; i < n->num_kids; i++)
        if (strlen(n->kids[i]->literal) == len && memcmp(n->kids[i]->literal, seg, len) == 0)
            return n->kids[i];
    struct node **kids = realloc(n->kids, (n->num_kids + 1) * sizeof(*kids));
    if (!kids)
        return NULL;
    n->kids = kids;
    struct node *k = calloc(1, sizeof(*k));
    if (!k || !(k->literal = strndup(seg, len))) {
        free(k);
        return NULL;
    }
    n->kids[n->num_kids++] = k;
    return k;
}

int cn_router_add(struct cn_router *r, unsigned methods, const char *pattern,
                  cn_http_handler_cb handler, void *ctx)
{
    if (pattern[0] != '/' || !methods || !handler)
        return CN_EINVAL;
    struct node *n = &r->root;
    const char *p = pattern + 1;
    while (*p || p == pattern + 1) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n->rest)
            return CN_EINVAL; /* nothing may follow a rest parameter */
        n = child(n, p, len);
        if (!n)
            return CN_EINVAL;
        if (!e)
            break;
        p = e + 1;
    }
    for (size_t i = 0; i < n->num_routes; i++)
        if (r->routes[n->routes[i]].methods & methods)
            return CN_EINVAL;
    struct cn_route *routes = realloc(r->routes, (r->num_routes + 1) * sizeof(*routes));
    if (!routes)
        return CN_ENOMEM;
    r->routes = routes;
    int *ids = realloc(n->routes, (n->num_routes + 1) * sizeof(*ids));
    if (!ids)
        return CN_ENOMEM;
    n->routes = ids;
    int id = (int)r->num_routes;
    struct cn_route *rt = &r->routes[id];
    rt->id = id;
    rt->flags = 0;
    rt->methods = methods;
    rt->pattern = strdup(pattern);
    rt->handler = handler;
    rt->ctx = ctx;
    if (!rt->pattern)
        return CN_ENOMEM;
    r->num_routes++;
    n->routes[n->num_routes++] = id;
    return id;
}

/* Walks segments from path; on a node where the path ends, picks a route by method. */
static const struct node *walk(const struct node *n, const char *p, const char *end, int done,
                               struct cn_route_params *params)
{
    if (done)
        return n;
    const char *e = memchr(p, '/', (size_t)(end - p));
    if (!e)
        e = end;
    size_t len = (size_t)(e - p);
    const char *next = e < end ? e + 1 : end;
    int last = e == end;
    for (size_t i = 0; i < n->num_kids; i++) {
        const struct node *k = n->kids[i];
        if (strlen(k->literal) == len && memcmp(k->literal, p, len) == 0) {
            const struct node *f = walk(k, next, end, last, params);
            if (f)
                return f;
        }
    }
    if (n->param_kid && len > 0 && params->num < CN_ROUTE_MAX_PARAMS) {
        size_t at = params->num++;
        params->names[at] = cn_slice_of(n->param_kid->param);
        params->values[at] = (struct cn_slice){p, len};
        const struct node *f = walk(n->param_kid, next, end, last, params);
        if (f)
            return f;
        params->num = at;
    }
    if (n->rest_kid && params->num < CN_ROUTE_MAX_PARAMS && n->rest_kid->num_routes) {
        size_t at = params->num++;
        params->names[at] = cn_slice_of(n->rest_kid->param);
        params->values[at] = (struct cn_slice){p, (size_t)(end - p)};
        return n->rest_kid;
    }
    return NULL;
}

enum cn_route_match cn_router_match(const struct cn_router *r, int method, struct cn_slice path,
                                    const struct cn_route **out_route,
                                    struct cn_route_params *out_params, unsigned *out_allowed)
{
    out_params->num = 0;
    if (path.len == 0 || path.ptr[0] != '/')
        return CN_ROUTE_NOT_FOUND;
    const struct node *n = walk(&r->root, path.ptr + 1, path.ptr + path.len, 0, out_params);
    if (!n || n->num_routes == 0)
        return CN_ROUTE_NOT_FOUND;
    unsigned allowed = 0;
    for (size_t i = 0; i < n->num_routes; i++) {
        const struct cn_route *rt = &r->routes[n->routes[i]];
        if (method >= 0 && method < 32 && (rt->methods & CN_M(method))) {
            *out_route = rt;
            return CN_ROUTE_FOUND;
        }
        allowed |= rt->methods;
    }
    *out_allowed = allowed;
    return CN_ROUTE_BAD_METHOD;
}

size_t cn_router_num_routes(const struct cn_router *r)
{
    return r->num_routes;
}

const struct cn_route *cn_router_route(const struct cn_router *r, size_t id)
{
    return id < r->num_routes ? &r->routes[id] : NULL;
}

int cn_router_set_flags(struct cn_router *r, int id, unsigned flags)
{
    if (id < 0 || (size_t)id >= r->num_routes)
        return CN_EINVAL;
    r->routes[id].flags = flags;
    return 0;
}
