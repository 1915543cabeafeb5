/* Strict scanner for an HTTP/1.1 request head (request line + header fields), run before
 * llhttp sees the bytes. llhttp 8 accepts obs-fold, spaces in and before header names, and a
 * bare LF ending the head; a smuggling-safe server must not. The scanner is resumable: feed
 * it the bytes of one head as they arrive. */
#ifndef CN_HTTP_HEAD_H
#define CN_HTTP_HEAD_H

#include "base/base.h"
#include "http/http-t.h"

enum cn_head_result {
    CN_HEAD_MORE = 0,  /* no complete head yet, no limit broken */
    CN_HEAD_DONE = 1,  /* head complete: out->head_len bytes */
    CN_HEAD_BAD = 400, /* malformed: reason says why */
    CN_HEAD_URL_TOO_LONG = 414,
    CN_HEAD_TOO_LARGE = 431,
};

/* Scanner state. pos counts bytes already scanned from the start of the head; skip counts
 * empty lines before the request line, which RFC 9112 says to ignore. */
struct cn_head_scan {
    size_t pos;
    size_t skip;
    size_t url_len;
    uint64_t num_headers;
    int state;
    int spaces;
    const char *reason; /* set with CN_HEAD_BAD / _URL_TOO_LONG / _TOO_LARGE */
    int response;       /* scan a response head: a status line instead of a request line */
};

static inline void cn_head_scan_init(struct cn_head_scan *s)
{
    memset(s, 0, sizeof(*s));
}

/* For a response head (a proxy reading its upstream): the first line is a status line, whose
 * reason phrase may hold spaces and tabs; empty lines before it are not skipped. The header
 * fields get the same checks. */
static inline void cn_head_scan_init_response(struct cn_head_scan *s)
{
    memset(s, 0, sizeof(*s));
    s->response = 1;
}

/* Scans buf[s->pos .. len) where buf holds the head from its first byte. On CN_HEAD_DONE,
 * s->pos is the head length including the final CRLF CRLF (and any skipped empty lines
 * before it, s->skip of them). Limits: max_url_bytes, max_header_bytes (request line +
 * fields), max_headers. */
enum cn_head_result cn_head_scan(struct cn_head_scan *s, const char *buf, size_t len,
                                 const struct cn_http_limits *lim);

#endif
