/* The gateway's configuration as a JSON document (admin API): YAML text converted so that
 * dumping it back as JSON gives the compiler the same scalars, and edits of one route or
 * cluster by name. */
#include "gateway/admin.h"

#include "base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

struct conv {
    yaml_document_t *doc;
    const char *name;
    char *err;
    size_t err_len;
    size_t visited;
};

static json_t *conv_fail(struct conv *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *conv_fail(struct conv *c, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->err_len, "%s:%zu:%zu: %s", c->name, n->start_mark.line + 1,
             n->start_mark.column + 1, msg);
    for (char *p = c->err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return NULL;
}

static int is_int(const char *s, size_t len)
{
    size_t i = s[0] == '-' ? 1 : 0;
    if (len <= i || len - i > 18)
        return 0;
    if (s[i] == '0' && len - i > 1)
        return 0;
    if (s[i] == '0' && i)
        return 0; /* "-0" stays text */
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Characters that YAML reads differently when they appear unescaped in the JSON text the
 * API hands the compiler (DEL, C1 controls and NEL, the line and paragraph separators, the
 * byte order mark, U+FFFE/U+FFFF): refused, so the round trip gives back what was sent. */
static int unsafe_char(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == 0x7f)
            return 1;
        if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            return 1;
        if (p[i] == 0xe2 && i + 2 < len && p[i + 1] == 0x80 &&
            (p[i + 2] == 0xa8 || p[i + 2] == 0xa9))
            return 1;
        if (p[i] == 0xef && i + 2 < len &&
            ((p[i + 1] == 0xbb && p[i + 2] == 0xbf) || (p[i + 1] == 0xbf && p[i + 2] >= 0xbe)))
            return 1;
    }
    return 0;
}

static json_t *scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (len == 0 || (len == 4 && !memcmp(s, "null", 4)) || (len == 1 && s[0] == '~'))
            return json_null();
        if (len == 4 && !memcmp(s, "true", 4))
            return json_true();
        if (len == 5 && !memcmp(s, "false", 5))
            return json_false();
        if (is_int(s, len))
            return json_integer((json_int_t)strtoll(s, NULL, 10));
    }
    return json_stringn(s, len);
}

static json_t *conv(struct conv *c, yaml_node_t *n, int depth)
{
    if (!n)
        return NULL;
    if (++c->visited > CN_GW_DOC_MAX_NODES)
        return conv_fail(c, n, "more than %d nodes (aliases count each time they are used)",
                         CN_GW_DOC_MAX_NODES);
    if (depth > CN_GW_DOC_MAX_DEPTH)
        return conv_fail(c, n, "nested more than %d levels", CN_GW_DOC_MAX_DEPTH);
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        if (unsafe_char((const char *)n->data.scalar.value, n->data.scalar.length))
            return conv_fail(c, n,
                             "a character YAML cannot carry unescaped (DEL, a C1 control, "
                             "U+2028, U+2029, U+FEFF, U+FFFE, U+FFFF)");
        json_t *j = scalar(n);
        return j ? j : conv_fail(c, n, "not valid UTF-8 or out of memory");
    }
    case YAML_SEQUENCE_NODE: {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             a && it < n->data.sequence.items.top; it++) {
            json_t *v = conv(c, yaml_document_get_node(c->doc, *it), depth + 1);
            if (!v || json_array_append_new(a, v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case YAML_MAPPING_NODE: {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; o && p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE) {
                json_decref(o);
                return k ? conv_fail(c, k, "a key must be a scalar") : NULL;
            }
            const char *ks = (const char *)k->data.scalar.value;
            size_t kl = k->data.scalar.length;
            if (kl > CN_GW_DOC_MAX_KEY) {
                json_decref(o);
                return conv_fail(c, k, "a key longer than %d bytes", CN_GW_DOC_MAX_KEY);
            }
            if (memchr(ks, '\0', kl) || unsafe_char(ks, kl)) {
                json_decref(o);
                return conv_fail(c, k, "a key holds a NUL byte or a character YAML cannot carry");
            }
            if (json_object_getn(o, ks, kl)) {
                json_decref(o);
                return conv_fail(c, k, "repeated key '%.*s'", (int)CN_MIN(kl, 64), ks);
            }
            json_t *v = conv(c, yaml_document_get_node(c->doc, p->value), depth + 1);
            if (!v || json_object_setn_new(o, ks, kl, v) != 0) {
                json_decref(o);
                return v ? conv_fail(c, k, "a key is not valid UTF-8") : NULL;
            }
        }
        return o;
    }
    default:
        return conv_fail(c, n, "unexpected node");
    }
}

json_t *cn_gw_doc_from_yaml(const char *name, const char *data, size_t len, char *err,
                            size_t err_len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, err_len, "%s: out of memory", name);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    json_t *j = NULL;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_len, "%s:%zu:%zu: %s%s%s", name, parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "malformed YAML",
                 parser.context ? " " : "", parser.context ? parser.context : "");
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        struct conv c = {&doc, name, err, err_len, 0};
        if (!root)
            snprintf(err, err_len, "%s: empty document", name);
        else
            j = conv(&c, root, 0);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return j;
}

json_t *cn_gw_doc_find(const json_t *doc, const char *list, const char *name, size_t *out_index)
{
    json_t *a = json_object_get(doc, list);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, name) == 0) {
            if (out_index)
                *out_index = i;
            return v;
        }
    }
    return NULL;
}

int cn_gw_doc_put(json_t *doc, const char *list, const char *name, json_t *obj, char *err,
                  size_t err_len)
{
    if (!json_is_object(doc)) {
        snprintf(err, err_len, "the configuration is not a mapping");
        return CN_EINVAL;
    }
    if (!json_is_object(obj)) {
        snprintf(err, err_len, "body: must be a mapping (one %s)",
                 strcmp(list, "routes") == 0 ? "route" : "cluster");
        return CN_EINVAL;
    }
    json_t *n = json_object_get(obj, "name");
    if (n && (!json_is_string(n) || strcmp(json_string_value(n), name) != 0)) {
        snprintf(err, err_len, "name: must be '%s' as in the URL, or absent", name);
        return CN_EINVAL;
    }
    json_t *a = json_object_get(doc, list);
    if (!a || json_is_null(a)) {
        a = json_array();
        if (!a || json_object_set_new(doc, list, a) != 0) {
            snprintf(err, err_len, "out of memory");
            return CN_ENOMEM;
        }
    }
    if (!json_is_array(a)) {
        snprintf(err, err_len, "%s: the running configuration's %s is not a list", list, list);
        return CN_EINVAL;
    }
    json_t *copy = json_deep_copy(obj);
    if (!copy || (!n && json_object_set_new(copy, "name", json_string(name)) != 0)) {
        json_decref(copy);
        snprintf(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    if (!n) {
        /* "name" first, as people write it. */
        json_t *ordered = json_object();
        const char *k;
        json_t *v;
        json_object_set(ordered, "name", json_object_get(copy, "name"));
        json_object_foreach(copy, k, v) if (strcmp(k, "name") != 0) json_object_set(ordered, k, v);
        json_decref(copy);
        copy = ordered;
    }
    size_t at;
    if (cn_gw_doc_find(doc, list, name, &at)) {
        json_array_set_new(a, at, copy);
        return 1;
    }
    if (json_array_append_new(a, copy) != 0) {
        snprintf(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    return 0;
}

int cn_gw_doc_delete(json_t *doc, const char *list, const char *name)
{
    size_t at;
    if (!cn_gw_doc_find(doc, list, name, &at))
        return CN_ENOENT;
    json_array_remove(json_object_get(doc, list), at);
    return 0;
}
