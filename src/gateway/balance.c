/* Load balancing: round robin, smooth weighted round robin, least request with two random
 * choices, and a consistent-hash ring (GW_RING_POINTS_PER_WEIGHT points per unit of weight,
 * so removing an endpoint moves only the keys it owned). */
#include "gateway/internal.h"

size_t gw_swrr(int64_t *current, const uint32_t *weights, size_t stride, size_t n, uint64_t total)
{
    /* nginx's smooth weighted round robin: add each weight, take the largest, subtract the
     * total from it. Weight-0 entries are never picked. */
    size_t best = 0;
    int64_t best_v = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        uint32_t w = *(const uint32_t *)((const char *)weights + i * stride);
        if (!w)
            continue;
        current[i] += w;
        if (current[i] > best_v) {
            best_v = current[i];
            best = i;
        }
    }
    current[best] -= (int64_t)total;
    return best;
}

static int cmp_point(const void *pa, const void *pb)
{
    const struct gw_ring_point *a = pa, *b = pb;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    return a->ep < b->ep ? -1 : a->ep > b->ep;
}

int gw_ring_build(struct cn_gw_snapshot *snap, struct gw_cluster *cl)
{
    size_t total = 0;
    for (size_t i = 0; i < cl->num_eps; i++)
        total += (size_t)cl->eps[i].weight * GW_RING_POINTS_PER_WEIGHT;
    cl->ring = cn_arena_alloc(&snap->arena, total * sizeof(*cl->ring));
    if (!cl->ring)
        return CN_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < cl->num_eps; i++) {
        /* Points depend on the endpoint's address only, not on its position in the list. */
        char key[160];
        for (size_t p = 0; p < (size_t)cl->eps[i].weight * GW_RING_POINTS_PER_WEIGHT; p++) {
            int n = snprintf(key, sizeof(key), "%.*s#%zu", (int)cl->eps[i].name.len,
                             cl->eps[i].name.ptr, p);
            cl->ring[k++] = (struct gw_ring_point){gw_hash(key, (size_t)n), (uint32_t)i};
        }
    }
    qsort(cl->ring, k, sizeof(*cl->ring), cmp_point);
    cl->ring_len = k;
    return 0;
}

uint32_t gw_ring_lookup(const struct gw_cluster *cl, uint64_t h)
{
    size_t lo = 0, hi = cl->ring_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cl->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == cl->ring_len)
        lo = 0;
    return cl->ring[lo].ep;
}

uint32_t gw_lb_pick(const struct gw_cluster *cl, struct gw_lb_state *st, uint64_t *rng,
                    const char *key, size_t key_len)
{
    size_t n = cl->num_eps;
    if (n == 1)
        return 0;
    switch (cl->policy) {
    case GW_LB_ROUND_ROBIN:
        return (uint32_t)(st->rr++ % n);
    case GW_LB_WEIGHTED: {
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += cl->eps[i].weight;
        return (uint32_t)gw_swrr(st->current, &cl->eps[0].weight, sizeof(cl->eps[0]), n, total);
    }
    case GW_LB_LEAST_REQUEST: {
        /* Power of two choices: two distinct random endpoints, the one with fewer requests
         * in flight (weighted: active / weight compared by cross-multiplying). */
        uint32_t a = (uint32_t)(gw_rand(rng) % n);
        uint32_t b = (uint32_t)(gw_rand(rng) % (n - 1));
        if (b >= a)
            b++;
        uint64_t la = (uint64_t)st->active[a] * cl->eps[b].weight;
        uint64_t lb = (uint64_t)st->active[b] * cl->eps[a].weight;
        return lb < la ? b : a;
    }
    case GW_LB_HASH:
        if (!key)
            return (uint32_t)(gw_rand(rng) % n);
        return gw_ring_lookup(cl, gw_hash(key, key_len));
    }
    return 0;
}

uint32_t gw_lb_pick_up(const struct gw_cluster *cl, struct gw_lb_state *st, uint64_t *rng,
                       const char *key, size_t key_len, uint64_t now_ms, int64_t avoid)
{
    uint32_t e = gw_lb_pick(cl, st, rng, key, key_len);
    if ((int64_t)e != avoid && !gw_ep_down(cl, e, now_ms))
        return e; /* the common case: one load of the endpoint's flags */
    size_t n = cl->num_eps;
    /* The policy again (round robin moves on, least request draws again), then the next
     * endpoints in order: a hash key keeps going to the same replacement. */
    for (size_t i = 0; i < n && cl->policy != GW_LB_HASH; i++) {
        uint32_t x = gw_lb_pick(cl, st, rng, key, key_len);
        if ((int64_t)x != avoid && !gw_ep_down(cl, x, now_ms))
            return x;
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t x = (uint32_t)((e + i) % n);
        if ((int64_t)x != avoid && !gw_ep_down(cl, x, now_ms))
            return x;
    }
    if (avoid >= 0 && !gw_ep_down(cl, (uint32_t)avoid, now_ms))
        return (uint32_t)avoid;
    if ((int64_t)e == avoid && n > 1)
        return (uint32_t)((e + 1) % n); /* all down: at least not the same one again */
    return e;
}
