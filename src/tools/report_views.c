/*
 * report_views.c - what pflogsumm lacks: the provider view (destinations
 * grouped by mailbox provider, replies by class through the shared
 * classifier), receive-to-deliver delay percentiles, the TLS view, the
 * greylisting view, and incidents (time windows where a destination's
 * deferral rate or a client network's TLS failure rate leaves its
 * baseline). Definitions: docs/report.md.
 */
#include "tools/report.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"
#include "mail/provider.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define INC_MIN_FAILURES 3      /* a bucket needs this many failures */
#define INC_MIN_EXCESS 0.25     /* ... and a rate this far above baseline */
#define INC_MIN_HISTORY 4       /* active buckets needed for a median */

/* ---- delays ----------------------------------------------------------- */

void rpd_add(struct rp_delays *d, double secs)
{
    if (secs < 0)
        secs = 0;
    d->v = xgrow(d->v, &d->cap, d->n + 1, sizeof(*d->v));
    d->v[d->n++] = (float)secs;
    d->sum += secs;
    if (secs > d->max)
        d->max = (float)secs;
    d->sorted = false;
}

/* Sort non-negative floats: their bit patterns order like unsigned ints,
 * so an LSD radix sort (four 8-bit passes) does it without comparisons. */
static void sort_delays(float *v, size_t n)
{
    uint32_t *a = (uint32_t *)v;
    if (n < 64) {              /* most domains: insertion sort, same order */
        for (size_t i = 1; i < n; i++) {
            uint32_t x = a[i];
            size_t j = i;
            for (; j > 0 && a[j - 1] > x; j--)
                a[j] = a[j - 1];
            a[j] = x;
        }
        return;
    }
    /* the four byte histograms in one pass; a pass whose byte is the same
     * in every value (the exponent of delays in one range) is skipped */
    size_t count[4][257];
    memset(count, 0, sizeof(count));
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            count[k][((a[i] >> (8 * k)) & 0xff) + 1]++;
    uint32_t *tmp = xmalloc(n * sizeof(*tmp));
    for (int k = 0; k < 4; k++) {
        size_t *c = count[k];
        bool one = false;
        for (int b = 1; b <= 256 && !one; b++)
            one = c[b] == n;
        if (one)
            continue;
        for (int b = 0; b < 256; b++)
            c[b + 1] += c[b];
        int shift = 8 * k;
        for (size_t i = 0; i < n; i++)
            tmp[c[(a[i] >> shift) & 0xff]++] = a[i];
        memcpy(a, tmp, n * sizeof(*a));
    }
    free(tmp);
}

double rpd_pct(struct rp_delays *d, double p)
{
    if (d->n == 0)
        return 0;
    if (!d->sorted) {
        sort_delays(d->v, d->n);
        d->sorted = true;
    }
    size_t rank = (size_t)(p / 100.0 * (double)d->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > d->n)
        rank = d->n;
    return d->v[rank - 1];
}

void rpd_free(struct rp_delays *d)
{
    free(d->v);
    memset(d, 0, sizeof(*d));
}

/* ---- filters ---------------------------------------------------------- */

bool rpv_domain_match(const char *want, const char *addr)
{
    if (want == NULL || addr == NULL)
        return false;
    const char *dom = rps_domain_of(addr);
    size_t dl = strlen(dom), wl = strlen(want);
    if (dl < wl || strcasecmp(dom + dl - wl, want) != 0)
        return false;
    return dl == wl || dom[dl - wl - 1] == '.';
}

/* "192.0.2.0/24" style prefix match (IPv4 and IPv6). */
static bool cidr_match(const char *want, const char *ip)
{
    char net[64];
    str_copy(net, want, sizeof(net));
    char *slash = strchr(net, '/');
    if (slash == NULL)
        return false;
    *slash = '\0';
    int bits = (int)strtol(slash + 1, NULL, 10);
    unsigned char a[16], b[16];
    int af = strchr(net, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(af, net, a) != 1 || inet_pton(af, ip, b) != 1)
        return false;
    int max = af == AF_INET ? 32 : 128;
    if (bits < 0 || bits > max)
        return false;
    for (int i = 0; i < bits; i++)
        if (((a[i / 8] ^ b[i / 8]) >> (7 - i % 8)) & 1)
            return false;
    return true;
}

bool rpv_client_match(const char *want, const char *host, const char *ip)
{
    if (ip && *ip && (strcmp(want, ip) == 0 || cidr_match(want, ip)))
        return true;
    if (host == NULL || *host == '\0')
        return false;
    size_t hl = strlen(host), wl = strlen(want);
    if (hl < wl || strcasecmp(host + hl - wl, want) != 0)
        return false;
    return hl == wl || host[hl - wl - 1] == '.';
}

/* ---- incident tracks -------------------------------------------------- */

static void track_free(void *p)
{
    struct rp_track *t = p;
    dict_free(&t->buckets);
    for (int i = 0; i < RC__COUNT; i++)
        free(t->example[i]);
    free(t);
}

static struct rp_track *track_get(struct rp_stats *s, const char *key, bool tls)
{
    if (s->tracks.free_val == NULL)
        dict_init(&s->tracks, track_free);
    struct rp_track *t = dict_get(&s->tracks, key);
    if (t == NULL) {
        t = xcalloc(1, sizeof(*t));
        dict_init(&t->buckets, free);
        t->tls = tls;
        dict_set(&s->tracks, key, t);
    }
    return t;
}

static void track_add_t(struct rp_stats *s, struct rp_track *t, int64_t ts, bool failed,
                        enum reply_class cls, const char *example, bool new_msg)
{
    int64_t idx = ts / s->bucket;
    struct rp_bucket *b = (t->last_b && t->last_idx == idx) ? t->last_b : NULL;
    if (b == NULL) {
        char bk[32];
        snprintf(bk, sizeof(bk), "%lld", (long long)idx);
        b = dict_get(&t->buckets, bk);
        if (b == NULL) {
            b = xcalloc(1, sizeof(*b));
            b->tmin = b->tmax = ts;
            dict_set(&t->buckets, bk, b);
        }
        t->last_idx = idx;
        t->last_b = b;
    }
    b->attempts++;
    t->attempts++;
    if (ts < b->tmin)
        b->tmin = ts;
    if (ts > b->tmax)
        b->tmax = ts;
    if (!failed)
        return;
    b->failures++;
    t->failures++;
    if (new_msg)
        b->msgs++;
    if (cls < RC__COUNT && b->cls[cls] < UINT16_MAX)
        b->cls[cls]++;
    if (cls < RC__COUNT && t->example[cls] == NULL && example)
        t->example[cls] = xstrdup(example);
}


/* ---- TLS -------------------------------------------------------------- */

static void net_of(const char *ip, char *out, size_t outlen)
{
    unsigned char a[16];
    char tmp[64];
    /* the common case without inet_pton: "a.b.c.d" -> "a.b.c.0/24" */
    const char *d3 = NULL;
    int dots = 0;
    for (const char *p = ip; *p; p++) {
        if (*p == '.' && ++dots == 3)
            d3 = p;
        else if (*p != '.' && (*p < '0' || *p > '9'))
            dots = 99;
    }
    if (dots == 3 && d3 && (size_t)(d3 - ip) + 6 < outlen) {
        memcpy(out, ip, (size_t)(d3 - ip));
        memcpy(out + (d3 - ip), ".0/24", 6);
        return;
    }
    if (inet_pton(AF_INET, ip, a) == 1) {
        snprintf(out, outlen, "%u.%u.%u.0/24", a[0], a[1], a[2]);
    } else if (inet_pton(AF_INET6, ip, a) == 1) {
        memset(a + 8, 0, 8);
        inet_ntop(AF_INET6, a, tmp, sizeof(tmp));
        snprintf(out, outlen, "%s/64", tmp);
    } else {
        str_copy(out, ip[0] ? ip : "unknown", outlen);
    }
}

static void tls_stat_free(void *p)
{
    struct rp_tls_stat *t = p;
    free(t->last_reason);
    free(t);
}

static struct rp_tls_stat *tls_stat(struct dict *d, const char *key)
{
    if (d->free_val == NULL)
        dict_init(d, tls_stat_free);
    struct rp_tls_stat *t = dict_get(d, key);
    if (t == NULL) {
        t = xcalloc(1, sizeof(*t));
        dict_set(d, key, t);
    }
    return t;
}

static void tls_count(struct rp_tls_stat *t, const struct rp_ev *e, bool ok, bool lost)
{
    if (ok) {
        t->ok++;
        return;
    }
    t->fail++;
    if (lost)
        t->lost_starttls++;
    if (e->text) {
        free(t->last_reason);
        t->last_reason = xstrdup(e->text);
    }
}

/* One per distinct inbound TLS client (name and address): its entries
 * in tls_hosts, tls_nets and the incident tracks. */
struct rp_tlsc {
    struct rph_head k;       /* "host[ip]" NUL ip */
    char *net;
    struct rp_tls_stat *host, *netst;
    struct rp_track *track;
};

static struct rp_tlsc *tls_client(struct rp_stats *s, const char *host, const char *ip)
{
    char key[400 + 64];
    size_t hl = strlen(host), il = strlen(ip);
    if (il >= sizeof(key) - hl - 1)
        il = sizeof(key) - hl - 2;
    memcpy(key, host, hl);
    key[hl] = '\0';
    memcpy(key + hl + 1, ip, il);
    size_t len = hl + 1 + il;
    uint64_t h = rph_hash(key, len);
    struct rp_tlsc *t = (struct rp_tlsc *)rph_get(&s->tls_t, key, len, h);
    if (t)
        return t;
    t = rpa_record(&s->tls_arena, sizeof(*t), key, len);
    char net[80];
    net_of(ip, net, sizeof(net));
    t->net = rpa_strndup(&s->tls_arena, net, strlen(net));
    rph_put(&s->tls_t, h, &t->k);
    return t;
}

void rps_tls(struct rp_stats *s, const struct rp_ev *e)
{
    bool ok = e->kind == EV_TLS_OK;
    if (e->outbound) {
        if (ok) {
            s->tls_out_ok++;
            rpt_add1_cached(&s->tls_out_proto, &s->tls_cache[2],
                            e->tls_proto ? e->tls_proto : "?");
            if (e->tls_cipher)
                rpt_add1_cached(&s->tls_out_cipher, &s->tls_cache[3], e->tls_cipher);
        } else {
            s->tls_out_fail++;
        }
        return;
    }
    bool lost = !ok && e->text && strstr(e->text, "after STARTTLS") != NULL;
    char host[400];
    if (e->client && strchr(e->client, '['))
        str_copy(host, e->client, sizeof(host));
    else
        snprintf(host, sizeof(host), "%s[%s]", e->host[0] ? e->host : "unknown", e->ip);
    struct rp_tlsc *tc = tls_client(s, host, e->ip);
    const char *net = tc->net;
    if (ok) {
        s->tls_in_ok++;
        rpt_add1_cached(&s->tls_in_proto, &s->tls_cache[0],
                        e->tls_proto ? e->tls_proto : "?");
        if (e->tls_cipher)
            rpt_add1_cached(&s->tls_in_cipher, &s->tls_cache[1], e->tls_cipher);
    } else {
        s->tls_in_fail++;
        if (lost)
            s->lost_starttls++;
        char hour[32];
        int y, mo, d, h, mi, sec;
        rpl_ts_to_civil(e->ts, &y, &mo, &d, &h, &mi, &sec);
        snprintf(hour, sizeof(hour), "%04d-%02d-%02d %02d:00", y, mo, d, h);
        rpt_add(&s->tls_net_hours, net, hour, NULL, 1);
    }
    /* the entries are made on first use, in the same order as ever */
    if (tc->host == NULL)
        tc->host = tls_stat(&s->tls_hosts, host);
    tls_count(tc->host, e, ok, lost);
    if (tc->netst == NULL)
        tc->netst = tls_stat(&s->tls_nets, net);
    tls_count(tc->netst, e, ok, lost);
    if (tc->track == NULL) {
        char key[100];
        memcpy(key, "tls:", 4);
        str_copy(key + 4, net, sizeof(key) - 4);
        tc->track = track_get(s, key, true);
    }
    track_add_t(s, tc->track, e->ts, !ok, RC_TLS_FAILURE, e->text, false);
}

/* ---- greylisting ------------------------------------------------------ */

/* The pending triplets by the key's ending (its text after the last '|',
 * the lower-cased recipient): most messages' recipients have none, and
 * are passed over without building their keys. */
struct rp_grey_end { struct rph_head k; uint64_t n; };

static struct rp_grey_end *grey_ending(struct rp_grey *g, const char *key)
{
    const char *bar = strrchr(key, '|');
    const char *t = bar ? bar + 1 : key;
    size_t len = strlen(t);
    uint64_t h = rph_hash(t, len);
    struct rp_grey_end *x = (struct rp_grey_end *)rph_get(&g->ends, t, len, h);
    if (x == NULL) {
        x = rpa_record(&g->ends_arena, sizeof(*x), t, len);
        rph_put(&g->ends, h, &x->k);
    }
    return x;
}

static void grey_key(const char *from, const char *to, char *out, size_t outlen)
{
    size_t n = str_copy(out, from ? from : "", outlen);
    if (n + 1 < outlen) {
        out[n] = '|';
        str_copy(out + n + 1, to ? to : "", outlen - n - 1);
    }
    str_lower(out);
}

void rpv_grey_reject(struct rp_stats *s, const struct rp_ev *e)
{
    if (e->text == NULL || e->to == NULL || strcmp(e->rej_kind ? e->rej_kind : "", "reject"))
        return;
    /* greylisting is a temporary refusal: 5xx rejects need no classifying */
    if (e->text[0] != '4' || classify_reply(0, NULL, e->text, NULL) != RC_GREYLISTED)
        return;
    struct rp_grey *g = &s->grey;
    if (g->pending.free_val == NULL) {
        dict_init(&g->pending, free);
        rpt_init(&g->other_ip_senders);
        rpt_init(&g->out_by_dest);
    }
    g->in_greylisted++;
    char key[700];
    grey_key(e->from, e->to, key, sizeof(key));
    struct rp_grey_pending *p = dict_get(&g->pending, key);
    if (p == NULL) {
        p = xcalloc(1, sizeof(*p));
        p->first = e->ts;
        str_copy(p->ip, e->ip, sizeof(p->ip));
        dict_set(&g->pending, key, p);
        if (strlen(e->from ? e->from : "") + 1 + strlen(e->to) >= sizeof(key))
            g->pend_unsafe = true;       /* cut key: no ending to index */
        else
            grey_ending(g, key)->n++;
    }
    p->tries++;
    if (strcmp(p->ip, e->ip) != 0)
        p->other_ip = true;
}

static void grey_inbound(struct rp_stats *s, const struct rp_msg *m)
{
    struct rp_grey *g = &s->grey;
    if (g->pending.free_val == NULL || dict_count(&g->pending) == 0 || !m->received)
        return;
    char key[700];
    size_t slen = m->sender ? strlen(m->sender) : 0;
    for (size_t i = 0; i < m->nrcpts; i++) {
        const struct rp_rcpt *r = m->rcpts[i];
        if (!g->pend_unsafe && slen + 1 + r->k.len < sizeof(key)) {
            const struct rp_grey_end *x =
                (const struct rp_grey_end *)rph_get(&g->ends, r->grey, r->grey_len, r->grey_h);
            if (x == NULL || x->n == 0)
                continue;
        }
        grey_key(m->sender, r->k.key, key, sizeof(key));
        struct rp_grey_pending *p = dict_get(&g->pending, key);
        if (p == NULL)
            continue;
        g->in_passed++;
        rpd_add(&g->in_delay, (double)(m->arrival - p->first));
        if (p->other_ip || strcmp(p->ip, m->client_ip) != 0) {
            g->in_other_ip++;
            rpt_add(&g->other_ip_senders, rps_domain_of(m->sender), NULL, NULL, 1);
        }
        if (!g->pend_unsafe)
            grey_ending(g, key)->n--;
        dict_del(&g->pending, key);
    }
}

/* ---- per message ------------------------------------------------------ */

static void prov_free(void *p)
{
    struct rp_prov_stat *ps = p;
    for (int i = 0; i < RC__COUNT; i++)
        free(ps->example[i]);
    rpd_free(&ps->e2e);
    rpt_free(&ps->domains);
    free(ps);
}

static struct rp_prov_stat *prov_stat(struct rp_stats *s, const char *name)
{
    if (s->providers.free_val == NULL)
        dict_init(&s->providers, prov_free);
    struct rp_prov_stat *p = dict_get(&s->providers, name);
    if (p == NULL) {
        p = xcalloc(1, sizeof(*p));
        rpt_init(&p->domains);
        dict_set(&s->providers, name, p);
    }
    return p;
}

static void class_note(struct rp_stats *s, struct rp_prov_stat *p,
                       const struct rp_attempt *a)
{
    enum reply_class cls = (enum reply_class)a->cls;
    s->cls[cls]++;
    p->cls[cls]++;
    if (s->cls_example[cls] == NULL)
        s->cls_example[cls] = xstrdup(a->reply);
    if (p->example[cls] == NULL)
        p->example[cls] = xstrdup(a->reply);
}

struct msg_flags { bool sent, bounced, deferred; const char *provs[16]; size_t nprov; };

static bool first_for(struct msg_flags *f, const char *prov)
{
    for (size_t i = 0; i < f->nprov; i++)
        if (f->provs[i] == prov || strcmp(f->provs[i], prov) == 0)
            return false;
    if (f->nprov < 16)
        f->provs[f->nprov++] = prov;
    return true;
}

/* The relay's and the domain's records answer what cached_provider()
 * would (the relay host's provider, else the domain's, else "other") and
 * keep the provider's stats and the domain's tally node and track. */
static void account_attempt(struct rp_stats *s, const struct rp_msg *m,
                            const struct rp_attempt *a, struct msg_flags *f,
                            int64_t *grey_first)
{
    char key[300];
    struct rp_domrec *dr = m->rcpts[a->rcpt]->dom;
    const char *dom = dr->k.key;
    struct rp_relay *rl = a->rl;
    const char *prov = rl->prov ? rl->prov : dr->prov;
    struct rp_prov_stat **pc = rl->prov ? &rl->pstat : &dr->pstat;
    if (*pc == NULL)
        *pc = prov_stat(s, prov);
    struct rp_prov_stat *p = *pc;
    bool first = first_for(f, prov);
    if (first)
        p->messages++;
    if (dr->dprov == p) {
        dr->dnode->n++;
    } else {
        dr->dnode = rpt_add(&p->domains, dom, NULL, NULL, 1);
        dr->dprov = p;
    }
    /* the incident track: the provider's, or the domain's for "other" */
    bool named = strcmp(prov, "other") != 0;
    struct rp_track *t = named ? p->track : dr->track;
    if (t == NULL) {
        const char *kname = named ? prov : dom;
        size_t kl = strlen(kname);
        if (kl > sizeof(key) - 6)
            kl = sizeof(key) - 6;
        memcpy(key, "dest:", 5);
        memcpy(key + 5, kname, kl);
        key[5 + kl] = '\0';
        t = track_get(s, key, false);
        if (named)
            p->track = t;
        else
            dr->track = t;
    }
    double offset = m->is_child ? (double)(m->arrival - m->root_arrival) : 0;
    switch (a->status) {
    case ST_SENT: {
        p->sent++;
        f->sent = true;
        double d = offset + a->delay;
        rpd_add(&p->e2e, d);
        rpd_add(&s->all_e2e, d);
        struct rp_dom_stat *ds = a->dst ? a->dst : dict_get(&s->recip_dom, dom);
        if (ds)
            rpd_add(&ds->e2e, d);
        if (grey_first[a->rcpt]) {
            s->grey.out_delivered++;
            rpd_add(&s->grey.out_delay, (double)(a->ts - grey_first[a->rcpt]));
        }
        track_add_t(s, t, a->ts, false, RC_UNKNOWN, NULL, false);
        break;
    }
    case ST_DEFERRED:
        p->deferrals++;
        f->deferred = true;
        class_note(s, p, a);
        if (a->cls == RC_GREYLISTED && grey_first[a->rcpt] == 0) {
            grey_first[a->rcpt] = a->ts;
            s->grey.out_messages++;
            if (s->grey.out_by_dest.free_val == NULL)
                rpt_init(&s->grey.out_by_dest);
            rpt_add(&s->grey.out_by_dest, strcmp(prov, "other") ? prov : dom, NULL,
                    NULL, 1);
        }
        track_add_t(s, t, a->ts, true, (enum reply_class)a->cls, a->reply, first);
        break;
    case ST_BOUNCED:
        p->bounces++;
        f->bounced = true;
        class_note(s, p, a);
        track_add_t(s, t, a->ts, false, RC_UNKNOWN, NULL, false);
        break;
    default:
        break;
    }
}

void rpv_account(struct rp_ctx *c, struct rp_msg *m)
{
    struct rp_stats *s = &c->st;
    struct msg_flags f = {0};
    int64_t small[16] = {0};
    int64_t *grey_first = m->nrcpts < 16 ? small : xcalloc(m->nrcpts + 1, sizeof(*grey_first));
    for (size_t i = 0; i < m->natt; i++) {
        const struct rp_attempt *a = &m->att[i];
        if (a->status == ST_NONE || a->handoff || a->forwarded)
            continue;
        account_attempt(s, m, a, &f, grey_first);
    }
    if (grey_first != small)
        free(grey_first);
    if (!m->is_child)
        s->m.messages++;
    if (f.sent && !f.bounced)
        s->m.delivered++;
    if (f.bounced)
        s->m.bounced++;
    if (f.deferred)
        s->m.deferred++;
    if (m->expired)
        s->m.expired++;
    grey_inbound(s, m);
}

/* ---- incidents -------------------------------------------------------- */

struct bk { int64_t idx; struct rp_bucket *b; };

static int bk_cmp(const void *x, const void *y)
{
    const struct bk *a = x, *b = y;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static int dbl_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double baseline_of(const struct bk *v, size_t n)
{
    if (n < INC_MIN_HISTORY)
        return 0;
    double *r = xcalloc(n, sizeof(*r));
    for (size_t i = 0; i < n; i++)
        r[i] = (double)v[i].b->failures / v[i].b->attempts;
    qsort(r, n, sizeof(*r), dbl_cmp);
    double med = r[n / 2];
    free(r);
    return med;
}

static bool anomalous(const struct rp_bucket *b, double base)
{
    if (b->failures < INC_MIN_FAILURES || b->attempts == 0)
        return false;
    return (double)b->failures / b->attempts - base >= INC_MIN_EXCESS;
}

static void emit_incident(struct rp_stats *s, const char *key, struct rp_track *t,
                          const struct bk *v, size_t from, size_t to, double base)
{
    struct rp_incident inc = {0};
    uint64_t cls[RC__COUNT] = {0};
    inc.key = xstrdup(strchr(key, ':') + 1);
    inc.tls = t->tls;
    inc.baseline = base;
    inc.start = v[from].b->tmin;
    inc.end = v[to].b->tmax;
    for (size_t i = from; i <= to; i++) {
        const struct rp_bucket *b = v[i].b;
        inc.attempts += b->attempts;
        inc.failures += b->failures;
        inc.affected += t->tls ? b->failures : b->msgs;
        for (int k = 0; k < RC__COUNT; k++)
            cls[k] += b->cls[k];
    }
    inc.rate = inc.attempts ? (double)inc.failures / inc.attempts : 0;
    int best = 0;
    for (int k = 1; k < RC__COUNT; k++)
        if (cls[k] > cls[best])
            best = k;
    inc.dominant = (enum reply_class)best;
    inc.example = t->example[best];
    s->inc = xgrow(s->inc, &s->inc_cap, s->ninc + 1, sizeof(*s->inc));
    s->inc[s->ninc++] = inc;
}

static void track_incidents(struct rp_stats *s, const char *key, struct rp_track *t)
{
    size_t n = dict_count(&t->buckets), i = 0, pos = 0;
    struct bk *v = xcalloc(n + 1, sizeof(*v));
    const char *k;
    void *val;
    while (dict_next(&t->buckets, &pos, &k, &val) && i < n) {
        v[i].idx = strtoll(k, NULL, 10);
        v[i].b = val;
        i++;
    }
    qsort(v, i, sizeof(*v), bk_cmp);
    double base = baseline_of(v, i);
    for (size_t a = 0; a < i; a++) {
        if (!anomalous(v[a].b, base))
            continue;
        size_t b = a;
        /* extend across neighbours, bridging one quiet bucket */
        for (size_t j = a + 1; j < i && v[j].idx - v[b].idx <= 2; j++)
            if (anomalous(v[j].b, base))
                b = j;
        emit_incident(s, key, t, v, a, b, base);
        a = b;
    }
    free(v);
}

static int inc_cmp(const void *x, const void *y)
{
    const struct rp_incident *a = x, *b = y;
    if (a->start != b->start)
        return (a->start > b->start) - (a->start < b->start);
    return strcmp(a->key, b->key);
}

void rpv_incidents(struct rp_stats *s)
{
    if (s->tracks.free_val == NULL)
        return;
    size_t pos = 0;
    const char *k;
    void *v;
    while (dict_next(&s->tracks, &pos, &k, &v))
        track_incidents(s, k, v);
    if (s->ninc > 1)
        qsort(s->inc, s->ninc, sizeof(*s->inc), inc_cmp);
}

void rpv_free(struct rp_stats *s)
{
    for (size_t i = 0; i < s->ninc; i++)
        free(s->inc[i].key);
    free(s->inc);
    if (s->tracks.free_val)
        dict_free(&s->tracks);
    if (s->providers.free_val)
        dict_free(&s->providers);
    if (s->tls_hosts.free_val)
        dict_free(&s->tls_hosts);
    if (s->tls_nets.free_val)
        dict_free(&s->tls_nets);
    for (int i = 0; i < RC__COUNT; i++)
        free(s->cls_example[i]);
    struct rp_grey *g = &s->grey;
    if (g->pending.free_val) {
        dict_free(&g->pending);
        rpt_free(&g->other_ip_senders);
    }
    if (g->out_by_dest.free_val)
        rpt_free(&g->out_by_dest);
    rpd_free(&g->in_delay);
    rpd_free(&g->out_delay);
    rpd_free(&s->all_e2e);
    rph_free(&g->ends);
    rpa_free(&g->ends_arena);
    rph_free(&s->tls_t);
    rpa_free(&s->tls_arena);
}
