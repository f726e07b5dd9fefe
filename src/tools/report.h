/*
 * report.h - internal interfaces of `sluice report` (log analysis).
 *
 * Data flow, one streaming pass:
 *   report_input.c   files/gzip/stdin -> lines (bounded), in time order
 *   report_line.c    syslog header, timestamps, year inference
 *   report_parse_*.c one parser per MTA: a line -> struct rp_ev events
 *   report_journey.c events joined by queue id into one record per message;
 *                    a finished message is accounted and freed
 *   report_stats.c   pflogsumm-compatible aggregates
 *   report_views.c   provider, delay, TLS, greylisting, incident views
 *   report_text.c / report_json.c / report_html.c   output
 * docs/report.md documents the definitions and the JSON schema.
 */
#ifndef SLUICE_REPORT_H
#define SLUICE_REPORT_H

#include "lib/buf.h"
#include "lib/dict.h"
#include "mail/classify.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define RP_LINE_MAX 16384      /* longer lines are cut (and counted) */
#define RP_TOP_DEFAULT 20
#define RP_BUCKET_DEFAULT 900  /* incident time bucket, seconds */

enum rp_fmt { RP_FMT_AUTO = 0, RP_FMT_POSTFIX, RP_FMT_SENDMAIL, RP_FMT_EXIM, RP_FMT__COUNT };

/* ---- time (report_line.c) ------------------------------------------- */
/* Times are wall-clock seconds as the log shows them (no time zone
 * arithmetic): days since 1970-01-01 * 86400 + seconds of the day. */
int64_t rpl_civil_to_ts(int y, int mon, int d, int h, int mi, int s);
void rpl_ts_to_civil(int64_t ts, int *y, int *mon, int *d, int *h, int *mi, int *s);
/* "2024-03-23 17:02:35" into out (>= 20 bytes). */
void rpl_fmt_ts(int64_t ts, char *out, size_t outlen);
/* "YYYY-MM-DD[ |T]HH:MM[:SS]" or "YYYY-MM-DD"; -1 on junk. */
int rpl_parse_when(const char *s, int64_t *out);

struct rp_year {
    int year;          /* year of the current traditional timestamps */
    int last_mon;      /* 1..12, 0 = none yet */
    bool fixed;        /* year came from --year */
    int ref_year, ref_mon;   /* reference (file mtime or now) for the first line */
};

struct rp_ev;
/* A Postfix daemon's message parser (report_parse_postfix.c). */
typedef void (*rpp_fn)(char *msg, struct rp_ev *e);

struct rp_hdr {
    int64_t ts;
    char *host;        /* syslog host ("" for Exim's own log) */
    char *prog;        /* "postfix/smtpd", "sendmail", "exim" */
    size_t prog_len;   /* strlen(prog) */
    const char *svc;   /* last component of prog: "smtpd" */
    long pid;
    char *msg;         /* text after "prog[pid]: " */
    bool exim_native;  /* an Exim main-log line (no syslog header) */
    rpp_fn fn;         /* the Postfix parser of svc, when rp_detect() knew it */
    bool svc_sendmail; /* svc is "sendmail" (set with fn) */
};

/* Split a (mutable, NUL-terminated) line into its header. Returns 0, or -1
 * when the line has no recognisable timestamp/program. */
int rpl_parse_header(char *line, struct rp_year *yr, struct rp_hdr *h);
/* Peek the timestamp of a line without changing it (for file ordering);
 * *full is true when the line carries a year. */
int rpl_peek_ts(const char *line, int64_t *ts, bool *full);

/* ---- events (parsers -> journeys) ----------------------------------- */
enum rp_ev_kind {
    EV_NONE = 0,       /* not understood: counted as unparsed */
    EV_IGNORED,        /* understood, nothing to count */
    EV_CLIENT,         /* QID: client=host[ip] (a message is received) */
    EV_PICKUP,         /* QID: local submission (pickup, sendmail -bs) */
    EV_MSGID,          /* QID: message-id=<...> */
    EV_QUEUED,         /* QID: from=<s>, size=N, nrcpt=N */
    EV_DELIVERY,       /* QID: to=<r>, relay=, delay=, dsn=, status= */
    EV_REMOVED,        /* QID: removed / Completed */
    EV_EXPIRED,        /* QID: from=<s>, status=expired, returned to sender */
    EV_NOTICE,         /* QID: sender non-delivery notification: QID2 */
    EV_REJECT,         /* reject, reject_warning, hold, discard */
    EV_CONNECT,        /* connect from client */
    EV_LOST,           /* lost connection / timeout after X from client */
    EV_TLS_OK,         /* TLS connection established */
    EV_TLS_FAIL,       /* TLS handshake failure (incl. lost after STARTTLS) */
    EV_WARNING,
    EV_FATAL,
    EV_PANIC,
    EV_MASTER,         /* master daemon messages */
    EV_SMTP_FAIL,      /* smtp client: connect to host: reason */
    EV_POSTSCREEN,     /* postscreen verdicts (PASS NEW, DNSBL, ...) */
};

enum rp_status { ST_NONE = 0, ST_SENT, ST_DEFERRED, ST_BOUNCED, ST_OTHER };

struct rp_ev {
    enum rp_ev_kind kind;
    int64_t ts;
    const char *svc;        /* "smtpd", "smtp", "local", "cleanup", ... */
    const char *qid;
    const char *client;     /* "host[ip]" (or "host [ip]" as logged) */
    const char *addr;       /* from=/to=/sender */
    const char *orig_to;
    const char *relay;
    const char *dsn;
    enum rp_status status;
    const char *reply;      /* the status text, without parentheses */
    const char *msgid;
    const char *text;       /* warning text, reject remainder, TLS reason */
    const char *rej_kind;   /* "reject", "reject_warning", "hold", "discard" */
    const char *rej_stage;  /* "RCPT", "MAIL", "header", "body", ... */
    const char *from, *to;  /* envelope of a reject line */
    const char *rej_from;   /* the client named in a reject line */
    const char *tls_proto, *tls_cipher;
    const char *link_qid;   /* notice qid, or "queued as" qid */
    uint64_t size;
    double delay;
    int nrcpt;
    bool has_size, has_delay, outbound, forwarded;
    bool sendmail;          /* svc is "sendmail" (set by rp_parse_line) */
    /* set by rpj_ahead() a few events early (0 in pf: not computed): the
     * hashes of the queue id, relay and first recipient it looks up */
    uint8_t pf;
    uint32_t qid_len, relay_len;
    uint64_t qid_h, relay_h, rcpt_h;
    char ip[64];            /* client (or relay) address, extracted */
    char host[256];         /* client (or relay) name, extracted */
    char fbuf[320], tbuf[320], word[48], link[32];   /* parser scratch */
};

/* ---- nested counters (report_tally.c) ------------------------------- */
/* A tally is a dict of nodes nested up to three levels, every node holding
 * the total of its subtree: rpt_add(t, "RCPT", "Relay access denied",
 * "example.org", 1). */
struct rp_node { uint64_t n; struct dict *kids; };
void rpt_init(struct dict *t);
void rpt_free(struct dict *t);
struct rp_node *rpt_add(struct dict *t, const char *k1, const char *k2,
                        const char *k3, uint64_t n);
/* A dict's entries sorted by descending weight, ties by key (malloc'd
 * array, *n entries). weight NULL: the values are rp_node. */
struct rp_kv { const char *key; void *val; uint64_t n; };
/* A one-level tally add through a tiny cache of recent keys (for tallies
 * with few distinct keys hit on every line: TLS protocols and ciphers). */
struct rpt_cache { const char *key[4]; struct rp_node *node[4]; unsigned next; };
void rpt_add1_cached(struct dict *t, struct rpt_cache *cache, const char *key);
struct rp_kv *rpt_sorted(const struct dict *d, uint64_t (*weight)(const void *),
                         size_t *n);

/* isdigit() without the locale table call (digits are 0-9 everywhere). */
static inline bool rp_is_digit(unsigned char c)
{
    return (unsigned)(c - '0') < 10;
}

/* n bytes of a and b equal? Inline, with word loads that stay inside the
 * n bytes: the names compared per line are short and of varying length,
 * where memcmp's size dispatch mispredicts. */
static inline bool rp_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y, acc = 0;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            acc |= x ^ y;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return (acc | (x ^ y)) == 0;
    }
    if (n >= 4) {
        uint32_t p, q, r, t;
        memcpy(&p, a, 4);
        memcpy(&q, b, 4);
        memcpy(&r, a + n - 4, 4);
        memcpy(&t, b + n - 4, 4);
        return ((p ^ q) | (r ^ t)) == 0;
    }
    for (size_t i = 0; i < n; i++)
        acc |= (uint64_t)(a[i] ^ b[i]);
    return acc == 0;
}

/* ---- interned records (report_intern.c) ------------------------------ */
/* A record's first member: its key (NUL-terminated, len bytes). */
struct rph_head { const char *key; uint32_t len; };
struct rph_slot { uint64_t h; struct rph_head *rec; };
struct rph { struct rph_slot *v; size_t cap, n; };   /* open addressing */
uint64_t rph_hash(const void *key, size_t n);
struct rph_head *rph_get(const struct rph *t, const char *key, size_t len, uint64_t h);
void rph_put(struct rph *t, uint64_t h, struct rph_head *rec);   /* key not present */
void rph_del(struct rph *t, const struct rph_head *rec, uint64_t h);
void rph_free(struct rph *t);
/* A bump arena: records live until the report is done. */
struct rpa { struct rpa_chunk *head; char *p; size_t left; };
void *rpa_alloc(struct rpa *a, size_t n);
char *rpa_strndup(struct rpa *a, const char *s, size_t n);
/* A new zeroed record of size bytes whose first member is its rph_head,
 * keyed by a copy of key[0..len) (in the arena right after the record). */
void *rpa_record(struct rpa *a, size_t size, const char *key, size_t len);
void rpa_free(struct rpa *a);

/* One per distinct relay= value (journey thread). */
struct rp_relay {
    struct rph_head k;       /* the relay string as logged */
    char *host, *ip;         /* rpp_split_client() of it */
    const char *prov;        /* provider_from_host(host), NULL if none */
    struct rp_prov_stat *pstat;   /* its stats, once looked up */
    bool loopback;
};
/* One per distinct recipient domain as logged (rps_domain_of()). */
struct rp_domrec {
    struct rph_head k;
    const char *prov;        /* provider_from_domain(), or "other" */
    struct rp_prov_stat *pstat;   /* stats of prov, once looked up */
    struct rp_prov_stat *dprov;   /* the provider whose domains tally ... */
    struct rp_node *dnode;        /* ... holds this node for the domain */
    struct rp_track *track;       /* "dest:<domain>" (provider "other") */
};
/* One per distinct recipient address as logged. */
struct rp_rcpt {
    struct rph_head k;
    const char *norm;        /* rps_norm_addr() */
    const char *ndom;        /* rps_account()'s domain key, in norm */
    struct rp_domrec *dom;
    struct rp_addr_stat *user;    /* recip_user entry, once there is one */
    struct rp_dom_stat *dstat;    /* recip_dom entry, once there is one */
    const char *grey;        /* lower-cased text after the last '|' */
    uint32_t grey_len;
    uint64_t grey_h;
};
/* One per distinct sender address as logged. */
struct rp_sender {
    struct rph_head k;
    const char *norm;        /* rps_norm_addr() */
    bool has_dom;            /* norm has "@domain" (the sending domain) */
    struct rp_addr_stat *user, *dom;   /* send_user / send_dom entries */
};

/* ---- delays (report_views.c) ---------------------------------------- */
struct rp_delays { float *v; size_t n, cap; double sum; float max; bool sorted; };
void rpd_add(struct rp_delays *d, double secs);
double rpd_pct(struct rp_delays *d, double p);   /* nearest rank; 0 if empty */
void rpd_free(struct rp_delays *d);

/* ---- time series ------------------------------------------------------ */
enum { SER_RCV, SER_DLV, SER_DFR, SER_BNC, SER_REJ, SER__N };
struct rp_series {
    int64_t base;           /* first bucket index */
    size_t n, cap;
    uint32_t (*v)[SER__N];
    int64_t width;          /* seconds per bucket */
};
void rps_series_add(struct rp_series *s, int64_t ts, int which, uint32_t n);

/* ---- options --------------------------------------------------------- */
struct rp_opts {
    enum rp_fmt format;
    int64_t since, until;        /* 0 = open */
    const char *domain, *provider, *client, *trace;
    const char *json_path;       /* NULL, or "-" for stdout */
    bool json;
    const char *html_path;
    const char *unparsed_path;
    const char *rules_path;
    int year;                    /* 0 = infer */
    int top;
    int64_t bucket;              /* incident bucket width */
    bool progress;               /* force the progress line */
    bool quiet;
};

/* ---- aggregates (report_stats.c, report_views.c) -------------------- */
struct rp_totals {
    uint64_t received, delivered, forwarded, deferred, deferrals, bounced;
    uint64_t rejected, reject_warnings, held, discarded;
    uint64_t bytes_received, bytes_delivered;
};

struct rp_addr_stat { uint64_t cnt, size; };
struct rp_dom_stat {
    uint64_t cnt, size, defers, bounces;
    double delay_sum, delay_max;
    struct rp_delays e2e;        /* receive-to-deliver delays */
    const char *provider;        /* static string */
};

struct rp_prov_stat {
    uint64_t sent, deferrals, bounces, messages;
    uint64_t cls[RC__COUNT];
    char *example[RC__COUNT];
    struct rp_delays e2e;
    struct dict domains;         /* domain -> rp_count */
    struct rp_track *track;      /* its incident track (named providers) */
};

struct rp_tls_stat { uint64_t ok, fail, lost_starttls, connects; char *last_reason; };

struct rp_bucket { uint32_t attempts, failures, msgs; uint16_t cls[RC__COUNT]; int64_t tmin, tmax; };
struct rp_track {
    struct dict buckets;          /* "index" -> rp_bucket */
    uint64_t attempts, failures;
    char *example[RC__COUNT];
    bool tls;                     /* client network TLS, else destination */
    int64_t last_idx;             /* cache of the last bucket used */
    struct rp_bucket *last_b;
};

struct rp_incident {
    char *key;                    /* destination or client network */
    bool tls;
    int64_t start, end;
    uint64_t attempts, failures, affected;
    double rate, baseline;
    enum reply_class dominant;
    const char *example;          /* owned by the track */
};

struct rp_grey_pending { int64_t first; char ip[64]; uint32_t tries; bool other_ip; };
struct rp_grey {
    /* inbound: this server greylisted clients */
    uint64_t in_greylisted, in_passed, in_other_ip;
    struct rp_delays in_delay;
    struct dict pending;          /* "sender|rcpt" -> rp_grey_pending */
    struct dict other_ip_senders; /* sender domain -> rp_count */
    /* outbound: destinations greylisted us */
    uint64_t out_messages, out_delivered;
    struct rp_delays out_delay;
    struct dict out_by_dest;      /* destination -> rp_count */
    struct rph ends;              /* pending keys' endings -> count */
    struct rpa ends_arena;
    bool pend_unsafe;             /* a pending key was cut: no ends */
};

struct rp_msgstats {
    uint64_t messages, delivered, deferred, bounced, reinjected, open, expired;
};

struct rp_stats {
    struct rp_totals t;
    struct rp_msgstats m;
    uint64_t per_hour[24][SER__N];
    struct dict per_day;          /* "YYYY-MM-DD" -> uint64_t[SER__N] */
    struct dict days_seen;        /* "YYYY-MM-DD" -> NULL */
    struct dict recip_dom, send_dom;   /* -> rp_dom_stat / rp_addr_stat */
    struct dict recip_user, send_user; /* -> rp_addr_stat */
    struct dict deferred, bounced;     /* tally: svc|relay -> reason */
    struct dict rejects, warns, holds, discards; /* tally: stage -> reason -> data */
    struct dict warnings, fatals, panics, master, smtp_fail, no_size;
    struct dict postscreen;            /* tally: verdict */
    /* views */
    struct dict providers;        /* name -> rp_prov_stat */
    uint64_t cls[RC__COUNT];      /* deferral+bounce replies by class */
    char *cls_example[RC__COUNT];
    struct dict tls_hosts, tls_nets;   /* -> rp_tls_stat */
    struct rph tls_t;             /* TLS client -> its entries (rp_tlsc) */
    struct rpa tls_arena;
    struct dict tls_net_hours;    /* tally: net -> "YYYY-MM-DD HH:00" */
    struct dict tls_in_proto, tls_in_cipher, tls_out_proto, tls_out_cipher;
    struct rpt_cache tls_cache[4];     /* for the four above */
    uint64_t tls_in_ok, tls_in_fail, tls_out_ok, tls_out_fail, lost_starttls;
    struct dict tracks;           /* "dest:x" / "tls:net" -> rp_track */
    struct rp_incident *inc;
    size_t ninc, inc_cap;
    struct rp_grey grey;
    struct rp_series series;      /* hourly */
    struct rp_delays all_e2e;
    int64_t first_ts, last_ts;
    int64_t seen_day, bump_day;   /* caches for the per-line day lookups */
    uint64_t *bump_row;
    /* input accounting */
    uint64_t lines, parsed, unparsed, other, cut, filtered_out, bytes;
    uint64_t by_fmt[RP_FMT__COUNT];
    int64_t bucket;
};

void rps_init(struct rp_stats *s, int64_t bucket);
void rps_free(struct rp_stats *s);
/* Fold the line-level statistics (src) into the journey ones (dst). */
void rps_merge(struct rp_stats *dst, struct rp_stats *src);
void rps_day_seen(struct rp_stats *s, int64_t ts);
void rps_bump(struct rp_stats *s, int64_t ts, int which);
/* Immediate (queue-id-less or reject) events. */
void rps_reject(struct rp_stats *s, const struct rp_ev *e);
void rps_simple(struct rp_stats *s, const struct rp_ev *e);
void rps_tls(struct rp_stats *s, const struct rp_ev *e);
/* pflogsumm's host/domain reduction ("mail.example.co.uk" -> ...). */
void rps_gimme_domain(const char *client, char *out, size_t outlen);
/* Lower-case the domain part (pflogsumm's address normal form). */
void rps_norm_addr(const char *addr, char *out, size_t outlen);
const char *rps_domain_of(const char *addr);
/* rpt_sorted() weights shared by the text and JSON output: recip_dom's
 * entries by deliveries then bytes, rp_addr_stat's by count or size. */
uint64_t rps_dom_weight(const void *p);
uint64_t rps_addr_cnt(const void *p);
uint64_t rps_addr_size(const void *p);
/* Recipient domains with at least one delivery (pflogsumm's count). */
size_t rps_delivery_domains(const struct rp_stats *s);

/* ---- journeys (report_journey.c) ------------------------------------ */
struct rp_attempt {
    int64_t ts;
    uint32_t rcpt;
    uint8_t status;          /* enum rp_status */
    bool forwarded, size_known, handoff;
    uint8_t cls;             /* enum reply_class */
    struct rp_dom_stat *dst; /* set while accounting a delivery */
    float delay;             /* Postfix delay= (or computed) */
    const char *relay;       /* interned (rl->k.key): never freed alone */
    struct rp_relay *rl;
    char *reply;             /* NULL for "sent" unless tracing */
    char dsn[12];            /* "" when none */
    char svc[16];
};

struct rp_msg {
    struct rph_head k;       /* the queue id (rp_ctx.open) */
    uint64_t qid_h;          /* its hash */
    uint64_t seq;            /* order of first appearance */
    char *qid;               /* points to qid_buf when it fits */
    char qid_buf[32];
    char *msgid, *client, *parent, *notice;   /* rpj_strdup() */
    const char *sender;      /* srec's key */
    struct rp_sender *srec;
    char client_ip[64];
    int64_t first_ts, rcvd_ts, arrival, root_arrival, last_ts;
    uint64_t size;
    int nrcpt;
    bool received, pickup, has_size, sender_counted, has_child, is_child;
    bool expired, removed, traced;
    struct rp_rcpt **rcpts;  /* interned: rcpts[i]->k.key is the address */
    size_t nrcpts, rcpt_cap;
    struct rp_attempt *att;
    size_t natt, att_cap;
    uint32_t finals;
    struct buf lines;        /* raw lines, only in --trace mode */
    size_t sused;            /* short strings live in sbuf */
    char sbuf[160];
};

struct rp_ctx {
    /* Two threads write their own parts (report_input.c): what one writes
     * per line or event starts on a cache line of its own, so the other
     * thread's reads (c->o on every line) do not miss on it. */
    struct rp_opts *o;
    _Alignas(64) struct rp_stats st;   /* journeys (and, after rps_merge, everything) */
    _Alignas(64) struct rp_stats lst;  /* line-level events: input, TLS, rejects, ... */
    _Alignas(64) struct dict by_msgid; /* message-id -> qid (open messages) */
    bool msgid_index;        /* by_msgid is maintained (a filter was seen) */
    struct dict trace_ids;   /* ids that belong to the traced message */
    struct rp_msg **traced;  /* finished journeys of --trace */
    size_t ntraced, traced_cap;
    _Alignas(64) struct rp_year year;
    FILE *unparsed;
    const char *cur_line;    /* raw line (trace mode) */
    _Alignas(64) size_t open_peak;     /* written by the journey thread */
    _Atomic size_t open_now; /* for the progress line (another thread) */
    /* journey thread: */
    _Alignas(64) struct rph open;      /* queue id -> rp_msg */
    uint64_t msg_seq;
    struct rp_msg *spare[64];/* freed messages, reused with their arrays */
    size_t nspare;
    struct rpa arena;        /* the interned records below */
    struct rph relays;       /* relay string -> rp_relay */
    struct rph rcpt_t;       /* recipient -> rp_rcpt */
    struct rph sender_t;     /* sender -> rp_sender */
    struct rph dom_t;        /* recipient domain -> rp_domrec */
    struct rp_prov_stat *pcache_stat[8];   /* provider name -> stats */
    const char *pcache_name[8];
};

void rpj_init(struct rp_ctx *c);
/* A journey event (rp_parse_line said so): joins, closes, accounts. */
void rpj_event(struct rp_ctx *c, struct rp_ev *e);
/* Look-ahead over a batch: rpj_ahead() hashes the names a later event
 * looks up and prefetches their table slots; rpj_ahead2(), some events
 * later, prefetches the records those slots point to. */
void rpj_ahead(struct rp_ctx *c, struct rp_ev *e);
void rpj_ahead2(struct rp_ctx *c, const struct rp_ev *e);
/* A line-level event (TLS, reject, warning, ...) into c->lst. */
void rpj_line_event(struct rp_ctx *c, struct rp_ev *e);
/* End of input: account the messages still open. */
void rpj_finish(struct rp_ctx *c);
void rpj_free(struct rp_ctx *c);
void rpj_msg_free(struct rp_msg *m);

/* Journey-level views, called once per finished message. */
void rpv_account(struct rp_ctx *c, struct rp_msg *m);
void rps_account(struct rp_ctx *c, struct rp_msg *m);
/* After the pass: incidents from the tracks. */
void rpv_incidents(struct rp_stats *s);
void rpv_free(struct rp_stats *s);
/* Inbound greylisting: a greylisting reject seen at line time. */
void rpv_grey_reject(struct rp_stats *s, const struct rp_ev *e);
/* Filters (--domain, --provider, --client) for one journey / recipient. */
bool rpv_client_match(const char *want, const char *client, const char *ip);
bool rpv_domain_match(const char *want, const char *addr);

/* ---- parsers --------------------------------------------------------- */
/* Each fills e (kind EV_NONE when the line is not understood). The
 * message text h->msg may be modified in place. */
void rpp_parse(struct rp_hdr *h, struct rp_ev *e);     /* Postfix, sluice */
void rpsm_parse(struct rp_hdr *h, struct rp_ev *e);    /* Sendmail */
void rpx_parse(struct rp_hdr *h, struct rp_ev *e);     /* Exim */
/* Which parser a header belongs to (RP_FMT_AUTO when none). */
enum rp_fmt rp_detect(const struct rp_hdr *h);
/* Parse one raw line (mutable, NUL-terminated) into e: header, format
 * detection, parser; line-level events are counted at once (c->lst).
 * Returns true when e is a journey event for rpj_event(), which may run
 * later on another thread: e then points only into line and into itself. */
bool rp_parse_line(struct rp_ctx *c, char *line, size_t len, struct rp_ev *e);
/* rp_parse_line() then rpj_event(): one line, single-threaded (tests,
 * the fuzz harness). */
void rp_feed_line(struct rp_ctx *c, char *line, size_t len);
/* Set up and tear down a context (the verb and the fuzz harness). */
void rp_ctx_init(struct rp_ctx *c, struct rp_opts *o);
/* End of input: close journeys, merge statistics, find incidents. */
void rp_ctx_finish(struct rp_ctx *c);
void rp_ctx_free(struct rp_ctx *c);

/* Shared parsing helpers (report_parse_postfix.c). */
/* Split "host[ip]" / "host [ip]" / "[ip]:port" into name and address. */
void rpp_split_client(const char *s, char *host, size_t hl, char *ip, size_t il);
/* Find "key=" at a field boundary in s; returns the value start or NULL. */
const char *rpp_field(const char *s, const char *key);
/* Copy a field value up to ", " (or the end) into out. */
size_t rpp_value(const char *v, char *out, size_t outlen);
/* Postfix queue id (hex short form, or long form) / NOQUEUE. */
bool rpp_is_qid(const char *s, size_t n);
/* True for a Postfix-like syslog name ("postfix/smtpd", "sluice/qmgr"). */
bool rpp_is_postfix(const char *prog, const char *svc);
/* The parser for a Postfix daemon name (unknown names: delivery forms). */
rpp_fn rpp_handler(const char *svc);

/* ---- input (report_input.c) ----------------------------------------- */
/* Read every file (NULL-terminated list; "-" is stdin) in time order and
 * feed each line. Returns 0, or -1 with a message on stderr. */
int rpi_run(struct rp_ctx *c, char **files, int nfiles);

/* ---- output ---------------------------------------------------------- */
void rp_text(struct rp_ctx *c, FILE *out);
void rp_json(struct rp_ctx *c, FILE *out);
int rp_html(struct rp_ctx *c, const char *path);
void rp_trace_text(struct rp_ctx *c, FILE *out);
void rp_trace_json(struct rp_ctx *c, FILE *out);

/* The verb. */
int report_main(int argc, char **argv);

#endif
