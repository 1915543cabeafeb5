/* JSON replies through jansson. */
#ifndef CN_HTTP_JSON_H
#define CN_HTTP_JSON_H

#include "http/server.h"

#include <jansson.h>

/* Serialises j (compact) and replies with application/json. Takes the reference to j. */
void cn_http_reply_json(struct cn_http_req *req, int status, json_t *j);
/* {"error": message, "param": param} for a bad request; param may be NULL. */
void cn_http_reply_json_error(struct cn_http_req *req, int status, const char *param,
                              const char *message);

#endif
