/*
 * greylist.h - the greylisting engine shared by `sluice serve` (at RCPT)
 * and `sluice policy` (Postfix policy delegation).
 *
 * One request = one (client, HELO, sender, recipient) attempt. The engine
 * applies, in order: bypasses (authenticated clients, mynetworks, the
 * static allow lists for clients, senders and recipients), the pool of the
 * client (pool.h: SPF, confirmed PTR, or netmask; asynchronous DNS), the
 * allow list of pools, then the stored triplet and auto-allow records
 * (triplet.h) in the store (store.h: LMDB or Redis). It logs one line per
 * decision:
 *
 *   sluice/greylist[PID]: QID: action=defer, reason=new, pool=spf:example.com,
 *       pool_kind=spf, client=[192.0.2.1], from=<a@example.com>,
 *       to=<b@example.org>, delay=0, retry_in=120
 *
 * When DNS or the store is unavailable (or a decision takes longer than
 * greylist_timeout), greylist_failure decides: open accepts (logged as a
 * warning), closed answers GREYLIST_TEMPFAIL.
 *
 * Callbacks always run later on the loop, never from inside
 * greylist_check(); callers pass an id (a session id) as the argument.
 */
#ifndef SLUICE_GREYLIST_H
#define SLUICE_GREYLIST_H

#include "greylist/pool.h"
#include "lib/config.h"
#include "lib/dns.h"
#include "lib/netaddr.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;
struct greylist;

enum greylist_action {
    GREYLIST_ACCEPT,       /* go on (maybe with an X-Greylist header) */
    GREYLIST_DEFER,        /* 451 4.7.1 Greylisted, retry in N seconds */
    GREYLIST_TEMPFAIL,     /* fail closed: store or DNS unavailable */
};

struct greylist_request {
    struct netaddr addr;
    const char *client_name;    /* for the log; NULL = "unknown" */
    const char *helo;
    const char *sender;         /* "" = null sender */
    const char *rcpt;
    const char *queue_id;       /* for the log; NULL = "NOQUEUE" */
    bool trusted;               /* mynetworks */
    bool authenticated;
};

struct greylist_decision {
    enum greylist_action action;
    const char *reason;
    unsigned delayed;           /* >0: passed now; add X-Greylist */
    unsigned retry_in;          /* defer: seconds */
    enum pool_kind pool_kind;
    char pool[POOL_KEY_MAX];
    enum spf_result spf;        /* SPF result for the checked domain */
};

typedef void (*greylist_cb)(void *arg, const struct greylist_decision *d);

/* An engine on `base` using `dns` (borrowed; may be NULL when nothing will
 * need DNS, as in tests with SPF-less allow lists) and the store named by
 * cfg->greylist_store. NULL + err on failure. */
struct greylist *greylist_new(const struct config *cfg, struct event_base *base,
                              const struct dns_iface *dns, char *err, size_t errlen);
/* Same with a store the engine takes over (tests). */
struct greylist *greylist_new_with_store(const struct config *cfg, struct event_base *base,
                                         const struct dns_iface *dns, struct store *st,
                                         char *err, size_t errlen);
/* Requests in flight are cancelled (no callbacks). */
void greylist_free(struct greylist *gl);
/* Take new settings and allow lists (not the store). 0 or -1 + err. */
int greylist_reload(struct greylist *gl, const struct config *cfg, char *err, size_t errlen);

/* Decide; the callback runs later with `arg`. Returns the request id. */
uint64_t greylist_check(struct greylist *gl, const struct greylist_request *req,
                        greylist_cb cb, void *arg);
void greylist_cancel(struct greylist *gl, uint64_t id);
size_t greylist_pending(const struct greylist *gl);

/* "X-Greylist: delayed N seconds by sluice at HOST; DATE" (no CRLF). */
void greylist_header(unsigned delayed, const char *host, char *out, size_t len);
const char *greylist_action_str(enum greylist_action a);

#endif
