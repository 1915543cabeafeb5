#include "ev/sendq.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SENDQ_ENTRIES 256

static int uring_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int uring_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, NULL, 0);
}

static void on_check(uv_check_t *h)
{
    cn_sendq_flush(h->data);
}

static void on_prepare(uv_prepare_t *h)
{
    cn_sendq_flush(h->data);
}

static void unmap_all(struct cn_sendq *q)
{
    if (q->sqe_map)
        munmap(q->sqe_map, q->sqe_map_len);
    if (q->cq_map && q->cq_map != q->sq_map)
        munmap(q->cq_map, q->cq_map_len);
    if (q->sq_map)
        munmap(q->sq_map, q->sq_map_len);
    q->sqe_map = q->cq_map = q->sq_map = NULL;
}

int cn_sendq_init(struct cn_sendq *q, uv_loop_t *loop)
{
    memset(q, 0, sizeof(*q));
    q->ring_fd = -1;
    q->head.next = q->head.prev = &q->head;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SUBMIT_ALL;
    int fd = uring_setup(SENDQ_ENTRIES, &p);
    if (fd < 0)
        return -errno;
    if (!(p.features & IORING_FEAT_NODROP)) {
        close(fd);
        return CN_EINVAL;
    }
    q->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    q->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single && q->cq_map_len > q->sq_map_len)
        q->sq_map_len = q->cq_map_len;
    q->sq_map = mmap(NULL, q->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_SQ_RING);
    if (q->sq_map == MAP_FAILED) {
        q->sq_map = NULL;
        goto fail;
    }
    if (single) {
        q->cq_map = q->sq_map;
    } else {
        q->cq_map = mmap(NULL, q->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                         IORING_OFF_CQ_RING);
        if (q->cq_map == MAP_FAILED) {
            q->cq_map = NULL;
            goto fail;
        }
    }
    q->sqe_map_len = p.sq_entries * sizeof(struct io_uring_sqe);
    q->sqe_map = mmap(NULL, q->sqe_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                      IORING_OFF_SQES);
    if (q->sqe_map == MAP_FAILED) {
        q->sqe_map = NULL;
        goto fail;
    }
    char *sq = q->sq_map, *cq = q->cq_map;
    q->sq_head = (unsigned *)(sq + p.sq_off.head);
    q->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    q->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    q->sq_array = (unsigned *)(sq + p.sq_off.array);
    q->cq_head = (unsigned *)(cq + p.cq_off.head);
    q->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    q->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    q->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    q->sqes = q->sqe_map;
    q->entries = p.sq_entries;
    q->batch = calloc(q->entries, sizeof(*q->batch));
    if (!q->batch)
        goto fail;
    q->ring_fd = fd;
    uv_check_init(loop, &q->check);
    q->check.data = q;
    uv_check_start(&q->check, on_check);
    uv_unref((uv_handle_t *)&q->check);
    uv_prepare_init(loop, &q->prepare);
    q->prepare.data = q;
    uv_prepare_start(&q->prepare, on_prepare);
    uv_unref((uv_handle_t *)&q->prepare);
    return 0;
fail:
    unmap_all(q);
    close(fd);
    return CN_ENOMEM;
}

void cn_sendq_add(struct cn_sendq *q, struct cn_sendq_ent *e)
{
    if (e->state)
        return;
    e->q = q;
    e->state = 1;
    e->prev = q->head.prev;
    e->next = &q->head;
    q->head.prev->next = e;
    q->head.prev = e;
}

void cn_sendq_cancel(struct cn_sendq_ent *e)
{
    if (e->state == 1) {
        e->prev->next = e->next;
        e->next->prev = e->prev;
    } else if (e->state == 2) {
        e->q->batch[e->slot] = NULL;
    }
    e->state = 0;
}

/* Submits up to q->entries queued sends, waits for their completions (MSG_DONTWAIT: they
 * complete inside the call) and runs the callbacks. */
static void flush_some(struct cn_sendq *q)
{
    unsigned tail = *q->sq_tail, mask = *q->sq_mask, n = 0;
    while (q->head.next != &q->head && n < q->entries) {
        struct cn_sendq_ent *e = q->head.next;
        e->prev->next = e->next;
        e->next->prev = e->prev;
        e->state = 2;
        e->slot = n;
        e->sub_len = e->buf->len;
        q->batch[n] = e;
        unsigned i = (tail + n) & mask;
        struct io_uring_sqe *s = &q->sqes[i];
        memset(s, 0, sizeof(*s));
        s->opcode = IORING_OP_SEND;
        s->fd = e->fd;
        s->addr = (uint64_t)(uintptr_t)e->buf->ptr;
        s->len = (uint32_t)(e->sub_len < (1u << 30) ? e->sub_len : (1u << 30));
        s->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
        s->user_data = n;
        q->sq_array[i] = i;
        n++;
    }
    if (n == 0)
        return;
    atomic_store_explicit((_Atomic unsigned *)q->sq_tail, tail + n, memory_order_release);
    unsigned done = 0, submitted = 0;
    for (int tries = 0; submitted < n && tries < 4; tries++) {
        int rc = uring_enter(q->ring_fd, n - submitted, n - submitted, IORING_ENTER_GETEVENTS);
        if (rc > 0)
            submitted += (unsigned)rc;
        else if (rc == 0 || (errno != EINTR && errno != EAGAIN && errno != EBUSY))
            break;
    }
    if (submitted < n) {
        /* The kernel did not take the rest: withdraw them from the ring (it consumes entries
         * in order, only inside io_uring_enter) and hand them back unsent below. */
        atomic_store_explicit((_Atomic unsigned *)q->sq_tail, tail + submitted,
                              memory_order_release);
        for (unsigned i = submitted; i < n; i++) {
            struct cn_sendq_ent *e = q->batch[i];
            q->batch[i] = NULL;
            if (e) {
                e->state = 0;
                e->done(e, -EAGAIN);
            }
        }
    }
    /* Completions: every submitted send has one (NODROP; GETEVENTS waited for them). */
    unsigned *ch = q->cq_head;
    for (;;) {
        unsigned h = *ch;
        unsigned t = atomic_load_explicit((_Atomic unsigned *)q->cq_tail, memory_order_acquire);
        if (h == t) {
            if (done >= submitted)
                break;
            if (uring_enter(q->ring_fd, 0, submitted - done, IORING_ENTER_GETEVENTS) < 0 &&
                errno != EINTR)
                break;
            continue;
        }
        struct io_uring_cqe cqe = q->cqes[h & *q->cq_mask];
        atomic_store_explicit((_Atomic unsigned *)ch, h + 1, memory_order_release);
        done++;
        uint64_t slot = cqe.user_data;
        if (slot >= n)
            continue;
        struct cn_sendq_ent *e = q->batch[slot];
        q->batch[slot] = NULL;
        if (!e)
            continue;
        e->state = 0;
        e->done(e, cqe.res);
    }
    /* Submitted but without a completion (a failed wait): the outcome is unknown. */
    for (unsigned i = 0; i < n; i++) {
        struct cn_sendq_ent *e = q->batch[i];
        if (!e)
            continue;
        q->batch[i] = NULL;
        e->state = 0;
        e->done(e, -EIO);
    }
}

void cn_sendq_flush(struct cn_sendq *q)
{
    if (q->ring_fd < 0)
        return;
    /* Callbacks may queue more (a pipelined request answered at once): bounded rounds. */
    for (int round = 0; round < 8 && q->head.next != &q->head; round++)
        flush_some(q);
}

void cn_sendq_close(struct cn_sendq *q)
{
    if (q->ring_fd < 0)
        return;
    cn_sendq_flush(q);
    int fd = q->ring_fd;
    q->ring_fd = -1; /* callbacks below see the queue off and send directly */
    while (q->head.next != &q->head) {
        struct cn_sendq_ent *e = q->head.next;
        cn_sendq_cancel(e);
        e->sub_len = e->buf->len;
        e->done(e, -EAGAIN); /* nothing went: the owner writes it another way */
    }
    if (!uv_is_closing((uv_handle_t *)&q->check))
        uv_close((uv_handle_t *)&q->check, NULL);
    if (!uv_is_closing((uv_handle_t *)&q->prepare))
        uv_close((uv_handle_t *)&q->prepare, NULL);
    unmap_all(q);
    close(fd);
    free(q->batch);
    q->batch = NULL;
}
