/*
 * qmgr.c - the queue manager (see qmgr.h).
 *
 * Recipient life: PENDING -> ACTIVE (in a job) -> SENT | DEFERRED (retry
 * later) | BOUNCED (needs a DSN) -> DONE. A message is removed when no
 * recipient is PENDING, DEFERRED or ACTIVE and its DSN, if any, is safely
 * queued. Destinations are keyed by next hop; each has a concurrency
 * limit that starts at initial_destination_concurrency, grows by one per
 * clean job and halves on a throttling reply, and a pause time during
 * which its mail waits without burning attempts.
 */
#include "queue/qmgr.h"
#include "queue/qmgr_int.h"
#include "delivery/delivery.h"
#include "delivery/smtp_client.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/workq.h"
#include "lib/xalloc.h"
#include "mail/classify.h"
#include "queue/spool.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct qmgr *the_qmgr;

static const struct config *current_config(void)
{
    return *the_qmgr->cfgp;
}

static const struct config *cfg(const struct qmgr *q)
{
    return *q->cfgp;
}

/* ---------------------------------------------------------------------- */
/* messages                                                                */

static void msg_free(void *p)
{
    struct qmsg *m = p;
    spool_envelope_free(&m->env);
    qstate_free(&m->st);
    free(m);
}

void qmgr_save_state(struct qmgr *q, struct qmsg *m)
{
    if (qstate_save(m->state_path, &m->st) < 0)
        log_svc_warn("qmgr", "%s: cannot save delivery state: %s", m->qid, strerror(errno));
}

/* Load queue/QID. At start (*incomplete not NULL) a file cut short
 * (SPOOL_PARSE_INCOMPLETE) is removed and counted there: it was never
 * acknowledged (a crash while the sync thread wrote it; had its journal
 * record been durable, the replay before this scan would have rewritten it
 * whole). Any other damage, and anything odd later, goes to corrupt/. */
static struct qmsg *msg_load(struct qmgr *q, const char *qid, size_t *incomplete)
{
    char path[600], err[256];
    snprintf(path, sizeof(path), "%s/%s", q->queue_dir, qid);
    struct qmsg *m = xcalloc(1, sizeof(*m));
    int rc = spool_read_message(q->spool, qid, &m->env, err, sizeof(err));
    if (rc == SPOOL_PARSE_INCOMPLETE && incomplete && unlink(path) == 0) {
        (*incomplete)++;
        free(m);
        return NULL;
    }
    if (rc < 0) {
        /* damaged on disk: keep it for inspection, out of the way of
         * delivery */
        char dir[600], dest[700];
        snprintf(dir, sizeof(dir), "%s/../corrupt", q->queue_dir);
        snprintf(dest, sizeof(dest), "%s/%s", dir, qid);
        mkdir(dir, 0700);
        log_svc_warn("qmgr", "%s: damaged queue file moved to %s: %s", qid, dest, err);
        if (rename(path, dest) < 0)
            unlink(path);
        free(m);
        return NULL;
    }
    str_copy(m->qid, qid, sizeof(m->qid));
    str_copy(m->path, path, sizeof(m->path));
    snprintf(m->state_path, sizeof(m->state_path), "%s/%s", q->state_dir, qid);
    qstate_init(&m->st, m->env.nrcpt);
    qstate_load(m->state_path, &m->st);
    gettimeofday(&m->loaded, NULL);
    dict_set(&q->msgs, qid, m);
    return m;
}

void qmgr_remove(struct qmgr *q, struct qmsg *m)
{
    spool_forget(q->spool, m->qid);   /* first: a replay must not revive it */
    unlink(m->path);
    unlink(m->state_path);
    log_svc("qmgr", "%s: removed", m->qid);
    dict_del(&q->msgs, m->qid);
}

/* ---------------------------------------------------------------------- */
/* routing                                                                 */

/* Parse "smtp:[host]:port", "smtp:host", "lmtp:unix:/p", "lmtp:[h]:p",
 * "maildir", "error:5.1.1 text". */
int qmgr_parse_nexthop(const char *spec, struct nexthop *hop)
{
    memset(hop, 0, sizeof(*hop));
    if (strcmp(spec, "maildir") == 0 || strcmp(spec, "local") == 0) {
        hop->kind = TR_MAILDIR;
        return 0;
    }
    if (str_iprefix(spec, "error:")) {
        hop->kind = TR_ERROR;
        str_copy(hop->error_text, spec + 6, sizeof(hop->error_text));
        return 0;
    }
    const char *rest;
    if (str_iprefix(spec, "smtp:")) {
        hop->kind = TR_SMTP;
        hop->port = 25;
        rest = spec + 5;
    } else if (str_iprefix(spec, "lmtp:")) {
        hop->kind = TR_LMTP;
        hop->port = 24;
        rest = spec + 5;
        if (str_iprefix(rest, "unix:")) {
            hop->unix_socket = true;
            str_copy(hop->host, rest + 5, sizeof(hop->host));
            return hop->host[0] ? 0 : -1;
        }
    } else {
        hop->kind = TR_SMTP; /* relayhost style: "[host]:port" or "host" */
        hop->port = 25;
        rest = spec;
    }
    if (rest[0] == '[') {
        const char *end = strchr(rest, ']');
        if (end == NULL || (size_t)(end - rest - 1) >= sizeof(hop->host))
            return -1;
        memcpy(hop->host, rest + 1, (size_t)(end - rest - 1));
        hop->host[end - rest - 1] = '\0';
        rest = end + 1;
    } else {
        size_t n = strcspn(rest, ":");
        if (n == 0 || n >= sizeof(hop->host))
            return -1;
        memcpy(hop->host, rest, n);
        hop->host[n] = '\0';
        rest += n;
        hop->use_mx = hop->kind == TR_SMTP;
    }
    if (*rest == ':') {
        uint64_t p;
        if (str_to_u64(rest + 1, &p) < 0 || p == 0 || p > 65535)
            return -1;
        hop->port = (uint16_t)p;
    } else if (*rest) {
        return -1;
    }
    return 0;
}

static void dest_key_of(const struct nexthop *hop, char *key, size_t len)
{
    switch (hop->kind) {
    case TR_MAILDIR: str_copy(key, "maildir", len); break;
    case TR_ERROR: snprintf(key, len, "error:%s", hop->error_text); break;
    case TR_LMTP:
        if (hop->unix_socket)
            snprintf(key, len, "lmtp:unix:%s", hop->host);
        else
            snprintf(key, len, "lmtp:[%s]:%u", hop->host, hop->port);
        break;
    case TR_SMTP:
        snprintf(key, len, hop->use_mx ? "smtp:%s:%u" : "smtp:[%s]:%u", hop->host, hop->port);
        break;
    }
}

/* Decide where one recipient goes. */
int qmgr_route(const struct config *c, const char *addr, struct nexthop *hop)
{
    char domain[300];
    const char *at = strrchr(addr, '@');
    str_copy(domain, at ? at + 1 : c->myhostname, sizeof(domain));
    str_lower(domain);
    const char *spec = NULL;
    if (c->transport_table) {
        spec = table_get(c->transport_table, addr);
        for (const char *d = domain; spec == NULL && d; d = strchr(d + 1, '.')) {
            spec = table_get(c->transport_table, d);
            if (spec == NULL && d != domain) {
                char dotted[302];
                snprintf(dotted, sizeof(dotted), "%s", d); /* ".parent" form */
                spec = table_get(c->transport_table, dotted);
            }
        }
    }
    if (spec)
        return qmgr_parse_nexthop(spec, hop);
    if (at == NULL || config_is_local_domain(c, domain)) {
        hop->kind = TR_MAILDIR;
        return 0;
    }
    if (c->relayhost[0])
        return qmgr_parse_nexthop(c->relayhost, hop);
    memset(hop, 0, sizeof(*hop));
    hop->kind = TR_SMTP;
    hop->use_mx = true;
    hop->port = 25;
    str_copy(hop->host, domain, sizeof(hop->host));
    return 0;
}

static struct qdest *dest_get(struct qmgr *q, const struct nexthop *hop,
                              const char *mxkey)
{
    char key[300];
    if (mxkey)
        snprintf(key, sizeof(key), "smtp:mx:%s:%u", mxkey, hop->port);
    else
        dest_key_of(hop, key, sizeof(key));
    struct qdest *d = dict_get(&q->dests, key);
    if (d == NULL) {
        d = xcalloc(1, sizeof(*d));
        str_copy(d->key, key, sizeof(d->key));
        d->hop = *hop;
        d->concurrency = (double)cfg(q)->initial_destination_concurrency;
        if (d->concurrency < 1)
            d->concurrency = 1;
        dict_set(&q->dests, key, d);
        /* once per destination: shows operators (and tests) the MX rollup */
        log_svc("qmgr", "destination %s opened for %s", key, hop->host);
    }
    return d;
}

/* ---------------------------------------------------------------------- */
/* MX rollup: domains whose MX host sets are equal share a destination     */

static void tick_cb(evutil_socket_t fd, short what, void *arg);

static void mx_answer(void *arg, const struct dns_result *res)
{
    /* entries live until qmgr_free, which cancels lookups first */
    struct qmgr *q = the_qmgr;
    struct mx_entry *e = arg;
    const char *domain = e->domain;
    time_t now = time(NULL), ttl = res->ttl > 3600 ? 3600 : (res->ttl < 60 ? 60 : res->ttl);
    e->expires = now + ttl;
    if (res->status == DNS_OK && res->n == 1 && strcmp(res->mx[0].host, ".") == 0) {
        e->state = MX_NULL;
    } else if (res->status == DNS_OK) {
        /* the sorted, de-duplicated host names are the destination's name */
        e->state = MX_OK;
        e->key[0] = '\0';
        size_t o = 0;
        for (size_t i = 0; i < res->n && o + 2 < sizeof(e->key); i++)
            o += (size_t)snprintf(e->key + o, sizeof(e->key) - o, "%s%s", i ? "," : "",
                                  res->mx[i].host);
    } else if (res->status == DNS_NODATA) {
        e->state = MX_OK; /* implicit MX: the domain itself (RFC 5321 5.1) */
        str_copy(e->key, domain, sizeof(e->key));
    } else if (res->status == DNS_NXDOMAIN || res->status == DNS_BADNAME) {
        e->state = MX_NXDOMAIN;
    } else {
        e->state = MX_TEMPFAIL;
        e->expires = now + 30;
    }
    event_active(q->tick, EV_TIMEOUT, 0);
}

/* The MX state of a domain; starts a lookup when unknown or stale. */
static struct mx_entry *mx_lookup(struct qmgr *q, const char *domain)
{
    struct mx_entry *e = dict_get(&q->mxcache, domain);
    if (e && (e->state == MX_PENDING || e->expires > time(NULL)))
        return e;
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        str_copy(e->domain, domain, sizeof(e->domain));
        dict_set(&q->mxcache, domain, e);
    }
    e->state = MX_PENDING;
    dns_query(q->dns, domain, DNS_T_MX, mx_answer, e);
    return e;
}

/* Turn an MX state into a next hop. Returns false while the lookup runs. */
static bool mx_route(struct qmgr *q, struct nexthop *hop, const char **mxkey)
{
    *mxkey = NULL;
    if (hop->kind != TR_SMTP || !hop->use_mx || q->dns == NULL)
        return true;
    struct netaddr na;
    if (netaddr_parse(hop->host, &na) == 0)
        return true;
    struct mx_entry *e = mx_lookup(q, hop->host);
    switch (e->state) {
    case MX_PENDING:
        return false;
    case MX_OK:
        *mxkey = e->key;
        return true;
    case MX_NULL:
        hop->kind = TR_ERROR;
        snprintf(hop->error_text, sizeof(hop->error_text), "5.1.10 Recipient address "
                 "rejected: domain %.180s does not accept mail (null MX, RFC 7505)", hop->host);
        return true;
    case MX_NXDOMAIN:
        hop->kind = TR_ERROR;
        snprintf(hop->error_text, sizeof(hop->error_text), "5.1.2 Host or domain name not "
                 "found: %.200s", hop->host);
        return true;
    case MX_TEMPFAIL:
        hop->kind = TR_ERROR;
        snprintf(hop->error_text, sizeof(hop->error_text), "4.4.3 Host or domain name "
                 "lookup failed temporarily: %.180s", hop->host);
        return true;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* jobs                                                                    */

static void job_free(struct delivery_job *j)
{
    for (size_t i = 0; i < j->nrcpt; i++) {
        free(j->rcpts[i].addr);
        free(j->rcpts[i].orcpt);
    }
    free(j->rcpts);
    free(j->sender);
    free(j->envid);
    free(j);
}

static void job_done(struct delivery_job *job);

static struct delivery_job *job_new(struct qmgr *q, struct qmsg *m, struct qdest *d)
{
    struct delivery_job *j = xcalloc(1, sizeof(*j));
    j->id = ++q->next_job_id;
    str_copy(j->qid, m->qid, sizeof(j->qid));
    j->spool = q->spool;
    j->content_offset = m->env.content_offset;
    j->content_length = m->env.content_length;
    j->sender = xstrdup(m->env.sender);
    j->smtputf8 = m->env.smtputf8;
    j->body = m->env.body;
    j->envid = m->env.envid ? xstrdup(m->env.envid) : NULL;
    j->ret = m->env.ret;
    j->hop = d->hop;
    str_copy(j->dest_key, d->key, sizeof(j->dest_key));
    j->done = job_done;
    gettimeofday(&j->t_queued, NULL);
    return j;
}

static void job_add_rcpt(struct delivery_job *j, struct qmsg *m, size_t idx)
{
    j->rcpts = xrealloc(j->rcpts, (j->nrcpt + 1) * sizeof(*j->rcpts));
    struct delivery_rcpt *r = &j->rcpts[j->nrcpt++];
    memset(r, 0, sizeof(*r));
    r->addr = xstrdup(m->env.rcpts[idx].addr);
    r->notify = m->env.rcpts[idx].notify;
    r->orcpt = m->env.rcpts[idx].orcpt ? xstrdup(m->env.rcpts[idx].orcpt) : NULL;
    r->index = idx;
    m->st.r[idx].status = RS_ACTIVE;
}

static void dest_enqueue(struct qdest *d, struct delivery_job *j)
{
    struct qjob_node *n = xcalloc(1, sizeof(*n));
    n->job = j;
    if (d->tail)
        d->tail->next = n;
    else
        d->head = n;
    d->tail = n;
    d->nwaiting++;
}

/* Take the destination's first waiting job and count it as running. */
static struct delivery_job *dest_take(struct qmgr *q, struct qdest *d)
{
    struct qjob_node *n = d->head;
    d->head = n->next;
    if (d->head == NULL)
        d->tail = NULL;
    d->nwaiting--;
    d->active++;
    q->active_jobs++;
    struct qmsg *m = dict_get(&q->msgs, n->job->qid);
    if (m)
        m->active_jobs++;
    struct delivery_job *j = n->job;
    free(n);
    return j;
}

/* Start waiting jobs within the destination's limits. */
void qmgr_dest_pump(struct qmgr *q, struct qdest *d)
{
    time_t now = time(NULL);
    uint64_t gap_ms = cfg(q)->destination_rate_delay * 1000;
    if (q->stopping || !cfg(q)->queue_delivery)
        return;
    while (d->head && now >= d->paused_until &&
           (double)d->active < d->concurrency &&
           (d->probed || d->active == 0)) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        uint64_t since = (uint64_t)(tv.tv_sec - d->last_start.tv_sec) * 1000 +
                         (uint64_t)((tv.tv_usec - d->last_start.tv_usec) / 1000);
        if (gap_ms && d->last_start.tv_sec && since < gap_ms)
            break; /* the tick comes back for it */
        d->last_start = tv;
        delivery_start(dest_take(q, d));
    }
}

/* Connection reuse: hand the next waiting job of a destination to an
 * agent whose connection is still open (it keeps its concurrency slot:
 * active is incremented here and decremented when the old job is done). */
static struct delivery_job *qmgr_next_job(const char *dest_key)
{
    struct qmgr *q = the_qmgr;
    struct qdest *d = q ? dict_get(&q->dests, dest_key) : NULL;
    if (d == NULL || d->head == NULL || time(NULL) < d->paused_until || q->stopping)
        return NULL;
    return dest_take(q, d);
}

/* Group a message's due recipients into jobs per destination. */
void qmgr_schedule_msg(struct qmgr *q, struct qmsg *m)
{
    time_t now = time(NULL);
    if (m->st.held || m->finishing || !cfg(q)->queue_delivery || q->stopping)
        return;
    struct delivery_job *jobs[64];
    struct qdest *dests[64];
    size_t nj = 0;
    uint64_t limit = cfg(q)->smtp_destination_recipient_limit;
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        struct rcpt_state *r = &m->st.r[i];
        if (!(r->status == RS_PENDING || (r->status == RS_DEFERRED && r->next_attempt <= now)))
            continue;
        struct nexthop hop;
        if (qmgr_route(cfg(q), m->env.rcpts[i].addr, &hop) < 0) {
            memset(&hop, 0, sizeof(hop));
            hop.kind = TR_ERROR;
            str_copy(hop.error_text, "4.3.5 bad next hop in transport_maps or relayhost",
                     sizeof(hop.error_text));
        }
        const char *mxkey;
        if (!mx_route(q, &hop, &mxkey))
            continue; /* MX lookup running; the answer triggers a new run */
        struct qdest *d = dest_get(q, &hop, mxkey);
        size_t k;
        for (k = 0; k < nj; k++)
            if (dests[k] == d && jobs[k]->nrcpt < limit)
                break;
        if (k == nj) {
            if (nj == 64)
                break; /* the rest waits for the next tick */
            dests[nj] = d;
            jobs[nj++] = job_new(q, m, d);
        }
        job_add_rcpt(jobs[k], m, i);
    }
    for (size_t k = 0; k < nj; k++) {
        dest_enqueue(dests[k], jobs[k]);
        qmgr_dest_pump(q, dests[k]);
    }
}

/* ---------------------------------------------------------------------- */
/* results                                                                 */

static double tv_sec(const struct timeval *a, const struct timeval *b)
{
    double d = (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
    return d < 0 ? 0 : d;
}

static void log_result(struct qmsg *m, struct delivery_job *j, struct delivery_rcpt *r,
                       const char *status, enum reply_class cls)
{
    struct timeval arrival = m->env.arrival;
    double a = tv_sec(&arrival, &m->loaded), b = tv_sec(&m->loaded, &j->t_start);
    if (j->t_queued.tv_sec && j->t_queued.tv_sec > m->loaded.tv_sec)
        b = tv_sec(&j->t_queued, &j->t_start);
    double c = tv_sec(&j->t_start, &j->t_connected), d = tv_sec(&j->t_connected, &j->t_end);
    double total = tv_sec(&arrival, &j->t_end);
    char tls[80] = "";
    if (j->tls[0])
        snprintf(tls, sizeof(tls), ", tls=%s", j->tls);
    const char *name = classify_name(cls);
    struct log_kv kv[] = {
        {"qid", m->qid}, {"to", r->addr}, {"relay", j->relay}, {"dsn", r->enhanced},
        {"status", status}, {"class", name},
        {"explanation", r->code >= 400 ? classify_explain(cls) : ""},
    };
    const char *service = j->hop.kind == TR_MAILDIR ? "local" :
                          j->hop.kind == TR_LMTP ? "lmtp" :
                          j->hop.kind == TR_ERROR ? "error" : "smtp";
    log_event(LOG_LVL_INFO, service, kv, sizeof(kv) / sizeof(kv[0]),
              "%s: to=<%s>, relay=%s, delay=%.2f, delays=%.2f/%.2f/%.2f/%.2f%s, dsn=%s, "
              "status=%s (%d %s %s)", m->qid, r->addr, j->relay, total, a, b, c, d, tls,
              r->enhanced, status, r->code, r->enhanced, r->text);
    if (r->code >= 400)
        log_svc("qmgr", "%s: to=<%s>, class=%s: %s Next step: %s", m->qid, r->addr, name,
                classify_explain(cls), classify_next_step(cls));
}

/* Exponential backoff with +-10% jitter. */
static time_t backoff(const struct config *c, unsigned attempts)
{
    uint64_t t = c->minimal_backoff_time ? c->minimal_backoff_time : 1;
    for (unsigned i = 1; i < attempts && t < c->maximal_backoff_time; i++)
        t *= 2;
    if (t > c->maximal_backoff_time)
        t = c->maximal_backoff_time;
    uint64_t jitter = t / 10;
    if (jitter)
        t = t - jitter + (uint64_t)random() % (2 * jitter + 1);
    return (time_t)t;
}

static bool is_throttle(enum reply_class c)
{
    return c == RC_BUSY || c == RC_RATE_LIMITED || c == RC_CONNECTION_CAP;
}

/* The destination said "slow down": halve it and pause it. */
static void dest_throttle(struct qmgr *q, struct qdest *d, enum reply_class cls)
{
    time_t now = time(NULL);
    d->concurrency = d->concurrency / 2 < 1 ? 1 : d->concurrency / 2;
    d->paused_until = now + (time_t)cfg(q)->throttle_pause_time;
    log_svc("qmgr", "destination %s throttled (%s): concurrency %.0f, paused for %llus",
            d->key, classify_name(cls), d->concurrency,
            (unsigned long long)cfg(q)->throttle_pause_time);
}

static void apply_result(struct qmgr *q, struct qmsg *m, struct qdest *d,
                         struct delivery_job *j, struct delivery_rcpt *r, bool *throttled,
                         enum reply_class *throttle_cls)
{
    struct rcpt_state *st = &m->st.r[r->index];
    const struct config *c = cfg(q);
    enum reply_class cls = r->code >= 400 ?
        classify_reply(r->code, r->enhanced, r->text, j->remote_host[0] ? j->remote_host : NULL)
        : RC_UNKNOWN;
    time_t now = time(NULL);
    if (q->stopping && r->code >= 400) {
        st->status = RS_PENDING; /* interrupted, not failed: no attempt used */
        return;
    }
    st->last_attempt = now;
    str_copy(st->dsn, r->enhanced, sizeof(st->dsn));
    snprintf(st->reply, sizeof(st->reply), "%d %s %s", r->code, r->enhanced, r->text);
    str_copy(st->relay, j->relay, sizeof(st->relay));
    str_copy(st->cls, r->code >= 400 ? classify_name(cls) : "", sizeof(st->cls));
    if (r->code >= 200 && r->code < 300) {
        st->status = RS_SENT;
        log_result(m, j, r, "sent", cls);
        return;
    }
    if (r->code >= 500 && cls == RC_REPUTATION_BLOCK &&
        strcmp(c->reputation_block_action, "hold") == 0) {
        st->status = RS_DEFERRED;
        st->next_attempt = now;
        m->st.held = true;
        log_result(m, j, r, "deferred", cls);
        log_svc("qmgr", "%s: held by reputation_block_action = hold; release with "
                "'sluice queue release %s'", m->qid, m->qid);
        return;
    }
    if (r->code >= 500) {
        st->status = RS_BOUNCED;
        log_result(m, j, r, "bounced", cls);
        return;
    }
    st->status = RS_DEFERRED;
    if (is_throttle(cls)) {
        *throttled = true;
        *throttle_cls = cls;
        st->next_attempt = now + (time_t)c->throttle_pause_time + (time_t)(random() % 5);
    } else {
        st->attempts++;
        st->throttled_only = false;
        st->next_attempt = now + (cls == RC_GREYLISTED ? (time_t)c->minimal_backoff_time
                                                       : backoff(c, st->attempts));
    }
    log_result(m, j, r, "deferred", cls);
}

/* Return every waiting job of a paused destination to its messages, so
 * their mail waits in the queue (where expiry is checked) without
 * burning attempts. `cls` is why the destination paused: mail held back by
 * provider throttling counts as throttled (the longer lifetime applies),
 * mail held back by a dead destination does not. */
static void dest_requeue_waiting(struct qmgr *q, struct qdest *d, enum reply_class cls)
{
    while (d->head) {
        struct qjob_node *n = d->head;
        d->head = n->next;
        struct qmsg *m = dict_get(&q->msgs, n->job->qid);
        for (size_t i = 0; m && i < n->job->nrcpt; i++) {
            struct rcpt_state *st = &m->st.r[n->job->rcpts[i].index];
            st->status = RS_DEFERRED;
            st->next_attempt = d->paused_until;
            if (!is_throttle(cls))
                st->throttled_only = false;
        }
        job_free(n->job);
        free(n);
    }
    d->tail = NULL;
    d->nwaiting = 0;
}

static bool msg_all_sent(const struct qmsg *m)
{
    if (m->active_jobs > 0)
        return false;
    for (size_t i = 0; i < m->env.nrcpt; i++)
        if (m->st.r[i].status != RS_SENT && m->st.r[i].status != RS_DONE)
            return false;
    return true;
}

static void job_done(struct delivery_job *j)
{
    struct qmgr *q = the_qmgr;
    struct qdest *d = dict_get(&q->dests, j->dest_key);
    struct qmsg *m = dict_get(&q->msgs, j->qid);
    q->active_jobs--;
    if (d) {
        d->active--;
        d->probed = true; /* what the first connection learnt (TLS, limits) now applies */
    }
    bool throttled = false, any_fail = false;
    enum reply_class throttle_cls = RC_BUSY;
    if (m) {
        m->active_jobs--;
        for (size_t i = 0; i < j->nrcpt; i++) {
            if (j->rcpts[i].code == 0)
                delivery_set_result(&j->rcpts[i], 451, "4.3.0", "delivery agent gave no result");
            if (j->rcpts[i].code >= 400)
                any_fail = true;
            apply_result(q, m, d, j, &j->rcpts[i], &throttled, &throttle_cls);
        }
    }
    if (d && throttled) {
        dest_throttle(q, d, throttle_cls);
        dest_requeue_waiting(q, d, throttle_cls);
    } else if (d && j->connect_failed) {
        d->fail_streak++;
        d->paused_until = time(NULL) + backoff(cfg(q), d->fail_streak);
        dest_requeue_waiting(q, d, RC_NETWORK);
    } else if (d && !any_fail) {
        d->fail_streak = 0;
        if (d->concurrency < (double)cfg(q)->default_destination_concurrency_limit)
            d->concurrency += 1;
    }
    job_free(j);
    if (m) {
        /* a message about to be removed needs no state file */
        if (!msg_all_sent(m))
            qmgr_save_state(q, m);
        qmgr_msg_check_done(q, m);
    }
    if (d)
        qmgr_dest_pump(q, d);
}

/* ---------------------------------------------------------------------- */
/* the periodic run                                                        */

static void expire_check(struct qmgr *q, struct qmsg *m, time_t now)
{
    const struct config *c = cfg(q);
    bool changed = false;
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        struct rcpt_state *r = &m->st.r[i];
        if (r->status != RS_DEFERRED)
            continue;
        /* throttled only: every reply so far was throttling, or it was
         * never tried because its destination was paused by throttling */
        bool throttled = r->throttled_only && (r->cls[0] || r->last_attempt == 0);
        uint64_t life = throttled ? c->throttled_queue_lifetime : c->maximal_queue_lifetime;
        if ((uint64_t)(now - m->env.arrival.tv_sec) < life)
            continue;
        r->status = RS_BOUNCED;
        char last[sizeof(r->reply)];
        str_copy(last, r->reply[0] ? r->reply : "no delivery attempt succeeded", sizeof(last));
        char span[32];
        if (life % 86400 == 0)
            snprintf(span, sizeof(span), "%llu day(s)", (unsigned long long)(life / 86400));
        else if (life % 3600 == 0)
            snprintf(span, sizeof(span), "%llu hour(s)", (unsigned long long)(life / 3600));
        else
            snprintf(span, sizeof(span), "%llu second(s)", (unsigned long long)life);
        snprintf(r->reply, sizeof(r->reply), "message expired after %s in the queue; "
                 "last reply: %s", span, last);
        str_copy(r->dsn, "4.4.7", sizeof(r->dsn));
        log_svc("qmgr", "%s: to=<%s>, status=expired, returned to sender (%s)", m->qid,
                m->env.rcpts[i].addr, last);
        changed = true;
    }
    if (changed) {
        qmgr_save_state(q, m);
        qmgr_msg_check_done(q, m);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct qmgr *q = arg;
    time_t now = time(NULL);
    size_t pos = 0;
    const char *key;
    void *val;
    char **ids = xcalloc(dict_count(&q->msgs) + 1, sizeof(char *));
    size_t n = 0;
    while (dict_next(&q->msgs, &pos, &key, &val))
        ids[n++] = xstrdup(key);
    for (size_t i = 0; i < n; i++) {
        struct qmsg *m = dict_get(&q->msgs, ids[i]);
        if (m && !m->finishing) {
            expire_check(q, m, now);
            m = dict_get(&q->msgs, ids[i]);
        }
        if (m && !m->finishing)
            qmgr_delay_notice_check(q, m, now);
        if (m && !m->finishing)
            qmgr_schedule_msg(q, m);
        if (m && !m->finishing && m->active_jobs == 0)
            qmgr_msg_check_done(q, m);
        free(ids[i]);
    }
    free(ids);
    pos = 0;
    while (dict_next(&q->dests, &pos, &key, &val))
        qmgr_dest_pump(q, val);
}

/* ---------------------------------------------------------------------- */
/* start and stop                                                          */

static int scan_queue(struct qmgr *q)
{
    DIR *d = opendir(q->queue_dir);
    if (d == NULL)
        return -1;
    struct dirent *de;
    size_t n = 0, incomplete = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strlen(de->d_name) != QID_LEN)
            continue;
        if (msg_load(q, de->d_name, &incomplete))
            n++;
    }
    closedir(d);
    if (incomplete)
        log_svc_warn("qmgr", "removed %zu incomplete queue file(s): cut short by a crash "
                     "before their 250 was sent", incomplete);
    if (n)
        log_svc("qmgr", "%zu message(s) in the queue", n);
    return 0;
}

void qmgr_message_accepted(struct qmgr *q, const char *qid, struct spool_envelope *env)
{
    if (env == NULL || dict_get(&q->msgs, qid)) {
        qmgr_message_queued(q, qid);
        return;
    }
    struct qmsg *m = xcalloc(1, sizeof(*m));
    m->env = *env;                      /* take ownership of its strings */
    memset(env, 0, sizeof(*env));
    str_copy(m->qid, qid, sizeof(m->qid));
    snprintf(m->path, sizeof(m->path), "%s/%s", q->queue_dir, qid);
    snprintf(m->state_path, sizeof(m->state_path), "%s/%s", q->state_dir, qid);
    qstate_init(&m->st, m->env.nrcpt);  /* new: no state file yet */
    gettimeofday(&m->loaded, NULL);
    dict_set(&q->msgs, qid, m);
    qmgr_schedule_msg(q, m);
}

void qmgr_message_queued(struct qmgr *q, const char *qid)
{
    struct qmsg *m = dict_get(&q->msgs, qid);
    if (m == NULL)
        m = msg_load(q, qid, NULL);
    if (m)
        qmgr_schedule_msg(q, m);
}

size_t qmgr_busy(const struct qmgr *q)
{
    return q->active_jobs + q->dsn_pending;
}

struct qmgr *qmgr_new(struct event_base *base, struct config **cfgp, struct spool *sp,
                      const char *spool_dir, char *err, size_t errlen)
{
    struct qmgr *q = xcalloc(1, sizeof(*q));
    q->base = base;
    q->cfgp = cfgp;
    q->spool = sp;
    snprintf(q->queue_dir, sizeof(q->queue_dir), "%s/queue", spool_dir);
    snprintf(q->state_dir, sizeof(q->state_dir), "%s/state", spool_dir);
    if (mkdir(q->state_dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", q->state_dir, strerror(errno));
        free(q);
        return NULL;
    }
    dict_init(&q->msgs, msg_free);
    dict_init(&q->dests, free);
    q->wq = workq_new(base, 2);
    the_qmgr = q;
    dict_init(&q->mxcache, free);
    q->dns = dns_new(base, (*cfgp)->dns_resolver, 0, err, errlen);
    if (q->dns == NULL) {
        qmgr_free(q);
        return NULL;
    }
    struct delivery_env env = {base, q->wq, q->dns, current_config, qmgr_next_job};
    delivery_init(&env);
    if ((*cfgp)->reply_rules[0] &&
        classify_load((*cfgp)->reply_rules, err, errlen) < 0) {
        qmgr_free(q);
        return NULL;
    }
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    smtp_tls_cache_open(spool_dir);
    scan_queue(q);
    q->ctl = qmgr_ctl_listen(q, spool_dir);
    q->tick = event_new(base, -1, EV_PERSIST, tick_cb, q);
    struct timeval tv = {(time_t)(*cfgp)->queue_run_delay, 0};
    if (tv.tv_sec == 0)
        tv.tv_usec = 200000;
    event_add(q->tick, &tv);
    tick_cb(-1, 0, q);
    return q;
}

void qmgr_free(struct qmgr *q)
{
    if (q == NULL)
        return;
    q->stopping = true;
    qmgr_notify_detach(q);
    smtp_client_shutdown();
    if (q->ctl)
        evconnlistener_free(q->ctl);
    if (q->tick)
        event_free(q->tick);
    workq_free(q->wq);
    size_t pos = 0;
    const char *key;
    void *val;
    while (dict_next(&q->dests, &pos, &key, &val)) {
        struct qdest *d = val;
        while (d->head) {
            struct qjob_node *n = d->head;
            d->head = n->next;
            job_free(n->job);
            free(n);
        }
    }
    dict_free(&q->msgs);
    dict_free(&q->dests);
    if (q->dns)
        dns_free(q->dns);
    dict_free(&q->mxcache);
    classify_free();
    if (the_qmgr == q)
        the_qmgr = NULL;
    free(q);
}
