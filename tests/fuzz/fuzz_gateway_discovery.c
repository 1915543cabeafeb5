/* Fuzzes the gateway's reading of a Nacos v1 instance list (src/gateway/discovery.c): the
 * input is what a registry answers to /nacos/v1/ns/instance/list (its first byte's low bit
 * turns protection on). Properties: a list that parses gives endpoints sorted by address with
 * no duplicate, each a numeric address with a port and a weight >= 1; a set equals itself;
 * a list that does not parse leaves the set empty with a reason. */
#include "gateway/discovery.h"

#include <arpa/inet.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int protect = size > 0 && (data[0] & 1);
    struct gw_disc_set s = {0};
    char err[256] = "";
    int rc = gw_disc_parse((const char *)data, size, protect, &s, err, sizeof(err));
    if (rc) {
        CN_BUG_ON(rc != CN_ESYNTAX && rc != CN_ENOMEM);
        CN_BUG_ON(s.num != 0 || s.eps != NULL);
        CN_BUG_ON(rc == CN_ESYNTAX && err[0] == '\0');
        return 0;
    }
    for (size_t i = 0; i < s.num; i++) {
        const struct gw_disc_ep *e = &s.eps[i];
        unsigned char a[16];
        CN_BUG_ON(memchr(e->ip, '\0', sizeof(e->ip)) == NULL);
        CN_BUG_ON(inet_pton(AF_INET, e->ip, a) != 1 && inet_pton(AF_INET6, e->ip, a) != 1);
        CN_BUG_ON(e->port == 0 || e->weight == 0 || e->weight > 10000 * GW_DISC_WEIGHT_SCALE);
        if (i) {
            int c = strcmp(s.eps[i - 1].ip, e->ip);
            CN_BUG_ON(c > 0 || (c == 0 && s.eps[i - 1].port >= e->port));
        }
    }
    CN_BUG_ON(s.protected_ && (!protect || s.num == 0));
    size_t add = 1, rem = 1, rew = 1;
    CN_BUG_ON(!gw_disc_set_diff(&s, &s, &add, &rem, &rew) || add || rem || rew);
    gw_disc_set_release(&s);
    return 0;
}
