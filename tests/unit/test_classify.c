/*
 * test_classify.c - the shared SMTP reply classifier and provider table:
 * every provider code the issue names, fallbacks, the rules file.
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

#include "mail/classify.h"
#include "mail/provider.h"

#define CLS(text, mx) classify_reply(0, NULL, (text), (mx))

static int teardown(void **state)
{
    classify_free();
    return 0;
}

static void test_microsoft(void **state)
{
    assert_int_equal(CLS("451 4.7.500 Server busy. Please try again later from "
                         "[192.0.2.1]. (S77714) [AM4PEPF00027A5C.eurprd04.prod.outlook.com]",
                         "example-com.mail.protection.outlook.com"), RC_BUSY);
    assert_int_equal(CLS("451 4.7.650 The mail server [192.0.2.1] has been temporarily "
                         "rate limited due to IP reputation.", NULL), RC_RATE_LIMITED);
    assert_int_equal(CLS("451 4.7.651 The mail server has been temporarily rate limited",
                         NULL), RC_RATE_LIMITED);
    assert_int_equal(CLS("451 4.7.652 The mail server [192.0.2.1] has exceeded the "
                         "connection limit.", NULL), RC_CONNECTION_CAP);
    assert_int_equal(CLS("421 4.3.2 The maximum number of concurrent server connections "
                         "has exceeded the maximum number of connections", NULL),
                     RC_CONNECTION_CAP);
    assert_int_equal(CLS("550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't "
                         "sent. Please contact your Internet service provider since "
                         "part of their network is on our block list (S3150).", NULL),
                     RC_REPUTATION_BLOCK);
    assert_int_equal(CLS("550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't "
                         "sent. (S3140)", NULL), RC_REPUTATION_BLOCK);
    const char *sc[] = {"SC-001", "SC-002", "SC-003", "SC-004", "DY-001", "OU-001"};
    for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++) {
        char t[300];
        snprintf(t, sizeof(t), "550 %s (BAY004-MC1F12) Unfortunately, messages from "
                 "192.0.2.1 weren't sent. Mail rejected by Outlook.com for policy "
                 "reasons.", sc[i]);
        assert_int_equal(CLS(t, NULL), RC_REPUTATION_BLOCK);
    }
    assert_int_equal(CLS("550 5.7.606 Access denied, banned sending IP [192.0.2.1]", NULL),
                     RC_REPUTATION_BLOCK);
    assert_int_equal(CLS("550 5.7.649 Access denied", NULL), RC_REPUTATION_BLOCK);
    assert_int_equal(CLS("550 5.7.515 Access denied, sending domain example.com does "
                         "not meet the required authentication level.", NULL),
                     RC_AUTH_POLICY);
    assert_int_equal(CLS("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
                         NULL), RC_NO_SUCH_USER);
}

static void test_google_yahoo(void **state)
{
    assert_int_equal(CLS("421-4.7.28 Gmail has detected an unusual rate of unsolicited "
                         "mail originating from your IP address.", "gmail-smtp-in.l.google.com"),
                     RC_RATE_LIMITED);
    assert_int_equal(CLS("550-5.7.26 This mail has been blocked because the sender is "
                         "unauthenticated.", NULL), RC_AUTH_POLICY);
    assert_int_equal(CLS("454 4.7.0 TLS required", NULL), RC_TLS_REQUIRED);
    assert_int_equal(CLS("530 5.7.0 Must issue a STARTTLS command first", NULL),
                     RC_TLS_REQUIRED);
    assert_int_equal(CLS("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred "
                         "due to unexpected volume or user complaints", NULL),
                     RC_RATE_LIMITED);
}

static void test_greylist_mailbox(void **state)
{
    assert_int_equal(CLS("450 4.2.0 <u@example.org>: Recipient address rejected: "
                         "Greylisted, see http://postgrey.schweikert.ch/", NULL),
                     RC_GREYLISTED);
    assert_int_equal(CLS("451 4.7.1 Please try again later (greylisting)", NULL),
                     RC_GREYLISTED);
    assert_int_equal(CLS("452 4.2.2 The email account that you tried to reach is over "
                         "quota.", NULL), RC_MAILBOX_FULL);
    assert_int_equal(CLS("552 5.2.2 Mailbox full", NULL), RC_MAILBOX_FULL);
    assert_int_equal(CLS("550 5.1.1 <nobody@example.org>: Recipient address rejected: "
                         "User unknown in virtual mailbox table", NULL), RC_NO_SUCH_USER);
    assert_int_equal(CLS("552 5.3.4 Message size exceeds fixed limit", NULL),
                     RC_MESSAGE_TOO_BIG);
}

static void test_postfix_texts_and_fallback(void **state)
{
    assert_int_equal(CLS("connect to mx.example.org[192.0.2.7]:25: Connection refused",
                         NULL), RC_NETWORK);
    assert_int_equal(CLS("Host or domain name not found. Name service error for "
                         "name=nx.example type=MX: Host not found, try again", NULL),
                     RC_DNS);
    assert_int_equal(CLS("host x[192.0.2.1] said: 452 4.9.9 strange", NULL), RC_OTHER_TEMP);
    assert_int_equal(CLS("host x[192.0.2.1] said: 554 5.9.9 strange", NULL), RC_OTHER_PERM);
    assert_int_equal(classify_reply(451, "4.3.0", "whatever", NULL), RC_OTHER_TEMP);
    assert_int_equal(CLS("", NULL), RC_UNKNOWN);
    assert_int_equal(CLS(NULL, NULL), RC_UNKNOWN);
    assert_string_equal(classify_name(RC_BUSY), "busy");
    assert_int_equal(classify_from_name("no_such_user"), RC_NO_SUCH_USER);
    assert_true(strlen(classify_explain(RC_REPUTATION_BLOCK)) > 20);
    assert_true(strlen(classify_next_step(RC_BUSY)) > 20);
}

static void test_parse_reply(void **state)
{
    char enh[16];
    assert_int_equal(classify_parse_reply("host a.example[192.0.2.1] said: 451 4.7.500 "
                                          "Server busy (in reply to RCPT TO command)",
                                          enh, sizeof(enh)), 451);
    assert_string_equal(enh, "4.7.500");
    assert_int_equal(classify_parse_reply("550-5.7.26 blocked", enh, sizeof(enh)), 550);
    assert_string_equal(enh, "5.7.26");
    assert_int_equal(classify_parse_reply("550 SC-001 (BAY) rejected", enh, sizeof(enh)), 550);
    assert_string_equal(enh, "");
    assert_int_equal(classify_parse_reply("no code at all 1.2.3", enh, sizeof(enh)), 0);
}

static void test_rules_file(void **state)
{
    char path[] = "/tmp/test_classify_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *rules = "# custom\nrule busy text=\"cosmic rays\"\n"
                        "explain busy \"too busy\" \"wait\"\n";
    assert_int_equal(write(fd, rules, strlen(rules)), (ssize_t)strlen(rules));
    close(fd);
    char err[256];
    assert_int_equal(classify_load(path, err, sizeof(err)), 0);
    assert_int_equal(classify_rule_count(), 1);
    assert_int_equal(CLS("421 cosmic rays", NULL), RC_BUSY);
    assert_int_equal(CLS("451 4.7.500 Server busy", NULL), RC_OTHER_TEMP);
    assert_string_equal(classify_explain(RC_BUSY), "too busy");
    /* a bad file keeps the rules in force and says where */
    FILE *fp = fopen(path, "w");
    fputs("rule nosuchclass text=x\n", fp);
    fclose(fp);
    assert_int_equal(classify_load(path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":1: unknown class"));
    assert_int_equal(classify_rule_count(), 1);
    unlink(path);
    classify_reset();
    assert_true(classify_rule_count() > 50);
}

/* The shipped etc/reply_rules and the compiled-in copy agree. */
static void test_shipped_file_matches_builtin(void **state)
{
    char err[256];
    size_t builtin = classify_rule_count();
    assert_int_equal(classify_load("etc/reply_rules", err, sizeof(err)), 0);
    assert_int_equal(classify_rule_count(), builtin);
    classify_reset();
}

static void test_providers(void **state)
{
    assert_string_equal(provider_from_host("example-com.mail.protection.outlook.com"),
                        "Microsoft");
    assert_string_equal(provider_from_host("gmail-smtp-in.l.google.com[142.250.1.26]:25"),
                        "Google");
    assert_string_equal(provider_from_host("ALT1.ASPMX.L.GOOGLE.COM."), "Google");
    assert_string_equal(provider_from_host("mta7.am0.yahoodns.net"), "Yahoo");
    assert_string_equal(provider_from_host("mx3.hotmail.com."), "Microsoft");
    assert_null(provider_from_host("mx.example.org"));
    assert_null(provider_from_host("outlook.com.evil.example"));
    assert_string_equal(provider_from_domain("hotmail.de"), "Microsoft");
    assert_string_equal(provider_of(NULL, "example.org"), "other");
}

int main(void)
{
    if (access("etc/reply_rules", R_OK) != 0 && getenv("SLUICE_ROOT"))
        if (chdir(getenv("SLUICE_ROOT")) != 0)
            return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_microsoft, teardown),
        cmocka_unit_test_teardown(test_google_yahoo, teardown),
        cmocka_unit_test_teardown(test_greylist_mailbox, teardown),
        cmocka_unit_test_teardown(test_postfix_texts_and_fallback, teardown),
        cmocka_unit_test(test_parse_reply),
        cmocka_unit_test_teardown(test_rules_file, teardown),
        cmocka_unit_test_teardown(test_shipped_file_matches_builtin, teardown),
        cmocka_unit_test(test_providers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
