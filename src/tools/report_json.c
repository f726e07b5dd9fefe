/*
 * report_json.c - `sluice report --json`: the stable schema documented in
 * docs/report.md ("schema": "sluice-report/1"). Times are the log's wall
 * clock as "YYYY-MM-DD HH:MM:SS"; delays are seconds.
 */
#include "tools/report.h"
#include "lib/jsonw.h"

#include <stdlib.h>
#include <string.h>

static const char *const ser_names[SER__N] = {"received", "delivered", "deferred",
                                              "bounced", "rejected"};

static void j_ts(struct jsonw *w, const char *key, int64_t ts)
{
    char t[32];
    if (ts == 0) {
        jsonw_str(w, key, NULL);
        return;
    }
    rpl_fmt_ts(ts, t, sizeof(t));
    jsonw_str(w, key, t);
}

static void j_delays(struct jsonw *w, struct rp_delays *d)
{
    jsonw_u64(w, "count", d->n);
    jsonw_dbl(w, "p50", rpd_pct(d, 50));
    jsonw_dbl(w, "p95", rpd_pct(d, 95));
    jsonw_dbl(w, "p99", rpd_pct(d, 99));
    jsonw_dbl(w, "max", d->max);
}

static void j_input(struct jsonw *w, struct rp_stats *s)
{
    jsonw_obj(w, "input");
    jsonw_u64(w, "lines", s->lines);
    jsonw_u64(w, "bytes", s->bytes);
    jsonw_obj(w, "parsed");
    jsonw_u64(w, "postfix", s->by_fmt[RP_FMT_POSTFIX]);
    jsonw_u64(w, "sendmail", s->by_fmt[RP_FMT_SENDMAIL]);
    jsonw_u64(w, "exim", s->by_fmt[RP_FMT_EXIM]);
    jsonw_end(w);
    jsonw_u64(w, "other_programs", s->other);
    jsonw_u64(w, "unparsed", s->unparsed);
    jsonw_u64(w, "cut", s->cut);
    jsonw_u64(w, "outside_window", s->filtered_out);
    jsonw_end(w);
}

static void j_totals(struct jsonw *w, struct rp_stats *s)
{
    const struct rp_totals *t = &s->t;
    jsonw_obj(w, "totals");
    jsonw_u64(w, "received", t->received);
    jsonw_u64(w, "delivered", t->delivered);
    jsonw_u64(w, "forwarded", t->forwarded);
    jsonw_u64(w, "deferred", t->deferred);
    jsonw_u64(w, "deferrals", t->deferrals);
    jsonw_u64(w, "bounced", t->bounced);
    jsonw_u64(w, "rejected", t->rejected);
    jsonw_u64(w, "reject_warnings", t->reject_warnings);
    jsonw_u64(w, "held", t->held);
    jsonw_u64(w, "discarded", t->discarded);
    jsonw_u64(w, "bytes_received", t->bytes_received);
    jsonw_u64(w, "bytes_delivered", t->bytes_delivered);
    jsonw_u64(w, "senders", dict_count(&s->send_user));
    jsonw_u64(w, "sending_domains", dict_count(&s->send_dom));
    jsonw_u64(w, "recipients", dict_count(&s->recip_user));
    jsonw_u64(w, "recipient_domains", rps_delivery_domains(s));
    jsonw_end(w);
    const struct rp_msgstats *m = &s->m;
    jsonw_obj(w, "messages");
    jsonw_u64(w, "messages", m->messages);
    jsonw_u64(w, "delivered", m->delivered);
    jsonw_u64(w, "deferred", m->deferred);
    jsonw_u64(w, "bounced", m->bounced);
    jsonw_u64(w, "expired", m->expired);
    jsonw_u64(w, "reinjected", m->reinjected);
    jsonw_u64(w, "still_queued", m->open);
    jsonw_end(w);
}

static void j_row(struct jsonw *w, const uint64_t *row)
{
    for (int k = 0; k < SER__N; k++)
        jsonw_u64(w, ser_names[k], row[k]);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rp_kv *)a)->key, ((const struct rp_kv *)b)->key);
}

static void j_traffic(struct jsonw *w, struct rp_stats *s)
{
    size_t n;
    struct rp_kv *v = rpt_sorted(&s->per_day, NULL, &n);
    qsort(v, n, sizeof(*v), key_cmp);
    jsonw_arr(w, "per_day");
    for (size_t i = 0; i < n; i++) {
        jsonw_obj(w, NULL);
        jsonw_str(w, "date", v[i].key);
        j_row(w, v[i].val);
        jsonw_end(w);
    }
    jsonw_end(w);
    free(v);
    jsonw_arr(w, "per_hour");
    for (int h = 0; h < 24; h++) {
        jsonw_obj(w, NULL);
        jsonw_u64(w, "hour", (uint64_t)h);
        j_row(w, s->per_hour[h]);
        jsonw_end(w);
    }
    jsonw_end(w);
    jsonw_obj(w, "timeline");
    jsonw_u64(w, "bucket_seconds", (uint64_t)s->series.width);
    jsonw_arr(w, "points");
    for (size_t i = 0; i < s->series.n; i++) {
        uint64_t row[SER__N];
        for (int k = 0; k < SER__N; k++)
            row[k] = s->series.v[i][k];
        jsonw_obj(w, NULL);
        j_ts(w, "time", (s->series.base + (int64_t)i) * s->series.width);
        j_row(w, row);
        jsonw_end(w);
    }
    jsonw_end(w);
    jsonw_end(w);
}

/* rp_addr_stat entries as rows: {field: key, messages, bytes}. */
static void j_addr_list(struct jsonw *w, const char *key, const char *field, struct dict *d,
                        uint64_t (*weight)(const void *), int top)
{
    size_t n;
    struct rp_kv *v = rpt_sorted(d, weight, &n);
    jsonw_arr(w, key);
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        const struct rp_addr_stat *a = v[i].val;
        jsonw_obj(w, NULL);
        jsonw_str(w, field, v[i].key);
        jsonw_u64(w, "messages", a->cnt);
        jsonw_u64(w, "bytes", a->size);
        jsonw_end(w);
    }
    jsonw_end(w);
    free(v);
}

static void j_domains(struct jsonw *w, struct rp_stats *s, int top)
{
    size_t n;
    struct rp_kv *v = rpt_sorted(&s->recip_dom, rps_dom_weight, &n);
    jsonw_arr(w, "delivery_domains");
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        struct rp_dom_stat *d = v[i].val;
        jsonw_obj(w, NULL);
        jsonw_str(w, "domain", v[i].key);
        jsonw_u64(w, "sent", d->cnt);
        jsonw_u64(w, "bytes", d->size);
        jsonw_u64(w, "deferrals", d->defers);
        jsonw_dbl(w, "avg_delay", d->cnt ? d->delay_sum / (double)d->cnt : 0);
        jsonw_dbl(w, "max_delay", d->delay_max);
        jsonw_str(w, "provider", d->provider);
        jsonw_obj(w, "delivery_delay");
        j_delays(w, &d->e2e);
        jsonw_end(w);
        jsonw_end(w);
    }
    jsonw_end(w);
    free(v);
    j_addr_list(w, "receipt_domains", "domain", &s->send_dom, rps_addr_cnt, top);
}

static void j_users(struct jsonw *w, struct rp_stats *s, int top)
{
    jsonw_obj(w, "senders");
    j_addr_list(w, "by_count", "address", &s->send_user, rps_addr_cnt, top);
    j_addr_list(w, "by_size", "address", &s->send_user, rps_addr_size, top);
    jsonw_end(w);
    jsonw_obj(w, "recipients");
    j_addr_list(w, "by_count", "address", &s->recip_user, rps_addr_cnt, top);
    j_addr_list(w, "by_size", "address", &s->recip_user, rps_addr_size, top);
    jsonw_end(w);
}

/* A tally flattened to rows: names[] label the levels. */
static void j_flat(struct jsonw *w, struct dict *d, const char *const *names, int depth,
                   const char **path, int level, int top)
{
    size_t n;
    struct rp_kv *v = rpt_sorted(d, NULL, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        struct rp_node *node = v[i].val;
        path[level] = v[i].key;
        if (node->kids && level + 1 < depth) {
            j_flat(w, node->kids, names, depth, path, level + 1, top);
            continue;
        }
        jsonw_obj(w, NULL);
        for (int k = 0; k <= level; k++)
            jsonw_str(w, names[k], path[k]);
        jsonw_u64(w, "count", node->n);
        jsonw_end(w);
    }
    free(v);
}

static void j_tally(struct jsonw *w, const char *key, struct dict *d,
                    const char *const *names, int depth, int top)
{
    const char *path[4] = {0};
    jsonw_arr(w, key);
    if (d->free_val)
        j_flat(w, d, names, depth, path, 0, top);
    jsonw_end(w);
}

static void j_details(struct jsonw *w, struct rp_stats *s, int top)
{
    static const char *const svc_reason[] = {"service", "reason"};
    static const char *const relay_reason[] = {"relay", "reason"};
    static const char *const rej[] = {"stage", "reason", "data"};
    static const char *const svc_text[] = {"service", "text"};
    static const char *const text[] = {"text"};
    static const char *const fail[] = {"reason", "host"};
    static const char *const qid[] = {"queue_id", "recipient"};
    j_tally(w, "deferral_detail", &s->deferred, svc_reason, 2, top);
    j_tally(w, "bounce_detail", &s->bounced, relay_reason, 2, top);
    j_tally(w, "reject_detail", &s->rejects, rej, 3, top);
    j_tally(w, "reject_warning_detail", &s->warns, rej, 3, top);
    j_tally(w, "hold_detail", &s->holds, rej, 3, top);
    j_tally(w, "discard_detail", &s->discards, rej, 3, top);
    j_tally(w, "smtp_failures", &s->smtp_fail, fail, 2, top);
    j_tally(w, "warnings", &s->warnings, svc_text, 2, top);
    j_tally(w, "fatals", &s->fatals, svc_text, 2, top);
    j_tally(w, "panics", &s->panics, svc_text, 2, top);
    j_tally(w, "master", &s->master, text, 1, top);
    j_tally(w, "no_size", &s->no_size, qid, 2, top);
    j_tally(w, "postscreen", &s->postscreen, text, 1, top);
}

static uint64_t prov_weight(const void *p)
{
    const struct rp_prov_stat *ps = p;
    return ps->sent + ps->deferrals + ps->bounces;
}

static void j_providers(struct jsonw *w, struct rp_stats *s, int top)
{
    static const char *const dom[] = {"domain"};
    size_t n;
    jsonw_arr(w, "providers");
    if (s->providers.free_val == NULL) {
        jsonw_end(w);
        return;
    }
    struct rp_kv *v = rpt_sorted(&s->providers, prov_weight, &n);
    for (size_t i = 0; i < n; i++) {
        struct rp_prov_stat *p = v[i].val;
        jsonw_obj(w, NULL);
        jsonw_str(w, "provider", v[i].key);
        jsonw_u64(w, "messages", p->messages);
        jsonw_u64(w, "sent", p->sent);
        jsonw_u64(w, "deferrals", p->deferrals);
        jsonw_u64(w, "bounces", p->bounces);
        jsonw_obj(w, "delivery_delay");
        j_delays(w, &p->e2e);
        jsonw_end(w);
        jsonw_obj(w, "classes");
        for (int k = 0; k < RC__COUNT; k++)
            if (p->cls[k])
                jsonw_u64(w, classify_name(k), p->cls[k]);
        jsonw_end(w);
        j_tally(w, "domains", &p->domains, dom, 1, top);
        jsonw_end(w);
    }
    jsonw_end(w);
    free(v);
}

static void j_classes(struct jsonw *w, struct rp_stats *s)
{
    jsonw_arr(w, "reply_classes");
    for (int k = 0; k < RC__COUNT; k++) {
        if (s->cls[k] == 0)
            continue;
        jsonw_obj(w, NULL);
        jsonw_str(w, "class", classify_name(k));
        jsonw_u64(w, "count", s->cls[k]);
        jsonw_str(w, "explanation", classify_explain(k));
        jsonw_str(w, "next_step", classify_next_step(k));
        jsonw_str(w, "example", s->cls_example[k]);
        jsonw_end(w);
    }
    jsonw_end(w);
}

static void j_delay_view(struct jsonw *w, struct rp_stats *s)
{
    jsonw_obj(w, "delivery_delay");
    j_delays(w, &s->all_e2e);
    jsonw_end(w);
}

static uint64_t tls_weight(const void *p)
{
    const struct rp_tls_stat *t = p;
    return t->fail * 1000000ULL + t->ok;
}

static void j_tls_list(struct jsonw *w, const char *key, const char *name,
                       struct dict *d, struct dict *hours, int top)
{
    static const char *const hr[] = {"hour"};
    size_t n;
    jsonw_arr(w, key);
    if (d->free_val) {
        struct rp_kv *v = rpt_sorted(d, tls_weight, &n);
        for (size_t i = 0; i < n && i < (size_t)top; i++) {
            const struct rp_tls_stat *t = v[i].val;
            jsonw_obj(w, NULL);
            jsonw_str(w, name, v[i].key);
            jsonw_u64(w, "ok", t->ok);
            jsonw_u64(w, "failed", t->fail);
            jsonw_u64(w, "lost_after_starttls", t->lost_starttls);
            jsonw_str(w, "last_error", t->last_reason);
            if (hours) {
                struct rp_node *node = dict_get(hours, v[i].key);
                jsonw_arr(w, "failures_by_hour");
                if (node && node->kids) {
                    const char *path[2] = {0};
                    j_flat(w, node->kids, hr, 1, path, 0, 1000000);
                }
                jsonw_end(w);
            }
            jsonw_end(w);
        }
        free(v);
    }
    jsonw_end(w);
}

static void j_counts(struct jsonw *w, const char *key, struct dict *d)
{
    size_t n;
    jsonw_obj(w, key);
    struct rp_kv *v = rpt_sorted(d, NULL, &n);
    for (size_t i = 0; i < n; i++)
        jsonw_u64(w, v[i].key, v[i].n);
    free(v);
    jsonw_end(w);
}

static void j_tls(struct jsonw *w, struct rp_stats *s, int top)
{
    jsonw_obj(w, "tls");
    jsonw_obj(w, "inbound");
    jsonw_u64(w, "ok", s->tls_in_ok);
    jsonw_u64(w, "failed", s->tls_in_fail);
    jsonw_u64(w, "lost_after_starttls", s->lost_starttls);
    j_counts(w, "protocols", &s->tls_in_proto);
    j_counts(w, "ciphers", &s->tls_in_cipher);
    jsonw_end(w);
    jsonw_obj(w, "outbound");
    jsonw_u64(w, "ok", s->tls_out_ok);
    jsonw_u64(w, "failed", s->tls_out_fail);
    j_counts(w, "protocols", &s->tls_out_proto);
    j_counts(w, "ciphers", &s->tls_out_cipher);
    jsonw_end(w);
    j_tls_list(w, "clients", "client", &s->tls_hosts, NULL, top);
    j_tls_list(w, "networks", "network", &s->tls_nets, &s->tls_net_hours, top);
    jsonw_end(w);
}

static void j_grey(struct jsonw *w, struct rp_stats *s, int top)
{
    static const char *const dom[] = {"domain"};
    static const char *const dest[] = {"destination"};
    struct rp_grey *g = &s->grey;
    jsonw_obj(w, "greylisting");
    jsonw_obj(w, "inbound");
    jsonw_u64(w, "greylisted", g->in_greylisted);
    jsonw_u64(w, "passed", g->in_passed);
    jsonw_u64(w, "retried_from_other_ip", g->in_other_ip);
    jsonw_u64(w, "never_retried", g->pending.free_val ? dict_count(&g->pending) : 0);
    jsonw_obj(w, "delay");
    j_delays(w, &g->in_delay);
    jsonw_end(w);
    j_tally(w, "other_ip_sender_domains", &g->other_ip_senders, dom, 1, top);
    jsonw_end(w);
    jsonw_obj(w, "outbound");
    jsonw_u64(w, "greylisted", g->out_messages);
    jsonw_u64(w, "delivered_later", g->out_delivered);
    jsonw_obj(w, "delay");
    j_delays(w, &g->out_delay);
    jsonw_end(w);
    j_tally(w, "destinations", &g->out_by_dest, dest, 1, top);
    jsonw_end(w);
    jsonw_end(w);
}

static void j_incidents(struct jsonw *w, struct rp_stats *s)
{
    jsonw_arr(w, "incidents");
    for (size_t i = 0; i < s->ninc; i++) {
        const struct rp_incident *in = &s->inc[i];
        jsonw_obj(w, NULL);
        jsonw_str(w, "kind", in->tls ? "tls_failures" : "deferrals");
        jsonw_str(w, "key", in->key);
        j_ts(w, "start", in->start);
        j_ts(w, "end", in->end);
        jsonw_u64(w, "attempts", in->attempts);
        jsonw_u64(w, "failures", in->failures);
        jsonw_dbl(w, "rate", in->rate);
        jsonw_dbl(w, "baseline", in->baseline);
        jsonw_u64(w, "affected", in->affected);
        jsonw_str(w, "dominant_class", classify_name(in->dominant));
        jsonw_str(w, "dominant_reply", in->example);
        jsonw_end(w);
    }
    jsonw_end(w);
}

void rp_json(struct rp_ctx *c, FILE *out)
{
    struct rp_stats *s = &c->st;
    int top = c->o->top;
    struct jsonw w;
    jsonw_init(&w, out);
    jsonw_obj(&w, NULL);
    jsonw_str(&w, "schema", "sluice-report/1");
    jsonw_str(&w, "generator", "sluice " SLUICE_VERSION);
    jsonw_obj(&w, "period");
    j_ts(&w, "first", s->first_ts);
    j_ts(&w, "last", s->last_ts);
    jsonw_u64(&w, "days", dict_count(&s->days_seen));
    jsonw_u64(&w, "incident_bucket_seconds", (uint64_t)s->bucket);
    jsonw_end(&w);
    j_input(&w, s);
    j_totals(&w, s);
    j_traffic(&w, s);
    j_domains(&w, s, top);
    j_users(&w, s, top);
    j_details(&w, s, top);
    j_providers(&w, s, top);
    j_classes(&w, s);
    j_delay_view(&w, s);
    j_tls(&w, s, top);
    j_grey(&w, s, top);
    j_incidents(&w, s);
    jsonw_end(&w);
}

static const char *const st_names[] = {"none", "sent", "deferred", "bounced", "other"};

void rp_trace_json(struct rp_ctx *c, FILE *out)
{
    struct jsonw w;
    jsonw_init(&w, out);
    jsonw_obj(&w, NULL);
    jsonw_str(&w, "schema", "sluice-report-trace/1");
    jsonw_str(&w, "id", c->o->trace);
    jsonw_arr(&w, "journeys");
    for (size_t i = 0; i < c->ntraced; i++) {
        const struct rp_msg *m = c->traced[i];
        jsonw_obj(&w, NULL);
        jsonw_str(&w, "queue_id", m->qid);
        jsonw_str(&w, "parent", m->parent);
        j_ts(&w, "arrival", m->arrival ? m->arrival : m->first_ts);
        jsonw_str(&w, "client", m->client);
        jsonw_str(&w, "sender", m->sender);
        jsonw_u64(&w, "size", m->size);
        jsonw_str(&w, "message_id", m->msgid);
        jsonw_str(&w, "notification", m->notice);
        jsonw_arr(&w, "attempts");
        for (size_t a = 0; a < m->natt; a++) {
            const struct rp_attempt *at = &m->att[a];
            jsonw_obj(&w, NULL);
            j_ts(&w, "time", at->ts);
            jsonw_str(&w, "recipient", m->rcpts[at->rcpt]->k.key);
            jsonw_str(&w, "status", st_names[at->status < 5 ? at->status : 4]);
            jsonw_str(&w, "relay", at->relay);
            jsonw_dbl(&w, "delay", at->delay);
            jsonw_str(&w, "dsn", at->dsn[0] ? at->dsn : NULL);
            jsonw_str(&w, "class", at->status == ST_SENT ? NULL : classify_name(at->cls));
            jsonw_str(&w, "reply", at->reply);
            jsonw_end(&w);
        }
        jsonw_end(&w);
        jsonw_str(&w, "log", m->lines.data ? m->lines.data : "");
        jsonw_end(&w);
    }
    jsonw_end(&w);
    jsonw_end(&w);
}
