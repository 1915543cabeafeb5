/* TLS termination with OpenSSL on memory BIOs: a certificate set chosen by SNI, ALPN
 * http/1.1 (no h2), and a connection object that the caller feeds ciphertext into and drains
 * ciphertext from. OpenSSL never touches a socket, so the event loop owns every read and
 * write and nothing blocks. Server side only. */
#ifndef CN_EV_TLS_H
#define CN_EV_TLS_H

#include "base/buf.h"

#include <stdint.h>

/* Why a handshake failed (metrics label, see cn_tls_fail_names). TIMEOUT and CLOSED are
 * decided by the caller, which owns the clock and the socket. */
enum cn_tls_fail {
    CN_TLS_FAIL_TIMEOUT = 0, /* not finished within the handshake timeout */
    CN_TLS_FAIL_CLOSED,      /* the peer closed or reset the connection first */
    CN_TLS_FAIL_PLAIN_HTTP,  /* a plain HTTP request on a TLS port */
    CN_TLS_FAIL_VERSION,     /* no protocol version in common (older than min_version) */
    CN_TLS_FAIL_CIPHER,      /* no cipher, group or signature algorithm in common */
    CN_TLS_FAIL_ALPN,        /* ALPN offered without http/1.1 or 1.0 (as nginx: alert 120) */
    CN_TLS_FAIL_PEER_ALERT,  /* the peer aborted with an alert (e.g. it refused our certificate) */
    CN_TLS_FAIL_MALFORMED,   /* anything else: not TLS, a decode error, an internal error */
    CN_TLS_FAIL_COUNT
};
extern const char *const cn_tls_fail_names[CN_TLS_FAIL_COUNT];

/* The TLS 1.2 cipher list used when none is configured (Mozilla "intermediate" without the
 * finite-field DHE suites): ECDHE key exchange, AEAD ciphers only. */
#define CN_TLS_DEFAULT_CIPHERS                                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define CN_TLS_MAX_CERTS 1024 /* certificates in one set */
#define CN_TLS_MAX_NAMES 256  /* names of one certificate */

/* Settings shared by every certificate of a set. */
struct cn_tls_opts {
    int min_version;               /* 12 (TLS 1.2) or 13 (TLS 1.3); the maximum is always 1.3 */
    const char *ciphers;           /* TLS 1.2 cipher list in OpenSSL syntax; NULL: the default */
    const char *ciphersuites;      /* TLS 1.3 suites; NULL: OpenSSL's default */
    uint64_t handshake_timeout_ms; /* for the caller, which owns the clock (0: none) */
};

/* What the caller may want to show of a certificate it added. */
struct cn_tls_cert_info {
    int64_t not_before; /* Unix seconds */
    int64_t not_after;
    char subject[256]; /* one line, RFC 2253 */
};

/* A set of certificates by SNI name, with the options above. Built once (cn_tls_ctx_add),
 * then immutable and shared by any number of threads; reference counted, the last unref
 * frees it (any thread). Connections keep a reference for their lifetime. */
struct cn_tls_ctx;

/* Returns a new empty set with one reference, or NULL with a one-line reason in err and
 * *out_bad_list set to 1 when o->ciphers has no usable cipher, 2 when o->ciphersuites has
 * none, 0 otherwise (out of memory). */
struct cn_tls_ctx *cn_tls_ctx_new(const struct cn_tls_opts *o, int *out_bad_list, char *err,
                                  size_t err_len);
struct cn_tls_ctx *cn_tls_ctx_ref(struct cn_tls_ctx *t);
void cn_tls_ctx_unref(struct cn_tls_ctx *t);

/* Adds a certificate: cert_pem holds the leaf then its chain, key_pem its private key
 * (unencrypted PEM). names (lower case, exact or "*.suffix") select it by SNI; with
 * num_names 0 it is the default (served when the client sends no name or one no certificate
 * lists); until a default is added the first certificate is. Returns 0 and fills out_info,
 * or CN_EINVAL / CN_ELIMIT / CN_ENOMEM with one line in err and *out_key_fault set to 1
 * when the key is what is wrong (unreadable, or it does not match the certificate), 0 when
 * the certificate is (or a name). The set is unchanged on failure. Not thread-safe: only
 * while the set is being built. */
int cn_tls_ctx_add(struct cn_tls_ctx *t, const char *cert_pem, size_t cert_len, const char *key_pem,
                   size_t key_len, const struct cn_slice *names, size_t num_names,
                   struct cn_tls_cert_info *out_info, int *out_key_fault, char *err,
                   size_t err_len);
size_t cn_tls_ctx_num_certs(const struct cn_tls_ctx *t);
uint64_t cn_tls_ctx_handshake_timeout(const struct cn_tls_ctx *t);
/* The index of the certificate served for an SNI name (any case; without a name: the
 * default): an exact name first, then the longest matching wildcard ("*.example.com"
 * matches one or more labels before ".example.com", not "example.com"), then the
 * default. -1 when the set is empty. */
int cn_tls_ctx_lookup(const struct cn_tls_ctx *t, struct cn_slice name);
/* Whether certificate index's subjectAltName (or CN) covers name (X.509 rules: a wildcard
 * covers one label); for "*.suffix" a name of one label under suffix is checked. */
int cn_tls_ctx_covers(const struct cn_tls_ctx *t, size_t index, struct cn_slice name);

/* One server connection: an SSL object between two memory BIOs. Single-threaded. */
struct cn_tls_conn;

/* Returns a connection in accept state holding a reference on t, or NULL (out of memory). */
struct cn_tls_conn *cn_tls_conn_new(struct cn_tls_ctx *t);
/* Frees the connection and drops its reference on the set; NULL does nothing. */
void cn_tls_conn_free(struct cn_tls_conn *c);

/* Hands ciphertext read from the peer to the connection (copied). 0 or CN_ENOMEM. */
int cn_tls_conn_feed(struct cn_tls_conn *c, const void *data, size_t len);
/* Ciphertext fed and not yet decrypted, in bytes. */
size_t cn_tls_conn_in_pending(const struct cn_tls_conn *c);
/* Whether cn_tls_conn_read may return data without more input. */
int cn_tls_conn_readable(const struct cn_tls_conn *c);
/* Forgets every byte fed and not yet read (the connection is being closed). */
void cn_tls_conn_drop_input(struct cn_tls_conn *c);

/* Advances the handshake with what was fed. Returns 0 when it is complete, CN_EAGAIN when it
 * needs more input (output may be waiting: cn_tls_conn_take), or CN_EIO with *out_fail set
 * (an alert for the peer may be waiting). */
int cn_tls_conn_handshake(struct cn_tls_conn *c, enum cn_tls_fail *out_fail);
/* Decrypts into dst (cap > 0). Returns 0 with *out_len > 0 for data, 0 with *out_len 0 when
 * the peer ended the session (close_notify), CN_EAGAIN when more input is needed, CN_EIO on
 * a protocol error. Only after the handshake. */
int cn_tls_conn_read(struct cn_tls_conn *c, void *dst, size_t cap, size_t *out_len);
/* Encrypts len bytes (all of them) into the output. 0, CN_EIO or CN_ENOMEM. */
int cn_tls_conn_write(struct cn_tls_conn *c, const void *src, size_t len);
/* Ciphertext waiting to be sent, in bytes. */
size_t cn_tls_conn_out_pending(const struct cn_tls_conn *c);
/* Appends every byte of waiting ciphertext to dst. 0, or CN_ELIMIT / CN_ENOMEM from dst (the
 * output then stays). */
int cn_tls_conn_take(struct cn_tls_conn *c, struct cn_buf *dst);
/* Queues a close_notify alert (once; only after the handshake). */
void cn_tls_conn_close_notify(struct cn_tls_conn *c);

/* After the handshake: the SNI name the client sent ("" when none), the ALPN protocol ("" when
 * none was negotiated), the protocol version ("TLSv1.3"), the cipher. Valid while c is. */
const char *cn_tls_conn_servername(const struct cn_tls_conn *c);
const char *cn_tls_conn_alpn(const struct cn_tls_conn *c, char *buf, size_t buf_len);
const char *cn_tls_conn_version(const struct cn_tls_conn *c);
const char *cn_tls_conn_cipher(const struct cn_tls_conn *c);
/* OpenSSL's reason for the last failure ("" when none), for logs. */
const char *cn_tls_conn_error(const struct cn_tls_conn *c);

#endif
