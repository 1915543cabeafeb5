/* Open-loop HTTP/1.1 load for latency at a fixed rate (bench/http-hello.sh).
 *
 *   openloop HOST PORT PATH RATE SECONDS CONNECTIONS
 *
 * Requests are due at a fixed aggregate RATE per second, spread round-robin over
 * CONNECTIONS keep-alive connections (pipelined when a connection is behind). Latency is
 * measured from when a request was due, not from when it could be sent, so a server that
 * falls behind is charged for the wait (no coordinated omission). Prints requests done,
 * the achieved rate and p50/p90/p99/p99.9 in milliseconds. One thread, epoll. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXQ 4096

struct conn {
    int fd;
    uint64_t due[MAXQ]; /* due times of requests sent and not yet answered */
    unsigned head, tail;
    char in[65536];
    size_t in_len;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Consumes whole replies from c->in; returns how many, or -1 on a malformed reply. */
static int parse_replies(struct conn *c, uint64_t t, uint64_t *lat, size_t *nlat, size_t cap)
{
    int n = 0;
    for (;;) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end)
            break;
        size_t head = (size_t)(end + 4 - c->in);
        char *cl = memmem(c->in, head, "Content-Length: ", 16);
        if (!cl)
            cl = memmem(c->in, head, "content-length: ", 16);
        if (!cl)
            return -1;
        size_t body = strtoul(cl + 16, NULL, 10);
        if (c->in_len < head + body)
            break;
        memmove(c->in, c->in + head + body, c->in_len - head - body);
        c->in_len -= head + body;
        if (c->head == c->tail)
            return -1;
        uint64_t due = c->due[c->head++ % MAXQ];
        if (*nlat < cap)
            lat[(*nlat)++] = t - due;
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: openloop HOST PORT PATH RATE SECONDS CONNECTIONS\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *path = argv[3];
    double rate = atof(argv[4]);
    double secs = atof(argv[5]);
    int nconn = atoi(argv[6]);
    if (rate <= 0 || secs <= 0 || nconn <= 0)
        return 2;
    char req[512];
    int req_len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    int ep = epoll_create1(0);
    struct conn *cs = calloc((size_t)nconn, sizeof(*cs));
    for (int i = 0; i < nconn; i++) {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a.sin_addr);
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cs[i].fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
            perror("connect");
            return 1;
        }
        int one = 1;
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    size_t total = (size_t)(rate * secs) + 1;
    uint64_t *lat = malloc(total * sizeof(*lat));
    size_t nlat = 0, sent = 0, done = 0;
    uint64_t interval = (uint64_t)(1e9 / rate);
    uint64_t start = now_ns() + 1000000, end = start + (uint64_t)(secs * 1e9);
    uint64_t next = start;
    int next_conn = 0;
    while (1) {
        uint64_t t = now_ns();
        /* Send everything that is due. */
        while (next <= t && next < end) {
            struct conn *c = &cs[next_conn];
            next_conn = (next_conn + 1) % nconn;
            if (c->tail - c->head >= MAXQ) {
                fprintf(stderr, "openloop: %u requests outstanding on one connection\n", MAXQ);
                return 1;
            }
            if (send(c->fd, req, (size_t)req_len, MSG_NOSIGNAL) != req_len) {
                perror("send");
                return 1;
            }
            c->due[c->tail++ % MAXQ] = next;
            sent++;
            next += interval;
        }
        if (t >= end && done == sent)
            break;
        if (t >= end + 5000000000ull) {
            fprintf(stderr, "openloop: %zu replies missing after the end\n", sent - done);
            break;
        }
        int wait_ms = 0;
        if (next > t && next < end)
            wait_ms = (int)((next - t) / 1000000);
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, t >= end ? 10 : wait_ms);
        uint64_t rt = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = &cs[evs[i].data.u32];
            ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
            if (r <= 0) {
                fprintf(stderr, "openloop: connection closed by the server\n");
                return 1;
            }
            c->in_len += (size_t)r;
            int k = parse_replies(c, rt, lat, &nlat, total);
            if (k < 0) {
                fprintf(stderr, "openloop: malformed reply\n");
                return 1;
            }
            done += (size_t)k;
        }
    }
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
#define Q(q) (nlat ? (double)lat[(size_t)((double)(nlat - 1) * (q))] / 1e6 : 0.0)
    printf("requests=%zu rate=%.0f p50=%.3f p90=%.3f p99=%.3f p999=%.3f\n", done,
           (double)done / secs, Q(0.50), Q(0.90), Q(0.99), Q(0.999));
    return 0;
}
