/* cairn gateway -c FILE: the gateway alone. Listeners on N worker threads (SO_REUSEPORT per
 * worker), an admin listener (/healthz, /metrics) on the main thread, reloads on SIGHUP and
 * when the file changes (the directory is watched, so editors that replace the file by a
 * rename are seen). A rejected configuration leaves the running one in place. */
#include "base/log.h"
#include "cli/cmd.h"
#include "cli/config.h"
#include "ev/ev.h"
#include "gateway/admin.h"
#include "gateway/gateway.h"
#include "http/metrics.h"
#include "http/router.h"
#include "version.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <unistd.h>
#include <xxhash.h>

#define RELOAD_DEBOUNCE_MS 20
#define DRAIN_TIMEOUT_MS   10000

struct gwc {
    const char *config_path;
    char *dir, *base;
    uint64_t file_hash;
    struct cn_gw *gw;
    struct cn_gw_snapshot *first;
    struct cn_gw_admin *adm; /* the admin API (gateway/admin.h) */
    const char *token_file;  /* --admin-token-file */
    char token[4097];        /* the admin API's bearer token, "" for none */
    int nworkers, nstarted;
    size_t nlisteners;
    struct cn_router *empty_router;
    struct cn_router *admin_router;
    struct cn_http_server *servers;  /* [nlisteners] */
    struct cn_http_worker *hworkers; /* [nlisteners * nworkers] */
    int *drained;                    /* per worker: listeners drained */
    struct cn_worker *workers;
    struct cn_http_server admin;
    struct cn_http_worker admin_w;
    int admin_ok;
    uv_loop_t *loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_fs_event_t watch;
    int watching;
    uv_timer_t debounce, drain_timer;
    uv_async_t worker_done;
    atomic_int workers_done;
    int stopping;
};

static struct cn_http_worker *hw_of(struct gwc *g, size_t l, int id)
{
    return &g->hworkers[l * (size_t)g->nworkers + (size_t)id];
}

/* ---- admin routes ------------------------------------------------------------------------ */

static void h_healthz(struct cn_http_req *req, void *ctx)
{
    struct gwc *g = ctx;
    if (g->stopping) {
        cn_http_reply_text(req, 503, "draining");
        return;
    }
    cn_http_reply_text(req, 200, "ok");
}

static void h_metrics(struct cn_http_req *req, void *ctx)
{
    struct gwc *g = ctx;
    struct cn_buf b;
    cn_buf_init(&b, 16u << 20);
    cn_buf_printf(&b,
                  "# HELP cairn_build_info Version of this binary.\n"
                  "# TYPE cairn_build_info gauge\n"
                  "cairn_build_info{version=\"%s\",git=\"%s\"} 1\n"
                  "# HELP cairn_workers Worker threads.\n"
                  "# TYPE cairn_workers gauge\n"
                  "cairn_workers %d\n",
                  CAIRN_VERSION, CAIRN_GIT, g->nworkers);
    cn_gw_metrics_write(&b, g->gw);
    /* Client-side figures of the first listener (connections, protocol errors). */
    cn_http_metrics_write(&b, &g->servers[0]);
    cn_metrics_write_process(&b);
    cn_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.ptr, b.len, NULL, 0);
    cn_buf_release(&b);
}

/* ---- workers -------------------------------------------------------------------------------- */

static void on_drained(struct cn_http_worker *hw)
{
    struct gwc *g = hw->srv->data;
    int id = hw->id;
    if (++g->drained[id] < (int)g->nlisteners)
        return;
    cn_gw_worker_release(g->gw, id);
    cn_worker_close_wake(&g->workers[id]);
}

static void worker_setup(struct cn_worker *w)
{
    struct gwc *g = w->data;
    const struct cn_http_limits *lim = cn_gw_snapshot_limits(g->first);
    size_t ok = 0;
    w->setup_rc = cn_gw_worker_init(g->gw, w->id, &w->loop);
    for (size_t l = 0; !w->setup_rc && l < g->nlisteners; l++) {
        struct cn_http_worker *hw = hw_of(g, l, w->id);
        w->setup_rc = cn_http_worker_init(hw, &g->servers[l], &w->loop, w->id, lim);
        hw->on_drained = on_drained;
        if (!w->setup_rc) {
            cn_http_worker_set_limits(hw, lim, cn_gw_worker_generation(g->gw, w->id));
            ok++;
        }
    }
    if (w->setup_rc) {
        for (size_t l = 0; l < ok; l++) {
            struct cn_http_worker *hw = hw_of(g, l, w->id);
            hw->on_drained = NULL;
            cn_http_worker_drain(hw);
            cn_http_worker_release(hw);
        }
        cn_gw_worker_release(g->gw, w->id);
        cn_worker_close_wake(w);
    }
}

static void worker_wake(struct cn_worker *w, int flags)
{
    struct gwc *g = w->data;
    if (flags & CN_WORKER_RELOAD) {
        cn_gw_worker_adopt(g->gw, w->id);
        /* The listeners' limits follow the configuration (connections accepted from now). */
        const struct cn_http_limits *lim = cn_gw_worker_limits(g->gw, w->id);
        uint64_t gen = cn_gw_worker_generation(g->gw, w->id);
        for (size_t l = 0; lim && l < g->nlisteners; l++)
            cn_http_worker_set_limits(hw_of(g, l, w->id), lim, gen);
    }
    if ((flags & CN_WORKER_STOP) && !hw_of(g, 0, w->id)->draining) {
        cn_gw_worker_stop(g->gw, w->id);
        for (size_t l = 0; l < g->nlisteners; l++)
            cn_http_worker_drain(hw_of(g, l, w->id));
    }
    if (flags & CN_WORKER_FORCE) {
        for (size_t l = 0; l < g->nlisteners; l++)
            cn_http_worker_close_all(hw_of(g, l, w->id));
    }
}

static void worker_teardown(struct cn_worker *w)
{
    struct gwc *g = w->data;
    atomic_fetch_add(&g->workers_done, 1);
    uv_async_send(&g->worker_done);
}

/* ---- main loop ------------------------------------------------------------------------------ */

static void close_main(struct gwc *g)
{
    uv_close((uv_handle_t *)&g->sig_term, NULL);
    uv_close((uv_handle_t *)&g->sig_int, NULL);
    uv_close((uv_handle_t *)&g->sig_hup, NULL);
    uv_close((uv_handle_t *)&g->debounce, NULL);
    uv_close((uv_handle_t *)&g->drain_timer, NULL);
    uv_close((uv_handle_t *)&g->worker_done, NULL);
    if (g->watching)
        uv_close((uv_handle_t *)&g->watch, NULL);
    g->watching = 0;
    cn_gw_health_stop(g->gw);
    cn_gw_tls_watch_stop(g->gw);
    if (g->admin_ok)
        cn_http_worker_close_all(&g->admin_w);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
}

static void on_worker_done(uv_async_t *a)
{
    struct gwc *g = a->data;
    if (atomic_load(&g->workers_done) == g->nworkers)
        close_main(g);
}

static void on_drain_deadline(uv_timer_t *t)
{
    struct gwc *g = t->data;
    cn_warn("gateway", "drain deadline passed, closing every connection", NULL);
    for (int i = 0; i < g->nworkers; i++)
        cn_worker_post(&g->workers[i], CN_WORKER_FORCE);
}

static void stop(struct gwc *g, const char *why)
{
    if (g->stopping) {
        for (int i = 0; i < g->nworkers; i++)
            cn_worker_post(&g->workers[i], CN_WORKER_FORCE);
        return;
    }
    g->stopping = 1;
    cn_info("gateway", "stopping", "signal=%s", why);
    cn_gw_discovery_stop(g->gw); /* no wake may reach a worker that has left */
    if (g->admin_ok)
        cn_http_worker_drain(&g->admin_w);
    if (g->watching) {
        uv_fs_event_stop(&g->watch);
    }
    for (int i = 0; i < g->nworkers; i++)
        cn_worker_post(&g->workers[i], CN_WORKER_STOP);
    uv_timer_start(&g->drain_timer, on_drain_deadline, DRAIN_TIMEOUT_MS, 0);
}

/* Reads the file's hash; 0 when unreadable. */
static uint64_t file_hash(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        fclose(f);
        return 0;
    }
    XXH3_64bits_reset(st);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        XXH3_64bits_update(st, buf, n);
    fclose(f);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h ? h : 1;
}

/* The file again (it replaces what the admin API changed); the admin API publishes and
 * calls on_publish. */
static void reload(struct gwc *g, const char *why)
{
    if (g->stopping)
        return;
    uint64_t h = file_hash(g->config_path);
    if (cn_gw_admin_reload_file(g->adm, why))
        g->file_hash = h;
}

/* A snapshot was published (a reload, or the admin API on this loop): workers adopt it. */
static void on_publish(void *ctx)
{
    struct gwc *g = ctx;
    for (int i = 0; i < g->nstarted; i++)
        cn_worker_post(&g->workers[i], CN_WORKER_RELOAD);
}

/* The admin API's token: --admin-token-file, else $CAIRN_GATEWAY_ADMIN_TOKEN (never a flag's
 * value: command lines are visible to every user). Required when admin.address is not a
 * loopback address. Returns 0 or an exit code after printing why. */
static int load_token(struct gwc *g)
{
    const char *env = getenv("CAIRN_GATEWAY_ADMIN_TOKEN");
    size_t n = 0;
    if (g->token_file) {
        FILE *f = fopen(g->token_file, "rb");
        if (!f) {
            fprintf(stderr, "cairn: --admin-token-file: cannot open %s: %s\n", g->token_file,
                    strerror(errno));
            return CN_EXIT_CONFIG;
        }
        n = fread(g->token, 1, sizeof(g->token) - 1, f);
        int more = fgetc(f) != EOF;
        fclose(f);
        if (more) {
            fprintf(stderr, "cairn: --admin-token-file: %s holds more than 4096 bytes\n",
                    g->token_file);
            return CN_EXIT_CONFIG;
        }
    } else if (env && *env) {
        n = strlen(env);
        if (n >= sizeof(g->token)) {
            fprintf(stderr, "cairn: CAIRN_GATEWAY_ADMIN_TOKEN: longer than 4096 bytes\n");
            return CN_EXIT_CONFIG;
        }
        memcpy(g->token, env, n);
    }
    while (n && (g->token[n - 1] == '\n' || g->token[n - 1] == '\r' || g->token[n - 1] == ' '))
        n--;
    g->token[n] = '\0';
    /* RFC 6750 b64token: letters, digits, - . _ ~ + /, then '=' padding. */
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)g->token[i]) || strchr("-._~+/", g->token[i])))
        i++;
    while (i < n && g->token[i] == '=')
        i++;
    if (i < n) {
        fprintf(stderr, "cairn: the admin token holds a character a bearer token cannot hold "
                        "(letters, digits, - . _ ~ + / and trailing =)\n");
        return CN_EXIT_CONFIG;
    }
    if ((g->token_file || (env && *env)) && n == 0) {
        fprintf(stderr, "cairn: the admin token is empty\n");
        return CN_EXIT_CONFIG;
    }
    const char *admin = cn_gw_snapshot_admin(g->first);
    if (n == 0 && !cn_config_listen_is_loopback(admin)) {
        fprintf(stderr,
                "cairn: admin.address %s is not a loopback address: the admin API needs a "
                "bearer token (--admin-token-file FILE or CAIRN_GATEWAY_ADMIN_TOKEN)\n",
                admin);
        return CN_EXIT_CONFIG;
    }
    return 0;
}

/* A discovered change was published (the discovery thread): every worker adopts it. */
static void disc_wake(void *ctx)
{
    struct gwc *g = ctx;
    for (int i = 0; i < g->nworkers; i++)
        cn_worker_post(&g->workers[i], CN_WORKER_RELOAD);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct gwc *g = s->data;
    if (signum == SIGHUP)
        reload(g, "sighup");
    else
        stop(g, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_debounce(uv_timer_t *t)
{
    struct gwc *g = t->data;
    uint64_t h = file_hash(g->config_path);
    if (h == 0 || h == g->file_hash)
        return; /* unreadable mid-replace, or unchanged */
    reload(g, "file");
}

static void on_watch(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)events;
    struct gwc *g = h->data;
    if (status < 0 || !filename || strcmp(filename, g->base) != 0)
        return;
    uv_timer_start(&g->debounce, on_debounce, RELOAD_DEBOUNCE_MS, 0);
}

/* ---- command -------------------------------------------------------------------------------- */

static int parse_args(struct gwc *g, int argc, char **argv, long *workers, const char **level)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cn_print_usage("gateway", stdout);
            exit(CN_EXIT_OK);
        }
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        size_t nl = eq && a[0] == '-' && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
        int is_c = (nl == 2 && strncmp(a, "-c", 2) == 0) || (nl == 8 && !strncmp(a, "--config", 8));
        int is_w = nl == 9 && !strncmp(a, "--workers", 9);
        int is_l = nl == 11 && !strncmp(a, "--log-level", 11);
        int is_t = nl == 18 && !strncmp(a, "--admin-token-file", 18);
        if (!is_c && !is_w && !is_l && !is_t)
            return cn_usage_error(
                "gateway", a[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", a);
        if (nl != strlen(a))
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return cn_usage_error("gateway", "flag '%s' needs a value", a);
        if (is_c) {
            g->config_path = val;
        } else if (is_t) {
            g->token_file = val;
        } else if (is_w) {
            char *end;
            *workers = strtol(val, &end, 10);
            if (*end || *workers < 0 || *workers > 1024)
                return cn_usage_error("gateway", "--workers: '%s' is not 0..1024", val);
        } else {
            *level = val;
        }
    }
    if (!g->config_path)
        return cn_usage_error("gateway", "-c FILE is required");
    return 0;
}

/* Frees what cmd_gateway built (on its way out, or when it fails before the loop runs). */
static void free_gwc(struct gwc *g)
{
    cn_gw_snapshot_unref(g->first);
    cn_gw_admin_free(g->adm);
    cn_gw_free(g->gw);
    cn_router_free(g->empty_router);
    cn_router_free(g->admin_router);
    for (size_t l = 0; g->servers && l < g->nlisteners; l++)
        free(g->servers[l].workers);
    free(g->servers);
    free(g->hworkers);
    free(g->drained);
    free(g->workers);
    free(g->dir);
    free(g->base);
}

/* Reports why cmd_gateway failed before its loop ran, frees what it built, returns code. */
static int fail_early(struct gwc *g, int code, const char *fmt, const char *arg)
{
    fprintf(stderr, fmt, arg);
    free_gwc(g);
    return code;
}

int cmd_gateway(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "status") == 0 || strcmp(argv[1], "routes") == 0 ||
                     strcmp(argv[1], "clusters") == 0))
        return cn_gateway_ctl(argc, argv);
    struct gwc gs;
    struct gwc *g = &gs;
    memset(g, 0, sizeof(*g));
    long workers = -1;
    const char *level = "info";
    int rc = parse_args(g, argc, argv, &workers, &level);
    if (rc)
        return rc;
    enum cn_log_level lv;
    if (cn_log_level_parse(level, &lv) != 0)
        return cn_usage_error("gateway", "--log-level: '%s' is not debug, info, warn, error",
                              level);
    cn_log_threshold = (int)lv;
    char err[1024];
    g->file_hash = file_hash(g->config_path);
    g->first = cn_gw_config_load_file(g->config_path, err, sizeof(err));
    if (!g->first) {
        fprintf(stderr, "cairn: %s\n", err);
        return CN_EXIT_CONFIG;
    }
    if ((rc = load_token(g)) != 0) {
        cn_gw_snapshot_unref(g->first);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    uint64_t cw = cn_gw_snapshot_workers(g->first);
    g->nworkers = workers >= 0 ? (int)workers : (int)cw;
    if (g->nworkers == 0)
        g->nworkers = cn_ev_num_cores();
    g->nlisteners = cn_gw_snapshot_num_listeners(g->first);
    g->gw = cn_gw_new(g->nworkers);
    g->empty_router = cn_router_new();
    g->admin_router = cn_router_new();
    g->servers = calloc(g->nlisteners, sizeof(*g->servers));
    g->hworkers = calloc(g->nlisteners * (size_t)g->nworkers, sizeof(*g->hworkers));
    g->drained = calloc((size_t)g->nworkers, sizeof(*g->drained));
    g->workers = calloc((size_t)g->nworkers, sizeof(*g->workers));
    if (!g->gw || !g->empty_router || !g->admin_router || !g->servers || !g->hworkers ||
        !g->drained || !g->workers)
        return fail_early(g, CN_EXIT_FAIL, "cairn: %s\n", "out of memory");
    struct cn_gw_admin_opts ao = {g->config_path, on_publish, g};
    g->adm = cn_gw_admin_new(g->gw, g->first, &ao);
    /* Alone, a discovering cluster reads a registry by URL (`registry: local` is cairn up's);
     * each reads once now, so the workers start with the endpoints. */
    if (cn_gw_discovery_check(g->gw, g->first, err, sizeof(err)) != 0)
        return fail_early(g, CN_EXIT_CONFIG, "cairn: %s\n", err);
    if (cn_gw_discovery_start(g->gw) != 0)
        return fail_early(g, CN_EXIT_FAIL, "cairn: %s\n", "cannot start registry discovery");
    unsigned get = CN_M(HTTP_GET) | CN_M(HTTP_HEAD);
    int hz;
    if (!g->adm || (hz = cn_router_add(g->admin_router, get, "/healthz", h_healthz, g)) < 0 ||
        cn_router_set_flags(g->admin_router, hz, CN_ROUTE_PUBLIC) != 0 ||
        cn_router_add(g->admin_router, get, "/metrics", h_metrics, g) < 0 ||
        cn_gw_admin_routes(g->adm, g->admin_router) != 0)
        return fail_early(g, CN_EXIT_FAIL, "cairn: %s\n", "cannot build the admin routes");
    for (size_t l = 0; l < g->nlisteners; l++) {
        struct cn_http_server *srv = &g->servers[l];
        srv->router = g->empty_router;
        srv->addr = *cn_gw_snapshot_listener(g->first, l, NULL);
        srv->data = g;
        srv->stream_handler = cn_gw_handle;
        srv->stream_ctx = g->gw;
        srv->body_limit_name = "limits.max_body_bytes";
        srv->workers = calloc((size_t)g->nworkers, sizeof(*srv->workers));
        if (!srv->workers)
            return fail_early(g, CN_EXIT_FAIL, "cairn: %s\n", "out of memory");
        for (int i = 0; i < g->nworkers; i++)
            srv->workers[i] = hw_of(g, l, i);
        if (cn_gw_tls_attach(g->gw, srv, l) != 0)
            return fail_early(g, CN_EXIT_FAIL, "cairn: %s\n", "out of memory");
    }

    char *dup1 = strdup(g->config_path), *dup2 = strdup(g->config_path);
    g->dir = dup1 ? strdup(dirname(dup1)) : NULL;
    g->base = dup2 ? strdup(basename(dup2)) : NULL;
    free(dup1);
    free(dup2);

    g->loop = uv_default_loop();
    uv_signal_init(g->loop, &g->sig_term);
    uv_signal_init(g->loop, &g->sig_int);
    uv_signal_init(g->loop, &g->sig_hup);
    g->sig_term.data = g->sig_int.data = g->sig_hup.data = g;
    uv_signal_start(&g->sig_term, on_signal, SIGTERM);
    uv_signal_start(&g->sig_int, on_signal, SIGINT);
    uv_signal_start(&g->sig_hup, on_signal, SIGHUP);
    uv_timer_init(g->loop, &g->debounce);
    uv_timer_init(g->loop, &g->drain_timer);
    g->debounce.data = g->drain_timer.data = g;
    uv_async_init(g->loop, &g->worker_done, on_worker_done);
    g->worker_done.data = g;
    if (g->dir && g->base && uv_fs_event_init(g->loop, &g->watch) == 0) {
        g->watch.data = g;
        if (uv_fs_event_start(&g->watch, on_watch, g->dir, 0) == 0)
            g->watching = 1;
        else
            uv_close((uv_handle_t *)&g->watch, NULL);
    }

    if (cn_gw_health_start(g->gw, g->loop) != 0)
        cn_warn("gateway", "health checks could not start", NULL);
    if (cn_gw_tls_watch_start(g->gw, g->loop) != 0)
        cn_warn("gateway", "the certificate file watch could not start", NULL);
    /* Admin listener on the main loop. */
    const struct cn_http_limits *lim = cn_gw_snapshot_limits(g->first);
    g->admin.router = g->admin_router;
    g->admin.data = g;
    g->admin.token = g->token[0] ? g->token : NULL;
    g->admin.nworkers = 1;
    struct cn_http_worker *aw = &g->admin_w;
    g->admin.workers = &aw;
    int exit_code = CN_EXIT_OK;
    /* The admin API reads whole bodies (configuration documents): a body timeout (the
     * proxy's listeners have none, bodies stream) and the configuration's size limit. */
    struct cn_http_limits alim = *lim;
    alim.body_timeout_ms = alim.header_timeout_ms;
    alim.max_body_bytes = CN_MIN(alim.max_body_bytes, (uint64_t)16 << 20);
    if (cn_ev_parse_addr(cn_gw_snapshot_admin(g->first), &g->admin.addr) != 0 ||
        (rc = cn_http_worker_init(&g->admin_w, &g->admin, g->loop, 0, &alim)) != 0) {
        cn_error("gateway", "cannot listen", "part=admin addr=%s error=\"%s\"",
                 cn_gw_snapshot_admin(g->first), rc < -10000 ? cn_strerror(rc) : uv_strerror(rc));
        exit_code = CN_EXIT_FAIL;
    } else {
        g->admin_ok = 1;
    }

    int started = 0;
    for (int i = 0; exit_code == CN_EXIT_OK && i < g->nworkers; i++) {
        rc = cn_worker_start(&g->workers[i], i, worker_setup, worker_wake, worker_teardown, g);
        if (rc) {
            char addr[128];
            cn_ev_format_addr((struct sockaddr *)&g->servers[0].addr, addr, sizeof(addr));
            cn_error("gateway", "cannot listen", "addr=%s worker=%d error=\"%s\"", addr, i,
                     rc < -10000 ? cn_strerror(rc) : uv_strerror(rc));
            exit_code = CN_EXIT_FAIL;
            break;
        }
        started++;
        g->nstarted = started;
    }
    for (size_t l = 0; l < g->nlisteners; l++)
        g->servers[l].nworkers = started;
    if (exit_code != CN_EXIT_OK) {
        g->nworkers = started;
        g->stopping = 1;
        if (g->admin_ok)
            cn_http_worker_drain(&g->admin_w);
        for (int i = 0; i < started; i++)
            cn_worker_post(&g->workers[i], CN_WORKER_STOP | CN_WORKER_FORCE);
        if (started == 0)
            close_main(g);
    } else {
        for (size_t l = 0; l < g->nlisteners; l++) {
            const char *name;
            char addr[128];
            cn_gw_snapshot_listener(g->first, l, &name);
            cn_ev_format_addr((struct sockaddr *)&g->servers[l].addr, addr, sizeof(addr));
            cn_info("gateway", "listening", "part=gateway listener=%s addr=%s workers=%d tls=%s",
                    name, addr, g->nworkers,
                    cn_gw_snapshot_listener_tls(g->first, l) ? "on" : "off");
        }
        char aaddr[128];
        cn_ev_format_addr((struct sockaddr *)&g->admin.addr, aaddr, sizeof(aaddr));
        cn_info("gateway", "listening", "part=admin addr=%s token=%s", aaddr,
                g->token[0] ? "required" : "none");
        cn_info("gateway", "ready", "version=%s pid=%d config=%s watch=%s", CAIRN_VERSION,
                (int)getpid(), g->config_path, g->watching ? "yes" : "no");
        cn_gw_discovery_set_wake(g->gw, disc_wake, g);
    }
    uv_run(g->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < started; i++) {
        cn_worker_join(&g->workers[i]);
        for (size_t l = 0; l < g->nlisteners; l++)
            cn_http_worker_release(hw_of(g, l, i));
    }
    if (g->admin_ok)
        cn_http_worker_release(&g->admin_w);
    uv_run(g->loop, UV_RUN_NOWAIT);
    uv_loop_close(g->loop);
    if (exit_code == CN_EXIT_OK)
        cn_info("gateway", "stopped", "exit=0");
    free_gwc(g);
    return exit_code;
}
