/*
 * report_stats.c - the pflogsumm-compatible aggregates: grand totals,
 * per-day and per-hour traffic, delivery and receipt per host/domain,
 * senders and recipients, deferral, bounce, reject and warning detail.
 *
 * The definitions follow pflogsumm 1.1.5 line for line (see
 * docs/report.md): "received" counts smtpd client= and pickup lines,
 * "delivered" status=sent lines (less "forwarded as"), "deferred" messages
 * with at least one status=deferred line ("deferrals" counts the lines),
 * "bounced" status=bounced lines, "rejected" reject lines of smtpd,
 * postscreen and cleanup.
 */
#include "tools/report.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"
#include "mail/provider.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define RPS_SERIES_MAX (24 * 366 * 5)   /* five years of hours */

static void dom_free(void *p)
{
    struct rp_dom_stat *d = p;
    rpd_free(&d->e2e);
    free(d);
}

/* fn on each rp_tally dict of s (rpt_init, rpt_free) */
static void each_tally(struct rp_stats *s, void (*fn)(struct dict *))
{
    struct dict *tallies[] = {&s->deferred, &s->bounced, &s->rejects, &s->warns,
                              &s->holds, &s->discards, &s->warnings, &s->fatals,
                              &s->panics, &s->master, &s->smtp_fail, &s->no_size,
                              &s->postscreen, &s->tls_net_hours, &s->tls_in_proto,
                              &s->tls_in_cipher, &s->tls_out_proto, &s->tls_out_cipher};
    for (size_t i = 0; i < sizeof(tallies) / sizeof(tallies[0]); i++)
        fn(tallies[i]);
}

void rps_init(struct rp_stats *s, int64_t bucket)
{
    memset(s, 0, sizeof(*s));
    s->bucket = bucket > 0 ? bucket : RP_BUCKET_DEFAULT;
    s->series.width = 3600;
    s->seen_day = s->bump_day = INT64_MIN;
    dict_init(&s->per_day, free);
    dict_init(&s->days_seen, NULL);
    dict_init(&s->recip_dom, dom_free);
    dict_init(&s->send_dom, free);
    dict_init(&s->recip_user, free);
    dict_init(&s->send_user, free);
    each_tally(s, rpt_init);
}

void rps_free(struct rp_stats *s)
{
    dict_free(&s->per_day);
    dict_free(&s->days_seen);
    dict_free(&s->recip_dom);
    dict_free(&s->send_dom);
    dict_free(&s->recip_user);
    dict_free(&s->send_user);
    each_tally(s, rpt_free);
    free(s->series.v);
}

/* ---- time buckets ----------------------------------------------------- */

void rps_series_add(struct rp_series *s, int64_t ts, int which, uint32_t n)
{
    int64_t idx = ts >= 0 ? ts / s->width : (ts - s->width + 1) / s->width;
    if (s->n == 0) {
        s->base = idx;
    }
    if (idx < s->base) {
        size_t shift = (size_t)(s->base - idx);
        if (s->n + shift > RPS_SERIES_MAX)
            return;
        s->v = xgrow(s->v, &s->cap, s->n + shift, sizeof(*s->v));
        memmove(s->v + shift, s->v, s->n * sizeof(*s->v));
        memset(s->v, 0, shift * sizeof(*s->v));
        s->n += shift;
        s->base = idx;
    }
    size_t off = (size_t)(idx - s->base);
    if (off >= RPS_SERIES_MAX)
        return;
    if (off >= s->n) {
        s->v = xgrow(s->v, &s->cap, off + 1, sizeof(*s->v));
        memset(s->v + s->n, 0, (off + 1 - s->n) * sizeof(*s->v));
        s->n = off + 1;
    }
    s->v[off][which] += n;
}

static void day_key(int64_t ts, char *out, size_t outlen)
{
    int y, mo, d, h, mi, sec;
    rpl_ts_to_civil(ts, &y, &mo, &d, &h, &mi, &sec);
    snprintf(out, outlen, "%04d-%02d-%02d", y, mo, d);
}

void rps_day_seen(struct rp_stats *s, int64_t ts)
{
    if (s->first_ts == 0 || ts < s->first_ts)
        s->first_ts = ts;
    if (ts > s->last_ts)
        s->last_ts = ts;
    int64_t day = ts / 86400;
    if (day == s->seen_day)
        return;
    s->seen_day = day;
    char k[16];
    day_key(ts, k, sizeof(k));
    if (dict_get(&s->days_seen, k) == NULL)
        dict_set(&s->days_seen, k, (void *)1);
}

void rps_bump(struct rp_stats *s, int64_t ts, int which)
{
    int64_t day = ts / 86400;
    uint64_t *row = day == s->bump_day ? s->bump_row : NULL;
    if (row == NULL) {
        char k[16];
        day_key(ts, k, sizeof(k));
        row = dict_get(&s->per_day, k);
        if (row == NULL) {
            row = xcalloc(SER__N, sizeof(*row));
            dict_set(&s->per_day, k, row);
        }
        s->bump_day = day;
        s->bump_row = row;
    }
    row[which]++;
    int hour = (int)(((ts % 86400) + 86400) % 86400 / 3600);
    s->per_hour[hour][which]++;
    rps_series_add(&s->series, ts, which, 1);
}

/* ---- address helpers -------------------------------------------------- */

void rps_gimme_domain(const char *client, char *out, size_t outlen)
{
    char host[256], ip[64];
    rpp_split_client(client, host, sizeof(host), ip, sizeof(ip));
    if (host[0] == '\0' || strcmp(host, "unknown") == 0) {
        str_copy(out, ip[0] ? ip : host, outlen);
        return;
    }
    /* pflogsumm: s/^(.*)\.([^\.]+)\.([^\.]{3}|[^\.]{2,3}\.[^\.]{2})$/\L$2.$3/ */
    const char *dot[64];
    size_t nd = 0, n = strlen(host);
    for (size_t i = 0; i < n && nd < 64; i++)
        if (host[i] == '.')
            dot[nd++] = host + i;
    const char *cut = NULL;
    if (nd >= 2 && strlen(dot[nd - 1] + 1) == 3 && dot[nd - 2] > host)
        cut = dot[nd - 2];
    else if (nd >= 3 && strlen(dot[nd - 1] + 1) == 2 &&
             (dot[nd - 1] - dot[nd - 2] - 1 == 2 || dot[nd - 1] - dot[nd - 2] - 1 == 3) &&
             dot[nd - 3] > host)
        cut = dot[nd - 3];
    if (cut == NULL) {
        str_copy(out, host, outlen);
        return;
    }
    str_copy(out, cut + 1, outlen);
    str_lower(out);
}

void rps_norm_addr(const char *addr, char *out, size_t outlen)
{
    if (addr == NULL || *addr == '\0') {
        str_copy(out, "from=<>", outlen);
        return;
    }
    str_copy(out, addr, outlen);
    char *at = strchr(out, '@');
    if (at)
        str_lower(at);
}

uint64_t rps_dom_weight(const void *p)
{
    const struct rp_dom_stat *d = p;
    return d->cnt * 1000000000ULL + (d->size > 999999999ULL ? 999999999ULL : d->size);
}

uint64_t rps_addr_cnt(const void *p)
{
    return ((const struct rp_addr_stat *)p)->cnt;
}

uint64_t rps_addr_size(const void *p)
{
    return ((const struct rp_addr_stat *)p)->size;
}

size_t rps_delivery_domains(const struct rp_stats *s)
{
    size_t n = 0, pos = 0;
    const char *k;
    void *v;
    while (dict_next(&s->recip_dom, &pos, &k, &v))
        if (((const struct rp_dom_stat *)v)->cnt > 0)
            n++;
    return n;
}

const char *rps_domain_of(const char *addr)
{
    if (addr == NULL)
        return "";
    const char *at = strchr(addr, '@');
    return at ? at + 1 : addr;
}

static struct rp_addr_stat *addr_stat(struct dict *d, const char *key)
{
    struct rp_addr_stat *a = dict_get(d, key);
    if (a == NULL) {
        a = xcalloc(1, sizeof(*a));
        dict_set(d, key, a);
    }
    return a;
}

static struct rp_dom_stat *dom_stat(struct dict *d, const char *key)
{
    struct rp_dom_stat *a = dict_get(d, key);
    if (a == NULL) {
        a = xcalloc(1, sizeof(*a));
        a->provider = provider_from_domain(key);
        dict_set(d, key, a);
    }
    return a;
}

/* ---- pflogsumm's reason trimming ------------------------------------- */

static void trim_to(char *s, size_t max)
{
    if (strlen(s) > max) {
        memcpy(s + max - 3, "...", 4);
    }
}

/* said_string_trimmer(): drop "... said: " and "...: " prefixes until the
 * text fits, else cut with "..." */
static void said_trim(char *s, size_t max)
{
    while (strlen(s) > max) {
        char *said = NULL;
        for (char *p = strstr(s, " said: "); p; p = strstr(p + 1, " said: "))
            said = p;
        if (said) {
            memmove(s, said + 7, strlen(said + 7) + 1);
            continue;
        }
        char *colon = strchr(s, ':');
        if (colon) {
            colon++;
            while (*colon == ' ')
                colon++;
            memmove(s, colon, strlen(colon) + 1);
            continue;
        }
        trim_to(s, max);
        break;
    }
}

static void strip_prefix(char *s, const char *pfx)
{
    size_t n = strlen(pfx);
    if (strncmp(s, pfx, n) == 0)
        memmove(s, s + n, strlen(s + n) + 1);
}

static void strip_code(char *s)
{
    if (isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
        isdigit((unsigned char)s[2]) && s[3] == ' ')
        memmove(s, s + 4, strlen(s + 4) + 1);
}

static void deferral_reason(const char *reply, char *out, size_t outlen)
{
    str_copy(out, reply ? reply : "", outlen);
    out[strcspn(out, ")")] = '\0';
    said_trim(out, 65);
    strip_code(out);
    strip_prefix(out, "connect to ");
}

static void bounce_reason(const char *reply, char *out, size_t outlen)
{
    str_copy(out, reply ? reply : "", outlen);
    said_trim(out, 66);
    strip_code(out);
}

/* ---- rejects ---------------------------------------------------------- */

/* s/^(?:.*?[:;] )(?:\[[^\]]+\] )?([^;,]+)[;,].*$/$1/ */
static void first_clause(char *s)
{
    for (char *p = s; *p; p++) {
        if ((*p != ':' && *p != ';') || p[1] != ' ')
            continue;
        char *q = p + 2;
        if (*q == '[') {
            char *rb = strchr(q, ']');
            if (rb && rb[1] == ' ')
                q = rb + 2;
        }
        size_t n = strcspn(q, ";,");
        if (n > 0 && q[n] != '\0') {
            memmove(s, q, n);
            s[n] = '\0';
            return;
        }
    }
}

/* s/(client|Client host|Sender address) .+? blocked/blocked/ */
static void blocked(char *s)
{
    static const char *const who[] = {"client ", "Client host ", "Sender address "};
    for (char *p = s; *p; p++)
        for (size_t i = 0; i < 3; i++) {
            size_t n = strlen(who[i]);
            if (strncmp(p, who[i], n) != 0 || p[n] == '\0')
                continue;
            char *b = strstr(p + n + 1, " blocked");
            if (b == NULL)
                continue;
            memmove(p, b + 1, strlen(b + 1) + 1);
            return;
        }
}

static void reason_rcpt(char *r)
{
    /* s/^(\d{3} <).*?(>:)/$1$2/ */
    if (isdigit((unsigned char)r[0]) && r[3] == ' ' && r[4] == '<') {
        char *gt = strstr(r + 5, ">:");
        if (gt)
            memmove(r + 5, gt, strlen(gt) + 1);
    }
    char *pe = strstr(r, "Protocol error;");
    if (pe && pe - r == 10) {
        str_copy(r, "Protocol error", 16);
        return;
    }
    first_clause(r);
    static const char *const pre[] = {"Sender address rejected: ",
                                      "Recipient address rejected: "};
    for (size_t i = 0; i < 2; i++)
        if (strncmp(r, pre[i], strlen(pre[i])) == 0) {
            char *c = strchr(r + strlen(pre[i]), ':');
            if (c)
                *c = '\0';
        }
    blocked(r);
}

static void reason_mail(char *r)
{
    if (!(isdigit((unsigned char)r[0]) && r[3] == ' '))
        return;
    char *p = r + 4;
    if (*p == '<') {
        char *last = NULL;
        for (char *q = strstr(p, ">: "); q; q = strstr(q + 1, ">: "))
            last = q;
        if (last)
            p = last + 3;
    }
    size_t n = strcspn(p, ";:");
    memmove(r, p, n);
    r[n] = '\0';
}

static void reason_other(char *r)
{
    char *last = NULL;
    for (char *p = r; *p; p++)
        if ((*p == ':' || *p == ';') && p[1] == ' ')
            last = p;
    char *p = last ? last + 2 : r;
    size_t n = strcspn(p, ",");
    memmove(r, p, n);
    r[n] = '\0';
}

static struct dict *reject_tally(struct rp_stats *s, const char *kind)
{
    if (strcmp(kind, "reject_warning") == 0 || strcmp(kind, "warning") == 0) {
        s->t.reject_warnings++;
        return &s->warns;
    }
    if (strcmp(kind, "hold") == 0) {
        s->t.held++;
        return &s->holds;
    }
    if (strcmp(kind, "discard") == 0) {
        s->t.discarded++;
        return &s->discards;
    }
    s->t.rejected++;
    return &s->rejects;
}

static void reject_data(const struct rp_ev *e, const char *reason, char *out,
                        size_t outlen)
{
    if (strncmp(reason, "Sender address rejected:", 24) == 0) {
        str_copy(out, e->from && *e->from ? e->from : "<>", outlen);
    } else if (strncmp(reason, "Recipient address rejected:", 27) == 0 ||
               strncmp(reason, "User unknown", 12) == 0) {
        str_copy(out, e->to && *e->to ? e->to : "<>", outlen);
    } else if (strcmp(reason, "Improper use of SMTP command pipelining") == 0) {
        str_copy(out, e->rej_from ? e->rej_from : "", outlen);
    } else {
        rps_gimme_domain(e->rej_from ? e->rej_from : "", out, outlen);
    }
}

void rps_reject(struct rp_stats *s, const struct rp_ev *e)
{
    struct dict *t = reject_tally(s, e->rej_kind ? e->rej_kind : "reject");
    rps_bump(s, e->ts, SER_REJ);
    char reason[1024], data[512];
    const char *stage = e->rej_stage ? e->rej_stage : "";
    if (strcmp(e->svc ? e->svc : "", "cleanup") == 0) {
        /* s/( from \S+?)?; from=<.*$// and trim to 64 */
        str_copy(reason, e->text ? e->text : "", sizeof(reason));
        char *f = strstr(reason, "; from=<");
        if (f) {
            *f = '\0';
            char *fr = strstr(reason, " from ");
            if (fr && strchr(fr + 6, ' ') == NULL)
                *fr = '\0';
        }
        trim_to(reason, 64);
        rpt_add(t, "cleanup", stage, reason, 1);
        return;
    }
    str_copy(reason, e->text ? e->text : "", sizeof(reason));
    if (strcmp(stage, "RCPT") == 0 || strcmp(stage, "DATA") == 0 ||
        strcmp(stage, "CONNECT") == 0)
        reason_rcpt(reason);
    else if (strcmp(stage, "MAIL") == 0)
        reason_mail(reason);
    else
        reason_other(reason);
    char *pipe = strstr(reason, "Improper use of SMTP command pipelining");
    if (pipe)
        str_copy(reason, "Improper use of SMTP command pipelining", sizeof(reason));
    else if (strstr(reason, "Message size exceeds fixed limit"))
        str_copy(reason, "Message size exceeds fixed limit", sizeof(reason));
    reject_data(e, reason, data, sizeof(data));
    rpt_add(t, stage, reason, data, 1);
}

/* ---- other line events ------------------------------------------------ */

void rps_simple(struct rp_stats *s, const struct rp_ev *e)
{
    char text[1024];
    const char *svc = e->svc ? e->svc : "";
    switch (e->kind) {
    case EV_WARNING:
    case EV_FATAL:
    case EV_PANIC:
        str_copy(text, e->text ? e->text : "", sizeof(text));
        trim_to(text, 66);
        rpt_add(e->kind == EV_WARNING ? &s->warnings
                : e->kind == EV_FATAL ? &s->fatals : &s->panics, svc, text, NULL, 1);
        break;
    case EV_MASTER:
        rpt_add(&s->master, e->text ? e->text : "", NULL, NULL, 1);
        break;
    case EV_SMTP_FAIL:
        str_copy(text, e->text ? e->text : "", sizeof(text));
        str_lower(text);
        rpt_add(&s->smtp_fail, text, e->host[0] ? e->host : e->ip, NULL, 1);
        break;
    case EV_POSTSCREEN:
        rpt_add(&s->postscreen, e->text ? e->text : "", NULL, NULL, 1);
        break;
    default:
        break;
    }
}

/* ---- per message (at close) ------------------------------------------ */

static void account_receipt(struct rp_stats *s, const struct rp_msg *m)
{
    if (!m->received)
        return;
    s->t.received++;
    rps_bump(s, m->rcvd_ts, SER_RCV);
    if (!m->has_size || !m->sender_counted || m->srec == NULL)
        return;
    /* the sender's record keeps its entries (the dicts fill in the same
     * order: domain first) */
    struct rp_sender *sr = m->srec;
    const char *addr = sr->norm;
    struct rp_addr_stat *d;
    if (sr->has_dom) {
        if (sr->dom == NULL)
            sr->dom = addr_stat(&s->send_dom, strchr(addr, '@') + 1);
        d = sr->dom;
    } else {
        char dom[512];
        if (m->pickup)
            str_copy(dom, addr, sizeof(dom));
        else
            rps_gimme_domain(m->client ? m->client : "", dom, sizeof(dom));
        d = addr_stat(&s->send_dom, dom);
    }
    d->cnt++;
    d->size += m->size;
    if (sr->user == NULL)
        sr->user = addr_stat(&s->send_user, addr);
    struct rp_addr_stat *u = sr->user;
    u->cnt++;
    u->size += m->size;
    s->t.bytes_received += m->size;
}

/* The recipient's entry in recip_dom (created on first use). */
static struct rp_dom_stat *rcpt_dom(struct rp_stats *s, struct rp_rcpt *r)
{
    if (r->dstat == NULL)
        r->dstat = dom_stat(&s->recip_dom, r->ndom);
    return r->dstat;
}

static void account_sent(struct rp_stats *s, const struct rp_msg *m,
                         struct rp_attempt *a, struct rp_rcpt *r)
{
    if (a->forwarded) {
        s->t.forwarded++;
        return;
    }
    const char *addr = r->norm;
    struct rp_dom_stat *d = rcpt_dom(s, r);
    a->dst = d;
    d->cnt++;
    d->delay_sum += a->delay;
    if (a->delay > d->delay_max)
        d->delay_max = a->delay;
    if (r->user == NULL)
        r->user = addr_stat(&s->recip_user, addr);
    struct rp_addr_stat *u = r->user;
    u->cnt++;
    rps_bump(s, a->ts, SER_DLV);
    s->t.delivered++;
    if (a->size_known && m->size) {
        d->size += m->size;
        u->size += m->size;
        s->t.bytes_delivered += m->size;
    } else if (dict_get(&s->no_size, m->qid) == NULL) {
        rpt_add(&s->no_size, m->qid, addr, NULL, 1);
    }
}

void rps_account(struct rp_ctx *c, struct rp_msg *m)
{
    struct rp_stats *s = &c->st;
    char reason[1024];
    bool deferred = false;
    account_receipt(s, m);
    for (size_t i = 0; i < m->natt; i++) {
        struct rp_attempt *a = &m->att[i];
        if (a->status == ST_NONE)
            continue;
        struct rp_rcpt *r = m->rcpts[a->rcpt];
        switch (a->status) {
        case ST_SENT:
            account_sent(s, m, a, r);
            break;
        case ST_DEFERRED: {
            deferral_reason(a->reply, reason, sizeof(reason));
            rpt_add(&s->deferred, a->svc, reason, NULL, 1);
            rps_bump(s, a->ts, SER_DFR);
            s->t.deferrals++;
            deferred = true;
            struct rp_dom_stat *d = rcpt_dom(s, r);
            d->defers++;
            if (a->delay > d->delay_max)
                d->delay_max = a->delay;
            break;
        }
        case ST_BOUNCED:
            bounce_reason(a->reply, reason, sizeof(reason));
            rpt_add(&s->bounced, a->relay, reason, NULL, 1);
            rps_bump(s, a->ts, SER_BNC);
            s->t.bounced++;
            break;
        default:
            break;
        }
    }
    if (deferred)
        s->t.deferred++;
}

/* ---- merging the line-level statistics -------------------------------- */

static void swap_dict(struct dict *a, struct dict *b)
{
    struct dict t = *a;
    *a = *b;
    *b = t;
}

static void move_entries(struct dict *dst, struct dict *src)
{
    if (src->free_val == NULL && src->cap == 0)
        return;
    if (dst->free_val == NULL && dst->cap == 0) {
        swap_dict(dst, src);
        return;
    }
    size_t pos = 0;
    const char *k;
    void *v;
    while (dict_next(src, &pos, &k, &v))
        dict_set(dst, k, v);
    src->free_val = NULL;        /* the values belong to dst now */
    dict_free(src);
}

static void add_totals(struct rp_totals *d, const struct rp_totals *s)
{
    uint64_t *dp = (uint64_t *)d;
    const uint64_t *sp = (const uint64_t *)s;
    for (size_t i = 0; i < sizeof(*d) / sizeof(uint64_t); i++)
        dp[i] += sp[i];
}

static void merge_days(struct rp_stats *dst, struct rp_stats *src)
{
    size_t pos = 0;
    const char *k;
    void *v;
    while (dict_next(&src->per_day, &pos, &k, &v)) {
        uint64_t *row = dict_get(&dst->per_day, k);
        if (row == NULL) {
            row = xcalloc(SER__N, sizeof(*row));
            dict_set(&dst->per_day, k, row);
        }
        for (int i = 0; i < SER__N; i++)
            row[i] += ((uint64_t *)v)[i];
    }
    pos = 0;
    while (dict_next(&src->days_seen, &pos, &k, &v))
        dict_set(&dst->days_seen, k, (void *)1);
    for (int h = 0; h < 24; h++)
        for (int i = 0; i < SER__N; i++)
            dst->per_hour[h][i] += src->per_hour[h][i];
    for (size_t p = 0; p < src->series.n; p++)
        for (int i = 0; i < SER__N; i++)
            if (src->series.v[p][i])
                rps_series_add(&dst->series, (src->series.base + (int64_t)p) *
                               src->series.width, i, src->series.v[p][i]);
    if (src->first_ts && (dst->first_ts == 0 || src->first_ts < dst->first_ts))
        dst->first_ts = src->first_ts;
    if (src->last_ts > dst->last_ts)
        dst->last_ts = src->last_ts;
}

/* One-level tallies: src's counts into dst (dst's keys keep their order). */
static void merge_counts(struct dict *dst, struct dict *src)
{
    if (dict_count(dst) == 0) {
        swap_dict(dst, src);
        return;
    }
    size_t pos = 0;
    const char *k;
    void *v;
    while (dict_next(src, &pos, &k, &v))
        rpt_add(dst, k, NULL, NULL, ((struct rp_node *)v)->n);
}

void rps_merge(struct rp_stats *dst, struct rp_stats *src)
{
    add_totals(&dst->t, &src->t);
    merge_days(dst, src);
    dst->lines += src->lines;
    dst->parsed += src->parsed;
    dst->unparsed += src->unparsed;
    dst->other += src->other;
    dst->cut += src->cut;
    dst->filtered_out += src->filtered_out;
    dst->bytes += src->bytes;
    for (int i = 0; i < RP_FMT__COUNT; i++)
        dst->by_fmt[i] += src->by_fmt[i];
    dst->tls_in_ok += src->tls_in_ok;
    dst->tls_in_fail += src->tls_in_fail;
    dst->tls_out_ok += src->tls_out_ok;
    dst->tls_out_fail += src->tls_out_fail;
    dst->lost_starttls += src->lost_starttls;
    /* these are only ever filled on the line side (TLS is on the journey
     * side: the journey thread has time to spare) */
    struct dict *only[][2] = {
        {&dst->rejects, &src->rejects}, {&dst->warns, &src->warns},
        {&dst->holds, &src->holds}, {&dst->discards, &src->discards},
        {&dst->warnings, &src->warnings}, {&dst->fatals, &src->fatals},
        {&dst->panics, &src->panics}, {&dst->master, &src->master},
        {&dst->smtp_fail, &src->smtp_fail}, {&dst->postscreen, &src->postscreen},
    };
    for (size_t i = 0; i < sizeof(only) / sizeof(only[0]); i++)
        swap_dict(only[i][0], only[i][1]);
    /* outbound TLS is counted on both sides (Exim's X= on deliveries on
     * the journey side) */
    merge_counts(&dst->tls_out_proto, &src->tls_out_proto);
    merge_counts(&dst->tls_out_cipher, &src->tls_out_cipher);
    move_entries(&dst->tracks, &src->tracks);
}
