/*
 * test_pop3_parse.c - POP3 status, body and scan lines, including hostile
 * forms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "mail/pop3_parse.h"

static void test_status(void **state)
{
    const char *t;
    assert_int_equal(pop3_status("+OK ready", 9, &t), 1);
    assert_string_equal(t, "ready");
    assert_int_equal(pop3_status("+OK", 3, &t), 1);
    assert_int_equal(pop3_status("-ERR no such message", 20, &t), 0);
    assert_int_equal(pop3_status("+OKAY", 5, &t), -1);
    assert_int_equal(pop3_status("", 0, &t), -1);
    assert_int_equal(pop3_status("* OK imap", 9, &t), -1);
}

static void test_body(void **state)
{
    struct buf b;
    buf_init(&b, 20);
    assert_int_equal(pop3_body_line(&b, "..dot", 5), 0);
    assert_int_equal(pop3_body_line(&b, "x", 1), 0);
    assert_int_equal(pop3_body_line(&b, ".", 1), 1);
    assert_string_equal(b.data, ".dot\r\nx\r\n");
    assert_int_equal(pop3_body_line(&b, "0123456789ab", 12), -1);
    buf_free(&b);
}

static void test_scan_lines(void **state)
{
    uint32_t n;
    uint64_t sz;
    char u[POP3_UIDL_MAX + 1];
    assert_int_equal(pop3_uidl_line("3 abc-123", 9, &n, u, sizeof(u)), 0);
    assert_int_equal(n, 3);
    assert_string_equal(u, "abc-123");
    assert_int_equal(pop3_uidl_line("0 abc", 5, &n, u, sizeof(u)), -1);
    assert_int_equal(pop3_uidl_line("99999999999 abc", 15, &n, u, sizeof(u)), -1);
    assert_int_equal(pop3_uidl_line("1 ", 2, &n, u, sizeof(u)), -1);
    assert_int_equal(pop3_uidl_line("1 a\x01", 4, &n, u, sizeof(u)), -1);
    char longu[100];
    memset(longu, 'a', sizeof(longu));
    longu[0] = '1';
    longu[1] = ' ';
    assert_int_equal(pop3_uidl_line(longu, 90, &n, u, sizeof(u)), -1);
    assert_int_equal(pop3_list_line("2 1234", 6, &n, &sz), 0);
    assert_int_equal(sz, 1234);
    assert_int_equal(pop3_list_line("2 12x", 5, &n, &sz), -1);
    assert_int_equal(pop3_list_line("2 99999999999999999999999", 25, &n, &sz), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_scan_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
