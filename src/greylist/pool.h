/*
 * pool.h - the sending pool of a client: who is "the same sender" across
 * retries from different servers.
 *
 * Strongest first (docs/greylisting.md):
 *   POOL_SPF  "spf:<domain>"  SPF passes for the MAIL FROM domain (the HELO
 *             name for the null sender): every server the domain authorises
 *             is one client;
 *   POOL_PTR  "ptr:<org domain>"  the client has exactly one PTR name, the
 *             name is not generic (does not hold the address's digits, no
 *             dynamic/dsl/pool... words), and it resolves back to the
 *             client (forward-confirmed);
 *   POOL_NET  "net:<prefix>"  the client's /24 (IPv4) or /64 (IPv6), as
 *             configured.
 * A failure of the SPF evaluation or of the PTR lookups falls back to the
 * next kind; `dns_failed` says that DNS itself failed for both, so callers
 * can apply their failure policy. Results are cached for a short time per
 * (client, domain) so a retry burst costs one evaluation.
 */
#ifndef SLUICE_GREYLIST_POOL_H
#define SLUICE_GREYLIST_POOL_H

#include "lib/dns.h"
#include "lib/netaddr.h"
#include "mail/spf.h"

#include <stdbool.h>
#include <stdint.h>

enum pool_kind { POOL_NONE = 0, POOL_NET = 1, POOL_PTR = 2, POOL_SPF = 3 };

#define POOL_KEY_MAX 300

struct pool_id {
    enum pool_kind kind;
    char key[POOL_KEY_MAX];         /* "spf:example.com" */
    enum spf_result spf;            /* SPF result for the checked domain */
    char spf_match[SPF_DOMAIN_MAX + 1];  /* whose record matched */
    char ptr_name[DNS_NAME_MAX + 1];     /* the confirmed PTR name, if any */
    bool dns_failed;                /* SPF temperror and PTR tempfail */
};

typedef void (*pool_cb)(void *arg, const struct pool_id *p);

struct pool_ctx;

struct pool_ctx *pool_ctx_new(const struct dns_iface *dns, unsigned v4prefix,
                              unsigned v6prefix, const char *receiver,
                              unsigned cache_seconds);
void pool_ctx_free(struct pool_ctx *c);
void pool_set_prefixes(struct pool_ctx *c, unsigned v4prefix, unsigned v6prefix);
/* Derive the pool. The callback runs exactly once unless cancelled: later,
 * or at once from inside this call when the answer is cached, so make the
 * call the last thing you do with your own state. sender: "" for <>.
 * Returns the id to cancel with, or 0 when the cache answered (the callback
 * has run). */
uint64_t pool_derive(struct pool_ctx *c, const struct netaddr *ip, const char *sender,
                     const char *helo, pool_cb cb, void *arg);
void pool_cancel(struct pool_ctx *c, uint64_t id);

/* Pure helpers (unit-tested). */
void pool_net_key(const struct netaddr *ip, unsigned v4prefix, unsigned v6prefix,
                  char *out, size_t len);
/* Is a PTR name generic (holds the address's digits, or dynamic-pool
 * words)? */
bool pool_name_generic(const char *name, const struct netaddr *ip);
const char *pool_kind_str(enum pool_kind k);

#endif
