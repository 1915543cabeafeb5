/* Immutable segment files of the telemetry store: one file holds the spans (or the log
 * records) of one sealed head, sorted for search and compressed by column.
 *
 * Layout (integers little-endian; "varint" is LEB128; "zigzag" maps signed to unsigned;
 * "ints" are signed integers stored as their common divisor g (varint), a byte width w
 * (u8) and w byte planes of the zigzagged v / g: all low bytes, then all second bytes...):
 *
 *   header   16 bytes: magic "CNSEG1\0\0", version u16 (1), kind u8 (1 spans, 2 logs),
 *            5 zero bytes
 *   blocks   each block is its payload (a zstd frame; or, for a block ending in a long run
 *            of one byte, its bytes before the run and then the run's byte once; or raw
 *            bytes when neither is smaller) followed by the XXH3-64 of the payload, seeded
 *            with the block's identity (section, row group or page, column): a block read
 *            from the wrong place fails its check too
 *   footer   a zstd frame: kind, version, creation time, row count, trace count, min/max
 *            time; for each row group its row count, min/max time, min/max duration (spans)
 *            or severity number (logs), and for each of its columns the block's offset,
 *            stored size, decoded size and codec; the trace-ID index pages (first ID, count,
 *            two block references each); the two bloom filters (block, bits, hashes)
 *   trailer  32 bytes: footer offset u64, footer stored length u32, footer decoded length
 *            u32, XXH3-64 of the stored footer u64, magic "CNSEGEND"
 *
 * Rows are sorted by (service, name, start) for spans and by (service, time) for logs, then
 * cut into row groups of group_rows rows (4096 by default), each column of a group its own
 * block, the cheap columns (what a scan's predicate sees) first. Span columns: trace
 * (varint ordinal into the segment's trace-ID table, 0 for none), span ID (8 raw bytes),
 * service and name (dictionary of the group's distinct strings + varint ids), kind and
 * status code (a byte each), start (ints of deltas), duration (ints); then parent (a code
 * per row: none, raw ID, or a row of this segment; the rows as ints of deltas), status
 * message, flags (varints), trace state, scope and resource (a table of the group's
 * distinct ones + an id per row), attributes, events (count and dropped count per row,
 * time offsets from the span's start as ints, names, attributes), links (count and dropped
 * count per row, IDs, flags, trace states, attributes). Log columns: trace, span ID
 * (presence byte + raw), service, time (ints of deltas), severity number (byte), event
 * name; then observed time (presence byte + ints of offsets from time), severity text,
 * body (a type byte per row, then the values of each type), attributes, flags, scope,
 * resource. Only the trace-ID table, and for spans the span IDs of parents, are shared
 * between row groups: damage to any other block costs the rows of its group only.
 *
 * Attribute sets (of spans, logs, events, links, resources, scopes) are encoded as the
 * distinct (key, type) pairs of the column, then per row its item count and dropped count,
 * per item its pair number, then for each pair its values in row order: strings (also
 * bytes and the JSON text of arrays and kvlists) as a dictionary of the pair's distinct
 * values + ids when that is smaller, inline otherwise; integers as ints; doubles as 8 raw
 * bytes; booleans as bytes.
 *
 * Indexes, read without any data column: the trace-ID table in pages of 1024 sorted
 * distinct IDs (raw blocks), with a postings block per page (for each trace, its ascending
 * row numbers as varint deltas); a bloom filter over trace IDs and one over tokens (7
 * hashes, 10 bits per key: about 0.8% false positives). Tokens are the lowercase ASCII
 * alphanumeric runs of 2 to 64 bytes of attribute values (strings, array and kvlist text;
 * not bytes) and of log bodies, plus every whole string attribute value of 1 to 64 bytes.
 *
 * Files are written to `<path>.tmp`, fsynced, renamed into place, and the directory is
 * fsynced: a segment is complete or absent. After cn_seg_open succeeds, every read function
 * may run on several threads at once on the same cn_seg. */
#ifndef CN_TELEMETRY_SEG_H
#define CN_TELEMETRY_SEG_H

#include "telemetry/model.h"

#define CN_SEG_VERSION    1
#define CN_SEG_HEADER     16
#define CN_SEG_TRAILER    32
#define CN_SEG_GROUP_ROWS 4096u  /* default rows per row group */
#define CN_SEG_MAX_GROUP  65536u /* largest row group accepted */
/* Default zstd level: level 3 wrote 0.5% less on bench/ingest.sh and cost 8% more sealing. */
#define CN_SEG_LEVEL     1
#define CN_SEG_MAX_TOKEN 64 /* longest token, and longest whole value, in the blooms */
#define CN_SEG_MAX_ROWS  (1u << 31)

enum cn_seg_kind { CN_SEG_SPANS = 1, CN_SEG_LOGS = 2 };

/* What a segment holds. min_ns/max_ns bound the start times (spans) or times (logs) of its
 * rows; both are 0 when it is empty. */
struct cn_seg_info {
    uint8_t kind; /* cn_seg_kind */
    uint64_t rows;
    uint64_t bytes; /* size of the file */
    uint64_t min_ns, max_ns;
    uint64_t num_traces; /* distinct non-zero trace IDs */
    uint32_t num_groups;
    uint64_t created_ns; /* wall clock when written */
};

typedef void (*cn_seg_trace_id_cb)(void *ctx, const uint8_t id[16]);

struct cn_seg_write_opts {
    int level;           /* zstd level; 0 means CN_SEG_LEVEL */
    uint32_t group_rows; /* rows per row group, 1..CN_SEG_MAX_GROUP; 0 means the default */
    int uncompressed;    /* store every block raw: for inspection and fuzzing corpora */
    /* When set, called once per distinct trace ID in ascending byte order after the file is
     * durable (never when the write fails), so the caller can map trace ID -> segment. */
    cn_seg_trace_id_cb trace_cb;
    void *trace_ctx;
};

/* Writes spans[0..n) to a new segment file at path (replacing one that exists), with the
 * default options. Records are read only; their resource and scope must not be NULL.
 * Bools are stored as 0/1; everything else comes back exactly. Besides the records, the
 * writer holds about 70 bytes a row and one row group's encoded blocks; the file is
 * written as it is encoded. On success out_info (may be NULL) describes the file. Returns
 * 0; CN_EINVAL for a record that cannot be stored (NULL resource, unknown value type, more
 * than CN_SEG_MAX_ROWS rows); CN_ELIMIT when one block would pass 256 MiB (use smaller row
 * groups); CN_ENOMEM; -errno from the file system. On failure neither path nor path.tmp is
 * left behind and err (may be NULL) says why, naming the file. */
int cn_seg_write_spans(const char *path, const struct cn_span *const *spans, size_t n,
                       struct cn_seg_info *out_info, char *err, size_t err_len);
/* Same for log records. Records with an all-zero trace ID belong to no trace. */
int cn_seg_write_logs(const char *path, const struct cn_log *const *logs, size_t n,
                      struct cn_seg_info *out_info, char *err, size_t err_len);
/* The same with options (NULL: defaults). */
int cn_seg_write_spans_opts(const char *path, const struct cn_span *const *spans, size_t n,
                            const struct cn_seg_write_opts *opts, struct cn_seg_info *out_info,
                            char *err, size_t err_len);
int cn_seg_write_logs_opts(const char *path, const struct cn_log *const *logs, size_t n,
                           const struct cn_seg_write_opts *opts, struct cn_seg_info *out_info,
                           char *err, size_t err_len);

struct cn_seg;

enum cn_seg_open_flags {
    /* Skip every checksum. For fuzzing the decoders behind the checksums; a reader of real
     * files never sets it. */
    CN_SEG_OPEN_UNVERIFIED = 1 << 0,
};

/* Opens a segment: reads the header, the trailer, the footer (checking its checksum and
 * every block reference in it) and the two bloom filters; no data block is read. Returns 0
 * with *out_seg owned by the caller (cn_seg_close); -errno when the file cannot be read;
 * CN_ESYNTAX when it is not a segment (magic, version); CN_EIO when it is damaged
 * (truncated, footer checksum mismatch, footer inconsistent); CN_ENOMEM. err names the file
 * and what is wrong, e.g. "/d/1.seg: footer checksum mismatch (stored 0123.., computed
 * 4567..)". A damaged bloom block does not fail the open: it is counted as a corrupt block
 * and that filter answers "may contain" from then on. */
int cn_seg_open(struct cn_seg **out_seg, const char *path, char *err, size_t err_len);
/* The same over a segment image in memory, which must stay unchanged until cn_seg_close. */
int cn_seg_open_mem(struct cn_seg **out_seg, const void *data, size_t len, unsigned flags,
                    char *err, size_t err_len);
/* Closes the file and frees everything; NULL does nothing. */
void cn_seg_close(struct cn_seg *seg);
/* Decompression contexts alive: each thread that read a compressed block keeps one (freed
 * when it exits), and each cursor holds one while open, whatever the number of segments. */
size_t cn_seg_dctx_live(void);

/* The bloom cache: blooms of open segments kept in memory after their first check, the least
 * recently used dropped past the budget (CN_SEG_BLOOM_CACHE bytes until set) and read again
 * at their next check. The bloom being checked is kept whatever its size. Process-wide. */
#define CN_SEG_BLOOM_CACHE (64u << 20)
struct cn_seg_cache_stats {
    size_t bytes, budget;
    uint64_t loads;     /* read from their segment (after open) */
    uint64_t evictions; /* dropped for room */
};
void cn_seg_set_bloom_cache(size_t bytes);
void cn_seg_bloom_cache_stats(struct cn_seg_cache_stats *out);

/* The footer cache: the footer's tables (each block's place, each row group's statistics,
 * each trace-index page's first ID; 16 bytes a block, ~17 blocks per 1024 spans) of open
 * segments, read at open, the least recently used dropped past the budget (CN_SEG_FOOTER_CACHE
 * bytes until set) when no read uses them, and read and checked again by the next read that
 * needs them. Tables in use are kept whatever the budget. Images in memory keep theirs.
 * Process-wide. */
#define CN_SEG_FOOTER_CACHE (64u << 20)
void cn_seg_set_footer_cache(size_t bytes);
void cn_seg_footer_cache_stats(struct cn_seg_cache_stats *out);

const struct cn_seg_info *cn_seg_info(const struct cn_seg *seg);
/* The path given to cn_seg_open, or "<memory>". */
const char *cn_seg_path(const struct cn_seg *seg);
/* Blocks found corrupt so far (each counted once). */
uint64_t cn_seg_corrupt_blocks(const struct cn_seg *seg);

/* Bloom checks: 0 when the segment surely holds no span (log) of that trace, 1 when it may.
 * A zero ID is in no trace: 0. A segment's blooms are read (and checked) at their first use
 * and kept in the bloom cache, shared by every open segment; a damaged one is counted as a
 * corrupt block and answers "may contain" from then on. */
int cn_seg_may_contain_trace(const struct cn_seg *seg, const uint8_t id[16]);
/* 0 when no row of the segment holds term: not as a whole string attribute value, and not
 * as a run of tokens (some token of term is absent). 1 when one may, and for the empty
 * term. Tokens are compared lowercased, whole values exactly. */
int cn_seg_may_contain_token(const struct cn_seg *seg, const char *token);

/* Partial results. A read that needs a corrupt block still serves every row it can from
 * other blocks (other row groups, other index pages) and then returns CN_EIO, so a caller
 * sees what survived and learns the answer is incomplete. Each corrupt block is counted and
 * logged once ("corrupt segment block" with file, block and offset). This is the one
 * exception to "a function that returns an error never calls its callback": stopping at
 * the first damaged group would lose rows that are intact. */

/* Appends the spans (for a span segment) or log records of trace id to out->spans /
 * out->logs (in row order), allocated in out->arena with every string copied there, so
 * they live as long as out and not as long as seg. Returns 0 (nothing appended when the
 * trace is absent), CN_EIO (see above: the readable rows are appended), CN_ENOMEM when
 * out->arena's budget runs out (nothing appended). Reads only the index page, the row
 * groups of that trace (just its rows are built) and the span-ID columns of the groups
 * holding its spans' parents. */
int cn_seg_trace(struct cn_seg *seg, const uint8_t id[16], struct cn_tel_batch *out);

/* Calls cb for each distinct trace ID, ascending (to rebuild a trace-ID -> segment map).
 * Returns 0 or CN_EIO (after the readable pages), CN_ENOMEM. */
int cn_seg_trace_ids(struct cn_seg *seg, cn_seg_trace_id_cb cb, void *ctx);

/* What a scan's predicate sees of a row: the columns that are cheap to decode. Pointers are
 * valid during the call only. */
struct cn_seg_row {
    uint64_t row;            /* row number in the segment */
    const uint8_t *trace_id; /* 16 bytes, all zero when none */
    const uint8_t *span_id;  /* 8 bytes */
    struct cn_slice service;
    struct cn_slice name; /* span name; log event name */
    uint64_t time_ns;     /* span start; log time */
    uint64_t duration_ns; /* spans (0 for logs; end - start, 0 if end < start) */
    uint8_t kind;         /* spans */
    uint8_t status_code;  /* spans */
    uint8_t severity;     /* logs: severity number */
};
/* Nonzero keeps the row. */
typedef int (*cn_seg_pred_cb)(void *ctx, const struct cn_seg_row *row);
/* One of span and log is set, per the segment's kind. The record and everything it points
 * to is valid until the callback returns. Nonzero stops the scan, which returns it. */
typedef int (*cn_seg_rec_cb)(void *ctx, const struct cn_span *span, const struct cn_log *log);

/* Streams the rows whose time (span start, log time) lies in [from_ns, to_ns) in row order,
 * one row group at a time: memory is bounded by one decoded row group plus the trace-ID
 * table and the span-ID columns of the groups holding parents (16 and 8 bytes a row).
 * Row groups outside the range are skipped from the footer's min/max; pred (may be NULL)
 * sees the cheap columns first, only the rows it keeps are built, and a row group none of
 * whose rows passes is not decoded further. Returns 0, cb's nonzero value, CN_EIO (see
 * above), CN_ENOMEM. */
int cn_seg_scan(struct cn_seg *seg, uint64_t from_ns, uint64_t to_ns, cn_seg_pred_cb pred,
                cn_seg_rec_cb cb, void *ctx);

/* What cn_seg_scan_where may skip whole row groups by, before their rows are decoded. A
 * filter only skips: the rows of the groups it keeps still go to pred, which must check
 * the same conditions row by row. */
struct cn_seg_filter {
    struct cn_slice service; /* ptr NULL: any; else groups holding no row of this service
                                (read from the service column alone) are skipped */
    /* Bounds of the footer's per-group statistic: span duration (spans; a duration past
     * INT64_MAX counts as 0) or severity number (logs). Groups whose [min, max] misses
     * [min_stat, max_stat] are skipped; 0 and UINT64_MAX skip nothing. */
    uint64_t min_stat, max_stat;
};

/* cn_seg_scan, skipping the row groups f rules out (f NULL: none). */
int cn_seg_scan_where(struct cn_seg *seg, uint64_t from_ns, uint64_t to_ns,
                      const struct cn_seg_filter *f, cn_seg_pred_cb pred, cn_seg_rec_cb cb,
                      void *ctx);

/* One block of a segment, for inspection tools and tests. */
struct cn_seg_block {
    char name[48]; /* "group:3/attributes", "trace-ids:0", "postings:0", "trace-bloom", ... */
    uint64_t off;  /* file offset */
    uint64_t len;  /* stored bytes, checksum included */
    uint64_t raw;  /* decoded bytes */
    uint8_t codec; /* 0 raw, 1 zstd, 2 run (see the layout above) */
};
/* Describes block i, in file order of the footer (row groups column by column, then the
 * index pages, then the blooms). Returns 0, or CN_ENOENT past the last block. */
int cn_seg_block(const struct cn_seg *seg, size_t i, struct cn_seg_block *out);

/* The outcome of a full check. */
struct cn_seg_check {
    uint64_t blocks;     /* blocks checked, the footer included */
    uint64_t bad_blocks; /* failing their checksum, decompression or decoding */
    uint64_t rows;       /* rows in intact row groups */
    uint32_t groups;
    uint32_t bad_groups;
    char msg[256]; /* the first problem, "" when none */
};

/* Reads and decodes every block of seg: checksums, decompression, the structure of every
 * column, the sort order, the footer's statistics, the trace index against the rows, the
 * trace bloom against the index. Returns 0 when all is well, CN_EIO when something is
 * damaged (out says what), CN_ENOMEM. */
int cn_seg_check(struct cn_seg *seg, struct cn_seg_check *out);
/* Opens path and checks it. Returns 0, CN_EIO, or the open's error (out->msg holds its
 * message; nothing else is set). */
int cn_seg_validate(const char *path, struct cn_seg_check *out);

#ifdef CN_SEG_INTERNAL
/* Format internals shared by seg.c, seg-write.c and seg-read.c only. */

#define CN_SEG__MAGIC      "CNSEG1\0\0"
#define CN_SEG__END_MAGIC  "CNSEGEND"
#define CN_SEG__MAX_BLOCK  (256u << 20) /* decoded size of one block */
#define CN_SEG__MAX_FOOTER (64u << 20)
#define CN_SEG__PAGE_IDS   1024u
#define CN_SEG__BLOOM_K    7
#define CN_SEG__BLOOM_BPK  10 /* bits per key */

enum { CN_SEG__RAW = 0, CN_SEG__ZSTD = 1, CN_SEG__RUN = 2 };

/* Checksum seeds: what a block is, so one read from the wrong place does not verify. */
enum {
    CN_SEG__SEC_GROUP = 1,
    CN_SEG__SEC_IDS = 2,
    CN_SEG__SEC_POSTINGS = 3,
    CN_SEG__SEC_TRACE_BLOOM = 4,
    CN_SEG__SEC_TOKEN_BLOOM = 5,
    CN_SEG__SEC_FOOTER = 6,
};

static inline uint64_t cn_seg__seed(unsigned sec, uint64_t index, unsigned col)
{
    return (uint64_t)sec << 56 | (index & 0xffffffffffull) << 8 | col;
}

/* Columns of a span row group, in file order: the cheap ones (what a scan's predicate
 * sees) first, so that each stage of reading a group is one contiguous read. */
enum {
    CN_SEG__S_TRACE,
    CN_SEG__S_SPAN_ID,
    CN_SEG__S_SERVICE,
    CN_SEG__S_NAME,
    CN_SEG__S_KIND,
    CN_SEG__S_STATUS,
    CN_SEG__S_START,
    CN_SEG__S_DURATION,
    CN_SEG__S_PARENT, /* the first of the others */
    CN_SEG__S_STATUS_MSG,
    CN_SEG__S_FLAGS,
    CN_SEG__S_TRACE_STATE,
    CN_SEG__S_SCOPE,
    CN_SEG__S_RESOURCE,
    CN_SEG__S_ATTRS,
    CN_SEG__S_EVENTS,
    CN_SEG__S_LINKS,
    CN_SEG__S_NUM
};

/* Columns of a log row group, in file order, cheap ones first. */
enum {
    CN_SEG__L_TRACE,
    CN_SEG__L_SPAN_ID,
    CN_SEG__L_SERVICE,
    CN_SEG__L_TIME,
    CN_SEG__L_SEV_NUM,
    CN_SEG__L_EVENT_NAME,
    CN_SEG__L_OBSERVED, /* the first of the others */
    CN_SEG__L_SEV_TEXT,
    CN_SEG__L_BODY,
    CN_SEG__L_ATTRS,
    CN_SEG__L_FLAGS,
    CN_SEG__L_SCOPE,
    CN_SEG__L_RESOURCE,
    CN_SEG__L_NUM
};

/* Value encodings of a string-like attribute column. */
enum { CN_SEG__INLINE = 0, CN_SEG__DICT = 1 };

/* Column name for log lines and messages. */
const char *cn_seg__col_name(unsigned kind, unsigned col);

static inline size_t cn_seg__var_put(uint8_t *dst, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        dst[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    dst[n++] = (uint8_t)v;
    return n;
}

static inline uint64_t cn_seg__zigzag(int64_t v)
{
    uint64_t u = (uint64_t)v;
    return (u << 1) ^ (0 - (u >> 63));
}

static inline int64_t cn_seg__unzigzag(uint64_t z)
{
    return (int64_t)((z >> 1) ^ (0 - (z & 1)));
}

static inline void cn_seg__put_le64(uint8_t *dst, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        dst[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t cn_seg__le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline uint32_t cn_seg__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Block checksum. */
uint64_t cn_seg__sum(const void *p, size_t len, uint64_t seed);

/* Bloom filters: nbits a multiple of 64, CN_SEG__BLOOM_K probes by double hashing. */
uint64_t cn_seg__bloom_nbits(uint64_t keys);
void cn_seg__bloom_add(uint8_t *bits, uint64_t nbits, unsigned k, uint64_t h);
int cn_seg__bloom_has(const uint8_t *bits, uint64_t nbits, unsigned k, uint64_t h);
uint64_t cn_seg__trace_hash(const uint8_t id[16]);
uint64_t cn_seg__token_hash(const void *p, size_t len);

/* Calls cb with the hash of every token of p (lowercase alphanumeric runs of 2 to
 * CN_SEG_MAX_TOKEN bytes); returns how many. cb may be NULL to count. */
typedef void (*cn_seg__token_cb)(void *ctx, uint64_t h);
size_t cn_seg__tokens(const char *p, size_t len, cn_seg__token_cb cb, void *ctx);

/* A cursor over a decoded block. Errors are sticky: reads past the end or malformed values
 * set bad and return zeros, and the caller checks bad once. */
struct cn_seg__cur {
    const uint8_t *p, *e;
    int bad;
};

static inline size_t cn_seg__left(const struct cn_seg__cur *c)
{
    return (size_t)(c->e - c->p);
}

static inline void cn_seg__bad(struct cn_seg__cur *c)
{
    c->bad = 1;
    c->p = c->e;
}

/* The multi-byte case of cn_seg__get_var. */
uint64_t cn_seg__get_var_slow(struct cn_seg__cur *c);

static inline uint64_t cn_seg__get_var(struct cn_seg__cur *c)
{
    if (CN_LIKELY(c->p < c->e && *c->p < 0x80))
        return *c->p++;
    return cn_seg__get_var_slow(c);
}

/* A count of things that take at least one byte each from here on. */
static inline uint64_t cn_seg__get_count(struct cn_seg__cur *c)
{
    uint64_t n = cn_seg__get_var(c);
    if (n > cn_seg__left(c)) {
        cn_seg__bad(c);
        return 0;
    }
    return n;
}

static inline uint32_t cn_seg__get_u32(struct cn_seg__cur *c)
{
    uint64_t v = cn_seg__get_var(c);
    if (v > UINT32_MAX)
        cn_seg__bad(c);
    return (uint32_t)v;
}

static inline uint8_t cn_seg__get_u8(struct cn_seg__cur *c)
{
    if (c->p >= c->e) {
        cn_seg__bad(c);
        return 0;
    }
    return *c->p++;
}

static inline const uint8_t *cn_seg__get_raw(struct cn_seg__cur *c, uint64_t n)
{
    if (n > cn_seg__left(c)) {
        cn_seg__bad(c);
        return NULL;
    }
    const uint8_t *p = c->p;
    c->p += n;
    return p;
}

static inline struct cn_slice cn_seg__get_str(struct cn_seg__cur *c)
{
    uint64_t n = cn_seg__get_var(c);
    const uint8_t *p = cn_seg__get_raw(c, n);
    return p ? (struct cn_slice){(const char *)p, n} : (struct cn_slice){"", 0};
}

/* Decoding the columns of a row group (seg.c), for the reader (seg-read.c). */

#define CN_SEG__GROUP_ARENA (1u << 30) /* decoded memory of one row group */

/* A decoded attribute-set column: row r's items are items[at[r]..at[r] + num[r]). */
struct cn_seg__kvs {
    uint32_t *num, *at, *dropped;
    struct cn_kv *items;
};

/* A row group being read. The reader loads the blocks into buf/len and calls
 * cn_seg__decode per column, cheap columns first (trace, span ID, service, name, kind,
 * status, start, duration for spans; trace, span ID, service, time, severity number, event
 * name for logs: later columns use start and time). Per-row arrays have an entry for every
 * row, set only for the rows sel selects (all when sel is NULL); columns are parsed whole
 * either way, so each is checked whole. Slices point into buf; everything else lives in
 * arena. */
struct cn_seg__group {
    struct cn_arena arena;
    unsigned kind;
    uint32_t g, rows, group_rows; /* row i is segment row g * group_rows + i */
    uint64_t seg_rows, num_traces;
    const uint8_t *sel;
    const uint8_t *buf[CN_SEG__S_NUM];
    size_t len[CN_SEG__S_NUM];
    uint32_t *ord;            /* trace ordinal + 1, 0 for none */
    const uint8_t *span_ids;  /* rows * 8 */
    struct cn_slice *service; /* also each row's resource's service */
    struct cn_slice *name;    /* span name; log event name */
    uint64_t *time;           /* start; log time */
    uint64_t *dur;
    const uint8_t *span_kind, *status, *sev;
    uint8_t *parents; /* rows * 8, complete where pref is UINT64_MAX */
    uint64_t *pref;   /* segment row of the parent, UINT64_MAX when none or raw */
    struct cn_slice *status_msg, *trace_state, *sev_text;
    uint64_t *observed;
    uint32_t *flags;
    struct cn_val *body;
    struct cn_seg__kvs attrs;
    struct cn_resource *res_tab;
    struct cn_scope *scope_tab;
    uint32_t *res, *scope; /* entry per row */
    uint32_t nres, nscope;
    struct cn_event *events;
    uint32_t *ev_off, *ev_dropped; /* row r's events are events[ev_off[r]..ev_off[r + 1]) */
    struct cn_link *links;
    uint32_t *ln_off, *ln_dropped;
};

void cn_seg__group_init(struct cn_seg__group *d, unsigned kind, uint32_t g, uint32_t rows,
                        uint32_t group_rows, uint64_t seg_rows, uint64_t num_traces);
/* Decodes column col from d->buf[col]. Returns 0, CN_ESYNTAX when the block is malformed
 * (a count past its end, an id past its dictionary, bytes left over...), CN_ENOMEM. */
int cn_seg__decode(struct cn_seg__group *d, unsigned col);
/* Row i (selected, every column decoded, parent resolved) as a record pointing into d. */
void cn_seg__span_at(const struct cn_seg__group *d, uint32_t i, const uint8_t *trace_id,
                     struct cn_span *out);
void cn_seg__log_at(const struct cn_seg__group *d, uint32_t i, const uint8_t *trace_id,
                    struct cn_log *out);
#endif

#endif
