/*
 * report_text.c - the text report: pflogsumm's sections first (same
 * titles and definitions; numbers are printed in full, without pflogsumm's
 * k/m units), then the views pflogsumm lacks.
 */
#include "tools/report.h"
#include "lib/strutil.h"

#include <stdlib.h>
#include <string.h>

static void title(FILE *o, const char *t)
{
    fprintf(o, "\n%s\n", t);
    for (size_t i = 0; t[i]; i++)
        fputc('-', o);
    fputc('\n', o);
}

/* "12.3 s" / "4.5 m" / "1.2 h" / "2.0 d" */
static const char *dur(double s, char *buf, size_t n)
{
    if (s < 60)
        snprintf(buf, n, "%5.1f s", s);
    else if (s < 3600)
        snprintf(buf, n, "%5.1f m", s / 60);
    else if (s < 86400)
        snprintf(buf, n, "%5.1f h", s / 3600);
    else
        snprintf(buf, n, "%5.1f d", s / 86400);
    return buf;
}

static unsigned pct(uint64_t part, uint64_t whole)
{
    return whole ? (unsigned)(part * 100 / whole) : 0;
}

static void grand_totals(FILE *o, struct rp_stats *s)
{
    const struct rp_totals *t = &s->t;
    uint64_t all = t->delivered + t->rejected + t->discarded;
    title(o, "Grand Totals");
    fprintf(o, "messages\n\n");
    fprintf(o, " %8llu  received\n", (unsigned long long)t->received);
    fprintf(o, " %8llu  delivered\n", (unsigned long long)t->delivered);
    fprintf(o, " %8llu  forwarded\n", (unsigned long long)t->forwarded);
    fprintf(o, " %8llu  deferred", (unsigned long long)t->deferred);
    if (t->deferrals)
        fprintf(o, "  (%llu deferrals)", (unsigned long long)t->deferrals);
    fprintf(o, "\n %8llu  bounced\n", (unsigned long long)t->bounced);
    fprintf(o, " %8llu  rejected (%u%%)\n", (unsigned long long)t->rejected,
            pct(t->rejected, all));
    fprintf(o, " %8llu  reject warnings\n", (unsigned long long)t->reject_warnings);
    fprintf(o, " %8llu  held\n", (unsigned long long)t->held);
    fprintf(o, " %8llu  discarded (%u%%)\n\n", (unsigned long long)t->discarded,
            pct(t->discarded, all));
    fprintf(o, " %8llu  bytes received\n", (unsigned long long)t->bytes_received);
    fprintf(o, " %8llu  bytes delivered\n", (unsigned long long)t->bytes_delivered);
    fprintf(o, " %8zu  senders\n", dict_count(&s->send_user));
    fprintf(o, " %8zu  sending hosts/domains\n", dict_count(&s->send_dom));
    fprintf(o, " %8zu  recipients\n", dict_count(&s->recip_user));
    fprintf(o, " %8zu  recipient hosts/domains\n", rps_delivery_domains(s));
}

static const char *const ser_head =
    "              received  delivered   deferred    bounced     rejected\n"
    "    --------------------------------------------------------------------\n";

static void per_day(FILE *o, struct rp_stats *s)
{
    size_t n;
    if (dict_count(&s->days_seen) < 2)
        return;
    title(o, "Per-Day Traffic Summary");
    fprintf(o, "    date  %s", ser_head);
    struct rp_kv *v = rpt_sorted(&s->per_day, NULL, &n);
    /* by date, not by count */
    for (size_t i = 0; i + 1 < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(v[j].key, v[i].key) < 0) {
                struct rp_kv t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        const uint64_t *row = v[i].val;
        fprintf(o, "    %s", v[i].key);
        for (int k = 0; k < SER__N; k++)
            fprintf(o, "   %8llu", (unsigned long long)row[k]);
        fputc('\n', o);
    }
    free(v);
}

static void per_hour(FILE *o, struct rp_stats *s)
{
    size_t days = dict_count(&s->days_seen);
    title(o, days > 1 ? "Per-Hour Traffic Daily Average" : "Per-Hour Traffic Summary");
    fprintf(o, "    time  %s", ser_head);
    for (int h = 0; h < 24; h++) {
        fprintf(o, "    %02d00-%02d00", h, h + 1);
        for (int k = 0; k < SER__N; k++) {
            double v = (double)s->per_hour[h][k];
            if (days)
                v = v / (double)days + 0.5;
            fprintf(o, "   %8llu", (unsigned long long)v);
        }
        fputc('\n', o);
    }
}

static void delivery_domains(FILE *o, struct rp_stats *s, int top)
{
    size_t n;
    char b1[32], b2[32];
    title(o, "Host/Domain Summary: Message Delivery");
    fprintf(o, " sent cnt      bytes   defers   avg dly   max dly  host/domain\n"
               " --------  ---------  -------  --------  --------  -----------\n");
    struct rp_kv *v = rpt_sorted(&s->recip_dom, rps_dom_weight, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        const struct rp_dom_stat *d = v[i].val;
        double avg = d->cnt ? d->delay_sum / (double)d->cnt : 0;
        fprintf(o, " %8llu  %9llu  %7llu  %s  %s  %s\n", (unsigned long long)d->cnt,
                (unsigned long long)d->size, (unsigned long long)d->defers,
                dur(avg, b1, sizeof(b1)), dur(d->delay_max, b2, sizeof(b2)), v[i].key);
    }
    free(v);
}

static void receipt_domains(FILE *o, struct rp_stats *s, int top)
{
    size_t n;
    title(o, "Host/Domain Summary: Messages Received");
    fprintf(o, " msg cnt      bytes  host/domain\n"
               " -------  ---------  -----------\n");
    struct rp_kv *v = rpt_sorted(&s->send_dom, rps_addr_cnt, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        const struct rp_addr_stat *d = v[i].val;
        fprintf(o, " %7llu  %9llu  %s\n", (unsigned long long)d->cnt,
                (unsigned long long)d->size, v[i].key);
    }
    free(v);
}

static void users(FILE *o, struct dict *d, const char *t, uint64_t (*w)(const void *),
                  int top)
{
    size_t n;
    char tt[128];
    snprintf(tt, sizeof(tt), "top %d %s", top, t);
    if (dict_count(d) == 0) {
        fprintf(o, "\n%s: none\n", tt);
        return;
    }
    title(o, tt);
    struct rp_kv *v = rpt_sorted(d, w, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++)
        fprintf(o, " %9llu  %s\n", (unsigned long long)v[i].n, v[i].key);
    free(v);
}

static void walk(FILE *o, struct dict *d, int level, int top)
{
    size_t n;
    struct rp_kv *v = rpt_sorted(d, NULL, &n);
    for (size_t i = 0; i < n; i++) {
        struct rp_node *node = v[i].val;
        if (node->kids) {
            fprintf(o, "%*s%s (total: %llu)\n", level, "", v[i].key,
                    (unsigned long long)node->n);
            walk(o, node->kids, level + 2, top);
        } else if (i < (size_t)top) {
            fprintf(o, "%*s%6llu   %s\n", level, "", (unsigned long long)node->n, v[i].key);
        }
    }
    free(v);
}

static void nested(FILE *o, struct dict *d, const char *t, int top)
{
    if (dict_count(d) == 0) {
        fprintf(o, "\n%s: none\n", t);
        return;
    }
    title(o, t);
    walk(o, d, 2, top);
}

static void pflogsumm_sections(FILE *o, struct rp_stats *s, int top)
{
    grand_totals(o, s);
    per_day(o, s);
    per_hour(o, s);
    delivery_domains(o, s, top);
    receipt_domains(o, s, top);
    users(o, &s->send_user, "Senders by message count", rps_addr_cnt, top);
    users(o, &s->recip_user, "Recipients by message count", rps_addr_cnt, top);
    users(o, &s->send_user, "Senders by message size", rps_addr_size, top);
    users(o, &s->recip_user, "Recipients by message size", rps_addr_size, top);
    nested(o, &s->no_size, "Messages with no size data", top);
    nested(o, &s->deferred, "message deferral detail", top);
    nested(o, &s->bounced, "message bounce detail (by relay)", top);
    nested(o, &s->rejects, "message reject detail", top);
    nested(o, &s->warns, "message reject warning detail", top);
    nested(o, &s->holds, "message hold detail", top);
    nested(o, &s->discards, "message discard detail", top);
    nested(o, &s->smtp_fail, "smtp delivery failures", top);
    nested(o, &s->warnings, "Warnings", top);
    nested(o, &s->fatals, "Fatal Errors", top);
    nested(o, &s->panics, "Panics", top);
    nested(o, &s->master, "Master daemon messages", top);
}

/* ---- the views pflogsumm lacks --------------------------------------- */

static void messages(FILE *o, struct rp_stats *s)
{
    const struct rp_msgstats *m = &s->m;
    title(o, "Messages (journeys: one per message, content-filter re-injections joined)");
    fprintf(o, " %8llu  messages\n", (unsigned long long)m->messages);
    fprintf(o, " %8llu  delivered to every recipient tried\n",
            (unsigned long long)m->delivered);
    fprintf(o, " %8llu  deferred at least once\n", (unsigned long long)m->deferred);
    fprintf(o, " %8llu  bounced (at least one recipient)\n", (unsigned long long)m->bounced);
    fprintf(o, " %8llu  expired\n", (unsigned long long)m->expired);
    fprintf(o, " %8llu  re-injected by a content filter (joined by message-id)\n",
            (unsigned long long)m->reinjected);
    fprintf(o, " %8llu  still in the queue at the end of the log\n",
            (unsigned long long)m->open);
}

static uint64_t prov_weight(const void *p)
{
    const struct rp_prov_stat *ps = p;
    return ps->sent + ps->deferrals + ps->bounces;
}

static enum reply_class top_class(const uint64_t *cls)
{
    int best = 0;
    for (int k = 1; k < RC__COUNT; k++)
        if (cls[k] > cls[best])
            best = k;
    return (enum reply_class)best;
}

static void providers(FILE *o, struct rp_stats *s, int top)
{
    size_t n;
    char b1[32], b2[32], b3[32];
    title(o, "Providers (destinations grouped by mailbox provider)");
    if (s->providers.free_val == NULL) {
        fprintf(o, " none\n");
        return;
    }
    fprintf(o, " %-18s %8s %8s %8s %8s %9s %9s %9s  %s\n", "provider", "messages", "sent",
            "defers", "bounces", "p50", "p95", "p99", "most frequent failure");
    struct rp_kv *v = rpt_sorted(&s->providers, prov_weight, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        struct rp_prov_stat *p = v[i].val;
        enum reply_class tc = top_class(p->cls);
        fprintf(o, " %-18s %8llu %8llu %8llu %8llu %9s %9s %9s  %s\n", v[i].key,
                (unsigned long long)p->messages, (unsigned long long)p->sent,
                (unsigned long long)p->deferrals, (unsigned long long)p->bounces,
                dur(rpd_pct(&p->e2e, 50), b1, sizeof(b1)),
                dur(rpd_pct(&p->e2e, 95), b2, sizeof(b2)),
                dur(rpd_pct(&p->e2e, 99), b3, sizeof(b3)),
                p->cls[tc] ? classify_name(tc) : "-");
    }
    free(v);
}

static void reply_classes(FILE *o, struct rp_stats *s)
{
    title(o, "Deferral and bounce replies by class");
    bool any = false;
    for (int k = 0; k < RC__COUNT; k++) {
        if (s->cls[k] == 0)
            continue;
        any = true;
        fprintf(o, " %8llu  %s\n", (unsigned long long)s->cls[k], classify_name(k));
        fprintf(o, "           what: %s\n", classify_explain(k));
        fprintf(o, "           next: %s\n", classify_next_step(k));
        char ex[200];
        str_copy(ex, s->cls_example[k] ? s->cls_example[k] : "", sizeof(ex));
        fprintf(o, "           e.g.: %s\n", ex);
    }
    if (!any)
        fprintf(o, " none\n");
}

static uint64_t e2e_weight(const void *p)
{
    return ((const struct rp_dom_stat *)p)->e2e.n;
}

static void delays(FILE *o, struct rp_stats *s, int top)
{
    size_t n;
    char b[5][32];
    title(o, "Receive-to-deliver delay by destination");
    fprintf(o, " %-32s %8s %9s %9s %9s %9s\n", "destination", "sent", "p50", "p95", "p99",
            "max");
    fprintf(o, " %-32s %8zu %9s %9s %9s %9s\n", "(all)", s->all_e2e.n,
            dur(rpd_pct(&s->all_e2e, 50), b[0], 32), dur(rpd_pct(&s->all_e2e, 95), b[1], 32),
            dur(rpd_pct(&s->all_e2e, 99), b[2], 32), dur(s->all_e2e.max, b[3], 32));
    struct rp_kv *v = rpt_sorted(&s->recip_dom, e2e_weight, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        struct rp_dom_stat *d = v[i].val;
        if (d->e2e.n == 0)
            break;
        fprintf(o, " %-32s %8zu %9s %9s %9s %9s\n", v[i].key, d->e2e.n,
                dur(rpd_pct(&d->e2e, 50), b[0], 32), dur(rpd_pct(&d->e2e, 95), b[1], 32),
                dur(rpd_pct(&d->e2e, 99), b[2], 32), dur(d->e2e.max, b[3], 32));
    }
    free(v);
}

static uint64_t tls_weight(const void *p)
{
    const struct rp_tls_stat *t = p;
    return t->fail * 1000000ULL + t->ok;
}

static void tls_table(FILE *o, struct dict *d, const char *what, int top)
{
    size_t n;
    if (d->free_val == NULL)
        return;
    fprintf(o, "\n %-48s %8s %8s %8s\n", what, "ok", "failed", "lost@TLS");
    struct rp_kv *v = rpt_sorted(d, tls_weight, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        const struct rp_tls_stat *t = v[i].val;
        fprintf(o, " %-48s %8llu %8llu %8llu\n", v[i].key, (unsigned long long)t->ok,
                (unsigned long long)t->fail, (unsigned long long)t->lost_starttls);
    }
    free(v);
}

static void counts(FILE *o, struct dict *d, const char *what, int top)
{
    size_t n;
    if (dict_count(d) == 0)
        return;
    fprintf(o, "\n %s:\n", what);
    struct rp_kv *v = rpt_sorted(d, NULL, &n);
    for (size_t i = 0; i < n && i < (size_t)top; i++)
        fprintf(o, "   %8llu  %s\n", (unsigned long long)v[i].n, v[i].key);
    free(v);
}

static void tls(FILE *o, struct rp_stats *s, int top)
{
    title(o, "TLS");
    fprintf(o, " inbound:  %llu handshakes, %llu failures (%llu lost connection after "
            "STARTTLS)\n", (unsigned long long)s->tls_in_ok,
            (unsigned long long)s->tls_in_fail, (unsigned long long)s->lost_starttls);
    fprintf(o, " outbound: %llu handshakes, %llu failures\n",
            (unsigned long long)s->tls_out_ok, (unsigned long long)s->tls_out_fail);
    tls_table(o, &s->tls_hosts, "client host", top);
    tls_table(o, &s->tls_nets, "client network", top);
    nested(o, &s->tls_net_hours, "TLS failures per client network and hour", top);
    counts(o, &s->tls_in_proto, "inbound protocols", top);
    counts(o, &s->tls_in_cipher, "inbound ciphers", top);
    counts(o, &s->tls_out_proto, "outbound protocols", top);
    counts(o, &s->tls_out_cipher, "outbound ciphers", top);
}

static void grey(FILE *o, struct rp_stats *s, int top)
{
    struct rp_grey *g = &s->grey;
    char b1[32], b2[32], b3[32];
    title(o, "Greylisting");
    fprintf(o, " inbound (this server greylisted clients):\n");
    fprintf(o, "   %8llu  greylisting rejects\n", (unsigned long long)g->in_greylisted);
    fprintf(o, "   %8llu  triplets that passed later, delay p50 %s, p95 %s, max %s\n",
            (unsigned long long)g->in_passed, dur(rpd_pct(&g->in_delay, 50), b1, 32),
            dur(rpd_pct(&g->in_delay, 95), b2, 32), dur(g->in_delay.max, b3, 32));
    fprintf(o, "   %8llu  of them retried from another IP address\n",
            (unsigned long long)g->in_other_ip);
    fprintf(o, "   %8zu  triplets never retried (or not yet)\n",
            g->pending.free_val ? dict_count(&g->pending) : (size_t)0);
    if (g->pending.free_val)
        counts(o, &g->other_ip_senders, "sender domains retrying from another IP", top);
    fprintf(o, " outbound (destinations greylisted this server):\n");
    fprintf(o, "   %8llu  recipients greylisted, %llu delivered later, delay p50 %s, "
            "max %s\n", (unsigned long long)g->out_messages,
            (unsigned long long)g->out_delivered, dur(rpd_pct(&g->out_delay, 50), b1, 32),
            dur(g->out_delay.max, b2, 32));
    if (g->out_by_dest.free_val)
        counts(o, &g->out_by_dest, "greylisting destinations", top);
}

static void incidents(FILE *o, struct rp_stats *s)
{
    char t1[32], t2[32];
    title(o, "Incidents (deferral or TLS failure rate above its baseline)");
    if (s->ninc == 0) {
        fprintf(o, " none\n");
        return;
    }
    for (size_t i = 0; i < s->ninc; i++) {
        const struct rp_incident *in = &s->inc[i];
        rpl_fmt_ts(in->start, t1, sizeof(t1));
        rpl_fmt_ts(in->end, t2, sizeof(t2));
        fprintf(o, " %s .. %s  %s %s\n", t1, t2,
                in->tls ? "TLS failures from" : "deferrals to", in->key);
        fprintf(o, "     %llu of %llu %s failed (%.0f%%, baseline %.0f%%), %llu %s affected\n",
                (unsigned long long)in->failures, (unsigned long long)in->attempts,
                in->tls ? "handshakes" : "attempts", in->rate * 100, in->baseline * 100,
                (unsigned long long)in->affected, in->tls ? "connections" : "messages");
        char ex[160];
        str_copy(ex, in->example ? in->example : "", sizeof(ex));
        fprintf(o, "     dominant reply: %s: %s\n", classify_name(in->dominant), ex);
    }
}

static void input(FILE *o, struct rp_stats *s)
{
    title(o, "Input");
    fprintf(o, " %10llu  lines (%llu bytes)\n", (unsigned long long)s->lines,
            (unsigned long long)s->bytes);
    fprintf(o, " %10llu  postfix/sluice, %llu sendmail, %llu exim lines understood\n",
            (unsigned long long)s->by_fmt[RP_FMT_POSTFIX],
            (unsigned long long)s->by_fmt[RP_FMT_SENDMAIL],
            (unsigned long long)s->by_fmt[RP_FMT_EXIM]);
    fprintf(o, " %10llu  lines of other programs\n", (unsigned long long)s->other);
    fprintf(o, " %10llu  unparsed lines\n", (unsigned long long)s->unparsed);
    fprintf(o, " %10llu  lines cut at %d bytes\n", (unsigned long long)s->cut, RP_LINE_MAX);
    fprintf(o, " %10llu  lines outside --since/--until\n",
            (unsigned long long)s->filtered_out);
}

void rp_text(struct rp_ctx *c, FILE *o)
{
    struct rp_stats *s = &c->st;
    int top = c->o->top;
    char t1[32] = "-", t2[32] = "-";
    if (s->last_ts) {
        rpl_fmt_ts(s->first_ts, t1, sizeof(t1));
        rpl_fmt_ts(s->last_ts, t2, sizeof(t2));
    }
    fprintf(o, "sluice report: %s .. %s\n", t1, t2);
    pflogsumm_sections(o, s, top);
    messages(o, s);
    providers(o, s, top);
    reply_classes(o, s);
    delays(o, s, top);
    tls(o, s, top);
    grey(o, s, top);
    incidents(o, s);
    counts(o, &s->postscreen, "postscreen verdicts", top);
    input(o, s);
}

/* ---- --trace ---------------------------------------------------------- */

static const char *const st_names[] = {"-", "sent", "deferred", "bounced", "other"};

void rp_trace_text(struct rp_ctx *c, FILE *o)
{
    char t[32];
    if (c->ntraced == 0) {
        fprintf(o, "sluice report: no message with queue id or message-id '%s'\n",
                c->o->trace);
        return;
    }
    for (size_t i = 0; i < c->ntraced; i++) {
        const struct rp_msg *m = c->traced[i];
        rpl_fmt_ts(m->arrival ? m->arrival : m->first_ts, t, sizeof(t));
        fprintf(o, "queue id %s%s%s\n", m->qid, m->parent ? ", re-injected from " : "",
                m->parent ? m->parent : "");
        fprintf(o, "  arrival     %s\n", t);
        fprintf(o, "  client      %s\n", m->client ? m->client : (m->pickup ? "(local)" : "-"));
        fprintf(o, "  sender      <%s>\n", m->sender ? m->sender : "");
        fprintf(o, "  size        %llu\n", (unsigned long long)m->size);
        fprintf(o, "  message-id  <%s>\n", m->msgid ? m->msgid : "");
        for (size_t a = 0; a < m->natt; a++) {
            const struct rp_attempt *at = &m->att[a];
            rpl_fmt_ts(at->ts, t, sizeof(t));
            fprintf(o, "  %s  %-8s <%s> via %s, delay %.1f s, dsn %s, class %s\n    %s\n",
                    t, st_names[at->status < 5 ? at->status : 4], m->rcpts[at->rcpt]->k.key,
                    at->relay, at->delay, at->dsn[0] ? at->dsn : "-",
                    at->status == ST_SENT ? "-" : classify_name(at->cls), at->reply);
        }
        if (m->notice)
            fprintf(o, "  notification to the sender: queue id %s\n", m->notice);
        fprintf(o, "  log lines:\n");
        const char *p = m->lines.data ? m->lines.data : "";
        while (*p) {
            size_t n = strcspn(p, "\n");
            fprintf(o, "    %.*s\n", (int)n, p);
            p += n + (p[n] ? 1 : 0);
        }
        fputc('\n', o);
    }
}
