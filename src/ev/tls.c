/* TLS termination on memory BIOs (OpenSSL 3). One SSL_CTX per certificate, all with the same
 * options; a connection starts on the default certificate's context and the SNI callback
 * moves it to the one its name selects (as nginx does per server block). ALPN selects
 * http/1.1 (or http/1.0 for a client that offers only that, as nginx does) and, like nginx
 * since 1.21.4, refuses a client whose ALPN list has neither, e.g. h2 alone (alert
 * no_application_protocol), rather than pretending to speak its protocol. */
#include "ev/tls.h"

#include <ctype.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <time.h>

const char *const cn_tls_fail_names[CN_TLS_FAIL_COUNT] = {
    "timeout",          "closed", "plain_http", "version",
    "no_shared_cipher", "alpn",   "peer_alert", "malformed"};

#define WRITE_PIECE  16384       /* plaintext encrypted per SSL_write: one record */
#define BIO_KEEP_CAP (16u << 10) /* an empty BIO holding more than this is replaced */
#define MAX_NAME     255

struct tls_name {
    char *name; /* lower case; wildcards: the suffix with its dot (".example.com") */
    size_t len;
    uint32_t cert;
};

struct tls_cert {
    SSL_CTX *ctx;
    X509 *leaf;
};

/* States: building (cn_tls_ctx_add) then shared read-only. exact is sorted by name; wild by
 * suffix length, longest first; dflt < num_certs once a certificate was added. */
struct cn_tls_ctx {
    atomic_int refs;
    int min_version;
    uint64_t handshake_timeout_ms;
    char *ciphers;
    char *ciphersuites;
    struct tls_cert *certs;
    size_t num_certs;
    struct tls_name *exact;
    size_t num_exact;
    struct tls_name *wild;
    size_t num_wild;
    size_t dflt;
    int dflt_set; /* a certificate without names was added */
};

struct cn_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio;
    struct cn_tls_ctx *t;
    unsigned long err; /* OpenSSL's error of the last failure */
    int shutdown_sent;
};

/* ---- errors --------------------------------------------------------------------------------- */

/* Writes "what: OpenSSL's reason" into err and clears the thread's error queue. */
static void ssl_fail(char *err, size_t err_len, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (reason)
        snprintf(err, err_len, "%s (%s)", what, reason);
    else
        snprintf(err, err_len, "%s", what);
    ERR_clear_error();
}

static enum cn_tls_fail classify(unsigned long e)
{
    if (!e || ERR_GET_LIB(e) != ERR_LIB_SSL)
        return CN_TLS_FAIL_MALFORMED;
    int r = ERR_GET_REASON(e);
    switch (r) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return CN_TLS_FAIL_PLAIN_HTTP;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return CN_TLS_FAIL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        return CN_TLS_FAIL_CIPHER;
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
        return CN_TLS_FAIL_ALPN;
    default:
        /* Alerts received from the peer have reasons from SSL_AD_REASON_OFFSET up. */
        return r >= SSL_AD_REASON_OFFSET ? CN_TLS_FAIL_PEER_ALERT : CN_TLS_FAIL_MALFORMED;
    }
}

/* ---- certificate sets ----------------------------------------------------------------------- */

/* Our preference order. HTTP/1.0 too, as nginx: the server core speaks it to 1.0 clients. */
static const unsigned char alpn_protos[] = "\x08http/1.1\x08http/1.0";

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
                   const unsigned char *in, unsigned int in_len, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, out_len, alpn_protos, sizeof(alpn_protos) - 1, in, in_len) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct cn_tls_ctx *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_NOACK; /* no name: the default certificate */
    int i = cn_tls_ctx_lookup(t, cn_slice_of(name));
    if (i < 0)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_CTX *want = t->certs[i].ctx;
    if (SSL_get_SSL_CTX(ssl) != want && !SSL_set_SSL_CTX(ssl, want))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

/* A context with the set's options and callbacks, without a certificate yet. */
static SSL_CTX *ctx_new(struct cn_tls_ctx *t, int *out_bad_list, char *err, size_t err_len)
{
    *out_bad_list = 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_fail(err, err_len, "cannot create an SSL context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* No client-initiated renegotiation (a CPU sink); no compression (CRIME). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Idle connections give their record buffers back (nginx does the same). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption through tickets only: no server-side cache shared (and locked) between the
     * worker threads. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : CN_TLS_DEFAULT_CIPHERS)) {
        ssl_fail(err, err_len, "no usable cipher in the TLS 1.2 cipher list");
        *out_bad_list = 1;
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (t->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, t->ciphersuites)) {
        ssl_fail(err, err_len, "no usable suite in the TLS 1.3 cipher suites");
        *out_bad_list = 2;
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    return ctx;
}

struct cn_tls_ctx *cn_tls_ctx_new(const struct cn_tls_opts *o, int *out_bad_list, char *err,
                                  size_t err_len)
{
    *out_bad_list = 0;
    struct cn_tls_ctx *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    atomic_init(&t->refs, 1);
    t->min_version = o->min_version == 13 ? 13 : 12;
    t->handshake_timeout_ms = o->handshake_timeout_ms;
    t->ciphers = o->ciphers ? strdup(o->ciphers) : NULL;
    t->ciphersuites = o->ciphersuites ? strdup(o->ciphersuites) : NULL;
    if ((o->ciphers && !t->ciphers) || (o->ciphersuites && !t->ciphersuites)) {
        snprintf(err, err_len, "out of memory");
        cn_tls_ctx_unref(t);
        return NULL;
    }
    /* Checks the cipher lists now, so a bad one is an error of the set, not of a cert. */
    SSL_CTX *probe = ctx_new(t, out_bad_list, err, err_len);
    if (!probe) {
        cn_tls_ctx_unref(t);
        return NULL;
    }
    SSL_CTX_free(probe);
    return t;
}

struct cn_tls_ctx *cn_tls_ctx_ref(struct cn_tls_ctx *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void cn_tls_ctx_unref(struct cn_tls_ctx *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < t->num_certs; i++) {
        SSL_CTX_free(t->certs[i].ctx);
        X509_free(t->certs[i].leaf);
    }
    for (size_t i = 0; i < t->num_exact; i++)
        free(t->exact[i].name);
    for (size_t i = 0; i < t->num_wild; i++)
        free(t->wild[i].name);
    free(t->exact);
    free(t->wild);
    free(t->certs);
    free(t->ciphers);
    free(t->ciphersuites);
    free(t);
}

static int64_t asn1_unix(const ASN1_TIME *at)
{
    struct tm tm;
    if (!at || !ASN1_TIME_to_tm(at, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0; /* encrypted keys are refused */
}

static int name_cmp(const void *a, const void *b)
{
    const struct tls_name *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int wild_cmp(const void *a, const void *b)
{
    const struct tls_name *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Checks names: lower-case hostnames or "*.suffix", none twice (here or already in t). */
static int check_names(const struct cn_tls_ctx *t, const struct cn_slice *names, size_t n,
                       char *err, size_t err_len)
{
    if (n > CN_TLS_MAX_NAMES) {
        snprintf(err, err_len, "more than %d names for one certificate", CN_TLS_MAX_NAMES);
        return CN_ELIMIT;
    }
    for (size_t i = 0; i < n; i++) {
        struct cn_slice s = names[i];
        size_t k = s.len > 2 && s.ptr[0] == '*' && s.ptr[1] == '.' ? 2 : 0;
        int ok = s.len > k && s.len <= MAX_NAME && s.ptr[s.len - 1] != '.' && s.ptr[k] != '.';
        for (size_t j = k; ok && j < s.len; j++) {
            unsigned char c = (unsigned char)s.ptr[j];
            ok = islower(c) || isdigit(c) || c == '-' || c == '.';
        }
        if (!ok) {
            snprintf(err, err_len, "'%.*s' is not a lower-case hostname or *.suffix",
                     (int)CN_MIN(s.len, 64), s.ptr);
            return CN_EINVAL;
        }
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = cn_slice_eq(names[j], s);
        const struct tls_name *v = k ? t->wild : t->exact;
        size_t nv = k ? t->num_wild : t->num_exact;
        struct cn_slice key = k ? (struct cn_slice){s.ptr + 1, s.len - 1} : s;
        for (size_t j = 0; j < nv && !dup; j++)
            dup = cn_slice_eq((struct cn_slice){v[j].name, v[j].len}, key);
        if (dup) {
            snprintf(err, err_len, "the name '%.*s' is listed twice", (int)CN_MIN(s.len, 64),
                     s.ptr);
            return CN_EINVAL;
        }
    }
    return 0;
}

/* Loads the leaf and chain of cert_pem into ctx; returns the leaf (a reference) or NULL. */
static X509 *load_cert(SSL_CTX *ctx, const char *pem, size_t len, char *err, size_t err_len)
{
    if (len > INT_MAX) {
        snprintf(err, err_len, "too large");
        return NULL;
    }
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b) {
        ssl_fail(err, err_len, "out of memory");
        return NULL;
    }
    X509 *leaf = PEM_read_bio_X509_AUX(b, NULL, no_password, NULL);
    if (!leaf) {
        ssl_fail(err, err_len, "no PEM certificate in it");
        BIO_free(b);
        return NULL;
    }
    if (!SSL_CTX_use_certificate(ctx, leaf)) {
        ssl_fail(err, err_len, "the certificate is not usable");
        goto fail;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, no_password, NULL);
        if (!x) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error(); /* the end of the file */
                break;
            }
            ssl_fail(err, err_len, "a malformed certificate in the chain");
            goto fail;
        }
        if (!SSL_CTX_add0_chain_cert(ctx, x)) {
            X509_free(x);
            ssl_fail(err, err_len, "a chain certificate is not usable");
            goto fail;
        }
    }
    BIO_free(b);
    return leaf;
fail:
    X509_free(leaf);
    BIO_free(b);
    return NULL;
}

static EVP_PKEY *load_key(const char *pem, size_t len, char *err, size_t err_len)
{
    if (len > INT_MAX) {
        snprintf(err, err_len, "too large");
        return NULL;
    }
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b) {
        ssl_fail(err, err_len, "out of memory");
        return NULL;
    }
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
    BIO_free(b);
    if (!k)
        ssl_fail(err, err_len, "no unencrypted PEM private key in it");
    return k;
}

static int add_name(struct tls_name **v, size_t *n, struct cn_slice key, uint32_t cert)
{
    struct tls_name *nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (!nv)
        return CN_ENOMEM;
    *v = nv;
    char *s = malloc(key.len + 1);
    if (!s)
        return CN_ENOMEM;
    memcpy(s, key.ptr, key.len);
    s[key.len] = '\0';
    nv[(*n)++] = (struct tls_name){s, key.len, cert};
    return 0;
}

int cn_tls_ctx_add(struct cn_tls_ctx *t, const char *cert_pem, size_t cert_len, const char *key_pem,
                   size_t key_len, const struct cn_slice *names, size_t num_names,
                   struct cn_tls_cert_info *out_info, int *out_key_fault, char *err, size_t err_len)
{
    *out_key_fault = 0;
    if (t->num_certs >= CN_TLS_MAX_CERTS) {
        snprintf(err, err_len, "more than %d certificates", CN_TLS_MAX_CERTS);
        return CN_ELIMIT;
    }
    if (num_names == 0 && t->dflt_set) {
        snprintf(err, err_len, "a second certificate without names (only one is the default)");
        return CN_EINVAL;
    }
    int rc = check_names(t, names, num_names, err, err_len);
    if (rc)
        return rc;
    int bad_list;
    SSL_CTX *ctx = ctx_new(t, &bad_list, err, err_len);
    if (!ctx)
        return CN_EINVAL;
    X509 *leaf = load_cert(ctx, cert_pem, cert_len, err, err_len);
    if (!leaf) {
        SSL_CTX_free(ctx);
        return CN_EINVAL;
    }
    EVP_PKEY *key = load_key(key_pem, key_len, err, err_len);
    if (!key) {
        *out_key_fault = 1;
        goto fail;
    }
    if (!X509_check_private_key(leaf, key)) {
        ERR_clear_error();
        snprintf(err, err_len, "the private key does not match the certificate");
        *out_key_fault = 1;
        goto fail;
    }
    if (!SSL_CTX_use_PrivateKey(ctx, key) || !SSL_CTX_check_private_key(ctx)) {
        ssl_fail(err, err_len, "the private key is not usable");
        *out_key_fault = 1;
        goto fail;
    }
    EVP_PKEY_free(key);
    key = NULL;

    struct tls_cert *nc = realloc(t->certs, (t->num_certs + 1) * sizeof(*nc));
    if (!nc)
        goto oom;
    t->certs = nc;
    uint32_t idx = (uint32_t)t->num_certs;
    size_t old_exact = t->num_exact, old_wild = t->num_wild;
    for (size_t i = 0; i < num_names; i++) {
        struct cn_slice s = names[i];
        int wild = s.ptr[0] == '*';
        rc = wild ? add_name(&t->wild, &t->num_wild, (struct cn_slice){s.ptr + 1, s.len - 1}, idx)
                  : add_name(&t->exact, &t->num_exact, s, idx);
        if (rc) {
            while (t->num_exact > old_exact)
                free(t->exact[--t->num_exact].name);
            while (t->num_wild > old_wild)
                free(t->wild[--t->num_wild].name);
            goto oom;
        }
    }
    if (t->num_exact)
        qsort(t->exact, t->num_exact, sizeof(*t->exact), name_cmp);
    if (t->num_wild)
        qsort(t->wild, t->num_wild, sizeof(*t->wild), wild_cmp);
    t->certs[t->num_certs++] = (struct tls_cert){ctx, leaf};
    if (num_names == 0) {
        t->dflt = idx;
        t->dflt_set = 1;
    }
    if (out_info) {
        memset(out_info, 0, sizeof(*out_info));
        out_info->not_before = asn1_unix(X509_get0_notBefore(leaf));
        out_info->not_after = asn1_unix(X509_get0_notAfter(leaf));
        BIO *mb = BIO_new(BIO_s_mem());
        if (mb) {
            X509_NAME_print_ex(mb, X509_get_subject_name(leaf), 0, XN_FLAG_RFC2253);
            int n = BIO_read(mb, out_info->subject, sizeof(out_info->subject) - 1);
            out_info->subject[n > 0 ? n : 0] = '\0';
            BIO_free(mb);
        }
    }
    ERR_clear_error();
    return 0;
oom:
    snprintf(err, err_len, "out of memory");
    rc = CN_ENOMEM;
    goto out;
fail:
    rc = CN_EINVAL;
out:
    EVP_PKEY_free(key);
    X509_free(leaf);
    SSL_CTX_free(ctx);
    return rc;
}

size_t cn_tls_ctx_num_certs(const struct cn_tls_ctx *t)
{
    return t->num_certs;
}

uint64_t cn_tls_ctx_handshake_timeout(const struct cn_tls_ctx *t)
{
    return t->handshake_timeout_ms;
}

int cn_tls_ctx_lookup(const struct cn_tls_ctx *t, struct cn_slice name)
{
    if (t->num_certs == 0)
        return -1;
    char buf[MAX_NAME + 1];
    if (name.len && name.ptr[name.len - 1] == '.')
        name.len--;
    if (name.len == 0 || name.len > MAX_NAME)
        return (int)t->dflt;
    for (size_t i = 0; i < name.len; i++)
        buf[i] = (char)tolower((unsigned char)name.ptr[i]);
    buf[name.len] = '\0';
    size_t lo = 0, hi = t->num_exact;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(buf, t->exact[mid].name);
        if (c == 0)
            return (int)t->exact[mid].cert;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (size_t i = 0; i < t->num_wild; i++) {
        const struct tls_name *w = &t->wild[i];
        if (name.len > w->len && memcmp(buf + name.len - w->len, w->name, w->len) == 0)
            return (int)w->cert;
    }
    return (int)t->dflt;
}

int cn_tls_ctx_covers(const struct cn_tls_ctx *t, size_t index, struct cn_slice name)
{
    if (index >= t->num_certs || name.len == 0 || name.len > MAX_NAME)
        return 0;
    char buf[MAX_NAME + 2];
    if (name.ptr[0] == '*') /* "*.suffix": a name one label under it */
        snprintf(buf, sizeof(buf), "x%.*s", (int)name.len - 1, name.ptr + 1);
    else
        snprintf(buf, sizeof(buf), "%.*s", (int)name.len, name.ptr);
    int ok = X509_check_host(t->certs[index].leaf, buf, 0, 0, NULL) == 1;
    ERR_clear_error();
    return ok;
}

/* ---- connections ---------------------------------------------------------------------------- */

struct cn_tls_conn *cn_tls_conn_new(struct cn_tls_ctx *t)
{
    if (t->num_certs == 0)
        return NULL;
    struct cn_tls_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ssl = SSL_new(t->certs[t->dflt].ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    /* An empty memory BIO asks to retry (never EOF): the caller reports end of input. */
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    c->t = cn_tls_ctx_ref(t);
    return c;
}

void cn_tls_conn_free(struct cn_tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    cn_tls_ctx_unref(c->t);
    free(c);
}

/* Replaces an empty memory BIO that grew past BIO_KEEP_CAP (an upload or a large reply), so
 * an idle connection does not keep its high-water mark. */
static void trim(struct cn_tls_conn *c, int wbio)
{
    BIO *b = wbio ? c->wbio : c->rbio;
    BUF_MEM *bm = NULL;
    if (BIO_ctrl_pending(b) != 0 || BIO_get_mem_ptr(b, &bm) != 1 || !bm || bm->max <= BIO_KEEP_CAP)
        return;
    BIO *nb = BIO_new(BIO_s_mem());
    if (!nb)
        return;
    BIO_set_mem_eof_return(nb, -1);
    if (wbio) {
        SSL_set0_wbio(c->ssl, nb);
        c->wbio = nb;
    } else {
        SSL_set0_rbio(c->ssl, nb);
        c->rbio = nb;
    }
}

int cn_tls_conn_feed(struct cn_tls_conn *c, const void *data, size_t len)
{
    while (len) {
        int n = (int)CN_MIN(len, (size_t)INT_MAX);
        if (BIO_write(c->rbio, data, n) != n) {
            ERR_clear_error();
            return CN_ENOMEM;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return 0;
}

size_t cn_tls_conn_in_pending(const struct cn_tls_conn *c)
{
    return BIO_ctrl_pending(c->rbio);
}

int cn_tls_conn_readable(const struct cn_tls_conn *c)
{
    return BIO_ctrl_pending(c->rbio) > 0 || SSL_has_pending(c->ssl);
}

void cn_tls_conn_drop_input(struct cn_tls_conn *c)
{
    char sink[4096];
    while (BIO_read(c->rbio, sink, sizeof(sink)) > 0)
        ;
    ERR_clear_error();
}

int cn_tls_conn_handshake(struct cn_tls_conn *c, enum cn_tls_fail *out_fail)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return 0;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return CN_EAGAIN;
    c->err = ERR_peek_last_error();
    *out_fail = classify(c->err);
    ERR_clear_error();
    return CN_EIO;
}

int cn_tls_conn_read(struct cn_tls_conn *c, void *dst, size_t cap, size_t *out_len)
{
    *out_len = 0;
    ERR_clear_error();
    int n = SSL_read(c->ssl, dst, (int)CN_MIN(cap, (size_t)INT_MAX));
    if (n > 0) {
        *out_len = (size_t)n;
        return 0;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        trim(c, 0);
        return CN_EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    c->err = ERR_peek_last_error();
    ERR_clear_error();
    return CN_EIO;
}

int cn_tls_conn_write(struct cn_tls_conn *c, const void *src, size_t len)
{
    while (len) {
        int n = (int)CN_MIN(len, (size_t)WRITE_PIECE);
        ERR_clear_error();
        int w = SSL_write(c->ssl, src, n);
        if (w <= 0) {
            c->err = ERR_peek_last_error();
            ERR_clear_error();
            return CN_EIO;
        }
        src = (const char *)src + w;
        len -= (size_t)w;
    }
    return 0;
}

size_t cn_tls_conn_out_pending(const struct cn_tls_conn *c)
{
    return BIO_ctrl_pending(c->wbio);
}

int cn_tls_conn_take(struct cn_tls_conn *c, struct cn_buf *dst)
{
    size_t n = BIO_ctrl_pending(c->wbio);
    if (n == 0)
        return 0;
    int rc = cn_buf_reserve(dst, n);
    if (rc)
        return rc;
    int got = BIO_read(c->wbio, dst->ptr + dst->len, (int)CN_MIN(n, (size_t)INT_MAX));
    if (got > 0)
        dst->len += (size_t)got;
    trim(c, 1);
    return 0;
}

void cn_tls_conn_close_notify(struct cn_tls_conn *c)
{
    if (c->shutdown_sent || !SSL_is_init_finished(c->ssl))
        return;
    c->shutdown_sent = 1;
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
}

const char *cn_tls_conn_servername(const struct cn_tls_conn *c)
{
    const char *n = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    return n ? n : "";
}

const char *cn_tls_conn_alpn(const struct cn_tls_conn *c, char *buf, size_t buf_len)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    snprintf(buf, buf_len, "%.*s", (int)n, p ? (const char *)p : "");
    return buf;
}

const char *cn_tls_conn_version(const struct cn_tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

const char *cn_tls_conn_cipher(const struct cn_tls_conn *c)
{
    const char *s = SSL_get_cipher_name(c->ssl);
    return s ? s : "";
}

const char *cn_tls_conn_error(const struct cn_tls_conn *c)
{
    const char *s = c->err ? ERR_reason_error_string(c->err) : NULL;
    return s ? s : "";
}
