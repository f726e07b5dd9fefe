/*
 * pool.c - pool identity of a client (rules in pool.h): SPF first, then a
 * forward-confirmed, non-generic PTR name, then the network prefix.
 *
 * A derivation is a small state machine: SPF evaluation, PTR lookup,
 * forward lookup. Its in-flight operation is always cancelled before it is
 * freed, so the SPF and DNS callbacks may carry the derivation itself.
 * Answers are cached per (client, checked domain) for cache_seconds.
 */
#include "greylist/pool.h"
#include "greylist/normalize.h"
#include "lib/dict.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_CACHE_MAX 50000

enum pool_step { PS_SPF, PS_PTR, PS_FWD };

struct pool_deriv {
    uint64_t id;
    struct pool_ctx *ctx;
    enum pool_step step;
    uint64_t op;                 /* spf id or dns query id in flight */
    struct netaddr ip;
    char domain[SPF_DOMAIN_MAX + 2];
    char cache_key[SPF_DOMAIN_MAX + 80];
    bool spf_tempfail, ptr_tempfail;
    pool_cb cb;
    void *arg;
    struct pool_id res;
};

struct pool_cached {
    struct pool_id id;
    time_t expires;
};

struct pool_ctx {
    struct dns_iface dns;
    struct spf_ctx *spf;
    unsigned v4prefix, v6prefix;
    char receiver[256];
    unsigned cache_seconds;
    struct dict derivs;          /* id -> struct pool_deriv * */
    struct dict cache;           /* "ip|domain" -> struct pool_cached * */
    uint64_t next_id;
};

/* ---------------------------------------------------------------------- */
/* pure helpers                                                            */

const char *pool_kind_str(enum pool_kind k)
{
    static const char *const names[] = {"none", "net", "ptr", "spf"};
    return (unsigned)k < 4 ? names[k] : "?";
}

void pool_net_key(const struct netaddr *ip, unsigned v4prefix, unsigned v6prefix,
                  char *out, size_t len)
{
    struct netaddr net = *ip;
    unsigned prefix = ip->family == AF_INET ? v4prefix : v6prefix;
    unsigned max = ip->family == AF_INET ? 32 : 128;
    if (prefix > max)
        prefix = max;
    for (unsigned bit = prefix; bit < max; bit++)
        net.bytes[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    char a[64];
    netaddr_str(&net, a, sizeof(a));
    snprintf(out, len, "net:%s/%u", a, prefix);
}

static const char *const pool_generic_words[] = {
    "dynamic", "dyn", "dhcp", "dsl", "adsl", "vdsl", "xdsl", "cable", "pool",
    "ppp", "pppoe", "dial", "dialup", "dialin", "client", "clients", "customer",
    "cust", "broadband", "bb", "residential", "res", "home", "user", "users",
    "dip", "nat", "unknown", "unassigned", "static", "ip", "host", "cpe",
};

static bool pool_generic_word(const char *w, size_t n)
{
    for (size_t i = 0; i < sizeof(pool_generic_words) / sizeof(pool_generic_words[0]); i++)
        if (strlen(pool_generic_words[i]) == n && strncasecmp(w, pool_generic_words[i], n) == 0)
            return true;
    return false;
}

/* Number of digit (IPv4) or hex (IPv6) runs of `s` equal to a part of the
 * address (octets, or 16-bit groups). */
static unsigned pool_address_parts_in(const char *s, const struct netaddr *ip)
{
    unsigned hits = 0;
    bool v4 = ip->family == AF_INET;
    for (const char *p = s; *p;) {
        size_t n = 0;
        while (p[n] && (v4 ? isdigit((unsigned char)p[n]) : isxdigit((unsigned char)p[n])))
            n++;
        if (n == 0) {
            p++;
            continue;
        }
        if (n <= (v4 ? 3u : 4u)) {
            unsigned long v = 0;
            for (size_t i = 0; i < n; i++)
                v = v * (v4 ? 10 : 16) + (unsigned long)(isdigit((unsigned char)p[i]) ?
                    p[i] - '0' : tolower((unsigned char)p[i]) - 'a' + 10);
            for (int i = 0; i < (v4 ? 4 : 8); i++) {
                unsigned long part = v4 ? ip->bytes[i] :
                    (unsigned long)(ip->bytes[2 * i] << 8 | ip->bytes[2 * i + 1]);
                if (v == part && !(v4 ? false : part == 0)) {
                    hits++;
                    break;
                }
            }
        } else if (v4 && n >= 8) {
            hits += 2;   /* a long digit run: the address written as one number */
        }
        p += n;
    }
    return hits;
}

bool pool_name_generic(const char *name, const struct netaddr *ip)
{
    char org[300], host[300];
    norm_org_domain(name, org, sizeof(org));
    str_copy(host, name, sizeof(host));
    str_lower(host);
    size_t hn = strlen(host), on = strlen(org);
    if (hn > on + 1)
        host[hn - on - 1] = '\0';    /* the part left of the org domain */
    else
        return false;
    if (pool_address_parts_in(host, ip) >= 2)
        return true;
    if (ip->family == AF_INET) {
        char hex[16];
        snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", ip->bytes[0], ip->bytes[1],
                 ip->bytes[2], ip->bytes[3]);
        if (strstr(host, hex))
            return true;
    }
    for (const char *p = host; *p;) {
        size_t n = 0;
        while (isalpha((unsigned char)p[n]))
            n++;
        if (n && pool_generic_word(p, n))
            return true;
        p += n ? n : 1;
    }
    return false;
}

/* ---------------------------------------------------------------------- */
/* context and cache                                                       */

struct pool_ctx *pool_ctx_new(const struct dns_iface *dns, unsigned v4prefix,
                              unsigned v6prefix, const char *receiver,
                              unsigned cache_seconds)
{
    struct pool_ctx *c = xcalloc(1, sizeof(*c));
    c->dns = *dns;
    c->spf = spf_ctx_new(dns);
    c->v4prefix = v4prefix;
    c->v6prefix = v6prefix;
    c->cache_seconds = cache_seconds;
    str_copy(c->receiver, receiver ? receiver : "", sizeof(c->receiver));
    dict_init(&c->derivs, NULL);
    dict_init(&c->cache, free);
    return c;
}

void pool_set_prefixes(struct pool_ctx *c, unsigned v4prefix, unsigned v6prefix)
{
    if (c->v4prefix != v4prefix || c->v6prefix != v6prefix) {
        dict_free(&c->cache);
        dict_init(&c->cache, free);
    }
    c->v4prefix = v4prefix;
    c->v6prefix = v6prefix;
}

static void pool_key(uint64_t id, char key[24])
{
    str_from_u64(id, key);
}

static void pool_deriv_cancel_op(struct pool_deriv *d)
{
    if (d->op == 0)
        return;
    if (d->step == PS_SPF)
        spf_cancel(d->ctx->spf, d->op);
    else
        d->ctx->dns.cancel(d->ctx->dns.impl, d->op);
    d->op = 0;
}

void pool_ctx_free(struct pool_ctx *c)
{
    if (c == NULL)
        return;
    size_t pos = 0;
    const char *key;
    void *val;
    while (dict_next(&c->derivs, &pos, &key, &val)) {
        pool_deriv_cancel_op(val);
        free(val);
    }
    dict_free(&c->derivs);
    dict_free(&c->cache);
    spf_ctx_free(c->spf);
    free(c);
}

void pool_cancel(struct pool_ctx *c, uint64_t id)
{
    char key[24];
    pool_key(id, key);
    struct pool_deriv *d = dict_get(&c->derivs, key);
    if (d == NULL)
        return;
    pool_deriv_cancel_op(d);
    dict_del(&c->derivs, key);
    free(d);
}

static void pool_cache_put(struct pool_ctx *c, const char *key, const struct pool_id *id)
{
    if (c->cache_seconds == 0)
        return;
    if (dict_count(&c->cache) >= POOL_CACHE_MAX) {
        dict_free(&c->cache);
        dict_init(&c->cache, free);
    }
    struct pool_cached *e = xmalloc(sizeof(*e));
    e->id = *id;
    e->expires = time(NULL) + (time_t)c->cache_seconds;
    dict_set(&c->cache, key, e);
}

static const struct pool_id *pool_cache_get(struct pool_ctx *c, const char *key)
{
    struct pool_cached *e = dict_get(&c->cache, key);
    if (e == NULL)
        return NULL;
    if (e->expires <= time(NULL)) {
        dict_del(&c->cache, key);
        return NULL;
    }
    return &e->id;
}

/* ---------------------------------------------------------------------- */
/* the derivation                                                          */

static void pool_finish(struct pool_deriv *d, enum pool_kind kind, const char *value)
{
    struct pool_ctx *c = d->ctx;
    d->res.kind = kind;
    if (kind == POOL_NET)
        pool_net_key(&d->ip, c->v4prefix, c->v6prefix, d->res.key, sizeof(d->res.key));
    else
        snprintf(d->res.key, sizeof(d->res.key), "%s:%s", pool_kind_str(kind), value);
    d->res.dns_failed = d->spf_tempfail && d->ptr_tempfail;
    if (!d->res.dns_failed && !d->spf_tempfail)
        pool_cache_put(c, d->cache_key, &d->res);
    char key[24];
    pool_key(d->id, key);
    dict_del(&c->derivs, key);
    d->cb(d->arg, &d->res);
    free(d);
}

static void pool_fwd_done(void *arg, const struct dns_result *r)
{
    struct pool_deriv *d = arg;
    d->op = 0;
    if (r->status == DNS_TEMPFAIL)
        d->ptr_tempfail = true;
    for (size_t i = 0; r->status == DNS_OK && i < r->n; i++)
        if (r->addrs[i].family == d->ip.family &&
            memcmp(r->addrs[i].bytes, d->ip.bytes, 16) == 0) {
            char org[POOL_KEY_MAX];
            norm_org_domain(d->res.ptr_name, org, sizeof(org));
            pool_finish(d, POOL_PTR, org);
            return;
        }
    d->res.ptr_name[0] = '\0';     /* not confirmed: a forged name */
    pool_finish(d, POOL_NET, NULL);
}

static void pool_ptr_done(void *arg, const struct dns_result *r)
{
    struct pool_deriv *d = arg;
    d->op = 0;
    if (r->status == DNS_TEMPFAIL)
        d->ptr_tempfail = true;
    /* several PTR names: no single identity; generic names: an access
     * network, where neighbours are strangers */
    if (r->status != DNS_OK || r->n != 1 || pool_name_generic(r->names[0], &d->ip) ||
        strchr(r->names[0], '.') == NULL) {
        pool_finish(d, POOL_NET, NULL);
        return;
    }
    str_copy(d->res.ptr_name, r->names[0], sizeof(d->res.ptr_name));
    str_lower(d->res.ptr_name);
    d->step = PS_FWD;
    d->op = d->ctx->dns.query(d->ctx->dns.impl, d->res.ptr_name,
                              d->ip.family == AF_INET ? DNS_T_A : DNS_T_AAAA,
                              pool_fwd_done, d);
}

static void pool_start_ptr(struct pool_deriv *d)
{
    char name[80];
    dns_reverse_name(&d->ip, name, sizeof(name));
    d->step = PS_PTR;
    d->op = d->ctx->dns.query(d->ctx->dns.impl, name, DNS_T_PTR, pool_ptr_done, d);
}

static void pool_spf_done(void *arg, const struct spf_outcome *o)
{
    struct pool_deriv *d = arg;
    d->op = 0;
    d->res.spf = o->result;
    str_copy(d->res.spf_match, o->match_domain, sizeof(d->res.spf_match));
    if (o->result == SPF_PASS) {
        pool_finish(d, POOL_SPF, d->domain);
        return;
    }
    if (o->result == SPF_TEMPERROR)
        d->spf_tempfail = true;
    pool_start_ptr(d);
}

uint64_t pool_derive(struct pool_ctx *c, const struct netaddr *ip, const char *sender,
                     const char *helo, pool_cb cb, void *arg)
{
    char domain[SPF_DOMAIN_MAX + 2], cache_key[SPF_DOMAIN_MAX + 80], ipbuf[64];
    if (sender && *sender)
        norm_domain_of(sender, domain, sizeof(domain));
    else
        str_copy(domain, helo ? helo : "", sizeof(domain));
    str_lower(domain);
    netaddr_str(ip, ipbuf, sizeof(ipbuf));
    snprintf(cache_key, sizeof(cache_key), "%s|%s%s", ipbuf, domain,
             sender && *sender ? "" : "|helo");
    const struct pool_id *hit = pool_cache_get(c, cache_key);
    if (hit) {
        /* a cached answer: called back at once (callers make this call
         * their last action); nothing to cancel */
        cb(arg, hit);
        return 0;
    }
    struct pool_deriv *d = xcalloc(1, sizeof(*d));
    d->id = ++c->next_id;
    d->ctx = c;
    d->ip = *ip;
    d->cb = cb;
    d->arg = arg;
    d->res.spf = SPF_NONE;
    memcpy(d->domain, domain, sizeof(d->domain));
    memcpy(d->cache_key, cache_key, sizeof(d->cache_key));
    char key[24];
    pool_key(d->id, key);
    dict_set(&c->derivs, key, d);
    uint64_t id = d->id;
    if (!spf_domain_ok(d->domain)) {
        pool_start_ptr(d);
        return id;
    }
    struct spf_request req;
    memset(&req, 0, sizeof(req));
    req.ip = *ip;
    req.sender = sender ? sender : "";
    req.helo = helo ? helo : "";
    req.domain = d->domain;
    req.receiver = c->receiver;
    d->step = PS_SPF;
    d->op = spf_check(c->spf, &req, pool_spf_done, d);
    return id;
}
