/* Synthetic OTLP trace generator for bench/ingest.sh.
 *
 *   otlpgen SPANS SPANS_PER_BODY BODIES_OUT JSONL_OUT [SEED]
 *
 * Realistic shape: 10 services, traces of 6-14 spans to depth ~4 (server -> client ->
 * server ...), ~10 attributes per span, 300-800 bytes of OTLP protobuf per span. BODIES_OUT
 * gets ExportTraceServiceRequest bodies framed as [u32 LE length][u32 LE spans][bytes];
 * JSONL_OUT gets the same spans, one JSON object per line, for ClickHouse's JSONEachRow
 * (a Jaeger-like schema). Prints the totals. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            perror("realloc");
            exit(1);
        }
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void varint(struct buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    put(b, t, n);
}

static void tag(struct buf *b, unsigned field, unsigned wire)
{
    varint(b, (uint64_t)field << 3 | wire);
}

static void bytes_field(struct buf *b, unsigned field, const void *d, size_t n)
{
    tag(b, field, 2);
    varint(b, n);
    put(b, d, n);
}

static void str_field(struct buf *b, unsigned field, const char *s)
{
    bytes_field(b, field, s, strlen(s));
}

static void msg_field(struct buf *b, unsigned field, struct buf *m)
{
    bytes_field(b, field, m->p, m->len);
    m->len = 0;
}

static void fixed64(struct buf *b, unsigned field, uint64_t v)
{
    tag(b, field, 1);
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, 8);
}

/* A KeyValue appended as field `field` of out. */
static void attr(struct buf *out, unsigned field, const char *k, int type, const char *s, int64_t i)
{
    struct buf any = {0}, kv = {0};
    if (type == 's')
        str_field(&any, 1, s);
    else if (type == 'i') {
        tag(&any, 3, 0);
        varint(&any, (uint64_t)i);
    } else {
        tag(&any, 2, 0);
        varint(&any, (uint64_t)(i != 0));
    }
    str_field(&kv, 1, k);
    msg_field(&kv, 2, &any);
    msg_field(out, field, &kv);
    free(any.p);
    free(kv.p);
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const char *const services[] = {"frontend", "cart",     "checkout", "payment",
                                       "shipping", "email",    "currency", "recommendation",
                                       "ad",       "inventory"};
static const char *const ops[][4] = {
    {"GET /", "GET /cart", "POST /checkout", "GET /product/{id}"},
    {"GetCart", "AddItem", "EmptyCart", "UpdateCart"},
    {"PlaceOrder", "PrepareOrder", "ValidateOrder", "ChargeOrder"},
    {"Charge", "Refund", "Authorize", "Capture"},
    {"GetQuote", "ShipOrder", "TrackOrder", "CancelShipment"},
    {"SendOrderConfirmation", "SendReceipt", "Render", "Queue"},
    {"Convert", "GetSupportedCurrencies", "RefreshRates", "Lookup"},
    {"ListRecommendations", "Score", "Rank", "Fetch"},
    {"GetAds", "Match", "Select", "Track"},
    {"Reserve", "Release", "Check", "Restock"}};

struct span {
    uint8_t trace[16], id[8], parent[8];
    int svc, op, kind, status, has_parent;
    uint64_t start, end;
    char user[24], req[40];
    int status_code;
};

static void hex(char *d, const uint8_t *s, size_t n)
{
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        d[2 * i] = x[s[i] >> 4];
        d[2 * i + 1] = x[s[i] & 15];
    }
    d[2 * n] = 0;
}

static void encode_span(struct buf *out, const struct span *s)
{
    struct buf sp = {0}, st = {0};
    bytes_field(&sp, 1, s->trace, 16);
    bytes_field(&sp, 2, s->id, 8);
    if (s->has_parent)
        bytes_field(&sp, 4, s->parent, 8);
    str_field(&sp, 5, ops[s->svc][s->op]);
    tag(&sp, 6, 0);
    varint(&sp, (uint64_t)s->kind);
    fixed64(&sp, 7, s->start);
    fixed64(&sp, 8, s->end);
    int server = s->kind == 2;
    attr(&sp, 9, server ? "http.request.method" : "rpc.system", 's', server ? "GET" : "grpc", 0);
    attr(&sp, 9, "http.route", 's', ops[s->svc][s->op], 0);
    attr(&sp, 9, "http.response.status_code", 'i', NULL, s->status_code);
    attr(&sp, 9, "server.address", 's', services[s->svc], 0);
    attr(&sp, 9, "server.port", 'i', NULL, 8080 + s->svc);
    attr(&sp, 9, "enduser.id", 's', s->user, 0);
    attr(&sp, 9, "request.id", 's', s->req, 0);
    attr(&sp, 9, "thread.id", 'i', NULL, (int64_t)(rnd() % 64));
    attr(&sp, 9, "code.function", 's', ops[s->svc][(s->op + 1) % 4], 0);
    attr(&sp, 9, "code.filepath", 's', "src/handlers/request_handler.go", 0);
    attr(&sp, 9, "cache.hit", 'b', NULL, (int64_t)(rnd() & 1));
    if (s->status == 2)
        str_field(&st, 2, "upstream returned an error");
    tag(&st, 3, 0);
    varint(&st, (uint64_t)s->status);
    msg_field(&sp, 15, &st);
    msg_field(out, 2, &sp);
    free(sp.p);
    free(st.p);
}

static void json_span(FILE *f, const struct span *s)
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
            "{\"trace_id\":\"%s\",\"span_id\":\"%s\",\"parent_span_id\":\"%s\","
            "\"service\":\"%s\",\"operation\":\"%s\",\"kind\":%d,\"start_time\":%" PRIu64
            ",\"duration\":%" PRIu64 ",\"status_code\":%d,"
            "\"attr_keys\":[\"%s\",\"http.route\",\"http.response.status_code\","
            "\"server.address\",\"server.port\",\"enduser.id\",\"request.id\",\"thread.id\","
            "\"code.function\",\"code.filepath\",\"cache.hit\"],"
            "\"attr_values\":[\"%s\",\"%s\",\"%d\",\"%s\",\"%d\",\"%s\",\"%s\",\"%d\",\"%s\","
            "\"src/handlers/request_handler.go\",\"%s\"],"
            "\"res_keys\":[\"service.name\",\"service.version\",\"host.name\","
            "\"deployment.environment\"],"
            "\"res_values\":[\"%s\",\"1.4.2\",\"%s-7f9c\",\"production\"]}\n",
            t, id, p, services[s->svc], ops[s->svc][s->op], s->kind, s->start, s->end - s->start,
            s->status, server ? "http.request.method" : "rpc.system", server ? "GET" : "grpc",
            ops[s->svc][s->op], s->status_code, services[s->svc], 8080 + s->svc, s->user, s->req,
            (int)(rnd() % 64), ops[s->svc][(s->op + 1) % 4], rnd() & 1 ? "true" : "false",
            services[s->svc], services[s->svc]);
}

/* Fills spans[0..n) with one trace; returns its span count. */
static int make_trace(struct span *sp, int max, uint64_t now)
{
    uint8_t trace[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rnd();
        memcpy(trace + i, &r, 8);
    }
    int n = 0, err = rnd() % 20 == 0;
    char user[24], req[40];
    snprintf(user, sizeof(user), "user-%05u", (unsigned)(rnd() % 50000));
    snprintf(req, sizeof(req), "req-%016" PRIx64, rnd());
    /* A chain of server spans, each calling the next service through a client span. */
    int depth = 3 + (int)(rnd() % 3); /* 3..5 server hops */
    uint64_t t = now;
    uint64_t dur = 200000000;
    int parent = -1;
    int svc = 0;
    for (int d = 0; d < depth && n + 3 <= max; d++) {
        struct span *s = &sp[n];
        memset(s, 0, sizeof(*s));
        memcpy(s->trace, trace, 16);
        uint64_t r = rnd();
        memcpy(s->id, &r, 8);
        if (parent >= 0) {
            memcpy(s->parent, sp[parent].id, 8);
            s->has_parent = 1;
        }
        s->svc = svc;
        s->op = (int)(rnd() % 4);
        s->kind = 2;
        s->start = t;
        s->end = t + dur;
        s->status = err && d == depth - 1 ? 2 : 0;
        s->status_code = s->status ? 500 : 200;
        memcpy(s->user, user, sizeof(user));
        memcpy(s->req, req, sizeof(req));
        int me = n++;
        /* An internal span under each server span. */
        struct span *in = &sp[n++];
        *in = *s;
        r = rnd();
        memcpy(in->id, &r, 8);
        memcpy(in->parent, s->id, 8);
        in->has_parent = 1;
        in->kind = 1;
        in->start = t + dur / 10;
        in->end = t + dur / 5;
        in->status = 0;
        if (d + 1 < depth) {
            struct span *c = &sp[n];
            *c = *s;
            r = rnd();
            memcpy(c->id, &r, 8);
            memcpy(c->parent, s->id, 8);
            c->has_parent = 1;
            c->kind = 3;
            c->start = t + dur / 4;
            c->end = t + dur - dur / 8;
            c->status = 0;
            parent = n++;
            svc = 1 + (int)(rnd() % 9);
            t = c->start + 100000;
            dur = (c->end - c->start) - 200000;
        }
        (void)me;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: otlpgen SPANS SPANS_PER_BODY BODIES_OUT JSONL_OUT [SEED]\n");
        return 2;
    }
    long total = atol(argv[1]);
    long per = atol(argv[2]);
    FILE *bf = fopen(argv[3], "wb");
    FILE *jf = fopen(argv[4], "w");
    if (argc > 5)
        rng_state ^= strtoull(argv[5], NULL, 10) * 0x9E3779B97F4A7C15ull;
    if (total <= 0 || per <= 0 || !bf || !jf) {
        fprintf(stderr, "otlpgen: bad arguments or cannot open outputs\n");
        return 2;
    }
    uint64_t now = 1764100000000000000ull;
    struct span *sp = calloc((size_t)per + 16, sizeof(*sp));
    long made = 0, bodies = 0;
    uint64_t bytes = 0;
    struct buf body = {0}, rs = {0}, ss = {0}, res = {0}, scope = {0}, spans = {0};
    while (made < total) {
        /* Gather whole traces for this body. */
        int n = 0;
        while (n < per && made + n < total) {
            int k = make_trace(sp + n, (int)(per - n), now);
            if (k == 0)
                break;
            n += k;
            now += 1000000;
        }
        if (n == 0)
            n = make_trace(sp, 16, now);
        body.len = 0;
        /* One ResourceSpans per service present. */
        for (int svc = 0; svc < 10; svc++) {
            spans.len = 0;
            int any = 0;
            for (int i = 0; i < n; i++) {
                if (sp[i].svc != svc)
                    continue;
                encode_span(&spans, &sp[i]);
                any = 1;
            }
            if (!any)
                continue;
            char host[64];
            snprintf(host, sizeof(host), "%s-7f9c", services[svc]);
            attr(&res, 1, "service.name", 's', services[svc], 0);
            attr(&res, 1, "service.version", 's', "1.4.2", 0);
            attr(&res, 1, "host.name", 's', host, 0);
            attr(&res, 1, "deployment.environment", 's', "production", 0);
            attr(&res, 1, "telemetry.sdk.language", 's', "go", 0);
            msg_field(&rs, 1, &res);
            str_field(&scope, 1, "go.opentelemetry.io/contrib/instrumentation/net/http");
            str_field(&scope, 2, "0.49.0");
            msg_field(&ss, 1, &scope);
            put(&ss, spans.p, spans.len);
            msg_field(&rs, 2, &ss);
            msg_field(&body, 1, &rs);
        }
        uint32_t hdr[2] = {(uint32_t)body.len, (uint32_t)n};
        fwrite(hdr, sizeof(hdr), 1, bf);
        fwrite(body.p, 1, body.len, bf);
        for (int i = 0; i < n; i++)
            json_span(jf, &sp[i]);
        made += n;
        bodies++;
        bytes += body.len;
    }
    fclose(bf);
    fclose(jf);
    printf("spans=%ld bodies=%ld otlp_bytes=%" PRIu64 " bytes_per_span=%.0f\n", made, bodies, bytes,
           (double)bytes / (double)made);
    return 0;
}
