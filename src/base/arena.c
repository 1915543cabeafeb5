#include "base/arena.h"

struct cn_arena_chunk {
    struct cn_arena_chunk *next;
    size_t size; /* usable bytes in data */
    size_t off;
    _Alignas(16) unsigned char data[];
};

void *cn_arena_alloc(struct cn_arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        return NULL;
    struct cn_arena_chunk *c = a->head;
    if (c && c->size - c->off >= need) {
        void *p = c->data + c->off;
        c->off += need;
        return p;
    }
    size_t size = need > a->chunk_size ? need : a->chunk_size;
    if (size + sizeof(*c) > a->max - CN_MIN(a->used, a->max))
        return NULL;
    c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->size = size;
    c->off = need;
    /* A chunk made for one large request goes behind the current one so the current
     * chunk's free space stays usable. */
    if (need > a->chunk_size && a->head) {
        c->next = a->head->next;
        a->head->next = c;
    } else {
        c->next = a->head;
        a->head = c;
    }
    a->used += sizeof(*c) + size;
    return c->data;
}

void *cn_arena_calloc(struct cn_arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = cn_arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

struct cn_slice cn_arena_dup(struct cn_arena *a, const void *p, size_t n)
{
    char *d = cn_arena_alloc(a, n + 1);
    if (!d)
        return (struct cn_slice){NULL, 0};
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return (struct cn_slice){d, n};
}

void cn_arena_release(struct cn_arena *a)
{
    struct cn_arena_chunk *c = a->head;
    while (c) {
        struct cn_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}
