/*
 * test_log.c - the log module's text and JSON lines: the Postfix-style
 * prefix ("Mon DD HH:MM:SS host sluice/service[pid]: "), level prefixes,
 * line breaks from peers flattened, over-long messages cut to one line,
 * the cached prefix following service, host name and pid changes, and
 * batched lines reaching the file in order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

static char path[64], json_path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/sluice-test-log-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(json_path, sizeof(json_path), "%s.json", path);
    assert_int_equal(log_open(LOG_DEST_FILE, path), 0);
    log_set_hostname("mx.test.example");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_close();
    unlink(path);
    unlink(json_path);
    return 0;
}

/* The whole file (NUL-terminated); the caller frees it. */
static char *slurp(const char *p)
{
    log_flush();
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("no line matches /%s/ in:\n%s", pattern, text);
}

static void test_postfix_prefix_and_levels(void **state)
{
    (void)state;
    log_svc("smtpd", "connect from unknown[%s]", "127.0.0.1");
    log_svc_warn("smtpd", "hostname %s does not resolve", "x.example");
    char *t = slurp(path);
    char want[160];
    snprintf(want, sizeof(want),
             "^[A-Z][a-z]{2} [ 1-3][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} mx\\.test\\.example "
             "sluice/smtpd\\[%ld\\]: connect from unknown\\[127\\.0\\.0\\.1\\]$",
             (long)getpid());
    assert_matches(t, want);
    assert_matches(t, "sluice/smtpd\\[[0-9]+\\]: warning: hostname x\\.example does not resolve$");
    assert_int_equal(count_lines(t), 2);
    free(t);
}

/* The prefix is cached per second: a new service, host name or pid in
 * the same second must still show. */
static void test_prefix_follows_changes(void **state)
{
    (void)state;
    log_svc("smtpd", "one");
    log_svc("qmgr", "two");
    log_set_hostname("other.example");
    log_svc("qmgr", "three");
    char *t = slurp(path);
    assert_matches(t, " mx\\.test\\.example sluice/smtpd\\[[0-9]+\\]: one$");
    assert_matches(t, " mx\\.test\\.example sluice/qmgr\\[[0-9]+\\]: two$");
    assert_matches(t, " other\\.example sluice/qmgr\\[[0-9]+\\]: three$");
    free(t);
    /* a service name too long for the cache is still written whole */
    char longsvc[100];
    memset(longsvc, 's', sizeof(longsvc) - 1);
    longsvc[sizeof(longsvc) - 1] = '\0';
    log_svc(longsvc, "four");
    log_svc(longsvc, "five");
    t = slurp(path);
    assert_non_null(strstr(t, longsvc));
    assert_matches(t, "s\\[[0-9]+\\]: five$");
    free(t);
}

/* Bytes from a peer never split a line; a huge message is cut, still one
 * line ending in a newline. */
static void test_hostile_messages(void **state)
{
    (void)state;
    log_svc("smtpd", "helo=<%s>", "evil\r\nDec  1 00:00:00 fake sluice/smtpd[1]: forged\n");
    char *huge = malloc(20000);
    memset(huge, 'A', 19999);
    huge[19999] = '\0';
    log_svc("smtpd", "long=%s", huge);
    free(huge);
    log_svc("smtpd", "after");
    char *t = slurp(path);
    assert_int_equal(count_lines(t), 3);
    assert_matches(t, "helo=<evil  Dec  1 00:00:00 fake sluice/smtpd\\[1\\]: forged >$");
    assert_matches(t, "long=A+$");
    assert_matches(t, "\\]: after$");
    assert_true(strlen(t) < 6000);
    free(t);
}

static void test_json_beside_text(void **state)
{
    (void)state;
    assert_int_equal(log_open_json(json_path), 0);
    struct log_kv kv[] = {{"queue_id", "6B03CFA01C0C3000"}, {"note", "a \"quoted\" word"}};
    log_event(LOG_LVL_WARN, "greylist", kv, 2, "decision %d\nnext", 7);
    char *t = slurp(path);
    assert_matches(t, "sluice/greylist\\[[0-9]+\\]: warning: decision 7 next$");
    free(t);
    char *j = slurp(json_path);
    assert_matches(j, "^\\{\"time\":\"[0-9T:.-]+Z\",\"service\":\"sluice/greylist\",\"pid\":[0-9]+,"
                      "\"level\":\"warning\",\"msg\":\"decision 7 next\","
                      "\"queue_id\":\"6B03CFA01C0C3000\",\"note\":\"a \\\\\"quoted\\\\\" word\"\\}$");
    free(j);
}

/* With syslog as the destination the JSON line still gets the message
 * (formatted once, line breaks flattened), and nothing reaches the text
 * file. */
static void test_syslog_with_json(void **state)
{
    (void)state;
    assert_int_equal(log_open(LOG_DEST_SYSLOG, NULL), 0);
    assert_int_equal(log_open_json(json_path), 0);
    log_event(LOG_LVL_INFO, "smtpd", NULL, 0, "to syslog %s", "a\rb");
    char *j = slurp(json_path);
    assert_matches(j, "\"service\":\"sluice/smtpd\".*\"level\":\"info\",\"msg\":\"to syslog a b\"\\}$");
    free(j);
    char *t = slurp(path);
    assert_int_equal(strlen(t), 0);
    free(t);
}

/* A batching thread's lines reach the file in order, complete. */
static void test_batched_lines_in_order(void **state)
{
    (void)state;
    log_batch_begin();
    for (int i = 0; i < 3000; i++)
        log_svc("policy", "line %d", i);
    log_batch_end();
    char *t = slurp(path);
    assert_int_equal(count_lines(t), 3000);
    char *p = t;
    for (int i = 0; i < 3000; i++) {
        char want[32];
        snprintf(want, sizeof(want), ": line %d\n", i);
        p = strstr(p, want);
        assert_non_null(p);
    }
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_postfix_prefix_and_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_follows_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_beside_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syslog_with_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batched_lines_in_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
