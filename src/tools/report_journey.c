/*
 * report_journey.c - message journeys: every line that names a queue id is
 * joined into one record per message (arrival, client, sender, size,
 * message-id, each recipient's delivery attempts). When the MTA says the
 * message is done (Postfix "removed", Exim "Completed", Sendmail's last
 * recipient) the record is accounted and freed, so memory is bounded by
 * the messages still open.
 *
 * A message that a content filter re-injects gets a new queue id; it is
 * joined to its parent by message-id (and by "queued as QID" in the
 * parent's reply), so journey views count it once.
 */
#include "tools/report.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"
#include "mail/provider.h"

#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <strings.h>

#define RPJ_MAX_ATTEMPTS 4096    /* per message; more are counted only */
#define RPJ_TRACE_MAX (1u << 20) /* raw lines kept per traced message */
#define RPJ_RCPT_MAX 320         /* one recipient of a delivery line, with NUL */
enum { RPJ_PF_QID = 1, RPJ_PF_RELAY = 2, RPJ_PF_RCPT = 4 };

static void close_msg(struct rp_ctx *c, struct rp_msg *m);
static bool trace_on(const struct rp_ctx *c);

void rpj_init(struct rp_ctx *c)
{
    dict_init(&c->by_msgid, free);
    dict_init(&c->trace_ids, NULL);
}

/* ---- interned names ----------------------------------------------------
 * Relays, recipients, senders and recipient domains repeat endlessly: one
 * record each, found by one lookup, holding what every use of the name
 * needs (its split form, provider, and the statistics entries it feeds,
 * filled in when they are first used: the dicts fill in the same order as
 * without the records). */

static struct rph_head *intern_get(struct rph *t, const char *key, size_t len,
                                   uint64_t *h)
{
    *h = rph_hash(key, len);
    return rph_get(t, key, len, *h);
}

static bool is_loopback(const char *ip, const char *host);

static struct rp_relay *intern_relay_h(struct rp_ctx *c, const char *relay, size_t len,
                                       uint64_t h)
{
    struct rp_relay *r = (struct rp_relay *)rph_get(&c->relays, relay, len, h);
    if (r)
        return r;
    r = rpa_record(&c->arena, sizeof(*r), relay, len);
    char host[256], ip[64];
    rpp_split_client(relay, host, sizeof(host), ip, sizeof(ip));
    r->host = rpa_strndup(&c->arena, host, strlen(host));
    r->ip = rpa_strndup(&c->arena, ip, strlen(ip));
    r->prov = provider_from_host(host);
    r->loopback = is_loopback(ip, host);
    rph_put(&c->relays, h, &r->k);
    return r;
}

static struct rp_relay *intern_relay(struct rp_ctx *c, const char *relay)
{
    size_t len = strlen(relay);
    return intern_relay_h(c, relay, len, rph_hash(relay, len));
}

static struct rp_domrec *intern_dom(struct rp_ctx *c, const char *dom)
{
    size_t len = strlen(dom);
    uint64_t h;
    struct rp_domrec *d = (struct rp_domrec *)intern_get(&c->dom_t, dom, len, &h);
    if (d)
        return d;
    d = rpa_record(&c->arena, sizeof(*d), dom, len);
    d->prov = provider_from_domain(dom);
    if (d->prov == NULL)
        d->prov = "other";
    rph_put(&c->dom_t, h, &d->k);
    return d;
}

/* addr normalised (rps_norm_addr), kept in the arena with the records. */
static const char *arena_norm_addr(struct rp_ctx *c, const char *addr)
{
    char norm[512];
    rps_norm_addr(addr, norm, sizeof(norm));
    return rpa_strndup(&c->arena, norm, strlen(norm));
}

static struct rp_rcpt *intern_rcpt(struct rp_ctx *c, const char *addr, size_t len,
                                   uint64_t h)
{
    struct rp_rcpt *r = (struct rp_rcpt *)rph_get(&c->rcpt_t, addr, len, h);
    if (r)
        return r;
    r = rpa_record(&c->arena, sizeof(*r), addr, len);
    r->norm = arena_norm_addr(c, addr);
    const char *at = strchr(r->norm, '@');
    r->ndom = at ? at + 1 : r->norm;
    r->dom = intern_dom(c, rps_domain_of(addr));
    /* the greylisting key ends with the lower-cased address (its part
     * after the last '|'): a message can only match a pending triplet
     * with the same ending */
    const char *bar = strrchr(addr, '|');
    const char *g = bar ? bar + 1 : addr;
    char *gl = rpa_strndup(&c->arena, g, strlen(g));
    str_lower(gl);
    r->grey = gl;
    r->grey_len = (uint32_t)strlen(gl);
    r->grey_h = rph_hash(gl, r->grey_len);
    rph_put(&c->rcpt_t, h, &r->k);
    return r;
}

static struct rp_sender *intern_sender(struct rp_ctx *c, const char *addr)
{
    size_t len = strlen(addr);
    uint64_t h;
    struct rp_sender *r = (struct rp_sender *)intern_get(&c->sender_t, addr, len, &h);
    if (r)
        return r;
    r = rpa_record(&c->arena, sizeof(*r), addr, len);
    r->norm = arena_norm_addr(c, addr);
    const char *at = strchr(r->norm, '@');
    r->has_dom = at && at[1];
    rph_put(&c->sender_t, h, &r->k);
    return r;
}

/* ---- message records ---------------------------------------------------- */

/* Short strings of a message go into its own buffer: no malloc each. */
static char *msg_strdup(struct rp_msg *m, const char *s)
{
    size_t n = strlen(s) + 1;
    if (n <= sizeof(m->sbuf) - m->sused) {
        char *d = m->sbuf + m->sused;
        memcpy(d, s, n);
        m->sused += n;
        return d;
    }
    return xstrdup(s);
}

static void msg_strfree(struct rp_msg *m, char *s)
{
    uintptr_t p = (uintptr_t)s, b = (uintptr_t)m->sbuf;
    if (s && (p < b || p >= b + sizeof(m->sbuf)))
        free(s);
}

/* Free what a message owns, except its arrays. */
static void msg_clear(struct rp_msg *m)
{
    if (m->qid != m->qid_buf)
        free(m->qid);
    msg_strfree(m, m->msgid);
    msg_strfree(m, m->client);
    msg_strfree(m, m->parent);
    msg_strfree(m, m->notice);
    for (size_t i = 0; i < m->natt; i++)
        free(m->att[i].reply);
    buf_free(&m->lines);
    m->qid = m->qid_buf;
    m->msgid = m->client = m->parent = m->notice = NULL;
    m->natt = m->nrcpts = 0;
}

void rpj_msg_free(struct rp_msg *m)
{
    if (m == NULL)
        return;
    msg_clear(m);
    free(m->rcpts);
    free(m->att);
    free(m);
}

/* A closed message goes back to the spares with its arrays. */
static void msg_release(struct rp_ctx *c, struct rp_msg *m)
{
    if (c->nspare == sizeof(c->spare) / sizeof(c->spare[0])) {
        rpj_msg_free(m);
        return;
    }
    msg_clear(m);
    c->spare[c->nspare++] = m;
}

static struct rp_msg *msg_new(struct rp_ctx *c)
{
    if (c->nspare == 0)
        return xcalloc(1, sizeof(struct rp_msg));
    struct rp_msg *m = c->spare[--c->nspare];
    struct rp_rcpt **rcpts = m->rcpts;
    struct rp_attempt *att = m->att;
    size_t rcpt_cap = m->rcpt_cap, att_cap = m->att_cap;
    memset(m, 0, offsetof(struct rp_msg, sbuf));
    m->rcpts = rcpts;
    m->rcpt_cap = rcpt_cap;
    m->att = att;
    m->att_cap = att_cap;
    return m;
}

static int seq_cmp(const void *x, const void *y)
{
    const struct rp_msg *a = *(struct rp_msg *const *)x, *b = *(struct rp_msg *const *)y;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* The open messages in the order they first appeared (malloc'd, *n). */
static struct rp_msg **open_list(struct rp_ctx *c, size_t *n)
{
    struct rp_msg **all = xcalloc(c->open.n + 1, sizeof(*all));
    size_t k = 0;
    for (size_t i = 0; i < c->open.cap; i++)
        if (c->open.v[i].rec)
            all[k++] = (struct rp_msg *)c->open.v[i].rec;
    qsort(all, k, sizeof(*all), seq_cmp);
    *n = k;
    return all;
}

static struct rp_msg *find_msg(struct rp_ctx *c, const char *qid)
{
    size_t n = strlen(qid);
    return (struct rp_msg *)rph_get(&c->open, qid, n, rph_hash(qid, n));
}

void rpj_free(struct rp_ctx *c)
{
    for (size_t i = 0; i < c->open.cap; i++)
        if (c->open.v[i].rec)
            rpj_msg_free((struct rp_msg *)c->open.v[i].rec);
    rph_free(&c->open);
    for (size_t i = 0; i < c->nspare; i++)
        rpj_msg_free(c->spare[i]);
    c->nspare = 0;
    dict_free(&c->by_msgid);
    dict_free(&c->trace_ids);
    rph_free(&c->relays);
    rph_free(&c->rcpt_t);
    rph_free(&c->sender_t);
    rph_free(&c->dom_t);
    rpa_free(&c->arena);
    for (size_t i = 0; i < c->ntraced; i++)
        rpj_msg_free(c->traced[i]);
    free(c->traced);
}

static bool trace_on(const struct rp_ctx *c)
{
    return c->o && c->o->trace != NULL;
}

/* Does this message belong to the --trace target? */
static bool is_traced(struct rp_ctx *c, const struct rp_msg *m)
{
    if (!trace_on(c))
        return false;
    const char *t = c->o->trace;
    size_t tl = strlen(t);
    if (tl > 2 && t[0] == '<' && t[tl - 1] == '>') {
        t++;
        tl -= 2;
    }
    if (strcmp(m->qid, t) == 0 || dict_get(&c->trace_ids, m->qid) != NULL)
        return true;
    return m->msgid && strlen(m->msgid) == tl && strncmp(m->msgid, t, tl) == 0;
}

static void trace_link(struct rp_ctx *c, const char *qid)
{
    if (qid && *qid)
        dict_set(&c->trace_ids, qid, (void *)1);
}

static struct rp_msg *get_msg(struct rp_ctx *c, const struct rp_ev *e)
{
    const char *qid = e->qid;
    int64_t ts = e->ts;
    size_t n;
    uint64_t h;
    if (e->pf & RPJ_PF_QID) {
        n = e->qid_len;
        h = e->qid_h;
    } else {
        n = strlen(qid);
        h = rph_hash(qid, n);
    }
    struct rp_msg *m = (struct rp_msg *)rph_get(&c->open, qid, n, h);
    if (m)
        return m;
    m = msg_new(c);
    if (n < sizeof(m->qid_buf)) {
        memcpy(m->qid_buf, qid, n + 1);
        m->qid = m->qid_buf;
    } else {
        m->qid = xstrdup(qid);
    }
    m->k.key = m->qid;
    m->k.len = (uint32_t)n;
    m->qid_h = h;
    m->seq = c->msg_seq++;
    m->first_ts = m->last_ts = ts;
    buf_init(&m->lines, RPJ_TRACE_MAX);
    rph_put(&c->open, h, &m->k);
    if (c->open.n > c->open_peak)
        c->open_peak = c->open.n;
    return m;
}

static bool is_loopback(const char *ip, const char *host)
{
    return (ip && (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0)) ||
           (host && strcmp(host, "localhost") == 0);
}

/* ---- arrival ---------------------------------------------------------- */

static void set_sender(struct rp_ctx *c, struct rp_msg *m, const struct rp_ev *e)
{
    if (m->has_size || e->addr == NULL)
        return;
    m->srec = intern_sender(c, e->addr);
    m->sender = m->srec->k.key;
    m->size = e->size;
    m->has_size = e->has_size;
    m->nrcpt = e->nrcpt;
    m->sender_counted = m->received;
}

/* The message-id index exists only once a message has come from a
 * loopback client (a content filter's re-injection): logs without a filter
 * never pay for it. When it starts, it indexes the messages already open. */
static void index_msgids(struct rp_ctx *c)
{
    c->msgid_index = true;
    size_t n;
    struct rp_msg **all = open_list(c, &n);
    for (size_t i = 0; i < n; i++) {
        struct rp_msg *o = all[i];
        if (o->msgid && dict_get(&c->by_msgid, o->msgid) == NULL)
            dict_set(&c->by_msgid, o->msgid, xstrdup(o->qid));
    }
    free(all);
}

static void join_parent(struct rp_ctx *c, struct rp_msg *m)
{
    bool loop = is_loopback(m->client_ip, NULL);
    if (!c->msgid_index) {
        if (!loop)
            return;
        index_msgids(c);
    }
    char *pq = dict_get(&c->by_msgid, m->msgid);
    if (pq == NULL || strcmp(pq, m->qid) == 0) {
        if (pq == NULL)
            dict_set(&c->by_msgid, m->msgid, xstrdup(m->qid));
        return;
    }
    struct rp_msg *p = find_msg(c, pq);
    if (p == NULL || p == m || m->is_child || !loop)
        return;
    m->is_child = true;
    m->parent = msg_strdup(m, p->qid);
    m->root_arrival = p->root_arrival ? p->root_arrival : p->first_ts;
    p->has_child = true;
    c->st.m.reinjected++;
    if (p->traced || is_traced(c, p)) {
        trace_link(c, m->qid);
        p->traced = true;
    }
}

static void on_arrival(struct rp_ctx *c, struct rp_msg *m, const struct rp_ev *e)
{
    if (!m->received) {
        m->received = true;
        m->pickup = e->kind == EV_PICKUP;
        m->rcvd_ts = e->ts;
        m->arrival = e->ts;
        if (!m->is_child)
            m->root_arrival = e->ts;
        if (e->client) {
            msg_strfree(m, m->client);
            m->client = msg_strdup(m, e->client);
            str_copy(m->client_ip, e->ip, sizeof(m->client_ip));
        }
    }
    set_sender(c, m, e);
    if (e->msgid && m->msgid == NULL) {
        m->msgid = msg_strdup(m, e->msgid);
        join_parent(c, m);
    }
}

/* ---- deliveries ------------------------------------------------------- */

static uint32_t rcpt_index(struct rp_ctx *c, struct rp_msg *m, const char *addr,
                           size_t len, uint64_t h)
{
    struct rp_rcpt *r = intern_rcpt(c, addr, len, h);
    for (size_t i = 0; i < m->nrcpts; i++)
        if (m->rcpts[i] == r)
            return (uint32_t)i;
    m->rcpts = xgrow(m->rcpts, &m->rcpt_cap, m->nrcpts + 1, sizeof(*m->rcpts));
    m->rcpts[m->nrcpts] = r;
    return (uint32_t)m->nrcpts++;
}

/* rl: the interned e->relay (NULL when there is none) */
static enum reply_class attempt_class(const struct rp_ev *e, const struct rp_relay *rl)
{
    if (e->status == ST_SENT)
        return RC_UNKNOWN;
    char enh[16] = "";
    int code = classify_parse_reply(e->reply, enh, sizeof(enh));
    if (enh[0] == '\0' && e->dsn)
        str_copy(enh, e->dsn, sizeof(enh));
    return classify_reply(code, enh, e->reply, rl ? rl->host : "");
}

static bool is_handoff(struct rp_ctx *c, struct rp_msg *m, const struct rp_ev *e,
                       const struct rp_relay *rl)
{
    if (e->status != ST_SENT)
        return false;
    if (e->link_qid) {
        struct rp_msg *child = find_msg(c, e->link_qid);
        if (child && child->parent && strcmp(child->parent, m->qid) == 0)
            return true;
    }
    if (!m->has_child || rl == NULL)
        return false;
    return rl->loopback;
}

static void add_attempt(struct rp_ctx *c, struct rp_msg *m, const struct rp_ev *e,
                        struct rp_relay *rl, const char *addr, size_t len, uint64_t h,
                        enum reply_class cls, bool handoff)
{
    if (m->natt >= RPJ_MAX_ATTEMPTS)
        return;
    m->att = xgrow(m->att, &m->att_cap, m->natt + 1, sizeof(*m->att));
    struct rp_attempt *a = &m->att[m->natt++];
    memset(a, 0, sizeof(*a));
    a->ts = e->ts;
    a->rcpt = rcpt_index(c, m, addr, len, h);
    a->status = (uint8_t)e->status;
    a->forwarded = e->forwarded;
    a->size_known = m->has_size;
    a->handoff = handoff;
    a->cls = (uint8_t)cls;
    if (e->has_delay)
        a->delay = (float)e->delay;
    else
        a->delay = (float)(e->ts - (m->arrival ? m->arrival : m->first_ts));
    a->rl = rl ? rl : intern_relay(c, "none");
    a->relay = a->rl->k.key;
    str_copy(a->dsn, e->dsn ? e->dsn : "", sizeof(a->dsn));
    /* a successful reply is only shown by --trace: spare the copy */
    a->reply = (e->status != ST_SENT || trace_on(c)) ? xstrdup(e->reply ? e->reply : "")
                                                      : NULL;
    str_copy(a->svc, e->svc ? e->svc : "", sizeof(a->svc));
    if (e->status == ST_SENT || e->status == ST_BOUNCED)
        m->finals++;
}

static void on_delivery(struct rp_ctx *c, struct rp_msg *m, const struct rp_ev *e,
                        enum rp_fmt fmt)
{
    struct rp_relay *rl = NULL;
    if (e->pf & RPJ_PF_RELAY)
        rl = intern_relay_h(c, e->relay, e->relay_len, e->relay_h);
    else if (e->relay)
        rl = intern_relay(c, e->relay);
    enum reply_class cls = attempt_class(e, rl);
    bool handoff = is_handoff(c, m, e, rl);
    if (e->link_qid && m->traced)
        trace_link(c, e->link_qid);
    /* Sendmail lists several recipients in one line: "<a>,<b>" */
    const char *p = e->addr;
    bool first = true;
    do {
        char one[RPJ_RCPT_MAX];
        size_t n = strcspn(p, ",");
        if (n >= sizeof(one))
            n = sizeof(one) - 1;
        memcpy(one, p, n);
        one[n] = '\0';
        char *a = one;
        if (*a == '<') {
            a++;
            a[strcspn(a, ">")] = '\0';
            n = strlen(a);
        }
        /* rpj_ahead() hashed the first one when it is the whole of one */
        uint64_t h = first && (e->pf & RPJ_PF_RCPT) ? e->rcpt_h : rph_hash(a, n);
        first = false;
        add_attempt(c, m, e, rl, a, n, h, cls, handoff);
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    } while (*p && fmt == RP_FMT_SENDMAIL);
    if (fmt == RP_FMT_SENDMAIL && m->nrcpt > 0 && m->finals >= (uint32_t)m->nrcpt)
        m->removed = true;
}

/* ---- look-ahead ------------------------------------------------------- */

static void pf_slot(const struct rph *t, uint64_t h)
{
    if (t->cap)
        __builtin_prefetch(&t->v[h & (t->cap - 1)]);
}

static void pf_rec(const struct rph *t, uint64_t h)
{
    if (t->cap == 0)
        return;
    const struct rph_slot *s = &t->v[h & (t->cap - 1)];
    if (s->rec) {
        /* the record and its key (interned keys follow their record,
         * a message's queue id is in its first lines) */
        __builtin_prefetch(s->rec);
        __builtin_prefetch((const char *)s->rec + 64);
    }
}

static bool qid_event(enum rp_ev_kind k);

void rpj_ahead(struct rp_ctx *c, struct rp_ev *e)
{
    if (!qid_event(e->kind) || e->qid == NULL)
        return;
    size_t n = strlen(e->qid);
    e->qid_len = (uint32_t)n;
    e->qid_h = rph_hash(e->qid, n);
    e->pf = RPJ_PF_QID;
    pf_slot(&c->open, e->qid_h);
    if (e->kind != EV_DELIVERY)
        return;
    if (e->relay) {
        n = strlen(e->relay);
        e->relay_len = (uint32_t)n;
        e->relay_h = rph_hash(e->relay, n);
        e->pf |= RPJ_PF_RELAY;
        pf_slot(&c->relays, e->relay_h);
    }
    /* the first recipient as on_delivery() cuts it, when that is a plain
     * prefix of the address */
    const char *a = e->addr;
    if (a && a[0] != '<') {
        n = strcspn(a, ",");
        if (n >= RPJ_RCPT_MAX)
            n = RPJ_RCPT_MAX - 1;
        e->rcpt_h = rph_hash(a, n);
        e->pf |= RPJ_PF_RCPT;
        pf_slot(&c->rcpt_t, e->rcpt_h);
    }
}

void rpj_ahead2(struct rp_ctx *c, const struct rp_ev *e)
{
    if (e->pf & RPJ_PF_QID)
        pf_rec(&c->open, e->qid_h);
    if (e->pf & RPJ_PF_RELAY)
        pf_rec(&c->relays, e->relay_h);
    if (e->pf & RPJ_PF_RCPT)
        pf_rec(&c->rcpt_t, e->rcpt_h);
}

/* ---- dispatch --------------------------------------------------------- */

static bool qid_event(enum rp_ev_kind k)
{
    switch (k) {
    case EV_CLIENT: case EV_PICKUP: case EV_MSGID: case EV_QUEUED:
    case EV_DELIVERY: case EV_REMOVED: case EV_EXPIRED: case EV_NOTICE:
        return true;
    default:
        return false;
    }
}

/* TLS handshakes, on the journey thread (filters as for line events). */
static void tls_event(struct rp_ctx *c, const struct rp_ev *e)
{
    const struct rp_opts *o = c->o;
    if (o->client && !rpv_client_match(o->client, e->host, e->ip))
        return;
    if (o->domain || o->provider)
        return;
    rps_tls(&c->st, e);
}

void rpj_line_event(struct rp_ctx *c, struct rp_ev *e)
{
    struct rp_stats *s = &c->lst;
    const struct rp_opts *o = c->o;
    if (o->client && !rpv_client_match(o->client, e->host, e->ip))
        return;
    if (o->domain || o->provider) {
        if (e->kind != EV_REJECT || o->provider)
            return;
        if (!rpv_domain_match(o->domain, e->to) && !rpv_domain_match(o->domain, e->from))
            return;
    }
    switch (e->kind) {
    case EV_REJECT:
        rps_reject(s, e);
        break;
    case EV_TLS_OK:
    case EV_TLS_FAIL:
        rps_tls(s, e);
        break;
    default:
        rps_simple(s, e);
        break;
    }
}

/* TLS details that ride on other lines: Exim's X= on arrivals and
 * deliveries (Postfix 3.11's tls= repeats its own "established" line). */
static void tls_on_the_side(struct rp_ctx *c, const struct rp_ev *e)
{
    if (e->tls_proto == NULL || e->svc == NULL || strcmp(e->svc, "exim") != 0)
        return;
    if (e->kind != EV_CLIENT && e->kind != EV_DELIVERY)
        return;
    struct rp_ev t;
    memset(&t, 0, offsetof(struct rp_ev, ip));
    t.kind = EV_TLS_OK;
    t.ts = e->ts;
    t.tls_proto = e->tls_proto;
    t.tls_cipher = e->tls_cipher;
    t.outbound = e->kind == EV_DELIVERY;
    t.client = e->kind == EV_CLIENT ? e->client : NULL;
    if (e->kind == EV_DELIVERY) {
        rpp_split_client(e->relay, t.host, sizeof(t.host), t.ip, sizeof(t.ip));
    } else {
        memcpy(t.ip, e->ip, sizeof(t.ip));
        memcpy(t.host, e->host, sizeof(t.host));
    }
    tls_event(c, &t);
}

/* A reject on the journey side: greylisting triplets (same filters). */
static void grey_event(struct rp_ctx *c, const struct rp_ev *e)
{
    const struct rp_opts *o = c->o;
    if (o->client && !rpv_client_match(o->client, e->host, e->ip))
        return;
    if (o->provider)
        return;
    if (o->domain && !rpv_domain_match(o->domain, e->to) &&
        !rpv_domain_match(o->domain, e->from))
        return;
    rpv_grey_reject(&c->st, e);
}

/* A message that cleanup rejected or discarded is gone: close it. */
static void rejected_in_queue(struct rp_ctx *c, const struct rp_ev *e)
{
    if (e->qid == NULL || e->svc == NULL || strcmp(e->svc, "cleanup") != 0 ||
        e->rej_kind == NULL || strstr(e->rej_kind, "reject") == NULL)
        return;
    struct rp_msg *m = find_msg(c, e->qid);
    if (m) {
        m->removed = true;
        close_msg(c, m);
    }
}

void rpj_event(struct rp_ctx *c, struct rp_ev *e)
{
    enum rp_fmt fmt = e->sendmail ? RP_FMT_SENDMAIL : RP_FMT_POSTFIX;
    if (e->kind == EV_REJECT) {
        grey_event(c, e);
        rejected_in_queue(c, e);
        return;
    }
    if (e->kind == EV_TLS_OK || e->kind == EV_TLS_FAIL) {
        tls_event(c, e);
        return;
    }
    tls_on_the_side(c, e);
    if (!qid_event(e->kind) || e->qid == NULL ||
        (e->qid[0] == 'N' && strcmp(e->qid, "NOQUEUE") == 0))
        return;
    struct rp_msg *m = get_msg(c, e);
    m->last_ts = e->ts;
    if (trace_on(c) && c->cur_line) {
        buf_puts(&m->lines, c->cur_line);
        buf_putc(&m->lines, '\n');
    }
    switch (e->kind) {
    case EV_CLIENT:
    case EV_PICKUP:
        on_arrival(c, m, e);
        break;
    case EV_MSGID:
        if (m->msgid == NULL) {
            m->msgid = msg_strdup(m, e->msgid);
            join_parent(c, m);
        }
        break;
    case EV_QUEUED:
        set_sender(c, m, e);
        break;
    case EV_DELIVERY:
        on_delivery(c, m, e, fmt);
        break;
    case EV_EXPIRED:
        m->expired = true;
        break;
    case EV_NOTICE:
        msg_strfree(m, m->notice);
        m->notice = msg_strdup(m, e->link_qid);
        if (m->traced || is_traced(c, m))
            trace_link(c, e->link_qid);
        break;
    case EV_REMOVED:
        m->removed = true;
        break;
    default:
        break;
    }
    if (m->removed)
        close_msg(c, m);
}

/* ---- closing ---------------------------------------------------------- */

/* Apply --client/--domain/--provider: returns false to drop the message;
 * marks the attempts a domain/provider filter leaves out. */
static bool filter_msg(struct rp_ctx *c, struct rp_msg *m, bool *keep)
{
    const struct rp_opts *o = c->o;
    for (size_t i = 0; i < m->natt; i++)
        keep[i] = true;
    if (o->client) {
        char host[256], ip[64];
        rpp_split_client(m->client, host, sizeof(host), ip, sizeof(ip));
        if (m->client == NULL || !rpv_client_match(o->client, host, ip))
            return false;
    }
    bool sender_ok = o->domain && m->sender && rpv_domain_match(o->domain, m->sender);
    bool any = (o->domain == NULL && o->provider == NULL) || sender_ok;
    for (size_t i = 0; i < m->natt; i++) {
        const char *rcpt = m->rcpts[m->att[i].rcpt]->k.key;
        bool ok = true;
        if (o->domain && !sender_ok)
            ok = rpv_domain_match(o->domain, rcpt);
        if (ok && o->provider) {
            char host[256], ip[64];
            rpp_split_client(m->att[i].relay, host, sizeof(host), ip, sizeof(ip));
            ok = strcasecmp(provider_of(host, rps_domain_of(rcpt)), o->provider) == 0;
        }
        keep[i] = ok;
        any = any || ok;
    }
    return any;
}

static void close_msg(struct rp_ctx *c, struct rp_msg *m)
{
    rph_del(&c->open, &m->k, m->qid_h);
    if (m->msgid && c->msgid_index) {
        const char *q = dict_get(&c->by_msgid, m->msgid);
        if (q && strcmp(q, m->qid) == 0)
            dict_del(&c->by_msgid, m->msgid);
    }
    if (trace_on(c)) {
        if (m->traced || is_traced(c, m)) {
            m->traced = true;
            trace_link(c, m->notice);
            c->traced = xgrow(c->traced, &c->traced_cap, c->ntraced + 1, sizeof(*c->traced));
            c->traced[c->ntraced++] = m;
            return;
        }
        msg_release(c, m);
        return;
    }
    bool small[16];
    bool *keep = m->natt < 16 ? small : xcalloc(m->natt + 1, sizeof(*keep));
    if (filter_msg(c, m, keep)) {
        for (size_t i = 0; i < m->natt; i++)
            if (!keep[i])
                m->att[i].status = ST_NONE;   /* left out by the filter */
        rps_account(c, m);
        rpv_account(c, m);
    }
    if (keep != small)
        free(keep);
    msg_release(c, m);
}

void rpj_finish(struct rp_ctx *c)
{
    /* collect first (closing edits the table), in order of appearance */
    size_t i;
    struct rp_msg **all = open_list(c, &i);
    for (size_t j = 0; j < i; j++) {
        if (!all[j]->is_child)
            c->st.m.open++;
        close_msg(c, all[j]);
    }
    free(all);
}
