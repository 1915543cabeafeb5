/* Write-ahead log of the telemetry store: every ingested body is appended here before it is
 * acknowledged. Files `<16 hex digits of the first LSN>.wal` in one directory; an LSN is the
 * byte offset of a record in the log as a whole. Record: a 12-byte header (payload length
 * u32 LE, low 32 bits of XXH3-64 of the payload, type u8, format u8, 2 zero bytes) and the
 * payload. Format 1 (byte 0, written by earlier versions) seeds the checksum with the type,
 * format 2 (byte 1) with the type and the record's LSN (lsn << 8 | type); both are read.
 *
 * While ingest goes on, a file whose records are all in segments is not unlinked but kept
 * as DIR/spare.wal (one at most), and the next file the log needs is the spare renamed and
 * written over: no page cache to drop and blocks to free when it goes, no blocks to allocate
 * as it fills. The stale records after the last one fail their check (another LSN), which
 * ends the log in the last file; a file the log leaves is cut to its records first. When
 * every record is in segments (ingest paused) and at close, the spare is unlinked too. Not
 * thread-safe: one writer thread owns it. */
#ifndef CN_TELEMETRY_WAL_H
#define CN_TELEMETRY_WAL_H

#include "base/base.h"

#define CN_WAL_HEADER 12

enum cn_wal_fsync {
    CN_WAL_FSYNC_ALWAYS = 0, /* fdatasync before every acknowledgement (group commit) */
    CN_WAL_FSYNC_NEVER,      /* page cache only: survives kill -9, not a power loss */
};

struct cn_wal_opts {
    const char *dir;
    uint64_t segment_bytes; /* roll to a new file past this size */
    uint32_t max_record;    /* largest payload accepted (and replayed) */
    enum cn_wal_fsync fsync;
    /* The log continues at least from this LSN (the store's checkpoint): after every file
     * was removed, new records must not reuse LSNs already covered by segments. */
    uint64_t min_lsn;
    /* Write with O_DIRECT where the file system takes it: a commit is copied into an aligned
     * buffer and written past the page cache, which costs a fraction of the CPU of buffered
     * writes and their writeback. The last partial block of the log is kept and written again
     * with the next commit (its bytes unchanged, so a torn rewrite loses nothing), and a
     * commit is padded with zeros to a whole block: a file the log is still in may hold up
     * to a block of zeros after its records, which replay reads as the end of the log. Where
     * O_DIRECT is refused (EINVAL), whether when the file is opened or at a write, buffered
     * writes, as with 0. */
    int direct;
    /* Block size of direct writes: 0 for 4096; a smaller power of two lets tests see a write
     * refused for its alignment. */
    uint32_t direct_align;
};

struct cn_wal_replay_stats {
    uint64_t records;
    uint64_t bytes;
    uint64_t files;
    uint64_t corrupt;   /* records failing their checksum or framing */
    uint64_t truncated; /* bytes cut from a torn tail */
};

struct cn_wal;

/* Opens (creating the directory) and finds the end of the log. The last file's torn tail,
 * if any, is cut during cn_wal_replay, which must run before the first append. */
int cn_wal_open(struct cn_wal **out_wal, const struct cn_wal_opts *opts, char *err, size_t err_len);
void cn_wal_close(struct cn_wal *w);

/* Streams every record, oldest first, through cb with a buffer reused between records
 * (memory bounded by max_record). A record whose checksum fails but whose framing holds is
 * skipped and counted as corrupt; a broken frame ends the log there when it is in the last
 * file (a torn tail, cut) and skips the rest of an older file (counted as corrupt).
 * cb returning nonzero stops the replay with that value. */
typedef int (*cn_wal_replay_cb)(void *ctx, uint64_t lsn, uint8_t type, const uint8_t *data,
                                size_t len);
int cn_wal_replay(struct cn_wal *w, cn_wal_replay_cb cb, void *ctx,
                  struct cn_wal_replay_stats *out_stats);

/* Queues a record; out_lsn receives its LSN. data is referenced, not copied: it must stay
 * unchanged until cn_wal_commit returns. Nothing is durable before cn_wal_commit. */
int cn_wal_append(struct cn_wal *w, uint8_t type, const void *data, size_t len, uint64_t *out_lsn);
/* Drops the queued records: a caller that refuses a group whose append failed midway calls
 * it, so that the records appended before the failure are not written by the next commit
 * (their data may be gone by then). */
void cn_wal_abort(struct cn_wal *w);
/* Writes the queued records and syncs them per the fsync policy. On failure (disk full:
 * -ENOSPC) the file is cut back to the last committed record, the queue is dropped, and the
 * caller refuses those records; the log stays consistent and usable. */
int cn_wal_commit(struct cn_wal *w);

/* Removes whole files whose records all lie before lsn (they are in segment files now). */
int cn_wal_truncate_before(struct cn_wal *w, uint64_t lsn);

/* Whether the file commits go to is written with O_DIRECT (known once a commit opened it). */
int cn_wal_direct(const struct cn_wal *w);
/* LSN just after the last committed record. */
uint64_t cn_wal_end(const struct cn_wal *w);
/* Bytes in the log's files. */
uint64_t cn_wal_size(const struct cn_wal *w);

#endif
