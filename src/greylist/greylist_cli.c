/*
 * greylist_cli.c - `sluice greylist stats|list|allow|forget|expire`: the
 * greylist store seen and edited by an operator (text or --json).
 *
 * stats proves or disproves that sender clusters are handled: besides
 * pending / passed / auto-allowed / never-retried counts it shows how long
 * passed mail waited and how many distinct client addresses each passed
 * triplet was seen from (many addresses per triplet = a cluster that
 * retried from other servers and still passed on its first retry).
 */
#include "greylist/greylist_cli.h"
#include "greylist/normalize.h"
#include "greylist/pool.h"
#include "greylist/store.h"
#include "greylist/triplet.h"
#include "lib/config.h"
#include "lib/jsonw.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GLC_WAIT_BUCKETS 7
#define GLC_IP_BUCKETS 5

static const char *const glc_wait_names[GLC_WAIT_BUCKETS] = {
    "<1m", "1-5m", "5-15m", "15-60m", "1-4h", "4-24h", ">24h"};
static const uint64_t glc_wait_limits[GLC_WAIT_BUCKETS - 1] = {
    60, 300, 900, 3600, 14400, 86400};
static const char *const glc_ip_names[GLC_IP_BUCKETS] = {"1", "2", "3-4", "5-8", "9+"};

struct glc_stats {
    const struct config *cfg;
    uint64_t now;
    unsigned long pending, passed, never_retried;
    unsigned long aa_allowed, aa_counting;
    unsigned long wait[GLC_WAIT_BUCKETS];
    unsigned long ips[GLC_IP_BUCKETS];
    unsigned long kinds[4];          /* passed triplets per pool kind */
    unsigned long long wait_sum, ip_sum;
    unsigned max_ips;
};

struct glc_ctx {
    const struct config *cfg;
    struct store *st;
    bool json;
    bool first;
    uint64_t now;
    const char *pool, *sender, *rcpt;   /* forget filters */
    long count;
};

/* ---------------------------------------------------------------------- */
/* output helpers                                                          */

static unsigned glc_wait_bucket(uint64_t w)
{
    unsigned i = 0;
    while (i < GLC_WAIT_BUCKETS - 1 && w >= glc_wait_limits[i])
        i++;
    return i;
}

static unsigned glc_ip_bucket(unsigned n)
{
    return n <= 1 ? 0 : n == 2 ? 1 : n <= 4 ? 2 : n <= 8 ? 3 : 4;
}

/* ---------------------------------------------------------------------- */
/* stats                                                                   */

static int glc_stats_t(void *arg, const char *key, const char *val)
{
    struct glc_stats *s = arg;
    struct triplet t;
    if (triplet_parse(val, &t) < 0)
        return 0;
    if (t.passed == 0) {
        if (s->now > t.first + s->cfg->greylist_window)
            s->never_retried++;
        else
            s->pending++;
        return 0;
    }
    s->passed++;
    s->wait[glc_wait_bucket(t.waited)]++;
    s->wait_sum += t.waited;
    s->ips[glc_ip_bucket(t.nips)]++;
    s->ip_sum += t.nips;
    if (t.nips > s->max_ips)
        s->max_ips = t.nips;
    if (t.kind < 4)
        s->kinds[t.kind]++;
    return 0;
}

static int glc_stats_a(void *arg, const char *key, const char *val)
{
    struct glc_stats *s = arg;
    struct triplet_aa a;
    if (triplet_aa_parse(val, &a) < 0)
        return 0;
    if (a.allowed)
        s->aa_allowed++;
    else
        s->aa_counting++;
    return 0;
}

static void glc_stats_text(const struct glc_stats *s, const char *store)
{
    printf("store: %s\n", store);
    printf("triplets pending: %lu\n", s->pending);
    printf("triplets passed: %lu (spf %lu, ptr %lu, net %lu)\n", s->passed, s->kinds[3],
           s->kinds[2], s->kinds[1]);
    printf("triplets never retried: %lu\n", s->never_retried);
    printf("auto-allowed (pool, sender domain): %lu (%lu more counting passes)\n",
           s->aa_allowed, s->aa_counting);
    printf("delay passed mail waited:");
    for (int i = 0; i < GLC_WAIT_BUCKETS; i++)
        printf(" %s=%lu", glc_wait_names[i], s->wait[i]);
    printf(" mean=%llus\n", s->passed ? s->wait_sum / s->passed : 0ULL);
    printf("distinct client IPs per passed triplet:");
    for (int i = 0; i < GLC_IP_BUCKETS; i++)
        printf(" %s=%lu", glc_ip_names[i], s->ips[i]);
    printf(" mean=%.2f max=%u\n", s->passed ? (double)s->ip_sum / (double)s->passed : 0.0,
           s->max_ips);
}

static void glc_stats_json(const struct glc_stats *s, const char *store)
{
    printf("{\"store\": ");
    jsonw_quote(stdout, store);
    printf(", \"pending\": %lu, \"passed\": %lu, \"never_retried\": %lu, "
           "\"auto_allowed\": %lu, \"auto_allow_counting\": %lu, "
           "\"passed_by_pool_kind\": {\"spf\": %lu, \"ptr\": %lu, \"net\": %lu}, ",
           s->pending, s->passed, s->never_retried, s->aa_allowed, s->aa_counting,
           s->kinds[3], s->kinds[2], s->kinds[1]);
    printf("\"delay_waited\": {");
    for (int i = 0; i < GLC_WAIT_BUCKETS; i++)
        printf("%s\"%s\": %lu", i ? ", " : "", glc_wait_names[i], s->wait[i]);
    printf("}, \"delay_waited_mean\": %llu, \"client_ips_per_passed_triplet\": {",
           s->passed ? s->wait_sum / s->passed : 0ULL);
    for (int i = 0; i < GLC_IP_BUCKETS; i++)
        printf("%s\"%s\": %lu", i ? ", " : "", glc_ip_names[i], s->ips[i]);
    printf("}, \"client_ips_per_passed_triplet_mean\": %.3f, "
           "\"client_ips_per_passed_triplet_max\": %u}\n",
           s->passed ? (double)s->ip_sum / (double)s->passed : 0.0, s->max_ips);
}

static int glc_stats(struct glc_ctx *c)
{
    struct glc_stats s;
    memset(&s, 0, sizeof(s));
    s.cfg = c->cfg;
    s.now = c->now;
    if (store_scan(c->st, "gl:t:", glc_stats_t, &s) < 0 ||
        store_scan(c->st, "gl:a:", glc_stats_a, &s) < 0) {
        fprintf(stderr, "sluice greylist: cannot read %s\n", store_describe(c->st));
        return 1;
    }
    if (c->json)
        glc_stats_json(&s, store_describe(c->st));
    else
        glc_stats_text(&s, store_describe(c->st));
    return 0;
}

/* ---------------------------------------------------------------------- */
/* list                                                                    */

static int glc_list_t(void *arg, const char *key, const char *val)
{
    struct glc_ctx *c = arg;
    struct triplet t;
    if (triplet_parse(val, &t) < 0)
        return 0;
    const char *state = t.passed ? "passed" :
                        c->now > t.first + c->cfg->greylist_window ? "never-retried" : "pending";
    if (c->json) {
        printf("%s\n  {\"type\": \"triplet\", \"state\": \"%s\", \"pool\": ",
               c->first ? "" : ",", state);
        jsonw_quote(stdout, t.pool);
        printf(", \"sender\": ");
        jsonw_quote(stdout, t.sender);
        printf(", \"recipient\": ");
        jsonw_quote(stdout, t.rcpt);
        printf(", \"first\": %llu, \"last\": %llu, \"passed\": %llu, \"attempts\": %u, "
               "\"waited\": %u, \"client_ips\": %u}", (unsigned long long)t.first,
               (unsigned long long)t.last, (unsigned long long)t.passed, t.attempts,
               t.waited, t.nips);
    } else {
        printf("triplet %-13s %s <%s> <%s> attempts=%u waited=%us client_ips=%u "
               "age=%llus\n", state, t.pool, t.sender, t.rcpt, t.attempts, t.waited,
               t.nips, (unsigned long long)(c->now - t.first));
    }
    c->first = false;
    return 0;
}

static int glc_list_a(void *arg, const char *key, const char *val)
{
    struct glc_ctx *c = arg;
    struct triplet_aa a;
    if (triplet_aa_parse(val, &a) < 0)
        return 0;
    if (c->json) {
        printf("%s\n  {\"type\": \"auto-allow\", \"allowed\": %s, \"pool\": ",
               c->first ? "" : ",", a.allowed ? "true" : "false");
        jsonw_quote(stdout, a.pool);
        printf(", \"sender_domain\": ");
        jsonw_quote(stdout, a.domain);
        printf(", \"passes\": %u, \"last_use\": %llu}", a.count,
               (unsigned long long)a.last_use);
    } else {
        printf("auto-allow %-10s %s %s passes=%u\n", a.allowed ? "allowed" : "counting",
               a.pool, a.domain, a.count);
    }
    c->first = false;
    return 0;
}

static int glc_list(struct glc_ctx *c)
{
    c->first = true;
    if (c->json)
        printf("[");
    int rc = store_scan(c->st, "gl:t:", glc_list_t, c);
    if (rc == 0)
        rc = store_scan(c->st, "gl:a:", glc_list_a, c);
    if (c->json)
        printf("\n]\n");
    return rc < 0 ? 1 : 0;
}

/* ---------------------------------------------------------------------- */
/* allow, forget, expire                                                   */

static int glc_allow(struct glc_ctx *c, const char *pool, const char *domain)
{
    struct triplet_aa a;
    memset(&a, 0, sizeof(a));
    a.first = a.last_use = a.last_count = c->now;
    a.count = (unsigned)c->cfg->greylist_auto_allow_count;
    a.allowed = true;
    str_copy(a.pool, pool, sizeof(a.pool));
    str_copy(a.domain, domain, sizeof(a.domain));
    str_lower(a.domain);
    char key[TRIPLET_KEY_LEN + 1], val[1024];
    triplet_aa_key(a.pool, a.domain, key);
    triplet_aa_format(&a, val, sizeof(val));
    store_put(c->st, key, val, c->cfg->greylist_max_age);
    if (c->json)
        printf("{\"allowed\": true, \"key\": \"%s\"}\n", key);
    else
        printf("allowed: %s %s (%s)\n", a.pool, a.domain, key);
    return 0;
}

static int glc_forget_t(void *arg, const char *key, const char *val)
{
    struct glc_ctx *c = arg;
    struct triplet t;
    if (triplet_parse(val, &t) < 0 || strcmp(t.pool, c->pool) != 0)
        return 0;
    if ((c->sender && strcmp(t.sender, c->sender) != 0) ||
        (c->rcpt && !str_iequal(t.rcpt, c->rcpt)))
        return 0;
    store_del(c->st, key);
    c->count++;
    return 0;
}

static int glc_forget_a(void *arg, const char *key, const char *val)
{
    struct glc_ctx *c = arg;
    struct triplet_aa a;
    char dom[NORM_ADDR_MAX];
    if (triplet_aa_parse(val, &a) < 0 || strcmp(a.pool, c->pool) != 0)
        return 0;
    norm_domain_of(c->sender ? c->sender : "", dom, sizeof(dom));
    if (c->sender && strcmp(a.domain, strchr(c->sender, '@') ? dom : c->sender) != 0)
        return 0;
    store_del(c->st, key);
    c->count++;
    return 0;
}

static int glc_forget(struct glc_ctx *c, char **args, int nargs)
{
    char nsender[NORM_ADDR_MAX];
    c->pool = args[0];
    if (nargs > 1) {
        norm_sender(args[1], nsender, sizeof(nsender));
        c->sender = nsender;
    }
    c->rcpt = nargs > 2 ? args[2] : NULL;
    if (store_scan(c->st, "gl:t:", glc_forget_t, c) < 0 ||
        (c->rcpt == NULL && store_scan(c->st, "gl:a:", glc_forget_a, c) < 0))
        return 1;
    if (c->json)
        printf("{\"forgotten\": %ld}\n", c->count);
    else
        printf("forgotten: %ld record(s)\n", c->count);
    return 0;
}

static int glc_expire(struct glc_ctx *c)
{
    long n = store_expire(c->st);
    if (n < 0) {
        fprintf(stderr, "sluice greylist: expire failed on %s\n", store_describe(c->st));
        return 1;
    }
    if (c->json)
        printf("{\"expired\": %ld}\n", n);
    else
        printf("expired: %ld record(s)%s\n", n,
               strncmp(store_describe(c->st), "redis", 5) == 0 ? " (Redis expires by TTL)" : "");
    return 0;
}

int greylist_cli(const char *config_path, const char *cmd, char **args, int nargs, bool json)
{
    static const struct { const char *name; int min, max; } cmds[] = {
        {"stats", 0, 0}, {"list", 0, 0}, {"allow", 2, 2}, {"forget", 1, 3},
        {"expire", 0, 0},
    };
    int which = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            which = i;
    if (which < 0 || nargs < cmds[which].min || nargs > cmds[which].max) {
        fprintf(stderr, "sluice greylist: usage: stats | list | allow POOL SENDER_DOMAIN | "
                "forget POOL [SENDER [RECIPIENT]] | expire; try --help\n");
        return 2;
    }
    char err[1024];
    struct config *cfg = config_load(config_path, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    struct store *st = store_open(cfg->greylist_store, cfg->spool_dir, NULL, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "sluice greylist: %s\n", err);
        config_free(cfg);
        return 1;
    }
    struct glc_ctx c = {.cfg = cfg, .st = st, .json = json, .now = (uint64_t)time(NULL)};
    int rc;
    switch (which) {
    case 0: rc = glc_stats(&c); break;
    case 1: rc = glc_list(&c); break;
    case 2: rc = glc_allow(&c, args[0], args[1]); break;
    case 3: rc = glc_forget(&c, args, nargs); break;
    default: rc = glc_expire(&c); break;
    }
    store_close(st);
    config_free(cfg);
    return rc;
}
