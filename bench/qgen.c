/* Synthetic spans and logs for bench/query.sh: the spans of bench/otlpgen.c (its trace
 * shape and OTLP encoding, included below) spread evenly over a time range, plus one log
 * record per server span, written for both systems.
 *
 *   qgen WHAT SPANS SPANS_PER_BODY END_NS SECONDS [SEED]
 *
 * Traces start evenly over [END_NS - SECONDS, END_NS). The same arguments always make the
 * same records (what is written draws from its own random state), so each run writes one
 * of them to stdout, by WHAT (no multi-gigabyte files between the generator and the loaders):
 *   spans.bin  ExportTraceServiceRequest bodies, framed as otlpload reads them
 *              ([u32 LE length][u32 LE records][bytes])
 *   logs.bin   ExportLogsServiceRequest bodies, same framing (one per spans body)
 *   spans.tsv  the spans as ClickHouse TabSeparated rows (bench/ingest.sh's columns)
 *   logs.tsv   the logs: trace_id, span_id, service, time, severity, body, attr_keys,
 *              attr_values
 *   probes     query parameters sampled (reservoir, fixed seed) from what was generated:
 *              "trace HEX START_NS" (any trace), "err SERVICE USER START_NS" (a server span
 *              that failed with status 500), "log TERM TIME_NS" (the request ID of a log)
 * The totals go to stderr.
 * Log bodies: "GET /cart handled for user-01234 in 12 ms request req-<16 hex>" (INFO), a
 * slow-request variant (WARN), and for failed spans "request req-<16 hex> failed:
 * upstream returned an error (connection refused) for user-01234" (ERROR). */
#define main otlpgen_main /* otlpgen.c's encoders and trace shape, without its main */
#include "otlpgen.c"
#undef main

#include <errno.h>

#define PROBES 400

/* Writing draws random values (thread.id, cache.hit) from otlpgen.c's generator: those draws
 * are undone so that what is generated does not depend on what is written. */
#define WRITE(call)                                                                                \
    do {                                                                                           \
        uint64_t saved_ = rng_state;                                                               \
        call;                                                                                      \
        rng_state = saved_;                                                                        \
    } while (0)

static void fixed32(struct buf *b, unsigned field, uint32_t v)
{
    tag(b, field, 5);
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, t, 4);
}

/* Reservoir of probe lines. */
struct reservoir {
    char line[PROBES][160];
    uint64_t seen;
};

static uint64_t probe_state = 0x2545F4914F6CDD1Dull;

static void sample(struct reservoir *r, const char *line)
{
    uint64_t i = r->seen++;
    if (i >= PROBES) {
        probe_state ^= probe_state << 13;
        probe_state ^= probe_state >> 7;
        probe_state ^= probe_state << 17;
        i = probe_state % r->seen;
        if (i >= PROBES)
            return;
    }
    snprintf(r->line[i], sizeof(r->line[i]), "%s", line);
}

static void tsv_span(FILE *f, const struct span *s)
{
    char t[33], id[17], p[17];
    hex(t, s->trace, 16);
    hex(id, s->id, 8);
    if (s->has_parent)
        hex(p, s->parent, 8);
    else
        p[0] = 0;
    int server = s->kind == 2;
    fprintf(f,
            "%s\t%s\t%s\t%s\t%s\t%d\t%" PRIu64 "\t%" PRIu64 "\t%d\t"
            "['%s','http.route','http.response.status_code','server.address','server.port',"
            "'enduser.id','request.id','thread.id','code.function','code.filepath','cache.hit']\t"
            "['%s','%s','%d','%s','%d','%s','%s','%d','%s','src/handlers/request_handler.go',"
            "'%s']\t"
            "['service.name','service.version','host.name','deployment.environment',"
            "'telemetry.sdk.language']\t['%s','1.4.2','%s-7f9c','production','go']\n",
            t, id, p, services[s->svc], ops[s->svc][s->op], s->kind, s->start, s->end - s->start,
            s->status, server ? "http.request.method" : "rpc.system", server ? "GET" : "grpc",
            ops[s->svc][s->op], s->status_code, services[s->svc], 8080 + s->svc, s->user, s->req,
            (int)(rnd() % 64), ops[s->svc][(s->op + 1) % 4], rnd() & 1 ? "true" : "false",
            services[s->svc], services[s->svc]);
}

struct logrec {
    const struct span *s;
    uint64_t time;
    int sev;
    char body[200];
};

static void make_log(struct logrec *l, const struct span *s)
{
    l->s = s;
    l->time = s->start + (s->end - s->start) / 2;
    uint64_t ms = (s->end - s->start) / 1000000;
    if (s->status == 2) {
        l->sev = 17;
        snprintf(l->body, sizeof(l->body),
                 "request %s failed: upstream returned an error (connection refused) for %s",
                 s->req, s->user);
    } else if (rnd() % 10 == 0) {
        l->sev = 13;
        snprintf(l->body, sizeof(l->body), "slow %s for %s took %" PRIu64 " ms request %s",
                 ops[s->svc][s->op], s->user, ms, s->req);
    } else {
        l->sev = 9;
        snprintf(l->body, sizeof(l->body), "%s handled for %s in %" PRIu64 " ms request %s",
                 ops[s->svc][s->op], s->user, ms, s->req);
    }
}

static const char *sev_text(int sev)
{
    return sev >= 17 ? "ERROR" : sev >= 13 ? "WARN" : "INFO";
}

static void encode_log(struct buf *out, const struct logrec *l)
{
    struct buf lr = {0}, any = {0};
    fixed64(&lr, 1, l->time);
    tag(&lr, 2, 0);
    varint(&lr, (uint64_t)l->sev);
    str_field(&lr, 3, sev_text(l->sev));
    str_field(&any, 1, l->body);
    msg_field(&lr, 5, &any);
    attr(&lr, 6, "code.function", 's', ops[l->s->svc][l->s->op], 0);
    attr(&lr, 6, "thread.id", 'i', NULL, (int64_t)(rnd() % 64));
    fixed32(&lr, 8, 1);
    bytes_field(&lr, 9, l->s->trace, 16);
    bytes_field(&lr, 10, l->s->id, 8);
    fixed64(&lr, 11, l->time + 1000000);
    msg_field(out, 2, &lr);
    free(lr.p);
    free(any.p);
}

static void tsv_log(FILE *f, const struct logrec *l)
{
    char t[33], id[17];
    hex(t, l->s->trace, 16);
    hex(id, l->s->id, 8);
    fprintf(f, "%s\t%s\t%s\t%" PRIu64 "\t%d\t%s\t['code.function','thread.id']\t['%s','%d']\n", t,
            id, services[l->s->svc], l->time, l->sev, l->body, ops[l->s->svc][l->s->op],
            (int)(rnd() % 64));
}

/* The resource message of service svc into res. */
static void resource(struct buf *res, int svc)
{
    char host[64];
    snprintf(host, sizeof(host), "%s-7f9c", services[svc]);
    attr(res, 1, "service.name", 's', services[svc], 0);
    attr(res, 1, "service.version", 's', "1.4.2", 0);
    attr(res, 1, "host.name", 's', host, 0);
    attr(res, 1, "deployment.environment", 's', "production", 0);
    attr(res, 1, "telemetry.sdk.language", 's', "go", 0);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: qgen WHAT SPANS SPANS_PER_BODY END_NS SECONDS [SEED]\n");
        return 2;
    }
    const char *what = argv[1];
    long total = atol(argv[2]);
    long per = atol(argv[3]);
    uint64_t end_ns = strtoull(argv[4], NULL, 10);
    uint64_t range_ns = strtoull(argv[5], NULL, 10) * 1000000000ull;
    if (argc > 6)
        rng_state ^= strtoull(argv[6], NULL, 10) * 0x9E3779B97F4A7C15ull;
    int w_sbin = !strcmp(what, "spans.bin"), w_lbin = !strcmp(what, "logs.bin");
    int w_stsv = !strcmp(what, "spans.tsv"), w_ltsv = !strcmp(what, "logs.tsv");
    int w_probes = !strcmp(what, "probes");
    if (!(w_sbin || w_lbin || w_stsv || w_ltsv || w_probes) || total <= 0 || per <= 0 ||
        range_ns == 0 || end_ns < range_ns) {
        fprintf(stderr, "qgen: bad arguments\n");
        return 2;
    }
    FILE *out = stdout;
    static struct reservoir rtrace, rerr, rlog;
    uint64_t start_ns = end_ns - range_ns;
    struct span *sp = calloc((size_t)per + 16, sizeof(*sp));
    struct logrec *lr = calloc((size_t)per + 16, sizeof(*lr));
    long made = 0, logs = 0;
    uint64_t bytes = 0;
    struct buf body = {0}, rs = {0}, ss = {0}, res = {0}, scope = {0}, recs = {0};
    char line[160], th[33];
    while (made < total) {
        int n = 0;
        while (n < per && made + n < total) {
            /* Trace starts spread evenly by how many spans were made so far. */
            uint64_t now = start_ns + (uint64_t)((double)range_ns * (double)(made + n) / total);
            int k = make_trace(sp + n, (int)(per - n), now);
            if (k == 0)
                break;
            if (w_probes) {
                hex(th, sp[n].trace, 16);
                snprintf(line, sizeof(line), "trace %s %" PRIu64, th, now);
                sample(&rtrace, line);
            }
            n += k;
        }
        if (n == 0)
            n = make_trace(sp, 16, start_ns + (uint64_t)((double)range_ns * made / total));
        int nl = 0;
        for (int i = 0; i < n; i++) {
            if (sp[i].kind != 2)
                continue;
            make_log(&lr[nl], &sp[i]);
            if (w_probes && sp[i].status == 2) {
                snprintf(line, sizeof(line), "err %s %s %" PRIu64, services[sp[i].svc], sp[i].user,
                         sp[i].start);
                sample(&rerr, line);
            }
            if (w_probes) {
                snprintf(line, sizeof(line), "log %s %" PRIu64, sp[i].req, lr[nl].time);
                sample(&rlog, line);
            }
            nl++;
        }
        /* One ResourceSpans / ResourceLogs per service present. */
        if (w_sbin || w_lbin) {
            body.len = 0;
            for (int svc = 0; svc < 10; svc++) {
                recs.len = 0;
                if (w_sbin) {
                    for (int i = 0; i < n; i++)
                        if (sp[i].svc == svc)
                            WRITE(encode_span(&recs, &sp[i]));
                } else {
                    for (int i = 0; i < nl; i++)
                        if (lr[i].s->svc == svc)
                            WRITE(encode_log(&recs, &lr[i]));
                }
                if (!recs.len)
                    continue;
                resource(&res, svc);
                msg_field(&rs, 1, &res);
                str_field(&scope, 1, "go.opentelemetry.io/contrib/instrumentation/net/http");
                str_field(&scope, 2, "0.49.0");
                msg_field(&ss, 1, &scope);
                put(&ss, recs.p, recs.len);
                msg_field(&rs, 2, &ss);
                msg_field(&body, 1, &rs);
            }
            uint32_t hdr[2] = {(uint32_t)body.len, (uint32_t)(w_sbin ? n : nl)};
            fwrite(hdr, sizeof(hdr), 1, out);
            fwrite(body.p, 1, body.len, out);
            bytes += body.len;
        }
        for (int i = 0; w_stsv && i < n; i++)
            WRITE(tsv_span(out, &sp[i]));
        for (int i = 0; w_ltsv && i < nl; i++)
            WRITE(tsv_log(out, &lr[i]));
        made += n;
        logs += nl;
    }
    const struct reservoir *rr[3] = {&rtrace, &rerr, &rlog};
    for (int k = 0; w_probes && k < 3; k++)
        for (uint64_t i = 0; i < rr[k]->seen && i < PROBES; i++)
            fprintf(out, "%s\n", rr[k]->line[i]);
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(stderr, "qgen: write failed: %s\n", strerror(errno));
        return 1;
    }
    fprintf(stderr, "qgen %s: spans=%ld logs=%ld", what, made, logs);
    if (bytes)
        fprintf(stderr, " bytes_per_record=%.0f", (double)bytes / (double)(w_sbin ? made : logs));
    fprintf(stderr, "\n");
    return 0;
}
