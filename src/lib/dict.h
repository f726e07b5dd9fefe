/*
 * dict.h - a string-keyed hash map (open addressing, linear probing).
 *
 * Keys are copied and owned by the dict; values are opaque pointers owned
 * by the caller unless a free function is given at creation.
 */
#ifndef SLUICE_DICT_H
#define SLUICE_DICT_H

#include <stddef.h>

struct dict_slot {
    char *key;       /* NULL = empty; DICT_TOMBSTONE = deleted */
    void *val;
    unsigned long hash;  /* of key, so probes skip most string compares */
};

struct dict {
    struct dict_slot *slots;
    size_t cap;      /* power of two */
    size_t used;     /* live entries */
    size_t filled;   /* live + tombstones */
    void (*free_val)(void *);
};

void dict_init(struct dict *d, void (*free_val)(void *));
void dict_free(struct dict *d);
void *dict_get(const struct dict *d, const char *key);
/* Insert or replace (the old value is freed with free_val). */
void dict_set(struct dict *d, const char *key, void *val);
/* Remove; returns 1 if the key was present. */
int dict_del(struct dict *d, const char *key);
size_t dict_count(const struct dict *d);
/* Iterate: start with *pos = 0; returns 0 when done. */
int dict_next(const struct dict *d, size_t *pos, const char **key, void **val);
/* FNV-1a, exported for other hash users. */
unsigned long dict_hash(const char *s);

#endif
