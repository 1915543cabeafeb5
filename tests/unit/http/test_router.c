#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/router.h"

static void h(struct cn_http_req *req, void *ctx)
{
    (void)req;
    (void)ctx;
}

static struct cn_router *build(void)
{
    struct cn_router *r = cn_router_new();
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/", h, NULL), 0);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/api/traces/{id}", h, NULL), 1);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/api/traces/search", h, NULL), 2);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_POST), "/api/traces/{id}", h, NULL), 3);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/files/{path...}", h, NULL), 4);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/a/{x}/b/{y}", h, NULL), 5);
    return r;
}

static enum cn_route_match match(struct cn_router *r, int m, const char *path, int *out_id,
                                 struct cn_route_params *p)
{
    const struct cn_route *rt = NULL;
    unsigned allowed = 0;
    enum cn_route_match res = cn_router_match(r, m, cn_slice_of(path), &rt, p, &allowed);
    *out_id = res == CN_ROUTE_FOUND ? rt->id : (int)allowed;
    return res;
}

static void matches(void **state)
{
    (void)state;
    struct cn_router *r = build();
    struct cn_route_params p;
    int id;
    assert_int_equal(match(r, HTTP_GET, "/", &id, &p), CN_ROUTE_FOUND);
    assert_int_equal(id, 0);
    assert_int_equal(match(r, HTTP_GET, "/api/traces/abc", &id, &p), CN_ROUTE_FOUND);
    assert_int_equal(id, 1);
    assert_int_equal(p.num, 1);
    assert_memory_equal(p.values[0].ptr, "abc", 3);
    /* A literal wins over a parameter. */
    assert_int_equal(match(r, HTTP_GET, "/api/traces/search", &id, &p), CN_ROUTE_FOUND);
    assert_int_equal(id, 2);
    assert_int_equal(p.num, 0);
    assert_int_equal(match(r, HTTP_POST, "/api/traces/abc", &id, &p), CN_ROUTE_FOUND);
    assert_int_equal(id, 3);
    assert_int_equal(match(r, HTTP_GET, "/files/a/b/c.txt", &id, &p), CN_ROUTE_FOUND);
    assert_int_equal(id, 4);
    assert_int_equal(p.values[0].len, 9);
    assert_int_equal(match(r, HTTP_GET, "/a/1/b/2", &id, &p), CN_ROUTE_FOUND);
    assert_int_equal(id, 5);
    assert_int_equal(p.num, 2);
    assert_memory_equal(p.values[1].ptr, "2", 1);
    cn_router_free(r);
}

static void misses(void **state)
{
    (void)state;
    struct cn_router *r = build();
    struct cn_route_params p;
    int allowed;
    assert_int_equal(match(r, HTTP_GET, "/api/traces", &allowed, &p), CN_ROUTE_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/traces/", &allowed, &p), CN_ROUTE_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/api/traces/a/b", &allowed, &p), CN_ROUTE_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "/nope", &allowed, &p), CN_ROUTE_NOT_FOUND);
    assert_int_equal(match(r, HTTP_GET, "", &allowed, &p), CN_ROUTE_NOT_FOUND);
    assert_int_equal(match(r, HTTP_DELETE, "/api/traces/x", &allowed, &p), CN_ROUTE_BAD_METHOD);
    assert_int_equal((unsigned)allowed, CN_M(HTTP_GET) | CN_M(HTTP_POST));
    cn_router_free(r);
}

static void rejects_bad_patterns(void **state)
{
    (void)state;
    struct cn_router *r = cn_router_new();
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "nope", h, NULL), CN_EINVAL);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/a/{}", h, NULL), CN_EINVAL);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/a/{x...}/b", h, NULL), CN_EINVAL);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/a/{x}", h, NULL), 0);
    /* The same position under another name, or the same method twice, conflicts. */
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/a/{y}/c", h, NULL), CN_EINVAL);
    assert_int_equal(cn_router_add(r, CN_M(HTTP_GET), "/a/{x}", h, NULL), CN_EINVAL);
    cn_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches),
        cmocka_unit_test(misses),
        cmocka_unit_test(rejects_bad_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
