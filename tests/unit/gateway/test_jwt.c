/* JWT verification: HS256, RS256 and ES256 tokens signed here with keys made by OpenSSL, the
 * claim checks, and the tokens that must be refused (alg none, algorithm confusion, bad
 * signatures, malformed segments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/base64.h"
#include "gateway/internal.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define NOW 1700000000

static EVP_PKEY *rsa, *ec, *rsa_other;
static const char secret[] = "0123456789abcdef0123456789abcdef-hs256";

static void b64url(char *dst, const uint8_t *src, size_t n)
{
    dst[cn_base64url_encode(dst, src, n)] = '\0';
}

static void b64url_str(char *dst, const char *s)
{
    b64url(dst, (const uint8_t *)s, strlen(s));
}

static void bn_b64(char *dst, EVP_PKEY *pk, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
    uint8_t buf[600];
    int n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    b64url(dst, buf, (size_t)n);
}

/* A JWKS with the RSA key (kid r1), the EC key (kid e1). */
static struct gw_jwks *make_jwks(void)
{
    char n[400], e[16], x[64], y[64], doc[2048];
    bn_b64(n, rsa, OSSL_PKEY_PARAM_RSA_N, 0);
    bn_b64(e, rsa, OSSL_PKEY_PARAM_RSA_E, 0);
    bn_b64(x, ec, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    bn_b64(y, ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    snprintf(
        doc, sizeof(doc),
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
        n, e, x, y);
    char err[256];
    struct gw_jwks *k = gw_jwks_parse(doc, strlen(doc), err, sizeof(err));
    if (!k)
        fail_msg("jwks: %s", err);
    return k;
}

/* header.payload.signature with alg over the two JSON texts. */
static char *sign(const char *alg, EVP_PKEY *pk, const char *header, const char *payload)
{
    static char tok[8192];
    char h[1024], p[2048];
    b64url_str(h, header);
    b64url_str(p, payload);
    snprintf(tok, sizeof(tok), "%s.%s", h, p);
    uint8_t sig[1024];
    size_t sl = sizeof(sig);
    if (!strcmp(alg, "HS256")) {
        unsigned ml = 0;
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (uint8_t *)tok, strlen(tok), sig, &ml);
        sl = ml;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk), 1);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sl, (uint8_t *)tok, strlen(tok)), 1);
        EVP_MD_CTX_free(ctx);
        if (!strcmp(alg, "ES256")) {
            const uint8_t *d = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &d, (long)sl);
            assert_non_null(es);
            const BIGNUM *r, *s;
            ECDSA_SIG_get0(es, &r, &s);
            BN_bn2binpad(r, sig, 32);
            BN_bn2binpad(s, sig + 32, 32);
            ECDSA_SIG_free(es);
            sl = 64;
        }
    }
    size_t o = strlen(tok);
    tok[o++] = '.';
    b64url(tok + o, sig, sl);
    return tok;
}

static struct gw_jwt jwt_cfg(struct gw_jwks *keys, unsigned algs)
{
    static struct cn_slice aud[] = {CN_SLICE_LIT("shop")};
    struct gw_jwt j = {.issuer = CN_SLICE_LIT("https://idp.example"),
                       .audiences = aud,
                       .num_audiences = 1,
                       .algorithms = algs,
                       .keys = keys,
                       .clock_skew_s = 30,
                       .max_token_bytes = 16384};
    return j;
}

static struct gw_jwks *hs_keys(void)
{
    struct gw_jwks *k = calloc(1, sizeof(*k));
    k->keys = calloc(1, sizeof(*k->keys));
    k->keys[0].alg = GW_JWT_HS256;
    k->keys[0].secret = (uint8_t *)strdup(secret);
    k->keys[0].secret_len = strlen(secret);
    k->num_keys = 1;
    atomic_init(&k->refs, 1);
    return k;
}

#define GOOD                                                                                       \
    "{\"iss\":\"https://"                                                                          \
    "idp.example\",\"aud\":\"shop\",\"sub\":\"u42\",\"exp\":1700000600,\"tier\":\"gold\",\"n\":7}"

static int verify(const struct gw_jwt *j, const char *tok, char *why)
{
    struct gw_jwt_err err = {""};
    json_t *c = NULL;
    int rc = gw_jwt_verify(j, cn_slice_of(tok), NOW, &c, &err);
    if (why)
        snprintf(why, 160, "%s", err.msg);
    if (rc == 0) {
        assert_non_null(c);
        json_decref(c);
    }
    return rc;
}

static void test_valid_each_alg(void **state)
{
    (void)state;
    struct gw_jwks *keys = make_jwks(), *hk = hs_keys();
    struct gw_jwt j = jwt_cfg(keys, GW_JWT_RS256 | GW_JWT_ES256);
    assert_int_equal(
        verify(&j, sign("RS256", rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", GOOD), NULL), 0);
    assert_int_equal(
        verify(&j, sign("ES256", ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", GOOD), NULL), 0);
    /* Without a kid every key of the algorithm is tried. */
    assert_int_equal(verify(&j, sign("ES256", ec, "{\"alg\":\"ES256\"}", GOOD), NULL), 0);
    struct gw_jwt h = jwt_cfg(hk, GW_JWT_HS256);
    assert_int_equal(
        verify(&h, sign("HS256", NULL, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", GOOD), NULL), 0);
    /* The verified claims are readable by name (jwt_claim:NAME). */
    struct gw_jwt_err err;
    json_t *c = NULL;
    assert_int_equal(gw_jwt_verify(&h,
                                   cn_slice_of(sign("HS256", NULL, "{\"alg\":\"HS256\"}", GOOD)),
                                   NOW, &c, &err),
                     0);
    char buf[64];
    struct cn_slice v;
    assert_int_equal(gw_jwt_claim(c, CN_SLICE_LIT("tier"), buf, sizeof(buf), &v), 0);
    assert_true(cn_slice_eq(v, CN_SLICE_LIT("gold")));
    assert_int_equal(gw_jwt_claim(c, CN_SLICE_LIT("n"), buf, sizeof(buf), &v), 0);
    assert_true(cn_slice_eq(v, CN_SLICE_LIT("7")));
    assert_int_equal(gw_jwt_claim(c, CN_SLICE_LIT("missing"), buf, sizeof(buf), &v), CN_ENOENT);
    assert_int_equal(gw_jwt_claim(NULL, CN_SLICE_LIT("tier"), buf, sizeof(buf), &v), CN_ENOENT);
    json_decref(c);
    gw_jwks_unref(keys);
    gw_jwks_unref(hk);
}

static void test_claims(void **state)
{
    (void)state;
    struct gw_jwks *hk = hs_keys();
    struct gw_jwt j = jwt_cfg(hk, GW_JWT_HS256);
    const char *h = "{\"alg\":\"HS256\"}";
    char why[160];
    static const struct {
        const char *payload;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\",\"exp\":1699999000}", "token expired"},
        /* exp within the clock skew (30 s) passes; exp == now - skew does not */
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\",\"exp\":1699999980}", NULL},
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\",\"exp\":1699999970}", "token expired"},
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\"}", "token has no exp"},
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\",\"exp\":\"soon\"}",
         "exp is not a number"},
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\",\"exp\":1700000600,\"nbf\":1700000100}",
         "token not valid yet (nbf)"},
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\",\"exp\":1700000600,\"nbf\":1700000020}",
         NULL},
        {"{\"iss\":\"https://idp.example\",\"aud\":\"shop\",\"exp\":1700000600,\"iat\":1700000500}",
         "token issued in the future (iat)"},
        {"{\"iss\":\"https://evil.example\",\"aud\":\"shop\",\"exp\":1700000600}", "wrong issuer"},
        {"{\"aud\":\"shop\",\"exp\":1700000600}", "wrong issuer"},
        {"{\"iss\":\"https://idp.example\",\"aud\":\"admin\",\"exp\":1700000600}",
         "wrong audience"},
        {"{\"iss\":\"https://idp.example\",\"aud\":[\"x\",\"shop\"],\"exp\":1700000600}", NULL},
        {"{\"iss\":\"https://idp.example\",\"aud\":[\"x\",\"y\"],\"exp\":1700000600}",
         "wrong audience"},
        {"{\"iss\":\"https://idp.example\",\"exp\":1700000600}", "wrong audience"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = verify(&j, sign("HS256", NULL, h, cases[i].payload), why);
        if (!cases[i].why) {
            if (rc != 0)
                fail_msg("case %zu refused: %s", i, why);
        } else {
            assert_int_equal(rc, CN_EINVAL);
            assert_string_equal(why, cases[i].why);
        }
    }
    gw_jwks_unref(hk);
}

static void test_refused(void **state)
{
    (void)state;
    struct gw_jwks *keys = make_jwks(), *hk = hs_keys();
    struct gw_jwt j = jwt_cfg(keys, GW_JWT_RS256 | GW_JWT_ES256);
    char why[160];
    /* Signed by another RSA key, and a tampered payload. */
    assert_int_equal(
        verify(&j, sign("RS256", rsa_other, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", GOOD), why),
        CN_EINVAL);
    assert_string_equal(why, "bad signature");
    char *t = sign("ES256", ec, "{\"alg\":\"ES256\"}", GOOD);
    char *dot = strchr(t, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(&j, t, why), CN_EINVAL);
    assert_true(!strcmp(why, "bad signature") || !strcmp(why, "malformed token payload"));
    /* alg none is never accepted, with or without a signature. */
    char h[64], p[256], tok[1024];
    b64url_str(h, "{\"alg\":\"none\"}");
    b64url_str(p, GOOD);
    snprintf(tok, sizeof(tok), "%s.%s.", h, p);
    assert_int_equal(verify(&j, tok, why), CN_EINVAL);
    assert_string_equal(why, "malformed token (empty segment)");
    snprintf(tok, sizeof(tok), "%s.%s.c2ln", h, p);
    assert_int_equal(verify(&j, tok, why), CN_EINVAL);
    assert_string_equal(why, "algorithm none not allowed");
    /* Algorithm confusion: an HS256 token whose "secret" is the RSA public key's bytes is
     * refused: HS256 is not allowed here, and where it is, only an oct key serves. */
    uint8_t *der = NULL;
    int dl = i2d_PUBKEY(rsa, &der);
    uint8_t mac[32];
    unsigned ml;
    char hb[64], pb[256], signing[512], sb[64];
    b64url_str(hb, "{\"alg\":\"HS256\",\"kid\":\"r1\"}");
    b64url_str(pb, GOOD);
    snprintf(signing, sizeof(signing), "%s.%s", hb, pb);
    HMAC(EVP_sha256(), der, dl, (uint8_t *)signing, strlen(signing), mac, &ml);
    OPENSSL_free(der);
    b64url(sb, mac, ml);
    snprintf(tok, sizeof(tok), "%s.%s", signing, sb);
    assert_int_equal(verify(&j, tok, why), CN_EINVAL);
    assert_string_equal(why, "algorithm HS256 not allowed");
    struct gw_jwt both = jwt_cfg(keys, GW_JWT_HS256 | GW_JWT_RS256);
    assert_int_equal(verify(&both, tok, why), CN_EINVAL);
    assert_string_equal(why, "no key for the token (alg HS256, kid r1)");
    /* An ES256 token presented as RS256 finds no fitting signature. */
    t = sign("ES256", ec, "{\"alg\":\"RS256\",\"kid\":\"e1\"}", GOOD);
    assert_int_equal(verify(&j, t, why), CN_EINVAL);
    assert_string_equal(why, "no key for the token (alg RS256, kid e1)");
    /* An unknown kid. */
    assert_int_equal(
        verify(&j, sign("RS256", rsa, "{\"alg\":\"RS256\",\"kid\":\"zz\"}", GOOD), why), CN_EINVAL);
    assert_string_equal(why, "no key for the token (alg RS256, kid zz)");
    /* crit is not understood. */
    assert_int_equal(
        verify(&j, sign("RS256", rsa, "{\"alg\":\"RS256\",\"crit\":[\"b64\"]}", GOOD), why),
        CN_EINVAL);
    assert_string_equal(why, "unsupported crit header");
    gw_jwks_unref(keys);
    gw_jwks_unref(hk);
}

static void test_malformed(void **state)
{
    (void)state;
    struct gw_jwks *hk = hs_keys();
    struct gw_jwt j = jwt_cfg(hk, GW_JWT_HS256);
    char why[160];
    const char *good = sign("HS256", NULL, "{\"alg\":\"HS256\"}", GOOD);
    static const struct {
        const char *tok;
        const char *why;
    } cases[] = {
        {"", "no bearer token"},
        {"abc", "malformed token (not three segments)"},
        {"a.b", "malformed token (not three segments)"},
        {"a.b.c.d", "malformed token (not three segments)"},
        {".b.c", "malformed token (empty segment)"},
        {"a..c", "malformed token (empty segment)"},
        {"e30=.e30.c2ln", "malformed token header"},          /* padding is not base64url */
        {"e3+.e30.c2ln", "malformed token header"},           /* '+' is not base64url */
        {"W10.e30.c2ln", "malformed token header"},           /* [] is not an object */
        {"e30.e30.c2ln", "token header has no alg"},          /* {} */
        {"eyJhbGciOjF9.e30.c2ln", "token header has no alg"}, /* {"alg":1} */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(verify(&j, cases[i].tok, why), CN_EINVAL);
        if (strcmp(why, cases[i].why))
            fail_msg("case %zu: '%s', want '%s'", i, why, cases[i].why);
    }
    /* The signature segment of a good token with a stray character. */
    char bad[2048];
    snprintf(bad, sizeof(bad), "%s*", good);
    assert_int_equal(verify(&j, bad, why), CN_EINVAL);
    assert_string_equal(why, "malformed signature");
    /* max_token_bytes at its edge. */
    j.max_token_bytes = strlen(good);
    assert_int_equal(verify(&j, good, why), 0);
    j.max_token_bytes = strlen(good) - 1;
    assert_int_equal(verify(&j, good, why), CN_EINVAL);
    assert_non_null(strstr(why, "longer than"));
    gw_jwks_unref(hk);
}

static void test_jwks_and_b64(void **state)
{
    (void)state;
    uint8_t out[16];
    assert_int_equal(gw_b64url_decode(out, "YQ", 2), 1);
    assert_int_equal(out[0], 'a');
    assert_int_equal(gw_b64url_decode(out, "YR", 2), -1); /* non-zero spare bits */
    assert_int_equal(gw_b64url_decode(out, "Y", 1), -1);
    assert_int_equal(gw_b64url_decode(out, "YQ==", 4), -1);
    char err[256];
    const char *bad[] = {
        "[]",
        "{\"keys\":{}}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}", /* too short */
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2hvcnQ\"}]}",             /* 5 bytes */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(gw_jwks_parse(bad[i], strlen(bad[i]), err, sizeof(err)));
    const char *skip = "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"},"
                       "{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}";
    struct gw_jwks *k = gw_jwks_parse(skip, strlen(skip), err, sizeof(err));
    assert_non_null(k);
    assert_int_equal(k->num_keys, 0);
    gw_jwks_unref(k);
}

int main(void)
{
    rsa = EVP_RSA_gen(2048);
    rsa_other = EVP_RSA_gen(2048);
    ec = EVP_EC_gen("P-256");
    if (!rsa || !rsa_other || !ec)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_each_alg), cmocka_unit_test(test_claims),
        cmocka_unit_test(test_refused),        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_jwks_and_b64),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec);
    return rc;
}
