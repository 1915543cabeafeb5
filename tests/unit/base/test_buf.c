#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"

static void append_within_max(void **state)
{
    (void)state;
    struct cn_buf b;
    cn_buf_init(&b, 8);
    assert_int_equal(cn_buf_append(&b, "abcd", 4), 0);
    assert_int_equal(cn_buf_append(&b, "efgh", 4), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.ptr, "abcdefgh", 8);
    /* One byte past the maximum fails and changes nothing. */
    assert_int_equal(cn_buf_append(&b, "i", 1), CN_ELIMIT);
    assert_int_equal(b.len, 8);
    assert_true(b.cap <= 8);
    cn_buf_release(&b);
    assert_null(b.ptr);
}

static void printf_long(void **state)
{
    (void)state;
    struct cn_buf b;
    cn_buf_init(&b, 4096);
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(cn_buf_printf(&b, "%s-%d", big, 42), 0);
    assert_int_equal(b.len, 999 + 3);
    assert_memory_equal(b.ptr + 999, "-42", 3);
    assert_int_equal(cn_buf_printf(&b, "%s%s%s%s%s", big, big, big, big, big), CN_ELIMIT);
    cn_buf_release(&b);
}

static void consume_and_u64(void **state)
{
    (void)state;
    struct cn_buf b;
    cn_buf_init(&b, 64);
    cn_buf_append_u64(&b, 0);
    cn_buf_append_u64(&b, 18446744073709551615ull);
    assert_int_equal(b.len, 21);
    assert_memory_equal(b.ptr, "018446744073709551615", 21);
    cn_buf_consume(&b, 1);
    assert_memory_equal(b.ptr, "18446744073709551615", 20);
    cn_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    cn_buf_release(&b);
}

static void slices(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(cn_slice_to_u64(CN_SLICE_LIT("12345"), &v), 0);
    assert_int_equal(v, 12345);
    assert_int_equal(cn_slice_to_u64(CN_SLICE_LIT("18446744073709551615"), &v), 0);
    assert_int_equal(cn_slice_to_u64(CN_SLICE_LIT("18446744073709551616"), &v), CN_ERANGE);
    assert_int_equal(cn_slice_to_u64(CN_SLICE_LIT("+1"), &v), CN_ESYNTAX);
    assert_int_equal(cn_slice_to_u64(CN_SLICE_LIT(""), &v), CN_ESYNTAX);
    assert_true(cn_slice_case_eq(CN_SLICE_LIT("Content-Length"), CN_SLICE_LIT("content-LENGTH")));
    assert_false(cn_slice_case_eq(CN_SLICE_LIT("Content-Length"), CN_SLICE_LIT("content-lengt")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_within_max),
        cmocka_unit_test(printf_long),
        cmocka_unit_test(consume_and_u64),
        cmocka_unit_test(slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
