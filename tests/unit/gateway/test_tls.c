/* TLS listeners' configuration (src/gateway/tls.c): a good `tls` block compiles into a store
 * whose set picks certificates by SNI; every error names FILE:LINE:COL, the field and, for a
 * file, the file. Certificates are made here with OpenSSL into a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ev/tls.h"
#include "gateway/internal.h"
#include "gateway/tls.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

static char dir[256];

/* Writes NAME.crt and NAME.key (ECDSA P-256, self-signed) valid from days_from to days_to
 * (relative to now) for the subjectAltName san. */
static void make_cert(const char *name, const char *cn, const char *san, long days_from,
                      long days_to)
{
    static long serial = 1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), days_from * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), days_to * 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cairn-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    make_cert("a", "a.example.com", "DNS:a.example.com", -1, 30);
    make_cert("b", "b.example.com", "DNS:b.example.com", -1, 60);
    make_cert("w", "*.example.com", "DNS:*.example.com", -1, 90);
    make_cert("d", "default.local", "DNS:default.local", -1, 120);
    make_cert("old", "old.example.com", "DNS:old.example.com", -10, -1);
    char path[512];
    snprintf(path, sizeof(path), "%s/garbage.pem", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not PEM\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const files[] = {"a.crt",   "a.key",   "b.crt",      "b.key",
                                        "w.crt",   "w.key",   "d.crt",      "d.key",
                                        "old.crt", "old.key", "garbage.pem"};
    char path[512];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

/* The configuration file is "DIR/t.yaml": relative file names are taken from DIR. */
static struct cn_gw_snapshot *load(const char *tls_block, char *err)
{
    char name[512], text[8192];
    snprintf(name, sizeof(name), "%s/t.yaml", dir);
    snprintf(text, sizeof(text),
             "listeners:\n"
             "  - name: web\n"
             "    address: 127.0.0.1:0\n"
             "    tls:\n%s"
             "clusters: [{name: c, endpoints: [127.0.0.1:9]}]\n"
             "routes: [{name: r, backendRefs: [{name: c}]}]\n",
             tls_block);
    err[0] = '\0';
    return cn_gw_config_load_buffer(name, text, strlen(text), err, 1024);
}

#define FOUR                                                                                       \
    "      certificates:\n"                                                                        \
    "        - hostnames: [a.example.com]\n"                                                       \
    "          certificateFile: a.crt\n"                                                           \
    "          keyFile: a.key\n"                                                                   \
    "        - hostnames: [b.example.com, b2.example.com]\n"                                       \
    "          certificateFile: b.crt\n"                                                           \
    "          keyFile: b.key\n"                                                                   \
    "        - hostnames: ['*.example.com']\n"                                                     \
    "          certificateFile: w.crt\n"                                                           \
    "          keyFile: w.key\n"                                                                   \
    "        - certificateFile: d.crt\n"                                                           \
    "          keyFile: d.key\n"

static int pick(struct cn_tls_ctx *t, const char *sni)
{
    return cn_tls_ctx_lookup(t, cn_slice_of(sni));
}

static void test_good(void **state)
{
    (void)state;
    char err[1024];
    struct cn_gw_snapshot *s = load("      mode: Terminate\n"
                                    "      minVersion: '1.3'\n"
                                    "      handshakeTimeout: 2s\n"
                                    "      ciphers: ECDHE-ECDSA-AES128-GCM-SHA256\n"
                                    "      cipherSuites: TLS_AES_128_GCM_SHA256\n" FOUR,
                                    err);
    assert_non_null(s);
    assert_true(cn_gw_snapshot_listener_tls(s, 0));
    struct cn_tls_ctx *t = gw_tls_current(s->listeners[0].tls);
    assert_int_equal(cn_tls_ctx_num_certs(t), 4);
    assert_int_equal(cn_tls_ctx_handshake_timeout(t), 2000);
    assert_int_equal(pick(t, "a.example.com"), 0);
    assert_int_equal(pick(t, "A.Example.COM"), 0); /* SNI compared without case */
    assert_int_equal(pick(t, "b2.example.com"), 1);
    assert_int_equal(pick(t, "c.example.com"), 2);   /* wildcard */
    assert_int_equal(pick(t, "x.y.example.com"), 2); /* one or more labels */
    assert_int_equal(pick(t, "example.com"), 3);     /* not the wildcard: the default */
    assert_int_equal(pick(t, "other.org"), 3);
    assert_int_equal(pick(t, ""), 3);
    assert_true(cn_tls_ctx_covers(t, 0, CN_SLICE_LIT("a.example.com")));
    assert_true(cn_tls_ctx_covers(t, 2, CN_SLICE_LIT("*.example.com")));
    assert_false(cn_tls_ctx_covers(t, 0, CN_SLICE_LIT("b.example.com")));
    cn_tls_ctx_unref(t);
    cn_gw_snapshot_unref(s);
}

static void test_defaults_and_expired(void **state)
{
    (void)state;
    char err[1024];
    /* Without an entry lacking hostnames the first certificate is the default; an expired
     * certificate loads (with a warning in the log). */
    struct cn_gw_snapshot *s = load("      certificates:\n"
                                    "        - {hostnames: [old.example.com], certificateFile: "
                                    "old.crt, keyFile: old.key}\n"
                                    "        - {hostnames: [a.example.com], certificateFile: "
                                    "a.crt, keyFile: a.key}\n",
                                    err);
    assert_non_null(s);
    struct cn_tls_ctx *t = gw_tls_current(s->listeners[0].tls);
    assert_int_equal(pick(t, "nobody.org"), 0);
    assert_int_equal(pick(t, "a.example.com"), 1);
    assert_int_equal(cn_tls_ctx_handshake_timeout(t), 10000);
    cn_tls_ctx_unref(t);
    /* TLS on or off is part of the listeners (a change needs a restart). */
    char plain[] = "listeners: [{name: web, address: '127.0.0.1:0'}]\n"
                   "clusters: [{name: c, endpoints: [127.0.0.1:9]}]\n"
                   "routes: [{name: r, backendRefs: [{name: c}]}]\n";
    struct cn_gw_snapshot *p = cn_gw_config_load_buffer("p.yaml", plain, strlen(plain), err, 1024);
    assert_non_null(p);
    assert_false(cn_gw_snapshot_listener_tls(p, 0));
    assert_false(cn_gw_snapshot_same_listeners(s, p));
    assert_true(cn_gw_snapshot_same_listeners(s, s));
    cn_gw_snapshot_unref(p);
    cn_gw_snapshot_unref(s);
}

/* Each case: a tls block and the exact error after "DIR/t.yaml:" (with %s for DIR). */
static const struct {
    const char *block;
    const char *err;
} bad[] = {
    {"      {}\n", "5:7: listeners[0].tls.certificates: is required (a list of {hostnames, "
                   "certificateFile, keyFile})"},
    {"      certificates: []\n",
     "5:21: listeners[0].tls.certificates: must list 1 to 1024 certificates"},
    {"      certs: []\n", "5:7: listeners[0].tls: unknown field 'certs' (known: mode, "
                          "certificates, minVersion, ciphers, cipherSuites, handshakeTimeout)"},
    {"      mode: Passthrough\n" FOUR,
     "5:13: listeners[0].tls.mode: 'Passthrough': only Terminate is supported (the gateway "
     "proxies HTTP, it does not pass TLS through)"},
    {"      minVersion: '1.1'\n" FOUR,
     "5:19: listeners[0].tls.minVersion: '1.1' is not 1.2 or 1.3 (older versions are not "
     "offered)"},
    {"      handshakeTimeout: 0\n" FOUR,
     "5:25: listeners[0].tls.handshakeTimeout: must be at least 1ms (a handshake always has a "
     "limit)"},
    {"      handshakeTimeout: 2h\n" FOUR,
     "5:25: listeners[0].tls.handshakeTimeout: '2h' is longer than 3600000 ms"},
    {"      ciphers: BOGUS\n" FOUR,
     "5:16: listeners[0].tls.ciphers: no usable cipher in the TLS 1.2 cipher list"},
    {"      cipherSuites: BOGUS\n" FOUR,
     "5:21: listeners[0].tls.cipherSuites: no usable suite in the TLS 1.3 cipher suites"},
    {"      certificates: [{keyFile: a.key}]\n",
     "5:22: listeners[0].tls.certificates[0].certificateFile: is required (a PEM file)"},
    {"      certificates: [{certificateFile: a.crt}]\n",
     "5:22: listeners[0].tls.certificates[0].keyFile: is required (a PEM file)"},
    {"      certificates: [{certificateFile: a.crt, keyFile: a.key, hostname: x}]\n",
     "5:63: listeners[0].tls.certificates[0]: unknown field 'hostname' (known: hostnames, "
     "certificateFile, keyFile)"},
    {"      certificates: [{certificateFile: nope.crt, keyFile: a.key}]\n",
     "5:40: listeners[0].tls.certificates[0].certificateFile: cannot open '%s/nope.crt': No "
     "such file or directory"},
    {"      certificates: [{certificateFile: a.crt, keyFile: /nonexistent/a.key}]\n",
     "5:56: listeners[0].tls.certificates[0].keyFile: cannot open '/nonexistent/a.key': No "
     "such file or directory"},
    {"      certificates: [{certificateFile: garbage.pem, keyFile: a.key}]\n",
     "5:40: listeners[0].tls.certificates[0].certificateFile: '%s/garbage.pem': no PEM "
     "certificate in it"},
    {"      certificates: [{certificateFile: a.crt, keyFile: garbage.pem}]\n",
     "5:56: listeners[0].tls.certificates[0].keyFile: '%s/garbage.pem': no unencrypted PEM "
     "private key in it"},
    {"      certificates: [{certificateFile: a.crt, keyFile: a.crt}]\n",
     "5:56: listeners[0].tls.certificates[0].keyFile: '%s/a.crt': no unencrypted PEM private "
     "key in it"},
    {"      certificates:\n"
     "        - {hostnames: [a.example.com], certificateFile: a.crt, keyFile: a.key}\n"
     "        - {hostnames: [b.example.com], certificateFile: b.crt, keyFile: a.key}\n",
     "7:73: listeners[0].tls.certificates[1].keyFile: '%s/a.key': the private key does not "
     "match the certificate in '%s/b.crt'"},
    {"      certificates: [{hostnames: [A.example.com], certificateFile: a.crt, keyFile: "
     "a.key}]\n",
     "5:35: listeners[0].tls.certificates[0].hostnames[0]: 'A.example.com' is not a lower-case "
     "hostname or *.suffix (letters, digits, '-', '.')"},
    {"      certificates: [{hostnames: ['*'], certificateFile: a.crt, keyFile: a.key}]\n",
     "5:35: listeners[0].tls.certificates[0].hostnames[0]: '*' is not a lower-case hostname or "
     "*.suffix (letters, digits, '-', '.')"},
    {"      certificates: [{hostnames: [], certificateFile: a.crt, keyFile: a.key}]\n",
     "5:34: listeners[0].tls.certificates[0].hostnames: must list 1 to 256 names (leave it out "
     "for the default certificate)"},
    {"      certificates: [{hostnames: [a.example.com, a.example.com], certificateFile: a.crt, "
     "keyFile: a.key}]\n",
     "5:50: listeners[0].tls.certificates[0].hostnames[1]: 'a.example.com' is listed twice"},
    {"      certificates:\n"
     "        - {hostnames: [a.example.com], certificateFile: a.crt, keyFile: a.key}\n"
     "        - {hostnames: ['*.example.com', a.example.com], certificateFile: w.crt, keyFile: "
     "w.key}\n",
     "7:41: listeners[0].tls.certificates[1].hostnames[1]: 'a.example.com' is already served "
     "by certificates[0]"},
    {"      certificates:\n"
     "        - {certificateFile: a.crt, keyFile: a.key}\n"
     "        - {certificateFile: b.crt, keyFile: b.key}\n",
     "7:11: listeners[0].tls.certificates[1]: a second certificate without hostnames "
     "(certificates[0] is the default)"},
    {"      certificates: {certificateFile: a.crt}\n",
     "5:21: listeners[0].tls.certificates: must be a list"},
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[1024], want[1024], fmt[1024];
        snprintf(fmt, sizeof(fmt), "%%s/t.yaml:%s", bad[i].err);
        snprintf(want, sizeof(want), fmt, dir, dir, dir);
        struct cn_gw_snapshot *s = load(bad[i].block, err);
        if (s || strncmp(err, want, strlen(want)) != 0)
            fail_msg("case %zu:\n got: %s\nwant: %s", i, s ? "(accepted)" : err, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_defaults_and_expired),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
