/* Batched socket sends: connections queue a send during a loop iteration and the queue
 * submits them all in one io_uring_enter(2) (liburing) after the poll phase (and before it, for
 * what timers and libuv's deferred callbacks queued), instead of one send(2) each. Every send is
 * MSG_DONTWAIT: it completes (or fails with EAGAIN) inside the submit, so the entries' callbacks
 * run before cn_sendq_flush returns and nothing stays in flight.
 *
 * An entry names a socket and a buffer; the buffer's ptr and len are read at submit time, so
 * bytes appended to it after queueing go out in the same send. States: idle -> queued
 * (cn_sendq_add) -> idle (its done callback ran, or cn_sendq_cancel). Without io_uring (old
 * kernel, seccomp, io_uring_disabled) cn_sendq_init fails and callers send directly. */
#ifndef CN_SENDQ_H
#define CN_SENDQ_H

#include "base/buf.h"

#include <liburing.h>
#include <sys/types.h>
#include <uv.h>

struct cn_sendq_ent;
/* res: bytes sent (may be short), or a negative errno (-EAGAIN: the socket took nothing). */
typedef void (*cn_sendq_done_cb)(struct cn_sendq_ent *e, ssize_t res);

struct cn_sendq;
struct cn_sendq_ent {
    struct cn_sendq_ent *next, *prev;
    struct cn_sendq *q;
    struct cn_buf *buf;
    cn_sendq_done_cb done;
    size_t sub_len; /* bytes of buf submitted (valid in done) */
    int fd;
    unsigned state; /* 0 idle, 1 queued, 2 submitted (slot names its batch entry) */
    unsigned slot;
};

struct cn_sendq {
    uv_check_t check;     /* after the poll phase: what its callbacks queued */
    uv_prepare_t prepare; /* before it: what timers and deferred write callbacks queued */
    struct io_uring ring;
    int on;                      /* the ring is set up and usable */
    unsigned entries;            /* submission queue entries: the most sends in one submit */
    struct cn_sendq_ent head;    /* list sentinel */
    struct cn_sendq_ent **batch; /* the entries of the submission being reaped */
};

/* Sets up the ring and the check handle (unreferenced) on loop. Returns 0, or a CN_E* code
 * when io_uring is not available (then the queue must not be used; cn_sendq_close is safe).
 * A queue turns itself off (cn_sendq_active 0) when the kernel refuses a submission: what it
 * did not take is handed back with -EAGAIN, and callers send directly from then on. */
int cn_sendq_init(struct cn_sendq *q, uv_loop_t *loop);
/* Queues e (fd, buf and done set by the caller); no-op when queued, and when submitted and its
 * callback has yet to run (the callback sees the buffer as it is then). */
void cn_sendq_add(struct cn_sendq *q, struct cn_sendq_ent *e);
/* Takes e off the queue; its callback will not run (a submitted send may have gone out). */
void cn_sendq_cancel(struct cn_sendq_ent *e);
/* Submits everything queued now, callbacks included (they may queue more: sent too). */
void cn_sendq_flush(struct cn_sendq *q);
/* Releases the ring and closes the check handle. Call on the loop's thread. */
void cn_sendq_close(struct cn_sendq *q);

static inline int cn_sendq_active(const struct cn_sendq *q)
{
    return q->on;
}

#endif
