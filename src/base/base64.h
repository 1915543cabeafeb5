/* Base64 (RFC 4648), as OTLP JSON and the query APIs write bytes and IDs. */
#ifndef CN_BASE64_H
#define CN_BASE64_H

#include "base/base.h"

/* Length of n bytes in padded base64. */
#define CN_BASE64_LEN(n) (((n) + 2) / 3 * 4)

/* Writes src[0..n) to dst in the standard alphabet with '=' padding (CN_BASE64_LEN(n) bytes,
 * no terminator); returns that length. */
size_t cn_base64_encode(char *dst, const void *src, size_t n);
/* The same in the URL-safe alphabet without padding (RFC 4648 section 5, as JWTs write it):
 * at most CN_BASE64_LEN(n) bytes, no terminator; returns the length. */
size_t cn_base64url_encode(char *dst, const void *src, size_t n);
/* Decodes s[0..n), standard or URL-safe alphabet, padded or not, into dst (room for
 * n / 4 * 3 + 2 bytes). Returns the byte count, or -1 when s is not base64. */
long cn_base64_decode(uint8_t *dst, const char *s, size_t n);

#endif
