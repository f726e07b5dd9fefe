/*
 * migrate_pop3.c - POP3 as the source of `sluice migrate`: every message
 * lands in the destination's INBOX.
 *
 * UIDLs already copied are remembered in the state file and skipped on
 * reruns. For the others, TOP n 0 gives the header, so a message that is
 * already in the INBOX (a run killed after the APPEND, before its record)
 * is matched by identity instead of copied twice. RETRs are pipelined when
 * the server offers PIPELINING; each message is APPENDed as it arrives.
 */
#include "tools/migrate_int.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define POP3_WINDOW 8

struct pop3_run {
    struct mfolder *mf;
    struct pop3c *p;
    struct pop3_msg *msgs;      /* indexed like mf->s */
    char key[600];
    size_t next, inflight, appending;
    size_t *todo;
    size_t ntodo;
};

/* One message in flight (RETR, then APPEND). */
struct pop3_req {
    struct pop3_run *pr;
    struct mmsg *m;
};

static struct pop3_msg *msg_of(struct pop3_run *pr, struct mmsg *m)
{
    return &pr->msgs[m - pr->mf->s.v];
}

static void top_done(struct pop3c *p, uint32_t num, const char *data, size_t len,
                     const char *err, void *arg)
{
    struct mmsg *m = arg;
    if (data == NULL)
        return;
    char msgid[300];
    mig_header_field(data, len, "Message-ID", msgid, sizeof(msgid));
    if (msgid[0] && mig_ident_header(data, len, m->size, m->id))
        m->msgid = xstrdup(msgid);
}

static void pop3_fail(struct pop3_run *pr, struct mmsg *m, const char *why)
{
    struct mig_tally *t = pr->mf->run->t;
    m->fate = MF_FAILED;
    t->failed++;
    mig_fail(t, MIG_EXIT_PARTIAL, "%s: POP3 message %u (%s): %s", pr->mf->run->account,
             m->uid, msg_of(pr, m)->uidl, why);
}

static void pump(struct pop3_run *pr);

static void append_done(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct pop3_req *rq = arg;
    struct mmsg *m = rq->m;
    struct pop3_run *pr = rq->pr;
    free(rq);
    pr->appending--;
    struct mig_tally *t = pr->mf->run->t;
    if (r && r->status == IMAP_OK) {
        m->fate = MF_COPIED;
        if (imap_code_is(r, "APPENDUID") && r->code + 2 < r->code_end &&
            r->tok[r->code + 2].type == IMAP_NUM)
            m->peer_uid = (uint32_t)r->tok[r->code + 2].num;
        t->copied++;
        t->bytes += m->size;
        mig_state_add_uidl(pr->mf->run->state, pr->key, msg_of(pr, m)->uidl);
        mig_state_sync(pr->mf->run->state);
    } else {
        char why[400];
        snprintf(why, sizeof(why), "APPEND refused: %.*s", r ? (int)r->full_len : 0,
                 r ? r->full : "");
        pop3_fail(pr, m, r ? why : imapc_error(c));
    }
    pump(pr);
}

static void pump(struct pop3_run *pr);

static void retr_done(struct pop3c *p, uint32_t num, const char *data, size_t len,
                      const char *err, void *arg)
{
    struct pop3_req *rq = arg;
    struct mmsg *m = rq->m;
    struct pop3_run *pr = rq->pr;
    pr->inflight--;
    struct mfolder *mf = pr->mf;
    bool dup = false;
    if (data == NULL) {
        pop3_fail(pr, m, err ? err : "RETR failed");
    } else if (m->fate == MF_HASH && (mig_ident_content(data, len, m->id),
                                      mf_match_identity(mf, m, &dup) || dup)) {
        m->fate = dup ? MF_DUP : MF_MATCHED;
        if (dup)
            mf->run->t->duplicates++;
        else
            mf->run->t->already++;
        mig_state_add_uidl(mf->run->state, pr->key, msg_of(pr, m)->uidl);
    }
    if (data == NULL || (m->fate != MF_COPY && m->fate != MF_HASH)) {
        free(rq);
    } else {
        struct imapc_cmd *cmd = imapc_cmd_new(mf->c2);
        imapc_cmd_text(cmd, "APPEND \"INBOX\" () ");
        char *copy = xmalloc(len + 1);
        memcpy(copy, data, len);
        imapc_cmd_literal(cmd, copy, len);
        pr->appending++;
        imapc_cmd_send(cmd, append_done, rq);
    }
    pump(pr);
}

static void pump(struct pop3_run *pr)
{
    while (pr->next < pr->ntodo && pr->inflight < POP3_WINDOW && pr->appending < 16 &&
           !pop3c_failed(pr->p)) {
        struct mmsg *m = &pr->mf->s.v[pr->todo[pr->next++]];
        struct pop3_req *rq = xcalloc(1, sizeof(*rq));
        rq->pr = pr;
        rq->m = m;
        pr->inflight++;
        pop3c_fetch(pr->p, m->uid, false, retr_done, rq);
    }
}

static void build_source(struct pop3_run *pr, size_t n)
{
    struct mfolder *mf = pr->mf;
    struct mig_state *st = mf->run->state;
    for (size_t i = 0; i < n; i++) {
        mf->s.v = xgrow(mf->s.v, &mf->s.cap, mf->s.n + 1, sizeof(*mf->s.v));
        struct mmsg *m = &mf->s.v[mf->s.n++];
        memset(m, 0, sizeof(*m));
        m->uid = pr->msgs[i].num;
        m->size = pr->msgs[i].size;
        m->flags = xstrdup("");
        if (mig_state_has_uidl(st, pr->key, pr->msgs[i].uidl)) {
            m->fate = MF_DUP;          /* copied by an earlier run */
            mf->run->t->already++;
        }
    }
    for (size_t i = 0; i < mf->s.n; i++)
        if (mf->s.v[i].fate == MF_NEW)
            pop3c_fetch(pr->p, mf->s.v[i].uid, true, top_done, &mf->s.v[i]);
    pop3c_drain(pr->p);
}

static void decide(struct pop3_run *pr)
{
    struct mfolder *mf = pr->mf;
    pr->todo = xcalloc(mf->s.n + 1, sizeof(*pr->todo));
    for (size_t i = 0; i < mf->s.n; i++) {
        struct mmsg *m = &mf->s.v[i];
        bool dup = false;
        if (m->fate != MF_NEW)
            continue;
        if (m->id[0] && mf_match_identity(mf, m, &dup)) {
            mf->run->t->already++;
            mig_state_add_uidl(mf->run->state, pr->key, pr->msgs[i].uidl);
        } else if (dup) {
            m->fate = MF_DUP;
            mf->run->t->duplicates++;
        } else if (mf->run->o->maxsize && m->size > mf->run->o->maxsize) {
            m->fate = MF_SKIPPED;
            mf->run->t->skipped++;
        } else {
            m->fate = m->id[0] ? MF_COPY : MF_HASH;
            pr->todo[pr->ntodo++] = i;
        }
    }
}

static int pop3_body(struct pop3_run *pr)
{
    struct mfolder *mf = pr->mf;
    const struct mig_opts *o = mf->run->o;
    size_t n = 0;
    if (pop3c_scan(pr->p, &pr->msgs, &n) < 0)
        return -1;
    mf->run->t->folders_total++;
    mf->run->t->msgs_planned += n;
    if (imapc_select(mf->c2, "INBOX", o->dry) != IMAP_OK)
        return -2;
    build_source(pr, n);
    if (pop3c_failed(pr->p) || mf_list_side(mf, mf->c2, &mf->d, false, true) < 0)
        return pop3c_failed(pr->p) ? -1 : -2;
    bool need_hash = false;
    for (size_t i = 0; i < mf->s.n; i++)
        need_hash |= mf->s.v[i].fate == MF_NEW && mf->s.v[i].id[0] == '\0';
    if (need_hash && mf_hash_dst_bodies(mf) < 0)
        return -2;
    mf_index_dst(mf);
    decide(pr);
    if (o->dry) {
        mf->run->t->copied += pr->ntodo;
        printf("dry: would copy %zu messages from POP3 to INBOX\n", pr->ntodo);
        return 0;
    }
    pump(pr);
    struct event_base *base = imapc_base(mf->c2);
    while ((pr->inflight > 0 || pr->appending > 0 || pr->next < pr->ntodo) &&
           !pop3c_failed(pr->p) && !imapc_failed(mf->c2))
        event_base_loop(base, EVLOOP_ONCE);
    mig_state_sync(mf->run->state);
    if (pop3c_failed(pr->p) || imapc_failed(mf->c2))
        return pop3c_failed(pr->p) ? -1 : -2;
    for (size_t i = 0; i < mf->s.n; i++)        /* earlier runs: not re-verified */
        if (mf->s.v[i].fate == MF_DUP && mf->s.v[i].id[0] == '\0')
            mf->s.v[i].fate = MF_SKIPPED;
    if (o->verify && mf_verify(mf) < 0)
        return -2;
    return 0;
}

int mig_pop3(struct mig_run *run, struct event_base *base)
{
    const struct mig_endpoint *e = &run->o->e[0];
    struct pop3c_opts po = {
        .host = e->host, .port = e->port, .security = e->security, .tls_ctx = e->ctx,
        .tls_verify = e->verify, .user = e->user, .password = e->password,
        .connect_timeout = run->o->timeout, .cmd_timeout = run->o->timeout,
        .max_message = run->o->max_message, .trace = run->o->trace ? "host1" : NULL,
        .label = "host1",
    };
    struct mig_folder f = {.name1 = "POP3", .name2 = "INBOX", .exists2 = true};
    struct mfolder mf = {.run = run, .f = &f};
    struct pop3_run pr = {.mf = &mf};
    snprintf(pr.key, sizeof(pr.key), "pop3:%s@%s:%u", e->user, e->host, e->port);
    snprintf(mf.key, sizeof(mf.key), "%s\tINBOX", pr.key);
    dict_init(&mf.dst_ids, mf_idq_free);
    dict_init(&mf.src_seen, NULL);
    pr.p = pop3c_new(base, &po);
    int rc = -1;
    if (pop3c_open(pr.p) < 0) {
        enum pop3c_err pe = pop3c_errclass(pr.p);
        run->code = pe == POP3C_E_CONNECT ? MIG_EXIT_CONNECT : pe == POP3C_E_TLS ?
                    MIG_EXIT_TLS : pe == POP3C_E_AUTH ? MIG_EXIT_AUTH : MIG_EXIT_PROTOCOL;
        mig_fail(run->t, run->code, "%s: %s", run->account, pop3c_error(pr.p));
    } else if ((mf.c2 = mig_connect(run, 1, base)) != NULL) {
        mf.c1 = mf.c2;
        rc = pop3_body(&pr);
        if (rc < 0) {
            run->t->folders_failed++;
            mig_fail(run->t, MIG_EXIT_PARTIAL, "%s: POP3 -> INBOX: %s", run->account,
                     rc == -1 ? pop3c_error(pr.p) : imapc_failed(mf.c2) ? imapc_error(mf.c2)
                     : imapc_last_text(mf.c2));
        } else {
            run->t->folders_done++;
        }
        imapc_logout(mf.c2);
        imapc_free(mf.c2);
    }
    pop3c_quit(pr.p);
    pop3c_free(pr.p);
    free(pr.msgs);
    free(pr.todo);
    mf_side_free(&mf.s);
    mf_side_free(&mf.d);
    dict_free(&mf.dst_ids);
    dict_free(&mf.src_seen);
    return rc;
}
