/*
 * dict.c - string-keyed open-addressing hash map.
 */
#include "lib/dict.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

static char tombstone_marker;
#define DICT_TOMBSTONE (&tombstone_marker)

unsigned long dict_hash(const char *s)
{
    unsigned long h = 1469598103934665603UL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211UL;
    }
    return h;
}

void dict_init(struct dict *d, void (*free_val)(void *))
{
    memset(d, 0, sizeof(*d));
    d->free_val = free_val;
}

void dict_free(struct dict *d)
{
    for (size_t i = 0; i < d->cap; i++) {
        char *k = d->slots[i].key;
        if (k && k != DICT_TOMBSTONE) {
            free(k);
            if (d->free_val)
                d->free_val(d->slots[i].val);
        }
    }
    free(d->slots);
    d->slots = NULL;
    d->cap = d->used = d->filled = 0;
}

static struct dict_slot *dict_find_h(const struct dict *d, const char *key,
                                     unsigned long h)
{
    if (d->cap == 0)
        return NULL;
    size_t mask = d->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct dict_slot *s = &d->slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->hash == h && s->key != DICT_TOMBSTONE && strcmp(s->key, key) == 0)
            return s;
    }
}

static struct dict_slot *dict_find(const struct dict *d, const char *key)
{
    return dict_find_h(d, key, dict_hash(key));
}

void *dict_get(const struct dict *d, const char *key)
{
    struct dict_slot *s = dict_find(d, key);
    return s ? s->val : NULL;
}

static void dict_rehash(struct dict *d, size_t newcap)
{
    struct dict_slot *old = d->slots;
    size_t oldcap = d->cap;
    d->slots = xcalloc(newcap, sizeof(*d->slots));
    d->cap = newcap;
    d->used = d->filled = 0;
    for (size_t i = 0; i < oldcap; i++) {
        char *k = old[i].key;
        if (k == NULL || k == DICT_TOMBSTONE)
            continue;
        size_t mask = newcap - 1, j = old[i].hash & mask;
        while (d->slots[j].key)
            j = (j + 1) & mask;
        d->slots[j] = old[i];
        d->used++;
        d->filled++;
    }
    free(old);
}

void dict_set(struct dict *d, const char *key, void *val)
{
    unsigned long h = dict_hash(key);
    struct dict_slot *s = dict_find_h(d, key, h);
    if (s) {
        if (d->free_val && s->val != val)
            d->free_val(s->val);
        s->val = val;
        return;
    }
    /* at most half full (tombstones included): probe chains stay short */
    if ((d->filled + 1) * 2 >= d->cap)
        dict_rehash(d, d->cap ? (d->used * 4 >= d->cap ? d->cap * 2 : d->cap) : 16);
    size_t mask = d->cap - 1, i = h & mask;
    while (d->slots[i].key && d->slots[i].key != DICT_TOMBSTONE)
        i = (i + 1) & mask;
    if (d->slots[i].key == NULL)
        d->filled++;
    d->slots[i].key = xstrdup(key);
    d->slots[i].val = val;
    d->slots[i].hash = h;
    d->used++;
}

int dict_del(struct dict *d, const char *key)
{
    struct dict_slot *s = dict_find(d, key);
    if (s == NULL)
        return 0;
    free(s->key);
    if (d->free_val)
        d->free_val(s->val);
    s->key = DICT_TOMBSTONE;
    s->val = NULL;
    d->used--;
    return 1;
}

size_t dict_count(const struct dict *d)
{
    return d->used;
}

int dict_next(const struct dict *d, size_t *pos, const char **key, void **val)
{
    while (*pos < d->cap) {
        struct dict_slot *s = &d->slots[(*pos)++];
        if (s->key && s->key != DICT_TOMBSTONE) {
            *key = s->key;
            if (val)
                *val = s->val;
            return 1;
        }
    }
    return 0;
}
