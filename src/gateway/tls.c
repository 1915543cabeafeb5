/* TLS listeners: the `tls` block of a listener (Kubernetes Gateway API's listener `tls`, with
 * certificate and key files per hostname instead of Secret references), compiled into a
 * certificate store of the snapshot; the server core's hook that gives each worker's new
 * handshakes the store of the snapshot that worker runs; the certificate file watch; and
 * /metrics. docs/gateway.md "TLS".
 *
 * Ownership: a snapshot that owns its listeners owns one store per TLS listener (a snapshot
 * derived by discovery shares them). A store holds the current certificate set (ev/tls.h),
 * replaced whole under its lock when the files change on disk; a worker's server takes a
 * reference to the set at accept, and a connection keeps the set it started with. A new
 * snapshot (a reload, SIGHUP, the admin API) brings new stores built from the files. */
#include "gateway/tls.h"

#include "base/log.h"
#include "gateway/config-ld.h"
#include "gateway/internal.h"
#include "ev/tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_CERTS         CN_TLS_MAX_CERTS
#define MAX_NAMES         CN_TLS_MAX_NAMES
#define DEFAULT_HS_MS     10000
#define MAX_HS_MS         3600000
#define WATCH_INTERVAL_MS 500
#define MAX_LISTENERS     64 /* config.c: "must list 1 to 64 listeners" */

/* ---- the configuration and the store -------------------------------------------------------- */

/* One entry of certificates[] (arena). */
struct tls_entry {
    struct cn_slice *names; /* none: the default certificate */
    size_t num_names;
    char *cert_path; /* resolved against the configuration's directory */
    char *key_path;
};

/* A file the set was built from: what was read then, and its last stat for the watch. */
struct tls_file {
    const char *path;
    uint64_t hash;  /* XXH3 of the bytes loaded; 0: could not be read */
    struct stat st; /* last seen by the watch (zeroed: stat failed) */
    int pending;    /* stat moved: look again once it rests for a tick */
};

/* A built certificate set with what /metrics shows of it. Replaced whole. */
struct tls_set {
    struct cn_tls_ctx *ctx;
    int64_t *not_after; /* per entry */
};

/* States: built with the snapshot (set != NULL) -> set replaced by the watch any number of
 * times. lock guards set, files' hashes and failed; the configuration part is immutable. */
struct gw_tls {
    uv_mutex_t lock;
    struct cn_slice listener;
    struct tls_entry *entries;
    size_t num_entries;
    struct cn_tls_opts opts;
    struct tls_set *set;
    struct tls_file *files; /* 2 per entry: certificate, key */
    size_t num_files;
    uint64_t failed; /* combined hash of the contents a rebuild refused; 0: none */
};

/* Per listener index: the server it feeds (cn_gw_tls_attach) and reload counters. */
struct tls_hook {
    struct cn_gw *gw;
    size_t index;
    struct cn_http_server *srv;
};

struct gw_tls_root {
    struct tls_hook hooks[MAX_LISTENERS];
    atomic_uint_fast64_t reloads[MAX_LISTENERS][2]; /* ok, failed */
    uv_loop_t *loop;
    uv_timer_t timer;
    int watching;
};

/* ---- building a set ------------------------------------------------------------------------ */

static uint64_t hash_bytes(const void *p, size_t n)
{
    uint64_t h = XXH3_64bits(p, n);
    return h ? h : 1;
}

/* Reads a whole file (at most GW_TLS_MAX_FILE_BYTES). Returns a malloc'd buffer or NULL with
 * err set; out_st gets the open file's stat. */
static char *read_all(const char *path, size_t *out_len, struct stat *out_st, char *err,
                      size_t err_len)
{
    /* Non-blocking open: a FIFO or a device named by mistake is refused, not waited on. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, out_st) != 0 || !S_ISREG(out_st->st_mode)) {
        snprintf(err, err_len, "'%s' is not a regular file", path);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        snprintf(err, err_len, "'%s': out of memory", path);
        close(fd);
        return NULL;
    }
    char *buf = malloc(GW_TLS_MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, GW_TLS_MAX_FILE_BYTES + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > GW_TLS_MAX_FILE_BYTES) {
        snprintf(err, err_len, "'%s': %s", path,
                 !buf  ? "out of memory"
                 : bad ? "read error"
                       : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    *out_len = n;
    return buf;
}

static void set_free(struct tls_set *s)
{
    if (!s)
        return;
    cn_tls_ctx_unref(s->ctx);
    free(s->not_after);
    free(s);
}

/* What went wrong building a set: which entry and which of its parts. */
enum fault { F_NONE = 0, F_CERT, F_KEY, F_CIPHERS, F_SUITES, F_OTHER };

static const char *fmt_time(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* Builds a set from the store's configuration, reading every file; fills files[] (hash and
 * stat of what was read). Returns the set, or NULL with err, *out_entry and *out_fault. */
static struct tls_set *build(const struct gw_tls *t, struct tls_file *files, size_t *out_entry,
                             enum fault *out_fault, char *err, size_t err_len)
{
    *out_entry = 0;
    *out_fault = F_OTHER;
    struct tls_set *set = calloc(1, sizeof(*set));
    if (set)
        set->not_after = calloc(t->num_entries ? t->num_entries : 1, sizeof(int64_t));
    if (!set || !set->not_after) {
        snprintf(err, err_len, "out of memory");
        set_free(set);
        return NULL;
    }
    int bad_list = 0;
    char msg[512];
    set->ctx = cn_tls_ctx_new(&t->opts, &bad_list, msg, sizeof(msg));
    if (!set->ctx) {
        *out_fault = bad_list == 1 ? F_CIPHERS : bad_list == 2 ? F_SUITES : F_OTHER;
        snprintf(err, err_len, "%s", msg);
        set_free(set);
        return NULL;
    }
    for (size_t i = 0; i < t->num_entries; i++) {
        const struct tls_entry *e = &t->entries[i];
        *out_entry = i;
        size_t clen = 0, klen = 0;
        struct tls_file *cf = &files[2 * i], *kf = &files[2 * i + 1];
        char *cert = read_all(e->cert_path, &clen, &cf->st, err, err_len);
        if (!cert) {
            *out_fault = F_CERT;
            set_free(set);
            return NULL;
        }
        char *key = read_all(e->key_path, &klen, &kf->st, err, err_len);
        if (!key) {
            free(cert);
            *out_fault = F_KEY;
            set_free(set);
            return NULL;
        }
        cf->path = e->cert_path;
        kf->path = e->key_path;
        cf->hash = hash_bytes(cert, clen);
        kf->hash = hash_bytes(key, klen);
        cf->pending = kf->pending = 0;
        struct cn_tls_cert_info info;
        int key_fault = 0;
        int rc = cn_tls_ctx_add(set->ctx, cert, clen, key, klen, e->names, e->num_names, &info,
                                &key_fault, msg, sizeof(msg));
        OPENSSL_cleanse(key, klen);
        free(cert);
        free(key);
        if (rc) {
            if (key_fault && strstr(msg, "does not match"))
                snprintf(err, err_len, "'%s': %s in '%s'", e->key_path, msg, e->cert_path);
            else if (key_fault)
                snprintf(err, err_len, "'%s': %s", e->key_path, msg);
            else
                snprintf(err, err_len, "'%s': %s", e->cert_path, msg);
            *out_fault = key_fault ? F_KEY : F_CERT;
            set_free(set);
            return NULL;
        }
        set->not_after[i] = info.not_after;
        int64_t now = (int64_t)time(NULL);
        char when[32];
        if (info.not_after && info.not_after < now)
            cn_warn("gateway", "certificate expired", "listener=%.*s file=%s not_after=%s",
                    (int)t->listener.len, t->listener.ptr, e->cert_path,
                    fmt_time(info.not_after, when, sizeof(when)));
        else if (info.not_before > now)
            cn_warn("gateway", "certificate not valid yet", "listener=%.*s file=%s not_before=%s",
                    (int)t->listener.len, t->listener.ptr, e->cert_path,
                    fmt_time(info.not_before, when, sizeof(when)));
        for (size_t k = 0; k < e->num_names; k++)
            if (!cn_tls_ctx_covers(set->ctx, cn_tls_ctx_num_certs(set->ctx) - 1, e->names[k]))
                cn_warn("gateway", "certificate does not cover the name",
                        "listener=%.*s file=%s name=%.*s subject=\"%s\"", (int)t->listener.len,
                        t->listener.ptr, e->cert_path, (int)e->names[k].len, e->names[k].ptr,
                        info.subject);
    }
    *out_fault = F_NONE;
    return set;
}

/* ---- YAML ------------------------------------------------------------------------------------ */

static char *resolve(struct ld *l, struct cn_slice name)
{
    struct cn_gw_snapshot *s = gw_ld_snap(l);
    const char *cfg = gw_ld_file(l);
    const char *slash = strrchr(cfg, '/');
    size_t dl = name.ptr[0] == '/' || !slash ? 0 : (size_t)(slash - cfg) + 1;
    char *p = cn_arena_alloc(&s->arena, dl + name.len + 1);
    if (!p)
        return NULL;
    memcpy(p, cfg, dl);
    memcpy(p + dl, name.ptr, name.len);
    p[dl + name.len] = '\0';
    return p;
}

static int want_file(struct ld *l, const yaml_node_t *map, const char *key, char **out)
{
    yaml_node_t *v = gw_ld_get(l, map, key);
    size_t o = gw_ld_push(l, key);
    if (!v)
        return gw_ld_fail(l, map, "is required (a PEM file)");
    struct cn_slice s;
    int rc = gw_ld_str(l, v, &s);
    if (rc)
        return rc;
    if (s.len == 0)
        return gw_ld_fail(l, v, "must not be empty");
    if (!(*out = resolve(l, s)))
        return gw_ld_fail(l, v, "out of memory");
    gw_ld_pop(l, o);
    return 0;
}

static int check_name(struct ld *l, const yaml_node_t *n, struct cn_slice h)
{
    size_t i = h.len > 2 && h.ptr[0] == '*' && h.ptr[1] == '.' ? 2 : 0;
    if (h.len == 0 || h.len > GW_MAX_HOST)
        return gw_ld_fail(l, n, "a hostname has 1 to %d characters", GW_MAX_HOST);
    int ok = h.ptr[i] != '.' && h.ptr[h.len - 1] != '.';
    for (size_t k = i; ok && k < h.len; k++) {
        unsigned char c = (unsigned char)h.ptr[k];
        ok = islower(c) || isdigit(c) || c == '-' || c == '.';
    }
    if (!ok)
        return gw_ld_fail(l, n,
                          "'%.*s' is not a lower-case hostname or *.suffix (letters, digits, "
                          "'-', '.')",
                          (int)CN_MIN(h.len, 64), h.ptr);
    return 0;
}

static int load_entry(struct ld *l, const yaml_node_t *map, struct tls_entry *e, size_t idx,
                      const struct tls_entry *prev)
{
    static const char *const keys[] = {"hostnames", "certificateFile", "keyFile", NULL};
    int rc = gw_ld_map(l, map, keys);
    if (rc)
        return rc;
    struct cn_gw_snapshot *s = gw_ld_snap(l);
    yaml_node_t *hn = gw_ld_get(l, map, "hostnames");
    if (hn) {
        size_t o = gw_ld_push(l, "hostnames"), n;
        if ((rc = gw_ld_seq(l, hn, &n)))
            return rc;
        if (n == 0 || n > MAX_NAMES)
            return gw_ld_fail(l, hn,
                              "must list 1 to %d names (leave it out for the default "
                              "certificate)",
                              MAX_NAMES);
        e->names = cn_arena_calloc(&s->arena, n, sizeof(*e->names));
        if (!e->names)
            return gw_ld_fail(l, hn, "out of memory");
        for (size_t i = 0; i < n; i++) {
            size_t oi = gw_ld_push_index(l, i);
            yaml_node_t *v = gw_ld_item(l, hn, i);
            struct cn_slice h;
            if ((rc = gw_ld_str(l, v, &h)) || (rc = check_name(l, v, h)))
                return rc;
            for (size_t j = 0; j < i; j++)
                if (cn_slice_eq(e->names[j], h))
                    return gw_ld_fail(l, v, "'%.*s' is listed twice", (int)CN_MIN(h.len, 64),
                                      h.ptr);
            for (size_t p = 0; p < idx; p++)
                for (size_t j = 0; j < prev[p].num_names; j++)
                    if (cn_slice_eq(prev[p].names[j], h))
                        return gw_ld_fail(l, v, "'%.*s' is already served by certificates[%zu]",
                                          (int)CN_MIN(h.len, 64), h.ptr, p);
            e->names[i] = h;
            gw_ld_pop(l, oi);
        }
        e->num_names = n;
        gw_ld_pop(l, o);
    } else {
        for (size_t p = 0; p < idx; p++)
            if (prev[p].num_names == 0)
                return gw_ld_fail(l, map,
                                  "a second certificate without hostnames (certificates[%zu] is "
                                  "the default)",
                                  p);
    }
    if ((rc = want_file(l, map, "certificateFile", &e->cert_path)) ||
        (rc = want_file(l, map, "keyFile", &e->key_path)))
        return rc;
    return 0;
}

static int want_version(struct ld *l, const yaml_node_t *v, int *out)
{
    struct cn_slice s;
    int rc = gw_ld_str(l, v, &s);
    if (rc)
        return rc;
    if (cn_slice_eq(s, CN_SLICE_LIT("1.2")) || cn_slice_eq(s, CN_SLICE_LIT("TLSv1.2")))
        *out = 12;
    else if (cn_slice_eq(s, CN_SLICE_LIT("1.3")) || cn_slice_eq(s, CN_SLICE_LIT("TLSv1.3")))
        *out = 13;
    else
        return gw_ld_fail(l, v, "'%.*s' is not 1.2 or 1.3 (older versions are not offered)",
                          (int)CN_MIN(s.len, 16), s.ptr);
    return 0;
}

static int want_cipher_list(struct ld *l, const yaml_node_t *v, const char **out)
{
    struct cn_slice s;
    int rc = gw_ld_str(l, v, &s);
    if (rc)
        return rc;
    if (s.len == 0)
        return gw_ld_fail(l, v, "must not be empty");
    *out = s.ptr; /* NUL-terminated in the arena */
    return 0;
}

static void store_free(struct gw_tls *t)
{
    if (!t)
        return;
    set_free(t->set);
    uv_mutex_destroy(&t->lock);
    free(t->files);
    free(t);
}

int gw_tls_load(struct ld *l, const yaml_node_t *n, struct gw_listener *li)
{
    static const char *const keys[] = {"mode",         "certificates",     "minVersion", "ciphers",
                                       "cipherSuites", "handshakeTimeout", NULL};
    const yaml_node_t *map = n;
    int rc = gw_ld_map(l, map, keys);
    if (rc)
        return rc;
    struct cn_gw_snapshot *s = gw_ld_snap(l);
    struct gw_tls tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.listener = li->name;
    tmp.opts.min_version = 12;
    tmp.opts.handshake_timeout_ms = DEFAULT_HS_MS;
    struct cn_slice mode;
    OPTF(v, "mode",
         gw_ld_str(l, v, &mode)
             ?: (cn_slice_eq(mode, CN_SLICE_LIT("Terminate"))
                     ? 0
                     : gw_ld_fail(l, v,
                                  "'%.*s': only Terminate is supported (the gateway "
                                  "proxies HTTP, it does not pass TLS through)",
                                  (int)CN_MIN(mode.len, 32), mode.ptr)));
    OPTF(v, "minVersion", want_version(l, v, &tmp.opts.min_version));
    OPTF(v, "ciphers", want_cipher_list(l, v, &tmp.opts.ciphers));
    OPTF(v, "cipherSuites", want_cipher_list(l, v, &tmp.opts.ciphersuites));
    OPTF(v, "handshakeTimeout",
         gw_ld_duration(l, v, MAX_HS_MS, &tmp.opts.handshake_timeout_ms)
             ?: (tmp.opts.handshake_timeout_ms
                     ? 0
                     : gw_ld_fail(l, v, "must be at least 1ms (a handshake always has a limit)")));
    yaml_node_t *cs = gw_ld_get(l, map, "certificates");
    size_t o = gw_ld_push(l, "certificates"), num;
    if (!cs)
        return gw_ld_fail(l, map, "is required (a list of {hostnames, certificateFile, keyFile})");
    if ((rc = gw_ld_seq(l, cs, &num)))
        return rc;
    if (num == 0 || num > MAX_CERTS)
        return gw_ld_fail(l, cs, "must list 1 to %d certificates", MAX_CERTS);
    tmp.entries = cn_arena_calloc(&s->arena, num, sizeof(*tmp.entries));
    if (!tmp.entries)
        return gw_ld_fail(l, cs, "out of memory");
    for (size_t i = 0; i < num; i++) {
        size_t oi = gw_ld_push_index(l, i);
        if ((rc = load_entry(l, gw_ld_item(l, cs, i), &tmp.entries[i], i, tmp.entries)))
            return rc;
        gw_ld_pop(l, oi);
    }
    tmp.num_entries = num;
    gw_ld_pop(l, o);

    struct gw_tls *t = calloc(1, sizeof(*t));
    struct tls_file *files = calloc(2 * num, sizeof(*files));
    if (!t || !files) {
        free(t);
        free(files);
        return gw_ld_fail(l, map, "out of memory");
    }
    *t = tmp;
    t->files = files;
    t->num_files = 2 * num;
    uv_mutex_init(&t->lock);
    li->tls = t; /* owned by the snapshot from here (gw_tls_snapshot_free) */
    char err[640];
    size_t at;
    enum fault f;
    t->set = build(t, t->files, &at, &f, err, sizeof(err));
    if (t->set)
        return 0;
    /* The error at the field at fault. */
    if (f == F_CIPHERS || f == F_SUITES) {
        const char *key = f == F_CIPHERS ? "ciphers" : "cipherSuites";
        gw_ld_push(l, key);
        return gw_ld_fail(l, gw_ld_get(l, map, key), "%s", err);
    }
    gw_ld_push(l, "certificates");
    gw_ld_push_index(l, at);
    const yaml_node_t *en = gw_ld_item(l, cs, at);
    const char *key = f == F_KEY ? "keyFile" : "certificateFile";
    gw_ld_push(l, key);
    const yaml_node_t *kn = gw_ld_get(l, en, key);
    return gw_ld_fail(l, kn ? kn : en, "%s", err);
}

void gw_tls_snapshot_free(struct cn_gw_snapshot *s)
{
    for (size_t i = 0; s->listeners && i < s->num_listeners; i++) {
        store_free(s->listeners[i].tls);
        s->listeners[i].tls = NULL;
    }
}

/* ---- the server hook ------------------------------------------------------------------------ */

struct cn_tls_ctx *gw_tls_current(struct gw_tls *t)
{
    uv_mutex_lock(&t->lock);
    struct cn_tls_ctx *ctx = cn_tls_ctx_ref(t->set->ctx);
    uv_mutex_unlock(&t->lock);
    return ctx;
}

/* On the worker's thread at accept: the set of the store of the snapshot the worker runs. */
static struct cn_tls_ctx *hook_get(void *arg, int worker)
{
    struct tls_hook *h = arg;
    struct gw_view *v = h->gw->workers[worker].view;
    if (!v || h->index >= v->snap->num_listeners)
        return NULL;
    struct gw_tls *t = v->snap->listeners[h->index].tls;
    if (!t)
        return NULL; /* TLS taken off by a reload: listeners change on restart only */
    return gw_tls_current(t);
}

static struct gw_tls_root *root_of(struct cn_gw *gw)
{
    if (!gw->tls)
        gw->tls = calloc(1, sizeof(*gw->tls));
    return gw->tls;
}

int cn_gw_snapshot_listener_tls(const struct cn_gw_snapshot *s, size_t i)
{
    return i < s->num_listeners && s->listeners[i].tls != NULL;
}

int cn_gw_tls_attach(struct cn_gw *gw, struct cn_http_server *srv, size_t i)
{
    uv_mutex_lock(&gw->lock);
    int tls = gw->current && cn_gw_snapshot_listener_tls(gw->current, i);
    uv_mutex_unlock(&gw->lock);
    if (!tls || i >= MAX_LISTENERS)
        return 0;
    struct gw_tls_root *r = root_of(gw);
    if (!r)
        return CN_ENOMEM;
    r->hooks[i] = (struct tls_hook){gw, i, srv};
    srv->tls_get = hook_get;
    srv->tls_arg = &r->hooks[i];
    return 0;
}

void gw_tls_root_free(struct cn_gw *gw)
{
    cn_free(&gw->tls);
}

/* ---- the certificate file watch -------------------------------------------------------------- */

static int stat_same(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static uint64_t file_hash(const char *path)
{
    char err[8];
    struct stat st;
    size_t n;
    char *b = read_all(path, &n, &st, err, sizeof(err));
    if (!b)
        return 0;
    uint64_t h = hash_bytes(b, n);
    free(b);
    return h;
}

/* One tick for one store (on the watch's loop). A file whose stat moved is looked at once it
 * has rested for a tick (a certificate and its key are often written one after the other);
 * when its content differs from what the set was built from, the set is built again. */
static void watch_store(struct gw_tls_root *r, size_t index, struct gw_tls *t)
{
    int moving = 0, pending = 0;
    for (size_t i = 0; i < t->num_files; i++) {
        struct tls_file *f = &t->files[i];
        struct stat st;
        if (stat(f->path, &st) != 0)
            memset(&st, 0, sizeof(st));
        if (!stat_same(&st, &f->st)) {
            f->st = st;
            f->pending = 1;
            moving = 1;
        }
        pending |= f->pending;
    }
    if (moving || !pending)
        return;
    uint64_t combo = 0;
    int differs = 0;
    for (size_t i = 0; i < t->num_files; i++) {
        struct tls_file *f = &t->files[i];
        f->pending = 0;
        uint64_t h = file_hash(f->path);
        differs |= h != f->hash;
        combo = XXH3_64bits_withSeed(&h, sizeof(h), combo);
    }
    if (!differs || combo == t->failed)
        return; /* touched, same bytes; or the same contents a rebuild refused */
    struct tls_file *files = calloc(t->num_files, sizeof(*files));
    char err[640];
    size_t at;
    enum fault f;
    struct tls_set *set = files ? build(t, files, &at, &f, err, sizeof(err)) : NULL;
    if (!set) {
        t->failed = combo;
        atomic_fetch_add_explicit(&r->reloads[index][1], 1, memory_order_relaxed);
        cn_error("gateway", "certificate reload rejected, the running certificates stay",
                 "listener=%.*s error=\"%s\"", (int)t->listener.len, t->listener.ptr,
                 files ? err : "out of memory");
        free(files);
        return;
    }
    uv_mutex_lock(&t->lock);
    struct tls_set *old = t->set;
    t->set = set;
    for (size_t i = 0; i < t->num_files; i++) {
        t->files[i].hash = files[i].hash;
        t->files[i].st = files[i].st;
    }
    t->failed = 0;
    uv_mutex_unlock(&t->lock);
    set_free(old); /* connections that started on it keep their reference */
    free(files);
    atomic_fetch_add_explicit(&r->reloads[index][0], 1, memory_order_relaxed);
    cn_info("gateway", "certificates reloaded", "listener=%.*s certificates=%zu",
            (int)t->listener.len, t->listener.ptr, t->num_entries);
}

static void on_watch(uv_timer_t *tm)
{
    struct cn_gw *gw = tm->data;
    uv_mutex_lock(&gw->lock);
    struct cn_gw_snapshot *s = gw->current ? cn_gw_snapshot_ref(gw->current) : NULL;
    uv_mutex_unlock(&gw->lock);
    if (!s)
        return;
    for (size_t i = 0; i < s->num_listeners && i < MAX_LISTENERS; i++)
        if (s->listeners[i].tls)
            watch_store(gw->tls, i, s->listeners[i].tls);
    cn_gw_snapshot_unref(s);
}

int cn_gw_tls_watch_start(struct cn_gw *gw, uv_loop_t *loop)
{
    struct gw_tls_root *r = root_of(gw);
    if (!r)
        return CN_ENOMEM;
    if (r->watching)
        return 0;
    int rc = uv_timer_init(loop, &r->timer);
    if (rc)
        return rc;
    r->timer.data = gw;
    r->loop = loop;
    uv_timer_start(&r->timer, on_watch, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
    uv_unref((uv_handle_t *)&r->timer); /* never what keeps a loop running */
    r->watching = 1;
    return 0;
}

void cn_gw_tls_watch_stop(struct cn_gw *gw)
{
    struct gw_tls_root *r = gw->tls;
    if (!r || !r->watching)
        return;
    r->watching = 0;
    uv_close((uv_handle_t *)&r->timer, NULL);
}

/* ---- metrics --------------------------------------------------------------------------------- */

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

void gw_tls_metrics_write(struct cn_buf *b, struct cn_gw *gw)
{
    const struct cn_gw_snapshot *s = gw->current;
    struct gw_tls_root *r = gw->tls;
    if (!s || !r)
        return;
    cn_buf_puts(b, "# HELP cairn_gateway_tls_handshakes_total TLS handshakes by listener: "
                   "result ok, or failed by reason.\n"
                   "# TYPE cairn_gateway_tls_handshakes_total counter\n");
    for (size_t i = 0; i < MAX_LISTENERS && i < s->num_listeners; i++) {
        const struct cn_http_server *srv = r->hooks[i].srv;
        if (!srv)
            continue;
        const struct cn_slice ln = s->listeners[i].name;
        unsigned long long ok = 0, fails[CN_TLS_FAIL_COUNT] = {0};
        for (int w = 0; w < srv->nworkers; w++) {
            const struct cn_http_worker_stats *st = &srv->workers[w]->stats;
            ok += LD(st->tls_handshakes);
            for (int k = 0; k < CN_TLS_FAIL_COUNT; k++)
                fails[k] += LD(st->tls_failures[k]);
        }
        cn_buf_printf(b,
                      "cairn_gateway_tls_handshakes_total{listener=\"%.*s\",result=\"ok\"} %llu\n",
                      (int)ln.len, ln.ptr, ok);
        for (int k = 0; k < CN_TLS_FAIL_COUNT; k++)
            cn_buf_printf(b,
                          "cairn_gateway_tls_handshakes_total{listener=\"%.*s\",result=\"failed\","
                          "reason=\"%s\"} %llu\n",
                          (int)ln.len, ln.ptr, cn_tls_fail_names[k], fails[k]);
    }
    cn_buf_puts(b, "# HELP cairn_gateway_tls_certificate_reloads_total Certificate sets built "
                   "again after their files changed on disk (failed: the running set stayed).\n"
                   "# TYPE cairn_gateway_tls_certificate_reloads_total counter\n");
    for (size_t i = 0; i < MAX_LISTENERS && i < s->num_listeners; i++) {
        if (!s->listeners[i].tls)
            continue;
        const struct cn_slice ln = s->listeners[i].name;
        cn_buf_printf(b,
                      "cairn_gateway_tls_certificate_reloads_total{listener=\"%.*s\",result="
                      "\"ok\"} %llu\n"
                      "cairn_gateway_tls_certificate_reloads_total{listener=\"%.*s\",result="
                      "\"failed\"} %llu\n",
                      (int)ln.len, ln.ptr, LD(r->reloads[i][0]), (int)ln.len, ln.ptr,
                      LD(r->reloads[i][1]));
    }
    cn_buf_puts(b, "# HELP cairn_gateway_tls_cert_not_after_seconds When each served "
                   "certificate expires (Unix time), by listener and SNI name (\"*\": the "
                   "default certificate).\n"
                   "# TYPE cairn_gateway_tls_cert_not_after_seconds gauge\n");
    for (size_t i = 0; i < s->num_listeners; i++) {
        struct gw_tls *t = s->listeners[i].tls;
        if (!t)
            continue;
        const struct cn_slice ln = s->listeners[i].name;
        uv_mutex_lock(&t->lock);
        for (size_t e = 0; e < t->num_entries; e++) {
            const struct tls_entry *en = &t->entries[e];
            long long na = (long long)t->set->not_after[e];
            if (en->num_names == 0)
                cn_buf_printf(b,
                              "cairn_gateway_tls_cert_not_after_seconds{listener=\"%.*s\","
                              "sni=\"*\"} %lld\n",
                              (int)ln.len, ln.ptr, na);
            for (size_t k = 0; k < en->num_names; k++)
                cn_buf_printf(b,
                              "cairn_gateway_tls_cert_not_after_seconds{listener=\"%.*s\","
                              "sni=\"%.*s\"} %lld\n",
                              (int)ln.len, ln.ptr, (int)en->names[k].len, en->names[k].ptr, na);
        }
        uv_mutex_unlock(&t->lock);
    }
}
