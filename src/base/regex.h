/* A check of a POSIX extended regular expression from outside (a query, a configuration),
 * made before regcomp. glibc compiles a copy of an expression for each repetition of it (a+
 * as aa*, a{3} as aaa), so stacked or nested repetitions grow exponentially: "a" followed by
 * 16 '+' took 200 ms and 42 MB to compile, and each '+' more doubles that; an optional element
 * repeated costs more again ((a?){4999}: 0.9 s and 200 MB). And it matches back-references (a
 * glibc extension to EREs) by backtracking: ^(a+)+\1$ took 7.6 s on 2,000 bytes.
 *
 * So an expression is refused when its repetitions expand past CN_REGEX_MAX_SIZE elements: a
 * character, a bracket expression, a group and an alternative count one each; a repetition
 * multiplies what it repeats by 2 ('*', '+', '?') or by its largest count plus one ({m,n}).
 * Also when it nests groups deeper than CN_REGEX_MAX_DEPTH, or holds a back-reference. At the
 * limit, (a?){499} compiles in ~11 ms and 3.6 MB, and a{999} matches 4,000 bytes in ~10 ms;
 * real expressions are far smaller (^/api/v[0-9]+/users/[^/]+$: 30). */
#ifndef CN_REGEX_H
#define CN_REGEX_H

#include "base/base.h"

#define CN_REGEX_MAX_SIZE  1000
#define CN_REGEX_MAX_DEPTH 64

/* Returns 0, CN_ELIMIT (too large, too deep) or CN_ESYNTAX (a back-reference), with a message
 * in err. pat[0..len) need not end in a NUL. What regcomp itself refuses is left to it. */
int cn_regex_check(const char *pat, size_t len, char *err, size_t err_len);

#endif
