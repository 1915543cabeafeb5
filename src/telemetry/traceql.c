/* The TraceQL subset of traceql.h: a hand-written recursive-descent parser over the bytes of
 * the query, and the span matcher. */
#include "telemetry/traceql.h"

#include "base/regex.h"

#include <math.h>
#include <stdarg.h>

struct parser {
    const char *p;
    size_t len;
    size_t pos;
    char *err;
    size_t err_len;
    size_t err_at;
    int failed;
};

static int fail(struct parser *ps, size_t at, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct parser *ps, size_t at, int rc, const char *fmt, ...)
{
    if (ps->failed)
        return rc;
    ps->failed = 1;
    ps->err_at = at;
    if (ps->err_len) {
        int n = snprintf(ps->err, ps->err_len, "at offset %zu: ", at);
        if (n >= 0 && (size_t)n < ps->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ps->err + n, ps->err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
        /* Messages quote the query: what is not printable ASCII shows as '?'. */
        for (char *p = ps->err; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
    }
    return rc;
}

static void skip_ws(struct parser *ps)
{
    while (ps->pos < ps->len && (ps->p[ps->pos] == ' ' || ps->p[ps->pos] == '\t' ||
                                 ps->p[ps->pos] == '\n' || ps->p[ps->pos] == '\r'))
        ps->pos++;
}

static int peek(struct parser *ps)
{
    skip_ws(ps);
    return ps->pos < ps->len ? (unsigned char)ps->p[ps->pos] : -1;
}

/* Consumes lit when the input continues with it. */
static int eat(struct parser *ps, const char *lit)
{
    skip_ws(ps);
    size_t n = strlen(lit);
    if (ps->len - ps->pos >= n && memcmp(ps->p + ps->pos, lit, n) == 0) {
        ps->pos += n;
        return 1;
    }
    return 0;
}

/* What stands at pos, for messages: a printable excerpt or "end of query". */
static const char *near(struct parser *ps, char *buf, size_t buf_len)
{
    if (ps->pos >= ps->len)
        return "end of query";
    size_t n = 0;
    buf[n++] = '\'';
    for (size_t i = ps->pos; i < ps->len && n + 2 < buf_len && i < ps->pos + 12; i++) {
        unsigned char c = (unsigned char)ps->p[i];
        buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[n++] = '\'';
    buf[n] = '\0';
    return buf;
}

static int is_key_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '/' || c == '-';
}

static int is_word_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* A double-quoted string at pos with \" \\ \n \t \r escapes, into a new NUL-terminated
 * buffer. */
static int quoted(struct parser *ps, char **out, size_t *out_len)
{
    size_t start = ps->pos;
    ps->pos++; /* the opening quote */
    char *buf = malloc(ps->len - ps->pos + 1);
    if (!buf)
        return fail(ps, start, CN_ENOMEM, "out of memory");
    size_t n = 0;
    while (ps->pos < ps->len) {
        char c = ps->p[ps->pos++];
        if (c == '"') {
            buf[n] = '\0';
            *out = buf;
            *out_len = n;
            return 0;
        }
        if (c == '\\') {
            if (ps->pos >= ps->len)
                break;
            char e = ps->p[ps->pos++];
            switch (e) {
            case '"':
            case '\\':
                c = e;
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            default:
                free(buf);
                return fail(ps, ps->pos - 2, CN_ESYNTAX, "unknown escape '\\%c' in string",
                            e >= 0x20 && e < 0x7f ? e : '?');
            }
        }
        buf[n++] = c;
    }
    free(buf);
    return fail(ps, start, CN_ESYNTAX, "string not closed");
}

struct intrinsic {
    const char *name;
    enum cn_tql_field field;
};

static const struct intrinsic intrinsics[] = {
    {"name", CN_TQL_NAME},
    {"status", CN_TQL_STATUS},
    {"statusMessage", CN_TQL_STATUS_MESSAGE},
    {"kind", CN_TQL_KIND},
    {"duration", CN_TQL_DURATION},
    {"span:name", CN_TQL_NAME},
    {"span:status", CN_TQL_STATUS},
    {"span:statusMessage", CN_TQL_STATUS_MESSAGE},
    {"span:kind", CN_TQL_KIND},
    {"span:duration", CN_TQL_DURATION},
};

static int parse_field(struct parser *ps, struct cn_tql_cond *c)
{
    skip_ws(ps);
    size_t start = ps->pos;
    char nb[20];
    const char *scopes[] = {"span.", "resource.", "."};
    const enum cn_tql_field fields[] = {CN_TQL_ATTR_SPAN, CN_TQL_ATTR_RESOURCE, CN_TQL_ATTR_ANY};
    for (size_t i = 0; i < CN_ARRAY_LEN(scopes); i++) {
        size_t n = strlen(scopes[i]);
        if (ps->len - ps->pos < n || memcmp(ps->p + ps->pos, scopes[i], n) != 0)
            continue;
        ps->pos += n;
        c->field = (uint8_t)fields[i];
        if (ps->pos < ps->len && ps->p[ps->pos] == '"') {
            size_t klen;
            int rc = quoted(ps, &c->key, &klen);
            if (rc != 0)
                return rc;
            if (klen == 0 || memchr(c->key, '\0', klen))
                return fail(ps, start, CN_ESYNTAX, "empty or invalid attribute name");
            return 0;
        }
        size_t k = ps->pos;
        while (k < ps->len && is_key_char((unsigned char)ps->p[k]))
            k++;
        if (k == ps->pos)
            return fail(ps, ps->pos, CN_ESYNTAX, "expected an attribute name after '%s', found %s",
                        scopes[i], near(ps, nb, sizeof(nb)));
        c->key = dup_n(ps->p + ps->pos, k - ps->pos);
        if (!c->key)
            return fail(ps, start, CN_ENOMEM, "out of memory");
        ps->pos = k;
        return 0;
    }
    size_t k = ps->pos;
    while (k < ps->len && (is_word_char((unsigned char)ps->p[k]) || ps->p[k] == ':'))
        k++;
    for (size_t i = 0; i < CN_ARRAY_LEN(intrinsics); i++) {
        if (strlen(intrinsics[i].name) == k - ps->pos &&
            memcmp(intrinsics[i].name, ps->p + ps->pos, k - ps->pos) == 0) {
            c->field = (uint8_t)intrinsics[i].field;
            ps->pos = k;
            return 0;
        }
    }
    if (k > ps->pos)
        return fail(ps, start, CN_ESYNTAX,
                    "unknown field '%.*s' (use span.<key>, resource.<key>, .<key>, name, status, "
                    "statusMessage, kind or duration)",
                    (int)CN_MIN(k - ps->pos, 64), ps->p + ps->pos);
    return fail(ps, start, CN_ESYNTAX, "expected a field, found %s", near(ps, nb, sizeof(nb)));
}

static int parse_op(struct parser *ps, struct cn_tql_cond *c)
{
    static const struct {
        const char *lit;
        enum cn_tql_op op;
    } ops[] = {{"!=", CN_TQL_NE}, {"=~", CN_TQL_RE}, {"!~", CN_TQL_NRE}, {">=", CN_TQL_GE},
               {"<=", CN_TQL_LE}, {"=", CN_TQL_EQ},  {">", CN_TQL_GT},   {"<", CN_TQL_LT}};
    for (size_t i = 0; i < CN_ARRAY_LEN(ops); i++) {
        if (eat(ps, ops[i].lit)) {
            c->op = (uint8_t)ops[i].op;
            return 0;
        }
    }
    char nb[20];
    return fail(ps, ps->pos, CN_ESYNTAX,
                "expected an operator (=, !=, =~, !~, >, >=, <, <=), found %s",
                near(ps, nb, sizeof(nb)));
}

/* Duration units, longest first so "ms" wins over "m". */
static const struct {
    const char *unit;
    double ns;
} units[] = {{"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
             {"s", 1e9},  {"m", 60e9}, {"h", 3600e9}};

static int parse_number(struct parser *ps, struct cn_tql_cond *c)
{
    size_t start = ps->pos, k = ps->pos;
    if (k < ps->len && ps->p[k] == '-')
        k++;
    size_t digits = k;
    int dot = 0;
    while (k < ps->len && ((ps->p[k] >= '0' && ps->p[k] <= '9') || (ps->p[k] == '.' && !dot))) {
        dot |= ps->p[k] == '.';
        k++;
    }
    if (k == digits || ps->p[k - 1] == '.' || ps->p[digits] == '.')
        return fail(ps, start, CN_ESYNTAX, "malformed number");
    char num[64];
    if (k - start >= sizeof(num))
        return fail(ps, start, CN_ESYNTAX, "number too long");
    memcpy(num, ps->p + start, k - start);
    num[k - start] = '\0';
    /* A unit right after the digits makes it a duration. */
    size_t u = k;
    while (u < ps->len &&
           (is_word_char((unsigned char)ps->p[u]) || (unsigned char)ps->p[u] >= 0x80))
        u++;
    if (u > k) {
        for (size_t i = 0; i < CN_ARRAY_LEN(units); i++) {
            if (strlen(units[i].unit) != u - k || memcmp(units[i].unit, ps->p + k, u - k) != 0)
                continue;
            double v = strtod(num, NULL) * units[i].ns;
            if (num[0] == '-' || !(v < 9.2e18))
                return fail(ps, start, CN_ESYNTAX, "duration out of range");
            c->vtype = CN_TQL_V_DURATION;
            c->i = (int64_t)llround(v);
            ps->pos = u;
            return 0;
        }
        return fail(ps, k, CN_ESYNTAX, "unknown duration unit '%.*s' (ns, us, ms, s, m, h)",
                    (int)CN_MIN(u - k, 16), ps->p + k);
    }
    ps->pos = k;
    if (dot) {
        c->vtype = CN_TQL_V_FLOAT;
        c->d = strtod(num, NULL);
        return 0;
    }
    errno = 0;
    long long v = strtoll(num, NULL, 10);
    if (errno == ERANGE)
        return fail(ps, start, CN_ESYNTAX, "integer out of range");
    c->vtype = CN_TQL_V_INT;
    c->i = v;
    return 0;
}

static const struct {
    const char *word;
    enum cn_tql_vtype type;
    int v;
} words[] = {
    {"true", CN_TQL_V_BOOL, 1},
    {"false", CN_TQL_V_BOOL, 0},
    {"error", CN_TQL_V_STATUS, CN_STATUS_ERROR},
    {"ok", CN_TQL_V_STATUS, CN_STATUS_OK},
    {"unset", CN_TQL_V_STATUS, CN_STATUS_UNSET},
    {"server", CN_TQL_V_KIND, CN_KIND_SERVER},
    {"client", CN_TQL_V_KIND, CN_KIND_CLIENT},
    {"producer", CN_TQL_V_KIND, CN_KIND_PRODUCER},
    {"consumer", CN_TQL_V_KIND, CN_KIND_CONSUMER},
    {"internal", CN_TQL_V_KIND, CN_KIND_INTERNAL},
    {"unspecified", CN_TQL_V_KIND, CN_KIND_UNSPECIFIED},
};

static int parse_value(struct parser *ps, struct cn_tql_cond *c)
{
    int ch = peek(ps);
    char nb[20];
    if (ch == '"') {
        int rc = quoted(ps, &c->str, &c->str_len);
        if (rc == 0)
            c->vtype = CN_TQL_V_STR;
        return rc;
    }
    if (ch == '-' || (ch >= '0' && ch <= '9'))
        return parse_number(ps, c);
    size_t k = ps->pos;
    while (k < ps->len && is_word_char((unsigned char)ps->p[k]))
        k++;
    for (size_t i = 0; i < CN_ARRAY_LEN(words); i++) {
        if (strlen(words[i].word) == k - ps->pos &&
            memcmp(words[i].word, ps->p + ps->pos, k - ps->pos) == 0) {
            c->vtype = (uint8_t)words[i].type;
            c->i = words[i].v;
            ps->pos = k;
            return 0;
        }
    }
    return fail(ps, ps->pos, CN_ESYNTAX, "expected a value, found %s", near(ps, nb, sizeof(nb)));
}

static const char *field_name(const struct cn_tql_cond *c)
{
    switch (c->field) {
    case CN_TQL_NAME:
        return "name";
    case CN_TQL_STATUS:
        return "status";
    case CN_TQL_STATUS_MESSAGE:
        return "statusMessage";
    case CN_TQL_KIND:
        return "kind";
    case CN_TQL_DURATION:
        return "duration";
    default:
        return c->key;
    }
}

/* Type rules: which values and operators each field takes. */
static int check_cond(struct parser *ps, struct cn_tql_cond *c, size_t op_at, size_t value_at)
{
    int ordered = c->op >= CN_TQL_GT;
    int regex = c->op == CN_TQL_RE || c->op == CN_TQL_NRE;
    switch (c->field) {
    case CN_TQL_NAME:
    case CN_TQL_STATUS_MESSAGE:
        if (c->vtype != CN_TQL_V_STR)
            return fail(ps, value_at, CN_ESYNTAX, "%s takes a quoted string", field_name(c));
        if (ordered)
            return fail(ps, op_at, CN_ESYNTAX, "%s takes =, !=, =~ or !~", field_name(c));
        break;
    case CN_TQL_STATUS:
        if (c->vtype != CN_TQL_V_STATUS)
            return fail(ps, value_at, CN_ESYNTAX, "status takes error, ok or unset");
        if (c->op != CN_TQL_EQ && c->op != CN_TQL_NE)
            return fail(ps, op_at, CN_ESYNTAX, "status takes = or !=");
        break;
    case CN_TQL_KIND:
        if (c->vtype != CN_TQL_V_KIND)
            return fail(ps, value_at, CN_ESYNTAX,
                        "kind takes server, client, producer, consumer, internal or unspecified");
        if (c->op != CN_TQL_EQ && c->op != CN_TQL_NE)
            return fail(ps, op_at, CN_ESYNTAX, "kind takes = or !=");
        break;
    case CN_TQL_DURATION:
        if (c->vtype != CN_TQL_V_DURATION)
            return fail(ps, value_at, CN_ESYNTAX, "duration takes a duration such as 100ms");
        if (regex)
            return fail(ps, op_at, CN_ESYNTAX, "duration takes =, !=, >, >=, < or <=");
        break;
    default: /* attributes */
        if (c->vtype == CN_TQL_V_STATUS || c->vtype == CN_TQL_V_KIND)
            return fail(ps, value_at, CN_ESYNTAX,
                        "attribute '%s' compares with a string, number, duration or boolean",
                        c->key);
        if (regex && c->vtype != CN_TQL_V_STR)
            return fail(ps, value_at, CN_ESYNTAX, "=~ and !~ take a quoted regular expression");
        if (ordered && c->vtype == CN_TQL_V_BOOL)
            return fail(ps, op_at, CN_ESYNTAX, "booleans take = or !=");
        break;
    }
    if (regex) {
        char why[160];
        int rc = cn_regex_check(c->str, c->str_len, why, sizeof(why));
        if (rc != 0)
            return fail(ps, value_at, rc, "%s", why);
        /* Anchored at both ends, as Tempo's. */
        char *pat = malloc(c->str_len + 7);
        if (!pat)
            return fail(ps, value_at, CN_ENOMEM, "out of memory");
        snprintf(pat, c->str_len + 7, "^(%s)$", c->str);
        rc = regcomp(&c->re, pat, REG_EXTENDED | REG_NOSUB);
        free(pat);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &c->re, msg, sizeof(msg));
            regfree(&c->re);
            return fail(ps, value_at, CN_ESYNTAX, "regular expression does not compile: %s", msg);
        }
        c->has_re = 1;
    }
    return 0;
}

static int parse_spanset(struct parser *ps, struct cn_tql_spanset *ss)
{
    char nb[20];
    size_t open_at = (skip_ws(ps), ps->pos);
    if (!eat(ps, "{"))
        return fail(ps, ps->pos, CN_ESYNTAX, "expected '{', found %s", near(ps, nb, sizeof(nb)));
    if (eat(ps, "}"))
        return 0;
    for (;;) {
        if (ss->num_conds == CN_TQL_MAX_CONDS)
            return fail(ps, (skip_ws(ps), ps->pos), CN_ELIMIT,
                        "more than %d conditions in one spanset", CN_TQL_MAX_CONDS);
        struct cn_tql_cond *c = &ss->conds[ss->num_conds++];
        int rc = parse_field(ps, c);
        if (rc != 0)
            return rc;
        size_t op_at = (skip_ws(ps), ps->pos);
        if ((rc = parse_op(ps, c)) != 0)
            return rc;
        size_t value_at = (skip_ws(ps), ps->pos);
        if ((rc = parse_value(ps, c)) != 0 || (rc = check_cond(ps, c, op_at, value_at)) != 0)
            return rc;
        if (eat(ps, "}"))
            return 0;
        if (eat(ps, "&&"))
            continue;
        skip_ws(ps);
        if (ps->pos >= ps->len)
            return fail(ps, open_at, CN_ESYNTAX, "'{' not closed");
        if (eat(ps, "||"))
            return fail(ps, ps->pos - 2, CN_ESYNTAX, "'||' is not supported (only '&&')");
        return fail(ps, ps->pos, CN_ESYNTAX, "expected '&&' or '}', found %s",
                    near(ps, nb, sizeof(nb)));
    }
}

void cn_tql_free(struct cn_tql_query *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->num_spansets; i++) {
        for (size_t j = 0; j < q->spansets[i].num_conds; j++) {
            struct cn_tql_cond *c = &q->spansets[i].conds[j];
            free(c->key);
            free(c->str);
            if (c->has_re)
                regfree(&c->re);
        }
    }
    free(q);
}

int cn_tql_parse(struct cn_tql_query **out_q, struct cn_slice text, char *err, size_t err_len,
                 size_t *out_offset)
{
    *out_q = NULL;
    if (err_len)
        err[0] = '\0';
    struct parser ps = {
        .p = text.ptr ? text.ptr : "", .len = text.len, .err = err, .err_len = err_len};
    struct cn_tql_query *q = NULL;
    int rc;
    if (text.len > CN_TQL_MAX_QUERY) {
        rc = fail(&ps, CN_TQL_MAX_QUERY, CN_ELIMIT, "query longer than %d bytes", CN_TQL_MAX_QUERY);
        goto out;
    }
    if (memchr(ps.p, '\0', ps.len)) {
        rc = fail(&ps, (size_t)((const char *)memchr(ps.p, '\0', ps.len) - ps.p), CN_ESYNTAX,
                  "NUL byte in query");
        goto out;
    }
    q = calloc(1, sizeof(*q));
    if (!q) {
        rc = fail(&ps, 0, CN_ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        if (q->num_spansets == CN_TQL_MAX_SPANSETS) {
            rc = fail(&ps, (skip_ws(&ps), ps.pos), CN_ELIMIT, "more than %d spansets",
                      CN_TQL_MAX_SPANSETS);
            goto out;
        }
        /* Counted before parsing so that cn_tql_free sees what a failure left half-made. */
        struct cn_tql_spanset *ss = &q->spansets[q->num_spansets++];
        if ((rc = parse_spanset(&ps, ss)) != 0)
            goto out;
        if (peek(&ps) < 0)
            break;
        if (eat(&ps, "&&"))
            continue;
        char nb[20];
        if (eat(&ps, "||"))
            rc = fail(&ps, ps.pos - 2, CN_ESYNTAX, "'||' is not supported (only '&&')");
        else if (peek(&ps) == '|')
            rc = fail(&ps, ps.pos, CN_ESYNTAX, "pipelines ('|') are not supported");
        else
            rc = fail(&ps, ps.pos, CN_ESYNTAX, "expected '&&' or the end of the query, found %s",
                      near(&ps, nb, sizeof(nb)));
        goto out;
    }
    *out_q = q;
    return 0;
out:
    cn_tql_free(q);
    if (out_offset)
        *out_offset = ps.err_at;
    return rc;
}

/* ---- matching ------------------------------------------------------------------------- */

static const struct cn_val *find_attr(const struct cn_kvs *kvs, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < kvs->num; i++)
        if (kvs->items[i].key.len == n && memcmp(kvs->items[i].key.ptr, key, n) == 0)
            return &kvs->items[i].val;
    return NULL;
}

static int cmp_ordered(int op, double a, double b)
{
    switch (op) {
    case CN_TQL_EQ:
        return a == b;
    case CN_TQL_NE:
        return a != b;
    case CN_TQL_GT:
        return a > b;
    case CN_TQL_GE:
        return a >= b;
    case CN_TQL_LT:
        return a < b;
    case CN_TQL_LE:
        return a <= b;
    default:
        return 0;
    }
}

static int cmp_i64(int op, int64_t a, int64_t b)
{
    switch (op) {
    case CN_TQL_EQ:
        return a == b;
    case CN_TQL_NE:
        return a != b;
    case CN_TQL_GT:
        return a > b;
    case CN_TQL_GE:
        return a >= b;
    case CN_TQL_LT:
        return a < b;
    case CN_TQL_LE:
        return a <= b;
    default:
        return 0;
    }
}

static int match_str(const struct cn_tql_cond *c, struct cn_slice s)
{
    switch (c->op) {
    case CN_TQL_EQ:
    case CN_TQL_NE: {
        int eq = s.len == c->str_len && (s.len == 0 || memcmp(s.ptr, c->str, s.len) == 0);
        return c->op == CN_TQL_EQ ? eq : !eq;
    }
    case CN_TQL_RE:
    case CN_TQL_NRE: {
        /* regexec needs a NUL-terminated string; values are short (attribute limits). */
        char small[256];
        char *buf = s.len < sizeof(small) ? small : malloc(s.len + 1);
        if (!buf)
            return 0;
        if (s.len)
            memcpy(buf, s.ptr, s.len);
        buf[s.len] = '\0';
        /* A value holding NUL bytes is matched up to the first one. */
        int m = regexec(&c->re, buf, 0, NULL, 0) == 0;
        if (buf != small)
            free(buf);
        return c->op == CN_TQL_RE ? m : !m;
    }
    default: {
        /* Ordered comparison of strings: bytewise, as Tempo. */
        size_t n = CN_MIN(s.len, c->str_len);
        int r = n ? memcmp(s.ptr, c->str, n) : 0;
        if (r == 0)
            r = s.len < c->str_len ? -1 : s.len > c->str_len;
        return cmp_i64(c->op, r, 0);
    }
    }
}

static int match_val(const struct cn_tql_cond *c, const struct cn_val *v)
{
    if (!v)
        return 0;
    switch (c->vtype) {
    case CN_TQL_V_STR:
        return v->type == CN_VAL_STR && match_str(c, v->u.s);
    case CN_TQL_V_BOOL:
        return v->type == CN_VAL_BOOL && cmp_i64(c->op, !!v->u.b, c->i);
    case CN_TQL_V_INT:
        if (v->type == CN_VAL_INT)
            return cmp_i64(c->op, v->u.i, c->i);
        return v->type == CN_VAL_DOUBLE && cmp_ordered(c->op, v->u.d, (double)c->i);
    case CN_TQL_V_FLOAT:
        if (v->type == CN_VAL_INT)
            return cmp_ordered(c->op, (double)v->u.i, c->d);
        return v->type == CN_VAL_DOUBLE && cmp_ordered(c->op, v->u.d, c->d);
    case CN_TQL_V_DURATION:
        /* An attribute compared with a duration: its number read as nanoseconds. */
        if (v->type == CN_VAL_INT)
            return cmp_i64(c->op, v->u.i, c->i);
        return v->type == CN_VAL_DOUBLE && cmp_ordered(c->op, v->u.d, (double)c->i);
    default:
        return 0;
    }
}

static int match_cond(const struct cn_tql_cond *c, const struct cn_span *s)
{
    static const struct cn_kvs none = {0};
    const struct cn_kvs *res = s->resource ? &s->resource->attrs : &none;
    switch (c->field) {
    case CN_TQL_ATTR_SPAN:
        return match_val(c, find_attr(&s->attrs, c->key));
    case CN_TQL_ATTR_RESOURCE:
        if (strcmp(c->key, "service.name") == 0 && s->resource && c->vtype == CN_TQL_V_STR &&
            !find_attr(res, c->key))
            return match_str(c, s->resource->service);
        return match_val(c, find_attr(res, c->key));
    case CN_TQL_ATTR_ANY: {
        const struct cn_val *v = find_attr(&s->attrs, c->key);
        if (!v && strcmp(c->key, "service.name") == 0 && s->resource && c->vtype == CN_TQL_V_STR &&
            !find_attr(res, c->key))
            return match_str(c, s->resource->service);
        return match_val(c, v ? v : find_attr(res, c->key));
    }
    case CN_TQL_NAME:
        return match_str(c, s->name);
    case CN_TQL_STATUS_MESSAGE:
        return match_str(c, s->status_message);
    case CN_TQL_STATUS:
        return cmp_i64(c->op, s->status_code, c->i);
    case CN_TQL_KIND:
        return cmp_i64(c->op, s->kind, c->i);
    case CN_TQL_DURATION: {
        int64_t d = s->end_ns > s->start_ns ? (int64_t)(s->end_ns - s->start_ns) : 0;
        return cmp_i64(c->op, d, c->i);
    }
    default:
        return 0;
    }
}

int cn_tql_match_span(const struct cn_tql_spanset *ss, const struct cn_span *s)
{
    for (size_t i = 0; i < ss->num_conds; i++)
        if (!match_cond(&ss->conds[i], s))
            return 0;
    return 1;
}

unsigned cn_tql_match_bits(const struct cn_tql_query *q, const struct cn_span *s)
{
    unsigned bits = 0;
    for (size_t i = 0; i < q->num_spansets; i++)
        if (cn_tql_match_span(&q->spansets[i], s))
            bits |= 1u << i;
    return bits;
}
