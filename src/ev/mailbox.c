#include "ev/mailbox.h"

#include <stddef.h>

static void drain(struct cn_mailbox *mb)
{
    uv_mutex_lock(&mb->lock);
    struct cn_mail *m = mb->head;
    mb->head = mb->tail = NULL;
    uv_mutex_unlock(&mb->lock);
    while (m) {
        struct cn_mail *next = m->next;
        m->cb(m);
        m = next;
    }
}

static void on_async(uv_async_t *a)
{
    drain(a->data);
}

int cn_mailbox_init(struct cn_mailbox *mb, uv_loop_t *loop)
{
    mb->head = mb->tail = NULL;
    int rc = uv_mutex_init(&mb->lock);
    if (rc)
        return rc;
    rc = uv_async_init(loop, &mb->async, on_async);
    if (rc) {
        uv_mutex_destroy(&mb->lock);
        return rc;
    }
    mb->async.data = mb;
    return 0;
}

void cn_mailbox_post(struct cn_mailbox *mb, struct cn_mail *m)
{
    m->next = NULL;
    uv_mutex_lock(&mb->lock);
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    uv_mutex_unlock(&mb->lock);
    uv_async_send(&mb->async);
}

static void on_closed(uv_handle_t *h)
{
    struct cn_mailbox *mb = h->data;
    drain(mb);
    uv_mutex_destroy(&mb->lock);
}

void cn_mailbox_close(struct cn_mailbox *mb)
{
    uv_close((uv_handle_t *)&mb->async, on_closed);
}
