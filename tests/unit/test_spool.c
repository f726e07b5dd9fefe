/*
 * test_spool.c - queue file records: round trip, self-validation (a file
 * without its end record is never a message), queue id ordering, and a
 * real commit through the sync thread (the message resident in the
 * journal, read from there, written to queue/ at close), batches made
 * durable by the journal, syncfs or
 * per-file fdatasync, and the /proc/meminfo parser that decides between
 * them (with hostile input).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "queue/spool.h"
#include "smtpd/smtpd_parse.h"

static void make_env(struct spool_envelope *env)
{
    memset(env, 0, sizeof(*env));
    strcpy(env->qid, "0123456789ABCDEF");
    env->arrival.tv_sec = 1700000000;
    env->arrival.tv_usec = 42;
    env->sender = strdup("s@example.org");
    env->envid = strdup("ENV+2B1");
    env->ret = RET_HDRS;
    env->body = BODY_8BITMIME;
    env->client_addr = strdup("192.0.2.1");
    env->client_name = strdup("unknown");
    env->helo = strdup("client.example with spaces");
    env->proto = strdup("ESMTPS");
    spool_envelope_add_rcpt(env, "a@example.org", NOTIFY_SUCCESS | NOTIFY_DELAY,
                            "rfc822;a@example.org");
    spool_envelope_add_rcpt(env, "\"q u\"@example.org", 0, NULL);
}

static void build_image(struct buf *img, const char *content)
{
    struct spool_envelope env;
    make_env(&env);
    buf_init(img, 0);
    spool_envelope_format(&env, img);
    size_t off = img->len;
    buf_puts(img, content);
    buf_printf(img, "\nend %zu %zu\n", off, strlen(content));
    spool_envelope_free(&env);
}

static void test_round_trip(void **state)
{
    struct buf img;
    build_image(&img, "Subject: hi\r\n\r\nbody\r\n");
    struct spool_envelope env;
    char err[128];
    assert_int_equal(spool_envelope_parse(img.data, img.len, &env, err, sizeof(err)), 0);
    assert_string_equal(env.qid, "0123456789ABCDEF");
    assert_string_equal(env.sender, "s@example.org");
    assert_string_equal(env.envid, "ENV+2B1");
    assert_int_equal(env.ret, RET_HDRS);
    assert_int_equal(env.body, BODY_8BITMIME);
    assert_string_equal(env.helo, "client.example with spaces");
    assert_int_equal(env.nrcpt, 2);
    assert_int_equal(env.rcpts[0].notify, NOTIFY_SUCCESS | NOTIFY_DELAY);
    assert_string_equal(env.rcpts[0].orcpt, "rfc822;a@example.org");
    assert_string_equal(env.rcpts[1].addr, "\"q u\"@example.org");
    assert_null(env.rcpts[1].orcpt);
    assert_int_equal(env.content_length, strlen("Subject: hi\r\n\r\nbody\r\n"));
    assert_memory_equal(img.data + env.content_offset, "Subject: hi", 11);
    spool_envelope_free(&env);
    buf_free(&img);
}

static void test_truncation_detected(void **state)
{
    struct buf img;
    build_image(&img, "Subject: hi\r\n\r\nbody\r\n");
    char err[128];
    /* every proper prefix of a valid file is rejected as incomplete (what
     * a crash while the sync thread wrote it leaves; removed at start) */
    for (size_t n = 0; n < img.len; n++) {
        struct spool_envelope env;
        int rc = spool_envelope_parse(img.data, n, &env, err, sizeof(err));
        if (rc != SPOOL_PARSE_INCOMPLETE)
            fail_msg("prefix of %zu bytes: %d (%s)", n, rc, err);
    }
    /* a corrupted trailer length: no valid end record either */
    char *end = strstr(img.data + img.len - 20, "end ");
    assert_non_null(end);
    end[strlen(end) - 2] = '9';
    struct spool_envelope env;
    assert_int_equal(spool_envelope_parse(img.data, img.len, &env, err, sizeof(err)),
                     SPOOL_PARSE_INCOMPLETE);
    buf_free(&img);
    /* not the start of a queue file, or damaged before a valid end record:
     * plain errors (such files go to corrupt/, never removed) */
    assert_int_equal(spool_envelope_parse("garbage", 7, &env, err, sizeof(err)), -1);
    assert_int_equal(spool_envelope_parse("SLUICE-QUEUX 1\n", 15, &env, err, sizeof(err)), -1);
    build_image(&img, "Subject: hi\r\n\r\nbody\r\n");
    char *rcpt = strstr(img.data, "\nrcpt ");
    assert_non_null(rcpt);
    char *tab = strchr(rcpt + 1, '\t');
    assert_non_null(tab);
    *tab = ' ';   /* a rcpt record without its fields */
    assert_int_equal(spool_envelope_parse(img.data, img.len, &env, err, sizeof(err)), -1);
    buf_free(&img);
}

static void test_qid_order(void **state)
{
    char prev[QID_LEN + 1] = "", cur[QID_LEN + 1];
    for (int i = 0; i < 10000; i++) {
        spool_new_qid(cur);
        assert_int_equal(strlen(cur), QID_LEN);
        assert_true(strcmp(cur, prev) > 0);
        memcpy(prev, cur, sizeof(prev));
    }
}

static int commits_seen;
static int last_err = -1;

static void on_commit(uint64_t token, const char *qid, int err)
{
    commits_seen++;
    last_err = err;
}

static void test_commit(void **state)
{
    char dir[] = "/tmp/sluice-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct event_base *base = event_base_new();
    char err[256];
    /* leftovers in tmp/ are removed at open */
    char tmpdir[600], junk[700];
    snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", dir);
    mkdir(tmpdir, 0700);
    snprintf(junk, sizeof(junk), "%s/partial", tmpdir);
    FILE *fp = fopen(junk, "w");
    fputs("half a message", fp);
    fclose(fp);
    struct spool *sp = spool_open(dir, base, err, sizeof(err));
    assert_non_null(sp);
    assert_int_not_equal(access(junk, F_OK), 0);

    struct spool_envelope env;
    make_env(&env);
    spool_new_qid(env.qid);
    struct spool_writer w;
    assert_int_equal(spool_writer_open(sp, env.qid, &w), 0);
    spool_writer_envelope(&w, &env);
    spool_writer_write(&w, "Subject: x\r\n\r\nbody\r\n", 20);
    assert_int_equal(spool_writer_finish(&w), 0);
    spool_commit(sp, &w, 7, on_commit);
    while (commits_seen == 0)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(last_err, 0);
    /* durable in the journal, resident there: no queue file, but readable */
    char path[700];
    snprintf(path, sizeof(path), "%s/queue/%s", dir, env.qid);
    assert_int_equal(access(path, F_OK), -1);
    struct spool_envelope back;
    if (spool_read_message(sp, env.qid, &back, err, sizeof(err)) != 0)
        fail_msg("spool_read_message: %s", err);
    assert_int_equal(back.content_length, 20);
    struct spool_content c;
    assert_int_equal(spool_content_open(sp, env.qid, &c), 0);
    assert_true(c.seg >= 0);
    char body[32];
    assert_int_equal(pread(c.fd, body, 20, (off_t)(c.base + back.content_offset)), 20);
    assert_memory_equal(body, "Subject: x\r\n\r\nbody\r\n", 20);
    spool_content_close(sp, &c);
    assert_int_equal(c.fd, -1);
    assert_int_equal(spool_content_open(sp, "0000000000000000", &c), -1);
    assert_int_equal(errno, ENOENT);
    size_t resident;
    uint64_t materialized;
    spool_resident_counts(sp, &resident, &materialized);
    assert_int_equal(resident, 1);
    spool_envelope_free(&back);
    spool_envelope_free(&env);
    /* a stopped spool leaves every queued message in queue/ */
    spool_close(sp);
    assert_int_equal(spool_read_file(path, &back, err, sizeof(err)), 0);
    assert_int_equal(back.content_length, 20);
    spool_envelope_free(&back);
    event_base_free(base);
    unlink(path);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_meminfo_parse(void **state)
{
    const char *real = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n"
                       "Dirty:              1234 kB\nWriteback:            16 kB\n"
                       "AnonPages:      5 kB\n";
    assert_int_equal(spool_meminfo_dirty_kb(real), 1250);
    assert_int_equal(spool_meminfo_dirty_kb("Writeback: 0 kB\nDirty: 7 kB"), 7);
    /* WritebackTmp: must not be taken for Writeback: */
    assert_int_equal(spool_meminfo_dirty_kb("WritebackTmp: 9 kB\nDirty: 1 kB\n"), -1);
    assert_int_equal(spool_meminfo_dirty_kb(""), -1);
    assert_int_equal(spool_meminfo_dirty_kb("Dirty: 5 kB\n"), -1);           /* half */
    assert_int_equal(spool_meminfo_dirty_kb("Dirty: x kB\nWriteback: 0 kB\n"), -1);
    assert_int_equal(spool_meminfo_dirty_kb("Dirty: -5 kB\nWriteback: 0 kB\n"), -1);
    assert_int_equal(spool_meminfo_dirty_kb("Dirty: 5 MB\nWriteback: 0 kB\n"), -1);
    assert_int_equal(spool_meminfo_dirty_kb("Dirty: 5\nWriteback: 0 kB\n"), -1);
    assert_int_equal(spool_meminfo_dirty_kb(
                         "Dirty: 99999999999999999999999999 kB\nWriteback: 0 kB\n"), -1);
    char big[64];
    snprintf(big, sizeof(big), "Dirty: %ld kB\nWriteback: %ld kB\n", LONG_MAX / 10 * 9,
             LONG_MAX / 10 * 9);
    assert_int_equal(spool_meminfo_dirty_kb(big), -1);                       /* sum overflows */
    assert_int_equal(spool_meminfo_dirty_kb("\n\n\nDirty:\t3 kB\nWriteback:   4 kB"), 7);
    char junk[256];
    for (size_t i = 0; i < sizeof(junk) - 1; i++)
        junk[i] = (char)(1 + (i * 37) % 255);
    junk[sizeof(junk) - 1] = '\0';
    assert_int_equal(spool_meminfo_dirty_kb(junk), -1);
}

/* The whole decision as the sync thread makes it. */
static bool by_fs(bool fs_sync, size_t nfiles, long dirty_kb, uint64_t now, uint64_t backoff)
{
    return spool_sync_by_fs(fs_sync, nfiles, now, backoff) && spool_dirty_ok(dirty_kb);
}

static void test_sync_decision(void **state)
{
    assert_true(by_fs(true, 2, 0, 1000, 0));
    assert_true(by_fs(true, 50, 64 * 1024, 1000, 1000));
    assert_false(by_fs(false, 50, 0, 1000, 0));        /* spool_sync = fdatasync */
    assert_false(by_fs(true, 1, 0, 1000, 0));          /* one file */
    assert_false(by_fs(true, 50, 64 * 1024 + 1, 1000, 0));  /* much dirty data */
    assert_false(by_fs(true, 50, -1, 1000, 0));        /* unknown */
    assert_false(by_fs(true, 50, 0, 1000, 1001));      /* backing off */
}

static long system_dirty_kb(void)
{
    char text[16384];
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return spool_meminfo_dirty_kb(text);
}

/* n messages committed together (a gather window makes them one batch). */
static void commit_batch(const char *dir, enum spool_sync_mode mode, int n,
                         struct spool_stats *st)
{
    struct event_base *base = event_base_new();
    char err[256];
    struct spool *sp = spool_open(dir, base, err, sizeof(err));
    assert_non_null(sp);
    spool_set_sync(sp, mode);
    spool_set_gather(sp, 100000);
    commits_seen = 0;
    char qids[16][QID_LEN + 1];
    for (int i = 0; i < n; i++) {
        struct spool_envelope env;
        make_env(&env);
        spool_new_qid(env.qid);
        memcpy(qids[i], env.qid, sizeof(qids[i]));
        struct spool_writer w;
        assert_int_equal(spool_writer_open(sp, env.qid, &w), 0);
        spool_writer_envelope(&w, &env);
        spool_writer_write(&w, "Subject: b\r\n\r\nbatch\r\n", 21);
        assert_int_equal(spool_writer_finish(&w), 0);
        spool_commit(sp, &w, (uint64_t)i, on_commit);
        spool_envelope_free(&env);
    }
    while (commits_seen < n)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(last_err, 0);
    for (int i = 0; i < n; i++) {
        struct spool_envelope back;
        assert_int_equal(spool_read_message(sp, qids[i], &back, err, sizeof(err)), 0);
        assert_int_equal(back.content_length, 21);
        spool_envelope_free(&back);
    }
    spool_get_stats(sp, st);
    spool_close(sp);
    event_base_free(base);
}

static void test_batch_sync(void **state)
{
    char dir[] = "/tmp/sluice-spool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct spool_stats st;
    commit_batch(dir, SPOOL_SYNC_FDATASYNC, 8, &st);
    assert_int_equal(st.files, 8);
    assert_int_equal(st.batches_syncfs, 0);              /* spool_sync = fdatasync */
    assert_int_equal(st.batches_journal, 0);
    commit_batch(dir, SPOOL_SYNC_JOURNAL, 8, &st);       /* the default */
    assert_int_equal(st.files, 0);                       /* resident: no files */
    assert_int_equal(st.batches_journal, st.batches);
    assert_int_equal(st.batches_syncfs, 0);
    long dirty = system_dirty_kb();
    commit_batch(dir, SPOOL_SYNC_AUTO, 8, &st);
    assert_int_equal(st.files, 8);
    assert_true(st.batches >= 1 && st.batches <= 8);
    if (dirty >= 0 && dirty < 16 * 1024)                 /* a quiet system */
        assert_true(st.batches_syncfs >= 1);
    else
        print_message("system has %ld kB dirty: syncfs not asserted\n", dirty);
    assert_int_equal(st.batches_journal, 0);
    commit_batch(dir, SPOOL_SYNC_AUTO, 1, &st);          /* one file: fdatasync */
    assert_int_equal(st.batches_syncfs, 0);
    assert_int_equal(spool_sync_mode_parse("journal"), SPOOL_SYNC_JOURNAL);
    assert_int_equal(spool_sync_mode_parse("auto"), SPOOL_SYNC_AUTO);
    assert_int_equal(spool_sync_mode_parse("fdatasync"), SPOOL_SYNC_FDATASYNC);
    assert_int_equal(spool_sync_mode_parse("Journal"), -1);
    assert_int_equal(spool_sync_mode_parse(""), -1);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncation_detected),
        cmocka_unit_test(test_qid_order),
        cmocka_unit_test(test_commit),
        cmocka_unit_test(test_meminfo_parse),
        cmocka_unit_test(test_sync_decision),
        cmocka_unit_test(test_batch_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
