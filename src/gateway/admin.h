/* The gateway's admin API (docs/gateway.md, "Admin API"): the running configuration as a
 * document that the API reads and edits (whole, or one route or cluster at a time), each
 * accepted change compiled into a new snapshot and published with cn_gw_publish; and the
 * status of what runs (generation per worker, routes, clusters, endpoints' health, RED).
 * The same handlers are mounted on `cairn gateway`'s admin listener and on `cairn up`'s API
 * port. */
#ifndef CN_GATEWAY_ADMIN_H
#define CN_GATEWAY_ADMIN_H

#include "gateway/gateway.h"
#include "http/router.h"

#include <jansson.h>

/* ---- the document (doc.c) ------------------------------------------------------------------ */

#define CN_GW_DOC_MAX_DEPTH 64      /* nesting of mappings and sequences */
#define CN_GW_DOC_MAX_NODES 1000000 /* nodes visited (aliases count each time) */
/* Bytes of one mapping key. YAML reads an implicit key (how JSON writes every key) only up to
 * 1024 characters of source, and a key dumped as JSON can grow 6x (\u00XX escapes): longer
 * keys would not read back. No field of the configuration comes near it. */
#define CN_GW_DOC_MAX_KEY 128

/* Converts YAML (or JSON) text into a JSON value: mappings become objects (keys must be
 * scalars and unique), sequences arrays; plain scalars `null`, `~` and empty become null,
 * `true`/`false` booleans, canonical decimal integers (no sign but '-', no leading zero, at
 * most 18 digits) integers; every other scalar a string, so the text the compiler sees after
 * a round trip through JSON is the same. Returns a new reference, or NULL with
 * "NAME:LINE:COL: message" in err. */
json_t *cn_gw_doc_from_yaml(const char *name, const char *data, size_t len, char *err,
                            size_t err_len);

/* The object named name in doc's list ("routes" or "clusters"), borrowed; NULL when none. */
json_t *cn_gw_doc_find(const json_t *doc, const char *list, const char *name, size_t *out_index);
/* Puts obj (a reference is taken) as the object named name of doc's list, in place of the
 * one of that name or at the end. obj must be an object whose "name" is absent (it is set) or
 * equal to name. Returns 1 when it replaced one, 0 when it appended, CN_EINVAL with err. */
int cn_gw_doc_put(json_t *doc, const char *list, const char *name, json_t *obj, char *err,
                  size_t err_len);
/* Removes the object named name from doc's list. Returns 0 or CN_ENOENT. */
int cn_gw_doc_delete(json_t *doc, const char *list, const char *name);

/* ---- the API (admin.c) -------------------------------------------------------------------- */

struct cn_gw_admin;

struct cn_gw_admin_opts {
    /* The configuration file; reloads read it (cn_gw_admin_reload_file). Relative paths in
     * documents the API receives are taken from its directory. */
    const char *file;
    /* Called after each publish (any thread) so the workers adopt the new snapshot. */
    void (*on_publish)(void *ctx);
    void *ctx;
};

/* Publishes first (compiled from opts->file, a reference is taken) and builds the document
 * from the file's text. NULL on out of memory. */
struct cn_gw_admin *cn_gw_admin_new(struct cn_gw *gw, struct cn_gw_snapshot *first,
                                    const struct cn_gw_admin_opts *opts);
void cn_gw_admin_free(struct cn_gw_admin *a);

/* Compiles the file again and publishes it (the file's content replaces whatever the API
 * changed). A rejected file is logged and counted; the running configuration stays.
 * Returns the new generation, or 0 when rejected. trigger names the cause in the log. */
uint64_t cn_gw_admin_reload_file(struct cn_gw_admin *a, const char *trigger);

/* Mounts the API under /api/v1/gateway on r. a may be NULL: every route then answers 404
 * "the gateway is not running". Returns 0 or a negative code. */
int cn_gw_admin_routes(struct cn_gw_admin *a, struct cn_router *r);

#endif
