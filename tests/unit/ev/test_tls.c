/* The TLS engine (src/ev/tls.c) against an OpenSSL client, both on memory BIOs in this
 * process: SNI picks the certificate, ALPN selects http/1.1 and refuses h2 alone, versions
 * and ciphers, each handshake failure's reason, data both ways and close_notify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ev/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct pem {
    char cert[4096], key[4096];
    size_t cert_len, key_len;
};

static struct pem pa, pb, pw, pd;

static void make(struct pem *p, const char *cn, const char *san)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    X509_sign(x, k, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    p->cert_len = (size_t)BIO_read(b, p->cert, sizeof(p->cert));
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    p->key_len = (size_t)BIO_read(b, p->key, sizeof(p->key));
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    (void)state;
    make(&pa, "a.example.com", "DNS:a.example.com");
    make(&pb, "b.example.com", "DNS:b.example.com");
    make(&pw, "*.example.com", "DNS:*.example.com");
    make(&pd, "default.local", "DNS:default.local");
    return 0;
}

static void add(struct cn_tls_ctx *t, const struct pem *p, const char *n1, const char *n2)
{
    struct cn_slice names[2] = {cn_slice_of(n1), cn_slice_of(n2)};
    size_t num = n2 ? 2 : n1 ? 1 : 0;
    char err[256];
    int key_fault;
    struct cn_tls_cert_info info;
    int rc = cn_tls_ctx_add(t, p->cert, p->cert_len, p->key, p->key_len, names, num, &info,
                            &key_fault, err, sizeof(err));
    if (rc)
        fail_msg("add: %s", err);
    assert_true(info.not_after > info.not_before);
}

static struct cn_tls_ctx *set_new(int min_version, const char *ciphers)
{
    struct cn_tls_opts o = {.min_version = min_version, .ciphers = ciphers};
    char err[256];
    int bad;
    struct cn_tls_ctx *t = cn_tls_ctx_new(&o, &bad, err, sizeof(err));
    assert_non_null(t);
    add(t, &pa, "a.example.com", NULL);
    add(t, &pb, "b.example.com", NULL);
    add(t, &pw, "*.example.com", NULL);
    add(t, &pd, NULL, NULL);
    return t;
}

/* A client on memory BIOs. */
struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;
};

static void client_new(struct client *c, const char *sni, const unsigned char *alpn,
                       size_t alpn_len, int max_version)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (max_version)
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
    c->ssl = SSL_new(c->ctx);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->in, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_connect_state(c->ssl);
    if (sni)
        SSL_set_tlsext_host_name(c->ssl, sni);
    if (alpn)
        SSL_set_alpn_protos(c->ssl, alpn, (unsigned)alpn_len);
}

static void client_free(struct client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* Moves the client's output to the server and the server's to the client. */
static void shuttle(struct client *c, struct cn_tls_conn *s)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(c->out, buf, sizeof(buf))) > 0)
        assert_int_equal(cn_tls_conn_feed(s, buf, (size_t)n), 0);
    struct cn_buf out;
    cn_buf_init(&out, 1 << 20);
    assert_int_equal(cn_tls_conn_take(s, &out), 0);
    if (out.len)
        BIO_write(c->in, out.ptr, (int)out.len);
    cn_buf_release(&out);
}

/* Runs both sides until the server finished (0) or failed (CN_EIO, *fail set). */
static int handshake(struct client *c, struct cn_tls_conn *s, enum cn_tls_fail *fail)
{
    for (int i = 0; i < 20; i++) {
        SSL_do_handshake(c->ssl);
        shuttle(c, s);
        int rc = cn_tls_conn_handshake(s, fail);
        shuttle(c, s);
        if (rc != CN_EAGAIN) {
            SSL_do_handshake(c->ssl); /* the client reads the server's last flight */
            ERR_clear_error();
            return rc;
        }
    }
    fail_msg("handshake did not finish");
    return -1;
}

static char *peer_cn(struct client *c, char *buf, size_t len)
{
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    buf[0] = '\0';
    if (x) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len);
        X509_free(x);
    }
    return buf;
}

static void test_lookup(void **state)
{
    (void)state;
    struct cn_tls_ctx *t = set_new(12, NULL);
    assert_int_equal(cn_tls_ctx_lookup(t, CN_SLICE_LIT("a.example.com")), 0);
    assert_int_equal(cn_tls_ctx_lookup(t, CN_SLICE_LIT("B.EXAMPLE.COM.")), 1);
    assert_int_equal(cn_tls_ctx_lookup(t, CN_SLICE_LIT("z.example.com")), 2);
    assert_int_equal(cn_tls_ctx_lookup(t, CN_SLICE_LIT("y.z.example.com")), 2);
    assert_int_equal(cn_tls_ctx_lookup(t, CN_SLICE_LIT("example.com")), 3);
    assert_int_equal(cn_tls_ctx_lookup(t, CN_SLICE_LIT("xexample.com")), 3);
    assert_int_equal(cn_tls_ctx_lookup(t, CN_SLICE_LIT("")), 3);
    /* The longest wildcard suffix wins. */
    struct cn_tls_opts o = {.min_version = 12};
    char err[256];
    int bad, kf;
    struct cn_tls_ctx *u = cn_tls_ctx_new(&o, &bad, err, sizeof(err));
    struct cn_slice n1 = CN_SLICE_LIT("*.example.com"), n2 = CN_SLICE_LIT("*.api.example.com");
    assert_int_equal(cn_tls_ctx_add(u, pw.cert, pw.cert_len, pw.key, pw.key_len, &n1, 1, NULL, &kf,
                                    err, sizeof(err)),
                     0);
    assert_int_equal(cn_tls_ctx_add(u, pa.cert, pa.cert_len, pa.key, pa.key_len, &n2, 1, NULL, &kf,
                                    err, sizeof(err)),
                     0);
    assert_int_equal(cn_tls_ctx_lookup(u, CN_SLICE_LIT("v1.api.example.com")), 1);
    assert_int_equal(cn_tls_ctx_lookup(u, CN_SLICE_LIT("www.example.com")), 0);
    assert_int_equal(cn_tls_ctx_lookup(u, CN_SLICE_LIT("other.org")), 0); /* first: default */
    /* A name twice, a second default, a key of another certificate. */
    assert_int_equal(cn_tls_ctx_add(u, pb.cert, pb.cert_len, pb.key, pb.key_len, &n1, 1, NULL, &kf,
                                    err, sizeof(err)),
                     CN_EINVAL);
    assert_string_equal(err, "the name '*.example.com' is listed twice");
    assert_int_equal(cn_tls_ctx_add(u, pd.cert, pd.cert_len, pd.key, pd.key_len, NULL, 0, NULL, &kf,
                                    err, sizeof(err)),
                     0);
    assert_int_equal(cn_tls_ctx_add(u, pb.cert, pb.cert_len, pb.key, pb.key_len, NULL, 0, NULL, &kf,
                                    err, sizeof(err)),
                     CN_EINVAL);
    struct cn_slice n3 = CN_SLICE_LIT("b.example.com");
    assert_int_equal(cn_tls_ctx_add(u, pb.cert, pb.cert_len, pa.key, pa.key_len, &n3, 1, NULL, &kf,
                                    err, sizeof(err)),
                     CN_EINVAL);
    assert_int_equal(kf, 1);
    assert_string_equal(err, "the private key does not match the certificate");
    assert_int_equal(cn_tls_ctx_num_certs(u), 3);
    assert_int_equal(cn_tls_ctx_lookup(u, CN_SLICE_LIT("other.org")), 2);
    cn_tls_ctx_unref(u);
    cn_tls_ctx_unref(t);
}

static void test_sni_alpn_data(void **state)
{
    (void)state;
    struct cn_tls_ctx *t = set_new(12, NULL);
    static const struct {
        const char *sni;
        const char *alpn;
        size_t alpn_len;
        const char *cn;
        const char *proto;
    } cases[] = {
        {"a.example.com", "\x02h2\x08http/1.1", 12, "a.example.com", "http/1.1"},
        {"b.example.com", NULL, 0, "b.example.com", ""},
        {"api.example.com", "\x08http/1.0", 9, "*.example.com", "http/1.0"},
        {NULL, "\x08http/1.1", 9, "default.local", "http/1.1"},
        {"unknown.org", NULL, 0, "default.local", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client c;
        client_new(&c, cases[i].sni, (const unsigned char *)cases[i].alpn, cases[i].alpn_len, 0);
        struct cn_tls_conn *s = cn_tls_conn_new(t);
        enum cn_tls_fail why;
        assert_int_equal(handshake(&c, s, &why), 0);
        char cn[256], proto[32];
        assert_string_equal(peer_cn(&c, cn, sizeof(cn)), cases[i].cn);
        assert_string_equal(cn_tls_conn_alpn(s, proto, sizeof(proto)), cases[i].proto);
        assert_string_equal(cn_tls_conn_servername(s), cases[i].sni ? cases[i].sni : "");
        assert_string_equal(cn_tls_conn_version(s), "TLSv1.3");
        /* Data both ways, then the client's close_notify ends the server's input. */
        assert_int_equal(SSL_write(c.ssl, "hello", 5), 5);
        shuttle(&c, s);
        char buf[64];
        size_t n;
        assert_int_equal(cn_tls_conn_read(s, buf, sizeof(buf), &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "hello", 5);
        assert_int_equal(cn_tls_conn_read(s, buf, sizeof(buf), &n), CN_EAGAIN);
        assert_int_equal(cn_tls_conn_write(s, "world", 5), 0);
        cn_tls_conn_close_notify(s);
        shuttle(&c, s);
        assert_int_equal(SSL_read(c.ssl, buf, sizeof(buf)), 5);
        assert_memory_equal(buf, "world", 5);
        assert_int_equal(SSL_read(c.ssl, buf, sizeof(buf)), 0);
        assert_int_equal(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN);
        SSL_shutdown(c.ssl);
        shuttle(&c, s);
        assert_int_equal(cn_tls_conn_read(s, buf, sizeof(buf), &n), 0);
        assert_int_equal(n, 0); /* close_notify */
        cn_tls_conn_free(s);
        client_free(&c);
    }
    cn_tls_ctx_unref(t);
}

static void test_failures(void **state)
{
    (void)state;
    struct cn_tls_ctx *t = set_new(12, NULL);
    struct cn_tls_ctx *t13 = set_new(13, NULL);
    struct cn_tls_ctx *rsa_only = set_new(12, "ECDHE-RSA-AES128-GCM-SHA256");
    enum cn_tls_fail why;
    struct client c;

    /* h2 alone: alert no_application_protocol, as nginx. */
    client_new(&c, "a.example.com", (const unsigned char *)"\x02h2", 3, 0);
    struct cn_tls_conn *s = cn_tls_conn_new(t);
    assert_int_equal(handshake(&c, s, &why), CN_EIO);
    assert_int_equal(why, CN_TLS_FAIL_ALPN);
    assert_string_equal(cn_tls_fail_names[why], "alpn");
    cn_tls_conn_free(s);
    client_free(&c);

    /* A TLS 1.2 client against minVersion 1.3. */
    client_new(&c, NULL, NULL, 0, TLS1_2_VERSION);
    s = cn_tls_conn_new(t13);
    assert_int_equal(handshake(&c, s, &why), CN_EIO);
    assert_int_equal(why, CN_TLS_FAIL_VERSION);
    cn_tls_conn_free(s);
    client_free(&c);

    /* TLS 1.2 with only RSA suites and ECDSA certificates: nothing in common. */
    client_new(&c, NULL, NULL, 0, TLS1_2_VERSION);
    s = cn_tls_conn_new(rsa_only);
    assert_int_equal(handshake(&c, s, &why), CN_EIO);
    assert_int_equal(why, CN_TLS_FAIL_CIPHER);
    cn_tls_conn_free(s);
    client_free(&c);

    /* A plain HTTP request; then bytes that are not TLS at all. */
    static const struct {
        const char *bytes;
        size_t len;
        enum cn_tls_fail why;
    } raw[] = {{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, CN_TLS_FAIL_PLAIN_HTTP},
               {"\x17\x03\x03\x00\x05hello", 10, CN_TLS_FAIL_MALFORMED},
               {"\x01\x02\x03\x04\x05\x06\x07\x08", 8, CN_TLS_FAIL_MALFORMED}};
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        s = cn_tls_conn_new(t);
        assert_int_equal(cn_tls_conn_feed(s, raw[i].bytes, raw[i].len), 0);
        assert_int_equal(cn_tls_conn_handshake(s, &why), CN_EIO);
        assert_int_equal(why, raw[i].why);
        cn_tls_conn_free(s);
    }
    /* A partial client hello: more input is needed. */
    s = cn_tls_conn_new(t);
    assert_int_equal(cn_tls_conn_feed(s, "\x16\x03\x01", 3), 0);
    assert_int_equal(cn_tls_conn_in_pending(s), 3);
    assert_true(cn_tls_conn_readable(s));
    assert_int_equal(cn_tls_conn_handshake(s, &why), CN_EAGAIN);
    assert_int_equal(cn_tls_conn_feed(s, "\x00", 1), 0);
    cn_tls_conn_drop_input(s);
    assert_int_equal(cn_tls_conn_in_pending(s), 0);
    cn_tls_conn_free(s);

    /* Bad cipher lists are refused when the set is made, naming the list. */
    char err[256];
    int bad;
    struct cn_tls_opts o = {.min_version = 12, .ciphers = "NOPE"};
    assert_null(cn_tls_ctx_new(&o, &bad, err, sizeof(err)));
    assert_int_equal(bad, 1);
    o = (struct cn_tls_opts){.min_version = 12, .ciphersuites = "NOPE"};
    assert_null(cn_tls_ctx_new(&o, &bad, err, sizeof(err)));
    assert_int_equal(bad, 2);

    cn_tls_ctx_unref(rsa_only);
    cn_tls_ctx_unref(t13);
    cn_tls_ctx_unref(t);
}

/* A large write comes out whole, in records, and reads back equal. */
static void test_large(void **state)
{
    (void)state;
    struct cn_tls_ctx *t = set_new(12, NULL);
    struct client c;
    client_new(&c, "a.example.com", NULL, 0, 0);
    struct cn_tls_conn *s = cn_tls_conn_new(t);
    enum cn_tls_fail why;
    assert_int_equal(handshake(&c, s, &why), 0);
    size_t len = 300000;
    char *src = malloc(len), *dst = malloc(len);
    for (size_t i = 0; i < len; i++)
        src[i] = (char)(i * 7);
    assert_int_equal(cn_tls_conn_write(s, src, len), 0);
    assert_true(cn_tls_conn_out_pending(s) > len);
    struct cn_buf out;
    cn_buf_init(&out, 1 << 20);
    assert_int_equal(cn_tls_conn_take(s, &out), 0);
    assert_int_equal(cn_tls_conn_out_pending(s), 0);
    BIO_write(c.in, out.ptr, (int)out.len);
    size_t got = 0;
    while (got < len) {
        int n = SSL_read(c.ssl, dst + got, (int)(len - got));
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(src, dst, len);
    cn_buf_release(&out);
    free(src);
    free(dst);
    cn_tls_conn_free(s);
    client_free(&c);
    cn_tls_ctx_unref(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_sni_alpn_data),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
