/* The demo behind `cairn up --demo` (docs/demo.md): the shop's Node processes (demo/),
 * spawned and supervised by `cairn up` on its main loop, and the configuration of the gateway
 * in front of them, which `cairn up` runs on its own workers.
 *
 * Processes are started by pid with an argv and an environment built here, never through a
 * shell; each goes through `cairn demo exec`, which makes it die with cairn (parent-death
 * signal) before it execs node. A service's listening socket is bound by cairn and handed to
 * the process as fd 3, so a restarted service keeps its port and the gateway's configuration
 * never changes. The gateway's port is reserved by cairn (a bound SO_REUSEPORT socket that
 * never listens) until its workers listen on it. */
#ifndef CN_CLI_DEMO_H
#define CN_CLI_DEMO_H

#include "base/buf.h"

#include <sys/socket.h>
#include <uv.h>

#define CN_DEMO_FAULTS_DATA_ID "cairn-demo-faults"
#define CN_DEMO_FAULTS_GROUP   "CAIRN_DEMO"
#define CN_DEMO_NUM_SERVICES   6

/* The demo's services, in the order they are listed. */
extern const char *const cn_demo_services[CN_DEMO_NUM_SERVICES];

/* `cairn up` flags of the demo. Strings point into argv. */
struct cn_demo_opts {
    int enabled;         /* --demo */
    const char *dir;     /* --demo-dir DIR (NULL: $CAIRN_DEMO_DIR, ./demo, beside the binary) */
    const char *gateway; /* --demo-gateway HOST:PORT (default 127.0.0.1:8080; port 0: any) */
    const char *route;   /* --demo-route gateway|registry|direct (default gateway) */
    unsigned rps;        /* --demo-rps N, 1..1000 (default 5) */
};

/* Takes the demo's flags out of argv (the others move down, *argc shrinks) into o. Returns 0,
 * or -1 with a message in err (a bad value, a flag without its value). */
int cn_demo_take_flags(struct cn_demo_opts *o, int *argc, char **argv, char *err, size_t err_len);

/* Finds an executable name in the colon-separated dirs of path_env (empty entries are the
 * current directory, as for execvp). Returns 0 with the path in out, or CN_ENOENT. */
int cn_demo_find_exe(const char *path_env, const char *name, char *out, size_t out_len);

/* The addresses the demo's processes reach Cairn at, and the registry's credentials. */
struct cn_demo_links {
    struct sockaddr_storage otlp, registry;
    const char *registry_username, *registry_password; /* NULL without registry.auth */
};

struct cn_demo;

/* Checks what the demo needs (node on PATH, the demo directory and its node_modules),
 * creates data_dir/demo, binds the services' sockets, reserves the gateway's port and writes
 * the gateway's configuration (cn_demo_gateway_config). self_exe is this binary. NULL with a
 * message in err naming what is missing. */
struct cn_demo *cn_demo_new(const struct cn_demo_opts *o, const char *data_dir,
                            const char *self_exe, char *err, size_t err_len);
/* Spawns every process on loop. Returns 0 or a negative code with err set (nothing is left
 * running then). */
int cn_demo_start(struct cn_demo *d, uv_loop_t *loop, const struct cn_demo_links *links, char *err,
                  size_t err_len);
/* Stops: SIGTERM to every process, SIGKILL to those left after 5 s. The demo's handles close
 * once every process is gone (the loop can then end). Idempotent. */
void cn_demo_stop(struct cn_demo *d);
/* After the loop ended (or when cn_demo_start was never called). NULL does nothing. */
void cn_demo_free(struct cn_demo *d);

/* Appends the processes' state as a JSON object's members (no braces): "route", "rps",
 * "gateway", "processes": [{name, kind, pid, port, state, restarts, log}]. Thread-safe. */
int cn_demo_status_json(struct cn_demo *d, struct cn_buf *out);
/* The path of the gateway's configuration file (data_dir/demo/gateway.yaml), for cairn up's
 * gateway. */
const char *cn_demo_gateway_config(const struct cn_demo *d);
/* The gateway's URL ("http://127.0.0.1:8080") into out. */
void cn_demo_gateway_url(struct cn_demo *d, char *out, size_t out_len);
/* Serialises read-modify-write of the fault document (api-demo.c). */
void cn_demo_lock(struct cn_demo *d);
void cn_demo_unlock(struct cn_demo *d);

/* A fault switch. */
struct cn_demo_fault {
    const char *service; /* one of cn_demo_services, or "all" with "clear" */
    const char *fault;   /* error, latency, bad-version, clear */
    double error_rate;   /* error and bad-version: share of failing requests (0: default) */
    unsigned latency_ms; /* latency: added time (0: default) */
};

/* Applies f to the fault document doc (JSON object text, len 0 for none) and writes the new
 * document into out. Returns 0, or CN_EINVAL with err naming the field (service, fault,
 * errorRate, latencyMs) or saying that doc is not a JSON object. */
int cn_demo_fault_apply(const char *doc, size_t len, const struct cn_demo_fault *f,
                        struct cn_buf *out, char *err, size_t err_len);

/* `cairn demo exec PARENT_PID PATH ARG...`: the trampoline every demo process starts
 * through. Never returns on success. */
int cn_demo_exec(int argc, char **argv);

#endif
