/* cairn config: check a configuration file, or show the effective configuration. */
#include "base/base.h"
#include "cli/cmd.h"
#include "cli/config.h"

#include <jansson.h>

extern char **environ;

/* Where the first error came from; it decides how the error line reads. */
enum origin {
    FROM_FILE,     /* "FILE:LINE:COL: message", or "FILE: message" without a position */
    FROM_ENV,      /* "CAIRN_X: message": the message names the variable */
    FROM_VALIDATE, /* "FILE: message", or the message alone without a file */
};

struct outcome {
    int rc; /* 0, or the failing call's code */
    enum origin origin;
    struct cn_config_error e;
    char line[1024]; /* the error line as printed, when rc != 0 */
};

/* Defaults, then path when not NULL, then CAIRN_* variables, then validation. Returns the
 * configuration (NULL on allocation failure) and fills out; the configuration comes back
 * even when out->rc says a later step failed, so that show can print it. */
static struct cn_config *load(const char *path, struct outcome *out)
{
    memset(out, 0, sizeof(*out));
    struct cn_config *cfg = cn_config_new();
    if (!cfg)
        return NULL;
    if (path) {
        out->origin = FROM_FILE;
        out->rc = cn_config_load_file_ex(cfg, path, &out->e);
        if (out->rc) {
            if (out->e.line)
                snprintf(out->line, sizeof(out->line), "%s:%lu:%lu: %s", path, out->e.line,
                         out->e.column, out->e.message);
            else
                snprintf(out->line, sizeof(out->line), "%s: %s", path, out->e.message);
            return cfg;
        }
    }
    out->origin = FROM_ENV;
    out->rc = cn_config_apply_env(cfg, environ, out->e.message, sizeof(out->e.message));
    if (out->rc) {
        snprintf(out->line, sizeof(out->line), "%s", out->e.message);
        return cfg;
    }
    out->origin = FROM_VALIDATE;
    out->rc = cn_config_validate(cfg, out->e.message, sizeof(out->e.message));
    if (out->rc)
        snprintf(out->line, sizeof(out->line), "%s%s%s", path ? path : "", path ? ": " : "",
                 out->e.message);
    return cfg;
}

/* A JSON string of s; bytes that are not UTF-8 (a file name can hold any) become '?'. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static int print_json(const char *path, const struct outcome *o)
{
    json_t *obj = json_object();
    int bad = !obj;
    if (obj) {
        bad |= json_object_set_new(obj, "ok", json_boolean(o->rc == 0));
        if (o->rc)
            bad |= json_object_set_new(obj, "error", jstr(o->line));
        bad |= json_object_set_new(obj, "file", jstr(path));
        if (o->rc) {
            int pos = o->origin == FROM_FILE && o->e.line;
            bad |= json_object_set_new(obj, "line",
                                       pos ? json_integer((json_int_t)o->e.line) : json_null());
            bad |= json_object_set_new(obj, "column",
                                       pos ? json_integer((json_int_t)o->e.column) : json_null());
            bad |= json_object_set_new(obj, "message", jstr(o->e.message));
        }
    }
    char *text = bad ? NULL : json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!text) {
        fputs("cairn: out of memory\n", stderr);
        return -1;
    }
    puts(text);
    free(text);
    return 0;
}

static int exit_code(int rc)
{
    if (rc == 0)
        return CN_EXIT_OK;
    return rc == CN_ENOMEM ? CN_EXIT_FAIL : CN_EXIT_CONFIG;
}

static int check(const char *path, int json)
{
    struct outcome o;
    struct cn_config *cfg = load(path, &o);
    if (!cfg) {
        fputs("cairn: out of memory\n", stderr);
        return CN_EXIT_FAIL;
    }
    cn_config_unref(cfg);
    if (json) {
        if (print_json(path, &o) != 0)
            return CN_EXIT_FAIL;
    } else if (o.rc) {
        fprintf(stderr, "%s\n", o.line);
    } else {
        printf("%s: ok\n", path);
    }
    return exit_code(o.rc);
}

static int show(const char *path)
{
    struct outcome o;
    struct cn_config *cfg = load(path, &o);
    if (!cfg) {
        fputs("cairn: out of memory\n", stderr);
        return CN_EXIT_FAIL;
    }
    /* A configuration that failed to load is not the effective one: print nothing. One
     * that loaded but does not validate is printed, then the reason it would not run. */
    if (o.rc == 0 || o.origin == FROM_VALIDATE) {
        if (cn_config_dump_ex(cfg, stdout, CN_CONFIG_DUMP_REDACT) != 0 || fflush(stdout) != 0) {
            cn_config_unref(cfg);
            fputs("cairn: cannot write the configuration to stdout\n", stderr);
            return CN_EXIT_FAIL;
        }
    }
    cn_config_unref(cfg);
    if (o.rc)
        fprintf(stderr, "%s\n", o.line);
    return exit_code(o.rc);
}

int cmd_config(int argc, char **argv)
{
    if (argc < 2)
        return cn_usage_error("config", "missing subcommand (check or show)");
    const char *sub = argv[1];
    if (strcmp(sub, "help") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        cn_print_usage("config", stdout);
        return CN_EXIT_OK;
    }
    if (strcmp(sub, "get") == 0 || strcmp(sub, "put") == 0 || strcmp(sub, "history") == 0 ||
        strcmp(sub, "rollback") == 0)
        return cn_config_center(argc, argv);
    int is_check = strcmp(sub, "check") == 0;
    if (!is_check && strcmp(sub, "show") != 0)
        return cn_usage_error("config", "unknown subcommand '%s'", sub);

    const char *file = NULL;
    int json = 0, only_args = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!only_args && strcmp(a, "--") == 0) {
            only_args = 1;
        } else if (!only_args && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            cn_print_usage("config", stdout);
            return CN_EXIT_OK;
        } else if (!only_args && is_check && strcmp(a, "--json") == 0) {
            json = 1;
        } else if (!only_args && a[0] == '-' && a[1] != '\0') {
            return cn_usage_error("config", "unknown flag '%s' for config %s", a, sub);
        } else if (file) {
            return cn_usage_error("config", "too many arguments for config %s", sub);
        } else {
            file = a;
        }
    }
    if (is_check) {
        if (!file)
            return cn_usage_error("config", "config check needs a FILE");
        return check(file, json);
    }
    /* As cairn up does, show reads $CAIRN_CONFIG when no file is named. */
    if (!file && getenv("CAIRN_CONFIG") && *getenv("CAIRN_CONFIG"))
        file = getenv("CAIRN_CONFIG");
    return show(file);
}
