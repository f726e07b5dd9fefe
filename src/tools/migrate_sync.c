/*
 * migrate_sync.c - one folder pair: list both sides, match messages (state
 * map first, then identity), copy what is missing (migrate_copy.c), bring
 * flags over, mirror deletions (--delete2) and verify the result.
 */
#include "tools/migrate_int.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define HDR_FIELDS "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]"

void mf_idq_free(void *p)
{
    struct idq *q = p;
    free(q->idx);
    free(q);
}

void mf_side_free(struct mside *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].flags);
        free(s->v[i].msgid);
        free(s->v[i].body);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static int by_uid(const void *a, const void *b)
{
    const struct mmsg *x = a, *y = b;
    return x->uid < y->uid ? -1 : x->uid > y->uid;
}

struct mmsg *mf_find(struct mside *side, uint32_t uid)
{
    struct mmsg key = {.uid = uid};
    return bsearch(&key, side->v, side->n, sizeof(*side->v), by_uid);
}

void mf_uidset(struct buf *b, const struct mside *side, const size_t *idx, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && side->v[idx[j + 1]].uid == side->v[idx[j]].uid + 1)
            j++;
        buf_printf(b, "%s%u", i ? "," : "", side->v[idx[i]].uid);
        if (j > i)
            buf_printf(b, ":%u", side->v[idx[j]].uid);
        i = j + 1;
    }
}

/* ---------------------------------------------------------------------- */
/* listing                                                                 */

static void note_header(struct mmsg *m, const struct imap_tok *h)
{
    char msgid[300];
    mig_header_field(h->p, h->len, "Message-ID", msgid, sizeof(msgid));
    if (msgid[0] && mig_ident_header(h->p, h->len, m->size, m->id))
        m->msgid = xstrdup(msgid);
}

static void list_one(struct mfolder *mf, const struct imap_resp *r, uint32_t uid)
{
    struct mside *side = mf->fill;
    side->v = xgrow(side->v, &side->cap, side->n + 1, sizeof(*side->v));
    struct mmsg *m = &side->v[side->n++];
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    long v = imap_fetch_item(r, r->data, "RFC822.SIZE");
    if (v >= 0 && r->tok[v].type == IMAP_NUM)
        m->size = r->tok[v].num;
    char flags[4096];
    imapc_flags_text(r, imap_fetch_item(r, r->data, "FLAGS"), flags, sizeof(flags));
    m->flags = xstrdup(flags);
    v = imap_fetch_item(r, r->data, "INTERNALDATE");
    if (v >= 0 && r->tok[v].type == IMAP_STR)
        imap_tok_str(&r->tok[v], m->idate, sizeof(m->idate));
    v = imap_fetch_item(r, r->data, "BODY[");
    if (v >= 0 && r->tok[v].type == IMAP_STR)
        note_header(m, &r->tok[v]);
}

void mf_ident_body(struct mmsg *m)
{
    char msgid[300];
    mig_header_field(m->body, m->blen, "Message-ID", msgid, sizeof(msgid));
    if (msgid[0] && mig_ident_header(m->body, m->blen, m->size, m->id)) {
        free(m->msgid);
        m->msgid = xstrdup(msgid);
    } else {
        mig_ident_content(m->body, m->blen, m->id);
    }
}

static void header_one(struct mfolder *mf, const struct imap_resp *r, uint32_t uid)
{
    struct mmsg *m = mf_find(mf->fill, uid);
    long v = imap_fetch_item(r, r->data, "BODY[");
    if (m != NULL && v >= 0 && r->tok[v].type == IMAP_STR && m->id[0] == '\0')
        note_header(m, &r->tok[v]);
}

static void body_one(struct mfolder *mf, const struct imap_resp *r, uint32_t uid)
{
    struct mmsg *m = mf_find(mf->fill, uid);
    long v = imap_fetch_item(r, r->data, "BODY[");
    if (m == NULL || v < 0 || r->tok[v].type != IMAP_STR)
        return;
    free(m->body);
    m->body = xmalloc(r->tok[v].len + 1);
    memcpy(m->body, r->tok[v].p, r->tok[v].len);
    m->blen = r->tok[v].len;
}

static void update_one(struct mfolder *mf, const struct imap_resp *r, uint32_t uid)
{
    struct mmsg *m = mf_find(mf->fill, uid);
    if (m == NULL)
        return;
    long v = imap_fetch_item(r, r->data, "FLAGS");
    if (v >= 0) {
        char flags[4096];
        imapc_flags_text(r, v, flags, sizeof(flags));
        free(m->flags);
        m->flags = xstrdup(flags);
    }
    v = imap_fetch_item(r, r->data, "RFC822.SIZE");
    if (v >= 0 && r->tok[v].type == IMAP_NUM)
        m->size = r->tok[v].num;
    v = imap_fetch_item(r, r->data, "INTERNALDATE");
    if (v >= 0 && r->tok[v].type == IMAP_STR)
        imap_tok_str(&r->tok[v], m->idate, sizeof(m->idate));
}

void mf_fetch_untagged(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct mfolder *mf = arg;
    if (strcmp(r->keyword, "FETCH") != 0 || r->data >= r->ntok)
        return;
    long u = imap_fetch_item(r, r->data, "UID");
    if (u < 0 || r->tok[u].type != IMAP_NUM || r->tok[u].num == 0 ||
        r->tok[u].num > UINT32_MAX)
        return;                     /* unsolicited flag change: ignore */
    if (mf->mode == MF_BODIES)
        body_one(mf, r, (uint32_t)r->tok[u].num);
    else if (mf->mode == MF_HEADERS)
        header_one(mf, r, (uint32_t)r->tok[u].num);
    else if (mf->mode == MF_UPDATE)
        update_one(mf, r, (uint32_t)r->tok[u].num);
    else if (imap_fetch_item(r, r->data, "RFC822.SIZE") >= 0)
        list_one(mf, r, (uint32_t)r->tok[u].num);
}

int mf_list_side(struct mfolder *mf, struct imapc *c, struct mside *side, bool src,
                 bool headers)
{
    if (imapc_selected(c)->exists == 0)
        return 0;
    mf->fill = side;
    mf->mode = MF_LIST;
    imapc_set_untagged(c, mf_fetch_untagged, mf);
    int st = imapc_run(c, "UID FETCH 1:* (UID FLAGS RFC822.SIZE%s%s)",
                       src ? " INTERNALDATE" : "", headers ? " " HDR_FIELDS : "");
    imapc_set_untagged(c, NULL, NULL);
    if (st != IMAP_OK)
        return -1;
    qsort(side->v, side->n, sizeof(*side->v), by_uid);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* the rerun fast path: CONDSTORE (RFC 7162) and ESEARCH (RFC 4731)         */

static void add_uid(uint64_t uid, void *arg)
{
    struct mside *side = arg;
    if (uid == 0 || uid > UINT32_MAX)
        return;
    side->v = xgrow(side->v, &side->cap, side->n + 1, sizeof(*side->v));
    struct mmsg *m = &side->v[side->n++];
    memset(m, 0, sizeof(*m));
    m->uid = (uint32_t)uid;
}

static void esearch_untagged(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct mfolder *mf = arg;
    if (strcmp(r->keyword, "ESEARCH") != 0)
        return;
    for (size_t i = r->data; i < r->ntok; i = r->tok[i].end) {
        const struct imap_tok *v = r->tok[i].end < r->ntok ? &r->tok[r->tok[i].end] : NULL;
        if (!imap_tok_is(&r->tok[i], "ALL") || v == NULL)
            continue;
        if ((v->type != IMAP_ATOM && v->type != IMAP_NUM) ||
            imap_seqset_each(v->p, v->len, 50000000, add_uid, &mf->s) < 0)
            mf->esearch_bad = true;
        return;
    }
}

/* Indices into side of the messages want() selects; *idx is the caller's
 * to free. */
static size_t select_msgs(struct mfolder *mf, const struct mside *side,
                        bool (*want)(struct mfolder *, const struct mmsg *), size_t **idx)
{
    size_t n = 0;
    *idx = xcalloc(side->n + 1, sizeof(**idx));
    for (size_t i = 0; i < side->n; i++)
        if (want(mf, &side->v[i]))
            (*idx)[n++] = i;
    return n;
}

/* UID FETCH attrs on c for the messages of side selected by want(), `batch`
 * at a time, with mf_fetch_untagged() filling side in `mode`; after each
 * batch (even a failed one), done() (if any) sees its messages. */
static int fetch_batched(struct mfolder *mf, struct imapc *c, struct mside *side,
                         bool (*want)(struct mfolder *, const struct mmsg *), size_t batch,
                         int mode, const char *attrs, void (*done)(struct mmsg *))
{
    size_t *idx;
    size_t n = select_msgs(mf, side, want, &idx);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += batch) {
        size_t k = n - i < batch ? n - i : batch;
        struct buf b;
        buf_init(&b, 0);
        mf_uidset(&b, side, idx + i, k);
        mf->fill = side;
        mf->mode = mode;
        imapc_set_untagged(c, mf_fetch_untagged, mf);
        rc = imapc_run(c, "UID FETCH %s (UID %s)", b.data, attrs) == IMAP_OK ? 0 : -1;
        imapc_set_untagged(c, NULL, NULL);
        buf_free(&b);
        for (size_t j = 0; done != NULL && j < k; j++)
            done(&side->v[idx[i + j]]);
    }
    free(idx);
    return rc;
}

static bool unknown_to_state(struct mfolder *mf, const struct mmsg *m)
{
    return mig_state_lookup(mf->run->state, mf->key, m->uid) == 0;
}

/* The source's UIDs from one ESEARCH; flags only of the messages changed
 * since the last complete sync (others keep flags == NULL: nothing to
 * resync); full attributes only for the messages the state does not know. */
static int list_src_changed(struct mfolder *mf, uint64_t since)
{
    if (imapc_selected(mf->c1)->exists == 0)
        return 0;
    imapc_set_untagged(mf->c1, esearch_untagged, mf);
    int st = imapc_run(mf->c1, "UID SEARCH RETURN (ALL) ALL");
    imapc_set_untagged(mf->c1, NULL, NULL);
    if (st != IMAP_OK || mf->esearch_bad)
        return -1;
    qsort(mf->s.v, mf->s.n, sizeof(*mf->s.v), by_uid);
    mf->fill = &mf->s;
    mf->mode = MF_UPDATE;
    imapc_set_untagged(mf->c1, mf_fetch_untagged, mf);
    st = imapc_run(mf->c1, "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE %llu)",
                   (unsigned long long)since);
    imapc_set_untagged(mf->c1, NULL, NULL);
    if (st != IMAP_OK)
        return -1;
    return fetch_batched(mf, mf->c1, &mf->s, unknown_to_state, 500, MF_UPDATE,
                         "FLAGS RFC822.SIZE INTERNALDATE", NULL);
}

static bool new_unidentified(struct mfolder *mf, const struct mmsg *m)
{
    return m->fate == MF_NEW && m->id[0] == '\0';
}

/* Message-ID and Date of the source messages not matched by the state. */
static int fetch_src_headers(struct mfolder *mf)
{
    return fetch_batched(mf, mf->c1, &mf->s, new_unidentified, 500, MF_HEADERS, HDR_FIELDS,
                         NULL);
}

static bool unidentified(struct mfolder *mf, const struct mmsg *m)
{
    return m->id[0] == '\0';
}

/* Hash a fetched body into its identity and drop it. */
static void hash_body(struct mmsg *m)
{
    if (m->body)
        mig_ident_content(m->body, m->blen, m->id);
    free(m->body);
    m->body = NULL;
}

/* Bodies of the destination messages without an identity, 50 at a time
 * (each batch hashed and freed before the next). */
int mf_hash_dst_bodies(struct mfolder *mf)
{
    return fetch_batched(mf, mf->c2, &mf->d, unidentified, 50, MF_BODIES, "BODY.PEEK[]",
                         hash_body);
}

/* ---------------------------------------------------------------------- */
/* matching                                                                */

static void pair(struct mfolder *mf, struct mmsg *s, struct mmsg *d, bool record)
{
    s->fate = d->fate = MF_MATCHED;
    s->peer_uid = d->uid;
    d->peer_uid = s->uid;
    if (record && !mf->run->o->dry)
        mig_state_map(mf->run->state, mf->key, s->uid, d->uid);
}

static void seen_inc(struct mfolder *mf, const char *id)
{
    uintptr_t n = (uintptr_t)dict_get(&mf->src_seen, id);
    dict_set(&mf->src_seen, id, (void *)(n + 1));
}

bool mf_match_identity(struct mfolder *mf, struct mmsg *m, bool *dup)
{
    *dup = false;
    struct idq *q = dict_get(&mf->dst_ids, m->id);
    uintptr_t seen = (uintptr_t)dict_get(&mf->src_seen, m->id);
    if (seen > 0 && !mf->run->o->syncduplicates) {
        *dup = true;
        return false;
    }
    seen_inc(mf, m->id);
    if (q && q->next < q->n) {
        pair(mf, m, &mf->d.v[q->idx[q->next++]], true);
        return true;
    }
    return false;
}

void mf_index_dst(struct mfolder *mf)
{
    for (size_t i = 0; i < mf->d.n; i++) {
        struct mmsg *d = &mf->d.v[i];
        if (d->fate != MF_NEW || d->id[0] == '\0')
            continue;
        struct idq *q = dict_get(&mf->dst_ids, d->id);
        if (q == NULL) {
            q = xcalloc(1, sizeof(*q));
            dict_set(&mf->dst_ids, d->id, q);
        }
        q->idx = xgrow(q->idx, &q->cap, q->n + 1, sizeof(*q->idx));
        q->idx[q->n++] = i;
    }
}

static void match_by_state(struct mfolder *mf)
{
    for (size_t i = 0; i < mf->s.n; i++) {
        struct mmsg *s = &mf->s.v[i];
        uint32_t u2 = mig_state_lookup(mf->run->state, mf->key, s->uid);
        struct mmsg *d = u2 ? mf_find(&mf->d, u2) : NULL;
        if (d && d->fate == MF_NEW) {
            pair(mf, s, d, false);
            if (s->id[0])
                seen_inc(mf, s->id);
        }
    }
}

/* A pair matched by the state file is one message: a source message
 * without Message-ID takes its partner's content identity, so that its
 * duplicates are recognised. */
static void adopt_dst_ids(struct mfolder *mf)
{
    for (size_t i = 0; i < mf->s.n; i++) {
        struct mmsg *s = &mf->s.v[i];
        struct mmsg *d = s->fate == MF_MATCHED && s->id[0] == '\0'
                             ? mf_find(&mf->d, s->peer_uid) : NULL;
        if (d && d->id[0]) {
            memcpy(s->id, d->id, MIG_ID_LEN);
            seen_inc(mf, s->id);
        }
    }
}

static uint64_t size_limit(const struct mfolder *mf)
{
    uint64_t lim = mf->run->o->maxsize;
    uint64_t al = imapc_appendlimit(mf->c2), ml = mf->run->o->max_message;
    if (al && (lim == 0 || al < lim))
        lim = al;
    if (ml && (lim == 0 || ml < lim))
        lim = ml;                   /* --maxliteral: we could not read it */
    return lim;
}

static void decide(struct mfolder *mf)
{
    struct mig_tally *t = mf->run->t;
    uint64_t lim = size_limit(mf);
    for (size_t i = 0; i < mf->s.n; i++) {
        struct mmsg *s = &mf->s.v[i];
        bool dup = false;
        if (s->fate == MF_MATCHED) {
            t->already++;
            continue;
        }
        if (s->id[0] && mf_match_identity(mf, s, &dup)) {
            t->already++;
            continue;
        }
        if (dup) {
            s->fate = MF_DUP;
            t->duplicates++;
        } else if (lim && s->size > lim) {
            s->fate = MF_SKIPPED;
            t->skipped++;
            log_svc_warn("migrate", "%s: %s UID %u skipped: %llu bytes is over the limit of "
                         "%llu", mf->run->account, mf->f->name1, s->uid,
                         (unsigned long long)s->size, (unsigned long long)lim);
        } else {
            s->fate = s->id[0] ? MF_COPY : MF_HASH;
            mf->would_copy++;
            mf->would_bytes += s->size;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* flags, deletions                                                        */

static int cmp_str(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b);
}

/* Flags in a canonical order, for comparison. */
static void flags_canon(const char *in, char *out, size_t len)
{
    char *copy = xstrdup(in), *save = NULL, *v[256];
    size_t n = 0;
    for (char *w = strtok_r(copy, " ", &save); w && n < 256; w = strtok_r(NULL, " ", &save))
        v[n++] = w;
    qsort(v, n, sizeof(*v), cmp_str);
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && off + strlen(v[i]) + 2 < len; i++)
        off += (size_t)snprintf(out + off, len - off, "%s%s", i ? " " : "", v[i]);
    free(copy);
}

static void flags_sync(struct mfolder *mf)
{
    if (mf->run->o->noflags)
        return;
    for (size_t i = 0; i < mf->s.n; i++) {
        struct mmsg *s = &mf->s.v[i];
        struct mmsg *d = s->fate == MF_MATCHED ? mf_find(&mf->d, s->peer_uid) : NULL;
        char a[4096], b[4096];
        if (d == NULL || s->flags == NULL)
            continue;               /* unchanged since the last sync */
        flags_canon(s->flags, a, sizeof(a));
        flags_canon(d->flags, b, sizeof(b));
        if (strcasecmp(a, b) == 0)
            continue;
        mf->run->t->flags_updated++;
        if (mf->run->o->dry) {
            printf("dry: would set flags (%s) on %s UID %u\n", a, mf->f->name2, d->uid);
            continue;
        }
        struct imapc_cmd *cmd = imapc_cmd_new(mf->c2);
        imapc_cmd_text(cmd, "UID STORE %u FLAGS.SILENT (%s)", d->uid, a);
        imapc_cmd_send(cmd, NULL, NULL);
    }
    imapc_drain(mf->c2);
}

static bool unmatched(struct mfolder *mf, const struct mmsg *m)
{
    return m->fate != MF_MATCHED;
}

static void delete2(struct mfolder *mf)
{
    size_t *idx;
    size_t n = select_msgs(mf, &mf->d, unmatched, &idx);
    mf->run->t->deleted += n;
    if (n > 0 && mf->run->o->dry)
        printf("dry: would delete %zu messages from %s on host2\n", n, mf->f->name2);
    if (n > 0 && !mf->run->o->dry) {
        struct buf b;
        buf_init(&b, 0);
        mf_uidset(&b, &mf->d, idx, n);
        imapc_run(mf->c2, "UID STORE %s +FLAGS.SILENT (\\Deleted)", b.data);
        if (imapc_has(mf->c2, IMAPC_UIDPLUS))
            imapc_run(mf->c2, "UID EXPUNGE %s", b.data);
        else
            imapc_run(mf->c2, "EXPUNGE");
        buf_free(&b);
    }
    free(idx);
}

/* ---------------------------------------------------------------------- */
/* verification                                                            */

static void verify_one(struct mfolder *mf, struct mmsg *s, struct mside *now,
                       struct dict *have)
{
    struct mig_tally *t = mf->run->t;
    bool ok;
    struct mmsg *d;
    if (s->fate == MF_DUP || s->fate == MF_SKIPPED)
        return;
    t->src_identified++;
    if (s->peer_uid) {
        d = mf_find(now, s->peer_uid);
        ok = d != NULL && (d->size == s->size || s->fate == MF_MATCHED);
    } else if (s->id[0] && s->msgid) {
        uintptr_t n = (uintptr_t)dict_get(have, s->id);
        ok = n > 0;
        if (ok)
            dict_set(have, s->id, (void *)(n - 1));
    } else {
        ok = s->peer_uid && mf_find(now, s->peer_uid) != NULL;
        if (!s->peer_uid && s->fate == MF_COPIED)
            ok = true;          /* no UIDPLUS: counted by the APPEND result */
    }
    if (ok) {
        t->verified++;
        return;
    }
    t->missing++;
    mig_missing(t, "%s: UID %u %s (%llu bytes)%s", mf->f->name1, s->uid,
                s->msgid ? s->msgid : "(no Message-ID)", (unsigned long long)s->size,
                s->fate == MF_FAILED ? ", copy failed" : "");
}

int mf_verify(struct mfolder *mf)
{
    struct mside now = {0};
    bool need_ids = false;          /* no APPENDUID: check by identity */
    for (size_t i = 0; i < mf->s.n; i++)
        need_ids |= mf->s.v[i].peer_uid == 0 && mf->s.v[i].fate == MF_COPIED;
    /* EXAMINE again: a fresh EXISTS whatever the server told us since. */
    if (imapc_select(mf->c2, mf->f->name2, true) != IMAP_OK ||
        mf_list_side(mf, mf->c2, &now, false, need_ids) < 0) {
        mf_side_free(&now);
        return -1;
    }
    struct dict have;
    dict_init(&have, NULL);
    for (size_t i = 0; i < now.n; i++) {
        if (now.v[i].id[0] == '\0')
            continue;
        uintptr_t n = (uintptr_t)dict_get(&have, now.v[i].id);
        dict_set(&have, now.v[i].id, (void *)(n + 1));
    }
    for (size_t i = 0; i < mf->s.n; i++)
        verify_one(mf, &mf->s.v[i], &now, &have);
    dict_free(&have);
    mf_side_free(&now);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* the folder                                                              */

static int open_folders(struct mfolder *mf)
{
    const struct mig_opts *o = mf->run->o;
    if (imapc_select(mf->c1, mf->f->name1, true) != IMAP_OK)
        return -1;
    uint64_t uv1 = imapc_selected(mf->c1)->uidvalidity;
    bool exists = mf->f->exists2;
    if (!exists && !o->dry) {
        struct imapc_cmd *b = imapc_cmd_new(mf->c2);
        imapc_cmd_text(b, "CREATE ");
        imapc_cmd_astring(b, mf->f->name2);
        if (imapc_cmd_wait(b) == IMAP_OK)
            mf->run->t->folders_created++;
        else if (!imapc_failed(mf->c2))     /* it may exist by now: SELECT decides */
            log_svc_warn("migrate", "%s: CREATE %s: %s", mf->run->account, mf->f->name2,
                         imapc_last_text(mf->c2));
        exists = true;
    } else if (!exists) {
        mf->run->t->folders_created++;
        printf("dry: would create folder %s on host2\n", mf->f->name2);
    }
    uint64_t uv2 = 0;
    if (exists) {
        if (imapc_select(mf->c2, mf->f->name2, o->dry) != IMAP_OK)
            return -2;
        uv2 = imapc_selected(mf->c2)->uidvalidity;
    }
    int known = mig_state_folder(mf->run->state, mf->key, uv1, uv2);
    mf->state_same = known == 1;
    if (known < 0)
        log_svc("migrate", "%s: %s: UIDVALIDITY changed (now %llu/%llu); matching by identity",
                mf->run->account, mf->f->name1, (unsigned long long)uv1,
                (unsigned long long)uv2);
    return exists ? 1 : 0;
}

static void phase(struct mfolder *mf, const char *what)
{
    static int on = -1;
    if (on < 0)
        on = getenv("SLUICE_MIGRATE_TIMING") != NULL;
    if (on)
        log_svc("migrate", "%s: %.3f %s", mf->f->name1, mig_now() - mf->run->t->start, what);
}

static int folder_body(struct mfolder *mf)
{
    const struct mig_opts *o = mf->run->o;
    phase(mf, "start");
    int ex = open_folders(mf);
    if (ex == -1 || ex == -2)
        return ex == -1 ? -1 : -2;
    uint64_t hms = imapc_selected(mf->c1)->highestmodseq;
    uint64_t since = mf->state_same && imapc_has(mf->c1, IMAPC_CONDSTORE | IMAPC_ESEARCH)
                         ? mig_state_modseq(mf->run->state, mf->key) : 0;
    if (since && hms ? list_src_changed(mf, since) < 0
                     : mf_list_side(mf, mf->c1, &mf->s, true, false) < 0)
        return -1;
    if (ex == 1 && mf_list_side(mf, mf->c2, &mf->d, false, true) < 0)
        return -2;
    match_by_state(mf);
    /* Into an empty folder, identities come with the bodies (no header
     * pass over the source); otherwise fetch the headers of what the
     * state did not match. */
    if (mf->d.n > 0 && fetch_src_headers(mf) < 0)
        return -1;
    phase(mf, since && hms ? "listed (CONDSTORE: changes only)" : "listed");
    bool need_hash = false;
    for (size_t i = 0; i < mf->s.n; i++)
        need_hash |= mf->s.v[i].id[0] == '\0' && mf->s.v[i].fate == MF_NEW;
    if (need_hash && ex == 1 && mf_hash_dst_bodies(mf) < 0)
        return -2;
    adopt_dst_ids(mf);
    mf_index_dst(mf);
    decide(mf);
    flags_sync(mf);
    if (o->dry) {
        mf->run->t->copied += mf->would_copy;
        if (mf->would_copy)
            printf("dry: would copy %zu messages (%llu bytes) from %s to %s\n",
                   mf->would_copy, (unsigned long long)mf->would_bytes, mf->f->name1,
                   mf->f->name2);
    } else if (mf_copy(mf) < 0) {
        return -1;
    }
    phase(mf, "copied");
    if (o->delete2 && ex == 1)
        delete2(mf);
    mig_state_sync(mf->run->state);
    if (o->verify && !o->dry && mf_verify(mf) < 0)
        return -2;
    phase(mf, "verified");
    size_t failed = 0;
    for (size_t i = 0; i < mf->s.n; i++)
        failed += mf->s.v[i].fate == MF_FAILED;
    if (hms && failed == 0 && !o->dry) {
        mig_state_set_modseq(mf->run->state, mf->key, hms);
        mig_state_sync(mf->run->state);
    }
    return 0;
}

int mig_folder_sync(struct mig_run *run, struct imapc *c1, struct imapc *c2,
                    const struct mig_folder *f)
{
    struct mfolder mf = {.run = run, .c1 = c1, .c2 = c2, .f = f};
    snprintf(mf.key, sizeof(mf.key), "%s\t%s", f->name1, f->name2);
    dict_init(&mf.dst_ids, mf_idq_free);
    dict_init(&mf.src_seen, NULL);
    int rc = folder_body(&mf);
    if (rc < 0) {
        struct imapc *bad = imapc_failed(c1) ? c1 : imapc_failed(c2) ? c2
                          : rc == -1 ? c1 : c2;
        const char *why = imapc_failed(bad) ? imapc_error(bad) : imapc_last_text(bad);
        run->t->folders_failed++;
        mig_fail(run->t, imapc_failed(bad) ? mig_exit_for_imapc(imapc_errclass(bad))
                 : MIG_EXIT_PARTIAL, "%s: folder %s -> %s: %s", run->account, f->name1,
                 f->name2, why);
    } else {
        run->t->folders_done++;
    }
    dict_free(&mf.dst_ids);
    dict_free(&mf.src_seen);
    mf_side_free(&mf.s);
    mf_side_free(&mf.d);
    return rc < 0 && (imapc_failed(c1) || imapc_failed(c2)) ? -1 : 0;
}
