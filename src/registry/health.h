/* The registry's control-plane duties on one loop: the expiry tick of ephemeral instances and
 * the server-side health checks of persistent ones (TCP connect, or HTTP GET of the path in
 * their metadata "preserved.health.checker.path"), at most max_concurrent at a time. */
#ifndef CN_REG_HEALTH_H
#define CN_REG_HEALTH_H

#include "registry/registry.h"

#include <uv.h>

struct cn_reg_ctl_opts {
    uint64_t tick_ms;           /* expiry tick */
    uint64_t check_interval_ms; /* one round of checks every this often */
    uint64_t check_timeout_ms;  /* connect + answer within this, else unhealthy */
    uint64_t max_concurrent;    /* checks in flight at once */
};

struct cn_reg_ctl;

/* Starts the timers on loop (its thread). NULL on allocation failure. */
struct cn_reg_ctl *cn_reg_ctl_start(struct cn_reg *reg, uv_loop_t *loop,
                                    const struct cn_reg_ctl_opts *opts);
/* Stops timers and checks in flight; the object frees itself once its handles closed (the
 * loop must run on). NULL does nothing. */
void cn_reg_ctl_stop(struct cn_reg_ctl *c);

#endif
