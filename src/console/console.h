/* The web console on the API port: the embedded files of web/ (console/assets.h) at "/",
 * index.html for the console's page paths so that client-side routing works, with content
 * types, ETags, caching, gzip and security headers. The console reads data only through the
 * public API (docs/query.md, docs/rca.md); nothing here serves data. docs/console.md. */
#ifndef CN_CONSOLE_H
#define CN_CONSOLE_H

#include "base/base.h"
#include "console/assets.h"

struct cn_router;

/* The Content-Security-Policy of every console reply: scripts and styles only from the
 * binary itself (no inline script; inline style attributes for the chart libraries), data
 * only from the same origin, never framed. */
#define CN_CONSOLE_CSP                                                                             \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "                    \
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "               \
    "form-action 'self'; frame-ancestors 'none'"

/* What a GET of a path answers, decided without a connection (cn_console_resolve). */
struct cn_console_reply {
    int status;                           /* 200, 304 or 404 */
    const struct cn_console_asset *asset; /* 200 and 304; NULL for 404 */
    const char *content_type;             /* of asset */
    const char *cache_control;            /* of asset */
    int gzip;                             /* the body is asset->gz (Content-Encoding: gzip) */
    char etag[48];                        /* of the representation sent, quoted */
};

/* The file at path ("/assets/x.js"), or NULL. Exact match, no normalisation. */
const struct cn_console_asset *cn_console_find(struct cn_slice path);

/* The Content-Type for a file name by its extension; "application/octet-stream" when
 * unknown. */
const char *cn_console_content_type(struct cn_slice path);

/* 1 when path is one the console's client-side router shows a page for ("/",
 * "/traces", "/traces/ID"...): those are answered with index.html. */
int cn_console_is_page(struct cn_slice path);

/* 1 when an Accept-Encoding value accepts gzip (a "gzip" or "*" entry whose q is not 0). */
int cn_console_accepts_gzip(struct cn_slice accept_encoding);

/* 1 when an If-None-Match value matches etag ("*", or one of its entries, weak or not). */
int cn_console_etag_matches(struct cn_slice if_none_match, const char *etag);

/* Decides the answer to GET path. accept_encoding and if_none_match are the request's
 * headers, NULL when absent. Fills *out; never fails. */
void cn_console_resolve(struct cn_slice path, const struct cn_slice *accept_encoding,
                        const struct cn_slice *if_none_match, struct cn_console_reply *out);

/* Adds the console's routes (GET and HEAD, public: the files hold no data) to r. Returns 0,
 * or the router's error. With no embedded file (built with -DCAIRN_CONSOLE=OFF) adds
 * nothing. */
int cn_console_routes(struct cn_router *r);

#endif
