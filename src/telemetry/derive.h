/* What the telemetry store derives from spans at ingest, so that topology, alerts and
 * root-cause analysis read small tables instead of raw spans (DESIGN.md, "Derived at ingest,
 * not at query").
 *
 * RED, per service and per (service, operation, span kind), in time buckets of bucket_ns
 * (a ring of num_buckets; older buckets drop): request count, error count (status ERROR) and
 * a latency sketch (sketch.h, nanoseconds). A span is a request when its kind is in
 * red_kinds (default SERVER and CONSUMER) or, with red_roots (default on), when it has no
 * parent, whatever its kind; a kind number outside OTLP's counts as UNSPECIFIED. A span
 * lands in the bucket of its start time; one ending before it starts counts with duration 0.
 * Spans older than the ring or starting past now + max_future_ns stay out of RED and edges
 * (counted). Two buckets behind the newest, a bucket's sketches are trimmed to what they
 * hold; late spans still land in it.
 *
 * Service-graph edges, from span pairs: a CLIENT span in service A whose span ID is the
 * parent ID of a SERVER span in service B gives A -> B (CN_DERIVE_EDGE_RPC); a PRODUCER span
 * and a CONSUMER span whose parent is the producer, or that links to it, give a messaging
 * edge. A == B is kept as a self-edge: a service calling itself over the network is a real
 * hop with its own latency. Each pair counts once in the bucket of the server (consumer)
 * span's start, with an error when either side is ERROR, and the durations of both sides.
 * The halves may arrive in either order, in different batches: an unmatched half waits in a
 * table keyed by (trace ID, span ID) for up to pair_window_ns of ingest time, at most
 * max_pending of them (past it the oldest half's window ends early). When its window ends,
 * a CLIENT half that names its peer (peer.service, else server.address, else net.peer.name)
 * becomes an edge to that uninstrumented peer, bucketed at the client's start; any other
 * unmatched half is counted as expired. A CLIENT half leaves at its first match; a PRODUCER
 * half stays for its whole window so that every consumer of a fan-out pairs with it. A
 * CONSUMER pairs under its parent and under each of its first CN_DERIVE_MAX_CONSUMER_LINKS
 * links; when none of them finds its producer, it waits under each. A second CLIENT or
 * PRODUCER half with the same IDs (a span sent twice) is counted and ignored.
 *
 * Span names, per service: every (span name, kind) a service's spans carried, whatever the
 * kind and whether or not RED counts them (the operation lists of the query APIs), at most
 * max_span_names per service; a pair past it, or whose name does not fit max_names, is
 * counted in span_names_dropped (once per span) and not listed. Pairs are never forgotten.
 *
 * Trace summaries: root service and operation (the first span without a parent; until one
 * arrives, the earliest span's), start (earliest start), duration (latest end - start), span
 * and error counts, the services involved (up to max_trace_services, in order of arrival),
 * updated as spans arrive across batches. At most max_traces, evicted first in first out
 * (a trace seen again after eviction starts a new summary). A span sent twice counts twice.
 *
 * Every table is bounded by a cn_derive_opts limit; what a limit refuses is counted in
 * cn_derive_stats, never dropped in silence. Names (services, operations, peers) are copied
 * into storage the module owns and never freed before cn_derive_free, so the name slices that
 * queries return stay valid until then; names longer than max_name_bytes are cut at a UTF-8
 * boundary. Names are a cardinality cap: past max_names, new names read as
 * CN_DERIVE_OVERFLOW_NAME, and so does the service of spans past max_services.
 *
 * Threads: writers (the store's WAL writer, and its sealer rebuilding the tables from segments
 * after a restart) call cn_derive_add_spans and cn_derive_expire, serialised by the lock;
 * queries may come from any thread. A rwlock that prefers writers guards the tables; a
 * writer takes it per chunk of spans, so queries wait at most for one chunk.
 *
 * Time: span times and now_ns are nanoseconds since the Unix epoch (CLOCK_REALTIME). now_ns
 * drives the pairing window and the bucket ring; a now_ns smaller than a previous one counts
 * as the previous one. */
#ifndef CN_TELEMETRY_DERIVE_H
#define CN_TELEMETRY_DERIVE_H

#include "telemetry/model.h"
#include "telemetry/sketch.h"

#define CN_DERIVE_OVERFLOW_NAME        "(overflow)"
#define CN_DERIVE_TRACE_SERVICES_MAX   64
#define CN_DERIVE_MAX_SERVICES_LIMIT   65534
#define CN_DERIVE_MAX_POINTS           100000 /* points of one RED query */
#define CN_DERIVE_MAX_TRACES_PER_QUERY 10000  /* limit of cn_derive_traces */
#define CN_DERIVE_KIND_MASK(kind)      (1u << (kind))
#define CN_DERIVE_MAX_CONSUMER_LINKS   8 /* links of one CONSUMER span tried for pairing */
#define CN_DERIVE_MAX_SPAN_NAMES_LIMIT 65535

struct cn_derive_opts {
    double sketch_alpha;         /* relative error of latency quantiles: 0.01 */
    uint32_t sketch_max_bins;    /* bucket cap of one sketch: 2048 */
    uint64_t bucket_ns;          /* width of a time bucket: 10 s */
    uint32_t num_buckets;        /* buckets kept, older dropped: 8640 (24 h) */
    uint64_t max_future_ns;      /* spans starting later than now + this stay out of RED and
                                    edges (clock skew): 10 min */
    uint64_t max_bucket_bytes;   /* RED and edge cells with their sketches: 256 MiB; past it the
                                    oldest buckets drop before their time, and when only the
                                    bucket written is left, new cells in it are refused */
    uint64_t max_rollup_bytes;   /* minute and ten-minute merges of the buckets that long
                                    queries build and reuse (topology over an hour merges ~20
                                    pieces instead of 360): 64 MiB, least recently used dropped
                                    past it; 0: none, every query merges buckets */
    uint32_t red_kinds;          /* CN_DERIVE_KIND_MASK of the kinds counted: SERVER | CONSUMER
                                    (0 with red_roots 0 counts nothing) */
    int red_roots;               /* count root spans of any kind too: 1 */
    uint32_t max_services;       /* 1000, at most CN_DERIVE_MAX_SERVICES_LIMIT */
    uint32_t max_operations;     /* (service, operation, kind) series: 20000 */
    uint32_t max_edges;          /* (caller, callee, type) keys: 10000 */
    uint32_t max_names;          /* distinct names: 100000 */
    uint32_t max_name_bytes;     /* longer names are cut (counted): 256 */
    uint64_t pair_window_ns;     /* how long a half waits for its peer: 30 s of ingest time */
    uint32_t max_pending;        /* halves waiting: 100000; past it the oldest half's
                                    window ends early (as at expiry) */
    int uninstrumented_edges;    /* expired CLIENT halves naming a peer become edges: 1 */
    uint32_t max_traces;         /* summaries kept, the oldest evicted first: 1000000 */
    uint32_t max_trace_services; /* services kept per summary: 32, at most
                                    CN_DERIVE_TRACE_SERVICES_MAX */
    uint32_t max_span_names;     /* (span name, kind) pairs listed per service: 1000, at most
                                    CN_DERIVE_MAX_SPAN_NAMES_LIMIT */
};

/* Counters since cn_derive_new. */
struct cn_derive_stats {
    uint64_t spans;              /* passed to cn_derive_add_spans */
    uint64_t red_spans;          /* counted in RED */
    uint64_t spans_too_old;      /* requests older than the buckets kept: out of RED */
    uint64_t spans_too_new;      /* requests past now + max_future_ns: out of RED */
    uint64_t bad_durations;      /* end before start: counted with duration 0 */
    uint64_t services;           /* known services */
    uint64_t services_dropped;   /* spans of services past max_services (RED, edges lost) */
    uint64_t operations;         /* (service, operation, kind) series */
    uint64_t operations_dropped; /* requests whose series did not fit max_operations (or
                                    whose name did not fit max_names) */
    uint64_t names;              /* interned names */
    uint64_t names_dropped;      /* names refused past max_names */
    uint64_t names_truncated;    /* names cut to max_name_bytes */
    uint64_t edges;              /* edge keys */
    uint64_t edges_dropped;      /* pairs whose edge key did not fit max_edges */
    uint64_t pairs;              /* matched halves (each one edge count) */
    uint64_t pairs_out_of_range; /* edge counts whose time is outside the buckets kept */
    uint64_t uninstrumented;     /* edge counts to uninstrumented peers */
    uint64_t pending;            /* halves waiting now */
    uint64_t expired_callers;    /* CLIENT/PRODUCER halves expired unmatched, without an edge */
    uint64_t expired_callees;    /* SERVER/CONSUMER halves expired unmatched */
    uint64_t pending_evicted;    /* windows ended early for max_pending (those
                                    halves count as expired or uninstrumented too) */
    uint64_t duplicate_halves;   /* a second CLIENT/PRODUCER half with the same IDs, ignored */
    uint64_t traces;             /* summaries kept now */
    uint64_t traces_evicted;     /* summaries evicted for max_traces */
    uint64_t buckets_dropped;    /* buckets dropped early for max_bucket_bytes */
    uint64_t cells_dropped;      /* RED/edge updates refused for max_bucket_bytes */
    uint64_t bucket_bytes;       /* held by RED and edge cells now */
    uint64_t rollup_bytes;       /* held by rollups now (at most max_rollup_bytes) */
    uint64_t rollup_hits;        /* blocks of buckets a query read from a rollup */
    uint64_t rollup_builds;      /* rollups built (first use, or a bucket written since) */
    uint64_t rollups_refused;    /* rollups not kept for want of room: their buckets read */
    uint64_t span_names;         /* (service, span name, kind) triples listed */
    uint64_t span_names_dropped; /* spans whose (name, kind) did not fit max_span_names of
                                    their service (or max_names) */
    uint64_t alloc_failures;     /* updates lost to a failed allocation */
    uint64_t memory_bytes;       /* cn_derive_memory */
};

/* One step of a RED series. */
struct cn_derive_red_point {
    uint64_t t_ns; /* start of the step */
    uint64_t count, errors;
    double rate;       /* count per second of step_ns (a last step that to_ns cuts short
                          still divides by step_ns) */
    double error_rate; /* errors per second, likewise */
    double min_ns, max_ns, mean_ns;
    double p50_ns, p95_ns, p99_ns; /* all 0 when count is 0 */
};

struct cn_derive_red_query {
    struct cn_slice service;
    struct cn_slice operation; /* ptr NULL: the whole service */
    uint32_t kind_mask;        /* CN_DERIVE_KIND_MASK bits; 0: every kind */
    uint64_t from_ns, to_ns;   /* [from, to); from is rounded down to a bucket */
    uint64_t step_ns;          /* a multiple of bucket_ns; 0: bucket_ns */
};

struct cn_derive_op {
    struct cn_slice name;
    uint8_t kind; /* cn_span_kind */
};

enum cn_derive_edge_type {
    CN_DERIVE_EDGE_RPC = 0,       /* CLIENT -> SERVER */
    CN_DERIVE_EDGE_MESSAGING = 1, /* PRODUCER -> CONSUMER */
};

struct cn_derive_edge {
    struct cn_slice caller, callee;
    uint8_t type;           /* cn_derive_edge_type */
    uint8_t uninstrumented; /* callee named by the client's peer attribute */
    uint64_t count, errors;
    /* Server (consumer) durations; 0 when the callee is uninstrumented. */
    double server_p50_ns, server_p95_ns, server_p99_ns;
    /* Client (producer) durations. */
    double client_p50_ns, client_p95_ns, client_p99_ns;
};

struct cn_derive_edge_query {
    uint64_t from_ns, to_ns;
    struct cn_slice service; /* ptr NULL: every edge */
    uint32_t depth;          /* hops around service, both directions; 0: no limit */
};

struct cn_derive_trace {
    uint8_t trace_id[16];
    struct cn_slice root_service, root_operation;
    int has_root; /* 0: no span without a parent yet; root_* are the earliest span's */
    uint64_t start_ns, duration_ns;
    uint32_t num_spans, num_errors;
    uint32_t num_services;
    int services_truncated; /* more services than max_trace_services took part */
    struct cn_slice services[CN_DERIVE_TRACE_SERVICES_MAX]; /* in order of arrival */
};

struct cn_derive;

/* The defaults documented in struct cn_derive_opts. */
void cn_derive_opts_default(struct cn_derive_opts *o);
/* Checks o; returns 0, or CN_EINVAL with a message naming the field in err. */
int cn_derive_opts_check(const struct cn_derive_opts *o, char *err, size_t err_len);

/* o NULL: the defaults; else every field of o counts (start from cn_derive_opts_default).
 * Returns NULL when o fails cn_derive_opts_check or memory runs out. The caller frees the
 * result with cn_derive_free. */
struct cn_derive *cn_derive_new(const struct cn_derive_opts *o);
void cn_derive_free(struct cn_derive *d);
/* The options in force, e.g. to report which kinds RED counts. Owned by d. */
const struct cn_derive_opts *cn_derive_opts(const struct cn_derive *d);

/* Writer thread. Derives from n spans ingested at now_ns; reads the spans only during the
 * call. Expires pairing halves first, as cn_derive_expire. */
void cn_derive_add_spans(struct cn_derive *d, const struct cn_span *spans, size_t n,
                         uint64_t now_ns);
/* Writer thread. Ends the pairing window of halves older than now_ns - pair_window_ns and
 * drops buckets that fell out of the ring. Call it when no spans arrive for a while. */
void cn_derive_expire(struct cn_derive *d, uint64_t now_ns);
/* Any thread, while ingest is idle. Builds the ten-minute rollup of one block of buckets
 * that holds spans, was last written CN_DERIVE_ROLLUP_SETTLE_NS or more before the newest
 * ingest time, and has no fresh rollup, so that topology over any hour finds most of its
 * range merged already. Builds only while rollups take less than half of max_rollup_bytes
 * (the rest is left to what queries build: nothing is evicted for it). Holds the read lock
 * for one block (~60 buckets merged). Returns 1 when it built one, 0 when none is due. */
int cn_derive_rollup_step(struct cn_derive *d);
#define CN_DERIVE_ROLLUP_SETTLE_NS (30ull * 1000000000)

/* Queries, any thread. Arrays come back in *out_* allocated with malloc: the caller frees
 * them with free(); an empty result and a failure are NULL and *out_num 0. Name slices point
 * into the module's storage and stay valid until cn_derive_free. Ranges [from, to) read
 * whole buckets: from is rounded down and to up to bucket_ns. */

/* RED series of a service, or of one of its operations, over [from, to) in steps. Returns 0,
 * CN_ENOENT (unknown service or operation), CN_EINVAL (to <= from, bad step), CN_ELIMIT
 * (more than CN_DERIVE_MAX_POINTS points), CN_ENOMEM. */
int cn_derive_red(struct cn_derive *d, struct cn_derive_red_point **out_points, size_t *out_num,
                  const struct cn_derive_red_query *q);
/* Services that sent spans, sorted by name. Returns 0 or CN_ENOMEM. */
int cn_derive_services(struct cn_derive *d, struct cn_slice **out_names, size_t *out_num);
/* Operations (with their kind) RED counts for a service, sorted by name then kind. Returns 0,
 * CN_ENOENT (unknown service), CN_ENOMEM. */
int cn_derive_operations(struct cn_derive *d, struct cn_derive_op **out_ops, size_t *out_num,
                         struct cn_slice service);
/* Every (span name, kind) the service's spans carried (see "Span names" above), sorted by
 * name then kind; service.ptr NULL: those of every service, each pair once. Returns 0,
 * CN_ENOENT (unknown service), CN_ENOMEM. */
int cn_derive_span_names(struct cn_derive *d, struct cn_derive_op **out_ops, size_t *out_num,
                         struct cn_slice service);
/* Edges with traffic in [from, to), sorted by caller, callee, type, uninstrumented.
 * Returns 0, CN_EINVAL (to <= from), CN_ENOENT (a service name never seen), CN_ENOMEM. */
int cn_derive_edges(struct cn_derive *d, struct cn_derive_edge **out_edges, size_t *out_num,
                    const struct cn_derive_edge_query *q);
/* The summary of one trace into *out. Returns 0, or CN_ENOENT (out unchanged). */
int cn_derive_trace(struct cn_derive *d, struct cn_derive_trace *out, const uint8_t trace_id[16]);
/* For each of the n trace IDs at ids[i] (16 bytes each), the spans its summary counts so
 * far into spans[i], 0 for a trace without one: what cn_derive_trace says of num_spans, for
 * many traces under one lock, their index slots fetched ahead. */
void cn_derive_trace_spans(struct cn_derive *d, const uint8_t *const *ids, size_t n,
                           uint32_t *spans);
/* Summaries of traces starting in [from, to), newest start first, at most limit (1 to
 * CN_DERIVE_MAX_TRACES_PER_QUERY). Returns 0, CN_EINVAL, CN_ENOMEM. */
int cn_derive_traces(struct cn_derive *d, struct cn_derive_trace **out_traces, size_t *out_num,
                     uint64_t from_ns, uint64_t to_ns, size_t limit);

/* Heap bytes held by d. */
size_t cn_derive_memory(struct cn_derive *d);
void cn_derive_stats(struct cn_derive *d, struct cn_derive_stats *out);

#endif
