/* etcd v3 over its JSON gateway with libcurl (etcd.h explains threads and failover). */
#include "registry/etcd.h"

#include "base/base64.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cn_etcd {
    char *urls[CN_ETCD_MAX_ENDPOINTS];
    size_t num;
    atomic_size_t current;
    atomic_uint_fast64_t failovers;
    /* After a call found no member answering for its whole request timeout, calls fail at
     * once until this time (monotonic ms): a loop of writes (expiring instances, say) must not
     * wait a request timeout each while etcd is gone. */
    atomic_uint_fast64_t down_until;
    atomic_uint_fast64_t fast_failures;
    uint64_t dial_ms, request_ms;
    size_t max_response;
};

struct cn_etcd_conn {
    struct cn_etcd *e;
    uint64_t attempt_ms; /* one try on one member */
    CURL *h;
    struct cn_buf body;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void curl_global(void)
{
    static atomic_int done;
    int expect = 0;
    if (atomic_compare_exchange_strong(&done, &expect, 1))
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct cn_etcd *cn_etcd_new(const struct cn_etcd_opts *o, char *err, size_t err_len)
{
    curl_global();
    struct cn_etcd *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    e->dial_ms = o->dial_timeout_ms ? o->dial_timeout_ms : 2000;
    e->request_ms = o->request_timeout_ms ? o->request_timeout_ms : 5000;
    e->max_response = o->max_response_bytes ? o->max_response_bytes : CN_ETCD_DEFAULT_MAX_RESPONSE;
    const char *p = o->endpoints ? o->endpoints : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        size_t n = (size_t)(end - p);
        const char *hostport = p + 7;
        int ok = n > 7 && strncmp(p, "http://", 7) == 0 && memchr(hostport, '/', n - 7) == NULL &&
                 memchr(hostport, ':', n - 7) != NULL;
        if (!ok) {
            snprintf(err, err_len,
                     "registry.etcd.endpoints: '%.*s' is not http://HOST:PORT (https is not "
                     "supported yet)",
                     (int)CN_MIN(n, 200), p);
            cn_etcd_free(e);
            return NULL;
        }
        if (e->num == CN_ETCD_MAX_ENDPOINTS) {
            snprintf(err, err_len, "registry.etcd.endpoints: more than %d endpoints",
                     CN_ETCD_MAX_ENDPOINTS);
            cn_etcd_free(e);
            return NULL;
        }
        e->urls[e->num] = strndup(p, n);
        if (!e->urls[e->num]) {
            snprintf(err, err_len, "out of memory");
            cn_etcd_free(e);
            return NULL;
        }
        e->num++;
        p = end;
    }
    if (e->num == 0) {
        snprintf(err, err_len, "registry.etcd.endpoints: no endpoint given");
        cn_etcd_free(e);
        return NULL;
    }
    return e;
}

void cn_etcd_free(struct cn_etcd *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->num; i++)
        free(e->urls[i]);
    free(e);
}

size_t cn_etcd_num_endpoints(const struct cn_etcd *e)
{
    return e->num;
}

const char *cn_etcd_endpoint(const struct cn_etcd *e, size_t i)
{
    return i < e->num ? e->urls[i] : "";
}

size_t cn_etcd_current(const struct cn_etcd *e)
{
    return atomic_load(&((struct cn_etcd *)e)->current) % e->num;
}

void cn_etcd_next(struct cn_etcd *e, size_t i)
{
    size_t cur = i;
    /* Only move when nobody moved it already. */
    if (atomic_compare_exchange_strong(&e->current, &cur, (i + 1) % e->num))
        atomic_fetch_add(&e->failovers, 1);
}

uint64_t cn_etcd_fast_failures(const struct cn_etcd *e)
{
    return atomic_load(&((struct cn_etcd *)e)->fast_failures);
}

uint64_t cn_etcd_failovers(const struct cn_etcd *e)
{
    return atomic_load(&((struct cn_etcd *)e)->failovers);
}

struct cn_etcd_conn *cn_etcd_conn_new(struct cn_etcd *e)
{
    struct cn_etcd_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->e = e;
    c->h = curl_easy_init();
    if (!c->h) {
        free(c);
        return NULL;
    }
    cn_buf_init(&c->body, e->max_response);
    /* A request that reaches a follower while the leader is gone waits there for etcd's own
     * timeout (7 s by default) before a 503; a new leader is elected in about two. So each
     * try has its own, shorter, timeout and the next member is tried after it. */
    c->attempt_ms = CN_MAX(CN_MIN(e->request_ms / 4, (uint64_t)2000), (uint64_t)250);
    return c;
}

void cn_etcd_conn_set_attempt_timeout(struct cn_etcd_conn *c, uint64_t ms)
{
    c->attempt_ms = CN_MAX(ms, (uint64_t)50);
}

void cn_etcd_conn_free(struct cn_etcd_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->h);
    cn_buf_release(&c->body);
    free(c);
}

/* ---- parsing ----------------------------------------------------------------------------- */

void cn_etcd_resp_init(struct cn_etcd_resp *r)
{
    memset(r, 0, sizeof(*r));
    cn_buf_init(&r->store, 0);
}

void cn_etcd_resp_release(struct cn_etcd_resp *r)
{
    free(r->kvs);
    free(r->event_delete);
    cn_buf_release(&r->store);
    cn_etcd_resp_init(r);
}

/* An int64 field: etcd writes them as strings; numbers are accepted too. Absent: 0. */
static int get_i64(json_t *o, const char *name, int64_t *out)
{
    json_t *v = json_object_get(o, name);
    *out = 0;
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return CN_ESYNTAX;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 20)
        return CN_ESYNTAX;
    int neg = s[0] == '-';
    uint64_t x = 0;
    for (size_t i = neg; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CN_ESYNTAX;
        if (x > (UINT64_MAX - 9) / 10)
            return CN_ESYNTAX;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg ? x > (uint64_t)INT64_MAX + 1 : x > (uint64_t)INT64_MAX)
        return CN_ESYNTAX;
    *out = neg ? (int64_t)(0 - x) : (int64_t)x;
    return 0;
}

static int get_bool(json_t *o, const char *name, int *out)
{
    json_t *v = json_object_get(o, name);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return CN_ESYNTAX;
    *out = json_is_true(v);
    return 0;
}

static int bad(struct cn_etcd_resp *out, const char *why)
{
    snprintf(out->error, sizeof(out->error), "%s", why);
    return CN_ESYNTAX;
}

/* Decodes base64 field name of o into the store; an absent field is empty. */
static int get_b64(json_t *o, const char *name, struct cn_etcd_resp *out, size_t max_bytes,
                   size_t *out_off, size_t *out_len)
{
    json_t *v = json_object_get(o, name);
    *out_off = out->store.len;
    *out_len = 0;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return bad(out, "a key or value is not a string");
    size_t n = json_string_length(v);
    if (n / 4 * 3 + 2 > max_bytes)
        return snprintf(out->error, sizeof(out->error), "a key or value passes %zu bytes",
                        max_bytes),
               CN_ELIMIT;
    if (cn_buf_reserve(&out->store, n / 4 * 3 + 3) != 0)
        return snprintf(out->error, sizeof(out->error), "response passes %zu bytes",
                        out->store.max),
               CN_ELIMIT;
    long d = cn_base64_decode((uint8_t *)out->store.ptr + out->store.len, json_string_value(v), n);
    if (d < 0)
        return bad(out, "a key or value is not base64");
    out->store.len += (size_t)d;
    *out_len = (size_t)d;
    return 0;
}

struct kv_offs {
    size_t koff, klen, voff, vlen;
};

static int parse_kv(json_t *kv, struct cn_etcd_resp *out, size_t max_bytes, struct cn_etcd_kv *dst,
                    struct kv_offs *offs)
{
    if (!json_is_object(kv))
        return bad(out, "a kv is not an object");
    int rc = get_b64(kv, "key", out, max_bytes, &offs->koff, &offs->klen);
    if (rc == 0)
        rc = get_b64(kv, "value", out, max_bytes, &offs->voff, &offs->vlen);
    if (rc)
        return rc;
    if (get_i64(kv, "create_revision", &dst->create_rev) ||
        get_i64(kv, "mod_revision", &dst->mod_rev) || get_i64(kv, "version", &dst->version) ||
        get_i64(kv, "lease", &dst->lease))
        return bad(out, "a kv's revision, version or lease is not an integer");
    return 0;
}

/* Parses the kvs of a range (arr of kv) or the events of a watch (arr of {type, kv}). */
static int parse_kvs(json_t *arr, int events, struct cn_etcd_resp *out, size_t max_bytes)
{
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return bad(out, events ? "events is not an array" : "kvs is not an array");
    size_t n = json_array_size(arr);
    if (n == 0)
        return 0;
    out->kvs = calloc(n, sizeof(*out->kvs));
    out->event_delete = calloc(n, 1);
    struct kv_offs *offs = calloc(n, sizeof(*offs));
    int rc = 0;
    if (!out->kvs || !out->event_delete || !offs)
        rc = CN_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *item = json_array_get(arr, i);
        json_t *kv = item;
        if (events) {
            if (!json_is_object(item)) {
                rc = bad(out, "an event is not an object");
                break;
            }
            json_t *t = json_object_get(item, "type");
            if (t && !json_is_string(t)) {
                rc = bad(out, "an event's type is not a string");
                break;
            }
            if (t && strcmp(json_string_value(t), "DELETE") == 0)
                out->event_delete[i] = 1;
            else if (t && strcmp(json_string_value(t), "PUT") != 0) {
                rc = bad(out, "an event's type is neither PUT nor DELETE");
                break;
            }
            kv = json_object_get(item, "kv");
        }
        rc = parse_kv(kv, out, max_bytes, &out->kvs[i], &offs[i]);
        if (rc == 0)
            out->num_kvs = i + 1;
    }
    /* The store no longer moves: point the slices into it. */
    for (size_t i = 0; i < out->num_kvs; i++) {
        out->kvs[i].key = (struct cn_slice){out->store.ptr + offs[i].koff, offs[i].klen};
        out->kvs[i].value = (struct cn_slice){out->store.ptr + offs[i].voff, offs[i].vlen};
    }
    free(offs);
    return rc;
}

/* Sums an upper bound of the decoded bytes of arr's keys and values, so the store is
 * reserved once and never moves while slices are taken. */
static size_t b64_bound(json_t *arr, int events)
{
    size_t sum = 0;
    for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
        json_t *kv = json_array_get(arr, i);
        if (events)
            kv = json_object_get(kv, "kv");
        json_t *k = json_object_get(kv, "key"), *v = json_object_get(kv, "value");
        sum += (json_is_string(k) ? json_string_length(k) / 4 * 3 + 3 : 0) +
               (json_is_string(v) ? json_string_length(v) / 4 * 3 + 3 : 0);
    }
    return sum;
}

int cn_etcd_parse(enum cn_etcd_kind kind, const char *json, size_t len, size_t max_bytes,
                  struct cn_etcd_resp *out)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return snprintf(out->error, sizeof(out->error), "not JSON: %s", je.text), CN_ESYNTAX;
    int rc = 0;
    json_t *o = root;
    if (!json_is_object(root)) {
        rc = bad(out, "the answer is not a JSON object");
        goto done;
    }
    json_t *e = json_object_get(root, "error");
    if (e) {
        /* Unary: {"error":"msg","code":N,"message":"msg"}; stream: {"error":{..."message"}}. */
        json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        if (!json_is_string(m))
            m = json_object_get(root, "message");
        snprintf(out->error, sizeof(out->error), "%s",
                 json_is_string(m) ? json_string_value(m) : "etcd answered an error");
        rc = CN_EIO;
        goto done;
    }
    if (kind == CN_ETCD_WATCH || kind == CN_ETCD_LEASE_KEEPALIVE) {
        o = json_object_get(root, "result");
        if (!json_is_object(o)) {
            rc = bad(out, "a stream message without a result object");
            goto done;
        }
    }
    json_t *h = json_object_get(o, "header");
    if (h && !json_is_object(h)) {
        rc = bad(out, "header is not an object");
        goto done;
    }
    if (h && get_i64(h, "revision", &out->revision) != 0) {
        rc = bad(out, "header.revision is not an integer");
        goto done;
    }
    if (!h && kind != CN_ETCD_LEASE_REVOKE) {
        rc = bad(out, "no header");
        goto done;
    }
    switch (kind) {
    case CN_ETCD_RANGE: {
        json_t *kvs = json_object_get(o, "kvs");
        if (get_i64(o, "count", &out->count) || get_bool(o, "more", &out->more)) {
            rc = bad(out, "count or more is malformed");
            break;
        }
        size_t bound = b64_bound(kvs, 0);
        if (bound > max_bytes) {
            rc = CN_ELIMIT;
            snprintf(out->error, sizeof(out->error), "range answer passes %zu bytes", max_bytes);
            break;
        }
        out->store.max = bound + 1;
        if (cn_buf_reserve(&out->store, bound + 1) != 0) {
            rc = CN_ENOMEM;
            break;
        }
        rc = parse_kvs(kvs, 0, out, max_bytes);
        break;
    }
    case CN_ETCD_PUT:
        break;
    case CN_ETCD_DELETE:
        if (get_i64(o, "deleted", &out->deleted) != 0)
            rc = bad(out, "deleted is not an integer");
        break;
    case CN_ETCD_TXN:
        if (get_bool(o, "succeeded", &out->succeeded) != 0)
            rc = bad(out, "succeeded is not a boolean");
        break;
    case CN_ETCD_LEASE_GRANT:
    case CN_ETCD_LEASE_KEEPALIVE:
        if (get_i64(o, "ID", &out->lease_id) || get_i64(o, "TTL", &out->ttl))
            rc = bad(out, "ID or TTL is not an integer");
        break;
    case CN_ETCD_LEASE_REVOKE:
        break;
    case CN_ETCD_WATCH: {
        json_t *ev = json_object_get(o, "events");
        if (get_i64(o, "watch_id", &out->watch_id) || get_bool(o, "created", &out->created) ||
            get_bool(o, "canceled", &out->canceled) ||
            get_i64(o, "compact_revision", &out->compact_revision)) {
            rc = bad(out, "watch_id, created, canceled or compact_revision is malformed");
            break;
        }
        size_t bound = b64_bound(ev, 1);
        if (bound > max_bytes) {
            rc = CN_ELIMIT;
            snprintf(out->error, sizeof(out->error), "watch message passes %zu bytes", max_bytes);
            break;
        }
        out->store.max = bound + 1;
        if (cn_buf_reserve(&out->store, bound + 1) != 0) {
            rc = CN_ENOMEM;
            break;
        }
        rc = parse_kvs(ev, 1, out, max_bytes);
        break;
    }
    }
done:
    json_decref(root);
    return rc;
}

/* ---- calls ------------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct cn_buf *b = ud;
    if (cn_buf_append(b, p, size * n) != 0)
        return 0; /* past the maximum: curl fails the transfer */
    return size * n;
}

static json_t *b64(struct cn_slice s)
{
    char *t = malloc(CN_BASE64_LEN(s.len) + 1);
    if (!t)
        return NULL;
    size_t n = cn_base64_encode(t, s.ptr, s.len);
    json_t *v = json_stringn(t, n);
    free(t);
    return v;
}

static json_t *i64s(int64_t v)
{
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)v);
    return json_string(t);
}

/* POSTs req (consumed) to path on the preferred endpoint, failing over, until one answers or
 * the request timeout has passed (an election takes a couple of seconds: a call made during
 * one waits for the new leader rather than fail). */
static int call(struct cn_etcd_conn *c, const char *path, json_t *req, enum cn_etcd_kind kind,
                struct cn_etcd_resp *out, char *err, size_t err_len)
{
    struct cn_etcd *e = c->e;
    if (!req) {
        snprintf(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!body) {
        snprintf(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    uint64_t t0 = mono_ms(), down = atomic_load(&e->down_until);
    if (t0 < down) {
        free(body);
        atomic_fetch_add(&e->fast_failures, 1);
        snprintf(err, err_len, "no etcd endpoint answered within %llu ms; next try in %llu ms",
                 (unsigned long long)e->request_ms, (unsigned long long)(down - t0));
        return CN_EIO;
    }
    uint64_t deadline = t0 + e->request_ms;
    int rc = CN_EIO, answered = 0;
    snprintf(err, err_len, "no etcd endpoint answered");
    for (int round = 0;; round++) {
        size_t start = cn_etcd_current(e);
        for (size_t k = 0; k < e->num; k++) {
            size_t i = (start + k) % e->num;
            uint64_t now = mono_ms();
            if (now >= deadline && (round > 0 || k > 0))
                goto out;
            char url[512];
            snprintf(url, sizeof(url), "%s%s", e->urls[i], path);
            cn_buf_reset(&c->body);
            CURL *h = c->h;
            curl_easy_setopt(h, CURLOPT_URL, url);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->dial_ms);
            uint64_t left = deadline > now ? deadline - now : 0;
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                             (long)CN_MAX(CN_MIN(left, c->attempt_ms), (uint64_t)50));
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->body);
            curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
            CURLcode cc = curl_easy_perform(h);
            long status = 0;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            if (cc != CURLE_OK) {
                snprintf(err, err_len, "%s: %s", e->urls[i], curl_easy_strerror(cc));
                if (cc == CURLE_WRITE_ERROR) {
                    snprintf(err, err_len, "%s: answer passes %zu bytes", e->urls[i], c->body.max);
                    rc = CN_ELIMIT;
                    goto out;
                }
                cn_etcd_next(e, i);
                continue;
            }
            answered = 1;
            cn_etcd_resp_release(out);
            int prc = cn_etcd_parse(kind, c->body.ptr ? c->body.ptr : "", c->body.len,
                                    e->max_response, out);
            if (status >= 500 || (prc == CN_EIO && strstr(out->error, "leader"))) {
                /* No leader, or this member cannot serve: try the others. */
                snprintf(err, err_len, "%s: HTTP %ld: %s", e->urls[i], status, out->error);
                cn_etcd_next(e, i);
                continue;
            }
            if (prc != 0 || status != 200) {
                snprintf(err, err_len, "%s%s: HTTP %ld: %s", e->urls[i], path, status,
                         out->error[0] ? out->error : "unexpected answer");
                rc = prc ? prc : CN_EIO;
                goto out;
            }
            rc = 0;
            err[0] = '\0';
            goto out;
        }
        if (mono_ms() + 100 >= deadline)
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
out:
    free(body);
    if (rc == CN_EIO && !answered)
        atomic_store(&e->down_until, mono_ms() + CN_MIN(e->request_ms, (uint64_t)CN_ETCD_DOWN_MS));
    else if (rc == 0)
        atomic_store(&e->down_until, 0);
    return rc;
}

int cn_etcd_put(struct cn_etcd_conn *c, struct cn_slice key, struct cn_slice value, int64_t lease,
                struct cn_etcd_resp *out, char *err, size_t err_len)
{
    json_t *r = json_object();
    if (r) {
        json_object_set_new(r, "key", b64(key));
        json_object_set_new(r, "value", b64(value));
        if (lease)
            json_object_set_new(r, "lease", i64s(lease));
    }
    return call(c, "/v3/kv/put", r, CN_ETCD_PUT, out, err, err_len);
}

int cn_etcd_prefix_end(struct cn_slice prefix, struct cn_buf *out)
{
    /* The prefix with its last byte below 0xff incremented and what follows dropped; all
     * 0xff (or empty) means "to the end": "\0". */
    size_t n = prefix.len;
    while (n > 0 && (uint8_t)prefix.ptr[n - 1] == 0xff)
        n--;
    if (n == 0)
        return cn_buf_append(out, "", 1);
    int rc = cn_buf_append(out, prefix.ptr, n);
    if (rc == 0)
        out->ptr[out->len - 1]++;
    return rc;
}

static void set_range_end(json_t *r, struct cn_slice key)
{
    struct cn_buf end;
    cn_buf_init(&end, key.len + 1);
    if (cn_etcd_prefix_end(key, &end) == 0)
        json_object_set_new(r, "range_end", b64(cn_buf_slice(&end)));
    cn_buf_release(&end);
}

int cn_etcd_range(struct cn_etcd_conn *c, struct cn_slice key, const struct cn_etcd_range_opts *o,
                  struct cn_etcd_resp *out, char *err, size_t err_len)
{
    json_t *r = json_object();
    if (r) {
        json_object_set_new(r, "key", b64(key));
        if (o && o->prefix)
            set_range_end(r, key);
        if (o && o->keys_only)
            json_object_set_new(r, "keys_only", json_true());
        if (o && o->count_only)
            json_object_set_new(r, "count_only", json_true());
        if (o && o->limit)
            json_object_set_new(r, "limit", i64s(o->limit));
        if (o && o->revision)
            json_object_set_new(r, "revision", i64s(o->revision));
        if (o && o->sort_create_desc) {
            json_object_set_new(r, "sort_order", json_string("DESCEND"));
            json_object_set_new(r, "sort_target", json_string("CREATE"));
        }
    }
    return call(c, "/v3/kv/range", r, CN_ETCD_RANGE, out, err, err_len);
}

int cn_etcd_delete(struct cn_etcd_conn *c, struct cn_slice key, int prefix,
                   struct cn_etcd_resp *out, char *err, size_t err_len)
{
    json_t *r = json_object();
    if (r) {
        json_object_set_new(r, "key", b64(key));
        if (prefix)
            set_range_end(r, key);
    }
    return call(c, "/v3/kv/deleterange", r, CN_ETCD_DELETE, out, err, err_len);
}

int cn_etcd_txn(struct cn_etcd_conn *c, const struct cn_etcd_op *ops, size_t num_ops,
                struct cn_etcd_resp *out, char *err, size_t err_len)
{
    json_t *r = json_object(), *succ = json_array();
    if (r && succ) {
        for (size_t i = 0; i < num_ops; i++) {
            json_t *op = json_object(), *inner = json_object();
            if (!op || !inner) {
                json_decref(op);
                json_decref(inner);
                continue;
            }
            json_object_set_new(inner, "key", b64(ops[i].key));
            if (ops[i].del) {
                json_object_set_new(op, "request_delete_range", inner);
            } else {
                json_object_set_new(inner, "value", b64(ops[i].value));
                if (ops[i].lease)
                    json_object_set_new(inner, "lease", i64s(ops[i].lease));
                json_object_set_new(op, "request_put", inner);
            }
            json_array_append_new(succ, op);
        }
        json_object_set_new(r, "success", succ);
        succ = NULL;
    }
    json_decref(succ);
    return call(c, "/v3/kv/txn", r, CN_ETCD_TXN, out, err, err_len);
}

int cn_etcd_lease_grant(struct cn_etcd_conn *c, int64_t ttl_s, struct cn_etcd_resp *out, char *err,
                        size_t err_len)
{
    json_t *r = json_object();
    if (r)
        json_object_set_new(r, "TTL", i64s(ttl_s));
    return call(c, "/v3/lease/grant", r, CN_ETCD_LEASE_GRANT, out, err, err_len);
}

int cn_etcd_lease_keepalive(struct cn_etcd_conn *c, int64_t lease, struct cn_etcd_resp *out,
                            char *err, size_t err_len)
{
    json_t *r = json_object();
    if (r)
        json_object_set_new(r, "ID", i64s(lease));
    return call(c, "/v3/lease/keepalive", r, CN_ETCD_LEASE_KEEPALIVE, out, err, err_len);
}

int cn_etcd_lease_revoke(struct cn_etcd_conn *c, int64_t lease, char *err, size_t err_len)
{
    struct cn_etcd_resp out;
    cn_etcd_resp_init(&out);
    json_t *r = json_object();
    if (r)
        json_object_set_new(r, "ID", i64s(lease));
    int rc = call(c, "/v3/lease/revoke", r, CN_ETCD_LEASE_REVOKE, &out, err, err_len);
    cn_etcd_resp_release(&out);
    return rc;
}

/* ---- watch ------------------------------------------------------------------------------- */

struct cn_etcd_watch {
    struct cn_etcd *e;
    size_t endpoint;
    CURLM *m;
    CURL *h;
    char *body;
    struct cn_buf line; /* bytes of the message being received */
    cn_etcd_watch_cb cb;
    void *ctx;
    int stop;      /* cb asked to end */
    char why[320]; /* why the stream ended (a parse failure) */
};

static size_t on_stream(char *p, size_t size, size_t n, void *ud)
{
    struct cn_etcd_watch *w = ud;
    size_t len = size * n;
    for (size_t i = 0; i < len && !w->stop;) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t take = nl ? (size_t)(nl - (p + i)) : len - i;
        if (cn_buf_append(&w->line, p + i, take) != 0) {
            snprintf(w->why, sizeof(w->why), "a watch message passes %zu bytes", w->line.max);
            return 0;
        }
        i += take;
        if (!nl)
            break;
        i++; /* the newline */
        if (w->line.len == 0)
            continue;
        struct cn_etcd_resp msg;
        cn_etcd_resp_init(&msg);
        int rc = cn_etcd_parse(CN_ETCD_WATCH, w->line.ptr, w->line.len, w->e->max_response, &msg);
        cn_buf_reset(&w->line);
        if (rc != 0) {
            snprintf(w->why, sizeof(w->why), "watch: %s", msg.error);
            cn_etcd_resp_release(&msg);
            return 0;
        }
        if (w->cb(w->ctx, &msg) != 0) {
            w->stop = 1;
            snprintf(w->why, sizeof(w->why), "stopped by its reader");
        }
        cn_etcd_resp_release(&msg);
    }
    return w->stop ? 0 : len;
}

struct cn_etcd_watch *cn_etcd_watch_new(struct cn_etcd *e, struct cn_slice prefix,
                                        int64_t start_rev, cn_etcd_watch_cb cb, void *ctx,
                                        char *err, size_t err_len)
{
    struct cn_etcd_watch *w = calloc(1, sizeof(*w));
    json_t *r = json_object(), *cr = json_object();
    if (!w || !r || !cr)
        goto nomem;
    w->e = e;
    w->cb = cb;
    w->ctx = ctx;
    w->endpoint = cn_etcd_current(e);
    cn_buf_init(&w->line, e->max_response);
    json_object_set_new(cr, "key", b64(prefix));
    set_range_end(cr, prefix);
    if (start_rev > 0)
        json_object_set_new(cr, "start_revision", i64s(start_rev));
    json_object_set_new(r, "create_request", cr);
    cr = NULL;
    w->body = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    r = NULL;
    w->m = curl_multi_init();
    w->h = curl_easy_init();
    if (!w->body || !w->m || !w->h)
        goto nomem;
    char url[512];
    snprintf(url, sizeof(url), "%s/v3/watch", e->urls[w->endpoint]);
    curl_easy_setopt(w->h, CURLOPT_URL, url);
    curl_easy_setopt(w->h, CURLOPT_POSTFIELDS, w->body);
    curl_easy_setopt(w->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(w->h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->dial_ms);
    curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(w->h, CURLOPT_WRITEDATA, w);
    /* A member that vanishes without a reset (power loss) is found by TCP keepalives; the
     * periodic reconciliation covers what a silent stream missed meanwhile. */
    curl_easy_setopt(w->h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(w->h, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(w->h, CURLOPT_TCP_KEEPINTVL, 2L);
    curl_multi_add_handle(w->m, w->h);
    return w;
nomem:
    json_decref(r);
    json_decref(cr);
    cn_etcd_watch_free(w);
    snprintf(err, err_len, "out of memory");
    return NULL;
}

int cn_etcd_watch_poll(struct cn_etcd_watch *w, uint64_t timeout_ms, char *err, size_t err_len)
{
    int running = 0;
    curl_multi_poll(w->m, NULL, 0, (int)CN_MIN(timeout_ms, (uint64_t)INT32_MAX), NULL);
    curl_multi_perform(w->m, &running);
    int left = 0;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(w->m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        long status = 0;
        curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &status);
        if (w->why[0])
            snprintf(err, err_len, "%s: %s", w->e->urls[w->endpoint], w->why);
        else if (msg->data.result != CURLE_OK)
            snprintf(err, err_len, "%s: %s", w->e->urls[w->endpoint],
                     curl_easy_strerror(msg->data.result));
        else
            snprintf(err, err_len, "%s: the watch stream ended (HTTP %ld)", w->e->urls[w->endpoint],
                     status);
        return 1;
    }
    if (w->stop) {
        snprintf(err, err_len, "%s", w->why);
        return 1;
    }
    return 0;
}

void cn_etcd_watch_wakeup(struct cn_etcd_watch *w)
{
    curl_multi_wakeup(w->m);
}

size_t cn_etcd_watch_endpoint(const struct cn_etcd_watch *w)
{
    return w->endpoint;
}

void cn_etcd_watch_free(struct cn_etcd_watch *w)
{
    if (!w)
        return;
    if (w->m && w->h)
        curl_multi_remove_handle(w->m, w->h);
    if (w->h)
        curl_easy_cleanup(w->h);
    if (w->m)
        curl_multi_cleanup(w->m);
    free(w->body);
    cn_buf_release(&w->line);
    free(w);
}
