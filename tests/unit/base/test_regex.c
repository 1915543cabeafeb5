/* The check of outside regular expressions before regcomp (base/regex.h): the size limit at
 * its edge for each kind of repetition, stacked repetitions, nesting depth, back-references,
 * bracket expressions, and ordinary characters that look like syntax. */
#include "base/regex.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static int check(const char *pat, char *err, size_t err_len)
{
    err[0] = '\0';
    return cn_regex_check(pat, strlen(pat), err, err_len);
}

static void ok(const char *pat)
{
    char err[256];
    int rc = check(pat, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: refused: %s", pat, err);
}

static void refused(const char *pat, int want, const char *msg_part)
{
    char err[256];
    int rc = check(pat, err, sizeof(err));
    if (rc != want)
        fail_msg("%s: %d, want %d", pat, rc, want);
    if (!strstr(err, msg_part))
        fail_msg("%s: message \"%s\" lacks \"%s\"", pat, err, msg_part);
}

static void test_size_edges(void **state)
{
    (void)state;
    ok("^/api/v[0-9]+/users/[^/]+$");
    ok("a{999}"); /* 1000 */
    refused("a{1000}", CN_ELIMIT, "more than 1000 elements");
    ok("a{2,999}");
    refused("a{2,1000}", CN_ELIMIT, "too large");
    ok("(a?){332}"); /* (2 + 1) * 333 = 999 */
    refused("(a?){333}", CN_ELIMIT, "too large");
    ok("(ab|cd){165}"); /* (4 + 1 + 1) * 166 = 996 */
    refused("(ab|cd){166}", CN_ELIMIT, "too large");
    ok("[]a]{999}");
    refused("[[:alpha:]]{1000}", CN_ELIMIT, "too large");
    ok("a{1,}b{0}");
    /* Nested repetitions multiply: ((9 + 1) * 9 + 1) * 9 = 819, ((10 + 1) * 10 + 1) * 10. */
    ok("((a{8}){8}){8}");
    refused("((a{9}){9}){9}", CN_ELIMIT, "too large");
}

static void test_stacked(void **state)
{
    (void)state;
    char pat[64] = "a";
    for (int i = 1; i <= 9; i++)
        strcat(pat, "+"); /* 2^9 = 512 */
    ok(pat);
    strcat(pat, "+");
    refused(pat, CN_ELIMIT, "too large");
    ok("a*?");
}

static void test_depth(void **state)
{
    (void)state;
    char pat[256];
    size_t n = 0;
    for (int i = 0; i < CN_REGEX_MAX_DEPTH; i++)
        pat[n++] = '(';
    pat[n++] = 'a';
    for (int i = 0; i < CN_REGEX_MAX_DEPTH; i++)
        pat[n++] = ')';
    pat[n] = '\0';
    ok(pat);
    memmove(pat + 1, pat, n + 1);
    pat[0] = '(';
    strcat(pat, ")");
    refused(pat, CN_ELIMIT, "nests groups more than 64 deep");
}

static void test_backreferences(void **state)
{
    (void)state;
    refused("(a)\\1", CN_ESYNTAX, "back-references (\\1)");
    refused("^(a+)+\\9$", CN_ESYNTAX, "\\9");
    ok("\\\\1");  /* an escaped backslash, then '1' */
    ok("[\\1]");  /* a backslash in brackets is itself */
    ok("a\\0b");  /* not a back-reference: regcomp decides */
    ok("\\.\\+"); /* escaped characters count one each */
}

static void test_ordinary(void **state)
{
    (void)state;
    ok("x{");      /* not an interval */
    ok("a{,5}");   /* neither */
    ok(")");       /* an unmatched ')' */
    ok("[abc");    /* unclosed: regcomp refuses it */
    ok("[[:al");   /* a cut class */
    ok("");        /* empty */
    ok("a|b|c|d"); /* alternatives count one each */
    char err[8];
    assert_int_equal(cn_regex_check("a{1000}", 7, err, sizeof(err)), CN_ELIMIT);
    assert_int_equal(strlen(err), 7); /* the message is cut to the buffer */
    /* Only len bytes are read: "a{10" is no interval. */
    assert_int_equal(cn_regex_check("a{1000}", 4, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_edges), cmocka_unit_test(test_stacked),
        cmocka_unit_test(test_depth),      cmocka_unit_test(test_backreferences),
        cmocka_unit_test(test_ordinary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
