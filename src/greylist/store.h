/*
 * store.h - the greylist's key-value store: LMDB (embedded, one host) or
 * Redis (several MX hosts share one state).
 *
 * Values are short text records (greylist.c formats them). Every value has
 * a time to live: Redis expires keys itself (SET ... EX); the LMDB adapter
 * stores the expiry time with the value, hides expired values on read and
 * deletes them in a periodic sweep (and on `sluice greylist expire`).
 *
 * Asynchronous use (on the event loop): store_mget() answers through a
 * callback. The LMDB adapter answers at once, from inside the call; the
 * Redis adapter answers later (hiredis async API on libevent). Callers
 * therefore make store_mget() the last thing they do with their own state.
 * Writes (store_put, store_del) are fire-and-forget; their failure shows in
 * store_ok() and the log. LMDB writes go to a writer thread in batches (one
 * durable commit per batch) so the loop never waits for the disk; reads see
 * queued writes at once.
 *
 * Synchronous use (the `sluice greylist` tool): open with base == NULL;
 * then store_mget() always answers from inside the call, and
 * store_scan() walks the keys with a prefix.
 *
 * Failure: when Redis is unreachable, store_mget() answers STORE_ERROR at
 * once, and the adapter reconnects by itself every second.
 */
#ifndef SLUICE_GREYLIST_STORE_H
#define SLUICE_GREYLIST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;

enum store_status { STORE_OK, STORE_ERROR };

#define STORE_MGET_MAX 4

/* vals[i] is NULL when keys[i] is absent; vals are valid during the call. */
typedef void (*store_get_cb)(void *arg, enum store_status st, char *const *vals, size_t n);
/* store_scan: return non-zero to stop. */
typedef int (*store_scan_fn)(void *arg, const char *key, const char *val);

/* spec: "lmdb:PATH" or "redis://HOST:PORT/DB" ("" = lmdb under
 * spool_dir/greylist). NULL + err on failure. */
struct store *store_open(const char *spec, const char *spool_dir,
                         struct event_base *base, char *err, size_t errlen);
void store_close(struct store *st);
const char *store_describe(const struct store *st);
bool store_ok(const struct store *st);

void store_mget(struct store *st, const char *const *keys, size_t n,
                store_get_cb cb, void *arg);
void store_put(struct store *st, const char *key, const char *val, uint64_t ttl);
void store_del(struct store *st, const char *key);
/* Synchronous walk over live keys starting with prefix. -1 on error. */
int store_scan(struct store *st, const char *prefix, store_scan_fn fn, void *arg);
/* Delete expired records now; returns how many (Redis: 0, it expires by
 * itself), or -1 on error. */
long store_expire(struct store *st);

/* Adapter operations (store_lmdb.c, store_redis.c). */
struct store_ops {
    const char *name;
    void (*close)(struct store *st);
    bool (*ok)(const struct store *st);
    void (*mget)(struct store *st, const char *const *keys, size_t n,
                 store_get_cb cb, void *arg);
    void (*put)(struct store *st, const char *key, const char *val, uint64_t ttl);
    void (*del)(struct store *st, const char *key);
    int (*scan)(struct store *st, const char *prefix, store_scan_fn fn, void *arg);
    long (*expire)(struct store *st);
};

struct store {
    const struct store_ops *ops;
    char desc[600];
    void *impl;
};

struct store *store_lmdb_open(const char *path, struct event_base *base, char *err,
                              size_t errlen);
/* The LMDB writer's next gather window in ms, from the CPU time the last
 * commit took (exposed for tests; see store_lmdb.c). */
unsigned lmdb_next_window(uint64_t commit_cpu_us);
struct store *store_redis_open(const char *url, struct event_base *base, char *err,
                               size_t errlen);

#endif
