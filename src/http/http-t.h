/* HTTP types shared widely (limits live in the configuration). */
#ifndef CN_HTTP_T_H
#define CN_HTTP_T_H

#include <stdint.h>

/* Every limit the HTTP/1.1 server enforces; each answers with a status and a one-line reason. */
struct cn_http_limits {
    uint64_t max_url_bytes;     /* request target longer than this: 414 */
    uint64_t max_header_bytes;  /* request line + headers longer than this: 431 */
    uint64_t max_headers;       /* more header fields than this: 431 */
    uint64_t max_body_bytes;    /* body (after gzip decoding too) larger than this: 413 */
    uint64_t header_timeout_ms; /* request head not complete in time: 408, close */
    uint64_t body_timeout_ms;   /* body not complete in time after the head: 408, close */
    uint64_t idle_timeout_ms;   /* keep-alive connection idle between requests: close */
    uint64_t send_timeout_ms;   /* peer does not read our response in time: close */
    uint64_t max_connections;   /* open connections per process; past it: 503, close */
    uint64_t busy_poll_us;      /* after I/O, poll without sleeping this long (0: off) */
};

#endif
