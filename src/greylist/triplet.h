/*
 * triplet.h - greylisting records and the decision on them (pure: no I/O,
 * no clock of its own; unit-tested alone).
 *
 * A triplet is (pool, normalised sender, recipient); its store key is
 * "gl:t:" + the first 128 bits of SHA-256 over the three, in hex, so keys
 * have a fixed size whatever the addresses. An auto-allow record is keyed
 * by (pool, sender domain): "gl:a:" + hash. Records are tab-separated
 * text (the fields below), so `sluice greylist list` can show them.
 *
 * The decision (triplet_decide):
 *   - an allowed auto-allow record for (pool, sender domain): accept;
 *   - no triplet, or a pending one whose window closed: create it, defer
 *     for `delay`;
 *   - pending, retried from the same pool (the key holds the pool, and the
 *     stored kind must be as strong): defer until `delay` has elapsed since
 *     the first attempt, then accept and mark passed (the message carries
 *     X-Greylist: delayed N seconds);
 *   - passed: accept.
 * Each accepted pass counts toward auto-allow when at least `aa_interval`
 * has gone by since the last counted one; `aa_count` counted passes make
 * (pool, sender domain) auto-allowed. The null sender is never auto-allowed.
 */
#ifndef SLUICE_GREYLIST_TRIPLET_H
#define SLUICE_GREYLIST_TRIPLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRIPLET_KEY_LEN 37          /* "gl:t:" + 32 hex */
#define TRIPLET_IPS_MAX 16
#define TRIPLET_FIELD_MAX 320

struct triplet {
    uint64_t first;                 /* first attempt */
    uint64_t last;                  /* last attempt or use */
    uint64_t passed;                /* when it passed; 0 = pending */
    unsigned kind;                  /* enum pool_kind of the pool */
    unsigned attempts;
    unsigned waited;                /* seconds the passing retry waited */
    unsigned nips;                  /* distinct client IPs seen (capped) */
    uint32_t ips[TRIPLET_IPS_MAX];  /* their hashes */
    char pool[TRIPLET_FIELD_MAX];
    char sender[TRIPLET_FIELD_MAX];
    char rcpt[TRIPLET_FIELD_MAX];
};

struct triplet_aa {
    uint64_t first;
    uint64_t last_use;
    uint64_t last_count;            /* last pass counted */
    unsigned count;
    bool allowed;
    char pool[TRIPLET_FIELD_MAX];
    char domain[TRIPLET_FIELD_MAX];
};

struct triplet_params {
    uint64_t delay, window, aa_interval, aa_count;
};

enum triplet_action { TRIPLET_ACCEPT, TRIPLET_DEFER };

struct triplet_verdict {
    enum triplet_action action;
    const char *reason;             /* new, early, retry, passed, auto-allowed */
    unsigned delayed;               /* >0: passed now after waiting this long */
    unsigned retry_in;              /* defer: seconds until a retry passes */
    bool write_t, write_aa;         /* records to store back */
};

void triplet_key(const char *pool, const char *sender, const char *rcpt,
                 char out[TRIPLET_KEY_LEN + 1]);
void triplet_aa_key(const char *pool, const char *domain, char out[TRIPLET_KEY_LEN + 1]);
uint32_t triplet_ip_hash(const char *ip);

int triplet_parse(const char *s, struct triplet *t);
void triplet_format(const struct triplet *t, char *out, size_t len);
int triplet_aa_parse(const char *s, struct triplet_aa *a);
void triplet_aa_format(const struct triplet_aa *a, char *out, size_t len);

/* Decide on one attempt. t/aa hold the stored records (have_* false when
 * absent; they need pool/sender/rcpt/domain filled in by the caller for
 * new records) and are updated in place. */
void triplet_decide(const struct triplet_params *p, struct triplet *t, bool have_t,
                    struct triplet_aa *aa, bool have_aa, unsigned kind,
                    uint32_t iphash, uint64_t now, struct triplet_verdict *v);

#endif
