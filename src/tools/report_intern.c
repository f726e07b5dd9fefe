/*
 * report_intern.c - the report's hot-path lookups: a hash table of records
 * that carry their own key (relays, recipients, senders, domains, TLS
 * clients, open messages) and a bump arena for the records themselves.
 *
 * lib/dict keeps the statistics the output sorts and prints; these tables
 * sit in front of it so that a message costs one lookup per name instead
 * of one per statistic: a record found once holds pointers to every dict
 * entry its name feeds. The hash reads eight bytes at a time (dict's
 * FNV-1a reads one), keys are compared by length first, and nothing here
 * changes what lib/dict holds or in which order it was filled.
 */
#include "tools/report.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define RPA_CHUNK (64 * 1024)

static uint64_t mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

uint64_t rph_hash(const void *key, size_t n)
{
    const unsigned char *s = key;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t w = 0;
        if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, s, 4);
            memcpy(&b, s + n - 4, 4);
            w = (uint64_t)a << 32 | b;
        } else {
            w = (uint64_t)s[0] << 16 | (uint64_t)s[n / 2] << 8 | s[n - 1];
        }
        h = (h ^ w) * 0x94d049bb133111ebULL;
    }
    return mix(h);
}

struct rph_head *rph_get(const struct rph *t, const char *key, size_t len, uint64_t h)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct rph_slot *s = &t->v[i];
        if (s->rec == NULL)
            return NULL;
        if (s->h == h && s->rec->len == len && rp_eq(s->rec->key, key, len))
            return s->rec;
    }
}

static void put_slot(struct rph_slot *v, size_t mask, uint64_t h, struct rph_head *rec)
{
    size_t i = h & mask;
    while (v[i].rec)
        i = (i + 1) & mask;
    v[i].h = h;
    v[i].rec = rec;
}

void rph_put(struct rph *t, uint64_t h, struct rph_head *rec)
{
    if ((t->n + 1) * 2 > t->cap) {       /* at most half full */
        size_t ncap = t->cap ? t->cap * 2 : 64;
        struct rph_slot *nv = xcalloc(ncap, sizeof(*nv));
        for (size_t i = 0; i < t->cap; i++)
            if (t->v[i].rec)
                put_slot(nv, ncap - 1, t->v[i].h, t->v[i].rec);
        free(t->v);
        t->v = nv;
        t->cap = ncap;
    }
    put_slot(t->v, t->cap - 1, h, rec);
    t->n++;
}

/* Linear probing without tombstones: close the gap by moving back the
 * entries after it that may not stay where they are. */
void rph_del(struct rph *t, const struct rph_head *rec, uint64_t h)
{
    if (t->cap == 0)
        return;
    size_t mask = t->cap - 1, i = h & mask;
    while (t->v[i].rec != rec) {
        if (t->v[i].rec == NULL)
            return;
        i = (i + 1) & mask;
    }
    t->n--;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        if (t->v[j].rec == NULL)
            break;
        size_t home = t->v[j].h & mask;
        /* j's entry may move to i unless its home lies in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->v[i] = t->v[j];
            i = j;
        }
    }
    t->v[i].rec = NULL;
    t->v[i].h = 0;
}

void rph_free(struct rph *t)
{
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* ---- arena ------------------------------------------------------------ */

struct rpa_chunk {
    struct rpa_chunk *next;
    max_align_t data[];
};

void *rpa_alloc(struct rpa *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > a->left) {
        size_t sz = n > RPA_CHUNK / 4 ? n : RPA_CHUNK;
        struct rpa_chunk *c = xmalloc(sizeof(*c) + sz);
        c->next = a->head;
        a->head = c;
        if (n == sz)          /* a large block: keep the current chunk's rest */
            return c->data;
        a->p = (char *)c->data;
        a->left = sz;
    }
    void *r = a->p;
    a->p += n;
    a->left -= n;
    return r;
}

char *rpa_strndup(struct rpa *a, const char *s, size_t n)
{
    char *d = rpa_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void *rpa_record(struct rpa *a, size_t size, const char *key, size_t len)
{
    struct rph_head *k = rpa_alloc(a, size);
    memset(k, 0, size);
    k->key = rpa_strndup(a, key, len);
    k->len = (uint32_t)len;
    return k;
}

void rpa_free(struct rpa *a)
{
    struct rpa_chunk *c = a->head;
    while (c) {
        struct rpa_chunk *next = c->next;
        free(c);
        c = next;
    }
    memset(a, 0, sizeof(*a));
}
