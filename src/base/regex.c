#include "base/regex.h"

#include <stdio.h>

#define OVER ((uint64_t)CN_REGEX_MAX_SIZE + 1) /* sizes saturate here */

static uint64_t add(uint64_t a, uint64_t b)
{
    return a + b > OVER ? OVER : a + b;
}

static uint64_t mul(uint64_t a, uint64_t b)
{
    return b && a > OVER / b ? OVER : CN_MIN(a * b, OVER);
}

/* An interval at p[i] = '{': {m}, {m,} or {m,n}. Returns its length and the largest count
 * in *max, or 0 when it is not one (then '{' is an ordinary character). */
static size_t interval(const char *p, size_t len, size_t i, uint64_t *max)
{
    size_t k = i + 1;
    uint64_t m = 0, n = 0;
    int digits = 0, comma = 0, ndigits = 0;
    for (; k < len && p[k] >= '0' && p[k] <= '9'; k++, digits++)
        m = CN_MIN(m * 10 + (uint64_t)(p[k] - '0'), OVER);
    if (k < len && p[k] == ',') {
        comma = 1;
        for (k++; k < len && p[k] >= '0' && p[k] <= '9'; k++, ndigits++)
            n = CN_MIN(n * 10 + (uint64_t)(p[k] - '0'), OVER);
    }
    if (!digits || k >= len || p[k] != '}')
        return 0;
    *max = comma && ndigits ? CN_MAX(m, n) : m;
    return k + 1 - i;
}

/* A bracket expression at p[i] = '['. Returns its length (to the end when it is not closed:
 * regcomp refuses it then). */
static size_t bracket(const char *p, size_t len, size_t i)
{
    size_t k = i + 1;
    if (k < len && p[k] == '^')
        k++;
    if (k < len && p[k] == ']')
        k++; /* a ']' first is an ordinary character */
    while (k < len && p[k] != ']') {
        if (p[k] == '[' && k + 1 < len && (p[k + 1] == ':' || p[k + 1] == '=' || p[k + 1] == '.')) {
            char end = p[k + 1];
            size_t e = k + 2;
            while (e + 1 < len && !(p[e] == end && p[e + 1] == ']'))
                e++;
            k = e + 1 < len ? e + 2 : len;
        } else {
            k++;
        }
    }
    return (k < len ? k + 1 : len) - i;
}

int cn_regex_check(const char *pat, size_t len, char *err, size_t err_len)
{
    /* Per open group: the size of what it holds so far, and of its last element. */
    uint64_t sum[CN_REGEX_MAX_DEPTH + 1], last[CN_REGEX_MAX_DEPTH + 1];
    size_t depth = 0;
    sum[0] = last[0] = 0;
    for (size_t i = 0; i < len;) {
        char c = pat[i];
        uint64_t factor = 0; /* a repetition: what it multiplies by */
        size_t step = 1;
        if (c == '(') {
            if (depth == CN_REGEX_MAX_DEPTH) {
                snprintf(err, err_len, "regular expression nests groups more than %d deep",
                         CN_REGEX_MAX_DEPTH);
                return CN_ELIMIT;
            }
            depth++;
            sum[depth] = last[depth] = 0;
            i++;
            continue;
        }
        if (c == ')' && depth > 0) {
            uint64_t g = add(sum[depth], 1);
            depth--;
            sum[depth] = add(sum[depth], g);
            last[depth] = g;
        } else if (c == '|') {
            sum[depth] = add(sum[depth], 1);
            last[depth] = 0;
        } else if (c == '*' || c == '?' || c == '+') {
            factor = 2;
        } else if (c == '{' && (step = interval(pat, len, i, &factor)) != 0) {
            factor = add(factor, 1);
        } else {
            if (c == '\\' && i + 1 < len && pat[i + 1] >= '1' && pat[i + 1] <= '9') {
                snprintf(err, err_len,
                         "back-references (\\%c) are not supported in regular "
                         "expressions",
                         pat[i + 1]);
                return CN_ESYNTAX;
            }
            step = c == '[' ? bracket(pat, len, i) : c == '\\' && i + 1 < len ? 2 : 1;
            sum[depth] = add(sum[depth], 1);
            last[depth] = 1;
        }
        if (factor) {
            /* The repeated element grows from last to last * factor. */
            uint64_t grown = mul(last[depth], factor);
            sum[depth] = add(sum[depth] - CN_MIN(last[depth], sum[depth]), grown);
            last[depth] = grown;
        }
        if (sum[depth] > CN_REGEX_MAX_SIZE) { /* the enclosing groups are checked as they close */
            snprintf(err, err_len,
                     "regular expression too large: its repetitions expand to more than %d "
                     "elements",
                     CN_REGEX_MAX_SIZE);
            return CN_ELIMIT;
        }
        i += step;
    }
    return 0;
}
