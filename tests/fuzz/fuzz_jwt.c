/* Fuzzes JWT verification (src/gateway/jwt.c) and JWKS parsing. First byte: bit 7 set, the
 * rest is a JWKS document; otherwise the rest is a token verified against an HS256 secret
 * and a JWKS with an RSA and an EC P-256 key (made once), with the algorithms of the low
 * bits. Properties: no crash, no leak, a verified token's claims are an object with an exp
 * in the future, a parsed JWKS never holds more keys than its limit. */
#include "base/base64.h"
#include "gateway/internal.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <stdint.h>

static struct gw_jwks *keys;

static void b64url(char *dst, const uint8_t *src, size_t n)
{
    dst[cn_base64url_encode(dst, src, n)] = '\0';
}

static void param(char *dst, EVP_PKEY *pk, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    uint8_t buf[600];
    CN_BUG_ON(EVP_PKEY_get_bn_param(pk, name, &bn) != 1);
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    b64url(dst, buf, (size_t)n);
}

static void init(void)
{
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *ec = EVP_EC_gen("P-256");
    CN_BUG_ON(!rsa || !ec);
    char n[400], e[16], x[64], y[64], doc[2048];
    param(n, rsa, OSSL_PKEY_PARAM_RSA_N, 0);
    param(e, rsa, OSSL_PKEY_PARAM_RSA_E, 0);
    param(x, ec, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    param(y, ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    /* The oct key's k is base64url of "fuzz-secret-fuzz-secret-fuzz-secret!" (36 bytes). */
    snprintf(doc, sizeof(doc),
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"},"
             "{\"kty\":\"oct\",\"kid\":\"h1\",\"k\":"
             "\"ZnV6ei1zZWNyZXQtZnV6ei1zZWNyZXQtZnV6ei1zZWNyZXQh\"}]}",
             n, e, x, y);
    char err[256];
    keys = gw_jwks_parse(doc, strlen(doc), err, sizeof(err));
    CN_BUG_ON(!keys);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!keys)
        init();
    if (size == 0)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 0x80) {
        char err[256];
        struct gw_jwks *k = gw_jwks_parse(rest, len, err, sizeof(err));
        if (k) {
            CN_BUG_ON(k->num_keys > GW_JWT_MAX_KEYS);
            for (size_t i = 0; i < k->num_keys; i++)
                CN_BUG_ON(!k->keys[i].pkey && !k->keys[i].secret);
        }
        gw_jwks_unref(k);
        return 0;
    }
    static struct cn_slice aud[] = {CN_SLICE_LIT("shop")};
    struct gw_jwt j = {.algorithms = (data[0] & 7) ? (data[0] & 7) : 7,
                       .keys = keys,
                       .audiences = (data[0] & 8) ? aud : NULL,
                       .num_audiences = (data[0] & 8) ? 1 : 0,
                       .issuer = (data[0] & 16) ? CN_SLICE_LIT("iss") : CN_SLICE_LIT(""),
                       .clock_skew_s = 60,
                       .max_token_bytes = 16384};
    json_t *claims = NULL;
    struct gw_jwt_err err;
    int64_t now = 1700000000;
    if (gw_jwt_verify(&j, (struct cn_slice){rest, len}, now, &claims, &err) == 0) {
        CN_BUG_ON(!json_is_object(claims));
        json_t *exp = json_object_get(claims, "exp");
        CN_BUG_ON(!json_is_number(exp) || json_number_value(exp) <= (double)(now - 60) - 1);
        char buf[64];
        struct cn_slice v;
        gw_jwt_claim(claims, CN_SLICE_LIT("sub"), buf, sizeof(buf), &v);
        json_decref(claims);
    } else {
        CN_BUG_ON(err.msg[0] == '\0');
        CN_BUG_ON(claims != NULL);
    }
    return 0;
}
