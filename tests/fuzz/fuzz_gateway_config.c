/* Fuzzes the gateway configuration loader and route compiler (src/gateway/config.c,
 * match.c, balance.c) with arbitrary YAML. Properties checked on every input:
 *   - a rejected input gets exactly one line of error starting "fuzz.yaml:";
 *   - an accepted one answers match queries (hosts, paths, methods) without crashing, every
 *     match found belongs to a route of the snapshot, and every balancer pick is in range. */
#include "gateway/internal.h"

#include <stdint.h>

static void probe(const struct cn_gw_snapshot *s, const char *host, const char *path, int method)
{
    char hb[GW_MAX_HOST + 1];
    int hl = gw_host_normalize(cn_slice_of(host), hb);
    struct cn_http_header h[] = {{CN_SLICE_LIT("x-user"), CN_SLICE_LIT("alice")},
                                 {CN_SLICE_LIT("Cookie"), CN_SLICE_LIT("sid=1")}};
    struct gw_req_view rv = {{hb, hl > 0 ? (size_t)hl : 0},
                             cn_slice_of(path),
                             CN_SLICE_LIT("a=1&b=x%20y"),
                             method,
                             h,
                             2};
    const struct gw_match *m = gw_match_request(s, &rv);
    if (!m)
        return;
    CN_BUG_ON(m->route < s->routes || m->route >= s->routes + s->num_routes);
    const struct gw_route *rt = m->route;
    for (size_t i = 0; i < rt->num_backends; i++) {
        const struct gw_cluster *cl = rt->backends[i].cluster;
        int64_t cur[64] = {0};
        uint32_t active[64] = {0};
        if (cl->num_eps > 64)
            continue;
        struct gw_lb_state st = {.rr = 0, .current = cur, .active = active};
        uint64_t rng = 7;
        for (int k = 0; k < 4; k++)
            CN_BUG_ON(gw_lb_pick(cl, &st, &rng, k & 1 ? "key" : NULL, 3) >= cl->num_eps);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    err[0] = '\0';
    struct cn_gw_snapshot *s =
        cn_gw_config_load_buffer("fuzz.yaml", (const char *)data, size, err, sizeof(err));
    if (!s) {
        CN_BUG_ON(strncmp(err, "fuzz.yaml", 9) != 0);
        CN_BUG_ON(strchr(err, '\n') != NULL);
        return 0;
    }
    static const char *const hosts[] = {"example.com", "a.example.com", "", "x.y:80", "[::1]:9"};
    static const char *const paths[] = {"/", "/api", "/api/v1/x", "//", "/a/b/c/d/e"};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++)
            probe(s, hosts[i], paths[j], (int)(i + j) % 8);
    cn_gw_snapshot_unref(s);
    return 0;
}
