/* The process root of `cairn up`: configuration, workers, the API server. Replaced pieces
 * (the configuration) are swapped whole under a lock; everything else is set before the
 * workers start and read-only afterwards. */
#ifndef CN_UP_H
#define CN_UP_H

#include "cli/config.h"
#include "ev/ev.h"
#include "gateway/gateway.h"
#include "http/server.h"
#include "registry/health.h"
#include "registry/nacos.h"
#include "telemetry/receiver.h"
#include "telemetry/store.h"

#include <uv.h>

struct cn_demo;

struct up_worker {
    int api_drained;
    int otlp_drained;
    int nacos_drained;
    size_t gw_drained; /* gateway listeners drained */
    int finished;
};

struct cn_up {
    uv_mutex_t lock;       /* guards cfg */
    struct cn_config *cfg; /* current configuration (a reference) */
    atomic_uint_fast64_t generation;
    atomic_uint_fast64_t reloads;
    atomic_uint_fast64_t reload_failures;
    int argc; /* the flags, re-applied on reload */
    char **argv;
    const char *config_path;
    char *const *envp;

    struct cn_router *router;
    struct cn_http_server api;
    int nworkers;
    struct cn_worker *workers;
    struct cn_http_worker *http_workers;

    /* Telemetry: receivers on their own port, sharing the worker threads. */
    struct cn_router *otlp_router;
    struct cn_http_server otlp;
    struct cn_http_worker *otlp_workers;
    struct cn_store *store;
    struct cn_receiver receiver;
    struct cn_receiver_worker *rworkers;
    struct cn_tail *tail; /* live tail of logs, fed by the store's ingest hook */
    struct up_worker *uw; /* per worker: which parts have drained */

    /* Registry: the Nacos v1 API on its own port, sharing the worker threads; expiry and
     * health checks on the main loop. */
    struct cn_reg *reg;
    struct cn_nacos *nacos;
    struct cn_router *nacos_router;
    struct cn_http_server nacos_srv;
    struct cn_http_worker *nacos_workers;
    struct cn_reg_ctl *reg_ctl;

    /* Gateway (gateway.config): its listeners on the same worker threads, its spans and
     * access logs into the store. NULL gw when not configured. */
    struct cn_gw *gw;
    struct cn_gw_snapshot *gw_first; /* the listeners come from it (restart to change) */
    size_t gw_nlisteners;
    struct cn_router *gw_router;        /* empty: the gateway streams every request */
    struct cn_http_server *gw_servers;  /* [gw_nlisteners] */
    struct cn_http_worker *gw_hworkers; /* [gw_nlisteners * nworkers] */
    struct cn_gw_admin *gw_admin;       /* the admin API (gateway/admin.h), NULL without gw */
    const char *gw_path;                /* gateway.config, or the demo's generated file */
    atomic_int workers_started;         /* workers a gateway publish must wake */

    struct cn_demo *demo; /* cairn up --demo (demo.h); NULL without */
    int demo_enabled;     /* --demo given: the demo's setting defaults apply */

    uv_loop_t *loop; /* the main thread's */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain_timer;
    uv_async_t worker_done;
    atomic_int workers_done;
    int stopping;
    int exit_code;
};

/* Registers /healthz, /readyz, /metrics (and the test routes when api.test_routes is on). */
int cn_api_routes(struct cn_up *up, struct cn_router *r, int test_routes);
/* Registers the native query API under /api/v1 (api-query.c). */
int cn_api_query_routes(struct cn_up *up, struct cn_router *r);

/* Registers the native registry API under /api/v1/registry (api-registry.c). */
int cn_api_registry_routes(struct cn_up *up, struct cn_router *r);

/* Registers the demo's API under /api/v1/demo (api-demo.c). */
int cn_api_demo_routes(struct cn_up *up, struct cn_router *r);
/* Sets every demo fault switch off (at the demo's start). Returns 0 or a CN_E* code. */
int cn_api_demo_reset(struct cn_up *up);

/* Returns a new reference to the current configuration. Thread-safe. */
struct cn_config *cn_up_config(struct cn_up *up);

#endif
