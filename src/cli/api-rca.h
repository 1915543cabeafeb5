/* GET /api/v1/rca on the API port: root cause analysis (telemetry/rca.h, docs/rca.md). */
#ifndef CN_CLI_API_RCA_H
#define CN_CLI_API_RCA_H

#include "cli/up.h"
#include "http/router.h"

/* Registers /api/v1/rca on r (503 while up has no store). Returns 0 or a negative code. */
int cn_api_rca_routes(struct cn_up *up, struct cn_router *r);

#endif
