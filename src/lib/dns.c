/*
 * dns.c - asynchronous DNS: libunbound's worker thread, its pipe watched by
 * the libevent loop, typed answers handed to callbacks (see dns.h).
 *
 * Each query has a record and a timer. The timer bounds the wait (unbound's
 * own retries can take minutes) and also delivers answers that must not be
 * given from inside dns_query() (a bad name). A record is freed right after
 * its callback, or when cancelled; its id, not its address, is what callers
 * hold.
 */
#include "lib/dns.h"
#include "lib/buf.h"
#include "lib/dict.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#define DNS_DEFAULT_TIMEOUT_MS 5000
#define DNS_TXT_MAX 65536

struct dns_query_rec {
    uint64_t id;
    int ub_id;                 /* unbound's async id; 0 = not submitted */
    struct dns *d;
    dns_cb cb;
    void *arg;
    int type;
    bool submitting;           /* inside ub_resolve_async */
    bool ready;                /* answer parsed, waiting for the timer */
    struct event *timer;
    struct dns_result res;
    char name[DNS_NAME_MAX + 2];
};

struct dns {
    struct ub_ctx *ctx;
    struct event *ev;
    struct event_base *base;
    struct dict queries;       /* decimal id -> struct dns_query_rec * */
    uint64_t next_id;
    unsigned timeout_ms;
};

static void dns_rec_free(struct dns_query_rec *q);

/* ---------------------------------------------------------------------- */
/* set-up                                                                  */

static void dns_ub_ready(evutil_socket_t fd, short what, void *arg)
{
    struct dns *d = arg;
    ub_process(d->ctx);
}

static int dns_set_forwarders(struct ub_ctx *ctx, const char *list, char *err,
                              size_t errlen)
{
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0, n = 0;
    for (char *w = strtok_r(copy, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save)) {
        int e = ub_ctx_set_fwd(ctx, w);
        if (e != 0) {
            snprintf(err, errlen, "bad dns_resolver address '%s': %s; fix: use "
                     "'system' or IP[@PORT]", w, ub_strerror(e));
            rc = -1;
            break;
        }
        n++;
    }
    free(copy);
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "empty dns_resolver; fix: use 'system' or IP[@PORT]");
        rc = -1;
    }
    return rc;
}

/* With explicit forwarders, the forwarder answers for everything: turn off
 * libunbound's built-in local zones (RFC 6761 "test.", the loopback and
 * private reverse zones) that would otherwise answer NXDOMAIN itself. */
static int dns_forward_everything(struct ub_ctx *ctx, char *err, size_t errlen)
{
    static const char *const zones[] = {
        "test. transparent", "127.in-addr.arpa. transparent", "10.in-addr.arpa. transparent",
        "168.192.in-addr.arpa. transparent", "invalid. transparent",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. transparent",
    };
    int e = ub_ctx_set_option(ctx, "unblock-lan-zones:", "yes");
    if (e == 0)
        e = ub_ctx_set_option(ctx, "insecure-lan-zones:", "yes");
    for (size_t i = 0; e == 0 && i < sizeof(zones) / sizeof(zones[0]); i++)
        e = ub_ctx_set_option(ctx, "local-zone:", zones[i]);
    if (e != 0)
        snprintf(err, errlen, "DNS resolver set-up: %s", ub_strerror(e));
    return e ? -1 : 0;
}

struct dns *dns_new(struct event_base *base, const char *resolver,
                    unsigned timeout_ms, char *err, size_t errlen)
{
    struct ub_ctx *ctx = ub_ctx_create();
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create the DNS resolver (libunbound)");
        return NULL;
    }
    int e = ub_ctx_async(ctx, 1);
    /* forwarders on the loopback (tests, a local cache) must be allowed */
    if (e == 0)
        e = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no");
    if (e != 0) {
        snprintf(err, errlen, "DNS resolver set-up: %s", ub_strerror(e));
        ub_ctx_delete(ctx);
        return NULL;
    }
    if (resolver == NULL || *resolver == '\0' || strcmp(resolver, "system") == 0) {
        e = ub_ctx_resolvconf(ctx, "/etc/resolv.conf");
        if (e != 0) {
            snprintf(err, errlen, "cannot read /etc/resolv.conf: %s; fix: set "
                     "dns_resolver to IP[@PORT]", ub_strerror(e));
            ub_ctx_delete(ctx);
            return NULL;
        }
    } else if (dns_set_forwarders(ctx, resolver, err, errlen) < 0 ||
               dns_forward_everything(ctx, err, errlen) < 0) {
        ub_ctx_delete(ctx);
        return NULL;
    }
    struct dns *d = xcalloc(1, sizeof(*d));
    d->ctx = ctx;
    d->base = base;
    d->timeout_ms = timeout_ms ? timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
    dict_init(&d->queries, NULL);
    d->ev = event_new(base, ub_fd(ctx), EV_READ | EV_PERSIST, dns_ub_ready, d);
    event_add(d->ev, NULL);
    return d;
}

void dns_free(struct dns *d)
{
    if (d == NULL)
        return;
    size_t pos = 0;
    const char *key;
    void *val;
    while (dict_next(&d->queries, &pos, &key, &val)) {
        struct dns_query_rec *q = val;
        if (q->ub_id)
            ub_cancel(d->ctx, q->ub_id);
        q->ub_id = 0;
        event_free(q->timer);
        q->timer = NULL;
        q->d = NULL;
        dns_rec_free(q);
    }
    dict_free(&d->queries);
    event_free(d->ev);
    ub_ctx_delete(d->ctx);
    free(d);
}

size_t dns_pending(const struct dns *d)
{
    return dict_count(&d->queries);
}

/* ---------------------------------------------------------------------- */
/* answer decoding                                                         */

int dns_rdata_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
    size_t i = 0, o = 0;
    if (outlen == 0)
        return -1;
    while (i < len) {
        unsigned l = p[i++];
        if (l == 0) {
            if (o == 0 && outlen > 1)
                out[o++] = '.';   /* the root: null MX */
            out[o] = '\0';
            return (int)i;
        }
        if (l > 63 || i + l > len)
            return -1;   /* compression pointers never appear here */
        if (o > 0) {
            if (o + 1 >= outlen)
                return -1;
            out[o++] = '.';
        }
        if (o + l >= outlen)
            return -1;
        memcpy(out + o, p + i, l);
        o += l;
        i += l;
    }
    return -1;
}

static void dns_res_add_name(struct dns_result *r, const char *name)
{
    r->names = xrealloc(r->names, (r->n + 1) * sizeof(char *));
    r->names[r->n++] = xstrdup(name);
}

static void dns_parse_txt(struct dns_result *r, const unsigned char *p, size_t len)
{
    struct buf b;
    buf_init(&b, DNS_TXT_MAX);
    for (size_t i = 0; i < len;) {
        size_t l = p[i++];
        if (i + l > len)
            break;
        buf_append(&b, p + i, l);
        i += l;
    }
    r->txt = xrealloc(r->txt, (r->n + 1) * sizeof(char *));
    r->txt[r->n++] = buf_steal(&b);
}

static int mx_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;
    if (x->pref != y->pref)
        return x->pref < y->pref ? -1 : 1;
    return strcmp(x->host, y->host);
}

static void dns_parse_one(struct dns_result *r, const unsigned char *p, size_t len)
{
    char name[DNS_NAME_MAX + 2];
    switch (r->type) {
    case DNS_T_A:
    case DNS_T_AAAA:
        if (len != (r->type == DNS_T_A ? 4u : 16u))
            return;
        r->addrs = xrealloc(r->addrs, (r->n + 1) * sizeof(*r->addrs));
        memset(&r->addrs[r->n], 0, sizeof(r->addrs[r->n]));
        r->addrs[r->n].family = r->type == DNS_T_A ? AF_INET : AF_INET6;
        memcpy(r->addrs[r->n].bytes, p, len);
        r->n++;
        return;
    case DNS_T_MX:
        if (len < 3 || dns_rdata_name(p + 2, len - 2, name, sizeof(name)) < 0)
            return;
        r->mx = xrealloc(r->mx, (r->n + 1) * sizeof(*r->mx));
        r->mx[r->n].pref = (unsigned)(p[0] << 8 | p[1]);
        str_copy(r->mx[r->n].host, name, sizeof(r->mx[r->n].host));
        r->n++;
        return;
    case DNS_T_TXT:
        dns_parse_txt(r, p, len);
        return;
    case DNS_T_PTR:
        if (dns_rdata_name(p, len, name, sizeof(name)) >= 0)
            dns_res_add_name(r, name);
        return;
    default:
        r->n++;
        return;
    }
}

static void dns_parse(struct dns_result *r, int err, struct ub_result *u)
{
    if (err != 0 || u == NULL) {
        r->status = DNS_TEMPFAIL;
        return;
    }
    r->ttl = (unsigned)(u->ttl > 0 ? u->ttl : 0);
    if (u->rcode == 3 || u->nxdomain) {
        r->status = DNS_NXDOMAIN;
        return;
    }
    if (u->rcode != 0) {
        r->status = DNS_TEMPFAIL;
        return;
    }
    for (int i = 0; u->havedata && u->data[i]; i++)
        dns_parse_one(r, (const unsigned char *)u->data[i], (size_t)u->len[i]);
    if (r->type == DNS_T_MX && r->n > 1)
        qsort(r->mx, r->n, sizeof(*r->mx), mx_cmp);
    r->status = r->n > 0 ? DNS_OK : DNS_NODATA;
}

static void dns_res_clear(struct dns_result *r)
{
    for (size_t i = 0; r->txt && i < r->n; i++)
        free(r->txt[i]);
    for (size_t i = 0; r->names && i < r->n; i++)
        free(r->names[i]);
    free(r->txt);
    free(r->names);
    free(r->addrs);
    free(r->mx);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------------- */
/* queries                                                                 */

static void dns_key(uint64_t id, char key[24])
{
    str_from_u64(id, key);
}

static void dns_rec_free(struct dns_query_rec *q)
{
    if (q->d) {
        char key[24];
        dns_key(q->id, key);
        dict_del(&q->d->queries, key);
    }
    if (q->timer)
        event_free(q->timer);
    dns_res_clear(&q->res);
    free(q);
}

/* Hand the answer to the caller, then forget the query. */
static void dns_deliver(struct dns_query_rec *q)
{
    q->res.qname = q->name;
    q->res.type = q->type;
    dns_cb cb = q->cb;
    void *arg = q->arg;
    /* unregister first: the callback may start new queries */
    char key[24];
    dns_key(q->id, key);
    dict_del(&q->d->queries, key);
    q->d = NULL;
    cb(arg, &q->res);
    dns_rec_free(q);
}

static void dns_ub_answer(void *mydata, int err, struct ub_result *u)
{
    struct dns_query_rec *q = mydata;
    q->ub_id = 0;
    q->res.type = q->type;
    dns_parse(&q->res, err, u);
    if (u)
        ub_resolve_free(u);
    if (q->submitting) {
        q->ready = true;
        struct timeval now = {0, 0};
        evtimer_add(q->timer, &now);
        return;
    }
    dns_deliver(q);
}

static void dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns_query_rec *q = arg;
    if (!q->ready) {
        if (q->ub_id)
            ub_cancel(q->d->ctx, q->ub_id);
        q->ub_id = 0;
        dns_res_clear(&q->res);
        q->res.status = DNS_TEMPFAIL;
    }
    dns_deliver(q);
}

static bool dns_name_ok(const char *name)
{
    size_t n = strlen(name), label = 0;
    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '.') {
            if (label == 0 && !(i == n - 1 && n == 1))
                return false;
            label = 0;
        } else if (++label > 63) {
            return false;
        }
    }
    return true;
}

uint64_t dns_query(struct dns *d, const char *name, int type, dns_cb cb, void *arg)
{
    struct dns_query_rec *q = xcalloc(1, sizeof(*q));
    q->id = ++d->next_id;
    q->d = d;
    q->cb = cb;
    q->arg = arg;
    q->type = type;
    str_copy(q->name, name, sizeof(q->name));
    q->timer = evtimer_new(d->base, dns_timer_cb, q);
    char key[24];
    dns_key(q->id, key);
    dict_set(&d->queries, key, q);
    if (!dns_name_ok(name)) {
        q->res.status = DNS_BADNAME;
        q->ready = true;
        struct timeval now = {0, 0};
        evtimer_add(q->timer, &now);
        return q->id;
    }
    struct timeval tv = {d->timeout_ms / 1000, (d->timeout_ms % 1000) * 1000};
    evtimer_add(q->timer, &tv);
    q->submitting = true;
    int e = ub_resolve_async(d->ctx, name, type, 1, q, dns_ub_answer, &q->ub_id);
    q->submitting = false;
    if (e != 0 && !q->ready) {
        q->ub_id = 0;
        q->res.status = DNS_TEMPFAIL;
        q->ready = true;
        struct timeval now = {0, 0};
        evtimer_add(q->timer, &now);
    }
    return q->id;
}

void dns_reverse_name(const struct netaddr *a, char *out, size_t len)
{
    if (a->family == AF_INET) {
        snprintf(out, len, "%u.%u.%u.%u.in-addr.arpa", a->bytes[3], a->bytes[2],
                 a->bytes[1], a->bytes[0]);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 15; i >= 0 && o + 4 < len; i--) {
        out[o++] = hex[a->bytes[i] & 15];
        out[o++] = '.';
        out[o++] = hex[a->bytes[i] >> 4];
        out[o++] = '.';
    }
    out[o] = '\0';
    if (o + 9 < len)
        str_copy(out + o, "ip6.arpa", len - o);
}

uint64_t dns_query_ptr(struct dns *d, const struct netaddr *a, dns_cb cb, void *arg)
{
    char name[80];
    dns_reverse_name(a, name, sizeof(name));
    return dns_query(d, name, DNS_T_PTR, cb, arg);
}

void dns_cancel(struct dns *d, uint64_t id)
{
    char key[24];
    dns_key(id, key);
    struct dns_query_rec *q = dict_get(&d->queries, key);
    if (q == NULL)
        return;
    if (q->ub_id)
        ub_cancel(d->ctx, q->ub_id);
    q->ub_id = 0;
    dns_rec_free(q);
}

const char *dns_status_str(enum dns_status st)
{
    static const char *const names[] = {"ok", "nxdomain", "nodata", "tempfail",
                                        "badname"};
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

static uint64_t dns_iface_query(void *impl, const char *name, int type, dns_cb cb,
                                void *arg)
{
    return dns_query(impl, name, type, cb, arg);
}

static void dns_iface_cancel(void *impl, uint64_t id)
{
    dns_cancel(impl, id);
}

struct dns_iface dns_iface_of(struct dns *d)
{
    struct dns_iface i = {dns_iface_query, dns_iface_cancel, d};
    return i;
}
