/* Closed-loop HTTP/1.1 load for bench/registry.sh: C keep-alive connections, one request in
 * flight each, on one thread (epoll). Requests are generated per mode:
 *
 *   regload MODE HOST PORT SECONDS CONNECTIONS [SERVICES]
 *     register  POST /nacos/v1/ns/instance (a new ephemeral instance every request,
 *               spread over SERVICES services bench-rN, apart from those list reads)
 *     register-persistent  the same with ephemeral=false (stored before the answer), bench-pN
 *     list      GET /nacos/v1/ns/instance/list of one of SERVICES services bench-N
 *     beat      PUT /nacos/v1/ns/instance/beat of the instances bench-N holds (10 each,
 *               registered by bench/registry.sh before)
 *     etcd-put  POST /v3/kv/put (etcd's JSON gateway), a new key every request
 *     etcd-range POST /v3/kv/range of one of SERVICES keys
 *   regload push HOST PORT ROUNDS LISTENERS
 *     config publish -> held listener answered: LISTENERS long polls wait on one dataId; each
 *     round publishes new content and times every listener's answer from the publish.
 *
 * Prints "requests N rps R p50_ms A p99_ms B errors E" (push: "samples N p50_ms A p99_ms B
 * errors E"). Answers must be 200 and framed by Content-Length or chunked. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_LAT   (1u << 24)

enum mode { REGISTER, LIST, BEAT, ETCD_PUT, ETCD_RANGE, PUSH, REGISTER_P };

struct conn {
    int fd;
    char out[2048];
    size_t out_len, out_off;
    char in[65536];
    size_t in_len;
    uint64_t sent_ns;
    int busy;
};

static struct sockaddr_in addr;
static const char *host;
static int port;
static enum mode mode;
static long services = 100;
static uint64_t seq;
static double *lat;
static size_t num_lat;
static long errors;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("regload: connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void b64(const char *in, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* The next request of the mode into c->out. */
static void next_request(struct conn *c)
{
    uint64_t i = seq++;
    char target[512], body[512];
    body[0] = '\0';
    const char *method = "GET";
    /* Instance i: service i % services, ip 10.(i>>16).(i>>8).(i), port 8080. */
    unsigned a = (unsigned)(i >> 16) & 255, b = (unsigned)(i >> 8) & 255, d = (unsigned)i & 255;
    switch (mode) {
    case REGISTER:
    case REGISTER_P:
        method = "POST";
        snprintf(target, sizeof(target),
                 "/nacos/v1/ns/instance?serviceName=DEFAULT_GROUP%%40%%40bench-%s%lu&ip=10.%u.%u.%u"
                 "&port=8080&weight=1&ephemeral=%s",
                 mode == REGISTER ? "r" : "p", (unsigned long)(i % (uint64_t)services), a, b, d,
                 mode == REGISTER ? "true" : "false");
        break;
    case LIST:
        snprintf(target, sizeof(target),
                 "/nacos/v1/ns/instance/list?serviceName=DEFAULT_GROUP%%40%%40bench-%lu"
                 "&healthyOnly=false",
                 (unsigned long)(i % (uint64_t)services));
        break;
    case BEAT:
        method = "PUT";
        i %= (uint64_t)services * 10; /* the instances the register phase created */
        a = (unsigned)(i >> 16) & 255, b = (unsigned)(i >> 8) & 255, d = (unsigned)i & 255;
        snprintf(target, sizeof(target),
                 "/nacos/v1/ns/instance/beat?serviceName=DEFAULT_GROUP%%40%%40bench-%lu"
                 "&ip=10.%u.%u.%u&port=8080",
                 (unsigned long)(i % (uint64_t)services), a, b, d);
        break;
    case ETCD_PUT:
    case ETCD_RANGE: {
        method = "POST";
        char k[64], kb[128], vb[128];
        snprintf(k, sizeof(k), "/bench/%lu",
                 (unsigned long)(mode == ETCD_PUT ? i : i % (uint64_t)services));
        b64(k, kb);
        b64("10.0.0.1:8080 weight=1 healthy", vb);
        snprintf(target, sizeof(target), mode == ETCD_PUT ? "/v3/kv/put" : "/v3/kv/range");
        if (mode == ETCD_PUT)
            snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", kb, vb);
        else
            snprintf(body, sizeof(body), "{\"key\":\"%s\"}", kb);
        break;
    }
    case PUSH:
        break;
    }
    size_t bl = strlen(body);
    c->out_len = (size_t)snprintf(
        c->out, sizeof(c->out), "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n%s\r\n%s",
        method, target, host, bl, bl ? "Content-Type: application/json\r\n" : "", body);
    c->out_off = 0;
}

/* Length of one complete response at the start of buf, 0 when incomplete; *status set. */
static size_t response_len(const char *buf, size_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    *status = len > 12 ? atoi(buf + 9) : 0;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    if (cl && cl < end) {
        size_t n = strtoul(cl + 17, NULL, 10);
        return len >= head + n ? head + n : 0;
    }
    const char *te = strcasestr(buf, "\r\nTransfer-Encoding: chunked");
    if (te && te < end) {
        size_t p = head;
        for (;;) {
            const char *nl = memmem(buf + p, len - p, "\r\n", 2);
            if (!nl)
                return 0;
            size_t n = strtoul(buf + p, NULL, 16);
            p = (size_t)(nl - buf) + 2;
            if (n == 0)
                return len >= p + 2 ? p + 2 : 0;
            if (len < p + n + 2)
                return 0;
            p += n + 2;
        }
    }
    return head;
}

static void record(uint64_t ns)
{
    if (num_lat < MAX_LAT)
        lat[num_lat++] = (double)ns / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!num_lat)
        return 0;
    size_t i = (size_t)(p * (double)(num_lat - 1));
    return lat[i];
}

static void send_all(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n <= 0) {
            perror("regload: write");
            exit(1);
        }
        c->out_off += (size_t)n;
    }
}

/* Reads until one full response is in; returns its status. */
static int read_one(struct conn *c)
{
    for (;;) {
        int status = 0;
        size_t n = response_len(c->in, c->in_len, &status);
        if (n) {
            memmove(c->in, c->in + n, c->in_len - n);
            c->in_len -= n;
            return status;
        }
        ssize_t r = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len - 1);
        if (r <= 0) {
            fprintf(stderr, "regload: connection closed\n");
            exit(1);
        }
        c->in_len += (size_t)r;
        c->in[c->in_len] = '\0';
    }
}

static void md5_hex(const char *s, char out[33])
{
    unsigned char md[16];
    unsigned n;
    EVP_Digest(s, strlen(s), md, &n, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static void publish(struct conn *c, const char *content)
{
    char body[512];
    snprintf(body, sizeof(body), "dataId=bench-push&group=BENCH&content=%s", content);
    c->out_len =
        (size_t)snprintf(c->out, sizeof(c->out),
                         "POST /nacos/v1/cs/configs HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                         "application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
                         host, strlen(body), body);
    c->out_off = 0;
    send_all(c);
}

/* Push latency: rounds of (listeners park with the current md5; publish; time answers). */
static void run_push(long rounds, int nl)
{
    struct conn *pub = calloc(1, sizeof(*pub));
    struct conn *ls = calloc((size_t)nl, sizeof(*ls));
    pub->fd = dial();
    for (int i = 0; i < nl; i++)
        ls[i].fd = dial();
    int ep = epoll_create1(0);
    for (int i = 0; i < nl; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, ls[i].fd, &ev);
    }
    char content[64], md5[33];
    snprintf(content, sizeof(content), "v0");
    publish(pub, content);
    if (read_one(pub) != 200)
        errors++;
    for (long r = 1; r <= rounds; r++) {
        md5_hex(content, md5);
        char body[512];
        int bl =
            snprintf(body, sizeof(body), "Listening-Configs=bench-push%%02BENCH%%02%s%%01", md5);
        for (int i = 0; i < nl; i++) {
            ls[i].out_len = (size_t)snprintf(
                ls[i].out, sizeof(ls[i].out),
                "POST /nacos/v1/cs/configs/listener HTTP/1.1\r\nHost: %s\r\nLong-Pulling-Timeout: "
                "30000\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
                "%d\r\n\r\n%s",
                host, bl, body);
            ls[i].out_off = 0;
            send_all(&ls[i]);
        }
        /* Let them park: none may answer in the meantime (nothing changed). */
        struct epoll_event evs[64];
        if (epoll_wait(ep, evs, 64, 30) > 0) {
            fprintf(stderr, "regload: a listener answered before any change\n");
            errors++;
        }
        snprintf(content, sizeof(content), "v%ld", r);
        uint64_t t0 = now_ns();
        publish(pub, content);
        int left = nl;
        while (left > 0) {
            int n = epoll_wait(ep, evs, 64, 5000);
            if (n <= 0) {
                fprintf(stderr, "regload: listeners not answered within 5 s\n");
                exit(1);
            }
            for (int k = 0; k < n; k++) {
                struct conn *c = &ls[evs[k].data.u32];
                ssize_t got = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len - 1);
                if (got <= 0) {
                    fprintf(stderr, "regload: listener connection closed\n");
                    exit(1);
                }
                c->in_len += (size_t)got;
                c->in[c->in_len] = '\0';
                int status = 0;
                size_t len = response_len(c->in, c->in_len, &status);
                if (!len)
                    continue;
                record(now_ns() - t0);
                if (status != 200 || !strstr(c->in, "bench-push%02BENCH%01"))
                    errors++;
                memmove(c->in, c->in + len, c->in_len - len);
                c->in_len -= len;
                left--;
            }
        }
        if (read_one(pub) != 200)
            errors++;
    }
    qsort(lat, num_lat, sizeof(*lat), cmp_d);
    printf("samples %zu p50_ms %.3f p99_ms %.3f errors %ld\n", num_lat, pct(0.50), pct(0.99),
           errors);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: regload MODE HOST PORT SECONDS CONNECTIONS [SERVICES]\n");
        return 2;
    }
    static const char *const names[] = {
        "register", "list", "beat", "etcd-put", "etcd-range", "push", "register-persistent"};
    int m = -1;
    for (int i = 0; i < 7; i++)
        if (strcmp(argv[1], names[i]) == 0)
            m = i;
    if (m < 0) {
        fprintf(stderr, "regload: unknown mode %s\n", argv[1]);
        return 2;
    }
    mode = (enum mode)m;
    host = argv[2];
    port = atoi(argv[3]);
    double secs = atof(argv[4]);
    int nconns = atoi(argv[5]);
    if (argc > 6)
        services = atol(argv[6]);
    if (nconns < 1 || nconns > MAX_CONNS || services < 1)
        return 2;
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &addr.sin_addr);
    lat = malloc(MAX_LAT * sizeof(*lat));
    if (mode == PUSH) {
        run_push((long)secs, nconns);
        return errors ? 1 : 0;
    }
    struct conn *cs = calloc((size_t)nconns, sizeof(*cs));
    int ep = epoll_create1(0);
    for (int i = 0; i < nconns; i++) {
        cs[i].fd = dial();
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        next_request(&cs[i]);
        cs[i].sent_ns = now_ns();
        send_all(&cs[i]);
    }
    uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9);
    uint64_t done = 0;
    struct epoll_event evs[256];
    while (now_ns() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = &cs[evs[k].data.u32];
            ssize_t got = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len - 1);
            if (got <= 0) {
                fprintf(stderr, "regload: connection closed (%s)\n", argv[1]);
                return 1;
            }
            c->in_len += (size_t)got;
            c->in[c->in_len] = '\0';
            int status = 0;
            size_t len;
            while ((len = response_len(c->in, c->in_len, &status)) > 0) {
                uint64_t t = now_ns();
                record(t - c->sent_ns);
                done++;
                if (status != 200)
                    errors++;
                memmove(c->in, c->in + len, c->in_len - len);
                c->in_len -= len;
                c->in[c->in_len] = '\0';
                next_request(c);
                c->sent_ns = t;
                send_all(c);
            }
        }
    }
    double el = (double)(now_ns() - start) / 1e9;
    qsort(lat, num_lat, sizeof(*lat), cmp_d);
    printf("requests %llu rps %.0f p50_ms %.3f p99_ms %.3f errors %ld\n", (unsigned long long)done,
           (double)done / el, pct(0.50), pct(0.99), errors);
    return 0;
}
