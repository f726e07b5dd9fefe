/*
 * dns.h - asynchronous DNS on libunbound, driven by the libevent loop.
 *
 * One struct dns per event loop. Queries never block: dns_query() hands the
 * question to libunbound's worker thread and returns a query id; the answer
 * comes back on the loop (unbound's pipe is watched by an event that calls
 * ub_process()) as a call of the callback with the caller's opaque `arg`.
 * Callers that wait for a session pass its numeric id as `arg`, never a
 * pointer that might be freed meanwhile; or they cancel with dns_cancel().
 *
 * Results are typed and owned by the dns module: they are valid only during
 * the callback, so copy what you keep.
 *
 *   A / AAAA  -> addrs[]    (struct netaddr, in answer order)
 *   MX        -> mx[]       (preference + host, sorted by preference, then
 *                            host; "." for a null MX, RFC 7505)
 *   TXT       -> txt[]      (one string per record, its character-strings
 *                            concatenated without separators, RFC 7208 3.3)
 *   PTR       -> names[]    (host names, no trailing dot)
 *   other     -> nothing typed; status only
 *
 * Status: DNS_OK with n >= 1 answers; DNS_NXDOMAIN (the name does not
 * exist); DNS_NODATA (the name exists, no records of the type); DNS_TEMPFAIL
 * (SERVFAIL, timeout, no resolver: try again later); DNS_BADNAME (a name
 * that cannot be a DNS name).
 *
 * Resolver: "system" reads /etc/resolv.conf (ub_ctx_resolvconf); anything
 * else is a list of forwarders "IP[@PORT]" (comma/space separated) that get
 * every question, as tests do with a local dnsmasq on 127.0.0.1@5353.
 *
 * Tests and SPF use the same calls through struct dns_iface, so a stub
 * resolver can stand in for libunbound (see spf.h).
 */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include "lib/netaddr.h"

#include <stddef.h>
#include <stdint.h>

/* RR types (RFC 1035, 3596). */
enum dns_type {
    DNS_T_A = 1, DNS_T_PTR = 12, DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28,
};

enum dns_status { DNS_OK, DNS_NXDOMAIN, DNS_NODATA, DNS_TEMPFAIL, DNS_BADNAME };

#define DNS_NAME_MAX 255

struct dns_mx {
    unsigned pref;
    char host[DNS_NAME_MAX + 1];
};

struct dns_result {
    enum dns_status status;
    int type;
    const char *qname;
    size_t n;                    /* number of typed answers below */
    struct netaddr *addrs;       /* A, AAAA */
    struct dns_mx *mx;           /* MX, sorted */
    char **txt;                  /* TXT */
    char **names;                /* PTR */
    unsigned ttl;                /* smallest TTL of the answer */
};

typedef void (*dns_cb)(void *arg, const struct dns_result *res);

struct dns;
struct event_base;

/* A resolver on `base`. resolver: "system" or "IP[@PORT][, ...]".
 * timeout_ms bounds each query (0: 5000). NULL + err on failure. */
struct dns *dns_new(struct event_base *base, const char *resolver,
                    unsigned timeout_ms, char *err, size_t errlen);
/* Cancels every outstanding query (their callbacks are not called). */
void dns_free(struct dns *d);

/* Ask `name` for `type`. Returns a query id (> 0); the callback runs later
 * on the loop, exactly once unless cancelled, and never from inside
 * dns_query(). A name that cannot be asked (too long, empty label) also
 * gets its DNS_BADNAME answer later on the loop, so callers have one path. */
uint64_t dns_query(struct dns *d, const char *name, int type, dns_cb cb, void *arg);
/* Convenience: PTR for an address (builds the in-addr.arpa/ip6.arpa name). */
uint64_t dns_query_ptr(struct dns *d, const struct netaddr *a, dns_cb cb, void *arg);
/* Forget a query: its callback will not run. Unknown ids are ignored. */
void dns_cancel(struct dns *d, uint64_t id);
/* Queries in flight. */
size_t dns_pending(const struct dns *d);

/* The reverse-lookup name of an address ("4.3.2.1.in-addr.arpa"). */
void dns_reverse_name(const struct netaddr *a, char *out, size_t len);
const char *dns_status_str(enum dns_status st);

/* An interface over the resolver so modules (SPF, greylisting) can be
 * tested with a stub: query() must not call back before it returns. */
struct dns_iface {
    uint64_t (*query)(void *impl, const char *name, int type, dns_cb cb, void *arg);
    void (*cancel)(void *impl, uint64_t id);
    void *impl;
};
/* The iface for a real resolver. */
struct dns_iface dns_iface_of(struct dns *d);

/* Decode a wire-format (uncompressed) domain name into dotted text without
 * the trailing dot. Returns the octets used, or -1. Exposed for tests. */
int dns_rdata_name(const unsigned char *p, size_t len, char *out, size_t outlen);

#endif
