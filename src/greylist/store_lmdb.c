/*
 * store_lmdb.c - the embedded greylist store on LMDB.
 *
 * LMDB is crash-safe by construction (copy-on-write B+tree, two meta
 * pages): a commit is either wholly there after a crash or not at all.
 * Commits are durable (fdatasync) but happen on a writer thread, in
 * batches: the event loop queues writes and never waits for the disk. The
 * writer gathers writes for a window before it commits, so a crash loses
 * at most one window of greylist state (those senders are greylisted
 * again; the same bound as Redis's `appendfsync everysec`). Until the
 * writer has committed a write, reads find it in an overlay (a map of
 * queued values, guarded by the queue's mutex), so a decision always sees
 * the one before it. The writer also sweeps expired records every hour.
 *
 * The window adapts to the write rate (lmdb_next_window): it is the
 * shortest that keeps the writer's commits under LMDB_DUTY_PCT percent of
 * one CPU, between LMDB_GATHER_MIN_MS and LMDB_GATHER_MAX_MS. Why: a commit
 * costs CPU per dirty page (copy-on-write, pwrite, writeback at
 * fdatasync), and random triplet keys dirty about one leaf page per write
 * in small batches; a longer window rewrites each page once for many
 * writes. Measured with 40,000 new triplets a second on 2 CPUs: 5 ms
 * windows took 1.2 ms of CPU per 270 writes and slowed decisions by a
 * third; 1 s windows, 35 ms per 40,000. A quiet server keeps 5 ms windows,
 * so `sluice greylist list` sees a decision a few milliseconds later.
 *
 * No MDB_WRITEMAP: with it, every sync write-protects the dirty pages of
 * the shared mapping again, one TLB-shootdown interrupt per page on the
 * CPU that runs the event loop (measured: the writer cost 11-18 us of CPU
 * per decision, the loop slowed too); LMDB's own page copies written with
 * pwrite cost 2-4 us. A stray write through the map can no longer reach
 * the file either.
 *
 * Stored value: "<expiry unix time> <payload>".
 */
#include "greylist/store.h"
#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/dict.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LMDB_MAPSIZE ((size_t)1 << 30)
#define LMDB_SWEEP_SECONDS 3600
#define LMDB_VAL_MAX 4096
#define LMDB_GATHER_MIN_MS 5     /* batch window of the writer thread... */
#define LMDB_GATHER_MAX_MS 1000  /* ...grows up to this under load */
#define LMDB_DUTY_PCT 2          /* commit CPU per window, at most */
#define LMDB_BATCH_MAX 65536     /* a full batch is committed at once */
#define LMDB_DONE_SLICE 256      /* overlay entries dropped per lock hold */

struct lmdb_op {
    struct lmdb_op *next;
    char *key;
    char *val;                 /* stored form; NULL = delete */
    uint64_t seq;
};

struct lmdb_ov {
    char *val;                 /* stored form; NULL = deleted */
    uint64_t seq;
};

struct lmdb_store {
    struct store st;
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *rtxn;             /* reused read transaction (loop thread) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* work queued, or stop */
    pthread_cond_t stop_cv;    /* stop (monotonic clock: ends a gather) */
    struct lmdb_op *head, *tail;
    size_t queued;             /* ops from head to tail */
    unsigned window_ms;        /* current gather window (writer only) */
    bool stop;
    atomic_bool failed;        /* the last commit failed */
    struct dict overlay;       /* key -> struct lmdb_ov * (under mu) */
    uint64_t seq;
    time_t next_sweep;
};

static void lmdb_ov_free(void *p)
{
    struct lmdb_ov *ov = p;
    free(ov->val);
    free(ov);
}

/* "<expiry> <payload>": the payload when live, else NULL. */
static const char *lmdb_live(const char *stored, time_t now)
{
    uint64_t exp = 0;
    const char *sp = strchr(stored, ' ');
    char num[24];
    if (sp == NULL || (size_t)(sp - stored) >= sizeof(num))
        return NULL;
    memcpy(num, stored, (size_t)(sp - stored));
    num[sp - stored] = '\0';
    if (str_to_u64(num, &exp) < 0 || (exp != 0 && exp <= (uint64_t)now))
        return NULL;
    return sp + 1;
}

/* ---------------------------------------------------------------------- */
/* writer thread                                                           */

static long lmdb_sweep(struct lmdb_store *s)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    long n = 0;
    time_t now = time(NULL);
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0)
        return -1;
    if (mdb_cursor_open(txn, s->dbi, &cur) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        char buf[64];
        size_t len = v.mv_size < sizeof(buf) - 1 ? v.mv_size : sizeof(buf) - 1;
        memcpy(buf, v.mv_data, len);
        buf[len] = '\0';
        if (strchr(buf, ' ') && lmdb_live(buf, now) == NULL) {
            mdb_cursor_del(cur, 0);
            n++;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (mdb_txn_commit(txn) != 0)
        return -1;
    s->failed = false;   /* there is room again */
    return n;
}

static int lmdb_commit(struct lmdb_store *s, struct lmdb_op *batch)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    for (struct lmdb_op *o = batch; rc == 0 && o; o = o->next) {
        MDB_val k = {strlen(o->key), o->key};
        if (o->val) {
            MDB_val v = {strlen(o->val), o->val};
            rc = mdb_put(txn, s->dbi, &k, &v, 0);
        } else {
            rc = mdb_del(txn, s->dbi, &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
    }
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    return rc;
}

/* The batch is in LMDB: drop its overlay entries (unless a newer write
 * replaced one). In slices of LMDB_DONE_SLICE under the lock: a batch of a
 * one-second window can hold 40,000 writes, and the event loop reads the
 * overlay under the same lock for every decision (an entry still there is
 * as good as the committed record, so the slices are safe). */
static void lmdb_batch_done(struct lmdb_store *s, struct lmdb_op *batch)
{
    struct lmdb_op *o = batch;
    while (o) {
        pthread_mutex_lock(&s->mu);
        for (int k = 0; o && k < LMDB_DONE_SLICE; o = o->next, k++) {
            struct lmdb_ov *ov = dict_get(&s->overlay, o->key);
            if (ov && ov->seq == o->seq)
                dict_del(&s->overlay, o->key);
        }
        pthread_mutex_unlock(&s->mu);
    }
    while (batch) {
        struct lmdb_op *next = batch->next;
        free(batch->key);
        free(batch->val);
        free(batch);
        batch = next;
    }
}

/* Wait (mu held) until the window has passed, the batch is full or the
 * store stops. */
static void lmdb_gather(struct lmdb_store *s)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_nsec += (long)s->window_ms * 1000000L;
    end.tv_sec += end.tv_nsec / 1000000000L;
    end.tv_nsec %= 1000000000L;
    while (!s->stop && s->queued < LMDB_BATCH_MAX &&
           pthread_cond_timedwait(&s->stop_cv, &s->mu, &end) != ETIMEDOUT)
        ;
}

/* The next window from what the last commit cost: commit CPU at most
 * LMDB_DUTY_PCT of the window (see the header comment). */
unsigned lmdb_next_window(uint64_t commit_cpu_us)
{
    uint64_t ms = commit_cpu_us * (100 / LMDB_DUTY_PCT) / 1000;
    if (ms < LMDB_GATHER_MIN_MS)
        return LMDB_GATHER_MIN_MS;
    return ms > LMDB_GATHER_MAX_MS ? LMDB_GATHER_MAX_MS : (unsigned)ms;
}

static void *lmdb_writer(void *arg)
{
    struct lmdb_store *s = arg;
    /* the event loop answers clients; the writer can wait (Linux: nice
     * applies per thread) */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&s->mu);
    while (!s->stop || s->head) {
        if (s->head == NULL) {
            struct timespec ts = {s->next_sweep, 0};
            if (time(NULL) >= s->next_sweep) {
                pthread_mutex_unlock(&s->mu);
                lmdb_sweep(s);
                pthread_mutex_lock(&s->mu);
                s->next_sweep = time(NULL) + LMDB_SWEEP_SECONDS;
                continue;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        /* gather what comes in the window: one commit (and one
         * fdatasync) then carries all of it; a stop cuts the wait */
        lmdb_gather(s);
        struct lmdb_op *batch = s->head;
        s->head = s->tail = NULL;
        s->queued = 0;
        pthread_mutex_unlock(&s->mu);
        uint64_t cpu0 = clock_thread_cpu_us();
        int rc = lmdb_commit(s, batch);
        s->window_ms = lmdb_next_window(clock_thread_cpu_us() - cpu0);
        if (rc != 0)
            log_svc_warn("greylist", "LMDB commit failed: %s", mdb_strerror(rc));
        s->failed = rc != 0;
        lmdb_batch_done(s, batch);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* operations                                                              */

static void lmdb_queue(struct lmdb_store *s, const char *key, char *stored)
{
    struct lmdb_op *o = xcalloc(1, sizeof(*o));
    o->key = xstrdup(key);
    o->val = stored;
    struct lmdb_ov *ov = xmalloc(sizeof(*ov));
    ov->val = stored ? xstrdup(stored) : NULL;
    pthread_mutex_lock(&s->mu);
    o->seq = ov->seq = ++s->seq;
    dict_set(&s->overlay, key, ov);
    if (s->tail)
        s->tail->next = o;
    else
        s->head = o;
    s->tail = o;
    if (++s->queued == LMDB_BATCH_MAX)
        pthread_cond_signal(&s->stop_cv);   /* ends the gather */
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void lmdb_put(struct store *st, const char *key, const char *val, uint64_t ttl)
{
    struct lmdb_store *s = st->impl;
    uint64_t exp = ttl ? (uint64_t)time(NULL) + ttl : 0;
    lmdb_queue(s, key, xasprintf("%llu %s", (unsigned long long)exp, val));
}

static void lmdb_del(struct store *st, const char *key)
{
    lmdb_queue(st->impl, key, NULL);
}

/* The stored form of key into out (""): 1 found, 0 absent, -1 error. */
static int lmdb_read(struct lmdb_store *s, const char *key, char *out, size_t len)
{
    pthread_mutex_lock(&s->mu);
    struct lmdb_ov *ov = dict_get(&s->overlay, key);
    if (ov) {
        int found = ov->val != NULL;
        str_copy(out, ov->val ? ov->val : "", len);
        pthread_mutex_unlock(&s->mu);
        return found;
    }
    pthread_mutex_unlock(&s->mu);
    if (mdb_txn_renew(s->rtxn) != 0)
        return -1;
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(s->rtxn, s->dbi, &k, &v);
    if (rc == 0) {
        size_t n = v.mv_size < len - 1 ? v.mv_size : len - 1;
        memcpy(out, v.mv_data, n);
        out[n] = '\0';
    }
    mdb_txn_reset(s->rtxn);
    return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : -1;
}

static void lmdb_mget(struct store *st, const char *const *keys, size_t n,
                      store_get_cb cb, void *arg)
{
    struct lmdb_store *s = st->impl;
    char bufs[STORE_MGET_MAX][LMDB_VAL_MAX];
    char *vals[STORE_MGET_MAX] = {NULL};
    time_t now = time(NULL);
    if (n > STORE_MGET_MAX)
        n = STORE_MGET_MAX;
    if (s->failed) {
        /* writes fail (map full, disk error): decisions would never see
         * their own records, so let the failure policy decide */
        cb(arg, STORE_ERROR, vals, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = lmdb_read(s, keys[i], bufs[i], sizeof(bufs[i]));
        if (rc < 0) {
            cb(arg, STORE_ERROR, vals, n);
            return;
        }
        const char *live = rc ? lmdb_live(bufs[i], now) : NULL;
        vals[i] = live ? (char *)live : NULL;
    }
    cb(arg, STORE_OK, vals, n);
}

static int lmdb_scan(struct store *st, const char *prefix, store_scan_fn fn, void *arg)
{
    struct lmdb_store *s = st->impl;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    if (mdb_cursor_open(txn, s->dbi, &cur) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    size_t plen = strlen(prefix);
    MDB_val k = {plen, (void *)prefix}, v;
    time_t now = time(NULL);
    int rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
        char key[512], val[LMDB_VAL_MAX];
        size_t kn = k.mv_size < sizeof(key) - 1 ? k.mv_size : sizeof(key) - 1;
        size_t vn = v.mv_size < sizeof(val) - 1 ? v.mv_size : sizeof(val) - 1;
        memcpy(key, k.mv_data, kn);
        key[kn] = '\0';
        memcpy(val, v.mv_data, vn);
        val[vn] = '\0';
        const char *live = lmdb_live(val, now);
        if (live && fn(arg, key, live))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return 0;
}

static long lmdb_expire(struct store *st)
{
    return lmdb_sweep(st->impl);
}

static bool lmdb_ok(const struct store *st)
{
    const struct lmdb_store *s = st->impl;
    return !s->failed;
}

static void lmdb_close(struct store *st)
{
    struct lmdb_store *s = st->impl;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_cond_signal(&s->stop_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    mdb_txn_abort(s->rtxn);
    mdb_dbi_close(s->env, s->dbi);
    mdb_env_close(s->env);
    dict_free(&s->overlay);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->stop_cv);
    free(s);
}

static const struct store_ops lmdb_ops = {
    "lmdb", lmdb_close, lmdb_ok, lmdb_mget, lmdb_put, lmdb_del, lmdb_scan, lmdb_expire,
};


static int lmdb_env_open(struct lmdb_store *s, const char *path, char *err, size_t errlen)
{
    int rc;
    MDB_txn *txn;
    if (fs_mkdir_p(path, 0750) < 0) {
        snprintf(err, errlen, "cannot create greylist store %s: %s", path, strerror(errno));
        return -1;
    }
    if ((rc = mdb_env_create(&s->env)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, LMDB_MAPSIZE)) != 0 ||
        (rc = mdb_env_open(s->env, path, MDB_NOTLS | MDB_NOMETASYNC, 0640)) != 0 ||
        (rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
        snprintf(err, errlen, "cannot open greylist store lmdb:%s: %s; fix: check "
                 "the path and its permissions", path, mdb_strerror(rc));
        if (s->env)
            mdb_env_close(s->env);
        return -1;
    }
    if ((rc = mdb_dbi_open(txn, NULL, 0, &s->dbi)) != 0 || (rc = mdb_txn_commit(txn)) != 0 ||
        (rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn)) != 0) {
        snprintf(err, errlen, "greylist store lmdb:%s: %s", path, mdb_strerror(rc));
        mdb_env_close(s->env);
        return -1;
    }
    mdb_txn_reset(s->rtxn);
    return 0;
}

struct store *store_lmdb_open(const char *path, struct event_base *base, char *err,
                              size_t errlen)
{
    struct lmdb_store *s = xcalloc(1, sizeof(*s));
    if (lmdb_env_open(s, path, err, errlen) < 0) {
        free(s);
        return NULL;
    }
    s->st.ops = &lmdb_ops;
    s->st.impl = s;
    snprintf(s->st.desc, sizeof(s->st.desc), "lmdb:%s", path);
    dict_init(&s->overlay, lmdb_ov_free);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->stop_cv, &ca);
    pthread_condattr_destroy(&ca);
    /* the first sweep a minute after start, then hourly; tools never sweep
     * on their own (they have `expire`) */
    s->next_sweep = base ? time(NULL) + 60 : (time_t)INT64_MAX / 2;
    s->window_ms = LMDB_GATHER_MIN_MS;
    pthread_create(&s->thread, NULL, lmdb_writer, s);
    return &s->st;
}
