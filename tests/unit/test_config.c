/*
 * test_config.c - the sluice.conf loader, tables and value parsers: good
 * files, and bad ones whose errors must name file, line and fix.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/netaddr.h"
#include "lib/strutil.h"
#include "lib/table.h"

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/sluice-unit-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **state)
{
    char err[512];
    struct config *c = config_load(NULL, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(c->smtp_listen, "127.0.0.1:2525");
    assert_int_equal(c->message_size_limit, 50 * 1024 * 1024);
    assert_int_equal(c->smtpd_timeout, 300);
    assert_true(config_is_local_domain(c, "localhost"));
    struct netaddr a;
    netaddr_parse("127.1.2.3", &a);
    assert_true(netlist_match(&c->mynetworks_list, &a));
    netaddr_parse("::1", &a);
    assert_true(netlist_match(&c->mynetworks_list, &a));
    netaddr_parse("192.0.2.1", &a);
    assert_false(netlist_match(&c->mynetworks_list, &a));
    config_free(c);
}

/* Every key appears once in the table: a second row for the same name
 * silently overrode the first (spool_sync_delay_us once had two). */
static void test_keys_unique(void **state)
{
    char err[512], *text = NULL;
    size_t len = 0;
    struct config *c = config_load(NULL, err, sizeof(err));
    assert_non_null(c);
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    config_print(c, out, false, false);
    fclose(out);
    char seen[200][64];
    size_t nseen = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char key[64];
        assert_int_equal(sscanf(line, "%63s", key), 1);
        for (size_t i = 0; i < nseen; i++)
            if (strcmp(seen[i], key) == 0)
                fail_msg("configuration key %s is defined twice", key);
        assert_true(nseen < 200);
        str_copy(seen[nseen++], key, sizeof(seen[0]));
    }
    assert_true(nseen > 40);
    free(text);
    config_free(c);
}

static void test_file_values(void **state)
{
    char err[512];
    char *p = write_tmp("# comment\n"
                        "myhostname = mx.example.org\n"
                        "\n"
                        "mydomains = example.org,\n"
                        "    Example.NET.\n"
                        "smtpd_banner = $myhostname ESMTP ${myhostname}\n"
                        "message_size_limit = 10M\n"
                        "smtpd_timeout = 5m\n"
                        "mynetworks = 192.0.2.0/24 [2001:db8::]/32\n");
    struct config *c = config_load(p, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(c->smtpd_banner, "mx.example.org ESMTP mx.example.org");
    assert_int_equal(c->message_size_limit, 10 * 1024 * 1024);
    assert_int_equal(c->smtpd_timeout, 300);
    assert_true(config_is_local_domain(c, "example.net"));
    assert_true(config_is_local_domain(c, "example.org"));
    struct netaddr a;
    netaddr_parse("2001:db8:1::5", &a);
    assert_true(netlist_match(&c->mynetworks_list, &a));
    config_free(c);
    unlink(p);
}

static void expect_error(const char *text, const char *needle1, const char *needle2)
{
    char err[512];
    char *p = write_tmp(text);
    struct config *c = config_load(p, err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, p));
    if (strstr(err, needle1) == NULL || (needle2 && strstr(err, needle2) == NULL))
        fail_msg("error '%s' lacks '%s'/'%s'", err, needle1, needle2 ? needle2 : "");
    unlink(p);
}

static void test_errors(void **state)
{
    expect_error("smtp_lisen = 1.2.3.4:25\n", ":1: unknown key", "did you mean 'smtp_listen'");
    expect_error("\n\nmessage_size_limit = 10Q\n", ":3: bad value '10Q'", "fix:");
    expect_error("smtpd_timeout = forever\n", ":1:", "time");
    expect_error("  indented = first\n", ":1: continuation", "fix:");
    expect_error("just words\n", ":1: missing '='", "fix:");
    expect_error("mynetworks = 10.0.0.0/33\n", ":1: bad network '10.0.0.0/33'", "fix:");
    expect_error("smtpd_bare_newline = maybe\n", ":1: bad value", "normalize|reject");
    expect_error("local_recipients = /nonexistent/table\n", ":1: local_recipients", "cannot open");
    expect_error("tls_cert_file = /x.pem\n", "tls_cert_file and tls_key_file", "fix:");
}

static void test_table(void **state)
{
    char err[512];
    char *p = write_tmp("# users\nAlice@Example.org OK\nbob@example.org  some value \n@catch.example\n");
    struct table *t = table_load(p, err, sizeof(err));
    assert_non_null(t);
    assert_string_equal(table_get(t, "alice@example.org"), "OK");
    assert_string_equal(table_get(t, "BOB@example.org"), "some value");
    assert_string_equal(table_get(t, "@catch.example"), "OK");
    assert_null(table_get(t, "carol@example.org"));
    table_free(t);
    unlink(p);
}

static void test_units(void **state)
{
    uint64_t v;
    assert_int_equal(str_to_seconds("2h", &v), 0);
    assert_int_equal(v, 7200);
    assert_int_equal(str_to_seconds("5d", &v), 0);
    assert_int_equal(v, 432000);
    assert_int_equal(str_to_seconds("5x", &v), -1);
    assert_int_equal(str_to_seconds("", &v), -1);
    assert_int_equal(str_to_bytes("1G", &v), 0);
    assert_int_equal(v, 1073741824ULL);
    assert_int_equal(str_to_bytes("99999999999999999999G", &v), -1);
    assert_int_equal(str_to_bytes("18014398509481984G", &v), -1);
    assert_int_equal(str_to_u64("12a", &v), -1);
    char num[STR_U64_SIZE];
    assert_string_equal(str_from_u64(0, num), "0");
    assert_string_equal(str_from_u64(1234567890, num), "1234567890");
    assert_string_equal(str_from_u64(UINT64_MAX, num), "18446744073709551615");
    assert_int_equal(str_to_u64(num, &v), 0);
    assert_true(v == UINT64_MAX);
    uint16_t port;
    char host[64];
    assert_int_equal(endpoint_parse("[::1]:25", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 25);
    assert_int_equal(endpoint_parse("127.0.0.1:99999", host, sizeof(host), &port), -1);
    assert_int_equal(endpoint_parse("::1:25", host, sizeof(host), &port), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_keys_unique),
        cmocka_unit_test(test_file_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
