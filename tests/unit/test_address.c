/*
 * test_address.c - RFC 5321 / 6531 path parser, including hostile forms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "mail/address.h"

static enum addr_status parse(const char *s, unsigned flags, struct address *a)
{
    const char *end;
    return address_parse_path(s, flags, a, &end);
}

static void test_simple(void **state)
{
    struct address a;
    char buf[400];
    assert_int_equal(parse("<User@Example.ORG>", 0, &a), ADDR_OK);
    assert_string_equal(a.local, "User");
    assert_string_equal(a.domain, "example.org");
    assert_string_equal(address_str(&a, buf, sizeof(buf)), "User@example.org");
}

static void test_null_and_postmaster(void **state)
{
    struct address a;
    assert_int_equal(parse("<>", ADDR_ALLOW_NULL, &a), ADDR_OK);
    assert_true(a.is_null);
    assert_int_equal(parse("<>", 0, &a), ADDR_ENULL);
    assert_int_equal(parse("<Postmaster>", ADDR_ALLOW_POSTMASTER, &a), ADDR_OK);
    assert_true(a.is_postmaster);
    assert_int_not_equal(parse("<postmaster>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<root>", ADDR_ALLOW_POSTMASTER, &a), ADDR_OK);
}

static void test_route_dropped(void **state)
{
    struct address a;
    assert_int_equal(parse("<@a.example,@b.example:u@c.example>", 0, &a), ADDR_OK);
    assert_true(a.had_route);
    assert_string_equal(a.domain, "c.example");
    assert_false(address_has_routing(&a));
    assert_int_not_equal(parse("<@a.example:@b:u@c>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<@:u@c.example>", 0, &a), ADDR_OK);
}

static void test_quoted(void **state)
{
    struct address a;
    assert_int_equal(parse("<\"john doe\"@example.org>", 0, &a), ADDR_OK);
    assert_true(a.quoted);
    assert_int_equal(parse("<\"u@evil.example\"@localhost>", 0, &a), ADDR_OK);
    assert_true(address_has_routing(&a));
    assert_int_equal(parse("<\"a\\\"b\"@x.example>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<\"unterminated@x.example>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<\"a\x01\"@x.example>", 0, &a), ADDR_OK);
}

static void test_routing_chars(void **state)
{
    struct address a;
    assert_int_equal(parse("<u%evil.example@localhost>", 0, &a), ADDR_OK);
    assert_true(address_has_routing(&a));
    assert_int_equal(parse("<evil.example!u@localhost>", 0, &a), ADDR_OK);
    assert_true(address_has_routing(&a));
}

static void test_literals(void **state)
{
    struct address a;
    assert_int_equal(parse("<u@[192.0.2.1]>", 0, &a), ADDR_OK);
    assert_true(a.literal);
    assert_int_equal(parse("<u@[IPv6:2001:db8::1]>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@[999.0.2.1]>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@[2001:db8::1]>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@[192.0.2.1>", 0, &a), ADDR_OK);
}

static void test_trailing_dot_and_bad_domains(void **state)
{
    struct address a;
    assert_int_equal(parse("<u@localhost.>", 0, &a), ADDR_OK);
    assert_string_equal(a.domain, "localhost");
    assert_int_not_equal(parse("<u@localhost..>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@.example>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@-bad.example>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@bad-.example>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@a@b.example>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@remote.example%localhost>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<@example.org>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("< u@example.org>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@example.org >", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u..v@example.org>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<.u@example.org>", 0, &a), ADDR_OK);
    assert_int_not_equal(parse("<u.@example.org>", 0, &a), ADDR_OK);
}

static void test_brackets(void **state)
{
    struct address a;
    assert_int_not_equal(parse("u@example.org", 0, &a), ADDR_OK);
    assert_int_equal(parse("u@example.org", ADDR_ALLOW_NOBRACKETS, &a), ADDR_OK);
    assert_int_not_equal(parse("<u@example.org", 0, &a), ADDR_OK);
    const char *end;
    assert_int_equal(address_parse_path("<u@example.org> SIZE=10", 0, &a, &end), ADDR_OK);
    assert_string_equal(end, " SIZE=10");
    assert_int_not_equal(address_parse_path("<u@example.org>SIZE=10", 0, &a, &end), ADDR_OK);
}

static void test_utf8(void **state)
{
    struct address a;
    const char *u = "<j\xc3\xb6rg@b\xc3\xbc" "cher.example>";
    assert_int_equal(parse(u, 0, &a), ADDR_EUTF8);
    assert_int_equal(parse(u, ADDR_ALLOW_UTF8, &a), ADDR_OK);
    assert_true(a.utf8);
    /* invalid UTF-8: overlong, truncated, surrogate */
    assert_int_not_equal(parse("<\xc0\xafu@x.example>", ADDR_ALLOW_UTF8, &a), ADDR_OK);
    assert_int_not_equal(parse("<u\xc3@x.example>", ADDR_ALLOW_UTF8, &a), ADDR_OK);
    assert_int_not_equal(parse("<\xed\xa0\x80@x.example>", ADDR_ALLOW_UTF8, &a), ADDR_OK);
}

static void test_lengths(void **state)
{
    struct address a;
    char s[1200];
    memset(s, 0, sizeof(s));
    s[0] = '<';
    memset(s + 1, 'a', 65);
    strcat(s, "@example.org>");
    assert_int_equal(parse(s, 0, &a), ADDR_ETOOLONG);
    memset(s, 0, sizeof(s));
    s[0] = '<';
    memset(s + 1, 'a', 64);
    strcat(s, "@example.org>");
    assert_int_equal(parse(s, 0, &a), ADDR_OK);
    /* 300-octet domain */
    memset(s, 0, sizeof(s));
    strcpy(s, "<u@");
    for (int i = 0; i < 50; i++)
        strcat(s, "abcde.");
    strcat(s, "org>");
    assert_int_not_equal(parse(s, 0, &a), ADDR_OK);
    /* a label of 64 octets */
    memset(s, 0, sizeof(s));
    strcpy(s, "<u@");
    memset(s + 3, 'b', 300);
    strcat(s, ".org>");
    assert_int_not_equal(parse(s, 0, &a), ADDR_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_null_and_postmaster),
        cmocka_unit_test(test_route_dropped),
        cmocka_unit_test(test_quoted),
        cmocka_unit_test(test_routing_chars),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_trailing_dot_and_bad_domains),
        cmocka_unit_test(test_brackets),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
