/* Trace map files: the trace-ID -> segment map of one ingest day, on disk. The store keeps
 * the map of recent days in memory and moves an older day's entries into a file in that day's
 * partition (DIR/parts/YYYY-MM-DD/traces.map), so that its memory does not grow with what is
 * kept on disk. A lookup reads one block of each day's file (pread, 4 KiB); the file's first
 * keys of its blocks are in memory (4 bytes per 512 entries).
 *
 * Format (little endian):
 *   "CNTMAP01", u64 entries, u64 covered, u64 0,
 *   covered x u32: the segments (their sequence numbers) whose trace IDs the file holds,
 *                  strictly increasing,
 *   entries x (u32 key, u32 seq): strictly increasing by (key, seq),
 *   u64 XXH3_64bits of everything before.
 * A key is 32 bits of the trace ID's hash (never 0); the store asks every listed segment,
 * so a shared key costs a bloom check, never a wrong answer. Open reads the whole file and
 * refuses one whose checksum, size or order is wrong. */
#ifndef CN_TELEMETRY_TMAPF_H
#define CN_TELEMETRY_TMAPF_H

#include <stddef.h>
#include <stdint.h>

#define CN_TMAPF_NAME  "traces.map"
#define CN_TMAPF_BLOCK 512u /* entries a lookup reads at most per block (4 KiB) */

struct cn_tmapf_entry {
    uint32_t key, seq;
};

struct cn_tmapf;

/* Writes path (via path.tmp, fsync, rename, fsync of the directory). Sorts e and covered
 * and drops duplicates (both are changed). Returns 0 or a negative error, with err set. */
int cn_tmapf_write(const char *path, struct cn_tmapf_entry *e, size_t n, uint32_t *covered,
                   size_t ncov, char *err, size_t err_len);

/* Opens and checks path. Returns 0, CN_EIO (damaged: err says how), or another error. */
int cn_tmapf_open(struct cn_tmapf **out, const char *path, char *err, size_t err_len);
/* The same on an open descriptor, which the map takes (closed on failure too). flags:
 * CN_TMAPF_OPEN_UNVERIFIED skips the checksum (sizes and order are still checked), so that
 * the fuzz target's mutations reach the lookups. */
#define CN_TMAPF_OPEN_UNVERIFIED 1u
int cn_tmapf_open_fd(struct cn_tmapf **out, int fd, unsigned flags, char *err, size_t err_len);
void cn_tmapf_close(struct cn_tmapf *f);

/* Calls fn for the seq of each entry with key. Returns 0 or CN_EIO (a read failed). */
int cn_tmapf_find(const struct cn_tmapf *f, uint32_t key, void (*fn)(void *ctx, uint32_t seq),
                  void *ctx);
/* Calls fn for every entry in order. Returns 0, CN_EIO, CN_ENOMEM. */
int cn_tmapf_each(const struct cn_tmapf *f, void (*fn)(void *ctx, const struct cn_tmapf_entry *e),
                  void *ctx);
/* 1 when the file holds the trace IDs of segment seq. */
int cn_tmapf_covers(const struct cn_tmapf *f, uint32_t seq);

size_t cn_tmapf_entries(const struct cn_tmapf *f);
/* How many segments the file holds the trace IDs of. */
size_t cn_tmapf_num_covered(const struct cn_tmapf *f);
uint64_t cn_tmapf_file_bytes(const struct cn_tmapf *f);
/* Memory the open map holds (covered list and block keys). */
size_t cn_tmapf_mem_bytes(const struct cn_tmapf *f);

#endif
