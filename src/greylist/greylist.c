/*
 * greylist.c - the greylisting engine: bypasses and allow lists, pool
 * derivation, store round trip, decision, log line (see greylist.h).
 *
 * A request lives in a map by id from greylist_check() until its callback
 * has run. Pool and store callbacks carry the id and look the request up,
 * so an answer that arrives after a timeout or cancel finds nothing and is
 * dropped. Decisions are delivered from a queue drained by one event, after
 * the callback that made them (so never inside greylist_check()) but in the
 * same loop pass. Most decisions (a cached pool, LMDB) are made inside
 * greylist_check(); only one that waits for DNS or Redis gets a timer, which
 * bounds it (greylist_timeout).
 */
#include "greylist/greylist.h"
#include "greylist/normalize.h"
#include "greylist/store.h"
#include "greylist/triplet.h"
#include "lib/dict.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/table.h"
#include "lib/xalloc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GL_POOL_CACHE_SECONDS 60

/* Static allow lists: words are entries, or absolute paths of table files
 * whose keys are entries. */
struct gl_allow {
    struct netlist clients;
    struct dict senders;          /* address, domain or @domain */
    struct dict recipients;
    struct dict pools;
};

struct gl_settings {
    struct triplet_params tp;
    uint64_t max_age;
    uint64_t timeout;
    unsigned v4prefix, v6prefix;
    bool fail_closed;
    struct gl_allow allow;
};

struct greylist {
    struct event_base *base;
    struct store *store;
    struct pool_ctx *pool;
    struct dns_iface dns;
    struct gl_settings set;
    struct dict reqs;             /* id -> struct gl_req * */
    uint64_t next_id;
    struct event *done_ev;        /* drains the queue of made decisions */
    struct gl_req *done_head, *done_tail;
    bool closing;
};

struct gl_req {
    uint64_t id;
    struct greylist *gl;
    greylist_cb cb;
    void *arg;
    struct event *timer;          /* greylist_timeout; NULL until waiting */
    struct gl_req *done_next;     /* in the delivery queue once done */
    bool done;
    uint64_t pool_op;
    struct netaddr addr;
    char ip[64];
    char client_name[256];
    char qid[40];
    char helo[256];
    char sender[NORM_ADDR_MAX];   /* as given */
    char nsender[NORM_ADDR_MAX];  /* normalised */
    char sdomain[NORM_ADDR_MAX];
    char rcpt[NORM_ADDR_MAX];
    char kt[TRIPLET_KEY_LEN + 1]; /* store keys: triplet, auto-allow */
    char ka[TRIPLET_KEY_LEN + 1];
    struct greylist_decision d;
};

/* ---------------------------------------------------------------------- */
/* allow lists                                                             */

static void gl_allow_free(struct gl_allow *a)
{
    netlist_free(&a->clients);
    dict_free(&a->senders);
    dict_free(&a->recipients);
    dict_free(&a->pools);
}

static int gl_allow_word(struct gl_allow *a, struct dict *d, bool cidr, const char *w,
                         char *err, size_t errlen)
{
    if (!cidr) {
        char low[NORM_ADDR_MAX];
        str_copy(low, w, sizeof(low));
        dict_set(d, str_lower(low), (void *)1);
        return 0;
    }
    struct netmask m;
    if (netmask_parse(w, &m) < 0) {
        snprintf(err, errlen, "greylist_allow_clients: bad network '%s'; fix: use "
                 "address/prefix such as 192.0.2.0/24", w);
        return -1;
    }
    a->clients.v = xgrow(a->clients.v, &a->clients.cap, a->clients.n + 1,
                         sizeof(*a->clients.v));
    a->clients.v[a->clients.n++] = m;
    return 0;
}

/* Load one list: each word an entry, or a table file of entries. */
static int gl_allow_list(struct gl_allow *a, struct dict *d, bool cidr, const char *text,
                         char *err, size_t errlen)
{
    char *copy = xstrdup(text), *save = NULL;
    int rc = 0;
    for (char *w = strtok_r(copy, ", \t", &save); w && rc == 0;
         w = strtok_r(NULL, ", \t", &save)) {
        if (w[0] != '/') {
            rc = gl_allow_word(a, d, cidr, w, err, errlen);
            continue;
        }
        struct table *t = table_load(w, err, errlen);
        if (t == NULL) {
            rc = -1;
            break;
        }
        size_t pos = 0;
        const char *key;
        while (rc == 0 && dict_next(&t->map, &pos, &key, NULL))
            rc = gl_allow_word(a, d, cidr, key, err, errlen);
        table_free(t);
    }
    free(copy);
    return rc;
}

static int gl_settings_load(struct gl_settings *s, const struct config *cfg, char *err,
                            size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->tp.delay = cfg->greylist_delay;
    s->tp.window = cfg->greylist_window;
    s->tp.aa_interval = cfg->greylist_auto_allow_interval;
    s->tp.aa_count = cfg->greylist_auto_allow_count;
    s->max_age = cfg->greylist_max_age;
    s->timeout = cfg->greylist_timeout;
    s->v4prefix = (unsigned)cfg->greylist_ipv4_prefix;
    s->v6prefix = (unsigned)cfg->greylist_ipv6_prefix;
    s->fail_closed = strcmp(cfg->greylist_failure, "closed") == 0;
    struct gl_allow *a = &s->allow;
    dict_init(&a->senders, NULL);
    dict_init(&a->recipients, NULL);
    dict_init(&a->pools, NULL);
    if (gl_allow_list(a, NULL, true, cfg->greylist_allow_clients, err, errlen) < 0 ||
        gl_allow_list(a, &a->senders, false, cfg->greylist_allow_senders, err, errlen) < 0 ||
        gl_allow_list(a, &a->recipients, false, cfg->greylist_allow_recipients, err,
                      errlen) < 0 ||
        gl_allow_list(a, &a->pools, false, cfg->greylist_allow_pools, err, errlen) < 0) {
        gl_allow_free(a);
        return -1;
    }
    return 0;
}

/* An address matches by itself, "@domain", its domain or a parent. */
static bool gl_allow_addr(const struct dict *d, const char *addr)
{
    char low[NORM_ADDR_MAX], at[NORM_ADDR_MAX + 1];
    if (dict_count(d) == 0 || *addr == '\0')
        return false;
    str_copy(low, addr, sizeof(low));
    str_lower(low);
    if (dict_get(d, low))
        return true;
    const char *dom = strrchr(low, '@');
    if (dom == NULL)
        return false;
    snprintf(at, sizeof(at), "%s", dom);
    if (dict_get(d, at))
        return true;
    for (const char *p = dom + 1; p && *p; p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL)
        if (dict_get(d, p))
            return true;
    return false;
}

/* ---------------------------------------------------------------------- */
/* life cycle                                                              */

static void gl_done_cb(evutil_socket_t fd, short what, void *arg);

struct greylist *greylist_new_with_store(const struct config *cfg, struct event_base *base,
                                         const struct dns_iface *dns, struct store *st,
                                         char *err, size_t errlen)
{
    struct greylist *gl = xcalloc(1, sizeof(*gl));
    if (gl_settings_load(&gl->set, cfg, err, errlen) < 0) {
        store_close(st);
        free(gl);
        return NULL;
    }
    gl->base = base;
    gl->store = st;
    if (dns)
        gl->dns = *dns;
    gl->pool = pool_ctx_new(&gl->dns, gl->set.v4prefix, gl->set.v6prefix,
                            cfg->myhostname, GL_POOL_CACHE_SECONDS);
    dict_init(&gl->reqs, NULL);
    gl->done_ev = event_new(base, -1, 0, gl_done_cb, gl);
    return gl;
}

struct greylist *greylist_new(const struct config *cfg, struct event_base *base,
                              const struct dns_iface *dns, char *err, size_t errlen)
{
    struct store *st = store_open(cfg->greylist_store, cfg->spool_dir, base, err, errlen);
    if (st == NULL)
        return NULL;
    return greylist_new_with_store(cfg, base, dns, st, err, errlen);
}

static void gl_req_free(struct gl_req *r)
{
    if (r->pool_op)
        pool_cancel(r->gl->pool, r->pool_op);
    if (r->timer)
        event_free(r->timer);
    free(r);
}

void greylist_free(struct greylist *gl)
{
    if (gl == NULL)
        return;
    gl->closing = true;
    store_close(gl->store);       /* Redis calls back pending reads: dropped */
    size_t pos = 0;
    const char *key;
    void *val;
    while (dict_next(&gl->reqs, &pos, &key, &val))
        gl_req_free(val);
    dict_free(&gl->reqs);
    if (gl->done_ev)
        event_free(gl->done_ev);
    pool_ctx_free(gl->pool);
    gl_allow_free(&gl->set.allow);
    free(gl);
}

int greylist_reload(struct greylist *gl, const struct config *cfg, char *err, size_t errlen)
{
    struct gl_settings s;
    if (gl_settings_load(&s, cfg, err, errlen) < 0)
        return -1;
    gl_allow_free(&gl->set.allow);
    gl->set = s;
    pool_set_prefixes(gl->pool, s.v4prefix, s.v6prefix);
    return 0;
}

size_t greylist_pending(const struct greylist *gl)
{
    return dict_count(&gl->reqs);
}

const char *greylist_action_str(enum greylist_action a)
{
    static const char *const names[] = {"accept", "defer", "tempfail"};
    return names[a];
}

void greylist_header(unsigned delayed, const char *host, char *out, size_t len)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    snprintf(out, len, "X-Greylist: delayed %u seconds by sluice at %s; %s", delayed,
             host, date);
}

/* ---------------------------------------------------------------------- */
/* completion                                                              */

static void gl_key(uint64_t id, char key[24])
{
    str_from_u64(id, key);
}

static struct gl_req *gl_find(struct greylist *gl, uint64_t id)
{
    char key[24];
    gl_key(id, key);
    return dict_get(&gl->reqs, key);
}

static void gl_log(struct gl_req *r, bool warn, const char *why)
{
    const struct greylist_decision *d = &r->d;
    char extra[256] = "";
    if (why)
        snprintf(extra, sizeof(extra), ", problem=%s", why);
    log_event(warn ? LOG_LVL_WARN : LOG_LVL_INFO, "greylist", NULL, 0,
              "%s: action=%s, reason=%s, pool=%s, pool_kind=%s, spf=%s, client=%s[%s], "
              "from=<%s>, to=<%s>, delay=%u, retry_in=%u%s", r->qid,
              greylist_action_str(d->action), d->reason, d->pool[0] ? d->pool : "-",
              pool_kind_str(d->pool_kind), d->pool_kind ? spf_result_str(d->spf) : "-",
              r->client_name, r->ip, r->sender, r->rcpt,
              d->delayed, d->retry_in, extra);
}

/* The decision is made: queue it for delivery after the current callback,
 * in this loop pass (no extra poll). */
static void gl_complete(struct gl_req *r, enum greylist_action a, const char *reason)
{
    struct greylist *gl = r->gl;
    r->d.action = a;
    r->d.reason = reason;
    r->done = true;
    if (r->timer)
        evtimer_del(r->timer);
    r->done_next = NULL;
    if (gl->done_tail)
        gl->done_tail->done_next = r;
    else
        gl->done_head = r;
    gl->done_tail = r;
    if (gl->done_ev)
        event_active(gl->done_ev, EV_TIMEOUT, 0);
}

/* Take r out of the delivery queue (a cancel of a made decision). */
static void gl_unqueue(struct greylist *gl, struct gl_req *r)
{
    struct gl_req *prev = NULL;
    for (struct gl_req *p = gl->done_head; p; prev = p, p = p->done_next) {
        if (p != r)
            continue;
        if (prev)
            prev->done_next = r->done_next;
        else
            gl->done_head = r->done_next;
        if (gl->done_tail == r)
            gl->done_tail = prev;
        return;
    }
}

/* DNS or the store failed: greylist_failure decides. */
static void gl_fail(struct gl_req *r, const char *why)
{
    bool closed = r->gl->set.fail_closed;
    r->d.action = closed ? GREYLIST_TEMPFAIL : GREYLIST_ACCEPT;
    r->d.reason = closed ? "unavailable (fail closed)" : "unavailable (fail open)";
    gl_log(r, true, why);
    gl_complete(r, r->d.action, r->d.reason);
}

static void gl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gl_req *r = arg;
    if (!r->done)
        gl_fail(r, "decision timed out");   /* queued for delivery */
}

/* Deliver the made decisions. Callbacks may start (and, from the cache,
 * make) new ones: those join the queue and run in this pass too. */
static void gl_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct greylist *gl = arg;
    struct gl_req *r;
    while ((r = gl->done_head) != NULL) {
        gl->done_head = r->done_next;
        if (gl->done_head == NULL)
            gl->done_tail = NULL;
        char key[24];
        gl_key(r->id, key);
        dict_del(&gl->reqs, key);
        r->cb(r->arg, &r->d);
        gl_req_free(r);
    }
}

/* ---------------------------------------------------------------------- */
/* the steps                                                               */

/* A store read in flight: Redis answers cannot be cancelled, so the
 * callback finds its request by id (gone or done: dropped). */
struct gl_op {
    struct greylist *gl;
    uint64_t id;
};

static void gl_store_done(void *arg, enum store_status st, char *const *vals, size_t n)
{
    struct gl_op *op = arg;
    struct greylist *gl = op->gl;
    struct gl_req *r = gl->closing ? NULL : gl_find(gl, op->id);
    free(op);
    if (r == NULL || r->done)
        return;
    if (st != STORE_OK || n != 2) {
        gl_fail(r, "greylist store unavailable");
        return;
    }
    struct triplet t;
    struct triplet_aa aa;
    bool have_t = vals[0] && triplet_parse(vals[0], &t) == 0;
    bool have_aa = vals[1] && triplet_aa_parse(vals[1], &aa) == 0;
    if (!have_t)
        memset(&t, 0, sizeof(t));
    if (!have_aa)
        memset(&aa, 0, sizeof(aa));
    str_copy(t.pool, r->d.pool, sizeof(t.pool));
    str_copy(t.sender, r->nsender, sizeof(t.sender));
    str_copy(t.rcpt, r->rcpt, sizeof(t.rcpt));
    str_copy(aa.pool, r->d.pool, sizeof(aa.pool));
    str_copy(aa.domain, r->sdomain, sizeof(aa.domain));
    struct triplet_verdict v;
    triplet_decide(&r->gl->set.tp, &t, have_t, &aa, have_aa, r->d.pool_kind,
                   triplet_ip_hash(r->ip), (uint64_t)time(NULL), &v);
    char val[2048];
    if (v.write_t) {
        triplet_format(&t, val, sizeof(val));
        store_put(r->gl->store, r->kt, val, r->gl->set.max_age);
    }
    if (v.write_aa) {
        triplet_aa_format(&aa, val, sizeof(val));
        store_put(r->gl->store, r->ka, val, r->gl->set.max_age);
    }
    r->d.delayed = v.delayed;
    r->d.retry_in = v.retry_in;
    r->d.reason = v.reason;
    r->d.action = v.action == TRIPLET_ACCEPT ? GREYLIST_ACCEPT : GREYLIST_DEFER;
    gl_log(r, false, NULL);
    gl_complete(r, r->d.action, r->d.reason);
}

static void gl_pool_done(void *arg, const struct pool_id *p)
{
    /* arg is the request: safe, as a request cancels its derivation before
     * it is freed */
    struct gl_req *r = arg;
    struct greylist *gl = r->gl;
    r->pool_op = 0;
    if (r->done)
        return;
    r->d.pool_kind = p->kind;
    r->d.spf = p->spf;
    str_copy(r->d.pool, p->key, sizeof(r->d.pool));
    if (p->dns_failed) {
        gl_fail(r, "DNS unavailable");
        return;
    }
    if (dict_get(&gl->set.allow.pools, p->key)) {
        r->d.action = GREYLIST_ACCEPT;
        r->d.reason = "allow-pool";
        gl_log(r, false, NULL);
        gl_complete(r, GREYLIST_ACCEPT, "allow-pool");
        return;
    }
    triplet_key(p->key, r->nsender, r->rcpt, r->kt);
    triplet_aa_key(p->key, r->sdomain, r->ka);
    const char *keys[2] = {r->kt, r->ka};
    struct gl_op *op = xmalloc(sizeof(*op));
    op->gl = gl;
    op->id = r->id;
    store_mget(gl->store, keys, 2, gl_store_done, op);
}

/* Bypasses that need no DNS: the reason, or NULL. */
static const char *gl_bypass(struct greylist *gl, const struct greylist_request *q)
{
    if (q->authenticated)
        return "authenticated";
    if (q->trusted)
        return "mynetworks";
    if (netlist_match(&gl->set.allow.clients, &q->addr))
        return "allow-client";
    if (gl_allow_addr(&gl->set.allow.senders, q->sender ? q->sender : ""))
        return "allow-sender";
    if (gl_allow_addr(&gl->set.allow.recipients, q->rcpt ? q->rcpt : ""))
        return "allow-recipient";
    return NULL;
}

static struct gl_req *gl_req_new(struct greylist *gl, const struct greylist_request *q,
                                 greylist_cb cb, void *arg)
{
    struct gl_req *r = xcalloc(1, sizeof(*r));
    r->id = ++gl->next_id;
    r->gl = gl;
    r->cb = cb;
    r->arg = arg;
    r->addr = q->addr;
    netaddr_str(&q->addr, r->ip, sizeof(r->ip));
    str_copy(r->client_name, q->client_name ? q->client_name : "unknown",
             sizeof(r->client_name));
    str_copy(r->qid, q->queue_id && *q->queue_id ? q->queue_id : "NOQUEUE", sizeof(r->qid));
    str_copy(r->helo, q->helo ? q->helo : "", sizeof(r->helo));
    str_copy(r->sender, q->sender ? q->sender : "", sizeof(r->sender));
    str_copy(r->rcpt, q->rcpt ? q->rcpt : "", sizeof(r->rcpt));
    str_lower(r->rcpt);
    norm_sender(r->sender, r->nsender, sizeof(r->nsender));
    norm_domain_of(r->nsender, r->sdomain, sizeof(r->sdomain));
    char key[24];
    gl_key(r->id, key);
    dict_set(&gl->reqs, key, r);
    return r;
}

uint64_t greylist_check(struct greylist *gl, const struct greylist_request *q,
                        greylist_cb cb, void *arg)
{
    struct gl_req *r = gl_req_new(gl, q, cb, arg);
    uint64_t id = r->id;
    const char *bypass = gl_bypass(gl, q);
    if (bypass) {
        r->d.action = GREYLIST_ACCEPT;
        r->d.reason = bypass;
        gl_log(r, false, NULL);
        gl_complete(r, GREYLIST_ACCEPT, bypass);
        return id;
    }
    /* a cached pool answers at once, and LMDB too: then the decision is
     * already queued, and r stays valid until the queue is drained */
    uint64_t op = pool_derive(gl->pool, &r->addr, r->sender, r->helo, gl_pool_done, r);
    if (!r->done) {
        /* waiting for DNS or Redis: keep the lookup (to cancel it) and
         * bound the wait */
        r->pool_op = op;
        struct timeval tv = {(time_t)gl->set.timeout, 0};
        r->timer = evtimer_new(gl->base, gl_timer_cb, r);
        evtimer_add(r->timer, &tv);
    }
    return id;
}

void greylist_cancel(struct greylist *gl, uint64_t id)
{
    struct gl_req *r = gl_find(gl, id);
    if (r == NULL)
        return;
    char key[24];
    gl_key(id, key);
    dict_del(&gl->reqs, key);
    if (r->done)
        gl_unqueue(gl, r);
    gl_req_free(r);
}
