/*
 * store.c - choose and call a greylist store adapter (see store.h).
 */
#include "greylist/store.h"
#include "lib/strutil.h"

#include <stdio.h>
#include <string.h>

struct store *store_open(const char *spec, const char *spool_dir,
                         struct event_base *base, char *err, size_t errlen)
{
    char path[600];
    if (spec == NULL || *spec == '\0') {
        snprintf(path, sizeof(path), "%s/greylist", spool_dir);
        return store_lmdb_open(path, base, err, errlen);
    }
    if (strncmp(spec, "lmdb:", 5) == 0)
        return store_lmdb_open(spec + 5, base, err, errlen);
    if (strncmp(spec, "redis://", 8) == 0)
        return store_redis_open(spec, base, err, errlen);
    snprintf(err, errlen, "bad greylist_store '%s'; fix: use lmdb:PATH or "
             "redis://HOST:PORT/DB", spec);
    return NULL;
}

void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

const char *store_describe(const struct store *st)
{
    return st->desc;
}

bool store_ok(const struct store *st)
{
    return st->ops->ok(st);
}

void store_mget(struct store *st, const char *const *keys, size_t n,
                store_get_cb cb, void *arg)
{
    st->ops->mget(st, keys, n, cb, arg);
}

void store_put(struct store *st, const char *key, const char *val, uint64_t ttl)
{
    st->ops->put(st, key, val, ttl);
}

void store_del(struct store *st, const char *key)
{
    st->ops->del(st, key);
}

int store_scan(struct store *st, const char *prefix, store_scan_fn fn, void *arg)
{
    return st->ops->scan(st, prefix, fn, arg);
}

long store_expire(struct store *st)
{
    return st->ops->expire(st);
}
