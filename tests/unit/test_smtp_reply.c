/*
 * test_smtp_reply.c - client-side reply parsing: multi-line replies,
 * enhanced codes, EHLO keywords, hostile lines.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "mail/smtp_reply.h"

static bool feed(struct smtp_reply *r, const char *line)
{
    return smtp_reply_feed(r, line, strlen(line));
}

static void test_single(void **state)
{
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_true(feed(&r, "451 4.7.500 Server busy. Please try again later (AS761)"));
    assert_int_equal(r.code, 451);
    assert_string_equal(r.enh, "4.7.500");
    assert_string_equal(r.text, "Server busy. Please try again later (AS761)");
}

static void test_multiline(void **state)
{
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_false(feed(&r, "550-5.7.26 This mail is unauthenticated, which poses a security"));
    assert_false(feed(&r, "550-5.7.26 risk to the sender and Gmail users, and has been"));
    assert_true(feed(&r, "550 5.7.26 blocked."));
    assert_int_equal(r.code, 550);
    assert_string_equal(r.enh, "5.7.26");
    assert_string_equal(r.text, "This mail is unauthenticated, which poses a security "
                                "risk to the sender and Gmail users, and has been blocked.");
    /* the next line starts a new reply */
    assert_true(feed(&r, "250 ok"));
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enh, "2.0.0");
}

static void test_no_enhanced(void **state)
{
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_true(feed(&r, "550 SC-001 (BAY004-MC1F1) Unfortunately, messages weren't sent."));
    assert_string_equal(r.enh, "5.0.0");
    assert_non_null(strstr(r.text, "SC-001"));
    /* a class mismatch is text, not an enhanced code */
    assert_true(feed(&r, "451 5.7.1 odd"));
    assert_string_equal(r.enh, "4.0.0");
    assert_true(feed(&r, "250 2.1.5.9 bad"));
    assert_string_equal(r.enh, "2.0.0");
}

static void test_garbage(void **state)
{
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_true(feed(&r, "hello there"));
    assert_int_equal(r.code, 500);
    assert_true(feed(&r, ""));
    assert_int_equal(r.code, 500);
    assert_true(feed(&r, "25"));
    assert_true(feed(&r, "999 x"));
    assert_int_equal(r.code, 500);
    char big[3000];
    memset(big, 'x', sizeof(big));
    memcpy(big, "250-", 4);
    for (int i = 0; i < 5; i++)
        assert_false(smtp_reply_feed(&r, big, sizeof(big)));
    assert_true(feed(&r, "250 end"));
    assert_true(strlen(r.text) < sizeof(r.text));
}

static void test_ehlo_keywords(void **state)
{
    uint64_t size = 1;
    assert_int_equal(smtp_ehlo_keyword("PIPELINING", NULL), EXT_PIPELINING);
    assert_int_equal(smtp_ehlo_keyword("starttls", NULL), EXT_STARTTLS);
    assert_int_equal(smtp_ehlo_keyword("SIZE 35882577", &size), EXT_SIZE);
    assert_int_equal(size, 35882577);
    assert_int_equal(smtp_ehlo_keyword("SIZE", &size), EXT_SIZE);
    assert_int_equal(size, 0);
    assert_int_equal(smtp_ehlo_keyword("SIZE junk", &size), EXT_SIZE);
    assert_int_equal(size, 0);
    assert_int_equal(smtp_ehlo_keyword("DSNX", NULL), 0);
    assert_int_equal(smtp_ehlo_keyword("AUTH PLAIN LOGIN", NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single), cmocka_unit_test(test_multiline),
        cmocka_unit_test(test_no_enhanced), cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_ehlo_keywords),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
