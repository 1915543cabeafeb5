/* The telemetry query layer: trace summary search, logs search, attribute autocomplete, RED
 * series and topology, over the store (store.h) and its derived tables (derive.h). The HTTP
 * APIs (native /api/v1, Jaeger, Tempo) parse their parameters into the structs below and
 * call the cn_query_* functions; nothing here knows about HTTP.
 *
 * Predicates. An attribute predicate is parsed from text (cn_pred_parse):
 *   k=v    the attribute's value, as text, equals v
 *   k!=v   the negation of k=v: the attribute is absent or holds another value
 *   k=~re  the value, as text, matches the POSIX extended regular expression re (unanchored;
 *          write ^...$ to anchor), at most CN_QUERY_MAX_REGEX_BYTES bytes
 *   k>n    k<n  the value is a number (an integer or double attribute, or a string that
 *          reads whole as a number) greater / less than n
 * The key is looked up in the record's attributes, then its resource's, then its scope's;
 * the first holder wins. Values read as text the way the JSON API shows them: strings as
 * they are, integers in decimal, doubles in the shortest form that reads back ("%.17g" cut
 * down), booleans as true/false; byte, array and map values never match "=" or "=~" (they
 * still match "!="). The pseudo-keys "service.name", "name" (span name) and "status" are
 * not special: use the query fields for them.
 *
 * Trace search semantics (like Jaeger): a trace matches when one of its spans starting in
 * [from, to) matches every span-level condition at once: service (the span's resource),
 * operation (span name), predicates, span kind, status, and the duration bounds (the span's
 * duration). Results are trace summaries (derive.h) of the matching traces.
 *
 * Bounded work. Every query reads at most limits->max_scan_records records; a query that
 * reaches it stops and says so (truncated = 1) instead of running on. Searches read through
 * cn_store_scan_*_where: what the store rules out by its indexes and cheap columns (the
 * conditions on service, name, kind, status, duration, severity, trace ID; k=v values and
 * full-text terms only strings can match, against the segments' token blooms) is neither
 * built nor counted. Ranges are read from
 * the newest time window backwards, so a truncated newest-first answer holds the newest
 * matches. These functions run on the calling thread and may take long on a big store: an
 * event loop hands them to cn_query_submit (the libuv threadpool).
 *
 * Threads: every function may be called from any thread at once; the store and the derived
 * tables take their own locks. */
#ifndef CN_TELEMETRY_QUERY_H
#define CN_TELEMETRY_QUERY_H

#include "telemetry/derive.h"
#include "telemetry/store.h"

#include <jansson.h>
#include <regex.h>
#include <uv.h>

#define CN_QUERY_MAX_REGEX_BYTES 256  /* longest pattern of a k=~re predicate */
#define CN_QUERY_MAX_PREDS       32   /* attribute predicates in one query */
#define CN_QUERY_MAX_TERMS       16   /* full-text terms of a logs query */
#define CN_QUERY_MAX_TERM_BYTES  256  /* longest full-text term */
#define CN_QUERY_MAX_KEY_BYTES   256  /* longest attribute key in a predicate */
#define CN_QUERY_MAX_VALUE_BYTES 4096 /* longest value in a predicate */

/* Limits of the query layer (settings query.*, docs/configuration.md). */
struct cn_query_limits {
    uint32_t default_limit;    /* results when a query names none: 20 */
    uint32_t max_limit;        /* largest limit a query may ask for: 1000 */
    uint64_t max_scan_records; /* spans or log records one query reads at most: 2,000,000 */
    uint64_t max_range_ns;     /* widest [from, to) of a scanning query: 7 days */
    uint32_t max_tag_values;   /* distinct keys or values counted by an autocomplete scan:
                                  10,000 (the rest are counted as dropped) */
};

void cn_query_limits_default(struct cn_query_limits *l);

enum cn_pred_op {
    CN_PRED_EQ = 0, /* k=v */
    CN_PRED_NE,     /* k!=v */
    CN_PRED_RE,     /* k=~re */
    CN_PRED_GT,     /* k>n */
    CN_PRED_LT,     /* k<n */
};

/* A parsed predicate. States: after a successful cn_pred_parse it owns key, value and (for
 * CN_PRED_RE) the compiled re; cn_pred_release frees them and leaves it zeroed. */
struct cn_pred {
    enum cn_pred_op op;
    char *key; /* NUL-terminated copies */
    char *value;
    size_t key_len, value_len;
    double num; /* CN_PRED_GT, CN_PRED_LT */
    regex_t re; /* CN_PRED_RE */
    int has_re;
};

/* Parses "k=v", "k!=v", "k=~re", "k>n", "k<n" (the first operator after a non-empty key
 * counts: "a=b=c" is key a, value "b=c"). Returns 0 and fills *out, or CN_ESYNTAX /
 * CN_ELIMIT with a message in err (nothing to release). */
int cn_pred_parse(struct cn_pred *out, struct cn_slice text, char *err, size_t err_len);
void cn_pred_release(struct cn_pred *p);
/* 1 when the predicate holds for the first holder of p->key among attribute lists lists[0..n)
 * (NULL entries skipped); else 0. */
int cn_pred_match(const struct cn_pred *p, const struct cn_kvs *const *lists, size_t n);
int cn_pred_match_span(const struct cn_pred *p, const struct cn_span *s);
int cn_pred_match_log(const struct cn_pred *p, const struct cn_log *l);
/* The text form of v used by predicates into dst (always NUL-terminated when dst_len > 0).
 * Returns its length, or -1 for values that have no text form (bytes, arrays, maps, empty). */
int cn_val_text(const struct cn_val *v, char *dst, size_t dst_len);

/* Times: RFC 3339 ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123456789+02:00") or an
 * unsigned integer with a unit suffix: "1714564800s", "1714564800000ms", "...us", "...ns".
 * A bare number is refused (which unit it means is a guess). Returns 0 and nanoseconds
 * since the epoch in *out_ns, or CN_ESYNTAX / CN_ERANGE. */
int cn_query_parse_time(struct cn_slice text, uint64_t *out_ns);
/* Durations: a decimal number (fractions allowed) with a unit: ns, us (or µs), ms, s, m, h;
 * "1.5s", "250ms", "2m". Returns 0 and nanoseconds in *out_ns, or CN_ESYNTAX / CN_ERANGE. */
int cn_query_parse_duration(struct cn_slice text, uint64_t *out_ns);
/* "ok", "error", "unset" (any case) into enum cn_status_code. Returns 0 or CN_ESYNTAX. */
int cn_query_parse_status(struct cn_slice text, int *out_status);
/* "server", "client", "producer", "consumer", "internal", "unspecified" (any case, also
 * OTLP's "SPAN_KIND_SERVER" form) into enum cn_span_kind. Returns 0 or CN_ESYNTAX. */
int cn_query_parse_kind(struct cn_slice text, int *out_kind);
/* Severity names (trace, debug, info, warn, error, fatal; any case; "warning" too) or a
 * number 1..24 into the lowest severity number of that range. Returns 0 or CN_ESYNTAX. */
int cn_query_parse_severity(struct cn_slice text, uint8_t *out_sev);
/* Lowercase name of a span kind ("server"); "unspecified" for numbers outside OTLP's. */
const char *cn_query_kind_name(int kind);

enum cn_trace_order {
    CN_ORDER_START = 0, /* newest trace start first */
    CN_ORDER_DURATION,  /* longest trace first */
};

/* A trace search. Slices with ptr NULL and numbers at their "any" value do not filter.
 * preds point to parsed predicates the caller owns. */
struct cn_trace_query {
    struct cn_slice service;   /* ptr NULL: any */
    struct cn_slice operation; /* ptr NULL: any */
    const struct cn_pred *preds;
    size_t num_preds;
    uint64_t min_duration_ns; /* 0: no bound */
    uint64_t max_duration_ns; /* 0: no bound */
    int status;               /* -1: any; else cn_status_code */
    int kind;                 /* -1: any; else cn_span_kind */
    uint64_t from_ns, to_ns;  /* [from, to) of span starts; to > from */
    size_t limit;             /* 1 .. limits->max_limit */
    enum cn_trace_order order;
};

struct cn_trace_result {
    struct cn_derive_trace *traces; /* malloc'd, num entries, in the order asked */
    size_t num;
    struct cn_arena names; /* names of summaries computed from spans (see below) */
    uint64_t scanned;      /* records read */
    int truncated;         /* the scan budget ran out before the range was read */
};

/* Runs q. Returns 0 and fills *out (release it with cn_trace_result_release), or CN_EINVAL
 * (a field out of range: inverted range, limit, range wider than max_range_ns) with a
 * message naming the field in err, CN_ENOMEM. On failure *out is empty. */
int cn_query_traces(struct cn_store *st, const struct cn_query_limits *lim,
                    const struct cn_trace_query *q, struct cn_trace_result *out, char *err,
                    size_t err_len);
void cn_trace_result_release(struct cn_trace_result *r);
/* The summary of one trace: from the derived table, else (evicted, or sealed before a
 * restart: the derived tables hold what was ingested or replayed since start) computed from
 * its spans, with the names copied into names (their slices live as long as names; NULL:
 * no computing). Returns 0, CN_ENOENT, CN_ENOMEM (names full). */
int cn_query_trace_summary(struct cn_store *st, struct cn_derive_trace *out,
                           const uint8_t trace_id[16], struct cn_arena *names);

/* Code links: "code.filepath"/"code.lineno"/"code.function" of a span or log turned into a
 * URL by a per-service template. Placeholders: {service}, {repo}, {revision}, {filepath},
 * {lineno}, {function}. {repo} comes from the resource's vcs.repository.name, else
 * vcs.repository.url.full; {revision} from vcs.revision, else vcs.ref.head.revision, else
 * service.version. Every filled value is percent-escaped (RFC 3986 unreserved characters
 * stay, and '/' stays in {filepath} and {repo}), so no raw user text lands in the URL. A
 * template with a placeholder whose value is missing gives no URL. */
struct cn_code_links;

/* Checks a template. Returns 0, or CN_ESYNTAX with "unknown placeholder {x}" or
 * "unclosed {" in err. */
int cn_code_template_check(const char *tmpl, char *err, size_t err_len);
/* A new empty table; NULL on allocation failure. */
struct cn_code_links *cn_code_links_new(void);
void cn_code_links_free(struct cn_code_links *cl);
/* Adds service's template ("*": the default for services without one). Returns 0,
 * CN_ESYNTAX (see cn_code_template_check), CN_ENOMEM. */
int cn_code_links_add(struct cn_code_links *cl, const char *service, const char *tmpl, char *err,
                      size_t err_len);
/* The URL for a record with attrs under resource r, into dst. Returns its length, 0 when the
 * record has no code.filepath or no template applies or a placeholder has no value, or
 * CN_ERANGE when dst is too small. cl may be NULL (no links). */
int cn_code_url(const struct cn_code_links *cl, const struct cn_resource *r,
                const struct cn_kvs *attrs, char *dst, size_t dst_len);

/* A logs search. terms are matched case-insensitively as whole tokens (runs of letters,
 * digits, '_' and bytes >= 0x80) of the body's text: every term must appear; a term of
 * several tokens ("connection refused") must appear as that run of tokens. */
struct cn_log_query {
    uint64_t from_ns, to_ns; /* [from, to) of record times; to > from */
    struct cn_slice service; /* ptr NULL: any */
    uint8_t min_severity;    /* 0: any */
    const struct cn_slice *terms;
    size_t num_terms;
    const struct cn_pred *preds;
    size_t num_preds;
    uint8_t trace_id[16]; /* all zero: any */
    size_t limit;         /* 1 .. limits->max_limit */
};

/* Matching records newest first, rendered as cn_render_log plus "service", "traceLink"
 * ("/api/v1/traces/{id}" when the record has a trace) and "codeUrl" (when a code link
 * applies). */
struct cn_log_result {
    json_t *logs; /* array, a reference the caller owns */
    uint64_t scanned;
    int truncated;
};

int cn_query_logs(struct cn_store *st, const struct cn_query_limits *lim,
                  const struct cn_code_links *cl, const struct cn_log_query *q,
                  struct cn_log_result *out, char *err, size_t err_len);
void cn_log_result_release(struct cn_log_result *r);
/* 1 when l matches every condition of q but the time range (the live tail's filter). */
int cn_query_log_matches(const struct cn_log_query *q, const struct cn_log *l);
/* One log record as the logs search renders it (see struct cn_log_result). New reference. */
json_t *cn_query_render_log(const struct cn_code_links *cl, const struct cn_log *l);
/* One span as cn_render_span plus "codeUrl" (when a link applies). */
json_t *cn_query_render_span(const struct cn_code_links *cl, const struct cn_span *s);

/* Which attributes an autocomplete query reads. */
enum cn_tag_scope {
    CN_TAG_SCOPE_ALL = 0,  /* the span's, then its resource's (a key the span has hides the
                              resource's, as predicates read them) */
    CN_TAG_SCOPE_SPAN,     /* the span's only */
    CN_TAG_SCOPE_RESOURCE, /* the resource's only */
};

/* Attribute keys, or the values of one key, seen on spans starting in [from, to) (of one
 * service when service.ptr is set), with how many spans carried each; the most frequent
 * first (ties by name), at most limit. */
struct cn_tag_query {
    struct cn_slice service; /* ptr NULL: any */
    struct cn_slice key;     /* ptr NULL: list keys; else the values of this key */
    uint64_t from_ns, to_ns;
    size_t limit;
    enum cn_tag_scope scope; /* 0: CN_TAG_SCOPE_ALL */
    int typed;               /* values: 1 keeps values of different types apart ("200" the
                                string and 200 the integer are two items); 0 merges them */
};

struct cn_tag_count {
    char *name; /* malloc'd */
    uint64_t count;
    uint8_t type; /* typed values: the enum cn_val_type they were read as; else 0 */
};

struct cn_tag_result {
    struct cn_tag_count *items;
    size_t num;
    uint64_t scanned;
    int truncated; /* scan budget or max_tag_values reached */
};

int cn_query_tags(struct cn_store *st, const struct cn_query_limits *lim,
                  const struct cn_tag_query *q, struct cn_tag_result *out, char *err,
                  size_t err_len);
void cn_tag_result_release(struct cn_tag_result *r);

/* Topology over [from, to): services with their RED figures (requests counted by RED:
 * derive.h) and edges from the service graph. With service set, only the edges within depth
 * hops of it (0: any) and the services they touch, plus service itself. */
struct cn_topo_node {
    struct cn_slice service; /* derive-owned */
    uint64_t count, errors;
    double rate, error_rate; /* per second over the range */
    double p50_ns, p95_ns, p99_ns;
};

struct cn_topology {
    struct cn_topo_node *nodes; /* sorted by name */
    size_t num_nodes;
    struct cn_derive_edge *edges;
    size_t num_edges;
    uint64_t from_ns, to_ns; /* the range read, widened to whole buckets */
};

/* Returns 0, CN_EINVAL (range), CN_ENOENT (service unknown), CN_ENOMEM. */
int cn_query_topology(struct cn_derive *d, struct cn_topology *out, uint64_t from_ns,
                      uint64_t to_ns, struct cn_slice service, uint32_t depth);
void cn_topology_release(struct cn_topology *t);

/* Runs work(arg) on the libuv threadpool of loop, then done(arg) on loop. Returns 0 or a
 * CN_E* code (then neither callback runs). */
typedef void (*cn_query_work_cb)(void *arg);
int cn_query_submit(uv_loop_t *loop, cn_query_work_cb work, cn_query_work_cb done, void *arg);

#endif
