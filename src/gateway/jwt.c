/* JWT verification (RFC 7519, JWS compact serialization RFC 7515): HS256 with HMAC,
 * RS256 and ES256 with OpenSSL 3 EVP; JWKS (RFC 7517) from a file or from a URL fetched by a
 * thread of its own. The token's alg must be allowed by the filter and match the key's
 * type: an HMAC secret never verifies RS/ES tokens and a public key never serves as an HMAC
 * secret (algorithm confusion); "none" is never accepted. */
#include "gateway/internal.h"

#include "base/log.h"

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <time.h>

/* ---- base64url ------------------------------------------------------------------------------ */

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long gw_b64url_decode(uint8_t *dst, const char *s, size_t len)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* The unused low bits of the last character must be zero (one encoding per value). */
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return (long)o;
}

/* ---- key sets ------------------------------------------------------------------------------ */

struct gw_jwks *gw_jwks_ref(struct gw_jwks *k)
{
    if (k)
        atomic_fetch_add(&k->refs, 1);
    return k;
}

void gw_jwks_unref(struct gw_jwks *k)
{
    if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    for (size_t i = 0; i < k->num_keys; i++) {
        EVP_PKEY_free((EVP_PKEY *)k->keys[i].pkey);
        if (k->keys[i].secret)
            OPENSSL_cleanse(k->keys[i].secret, k->keys[i].secret_len);
        free(k->keys[i].secret);
    }
    free(k->keys);
    free(k);
}

/* A base64url member of a JWK, decoded into a new buffer. */
static uint8_t *jwk_bytes(json_t *jwk, const char *name, size_t max, size_t *out_len)
{
    const char *v = json_string_value(json_object_get(jwk, name));
    if (!v)
        return NULL;
    size_t len = strlen(v);
    if (len == 0 || len / 4 * 3 + 3 > max)
        return NULL;
    uint8_t *b = malloc(len / 4 * 3 + 3);
    long n = b ? gw_b64url_decode(b, v, len) : -1;
    if (n <= 0) {
        free(b);
        return NULL;
    }
    *out_len = (size_t)n;
    return b;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pk = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *rsa_key(json_t *jwk, char *err, size_t err_len)
{
    size_t nl = 0, el = 0;
    uint8_t *n = jwk_bytes(jwk, "n", 2048, &nl), *e = jwk_bytes(jwk, "e", 16, &el);
    EVP_PKEY *pk = NULL;
    if (!n || !e || nl < 256) {
        snprintf(err, err_len, "RSA key needs base64url n (2048 bits or more) and e");
    } else {
        BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
            pk = pkey_from_params("RSA", bld);
        if (!pk)
            snprintf(err, err_len, "RSA key rejected by OpenSSL");
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
    }
    free(n);
    free(e);
    return pk;
}

static EVP_PKEY *ec_key(json_t *jwk, char *err, size_t err_len)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (!crv || strcmp(crv, "P-256") != 0) {
        snprintf(err, err_len, "EC key: crv must be P-256");
        return NULL;
    }
    size_t xl = 0, yl = 0;
    uint8_t *x = jwk_bytes(jwk, "x", 64, &xl), *y = jwk_bytes(jwk, "y", 64, &yl);
    EVP_PKEY *pk = NULL;
    if (!x || !y || xl != 32 || yl != 32) {
        snprintf(err, err_len, "EC key needs 32-byte base64url x and y");
    } else {
        uint8_t pt[65];
        pt[0] = 4; /* uncompressed point */
        memcpy(pt + 1, x, 32);
        memcpy(pt + 33, y, 32);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)))
            pk = pkey_from_params("EC", bld);
        if (!pk)
            snprintf(err, err_len, "EC key: the point is not on P-256");
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    return pk;
}

struct gw_jwks *gw_jwks_parse(const char *text, size_t len, char *err, size_t err_len)
{
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, err_len, "JWKS is not JSON: %s (line %d)", je.text, je.line);
        return NULL;
    }
    json_t *keys = json_object_get(doc, "keys");
    struct gw_jwks *set = calloc(1, sizeof(*set));
    if (!json_is_array(keys)) {
        snprintf(err, err_len, "JWKS needs a \"keys\" list");
        goto fail;
    }
    if (json_array_size(keys) > GW_JWT_MAX_KEYS) {
        snprintf(err, err_len, "JWKS holds more than %d keys", GW_JWT_MAX_KEYS);
        goto fail;
    }
    if (!set || !(set->keys = calloc(json_array_size(keys) + 1, sizeof(*set->keys)))) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    atomic_init(&set->refs, 1);
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        const char *alg = json_string_value(json_object_get(jwk, "alg"));
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        const char *use = json_string_value(json_object_get(jwk, "use"));
        if (!kty || (use && strcmp(use, "sig") != 0))
            continue;
        struct gw_jwk *k = &set->keys[set->num_keys];
        char kerr[160] = "";
        if (kid)
            snprintf(k->kid, sizeof(k->kid), "%s", kid);
        if (!strcmp(kty, "RSA")) {
            k->alg = GW_JWT_RS256;
            k->pkey = (struct evp_pkey_st *)rsa_key(jwk, kerr, sizeof(kerr));
        } else if (!strcmp(kty, "EC")) {
            k->alg = GW_JWT_ES256;
            k->pkey = (struct evp_pkey_st *)ec_key(jwk, kerr, sizeof(kerr));
        } else if (!strcmp(kty, "oct")) {
            k->alg = GW_JWT_HS256;
            k->secret = jwk_bytes(jwk, "k", 4096, &k->secret_len);
            if (!k->secret || k->secret_len < 32)
                snprintf(kerr, sizeof(kerr), "oct key needs base64url k of 32 bytes or more");
        } else {
            continue; /* OKP and others: not used here */
        }
        unsigned want = !alg                    ? k->alg
                        : !strcmp(alg, "RS256") ? GW_JWT_RS256
                        : !strcmp(alg, "ES256") ? GW_JWT_ES256
                        : !strcmp(alg, "HS256") ? GW_JWT_HS256
                                                : 0;
        if (!kerr[0] && want != k->alg)
            snprintf(kerr, sizeof(kerr), "alg %s does not go with kty %s", alg, kty);
        if (kerr[0] || (!k->pkey && !k->secret)) {
            snprintf(err, err_len, "keys[%zu]%s%s%s: %s", i, k->kid[0] ? " (kid " : "", k->kid,
                     k->kid[0] ? ")" : "", kerr[0] ? kerr : "unusable key");
            set->num_keys++;
            goto fail;
        }
        set->num_keys++;
    }
    json_decref(doc);
    return set;
fail:
    json_decref(doc);
    if (set && set->keys) {
        atomic_init(&set->refs, 1);
        gw_jwks_unref(set);
    } else {
        free(set);
    }
    return NULL;
}

/* ---- remote key sets ------------------------------------------------------------------------ */

struct gw_jwks_remote {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs; /* the thread and the snapshot */
    int stop;
    char *url;
    uint64_t refresh_ms, timeout_ms;
    struct gw_jwks *cur;
};

static void remote_unref(struct gw_jwks_remote *r)
{
    pthread_mutex_lock(&r->lock);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&r->lock);
    if (!last)
        return;
    gw_jwks_unref(r->cur);
    free(r->url);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    struct cn_buf *b = ctx;
    return cn_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

static void fetch_once(struct gw_jwks_remote *r)
{
    CURL *c = curl_easy_init();
    if (!c)
        return;
    struct cn_buf b;
    cn_buf_init(&b, GW_JWT_MAX_JWKS_BYTES);
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    char err[256];
    if (rc != CURLE_OK || status != 200) {
        cn_warn("gateway", "jwks fetch failed, the last good key set stays",
                "url=\"%s\" status=%ld error=\"%s\"", r->url, status,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "status");
    } else {
        struct gw_jwks *k = gw_jwks_parse(b.ptr ? b.ptr : "", b.len, err, sizeof(err));
        if (!k) {
            cn_warn("gateway", "jwks rejected, the last good key set stays",
                    "url=\"%s\" error=\"%s\"", r->url, err);
        } else {
            pthread_mutex_lock(&r->lock);
            struct gw_jwks *old = r->cur;
            r->cur = k;
            pthread_mutex_unlock(&r->lock);
            gw_jwks_unref(old);
            cn_debug("gateway", "jwks fetched", "url=\"%s\" keys=%zu", r->url, k->num_keys);
        }
    }
    cn_buf_release(&b);
}

static void *remote_main(void *arg)
{
    struct gw_jwks_remote *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        int stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            break;
        fetch_once(r);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (r->refresh_ms % 1000) * 1000000ull;
        ts.tv_sec += (time_t)(r->refresh_ms / 1000 + ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_mutex_lock(&r->lock);
        while (!r->stop && pthread_cond_timedwait(&r->cond, &r->lock, &ts) == 0)
            ;
        pthread_mutex_unlock(&r->lock);
    }
    remote_unref(r);
    return NULL;
}

struct gw_jwks_remote *gw_jwks_remote_start(const char *url, uint64_t refresh_ms,
                                            uint64_t timeout_ms)
{
    struct gw_jwks_remote *r = calloc(1, sizeof(*r));
    if (!r || !(r->url = strdup(url))) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->refs = 2;
    r->refresh_ms = refresh_ms;
    r->timeout_ms = timeout_ms;
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &a, remote_main, r);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        r->refs = 1;
        remote_unref(r);
        return NULL;
    }
    return r;
}

struct gw_jwks *gw_jwks_remote_get(struct gw_jwks_remote *r)
{
    pthread_mutex_lock(&r->lock);
    struct gw_jwks *k = gw_jwks_ref(r->cur);
    pthread_mutex_unlock(&r->lock);
    return k;
}

void gw_jwks_remote_stop(struct gw_jwks_remote *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    remote_unref(r);
}

/* ---- verification --------------------------------------------------------------------------- */

static int fail(struct gw_jwt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct gw_jwt_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return CN_EINVAL;
}

/* Decodes one segment into a new JSON object. */
static json_t *segment_json(const char *p, size_t len, uint8_t *scratch)
{
    long n = gw_b64url_decode(scratch, p, len);
    if (n <= 0)
        return NULL;
    json_t *j = json_loadb((const char *)scratch, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int verify_pkey(EVP_PKEY *pk, unsigned alg, const char *signed_part, size_t signed_len,
                       const uint8_t *sig, size_t sig_len)
{
    uint8_t der[80];
    const uint8_t *s = sig;
    size_t slen = sig_len;
    if (alg == GW_JWT_ES256) {
        /* JWS carries r || s (32 bytes each); EVP wants a DER ECDSA-Sig-Value. */
        if (sig_len != 64)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !ss || !ECDSA_SIG_set0(es, r, ss)) {
            ECDSA_SIG_free(es);
            BN_free(r);
            BN_free(ss);
            return 0;
        }
        uint8_t *d = der;
        int dl = i2d_ECDSA_SIG(es, NULL);
        if (dl <= 0 || (size_t)dl > sizeof(der) || i2d_ECDSA_SIG(es, &d) != dl) {
            ECDSA_SIG_free(es);
            return 0;
        }
        ECDSA_SIG_free(es);
        s = der;
        slen = (size_t)dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pk) == 1 &&
             EVP_DigestVerify(ctx, s, slen, (const uint8_t *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int verify_hmac(const uint8_t *key, size_t key_len, const char *signed_part,
                       size_t signed_len, const uint8_t *sig, size_t sig_len)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned ml = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)signed_part, signed_len, mac, &ml))
        return 0;
    return sig_len == ml && CRYPTO_memcmp(mac, sig, ml) == 0;
}

/* Tries the keys of set that fit alg and kid. Returns 1 when one verifies, 0 when none does,
 * -1 when no key fits. */
static int try_keys(const struct gw_jwks *set, unsigned alg, const char *kid,
                    const char *signed_part, size_t signed_len, const uint8_t *sig, size_t sig_len)
{
    int fits = 0;
    for (size_t i = 0; set && i < set->num_keys; i++) {
        const struct gw_jwk *k = &set->keys[i];
        if (k->alg != alg || (kid && k->kid[0] && strcmp(kid, k->kid) != 0))
            continue;
        fits = 1;
        int ok = alg == GW_JWT_HS256
                     ? verify_hmac(k->secret, k->secret_len, signed_part, signed_len, sig, sig_len)
                     : verify_pkey((EVP_PKEY *)k->pkey, alg, signed_part, signed_len, sig, sig_len);
        if (ok)
            return 1;
    }
    return fits ? 0 : -1;
}

/* A NumericDate claim: absent (1), present (0, *out), or malformed (-1). */
static int num_date(json_t *claims, const char *name, int64_t *out)
{
    json_t *v = json_object_get(claims, name);
    if (!v)
        return 1;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d > -9e15 && d < 9e15))
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

static int check_claims(const struct gw_jwt *j, json_t *c, int64_t now, struct gw_jwt_err *err)
{
    int64_t skew = (int64_t)j->clock_skew_s, t;
    int rc = num_date(c, "exp", &t);
    if (rc < 0)
        return fail(err, "exp is not a number");
    if (rc > 0)
        return fail(err, "token has no exp");
    if (now - skew >= t)
        return fail(err, "token expired");
    if ((rc = num_date(c, "nbf", &t)) < 0)
        return fail(err, "nbf is not a number");
    if (rc == 0 && now + skew < t)
        return fail(err, "token not valid yet (nbf)");
    if ((rc = num_date(c, "iat", &t)) < 0)
        return fail(err, "iat is not a number");
    if (rc == 0 && now + skew < t)
        return fail(err, "token issued in the future (iat)");
    if (j->issuer.len) {
        const char *iss = json_string_value(json_object_get(c, "iss"));
        if (!iss || !cn_slice_eq(cn_slice_of(iss), j->issuer))
            return fail(err, "wrong issuer");
    }
    if (j->num_audiences) {
        json_t *aud = json_object_get(c, "aud");
        int ok = 0;
        for (size_t a = 0; a < j->num_audiences && !ok; a++) {
            if (json_is_string(aud)) {
                ok = cn_slice_eq(cn_slice_of(json_string_value(aud)), j->audiences[a]);
            } else if (json_is_array(aud)) {
                size_t i;
                json_t *v;
                json_array_foreach(aud, i, v)
                {
                    if (json_is_string(v) &&
                        cn_slice_eq(cn_slice_of(json_string_value(v)), j->audiences[a]))
                        ok = 1;
                }
            }
        }
        if (!ok)
            return fail(err, "wrong audience");
    }
    return 0;
}

int gw_jwt_verify(const struct gw_jwt *j, struct cn_slice tok, int64_t now_s, json_t **out_claims,
                  struct gw_jwt_err *err)
{
    if (tok.len == 0)
        return fail(err, "no bearer token");
    if (tok.len > j->max_token_bytes)
        return fail(err, "token longer than %llu bytes", (unsigned long long)j->max_token_bytes);
    const char *d1 = memchr(tok.ptr, '.', tok.len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(tok.ptr + tok.len - d1 - 1)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', (size_t)(tok.ptr + tok.len - d2 - 1)))
        return fail(err, "malformed token (not three segments)");
    size_t hl = (size_t)(d1 - tok.ptr), pl = (size_t)(d2 - d1 - 1);
    size_t sl = (size_t)(tok.ptr + tok.len - d2 - 1);
    if (hl == 0 || pl == 0 || sl == 0)
        return fail(err, "malformed token (empty segment)");
    uint8_t *scratch = malloc(tok.len / 4 * 3 + 4);
    if (!scratch)
        return fail(err, "out of memory");
    int rc = CN_EINVAL;
    json_t *hdr = segment_json(tok.ptr, hl, scratch), *claims = NULL;
    if (!hdr) {
        fail(err, "malformed token header");
        goto out;
    }
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    json_t *kidv = json_object_get(hdr, "kid");
    const char *kid = json_string_value(kidv);
    unsigned a = !alg                    ? 0
                 : !strcmp(alg, "HS256") ? GW_JWT_HS256
                 : !strcmp(alg, "RS256") ? GW_JWT_RS256
                 : !strcmp(alg, "ES256") ? GW_JWT_ES256
                                         : 0;
    if (!alg) {
        fail(err, "token header has no alg");
        goto out;
    }
    if (!a || !(j->algorithms & a)) {
        fail(err, "algorithm %.16s not allowed", alg);
        goto out;
    }
    if (kidv && !kid) {
        fail(err, "kid is not a string");
        goto out;
    }
    if (json_object_get(hdr, "crit")) {
        fail(err, "unsupported crit header");
        goto out;
    }
    long siglen = gw_b64url_decode(scratch, d2 + 1, sl);
    if (siglen <= 0) {
        fail(err, "malformed signature");
        goto out;
    }
    size_t signed_len = hl + 1 + pl;
    int v = -1;
    struct gw_jwks *remote = j->remote ? gw_jwks_remote_get(j->remote) : NULL;
    if (j->keys)
        v = try_keys(j->keys, a, kid, tok.ptr, signed_len, scratch, (size_t)siglen);
    if (v != 1 && remote) {
        int v2 = try_keys(remote, a, kid, tok.ptr, signed_len, scratch, (size_t)siglen);
        v = v2 == 1 || v < 0 ? v2 : v;
    }
    gw_jwks_unref(remote);
    if (v < 0) {
        fail(err, "no key for the token (alg %s%s%.64s)", alg, kid ? ", kid " : "", kid ? kid : "");
        goto out;
    }
    if (v == 0) {
        fail(err, "bad signature");
        goto out;
    }
    if (!(claims = segment_json(d1 + 1, pl, scratch))) {
        fail(err, "malformed token payload");
        goto out;
    }
    if (check_claims(j, claims, now_s, err) != 0)
        goto out;
    *out_claims = claims;
    claims = NULL;
    rc = 0;
out:
    json_decref(hdr);
    json_decref(claims);
    free(scratch);
    return rc;
}

int gw_jwt_claim(const json_t *claims, struct cn_slice name, char *buf, size_t buf_len,
                 struct cn_slice *out)
{
    if (!claims || name.len == 0 || name.len >= 256)
        return CN_ENOENT;
    char key[256];
    memcpy(key, name.ptr, name.len);
    key[name.len] = '\0';
    json_t *v = json_object_get(claims, key);
    int n = -1;
    if (json_is_string(v)) {
        *out = (struct cn_slice){json_string_value(v), json_string_length(v)};
        return 0;
    }
    if (json_is_integer(v))
        n = snprintf(buf, buf_len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        n = snprintf(buf, buf_len, "%.17g", json_real_value(v));
    else if (json_is_boolean(v))
        n = snprintf(buf, buf_len, "%s", json_is_true(v) ? "true" : "false");
    if (n < 0 || (size_t)n >= buf_len)
        return CN_ENOENT;
    *out = (struct cn_slice){buf, (size_t)n};
    return 0;
}
