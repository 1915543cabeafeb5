/* YAML of the JWT, KeyAuth and CORS route filters and of the tracing section. Files they
 * name (jwks_file, secret, keys_file) are read at load time, relative to the configuration
 * file's directory; a reload reads them again. A secret's bytes are never in a message. */
#include "gateway/config-ld.h"
#include "gateway/internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>

#define MAX_FILE_BYTES (1u << 20)
#define MAX_KEYS       10000
#define MAX_KEY_BYTES  1024
#define MIN_SECRET     32 /* HS256 secrets: at least 256 bits */
#define MAX_SECRET     4096

/* Reads a file named in the configuration (relative to its directory) into a new buffer. */
static char *read_named(struct ld *l, const yaml_node_t *n, struct cn_slice name, size_t *out_len,
                        int *rc)
{
    char path[4096];
    const char *cfg = gw_ld_file(l);
    const char *slash = strrchr(cfg, '/');
    if (name.ptr[0] == '/' || !slash)
        snprintf(path, sizeof(path), "%s", name.ptr);
    else
        snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - cfg), cfg, name.ptr);
    FILE *f = fopen(path, "rb");
    if (!f) {
        *rc = gw_ld_fail(l, n, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t len = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || len > MAX_FILE_BYTES) {
        free(buf);
        *rc = gw_ld_fail(l, n, "'%s': %s", path,
                         !buf  ? "out of memory"
                         : bad ? "read error"
                               : "larger than 1 MiB");
        return NULL;
    }
    buf[len] = '\0';
    *out_len = len;
    return buf;
}

static int keep_jwks(struct ld *l, const yaml_node_t *n, struct gw_jwks *k)
{
    struct cn_gw_snapshot *s = gw_ld_snap(l);
    if (s->num_jwks == s->cap_jwks) {
        size_t cap = s->cap_jwks ? s->cap_jwks * 2 : 4;
        struct gw_jwks **v = realloc(s->jwks, cap * sizeof(*v));
        if (!v) {
            gw_jwks_unref(k);
            return gw_ld_fail(l, n, "out of memory");
        }
        s->jwks = v;
        s->cap_jwks = cap;
    }
    s->jwks[s->num_jwks++] = k;
    return 0;
}

static int keep_remote(struct ld *l, const yaml_node_t *n, struct gw_jwks_remote *r)
{
    struct cn_gw_snapshot *s = gw_ld_snap(l);
    if (s->num_remotes == s->cap_remotes) {
        size_t cap = s->cap_remotes ? s->cap_remotes * 2 : 4;
        struct gw_jwks_remote **v = realloc(s->remotes, cap * sizeof(*v));
        if (!v) {
            gw_jwks_remote_stop(r);
            return gw_ld_fail(l, n, "out of memory");
        }
        s->remotes = v;
        s->cap_remotes = cap;
    }
    s->remotes[s->num_remotes++] = r;
    return 0;
}

void gw_ext_snapshot_free(struct cn_gw_snapshot *s)
{
    for (size_t i = 0; i < s->num_jwks; i++)
        gw_jwks_unref(s->jwks[i]);
    for (size_t i = 0; i < s->num_remotes; i++)
        gw_jwks_remote_stop(s->remotes[i]);
    free(s->jwks);
    free(s->remotes);
    s->jwks = NULL;
    s->remotes = NULL;
    s->num_jwks = s->num_remotes = 0;
}

/* A list of strings into the arena. check: 0 none, 1 header names. */
static int str_list(struct ld *l, const yaml_node_t *seq, struct cn_slice **out, size_t *out_n,
                    int check)
{
    size_t n;
    int rc = gw_ld_seq(l, seq, &n);
    if (rc)
        return rc;
    struct cn_slice *v = cn_arena_calloc(&gw_ld_snap(l)->arena, n + 1, sizeof(*v));
    if (!v)
        return gw_ld_fail(l, seq, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t o = gw_ld_push_index(l, i);
        yaml_node_t *it = gw_ld_item(l, seq, i);
        if ((rc = gw_ld_str(l, it, &v[i])))
            return rc;
        if (v[i].len == 0)
            return gw_ld_fail(l, it, "must not be empty");
        if (check == 1 && (rc = gw_ld_header_name(l, it, v[i])))
            return rc;
        gw_ld_pop(l, o);
    }
    *out = v;
    *out_n = n;
    return 0;
}

/* The items joined with ", " (the Access-Control-* field values). */
static struct cn_slice joined(struct ld *l, const struct cn_slice *v, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += v[i].len + 2;
    char *p = cn_arena_alloc(&gw_ld_snap(l)->arena, len + 1);
    if (!p)
        return (struct cn_slice){NULL, 0};
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            memcpy(p + o, ", ", 2);
            o += 2;
        }
        memcpy(p + o, v[i].ptr, v[i].len);
        o += v[i].len;
    }
    p[o] = '\0';
    return (struct cn_slice){p, o};
}

/* ---- JWT ------------------------------------------------------------------------------------ */

static int add_secret(struct ld *l, const yaml_node_t *n, struct gw_jwt *j, struct cn_slice file)
{
    int rc = 0;
    size_t len;
    char *buf = read_named(l, n, file, &len, &rc);
    if (!buf)
        return rc;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (len < MIN_SECRET || len > MAX_SECRET) {
        OPENSSL_cleanse(buf, len);
        free(buf);
        return gw_ld_fail(l, n, "the secret in '%s' must be %d to %d bytes", file.ptr, MIN_SECRET,
                          MAX_SECRET);
    }
    struct gw_jwks *k = j->keys;
    size_t at = k ? k->num_keys : 0;
    struct gw_jwk *keys = realloc(k ? k->keys : NULL, (at + 1) * sizeof(*keys));
    if (!k)
        k = calloc(1, sizeof(*k));
    if (!keys || !k) {
        OPENSSL_cleanse(buf, len);
        free(buf);
        if (!j->keys) {
            free(k);
            free(keys);
        } else if (keys) {
            j->keys->keys = keys;
        }
        return gw_ld_fail(l, n, "out of memory");
    }
    memset(&keys[at], 0, sizeof(keys[at]));
    keys[at].alg = GW_JWT_HS256;
    keys[at].secret = (uint8_t *)buf;
    keys[at].secret_len = len;
    k->keys = keys;
    k->num_keys = at + 1;
    if (!j->keys) {
        atomic_init(&k->refs, 1);
        j->keys = k;
        return keep_jwks(l, n, k);
    }
    return 0;
}

static int load_jwt(struct ld *l, const yaml_node_t *map, struct gw_jwt *j)
{
    static const char *const keys[] = {
        "issuer",       "audiences",       "jwks_file", "jwks_url",          "jwks_refresh",
        "jwks_timeout", "algorithms",      "secret",    "claims_to_headers", "forward",
        "clock_skew",   "max_token_bytes", NULL};
    int rc = gw_ld_map(l, map, keys);
    if (rc)
        return rc;
    struct cn_slice jwks_file = {NULL, 0}, jwks_url = {NULL, 0}, secret = {NULL, 0};
    uint64_t refresh = 300000, timeout = 5000;
    j->clock_skew_s = 60;
    j->max_token_bytes = GW_JWT_MAX_TOKEN_BYTES;
    j->algorithms = GW_JWT_RS256 | GW_JWT_ES256;
    OPTF(v, "issuer", gw_ld_str(l, v, &j->issuer));
    OPTF(v, "audiences", str_list(l, v, &j->audiences, &j->num_audiences, 0));
    OPTF(v, "jwks_file", gw_ld_str(l, v, &jwks_file));
    OPTF(v, "jwks_url", gw_ld_str(l, v, &jwks_url));
    OPTF(v, "jwks_refresh", gw_ld_duration(l, v, 86400000, &refresh));
    OPTF(v, "jwks_timeout", gw_ld_duration(l, v, 60000, &timeout));
    OPTF(v, "secret", gw_ld_str(l, v, &secret));
    OPTF(v, "forward", gw_ld_bool(l, v, &j->forward));
    uint64_t skew_ms = 60000;
    OPTF(v, "clock_skew", gw_ld_duration(l, v, 3600000, &skew_ms));
    j->clock_skew_s = skew_ms / 1000;
    OPTF(v, "max_token_bytes", gw_ld_size(l, v, 256, 1u << 20, &j->max_token_bytes));
    yaml_node_t *av = gw_ld_get(l, map, "algorithms");
    if (av) {
        size_t o = gw_ld_push(l, "algorithms");
        struct cn_slice *names;
        size_t n;
        if ((rc = str_list(l, av, &names, &n, 0)))
            return rc;
        if (n == 0)
            return gw_ld_fail(l, av, "must list at least one of HS256, RS256, ES256");
        j->algorithms = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned a = cn_slice_eq(names[i], CN_SLICE_LIT("HS256"))   ? GW_JWT_HS256
                         : cn_slice_eq(names[i], CN_SLICE_LIT("RS256")) ? GW_JWT_RS256
                         : cn_slice_eq(names[i], CN_SLICE_LIT("ES256")) ? GW_JWT_ES256
                                                                        : 0;
            if (!a) {
                gw_ld_push_index(l, i);
                return gw_ld_fail(l, gw_ld_item(l, av, i),
                                  "'%.*s' is not HS256, RS256 or ES256 (none is never allowed)",
                                  (int)CN_MIN(names[i].len, 32), names[i].ptr);
            }
            j->algorithms |= a;
        }
        gw_ld_pop(l, o);
    }
    if (!jwks_file.len && !jwks_url.len && !secret.len)
        return gw_ld_fail(l, map, "needs jwks_file, jwks_url or secret");
    if (jwks_file.len && jwks_url.len)
        return gw_ld_fail(l, gw_ld_get(l, map, "jwks_url"), "one of jwks_file and jwks_url");
    if (secret.len && !(j->algorithms & GW_JWT_HS256))
        return gw_ld_fail(l, gw_ld_get(l, map, "secret"), "a secret needs HS256 in algorithms");
    if ((j->algorithms & (GW_JWT_RS256 | GW_JWT_ES256)) && !jwks_file.len && !jwks_url.len)
        return gw_ld_fail(l, map, "RS256 and ES256 need jwks_file or jwks_url");
    if (jwks_file.len) {
        yaml_node_t *fv = gw_ld_get(l, map, "jwks_file");
        size_t o = gw_ld_push(l, "jwks_file"), len;
        char *text = read_named(l, fv, jwks_file, &len, &rc);
        if (!text)
            return rc;
        char err[256];
        j->keys = gw_jwks_parse(text, len, err, sizeof(err));
        free(text);
        if (!j->keys)
            return gw_ld_fail(l, fv, "%s", err);
        if ((rc = keep_jwks(l, fv, j->keys)))
            return rc;
        gw_ld_pop(l, o);
    }
    if (secret.len) {
        size_t o = gw_ld_push(l, "secret");
        if ((rc = add_secret(l, gw_ld_get(l, map, "secret"), j, secret)))
            return rc;
        gw_ld_pop(l, o);
    }
    if (jwks_url.len) {
        yaml_node_t *uv = gw_ld_get(l, map, "jwks_url");
        if (strncmp(jwks_url.ptr, "http://", 7) && strncmp(jwks_url.ptr, "https://", 8)) {
            gw_ld_push(l, "jwks_url");
            return gw_ld_fail(l, uv, "must be an http:// or https:// URL");
        }
        if (refresh < 1000) {
            gw_ld_push(l, "jwks_refresh");
            return gw_ld_fail(l, gw_ld_get(l, map, "jwks_refresh"), "must be 1s or more");
        }
        j->remote = gw_jwks_remote_start(jwks_url.ptr, refresh, timeout ? timeout : 5000);
        if (!j->remote || (rc = keep_remote(l, uv, j->remote)))
            return rc ? rc : gw_ld_fail(l, uv, "cannot start the JWKS fetcher");
    }
    yaml_node_t *ch = gw_ld_get(l, map, "claims_to_headers");
    if (ch) {
        size_t o = gw_ld_push(l, "claims_to_headers"), n;
        if ((rc = gw_ld_seq(l, ch, &n)))
            return rc;
        j->claims_to_headers =
            cn_arena_calloc(&gw_ld_snap(l)->arena, n + 1, sizeof(*j->claims_to_headers));
        if (!j->claims_to_headers)
            return gw_ld_fail(l, ch, "out of memory");
        for (size_t i = 0; i < n; i++) {
            size_t oi = gw_ld_push_index(l, i);
            yaml_node_t *it = gw_ld_item(l, ch, i);
            static const char *const ck[] = {"claim", "header", NULL};
            struct gw_claim_header *c = &j->claims_to_headers[i];
            if ((rc = gw_ld_map(l, it, ck)))
                return rc;
            yaml_node_t *cv = gw_ld_get(l, it, "claim"), *hv = gw_ld_get(l, it, "header");
            if (!cv || !hv)
                return gw_ld_fail(l, it, "needs claim and header");
            if ((rc = gw_ld_str(l, cv, &c->claim)) || (rc = gw_ld_str(l, hv, &c->header)) ||
                (rc = gw_ld_header_name(l, hv, c->header)))
                return rc;
            if (c->claim.len == 0 || c->claim.len > 255)
                return gw_ld_fail(l, cv, "a claim name is 1 to 255 bytes");
            gw_ld_pop(l, oi);
        }
        j->num_claims_to_headers = n;
        gw_ld_pop(l, o);
    }
    return 0;
}

/* ---- key auth ------------------------------------------------------------------------------- */

static int load_keyauth(struct ld *l, const yaml_node_t *map, struct gw_keyauth *ka)
{
    static const char *const keys[] = {"header", "query", "keys_file", "forward", NULL};
    int rc = gw_ld_map(l, map, keys);
    if (rc)
        return rc;
    struct cn_slice file = {NULL, 0};
    OPTF(v, "header", gw_ld_str(l, v, &ka->header) ?: gw_ld_header_name(l, v, ka->header));
    OPTF(v, "query", gw_ld_str(l, v, &ka->query));
    OPTF(v, "keys_file", gw_ld_str(l, v, &file));
    OPTF(v, "forward", gw_ld_bool(l, v, &ka->forward));
    if (!!ka->header.len == !!ka->query.len)
        return gw_ld_fail(l, map, "needs exactly one of header and query");
    yaml_node_t *fv = gw_ld_get(l, map, "keys_file");
    if (!file.len)
        return gw_ld_fail(l, map, "keys_file is required");
    size_t o = gw_ld_push(l, "keys_file"), len;
    char *text = read_named(l, fv, file, &len, &rc);
    if (!text)
        return rc;
    struct cn_arena *a = &gw_ld_snap(l)->arena;
    ka->keys = cn_arena_calloc(a, MAX_KEYS, sizeof(*ka->keys));
    const char *p = text, *end = text + len;
    size_t line = 0;
    while (ka->keys && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        const char *t = e;
        while (t > p && (t[-1] == '\r' || t[-1] == ' ' || t[-1] == '\t'))
            t--;
        while (p < t && (*p == ' ' || *p == '\t'))
            p++;
        if (p < t && *p != '#') {
            if (ka->num_keys == MAX_KEYS || (size_t)(t - p) > MAX_KEY_BYTES) {
                OPENSSL_cleanse(text, len);
                free(text);
                return gw_ld_fail(l, fv, "'%s' line %zu: %s", file.ptr, line,
                                  ka->num_keys == MAX_KEYS ? "more than 10000 keys"
                                                           : "a key longer than 1024 bytes");
            }
            ka->keys[ka->num_keys++] = cn_arena_dup(a, p, (size_t)(t - p));
        }
        p = nl ? nl + 1 : end;
    }
    OPENSSL_cleanse(text, len);
    free(text);
    if (!ka->keys)
        return gw_ld_fail(l, fv, "out of memory");
    if (ka->num_keys == 0)
        return gw_ld_fail(l, fv, "'%s' holds no key (one per line, # comments)", file.ptr);
    gw_ld_pop(l, o);
    return 0;
}

/* ---- CORS ----------------------------------------------------------------------------------- */

static int load_cors(struct ld *l, const yaml_node_t *map, struct gw_cors *c)
{
    static const char *const keys[] = {"allowOrigins",
                                       "allowMethods",
                                       "allowHeaders",
                                       "exposeHeaders",
                                       "allowCredentials",
                                       "maxAge",
                                       NULL};
    int rc = gw_ld_map(l, map, keys);
    if (rc)
        return rc;
    yaml_node_t *ov = gw_ld_get(l, map, "allowOrigins");
    if (!ov)
        return gw_ld_fail(l, map, "allowOrigins is required");
    OPTF(v, "allowOrigins", str_list(l, v, &c->origins, &c->num_origins, 0));
    OPTF(v, "allowMethods", str_list(l, v, &c->methods_list, &c->num_methods, 1));
    struct cn_slice *expose = NULL;
    size_t nexpose = 0;
    OPTF(v, "allowHeaders", str_list(l, v, &c->headers_list, &c->num_headers, 1));
    OPTF(v, "exposeHeaders", str_list(l, v, &expose, &nexpose, 1));
    OPTF(v, "allowCredentials", gw_ld_bool(l, v, &c->credentials));
    OPTF(v, "maxAge", gw_ld_u64(l, v, 0, 86400, &c->max_age_s));
    for (size_t i = 0; i < c->num_origins; i++) {
        struct cn_slice o = c->origins[i];
        size_t oi = gw_ld_push(l, "allowOrigins");
        gw_ld_push_index(l, i);
        int star = o.len == 1 && o.ptr[0] == '*';
        int wild =
            o.len > 2 && o.ptr[0] == '*' && o.ptr[1] == '.' && !memchr(o.ptr + 1, '*', o.len - 1);
        const char *sep = strstr(o.ptr, "://");
        int exact =
            !memchr(o.ptr, '*', o.len) && sep && sep > o.ptr && !strchr(sep + 3, '/') && sep[3];
        if (!star && !wild && !exact)
            return gw_ld_fail(l, gw_ld_item(l, ov, i),
                              "'%.*s' is not '*', '*.suffix' or SCHEME://HOST[:PORT]",
                              (int)CN_MIN(o.len, 64), o.ptr);
        if (star && c->credentials)
            return gw_ld_fail(l, gw_ld_item(l, ov, i),
                              "'*' with allowCredentials would let any site read credentialed "
                              "answers: list the origins");
        gw_ld_pop(l, oi);
    }
    if (!c->num_methods) {
        static struct cn_slice dflt[] = {CN_SLICE_LIT("GET"), CN_SLICE_LIT("HEAD"),
                                         CN_SLICE_LIT("POST")};
        c->methods_list = dflt;
        c->num_methods = 3;
    }
    c->methods = joined(l, c->methods_list, c->num_methods);
    c->headers = joined(l, c->headers_list, c->num_headers);
    c->expose_headers = joined(l, expose, nexpose);
    snprintf(c->max_age_text, sizeof(c->max_age_text), "%llu", (unsigned long long)c->max_age_s);
    if (!c->methods.ptr || !c->headers.ptr || !c->expose_headers.ptr)
        return gw_ld_fail(l, map, "out of memory");
    return 0;
}

int gw_ext_load_filter(struct ld *l, const yaml_node_t *body, struct gw_filter *f)
{
    struct cn_arena *a = &gw_ld_snap(l)->arena;
    switch (f->kind) {
    case GW_F_JWT: {
        struct gw_jwt *j = cn_arena_calloc(a, 1, sizeof(*j));
        if (!j)
            return gw_ld_fail(l, body, "out of memory");
        f->u.jwt = j;
        return load_jwt(l, body, j);
    }
    case GW_F_KEY_AUTH: {
        struct gw_keyauth *k = cn_arena_calloc(a, 1, sizeof(*k));
        if (!k)
            return gw_ld_fail(l, body, "out of memory");
        f->u.keyauth = k;
        return load_keyauth(l, body, k);
    }
    case GW_F_CORS: {
        struct gw_cors *c = cn_arena_calloc(a, 1, sizeof(*c));
        if (!c)
            return gw_ld_fail(l, body, "out of memory");
        f->u.cors = c;
        return load_cors(l, body, c);
    }
    default:
        return gw_ld_fail(l, body, "not an extension filter");
    }
}

/* ---- tracing -------------------------------------------------------------------------------- */

void gw_ext_tracing_defaults(struct gw_tracing *t)
{
    memset(t, 0, sizeof(*t));
    t->service_name = CN_SLICE_LIT("cairn-gateway");
    t->max_tracestate_bytes = GW_TRACESTATE_MAX;
    t->access_log = 1;
    t->otlp_endpoint = CN_SLICE_LIT("");
    t->batch_size = 512;
    t->flush_ms = 1000;
    t->queue_batches = 64;
    t->export_timeout_ms = 5000;
}

int gw_ext_load_tracing(struct ld *l, const yaml_node_t *map)
{
    static const char *const keys[] = {"enabled",    "service_name", "max_tracestate_bytes",
                                       "access_log", "otlp",         NULL};
    struct gw_tracing *t = &gw_ld_snap(l)->tracing;
    int rc = gw_ld_map(l, map, keys);
    if (rc)
        return rc;
    OPTF(v, "enabled", gw_ld_bool(l, v, &t->enabled));
    OPTF(v, "service_name", gw_ld_str(l, v, &t->service_name));
    OPTF(v, "max_tracestate_bytes", gw_ld_u64(l, v, 0, 8192, &t->max_tracestate_bytes));
    OPTF(v, "access_log", gw_ld_bool(l, v, &t->access_log));
    if (!t->service_name.len)
        return gw_ld_fail(l, gw_ld_get(l, map, "service_name"), "must not be empty");
    yaml_node_t *ov = gw_ld_get(l, map, "otlp");
    if (ov) {
        size_t o = gw_ld_push(l, "otlp");
        static const char *const okeys[] = {"endpoint",      "batch_size", "flush_interval",
                                            "queue_batches", "timeout",    NULL};
        if ((rc = gw_ld_map(l, ov, okeys)))
            return rc;
        const yaml_node_t *map = ov;
        OPTF(v, "endpoint", gw_ld_str(l, v, &t->otlp_endpoint));
        OPTF(v, "batch_size", gw_ld_u64(l, v, 1, 65536, &t->batch_size));
        OPTF(v, "flush_interval", gw_ld_duration(l, v, 60000, &t->flush_ms));
        OPTF(v, "queue_batches", gw_ld_u64(l, v, 1, 100000, &t->queue_batches));
        OPTF(v, "timeout", gw_ld_duration(l, v, 60000, &t->export_timeout_ms));
        if (t->otlp_endpoint.len && strncmp(t->otlp_endpoint.ptr, "http://", 7) &&
            strncmp(t->otlp_endpoint.ptr, "https://", 8)) {
            gw_ld_push(l, "endpoint");
            return gw_ld_fail(l, gw_ld_get(l, ov, "endpoint"),
                              "must be an http:// or https:// URL (OTLP/HTTP, e.g. "
                              "http://127.0.0.1:4318/v1/traces)");
        }
        if (t->flush_ms == 0) {
            gw_ld_push(l, "flush_interval");
            return gw_ld_fail(l, gw_ld_get(l, ov, "flush_interval"), "must not be 0");
        }
        gw_ld_pop(l, o);
    }
    return 0;
}
