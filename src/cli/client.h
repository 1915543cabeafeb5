/* The command line's HTTP client (libcurl): commands that talk to a running server. */
#ifndef CN_CLI_CLIENT_H
#define CN_CLI_CLIENT_H

#include "base/buf.h"

#include <jansson.h>

/* The server to talk to: --server URL, else CAIRN_SERVER, else http://127.0.0.1:9000. The
 * token: --token, else CAIRN_API_TOKEN. */
struct cn_client {
    const char *server;
    const char *token;
    long timeout_ms;
};

void cn_client_defaults(struct cn_client *c);

/* GETs server + path into out (bounded by out->max). Returns 0 with *out_status set, or a
 * negative code with a one-line reason in err (connection refused, timeout, too large). */
int cn_client_get(const struct cn_client *c, const char *path, struct cn_buf *out, long *out_status,
                  char *err, size_t err_len);

/* POSTs body (a NUL-terminated JSON text) to server + path; the answer goes into out as with
 * cn_client_get. */
int cn_client_post_json(const struct cn_client *c, const char *path, const char *body,
                        struct cn_buf *out, long *out_status, char *err, size_t err_len);
/* Any method (GET, PUT, DELETE...), with body (a NUL-terminated JSON text) or NULL for none;
 * the answer goes into out as with cn_client_get. */
int cn_client_request(const struct cn_client *c, const char *method, const char *path,
                      const char *body, struct cn_buf *out, long *out_status, char *err,
                      size_t err_len);
/* Prints a failed answer on stderr: "cairn: WHAT: message (parameter 'p') (HTTP status)", from
 * the API's {"error", "param"} body. Returns CN_EXIT_FAIL. */
int cn_client_report(const char *what, long status, const struct cn_buf *body);
/* method path [body] for a command named what. On 200: with raw, prints the answer as it came
 * and returns NULL with *rc 0; else returns the parsed document (*rc 0). Otherwise prints why
 * (unreachable, an error answer, not JSON) and returns NULL with *rc CN_EXIT_FAIL. Answers are
 * bounded by max_bytes. */
json_t *cn_client_json(const struct cn_client *c, const char *method, const char *path,
                       const char *body, const char *what, int raw, size_t max_bytes, int *rc);
/* Called with each line of a streamed answer (without its newline). Nonzero stops. */
typedef int (*cn_client_line_cb)(void *ctx, const char *line, size_t len);
/* GETs server + path and streams the answer line by line into cb as it arrives (no overall
 * timeout; lines longer than 1 MiB are an error). A non-200 answer's body goes into err_body
 * (bounded by its max) instead. Returns 0 with *out_status set when the stream ended (or cb
 * stopped it), or a negative code with a reason in err. */
int cn_client_stream(const struct cn_client *c, const char *path, cn_client_line_cb cb, void *ctx,
                     struct cn_buf *err_body, long *out_status, char *err, size_t err_len);
/* Appends s percent-encoded for a query string value into out. Returns 0 or CN_ELIMIT. */
int cn_client_escape(struct cn_buf *out, const char *s);

#endif
