/*
 * dns_stub.h - a stub resolver for unit tests (header-only): a small zone
 * of records, questions queued by query() and answered by stub_run(), never
 * from inside query() (the contract of struct dns_iface).
 *
 * Records: stub_add(name, type, value) with value text: an address for
 * A/AAAA, "PREF host" for MX, the string for TXT, a name for PTR.
 * stub_fail(name, type) makes a question fail with DNS_TEMPFAIL; a name
 * with no records at all is NXDOMAIN, a name with other types is NODATA.
 */
#ifndef SLUICE_DNS_STUB_H
#define SLUICE_DNS_STUB_H

#include "lib/dns.h"
#include "lib/netaddr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STUB_MAX 256

struct stub_rr {
    char name[256];
    int type;
    char value[512];
    int fail;
};

struct stub_q {
    uint64_t id;
    char name[256];
    int type;
    dns_cb cb;
    void *arg;
    int live;
};

static struct stub_rr stub_zone[STUB_MAX];
static size_t stub_nzone;
static struct stub_q stub_queue[4096];
static size_t stub_nq, stub_head;
static uint64_t stub_next_id;
static unsigned stub_queries;   /* questions asked since stub_reset */

static inline void stub_reset(void)
{
    stub_nzone = stub_nq = stub_head = 0;
    stub_queries = 0;
}

static inline void stub_add(const char *name, int type, const char *value)
{
    struct stub_rr *r = &stub_zone[stub_nzone++];
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->type = type;
    snprintf(r->value, sizeof(r->value), "%s", value);
    r->fail = 0;
}

static inline void stub_fail(const char *name, int type)
{
    stub_add(name, type, "");
    stub_zone[stub_nzone - 1].fail = 1;
}

static inline uint64_t stub_query(void *impl, const char *name, int type, dns_cb cb, void *arg)
{
    struct stub_q *q = &stub_queue[stub_nq++ % 4096];
    q->id = ++stub_next_id;
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->type = type;
    q->cb = cb;
    q->arg = arg;
    q->live = 1;
    stub_queries++;
    return q->id;
}

static inline void stub_cancel(void *impl, uint64_t id)
{
    for (size_t i = stub_head; i < stub_nq; i++)
        if (stub_queue[i % 4096].id == id)
            stub_queue[i % 4096].live = 0;
}

static inline void stub_answer(struct stub_q *q)
{
    struct dns_result r;
    memset(&r, 0, sizeof(r));
    r.type = q->type;
    r.qname = q->name;
    struct netaddr addrs[32];
    struct dns_mx mx[32];
    char *strs[32];
    int known = 0;
    r.addrs = addrs;
    r.mx = mx;
    r.txt = strs;
    r.names = strs;
    for (size_t i = 0; i < stub_nzone; i++) {
        struct stub_rr *z = &stub_zone[i];
        if (strcasecmp(z->name, q->name) != 0)
            continue;
        known = 1;
        if (z->type != q->type)
            continue;
        if (z->fail) {
            r.status = DNS_TEMPFAIL;
            r.n = 0;
            q->cb(q->arg, &r);
            return;
        }
        if (r.n >= 32)
            continue;
        if (q->type == DNS_T_A || q->type == DNS_T_AAAA) {
            netaddr_parse(z->value, &addrs[r.n]);
        } else if (q->type == DNS_T_MX) {
            char *sp = strchr(z->value, ' ');
            mx[r.n].pref = (unsigned)strtoul(z->value, NULL, 10);
            snprintf(mx[r.n].host, sizeof(mx[r.n].host), "%s", sp ? sp + 1 : ".");
        } else {
            strs[r.n] = z->value;
        }
        r.n++;
    }
    r.status = r.n ? DNS_OK : known ? DNS_NODATA : DNS_NXDOMAIN;
    q->cb(q->arg, &r);
}

/* Answer queued questions (and those they lead to) until none is left. */
static inline void stub_run(void)
{
    while (stub_head < stub_nq) {
        struct stub_q q = stub_queue[stub_head++ % 4096];
        if (q.live)
            stub_answer(&q);
    }
}

static inline struct dns_iface stub_iface(void)
{
    struct dns_iface i = {stub_query, stub_cancel, NULL};
    return i;
}

#endif
