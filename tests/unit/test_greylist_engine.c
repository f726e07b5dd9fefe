/*
 * test_greylist_engine.c - the greylisting engine (greylist.c) on a stub
 * resolver and a real LMDB store in a temporary directory: bypasses and
 * allow lists, defer / pass / passed through the store, callbacks never
 * from inside greylist_check(), a failing store under greylist_failure
 * open and closed, a store that never answers (timeout), cancellation;
 * the LMDB store itself: queued writes read back at once, a batch larger
 * than one commit, durability across close and reopen, a lone write seen
 * by another process within a short window, the writer's adaptive window.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dns_stub.h"
#include "greylist/greylist.h"
#include "greylist/store.h"
#include "lib/config.h"

static struct event_base *base;
static struct greylist_decision got;
static int ncb;

static void on_decision(void *arg, const struct greylist_decision *d)
{
    got = *d;
    ncb++;
}

static struct config *load(const char *extra)
{
    char path[] = "/tmp/sluice-unit-gl-XXXXXX";
    int fd = mkstemp(path);
    char text[1024];
    int n = snprintf(text, sizeof(text), "spool_dir = %s.d\ngreylist_delay = 1s\n"
                     "myhostname = mx.test\n%s", path, extra);
    assert_int_equal(write(fd, text, (size_t)n), n);
    close(fd);
    char err[512];
    struct config *c = config_load(path, err, sizeof(err));
    if (c == NULL)
        fail_msg("%s", err);
    unlink(path);
    return c;
}

static void cleanup(const struct config *c)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->spool_dir);
    assert_int_equal(system(cmd), 0);
}

static const struct greylist_decision *decide(struct greylist *gl, const char *ip,
                                              const char *sender, const char *rcpt)
{
    struct greylist_request q = {.helo = "h.test", .sender = sender, .rcpt = rcpt};
    netaddr_parse(ip, &q.addr);
    ncb = 0;
    greylist_check(gl, &q, on_decision, NULL);
    assert_int_equal(ncb, 0);   /* never from inside greylist_check */
    for (int i = 0; i < 5000 && ncb == 0; i++) {
        stub_run();
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (ncb == 0)
            usleep(1000);
    }
    assert_int_equal(ncb, 1);
    return &got;
}

static void zone(void)
{
    stub_reset();
    stub_add("cluster.test", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 -all");
}

static void test_defer_pass_passed(void **state)
{
    base = event_base_new();
    zone();
    struct config *c = load("greylist_allow_senders = friend.test\n"
                            "greylist_allow_clients = 203.0.113.0/24\n");
    struct dns_iface di = stub_iface();
    char err[512];
    struct greylist *gl = greylist_new(c, base, &di, err, sizeof(err));
    assert_non_null(gl);
    const struct greylist_decision *d = decide(gl, "192.0.2.7", "ann@cluster.test", "b@x.test");
    assert_int_equal(d->action, GREYLIST_DEFER);
    assert_string_equal(d->pool, "spf:cluster.test");
    assert_int_equal(d->retry_in, 1);
    sleep(1);
    d = decide(gl, "198.51.100.9", "ann@cluster.test", "b@x.test");   /* other network */
    assert_int_equal(d->action, GREYLIST_ACCEPT);
    assert_string_equal(d->reason, "retry");
    assert_true(d->delayed >= 1);
    d = decide(gl, "192.0.2.8", "ann@cluster.test", "b@x.test");
    assert_string_equal(d->reason, "passed");
    assert_int_equal(d->delayed, 0);
    d = decide(gl, "192.0.2.8", "x@friend.test", "b@x.test");
    assert_string_equal(d->reason, "allow-sender");
    d = decide(gl, "203.0.113.5", "x@y.test", "b@x.test");
    assert_string_equal(d->reason, "allow-client");
    /* outside the pool: SPF fails, a netmask key, deferred */
    d = decide(gl, "192.0.3.1", "ann@cluster.test", "b@x.test");
    assert_int_equal(d->action, GREYLIST_DEFER);
    assert_string_equal(d->pool, "net:192.0.3.0/24");
    greylist_free(gl);
    cleanup(c);
    config_free(c);
    event_base_free(base);
}

/* A store that fails every read, or never answers. */
static bool fake_silent;
static void fake_close(struct store *st) { free(st); }
static bool fake_ok(const struct store *st) { return false; }
static void fake_mget(struct store *st, const char *const *keys, size_t n, store_get_cb cb,
                      void *arg)
{
    char *vals[STORE_MGET_MAX] = {NULL};
    if (fake_silent)
        free(arg);   /* the engine's op record: never answered */
    else
        cb(arg, STORE_ERROR, vals, n);
}
static void fake_put(struct store *st, const char *k, const char *v, uint64_t ttl) {}
static void fake_del(struct store *st, const char *k) {}
static int fake_scan(struct store *st, const char *p, store_scan_fn fn, void *arg) { return -1; }
static long fake_expire(struct store *st) { return -1; }
static const struct store_ops fake_ops = {"fake", fake_close, fake_ok, fake_mget, fake_put,
                                          fake_del, fake_scan, fake_expire};

static struct store *fake_store(void)
{
    struct store *st = calloc(1, sizeof(*st));
    st->ops = &fake_ops;
    return st;
}

static void test_store_failure(void **state)
{
    base = event_base_new();
    zone();
    struct dns_iface di = stub_iface();
    char err[512];
    struct config *c = load("greylist_failure = open\ngreylist_timeout = 1s\n");
    fake_silent = false;
    struct greylist *gl = greylist_new_with_store(c, base, &di, fake_store(), err, sizeof(err));
    const struct greylist_decision *d = decide(gl, "192.0.2.7", "ann@cluster.test", "b@x.test");
    assert_int_equal(d->action, GREYLIST_ACCEPT);
    assert_string_equal(d->reason, "unavailable (fail open)");
    greylist_free(gl);
    config_free(c);
    c = load("greylist_failure = closed\ngreylist_timeout = 1s\n");
    gl = greylist_new_with_store(c, base, &di, fake_store(), err, sizeof(err));
    d = decide(gl, "192.0.2.7", "ann@cluster.test", "b@x.test");
    assert_int_equal(d->action, GREYLIST_TEMPFAIL);
    /* a store that never answers: the decision times out, still closed */
    fake_silent = true;
    d = decide(gl, "192.0.2.9", "bob@cluster.test", "b@x.test");
    assert_int_equal(d->action, GREYLIST_TEMPFAIL);
    assert_int_equal(greylist_pending(gl), 0);
    greylist_free(gl);
    config_free(c);
    event_base_free(base);
}

static void test_cancel(void **state)
{
    base = event_base_new();
    zone();
    struct dns_iface di = stub_iface();
    char err[512];
    struct config *c = load("");
    fake_silent = false;
    struct greylist *gl = greylist_new_with_store(c, base, &di, fake_store(), err, sizeof(err));
    struct greylist_request q = {.helo = "h.test", .sender = "a@cluster.test", .rcpt = "b@x.test"};
    netaddr_parse("192.0.2.7", &q.addr);
    ncb = 0;
    uint64_t id = greylist_check(gl, &q, on_decision, NULL);
    greylist_cancel(gl, id);
    stub_run();
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(ncb, 0);
    greylist_check(gl, &q, on_decision, NULL);   /* freed in flight */
    greylist_free(gl);
    stub_run();
    assert_int_equal(ncb, 0);
    config_free(c);
    event_base_free(base);
}

/* ---------------------------------------------------------------------- */
/* the LMDB store                                                          */

static char got_vals[STORE_MGET_MAX][256];
static int got_n, got_status;

static void on_vals(void *arg, enum store_status st, char *const *vals, size_t n)
{
    got_status = st;
    got_n = (int)n;
    for (size_t i = 0; i < n; i++)
        snprintf(got_vals[i], sizeof(got_vals[i]), "%s", vals[i] ? vals[i] : "(absent)");
}

static const char *get1(struct store *st, const char *key)
{
    const char *keys[1] = {key};
    got_n = -1;
    store_mget(st, keys, 1, on_vals, NULL);   /* LMDB answers at once */
    assert_int_equal(got_n, 1);
    assert_int_equal(got_status, STORE_OK);
    return got_vals[0];
}

static int count_fn(void *arg, const char *key, const char *val)
{
    (*(long *)arg)++;
    return 0;
}

static long count_keys(struct store *st, const char *prefix)
{
    long n = 0;
    assert_int_equal(store_scan(st, prefix, count_fn, &n), 0);
    return n;
}

/* Another reader of the file, on LMDB alone (no writer thread: safe in a
 * forked child, also under ThreadSanitizer). */
static bool lmdb_has_key(const char *dir, const char *key)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {strlen(key), (void *)key}, v;
    bool found = false;
    if (mdb_env_create(&env) != 0)
        return false;
    if (mdb_env_set_mapsize(env, (size_t)1 << 30) == 0 &&
        mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0640) == 0 &&
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_dbi_open(txn, NULL, 0, &dbi) == 0)
            found = mdb_get(txn, dbi, &k, &v) == 0;
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return found;
}

static void test_lmdb_window(void **state)
{
    assert_int_equal(lmdb_next_window(0), 5);          /* quiet: shortest */
    assert_int_equal(lmdb_next_window(60), 5);
    assert_int_equal(lmdb_next_window(1200), 60);      /* 2% duty cycle */
    assert_int_equal(lmdb_next_window(35000), 1000);   /* capped */
    assert_int_equal(lmdb_next_window(UINT64_C(1) << 40), 1000);
}

static void test_lmdb_store(void **state)
{
    char dir[] = "/tmp/sluice-unit-lmdb-XXXXXX", err[512], key[64], val[64];
    assert_non_null(mkdtemp(dir));
    base = event_base_new();
    struct store *st = store_lmdb_open(dir, base, err, sizeof(err));
    assert_non_null(st);
    /* more writes than one batch holds: read back at once (overlay), then
     * committed in several batches */
    for (int i = 0; i < 70000; i++) {
        snprintf(key, sizeof(key), "k:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        store_put(st, key, val, 3600);
    }
    assert_string_equal(get1(st, "k:0"), "v0");
    assert_string_equal(get1(st, "k:69999"), "v69999");
    store_del(st, "k:5");
    assert_string_equal(get1(st, "k:5"), "(absent)");
    store_put(st, "k:6", "changed", 3600);
    assert_string_equal(get1(st, "k:6"), "changed");
    store_close(st);
    /* all of it is on disk after close */
    st = store_lmdb_open(dir, NULL, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(count_keys(st, "k:"), 69999);
    assert_string_equal(get1(st, "k:6"), "changed");
    assert_string_equal(get1(st, "k:5"), "(absent)");
    store_close(st);
    /* a lone write on a quiet store: another process sees it well within
     * a second (the window is back at its shortest after small commits) */
    st = store_lmdb_open(dir, base, err, sizeof(err));
    for (int round = 0; round < 3; round++) {
        snprintf(key, sizeof(key), "lone:%d", round);
        store_put(st, key, "x", 3600);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long seen = 0;
        while (seen == 0) {
            pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0)
                _exit(lmdb_has_key(dir, key) ? 0 : 1);
            int status = 0;
            assert_int_equal(waitpid(pid, &status, 0), pid);
            seen = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
            if (round > 0)   /* the first follows the 70,000-write batches */
                assert_true(waited < 0.5);
            else
                assert_true(waited < 3.0);
        }
    }
    store_close(st);
    event_base_free(base);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defer_pass_passed),
        cmocka_unit_test(test_store_failure),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_lmdb_window),
        cmocka_unit_test(test_lmdb_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
