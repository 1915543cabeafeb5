/* Segment format pieces shared by the writer (seg-write.c) and the reader (seg-read.c):
 * checksums, bloom filters, the tokenizer, column names. */
#define CN_SEG_INTERNAL
#include "telemetry/seg.h"

#include <xxhash.h>

/* Fixed seeds: changing one changes the file format. */
#define SEED_TRACE 0x43534547540001ull
#define SEED_TOKEN 0x43534547540002ull

static const char *const span_cols[CN_SEG__S_NUM] = {
    [CN_SEG__S_TRACE] = "trace",      [CN_SEG__S_SPAN_ID] = "span_id",
    [CN_SEG__S_PARENT] = "parent",    [CN_SEG__S_SERVICE] = "service",
    [CN_SEG__S_NAME] = "name",        [CN_SEG__S_KIND] = "kind",
    [CN_SEG__S_STATUS] = "status",    [CN_SEG__S_STATUS_MSG] = "status_message",
    [CN_SEG__S_START] = "start",      [CN_SEG__S_DURATION] = "duration",
    [CN_SEG__S_FLAGS] = "flags",      [CN_SEG__S_TRACE_STATE] = "trace_state",
    [CN_SEG__S_SCOPE] = "scope",      [CN_SEG__S_RESOURCE] = "resource",
    [CN_SEG__S_ATTRS] = "attributes", [CN_SEG__S_EVENTS] = "events",
    [CN_SEG__S_LINKS] = "links",
};

static const char *const log_cols[CN_SEG__L_NUM] = {
    [CN_SEG__L_TRACE] = "trace",
    [CN_SEG__L_SPAN_ID] = "span_id",
    [CN_SEG__L_SERVICE] = "service",
    [CN_SEG__L_TIME] = "time",
    [CN_SEG__L_OBSERVED] = "observed_time",
    [CN_SEG__L_SEV_NUM] = "severity_number",
    [CN_SEG__L_SEV_TEXT] = "severity_text",
    [CN_SEG__L_BODY] = "body",
    [CN_SEG__L_ATTRS] = "attributes",
    [CN_SEG__L_FLAGS] = "flags",
    [CN_SEG__L_EVENT_NAME] = "event_name",
    [CN_SEG__L_SCOPE] = "scope",
    [CN_SEG__L_RESOURCE] = "resource",
};

const char *cn_seg__col_name(unsigned kind, unsigned col)
{
    if (kind == CN_SEG_SPANS && col < CN_SEG__S_NUM)
        return span_cols[col];
    if (kind == CN_SEG_LOGS && col < CN_SEG__L_NUM)
        return log_cols[col];
    return "?";
}

uint64_t cn_seg__sum(const void *p, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(p, len, seed);
}

uint64_t cn_seg__bloom_nbits(uint64_t keys)
{
    uint64_t bits = keys * CN_SEG__BLOOM_BPK;
    if (bits < 64)
        bits = 64;
    return (bits + 63) & ~(uint64_t)63;
}

/* Double hashing (Kirsch-Mitzenmacher): probe i is h1 + i * h2 modulo nbits. h2 is odd so
 * the probes differ whenever nbits is a power of two too. */
static inline uint64_t probe(uint64_t h, unsigned i, uint64_t nbits)
{
    uint64_t h1 = h, h2 = (h >> 32 | h << 32) | 1;
    return (h1 + i * h2) % nbits;
}

void cn_seg__bloom_add(uint8_t *bits, uint64_t nbits, unsigned k, uint64_t h)
{
    for (unsigned i = 0; i < k; i++) {
        uint64_t b = probe(h, i, nbits);
        bits[b >> 3] |= (uint8_t)(1u << (b & 7));
    }
}

int cn_seg__bloom_has(const uint8_t *bits, uint64_t nbits, unsigned k, uint64_t h)
{
    for (unsigned i = 0; i < k; i++) {
        uint64_t b = probe(h, i, nbits);
        if (!(bits[b >> 3] & (1u << (b & 7))))
            return 0;
    }
    return 1;
}

uint64_t cn_seg__trace_hash(const uint8_t id[16])
{
    return XXH3_64bits_withSeed(id, 16, SEED_TRACE);
}

uint64_t cn_seg__token_hash(const void *p, size_t len)
{
    return XXH3_64bits_withSeed(p, len, SEED_TOKEN);
}

static inline int is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

size_t cn_seg__tokens(const char *p, size_t len, cn_seg__token_cb cb, void *ctx)
{
    char tok[CN_SEG_MAX_TOKEN];
    size_t count = 0, i = 0;
    while (i < len) {
        if (!is_alnum((unsigned char)p[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && is_alnum((unsigned char)p[j]))
            j++;
        size_t n = j - i;
        if (n >= 2 && n <= CN_SEG_MAX_TOKEN) {
            for (size_t k = 0; k < n; k++) {
                char c = p[i + k];
                tok[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
            }
            if (cb)
                cb(ctx, cn_seg__token_hash(tok, n));
            count++;
        }
        i = j;
    }
    return count;
}
