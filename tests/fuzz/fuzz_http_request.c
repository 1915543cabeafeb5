/* Fuzzes the whole request path of the HTTP server: the input is written by a client over
 * loopback to a real worker (strict head scan, llhttp, bodies, gzip, router, sync and async
 * replies), the client shuts its side, and the loop runs until the server closes. Any reply
 * must start with a status line. */
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static struct cn_http_server srv;
static struct cn_http_worker worker;
static struct cn_http_worker *workers[1];

static void h_text(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    cn_http_reply_text(req, 200, "ok");
}

static void h_echo(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    cn_http_reply(req, 200, "application/octet-stream", req->body.ptr, req->body.len, NULL, 0);
}

static void h_chunks(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    char v[16];
    int n = cn_http_req_query(req, "n", v, sizeof(v)) > 0 ? atoi(v) % 8 : 2;
    cn_http_reply_start(req, 200, "text/plain", NULL, 0);
    for (int i = 0; i < n; i++)
        cn_http_reply_chunk(req, "chunk", 5);
    cn_http_reply_end(req);
}

struct later {
    uv_timer_t t;
    struct cn_http_req *req;
};

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    if (l->req) {
        l->req->abort_cb = NULL;
        cn_http_reply_text(l->req, 200, "later");
    }
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void later_abort(struct cn_http_req *req)
{
    struct later *l = req->data;
    l->req = NULL;
}

static void h_later(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    struct later *l = calloc(1, sizeof(*l));
    l->req = req;
    req->data = l;
    req->abort_cb = later_abort;
    uv_timer_init(&loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, later_fire, 0, 0);
}

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    uv_loop_init(&loop);
    struct cn_router *r = cn_router_new();
    cn_router_add(r, CN_M(HTTP_GET), "/", h_text, NULL);
    cn_router_add(r, CN_M(HTTP_POST) | CN_M(HTTP_PUT), "/echo", h_echo, NULL);
    cn_router_add(r, CN_M(HTTP_GET), "/chunks", h_chunks, NULL);
    cn_router_add(r, CN_M(HTTP_GET), "/later/{id}", h_later, NULL);
    srv.router = r;
    struct sockaddr_in *in = (struct sockaddr_in *)&srv.addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv.nworkers = 1;
    workers[0] = &worker;
    srv.workers = workers;
    struct cn_http_limits lim = {
        .max_url_bytes = 256,
        .max_header_bytes = 2048,
        .max_headers = 16,
        .max_body_bytes = 8192,
        .header_timeout_ms = 2000,
        .body_timeout_ms = 2000,
        .idle_timeout_ms = 2000,
        .send_timeout_ms = 2000,
        .max_connections = 64,
    };
    if (cn_http_worker_init(&worker, &srv, &loop, 0, &lim) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size > 60000)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        abort();
    if (connect(fd, (struct sockaddr *)&srv.addr, sizeof(struct sockaddr_in)) != 0)
        abort();
    size_t off = 0;
    char reply[65536];
    size_t got = 0;
    int eof = 0;
    for (int rounds = 0; rounds < 100000 && !eof; rounds++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        struct pollfd p = {fd, POLLIN | (off < size ? POLLOUT : 0), 0};
        poll(&p, 1, 1);
        if ((p.revents & POLLOUT) && off < size) {
            ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                off += (size_t)w;
            if (off == size || w < 0) {
                off = size;
                shutdown(fd, SHUT_WR);
            }
        } else if (off == size && size == 0) {
            shutdown(fd, SHUT_WR);
            off = 1;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, reply + got, sizeof(reply) - got, MSG_DONTWAIT);
            if (n > 0) {
                got += (size_t)n;
                if (got == sizeof(reply))
                    got = 0;
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                eof = 1;
            }
        }
    }
    close(fd);
    /* Let the server finish closing its side. */
    for (int i = 0; i < 10; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    if (!eof)
        abort(); /* the server never closed a connection whose client went away */
    return 0;
}
