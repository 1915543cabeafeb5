/* A mailbox a loop owns: other threads post items, the loop runs them. Used to hand results
 * of the telemetry writer thread back to the worker that received the request. */
#ifndef CN_EV_MAILBOX_H
#define CN_EV_MAILBOX_H

#include <uv.h>

struct cn_mail;
typedef void (*cn_mail_cb)(struct cn_mail *m);

/* Embedded in the poster's object; the poster must not touch it after cn_mailbox_post until
 * cb runs on the owning loop. */
struct cn_mail {
    struct cn_mail *next;
    cn_mail_cb cb;
};

struct cn_mailbox {
    uv_async_t async;
    uv_mutex_t lock;
    struct cn_mail *head, *tail;
};

/* Initialises on loop (call on the loop's thread). Returns 0 or a libuv error. */
int cn_mailbox_init(struct cn_mailbox *mb, uv_loop_t *loop);
/* Thread-safe. */
void cn_mailbox_post(struct cn_mailbox *mb, struct cn_mail *m);
/* Closes the async handle; mail still queued is run first. Call on the loop's thread. */
void cn_mailbox_close(struct cn_mailbox *mb);

#endif
