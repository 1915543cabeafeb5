/* Router: method + path patterns with parameters ("/api/v1/traces/{id}"), compiled into a
 * segment tree. Built once before the server starts, then read-only and shared by threads. */
#ifndef CN_HTTP_ROUTER_H
#define CN_HTTP_ROUTER_H

#include "base/base.h"

#include <llhttp.h> /* HTTP_GET ... method numbers */

#define CN_ROUTE_MAX_PARAMS 8

struct cn_route_params {
    size_t num;
    struct cn_slice names[CN_ROUTE_MAX_PARAMS];
    struct cn_slice values[CN_ROUTE_MAX_PARAMS];
};

struct cn_http_req;
typedef void (*cn_http_handler_cb)(struct cn_http_req *req, void *ctx);

enum cn_route_flags {
    CN_ROUTE_PUBLIC = 1 << 0, /* served without the bearer token (health probes) */
};

struct cn_route {
    unsigned flags;   /* cn_route_flags */
    int id;           /* 0.. cn_router_num_routes - 1 */
    unsigned methods; /* bit (1 << llhttp_method_t) */
    char *pattern;
    cn_http_handler_cb handler;
    void *ctx;
};

struct cn_router;

struct cn_router *cn_router_new(void);
void cn_router_free(struct cn_router *r);

/* Adds a route. methods is a mask of CN_M(HTTP_GET) | ...; pattern segments are literal or
 * "{name}"; a last segment "{name...}" takes the rest of the path. Returns the route id, or
 * CN_EINVAL for a malformed pattern / a conflicting duplicate, CN_ENOMEM. */
int cn_router_add(struct cn_router *r, unsigned methods, const char *pattern,
                  cn_http_handler_cb handler, void *ctx);
#define CN_M(m) (1u << (m))

enum cn_route_match {
    CN_ROUTE_FOUND = 0,
    CN_ROUTE_NOT_FOUND = 404,
    CN_ROUTE_BAD_METHOD = 405,
};

/* Matches method and path (no query). On FOUND, *out_route and out_params are set; on
 * BAD_METHOD, *out_allowed holds the mask of methods the path accepts. */
enum cn_route_match cn_router_match(const struct cn_router *r, int method, struct cn_slice path,
                                    const struct cn_route **out_route,
                                    struct cn_route_params *out_params, unsigned *out_allowed);

/* Sets the cn_route_flags of route id. Returns 0 or CN_EINVAL. */
int cn_router_set_flags(struct cn_router *r, int id, unsigned flags);

size_t cn_router_num_routes(const struct cn_router *r);
const struct cn_route *cn_router_route(const struct cn_router *r, size_t id);

#endif
