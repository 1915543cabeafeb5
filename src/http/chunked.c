#include "http/chunked.h"

enum {
    S_SIZE = 0,  /* hex digits */
    S_SIZE_WS,   /* whitespace after the size, before ';' or CR */
    S_EXT,       /* extension bytes after ';' */
    S_EXT_QUOTE, /* inside a quoted extension value */
    S_EXT_QUOTE_ESC,
    S_SIZE_LF,
    S_DATA,
    S_DATA_CR,
    S_DATA_LF,
    S_TRAILER_START, /* start of a trailer line or the final empty line */
    S_TRAILER_NAME,
    S_TRAILER_VALUE,
    S_TRAILER_LF,
    S_END_LF,
};

static int hexdigit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static enum cn_chunked_result bad(struct cn_chunked *st, const char *reason)
{
    st->reason = reason;
    return CN_CHUNKED_BAD;
}

enum cn_chunked_result cn_chunked_decode(struct cn_chunked *st, const char *in, size_t len,
                                         struct cn_buf *out, const struct cn_http_limits *lim,
                                         size_t *out_used)
{
    size_t i = 0;
    enum cn_chunked_result res = CN_CHUNKED_MORE;
    while (i < len && res == CN_CHUNKED_MORE) {
        unsigned char c = (unsigned char)in[i];
        switch (st->state) {
        case S_SIZE: {
            int d = hexdigit(c);
            if (d >= 0) {
                if (++st->digits > 16) {
                    res = bad(st, "chunk size too long");
                    break;
                }
                st->size = st->size * 16 + (uint64_t)d;
                i++;
                break;
            }
            if (st->digits == 0) {
                res = bad(st, "invalid chunk size");
                break;
            }
            if (c == ' ' || c == '\t') {
                st->state = S_SIZE_WS;
            } else if (c == ';') {
                st->state = S_EXT;
                st->line_len = 0;
            } else if (c == '\r') {
                st->state = S_SIZE_LF;
            } else {
                res = bad(st, "invalid chunk size");
                break;
            }
            i++;
            break;
        }
        case S_SIZE_WS:
            if (c == ';') {
                st->state = S_EXT;
                st->line_len = 0;
            } else if (c == '\r') {
                st->state = S_SIZE_LF;
            } else if (c != ' ' && c != '\t') {
                res = bad(st, "invalid chunk size");
                break;
            }
            i++;
            break;
        case S_EXT:
        case S_EXT_QUOTE:
        case S_EXT_QUOTE_ESC:
            if (++st->line_len > CN_CHUNK_EXT_MAX) {
                res = bad(st, "chunk extensions too long");
                break;
            }
            if (st->state == S_EXT_QUOTE_ESC) {
                if (is_ctl(c)) {
                    res = bad(st, "control character in a chunk extension");
                    break;
                }
                st->state = S_EXT_QUOTE;
            } else if (st->state == S_EXT_QUOTE) {
                if (c == '"')
                    st->state = S_EXT;
                else if (c == '\\')
                    st->state = S_EXT_QUOTE_ESC;
                else if (is_ctl(c))
                    res = bad(st, "control character in a chunk extension");
            } else if (c == '\r') {
                st->state = S_SIZE_LF;
            } else if (c == '"') {
                st->state = S_EXT_QUOTE;
            } else if (!(is_tchar(c) || c == ';' || c == '=' || c == ' ' || c == '\t')) {
                res = bad(st, "invalid character in a chunk extension");
                break;
            }
            i++;
            break;
        case S_SIZE_LF:
            if (c != '\n') {
                res = bad(st, "chunk size line not ended by CRLF");
                break;
            }
            i++;
            if (st->size == 0) {
                st->state = S_TRAILER_START;
                st->line_len = 0;
                break;
            }
            if (st->size > out->max - out->len) {
                st->reason = "request body too large (http.max_body_bytes)";
                res = CN_CHUNKED_TOO_LARGE;
                break;
            }
            st->remaining = st->size;
            st->state = S_DATA;
            break;
        case S_DATA: {
            size_t n = len - i;
            if (n > st->remaining)
                n = (size_t)st->remaining;
            if (cn_buf_append(out, in + i, n) != 0) {
                st->reason = "request body too large (http.max_body_bytes)";
                res = CN_CHUNKED_TOO_LARGE;
                break;
            }
            i += n;
            st->remaining -= n;
            if (st->remaining == 0)
                st->state = S_DATA_CR;
            break;
        }
        case S_DATA_CR:
            if (c != '\r') {
                res = bad(st, "chunk data not followed by CRLF");
                break;
            }
            st->state = S_DATA_LF;
            i++;
            break;
        case S_DATA_LF:
            if (c != '\n') {
                res = bad(st, "chunk data not followed by CRLF");
                break;
            }
            st->state = S_SIZE;
            st->size = 0;
            st->digits = 0;
            i++;
            break;
        case S_TRAILER_START:
        case S_TRAILER_NAME:
        case S_TRAILER_VALUE:
        case S_TRAILER_LF:
        case S_END_LF:
            if (++st->line_len > lim->max_header_bytes) {
                st->reason = "trailer section too large (http.max_header_bytes)";
                res = CN_CHUNKED_TRAILERS_TOO_LARGE;
                break;
            }
            if (st->state == S_TRAILER_START) {
                if (c == '\r') {
                    st->state = S_END_LF;
                } else if (c == ' ' || c == '\t') {
                    res = bad(st, "obsolete line folding in a trailer field");
                    break;
                } else if (is_tchar(c)) {
                    if (++st->trailers > lim->max_headers) {
                        st->reason = "too many trailer fields (http.max_headers)";
                        res = CN_CHUNKED_TRAILERS_TOO_LARGE;
                        break;
                    }
                    st->state = S_TRAILER_NAME;
                } else {
                    res = bad(st, c == '\n' ? "bare LF in the trailer section"
                                            : "invalid character in a trailer field name");
                    break;
                }
            } else if (st->state == S_TRAILER_NAME) {
                if (c == ':')
                    st->state = S_TRAILER_VALUE;
                else if (!is_tchar(c)) {
                    res = bad(st, "invalid character in a trailer field name");
                    break;
                }
            } else if (st->state == S_TRAILER_VALUE) {
                if (c == '\r') {
                    st->state = S_TRAILER_LF;
                } else if (is_ctl(c)) {
                    res = bad(st, c == '\n' ? "bare LF in the trailer section"
                                            : "control character in a trailer field");
                    break;
                }
            } else if (st->state == S_TRAILER_LF) {
                if (c != '\n') {
                    res = bad(st, "CR not followed by LF in the trailer section");
                    break;
                }
                st->state = S_TRAILER_START;
            } else { /* S_END_LF */
                if (c != '\n') {
                    res = bad(st, "CR not followed by LF at the end of the body");
                    break;
                }
                res = CN_CHUNKED_DONE;
            }
            i++;
            break;
        }
    }
    *out_used = i;
    return res;
}
