#include "telemetry/otlp-json.h"
#include "telemetry/otlp-pb.h"
#include "telemetry/store.h"
#include "telemetry/zipkin.h"

int cn_tel_decode(struct cn_tel_batch *b, enum cn_body_kind kind, const uint8_t *body, size_t len,
                  const struct cn_tel_limits *lim, char *err, size_t err_len)
{
    switch (kind) {
    case CN_BODY_TRACES_PB:
        return cn_otlp_pb_decode_traces(b, body, len, lim, err, err_len);
    case CN_BODY_TRACES_JSON:
        return cn_otlp_json_decode_traces(b, (const char *)body, len, lim, err, err_len);
    case CN_BODY_LOGS_PB:
        return cn_otlp_pb_decode_logs(b, body, len, lim, err, err_len);
    case CN_BODY_LOGS_JSON:
        return cn_otlp_json_decode_logs(b, (const char *)body, len, lim, err, err_len);
    case CN_BODY_ZIPKIN:
        return cn_zipkin_decode(b, (const char *)body, len, lim, err, err_len);
    }
    snprintf(err, err_len, "unknown body kind %d", (int)kind);
    return CN_EINVAL;
}
