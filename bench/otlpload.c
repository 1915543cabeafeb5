/* OTLP/HTTP load generator for bench/ingest.sh.
 *
 *   otlpload HOST PORT BODIES_FILE CONNECTIONS [PASSES]
 *
 * Reads the bodies written by otlpgen into memory, then CONNECTIONS threads each hold one
 * keep-alive connection and POST bodies to /v1/traces (application/x-protobuf; the
 * environment variable OTLPLOAD_PATH names another path, e.g. /v1/logs) in turn
 * until every body was sent PASSES times (default 1). Only 200 answers count as ingested;
 * 429/503 answers are retried after their Retry-After. Prints spans acknowledged, seconds
 * and spans/s; exits 1 if any request failed for good. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct body {
    uint8_t *p;
    uint32_t len, spans;
};

static struct body *bodies;
static size_t num_bodies;
static atomic_size_t next_body;
static size_t total_sends;
static atomic_uint_fast64_t acked_spans, acked_bodies, retries, failures;
static const char *host;
static const char *path = "/v1/traces";
static int port;

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one reply; returns its status, or -1 when the connection failed. */
static int read_reply(int fd, char *buf, size_t cap, int *retry_after)
{
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    int status = atoi(buf + 9);
    size_t clen = 0;
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl)
        clen = strtoul(cl + 17, NULL, 10);
    const char *ra = strcasestr(buf, "\r\nretry-after:");
    *retry_after = ra ? atoi(ra + 14) : 1;
    size_t have = got - (size_t)(end + 4 - buf);
    while (have < clen) {
        ssize_t r = recv(fd, buf, cap - 1, 0);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    return status;
}

static void *worker(void *arg)
{
    (void)arg;
    int fd = dial();
    char head[256], reply[65536];
    for (;;) {
        size_t i = atomic_fetch_add(&next_body, 1);
        if (i >= total_sends)
            break;
        const struct body *b = &bodies[i % num_bodies];
        int n = snprintf(head, sizeof(head),
                         "POST %s HTTP/1.1\r\nHost: %s\r\n"
                         "Content-Type: application/x-protobuf\r\nContent-Length: %u\r\n\r\n",
                         path, host, b->len);
        for (int attempt = 0;; attempt++) {
            int ra = 1;
            int st = -1;
            if (send_all(fd, head, (size_t)n) == 0 && send_all(fd, b->p, b->len) == 0)
                st = read_reply(fd, reply, sizeof(reply), &ra);
            if (st == 200) {
                atomic_fetch_add(&acked_spans, b->spans);
                atomic_fetch_add(&acked_bodies, 1);
                break;
            }
            if (st < 0) {
                close(fd);
                fd = dial();
            }
            if ((st == 429 || st == 503 || st < 0) && attempt < 100) {
                atomic_fetch_add(&retries, 1);
                usleep((useconds_t)(ra > 0 ? 100000 : 10000));
                continue;
            }
            fprintf(stderr, "otlpload: body %zu answered %d\n", i % num_bodies, st);
            atomic_fetch_add(&failures, 1);
            break;
        }
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: otlpload HOST PORT BODIES_FILE CONNECTIONS [PASSES]\n");
        return 2;
    }
    host = argv[1];
    if (getenv("OTLPLOAD_PATH"))
        path = getenv("OTLPLOAD_PATH");
    port = atoi(argv[2]);
    int conns = atoi(argv[4]);
    int passes = argc > 5 ? atoi(argv[5]) : 1;
    FILE *f = fopen(argv[3], "rb");
    if (!f || conns <= 0 || passes <= 0) {
        fprintf(stderr, "otlpload: bad arguments\n");
        return 2;
    }
    size_t cap = 0;
    uint32_t hdr[2];
    uint64_t spans_per_pass = 0;
    while (fread(hdr, sizeof(hdr), 1, f) == 1) {
        if (num_bodies == cap) {
            cap = cap ? cap * 2 : 256;
            bodies = realloc(bodies, cap * sizeof(*bodies));
        }
        struct body *b = &bodies[num_bodies++];
        b->len = hdr[0];
        b->spans = hdr[1];
        b->p = malloc(b->len);
        if (!b->p || fread(b->p, 1, b->len, f) != b->len) {
            fprintf(stderr, "otlpload: truncated bodies file\n");
            return 1;
        }
        spans_per_pass += b->spans;
    }
    fclose(f);
    total_sends = num_bodies * (size_t)passes;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t *th = calloc((size_t)conns, sizeof(*th));
    for (int i = 0; i < conns; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    for (int i = 0; i < conns; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    uint64_t spans = atomic_load(&acked_spans);
    printf("spans=%" PRIu64 " bodies=%" PRIu64 " seconds=%.3f spans_per_s=%.0f retries=%" PRIu64
           " failures=%" PRIu64 "\n",
           spans, (uint64_t)atomic_load(&acked_bodies), secs, (double)spans / secs,
           (uint64_t)atomic_load(&retries), (uint64_t)atomic_load(&failures));
    (void)spans_per_pass;
    return atomic_load(&failures) ? 1 : 0;
}
