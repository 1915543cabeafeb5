/* Span names per service (derive.h, "Span names"): the set of (service, span name, kind) of
 * every span, whatever RED counts, for the operation lists of the query APIs. Written under
 * the write lock by the ingest loop of derive.c; read by cn_derive_span_names
 * (derive-query.c). */
#include "telemetry/derive-internal.h"

#define XXH_INLINE_ALL /* short keys: the hash inlined, not a call into libxxhash */
#include <xxhash.h>

static uint64_t spname_hash(uint16_t svc, uint8_t kind, struct cn_slice name)
{
    return XXH3_64bits_withSeed(name.ptr, name.len, (uint64_t)svc << 3 | kind);
}

static int known(const struct cn_derive *d, uint16_t svc, uint8_t kind, struct cn_slice name,
                 uint64_t h)
{
    const struct itab *t = &d->spname_idx;
    if (!t->slots)
        return 0;
    for (uint32_t i = (uint32_t)h & t->mask; t->slots[i]; i = (i + 1) & t->mask) {
        if (ITAB_TAG(t->slots[i]) != (uint32_t)h)
            continue;
        const struct spname *e = &d->spnames[ITAB_ITEM(t->slots[i])];
        if (e->hash == h && e->svc == svc && e->kind == kind &&
            cn_slice_eq(cn_derive__name(d, e->name), name))
            return 1;
    }
    return 0;
}

uint64_t cn_derive__span_name_hash(uint16_t svc, uint8_t kind, struct cn_slice name)
{
    return spname_hash(svc, kind, name);
}

void cn_derive__span_name(struct cn_derive *d, uint16_t svc, uint8_t kind, struct cn_slice raw,
                          struct cn_slice name, uint64_t h)
{
    if (known(d, svc, kind, name, h))
        return;
    struct service *sv = &d->services[svc];
    if (sv->num_span_names >= d->o.max_span_names) {
        d->st.span_names_dropped++;
        return;
    }
    uint32_t id = cn_derive__intern(d, raw);
    if (id == NAME_NONE) {
        d->st.span_names_dropped++;
        return;
    }
    if (d->num_spnames == d->cap_spnames) {
        uint32_t cap = d->cap_spnames ? d->cap_spnames * 2 : 256;
        struct spname *v = realloc(d->spnames, (size_t)cap * sizeof(*v));
        if (!v) {
            d->st.alloc_failures++;
            return;
        }
        d->spnames = v;
        d->cap_spnames = cap;
    }
    if (cn_derive__itab_reserve(&d->spname_idx, 512) != 0) {
        d->st.alloc_failures++;
        return;
    }
    uint32_t idx = d->num_spnames++;
    d->spnames[idx] = (struct spname){.hash = h, .name = id, .svc = svc, .kind = kind};
    cn_derive__itab_put(&d->spname_idx, h, idx);
    sv->num_span_names++;
}

void cn_derive__span_names_release(struct cn_derive *d)
{
    cn_free(&d->spnames);
    cn_free(&d->spname_idx.slots);
    d->num_spnames = d->cap_spnames = 0;
}

size_t cn_derive__span_names_bytes(const struct cn_derive *d)
{
    size_t idx = d->spname_idx.slots ? ((size_t)d->spname_idx.mask + 1) * sizeof(uint64_t) : 0;
    return (size_t)d->cap_spnames * sizeof(struct spname) + idx;
}
