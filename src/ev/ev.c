#include "ev/ev.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

int cn_ev_parse_addr(const char *hostport, struct sockaddr_storage *out_addr)
{
    char host[256];
    const char *colon;
    const char *h = hostport;
    size_t hlen;
    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        if (!end || end[1] != ':')
            return CN_EINVAL;
        h = hostport + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(hostport, ':');
        if (!colon)
            return CN_EINVAL;
        hlen = (size_t)(colon - hostport);
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return CN_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    uint64_t port;
    if (cn_slice_to_u64(cn_slice_of(colon + 1), &port) != 0 || port > 65535)
        return CN_EINVAL;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    memset(out_addr, 0, sizeof(*out_addr));
    struct sockaddr_in *in4 = (struct sockaddr_in *)out_addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out_addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    return CN_EINVAL;
}

void cn_ev_format_addr(const struct sockaddr *sa, char *dst, size_t dst_len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        snprintf(dst, dst_len, "%s:%u", host, ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(dst, dst_len, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(dst, dst_len, "?");
    }
}

int cn_ev_listen_socket(struct sockaddr_storage *addr, int backlog)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    socklen_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)addr, len) != 0)
        goto fail;
    if (listen(fd, backlog) != 0)
        goto fail;
    len = sizeof(*addr);
    if (getsockname(fd, (struct sockaddr *)addr, &len) != 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

static void on_wake(uv_async_t *a)
{
    struct cn_worker *w = a->data;
    int flags = atomic_exchange(&w->posted, 0);
    if (flags && w->wake_cb)
        w->wake_cb(w, flags);
}

static void worker_main(void *arg)
{
    struct cn_worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "cn-worker-%d", w->id);
    pthread_setname_np(pthread_self(), name); /* top -H, perf: which thread does what */
    w->setup_cb(w);
    int ok = w->setup_rc == 0;
    uv_sem_post(&w->ready);
    if (ok)
        uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->teardown_cb)
        w->teardown_cb(w);
}

int cn_worker_start(struct cn_worker *w, int id, cn_worker_cb setup_cb, cn_worker_wake_cb wake_cb,
                    cn_worker_cb teardown_cb, void *data)
{
    w->id = id;
    w->setup_cb = setup_cb;
    w->wake_cb = wake_cb;
    w->teardown_cb = teardown_cb;
    w->data = data;
    w->setup_rc = 0;
    atomic_init(&w->posted, 0);
    int rc = uv_loop_init(&w->loop);
    if (rc)
        return rc;
    rc = uv_async_init(&w->loop, &w->wake, on_wake);
    if (rc) {
        uv_loop_close(&w->loop);
        return rc;
    }
    w->wake.data = w;
    uv_sem_init(&w->ready, 0);
    rc = uv_thread_create(&w->thread, worker_main, w);
    if (rc) {
        uv_close((uv_handle_t *)&w->wake, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        uv_sem_destroy(&w->ready);
        return rc;
    }
    uv_sem_wait(&w->ready);
    if (w->setup_rc) {
        uv_thread_join(&w->thread);
        uv_run(&w->loop, UV_RUN_NOWAIT); /* close callbacks of what setup opened */
        uv_loop_close(&w->loop);
        uv_sem_destroy(&w->ready);
        return w->setup_rc;
    }
    return 0;
}

void cn_worker_post(struct cn_worker *w, int flags)
{
    atomic_fetch_or(&w->posted, flags);
    uv_async_send(&w->wake);
}

void cn_worker_close_wake(struct cn_worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->wake))
        uv_close((uv_handle_t *)&w->wake, NULL);
}

void cn_worker_join(struct cn_worker *w)
{
    uv_thread_join(&w->thread);
    /* The loop has returned; run once more to finish pending close callbacks. */
    uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_loop_close(&w->loop);
    uv_sem_destroy(&w->ready);
}

int cn_ev_num_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
