/*
 * qmgr_notify.c - the end of a message's life: bounces and delay notices
 * (RFC 3464, queued through the same durable spool as any message), the
 * postmaster notice for a failed bounce, and removal.
 *
 * Loop safety: mail from the null sender is never bounced to its sender;
 * if it fails, the postmaster gets one notice, and a failed notice is
 * dropped with a log line.
 */
#include "queue/qmgr.h"
#include "queue/qmgr_int.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"
#include "mail/classify.h"
#include "mail/dsn.h"
#include "smtpd/smtpd_parse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DSN_FULL_MAX (256 * 1024)   /* larger originals: headers only */

struct dsn_pending {
    char orig_qid[QID_LEN + 1];
    bool delayed;
    size_t n;
    size_t *idx;
};

static struct qmgr *pending_owner;
static struct dict pending;          /* token -> struct dsn_pending */
static uint64_t next_token;

/* RFC 3461: without NOTIFY we report failures and (by our choice, as a
 * serious MTA should) delays; NOTIFY=NEVER reports nothing. */
static bool wants(unsigned notify, unsigned bit)
{
    return notify == 0 ? true : (notify & bit) != 0;
}

static char *read_content(struct qmgr *q, const struct qmsg *m, size_t *len)
{
    size_t n = m->env.content_length;
    char *p = xmalloc(n + 1);
    struct spool_content c;
    bool open = spool_content_open(q->spool, m->qid, &c) == 0;
    ssize_t got = open ? pread(c.fd, p, n, (off_t)(c.base + m->env.content_offset)) : -1;
    if (open)
        spool_content_close(q->spool, &c);
    *len = got > 0 ? (size_t)got : 0;
    return p;
}

static void pending_free(void *p)
{
    struct dsn_pending *d = p;
    free(d->idx);
    free(d);
}

void qmgr_notify_detach(struct qmgr *q)
{
    /* notifications still committing when the queue manager is freed (a
     * shutdown that timed out) complete into nothing */
    if (pending_owner == q) {
        dict_free(&pending);
        pending_owner = NULL;
    }
}

static void dsn_committed(uint64_t token, const char *newqid, int err)
{
    struct qmgr *q = pending_owner;
    char key[24];
    str_from_u64(token, key);
    struct dsn_pending *d = dict_get(&pending, key);
    if (q == NULL || d == NULL)
        return;
    q->dsn_pending--;
    struct qmsg *m = dict_get(&q->msgs, d->orig_qid);
    if (m) {
        m->finishing = false;
        if (err) {
            log_svc_warn("qmgr", "%s: cannot queue the delivery notification: %s; will "
                         "try again", m->qid, strerror(err));
        } else {
            log_svc("qmgr", "%s: sender %s notification: %s", m->qid,
                    d->delayed ? "delay" : "non-delivery", newqid);
            for (size_t i = 0; i < d->n && !d->delayed; i++)
                m->st.r[d->idx[i]].status = RS_DONE;
            if (d->delayed)
                m->st.delay_notified = true;
            qmgr_save_state(q, m);
        }
    }
    char orig[QID_LEN + 1];
    str_copy(orig, d->orig_qid, sizeof(orig));
    dict_del(&pending, key);
    if (err == 0)
        qmgr_message_queued(q, newqid);
    m = dict_get(&q->msgs, orig);
    if (m)
        qmgr_msg_check_done(q, m);
}

/* Build and queue a DSN about recipients idx[] of m, to `to`. */
static int submit_dsn(struct qmgr *q, struct qmsg *m, bool delayed, size_t *idx, size_t n,
                      const char *to, int kind)
{
    const struct config *c = *q->cfgp;
    struct dsn_rcpt *dr = xcalloc(n, sizeof(*dr));
    for (size_t i = 0; i < n; i++) {
        const struct rcpt_state *st = &m->st.r[idx[i]];
        enum reply_class cls = classify_from_name(st->cls);
        dr[i].addr = m->env.rcpts[idx[i]].addr;
        dr[i].orcpt = m->env.rcpts[idx[i]].orcpt;
        dr[i].status = st->dsn[0] ? st->dsn : (delayed ? "4.0.0" : "5.0.0");
        dr[i].remote_mta = st->relay[0] && strcmp(st->relay, "none") && strcmp(st->relay, "local")
                           ? st->relay : NULL;
        dr[i].diagnostic = st->reply[0] ? st->reply : NULL;
        dr[i].explanation = cls < RC__COUNT ? classify_explain(cls) : NULL;
        dr[i].last_attempt = st->last_attempt;
    }
    size_t olen;
    char *orig = read_content(q, m, &olen);
    struct dsn_report rep = {
        .reporting_mta = c->myhostname, .qid = m->qid, .envid = m->env.envid,
        .sender = m->env.sender[0] ? m->env.sender : to, .arrival = m->env.arrival.tv_sec,
        .delayed = delayed, .headers_only = m->env.ret == RET_HDRS || olen > DSN_FULL_MAX,
        .retry_until = m->env.arrival.tv_sec + (time_t)c->maximal_queue_lifetime,
        .rcpts = dr, .nrcpt = n,
    };
    struct buf body;
    buf_init(&body, 0);
    dsn_build(&rep, orig, olen, &body);
    free(orig);
    free(dr);

    struct spool_envelope env;
    memset(&env, 0, sizeof(env));
    spool_new_qid(env.qid);
    gettimeofday(&env.arrival, NULL);
    env.sender = xstrdup("");
    env.client_addr = xstrdup("127.0.0.1");
    env.client_name = xstrdup("localhost");
    env.helo = xstrdup(c->myhostname);
    env.proto = xstrdup("DSN");
    env.kind = kind;
    spool_envelope_add_rcpt(&env, to, NOTIFY_NEVER, NULL);
    struct spool_writer w;
    int rc = -1;
    if (spool_writer_open(q->spool, env.qid, &w) == 0) {
        spool_writer_envelope(&w, &env);
        spool_writer_write(&w, body.data, body.len);
        if (spool_writer_finish(&w) == 0) {
            struct dsn_pending *d = xcalloc(1, sizeof(*d));
            str_copy(d->orig_qid, m->qid, sizeof(d->orig_qid));
            d->delayed = delayed;
            d->n = n;
            d->idx = xcalloc(n, sizeof(size_t));
            memcpy(d->idx, idx, n * sizeof(size_t));
            uint64_t token = ++next_token;
            char key[24];
            str_from_u64(token, key);
            if (pending_owner == NULL) {
                dict_init(&pending, pending_free);
                pending_owner = q;
            }
            dict_set(&pending, key, d);
            q->dsn_pending++;
            m->finishing = true;
            spool_commit(q->spool, &w, token, dsn_committed);
            rc = 0;
        } else {
            log_svc_warn("qmgr", "%s: cannot write notification: %s", m->qid,
                         strerror(w.error));
            spool_writer_abort(&w);
        }
    }
    buf_free(&body);
    spool_envelope_free(&env);
    return rc;
}

void qmgr_msg_check_done(struct qmgr *q, struct qmsg *m)
{
    if (m->finishing || m->active_jobs > 0)
        return;
    size_t *idx = xcalloc(m->env.nrcpt + 1, sizeof(size_t));
    size_t n = 0;
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        struct rcpt_state *r = &m->st.r[i];
        if (r->status == RS_PENDING || r->status == RS_DEFERRED || r->status == RS_ACTIVE) {
            free(idx);
            return;
        }
        if (r->status == RS_BOUNCED) {
            if (wants(m->env.rcpts[i].notify, NOTIFY_FAILURE))
                idx[n++] = i;
            else
                r->status = RS_DONE;
        }
    }
    const struct config *c = *q->cfgp;
    if (n == 0) {
        free(idx);
        qmgr_remove(q, m);
        return;
    }
    int rc;
    if (m->env.sender[0]) {
        rc = submit_dsn(q, m, false, idx, n, m->env.sender, SPOOL_KIND_DSN);
    } else if (m->env.kind != SPOOL_KIND_NOTICE) {
        rc = submit_dsn(q, m, false, idx, n, c->bounce_notice_recipient, SPOOL_KIND_NOTICE);
    } else {
        log_svc("qmgr", "%s: undeliverable postmaster notice discarded", m->qid);
        free(idx);
        qmgr_remove(q, m);
        return;
    }
    free(idx);
    if (rc < 0)
        qmgr_save_state(q, m); /* retried at the next run */
}

void qmgr_delay_notice_check(struct qmgr *q, struct qmsg *m, time_t now)
{
    const struct config *c = *q->cfgp;
    if (c->delay_warning_time == 0 || m->st.delay_notified || m->env.sender[0] == '\0' ||
        m->env.kind != SPOOL_KIND_MAIL ||
        (uint64_t)(now - m->env.arrival.tv_sec) < c->delay_warning_time)
        return;
    size_t *idx = xcalloc(m->env.nrcpt + 1, sizeof(size_t));
    size_t n = 0;
    for (size_t i = 0; i < m->env.nrcpt; i++)
        if (m->st.r[i].status == RS_DEFERRED && wants(m->env.rcpts[i].notify, NOTIFY_DELAY))
            idx[n++] = i;
    if (n)
        submit_dsn(q, m, true, idx, n, m->env.sender, SPOOL_KIND_DSN);
    free(idx);
}
