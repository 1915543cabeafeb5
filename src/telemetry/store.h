/* The embedded telemetry store. Receivers decode a body on their own loop and submit it;
 * one writer thread appends submitted bodies to the WAL (group commit), then adds their
 * decoded records to the in-memory head, then posts the outcome back to the submitter's
 * mailbox. Readers (queries, any thread) take what they will read under a read lock, briefly,
 * and read it without: a long search holds back neither ingest nor sealing.
 *
 * The head keeps each ingested batch whole (the body its slices point into, and the arena)
 * and indexes spans and logs by trace ID. Its memory is bounded by head_max_bytes: past it,
 * submissions are refused at once (the receiver answers 429 with Retry-After). */
#ifndef CN_TELEMETRY_STORE_H
#define CN_TELEMETRY_STORE_H

#include "ev/mailbox.h"
#include "telemetry/model.h"
#include "telemetry/wal.h"

#include <stdatomic.h>

/* WAL record types: how a body was encoded, so replay decodes it the same way. */
enum cn_body_kind {
    CN_BODY_TRACES_PB = 1,
    CN_BODY_TRACES_JSON = 2,
    CN_BODY_LOGS_PB = 3,
    CN_BODY_LOGS_JSON = 4,
    CN_BODY_ZIPKIN = 5,
};

/* Decodes body per kind into b. Used by receivers and by WAL replay. */
int cn_tel_decode(struct cn_tel_batch *b, enum cn_body_kind kind, const uint8_t *body, size_t len,
                  const struct cn_tel_limits *lim, char *err, size_t err_len);

struct cn_store_opts {
    const char *dir;          /* data_dir/telemetry */
    uint64_t head_max_bytes;  /* memory budget of the head */
    uint64_t queue_max_bytes; /* bytes submitted and not yet written */
    uint64_t wal_segment_bytes;
    uint32_t max_body_bytes; /* largest body (after decoding gzip) */
    enum cn_wal_fsync fsync;
    int wal_buffered; /* WAL writes through the page cache (telemetry.wal_direct=false) */
    struct cn_tel_limits limits;
    uint64_t seal_bytes;          /* the head is sealed into segments past this (0: 16 MiB) */
    uint64_t seal_interval_ms;    /* or when its oldest batch is this old (0: 10 s) */
    uint64_t retention_ms;        /* segments of days older than this are removed (0: keep) */
    uint64_t disk_budget;         /* segment bytes kept at most (0: no budget) */
    uint64_t bloom_cache_bytes;   /* blooms of segments kept in memory, process-wide
                                     (cn_seg_set_bloom_cache; 0: CN_SEG_BLOOM_CACHE) */
    uint64_t footer_cache_bytes;  /* footers' tables of segments kept in memory, process-wide
                                     (cn_seg_set_footer_cache; 0: CN_SEG_FOOTER_CACHE) */
    uint32_t max_spans_per_trace; /* spans past it are refused (0: no limit) */
    /* Days of partitions (today the first) whose trace IDs the trace map keeps in memory
     * (telemetry.trace_map_days); an older partition's go into its trace map file (tmapf.h).
     * 0: CN_STORE_MAP_MEM_DAYS; negative: none, today's go to a file too (tests). */
    int32_t trace_map_mem_days;
};

#define CN_STORE_MAP_MEM_DAYS 2

struct cn_store_stats {
    atomic_uint_fast64_t spans, logs, batches;
    atomic_uint_fast64_t rejected_spans, rejected_logs;
    atomic_uint_fast64_t refused_full, refused_disk;
    atomic_uint_fast64_t wal_commits, wal_bytes, wal_errors;
    atomic_uint_fast64_t truncated_attrs, truncated_values, truncated_events, truncated_links;
    atomic_uint_fast64_t head_bytes, queue_bytes;
    atomic_uint_fast64_t replayed_records, replay_corrupt;
    atomic_uint_fast64_t segments, segment_bytes, seals, seal_errors, retention_removed;
    atomic_uint_fast64_t corrupt_segments, read_errors, compactions;
    atomic_uint_fast64_t rebuild_segments_left; /* segments the derived tables still need */
    atomic_uint_fast64_t trace_map_entries, trace_map_bytes; /* trace ID -> segment map */
    /* Older partitions' trace map files: how many, their bytes on disk, the memory they hold. */
    atomic_uint_fast64_t trace_map_files, trace_map_file_bytes, trace_map_file_mem;
};

/* One submission. The submitter fills body/kind/batch/mailbox/done_cb and keeps nothing else
 * of it: on success of cn_store_submit the store owns body (free()) and batch, and posts
 * the submission to mailbox when the outcome is known (status: 0 stored, or a negative CN_E*
 * code: -ENOSPC disk full, CN_EIO write error). done_cb runs on the mailbox's loop and must
 * free the submission with cn_store_sub_free. */
struct cn_store_sub {
    struct cn_mail mail; /* first: the mailbox hands this back */
    uint8_t *body;
    size_t len;
    enum cn_body_kind kind;
    struct cn_tel_batch batch;
    int status;
    void *data; /* the submitter's */
    /* The store's: */
    struct cn_mailbox *mailbox;
    uint64_t lsn;
};

struct cn_store;

int cn_store_open(struct cn_store **out_store, const struct cn_store_opts *opts, char *err,
                  size_t err_len);
/* Stops the writer after it finished what was submitted, then frees everything. */
void cn_store_close(struct cn_store *s);

/* Queues sub for the writer. Returns 0, or CN_EAGAIN when the head or the queue is full
 * (nothing changes; the caller keeps sub and answers 429). */
int cn_store_submit(struct cn_store *s, struct cn_store_sub *sub, struct cn_mailbox *mailbox);
/* Frees a submission the store handed back (or one never submitted). */
void cn_store_sub_free(struct cn_store_sub *sub);

/* Read interface. A read sees the store as it was when it began: the segments and head records
 * of that moment stay readable (whatever is sealed, merged or removed meanwhile; their memory
 * is freed after it returns) and the callbacks run without the store's lock. Copy what you
 * keep. */
typedef void (*cn_store_span_cb)(void *ctx, const struct cn_span *span);
typedef void (*cn_store_log_cb)(void *ctx, const struct cn_log *log);
/* Spans of one trace, in ingest order; returns how many. No time range needed. */
size_t cn_store_trace(struct cn_store *s, const uint8_t trace_id[16], cn_store_span_cb cb,
                      void *ctx);
/* Log records of one trace, in ingest order; returns how many. */
size_t cn_store_trace_logs(struct cn_store *s, const uint8_t trace_id[16], cn_store_log_cb cb,
                           void *ctx);
/* Spans whose start lies in [from_ns, to_ns), in ingest order, until cb's budget: returns
 * how many were passed to cb (at most limit; 0 = no limit). */
size_t cn_store_scan_spans(struct cn_store *s, uint64_t from_ns, uint64_t to_ns, size_t limit,
                           cn_store_span_cb cb, void *ctx);
size_t cn_store_scan_logs(struct cn_store *s, uint64_t from_ns, uint64_t to_ns, size_t limit,
                          cn_store_log_cb cb, void *ctx);

/* A filtered scan: conditions on the columns a segment reads cheaply, checked before a
 * record is built, and terms that rule out whole segments by their token blooms. A record
 * passed to the callback meets every condition set here; terms are not checked row by row
 * (the caller checks what it asked for). */
struct cn_store_filter {
    struct cn_slice service; /* ptr NULL: any; else the record's resource service ("" for a
                                record without a resource) */
    struct cn_slice name;    /* spans: ptr NULL: any; else the span name */
    int kind;                /* spans: -1: any; else enum cn_span_kind */
    int status;              /* spans: -1: any; else enum cn_status_code */
    uint64_t min_duration_ns, max_duration_ns; /* spans: 0: no bound (end - start, 0 when
                                                  the end is before the start) */
    uint8_t min_severity;                      /* logs: 0: any */
    const uint8_t *trace_id;                   /* NULL: any; else 16 bytes (read through the
                                                  trace index, not by scanning) */
    /* Segments whose token bloom (seg.h) rules out one of these are skipped, the way
     * cn_seg_may_contain_token reads a term: only pass a term that any record the caller
     * wants holds as a whole string attribute value or as a run of tokens of a string
     * attribute value or string-like log body. The head has no bloom: its records pass. */
    const struct cn_slice *terms;
    size_t num_terms;
};

/* What a filtered scan read. */
struct cn_store_scan_stats {
    uint64_t segments;         /* segments overlapping the range */
    uint64_t segments_skipped; /* ruled out by their blooms */
    uint64_t records;          /* passed to the callback */
};

/* cn_store_scan_spans / _logs with f (f NULL: none). stats may be NULL. A term longer than
 * CN_STORE_MAX_FILTER_TERM bytes prunes nothing. */
#define CN_STORE_MAX_FILTER_TERM 4096
size_t cn_store_scan_spans_where(struct cn_store *s, uint64_t from_ns, uint64_t to_ns, size_t limit,
                                 const struct cn_store_filter *f, cn_store_span_cb cb, void *ctx,
                                 struct cn_store_scan_stats *stats);
size_t cn_store_scan_logs_where(struct cn_store *s, uint64_t from_ns, uint64_t to_ns, size_t limit,
                                const struct cn_store_filter *f, cn_store_log_cb cb, void *ctx,
                                struct cn_store_scan_stats *stats);

const struct cn_store_stats *cn_store_stats(const struct cn_store *s);

/* Blocks found damaged so far in open segments (each counted once). */
uint64_t cn_store_corrupt_blocks(struct cn_store *s);
/* Refuses (partial success, counted in b) the spans of traces that already hold
 * max_spans_per_trace spans, from the derived trace summaries plus this batch. Concurrent
 * batches of one trace may pass it by one batch; after a restart the summaries come back
 * from the WAL at once and from the segments in the background (cn_store_open), so a trace
 * may pass it while that runs. Receivers call it before submitting; WAL replay applies it. */
void cn_store_limit_traces(struct cn_store *s, struct cn_tel_batch *b);
/* Counts records refused by a receiver that submitted nothing (all of them invalid). */
void cn_store_count_rejected(struct cn_store *s, int logs, uint64_t n);
/* The derived tables (RED, service-graph edges, trace summaries); thread-safe. */
struct cn_derive *cn_store_derive(struct cn_store *s);
/* Called on the writer thread with each batch once it is durable and readable (never for
 * WAL replay): the batch the head holds, valid during the call. It must be quick (it delays
 * the acknowledgements) and copy what it keeps. */
typedef void (*cn_store_ingest_cb)(void *ctx, const struct cn_tel_batch *b);
/* Sets the ingest hook (cb NULL: none); call before submitting, or with no submission in
 * flight. */
void cn_store_set_ingest_cb(struct cn_store *s, cn_store_ingest_cb cb, void *ctx);
/* Seals the head into segment files now and waits for it (tests, shutdown tools). Returns
 * 0, or CN_EAGAIN when it did not finish within 6 s. */
int cn_store_seal(struct cn_store *s);

#endif
