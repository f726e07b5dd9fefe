/*
 * triplet.c - greylisting records (text form, keys) and the decision on
 * one attempt (rules in triplet.h).
 */
#include "greylist/triplet.h"
#include "lib/strutil.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* keys                                                                    */

/* SHA-256 fetched once: SHA256() looks the algorithm up in the provider
 * tables (under a lock) on every call, which cost more than the hash. */
static EVP_MD *triplet_sha256;
static pthread_once_t triplet_sha256_once = PTHREAD_ONCE_INIT;

static void triplet_sha256_fetch(void)
{
    triplet_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void triplet_sha256_digest(const void *in, size_t len,
                                  unsigned char md[SHA256_DIGEST_LENGTH])
{
    pthread_once(&triplet_sha256_once, triplet_sha256_fetch);
    if (triplet_sha256 == NULL || !EVP_Digest(in, len, md, NULL, triplet_sha256, NULL))
        SHA256(in, len, md);   /* the slow path; same digest */
}

static void triplet_hash_key(const char *tag, const char *const *parts, size_t n,
                             char out[TRIPLET_KEY_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    char in[4 * TRIPLET_FIELD_MAX];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {   /* each part with its NUL */
        size_t k = strlen(parts[i]) + 1;
        if (k > sizeof(in) - len)
            k = sizeof(in) - len;
        memcpy(in + len, parts[i], k);
        len += k;
    }
    triplet_sha256_digest(in, len, md);
    size_t o = (size_t)snprintf(out, TRIPLET_KEY_LEN + 1, "gl:%s:", tag);
    for (size_t i = 0; i < 16 && o + 2 <= TRIPLET_KEY_LEN; i++) {
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 15];
    }
    out[o] = '\0';
}

void triplet_key(const char *pool, const char *sender, const char *rcpt,
                 char out[TRIPLET_KEY_LEN + 1])
{
    const char *parts[3] = {pool, sender, rcpt};
    triplet_hash_key("t", parts, 3, out);
}

void triplet_aa_key(const char *pool, const char *domain, char out[TRIPLET_KEY_LEN + 1])
{
    const char *parts[2] = {pool, domain};
    triplet_hash_key("a", parts, 2, out);
}

uint32_t triplet_ip_hash(const char *ip)
{
    uint32_t h = 2166136261u;
    for (; *ip; ip++) {
        h ^= (unsigned char)*ip;
        h *= 16777619u;
    }
    return h ? h : 1;
}

/* ---------------------------------------------------------------------- */
/* text form                                                               */

/* Split s at tabs into at most max fields (modifies s). */
static size_t triplet_split(char *s, char **f, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *p = strtok_r(s, "\t", &save); p && n < max; p = strtok_r(NULL, "\t", &save))
        f[n++] = p;
    return n;
}

static int triplet_num(const char *s, uint64_t *out)
{
    return str_to_u64(s, out);
}

static int triplet_unum(const char *s, unsigned *out)
{
    uint64_t v;
    if (str_to_u64(s, &v) < 0 || v > 0xffffffffu)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* "T1 first last passed kind attempts waited ips pool sender rcpt", where
 * ips is comma-separated hex hashes ("-" when none). */
int triplet_parse(const char *s, struct triplet *t)
{
    char copy[4 * TRIPLET_FIELD_MAX + 512], *f[12];
    memset(t, 0, sizeof(*t));
    if (str_copy(copy, s, sizeof(copy)) >= sizeof(copy))
        return -1;
    size_t n = triplet_split(copy, f, 12);
    if (n != 11 || strcmp(f[0], "T1") != 0 || triplet_num(f[1], &t->first) < 0 ||
        triplet_num(f[2], &t->last) < 0 || triplet_num(f[3], &t->passed) < 0 ||
        triplet_unum(f[4], &t->kind) < 0 || triplet_unum(f[5], &t->attempts) < 0 ||
        triplet_unum(f[6], &t->waited) < 0)
        return -1;
    char *save = NULL;
    if (strcmp(f[7], "-") != 0)
        for (char *p = strtok_r(f[7], ",", &save); p && t->nips < TRIPLET_IPS_MAX;
             p = strtok_r(NULL, ",", &save))
            t->ips[t->nips++] = (uint32_t)strtoul(p, NULL, 16);
    str_copy(t->pool, f[8], sizeof(t->pool));
    str_copy(t->sender, strcmp(f[9], "<>") == 0 ? "" : f[9], sizeof(t->sender));
    str_copy(t->rcpt, f[10], sizeof(t->rcpt));
    return 0;
}

void triplet_format(const struct triplet *t, char *out, size_t len)
{
    char ips[TRIPLET_IPS_MAX * 9 + 2] = "-";
    size_t o = 0;
    for (unsigned i = 0; i < t->nips && i < TRIPLET_IPS_MAX; i++)
        o += (size_t)snprintf(ips + o, sizeof(ips) - o, "%s%x", i ? "," : "", t->ips[i]);
    snprintf(out, len, "T1\t%llu\t%llu\t%llu\t%u\t%u\t%u\t%s\t%s\t%s\t%s",
             (unsigned long long)t->first, (unsigned long long)t->last,
             (unsigned long long)t->passed, t->kind, t->attempts, t->waited, ips,
             t->pool, t->sender[0] ? t->sender : "<>", t->rcpt);
}

/* "A1 first last_use last_count count allowed pool domain" */
int triplet_aa_parse(const char *s, struct triplet_aa *a)
{
    char copy[3 * TRIPLET_FIELD_MAX + 256], *f[9];
    unsigned allowed;
    memset(a, 0, sizeof(*a));
    if (str_copy(copy, s, sizeof(copy)) >= sizeof(copy))
        return -1;
    size_t n = triplet_split(copy, f, 9);
    if (n != 8 || strcmp(f[0], "A1") != 0 || triplet_num(f[1], &a->first) < 0 ||
        triplet_num(f[2], &a->last_use) < 0 || triplet_num(f[3], &a->last_count) < 0 ||
        triplet_unum(f[4], &a->count) < 0 || triplet_unum(f[5], &allowed) < 0)
        return -1;
    a->allowed = allowed != 0;
    str_copy(a->pool, f[6], sizeof(a->pool));
    str_copy(a->domain, f[7], sizeof(a->domain));
    return 0;
}

void triplet_aa_format(const struct triplet_aa *a, char *out, size_t len)
{
    snprintf(out, len, "A1\t%llu\t%llu\t%llu\t%u\t%u\t%s\t%s",
             (unsigned long long)a->first, (unsigned long long)a->last_use,
             (unsigned long long)a->last_count, a->count, a->allowed ? 1u : 0u,
             a->pool, a->domain);
}

/* ---------------------------------------------------------------------- */
/* the decision                                                            */

static void triplet_add_ip(struct triplet *t, uint32_t h)
{
    for (unsigned i = 0; i < t->nips; i++)
        if (t->ips[i] == h)
            return;
    if (t->nips < TRIPLET_IPS_MAX)
        t->ips[t->nips++] = h;
}

/* An accepted pass: count it toward auto-allow. */
static void triplet_count_pass(const struct triplet_params *p, struct triplet_aa *aa,
                               bool have_aa, uint64_t now, struct triplet_verdict *v)
{
    if (aa->domain[0] == '\0')
        return;   /* the null sender: never auto-allowed */
    if (!have_aa) {
        aa->first = now;
        aa->count = 0;
        aa->allowed = false;
    }
    if (aa->count == 0 || now >= aa->last_count + p->aa_interval) {
        aa->count++;
        aa->last_count = now;
    }
    if (p->aa_count > 0 && aa->count >= p->aa_count)
        aa->allowed = true;
    aa->last_use = now;
    v->write_aa = true;
}

static void triplet_start(struct triplet *t, unsigned kind, uint32_t iphash, uint64_t now)
{
    t->first = t->last = now;
    t->passed = 0;
    t->kind = kind;
    t->attempts = 1;
    t->waited = 0;
    t->nips = 0;
    triplet_add_ip(t, iphash);
}

void triplet_decide(const struct triplet_params *p, struct triplet *t, bool have_t,
                    struct triplet_aa *aa, bool have_aa, unsigned kind,
                    uint32_t iphash, uint64_t now, struct triplet_verdict *v)
{
    memset(v, 0, sizeof(*v));
    if (have_aa && aa->allowed) {
        v->action = TRIPLET_ACCEPT;
        v->reason = "auto-allowed";
        aa->last_use = now;
        v->write_aa = true;
        return;
    }
    bool expired = have_t && t->passed == 0 && now > t->first + p->window;
    if (!have_t || expired || (t->passed == 0 && kind < t->kind)) {
        triplet_start(t, kind, iphash, now);
        v->action = TRIPLET_DEFER;
        v->reason = "new";
        v->retry_in = (unsigned)p->delay;
        v->write_t = true;
        return;
    }
    t->last = now;
    if (t->attempts < 0xffffffu)
        t->attempts++;
    triplet_add_ip(t, iphash);
    v->write_t = true;
    if (t->passed) {
        v->action = TRIPLET_ACCEPT;
        v->reason = "passed";
        triplet_count_pass(p, aa, have_aa, now, v);
        return;
    }
    uint64_t elapsed = now >= t->first ? now - t->first : 0;
    if (elapsed < p->delay) {
        v->action = TRIPLET_DEFER;
        v->reason = "early";
        v->retry_in = (unsigned)(p->delay - elapsed);
        return;
    }
    t->passed = now;
    t->waited = (unsigned)elapsed;
    v->action = TRIPLET_ACCEPT;
    v->reason = "retry";
    v->delayed = elapsed ? (unsigned)elapsed : 1;
    triplet_count_pass(p, aa, have_aa, now, v);
}
