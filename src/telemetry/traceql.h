/* A subset of Tempo's TraceQL, enough for Grafana's Tempo data source search box and query
 * builder (docs/compat.md lists it):
 *
 *   query    := spanset ( '&&' spanset )*
 *   spanset  := '{' [ cond ( '&&' cond )* ] '}'
 *   cond     := field op value
 *   field    := 'span.' key | 'resource.' key | '.' key
 *             | 'name' | 'status' | 'kind' | 'duration' | 'statusMessage'
 *               (also spelled 'span:name', 'span:status', 'span:kind', 'span:duration',
 *               'span:statusMessage')
 *   op       := '=' | '!=' | '=~' | '!~' | '>' | '>=' | '<' | '<='
 *   value    := "string" | integer | float | duration (100ms, 1.5s, 2m, 1h, 10us, 10ns)
 *             | true | false | error | ok | unset (status) | server | client | producer
 *             | consumer | internal | unspecified (kind)
 *
 * A key is [A-Za-z0-9_.:/-]+ or a double-quoted string. `.k` looks at the span's
 * attributes, then the resource's. A spanset matches a span when every condition holds; the
 * query matches a trace when each spanset matches at least one of its spans. Regexes are
 * POSIX extended, anchored at both ends (as Tempo's, which are RE2 anchored). A comparison
 * with an attribute the span does not have, or of another type, is false (for != too).
 *
 * Limits: CN_TQL_MAX_QUERY bytes, CN_TQL_MAX_SPANSETS spansets, CN_TQL_MAX_CONDS conditions
 * per spanset. */
#ifndef CN_TELEMETRY_TRACEQL_H
#define CN_TELEMETRY_TRACEQL_H

#include "telemetry/model.h"
#include "telemetry/store.h"

#include <regex.h>

#define CN_TQL_MAX_QUERY    4096
#define CN_TQL_MAX_SPANSETS 8
#define CN_TQL_MAX_CONDS    16

enum cn_tql_field {
    CN_TQL_ATTR_ANY = 0, /* .key: span attribute, else resource attribute */
    CN_TQL_ATTR_SPAN,
    CN_TQL_ATTR_RESOURCE,
    CN_TQL_NAME,
    CN_TQL_STATUS,
    CN_TQL_STATUS_MESSAGE,
    CN_TQL_KIND,
    CN_TQL_DURATION,
};

enum cn_tql_op {
    CN_TQL_EQ = 0,
    CN_TQL_NE,
    CN_TQL_RE,
    CN_TQL_NRE,
    CN_TQL_GT,
    CN_TQL_GE,
    CN_TQL_LT,
    CN_TQL_LE,
};

enum cn_tql_vtype {
    CN_TQL_V_STR = 0,
    CN_TQL_V_INT,
    CN_TQL_V_FLOAT,
    CN_TQL_V_BOOL,
    CN_TQL_V_DURATION, /* i holds nanoseconds */
    CN_TQL_V_STATUS,   /* i holds a cn_status_code */
    CN_TQL_V_KIND,     /* i holds a cn_span_kind */
};

/* One condition. Invariants: re is compiled iff op is RE or NRE (then vtype is STR); key is
 * set (NUL-terminated, owned by the query) iff field is an ATTR_*. */
struct cn_tql_cond {
    uint8_t field; /* cn_tql_field */
    uint8_t op;    /* cn_tql_op */
    uint8_t vtype; /* cn_tql_vtype */
    char *key;
    char *str; /* CN_TQL_V_STR: the value, NUL-terminated */
    size_t str_len;
    int64_t i;
    double d;
    int has_re;
    regex_t re;
};

struct cn_tql_spanset {
    struct cn_tql_cond conds[CN_TQL_MAX_CONDS];
    size_t num_conds;
};

struct cn_tql_query {
    struct cn_tql_spanset spansets[CN_TQL_MAX_SPANSETS];
    size_t num_spansets;
};

/* Parses text. On success returns 0 and *out_q (free it with cn_tql_free). On failure
 * returns CN_ESYNTAX (or CN_ELIMIT for the limits above, CN_ENOMEM), writes a message to err
 * naming the byte offset ("at offset N: ..."), sets *out_offset to that offset (may be NULL)
 * and leaves *out_q NULL. */
int cn_tql_parse(struct cn_tql_query **out_q, struct cn_slice text, char *err, size_t err_len,
                 size_t *out_offset);
void cn_tql_free(struct cn_tql_query *q);

/* 1 when span s satisfies every condition of ss (an empty spanset matches every span). */
int cn_tql_match_span(const struct cn_tql_spanset *ss, const struct cn_span *s);

/* Matching a trace: the caller keeps one bit per spanset (CN_TQL_MAX_SPANSETS fit in an
 * unsigned), ORs in cn_tql_match_bits for each span, and the trace matches when the bits
 * equal cn_tql_all_bits. */
unsigned cn_tql_match_bits(const struct cn_tql_query *q, const struct cn_span *s);
static inline unsigned cn_tql_all_bits(const struct cn_tql_query *q)
{
    return (1u << q->num_spansets) - 1u;
}

/* ---- search (traceql-search.c) --------------------------------------------------------- */

#define CN_TQL_MAX_SPSS     16     /* matched spans kept per trace */
#define CN_TQL_MAX_NAME     128    /* bytes of a matched span's name kept */
#define CN_TQL_MAX_PARTIALS 100000 /* traces with a matching span tracked by one search */

struct cn_tql_span {
    uint8_t span_id[8];
    uint64_t start_ns, duration_ns;
    char name[CN_TQL_MAX_NAME]; /* NUL-terminated, cut at a UTF-8 boundary */
};

/* A trace in which every spanset matched a span. spans[] holds the first num_spans spans
 * that matched any spanset (up to spss). */
struct cn_tql_hit {
    uint8_t trace_id[16];
    unsigned bits;
    uint64_t newest_ns; /* latest start among its matching spans */
    uint32_t matched;   /* spans that matched a spanset */
    uint32_t num_spans;
    struct cn_tql_span spans[CN_TQL_MAX_SPSS];
};

struct cn_tql_result {
    struct cn_tql_hit *hits; /* malloc'd, newest matching span first */
    size_t num;
    uint64_t scanned;
    int truncated; /* max_scan spans read, or CN_TQL_MAX_PARTIALS traces tracked */
};

/* Reads the spans starting in [from_ns, to_ns) (at most max_scan of them; 0: no bound) and
 * returns the traces that match q, keeping up to spss (1..CN_TQL_MAX_SPSS) matched spans of
 * each. Returns 0, CN_EINVAL (to <= from, spss), CN_ENOMEM. Release out with
 * cn_tql_result_release (also after a failure). */
int cn_tql_search(struct cn_store *st, const struct cn_tql_query *q, uint64_t from_ns,
                  uint64_t to_ns, uint64_t max_scan, size_t spss, struct cn_tql_result *out);
void cn_tql_result_release(struct cn_tql_result *r);

#endif
