/* UTF-8 checks and JSON strings, shared by the decoders, renderers and configuration. */
#ifndef CN_UTF8_H
#define CN_UTF8_H

#include "base/base.h"

/* Length of the well-formed UTF-8 sequence at s (len > 0 bytes left): 1 for ASCII, 2 to 4,
 * or 0 when it is not well-formed (overlong, surrogate, past U+10FFFF, cut short). */
size_t cn_utf8_seq(const void *s, size_t len);
/* 1 when s[0..len) is well-formed UTF-8. */
int cn_utf8_valid(const void *s, size_t len);
/* The longest prefix of s[0..len) of at most max bytes that does not end inside a UTF-8
 * sequence (bytes that are not UTF-8 are cut at max). */
size_t cn_utf8_cut(const void *s, size_t len, size_t max);
/* s[0..len) as a JSON string with its quotes: '"', '\\' and control characters escaped,
 * bytes that are not UTF-8 as \ufffd. Writes to dst unless it is NULL; returns the length
 * either way (at most 2 + 6 * len). */
size_t cn_json_str(char *dst, const void *s, size_t len);

#endif
