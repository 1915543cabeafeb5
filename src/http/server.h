/* HTTP/1.1 server on llhttp: keep-alive, pipelining, Content-Length and chunked bodies both
 * ways, Expect: 100-continue, HEAD, gzip request bodies, explicit limits, smuggling-safe
 * parsing. One cn_http_server is shared (immutable after start); each worker thread runs
 * a cn_http_worker with its own listener (SO_REUSEPORT) and connections. */
#ifndef CN_HTTP_SERVER_H
#define CN_HTTP_SERVER_H

#include "base/buf.h"
#include "http/http-t.h"
#include "http/router.h"
#include "ev/sendq.h"

#include <stdatomic.h>
#include <uv.h>

struct cn_http_conn;
struct cn_http_worker;
struct cn_tls_ctx;

struct cn_http_header {
    struct cn_slice name;
    struct cn_slice value;
};

struct cn_http_req;
/* Called when the connection of a request the handler has not answered yet goes away; the
 * handler must drop the request and never touch it again. */
typedef void (*cn_http_abort_cb)(struct cn_http_req *req);
/* Streaming servers (cn_http_server.stream_handler): request body bytes as they arrive, already
 * de-chunked; last is 1 with the final piece (len may be 0). */
typedef void (*cn_http_body_cb)(struct cn_http_req *req, const char *data, size_t len, int last);
/* Everything queued for the client has been written (see cn_http_req_out_pending). */
typedef void (*cn_http_drain_cb)(struct cn_http_req *req);
/* A tunnel's bytes from the client; len < 0 is end of input (UV_EOF) or a read error. */
typedef void (*cn_http_tunnel_cb)(struct cn_http_req *req, const char *data, ssize_t len);

/* A request, valid from the handler call until the reply is finished (cn_http_reply or
 * cn_http_reply_end) or abort_cb runs. Slices point into the connection's buffers. */
struct cn_http_req {
    struct cn_http_conn *conn;
    struct cn_http_worker *worker;
    int method; /* llhttp_method_t */
    struct cn_slice method_name;
    struct cn_slice target; /* as sent: path?query */
    struct cn_slice path;
    struct cn_slice query; /* without '?', empty if none */
    struct cn_http_header *headers;
    size_t num_headers;
    struct cn_route_params params;
    struct cn_buf body; /* decoded (gunzipped) body, at most max_body_bytes */
    int http_minor;     /* 0 or 1 */
    int route_id;       /* metrics index of the matched route */
    uint64_t start_ns;
    unsigned head : 1;        /* HEAD: the reply carries no body */
    unsigned replied : 1;     /* status line sent (or queued) */
    unsigned streaming : 1;   /* chunked reply in progress */
    unsigned done : 1;        /* reply finished */
    unsigned close : 1;       /* close the connection after this reply */
    unsigned chunked_out : 1; /* the reply body is chunk-framed */
    int status;
    cn_http_abort_cb abort_cb;
    void *data; /* the handler's */
    /* Streaming servers only. content_length: the request body's length, -1 when chunked, 0
     * when there is none. body_cb is set by the handler while it is called for the head;
     * without one the body is read and dropped. drain_cb and tunnel_cb: see below. */
    int64_t content_length;
    cn_http_body_cb body_cb;
    cn_http_drain_cb drain_cb;
    cn_http_tunnel_cb tunnel_cb;
};

/* Looks up a request header by name (case-insensitive). NULL when absent. */
const struct cn_slice *cn_http_req_header(const struct cn_http_req *req, const char *name);
/* Copies the value of a query parameter (percent-decoded) into dst. Returns the length, or -1
 * when absent or when it does not fit. */
int cn_http_req_query(const struct cn_http_req *req, const char *name, char *dst, size_t dst_len);

/* Replies in one piece: status, content type, body. extra holds num_extra more headers (may
 * be NULL). Finishes the request. For HEAD the body is omitted, Content-Length kept. */
void cn_http_reply(struct cn_http_req *req, int status, const char *content_type, const void *body,
                   size_t body_len, const struct cn_http_header *extra, size_t num_extra);
/* A one-line plain-text error: "REASON\n". */
void cn_http_reply_text(struct cn_http_req *req, int status, const char *text);
/* Starts a chunked reply; chunks follow with cn_http_reply_chunk, cn_http_reply_end ends. */
void cn_http_reply_start(struct cn_http_req *req, int status, const char *content_type,
                         const struct cn_http_header *extra, size_t num_extra);
void cn_http_reply_chunk(struct cn_http_req *req, const void *data, size_t len);
void cn_http_reply_end(struct cn_http_req *req);

const char *cn_http_status_text(int status);

/* ---- streaming (proxies) ------------------------------------------------------------------
 * With cn_http_server.stream_handler set, each request is handed over as soon as its head is
 * parsed and checked; its body (Content-Length or chunked, decoded by the strict decoder and
 * held to max_body_bytes) follows through req->body_cb. Content-Encoding is passed through
 * untouched; the body timeout is the handler's business. A reply finished before the body
 * has all arrived closes the connection after it (the rest of the body is not parsed). */

/* Stops reading the request body (or tunnel bytes) until cn_http_req_body_resume. */
void cn_http_req_body_pause(struct cn_http_req *req);
void cn_http_req_body_resume(struct cn_http_req *req);

/* The worker's batched-send queue (ev/sendq.h) for other sockets of the same loop, such as
 * the request's upstream connection; NULL when batching is off. */
struct cn_sendq *cn_http_req_sendq(const struct cn_http_req *req);

#define CN_HTTP_LEN_CHUNKED (-1) /* chunked to HTTP/1.1 clients, until close to HTTP/1.0 */
#define CN_HTTP_LEN_CLOSE   (-2) /* no framing header: until close (or none, for 101) */
/* Starts a reply whose header fields the caller gives whole (hdrs, may be NULL; no
 * Content-Type is added) and whose body follows with cn_http_reply_data and
 * cn_http_reply_end. content_length: bytes, CN_HTTP_LEN_CHUNKED or CN_HTTP_LEN_CLOSE.
 * Nothing is written to the socket until cn_http_req_flush or cn_http_reply_end. */
void cn_http_reply_head(struct cn_http_req *req, int status, const struct cn_http_header *hdrs,
                        size_t num_hdrs, int64_t content_length);
/* Appends body bytes (chunk-framed when the reply is chunked); nothing for HEAD. Does not
 * flush. */
void cn_http_reply_data(struct cn_http_req *req, const void *data, size_t len);
/* Writes what is queued. */
void cn_http_req_flush(struct cn_http_req *req);
/* Bytes queued for the client and not yet written. */
size_t cn_http_req_out_pending(const struct cn_http_req *req);
/* Closes the client connection now, without a reply or the rest of one (an upstream failed
 * after its response started). abort_cb is not called; req is invalid afterwards. */
void cn_http_req_reset(struct cn_http_req *req);
/* After a 101 reply head: the connection becomes a raw tunnel. Client bytes go to cb
 * (paused and resumed with cn_http_req_body_pause/_resume); bytes to the client go out with
 * cn_http_reply_data + cn_http_req_flush. Bytes the client sent after the request head are
 * returned in *out_early (valid until the next loop iteration) for the caller to forward.
 * Returns 1 when the client's input already ended cleanly after them (a half-close while
 * the reply was awaited): cb will not be called, the caller takes it as cb's UV_EOF. */
int cn_http_tunnel_start(struct cn_http_req *req, cn_http_tunnel_cb cb, struct cn_slice *out_early);
/* The client's IP address as text ("127.0.0.1", "::1"), looked up once per connection;
 * "" when unknown. Valid while the connection is. */
const char *cn_http_req_peer_ip(const struct cn_http_req *req);
/* Ends a tunnel: what is queued is written, then the connection closes. req is done. */
void cn_http_tunnel_end(struct cn_http_req *req);
/* Half-closes a tunnel: once what is queued is written, the write side ends (TLS: a
 * close_notify, then shutdown(SHUT_WR) of the socket); the client's bytes keep coming to the
 * tunnel callback until its end. Nothing more may be sent; cn_http_tunnel_end still ends it. */
void cn_http_tunnel_shutdown(struct cn_http_req *req);
/* Whether the request came over TLS (a listener with cn_http_server.tls_get). */
int cn_http_req_tls(const struct cn_http_req *req);

/* Per-worker counters read by /metrics from any thread (single writer, relaxed atomics). */
#define CN_HTTP_LAT_BUCKETS 14
extern const double cn_http_lat_bounds[CN_HTTP_LAT_BUCKETS]; /* seconds; +Inf implied */

struct cn_http_route_stats {
    atomic_uint_fast64_t by_class[6]; /* index status/100; 0 unused */
    atomic_uint_fast64_t lat[CN_HTTP_LAT_BUCKETS + 1];
    atomic_uint_fast64_t lat_sum_us;
};

enum cn_http_proto_err {
    CN_PE_BAD_REQUEST = 0,  /* 400 */
    CN_PE_URL_TOO_LONG,     /* 414 */
    CN_PE_HEADER_TOO_LARGE, /* 431 */
    CN_PE_BODY_TOO_LARGE,   /* 413 */
    CN_PE_TIMEOUT,          /* 408 */
    CN_PE_IDLE_CLOSE,       /* idle keep-alive closed */
    CN_PE_SEND_TIMEOUT,     /* peer did not read */
    CN_PE_OVERLOAD,         /* max_connections: 503 */
    CN_PE_UNSUPPORTED,      /* 415, 417, 501 */
    CN_PE_COUNT
};
extern const char *const cn_http_proto_err_names[CN_PE_COUNT];

#define CN_HTTP_TLS_FAILS 8 /* enum cn_tls_fail (ev/tls.h) */

struct cn_http_worker_stats {
    atomic_uint_fast64_t accepted;
    atomic_int_fast64_t open;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t proto_errs[CN_PE_COUNT];
    atomic_uint_fast64_t config_generation;
    atomic_uint_fast64_t tls_handshakes;                  /* completed */
    atomic_uint_fast64_t tls_failures[CN_HTTP_TLS_FAILS]; /* by enum cn_tls_fail */
};

/* Renders the body of an error the server core answers by itself (a limit, bad framing, a bad
 * gzip body) once the request's head was read, e.g. in the encoding its protocol asks for
 * (OTLP wants a google.rpc.Status). Writes at most cap bytes to out, sets *content_type, and
 * returns the length; 0 keeps the core's one-line text. Runs on the worker's loop. */
typedef size_t (*cn_http_error_body_cb)(void *ctx, const struct cn_http_req *req, int status,
                                        const char *reason, char *out, size_t cap,
                                        const char **content_type);

/* TLS listeners: called on the worker's thread at each accept. Returns a new reference to the
 * certificate set that new handshakes use (the worker keeps it), or NULL to keep the set the
 * worker used last. A connection keeps the set it started with until it closes. */
typedef struct cn_tls_ctx *(*cn_http_tls_get_cb)(void *arg, int worker_id);

struct cn_http_server {
    struct cn_router *router;
    struct sockaddr_storage addr; /* bound address (port filled in after the first bind) */
    int nworkers;
    struct cn_http_worker **workers;
    atomic_int_fast64_t open_total; /* connections across workers, for max_connections */
    atomic_int draining;
    const char *token; /* when set, non-public routes need "Authorization: Bearer TOKEN" */
    const char *body_limit_name;      /* setting named in 413 answers; NULL: http.max_body_bytes */
    cn_http_error_body_cb error_body; /* NULL: errors are one line of text */
    void *error_ctx;
    void *data;
    /* When set, every request goes here at its head instead of through the router (see
     * "streaming" above); router must still be set (an empty one will do). */
    cn_http_handler_cb stream_handler;
    void *stream_ctx;
    /* When set, the listener terminates TLS (see cn_http_tls_get_cb); NULL: plain HTTP, and
     * no TLS code runs for its connections. */
    cn_http_tls_get_cb tls_get;
    void *tls_arg;
};

/* A worker's part: its listener, its connections, its limits (swapped on reload). */
struct cn_http_worker {
    struct cn_http_server *srv;
    uv_loop_t *loop;
    int id;
    uv_tcp_t listener;
    int listening;
    struct cn_http_limits limits;
    uint64_t generation;
    struct cn_http_conn *conns; /* list of open connections */
    size_t num_conns;
    int draining;
    void (*on_drained)(struct cn_http_worker *w); /* last connection gone while draining */
    char date[40];                                /* "Date: ...\r\n" */
    size_t date_len;
    uint64_t date_sec;
    void **rbuf_pool;
    size_t rbuf_pool_len;
    size_t rbuf_size;
    uv_idle_t spin_idle;
    uv_check_t spin_check;
    int spin_handles; /* spin_idle and spin_check are initialised */
    uint64_t spin_ns, activity, last_activity, last_active_ns;
    struct cn_http_worker_stats stats;
    struct cn_http_route_stats *route_stats; /* [cn_router_num_routes + 1], last: unmatched */
    struct cn_tls_ctx *tls; /* TLS listeners: the set new connections start with (a ref) */
    char *tls_rbuf;         /* TLS listeners: ciphertext read from a socket, then fed */
    struct cn_sendq sendq;  /* sends batched per loop iteration (cn_http_req_sendq) */
    int sendq_state;        /* 0: not set up yet, 1: active, 2: off (no io_uring, draining) */
};

/* Initialises a worker on loop and starts listening on srv->addr (SO_REUSEPORT; the first
 * worker's bind fills in a kernel-chosen port). Returns 0 or a CN_E* code. */
int cn_http_worker_init(struct cn_http_worker *w, struct cn_http_server *srv, uv_loop_t *loop,
                        int id, const struct cn_http_limits *limits);
/* Applies new limits to connections accepted from now on. */
void cn_http_worker_set_limits(struct cn_http_worker *w, const struct cn_http_limits *limits,
                               uint64_t generation);
/* Stops accepting; idle connections close now, busy ones after their current reply.
 * on_drained runs when none is left (possibly before this returns). */
void cn_http_worker_drain(struct cn_http_worker *w);
/* Closes every connection now (drain deadline passed). */
void cn_http_worker_close_all(struct cn_http_worker *w);
/* Frees what the worker holds once its connections are closed and the loop has run. */
void cn_http_worker_release(struct cn_http_worker *w);

#endif
