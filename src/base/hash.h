/* Checksums of long inputs (write-ahead log records, segment blocks). */
#ifndef CN_BASE_HASH_H
#define CN_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#endif

/* XXH3_64bits_withSeed of p[0..n). On x86, libxxhash's dispatch runs the widest vector code
 * the CPU has (AVX2 here: ~3x its SSE2 default on 200 KB); the value is the same. Short
 * inputs (map keys) call XXH3_64bits directly: the dispatch costs an indirect call. */
static inline uint64_t cn_hash_long(const void *p, size_t n, uint64_t seed)
{
#if defined(__x86_64__) || defined(__i386__)
    return XXH3_64bits_withSeed_dispatch(p, n, seed);
#else
    return XXH3_64bits_withSeed(p, n, seed);
#endif
}

#endif
