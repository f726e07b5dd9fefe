/*
 * spf.h - Sender Policy Framework (RFC 7208): check_host() on the async
 * resolver, the record parser and macro expansion.
 *
 * spf_parse.c holds the pure parts (record syntax, section 12 ABNF; macro
 * expansion, section 7), which are unit-tested and fuzzed alone. spf.c is
 * the evaluator: every mechanism (all, include, a, mx, ptr, ip4, ip6,
 * exists) and modifier (redirect, exp; unknown ones ignored), the limit of
 * 10 DNS-querying terms (4.6.4, with 10 address lookups per mx and ptr)
 * and of 2 void lookups, and all seven results. Besides the result it
 * reports the domain whose record held the deciding mechanism (for
 * "include:spf.protection.outlook.com" that is the included domain).
 *
 * DNS goes through struct dns_iface, so tests run it on a stub resolver.
 */
#ifndef SLUICE_SPF_H
#define SLUICE_SPF_H

#include "lib/dns.h"
#include "lib/netaddr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum spf_result {
    SPF_NONE, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_TEMPERROR,
    SPF_PERMERROR
};

#define SPF_MAX_LOOKUPS 10       /* RFC 7208 4.6.4 */
#define SPF_MAX_VOID 2           /* RFC 7208 4.6.4 */
#define SPF_MAX_ADDR_LOOKUPS 10  /* per mx / ptr term */
#define SPF_DOMAIN_MAX 253
#define SPF_EXPAND_MAX 1024

/* ---- record syntax (spf_parse.c) ---- */

enum spf_term_kind {
    SPF_M_ALL, SPF_M_INCLUDE, SPF_M_A, SPF_M_MX, SPF_M_PTR, SPF_M_IP4,
    SPF_M_IP6, SPF_M_EXISTS, SPF_MOD_REDIRECT, SPF_MOD_EXP, SPF_MOD_UNKNOWN
};

struct spf_term {
    enum spf_term_kind kind;
    char qual;              /* '+', '-', '~', '?' (mechanisms) */
    char *spec;             /* domain-spec / macro-string, or NULL */
    unsigned cidr4, cidr6;  /* a, mx: 32 / 128 when absent */
    struct netmask net;     /* ip4, ip6 */
};

struct spf_record {
    struct spf_term *terms;
    size_t n;
    int redirect;           /* index of redirect=, or -1 */
    int exp;                /* index of exp=, or -1 */
};

/* Is this TXT string an SPF record ("v=spf1" alone or followed by SP)? */
bool spf_is_record(const char *txt);
/* Parse a whole record. 0, or -1 with the reason in err (a permerror). */
int spf_parse_record(const char *txt, struct spf_record *rec, char *err, size_t errlen);
void spf_record_free(struct spf_record *rec);
const char *spf_term_name(enum spf_term_kind k);

/* Macro context (RFC 7208 7.2). Strings are borrowed. */
struct spf_macro_ctx {
    const char *sender;     /* local@domain ("postmaster@helo" for <>) */
    const char *domain;     /* current <domain> */
    const struct netaddr *ip;
    const char *helo;
    const char *receiver;   /* r: our host name */
    const char *validated;  /* p: validated name, "unknown" when none */
    uint64_t now;           /* t */
};

/* Expand a macro-string. exp: explanation context (c, r, t allowed).
 * domain: truncate the result to 253 octets from the left (7.3).
 * 0, or -1 on a syntax error (permerror). */
int spf_expand(const char *spec, const struct spf_macro_ctx *m, bool exp,
               bool domain, char *out, size_t outlen);
/* Does a macro-string use %{p}? (the evaluator must resolve it first) */
bool spf_uses_p(const char *spec);
/* Is `d` usable as a check_host() <domain> (multi-label, labels <= 63)? */
bool spf_domain_ok(const char *d);

/* ---- evaluation (spf.c) ---- */

struct spf_request {
    struct netaddr ip;
    const char *sender;     /* MAIL FROM address, "" for the null sender */
    const char *helo;
    const char *domain;     /* domain to check: sender's, or HELO for <> */
    const char *receiver;   /* our host name, for %{r} */
};

struct spf_outcome {
    enum spf_result result;
    char domain[SPF_DOMAIN_MAX + 1];       /* the domain checked */
    char match_domain[SPF_DOMAIN_MAX + 1]; /* whose record decided ("" none) */
    char mechanism[128];                   /* deciding term, or "default" */
    char explanation[512];                 /* fail: expanded exp= text */
    char problem[192];                     /* why temperror / permerror */
    unsigned lookups, void_lookups;
};

typedef void (*spf_cb)(void *arg, const struct spf_outcome *o);

struct spf_ctx;

/* An evaluator over a resolver (copied). */
struct spf_ctx *spf_ctx_new(const struct dns_iface *dns);
/* Cancels evaluations in flight (their callbacks are not called). */
void spf_ctx_free(struct spf_ctx *c);
/* check_host(): starts an evaluation and returns its id. The callback runs
 * exactly once, later (never from inside spf_check), unless cancelled. */
uint64_t spf_check(struct spf_ctx *c, const struct spf_request *req, spf_cb cb,
                   void *arg);
void spf_cancel(struct spf_ctx *c, uint64_t id);
size_t spf_pending(const struct spf_ctx *c);

const char *spf_result_str(enum spf_result r);

#endif
