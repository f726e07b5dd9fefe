/*
 * report.c - `sluice report`: the verb, its options, and the per-line
 * pipeline (header -> format detection -> parser -> journeys).
 *
 * One streaming pass over the input; unparseable lines are counted (and
 * listed with --unparsed FILE), never fatal. See docs/report.md.
 */
#include "tools/report.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const fmt_names[RP_FMT__COUNT] = {"auto", "postfix", "sendmail", "exim"};

static enum rp_fmt detect_prog(const struct rp_hdr *h)
{
    const char *p = h->prog;
    if (strcmp(p, "exim") == 0 || strcmp(p, "exim4") == 0)
        return RP_FMT_EXIM;
    if (strcmp(p, "sendmail") == 0 || strncmp(p, "sm-mta", 6) == 0 ||
        strncmp(p, "sm-msp", 6) == 0)
        return RP_FMT_SENDMAIL;
    if (rpp_is_postfix(p, h->svc))
        return RP_FMT_POSTFIX;
    return RP_FMT_AUTO;
}

/* Syslog names repeat from line to line: a small direct-mapped cache of
 * name -> format (names longer than the slot are not cached). */
#define DETECT_SLOTS 64
struct detect_slot {
    char name[40];
    size_t len;
    enum rp_fmt fmt;
    rpp_fn fn;             /* the Postfix parser of the name's daemon */
    bool svc_sendmail;     /* its last component is "sendmail" */
};

/* rp_detect(), and the Postfix parser for the daemon (h->fn) from the
 * same cache slot: one lookup per line for both. */
static enum rp_fmt detect(struct rp_hdr *h)
{
    static struct detect_slot cache[DETECT_SLOTS];
    if (h->exim_native)
        return RP_FMT_EXIM;
    const char *p = h->prog;
    size_t n = h->prog_len;
    if (n == 0 || n >= sizeof(cache[0].name)) {
        h->svc_sendmail = strcmp(h->svc, "sendmail") == 0;
        return detect_prog(h);
    }
    struct detect_slot *s =
        &cache[(n * 31 + (unsigned char)p[n - 1] * 7 + (unsigned char)p[n / 2]) %
               DETECT_SLOTS];
    /* n bytes, not the NUL just written after them: a load across a
     * fresh store stalls */
    if (s->len != n || !rp_eq(s->name, p, n)) {
        s->fmt = detect_prog(h);
        s->fn = s->fmt == RP_FMT_POSTFIX ? rpp_handler(h->svc) : NULL;
        s->svc_sendmail = strcmp(h->svc, "sendmail") == 0;
        memcpy(s->name, p, n + 1);
        s->len = n;
    }
    h->fn = s->fn;
    h->svc_sendmail = s->svc_sendmail;
    return s->fmt;
}

enum rp_fmt rp_detect(const struct rp_hdr *h)
{
    struct rp_hdr copy = *h;
    copy.prog_len = strlen(h->prog);
    return detect(&copy);
}

static void unparsed(struct rp_ctx *c, const char *orig)
{
    c->lst.unparsed++;
    if (c->unparsed && orig) {
        fputs(orig, c->unparsed);
        fputc('\n', c->unparsed);
    }
}

static void run_parser(enum rp_fmt fmt, struct rp_hdr *h, struct rp_ev *e)
{
    switch (fmt) {
    case RP_FMT_SENDMAIL: rpsm_parse(h, e); break;
    case RP_FMT_EXIM: rpx_parse(h, e); break;
    default: rpp_parse(h, e); break;
    }
}

/* Events with a queue id go to the journeys; so do rejects (greylisting
 * triplets, cleanup rejects end a message), after being counted here, and
 * inbound TLS events (per client and network: the journey thread keeps
 * those tables). Outbound TLS is two counters: counted here. */
static bool journey_bound(const struct rp_ev *e)
{
    switch (e->kind) {
    case EV_CLIENT: case EV_PICKUP: case EV_MSGID: case EV_QUEUED:
    case EV_DELIVERY: case EV_REMOVED: case EV_EXPIRED: case EV_NOTICE:
        return e->qid != NULL && (e->qid[0] != 'N' || strcmp(e->qid, "NOQUEUE") != 0);
    case EV_REJECT:
        return true;
    case EV_TLS_OK: case EV_TLS_FAIL:
        return !e->outbound;
    default:
        return false;
    }
}

bool rp_parse_line(struct rp_ctx *c, char *line, size_t len, struct rp_ev *e)
{
    static char orig[RP_LINE_MAX + 1];
    bool keep = c->unparsed != NULL || (c->o && c->o->trace);
    c->lst.lines++;
    if (keep) {
        size_t n = len < RP_LINE_MAX ? len : RP_LINE_MAX;
        memcpy(orig, line, n);
        orig[n] = '\0';
        c->cur_line = orig;
    }
    struct rp_hdr h;
    if (rpl_parse_header(line, &c->year, &h) < 0) {
        if (len > 0)
            unparsed(c, keep ? orig : NULL);
        return false;
    }
    enum rp_fmt fmt = detect(&h);
    if (fmt == RP_FMT_AUTO || (c->o->format != RP_FMT_AUTO && fmt != c->o->format)) {
        c->lst.other++;   /* another program's line (dovecot, amavis, ...) */
        return false;
    }
    if ((c->o->since && h.ts < c->o->since) || (c->o->until && h.ts >= c->o->until)) {
        c->lst.filtered_out++;
        return false;
    }
    rps_day_seen(&c->lst, h.ts);
    /* the fields before ip[] start zeroed: copied from a zero block, as
     * gcc makes a memset of this size a slow "rep stos" */
    static const struct { uint64_t v[(offsetof(struct rp_ev, ip) + 7) / 8]; } zero;
    memcpy(e, &zero, offsetof(struct rp_ev, ip));
    e->ip[0] = e->host[0] = '\0';
    e->ts = h.ts;
    run_parser(fmt, &h, e);
    if (e->kind == EV_NONE) {
        unparsed(c, keep ? orig : NULL);
        return false;
    }
    c->lst.parsed++;
    c->lst.by_fmt[fmt]++;
    if (e->kind == EV_IGNORED)
        return false;
    bool journey = journey_bound(e);
    if (e->kind == EV_REJECT || !journey)
        rpj_line_event(c, e);
    /* the daemon name's flag comes from the detect cache: a strcmp of the
     * line's bytes here loads across the NUL the header scan just stored */
    e->sendmail = e->svc == h.svc ? h.svc_sendmail
                                  : e->svc && strcmp(e->svc, "sendmail") == 0;
    return journey;
}

void rp_feed_line(struct rp_ctx *c, char *line, size_t len)
{
    struct rp_ev e;
    if (rp_parse_line(c, line, len, &e))
        rpj_event(c, &e);
}

void rp_ctx_init(struct rp_ctx *c, struct rp_opts *o)
{
    memset(c, 0, sizeof(*c));
    c->o = o;
    rps_init(&c->st, o->bucket);
    rps_init(&c->lst, o->bucket);
    rpj_init(c);
    (void)classify_rule_count();   /* load the rules before any thread runs */
}

void rp_ctx_finish(struct rp_ctx *c)
{
    rpj_finish(c);
    rps_merge(&c->st, &c->lst);
    rpv_incidents(&c->st);
}

void rp_ctx_free(struct rp_ctx *c)
{
    rpj_free(c);
    rpv_free(&c->st);
    rps_free(&c->st);
    rpv_free(&c->lst);
    rps_free(&c->lst);
}

/* ---- the verb --------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: sluice report [options] [LOGFILE...]\n"
        "  Deliverability analysis of Postfix, Sendmail, Exim and sluice logs\n"
        "  (plain or .gz; stdin without files; several files are put in time\n"
        "  order). Text by default: pflogsumm's sections, then providers, delay\n"
        "  percentiles, TLS, greylisting and incidents.\n"
        "\n"
        "  --json               JSON on stdout (schema: docs/report.md)\n"
        "  --html FILE          one self-contained HTML page with SVG charts\n"
        "  --format F           postfix|sendmail|exim|sluice (default: per line)\n"
        "  --since T, --until T only lines in [since, until): YYYY-MM-DD[ HH:MM[:SS]]\n"
        "  --domain D           messages from or to D (and its subdomains)\n"
        "  --provider P         deliveries to provider P (Microsoft, Google, ...)\n"
        "  --client C           messages and events from client C (name, IP, CIDR)\n"
        "  --trace ID           one message's whole journey (queue id or message-id)\n"
        "  --unparsed FILE      write the lines not understood to FILE\n"
        "  --year Y             year of the first traditional syslog timestamp\n"
        "  --top N              rows per table (default %d)\n"
        "  --bucket SECONDS     incident time bucket (default %d)\n"
        "  --reply-rules FILE   reply classifier rules (default: built in,\n"
        "                       the same as etc/reply_rules)\n"
        "  --progress           progress on stderr even when not a terminal\n",
        RP_TOP_DEFAULT, RP_BUCKET_DEFAULT);
}

static const struct option report_opts[] = {
    {"json", no_argument, NULL, 'j'},
    {"html", required_argument, NULL, 'H'},
    {"format", required_argument, NULL, 'f'},
    {"since", required_argument, NULL, 's'},
    {"until", required_argument, NULL, 'u'},
    {"domain", required_argument, NULL, 'd'},
    {"provider", required_argument, NULL, 'p'},
    {"client", required_argument, NULL, 'c'},
    {"trace", required_argument, NULL, 't'},
    {"unparsed", required_argument, NULL, 'U'},
    {"year", required_argument, NULL, 'y'},
    {"top", required_argument, NULL, 'n'},
    {"bucket", required_argument, NULL, 'b'},
    {"reply-rules", required_argument, NULL, 'r'},
    {"progress", no_argument, NULL, 'P'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad(const char *what, const char *val)
{
    fprintf(stderr, "sluice report: bad %s '%s'; try 'sluice report --help'\n", what, val);
    return 2;
}

static int parse_format(const char *v, enum rp_fmt *out)
{
    if (strcmp(v, "sluice") == 0) {
        *out = RP_FMT_POSTFIX;
        return 0;
    }
    for (int i = 1; i < RP_FMT__COUNT; i++)
        if (strcmp(v, fmt_names[i]) == 0) {
            *out = (enum rp_fmt)i;
            return 0;
        }
    return -1;
}

static int parse_number(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    uint64_t u;
    if (str_to_u64(v, &u) < 0 || (int64_t)u < lo || (int64_t)u > hi)
        return -1;
    *out = (int64_t)u;
    return 0;
}

/* One option; returns 0, or an exit code (1 = --help done, 2 = error). */
static int apply_opt(struct rp_opts *o, int ch, const char *v)
{
    int64_t n;
    switch (ch) {
    case 'j': o->json = true; return 0;
    case 'H': o->html_path = v; return 0;
    case 'f': return parse_format(v, &o->format) < 0 ? bad("--format", v) : 0;
    case 's': return rpl_parse_when(v, &o->since) < 0 ? bad("--since", v) : 0;
    case 'u': return rpl_parse_when(v, &o->until) < 0 ? bad("--until", v) : 0;
    case 'd': o->domain = v; return 0;
    case 'p': o->provider = v; return 0;
    case 'c': o->client = v; return 0;
    case 't': o->trace = v; return 0;
    case 'U': o->unparsed_path = v; return 0;
    case 'r': o->rules_path = v; return 0;
    case 'P': o->progress = true; return 0;
    case 'y':
        if (parse_number(v, 1970, 9999, &n) < 0)
            return bad("--year", v);
        o->year = (int)n;
        return 0;
    case 'n':
        if (parse_number(v, 1, 1000000, &n) < 0)
            return bad("--top", v);
        o->top = (int)n;
        return 0;
    case 'b':
        if (parse_number(v, 60, 86400 * 7, &n) < 0)
            return bad("--bucket", v);
        o->bucket = n;
        return 0;
    case 'h':
        usage(stdout);
        return 1;
    default:
        fprintf(stderr, "sluice report: unknown option; try 'sluice report --help'\n");
        return 2;
    }
}

static int write_outputs(struct rp_ctx *c)
{
    const struct rp_opts *o = c->o;
    if (o->trace) {
        if (o->json)
            rp_trace_json(c, stdout);
        else
            rp_trace_text(c, stdout);
        return c->ntraced ? 0 : 1;
    }
    if (o->html_path && rp_html(c, o->html_path) < 0)
        return 1;
    if (o->json)
        rp_json(c, stdout);
    else if (o->html_path == NULL)
        rp_text(c, stdout);
    return 0;
}

int report_main(int argc, char **argv)
{
    struct rp_opts o = {.top = RP_TOP_DEFAULT, .bucket = RP_BUCKET_DEFAULT};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", report_opts, NULL)) != -1) {
        int rc = apply_opt(&o, ch, optarg);
        if (rc)
            return rc == 1 ? 0 : rc;
    }
    char err[512];
    if (o.rules_path && classify_load(o.rules_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice report: %s\n", err);
        return 1;
    }
    struct rp_ctx c;
    rp_ctx_init(&c, &o);
    if (o.unparsed_path && (c.unparsed = fopen(o.unparsed_path, "w")) == NULL) {
        fprintf(stderr, "sluice report: %s: cannot write\n", o.unparsed_path);
        rp_ctx_free(&c);
        classify_free();
        return 1;
    }
    int rc = rpi_run(&c, argv + optind, argc - optind) < 0 ? 1 : 0;
    if (rc == 0) {
        rp_ctx_finish(&c);
        rc = write_outputs(&c);
    }
    if (c.unparsed)
        fclose(c.unparsed);
    rp_ctx_free(&c);
    classify_free();
    return rc;
}
