/* Tempo's query API as Grafana's Tempo data source calls it (docs/compat.md): /api/echo,
 * /api/search (TraceQL subset, or the legacy tags=), /api/search/tags, /api/v2/search/tags,
 * /api/search/tag/{tag}/values, /api/v2/search/tag/{tag}/values, /api/v2/traces/{id}, and
 * /api/traces/{id} with Accept: application/protobuf (routed here by api-jaeger.c). Errors
 * are plain text. JSON answers follow the protobuf JSON mapping of the tempopb messages:
 * 64-bit integers as strings, enums by name, zero values left out. */
#include "cli/api-compat.h"

#include "http/json.h"
#include "telemetry/render-compat.h"

#define TEMPO CN_COMPAT_TEMPO

static json_t *u64str(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return json_string(b);
}

/* ---- trace by ID ------------------------------------------------------------------------ */

enum trace_form { FORM_PB_V1, FORM_PB_V2, FORM_JSON_V2 };

static void add_span(void *ctx, const struct cn_span *s)
{
    cn_tempo_trace_add(ctx, s);
}

/* tempopb.Trace{batches = 1}; TraceByIDResponse{trace = 1} wraps it for v2. */
static int encode_pb(struct cn_buf *out, const json_t *batches, int v2)
{
    if (!v2)
        return cn_tempo_encode_pb(out, batches, 1);
    struct cn_buf inner;
    cn_buf_init(&inner, out->max);
    int rc = cn_tempo_encode_pb(&inner, batches, 1);
    uint8_t head[11] = {1 << 3 | 2};
    size_t n = 1;
    for (uint64_t v = inner.len;; v >>= 7) {
        head[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        if (v <= 0x7f)
            break;
    }
    if (rc == 0 && (rc = cn_buf_append(out, head, n)) == 0)
        rc = cn_buf_append(out, inner.ptr ? inner.ptr : "", inner.len);
    cn_buf_release(&inner);
    return rc;
}

static void work_trace(struct cn_compat_job *jb)
{
    struct cn_compat_trace_p *p = jb->p;
    struct cn_tempo_trace t;
    cn_tempo_trace_init(&t);
    if (cn_store_trace(jb->up->store, p->id, add_span, &t) == 0) {
        cn_tempo_trace_release(&t);
        cn_compat_job_error(jb, 404, "trace not found");
        return;
    }
    json_t *batches = cn_tempo_trace_finish(&t);
    if (p->form == FORM_JSON_V2) {
        /* status (PartialStatus) is COMPLETE, the zero value: left out as Tempo does. */
        json_t *trace = json_object();
        json_object_set_new(trace, "resourceSpans", batches);
        json_t *j = json_object();
        json_object_set_new(j, "trace", trace);
        cn_compat_job_json(jb, 200, j);
        return;
    }
    int rc = encode_pb(&jb->body, batches, p->form == FORM_PB_V2);
    json_decref(batches);
    if (rc != 0) {
        cn_compat_job_error(jb, 500, "trace could not be encoded: %s", cn_strerror(rc));
        return;
    }
    jb->status = 200;
    jb->ctype = "application/protobuf";
}

void cn_api_tempo_trace_pb(struct cn_http_req *req, struct cn_up *up)
{
    cn_compat_trace_by_id(req, up, TEMPO, work_trace, FORM_PB_V1);
}

static void h_trace_v2(struct cn_http_req *req, void *ctx)
{
    cn_compat_trace_by_id(req, ctx, TEMPO, work_trace,
                          cn_compat_wants_protobuf(req) ? FORM_PB_V2 : FORM_JSON_V2);
}

static void h_echo(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    cn_http_reply(req, 200, "text/plain; charset=utf-8", "echo", 4, NULL, 0);
}

/* ---- search ----------------------------------------------------------------------------- */

struct search_p {
    struct cn_tql_query *tql;        /* NULL: the legacy tags= search */
    struct cn_compat_search *legacy; /* tags= */
    uint64_t from_ns, to_ns;
    uint64_t min_dur_ns, max_dur_ns; /* of the whole trace; 0: no bound */
    size_t limit, spss;
};

static void free_search(struct search_p *p)
{
    if (!p)
        return;
    cn_tql_free(p->tql);
    cn_compat_search_free(p->legacy);
    free(p);
}

static void release_search(struct cn_compat_job *j)
{
    free_search(j->p);
}

/* One search result as Tempo's TraceSearchMetadata. */
static json_t *summary(const struct cn_derive_trace *t)
{
    char hex[33];
    cn_hex_encode(hex, t->trace_id, 16);
    json_t *j = json_object();
    json_object_set_new(j, "traceID", json_string(hex));
    if (t->has_root) {
        json_object_set_new(j, "rootServiceName",
                            json_stringn(t->root_service.ptr, t->root_service.len));
        json_object_set_new(j, "rootTraceName",
                            json_stringn(t->root_operation.ptr, t->root_operation.len));
    } else {
        json_object_set_new(j, "rootServiceName", json_string("<root span not yet received>"));
    }
    json_object_set_new(j, "startTimeUnixNano", u64str(t->start_ns));
    json_object_set_new(j, "durationMs",
                        json_integer((json_int_t)(t->duration_ns / CN_COMPAT_MS_NS)));
    return j;
}

static int duration_ok(const struct search_p *p, uint64_t d)
{
    return (!p->min_dur_ns || d >= p->min_dur_ns) && (!p->max_dur_ns || d <= p->max_dur_ns);
}

/* The search's answer {traces, metrics} (SearchMetrics: no field says "truncated"; the
 * X-Cairn-Truncated header does). */
static void answer(struct cn_compat_job *jb, json_t *traces, uint64_t scanned, size_t inspected,
                   int truncated)
{
    json_t *m = json_object();
    json_object_set_new(m, "inspectedTraces", json_integer((json_int_t)inspected));
    json_object_set_new(m, "inspectedBytes", json_string("0"));
    json_object_set_new(m, "completedJobs", json_integer(1));
    json_object_set_new(m, "totalJobs", json_integer(1));
    json_object_set_new(m, "inspectedSpans", u64str(scanned));
    json_t *j = json_object();
    json_object_set_new(j, "traces", traces);
    json_object_set_new(j, "metrics", m);
    jb->truncated = truncated;
    cn_compat_job_json(jb, 200, j);
}

static void work_legacy(struct cn_compat_job *jb)
{
    struct search_p *p = jb->p;
    struct cn_compat_search *l = p->legacy;
    struct cn_trace_result r;
    char err[256];
    l->q.preds = l->preds;
    l->q.num_preds = l->num_preds;
    int rc = cn_query_traces(jb->up->store, &jb->lim, &l->q, &r, err, sizeof(err));
    if (rc != 0) {
        cn_trace_result_release(&r);
        cn_compat_job_error(jb, rc == CN_EINVAL ? 400 : 503, "%s", err);
        return;
    }
    json_t *traces = json_array();
    for (size_t i = 0; i < r.num && json_array_size(traces) < p->limit; i++)
        if (duration_ok(p, r.traces[i].duration_ns))
            json_array_append_new(traces, summary(&r.traces[i]));
    answer(jb, traces, r.scanned, r.num, r.truncated);
    cn_trace_result_release(&r);
}

static json_t *spanset(const struct cn_tql_hit *h)
{
    json_t *spans = json_array();
    for (uint32_t k = 0; k < h->num_spans; k++) {
        char sid[17];
        cn_hex_encode(sid, h->spans[k].span_id, 8);
        json_t *sp = json_object();
        json_object_set_new(sp, "spanID", json_string(sid));
        json_t *nm = json_string(h->spans[k].name);
        json_object_set_new(sp, "name", nm ? nm : json_string(""));
        json_object_set_new(sp, "startTimeUnixNano", u64str(h->spans[k].start_ns));
        json_object_set_new(sp, "durationNanos", u64str(h->spans[k].duration_ns));
        json_array_append_new(spans, sp);
    }
    json_t *set = json_object();
    json_object_set_new(set, "spans", spans);
    json_object_set_new(set, "matched", json_integer(h->matched));
    return set;
}

static void work_search(struct cn_compat_job *jb)
{
    struct search_p *p = jb->p;
    struct cn_store *st = jb->up->store;
    struct cn_tql_result r;
    int rc = cn_tql_search(st, p->tql, p->from_ns, p->to_ns, jb->lim.max_scan_records, p->spss, &r);
    if (rc != 0) {
        cn_tql_result_release(&r);
        cn_compat_job_error(jb, 503, "search failed: %s", cn_strerror(rc));
        return;
    }
    json_t *traces = json_array();
    struct cn_arena names;
    cn_arena_init(&names, 16u << 10, 16u << 20);
    for (size_t i = 0; i < r.num && json_array_size(traces) < p->limit; i++) {
        struct cn_derive_trace t;
        if (cn_query_trace_summary(st, &t, r.hits[i].trace_id, &names) != 0 ||
            !duration_ok(p, t.duration_ns))
            continue;
        json_t *s = summary(&t);
        json_t *set = spanset(&r.hits[i]);
        json_object_set(s, "spanSet", set); /* deprecated in Tempo, still filled there */
        json_t *sets = json_array();
        json_array_append_new(sets, set);
        json_object_set_new(s, "spanSets", sets);
        json_array_append_new(traces, s);
    }
    cn_arena_release(&names);
    answer(jb, traces, r.scanned, r.num, r.truncated);
    cn_tql_result_release(&r);
}

/* Unix seconds start/end (default: the last hour) into [from, to). */
static int time_range(struct cn_http_req *req, const struct cn_query_limits *lim, uint64_t *from,
                      uint64_t *to)
{
    uint64_t end_s = cn_compat_now_ns() / CN_COMPAT_SEC_NS + 1, start_s = 0;
    uint64_t max = UINT64_MAX / CN_COMPAT_SEC_NS - 1;
    int rc;
    if (cn_compat_param_u64(req, TEMPO, "end", 1, max, &end_s) < 0 ||
        (rc = cn_compat_param_u64(req, TEMPO, "start", 0, max, &start_s)) < 0)
        return -1;
    if (rc == 0)
        start_s = end_s > 3600 ? end_s - 3600 : 0;
    if (start_s >= end_s) {
        cn_compat_reply_error(req, TEMPO, 400, "invalid start: start must be before end");
        return -1;
    }
    if ((end_s - start_s) * CN_COMPAT_SEC_NS > lim->max_range_ns) {
        cn_compat_reply_error(req, TEMPO, 400,
                              "invalid start: range wider than %llu s (query.max_range)",
                              (unsigned long long)(lim->max_range_ns / CN_COMPAT_SEC_NS));
        return -1;
    }
    *from = start_s * CN_COMPAT_SEC_NS;
    *to = end_s * CN_COMPAT_SEC_NS;
    return 0;
}

/* Copies v into a name buffer of the search: 0, or -1 (400: too long). */
static int set_name(struct cn_http_req *req, char *dst, struct cn_slice *q, const char *k,
                    const char *v)
{
    if (strlen(v) > CN_COMPAT_MAX_NAME) {
        cn_compat_reply_error(req, TEMPO, 400, "invalid tags: value of '%s' longer than %d bytes",
                              k, CN_COMPAT_MAX_NAME);
        return -1;
    }
    strcpy(dst, v);
    *q = cn_slice_of(dst);
    return 0;
}

/* One legacy tag: service.name, name and status are the span's service, name and status;
 * other keys attribute predicates. */
static int legacy_tag(struct cn_http_req *req, struct cn_compat_search *l, const char *k,
                      const char *v)
{
    int x;
    if (strcmp(k, "service.name") == 0 && !l->q.service.ptr)
        return set_name(req, l->service, &l->q.service, k, v);
    if (strcmp(k, "name") == 0 && !l->q.operation.ptr)
        return set_name(req, l->operation, &l->q.operation, k, v);
    if (strcmp(k, "status") == 0 && cn_query_parse_status(cn_slice_of(v), &x) == 0) {
        l->q.status = x;
        return 0;
    }
    return cn_compat_add_pred(req, TEMPO, l, "tags", k, v);
}

/* Tempo's legacy tags= (logfmt: k=v k2="v 2"). s is modified. */
static int legacy_tags(struct cn_http_req *req, struct cn_compat_search *l, char *s)
{
    while (*s) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        char *k = s;
        while (*s && *s != '=' && *s != ' ')
            s++;
        if (*s != '=' || s == k) {
            cn_compat_reply_error(req, TEMPO, 400, "invalid tags: expected key=value at '%.40s'",
                                  k);
            return -1;
        }
        *s++ = '\0';
        char *v = s;
        if (*s == '"') {
            v = ++s;
            while (*s && *s != '"')
                s++;
            if (*s != '"') {
                cn_compat_reply_error(req, TEMPO, 400,
                                      "invalid tags: unclosed quote in value of '%.40s'", k);
                return -1;
            }
        } else {
            while (*s && *s != ' ')
                s++;
        }
        if (*s)
            *s++ = '\0';
        if (legacy_tag(req, l, k, v) != 0)
            return -1;
    }
    return 0;
}

static int search_params(struct cn_http_req *req, struct cn_up *up, struct search_p *p, char *v)
{
    struct cn_query_limits lim;
    cn_compat_limits(up, &lim);
    uint64_t limit = CN_MIN(20u, lim.max_limit), spss = 3;
    int rc;
    if (cn_compat_param_u64(req, TEMPO, "limit", 1, lim.max_limit, &limit) < 0 ||
        cn_compat_param_u64(req, TEMPO, "spss", 0, CN_TQL_MAX_SPSS, &spss) < 0 ||
        time_range(req, &lim, &p->from_ns, &p->to_ns) != 0 ||
        cn_compat_param_duration(req, TEMPO, "minDuration", &p->min_dur_ns) < 0 ||
        cn_compat_param_duration(req, TEMPO, "maxDuration", &p->max_dur_ns) < 0)
        return -1;
    if (p->min_dur_ns && p->max_dur_ns && p->max_dur_ns < p->min_dur_ns) {
        cn_compat_reply_error(req, TEMPO, 400,
                              "invalid maxDuration: must be greater than minDuration");
        return -1;
    }
    p->limit = (size_t)limit;
    p->spss = spss ? (size_t)spss : CN_TQL_MAX_SPSS; /* 0: Tempo's "all", here at most 16 */
    char probe[2];
    int has_tags = cn_compat_param_n(req, "tags", 0, probe, sizeof(probe)) != -1;
    if ((rc = cn_compat_param(req, TEMPO, "q", v, CN_COMPAT_MAX_PARAM)) < 0)
        return -1;
    if (rc > 0) {
        char err[256];
        if (has_tags) {
            cn_compat_reply_error(req, TEMPO, 400,
                                  "invalid q: can't specify tags and q in the same query");
            return -1;
        }
        if (cn_tql_parse(&p->tql, cn_slice_of(v), err, sizeof(err), NULL) != 0) {
            cn_compat_reply_error(req, TEMPO, 400, "invalid TraceQL query: %s", err);
            return -1;
        }
        return 0;
    }
    struct cn_compat_search *l = p->legacy = cn_compat_search_new(req, TEMPO);
    if (!l)
        return -1;
    l->q.from_ns = p->from_ns;
    l->q.to_ns = p->to_ns;
    /* Trace durations are checked on the summaries; ask for more to fill the limit. */
    l->q.limit = p->min_dur_ns || p->max_dur_ns ? lim.max_limit : p->limit;
    if ((rc = cn_compat_param(req, TEMPO, "tags", v, CN_COMPAT_MAX_PARAM)) < 0)
        return -1;
    return rc > 0 ? legacy_tags(req, l, v) : 0;
}

static void h_search(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"q",   "tags",  "minDuration", "maxDuration", "start",
                                        "end", "limit", "spss",        NULL};
    if (cn_compat_check(req, ctx, TEMPO, names) != 0)
        return;
    struct search_p *p = calloc(1, sizeof(*p));
    char *v = malloc(CN_COMPAT_MAX_PARAM);
    if (!p || !v) {
        free(p);
        free(v);
        cn_compat_reply_error(req, TEMPO, 503, "out of memory");
        return;
    }
    int rc = search_params(req, ctx, p, v);
    free(v);
    if (rc != 0) {
        free_search(p);
        return;
    }
    cn_compat_submit(req, ctx, TEMPO, p->tql ? work_search : work_legacy, release_search, p);
}

/* ---- tag names and values --------------------------------------------------------------- */

/* The intrinsics the TraceQL subset reads (docs/compat.md), as Tempo lists them. */
static const char *const intrinsics[] = {"duration", "kind",          "name",
                                         "status",   "statusMessage", NULL};
static const char *const status_values[] = {"error", "ok", "unset", NULL};
static const char *const kind_values[] = {"unspecified", "internal", "server", "client",
                                          "producer",    "consumer", NULL};

enum scope_bits { S_SPAN = 1 << 0, S_RESOURCE = 1 << 1, S_INTRINSIC = 1 << 2 };

static const char *const scope_names[] = {"span", "resource", "intrinsic"};

struct tags_p {
    struct cn_tag_query q;
    char key[CN_QUERY_MAX_KEY_BYTES + 1];
    unsigned scopes; /* tag names: the scopes listed (scope_bits) */
    int v2;
};

static json_t *string_list(const char *const *names)
{
    json_t *a = json_array();
    for (const char *const *n = names; *n; n++)
        json_array_append_new(a, json_string(*n));
    return a;
}

/* Runs the tag query of p with the given scope: the names (or values) into *out. Returns 0,
 * or -1 after answering the error. */
static int run_tags(struct cn_compat_job *jb, struct tags_p *p, enum cn_tag_scope scope,
                    struct cn_tag_result *out)
{
    /* A tag list may be as long as query.max_tag_values (Grafana asks for 5000 at once). */
    struct cn_query_limits lim = jb->lim;
    lim.max_limit = CN_MAX(lim.max_limit, lim.max_tag_values);
    struct cn_tag_query q = p->q;
    q.scope = scope;
    char err[256];
    int rc = cn_query_tags(jb->up->store, &lim, &q, out, err, sizeof(err));
    if (rc != 0) {
        cn_tag_result_release(out);
        cn_compat_job_error(jb, rc == CN_EINVAL ? 400 : 503, "%s", err);
        return -1;
    }
    jb->truncated |= out->truncated;
    return 0;
}

/* Tempo's name of a value's type (tempopb.TagValue.type); strings for the rest. */
static const char *value_type(uint8_t type)
{
    static const char *const names[] = {
        [CN_VAL_INT] = "int", [CN_VAL_DOUBLE] = "float", [CN_VAL_BOOL] = "bool"};
    return type < CN_ARRAY_LEN(names) && names[type] ? names[type] : "string";
}

static json_t *typed(const char *type, json_t *value)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "value", value);
    return o;
}

static json_t *result_list(const struct cn_tag_result *r, int v2)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->num; i++) {
        json_t *s = json_string(r->items[i].name);
        if (s) /* NULL: not UTF-8 */
            json_array_append_new(a, v2 ? typed(value_type(r->items[i].type), s) : s);
    }
    return a;
}

static void work_tag_names(struct cn_compat_job *jb)
{
    struct tags_p *p = jb->p;
    static const enum cn_tag_scope scan[] = {CN_TAG_SCOPE_SPAN, CN_TAG_SCOPE_RESOURCE};
    json_t *scopes = json_array();
    for (size_t i = 0; i < CN_ARRAY_LEN(scope_names); i++) {
        if (!(p->scopes & 1u << i))
            continue;
        json_t *tags;
        if (1u << i == S_INTRINSIC) {
            tags = string_list(intrinsics);
        } else {
            struct cn_tag_result r;
            /* v1 without a scope: span and resource keys in one list, each once. */
            enum cn_tag_scope sc =
                !p->v2 && p->scopes & S_RESOURCE && p->scopes & S_SPAN ? CN_TAG_SCOPE_ALL : scan[i];
            if (run_tags(jb, p, sc, &r) != 0) {
                json_decref(scopes);
                return;
            }
            tags = result_list(&r, 0);
            cn_tag_result_release(&r);
        }
        json_t *s = json_object();
        json_object_set_new(s, "name", json_string(scope_names[i]));
        json_object_set_new(s, "tags", tags);
        json_array_append_new(scopes, s);
        if (!p->v2)
            break; /* v1: one list */
    }
    json_t *j = json_object();
    if (p->v2) {
        json_object_set_new(j, "scopes", scopes);
    } else {
        json_t *first = json_array_get(scopes, 0);
        json_object_set(j, "tagNames", json_object_get(first, "tags"));
        json_decref(scopes);
    }
    cn_compat_job_json(jb, 200, j);
}

static void work_tag_values(struct cn_compat_job *jb)
{
    struct tags_p *p = jb->p;
    struct cn_tag_result r;
    if (run_tags(jb, p, p->q.scope, &r) != 0)
        return;
    json_t *j = json_object();
    json_object_set_new(j, "tagValues", result_list(&r, p->v2));
    cn_tag_result_release(&r);
    cn_compat_job_json(jb, 200, j);
}

/* Values of an intrinsic, answered on the loop: fixed lists, and span names from the derived
 * tables (every service's, not bounded by the time range). Returns 0 when tag is not one. */
static int intrinsic_values(struct cn_http_req *req, struct cn_up *up, const char *tag, int v2)
{
    if (strncmp(tag, "span:", 5) == 0)
        tag += 5;
    const char *const *fixed = NULL;
    json_t *names = NULL;
    if (strcmp(tag, "status") == 0)
        fixed = status_values;
    else if (strcmp(tag, "kind") == 0)
        fixed = kind_values;
    else if (strcmp(tag, "name") == 0)
        names = cn_compat_operations(up, (struct cn_slice){NULL, 0}, -1, 0);
    else if (strcmp(tag, "duration") == 0 || strcmp(tag, "statusMessage") == 0)
        names = json_array(); /* not listed */
    else
        return 0;
    json_t *a = fixed ? string_list(fixed) : names;
    if (v2) {
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
            json_array_set_new(a, i, typed(fixed ? "keyword" : "string", json_incref(v)));
    }
    json_t *j = json_object();
    json_object_set_new(j, "tagValues", a);
    cn_http_reply_json(req, 200, j);
    return 1;
}

/* The key and scope of a tag name: v2 names carry their scope (span.k, resource.k, .k). */
static int tag_key(struct cn_http_req *req, struct tags_p *p, const char *tag)
{
    const char *key = tag;
    p->q.scope = CN_TAG_SCOPE_ALL;
    if (!p->v2) {
        /* v1: the attribute's own name, span's or resource's */
    } else if (strncmp(tag, "span.", 5) == 0) {
        key = tag + 5;
        p->q.scope = CN_TAG_SCOPE_SPAN;
    } else if (strncmp(tag, "resource.", 9) == 0) {
        key = tag + 9;
        p->q.scope = CN_TAG_SCOPE_RESOURCE;
    } else {
        key = tag[0] == '.' ? tag + 1 : ""; /* unscoped and not an intrinsic: no TraceQL */
    }
    if (!*key || strlen(key) > CN_QUERY_MAX_KEY_BYTES) {
        cn_compat_reply_error(req, TEMPO, 400,
                              "invalid tag name '%.64s': span.KEY, resource.KEY, .KEY or an "
                              "intrinsic (%s)",
                              tag, "duration, kind, name, status, statusMessage");
        return -1;
    }
    strcpy(p->key, key);
    p->q.key = cn_slice_of(p->key);
    p->q.typed = p->v2;
    return 0;
}

/* The scopes asked for: scope=all or none: every one. */
static int parse_scope(struct cn_http_req *req, struct tags_p *p)
{
    char scope[32];
    int rc = cn_compat_param(req, TEMPO, "scope", scope, sizeof(scope));
    if (rc < 0)
        return -1;
    p->scopes = S_SPAN | S_RESOURCE | (p->v2 ? S_INTRINSIC : 0);
    if (rc == 0 || strcmp(scope, "all") == 0 || strcmp(scope, "none") == 0)
        return 0;
    for (size_t i = 0; i < CN_ARRAY_LEN(scope_names); i++) {
        if (strcmp(scope, scope_names[i]) == 0) {
            p->scopes = 1u << i;
            return 0;
        }
    }
    cn_compat_reply_error(req, TEMPO, 400,
                          "invalid scope: '%.20s' (all, span, resource, intrinsic)", scope);
    return -1;
}

static void tags(struct cn_http_req *req, struct cn_up *up, int values, int v2)
{
    static const char *const names[] = {"scope", "start", "end", "q", "limit", NULL};
    if (cn_compat_check(req, up, TEMPO, names) != 0)
        return;
    struct tags_p *p = calloc(1, sizeof(*p));
    if (!p) {
        cn_compat_reply_error(req, TEMPO, 503, "out of memory");
        return;
    }
    p->v2 = v2;
    struct cn_query_limits lim;
    cn_compat_limits(up, &lim);
    uint64_t limit = lim.max_tag_values;
    char tag[CN_QUERY_MAX_KEY_BYTES + 16];
    if (cn_compat_param_u64(req, TEMPO, "limit", 1, lim.max_tag_values, &limit) < 0 ||
        time_range(req, &lim, &p->q.from_ns, &p->q.to_ns) != 0 ||
        (!values && parse_scope(req, p) != 0))
        goto fail;
    p->q.limit = (size_t)limit;
    if (!values) {
        cn_compat_submit(req, up, TEMPO, work_tag_names, cn_compat_free_p, p);
        return;
    }
    if (cn_compat_decode(req->params.values[0], tag, sizeof(tag)) < 0) {
        cn_compat_reply_error(req, TEMPO, 400, "tag name longer than %d bytes",
                              CN_QUERY_MAX_KEY_BYTES);
        goto fail;
    }
    if (intrinsic_values(req, up, tag, v2) || tag_key(req, p, tag) != 0)
        goto fail;
    cn_compat_submit(req, up, TEMPO, work_tag_values, cn_compat_free_p, p);
    return;
fail:
    free(p);
}

static void h_tags(struct cn_http_req *req, void *ctx)
{
    tags(req, ctx, 0, 0);
}

static void h_tags_v2(struct cn_http_req *req, void *ctx)
{
    tags(req, ctx, 0, 1);
}

static void h_tag_values(struct cn_http_req *req, void *ctx)
{
    tags(req, ctx, 1, 0);
}

static void h_tag_values_v2(struct cn_http_req *req, void *ctx)
{
    tags(req, ctx, 1, 1);
}

int cn_api_tempo_routes(struct cn_up *up, struct cn_router *r)
{
    static const struct cn_compat_route routes[] = {
        {"/api/echo", h_echo},
        {"/api/search", h_search},
        {"/api/search/tags", h_tags},
        {"/api/v2/search/tags", h_tags_v2},
        {"/api/search/tag/{tag}/values", h_tag_values},
        {"/api/v2/search/tag/{tag}/values", h_tag_values_v2},
        {"/api/v2/traces/{id}", h_trace_v2},
    };
    return cn_compat_add_routes(up, r, routes, CN_ARRAY_LEN(routes));
}
