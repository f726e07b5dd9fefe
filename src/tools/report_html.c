/*
 * report_html.c - `sluice report --html FILE`: one self-contained page
 * (inline CSS and SVG, no scripts, no external assets) with charts of
 * traffic and deferrals over time, the delay distribution, per-provider
 * bars and an incident timeline, followed by the main tables.
 */
#include "tools/report.h"
#include "lib/strutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define W 960          /* chart width */
#define H 240          /* chart height */
#define ML 56          /* left margin */
#define MB 28          /* bottom margin */
#define MAX_POINTS 240 /* series points drawn (hours are merged to fit) */

static const char *const ser_names[SER__N] = {"received", "delivered", "deferred",
                                              "bounced", "rejected"};
static const char *const ser_colors[SER__N] = {"#4e79a7", "#59a14f", "#f28e2b",
                                               "#e15759", "#9c755f"};

static void esc(FILE *o, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", o); break;
        case '>': fputs("&gt;", o); break;
        case '&': fputs("&amp;", o); break;
        case '"': fputs("&quot;", o); break;
        default:
            if ((unsigned char)*s < 0x20)
                fputc(' ', o);
            else
                fputc(*s, o);
        }
    }
}

static void head(FILE *o, const struct rp_stats *s)
{
    char t1[32] = "-", t2[32] = "-";
    if (s->last_ts) {
        rpl_fmt_ts(s->first_ts, t1, sizeof(t1));
        rpl_fmt_ts(s->last_ts, t2, sizeof(t2));
    }
    fprintf(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<title>sluice report %s .. %s</title>\n<style>\n"
               "body{font:14px/1.4 sans-serif;margin:24px;color:#222;max-width:1000px}\n"
               "h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}\n"
               "table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;"
               "border-bottom:1px solid #eee;text-align:right}th{background:#f4f4f4}\n"
               "td.l,th.l{text-align:left}.tot{display:flex;flex-wrap:wrap;gap:10px}\n"
               ".tot div{background:#f4f6fa;padding:8px 14px;border-radius:6px}\n"
               ".tot b{display:block;font-size:20px}svg{background:#fff;border:1px solid #ddd}\n"
               "svg text{font:11px sans-serif;fill:#444}.small{color:#666;font-size:12px}\n"
               "</style></head><body>\n<h1>sluice report</h1>\n"
               "<p class=\"small\">%s .. %s (log wall clock), %llu lines</p>\n",
            t1, t2, t1, t2, (unsigned long long)s->lines);
}

static void totals(FILE *o, const struct rp_stats *s)
{
    const struct rp_totals *t = &s->t;
    struct { const char *k; uint64_t v; } rows[] = {
        {"received", t->received}, {"delivered", t->delivered},
        {"deferred", t->deferred}, {"deferrals", t->deferrals},
        {"bounced", t->bounced}, {"rejected", t->rejected},
        {"messages (joined)", s->m.messages}, {"TLS failures in", s->tls_in_fail},
        {"incidents", s->ninc},
    };
    fprintf(o, "<h2>Totals</h2><div class=\"tot\">\n");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        fprintf(o, "<div><b>%llu</b>%s</div>\n", (unsigned long long)rows[i].v, rows[i].k);
    fprintf(o, "</div>\n");
}

static void axis(FILE *o, uint64_t ymax, const char *label)
{
    fprintf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n", ML,
            H - MB, W - 10, H - MB);
    fprintf(o, "<line x1=\"%d\" y1=\"10\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n", ML, ML,
            H - MB);
    fprintf(o, "<text x=\"4\" y=\"16\">%llu</text><text x=\"4\" y=\"%d\">0</text>\n",
            (unsigned long long)ymax, H - MB);
    fprintf(o, "<text x=\"%d\" y=\"%d\">%s</text>\n", ML + 4, 20, label);
}

/* Traffic and deferrals over time: one polyline per series. */
static void chart_traffic(FILE *o, const struct rp_stats *s)
{
    const struct rp_series *sr = &s->series;
    fprintf(o, "<h2>Traffic and deferrals over time</h2>\n");
    if (sr->n == 0) {
        fprintf(o, "<p>No traffic.</p>\n");
        return;
    }
    size_t per = (sr->n + MAX_POINTS - 1) / MAX_POINTS;
    size_t np = (sr->n + per - 1) / per;
    uint64_t ymax = 1;
    for (size_t p = 0; p < np; p++)
        for (int k = 0; k < SER__N; k++) {
            uint64_t sum = 0;
            for (size_t i = p * per; i < (p + 1) * per && i < sr->n; i++)
                sum += sr->v[i][k];
            if (sum > ymax)
                ymax = sum;
        }
    fprintf(o, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
               "aria-label=\"traffic over time\">\n", W, H, W, H);
    char lab[64];
    snprintf(lab, sizeof(lab), "per %zu hour%s", per, per > 1 ? "s" : "");
    axis(o, ymax, lab);
    double dx = np > 1 ? (double)(W - 10 - ML) / (double)(np - 1) : 0;
    for (int k = 0; k < SER__N; k++) {
        fprintf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                ser_colors[k]);
        for (size_t p = 0; p < np; p++) {
            uint64_t sum = 0;
            for (size_t i = p * per; i < (p + 1) * per && i < sr->n; i++)
                sum += sr->v[i][k];
            double x = ML + dx * (double)p + (np == 1 ? (W - ML) / 2.0 : 0);
            double y = (H - MB) - (double)sum / (double)ymax * (H - MB - 10);
            fprintf(o, "%.1f,%.1f ", x, y);
        }
        fprintf(o, "\"/>\n");
        fprintf(o, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                   "<text x=\"%d\" y=\"%d\">%s</text>\n", ML + 150 + k * 110, 8,
                ser_colors[k], ML + 164 + k * 110, 17, ser_names[k]);
    }
    char t1[32], t2[32];
    rpl_fmt_ts(sr->base * sr->width, t1, sizeof(t1));
    rpl_fmt_ts((sr->base + (int64_t)sr->n) * sr->width, t2, sizeof(t2));
    fprintf(o, "<text x=\"%d\" y=\"%d\">%s</text><text x=\"%d\" y=\"%d\" "
               "text-anchor=\"end\">%s</text>\n</svg>\n", ML, H - 8, t1, W - 10, H - 8, t2);
}

/* Receive-to-deliver delay distribution: bars over fixed ranges. */
static void chart_delays(FILE *o, const struct rp_stats *s)
{
    static const double edge[] = {1, 10, 60, 600, 3600, 6 * 3600, 86400, 1e18};
    static const char *const lab[] = {"&lt;1s", "1-10s", "10-60s", "1-10m", "10-60m",
                                      "1-6h", "6-24h", "&gt;1d"};
    uint64_t cnt[8] = {0}, ymax = 1;
    const struct rp_delays *d = &s->all_e2e;
    for (size_t i = 0; i < d->n; i++) {
        int b = 0;
        while (b < 7 && d->v[i] >= edge[b])
            b++;
        cnt[b]++;
    }
    for (int b = 0; b < 8; b++)
        if (cnt[b] > ymax)
            ymax = cnt[b];
    fprintf(o, "<h2>Delay distribution (receive to deliver)</h2>\n"
               "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
               "aria-label=\"delay distribution\">\n", W, H, W, H);
    axis(o, ymax, "deliveries");
    double bw = (double)(W - 10 - ML) / 8.0;
    for (int b = 0; b < 8; b++) {
        double h = (double)cnt[b] / (double)ymax * (H - MB - 30);
        fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                   "fill=\"#4e79a7\"/>\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s"
                   "</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%llu</text>\n",
                ML + b * bw + 4, (H - MB) - h, bw - 8, h, ML + b * bw + bw / 2, H - 10,
                lab[b], ML + b * bw + bw / 2, (H - MB) - h - 3, (unsigned long long)cnt[b]);
    }
    fprintf(o, "</svg>\n");
}

static uint64_t prov_weight(const void *p)
{
    const struct rp_prov_stat *ps = p;
    return ps->sent + ps->deferrals + ps->bounces;
}

/* Per-provider stacked bars: sent, deferrals, bounces. */
static void chart_providers(FILE *o, struct rp_stats *s)
{
    fprintf(o, "<h2>Providers</h2>\n");
    if (s->providers.free_val == NULL) {
        fprintf(o, "<p>No deliveries.</p>\n");
        return;
    }
    size_t n;
    struct rp_kv *v = rpt_sorted(&s->providers, prov_weight, &n);
    size_t rows = n < 12 ? n : 12;
    uint64_t max = v[0].n ? v[0].n : 1;
    int hh = 26 * (int)rows + 30;
    fprintf(o, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
               "aria-label=\"providers\">\n", W, hh, W, hh);
    static const char *const col[] = {"#59a14f", "#f28e2b", "#e15759"};
    static const char *const name[] = {"sent", "deferrals", "bounces"};
    for (int k = 0; k < 3; k++)
        fprintf(o, "<rect x=\"%d\" y=\"6\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                   "<text x=\"%d\" y=\"15\">%s</text>\n", 160 + k * 110, col[k],
                174 + k * 110, name[k]);
    for (size_t i = 0; i < rows; i++) {
        const struct rp_prov_stat *p = v[i].val;
        uint64_t part[3] = {p->sent, p->deferrals, p->bounces};
        double x = 150, y = 26 + 26.0 * (double)i;
        fprintf(o, "<text x=\"4\" y=\"%.0f\">", y + 14);
        esc(o, v[i].key);
        fprintf(o, "</text>\n");
        for (int k = 0; k < 3; k++) {
            double wdt = (double)part[k] / (double)max * (W - 230);
            fprintf(o, "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"18\" "
                       "fill=\"%s\"><title>%s %llu</title></rect>\n", x, y, wdt, col[k],
                    name[k], (unsigned long long)part[k]);
            x += wdt;
        }
        fprintf(o, "<text x=\"%.1f\" y=\"%.0f\">%llu</text>\n", x + 6, y + 14,
                (unsigned long long)v[i].n);
    }
    fprintf(o, "</svg>\n");
    free(v);
}

/* Incident timeline: one bar per incident over the whole period. */
static void chart_incidents(FILE *o, const struct rp_stats *s)
{
    fprintf(o, "<h2>Incident timeline</h2>\n");
    if (s->ninc == 0) {
        fprintf(o, "<p>No incidents: no destination's deferral rate and no client "
                   "network's TLS failure rate left its baseline.</p>\n");
        return;
    }
    size_t rows = s->ninc < 20 ? s->ninc : 20;
    int hh = 22 * (int)rows + 40;
    double t0 = (double)s->first_ts, span = (double)(s->last_ts - s->first_ts);
    if (span < 1)
        span = 1;
    fprintf(o, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
               "aria-label=\"incident timeline\">\n", W, hh, W, hh);
    for (size_t i = 0; i < rows; i++) {
        const struct rp_incident *in = &s->inc[i];
        double x1 = 260 + ((double)in->start - t0) / span * (W - 280);
        double x2 = 260 + ((double)in->end - t0) / span * (W - 280);
        if (x2 - x1 < 3)
            x2 = x1 + 3;
        double y = 10 + 22.0 * (double)i;
        fprintf(o, "<text x=\"4\" y=\"%.0f\">%s ", y + 13, in->tls ? "TLS" : "defer");
        esc(o, in->key);
        fprintf(o, "</text><rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"16\" "
                   "fill=\"%s\"><title>%s: %llu of %llu failed</title></rect>\n", x1, y,
                x2 - x1, in->tls ? "#b07aa1" : "#e15759", classify_name(in->dominant),
                (unsigned long long)in->failures, (unsigned long long)in->attempts);
    }
    char t1[32], t2[32];
    rpl_fmt_ts(s->first_ts, t1, sizeof(t1));
    rpl_fmt_ts(s->last_ts, t2, sizeof(t2));
    fprintf(o, "<text x=\"260\" y=\"%d\">%s</text><text x=\"%d\" y=\"%d\" "
               "text-anchor=\"end\">%s</text></svg>\n", hh - 6, t1, W - 20, hh - 6, t2);
}

static void table_incidents(FILE *o, const struct rp_stats *s)
{
    if (s->ninc == 0)
        return;
    fprintf(o, "<table><tr><th class=\"l\">start</th><th class=\"l\">end</th>"
               "<th class=\"l\">what</th><th>failed</th><th>of</th><th>baseline</th>"
               "<th>affected</th><th class=\"l\">dominant reply</th></tr>\n");
    for (size_t i = 0; i < s->ninc; i++) {
        const struct rp_incident *in = &s->inc[i];
        char t1[32], t2[32];
        rpl_fmt_ts(in->start, t1, sizeof(t1));
        rpl_fmt_ts(in->end, t2, sizeof(t2));
        fprintf(o, "<tr><td class=\"l\">%s</td><td class=\"l\">%s</td><td class=\"l\">%s ",
                t1, t2, in->tls ? "TLS failures from" : "deferrals to");
        esc(o, in->key);
        fprintf(o, "</td><td>%llu</td><td>%llu</td><td>%.0f%%</td><td>%llu</td>"
                   "<td class=\"l\">%s: ", (unsigned long long)in->failures,
                (unsigned long long)in->attempts, in->baseline * 100,
                (unsigned long long)in->affected, classify_name(in->dominant));
        esc(o, in->example);
        fprintf(o, "</td></tr>\n");
    }
    fprintf(o, "</table>\n");
}

static void table_providers(FILE *o, struct rp_stats *s)
{
    if (s->providers.free_val == NULL)
        return;
    size_t n;
    struct rp_kv *v = rpt_sorted(&s->providers, prov_weight, &n);
    fprintf(o, "<table><tr><th class=\"l\">provider</th><th>messages</th><th>sent</th>"
               "<th>deferrals</th><th>bounces</th><th>p50 s</th><th>p95 s</th>"
               "<th>p99 s</th></tr>\n");
    for (size_t i = 0; i < n && i < 30; i++) {
        struct rp_prov_stat *p = v[i].val;
        fprintf(o, "<tr><td class=\"l\">");
        esc(o, v[i].key);
        fprintf(o, "</td><td>%llu</td><td>%llu</td><td>%llu</td><td>%llu</td>"
                   "<td>%.1f</td><td>%.1f</td><td>%.1f</td></tr>\n",
                (unsigned long long)p->messages, (unsigned long long)p->sent,
                (unsigned long long)p->deferrals, (unsigned long long)p->bounces,
                rpd_pct(&p->e2e, 50), rpd_pct(&p->e2e, 95), rpd_pct(&p->e2e, 99));
    }
    fprintf(o, "</table>\n");
    free(v);
}

static void table_classes(FILE *o, const struct rp_stats *s)
{
    fprintf(o, "<h2>Deferral and bounce replies by class</h2>\n<table><tr>"
               "<th>count</th><th class=\"l\">class</th><th class=\"l\">what it means"
               "</th><th class=\"l\">next step</th></tr>\n");
    for (int k = 0; k < RC__COUNT; k++) {
        if (s->cls[k] == 0)
            continue;
        fprintf(o, "<tr><td>%llu</td><td class=\"l\">%s</td><td class=\"l\">",
                (unsigned long long)s->cls[k], classify_name(k));
        esc(o, classify_explain(k));
        fprintf(o, "</td><td class=\"l\">");
        esc(o, classify_next_step(k));
        fprintf(o, "</td></tr>\n");
    }
    fprintf(o, "</table>\n");
}

static uint64_t tls_weight(const void *p)
{
    const struct rp_tls_stat *t = p;
    return t->fail * 1000000ULL + t->ok;
}

static void table_tls(FILE *o, struct rp_stats *s)
{
    fprintf(o, "<h2>TLS</h2>\n<p>Inbound: %llu handshakes, %llu failures (%llu lost "
               "connection after STARTTLS). Outbound: %llu handshakes, %llu failures.</p>\n",
            (unsigned long long)s->tls_in_ok, (unsigned long long)s->tls_in_fail,
            (unsigned long long)s->lost_starttls, (unsigned long long)s->tls_out_ok,
            (unsigned long long)s->tls_out_fail);
    if (s->tls_nets.free_val == NULL)
        return;
    size_t n;
    struct rp_kv *v = rpt_sorted(&s->tls_nets, tls_weight, &n);
    fprintf(o, "<table><tr><th class=\"l\">client network</th><th>ok</th><th>failed</th>"
               "<th>lost after STARTTLS</th></tr>\n");
    for (size_t i = 0; i < n && i < 20; i++) {
        const struct rp_tls_stat *t = v[i].val;
        fprintf(o, "<tr><td class=\"l\">");
        esc(o, v[i].key);
        fprintf(o, "</td><td>%llu</td><td>%llu</td><td>%llu</td></tr>\n",
                (unsigned long long)t->ok, (unsigned long long)t->fail,
                (unsigned long long)t->lost_starttls);
    }
    fprintf(o, "</table>\n");
    free(v);
}

static void section_grey(FILE *o, struct rp_stats *s)
{
    struct rp_grey *g = &s->grey;
    fprintf(o, "<h2>Greylisting</h2>\n<p>Inbound: %llu greylisting rejects, %llu "
               "triplets passed later (delay p50 %.0f s, max %.0f s), %llu of them retried "
               "from another IP address. Outbound: %llu recipients greylisted by the "
               "destination, %llu delivered later (delay p50 %.0f s).</p>\n",
            (unsigned long long)g->in_greylisted, (unsigned long long)g->in_passed,
            rpd_pct(&g->in_delay, 50), (double)g->in_delay.max,
            (unsigned long long)g->in_other_ip, (unsigned long long)g->out_messages,
            (unsigned long long)g->out_delivered, rpd_pct(&g->out_delay, 50));
}

int rp_html(struct rp_ctx *c, const char *path)
{
    FILE *o = fopen(path, "w");
    if (o == NULL) {
        fprintf(stderr, "sluice report: %s: cannot write: %s\n", path, strerror(errno));
        return -1;
    }
    struct rp_stats *s = &c->st;
    head(o, s);
    totals(o, s);
    chart_traffic(o, s);
    chart_delays(o, s);
    chart_providers(o, s);
    table_providers(o, s);
    table_classes(o, s);
    chart_incidents(o, s);
    table_incidents(o, s);
    table_tls(o, s);
    section_grey(o, s);
    fprintf(o, "<p class=\"small\">Made by sluice %s. Definitions: docs/report.md."
               "</p>\n</body></html>\n", SLUICE_VERSION);
    if (fclose(o) != 0) {
        fprintf(stderr, "sluice report: %s: write error\n", path);
        return -1;
    }
    return 0;
}
