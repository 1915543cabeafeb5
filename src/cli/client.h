/* The command line's HTTP client (libcurl): commands that talk to a running server. */
#ifndef CN_CLI_CLIENT_H
#define CN_CLI_CLIENT_H

#include "base/buf.h"

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

#endif
