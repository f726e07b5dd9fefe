/*
 * report_tally.c - nested counters and sorted views for the report's
 * detail sections (reject detail by stage, reason and client, ...).
 */
#include "tools/report.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

static void node_free(void *p)
{
    struct rp_node *n = p;
    if (n == NULL)
        return;
    if (n->kids) {
        dict_free(n->kids);
        free(n->kids);
    }
    free(n);
}

void rpt_init(struct dict *t)
{
    dict_init(t, node_free);
}

void rpt_free(struct dict *t)
{
    dict_free(t);
}

static struct rp_node *child(struct dict *t, const char *key)
{
    struct rp_node *n = dict_get(t, key);
    if (n == NULL) {
        n = xcalloc(1, sizeof(*n));
        dict_set(t, key, n);
    }
    return n;
}

static struct dict *kids_of(struct rp_node *n)
{
    if (n->kids == NULL) {
        n->kids = xmalloc(sizeof(*n->kids));
        rpt_init(n->kids);
    }
    return n->kids;
}

struct rp_node *rpt_add(struct dict *t, const char *k1, const char *k2,
                        const char *k3, uint64_t n)
{
    struct rp_node *a = child(t, k1 ? k1 : "");
    a->n += n;
    if (k2 == NULL)
        return a;
    struct rp_node *b = child(kids_of(a), k2);
    b->n += n;
    if (k3 == NULL)
        return b;
    struct rp_node *c = child(kids_of(b), k3);
    c->n += n;
    return c;
}

static int kv_cmp(const void *x, const void *y)
{
    const struct rp_kv *a = x, *b = y;
    if (a->n != b->n)
        return a->n < b->n ? 1 : -1;
    return strcmp(a->key, b->key);
}

struct rp_kv *rpt_sorted(const struct dict *d, uint64_t (*weight)(const void *),
                         size_t *n)
{
    size_t cnt = dict_count(d), i = 0, pos = 0;
    struct rp_kv *v = xcalloc(cnt + 1, sizeof(*v));
    const char *k;
    void *val;
    while (dict_next(d, &pos, &k, &val) && i < cnt) {
        v[i].key = k;
        v[i].val = val;
        v[i].n = weight ? weight(val) : ((struct rp_node *)val)->n;
        i++;
    }
    qsort(v, i, sizeof(*v), kv_cmp);
    *n = i;
    return v;
}

void rpt_add1_cached(struct dict *t, struct rpt_cache *cache, const char *key)
{
    for (unsigned i = 0; i < 4; i++)
        if (cache->key[i] && strcmp(cache->key[i], key) == 0) {
            cache->node[i]->n++;
            return;
        }
    struct rp_node *n = rpt_add(t, key, NULL, NULL, 1);
    /* remember the dict's own copy of the key (stable until the dict goes) */
    size_t pos = 0;
    const char *k;
    void *v;
    unsigned slot = cache->next++ % 4;
    cache->key[slot] = NULL;
    while (dict_next(t, &pos, &k, &v))
        if (v == n) {
            cache->key[slot] = k;
            cache->node[slot] = n;
            break;
        }
}
