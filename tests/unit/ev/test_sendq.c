#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ev/sendq.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A connected loopback TCP pair: s[0] sends (non-blocking), s[1] receives. */
static void tcp_pair(int s[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    s[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(s[0], (struct sockaddr *)&a, sizeof(a)), 0);
    s[1] = accept(l, NULL, NULL);
    assert_true(s[1] >= 0);
    close(l);
    fcntl(s[0], F_SETFL, O_NONBLOCK);
    fcntl(s[1], F_SETFL, O_NONBLOCK);
}

struct ent {
    struct cn_sendq_ent e;
    struct cn_buf b;
    int calls;
    ssize_t res;
    struct cn_sendq *q;
    struct ent *then; /* queued from this one's callback */
};

static void on_done(struct cn_sendq_ent *e, ssize_t res)
{
    struct ent *x = (struct ent *)e;
    x->calls++;
    x->res = res;
    if (res > 0)
        cn_buf_consume(&x->b, (size_t)res);
    if (x->then) {
        cn_sendq_add(x->q, &x->then->e);
        x->then = NULL;
    }
}

static void ent_init(struct ent *x, struct cn_sendq *q, int fd, const char *text)
{
    memset(x, 0, sizeof(*x));
    cn_buf_init(&x->b, 1 << 30);
    if (text)
        assert_int_equal(cn_buf_puts(&x->b, text), 0);
    x->e.fd = fd;
    x->e.buf = &x->b;
    x->e.done = on_done;
    x->q = q;
}

static size_t drain(int fd, char *dst, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = recv(fd, dst + n, cap - n, 0)) > 0)
        n += (size_t)r;
    return n;
}

/* What every test starts from: a loop, its send queue and a connected TCP pair a. Not a
 * cmocka fixture: cancel_and_loop asserts after the queue is closed. */
struct rig {
    uv_loop_t loop;
    struct cn_sendq q;
    int a[2];
};

/* Returns 0, or -1 when the kernel has no io_uring for the queue (the test skips). */
static int rig_open(struct rig *r)
{
    assert_int_equal(uv_loop_init(&r->loop), 0);
    if (cn_sendq_init(&r->q, &r->loop) != 0) {
        uv_loop_close(&r->loop);
        return -1;
    }
    tcp_pair(r->a);
    return 0;
}

static void rig_close(struct rig *r)
{
    cn_sendq_close(&r->q);
    uv_run(&r->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

/* Two sockets' sends go out in one flush; bytes appended after queueing go with them. */
static void batch_and_append(void **state)
{
    (void)state;
    struct rig r;
    if (rig_open(&r) != 0)
        skip();
    int *a = r.a, b[2];
    tcp_pair(b);
    struct ent x, y;
    ent_init(&x, &r.q, a[0], "GET / HTTP/1.1\r\n");
    ent_init(&y, &r.q, b[0], "second");
    cn_sendq_add(&r.q, &x.e);
    cn_sendq_add(&r.q, &y.e);
    cn_sendq_add(&r.q, &x.e); /* already queued: no second send */
    assert_int_equal(cn_buf_puts(&x.b, "Host: h\r\n\r\n"), 0);
    assert_int_equal(x.calls, 0);
    cn_sendq_flush(&r.q);
    assert_int_equal(x.calls, 1);
    assert_int_equal(y.calls, 1);
    assert_int_equal(x.res, 27);
    assert_int_equal(y.res, 6);
    assert_int_equal(x.e.state, 0);
    char got[64];
    size_t n = drain(a[1], got, sizeof(got));
    assert_int_equal(n, 27);
    assert_memory_equal(got, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27);
    n = drain(b[1], got, sizeof(got));
    assert_int_equal(n, 6);
    /* A callback that queues another entry: it goes in the same flush. */
    struct ent z;
    ent_init(&z, &r.q, b[0], "third");
    assert_int_equal(cn_buf_puts(&x.b, "again"), 0);
    x.then = &z;
    cn_sendq_add(&r.q, &x.e);
    cn_sendq_flush(&r.q);
    assert_int_equal(x.calls, 2);
    assert_int_equal(z.calls, 1);
    assert_int_equal(z.res, 5);
    assert_int_equal(drain(b[1], got, sizeof(got)), 5);
    cn_buf_release(&x.b);
    cn_buf_release(&y.b);
    cn_buf_release(&z.b);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
    rig_close(&r);
}

static void on_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

/* A cancelled entry sends nothing and is not called back; the loop's check phase flushes. */
static void cancel_and_loop(void **state)
{
    (void)state;
    struct rig r;
    if (rig_open(&r) != 0)
        skip();
    int *a = r.a;
    struct ent x, y;
    ent_init(&x, &r.q, a[0], "dropped");
    ent_init(&y, &r.q, a[0], "kept");
    cn_sendq_add(&r.q, &x.e);
    cn_sendq_add(&r.q, &y.e);
    cn_sendq_cancel(&x.e);
    cn_sendq_cancel(&x.e); /* idle: no-op */
    /* The queue's handles are unreferenced: something else keeps the loop running. */
    uv_timer_t t;
    uv_timer_init(&r.loop, &t);
    uv_timer_start(&t, on_timer, 0, 0);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    assert_int_equal(x.calls, 0);
    assert_int_equal(y.calls, 1);
    assert_int_equal(y.res, 4);
    char got[16];
    assert_int_equal(drain(a[1], got, sizeof(got)), 4);
    assert_memory_equal(got, "kept", 4);
    /* Closing with something queued hands it back unsent. */
    cn_buf_release(&x.b);
    ent_init(&x, &r.q, a[0], "late");
    cn_sendq_add(&r.q, &x.e);
    cn_sendq_cancel(&x.e);
    cn_sendq_add(&r.q, &x.e);
    cn_buf_release(&y.b);
    close(a[0]), close(a[1]);
    rig_close(&r);
    /* close flushed it first: the socket was closed above, so the send failed */
    assert_int_equal(x.calls, 1);
    assert_true(x.res < 0);
    cn_buf_release(&x.b);
}

/* A full socket: the send comes back short or with -EAGAIN at once instead of waiting. */
static void full_socket(void **state)
{
    (void)state;
    struct rig r;
    if (rig_open(&r) != 0)
        skip();
    int *a = r.a;
    int small = 4096;
    setsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(a[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    while (send(a[0], chunk, sizeof(chunk), MSG_DONTWAIT) > 0)
        ;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    struct ent x;
    ent_init(&x, &r.q, a[0], NULL);
    assert_int_equal(cn_buf_append(&x.b, chunk, sizeof(chunk)), 0);
    cn_sendq_add(&r.q, &x.e);
    cn_sendq_flush(&r.q);
    assert_int_equal(x.calls, 1);
    assert_true(x.res == -EAGAIN || (x.res >= 0 && x.res < (ssize_t)sizeof(chunk)));
    /* A closed socket's send fails with its errno. */
    struct ent y;
    ent_init(&y, &r.q, a[1], "x");
    close(a[0]);
    shutdown(a[1], SHUT_WR);
    cn_sendq_add(&r.q, &y.e);
    cn_sendq_flush(&r.q);
    assert_int_equal(y.calls, 1);
    assert_true(y.res == -EPIPE || y.res == -ECONNRESET);
    cn_buf_release(&x.b);
    cn_buf_release(&y.b);
    close(a[1]);
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_and_append),
        cmocka_unit_test(cancel_and_loop),
        cmocka_unit_test(full_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
