#include "base/log.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

volatile int cn_log_threshold = CN_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int cn_log_level_parse(const char *s, enum cn_log_level *out_level)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out_level = (enum cn_log_level)i;
            return 0;
        }
    }
    return CN_EINVAL;
}

const char *cn_log_level_name(enum cn_log_level level)
{
    return (unsigned)level < CN_ARRAY_LEN(level_names) ? level_names[level] : "?";
}

void cn_log_set_fd(int fd)
{
    log_fd = fd;
}

void cn_log_write(enum cn_log_level level, const char *part, const char *msg, const char *kv, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    const char *q = strchr(msg, ' ') ? "\"" : "";
    int w = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s %s%s%s", ts.tv_nsec / 1000000,
                     cn_log_level_name(level), part, q, msg, q);
    if (w > 0)
        n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
    if (kv && *kv && n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kv);
        w = vsnprintf(line + n, sizeof(line) - n, kv, ap);
        va_end(ap);
        if (w > 0)
            n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t r = write(log_fd, line, n);
    (void)r;
}
