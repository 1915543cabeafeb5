/* Strict decoder for the chunked transfer coding of request bodies (RFC 9112 7.1). llhttp 8
 * accepts bytes other than CRLF after chunk data and a bare LF in trailers, and rejects
 * several extensions on one chunk; Cairn decodes chunked bodies itself and gives llhttp only
 * the request head. Resumable: feed bytes as they arrive. Trailer fields are checked like
 * header fields, counted against the header limits, and discarded. */
#ifndef CN_HTTP_CHUNKED_H
#define CN_HTTP_CHUNKED_H

#include "base/buf.h"
#include "http/http-t.h"

#define CN_CHUNK_EXT_MAX 4096 /* bytes of extensions on one chunk line */

enum cn_chunked_result {
    CN_CHUNKED_MORE = 0,
    CN_CHUNKED_DONE = 1,
    CN_CHUNKED_BAD = 400,
    CN_CHUNKED_TOO_LARGE = 413,          /* data past out->max (http.max_body_bytes) */
    CN_CHUNKED_TRAILERS_TOO_LARGE = 431, /* trailer section past the header limits */
};

struct cn_chunked {
    int state;
    unsigned digits;
    uint64_t size;      /* size of the chunk being read */
    uint64_t remaining; /* data bytes of it still to come */
    size_t line_len;    /* bytes of the current chunk line's extensions / trailer section */
    uint64_t trailers;
    const char *reason; /* set with an error result */
};

static inline void cn_chunked_init(struct cn_chunked *st)
{
    memset(st, 0, sizeof(*st));
}

/* Decodes in[0, len): data goes to out (whose max is the body limit). *out_used tells how
 * many bytes were consumed; on CN_CHUNKED_DONE the bytes after the body were not touched. */
enum cn_chunked_result cn_chunked_decode(struct cn_chunked *st, const char *in, size_t len,
                                         struct cn_buf *out, const struct cn_http_limits *lim,
                                         size_t *out_used);

#endif
