/*
 * migrate_copy.c - the copy pipeline of one folder pair.
 *
 * Source messages are fetched in batches (UID FETCH set (BODY.PEEK[]))
 * while earlier batches are being appended, as one MULTIAPPEND when the
 * destination offers it, else as pipelined APPENDs; literals are
 * non-synchronising when LITERAL+ (or LITERAL- for small ones) allows.
 * At most FETCH_WINDOW fetches and APPEND_WINDOW appends are in flight, so
 * memory stays within (FETCH_WINDOW + APPEND_WINDOW) * BATCH_BYTES plus
 * one oversized message. Each APPENDUID is journaled in the state file
 * before the next batch is counted done. A failed MULTIAPPEND is retried
 * message by message, so one bad message costs only itself.
 */
#include "tools/migrate_int.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_MSGS 100
#define BATCH_BYTES (4 * 1024 * 1024)
#define FETCH_WINDOW 2
#define APPEND_WINDOW 3

struct copier {
    struct mfolder *mf;
    size_t *todo;
    size_t ntodo, cap, next;
    int fetching, appending;
    bool stalled;               /* waiting on the throttle timer */
    bool broken;                /* a connection failed */
    struct event *timer;
};

struct batch {
    struct copier *cp;
    size_t *idx;
    size_t n;
};

static void pump(struct copier *cp);

static struct batch *batch_new(struct copier *cp, size_t n)
{
    struct batch *b = xcalloc(1, sizeof(*b));
    b->cp = cp;
    b->idx = xcalloc(n ? n : 1, sizeof(*b->idx));
    return b;
}

static void batch_free(struct batch *b)
{
    free(b->idx);
    free(b);
}

static void fail_msg(struct copier *cp, struct mmsg *m, const char *why)
{
    struct mfolder *mf = cp->mf;
    free(m->body);
    m->body = NULL;
    m->fate = MF_FAILED;
    mf->run->t->failed++;
    mig_fail(mf->run->t, MIG_EXIT_PARTIAL, "%s: %s UID %u (%s): %s", mf->run->account,
             mf->f->name1, m->uid, m->msgid ? m->msgid : "no Message-ID", why);
}

/* ---------------------------------------------------------------------- */
/* appending                                                               */

struct uidwalk {
    struct copier *cp;
    struct batch *b;
    size_t k;
};

static void map_one(uint64_t uid, void *arg)
{
    struct uidwalk *w = arg;
    if (w->k >= w->b->n || uid == 0 || uid > UINT32_MAX)
        return;
    struct mfolder *mf = w->cp->mf;
    struct mmsg *m = &mf->s.v[w->b->idx[w->k++]];
    m->peer_uid = (uint32_t)uid;
    mig_state_map(mf->run->state, mf->key, m->uid, (uint32_t)uid);
}

/* APPENDUID uidvalidity uid-set (RFC 4315): the set lists the new UIDs in
 * the order the messages were appended. */
static void note_appenduid(struct copier *cp, struct batch *b, const struct imap_resp *r)
{
    if (!imap_code_is(r, "APPENDUID") || r->code + 2 >= r->code_end)
        return;
    const struct imap_tok *set = &r->tok[r->code + 2];
    struct uidwalk w = {cp, b, 0};
    if (set->type == IMAP_ATOM || set->type == IMAP_NUM)
        imap_seqset_each(set->p, set->len, b->n, map_one, &w);
}

static void append_done(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct batch *b = arg;
    struct copier *cp = b->cp;
    struct mfolder *mf = cp->mf;
    cp->appending--;
    if (r != NULL && r->status == IMAP_OK) {
        note_appenduid(cp, b, r);
        for (size_t i = 0; i < b->n; i++) {
            struct mmsg *m = &mf->s.v[b->idx[i]];
            m->fate = MF_COPIED;
            mf->run->t->copied++;
            mf->run->t->bytes += m->size;
        }
        if (mig_state_sync(mf->run->state) < 0)
            mig_fail(mf->run->t, MIG_EXIT_STATE, "cannot write the state file");
    } else if (r != NULL && b->n > 1) {
        log_svc_warn("migrate", "%s: MULTIAPPEND of %zu messages to %s refused (%.*s); "
                     "retrying one by one", mf->run->account, b->n, mf->f->name2,
                     (int)r->full_len, r->full);
        for (size_t i = 0; i < b->n; i++) {
            mf->s.v[b->idx[i]].single = true;
            cp->todo = xgrow(cp->todo, &cp->cap, cp->ntodo + 1, sizeof(*cp->todo));
            cp->todo[cp->ntodo++] = b->idx[i];
        }
    } else {
        char why[600];
        if (r)
            snprintf(why, sizeof(why), "APPEND refused: %.*s", (int)r->full_len, r->full);
        else
            snprintf(why, sizeof(why), "%s", imapc_error(c));
        for (size_t i = 0; i < b->n; i++)
            fail_msg(cp, &mf->s.v[b->idx[i]], why);
        cp->broken |= r == NULL;
    }
    batch_free(b);
    pump(cp);
}

static void append_one(struct imapc_cmd *cmd, struct mmsg *m)
{
    imapc_cmd_text(cmd, " (%s)", m->flags ? m->flags : "");
    if (m->idate[0])
        imapc_cmd_text(cmd, " \"%s\"", m->idate);
    imapc_cmd_text(cmd, " ");
    imapc_cmd_literal(cmd, m->body, m->blen);
    m->body = NULL;
}

static void send_append(struct copier *cp, struct batch *b)
{
    struct mfolder *mf = cp->mf;
    struct imapc_cmd *cmd = imapc_cmd_new(mf->c2);
    imapc_cmd_text(cmd, "APPEND ");
    imapc_cmd_astring(cmd, mf->f->name2);
    for (size_t i = 0; i < b->n; i++)
        append_one(cmd, &mf->s.v[b->idx[i]]);
    cp->appending++;
    imapc_cmd_send(cmd, append_done, b);
}

/* Decide, now that the body is here, whether a message without a
 * Message-ID still needs copying. */
static bool still_needed(struct copier *cp, struct mmsg *m)
{
    if (m->fate != MF_HASH)
        return true;
    bool dup;
    mf_ident_body(m);
    if (mf_match_identity(cp->mf, m, &dup)) {
        cp->mf->run->t->already++;
    } else if (dup) {
        m->fate = MF_DUP;
        cp->mf->run->t->duplicates++;
    } else {
        return true;
    }
    free(m->body);
    m->body = NULL;
    return false;
}

static void fetch_done(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct batch *fb = arg;
    struct copier *cp = fb->cp;
    struct mfolder *mf = cp->mf;
    bool multi = imapc_has(mf->c2, IMAPC_MULTIAPPEND);
    struct batch *ab = batch_new(cp, fb->n);
    cp->fetching--;
    for (size_t i = 0; i < fb->n; i++) {
        struct mmsg *m = &mf->s.v[fb->idx[i]];
        if (m->body == NULL) {
            fail_msg(cp, m, r ? "the source returned no content (expunged meanwhile?)"
                              : imapc_error(c));
            continue;
        }
        if (!still_needed(cp, m))
            continue;
        if (!multi || m->single) {
            struct batch *one = batch_new(cp, 1);
            one->idx[one->n++] = fb->idx[i];
            send_append(cp, one);
        } else {
            ab->idx[ab->n++] = fb->idx[i];
        }
    }
    if (ab->n > 0)
        send_append(cp, ab);
    else
        batch_free(ab);
    cp->broken |= r == NULL;
    batch_free(fb);
    pump(cp);
}

/* ---------------------------------------------------------------------- */
/* fetching                                                                */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct copier *cp = arg;
    cp->stalled = false;
    pump(cp);
}

static struct batch *next_batch(struct copier *cp)
{
    struct mfolder *mf = cp->mf;
    size_t n = 0;
    uint64_t bytes = 0;
    while (cp->next + n < cp->ntodo && n < BATCH_MSGS) {
        struct mmsg *m = &mf->s.v[cp->todo[cp->next + n]];
        if (n > 0 && (m->single || bytes + m->size > BATCH_BYTES))
            break;
        bytes += m->size;
        n++;
        if (m->single)
            break;
    }
    double wait = mig_throttle_delay(mf->run->th, n, bytes);
    if (wait > 0) {
        if (mf->run->th->msgs_rate > 0 && n > 1)
            n = 1;              /* under a message throttle, go one by one */
        struct timeval tv = {(time_t)wait, (suseconds_t)((wait - (double)(time_t)wait) * 1e6)};
        cp->stalled = true;
        evtimer_add(cp->timer, &tv);
        return NULL;
    }
    struct batch *b = batch_new(cp, n);
    for (size_t i = 0; i < n; i++)
        b->idx[b->n++] = cp->todo[cp->next + i];
    cp->next += n;
    return b;
}

static void pump(struct copier *cp)
{
    struct mfolder *mf = cp->mf;
    while (!cp->broken && !cp->stalled && cp->next < cp->ntodo &&
           cp->fetching < FETCH_WINDOW && cp->appending < APPEND_WINDOW) {
        struct batch *b = next_batch(cp);
        if (b == NULL)
            return;
        struct buf set;
        buf_init(&set, 0);
        mf_uidset(&set, &mf->s, b->idx, b->n);
        struct imapc_cmd *cmd = imapc_cmd_new(mf->c1);
        imapc_cmd_text(cmd, "UID FETCH %s (UID BODY.PEEK[])", set.data);
        buf_free(&set);
        cp->fetching++;
        imapc_cmd_send(cmd, fetch_done, b);
    }
}

static bool finished(const struct copier *cp)
{
    if (cp->fetching > 0 || cp->appending > 0)
        return false;
    return cp->broken || cp->next >= cp->ntodo;
}

int mf_copy(struct mfolder *mf)
{
    struct copier cp = {.mf = mf};
    for (size_t i = 0; i < mf->s.n; i++) {
        enum mfate f = mf->s.v[i].fate;
        if (f != MF_COPY && f != MF_HASH)
            continue;
        cp.todo = xgrow(cp.todo, &cp.cap, cp.ntodo + 1, sizeof(*cp.todo));
        cp.todo[cp.ntodo++] = i;
    }
    if (cp.ntodo == 0) {
        free(cp.todo);
        return 0;
    }
    struct event_base *base = imapc_base(mf->c1);
    cp.timer = evtimer_new(base, timer_cb, &cp);
    mf->fill = &mf->s;
    mf->mode = MF_BODIES;
    imapc_set_untagged(mf->c1, mf_fetch_untagged, mf);
    pump(&cp);
    while (!finished(&cp))
        event_base_loop(base, EVLOOP_ONCE);
    imapc_set_untagged(mf->c1, NULL, NULL);
    for (size_t i = cp.next; i < cp.ntodo; i++)
        fail_msg(&cp, &mf->s.v[cp.todo[i]], "not copied: a connection was lost");
    event_free(cp.timer);
    free(cp.todo);
    for (size_t i = 0; i < mf->s.n; i++) {
        free(mf->s.v[i].body);
        mf->s.v[i].body = NULL;
    }
    return imapc_failed(mf->c1) || imapc_failed(mf->c2) ? -1 : 0;
}
