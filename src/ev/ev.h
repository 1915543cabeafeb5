/* The only code that touches libuv directly for sockets and threads: listening sockets with
 * SO_REUSEPORT, worker threads each running one loop, and cross-thread wake-ups. */
#ifndef CN_EV_H
#define CN_EV_H

#include "base/base.h"

#include <stdatomic.h>
#include <sys/socket.h>
#include <uv.h>

/* Parses "host:port" ("127.0.0.1:9000", "localhost:0", "[::1]:9000", "0.0.0.0:80").
 * Returns 0 or CN_EINVAL. */
int cn_ev_parse_addr(const char *hostport, struct sockaddr_storage *out_addr);

/* Formats an address as "host:port" into dst. */
void cn_ev_format_addr(const struct sockaddr *sa, char *dst, size_t dst_len);

/* Creates a non-blocking TCP socket with SO_REUSEADDR and SO_REUSEPORT, bound to addr and
 * listening. When addr's port is 0 the kernel picks one; the bound address is written back
 * into addr so further sockets of the same group bind the same port. Returns the fd or a
 * negative CN_E* code. */
int cn_ev_listen_socket(struct sockaddr_storage *addr, int backlog);

/* Flags posted to a worker. */
enum cn_worker_flags {
    CN_WORKER_STOP = 1 << 0,   /* stop accepting, drain, then leave the loop */
    CN_WORKER_FORCE = 1 << 1,  /* drain deadline passed: close everything now */
    CN_WORKER_RELOAD = 1 << 2, /* a new configuration is waiting */
};

struct cn_worker;
typedef void (*cn_worker_cb)(struct cn_worker *w);
typedef void (*cn_worker_wake_cb)(struct cn_worker *w, int flags);

/* One thread running one libuv loop. States: created -> running (thread started, setup_cb
 * ran on the thread) -> stopped (loop returned, teardown_cb ran) -> joined. */
struct cn_worker {
    int id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;
    atomic_int posted; /* cn_worker_flags not yet seen by the worker */
    cn_worker_cb setup_cb;
    cn_worker_cb teardown_cb;
    cn_worker_wake_cb wake_cb;
    void *data;
    int setup_rc; /* set by setup_cb: nonzero makes cn_worker_start fail */
    uv_sem_t ready;
};

/* Starts the thread; returns after setup_cb has run on it. Returns 0 or a CN_E* code. */
int cn_worker_start(struct cn_worker *w, int id, cn_worker_cb setup_cb, cn_worker_wake_cb wake_cb,
                    cn_worker_cb teardown_cb, void *data);
/* Thread-safe: ORs flags into the worker's mailbox and wakes its loop. */
void cn_worker_post(struct cn_worker *w, int flags);
/* Waits for the thread to finish and releases the loop. */
void cn_worker_join(struct cn_worker *w);
/* Closes every handle on the loop (after its users closed theirs). Call on the worker. */
void cn_worker_close_wake(struct cn_worker *w);

/* Number of usable cores. */
int cn_ev_num_cores(void);

#endif
