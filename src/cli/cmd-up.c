/* cairn up: every part in one process. Today: the API port with health, readiness and
 * metrics on N worker threads; signals drain (SIGTERM/SIGINT) and reload (SIGHUP). */
#include "base/log.h"
#include "base/proc.h"
#include "cli/cmd.h"
#include "cli/demo.h"
#include "cli/up.h"
#include "gateway/admin.h"
#include "registry/store.h"
#include "telemetry/tail.h"
#include "version.h"

#include <malloc.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct cn_config *cn_up_config(struct cn_up *up)
{
    uv_mutex_lock(&up->lock);
    struct cn_config *c = cn_config_ref(up->cfg);
    uv_mutex_unlock(&up->lock);
    return c;
}

/* Flags that map to settings; each takes a value. */
static const struct {
    const char *flag;
    const char *key;
} flag_keys[] = {
    {"--workers", "workers"},
    {"--api-listen", "api.listen"},
    {"--log-level", "log.level"},
};

/* Checks flags and finds the configuration file. Returns 0 or CN_EXIT_USAGE. */
static int parse_flags(struct cn_up *up, int argc, char **argv)
{
    up->config_path = getenv("CAIRN_CONFIG");
    if (up->config_path && !*up->config_path)
        up->config_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cn_print_usage("up", stdout);
            exit(CN_EXIT_OK);
        }
        const char *eq = strchr(a, '=');
        size_t name_len = eq && a[0] == '-' && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
        int known = strncmp(a, "-c", name_len) == 0 && name_len == 2;
        known |= name_len == 8 && strncmp(a, "--config", 8) == 0;
        known |= name_len == 5 && strncmp(a, "--set", 5) == 0;
        for (size_t k = 0; k < CN_ARRAY_LEN(flag_keys); k++)
            known |= strlen(flag_keys[k].flag) == name_len &&
                     strncmp(a, flag_keys[k].flag, name_len) == 0;
        if (!known)
            return cn_usage_error(
                "up", a[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", a);
        const char *val = eq && name_len != strlen(a) ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc)
                return cn_usage_error("up", "flag '%s' needs a value", a);
            val = argv[++i];
        }
        if (name_len == 2 || name_len == 8)
            up->config_path = val;
        if (name_len == 5 && !strchr(val, '='))
            return cn_usage_error("up", "--set needs KEY=VALUE, got '%s'", val);
    }
    up->argc = argc;
    up->argv = argv;
    return 0;
}

/* Defaults, then the file, then CAIRN_* variables, then the flags. */
static struct cn_config *build_config(struct cn_up *up, char *err, size_t err_len)
{
    struct cn_config *cfg = cn_config_new();
    if (!cfg) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    if (up->config_path && cn_config_load_file(cfg, up->config_path, err, err_len) != 0)
        goto fail;
    if (cn_config_apply_env(cfg, up->envp, err, err_len) != 0)
        goto fail;
    for (int i = 1; i < up->argc; i++) {
        const char *a = up->argv[i];
        const char *eq = strchr(a, '=');
        size_t name_len = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
        const char *val = eq && a[1] == '-' ? eq + 1 : up->argv[++i];
        if (name_len == 2 || name_len == 8)
            continue; /* -c / --config */
        char key[128];
        const char *v = val;
        if (name_len == 5) {
            const char *e = strchr(val, '=');
            snprintf(key, sizeof(key), "%.*s", (int)(e - val), val);
            v = e + 1;
        } else {
            for (size_t k = 0; k < CN_ARRAY_LEN(flag_keys); k++)
                if (strlen(flag_keys[k].flag) == name_len &&
                    strncmp(a, flag_keys[k].flag, name_len) == 0)
                    snprintf(key, sizeof(key), "%s", flag_keys[k].key);
        }
        if (cn_config_set(cfg, key, v, err, err_len) != 0)
            goto fail;
    }
    /* The demo's spans and logs carry code.filepath as an absolute path: link it to the
     * editor unless the configuration links code elsewhere. */
    if (up->demo_enabled &&
        (!cfg->telemetry.code_links || !strcmp(cfg->telemetry.code_links, "{}")) &&
        cn_config_set(cfg, "telemetry.code_links", "{\"*\": \"vscode://file{filepath}:{lineno}\"}",
                      err, err_len) != 0)
        goto fail;
    if (cn_config_validate(cfg, err, err_len) != 0)
        goto fail;
    return cfg;
fail:
    cn_config_unref(cfg);
    return NULL;
}

/* ---- workers --------------------------------------------------------------------------- */

static struct cn_up *the_up(struct cn_worker *w)
{
    return w->data;
}

static struct cn_http_worker *up_gw_hw(struct cn_up *up, size_t l, int id)
{
    return &up->gw_hworkers[l * (size_t)up->nworkers + (size_t)id];
}

/* A worker leaves its loop once both servers drained and no export awaits the store. */
static void maybe_finish(struct cn_up *up, int id)
{
    struct up_worker *uw = &up->uw[id];
    if (uw->finished || !uw->api_drained || !uw->otlp_drained || !uw->nacos_drained ||
        uw->gw_drained < up->gw_nlisteners || up->rworkers[id].inflight)
        return;
    uw->finished = 1;
    cn_mailbox_close(&up->rworkers[id].mailbox);
    cn_worker_close_wake(&up->workers[id]);
}

static void on_drained(struct cn_http_worker *hw)
{
    struct cn_up *up = hw->srv->data;
    if (hw->srv == &up->api)
        up->uw[hw->id].api_drained = 1;
    else if (up->gw_nlisteners && hw->srv >= up->gw_servers &&
             hw->srv < up->gw_servers + up->gw_nlisteners) {
        if (++up->uw[hw->id].gw_drained == up->gw_nlisteners)
            cn_gw_worker_release(up->gw, hw->id);
    } else if (hw->srv == &up->nacos_srv)
        up->uw[hw->id].nacos_drained = 1;
    else
        up->uw[hw->id].otlp_drained = 1;
    maybe_finish(up, hw->id);
}

static void on_receiver_idle(struct cn_receiver_worker *rw)
{
    struct cn_up *up = rw->data;
    int id = (int)(rw - up->rworkers);
    if (up->uw[id].api_drained && up->uw[id].otlp_drained && up->uw[id].nacos_drained &&
        up->uw[id].gw_drained >= up->gw_nlisteners)
        maybe_finish(up, id);
}

static struct cn_http_limits otlp_limits(const struct cn_config *cfg)
{
    struct cn_http_limits l = cfg->http;
    l.max_body_bytes = cfg->otlp.max_body_bytes;
    return l;
}

static void worker_setup(struct cn_worker *w)
{
    struct cn_up *up = the_up(w);
    struct cn_http_worker *hw = &up->http_workers[w->id];
    struct cn_http_worker *ow = &up->otlp_workers[w->id];
    struct cn_receiver_worker *rw = &up->rworkers[w->id];
    struct cn_http_worker *nw = &up->nacos_workers[w->id];
    struct cn_config *cfg = cn_up_config(up);
    struct cn_http_limits ol = otlp_limits(cfg);
    uint64_t gen = atomic_load(&up->generation);
    int api_ok = 0, otlp_ok = 0, nacos_ok = 0, nmb_ok = 0;
    w->setup_rc = cn_mailbox_init(&rw->mailbox, &w->loop);
    rw->data = up;
    rw->on_idle = on_receiver_idle;
    if (!w->setup_rc) {
        w->setup_rc = cn_http_worker_init(hw, &up->api, &w->loop, w->id, &cfg->http);
        api_ok = !w->setup_rc;
    }
    if (!w->setup_rc) {
        w->setup_rc = cn_http_worker_init(ow, &up->otlp, &w->loop, w->id, &ol);
        otlp_ok = !w->setup_rc;
    }
    if (!w->setup_rc) {
        w->setup_rc = cn_nacos_worker_init(up->nacos, w->id, &w->loop);
        nmb_ok = !w->setup_rc;
    }
    if (!w->setup_rc) {
        w->setup_rc = cn_http_worker_init(nw, &up->nacos_srv, &w->loop, w->id, &cfg->http);
        nacos_ok = !w->setup_rc;
    }
    size_t gw_ok = 0;
    int gw_init = 0;
    if (!w->setup_rc && up->gw) {
        w->setup_rc = cn_gw_worker_init(up->gw, w->id, &w->loop);
        gw_init = !w->setup_rc;
        const struct cn_http_limits *gl = cn_gw_worker_limits(up->gw, w->id);
        for (size_t l = 0; !w->setup_rc && l < up->gw_nlisteners; l++) {
            struct cn_http_worker *gh = up_gw_hw(up, l, w->id);
            w->setup_rc = cn_http_worker_init(gh, &up->gw_servers[l], &w->loop, w->id, gl);
            if (!w->setup_rc) {
                gh->on_drained = on_drained;
                cn_http_worker_set_limits(gh, gl, cn_gw_worker_generation(up->gw, w->id));
                gw_ok++;
            }
        }
    }
    hw->on_drained = on_drained;
    ow->on_drained = on_drained;
    nw->on_drained = on_drained;
    cn_http_worker_set_limits(hw, &cfg->http, gen);
    cn_http_worker_set_limits(ow, &ol, gen);
    cn_http_worker_set_limits(nw, &cfg->http, gen);
    cn_config_unref(cfg);
    if (w->setup_rc) {
        /* Undo what was set up; the loop then runs the close callbacks and ends. */
        if (api_ok)
            cn_http_worker_drain(hw);
        if (otlp_ok)
            cn_http_worker_drain(ow);
        if (nacos_ok)
            cn_http_worker_drain(nw);
        if (nmb_ok)
            cn_nacos_worker_stop(up->nacos, w->id);
        for (size_t l = 0; l < gw_ok; l++) {
            up_gw_hw(up, l, w->id)->on_drained = NULL;
            cn_http_worker_drain(up_gw_hw(up, l, w->id));
            cn_http_worker_release(up_gw_hw(up, l, w->id));
        }
        if (gw_init)
            cn_gw_worker_release(up->gw, w->id);
        cn_http_worker_release(hw);
        cn_http_worker_release(ow);
        cn_http_worker_release(nw);
        cn_mailbox_close(&rw->mailbox);
        cn_worker_close_wake(w);
    }
}

static void worker_wake(struct cn_worker *w, int flags)
{
    struct cn_up *up = the_up(w);
    struct cn_http_worker *hw = &up->http_workers[w->id];
    struct cn_http_worker *ow = &up->otlp_workers[w->id];
    if (flags & CN_WORKER_RELOAD) {
        struct cn_config *cfg = cn_up_config(up);
        struct cn_http_limits ol = otlp_limits(cfg);
        uint64_t gen = atomic_load(&up->generation);
        cn_http_worker_set_limits(hw, &cfg->http, gen);
        cn_http_worker_set_limits(ow, &ol, gen);
        cn_http_worker_set_limits(&up->nacos_workers[w->id], &cfg->http, gen);
        cn_config_unref(cfg);
        if (up->gw && !hw->draining) {
            cn_gw_worker_adopt(up->gw, w->id);
            const struct cn_http_limits *gl = cn_gw_worker_limits(up->gw, w->id);
            uint64_t gg = cn_gw_worker_generation(up->gw, w->id);
            for (size_t l = 0; gl && l < up->gw_nlisteners; l++)
                cn_http_worker_set_limits(up_gw_hw(up, l, w->id), gl, gg);
        }
    }
    if ((flags & CN_WORKER_STOP) && !hw->draining) {
        /* Held listeners are answered ("nothing changed") so their connections can drain. */
        cn_nacos_worker_stop(up->nacos, w->id);
        cn_http_worker_drain(hw);
        cn_http_worker_drain(ow);
        cn_http_worker_drain(&up->nacos_workers[w->id]);
        if (up->gw)
            cn_gw_worker_stop(up->gw, w->id);
        for (size_t l = 0; l < up->gw_nlisteners; l++)
            cn_http_worker_drain(up_gw_hw(up, l, w->id));
    }
    if (flags & CN_WORKER_FORCE) {
        for (size_t l = 0; l < up->gw_nlisteners; l++)
            cn_http_worker_close_all(up_gw_hw(up, l, w->id));
        cn_http_worker_close_all(hw);
        cn_http_worker_close_all(ow);
        cn_http_worker_close_all(&up->nacos_workers[w->id]);
    }
}

static void worker_teardown(struct cn_worker *w)
{
    struct cn_up *up = the_up(w);
    atomic_fetch_add(&up->workers_done, 1);
    uv_async_send(&up->worker_done);
}

/* ---- registry ---------------------------------------------------------------------------- */

/* Opens the registry's store in data_dir/registry, loads it, and builds the Nacos server.
 * Returns 0 or -1 after logging why. */
static int setup_registry(struct cn_up *up)
{
    const struct cn_config *c = up->cfg;
    char dir[4096], err[512];
    snprintf(dir, sizeof(dir), "%s/registry", c->data_dir);
    struct cn_reg_store *st;
    if (c->registry.etcd_endpoints && *c->registry.etcd_endpoints) {
        /* Cluster mode: the state lives in etcd, shared with the other nodes. */
        struct cn_reg_etcd_opts eo = {
            c->registry.etcd_endpoints,       c->registry.etcd_prefix,
            c->registry.etcd_dial_timeout_ms, c->registry.etcd_request_timeout_ms,
            c->registry.etcd_lease_ttl_ms,    c->registry.etcd_reconcile_ms,
            c->registry.etcd_max_response};
        snprintf(dir, sizeof(dir), "etcd %s", c->registry.etcd_endpoints);
        st = cn_reg_store_etcd_open(&eo, err, sizeof(err));
    } else {
        st = cn_reg_store_sqlite_open(dir, err, sizeof(err));
    }
    if (!st) {
        cn_error("up", "cannot open the registry store", "dir=%s error=\"%s\"", dir, err);
        return -1;
    }
    struct cn_reg_opts ro;
    cn_reg_opts_default(&ro);
    ro.max_services = c->registry.max_services;
    ro.max_instances_per_service = c->registry.max_instances_per_service;
    ro.max_configs = c->registry.max_configs;
    ro.max_config_bytes = c->registry.max_config_bytes;
    ro.max_history = c->registry.max_history;
    ro.beat_interval_ms = c->registry.beat_interval_ms;
    ro.beat_timeout_ms = c->registry.beat_timeout_ms;
    ro.delete_timeout_ms = c->registry.delete_timeout_ms;
    ro.cache_millis = c->registry.cache_ms;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    up->reg = cn_reg_new(&ro, st, (uint64_t)ts.tv_sec * 1000u, err, sizeof(err));
    if (!up->reg) {
        st->ops->close(st);
        cn_error("up", "cannot load the registry", "dir=%s error=\"%s\"", dir, err);
        return -1;
    }
    struct cn_nacos_opts no = {
        c->registry.max_listen_keys, c->registry.max_hold_ms,
        c->registry.max_parked,      c->registry.auth,
        c->registry.username,        c->registry.password,
        c->registry.token_ttl_ms,    CN_MAX(3 * c->registry.cache_ms, (uint64_t)10000)};
    size_t nw = (size_t)up->nworkers;
    up->nacos = cn_nacos_new(up->reg, &no, up->nworkers);
    up->nacos_router = cn_router_new();
    up->nacos_workers = calloc(nw, sizeof(*up->nacos_workers));
    up->nacos_srv.workers = calloc(nw, sizeof(*up->nacos_srv.workers));
    if (!up->nacos || !up->nacos_router || !up->nacos_workers || !up->nacos_srv.workers ||
        cn_nacos_routes(up->nacos, up->nacos_router) != 0 ||
        cn_api_registry_routes(up, up->router) < 0) {
        cn_error("up", "cannot build the registry routes", "error=%s", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < nw; i++)
        up->nacos_srv.workers[i] = &up->nacos_workers[i];
    up->nacos_srv.router = up->nacos_router;
    up->nacos_srv.data = up;
    if (cn_ev_parse_addr(c->registry.listen, &up->nacos_srv.addr) != 0) {
        cn_error("up", "registry.listen is not HOST:PORT", "listen=%s", c->registry.listen);
        return -1;
    }
    return 0;
}

/* ---- main loop ------------------------------------------------------------------------- */

static void close_main_handles(struct cn_up *up)
{
    uv_close((uv_handle_t *)&up->sig_term, NULL);
    uv_close((uv_handle_t *)&up->sig_int, NULL);
    uv_close((uv_handle_t *)&up->sig_hup, NULL);
    uv_close((uv_handle_t *)&up->drain_timer, NULL);
    uv_close((uv_handle_t *)&up->worker_done, NULL);
    cn_reg_ctl_stop(up->reg_ctl);
    up->reg_ctl = NULL;
    if (up->gw)
        cn_gw_tls_watch_stop(up->gw);
    /* Closing the signal handles restores the default actions: a late SIGTERM must not
     * turn a clean exit into death by signal. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
}

static void on_worker_done(uv_async_t *a)
{
    struct cn_up *up = a->data;
    if (atomic_load(&up->workers_done) == up->nworkers)
        close_main_handles(up);
}

static void on_drain_deadline(uv_timer_t *t)
{
    struct cn_up *up = t->data;
    int64_t open = atomic_load(&up->api.open_total);
    cn_warn("up", "drain deadline passed", "open_connections=%lld", (long long)open);
    for (int i = 0; i < up->nworkers; i++)
        cn_worker_post(&up->workers[i], CN_WORKER_FORCE);
}

static void stop(struct cn_up *up, const char *why)
{
    if (up->stopping) {
        cn_warn("up", "second stop signal: closing every connection now", "signal=%s", why);
        for (int i = 0; i < up->nworkers; i++)
            cn_worker_post(&up->workers[i], CN_WORKER_FORCE);
        return;
    }
    up->stopping = 1;
    atomic_store(&up->api.draining, 1);
    if (up->gw)
        cn_gw_discovery_stop(up->gw); /* no wake may reach a worker that has left */
    cn_demo_stop(up->demo);
    struct cn_config *cfg = cn_up_config(up);
    uint64_t drain = cfg->shutdown.drain_timeout_ms;
    cn_config_unref(cfg);
    cn_info("up", "stopping", "signal=%s drain_timeout_ms=%llu", why, (unsigned long long)drain);
    for (int i = 0; i < up->nworkers; i++)
        cn_worker_post(&up->workers[i], CN_WORKER_STOP);
    uv_timer_start(&up->drain_timer, on_drain_deadline, drain, 0);
}

/* ---- gateway discovery: the registry in-process is the gateway's endpoint source ---- */

static int gw_list(void *ctx, const char *ns, const char *group, const char *service,
                   const char *clusters, struct cn_buf *out)
{
    struct cn_up *up = ctx;
    struct cn_reg_query q = {cn_slice_of(ns), cn_slice_of(group), cn_slice_of(service),
                             cn_slice_of(clusters), 0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return cn_reg_list_json(up->reg, &q, now, out);
}

/* Under the registry's writer lock: only marks the gateway's watch and wakes its thread. */
static void gw_svc_changed(void *ctx, const char *ns, const char *group, const char *service)
{
    struct cn_up *up = ctx;
    cn_gw_endpoints_changed(up->gw, ns, group, service);
}

/* A discovered change was published: every worker adopts it. */
static void gw_disc_wake(void *ctx)
{
    struct cn_up *up = ctx;
    for (int i = 0; i < up->nworkers; i++)
        cn_worker_post(&up->workers[i], CN_WORKER_RELOAD);
}

/* The gateway's file again (its path is the one cairn up started with): a new snapshot, or
 * the running one stays. Listeners change only on restart. */
static void reload_gateway(struct cn_up *up)
{
    cn_gw_admin_reload_file(up->gw_admin, "sighup");
}

/* A gateway snapshot was published (a reload, or the admin API on any worker's thread):
 * the workers adopt it. */
static void on_gw_publish(void *ctx)
{
    struct cn_up *up = ctx;
    int n = atomic_load(&up->workers_started);
    for (int i = 0; i < n; i++)
        cn_worker_post(&up->workers[i], CN_WORKER_RELOAD);
}

/* Loads the gateway's file and sets up its listeners (gateway.config). Returns 0, or an exit
 * code after printing why. */
static int setup_gateway(struct cn_up *up)
{
    const char *path = up->cfg->gateway.config;
    if ((!path || !*path) && up->demo)
        path = cn_demo_gateway_config(up->demo); /* the demo's, on the same workers */
    if (!path || !*path)
        return 0;
    up->gw_path = path;
    char err[1024];
    up->gw_first = cn_gw_config_load_file(path, err, sizeof(err));
    if (!up->gw_first) {
        fprintf(stderr, "cairn: gateway.config: %s\n", err);
        return CN_EXIT_CONFIG;
    }
    up->gw_nlisteners = cn_gw_snapshot_num_listeners(up->gw_first);
    size_t nw = (size_t)up->nworkers;
    up->gw = cn_gw_new(up->nworkers);
    up->gw_router = cn_router_new();
    up->gw_servers = calloc(up->gw_nlisteners, sizeof(*up->gw_servers));
    up->gw_hworkers = calloc(up->gw_nlisteners * nw, sizeof(*up->gw_hworkers));
    if (!up->gw || !up->gw_router || !up->gw_servers || !up->gw_hworkers)
        return CN_EXIT_FAIL;
    cn_gw_set_store(up->gw, up->store);
    struct cn_gw_ep_source src = {gw_list, up};
    cn_gw_set_endpoint_source(up->gw, &src);
    if (cn_reg_add_svc_change_cb(up->reg, gw_svc_changed, up) != 0)
        return CN_EXIT_FAIL;
    struct cn_gw_admin_opts ao = {path, on_gw_publish, up};
    up->gw_admin = cn_gw_admin_new(up->gw, up->gw_first, &ao);
    if (!up->gw_admin)
        return CN_EXIT_FAIL;
    for (size_t l = 0; l < up->gw_nlisteners; l++) {
        struct cn_http_server *srv = &up->gw_servers[l];
        srv->router = up->gw_router;
        srv->addr = *cn_gw_snapshot_listener(up->gw_first, l, NULL);
        srv->data = up;
        srv->stream_handler = cn_gw_handle;
        srv->stream_ctx = up->gw;
        srv->body_limit_name = "limits.max_body_bytes";
        srv->workers = calloc(nw, sizeof(*srv->workers));
        if (!srv->workers)
            return CN_EXIT_FAIL;
        for (size_t i = 0; i < nw; i++)
            srv->workers[i] = &up->gw_hworkers[l * nw + i];
        if (cn_gw_tls_attach(up->gw, srv, l) != 0)
            return CN_EXIT_FAIL;
    }
    /* Clusters with discovery read the registry once now: the workers start with them. */
    if (cn_gw_discovery_start(up->gw) != 0) {
        fprintf(stderr, "cairn: cannot start the gateway's registry discovery\n");
        return CN_EXIT_FAIL;
    }
    return 0;
}

static void free_gateway(struct cn_up *up)
{
    /* Before the store closes: the exporter hands its last batches to it. */
    cn_gw_admin_free(up->gw_admin);
    up->gw_admin = NULL;
    if (up->gw && up->reg)
        cn_reg_remove_svc_change_cb(up->reg, gw_svc_changed, up);
    cn_gw_free(up->gw);
    up->gw = NULL;
    cn_gw_snapshot_unref(up->gw_first);
    cn_router_free(up->gw_router);
    for (size_t l = 0; up->gw_servers && l < up->gw_nlisteners; l++)
        free(up->gw_servers[l].workers);
    free(up->gw_servers);
    free(up->gw_hworkers);
}

static void reload(struct cn_up *up)
{
    char err[512];
    struct cn_config *cfg = build_config(up, err, sizeof(err));
    if (!cfg) {
        atomic_fetch_add(&up->reload_failures, 1);
        cn_error("up", "reload rejected, the running configuration stays", "error=\"%s\"", err);
        return;
    }
    struct cn_config *old = cn_up_config(up);
    size_t n = cn_config_num_settings();
    for (size_t i = cn_config_diff(old, cfg, 0); i < n; i = cn_config_diff(old, cfg, i + 1)) {
        if (cn_config_setting_needs_restart(i))
            cn_warn("up", "setting changes only on restart", "key=%s", cn_config_setting_key(i));
        else
            cn_info("up", "setting changed", "key=%s", cn_config_setting_key(i));
    }
    cn_config_unref(old);
    cn_log_threshold = (int)cfg->log_level;
    if (up->gw)
        reload_gateway(up);
    uv_mutex_lock(&up->lock);
    old = up->cfg;
    up->cfg = cfg;
    uv_mutex_unlock(&up->lock);
    cn_config_unref(old);
    uint64_t gen = atomic_fetch_add(&up->generation, 1) + 1;
    atomic_fetch_add(&up->reloads, 1);
    for (int i = 0; i < up->nworkers; i++)
        cn_worker_post(&up->workers[i], CN_WORKER_RELOAD);
    cn_info("up", "configuration reloaded", "generation=%llu file=%s", (unsigned long long)gen,
            up->config_path ? up->config_path : "-");
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct cn_up *up = s->data;
    if (signum == SIGHUP)
        reload(up);
    else
        stop(up, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Starts the demo's processes once every listener is up, and says where to look. A demo
 * that cannot start stops cairn (exit 1). */
static void start_demo(struct cn_up *up, const char *api_addr)
{
    const struct cn_config *c = up->cfg;
    struct cn_demo_links l = {.otlp = up->otlp.addr, .registry = up->nacos_srv.addr};
    if (c->registry.auth) {
        l.registry_username = c->registry.username;
        l.registry_password = c->registry.password;
    }
    char err[512];
    int rc = cn_api_demo_reset(up);
    if (rc)
        cn_warn("demo", "cannot reset the fault switches", "error=\"%s\"", cn_strerror(rc));
    if (cn_demo_start(up->demo, up->loop, &l, err, sizeof(err)) != 0) {
        cn_error("demo", "cannot start", "error=\"%s\"", err);
        up->exit_code = CN_EXIT_FAIL;
        stop(up, "demo");
        return;
    }
    char gw[160];
    cn_demo_gateway_url(up->demo, gw, sizeof(gw));
    int dflt = strcmp(api_addr, "127.0.0.1:9000") == 0;
    printf(
        "\nThe demo shop is starting (docs/demo.md): six services behind a gateway, under load.\n"
        "  console:     http://%s/\n"
        "  the shop:    %s/products  (through the gateway)\n"
        "  Jaeger API:  http://%s/api/services, http://%s/api/traces?service=checkout\n"
        "  try:         cairn topo\n"
        "               cairn demo fault payments error\n"
        "               cairn rca --service checkout     (payments ranks first)\n"
        "               cairn demo fault payments clear\n"
        "               cairn demo status\n"
        "%s%s%s"
        "  demo output: %s/demo/*.log\n\n",
        api_addr, gw, api_addr, api_addr, dflt ? "" : "  (the commands need CAIRN_SERVER=http://",
        dflt ? "" : api_addr, dflt ? "" : ")\n", c->data_dir);
    fflush(stdout);
}

int cmd_up(int argc, char **argv)
{
    struct cn_up up_s;
    struct cn_up *up = &up_s;
    memset(up, 0, sizeof(*up));
    up->envp = environ;
    struct cn_demo_opts demo_opts;
    char err[512];
    if (cn_demo_take_flags(&demo_opts, &argc, argv, err, sizeof(err)) != 0)
        return cn_usage_error("up", "%s", err);
    up->demo_enabled = demo_opts.enabled;
    int rc = parse_flags(up, argc, argv);
    if (rc)
        return rc;
    up->cfg = build_config(up, err, sizeof(err));
    if (!up->cfg) {
        fprintf(stderr, "cairn: %s\n", err);
        return CN_EXIT_CONFIG;
    }
    cn_log_threshold = (int)up->cfg->log_level;
    signal(SIGPIPE, SIG_IGN);
    /* Ingest allocates and frees request bodies and decode arenas of tens to hundreds of
     * KiB per request: keep freed memory for reuse instead of returning it to the kernel and
     * faulting fresh zeroed pages in for the next request (measured: 5x fewer page faults). */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    /* Every open segment holds a file descriptor, and a store near its disk budget holds
     * thousands (~18k of 1.1 MB at the default 20g): the soft limit, 1024 for many service
     * managers, goes up to the hard one, as nginx's worker_rlimit_nofile or Go's runtime do. */
    uint64_t nofile_from = 0, nofile_to = 0;
    int nofile_rc = cn_proc_raise_nofile(&nofile_from, &nofile_to);
    if (nofile_rc)
        cn_warn("up", "cannot raise the open files limit", "soft=%llu error=\"%s\"",
                (unsigned long long)nofile_from, cn_strerror(nofile_rc));
    else if (nofile_to != nofile_from)
        cn_debug("up", "open files limit raised", "from=%llu to=%llu",
                 (unsigned long long)nofile_from, (unsigned long long)nofile_to);
    uv_mutex_init(&up->lock);
    atomic_init(&up->generation, 1);

    up->nworkers = up->cfg->workers ? (int)up->cfg->workers : cn_ev_num_cores();
    up->router = cn_router_new();
    if (!up->router || cn_api_routes(up, up->router, up->cfg->api.test_routes) < 0) {
        fprintf(stderr, "cairn: cannot build the API routes\n");
        return CN_EXIT_FAIL;
    }
    up->api.router = up->router;
    up->api.data = up;
    up->api.token = up->cfg->api.token && *up->cfg->api.token ? up->cfg->api.token : NULL;
    if (cn_ev_parse_addr(up->cfg->api.listen, &up->api.addr) != 0) {
        fprintf(stderr, "cairn: api.listen: '%s' is not HOST:PORT\n", up->cfg->api.listen);
        return CN_EXIT_CONFIG;
    }
    if (cn_ev_parse_addr(up->cfg->otlp.listen, &up->otlp.addr) != 0) {
        fprintf(stderr, "cairn: otlp.listen: '%s' is not HOST:PORT\n", up->cfg->otlp.listen);
        return CN_EXIT_CONFIG;
    }
    size_t nw = (size_t)up->nworkers;
    up->workers = calloc(nw, sizeof(*up->workers));
    up->http_workers = calloc(nw, sizeof(*up->http_workers));
    up->api.workers = calloc(nw, sizeof(*up->api.workers));
    up->otlp_workers = calloc(nw, sizeof(*up->otlp_workers));
    up->otlp.workers = calloc(nw, sizeof(*up->otlp.workers));
    up->rworkers = calloc(nw, sizeof(*up->rworkers));
    up->uw = calloc(nw, sizeof(*up->uw));
    if (!up->workers || !up->http_workers || !up->api.workers || !up->otlp_workers ||
        !up->otlp.workers || !up->rworkers || !up->uw)
        return CN_EXIT_FAIL;
    for (int i = 0; i < up->nworkers; i++) {
        up->api.workers[i] = &up->http_workers[i];
        up->otlp.workers[i] = &up->otlp_workers[i];
    }

    /* The telemetry store replays its write-ahead log before anything is accepted. */
    char teldir[4096];
    snprintf(teldir, sizeof(teldir), "%s/telemetry", up->cfg->data_dir);
    const struct cn_config *c = up->cfg;
    struct cn_store_opts so = {
        .dir = teldir,
        .head_max_bytes = c->telemetry.memory_bytes,
        .queue_max_bytes = c->telemetry.queue_bytes,
        .wal_segment_bytes = c->telemetry.wal_segment_bytes,
        .max_body_bytes = (uint32_t)CN_MIN(c->otlp.max_body_bytes, (uint64_t)UINT32_MAX),
        .fsync = c->telemetry.fsync ? CN_WAL_FSYNC_ALWAYS : CN_WAL_FSYNC_NEVER,
        .wal_buffered = !c->telemetry.wal_direct,
        .seal_bytes = c->telemetry.seal_bytes,
        .seal_interval_ms = c->telemetry.seal_interval_ms,
        .retention_ms = c->telemetry.retention_ms,
        .disk_budget = c->telemetry.disk_budget,
        .bloom_cache_bytes = c->telemetry.bloom_cache,
        .footer_cache_bytes = c->telemetry.footer_cache,
        .trace_map_mem_days = (int32_t)c->telemetry.trace_map_days,
        .max_spans_per_trace = (uint32_t)c->telemetry.max_spans_per_trace,
        .limits = {(uint32_t)c->telemetry.max_attributes,
                   (uint32_t)c->telemetry.max_attribute_value_bytes,
                   (uint32_t)c->telemetry.max_events, (uint32_t)c->telemetry.max_links},
    };
    if (cn_store_open(&up->store, &so, err, sizeof(err)) != 0) {
        cn_error("up", "cannot open the telemetry store", "dir=%s error=\"%s\"", teldir, err);
        return CN_EXIT_FAIL;
    }
    up->tail = cn_tail_new();
    if (up->tail)
        cn_store_set_ingest_cb(up->store, cn_tail_publish, up->tail);
    up->receiver.store = up->store;
    up->receiver.limits = so.limits;
    up->receiver.decode_budget = (size_t)c->otlp.max_body_bytes * 4 + (1u << 20);
    up->receiver.retry_after_s = (uint32_t)(c->telemetry.retry_after_ms / 1000);
    up->receiver.workers = up->rworkers;
    up->otlp_router = cn_router_new();
    if (!up->otlp_router || cn_receiver_routes(&up->receiver, up->otlp_router) != 0) {
        fprintf(stderr, "cairn: cannot build the receiver routes\n");
        return CN_EXIT_FAIL;
    }
    up->otlp.router = up->otlp_router;
    up->otlp.data = up;
    up->otlp.token = c->otlp.token && *c->otlp.token ? c->otlp.token : NULL;
    up->otlp.body_limit_name = "otlp.max_body_bytes";
    if (setup_registry(up) != 0)
        return CN_EXIT_FAIL;
    if (demo_opts.enabled) {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        self[n > 0 ? n : 0] = '\0';
        up->demo = cn_demo_new(&demo_opts, c->data_dir, self, err, sizeof(err));
        if (!up->demo) {
            fprintf(stderr, "cairn: %s\n", err);
            return CN_EXIT_FAIL;
        }
    }
    if ((rc = setup_gateway(up)) != 0)
        return rc;
    /* The gateway's admin API on the API port (404 "not running" without a gateway). */
    if (cn_gw_admin_routes(up->gw_admin, up->router) != 0) {
        fprintf(stderr, "cairn: cannot build the gateway's API routes\n");
        return CN_EXIT_FAIL;
    }
    up->otlp.error_body = cn_receiver_error_body;

    up->loop = uv_default_loop();
    uv_signal_init(up->loop, &up->sig_term);
    uv_signal_init(up->loop, &up->sig_int);
    uv_signal_init(up->loop, &up->sig_hup);
    up->sig_term.data = up->sig_int.data = up->sig_hup.data = up;
    uv_signal_start(&up->sig_term, on_signal, SIGTERM);
    uv_signal_start(&up->sig_int, on_signal, SIGINT);
    uv_signal_start(&up->sig_hup, on_signal, SIGHUP);
    uv_timer_init(up->loop, &up->drain_timer);
    up->drain_timer.data = up;
    uv_async_init(up->loop, &up->worker_done, on_worker_done);
    up->worker_done.data = up;

    int started = 0;
    for (int i = 0; i < up->nworkers; i++) {
        rc = cn_worker_start(&up->workers[i], i, worker_setup, worker_wake, worker_teardown, up);
        if (rc) {
            char addr[128];
            cn_ev_format_addr((struct sockaddr *)&up->api.addr, addr, sizeof(addr));
            cn_error("up", "cannot listen", "addr=%s worker=%d error=\"%s\"", addr, i,
                     rc < -10000 ? cn_strerror(rc) : uv_strerror(rc));
            up->exit_code = CN_EXIT_FAIL;
            break;
        }
        started++;
        atomic_store(&up->workers_started, started);
    }
    /* A change made through the API while a worker was starting reaches it too. */
    for (int i = 0; up->gw && i < started; i++)
        cn_worker_post(&up->workers[i], CN_WORKER_RELOAD);
    up->api.nworkers = started;
    up->otlp.nworkers = started;
    up->nacos_srv.nworkers = started;
    for (size_t l = 0; l < up->gw_nlisteners; l++)
        up->gw_servers[l].nworkers = started;
    if (started < up->nworkers) {
        up->nworkers = started;
        atomic_store(&up->workers_done, 0);
        up->stopping = 1;
        for (int i = 0; i < started; i++)
            cn_worker_post(&up->workers[i], CN_WORKER_STOP | CN_WORKER_FORCE);
        if (started == 0)
            close_main_handles(up);
    } else {
        char addr[128];
        cn_ev_format_addr((struct sockaddr *)&up->api.addr, addr, sizeof(addr));
        cn_info("up", "listening", "part=api addr=%s workers=%d", addr, up->nworkers);
        char oaddr[128];
        cn_ev_format_addr((struct sockaddr *)&up->otlp.addr, oaddr, sizeof(oaddr));
        cn_info("up", "listening", "part=otlp addr=%s workers=%d", oaddr, up->nworkers);
        char naddr[128];
        cn_ev_format_addr((struct sockaddr *)&up->nacos_srv.addr, naddr, sizeof(naddr));
        cn_info("up", "listening", "part=registry addr=%s workers=%d", naddr, up->nworkers);
        for (size_t l = 0; l < up->gw_nlisteners; l++) {
            const char *gname;
            char gaddr[128];
            cn_gw_snapshot_listener(up->gw_first, l, &gname);
            cn_ev_format_addr((struct sockaddr *)&up->gw_servers[l].addr, gaddr, sizeof(gaddr));
            cn_info("up", "listening", "part=gateway listener=%s addr=%s workers=%d tls=%s", gname,
                    gaddr, up->nworkers,
                    cn_gw_snapshot_listener_tls(up->gw_first, l) ? "on" : "off");
        }
        struct cn_reg_ctl_opts co = {c->registry.tick_ms, c->registry.check_interval_ms,
                                     c->registry.check_timeout_ms, c->registry.check_concurrency};
        up->reg_ctl = cn_reg_ctl_start(up->reg, up->loop, &co);
        if (up->gw)
            cn_gw_discovery_set_wake(up->gw, gw_disc_wake, up);
        if (up->gw && cn_gw_tls_watch_start(up->gw, up->loop) != 0)
            cn_warn("up", "the gateway's certificate file watch could not start", NULL);
        cn_info("up", "ready", "version=%s pid=%d console=http://%s/ metrics=http://%s/metrics",
                CAIRN_VERSION, (int)getpid(), addr, addr);
        if (up->demo)
            start_demo(up, addr);
    }

    uv_run(up->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < started; i++) {
        cn_worker_join(&up->workers[i]);
        cn_http_worker_release(&up->http_workers[i]);
        cn_http_worker_release(&up->otlp_workers[i]);
        cn_http_worker_release(&up->nacos_workers[i]);
        for (size_t l = 0; l < up->gw_nlisteners; l++)
            cn_http_worker_release(up_gw_hw(up, l, i));
    }
    cn_demo_free(up->demo);
    free_gateway(up);
    cn_store_close(up->store);
    cn_nacos_free(up->nacos);
    cn_reg_free(up->reg);
    cn_router_free(up->nacos_router);
    free(up->nacos_workers);
    free(up->nacos_srv.workers);
    cn_tail_free(up->tail);
    uv_loop_close(up->loop);
    if (started == up->nworkers && up->exit_code == 0)
        cn_info("up", "stopped", "exit=%d", up->exit_code);
    cn_router_free(up->router);
    cn_router_free(up->otlp_router);
    free(up->workers);
    free(up->http_workers);
    free(up->api.workers);
    free(up->otlp_workers);
    free(up->otlp.workers);
    free(up->rworkers);
    free(up->uw);
    cn_config_unref(up->cfg);
    uv_mutex_destroy(&up->lock);
    return up->exit_code;
}
