/* Parsers and matchers of the query layer: attribute predicates, times, durations, status,
 * span kind and severity names (query.h). */
#include "telemetry/query.h"

#include "base/regex.h"

#include <math.h>

static void put_err(char *err, size_t err_len, const char *fmt, const char *arg)
{
    if (err && err_len)
        snprintf(err, err_len, fmt, arg);
}

/* ---- predicates ------------------------------------------------------------------------ */

static char *dup_text(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* Reads a whole slice as a finite double. Returns 0 or CN_ESYNTAX. */
static int read_number(const char *p, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return CN_ESYNTAX;
    memcpy(buf, p, n);
    buf[n] = '\0';
    /* strtod also reads "inf", "nan" and hex floats: accept plain decimal numbers only. */
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789+-.eE", buf[i]))
            return CN_ESYNTAX;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + n || errno == ERANGE || !isfinite(v))
        return CN_ESYNTAX;
    *out = v;
    return 0;
}

int cn_pred_parse(struct cn_pred *out, struct cn_slice text, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    const char *p = text.ptr ? text.ptr : "";
    size_t n = text.len, at = 0, oplen = 0;
    enum cn_pred_op op = CN_PRED_EQ;
    for (at = 1; at < n; at++) {
        if (p[at] == '!' && at + 1 < n && p[at + 1] == '=') {
            op = CN_PRED_NE;
            oplen = 2;
        } else if (p[at] == '=' && at + 1 < n && p[at + 1] == '~') {
            op = CN_PRED_RE;
            oplen = 2;
        } else if (p[at] == '=') {
            op = CN_PRED_EQ;
            oplen = 1;
        } else if (p[at] == '>') {
            op = CN_PRED_GT;
            oplen = 1;
        } else if (p[at] == '<') {
            op = CN_PRED_LT;
            oplen = 1;
        } else {
            continue;
        }
        break;
    }
    if (n == 0 || p[0] == '=' || p[0] == '!' || p[0] == '<' || p[0] == '>') {
        put_err(err, err_len, "%s", "a predicate needs a key before its operator (k=v)");
        return CN_ESYNTAX;
    }
    if (!oplen) {
        put_err(err, err_len, "%s",
                "a predicate needs an operator: k=v, k!=v, k=~regex, k>number or k<number");
        return CN_ESYNTAX;
    }
    size_t klen = at, voff = at + oplen, vlen = n - voff;
    if (klen > CN_QUERY_MAX_KEY_BYTES || vlen > CN_QUERY_MAX_VALUE_BYTES) {
        put_err(err, err_len, "%s", "predicate key or value too long (256 / 4096 bytes at most)");
        return CN_ELIMIT;
    }
    if (memchr(p, '\0', n)) {
        put_err(err, err_len, "%s", "a predicate may not hold a NUL byte");
        return CN_ESYNTAX;
    }
    out->op = op;
    if (op == CN_PRED_GT || op == CN_PRED_LT) {
        if (read_number(p + voff, vlen, &out->num) != 0) {
            put_err(err, err_len, "%s", "the value of a > or < predicate must be a number");
            return CN_ESYNTAX;
        }
    }
    if (op == CN_PRED_RE && vlen > CN_QUERY_MAX_REGEX_BYTES) {
        put_err(err, err_len, "%s", "regular expression too long (256 bytes at most)");
        return CN_ELIMIT;
    }
    out->key = dup_text(p, klen);
    out->value = dup_text(p + voff, vlen);
    if (!out->key || !out->value) {
        cn_pred_release(out);
        put_err(err, err_len, "%s", "out of memory");
        return CN_ENOMEM;
    }
    out->key_len = klen;
    out->value_len = vlen;
    if (op == CN_PRED_RE) {
        char why[160];
        int rc = cn_regex_check(out->value, vlen, why, sizeof(why));
        if (rc != 0) {
            cn_pred_release(out);
            put_err(err, err_len, "%s", why);
            return rc;
        }
        rc = regcomp(&out->re, out->value, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[128];
            regerror(rc, &out->re, why, sizeof(why));
            cn_pred_release(out);
            put_err(err, err_len, "regular expression does not compile: %s", why);
            return CN_ESYNTAX;
        }
        out->has_re = 1;
    }
    return 0;
}

void cn_pred_release(struct cn_pred *p)
{
    if (!p)
        return;
    if (p->has_re)
        regfree(&p->re);
    free(p->key);
    free(p->value);
    memset(p, 0, sizeof(*p));
}

int cn_val_text(const struct cn_val *v, char *dst, size_t dst_len)
{
    char tmp[40];
    const char *src = tmp;
    size_t n;
    switch (v->type) {
    case CN_VAL_STR:
        src = v->u.s.ptr ? v->u.s.ptr : "";
        n = v->u.s.len;
        break;
    case CN_VAL_BOOL:
        src = v->u.b ? "true" : "false";
        n = strlen(src);
        break;
    case CN_VAL_INT:
        n = (size_t)snprintf(tmp, sizeof(tmp), "%lld", (long long)v->u.i);
        break;
    case CN_VAL_DOUBLE: {
        /* The shortest form that reads back to the same double. */
        int prec = 1;
        for (; prec < 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, v->u.d);
            if (strtod(tmp, NULL) == v->u.d)
                break;
        }
        n = (size_t)snprintf(tmp, sizeof(tmp), "%.*g", prec, v->u.d);
        break;
    }
    default:
        if (dst_len)
            dst[0] = '\0';
        return -1;
    }
    if (dst_len == 0)
        return (int)n;
    size_t c = n < dst_len - 1 ? n : dst_len - 1;
    memcpy(dst, src, c);
    dst[c] = '\0';
    return (int)n;
}

static const struct cn_val *find_attr(const struct cn_kvs *kvs, const char *key, size_t key_len)
{
    for (uint32_t i = 0; i < kvs->num; i++)
        if (kvs->items[i].key.len == key_len &&
            (key_len == 0 || memcmp(kvs->items[i].key.ptr, key, key_len) == 0))
            return &kvs->items[i].val;
    return NULL;
}

/* The value as a number for > and <; 0 when it is one. */
static int val_number(const struct cn_val *v, double *out)
{
    if (v->type == CN_VAL_INT) {
        *out = (double)v->u.i;
        return 0;
    }
    if (v->type == CN_VAL_DOUBLE) {
        *out = v->u.d;
        return isfinite(v->u.d) ? 0 : CN_ESYNTAX;
    }
    if (v->type == CN_VAL_STR)
        return read_number(v->u.s.ptr, v->u.s.len, out);
    return CN_ESYNTAX;
}

/* Equality of the value's text with p->value; 0 for values without text. */
static int val_equals(const struct cn_val *v, const struct cn_pred *p)
{
    if (v->type == CN_VAL_STR)
        return v->u.s.len == p->value_len &&
               (p->value_len == 0 || memcmp(v->u.s.ptr, p->value, p->value_len) == 0);
    char tmp[40];
    int n = cn_val_text(v, tmp, sizeof(tmp));
    return n >= 0 && (size_t)n == p->value_len && memcmp(tmp, p->value, p->value_len) == 0;
}

static int val_regex(const struct cn_val *v, const struct cn_pred *p)
{
    if (v->type == CN_VAL_STR) {
        /* regexec needs a NUL-terminated subject. */
        char small[256];
        char *s = v->u.s.len < sizeof(small) ? small : malloc(v->u.s.len + 1);
        if (!s)
            return 0;
        if (v->u.s.len)
            memcpy(s, v->u.s.ptr, v->u.s.len);
        s[v->u.s.len] = '\0';
        /* A string holding a NUL is matched up to it, as regexec reads it. */
        int m = regexec(&p->re, s, 0, NULL, 0) == 0;
        if (s != small)
            free(s);
        return m;
    }
    char tmp[40];
    if (cn_val_text(v, tmp, sizeof(tmp)) < 0)
        return 0;
    return regexec(&p->re, tmp, 0, NULL, 0) == 0;
}

int cn_pred_match(const struct cn_pred *p, const struct cn_kvs *const *lists, size_t n)
{
    const struct cn_val *v = NULL;
    for (size_t i = 0; i < n && !v; i++)
        if (lists[i])
            v = find_attr(lists[i], p->key, p->key_len);
    switch (p->op) {
    case CN_PRED_EQ:
        return v && val_equals(v, p);
    case CN_PRED_NE:
        return !v || !val_equals(v, p);
    case CN_PRED_RE:
        return v && val_regex(v, p);
    case CN_PRED_GT:
    case CN_PRED_LT: {
        double x;
        if (!v || val_number(v, &x) != 0)
            return 0;
        return p->op == CN_PRED_GT ? x > p->num : x < p->num;
    }
    }
    return 0;
}

int cn_pred_match_span(const struct cn_pred *p, const struct cn_span *s)
{
    const struct cn_kvs *lists[3] = {&s->attrs, s->resource ? &s->resource->attrs : NULL,
                                     s->scope ? &s->scope->attrs : NULL};
    return cn_pred_match(p, lists, 3);
}

int cn_pred_match_log(const struct cn_pred *p, const struct cn_log *l)
{
    const struct cn_kvs *lists[3] = {&l->attrs, l->resource ? &l->resource->attrs : NULL,
                                     l->scope ? &l->scope->attrs : NULL};
    return cn_pred_match(p, lists, 3);
}

/* ---- times and durations --------------------------------------------------------------- */

static int digits(const char *p, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return CN_ESYNTAX;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int is_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int parse_rfc3339(const char *p, size_t n, uint64_t *out_ns)
{
    /* YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
    unsigned y, mo, d, h, mi, s;
    if (n < 20 || p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != 't') || p[13] != ':' ||
        p[16] != ':')
        return CN_ESYNTAX;
    if (digits(p, 4, &y) || digits(p + 5, 2, &mo) || digits(p + 8, 2, &d) ||
        digits(p + 11, 2, &h) || digits(p + 14, 2, &mi) || digits(p + 17, 2, &s))
        return CN_ESYNTAX;
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 ||
        mi > 59 || s > 60)
        return CN_ESYNTAX;
    if (s == 60)
        s = 59; /* a leap second reads as the second before it */
    size_t at = 19;
    uint64_t frac = 0;
    if (at < n && p[at] == '.') {
        at++;
        size_t nd = 0;
        while (at < n && p[at] >= '0' && p[at] <= '9') {
            if (nd < 9) {
                frac = frac * 10 + (uint64_t)(p[at] - '0');
                nd++;
            }
            at++;
        }
        if (nd == 0)
            return CN_ESYNTAX;
        for (; nd < 9; nd++)
            frac *= 10;
    }
    int64_t off = 0;
    if (at < n && (p[at] == 'Z' || p[at] == 'z')) {
        at++;
    } else if (at + 6 == n && (p[at] == '+' || p[at] == '-') && p[at + 3] == ':') {
        unsigned oh, om;
        if (digits(p + at + 1, 2, &oh) || digits(p + at + 4, 2, &om) || oh > 23 || om > 59)
            return CN_ESYNTAX;
        off = (int64_t)(oh * 3600 + om * 60) * (p[at] == '+' ? 1 : -1);
        at += 6;
    } else {
        return CN_ESYNTAX;
    }
    if (at != n)
        return CN_ESYNTAX;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off;
    if (secs < 0 || (uint64_t)secs > UINT64_MAX / 1000000000u - 1)
        return CN_ERANGE;
    *out_ns = (uint64_t)secs * 1000000000u + frac;
    return 0;
}

int cn_query_parse_time(struct cn_slice text, uint64_t *out_ns)
{
    const char *p = text.ptr ? text.ptr : "";
    size_t n = text.len;
    if (n >= 20 && p[4] == '-')
        return parse_rfc3339(p, n, out_ns);
    size_t nd = 0;
    while (nd < n && p[nd] >= '0' && p[nd] <= '9')
        nd++;
    if (nd == 0 || nd == n)
        return CN_ESYNTAX; /* no digits, or no unit */
    struct cn_slice unit = {p + nd, n - nd};
    uint64_t mul;
    if (cn_slice_eq(unit, CN_SLICE_LIT("ns")))
        mul = 1;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("us")))
        mul = 1000;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("ms")))
        mul = 1000000;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("s")))
        mul = 1000000000;
    else
        return CN_ESYNTAX;
    uint64_t v;
    int rc = cn_slice_to_u64((struct cn_slice){p, nd}, &v);
    if (rc)
        return rc;
    if (v > UINT64_MAX / mul)
        return CN_ERANGE;
    *out_ns = v * mul;
    return 0;
}

int cn_query_parse_duration(struct cn_slice text, uint64_t *out_ns)
{
    const char *p = text.ptr ? text.ptr : "";
    size_t n = text.len, at = 0;
    uint64_t whole = 0, frac = 0, frac_div = 1;
    size_t nd = 0;
    while (at < n && p[at] >= '0' && p[at] <= '9') {
        uint64_t dg = (uint64_t)(p[at] - '0');
        if (whole > (UINT64_MAX - dg) / 10)
            return CN_ERANGE;
        whole = whole * 10 + dg;
        at++;
        nd++;
    }
    if (at < n && p[at] == '.') {
        at++;
        size_t fd = 0;
        while (at < n && p[at] >= '0' && p[at] <= '9') {
            if (frac_div < 1000000000000000000ull) {
                frac = frac * 10 + (uint64_t)(p[at] - '0');
                frac_div *= 10;
            }
            at++;
            fd++;
        }
        if (fd == 0)
            return CN_ESYNTAX;
        nd += fd;
    }
    if (nd == 0)
        return CN_ESYNTAX;
    struct cn_slice unit = {p + at, n - at};
    uint64_t mul;
    if (cn_slice_eq(unit, CN_SLICE_LIT("ns")))
        mul = 1;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("us")) || cn_slice_eq(unit, CN_SLICE_LIT("\xc2\xb5s")))
        mul = 1000;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("ms")))
        mul = 1000000;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("s")))
        mul = 1000000000;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("m")))
        mul = 60000000000ull;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("h")))
        mul = 3600000000000ull;
    else
        return CN_ESYNTAX;
    if (whole > UINT64_MAX / mul)
        return CN_ERANGE;
    uint64_t v = whole * mul;
    /* frac / frac_div * mul without overflow: mul <= 3.6e12 and frac < frac_div <= 1e18. */
    long double f = (long double)frac * (long double)mul / (long double)frac_div;
    uint64_t fr = (uint64_t)f;
    if (v > UINT64_MAX - fr)
        return CN_ERANGE;
    *out_ns = v + fr;
    return 0;
}

/* ---- names ----------------------------------------------------------------------------- */

static int name_eq(struct cn_slice t, const char *word)
{
    return cn_slice_case_eq(t, cn_slice_of(word));
}

int cn_query_parse_status(struct cn_slice text, int *out_status)
{
    static const char *const names[] = {"unset", "ok", "error"};
    static const char *const otlp[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"};
    for (int i = 0; i < 3; i++)
        if (name_eq(text, names[i]) || name_eq(text, otlp[i])) {
            *out_status = i;
            return 0;
        }
    return CN_ESYNTAX;
}

static const char *const kind_names[] = {"unspecified", "internal", "server",
                                         "client",      "producer", "consumer"};

const char *cn_query_kind_name(int kind)
{
    return kind >= 0 && kind <= 5 ? kind_names[kind] : "unspecified";
}

int cn_query_parse_kind(struct cn_slice text, int *out_kind)
{
    struct cn_slice t = text;
    if (t.len > 10 && cn_slice_case_eq((struct cn_slice){t.ptr, 10}, CN_SLICE_LIT("SPAN_KIND_"))) {
        t.ptr += 10;
        t.len -= 10;
    }
    for (int i = 0; i < 6; i++)
        if (name_eq(t, kind_names[i])) {
            *out_kind = i;
            return 0;
        }
    return CN_ESYNTAX;
}

int cn_query_parse_severity(struct cn_slice text, uint8_t *out_sev)
{
    static const struct {
        const char *name;
        uint8_t sev;
    } names[] = {{"trace", 1},    {"debug", 5},  {"info", 9},   {"warn", 13},
                 {"warning", 13}, {"error", 17}, {"fatal", 21}, {"critical", 21}};
    for (size_t i = 0; i < CN_ARRAY_LEN(names); i++)
        if (name_eq(text, names[i].name)) {
            *out_sev = names[i].sev;
            return 0;
        }
    uint64_t v;
    if (cn_slice_to_u64(text, &v) == 0 && v >= 1 && v <= 24) {
        *out_sev = (uint8_t)v;
        return 0;
    }
    return CN_ESYNTAX;
}
