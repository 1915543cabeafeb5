/* Jaeger, Zipkin v2 and Tempo query APIs on the API port (api-compat.c, docs/compat.md). */
#ifndef CN_CLI_API_COMPAT_H
#define CN_CLI_API_COMPAT_H

#include "cli/up.h"

/* Registers the compatibility routes on r (they answer 503 while up has no store). Returns
 * 0 or the router's error. */
int cn_api_compat_routes(struct cn_up *up, struct cn_router *r);

#endif
