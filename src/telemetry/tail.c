/* Live tail of log records (tail.h). */
#include "telemetry/tail.h"

/* States: linked in the hub's list from subscribe until unsubscribe; after unsubscribe the
 * async handle closes and the close callback frees the struct. pending and dropped are
 * guarded by lock (the writer thread appends, the loop takes). */
struct cn_tail_sub {
    struct cn_tail *hub;
    struct cn_tail_sub *prev, *next;
    uv_async_t async;
    uv_mutex_t lock;
    struct cn_buf pending;
    uint64_t dropped;
    const struct cn_log_query *q;
    void (*q_free)(void *);
    void *q_data;
    struct cn_code_links *cl;
    cn_tail_cb cb;
    void *data;
};

struct cn_tail {
    uv_mutex_t lock; /* guards the list */
    struct cn_tail_sub *subs;
    size_t num;
};

struct cn_tail *cn_tail_new(void)
{
    struct cn_tail *t = calloc(1, sizeof(*t));
    if (t && uv_mutex_init(&t->lock) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void cn_tail_free(struct cn_tail *t)
{
    if (!t)
        return;
    CN_BUG_ON(t->subs != NULL);
    uv_mutex_destroy(&t->lock);
    free(t);
}

size_t cn_tail_subscribers(struct cn_tail *t)
{
    uv_mutex_lock(&t->lock);
    size_t n = t->num;
    uv_mutex_unlock(&t->lock);
    return n;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return cn_buf_append(data, buf, size) == 0 ? 0 : -1;
}

void cn_tail_publish(void *ctx, const struct cn_tel_batch *b)
{
    struct cn_tail *t = ctx;
    if (b->num_logs == 0)
        return;
    uv_mutex_lock(&t->lock);
    struct cn_buf line;
    cn_buf_init(&line, 1u << 20);
    for (struct cn_tail_sub *s = t->subs; s; s = s->next) {
        uint64_t added = 0, dropped = 0;
        for (size_t i = 0; i < b->num_logs; i++) {
            const struct cn_log *l = &b->logs[i];
            if (!cn_query_log_matches(s->q, l))
                continue;
            json_t *j = cn_query_render_log(s->cl, l);
            cn_buf_reset(&line);
            int rc = !j || json_dump_callback(j, dump_cb, &line, JSON_COMPACT) != 0 ||
                     cn_buf_append(&line, "\n", 1) != 0;
            json_decref(j);
            uv_mutex_lock(&s->lock);
            if (rc || cn_buf_append(&s->pending, line.ptr, line.len) != 0) {
                s->dropped++;
                dropped++;
            } else {
                added++;
            }
            uv_mutex_unlock(&s->lock);
        }
        if (added || dropped)
            uv_async_send(&s->async);
    }
    cn_buf_release(&line);
    uv_mutex_unlock(&t->lock);
}

static void on_async(uv_async_t *a)
{
    struct cn_tail_sub *s = a->data;
    if (s->cb)
        s->cb(s, s->data);
}

struct cn_tail_sub *cn_tail_subscribe(struct cn_tail *t, uv_loop_t *loop,
                                      const struct cn_log_query *q, void (*q_free)(void *),
                                      void *q_data, struct cn_code_links *cl,
                                      size_t max_pending_bytes, cn_tail_cb cb, void *data)
{
    struct cn_tail_sub *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (uv_mutex_init(&s->lock) != 0) {
        free(s);
        return NULL;
    }
    if (uv_async_init(loop, &s->async, on_async) != 0) {
        uv_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    s->async.data = s;
    s->hub = t;
    cn_buf_init(&s->pending, max_pending_bytes);
    s->q = q;
    s->q_free = q_free;
    s->q_data = q_data;
    s->cl = cl;
    s->cb = cb;
    s->data = data;
    uv_mutex_lock(&t->lock);
    s->next = t->subs;
    if (t->subs)
        t->subs->prev = s;
    t->subs = s;
    t->num++;
    uv_mutex_unlock(&t->lock);
    return s;
}

void cn_tail_take(struct cn_tail_sub *s, struct cn_buf *out, uint64_t *out_dropped)
{
    uv_mutex_lock(&s->lock);
    size_t n = s->pending.len;
    if (out->max - out->len < n) {
        /* Whole lines only. */
        n = out->max - out->len;
        while (n && s->pending.ptr[n - 1] != '\n')
            n--;
    }
    if (n && cn_buf_append(out, s->pending.ptr, n) == 0)
        cn_buf_consume(&s->pending, n);
    *out_dropped = s->dropped;
    s->dropped = 0;
    uv_mutex_unlock(&s->lock);
}

static void on_closed(uv_handle_t *h)
{
    struct cn_tail_sub *s = h->data;
    cn_buf_release(&s->pending);
    uv_mutex_destroy(&s->lock);
    if (s->q_free)
        s->q_free(s->q_data);
    cn_code_links_free(s->cl);
    free(s);
}

void cn_tail_unsubscribe(struct cn_tail_sub *s)
{
    struct cn_tail *t = s->hub;
    uv_mutex_lock(&t->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        t->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    t->num--;
    uv_mutex_unlock(&t->lock);
    s->cb = NULL;
    uv_close((uv_handle_t *)&s->async, on_closed);
}
