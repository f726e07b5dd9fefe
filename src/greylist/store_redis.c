/*
 * store_redis.c - the shared greylist store on Redis (hiredis).
 *
 * On the event loop the adapter uses hiredis's asynchronous API attached to
 * libevent, so a slow or stopped Redis never blocks the loop: reads answer
 * through callbacks, writes are pipelined without waiting. When the
 * connection fails or drops, reads answer STORE_ERROR at once (the caller
 * applies its failure policy) and a timer reconnects every second, so the
 * store comes back by itself. Keys expire by Redis's own TTLs (SET ... EX).
 *
 * The `sluice greylist` tool uses the synchronous API with a 2 s timeout.
 */
#include "greylist/store.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wunused-function"
#include <hiredis/adapters/libevent.h>
#pragma GCC diagnostic pop

#define REDIS_RETRY_MS 1000
#define REDIS_WARN_EVERY 10

struct redis_store {
    struct store st;
    struct event_base *base;       /* NULL: synchronous (tools) */
    redisAsyncContext *ac;
    redisContext *c;
    char host[256];
    int port;
    unsigned db;
    bool connected;
    bool closing;
    struct event *retry;
    time_t last_warn;
};

struct redis_op {
    store_get_cb cb;
    void *arg;
    size_t n;
};

static void redis_connect_async(struct redis_store *s);

/* ---------------------------------------------------------------------- */
/* connection                                                              */

static void redis_warn(struct redis_store *s, const char *what)
{
    time_t now = time(NULL);
    if (now - s->last_warn < REDIS_WARN_EVERY)
        return;
    s->last_warn = now;
    log_svc_warn("greylist", "greylist store %s unavailable: %s; retrying every %d ms",
                 s->st.desc, what, REDIS_RETRY_MS);
}

static void redis_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    redis_connect_async(arg);
}

static void redis_schedule_retry(struct redis_store *s)
{
    if (s->closing)
        return;
    struct timeval tv = {REDIS_RETRY_MS / 1000, (REDIS_RETRY_MS % 1000) * 1000};
    evtimer_add(s->retry, &tv);
}

static void redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_store *s = ac->data;
    if (status != REDIS_OK) {
        redis_warn(s, ac->errstr);
        s->ac = NULL;          /* hiredis frees it after this callback */
        s->connected = false;
        redis_schedule_retry(s);
        return;
    }
    if (!s->connected && s->last_warn)
        log_svc("greylist", "greylist store %s is back", s->st.desc);
    s->connected = true;
    s->last_warn = 0;
}

static void redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_store *s = ac->data;
    s->ac = NULL;
    s->connected = false;
    if (s->closing)
        return;
    redis_warn(s, status == REDIS_OK ? "connection closed" : ac->errstr);
    redis_schedule_retry(s);
}

static void redis_connect_async(struct redis_store *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (ac == NULL || ac->err) {
        redis_warn(s, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        redis_schedule_retry(s);
        return;
    }
    ac->data = s;
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
    s->ac = ac;
    if (s->db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %u", s->db);
}

static int redis_connect_sync(struct redis_store *s, char *err, size_t errlen)
{
    struct timeval tv = {2, 0};
    s->c = redisConnectWithTimeout(s->host, s->port, tv);
    if (s->c == NULL || s->c->err) {
        snprintf(err, errlen, "cannot connect to %s: %s", s->st.desc,
                 s->c ? s->c->errstr : "out of memory");
        return -1;
    }
    redisSetTimeout(s->c, tv);
    if (s->db) {
        redisReply *r = redisCommand(s->c, "SELECT %u", s->db);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            snprintf(err, errlen, "%s: SELECT %u failed", s->st.desc, s->db);
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* operations                                                              */

static void redis_mget_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_op *op = privdata;
    redisReply *r = reply;
    char *vals[STORE_MGET_MAX] = {NULL};
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != op->n) {
        op->cb(op->arg, STORE_ERROR, vals, op->n);
        free(op);
        return;
    }
    for (size_t i = 0; i < op->n; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            vals[i] = r->element[i]->str;
    op->cb(op->arg, STORE_OK, vals, op->n);
    free(op);
}

static void redis_mget_sync(struct redis_store *s, const char *const *keys, size_t n,
                            store_get_cb cb, void *arg)
{
    const char *argv[STORE_MGET_MAX + 1] = {"MGET"};
    char *vals[STORE_MGET_MAX] = {NULL};
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = keys[i];
    redisReply *r = s->c ? redisCommandArgv(s->c, (int)n + 1, argv, NULL) : NULL;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        if (r)
            freeReplyObject(r);
        cb(arg, STORE_ERROR, vals, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            vals[i] = r->element[i]->str;
    cb(arg, STORE_OK, vals, n);
    freeReplyObject(r);
}

static void redis_mget(struct store *st, const char *const *keys, size_t n,
                       store_get_cb cb, void *arg)
{
    struct redis_store *s = st->impl;
    char *none[STORE_MGET_MAX] = {NULL};
    if (n > STORE_MGET_MAX)
        n = STORE_MGET_MAX;
    if (s->base == NULL) {
        redis_mget_sync(s, keys, n, cb, arg);
        return;
    }
    if (s->ac == NULL) {
        cb(arg, STORE_ERROR, none, n);
        return;
    }
    const char *argv[STORE_MGET_MAX + 1] = {"MGET"};
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = keys[i];
    struct redis_op *op = xmalloc(sizeof(*op));
    op->cb = cb;
    op->arg = arg;
    op->n = n;
    if (redisAsyncCommandArgv(s->ac, redis_mget_reply, op, (int)n + 1, argv, NULL) != REDIS_OK) {
        free(op);
        cb(arg, STORE_ERROR, none, n);
    }
}

static void redis_write(struct redis_store *s, int argc, const char **argv)
{
    if (s->base == NULL) {
        redisReply *r = s->c ? redisCommandArgv(s->c, argc, argv, NULL) : NULL;
        if (r)
            freeReplyObject(r);
        return;
    }
    if (s->ac == NULL) {
        redis_warn(s, "write dropped");
        return;
    }
    redisAsyncCommandArgv(s->ac, NULL, NULL, argc, argv, NULL);
}

static void redis_put(struct store *st, const char *key, const char *val, uint64_t ttl)
{
    char ttls[24];
    snprintf(ttls, sizeof(ttls), "%llu", (unsigned long long)(ttl ? ttl : 1));
    const char *argv[5] = {"SET", key, val, "EX", ttls};
    redis_write(st->impl, ttl ? 5 : 3, argv);
}

static void redis_del(struct store *st, const char *key)
{
    const char *argv[2] = {"DEL", key};
    redis_write(st->impl, 2, argv);
}

/* SCAN with MATCH prefix*, then GET each key (tools only). */
static int redis_scan(struct store *st, const char *prefix, store_scan_fn fn, void *arg)
{
    struct redis_store *s = st->impl;
    if (s->c == NULL)
        return -1;
    char cursor[32] = "0", match[600];
    snprintf(match, sizeof(match), "%s*", prefix);
    do {
        redisReply *r = redisCommand(s->c, "SCAN %s MATCH %s COUNT 1000", cursor, match);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        str_copy(cursor, r->element[0]->str ? r->element[0]->str : "0", sizeof(cursor));
        redisReply *keys = r->element[1];
        int stop = 0;
        for (size_t i = 0; i < keys->elements && !stop; i++) {
            redisReply *v = redisCommand(s->c, "GET %s", keys->element[i]->str);
            if (v && v->type == REDIS_REPLY_STRING)
                stop = fn(arg, keys->element[i]->str, v->str);
            if (v)
                freeReplyObject(v);
        }
        freeReplyObject(r);
        if (stop)
            break;
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

static long redis_expire(struct store *st)
{
    return 0;   /* Redis expires keys by their TTL */
}

static bool redis_ok(const struct store *st)
{
    const struct redis_store *s = st->impl;
    return s->base ? s->ac != NULL : s->c != NULL;
}

static void redis_close(struct store *st)
{
    struct redis_store *s = st->impl;
    s->closing = true;
    if (s->ac)
        redisAsyncFree(s->ac);
    if (s->c)
        redisFree(s->c);
    if (s->retry)
        event_free(s->retry);
    free(s);
}

static const struct store_ops redis_ops = {
    "redis", redis_close, redis_ok, redis_mget, redis_put, redis_del, redis_scan,
    redis_expire,
};

/* redis://HOST[:PORT][/DB] */
static int redis_parse_url(struct redis_store *s, const char *url)
{
    char tmp[300];
    uint64_t v;
    if (str_copy(tmp, url + 8, sizeof(tmp)) >= sizeof(tmp))
        return -1;
    char *slash = strchr(tmp, '/');
    if (slash) {
        *slash = '\0';
        if (slash[1] && (str_to_u64(slash + 1, &v) < 0 || v > 1000))
            return -1;
        s->db = slash[1] ? (unsigned)v : 0;
    }
    char *colon = strrchr(tmp, ':');
    s->port = 6379;
    if (colon) {
        *colon = '\0';
        if (str_to_u64(colon + 1, &v) < 0 || v == 0 || v > 65535)
            return -1;
        s->port = (int)v;
    }
    str_copy(s->host, tmp[0] ? tmp : "127.0.0.1", sizeof(s->host));
    return 0;
}

struct store *store_redis_open(const char *url, struct event_base *base, char *err,
                               size_t errlen)
{
    struct redis_store *s = xcalloc(1, sizeof(*s));
    s->st.ops = &redis_ops;
    s->st.impl = s;
    s->base = base;
    str_copy(s->st.desc, url, sizeof(s->st.desc));
    if (redis_parse_url(s, url) < 0) {
        snprintf(err, errlen, "bad greylist_store '%s'; fix: use redis://HOST:PORT/DB", url);
        free(s);
        return NULL;
    }
    if (base == NULL) {
        if (redis_connect_sync(s, err, errlen) < 0) {
            redis_close(&s->st);
            return NULL;
        }
        return &s->st;
    }
    /* A server that is down at start is not fatal: fail open/closed applies
     * and the adapter keeps trying. */
    s->retry = evtimer_new(base, redis_retry_cb, s);
    redis_connect_async(s);
    return &s->st;
}
