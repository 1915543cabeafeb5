#include "base/proc.h"

#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "btime ", 6) == 0) {
            bt = strtod(line + 6, NULL);
            break;
        }
    }
    fclose(f);
    return bt;
}

int cn_proc_stats_read(struct cn_proc_stats *out)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return CN_EIO;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which is in parentheses and may hold spaces. */
    char *p = strrchr(buf, ')');
    if (!p)
        return CN_EIO;
    p += 2;
    unsigned long long v[50] = {0};
    int i = 3; /* field number of the state letter */
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok && i < 50; tok = strtok_r(NULL, " ", &save), i++)
        v[i] = strtoull(tok, NULL, 10);
    long hz = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (hz <= 0)
        hz = 100;
    out->cpu_seconds = (double)(v[14] + v[15]) / (double)hz;
    out->threads = v[20];
    out->start_time = boot_time() + (double)v[22] / (double)hz;
    out->vsize_bytes = v[23];
    out->rss_bytes = v[24] * (uint64_t)(page > 0 ? page : 4096);
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                out->open_fds++;
        closedir(d);
        if (out->open_fds)
            out->open_fds--; /* the directory stream itself */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur;
    return 0;
}

int cn_proc_raise_nofile(uint64_t *from, uint64_t *to)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    *from = *to = rl.rlim_cur;
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -errno;
        *to = want;
    }
    return 0;
}
