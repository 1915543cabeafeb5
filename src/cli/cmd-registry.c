/* cairn registry ls|get|put|rm and cairn config get|put|history|rollback: the native registry
 * API (docs/registry.md) from the command line, as tables or --json. */
#include "cli/client.h"
#include "cli/cmd.h"

#include <jansson.h>
#include <time.h>

#define MAX_ANSWER (64u << 20)

/* Flags every registry command shares. */
struct rcmd {
    const char *name; /* "registry" or "config", for usage errors */
    struct cn_client cl;
    const char *ns, *group;
    int json;
    const char *pos[3]; /* positional arguments */
    int num_pos;
    /* command-specific flags */
    const char *weight, *cluster, *metadata, *type, *content, *file, *limit;
    int ephemeral;
};

static const struct {
    const char *flag;
    size_t off;
} str_flags[] = {
    {"--namespace", offsetof(struct rcmd, ns)},      {"--group", offsetof(struct rcmd, group)},
    {"--server", offsetof(struct rcmd, cl.server)},  {"--token", offsetof(struct rcmd, cl.token)},
    {"--weight", offsetof(struct rcmd, weight)},     {"--cluster", offsetof(struct rcmd, cluster)},
    {"--metadata", offsetof(struct rcmd, metadata)}, {"--type", offsetof(struct rcmd, type)},
    {"--content", offsetof(struct rcmd, content)},   {"--file", offsetof(struct rcmd, file)},
    {"--limit", offsetof(struct rcmd, limit)},
};

static int parse(struct rcmd *r, int argc, char **argv, int max_pos)
{
    cn_client_defaults(&r->cl);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            r->json = 1;
            continue;
        }
        if (strcmp(a, "--ephemeral") == 0) {
            r->ephemeral = 1;
            continue;
        }
        size_t k = 0;
        while (k < CN_ARRAY_LEN(str_flags) && strcmp(str_flags[k].flag, a) != 0)
            k++;
        if (k < CN_ARRAY_LEN(str_flags)) {
            if (i + 1 >= argc)
                return cn_usage_error(r->name, "flag '%s' needs a value", a);
            *(const char **)((char *)r + str_flags[k].off) = argv[++i];
            continue;
        }
        if (a[0] == '-' && a[1])
            return cn_usage_error(r->name, "unknown flag '%s'", a);
        if (r->num_pos >= max_pos)
            return cn_usage_error(r->name, "unexpected argument '%s'", a);
        r->pos[r->num_pos++] = a;
    }
    if (!r->ns)
        r->ns = "public";
    if (!r->group)
        r->group = "DEFAULT_GROUP";
    return 0;
}

/* Appends "/ns/group/name" escaped. */
static int key_path(struct cn_buf *b, const char *prefix, const struct rcmd *r, const char *name)
{
    return cn_buf_puts(b, prefix) | cn_buf_puts(b, "/") | cn_client_escape(b, r->ns) |
           cn_buf_puts(b, "/") | cn_client_escape(b, r->group) | cn_buf_puts(b, "/") |
           cn_client_escape(b, name);
}

/* GET/PUT/... path; on 200 returns the parsed JSON (or prints it raw with --json and returns
 * NULL with *rc 0). */
static json_t *fetch(const struct rcmd *r, const char *what, const char *method, const char *path,
                     const char *body, int *rc)
{
    return cn_client_json(&r->cl, method, path, body, what, r->json, MAX_ANSWER, rc);
}

/* "IP:PORT" (or "[v6]:PORT") into ip and port. */
static int split_addr(const char *a, char *ip, size_t ip_len, long *port)
{
    const char *c = strrchr(a, ':');
    if (!c || c == a)
        return -1;
    const char *s = a, *e = c;
    if (*s == '[' && e[-1] == ']')
        s++, e--;
    if ((size_t)(e - s) >= ip_len)
        return -1;
    memcpy(ip, s, (size_t)(e - s));
    ip[e - s] = '\0';
    char *end;
    *port = strtol(c + 1, &end, 10);
    return *end || *port < 1 || *port > 65535 ? -1 : 0;
}

/* "k=v,k2=v2" into a JSON object. */
static json_t *metadata_of(const char *s)
{
    json_t *m = json_object();
    while (s && *s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (!eq || eq == s) {
            json_decref(m);
            return NULL;
        }
        char key[256];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - s), s);
        json_object_set_new(m, key, json_stringn(eq + 1, (size_t)(s + len - eq - 1)));
        s = comma ? comma + 1 : NULL;
    }
    return m;
}

static void fmt_time(uint64_t ms, char *out, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- cairn registry ------------------------------------------------------------------------ */

static int registry_ls(struct rcmd *r)
{
    struct cn_buf p;
    cn_buf_init(&p, 8192);
    cn_buf_puts(&p, "/api/v1/registry/services?namespace=");
    cn_client_escape(&p, r->ns);
    if (r->group && strcmp(r->group, "DEFAULT_GROUP") != 0) {
        cn_buf_puts(&p, "&group=");
        cn_client_escape(&p, r->group);
    }
    cn_buf_append(&p, "", 1);
    int rc;
    json_t *j = fetch(r, "registry ls", "GET", p.ptr, NULL, &rc);
    cn_buf_release(&p);
    if (!j)
        return rc;
    printf("%-40s\n", "SERVICE");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "services"), i, v) printf("%s\n", json_string_value(v));
    json_decref(j);
    return CN_EXIT_OK;
}

static int registry_get(struct rcmd *r)
{
    if (r->num_pos != 1)
        return cn_usage_error("registry", "get needs SERVICE");
    struct cn_buf p;
    cn_buf_init(&p, 8192);
    key_path(&p, "/api/v1/registry/services", r, r->pos[0]);
    cn_buf_append(&p, "", 1);
    int rc;
    json_t *j = fetch(r, "registry get", "GET", p.ptr, NULL, &rc);
    cn_buf_release(&p);
    if (!j)
        return rc;
    printf("%-40s %-6s %-12s %-7s %-8s %-8s %-10s %s\n", "IP", "PORT", "CLUSTER", "WEIGHT",
           "HEALTHY", "ENABLED", "EPHEMERAL", "METADATA");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "instances"), i, v)
    {
        char *meta = json_dumps(json_object_get(v, "metadata"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("%-40s %-6lld %-12s %-7g %-8s %-8s %-10s %s\n",
               json_string_value(json_object_get(v, "ip")),
               (long long)json_integer_value(json_object_get(v, "port")),
               json_string_value(json_object_get(v, "cluster")),
               json_number_value(json_object_get(v, "weight")),
               json_is_true(json_object_get(v, "healthy")) ? "yes" : "no",
               json_is_true(json_object_get(v, "enabled")) ? "yes" : "no",
               json_is_true(json_object_get(v, "ephemeral")) ? "yes" : "no", meta ? meta : "{}");
        free(meta);
    }
    json_decref(j);
    return CN_EXIT_OK;
}

static int registry_put_rm(struct rcmd *r, int put)
{
    if (r->num_pos != 2)
        return cn_usage_error("registry", "%s needs SERVICE IP:PORT", put ? "put" : "rm");
    char ip[256];
    long port;
    if (split_addr(r->pos[1], ip, sizeof(ip), &port) != 0)
        return cn_usage_error("registry", "'%s' is not IP:PORT", r->pos[1]);
    struct cn_buf p;
    cn_buf_init(&p, 8192);
    key_path(&p, "/api/v1/registry/services", r, r->pos[0]);
    char *body = NULL;
    if (put) {
        cn_buf_puts(&p, "/instances");
        json_t *m = metadata_of(r->metadata);
        if (!m) {
            cn_buf_release(&p);
            return cn_usage_error("registry", "--metadata takes k=v,k2=v2");
        }
        char *end = NULL;
        double w = r->weight ? strtod(r->weight, &end) : 1.0;
        if (r->weight && (*end || w < 0 || w > 10000)) {
            json_decref(m);
            cn_buf_release(&p);
            return cn_usage_error("registry", "--weight takes a number 0..10000");
        }
        json_t *j = json_pack("{s:s, s:i, s:s, s:f, s:b, s:o}", "ip", ip, "port", (int)port,
                              "cluster", r->cluster ? r->cluster : "DEFAULT", "weight", w,
                              "ephemeral", r->ephemeral, "metadata", m);
        body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    } else {
        cn_buf_puts(&p, "/instances/");
        cn_client_escape(&p, ip);
        cn_buf_printf(&p, "/%ld", port);
        if (r->cluster) {
            cn_buf_puts(&p, "?cluster=");
            cn_client_escape(&p, r->cluster);
        }
    }
    cn_buf_append(&p, "", 1);
    int rc;
    json_t *j =
        fetch(r, put ? "registry put" : "registry rm", put ? "PUT" : "DELETE", p.ptr, body, &rc);
    json_decref(j);
    free(body);
    cn_buf_release(&p);
    return rc;
}

int cmd_registry(int argc, char **argv)
{
    struct rcmd r = {.name = "registry"};
    if (argc < 2)
        return cn_usage_error("registry", "no subcommand given");
    const char *sub = argv[1];
    int rc = parse(&r, argc, argv, 2);
    if (rc)
        return rc;
    if (strcmp(sub, "ls") == 0)
        return r.num_pos ? cn_usage_error("registry", "ls takes no argument") : registry_ls(&r);
    if (strcmp(sub, "get") == 0)
        return registry_get(&r);
    if (strcmp(sub, "put") == 0)
        return registry_put_rm(&r, 1);
    if (strcmp(sub, "rm") == 0)
        return registry_put_rm(&r, 0);
    return cn_usage_error("registry", "unknown subcommand '%s'", sub);
}

/* ---- cairn config get|put|history|rollback -------------------------------------------------- */

static char *read_all(FILE *f, size_t max)
{
    struct cn_buf b;
    cn_buf_init(&b, max + 1);
    char t[65536];
    size_t n;
    while ((n = fread(t, 1, sizeof(t), f)) > 0)
        if (cn_buf_append(&b, t, n) != 0) {
            cn_buf_release(&b);
            return NULL;
        }
    if (cn_buf_append(&b, "", 1) != 0) {
        cn_buf_release(&b);
        return NULL;
    }
    return b.ptr;
}

int cn_config_center(int argc, char **argv)
{
    struct rcmd r = {.name = "config"};
    const char *sub = argv[1];
    int rc = parse(&r, argc, argv, 2);
    if (rc)
        return rc;
    int hist = strcmp(sub, "history") == 0, rb = strcmp(sub, "rollback") == 0;
    int get = strcmp(sub, "get") == 0, put = strcmp(sub, "put") == 0;
    if (r.num_pos != (rb ? 2 : 1))
        return cn_usage_error("config", rb ? "rollback needs DATA_ID VERSION" : "%s needs DATA_ID",
                              sub);
    struct cn_buf p;
    cn_buf_init(&p, 8192);
    key_path(&p, "/api/v1/registry/configs", &r, r.pos[0]);
    char *body = NULL;
    json_t *j = NULL;
    if (hist) {
        cn_buf_puts(&p, "/history");
        if (r.limit) {
            cn_buf_puts(&p, "?limit=");
            cn_client_escape(&p, r.limit);
        }
    } else if (rb) {
        char *end;
        long long v = strtoll(r.pos[1], &end, 10);
        if (*end || v < 1) {
            cn_buf_release(&p);
            return cn_usage_error("config", "VERSION must be a positive number");
        }
        cn_buf_puts(&p, "/rollback");
        j = json_pack("{s:I}", "version", (json_int_t)v);
    } else if (put) {
        char *content = NULL;
        if (r.content)
            content = strdup(r.content);
        else {
            FILE *f = r.file ? fopen(r.file, "rb") : stdin;
            if (!f) {
                fprintf(stderr, "cairn: %s: %s\n", r.file, strerror(errno));
                cn_buf_release(&p);
                return CN_EXIT_FAIL;
            }
            content = read_all(f, 64u << 20);
            if (f != stdin)
                fclose(f);
        }
        if (!content) {
            cn_buf_release(&p);
            fprintf(stderr, "cairn: config put: content unreadable or over 64 MiB\n");
            return CN_EXIT_FAIL;
        }
        j = json_pack("{s:s, s:s}", "content", content, "type", r.type ? r.type : "text");
        free(content);
        if (!j) {
            cn_buf_release(&p);
            fprintf(stderr, "cairn: config put: content is not UTF-8\n");
            return CN_EXIT_FAIL;
        }
    } else if (!get) {
        cn_buf_release(&p);
        return cn_usage_error("config", "unknown subcommand '%s'", sub);
    }
    if (j)
        body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cn_buf_append(&p, "", 1);
    const char *method = put ? "PUT" : rb ? "POST" : "GET";
    char what[64];
    snprintf(what, sizeof(what), "config %s", sub);
    j = fetch(&r, what, method, p.ptr, body, &rc);
    free(body);
    cn_buf_release(&p);
    if (!j)
        return rc;
    if (get) {
        const char *c = json_string_value(json_object_get(j, "content"));
        fwrite(c, 1, json_string_length(json_object_get(j, "content")), stdout);
    } else if (put || rb) {
        printf("version %lld\n", (long long)json_integer_value(json_object_get(j, "version")));
    } else {
        printf("%-10s %-9s %-32s %-8s %-24s %s\n", "VERSION", "OP", "MD5", "SIZE", "WHO", "TIME");
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(j, "history"), i, v)
        {
            char t[32];
            fmt_time((uint64_t)json_integer_value(json_object_get(v, "time")), t, sizeof(t));
            printf("%-10lld %-9s %-32s %-8lld %-24s %s\n",
                   (long long)json_integer_value(json_object_get(v, "version")),
                   json_string_value(json_object_get(v, "op")),
                   json_string_value(json_object_get(v, "md5")),
                   (long long)json_integer_value(json_object_get(v, "size")),
                   json_string_value(json_object_get(v, "who")), t);
        }
    }
    json_decref(j);
    return CN_EXIT_OK;
}
