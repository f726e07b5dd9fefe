/*
 * test_smtpd_parse.c - command-line splitting and ESMTP parameters
 * (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 DSN, RFC 3030
 * BDAT), with hostile input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "smtpd/smtpd_parse.h"

static void test_verbs(void **state)
{
    struct smtp_command c;
    char l1[] = "ehlo client.example";
    assert_int_equal(smtpd_parse_command(l1, &c), 0);
    assert_int_equal(c.verb, SMTP_EHLO);
    assert_string_equal(c.args, "client.example");
    char l2[] = "QUIT   ";
    smtpd_parse_command(l2, &c);
    assert_int_equal(c.verb, SMTP_QUIT);
    assert_string_equal(c.args, "");
    char l3[] = "XYZZY foo";
    smtpd_parse_command(l3, &c);
    assert_int_equal(c.verb, SMTP_UNKNOWN);
    char l4[] = "EHLOX a";
    smtpd_parse_command(l4, &c);
    assert_int_equal(c.verb, SMTP_UNKNOWN);
    char l5[] = "";
    smtpd_parse_command(l5, &c);
    assert_int_equal(c.verb, SMTP_UNKNOWN);
}

static void test_mail_rcpt_keywords(void **state)
{
    struct smtp_command c;
    char l1[] = "MAIL FROM:<a@b.example> SIZE=10";
    assert_int_equal(smtpd_parse_command(l1, &c), 0);
    assert_string_equal(c.args, "<a@b.example> SIZE=10");
    char l2[] = "mail from: <a@b.example>";
    assert_int_equal(smtpd_parse_command(l2, &c), 0);
    assert_string_equal(c.args, "<a@b.example>");
    char l3[] = "MAIL TO:<a@b.example>";
    assert_int_equal(smtpd_parse_command(l3, &c), -1);
    char l4[] = "RCPT <a@b.example>";
    assert_int_equal(smtpd_parse_command(l4, &c), -1);
    char l5[] = "RCPT TO:";
    assert_int_equal(smtpd_parse_command(l5, &c), 0);
    assert_string_equal(c.args, "");
}

static void test_mail_params(void **state)
{
    struct mail_params p;
    struct param_error e;
    char s1[] = "SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B314";
    assert_int_equal(smtpd_parse_mail_params(s1, &p, &e), 0);
    assert_true(p.has_size);
    assert_int_equal(p.size, 1000);
    assert_int_equal(p.body, BODY_8BITMIME);
    assert_true(p.smtputf8);
    assert_int_equal(p.ret, RET_HDRS);
    assert_string_equal(p.envid, "QQ+2B314");
    char s2[] = "FOO=bar";
    assert_int_equal(smtpd_parse_mail_params(s2, &p, &e), -1);
    assert_int_equal(e.code, 555);
    char s3[] = "SIZE=abc";
    assert_int_equal(smtpd_parse_mail_params(s3, &p, &e), -1);
    assert_int_equal(e.code, 501);
    char s4[] = "SIZE=99999999999999999999999";
    assert_int_equal(smtpd_parse_mail_params(s4, &p, &e), -1);
    char s5[] = "RET=FULL RET=HDRS";
    assert_int_equal(smtpd_parse_mail_params(s5, &p, &e), -1);
    char s6[] = "ENVID=bad=value";
    assert_int_equal(smtpd_parse_mail_params(s6, &p, &e), -1);
    char s7[] = "ENVID=+zz";
    assert_int_equal(smtpd_parse_mail_params(s7, &p, &e), -1);
    char s8[] = "BODY=BINARYMIME";
    assert_int_equal(smtpd_parse_mail_params(s8, &p, &e), -1);
    assert_int_equal(e.code, 555);
    char s9[] = "SMTPUTF8=yes";
    assert_int_equal(smtpd_parse_mail_params(s9, &p, &e), -1);
    char big[200];
    memset(big, 'A', sizeof(big));
    memcpy(big, "ENVID=", 6);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(smtpd_parse_mail_params(big, &p, &e), -1);
}

static void test_rcpt_params(void **state)
{
    struct rcpt_params p;
    struct param_error e;
    char s1[] = "NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;u+40example.org";
    assert_int_equal(smtpd_parse_rcpt_params(s1, &p, &e), 0);
    assert_int_equal(p.notify, NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY);
    assert_string_equal(p.orcpt, "rfc822;u+40example.org");
    char s2[] = "NOTIFY=NEVER,SUCCESS";
    assert_int_equal(smtpd_parse_rcpt_params(s2, &p, &e), -1);
    char s3[] = "NOTIFY=SOMETIMES";
    assert_int_equal(smtpd_parse_rcpt_params(s3, &p, &e), -1);
    char s4[] = "ORCPT=noaddrtype";
    assert_int_equal(smtpd_parse_rcpt_params(s4, &p, &e), -1);
    char s5[] = "ORCPT=;x";
    assert_int_equal(smtpd_parse_rcpt_params(s5, &p, &e), -1);
    char s6[] = "ORCPT=rfc822;";
    assert_int_equal(smtpd_parse_rcpt_params(s6, &p, &e), -1);
    char s7[] = "NOTIFY=";
    assert_int_equal(smtpd_parse_rcpt_params(s7, &p, &e), -1);
    char s8[] = "SIZE=1";
    assert_int_equal(smtpd_parse_rcpt_params(s8, &p, &e), -1);
    assert_int_equal(e.code, 555);
}

static void test_bdat(void **state)
{
    uint64_t n;
    bool last;
    assert_int_equal(smtpd_parse_bdat("100", &n, &last), 0);
    assert_int_equal(n, 100);
    assert_false(last);
    assert_int_equal(smtpd_parse_bdat("0 LAST", &n, &last), 0);
    assert_true(last);
    assert_int_equal(smtpd_parse_bdat("0 last", &n, &last), 0);
    assert_int_equal(smtpd_parse_bdat("", &n, &last), -1);
    assert_int_equal(smtpd_parse_bdat("-1", &n, &last), -1);
    assert_int_equal(smtpd_parse_bdat("10 FIRST", &n, &last), -1);
    assert_int_equal(smtpd_parse_bdat("99999999999999999999", &n, &last), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),
        cmocka_unit_test(test_mail_rcpt_keywords),
        cmocka_unit_test(test_mail_params),
        cmocka_unit_test(test_rcpt_params),
        cmocka_unit_test(test_bdat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
