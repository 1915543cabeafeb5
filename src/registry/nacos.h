/* The Nacos v1 HTTP API over a cn_reg: naming (/nacos/v1/ns/...), configuration
 * (/nacos/v1/cs/...) with long-polling listeners, optional login (/nacos/v1/auth/login).
 *
 * Long polling: a listener request whose keys are all current is parked on the worker loop
 * that received it (no reply yet) and answered when one of its keys changes or its hold time
 * ends. A configuration change (on whatever thread published it) posts one mail to each
 * worker's mailbox; the worker then checks its parked requests. */
#ifndef CN_REG_NACOS_H
#define CN_REG_NACOS_H

#include "ev/mailbox.h"
#include "http/router.h"
#include "registry/registry.h"

#include <stdatomic.h>
#include <uv.h>

struct cn_nacos_opts {
    uint64_t max_listen_keys; /* keys in one listener request (Nacos: 10000) */
    uint64_t max_hold_ms;     /* cap on a listener's hold time */
    uint64_t max_parked;      /* parked listeners per worker; past it: answered at once */
    int auth;                 /* require a login (accessToken, or username+password) */
    const char *username, *password;
    uint64_t token_ttl_ms;
    uint64_t push_expire_ms; /* a push subscriber not seen in a list query this long is dropped */
};

/* Nacos 1.x UDP push: a list query with udpPort subscribes its connection's peer address to
 * the service; when the service changes, worker 0 sends it {"type":"dom","data":LIST,...}.
 * At most this many subscribers; past it new ones only poll. */
#define CN_NACOS_MAX_PUSH_SUBSCRIBERS 4096
/* Lists longer than this are not pushed (one datagram); those clients poll. */
#define CN_NACOS_MAX_PUSH_BYTES 60000

struct cn_nacos_sub;

struct cn_nacos_parked;

struct cn_nacos_bound;

struct cn_nacos_job;

/* A worker's part: its mailbox and parked listeners. Touched only on its loop, except
 * pending (any thread). */
struct cn_nacos_worker {
    struct cn_nacos *n;
    int id;
    int open; /* mailbox and timer initialised, not closing (guarded by n->wlock) */
    struct cn_mailbox mb;
    struct cn_mail mail;
    atomic_int pending; /* a wake-up mail is posted and not yet run */
    uv_timer_t timer;   /* hold-time expiry, every 100 ms while something is parked */
    struct cn_nacos_parked *parked;
    size_t num_parked;
    uint64_t wakes;
    struct cn_buf list_buf; /* instance list answers, reused (nacos.c h_list) */
    /* Persistent registers and updates (nacos.c put_batch): those waiting for the batch that
     * runs to end, and whether one runs. */
    struct cn_nacos_job *put_waiting, *put_last;
    int put_running;
};

struct cn_nacos {
    struct cn_reg *reg;
    struct cn_nacos_opts opts;
    int nworkers;
    struct cn_nacos_worker *workers;
    uv_mutex_t wlock; /* workers' open flags against concurrent posts */
    uv_mutex_t tlock; /* tokens */
    struct cn_nacos_token *tokens;
    size_t num_tokens;
    atomic_uint_fast64_t listeners_answered, listeners_changed;
    /* UDP push (see above); subs and their dirty flags under slock. */
    uv_mutex_t slock;
    struct cn_nacos_sub *subs;
    size_t num_subs;
    int udp_fd;
    struct cn_mail push_mail; /* posted to worker 0 */
    atomic_int push_pending;
    atomic_uint_fast64_t pushes;
    struct cn_nacos_bound *bound; /* each route's handler context (nacos.c's route table) */
};

/* NULL on allocation failure. opts strings must outlive the object. */
struct cn_nacos *cn_nacos_new(struct cn_reg *reg, const struct cn_nacos_opts *opts, int nworkers);
void cn_nacos_free(struct cn_nacos *n);
/* Adds the Nacos routes. Returns 0 or a negative code. */
int cn_nacos_routes(struct cn_nacos *n, struct cn_router *r);
/* On worker id's thread, before it serves: mailbox and timer on loop. Returns 0 or a libuv
 * error. */
int cn_nacos_worker_init(struct cn_nacos *n, int id, uv_loop_t *loop);
/* On worker id's thread when it stops: answers parked listeners (empty: "nothing changed")
 * and closes the handles. */
void cn_nacos_worker_stop(struct cn_nacos *n, int id);

#endif
