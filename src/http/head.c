#include "http/head.h"

enum {
    S_START = 0, /* before the request line; empty lines are skipped */
    S_START_CR,
    S_REQLINE,
    S_REQLINE_CR,
    S_LINE_START, /* start of a header line or the empty line */
    S_NAME,
    S_VALUE,
    S_VALUE_CR,
    S_END_CR,
};

/* RFC 9110 tchar. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* Bytes a field value may hold besides its end (CR): HTAB, VCHAR, obs-text. */
static const unsigned char vchar[256] = {['\t'] = 1, [0x20 ... 0x7e] = 1, [0x80 ... 0xff] = 1};

static enum cn_head_result bad(struct cn_head_scan *s, size_t pos, const char *reason)
{
    s->pos = pos;
    s->reason = reason;
    return CN_HEAD_BAD;
}

enum cn_head_result cn_head_scan(struct cn_head_scan *s, const char *buf, size_t len,
                                 const struct cn_http_limits *lim)
{
    size_t i = s->pos;
    int st = s->state;
    /* Where the runs of plain bytes below stop: the end of the input or the first byte the
     * size limit refuses (i - skip >= max_header_bytes), which the loop's check reports. A
     * later skip only moves that byte further: a run that stops early changes nothing. */
    size_t end =
        lim->max_header_bytes < len - CN_MIN(s->skip, len) ? s->skip + lim->max_header_bytes : len;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        /* Bytes of the head proper (after skipped empty lines) count against the limit. */
        if (i - s->skip >= lim->max_header_bytes && st != S_START && st != S_START_CR) {
            s->pos = i;
            s->state = st;
            s->reason = "request header too large (http.max_header_bytes)";
            return CN_HEAD_TOO_LARGE;
        }
        switch (st) {
        case S_START:
            if (c == '\r' && !s->response) {
                st = S_START_CR;
                break;
            }
            if (c == '\n')
                return bad(s, i, "bare LF before the request line");
            if (s->response && c == '\r')
                return bad(s, i, "empty line before the status line");
            if (s->skip > 64)
                return bad(s, i, "too many empty lines before the request line");
            st = S_REQLINE;
            s->skip = i;
            goto reqline;
        case S_START_CR:
            if (c != '\n')
                return bad(s, i, "CR not followed by LF");
            st = S_START;
            s->skip = i + 1;
            break;
        case S_REQLINE:
        reqline:
            if (s->response) {
                /* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
                if (c == '\r') {
                    if (s->spaces < 2)
                        return bad(s, i, "malformed status line");
                    st = S_REQLINE_CR;
                } else if (c == '\n') {
                    return bad(s, i, "bare LF in the status line");
                } else if (c == ' ') {
                    s->spaces++;
                } else if ((c < 0x20 && c != '\t') || c == 0x7f || (c == '\t' && s->spaces < 2)) {
                    return bad(s, i, "control character in the status line");
                }
                break;
            }
            if (c == '\r') {
                if (s->spaces != 2)
                    return bad(s, i, "malformed request line");
                st = S_REQLINE_CR;
            } else if (c == '\n') {
                return bad(s, i, "bare LF in the request line");
            } else if (c == ' ') {
                if (++s->spaces > 2)
                    return bad(s, i, "malformed request line");
            } else if (c < 0x21 || c == 0x7f) {
                return bad(s, i, "control character in the request line");
            } else if (s->spaces == 1) {
                if (++s->url_len > lim->max_url_bytes) {
                    s->pos = i;
                    s->state = st;
                    s->reason = "request target too long (http.max_url_bytes)";
                    return CN_HEAD_URL_TOO_LONG;
                }
            }
            break;
        case S_REQLINE_CR:
        case S_VALUE_CR:
            if (c != '\n')
                return bad(s, i, "CR not followed by LF");
            st = S_LINE_START;
            break;
        case S_LINE_START:
            if (c == '\r') {
                st = S_END_CR;
            } else if (c == '\n') {
                return bad(s, i, "bare LF in the header section");
            } else if (c == ' ' || c == '\t') {
                return bad(s, i, "obsolete line folding in a header field");
            } else if (tchar[c]) {
                if (++s->num_headers > lim->max_headers) {
                    s->pos = i;
                    s->state = st;
                    s->reason = "too many header fields (http.max_headers)";
                    return CN_HEAD_TOO_LARGE;
                }
                st = S_NAME;
            } else {
                return bad(s, i, "invalid character in a header field name");
            }
            break;
        case S_NAME:
            /* Runs of plain bytes in one loop (most of a head is names and values). */
            while (tchar[c] && i + 1 < end)
                c = (unsigned char)buf[++i];
            if (c == ':')
                st = S_VALUE;
            else if (!tchar[c])
                return bad(s, i,
                           c == ' ' || c == '\t' ? "whitespace in or after a header field name"
                                                 : "invalid character in a header field name");
            break;
        case S_VALUE:
            while (vchar[c] && i + 1 < end)
                c = (unsigned char)buf[++i];
            if (c == '\r')
                st = S_VALUE_CR;
            else if (c == '\n')
                return bad(s, i, "bare LF in a header field");
            else if ((c < 0x20 && c != '\t') || c == 0x7f)
                return bad(s, i, "control character in a header field value");
            break;
        case S_END_CR:
            if (c != '\n')
                return bad(s, i, "CR not followed by LF");
            s->pos = i + 1;
            s->state = st;
            return CN_HEAD_DONE;
        }
    }
    s->pos = i;
    s->state = st;
    return CN_HEAD_MORE;
}
