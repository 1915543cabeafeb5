/* Bump allocator for request- and batch-lifetime memory: everything is freed at once. */
#ifndef CN_ARENA_H
#define CN_ARENA_H

#include "base/base.h"

struct cn_arena_chunk;

/* States: empty (no chunk) until the first allocation; used <= max always. An allocation
 * that would pass max fails (NULL) and leaves the arena as it was. */
struct cn_arena {
    struct cn_arena_chunk *head;
    size_t used; /* bytes held in chunks, headers included */
    size_t max;
    size_t chunk_size;
};

static inline void cn_arena_init(struct cn_arena *a, size_t chunk_size, size_t max)
{
    a->head = NULL;
    a->used = 0;
    a->max = max;
    a->chunk_size = chunk_size;
}

/* Returns n bytes aligned to 16, or NULL past max or on allocation failure. */
void *cn_arena_alloc(struct cn_arena *a, size_t n);
/* Zeroed variant. */
void *cn_arena_calloc(struct cn_arena *a, size_t count, size_t size);
/* Copies s into the arena (NUL-terminated too). Returns a slice into the arena, or a slice
 * with ptr NULL on failure. */
struct cn_slice cn_arena_dup(struct cn_arena *a, const void *p, size_t n);
/* Frees every chunk; the arena is empty and reusable. */
void cn_arena_release(struct cn_arena *a);

#endif
