/* Private to src/http. */
#ifndef CN_HTTP_INTERNAL_H
#define CN_HTTP_INTERNAL_H

#include "http/chunked.h"
#include "http/head.h"
#include "http/server.h"

#include <llhttp.h>
#include <zlib.h>

/* Connection phases:
 *   IDLE  - between requests; idle_timeout runs; no request bytes seen
 *   HEAD  - request head arriving; the strict scanner runs; header_timeout
 *   BODY  - head parsed, llhttp consumes the body; body_timeout
 *   WAIT  - handler called, reply not finished (async handlers); no timeout of ours
 *   LINGER- final reply written, write side shut; input drained until EOF or linger timeout
 * Invariants: rpos <= rlen <= rcap; head slices of the current request point into
 * rbuf[head_start, head_end) which is never moved while phase is BODY or WAIT;
 * at most one uv_write in flight (wout), further output accumulates in out. */
/*   TUNNEL- after a 101 on a streaming server: raw bytes both ways, no timeout of ours
 * On a streaming server BODY may follow the dispatch (streaming_body): the handler owns the
 * request while its body is still being read. */
enum conn_phase { P_IDLE, P_HEAD, P_BODY, P_WAIT, P_LINGER, P_TUNNEL };
enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };

struct http_tls; /* server-tls.c */

struct cn_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct cn_http_worker *w;
    struct cn_http_conn *prev, *next;
    int fd; /* the socket, for send(2) */
    llhttp_t parser;
    struct cn_http_limits lim;

    char *rbuf;
    size_t rcap, rlen, rpos;
    size_t head_start, head_end;
    struct cn_head_scan scan;
    enum conn_phase phase;

    struct cn_http_req req;
    struct cn_http_header *hdrs;
    size_t hdr_cap;
    int last_cb; /* 1 after a header field callback, 2 after a value */

    struct cn_buf out;  /* accumulating output */
    struct cn_buf wout; /* output in flight */

    uint64_t deadline;    /* phase deadline, loop ms; 0 = none */
    uint64_t wdeadline;   /* send deadline while a write is in flight; 0 = none */
    uint64_t timer_due;   /* when the armed timer fires; 0 = not armed */
    uint64_t phase_start; /* loop ms when HEAD or BODY began */
    int phase_timer;      /* the phase's deadline is armed */

    int body_mode;      /* BODY_NONE, BODY_LENGTH, BODY_CHUNKED: how the body is framed */
    uint64_t body_left; /* BODY_LENGTH: bytes still to come */
    struct cn_chunked chunked;

    int err_status; /* set by parser callbacks to answer with an error */
    const char *err_reason;
    char err_buf[128]; /* err_reason when it is formatted */
    int err_kind;

    unsigned msg_complete : 1;
    unsigned in_process : 1;
    unsigned reading : 1;
    unsigned writing : 1;
    unsigned closing : 1;     /* uv_close called */
    unsigned close_after : 1; /* close once the current reply is written */
    unsigned gzip : 1;
    unsigned read_eof : 1;
    unsigned read_into_body : 1; /* the buffer handed to libuv is the request body's */
    unsigned streaming_body : 1; /* dispatched at the head; the body goes to req.body_cb */
    unsigned body_paused : 1;    /* cn_http_req_body_pause: no reading, no body delivery */
    uint64_t body_streamed;      /* decoded body bytes delivered so far (chunked limit) */
    char peer_ip[48];            /* cn_http_req_peer_ip, filled on first use */
    int handles;                 /* open libuv handles; freed at 0 */
    uint64_t id;

    /* Tunnels: cn_http_tunnel_shutdown asked for the write side to end (tun_shut), which
     * happens once out is written (wr_shut: uv_shutdown issued, after TLS's close_notify);
     * eof_in_wait: the client's input ended while its reply was awaited (that alone set
     * close_after), for cn_http_tunnel_start. */
    unsigned tun_shut : 1, wr_shut : 1, eof_in_wait : 1;

    /* TLS listeners only (NULL otherwise): the session between the socket and rbuf/out. With
     * TLS, rbuf holds plaintext as it does without; out accumulates plaintext and wout holds
     * the ciphertext being written. */
    struct http_tls *tls;
};

/* ---- server.c, for server-tls.c --------------------------------------------------------- */

/* Where the next plaintext goes: rbuf's free tail (taken from the pool, compacted between
 * requests) as for a socket read; *out_len 0 when there is no room (wait for the request
 * being answered). */
void cn_http__room(struct cn_http_conn *c, char **out_ptr, size_t *out_len);
/* nread bytes were put where cn_http__room said (or nread < 0: end of input, UV_EOF or an
 * error): what a socket read does on a plain connection. */
void cn_http__input(struct cn_http_conn *c, ssize_t nread);
/* Starts (on 1) or stops (0) reading the socket, whatever c->reading says. */
void cn_http__sock_read(struct cn_http_conn *c, int on);
void cn_http__flush(struct cn_http_conn *c);
void cn_http__close(struct cn_http_conn *c);
/* Closes after what is queued: the output is flushed, then the lingering close. */
void cn_http__end(struct cn_http_conn *c);
void cn_http__set_deadline(struct cn_http_conn *c, uint64_t timeout_ms);

/* ---- server-tls.c, for server.c --------------------------------------------------------- */

/* At accept on a TLS listener: the session with the worker's current certificate set, an
 * extra handle (c->handles counts it), the handshake deadline. 0 or CN_ENOMEM. */
int cn_http__tls_accept(struct cn_http_conn *c);
/* The socket's read buffer (ciphertext) and what was read into it. */
void cn_http__tls_alloc(struct cn_http_conn *c, uv_buf_t *buf);
void cn_http__tls_read(struct cn_http_conn *c, ssize_t nread);
/* c->reading was just set: reads the socket when the session can take more, and delivers
 * the plaintext already decrypted or buffered (on the next loop iteration). */
void cn_http__tls_read_started(struct cn_http_conn *c);
/* Encrypts out into wout (out is then empty) and moves pending handshake or alert records
 * there. 0, or a negative code (the connection must close). */
int cn_http__tls_seal(struct cn_http_conn *c);
size_t cn_http__tls_out_pending(const struct cn_http_conn *c);
/* Before a lingering close: queues and flushes close_notify once. 1 when it did (the
 * written callback comes again), 0 when there was nothing to do. */
int cn_http__tls_close_notify(struct cn_http_conn *c);
/* A tunnel's half-close: queues and flushes close_notify once, reading goes on. 1 when it is
 * being written (the written callback comes again), 0 when it is out. */
int cn_http__tls_half_close(struct cn_http_conn *c);
/* The handshake has not finished: the idle deadline is the handshake timeout. */
int cn_http__tls_handshaking(const struct cn_http_conn *c);
void cn_http__tls_timeout(struct cn_http_conn *c);
/* The session's handle, closed with the connection's others. */
uv_handle_t *cn_http__tls_handle(struct cn_http_conn *c);
void cn_http__tls_free(struct cn_http_conn *c);

#endif
