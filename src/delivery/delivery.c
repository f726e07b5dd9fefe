/*
 * delivery.c - dispatch of delivery jobs to agents, and the local agents
 * (Maildir through the worker pool; error: transport answers).
 */
#include "delivery/delivery.h"
#include "delivery/maildir.h"
#include "lib/config.h"
#include "lib/strutil.h"
#include "lib/workq.h"
#include "lib/xalloc.h"
#include "queue/spool.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct delivery_env delivery_env;

void delivery_init(const struct delivery_env *env)
{
    delivery_env = *env;
}

void delivery_set_result(struct delivery_rcpt *r, int code, const char *enhanced,
                         const char *fmt, ...)
{
    va_list ap;
    r->code = code;
    str_copy(r->enhanced, enhanced, sizeof(r->enhanced));
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
}

void delivery_set_all(struct delivery_job *job, int code, const char *enhanced,
                      const char *text)
{
    for (size_t i = 0; i < job->nrcpt; i++)
        if (job->rcpts[i].code == 0)
            delivery_set_result(&job->rcpts[i], code, enhanced, "%s", text);
}

/* Agents must call done() from the loop, never from delivery_start(). */
static void done_later_cb(evutil_socket_t fd, short what, void *arg)
{
    struct delivery_job *job = arg;
    gettimeofday(&job->t_end, NULL);
    job->done(job);
}

static void finish_later(struct delivery_job *job)
{
    event_base_once(delivery_env.base, -1, EV_TIMEOUT, done_later_cb, job, NULL);
}

void delivery_start(struct delivery_job *job)
{
    gettimeofday(&job->t_start, NULL);
    job->t_connected = job->t_start;
    switch (job->hop.kind) {
    case TR_MAILDIR: local_deliver_maildir(job); break;
    case TR_ERROR: local_deliver_error(job); break;
    case TR_SMTP:
    case TR_LMTP: smtp_deliver(job); break;
    }
}

/* ---- error: transport ------------------------------------------------ */

void local_deliver_error(struct delivery_job *job)
{
    /* "5.1.1 text" or just "text" (then 5.0.0) */
    const char *t = job->hop.error_text;
    char enh[16] = "5.0.0";
    if ((t[0] == '4' || t[0] == '5') && t[1] == '.') {
        size_t n = strcspn(t, " ");
        if (n < sizeof(enh)) {
            memcpy(enh, t, n);
            enh[n] = '\0';
            t += n;
            while (*t == ' ')
                t++;
        }
    }
    int code = enh[0] == '4' ? 450 : 550;
    str_copy(job->relay, "none", sizeof(job->relay));
    delivery_set_all(job, code, enh, t[0] ? t : "delivery refused by transport_maps");
    finish_later(job);
}

/* ---- Maildir ---------------------------------------------------------- */

struct md_work {
    struct delivery_job *job;
    struct maildir_job *mj;   /* one per recipient */
    char *base, *host;
};

static void md_work(void *arg)
{
    struct md_work *w = arg;
    struct spool_content c;
    if (spool_content_open(w->job->spool, w->job->qid, &c) < 0) {
        int e = errno;
        for (size_t i = 0; i < w->job->nrcpt; i++) {
            w->mj[i].status = e ? e : EIO;
            snprintf(w->mj[i].error, sizeof(w->mj[i].error),
                     "cannot open the queued message: %s", strerror(w->mj[i].status));
        }
        return;
    }
    for (size_t i = 0; i < w->job->nrcpt; i++) {
        w->mj[i].queue_fd = c.fd;
        w->mj[i].content_offset = c.base + w->job->content_offset;
        maildir_deliver(&w->mj[i]);
    }
    spool_content_close(w->job->spool, &c);
}

static void md_done(void *arg)
{
    struct md_work *w = arg;
    struct delivery_job *job = w->job;
    for (size_t i = 0; i < job->nrcpt; i++) {
        struct maildir_job *m = &w->mj[i];
        if (m->status == 0)
            delivery_set_result(&job->rcpts[i], 250, "2.0.0", "delivered to maildir");
        else if (m->permanent)
            delivery_set_result(&job->rcpts[i], 550, "5.1.3", "%s", m->error);
        else
            delivery_set_result(&job->rcpts[i], 451, m->status == ENOSPC ? "4.3.1" : "4.3.0",
                                "%s", m->error);
    }
    free(w->mj);
    free(w->base);
    free(w->host);
    free(w);
    gettimeofday(&job->t_end, NULL);
    job->done(job);
}

void local_deliver_maildir(struct delivery_job *job)
{
    const struct config *cfg = delivery_env.config();
    struct md_work *w = xcalloc(1, sizeof(*w));
    w->job = job;
    w->base = xstrdup(cfg->maildir_base);
    w->host = xstrdup(cfg->myhostname);
    w->mj = xcalloc(job->nrcpt, sizeof(*w->mj));
    for (size_t i = 0; i < job->nrcpt; i++) {
        struct maildir_job *m = &w->mj[i];
        m->base = w->base;
        m->queue_fd = -1;          /* opened by the worker, md_work */
        m->content_length = job->content_length;
        m->sender = job->sender;
        m->recipient = job->rcpts[i].addr;
        m->hostname = w->host;
    }
    str_copy(job->relay, "local", sizeof(job->relay));
    workq_submit(delivery_env.workq, md_work, md_done, w);
}
