/*
 * test_spool.c - queue file records: round trip, self-validation (a file
 * without its end record is never a message), queue id ordering, and a
 * real commit through the sync thread.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
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
    /* every proper prefix of a valid file is rejected */
    for (size_t n = 0; n < img.len; n++) {
        struct spool_envelope env;
        if (spool_envelope_parse(img.data, n, &env, err, sizeof(err)) == 0)
            fail_msg("prefix of %zu bytes accepted", n);
    }
    /* a corrupted trailer length is rejected */
    char *end = strstr(img.data + img.len - 20, "end ");
    assert_non_null(end);
    end[strlen(end) - 2] = '9';
    struct spool_envelope env;
    assert_int_equal(spool_envelope_parse(img.data, img.len, &env, err, sizeof(err)), -1);
    buf_free(&img);
    assert_int_equal(spool_envelope_parse("garbage", 7, &env, err, sizeof(err)), -1);
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
    char path[700];
    snprintf(path, sizeof(path), "%s/queue/%s", dir, env.qid);
    struct spool_envelope back;
    assert_int_equal(spool_read_file(path, &back, err, sizeof(err)), 0);
    assert_int_equal(back.content_length, 20);
    spool_envelope_free(&back);
    spool_envelope_free(&env);
    spool_close(sp);
    event_base_free(base);
    unlink(path);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
