/* Text helpers shared by the registry's parts: JSON output, forms, Nacos listener records. */
#ifndef CN_REG_UTIL_H
#define CN_REG_UTIL_H

#include "base/buf.h"

/* Appends s as a JSON string (quoted, escaped). Returns 0 or CN_ELIMIT. */
int cn_reg_json_str(struct cn_buf *b, const char *s, size_t len);
/* Appends a double as Java prints it (1.0, 0.5). */
int cn_reg_json_double(struct cn_buf *b, double v);
/* A metadata value (JSON object of strings) as milliseconds in 1 .. 2^40, else def. */
uint64_t cn_reg_meta_ms(const char *metadata, const char *key, uint64_t def);
/* A metadata value as a heap string ("" when absent); NULL on allocation failure. */
char *cn_reg_meta_str(const char *metadata, const char *key);

/* ---- forms -------------------------------------------------------------------------------- */

#define CN_FORM_MAX_PARAMS 64

/* Parameters of a request: the query string's, then the form body's, percent-decoded ('+'
 * is a space) into one buffer. A name given twice keeps its first value, as a servlet's
 * getParameter does. */
struct cn_form {
    size_t num;
    uint32_t noff[CN_FORM_MAX_PARAMS], nlen[CN_FORM_MAX_PARAMS]; /* offsets into text, which */
    uint32_t voff[CN_FORM_MAX_PARAMS], vlen[CN_FORM_MAX_PARAMS]; /* may move as it grows */
    struct cn_buf text;                                          /* decoded bytes */
};

void cn_form_init(struct cn_form *f, size_t max_bytes);
void cn_form_release(struct cn_form *f);
/* Parses "a=1&b=x%20y" and adds its parameters. Returns 0, CN_ESYNTAX for a malformed
 * percent escape, CN_ELIMIT past CN_FORM_MAX_PARAMS parameters or max_bytes of text. */
int cn_form_parse(struct cn_form *f, struct cn_slice s);
/* 1 with the value of name in *out (valid until the next parse), 0 when absent. */
int cn_form_get(const struct cn_form *f, const char *name, struct cn_slice *out);
/* Percent-decodes s into out ('+' is a space when plus_space). Returns 0 or CN_ESYNTAX /
 * CN_ELIMIT. */
int cn_url_decode(struct cn_buf *out, struct cn_slice s, int plus_space);
/* Appends s encoded as Java's URLEncoder does (letters, digits and ".-*_" kept, space as
 * '+', everything else %XX upper-case). Returns 0 or CN_ELIMIT. */
int cn_url_encode_java(struct cn_buf *out, struct cn_slice s);

/* ---- Nacos listener records --------------------------------------------------------------- */

/* One "dataId\x02group\x02md5[\x02tenant]\x01" record. Slices point into the input. */
struct cn_listen_key {
    struct cn_slice data_id, group, md5, tenant;
    int has_tenant;
};

/* Parses a Listening-Configs value (already decoded) into out (at most max_keys), as Nacos'
 * MD5Util.getClientMd5Map does: a record of 2 fields before \x01 is dataId, group, md5; of 3,
 * dataId, group, md5, tenant; trailing bytes without their \x01 are ignored. Returns the
 * number of keys, CN_ESYNTAX for a record with fewer than 2 or more than 4 fields or an empty
 * dataId or group, CN_ELIMIT past max_keys. */
long cn_listen_parse(struct cn_slice s, struct cn_listen_key *out, size_t max_keys);

#endif
