#include "ev/sendq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SENDQ_ENTRIES 256

static void on_check(uv_check_t *h)
{
    cn_sendq_flush(h->data);
}

static void on_prepare(uv_prepare_t *h)
{
    cn_sendq_flush(h->data);
}

int cn_sendq_init(struct cn_sendq *q, uv_loop_t *loop)
{
    memset(q, 0, sizeof(*q));
    q->head.next = q->head.prev = &q->head;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    /* SUBMIT_ALL: one send that fails does not stop the ones after it (Linux 5.18). */
    p.flags = IORING_SETUP_SUBMIT_ALL;
    int rc = io_uring_queue_init_params(SENDQ_ENTRIES, &q->ring, &p);
    if (rc < 0)
        return rc == -ENOMEM ? CN_ENOMEM : CN_EINVAL;
    if (!(p.features & IORING_FEAT_NODROP)) { /* a completion is never lost (Linux 5.5) */
        io_uring_queue_exit(&q->ring);
        return CN_EINVAL;
    }
    q->entries = p.sq_entries;
    q->batch = calloc(q->entries, sizeof(*q->batch));
    if (!q->batch) {
        io_uring_queue_exit(&q->ring);
        return CN_ENOMEM;
    }
    q->on = 1;
    uv_check_init(loop, &q->check);
    q->check.data = q;
    uv_check_start(&q->check, on_check);
    uv_unref((uv_handle_t *)&q->check);
    uv_prepare_init(loop, &q->prepare);
    q->prepare.data = q;
    uv_prepare_start(&q->prepare, on_prepare);
    uv_unref((uv_handle_t *)&q->prepare);
    return 0;
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

/* Hands every queued entry back unsent (-EAGAIN): the owner writes it another way. */
static void drain_list(struct cn_sendq *q)
{
    while (q->head.next != &q->head) {
        struct cn_sendq_ent *e = q->head.next;
        cn_sendq_cancel(e);
        e->sub_len = e->buf->len;
        e->done(e, -EAGAIN);
    }
}

static void hand_back(struct cn_sendq *q, unsigned from, unsigned n, ssize_t res)
{
    for (unsigned i = from; i < n; i++) {
        struct cn_sendq_ent *e = q->batch[i];
        q->batch[i] = NULL;
        if (e) {
            e->state = 0;
            e->done(e, res);
        }
    }
}

/* Submits up to q->entries queued sends, waits for their completions (MSG_DONTWAIT: they
 * complete inside the call) and runs the callbacks. */
static void flush_some(struct cn_sendq *q)
{
    unsigned n = 0;
    while (q->head.next != &q->head && n < q->entries) {
        struct io_uring_sqe *s = io_uring_get_sqe(&q->ring);
        if (!s)
            break;
        struct cn_sendq_ent *e = q->head.next;
        e->prev->next = e->next;
        e->next->prev = e->prev;
        e->state = 2;
        e->slot = n;
        e->sub_len = e->buf->len;
        q->batch[n] = e;
        io_uring_prep_send(s, e->fd, e->buf->ptr, e->sub_len < (1u << 30) ? e->sub_len : (1u << 30),
                           MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, n);
        n++;
    }
    if (n == 0)
        return;
    int rc;
    do
        rc = io_uring_submit_and_wait(&q->ring, n);
    while (rc == -EINTR);
    unsigned submitted = rc > 0 ? (unsigned)rc : 0;
    unsigned done = 0;
    /* Completions: every submitted send has one (NODROP), posted inside the submit. */
    while (done < submitted) {
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(&q->ring, &cqe) != 0) {
            do
                rc = io_uring_wait_cqe(&q->ring, &cqe);
            while (rc == -EINTR);
            if (rc < 0)
                break;
        }
        uint64_t slot = io_uring_cqe_get_data64(cqe);
        ssize_t res = cqe->res;
        io_uring_cqe_seen(&q->ring, cqe);
        done++;
        if (slot >= n)
            continue;
        struct cn_sendq_ent *e = q->batch[slot];
        q->batch[slot] = NULL;
        if (!e)
            continue;
        e->state = 0;
        e->done(e, res);
    }
    if (submitted < n || done < submitted) {
        /* The kernel refused part of the submission (out of memory) or a wait failed: the
         * ring's state is no longer known, so the queue turns itself off. Sends it did not
         * take are handed back unsent (-EAGAIN), and the owners write them another way;
         * a submitted send whose completion is unknown reports -EIO. */
        q->on = 0;
        hand_back(q, submitted, n, -EAGAIN);
        hand_back(q, 0, submitted, -EIO);
        drain_list(q);
    }
}

void cn_sendq_flush(struct cn_sendq *q)
{
    if (!q->on)
        return;
    /* Callbacks may queue more (a pipelined request answered at once): bounded rounds. */
    for (int round = 0; round < 8 && q->on && q->head.next != &q->head; round++)
        flush_some(q);
}

void cn_sendq_close(struct cn_sendq *q)
{
    if (!q->batch)
        return; /* never set up */
    cn_sendq_flush(q);
    q->on = 0; /* callbacks below see the queue off and send directly */
    drain_list(q);
    if (!uv_is_closing((uv_handle_t *)&q->check))
        uv_close((uv_handle_t *)&q->check, NULL);
    if (!uv_is_closing((uv_handle_t *)&q->prepare))
        uv_close((uv_handle_t *)&q->prepare, NULL);
    io_uring_queue_exit(&q->ring);
    free(q->batch);
    q->batch = NULL;
}
