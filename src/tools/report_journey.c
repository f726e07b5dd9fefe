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

static void close_msg(struct rp_ctx *c, struct rp_msg *m);
static bool trace_on(const struct rp_ctx *c);

void rpj_init(struct rp_ctx *c)
{
    dict_init(&c->open, NULL);
    dict_init(&c->by_msgid, free);
    dict_init(&c->trace_ids, NULL);
    dict_init(&c->relays, free);
}

/* Relay strings repeat endlessly: keep one copy of each (bounded; past the
 * bound they are still kept, in the same table, as the run needs them). */
static const char *intern_relay(struct rp_ctx *c, const char *relay)
{
    char *r = dict_get(&c->relays, relay);
    if (r == NULL) {
        r = xstrdup(relay);
        dict_set(&c->relays, relay, r);
    }
    return r;
}

void rpj_msg_free(struct rp_msg *m)
{
    if (m == NULL)
        return;
    if (m->qid != m->qid_buf)
        free(m->qid);
    free(m->msgid);
    free(m->sender);
    free(m->client);
    free(m->parent);
    free(m->notice);
    for (size_t i = 0; i < m->nrcpts; i++)
        free(m->rcpts[i]);
    free(m->rcpts);
    for (size_t i = 0; i < m->natt; i++)
        free(m->att[i].reply);
    free(m->att);
    buf_free(&m->lines);
    free(m);
}

void rpj_free(struct rp_ctx *c)
{
    size_t pos = 0;
    const char *k;
    void *v;
    while (dict_next(&c->open, &pos, &k, &v))
        rpj_msg_free(v);
    dict_free(&c->open);
    dict_free(&c->by_msgid);
    dict_free(&c->trace_ids);
    dict_free(&c->relays);
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

/* A message's lines come close together: look in the few most recently
 * used messages before the map. */
static struct rp_msg *recent_get(struct rp_ctx *c, const char *qid)
{
    for (unsigned i = 0; i < 8; i++) {
        struct rp_msg *m = c->recent[i];
        if (m && m->qid[0] == qid[0] && strcmp(m->qid, qid) == 0)
            return m;
    }
    return NULL;
}

static void recent_put(struct rp_ctx *c, struct rp_msg *m)
{
    c->recent[c->recent_next++ % 8] = m;
}

static void recent_forget(struct rp_ctx *c, const struct rp_msg *m)
{
    for (unsigned i = 0; i < 8; i++)
        if (c->recent[i] == m)
            c->recent[i] = NULL;
}

static struct rp_msg *get_msg(struct rp_ctx *c, const char *qid, int64_t ts)
{
    struct rp_msg *m = recent_get(c, qid);
    if (m)
        return m;
    m = dict_get(&c->open, qid);
    if (m) {
        recent_put(c, m);
        return m;
    }
    m = xcalloc(1, sizeof(*m));
    m->qid = strlen(qid) < sizeof(m->qid_buf) ? (str_copy(m->qid_buf, qid, sizeof(m->qid_buf)), m->qid_buf)
                                               : xstrdup(qid);
    m->first_ts = m->last_ts = ts;
    buf_init(&m->lines, RPJ_TRACE_MAX);
    dict_set(&c->open, qid, m);
    recent_put(c, m);
    size_t n = dict_count(&c->open);
    if (n > c->open_peak)
        c->open_peak = n;
    return m;
}

static bool is_loopback(const char *ip, const char *host)
{
    return (ip && (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0)) ||
           (host && strcmp(host, "localhost") == 0);
}

/* ---- arrival ---------------------------------------------------------- */

static void set_sender(struct rp_msg *m, const struct rp_ev *e)
{
    if (m->has_size || e->addr == NULL)
        return;
    free(m->sender);
    m->sender = xstrdup(e->addr);
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
    size_t pos = 0;
    const char *k;
    void *v;
    c->msgid_index = true;
    while (dict_next(&c->open, &pos, &k, &v)) {
        struct rp_msg *o = v;
        if (o->msgid && dict_get(&c->by_msgid, o->msgid) == NULL)
            dict_set(&c->by_msgid, o->msgid, xstrdup(o->qid));
    }
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
    struct rp_msg *p = dict_get(&c->open, pq);
    if (p == NULL || p == m || m->is_child || !loop)
        return;
    m->is_child = true;
    m->parent = xstrdup(p->qid);
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
            free(m->client);
            m->client = xstrdup(e->client);
            str_copy(m->client_ip, e->ip, sizeof(m->client_ip));
        }
    }
    set_sender(m, e);
    if (e->msgid && m->msgid == NULL) {
        m->msgid = xstrdup(e->msgid);
        join_parent(c, m);
    }
}

/* ---- deliveries ------------------------------------------------------- */

static uint32_t rcpt_index(struct rp_msg *m, const char *addr)
{
    for (size_t i = 0; i < m->nrcpts; i++)
        if (strcmp(m->rcpts[i], addr) == 0)
            return (uint32_t)i;
    m->rcpts = xgrow(m->rcpts, &m->rcpt_cap, m->nrcpts + 1, sizeof(*m->rcpts));
    m->rcpts[m->nrcpts] = xstrdup(addr);
    return (uint32_t)m->nrcpts++;
}

static enum reply_class attempt_class(const struct rp_ev *e)
{
    if (e->status == ST_SENT)
        return RC_UNKNOWN;
    char host[256], ip[64];
    rpp_split_client(e->relay, host, sizeof(host), ip, sizeof(ip));
    char enh[16] = "";
    int code = classify_parse_reply(e->reply, enh, sizeof(enh));
    if (enh[0] == '\0' && e->dsn)
        str_copy(enh, e->dsn, sizeof(enh));
    return classify_reply(code, enh, e->reply, host);
}

static bool is_handoff(struct rp_ctx *c, struct rp_msg *m, const struct rp_ev *e)
{
    if (e->status != ST_SENT)
        return false;
    if (e->link_qid) {
        struct rp_msg *child = dict_get(&c->open, e->link_qid);
        if (child && child->parent && strcmp(child->parent, m->qid) == 0)
            return true;
    }
    if (!m->has_child || e->relay == NULL)
        return false;
    char host[256], ip[64];
    rpp_split_client(e->relay, host, sizeof(host), ip, sizeof(ip));
    return is_loopback(ip, host);
}

static void add_attempt(struct rp_ctx *c, struct rp_msg *m, const struct rp_ev *e,
                        const char *addr, enum reply_class cls, bool handoff)
{
    if (m->natt >= RPJ_MAX_ATTEMPTS)
        return;
    m->att = xgrow(m->att, &m->att_cap, m->natt + 1, sizeof(*m->att));
    struct rp_attempt *a = &m->att[m->natt++];
    memset(a, 0, sizeof(*a));
    a->ts = e->ts;
    a->rcpt = rcpt_index(m, addr);
    a->status = (uint8_t)e->status;
    a->forwarded = e->forwarded;
    a->size_known = m->has_size;
    a->handoff = handoff;
    a->cls = (uint8_t)cls;
    if (e->has_delay)
        a->delay = (float)e->delay;
    else
        a->delay = (float)(e->ts - (m->arrival ? m->arrival : m->first_ts));
    a->relay = intern_relay(c, e->relay ? e->relay : "none");
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
    enum reply_class cls = attempt_class(e);
    bool handoff = is_handoff(c, m, e);
    if (e->link_qid && m->traced)
        trace_link(c, e->link_qid);
    /* Sendmail lists several recipients in one line: "<a>,<b>" */
    const char *p = e->addr;
    do {
        char one[320];
        size_t n = strcspn(p, ",");
        if (n >= sizeof(one))
            n = sizeof(one) - 1;
        memcpy(one, p, n);
        one[n] = '\0';
        char *a = one;
        if (*a == '<') {
            a++;
            a[strcspn(a, ">")] = '\0';
        }
        add_attempt(c, m, e, a, cls, handoff);
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    } while (*p && fmt == RP_FMT_SENDMAIL);
    if (fmt == RP_FMT_SENDMAIL && m->nrcpt > 0 && m->finals >= (uint32_t)m->nrcpt)
        m->removed = true;
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
    struct rp_msg *m = dict_get(&c->open, e->qid);
    if (m) {
        m->removed = true;
        close_msg(c, m);
    }
}

void rpj_event(struct rp_ctx *c, struct rp_ev *e)
{
    enum rp_fmt fmt = (enum rp_fmt)(e->svc && strcmp(e->svc, "sendmail") == 0
                                        ? RP_FMT_SENDMAIL : RP_FMT_POSTFIX);
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
    if (!qid_event(e->kind) || e->qid == NULL || strcmp(e->qid, "NOQUEUE") == 0)
        return;
    struct rp_msg *m = get_msg(c, e->qid, e->ts);
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
            m->msgid = xstrdup(e->msgid);
            join_parent(c, m);
        }
        break;
    case EV_QUEUED:
        set_sender(m, e);
        break;
    case EV_DELIVERY:
        on_delivery(c, m, e, fmt);
        break;
    case EV_EXPIRED:
        m->expired = true;
        break;
    case EV_NOTICE:
        free(m->notice);
        m->notice = xstrdup(e->link_qid);
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
        const char *rcpt = m->rcpts[m->att[i].rcpt];
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
    recent_forget(c, m);
    dict_del(&c->open, m->qid);
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
        rpj_msg_free(m);
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
    rpj_msg_free(m);
}

void rpj_finish(struct rp_ctx *c)
{
    /* collect first: closing edits the dict */
    size_t n = dict_count(&c->open), i = 0, pos = 0;
    struct rp_msg **all = xcalloc(n + 1, sizeof(*all));
    const char *k;
    void *v;
    while (dict_next(&c->open, &pos, &k, &v) && i < n)
        all[i++] = v;
    for (size_t j = 0; j < i; j++) {
        if (!all[j]->is_child)
            c->st.m.open++;
        close_msg(c, all[j]);
    }
    free(all);
}
