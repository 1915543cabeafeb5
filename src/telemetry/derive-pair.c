/* Service-graph edges: pairing CLIENT with SERVER and PRODUCER with CONSUMER halves across
 * batches, within a window of ingest time (derive.h has the rules). */
#include "telemetry/derive-internal.h"

#define XXH_INLINE_ALL /* short keys: the hash inlined, not a call into libxxhash */
#include <xxhash.h>

/* Attributes that name the peer of a CLIENT span, most specific first. */
static const struct cn_slice peer_attrs[] = {
    CN_SLICE_LIT("peer.service"),
    CN_SLICE_LIT("server.address"),
    CN_SLICE_LIT("net.peer.name"),
};

/* Halves sharing one key handled per pass; a larger fan-out takes more passes. */
#define MATCH_BATCH 64

/* ---- edge keys ---- */

static uint64_t edge_hash(uint32_t caller, uint32_t callee, uint8_t type, uint8_t un)
{
    uint64_t x = ((uint64_t)caller << 32 | callee) ^ ((uint64_t)(type << 1 | un) << 56);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static uint32_t edge_get(struct cn_derive *d, uint32_t caller, uint32_t callee, uint8_t type,
                         uint8_t un)
{
    uint64_t h = edge_hash(caller, callee, type, un);
    struct itab *t = &d->edge_idx;
    if (t->slots) {
        for (uint32_t i = (uint32_t)h & t->mask; t->slots[i]; i = (i + 1) & t->mask) {
            if (ITAB_TAG(t->slots[i]) != (uint32_t)h)
                continue;
            const struct edge *e = &d->edges[ITAB_ITEM(t->slots[i])];
            if (e->caller == caller && e->callee == callee && e->type == type &&
                e->uninstrumented == un)
                return ITAB_ITEM(t->slots[i]);
        }
    }
    if (d->num_edges >= d->o.max_edges) {
        d->st.edges_dropped++;
        return IDX_NONE;
    }
    if (d->num_edges == d->cap_edges) {
        uint32_t cap = d->cap_edges ? d->cap_edges * 2 : 64;
        struct edge *e = realloc(d->edges, (size_t)cap * sizeof(*e));
        if (!e)
            goto nomem;
        d->edges = e;
        d->cap_edges = cap;
    }
    if (cn_derive__itab_reserve(t, 128) != 0)
        goto nomem;
    uint32_t idx = d->num_edges++;
    d->edges[idx] = (struct edge){caller, callee, type, un};
    cn_derive__itab_put(t, h, idx);
    return idx;
nomem:
    d->st.alloc_failures++;
    return IDX_NONE;
}

/* One edge count in the bucket of t: the server (consumer) duration when known, the client
 * (producer) duration. */
static void emit(struct cn_derive *d, uint32_t caller, uint32_t callee, uint8_t type, uint8_t un,
                 uint64_t t, int has_server, uint64_t server_dur, uint64_t client_dur, int err)
{
    uint32_t e = edge_get(d, caller, callee, type, un);
    if (e == IDX_NONE)
        return;
    struct bucket *b = cn_derive__bucket_for(d, t);
    if (!b) {
        d->st.pairs_out_of_range++;
        return;
    }
    struct edge_cell *c = cn_derive__cell(d, b, &b->edge, sizeof(*c), e);
    if (!c)
        return;
    c->count++;
    c->errors += (uint32_t)(err != 0);
    if (has_server) {
        double v = (double)server_dur;
        cn_derive__sketch_add(d, b, &c->server, v, v > 0 ? cn_sketch_key(&d->skc, v) : 0);
    }
    double v = (double)client_dur;
    cn_derive__sketch_add(d, b, &c->client, v, v > 0 ? cn_sketch_key(&d->skc, v) : 0);
}

static uint32_t svc_name(const struct cn_derive *d, uint16_t svc)
{
    return d->services[svc].name;
}

/* ---- pending halves ---- */

static uint64_t key_hash(const uint8_t trace_id[16], const uint8_t id[8])
{
    uint64_t seed;
    memcpy(&seed, id, sizeof(seed));
    return XXH3_64bits_withSeed(trace_id, 16, seed);
}

static void half_remove(struct pending *p, uint32_t i)
{
    struct half *x = &p->items[i];
    uint32_t pos = x->hash & p->idx.mask;
    while (ITAB_ITEM(p->idx.slots[pos]) != i)
        pos = (pos + 1) & p->idx.mask;
    cn_derive__itab_del(&p->idx, pos);
    if (x->prev != IDX_NONE)
        p->items[x->prev].next = x->next;
    else
        p->oldest = x->next;
    if (x->next != IDX_NONE)
        p->items[x->next].prev = x->prev;
    else
        p->newest = x->prev;
    x->role = ROLE_FREE;
    x->next = p->free_head;
    p->free_head = i;
    p->used--;
}

static void resolve_peer(struct cn_derive *d, uint32_t half);

/* Ends the window of the oldest half: an unmatched CLIENT naming its peer becomes an edge to
 * that peer; anything else unmatched is counted. */
static void expire_oldest(struct cn_derive *d)
{
    struct pending *p = &d->pend;
    uint32_t i = p->oldest;
    struct half *x = &p->items[i];
    if (x->role == ROLE_CALLER && x->peer == PEER_LATER)
        resolve_peer(d, i);
    if (x->role == ROLE_CALLER) {
        if (x->matched) {
            /* A producer kept for its fan-out. */
        } else if (x->peer != NAME_NONE) {
            d->st.uninstrumented++;
            emit(d, svc_name(d, x->svc), x->peer, CN_DERIVE_EDGE_RPC, 1, x->start_ns, 0, 0,
                 x->dur_ns, x->error);
        } else {
            d->st.expired_callers++;
        }
    } else {
        d->st.expired_callees++;
    }
    half_remove(p, i);
}

void cn_derive__expire_halves(struct cn_derive *d)
{
    struct pending *p = &d->pend;
    while (p->oldest != IDX_NONE && p->items[p->oldest].expires_ns <= d->now)
        expire_oldest(d);
}

/* A free item for a new half, ending the oldest half's window past max_pending. Returns
 * IDX_NONE when memory runs out (counted). */
static uint32_t half_alloc(struct cn_derive *d)
{
    struct pending *p = &d->pend;
    if (p->used >= d->o.max_pending) {
        /* The oldest half has waited longest: the least likely to match still. */
        d->st.pending_evicted++;
        expire_oldest(d);
    }
    if (cn_derive__itab_reserve(&p->idx, 1024) != 0)
        goto nomem;
    if (p->free_head == IDX_NONE) {
        /* Every item is in use: used == cap < max_pending. */
        uint32_t cap = CN_MIN(p->cap ? p->cap * 2 : 1024, d->o.max_pending);
        CN_BUG_ON(cap <= p->cap);
        struct half *items = realloc(p->items, (size_t)cap * sizeof(*items));
        if (!items)
            goto nomem;
        /* Chain the new items, lowest first. */
        for (uint32_t i = p->cap; i < cap; i++) {
            items[i].role = ROLE_FREE;
            items[i].next = i + 1 < cap ? i + 1 : IDX_NONE;
        }
        p->items = items;
        p->free_head = p->cap;
        p->cap = cap;
    }
    uint32_t i = p->free_head;
    p->free_head = p->items[i].next;
    return i;
nomem:
    d->st.alloc_failures++;
    return IDX_NONE;
}

struct side {
    const uint8_t *trace_id, *id; /* the key */
    uint64_t hash;
    uint64_t start_ns, dur_ns;
    uint16_t svc;
    uint8_t type;
    int err;
};

/* Returns the half's index, or IDX_NONE when memory ran out (counted). */
static uint32_t half_insert(struct cn_derive *d, const struct side *sd, uint8_t role, uint32_t peer,
                            int matched)
{
    struct pending *p = &d->pend;
    uint32_t i = half_alloc(d);
    if (i == IDX_NONE)
        return IDX_NONE;
    struct half *x = &p->items[i];
    memcpy(x->trace_id, sd->trace_id, 16);
    memcpy(x->id, sd->id, 8);
    x->start_ns = sd->start_ns;
    x->dur_ns = sd->dur_ns;
    x->expires_ns = d->now + CN_MIN(d->o.pair_window_ns, UINT64_MAX - d->now);
    x->hash = (uint32_t)sd->hash;
    x->peer = peer;
    x->svc = sd->svc;
    x->role = role;
    x->type = sd->type;
    x->error = (uint8_t)(sd->err != 0);
    x->matched = (uint8_t)(matched != 0);
    x->next = IDX_NONE;
    x->prev = p->newest;
    if (p->newest != IDX_NONE)
        p->items[p->newest].next = i;
    else
        p->oldest = i;
    p->newest = i;
    p->used++;
    cn_derive__itab_put(&p->idx, sd->hash, i);
    return i;
}

/* One pass over the halves with sd's key and type: the caller waiting under it (IDX_NONE if
 * none) into *out_caller, and up to MATCH_BATCH callees into callees. Returns how many
 * callees. */
static size_t find_halves(const struct pending *p, const struct side *sd, uint32_t *out_caller,
                          uint32_t *callees)
{
    size_t n = 0;
    *out_caller = IDX_NONE;
    if (!p->idx.slots)
        return 0;
    for (uint32_t i = (uint32_t)sd->hash & p->idx.mask; p->idx.slots[i];
         i = (i + 1) & p->idx.mask) {
        if (ITAB_TAG(p->idx.slots[i]) != (uint32_t)sd->hash)
            continue;
        uint32_t it = ITAB_ITEM(p->idx.slots[i]);
        const struct half *x = &p->items[it];
        if (x->type != sd->type || memcmp(x->id, sd->id, 8) != 0 ||
            memcmp(x->trace_id, sd->trace_id, 16) != 0)
            continue;
        if (x->role == ROLE_CALLER)
            *out_caller = it;
        else if (n < MATCH_BATCH)
            callees[n++] = it;
    }
    return n;
}

/* The peer a CLIENT span names, interned; NAME_NONE when it names none. */
static uint32_t peer_of(struct cn_derive *d, const struct cn_span *s)
{
    size_t best = CN_ARRAY_LEN(peer_attrs);
    struct cn_slice val = {NULL, 0};
    for (uint32_t i = 0; i < s->attrs.num && best > 0; i++) {
        const struct cn_kv *kv = &s->attrs.items[i];
        if (kv->val.type != CN_VAL_STR || kv->val.u.s.len == 0)
            continue;
        for (size_t j = 0; j < best; j++) {
            if (cn_slice_eq(kv->key, peer_attrs[j])) {
                best = j;
                val = kv->val.u.s;
                break;
            }
        }
    }
    return val.len ? cn_derive__intern(d, val) : NAME_NONE;
}

/* A CLIENT or PRODUCER span: pairs with the callees waiting for it, then waits itself unless
 * it is a CLIENT that found its SERVER. */
static void caller(struct cn_derive *d, const struct cn_span *s, const struct side *sd)
{
    struct pending *p = &d->pend;
    uint32_t found[MATCH_BATCH], dup;
    size_t matched = 0, n = find_halves(p, sd, &dup, found);
    if (dup != IDX_NONE) {
        d->st.duplicate_halves++;
        return;
    }
    for (;;) {
        for (size_t i = 0; i < n; i++) {
            struct half x = p->items[found[i]];
            half_remove(p, found[i]);
            d->st.pairs++;
            matched++;
            emit(d, svc_name(d, sd->svc), svc_name(d, x.svc), sd->type, 0, x.start_ns, 1, x.dur_ns,
                 sd->dur_ns, sd->err || x.error);
        }
        if (n < MATCH_BATCH)
            break;
        n = find_halves(p, sd, &dup, found); /* a fan-out wider than one pass */
    }
    if (matched && sd->type == CN_DERIVE_EDGE_RPC)
        return;
    if (matched || sd->type != CN_DERIVE_EDGE_RPC || !d->o.uninstrumented_edges) {
        half_insert(d, sd, ROLE_CALLER, NAME_NONE, matched > 0);
        return;
    }
    /* The peer it names is needed only if no SERVER comes: looked up later (PEER_LATER). */
    if (!p->later && !(p->later = malloc(CHUNK_SPANS * sizeof(*p->later)))) {
        half_insert(d, sd, ROLE_CALLER, peer_of(d, s), 0);
        return;
    }
    CN_BUG_ON(p->num_later >= CHUNK_SPANS);
    uint32_t i = half_insert(d, sd, ROLE_CALLER, PEER_LATER, 0);
    if (i != IDX_NONE)
        p->later[p->num_later++] = (struct peer_later){i, s};
}

/* Whether the listed e is the latest listing of a CLIENT half still waiting for its peer:
 * a half matched and removed may have been reused, and a CLIENT sent twice listed twice. */
static int later_is(const struct pending *p, const struct peer_later *e)
{
    const struct half *x = &p->items[e->half];
    return x->role == ROLE_CALLER && x->peer == PEER_LATER &&
           memcmp(x->id, e->span->span_id, 8) == 0 &&
           memcmp(x->trace_id, e->span->trace_id, 16) == 0;
}

static void resolve_peer(struct cn_derive *d, uint32_t half)
{
    struct pending *p = &d->pend;
    for (uint32_t k = p->num_later; k-- > 0;) {
        if (p->later[k].half == half && later_is(p, &p->later[k])) {
            p->items[half].peer = peer_of(d, p->later[k].span);
            return;
        }
    }
    CN_BUG_ON(1); /* every PEER_LATER half is listed */
}

void cn_derive__resolve_peers(struct cn_derive *d)
{
    struct pending *p = &d->pend;
    /* Newest first: of two listings of one half, the later span's attributes count. */
    for (uint32_t k = p->num_later; k-- > 0;) {
        if (later_is(p, &p->later[k]))
            p->items[p->later[k].half].peer = peer_of(d, p->later[k].span);
    }
    p->num_later = 0;
}

/* A SERVER or CONSUMER span, for one key: pairs with the caller waiting for it. Returns 1
 * when it did. */
static int callee_match(struct cn_derive *d, const struct cn_span *s, const struct side *sd)
{
    struct pending *p = &d->pend;
    uint32_t found[MATCH_BATCH], c;
    find_halves(p, sd, &c, found);
    if (c == IDX_NONE)
        return 0;
    struct half *x = &p->items[c];
    d->st.pairs++;
    emit(d, svc_name(d, x->svc), svc_name(d, sd->svc), sd->type, 0, s->start_ns, 1, sd->dur_ns,
         x->dur_ns, sd->err || x->error);
    if (sd->type == CN_DERIVE_EDGE_RPC)
        half_remove(p, c);
    else
        x->matched = 1;
    return 1;
}

static int same_key(const struct side *a, const struct side *b)
{
    return memcmp(a->id, b->id, 8) == 0 && memcmp(a->trace_id, b->trace_id, 16) == 0;
}

uint64_t cn_derive__pair_key(const struct cn_span *s)
{
    switch (s->kind) {
    case CN_KIND_CLIENT:
    case CN_KIND_PRODUCER:
        return key_hash(s->trace_id, s->span_id);
    case CN_KIND_SERVER:
        return cn_id_is_zero(s->parent_id, 8) ? 0 : key_hash(s->trace_id, s->parent_id);
    default:
        return 0;
    }
}

void cn_derive__pair(struct cn_derive *d, const struct cn_span *s, uint16_t svc, uint64_t dur,
                     int err, uint64_t key)
{
    struct side sd = {.start_ns = s->start_ns, .dur_ns = dur, .svc = svc, .err = err};
    switch (s->kind) {
    case CN_KIND_CLIENT:
    case CN_KIND_PRODUCER:
        sd.type = s->kind == CN_KIND_CLIENT ? CN_DERIVE_EDGE_RPC : CN_DERIVE_EDGE_MESSAGING;
        sd.trace_id = s->trace_id;
        sd.id = s->span_id;
        sd.hash = key ? key : key_hash(sd.trace_id, sd.id);
        caller(d, s, &sd);
        break;
    case CN_KIND_SERVER:
        if (cn_id_is_zero(s->parent_id, 8))
            break;
        sd.type = CN_DERIVE_EDGE_RPC;
        sd.trace_id = s->trace_id;
        sd.id = s->parent_id;
        sd.hash = key ? key : key_hash(sd.trace_id, sd.id);
        if (!callee_match(d, s, &sd))
            half_insert(d, &sd, ROLE_CALLEE, NAME_NONE, 0);
        break;
    case CN_KIND_CONSUMER: {
        /* The parent, then the links: every key that finds its producer is a pair; when
         * none does, the span waits under each key. */
        struct side keys[1 + CN_DERIVE_MAX_CONSUMER_LINKS];
        size_t nk = 0, matched = 0;
        sd.type = CN_DERIVE_EDGE_MESSAGING;
        if (!cn_id_is_zero(s->parent_id, 8)) {
            keys[nk] = sd;
            keys[nk].trace_id = s->trace_id;
            keys[nk++].id = s->parent_id;
        }
        for (uint32_t i = 0; i < s->num_links && nk < CN_ARRAY_LEN(keys); i++) {
            const struct cn_link *l = &s->links[i];
            if (cn_id_is_zero(l->span_id, 8))
                continue;
            keys[nk] = sd;
            keys[nk].trace_id = l->trace_id;
            keys[nk].id = l->span_id;
            size_t j = 0;
            while (j < nk && !same_key(&keys[j], &keys[nk]))
                j++;
            if (j == nk)
                nk++;
        }
        for (size_t i = 0; i < nk; i++) {
            keys[i].hash = key_hash(keys[i].trace_id, keys[i].id);
            matched += (size_t)callee_match(d, s, &keys[i]);
        }
        for (size_t i = 0; i < nk && !matched; i++)
            half_insert(d, &keys[i], ROLE_CALLEE, NAME_NONE, 0);
        break;
    }
    default:
        break;
    }
}

void cn_derive__pending_release(struct pending *p)
{
    cn_free(&p->later);
    p->num_later = 0;
    cn_free(&p->items);
    cn_free(&p->idx.slots);
    p->cap = p->used = 0;
}

size_t cn_derive__pending_bytes(const struct pending *p)
{
    return (size_t)p->cap * sizeof(struct half) + (p->later ? CHUNK_SPANS * sizeof(*p->later) : 0) +
           (p->idx.slots ? ((size_t)p->idx.mask + 1) * sizeof(*p->idx.slots) : 0);
}
