/* Figures about this process, read from /proc. */
#ifndef CN_PROC_H
#define CN_PROC_H

#include "base/base.h"

struct cn_proc_stats {
    double cpu_seconds; /* user + system */
    uint64_t rss_bytes;
    uint64_t vsize_bytes;
    uint64_t open_fds;
    uint64_t max_fds;
    uint64_t threads;
    double start_time; /* unix seconds */
};

/* Fills out; returns 0 or CN_EIO when /proc cannot be read (fields then stay 0). */
int cn_proc_stats_read(struct cn_proc_stats *out);

/* Raises the soft limit of open files to the hard one (2^20, the kernel's default nr_open,
 * when the hard one is unlimited). *from and *to receive the soft limit before and after.
 * Returns 0 or -errno (the limit unchanged). */
int cn_proc_raise_nofile(uint64_t *from, uint64_t *to);

#endif
