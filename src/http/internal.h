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
};

#endif
