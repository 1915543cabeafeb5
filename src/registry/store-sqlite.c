/* The embedded registry store: one SQLite database, WAL journal, synchronous=FULL (a commit is
 * on disk before the call returns). Calls arrive serialised by the registry's store lock. */
#include "registry/store.h"

#include <sqlite3.h>

struct sq_store {
    struct cn_reg_store base;
    sqlite3 *db;
    sqlite3_stmt *cfg_put, *cfg_del, *hist_add, *hist_prune, *svc_put, *svc_del, *inst_put,
        *inst_del;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS configs(ns TEXT NOT NULL, grp TEXT NOT NULL, data_id TEXT NOT "
    "NULL, content BLOB NOT NULL, md5 TEXT NOT NULL, type TEXT NOT NULL, version INTEGER NOT "
    "NULL, mtime_ms INTEGER NOT NULL, PRIMARY KEY(ns, grp, data_id));"
    "CREATE TABLE IF NOT EXISTS config_history(version INTEGER PRIMARY KEY AUTOINCREMENT, ns "
    "TEXT NOT NULL, grp TEXT NOT NULL, data_id TEXT NOT NULL, op TEXT NOT NULL, content BLOB, "
    "md5 TEXT NOT NULL, type TEXT NOT NULL, who TEXT NOT NULL, at_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS config_history_key ON config_history(ns, grp, data_id, version);"
    "CREATE TABLE IF NOT EXISTS services(ns TEXT NOT NULL, grp TEXT NOT NULL, name TEXT NOT "
    "NULL, protect_threshold REAL NOT NULL, metadata TEXT NOT NULL, PRIMARY KEY(ns, grp, name));"
    "CREATE TABLE IF NOT EXISTS instances(ns TEXT NOT NULL, grp TEXT NOT NULL, service TEXT NOT "
    "NULL, cluster TEXT NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL, weight REAL NOT "
    "NULL, healthy INTEGER NOT NULL, enabled INTEGER NOT NULL, metadata TEXT NOT NULL, "
    "PRIMARY KEY(ns, grp, service, cluster, ip, port));";

static int fail(struct sq_store *s, char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "%s: %s", what, sqlite3_errmsg(s->db));
    return CN_EIO;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : rc;
}

static int exec(struct sq_store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

static void txt(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static int sq_load(struct cn_reg_store *base, const struct cn_reg_load_cbs *cbs, char *err,
                   size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT ns, grp, data_id, content, md5, type, version, mtime_ms FROM "
                           "configs",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, err, err_len, "load configs");
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        struct cn_reg_cfg_rec r = {
            (const char *)sqlite3_column_text(st, 0),
            (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 2),
            sqlite3_column_blob(st, 3) ? (const char *)sqlite3_column_blob(st, 3) : "",
            (size_t)sqlite3_column_bytes(st, 3),
            (const char *)sqlite3_column_text(st, 4),
            (const char *)sqlite3_column_text(st, 5),
            (uint64_t)sqlite3_column_int64(st, 6),
            (uint64_t)sqlite3_column_int64(st, 7),
            NULL,
            NULL,
        };
        rc = cbs->cfg(cbs->ctx, &r);
    }
    sqlite3_finalize(st);
    if (rc)
        return snprintf(err, err_len, "load configs: out of memory"), rc;
    if (sqlite3_prepare_v2(s->db, "SELECT ns, grp, name, protect_threshold, metadata FROM services",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, err, err_len, "load services");
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        struct cn_reg_svc_rec r = {
            (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 4),
            sqlite3_column_double(st, 3)};
        rc = cbs->svc(cbs->ctx, &r);
    }
    sqlite3_finalize(st);
    if (rc)
        return snprintf(err, err_len, "load services: out of memory"), rc;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT ns, grp, service, cluster, ip, port, weight, healthy, enabled, "
                           "metadata FROM instances ORDER BY rowid",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(s, err, err_len, "load instances");
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        struct cn_reg_inst_rec r = {(const char *)sqlite3_column_text(st, 0),
                                    (const char *)sqlite3_column_text(st, 1),
                                    (const char *)sqlite3_column_text(st, 2),
                                    (const char *)sqlite3_column_text(st, 3),
                                    (const char *)sqlite3_column_text(st, 4),
                                    (const char *)sqlite3_column_text(st, 9),
                                    (uint16_t)sqlite3_column_int(st, 5),
                                    sqlite3_column_double(st, 6),
                                    sqlite3_column_int(st, 7),
                                    sqlite3_column_int(st, 8),
                                    0};
        rc = cbs->inst(cbs->ctx, &r);
    }
    sqlite3_finalize(st);
    if (rc)
        return snprintf(err, err_len, "load instances: error %d", rc), rc;
    return 0;
}

static int sq_cfg_write(struct cn_reg_store *base, struct cn_reg_cfg_rec *r, uint64_t max_history,
                        char *err, size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    if (exec(s, "BEGIN IMMEDIATE") != SQLITE_OK)
        return fail(s, err, err_len, "begin");
    sqlite3_stmt *h = s->hist_add;
    txt(h, 1, r->ns);
    txt(h, 2, r->group);
    txt(h, 3, r->data_id);
    txt(h, 4, r->op);
    if (r->content)
        sqlite3_bind_blob(h, 5, r->content, (int)r->content_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(h, 5);
    txt(h, 6, r->md5);
    txt(h, 7, r->type);
    txt(h, 8, r->who);
    sqlite3_bind_int64(h, 9, (sqlite3_int64)r->mtime_ms);
    if (step_done(h) != 0)
        goto fail;
    r->version = (uint64_t)sqlite3_last_insert_rowid(s->db);
    if (r->content) {
        sqlite3_stmt *c = s->cfg_put;
        txt(c, 1, r->ns);
        txt(c, 2, r->group);
        txt(c, 3, r->data_id);
        sqlite3_bind_blob(c, 4, r->content, (int)r->content_len, SQLITE_STATIC);
        txt(c, 5, r->md5);
        txt(c, 6, r->type);
        sqlite3_bind_int64(c, 7, (sqlite3_int64)r->version);
        sqlite3_bind_int64(c, 8, (sqlite3_int64)r->mtime_ms);
        if (step_done(c) != 0)
            goto fail;
    } else {
        sqlite3_stmt *c = s->cfg_del;
        txt(c, 1, r->ns);
        txt(c, 2, r->group);
        txt(c, 3, r->data_id);
        if (step_done(c) != 0)
            goto fail;
    }
    if (max_history) {
        sqlite3_stmt *p = s->hist_prune;
        txt(p, 1, r->ns);
        txt(p, 2, r->group);
        txt(p, 3, r->data_id);
        sqlite3_bind_int64(p, 4, (sqlite3_int64)max_history);
        if (step_done(p) != 0)
            goto fail;
    }
    if (exec(s, "COMMIT") != SQLITE_OK)
        goto fail;
    return 0;
fail:
    fail(s, err, err_len, "config write");
    exec(s, "ROLLBACK");
    return CN_EIO;
}

static int sq_cfg_history(struct cn_reg_store *base, const char *ns, const char *group,
                          const char *data_id, uint64_t limit, int with_content,
                          cn_reg_history_cb cb, void *ctx, char *err, size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    sqlite3_stmt *st = NULL;
    const char *sql = with_content
                          ? "SELECT version, op, content, md5, type, who, at_ms, length(content) "
                            "FROM config_history WHERE ns=?1 AND grp=?2 AND data_id=?3 ORDER BY "
                            "version DESC LIMIT ?4"
                          : "SELECT version, op, NULL, md5, type, who, at_ms, length(content) "
                            "FROM config_history WHERE ns=?1 AND grp=?2 AND data_id=?3 ORDER BY "
                            "version DESC LIMIT ?4";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(s, err, err_len, "history");
    txt(st, 1, ns);
    txt(st, 2, group);
    txt(st, 3, data_id);
    sqlite3_bind_int64(st, 4, limit ? (sqlite3_int64)limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct cn_reg_cfg_rec r = {
            ns,
            group,
            data_id,
            sqlite3_column_blob(st, 2) ? (const char *)sqlite3_column_blob(st, 2) : "",
            (size_t)sqlite3_column_int64(st, 7),
            (const char *)sqlite3_column_text(st, 3),
            (const char *)sqlite3_column_text(st, 4),
            (uint64_t)sqlite3_column_int64(st, 0),
            (uint64_t)sqlite3_column_int64(st, 6),
            (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 5),
        };
        if (cb(ctx, &r) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : fail(s, err, err_len, "history");
}

static int sq_svc_put(struct cn_reg_store *base, const struct cn_reg_svc_rec *r, char *err,
                      size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    sqlite3_stmt *st = s->svc_put;
    txt(st, 1, r->ns);
    txt(st, 2, r->group);
    txt(st, 3, r->service);
    sqlite3_bind_double(st, 4, r->protect_threshold);
    txt(st, 5, r->metadata);
    return step_done(st) == 0 ? 0 : fail(s, err, err_len, "service put");
}

static int sq_svc_del(struct cn_reg_store *base, const char *ns, const char *group,
                      const char *service, char *err, size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    sqlite3_stmt *st = s->svc_del;
    txt(st, 1, ns);
    txt(st, 2, group);
    txt(st, 3, service);
    return step_done(st) == 0 ? 0 : fail(s, err, err_len, "service delete");
}

static int sq_inst_put(struct cn_reg_store *base, const struct cn_reg_inst_rec *r, char *err,
                       size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    sqlite3_stmt *st = s->inst_put;
    txt(st, 1, r->ns);
    txt(st, 2, r->group);
    txt(st, 3, r->service);
    txt(st, 4, r->cluster);
    txt(st, 5, r->ip);
    sqlite3_bind_int(st, 6, r->port);
    sqlite3_bind_double(st, 7, r->weight);
    sqlite3_bind_int(st, 8, r->healthy);
    sqlite3_bind_int(st, 9, r->enabled);
    txt(st, 10, r->metadata);
    return step_done(st) == 0 ? 0 : fail(s, err, err_len, "instance put");
}

static int sq_inst_del(struct cn_reg_store *base, const char *ns, const char *group,
                       const char *service, const char *cluster, const char *ip, uint16_t port,
                       char *err, size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    sqlite3_stmt *st = s->inst_del;
    txt(st, 1, ns);
    txt(st, 2, group);
    txt(st, 3, service);
    txt(st, 4, cluster);
    txt(st, 5, ip);
    sqlite3_bind_int(st, 6, port);
    return step_done(st) == 0 ? 0 : fail(s, err, err_len, "instance delete");
}

static int sq_txn_begin(struct cn_reg_store *base, char *err, size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    return exec(s, "BEGIN IMMEDIATE") == SQLITE_OK ? 0 : fail(s, err, err_len, "begin");
}

static int sq_txn_commit(struct cn_reg_store *base, char *err, size_t err_len)
{
    struct sq_store *s = (struct sq_store *)base;
    if (exec(s, "COMMIT") == SQLITE_OK)
        return 0;
    fail(s, err, err_len, "commit");
    exec(s, "ROLLBACK");
    return CN_EIO;
}

static void sq_txn_rollback(struct cn_reg_store *base)
{
    exec((struct sq_store *)base, "ROLLBACK");
}

static void sq_close(struct cn_reg_store *base)
{
    struct sq_store *s = (struct sq_store *)base;
    if (!s)
        return;
    sqlite3_stmt *all[] = {s->cfg_put, s->cfg_del, s->hist_add, s->hist_prune,
                           s->svc_put, s->svc_del, s->inst_put, s->inst_del};
    for (size_t i = 0; i < CN_ARRAY_LEN(all); i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(s->db);
    free(s);
}

static const struct cn_reg_store_ops sq_ops = {
    .load = sq_load,
    .cfg_write = sq_cfg_write,
    .cfg_history = sq_cfg_history,
    .svc_put = sq_svc_put,
    .svc_del = sq_svc_del,
    .inst_put = sq_inst_put,
    .inst_del = sq_inst_del,
    .txn_begin = sq_txn_begin,
    .txn_commit = sq_txn_commit,
    .txn_rollback = sq_txn_rollback,
    .close = sq_close,
};

struct cn_reg_store *cn_reg_store_sqlite_open(const char *dir, char *err, size_t err_len)
{
    int rc = cn_mkdirs(dir);
    if (rc) {
        snprintf(err, err_len, "cannot create %s: %s", dir, strerror(-rc));
        return NULL;
    }
    struct sq_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->base.ops = &sq_ops;
    char path[4200];
    snprintf(path, sizeof(path), "%s/registry.db", dir);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, err_len, "cannot open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        free(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {&s->cfg_put, "INSERT OR REPLACE INTO configs(ns, grp, data_id, content, md5, type, "
                      "version, mtime_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
        {&s->cfg_del, "DELETE FROM configs WHERE ns=?1 AND grp=?2 AND data_id=?3"},
        {&s->hist_add, "INSERT INTO config_history(ns, grp, data_id, op, content, md5, type, who, "
                       "at_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
        {&s->hist_prune, "DELETE FROM config_history WHERE ns=?1 AND grp=?2 AND data_id=?3 AND "
                         "version NOT IN (SELECT version FROM config_history WHERE ns=?1 AND "
                         "grp=?2 AND data_id=?3 ORDER BY version DESC LIMIT ?4)"},
        {&s->svc_put, "INSERT OR REPLACE INTO services(ns, grp, name, protect_threshold, "
                      "metadata) VALUES(?1, ?2, ?3, ?4, ?5)"},
        {&s->svc_del, "DELETE FROM services WHERE ns=?1 AND grp=?2 AND name=?3"},
        {&s->inst_put, "INSERT OR REPLACE INTO instances(ns, grp, service, cluster, ip, port, "
                       "weight, healthy, enabled, metadata) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                       "?8, ?9, ?10)"},
        {&s->inst_del, "DELETE FROM instances WHERE ns=?1 AND grp=?2 AND service=?3 AND "
                       "cluster=?4 AND ip=?5 AND port=?6"},
    };
    if (exec(s, "PRAGMA journal_mode=WAL") != SQLITE_OK ||
        exec(s, "PRAGMA synchronous=FULL") != SQLITE_OK || exec(s, schema) != SQLITE_OK) {
        fail(s, err, err_len, path);
        sq_close(&s->base);
        return NULL;
    }
    for (size_t i = 0; i < CN_ARRAY_LEN(stmts); i++)
        if (sqlite3_prepare_v2(s->db, stmts[i].sql, -1, stmts[i].st, NULL) != SQLITE_OK) {
            fail(s, err, err_len, "prepare");
            sq_close(&s->base);
            return NULL;
        }
    return &s->base;
}
