/* Structured log lines: `ts level part msg key=value...`, one write(2) per line. */
#ifndef CN_LOG_H
#define CN_LOG_H

#include "base/base.h"

enum cn_log_level { CN_LOG_DEBUG = 0, CN_LOG_INFO, CN_LOG_WARN, CN_LOG_ERROR, CN_LOG_OFF };

/* Part of the process root: read by every thread, replaced on reload. */
extern volatile int cn_log_threshold;

/* Parses "debug", "info", "warn", "error", "off". Returns 0 or CN_EINVAL. */
int cn_log_level_parse(const char *s, enum cn_log_level *out_level);
const char *cn_log_level_name(enum cn_log_level level);

/* Sets the file descriptor lines go to (default 2). */
void cn_log_set_fd(int fd);

/* msg is quoted when it holds spaces; kv is a printf format for `key=value` pairs or NULL. */
void cn_log_write(enum cn_log_level level, const char *part, const char *msg, const char *kv, ...)
    __attribute__((format(printf, 4, 5)));

#define CN_LOG(level, part, msg, ...)                                                              \
    do {                                                                                           \
        if ((int)(level) >= cn_log_threshold)                                                      \
            cn_log_write((level), (part), (msg), __VA_ARGS__);                                     \
    } while (0)

#define cn_debug(part, msg, ...) CN_LOG(CN_LOG_DEBUG, part, msg, __VA_ARGS__)
#define cn_info(part, msg, ...)  CN_LOG(CN_LOG_INFO, part, msg, __VA_ARGS__)
#define cn_warn(part, msg, ...)  CN_LOG(CN_LOG_WARN, part, msg, __VA_ARGS__)
#define cn_error(part, msg, ...) CN_LOG(CN_LOG_ERROR, part, msg, __VA_ARGS__)

#endif
