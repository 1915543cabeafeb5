/* The demo's processes: what they need, how they start, restart and stop (demo.h). */
#include "cli/demo.h"

#include "base/log.h"
#include "ev/ev.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

const char *const cn_demo_services[CN_DEMO_NUM_SERVICES] = {
    "frontend", "recommendations", "checkout", "inventory", "payments", "shipping",
};

#define BACKOFF_MIN_MS  500
#define BACKOFF_MAX_MS  30000
#define STABLE_MS       10000 /* a process that ran this long restarts at BACKOFF_MIN_MS */
#define KILL_AFTER_MS   5000
#define DEFAULT_RPS     5
#define DEFAULT_GATEWAY "127.0.0.1:8080"
#define MAX_ENV         24
#define ENV_BYTES       8192
#define MAX_ARGS        12

enum proc_kind { PROC_SERVICE, PROC_LOADGEN };
static const char *const kind_names[] = {"service", "loadgen"};

/* One supervised process. States: waiting (timer armed, no process), running (proc handle
 * active, pid set), closing (exited, handle closing), stopped (stopping and gone). The
 * listening socket of a service lives as long as the demo, across restarts. */
struct demo_proc {
    struct cn_demo *d;
    const char *name;
    enum proc_kind kind;
    uv_process_t proc;
    uv_timer_t timer;
    int running; /* proc handle open */
    int pid;
    int listen_fd; /* services: bound and listening, handed over as fd 3 */
    uint16_t port;
    unsigned restarts;
    uint64_t backoff_ms, started_ms;
    int last_exit, last_signal;
    char log_path[4096];
};

#define NUM_PROCS (CN_DEMO_NUM_SERVICES + 1) /* the services and the load generator */

struct cn_demo {
    uv_mutex_t lock; /* guards the procs' pid/state/restarts for status readers, and faults */
    uv_mutex_t faults_lock;
    uv_loop_t *loop;
    char node[4096], self_exe[4096], dir[4096], data_dir[4096];
    char gw_yaml[4096];
    const char *route;
    unsigned rps;
    struct sockaddr_storage gw_addr;
    int gw_fd; /* the gateway's port, reserved until cairn up's workers listen on it */
    struct cn_demo_links links;
    struct demo_proc procs[NUM_PROCS];
    uv_timer_t kill_timer;
    int started, stopping, handles_open, closing, timers_closed;
};

/* snprintf into a path buffer; -1 when it does not fit. */
static int pathf(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *out, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out, len, fmt, ap);
    va_end(ap);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

/* ---- flags ----------------------------------------------------------------------------- */

int cn_demo_take_flags(struct cn_demo_opts *o, int *argc, char **argv, char *err, size_t err_len)
{
    memset(o, 0, sizeof(*o));
    o->rps = DEFAULT_RPS;
    o->route = "gateway";
    o->gateway = DEFAULT_GATEWAY;
    static const char *const with_value[] = {"--demo-dir", "--demo-gateway", "--demo-route",
                                             "--demo-rps"};
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--demo") == 0) {
            o->enabled = 1;
            continue;
        }
        size_t k = 0;
        const char *val = NULL;
        for (; k < CN_ARRAY_LEN(with_value); k++) {
            size_t n = strlen(with_value[k]);
            if (strncmp(a, with_value[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                if (a[n] == '=')
                    val = a + n + 1;
                else if (i + 1 < *argc)
                    val = argv[++i];
                else {
                    snprintf(err, err_len, "flag '%s' needs a value", a);
                    return -1;
                }
                break;
            }
        }
        if (k == CN_ARRAY_LEN(with_value)) {
            argv[out++] = argv[i];
            continue;
        }
        if (k == 0) {
            o->dir = val;
        } else if (k == 1) {
            struct sockaddr_storage ss;
            if (cn_ev_parse_addr(val, &ss) != 0) {
                snprintf(err, err_len, "--demo-gateway: '%s' is not HOST:PORT", val);
                return -1;
            }
            o->gateway = val;
        } else if (k == 2) {
            if (strcmp(val, "gateway") != 0 && strcmp(val, "registry") != 0 &&
                strcmp(val, "direct") != 0) {
                snprintf(err, err_len, "--demo-route: '%s' is not gateway, registry or direct",
                         val);
                return -1;
            }
            o->route = val;
        } else {
            char *end;
            errno = 0;
            unsigned long v = strtoul(val, &end, 10);
            if (!*val || *end || errno || v < 1 || v > 1000 || val[0] == '-') {
                snprintf(err, err_len, "--demo-rps: '%s' is not a number from 1 to 1000", val);
                return -1;
            }
            o->rps = (unsigned)v;
        }
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

/* ---- what the demo needs --------------------------------------------------------------- */

int cn_demo_find_exe(const char *path_env, const char *name, char *out, size_t out_len)
{
    if (!path_env || !*name || strchr(name, '/'))
        return CN_ENOENT;
    const char *p = path_env;
    for (;;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        int w = n ? snprintf(out, out_len, "%.*s/%s", (int)n, p, name)
                  : snprintf(out, out_len, "./%s", name);
        struct stat st;
        if (w > 0 && (size_t)w < out_len && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
            access(out, X_OK) == 0)
            return 0;
        if (!colon)
            break;
        p = colon + 1;
    }
    if (out_len)
        out[0] = '\0';
    return CN_ENOENT;
}

static int is_file(const char *dir, const char *rel)
{
    char p[4300];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return stat(p, &st) == 0;
}

/* The demo directory: the flag, $CAIRN_DEMO_DIR, ./demo, then demo/ two levels above the
 * binary (build/release/cairn in a checkout). */
static int find_dir(const char *flag, const char *self_exe, char *out, size_t out_len)
{
    const char *env = getenv("CAIRN_DEMO_DIR");
    if (flag || (env && *env)) {
        snprintf(out, out_len, "%s", flag ? flag : env);
        return is_file(out, "service.mjs") ? 0 : CN_ENOENT;
    }
    snprintf(out, out_len, "demo");
    if (is_file(out, "service.mjs"))
        return 0;
    char exe[4096];
    snprintf(exe, sizeof(exe), "%s", self_exe);
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            break;
        *slash = '\0';
        pathf(out, out_len, "%s/demo", exe);
        if (is_file(out, "service.mjs"))
            return 0;
    }
    return CN_ENOENT;
}

/* The processes run in the demo directory: a relative path (./demo and ./cairn-data, the
 * usual case from a checkout) would be resolved from there again. */
static int make_absolute(char *path, size_t cap, const char *what, char *err, size_t err_len)
{
    char abs[PATH_MAX];
    errno = 0;
    if (!realpath(path, abs) || strlen(abs) >= cap) {
        snprintf(err, err_len, "--demo: cannot resolve %s %s: %s", what, path,
                 strerror(errno ? errno : ENAMETOOLONG));
        return CN_EINVAL;
    }
    snprintf(path, cap, "%s", abs);
    return 0;
}

/* A listening TCP socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(uint16_t *out_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *out_port = ntohs(a.sin_port);
    return fd;
}

/* Reserves addr's port (filling in a kernel-chosen one when it is 0): a socket bound with
 * SO_REUSEPORT that never listens keeps every other user off the port while the gateway
 * (same user, SO_REUSEPORT) binds and listens on it. */
static int reserve(struct sockaddr_storage *addr)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)addr, len) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int write_gateway_yaml(struct cn_demo *d, char *err, size_t err_len);

struct cn_demo *cn_demo_new(const struct cn_demo_opts *o, const char *data_dir,
                            const char *self_exe, char *err, size_t err_len)
{
    struct cn_demo *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    d->gw_fd = -1;
    for (size_t i = 0; i < NUM_PROCS; i++)
        d->procs[i].listen_fd = -1;
    uv_mutex_init(&d->lock);
    uv_mutex_init(&d->faults_lock);
    d->route = o->route;
    d->rps = o->rps;
    pathf(d->self_exe, sizeof(d->self_exe), "%s", self_exe);
    if (strlen(data_dir) > 3000 || strlen(self_exe) >= sizeof(d->self_exe)) {
        snprintf(err, err_len, "--demo: data_dir or the binary's path is too long");
        goto fail;
    }
    pathf(d->data_dir, sizeof(d->data_dir), "%s/demo", data_dir);
    if (cn_demo_find_exe(getenv("PATH"), "node", d->node, sizeof(d->node)) != 0) {
        snprintf(err, err_len,
                 "--demo needs Node.js, and node is not on PATH: run scripts/deps.sh");
        goto fail;
    }
    if (find_dir(o->dir, self_exe, d->dir, sizeof(d->dir)) != 0) {
        snprintf(err, err_len,
                 "--demo: no demo directory (demo/service.mjs) at %s: run from the checkout, "
                 "or pass --demo-dir DIR",
                 o->dir ? o->dir : "./demo or beside the binary");
        goto fail;
    }
    if (make_absolute(d->dir, sizeof(d->dir), "the demo directory", err, err_len) != 0)
        goto fail;
    if (!is_file(d->dir, "node_modules/@opentelemetry/sdk-trace-base/package.json") ||
        !is_file(d->dir, "node_modules/nacos/package.json")) {
        snprintf(err, err_len,
                 "--demo: %s/node_modules is missing or incomplete: run scripts/deps.sh", d->dir);
        goto fail;
    }
    if (mkdir(d->data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "--demo: cannot create %s: %s", d->data_dir, strerror(errno));
        goto fail;
    }
    if (make_absolute(d->data_dir, sizeof(d->data_dir), "the demo's data directory", err,
                      err_len) != 0)
        goto fail;
    pathf(d->gw_yaml, sizeof(d->gw_yaml), "%s/gateway.yaml", d->data_dir);
    cn_ev_parse_addr(o->gateway, &d->gw_addr);
    if ((d->gw_fd = reserve(&d->gw_addr)) < 0) {
        snprintf(err, err_len,
                 "--demo: the gateway's address %s is taken (%s): pass "
                 "--demo-gateway HOST:PORT",
                 o->gateway, strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < NUM_PROCS; i++) {
        struct demo_proc *p = &d->procs[i];
        p->d = d;
        p->backoff_ms = BACKOFF_MIN_MS;
        if (i < CN_DEMO_NUM_SERVICES) {
            p->kind = PROC_SERVICE;
            p->name = cn_demo_services[i];
            if ((p->listen_fd = listen_any(&p->port)) < 0) {
                snprintf(err, err_len, "--demo: cannot listen for %s: %s", p->name,
                         strerror(errno));
                goto fail;
            }
        } else {
            p->kind = PROC_LOADGEN;
            p->name = "loadgen";
        }
        pathf(p->log_path, sizeof(p->log_path), "%s/%s.log", d->data_dir, p->name);
    }
    if (write_gateway_yaml(d, err, err_len) != 0)
        goto fail;
    return d;
fail:
    cn_demo_free(d);
    return NULL;
}

/* ---- argv and environment ---------------------------------------------------------------- */

/* HOST:PORT a local client connects to for a listener's address (a wildcard becomes the
 * loopback address). */
static void connect_addr(const struct sockaddr_storage *ss, char *out, size_t out_len)
{
    struct sockaddr_storage c = *ss;
    if (c.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&c;
        if (a->sin_addr.s_addr == htonl(INADDR_ANY))
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (c.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&c;
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
            a->sin6_addr = in6addr_loopback;
    }
    cn_ev_format_addr((struct sockaddr *)&c, out, out_len);
}

/* Environment of a process, built into storage: PATH, HOME and the sanitizer options of
 * cairn's own, then the demo's variables (docs/demo.md). Returns the count, or -1 when
 * storage is too small. */
struct envb {
    char *vars[MAX_ENV + 1];
    size_t n;
    char buf[ENV_BYTES];
    size_t used;
};

static int env_add(struct envb *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int env_add(struct envb *e, const char *fmt, ...)
{
    if (e->n >= MAX_ENV)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(e->buf + e->used, sizeof(e->buf) - e->used, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof(e->buf) - e->used)
        return -1;
    e->vars[e->n++] = e->buf + e->used;
    e->vars[e->n] = NULL;
    e->used += (size_t)w + 1;
    return 0;
}

static int build_env(struct cn_demo *d, struct demo_proc *p, struct envb *e)
{
    static const char *const pass[] = {"PATH", "HOME", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                                       "LSAN_OPTIONS"};
    int rc = 0;
    e->n = 0;
    e->used = 0;
    e->vars[0] = NULL;
    for (size_t i = 0; i < CN_ARRAY_LEN(pass); i++) {
        const char *v = getenv(pass[i]);
        if (v)
            rc |= env_add(e, "%s=%s", pass[i], v);
    }
    char otlp[128], reg[128], gw[128];
    connect_addr(&d->links.otlp, otlp, sizeof(otlp));
    connect_addr(&d->links.registry, reg, sizeof(reg));
    connect_addr(&d->gw_addr, gw, sizeof(gw));
    rc |= env_add(e, "OTEL_EXPORTER_OTLP_ENDPOINT=http://%s", otlp);
    rc |= env_add(e, "DEMO_REGISTRY=%s", reg);
    if (d->links.registry_username) {
        rc |= env_add(e, "DEMO_REGISTRY_USERNAME=%s", d->links.registry_username);
        rc |= env_add(e, "DEMO_REGISTRY_PASSWORD=%s", d->links.registry_password);
    }
    rc |= env_add(e, "DEMO_ROUTE=%s", d->route);
    rc |= env_add(e, "DEMO_GATEWAY=%s", gw);
    char peers[1024];
    size_t pl = 0;
    peers[0] = '\0';
    for (size_t i = 0; i < CN_DEMO_NUM_SERVICES; i++)
        pl += (size_t)snprintf(peers + pl, sizeof(peers) - pl, "%s%s=127.0.0.1:%u", i ? "," : "",
                               d->procs[i].name, d->procs[i].port);
    rc |= env_add(e, "DEMO_PEERS=%s", peers);
    rc |= env_add(e, "DEMO_CACHE_DIR=%s/nacos-cache", d->data_dir);
    if (p->kind == PROC_SERVICE) {
        rc |= env_add(e, "DEMO_LISTEN_FD=3");
        rc |= env_add(e, "DEMO_PORT=%u", p->port);
    } else {
        rc |= env_add(e, "DEMO_RPS=%u", d->rps);
    }
    return rc;
}

/* argv: `cairn demo exec PARENT PATH ARGV0 ARGS...`, from fixed words, paths cairn found
 * and the service's name from cn_demo_services. */
static int build_argv(struct cn_demo *d, struct demo_proc *p, const char **argv, char *pid_buf,
                      size_t pid_len, char *script, size_t script_len)
{
    size_t n = 0;
    snprintf(pid_buf, pid_len, "%d", (int)getpid());
    argv[n++] = d->self_exe;
    argv[n++] = "demo";
    argv[n++] = "exec";
    argv[n++] = pid_buf;
    snprintf(script, script_len, "%s/%s", d->dir,
             p->kind == PROC_SERVICE ? "service.mjs" : "loadgen.mjs");
    argv[n++] = d->node;
    argv[n++] = "node";
    argv[n++] = script;
    if (p->kind == PROC_SERVICE) {
        argv[n++] = "--service";
        argv[n++] = p->name;
    }
    argv[n] = NULL;
    return (int)n;
}

/* The demo gateway's configuration, run by cairn up's own gateway on its workers: a route
 * per service by Host header (the services call http://GATEWAY with Host: NAME) and the rest
 * to frontend. Only addresses and the fixed service names go in. Tracing stays off: the
 * services' own spans make the topology, and the traceparent passes through untouched. */
static int write_gateway_yaml(struct cn_demo *d, char *err, size_t err_len)
{
    char tmp[4200], gw[128];
    cn_ev_format_addr((struct sockaddr *)&d->gw_addr, gw, sizeof(gw));
    snprintf(tmp, sizeof(tmp), "%s.tmp", d->gw_yaml);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, err_len, "cannot write %s: %s", tmp, strerror(errno));
        return CN_EIO;
    }
    fprintf(f,
            "# Written by cairn up --demo at each start (docs/demo.md); edits are lost.\n"
            "# Changes through the admin API (/api/v1/gateway) hold until cairn up reloads.\n"
            "listeners:\n  - name: demo\n    address: \"%s\"\n"
            "proxy:\n  request_id: true\n"
            "clusters:\n",
            gw);
    for (size_t i = 0; i < CN_DEMO_NUM_SERVICES; i++)
        fprintf(f,
                "  - name: %s\n    endpoints: [\"127.0.0.1:%u\"]\n"
                "    timeouts: {connect: 1s, first_byte: 10s}\n",
                d->procs[i].name, d->procs[i].port);
    fprintf(f, "routes:\n");
    for (size_t i = 0; i < CN_DEMO_NUM_SERVICES; i++)
        fprintf(f, "  - name: %s\n    hostnames: [%s]\n    backendRefs: [{name: %s}]\n",
                d->procs[i].name, d->procs[i].name, d->procs[i].name);
    fprintf(f, "  - name: shop\n    backendRefs: [{name: frontend}]\n");
    if (fclose(f) != 0 || rename(tmp, d->gw_yaml) != 0) {
        snprintf(err, err_len, "cannot write %s: %s", d->gw_yaml, strerror(errno));
        return CN_EIO;
    }
    return 0;
}

/* ---- supervision ------------------------------------------------------------------------- */

static void spawn(struct demo_proc *p);

static void on_timer(uv_timer_t *t)
{
    spawn(t->data);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct demo_proc *p = h->data;
    struct cn_demo *d = p->d;
    if (--d->handles_open == 0 && d->stopping)
        uv_close((uv_handle_t *)&d->kill_timer, NULL);
}

static int all_exited(struct cn_demo *d)
{
    for (size_t i = 0; i < NUM_PROCS; i++)
        if (d->procs[i].running)
            return 0;
    return 1;
}

static void close_timers(struct cn_demo *d)
{
    if (d->timers_closed)
        return;
    d->timers_closed = 1;
    for (size_t i = 0; i < NUM_PROCS; i++) {
        d->handles_open++;
        uv_close((uv_handle_t *)&d->procs[i].timer, on_handle_closed);
    }
}

static void on_proc_closed(uv_handle_t *h)
{
    struct demo_proc *p = h->data;
    struct cn_demo *d = p->d;
    d->closing--;
    if (!d->stopping) {
        uint64_t ran = uv_now(d->loop) - p->started_ms;
        if (ran >= STABLE_MS)
            p->backoff_ms = BACKOFF_MIN_MS;
        cn_warn("demo", "process exited, restarting",
                "name=%s status=%d signal=%d ran_ms=%llu "
                "restart_in_ms=%llu log=%s",
                p->name, p->last_exit, p->last_signal, (unsigned long long)ran,
                (unsigned long long)p->backoff_ms, p->log_path);
        uv_timer_start(&p->timer, on_timer, p->backoff_ms, 0);
        p->backoff_ms = CN_MIN(p->backoff_ms * 2, (uint64_t)BACKOFF_MAX_MS);
        return;
    }
    if (all_exited(d) && !d->closing) {
        uv_timer_stop(&d->kill_timer);
        cn_info("demo", "stopped", "processes=%d", NUM_PROCS);
        close_timers(d);
    }
}

static void on_proc_exit(uv_process_t *h, int64_t status, int sig)
{
    struct demo_proc *p = h->data;
    struct cn_demo *d = p->d;
    uv_mutex_lock(&d->lock);
    p->running = 0;
    p->pid = 0;
    p->last_exit = (int)status;
    p->last_signal = sig;
    if (!d->stopping)
        p->restarts++;
    uv_mutex_unlock(&d->lock);
    d->closing++;
    uv_close((uv_handle_t *)h, on_proc_closed);
}

static void spawn(struct demo_proc *p)
{
    struct cn_demo *d = p->d;
    if (d->stopping)
        return;
    struct envb *e = malloc(sizeof(*e));
    const char *argv[MAX_ARGS + 1];
    char pid_buf[32], script[4200];
    int logfd = -1, rc = CN_ENOMEM;
    if (!e)
        goto retry;
    if (build_env(d, p, e) != 0) {
        cn_error("demo", "environment too large", "name=%s", p->name);
        goto retry;
    }
    build_argv(d, p, argv, pid_buf, sizeof(pid_buf), script, sizeof(script));
    logfd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_IGNORE},
        {.flags = logfd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = logfd},
        {.flags = logfd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = logfd},
        {.flags = p->listen_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = p->listen_fd},
    };
    uv_process_options_t po = {
        .exit_cb = on_proc_exit,
        .file = argv[0],
        .args = (char **)argv,
        .env = e->vars,
        .cwd = d->dir,
        .flags = UV_PROCESS_DETACHED, /* its own session: Ctrl-C reaches cairn, which stops it */
        .stdio_count = p->kind == PROC_SERVICE ? 4 : 3,
        .stdio = stdio,
    };
    p->proc.data = p;
    rc = uv_spawn(d->loop, &p->proc, &po);
    if (logfd >= 0)
        close(logfd);
    if (rc == 0) {
        uv_mutex_lock(&d->lock);
        p->running = 1;
        p->pid = p->proc.pid;
        uv_mutex_unlock(&d->lock);
        p->started_ms = uv_now(d->loop);
        cn_info("demo", "started", "name=%s pid=%d port=%u log=%s", p->name, p->pid, p->port,
                p->log_path);
        free(e);
        return;
    }
    cn_error("demo", "cannot start", "name=%s error=\"%s\"", p->name, uv_strerror(rc));
retry:
    free(e);
    uv_timer_start(&p->timer, on_timer, p->backoff_ms, 0);
    p->backoff_ms = CN_MIN(p->backoff_ms * 2, (uint64_t)BACKOFF_MAX_MS);
}

int cn_demo_start(struct cn_demo *d, uv_loop_t *loop, const struct cn_demo_links *links, char *err,
                  size_t err_len)
{
    (void)err;
    (void)err_len;
    d->loop = loop;
    d->links = *links;
    uv_timer_init(loop, &d->kill_timer);
    d->kill_timer.data = d;
    for (size_t i = 0; i < NUM_PROCS; i++) {
        uv_timer_init(loop, &d->procs[i].timer);
        d->procs[i].timer.data = &d->procs[i];
    }
    d->started = 1;
    for (size_t i = 0; i < NUM_PROCS; i++)
        spawn(&d->procs[i]);
    return 0;
}

static void on_kill_deadline(uv_timer_t *t)
{
    struct cn_demo *d = t->data;
    for (size_t i = 0; i < NUM_PROCS; i++)
        if (d->procs[i].running) {
            cn_warn("demo", "process did not stop, killing it", "name=%s pid=%d", d->procs[i].name,
                    d->procs[i].pid);
            uv_process_kill(&d->procs[i].proc, SIGKILL);
        }
}

void cn_demo_stop(struct cn_demo *d)
{
    if (!d || !d->started || d->stopping)
        return;
    d->stopping = 1;
    for (size_t i = 0; i < NUM_PROCS; i++) {
        uv_timer_stop(&d->procs[i].timer);
        if (d->procs[i].running)
            uv_process_kill(&d->procs[i].proc, SIGTERM);
    }
    cn_info("demo", "stopping", "kill_after_ms=%d", KILL_AFTER_MS);
    if (all_exited(d)) {
        /* Nothing runs: every process waits to restart, or its handle is closing (then
         * on_proc_closed finishes). */
        if (!d->closing)
            close_timers(d);
        return;
    }
    uv_timer_start(&d->kill_timer, on_kill_deadline, KILL_AFTER_MS, 0);
}

void cn_demo_free(struct cn_demo *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < NUM_PROCS; i++)
        if (d->procs[i].listen_fd >= 0)
            close(d->procs[i].listen_fd);
    if (d->gw_fd >= 0)
        close(d->gw_fd);
    uv_mutex_destroy(&d->lock);
    uv_mutex_destroy(&d->faults_lock);
    free(d);
}

/* ---- status and faults ------------------------------------------------------------------ */

const char *cn_demo_gateway_config(const struct cn_demo *d)
{
    return d->gw_yaml;
}

void cn_demo_gateway_url(struct cn_demo *d, char *out, size_t out_len)
{
    char a[128];
    connect_addr(&d->gw_addr, a, sizeof(a));
    snprintf(out, out_len, "http://%s", a);
}

void cn_demo_lock(struct cn_demo *d)
{
    uv_mutex_lock(&d->faults_lock);
}

void cn_demo_unlock(struct cn_demo *d)
{
    uv_mutex_unlock(&d->faults_lock);
}

int cn_demo_status_json(struct cn_demo *d, struct cn_buf *out)
{
    char gw[160];
    cn_demo_gateway_url(d, gw, sizeof(gw));
    int rc = cn_buf_printf(out, "\"route\":\"%s\",\"rps\":%u,\"gateway\":\"%s\",\"processes\":[",
                           d->route, d->rps, gw);
    uv_mutex_lock(&d->lock);
    for (size_t i = 0; i < NUM_PROCS; i++) {
        const struct demo_proc *p = &d->procs[i];
        const char *state = p->running ? "running" : d->stopping ? "stopped" : "restarting";
        rc |= cn_buf_printf(out, "%s{\"name\":\"%s\",\"kind\":\"%s\",\"pid\":%d,", i ? "," : "",
                            p->name, kind_names[p->kind], p->running ? p->pid : 0);
        if (p->kind == PROC_SERVICE)
            rc |= cn_buf_printf(out, "\"port\":%u,", p->port);
        rc |= cn_buf_printf(out, "\"state\":\"%s\",\"restarts\":%u,\"log\":", state, p->restarts);
        json_t *s = json_string(p->log_path);
        char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        rc |= t ? cn_buf_puts(out, t) : cn_buf_puts(out, "null");
        free(t);
        json_decref(s);
        rc |= cn_buf_puts(out, "}");
    }
    uv_mutex_unlock(&d->lock);
    rc |= cn_buf_puts(out, "]");
    return rc ? CN_ELIMIT : 0;
}

static int known_service(const char *s)
{
    for (size_t i = 0; i < CN_DEMO_NUM_SERVICES; i++)
        if (strcmp(s, cn_demo_services[i]) == 0)
            return 1;
    return 0;
}

int cn_demo_fault_apply(const char *doc, size_t len, const struct cn_demo_fault *f,
                        struct cn_buf *out, char *err, size_t err_len)
{
    static const char *const kinds[] = {"error", "latency", "bad-version", "clear"};
    size_t k = 0;
    while (k < CN_ARRAY_LEN(kinds) && (!f->fault || strcmp(f->fault, kinds[k]) != 0))
        k++;
    if (k == CN_ARRAY_LEN(kinds)) {
        snprintf(err, err_len, "fault: '%s' is not error, latency, bad-version or clear",
                 f->fault ? f->fault : "");
        return CN_EINVAL;
    }
    int all = f->service && strcmp(f->service, "all") == 0;
    if (!f->service || (!all && !known_service(f->service))) {
        snprintf(err, err_len,
                 "service: '%s' is not a demo service (frontend, recommendations, "
                 "checkout, inventory, payments, shipping%s)",
                 f->service ? f->service : "", k == 3 ? ", all" : "");
        return CN_EINVAL;
    }
    if (all && k != 3) {
        snprintf(err, err_len, "service: 'all' goes only with clear");
        return CN_EINVAL;
    }
    if (f->error_rate < 0 || f->error_rate > 1 || f->error_rate != f->error_rate) {
        snprintf(err, err_len, "errorRate: must be from 0 to 1");
        return CN_EINVAL;
    }
    if (f->latency_ms > 60000) {
        snprintf(err, err_len, "latencyMs: must be at most 60000");
        return CN_EINVAL;
    }
    json_error_t je;
    json_t *root = len ? json_loadb(doc, len, 0, &je) : json_object();
    if (!json_is_object(root)) {
        /* A document someone broke by hand: start again from no fault rather than refuse. */
        json_decref(root);
        root = json_object();
    }
    if (all) {
        json_object_clear(root);
    } else if (k == 3) {
        json_object_del(root, f->service);
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "fault", json_string(kinds[k]));
        if (k != 1)
            json_object_set_new(o, "errorRate",
                                json_real(f->error_rate > 0 ? f->error_rate
                                          : k == 0          ? 0.5
                                                            : 0.4));
        else
            json_object_set_new(o, "latencyMs", json_integer(f->latency_ms ? f->latency_ms : 400));
        json_object_set_new(root, f->service, o);
    }
    char *text = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(root);
    if (!text) {
        snprintf(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    int rc = cn_buf_puts(out, text);
    free(text);
    return rc ? CN_ELIMIT : 0;
}

/* ---- the trampoline ---------------------------------------------------------------------- */

int cn_demo_exec(int argc, char **argv)
{
    /* argv: exec PARENT PATH ARGV0 ARGS... */
    if (argc < 4) {
        fprintf(stderr, "cairn demo exec: usage: cairn demo exec PARENT_PID PATH ARGV0 [ARG...]\n");
        return 2;
    }
    long parent = strtol(argv[1], NULL, 10);
    /* Dies with cairn, even when cairn is killed with SIGKILL; checked after the prctl so
     * that a parent that died in between is seen too. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != (pid_t)parent) {
        fprintf(stderr, "cairn demo exec: the parent (pid %ld) is gone\n", parent);
        return 1;
    }
    execve(argv[2], argv + 3, environ);
    fprintf(stderr, "cairn demo exec: cannot run %s: %s\n", argv[2], strerror(errno));
    return 127;
}
