/*
 * test_report.c - `sluice report` building blocks: syslog headers and
 * timestamps (year rollover), the Postfix, Sendmail and Exim line parsers
 * on real line formats (the seed documents' lines among them), pflogsumm's
 * host reduction, delay percentiles.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "tools/report.h"

static char buf[4096];
static struct rp_hdr h;
static struct rp_ev e;

/* Parse one line into h and e; returns the detected format. */
static enum rp_fmt parse(const char *line, struct rp_year *yr)
{
    snprintf(buf, sizeof(buf), "%s", line);
    memset(&e, 0, sizeof(e));
    if (rpl_parse_header(buf, yr, &h) < 0)
        return RP_FMT__COUNT;
    e.ts = h.ts;
    enum rp_fmt f = rp_detect(&h);
    if (f == RP_FMT_POSTFIX)
        rpp_parse(&h, &e);
    else if (f == RP_FMT_SENDMAIL)
        rpsm_parse(&h, &e);
    else if (f == RP_FMT_EXIM)
        rpx_parse(&h, &e);
    return f;
}

static void ts_is(int64_t ts, const char *want)
{
    char t[32];
    rpl_fmt_ts(ts, t, sizeof(t));
    assert_string_equal(t, want);
}

static void test_headers(void **state)
{
    struct rp_year yr = {.year = 2016, .fixed = true};
    assert_int_equal(parse("Mar 23 17:02:35 mx2 postfix/smtpd[25931]: lost connection after "
                           "STARTTLS from mail-am1on0123.outbound.protection.outlook.com"
                           "[157.56.112.123]", &yr), RP_FMT_POSTFIX);
    ts_is(h.ts, "2016-03-23 17:02:35");
    assert_string_equal(h.host, "mx2");
    assert_string_equal(h.svc, "smtpd");
    assert_int_equal(h.pid, 25931);
    assert_int_equal(parse("2025-01-01T00:10:00.123456+01:00 mx2 postfix/submission/smtpd"
                           "[30001]: connect from a[192.0.2.1]", &yr), RP_FMT_POSTFIX);
    ts_is(h.ts, "2025-01-01 00:10:00");
    assert_string_equal(h.svc, "smtpd");
    assert_int_equal(parse("2024-03-23 17:00:01.123 +0100 [4242] 1rGgUW-0001Ab-2x Completed",
                           &yr), RP_FMT_EXIM);
    assert_true(h.exim_native);
    assert_int_equal(h.pid, 4242);
    assert_int_equal(e.kind, EV_REMOVED);
    /* Solaris syslog's "[ID 801593 mail.info]" */
    assert_int_equal(parse("Apr 23 16:06:28 n-mail-2 sendmail[25989]: [ID 801593 mail.info] "
                           "u3NE6PWI025978: to=<a@uni-potsdam.de>, delay=00:00:01, "
                           "xdelay=00:00:00, mailer=cgprov6, pri=201624, relay=mailup."
                           "uni-potsdam.de. [141.89.68.244], dsn=2.0.0, stat=Sent", &yr),
                     RP_FMT_SENDMAIL);
    assert_int_equal(e.kind, EV_DELIVERY);
    assert_int_equal(e.status, ST_SENT);
    assert_string_equal(e.qid, "u3NE6PWI025978");
    assert_string_equal(e.relay, "mailup.uni-potsdam.de[141.89.68.244]");
    assert_true(e.has_delay && e.delay == 1.0);
    assert_int_equal(parse("garbage", &yr), RP_FMT__COUNT);
    assert_int_equal(parse("Jan 99 00:00:00 h p[1]: x", &yr), RP_FMT__COUNT);
    assert_int_equal(parse("Jan  1 00:00:00 h nocolon", &yr), RP_FMT__COUNT);
    assert_int_equal(parse("Jan  1 00:00:00 h dovecot: imap-login: x", &yr), RP_FMT_AUTO);
}

static void test_year_rollover(void **state)
{
    struct rp_year yr = {.ref_year = 2025, .ref_mon = 1};
    parse("Dec 31 23:59:59 h postfix/qmgr[1]: ABCDE12345: removed", &yr);
    ts_is(h.ts, "2024-12-31 23:59:59");        /* December before a January mtime */
    parse("Jan  1 00:00:01 h postfix/qmgr[1]: ABCDE12345: removed", &yr);
    ts_is(h.ts, "2025-01-01 00:00:01");        /* rolled over */
    parse("Dec 31 23:59:58 h postfix/qmgr[1]: ABCDE12345: removed", &yr);
    ts_is(h.ts, "2024-12-31 23:59:58");        /* a late line stays in its year */
    parse("Jan  1 00:00:02 h postfix/qmgr[1]: ABCDE12345: removed", &yr);
    ts_is(h.ts, "2025-01-01 00:00:02");
    int64_t t;
    assert_int_equal(rpl_parse_when("2024-02-29 12:30", &t), 0);
    ts_is(t, "2024-02-29 12:30:00");
    assert_int_equal(rpl_parse_when("2024-13-01", &t), -1);
    assert_int_equal(rpl_parse_when("yesterday", &t), -1);
}

static void test_postfix_lines(void **state)
{
    struct rp_year yr = {.year = 2025, .fixed = true};
    parse("Jan  1 00:00:06 mx postfix/smtpd[1]: 3F1A21C0E8B: client=mail.example"
          "[192.0.2.1], sasl_method=PLAIN", &yr);
    assert_int_equal(e.kind, EV_CLIENT);
    assert_string_equal(e.ip, "192.0.2.1");
    assert_string_equal(e.host, "mail.example");
    parse("Jan  1 00:00:06 mx postfix/qmgr[1]: 3F1A21C0E8B: from=<a@b.example>, size=4242, "
          "nrcpt=2 (queue active)", &yr);
    assert_int_equal(e.kind, EV_QUEUED);
    assert_int_equal(e.size, 4242);
    assert_int_equal(e.nrcpt, 2);
    /* Postfix 3.11's tls= field, any syslog name */
    parse("Jan  1 00:00:07 mx postfix-out/smtp[2]: 3F1A21C0E8B: to=<d@gmail.com>, "
          "orig_to=<d@alias.example>, relay=gmail-smtp-in.l.google.com[142.250.27.27]:25, "
          "conn_use=2, delay=1.2, delays=0.3/0/0.4/0.5, dsn=2.0.0, tls=TLSv1.3:"
          "TLS_AES_256_GCM_SHA384, status=sent (250 2.0.0 OK (x))", &yr);
    assert_int_equal(e.kind, EV_DELIVERY);
    assert_int_equal(e.status, ST_SENT);
    assert_string_equal(e.addr, "d@gmail.com");
    assert_string_equal(e.orig_to, "d@alias.example");
    assert_string_equal(e.dsn, "2.0.0");
    assert_string_equal(e.tls_proto, "TLSv1.3");
    assert_string_equal(e.reply, "250 2.0.0 OK (x)");
    /* Postfix 3.10 NOQUEUE abnormal end; sluice's own syslog name */
    parse("Jan  1 00:00:08 mx postfix/smtpd[3]: NOQUEUE: lost connection after STARTTLS "
          "from x.example[192.0.2.9]", &yr);
    assert_int_equal(e.kind, EV_TLS_FAIL);
    assert_string_equal(e.ip, "192.0.2.9");
    assert_int_equal(parse("Nov 22 22:46:31 mx sluice/smtpd[4001]: 8F2A1: client="
                           "s.example[192.0.2.10]", &yr), RP_FMT_POSTFIX);
    assert_int_equal(e.kind, EV_CLIENT);
    parse("Jan  1 00:00:09 mx postfix/postscreen[4]: PASS NEW [203.0.113.5]:40000", &yr);
    assert_int_equal(e.kind, EV_POSTSCREEN);
    assert_string_equal(e.text, "PASS NEW");
    assert_string_equal(e.ip, "203.0.113.5");
    parse("Jan  1 00:00:10 mx postfix/smtpd[5]: NOQUEUE: reject: RCPT from unknown"
          "[198.51.100.9]: 450 4.2.0 <a@x.example>: Recipient address rejected: "
          "Greylisted; from=<s@y.example> to=<a@x.example> proto=ESMTP helo=<h>", &yr);
    assert_int_equal(e.kind, EV_REJECT);
    assert_string_equal(e.rej_kind, "reject");
    assert_string_equal(e.rej_stage, "RCPT");
    assert_string_equal(e.from, "s@y.example");
    assert_string_equal(e.to, "a@x.example");
    parse("Jan  1 00:00:11 mx postfix/smtp[6]: 3F1A21C0E8B: to=<a@x>, relay=127.0.0.1"
          "[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 "
          "from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 4C2B31C0E8C)", &yr);
    assert_string_equal(e.link_qid, "4C2B31C0E8C");
    parse("Jan  1 00:00:12 mx postfix/bounce[7]: 7A0B41C0E92: sender non-delivery "
          "notification: 8B1C51C0E93", &yr);
    assert_int_equal(e.kind, EV_NOTICE);
    assert_string_equal(e.link_qid, "8B1C51C0E93");
    parse("Jan  1 00:00:13 mx postfix/smtpd[8]: Anonymous TLS connection established from "
          "a.example[192.0.2.1]: TLSv1.2 with cipher ECDHE-RSA-AES256-SHA384 (256/256 bits)",
          &yr);
    assert_int_equal(e.kind, EV_TLS_OK);
    assert_string_equal(e.tls_cipher, "ECDHE-RSA-AES256-SHA384");
    parse("Jan  1 00:00:14 mx postfix/smtpd[8]: a message no Postfix ever wrote", &yr);
    assert_int_equal(e.kind, EV_NONE);
}

static void test_exim_lines(void **state)
{
    struct rp_year yr = {0};
    parse("2024-03-23 17:05:03 1rGgZA-00000001xyz-AbCd == boss@contoso.com R=dnslookup "
          "T=remote_smtp defer (-44) H=contoso-com.mail.protection.outlook.com [52.101.68.1]: "
          "SMTP error from remote mail server after RCPT TO:<boss@contoso.com>: 451 4.7.500 "
          "Server busy.", &yr);
    assert_int_equal(e.kind, EV_DELIVERY);
    assert_int_equal(e.status, ST_DEFERRED);
    assert_string_equal(e.qid, "1rGgZA-00000001xyz-AbCd");
    assert_string_equal(e.reply, "451 4.7.500 Server busy.");
    parse("2024-03-23 17:00:00 1rGgUW-0001Ab-2x <= s@shop.example H=m.shop.example "
          "(m.shop.example) [192.0.2.50]:51234 P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 "
          "S=5120 id=o-1@shop.example", &yr);
    assert_int_equal(e.kind, EV_CLIENT);
    assert_string_equal(e.qid, "1rGgUW-0001Ab-2x");
    assert_int_equal(e.size, 5120);
    assert_string_equal(e.msgid, "o-1@shop.example");
    assert_string_equal(e.tls_proto, "TLSv1.3");
    assert_string_equal(e.ip, "192.0.2.50");
}

static void test_sendmail_lines(void **state)
{
    struct rp_year yr = {.year = 2016, .fixed = true};
    parse("Apr 19 15:57:09 n-mail-2 sendmail[5383]: [ID 801593 mail.info] u3JDv8Jb005383: "
          "from=<bussler@uni-potsdam.de>, size=1520, class=0, nrcpts=1, msgid=<571638CD."
          "70804@uni-potsdam.de>, proto=ESMTP, daemon=SSLMTA, relay=[141.89.62.54]", &yr);
    assert_int_equal(e.kind, EV_CLIENT);
    assert_string_equal(e.addr, "bussler@uni-potsdam.de");
    assert_string_equal(e.msgid, "571638CD.70804@uni-potsdam.de");
    assert_string_equal(e.ip, "141.89.62.54");
    parse("Apr 23 16:13:03 n sendmail[1]: u3NED0cc026005: to=<s@outlook.com>, delay=00:00:03,"
          " xdelay=00:00:02, mailer=esmtp, pri=1, relay=o.olc.protection.outlook.com. "
          "[104.47.1.33], dsn=4.7.500, stat=Deferred: 451 4.7.500 Server busy.", &yr);
    assert_int_equal(e.status, ST_DEFERRED);
    assert_string_equal(e.reply, "451 4.7.500 Server busy.");
    parse("Apr 23 16:10:05 n sendmail[1]: STARTTLS=server, error: accept failed=-1, "
          "reason=unexpected eof, relay=m.example [40.107.2.62]", &yr);
    assert_int_equal(e.kind, EV_TLS_FAIL);
    assert_false(e.outbound);
    parse("Apr 23 16:11:00 n sendmail[1]: u3NEB0aa026002: ruleset=check_rcpt, arg1=<v@x>, "
          "relay=spam.example [203.0.113.66], reject=550 5.7.1 <v@x>... Relaying denied", &yr);
    assert_int_equal(e.kind, EV_REJECT);
    assert_string_equal(e.rej_stage, "RCPT");
    assert_string_equal(e.to, "v@x");
}

static void test_gimme_domain(void **state)
{
    char out[256];
    rps_gimme_domain("mail-am1on0123.outbound.protection.outlook.com[157.56.112.123]", out,
                     sizeof(out));
    assert_string_equal(out, "outlook.com");
    rps_gimme_domain("unknown[198.51.100.9]", out, sizeof(out));
    assert_string_equal(out, "198.51.100.9");
    rps_gimme_domain("mx.example.co.uk[192.0.2.1]", out, sizeof(out));
    assert_string_equal(out, "example.co.uk");
    rps_gimme_domain("mail.example.de[192.0.2.1]", out, sizeof(out));
    assert_string_equal(out, "mail.example.de");     /* as pflogsumm: 2-letter TLDs kept */
}

static void test_percentiles(void **state)
{
    struct rp_delays d = {0};
    assert_true(rpd_pct(&d, 50) == 0);
    for (int i = 100; i >= 1; i--)
        rpd_add(&d, i);
    assert_true(rpd_pct(&d, 50) == 50);
    assert_true(rpd_pct(&d, 95) == 95);
    assert_true(rpd_pct(&d, 99) == 99);
    assert_true(rpd_pct(&d, 100) == 100);
    rpd_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_year_rollover),
        cmocka_unit_test(test_postfix_lines),
        cmocka_unit_test(test_exim_lines),
        cmocka_unit_test(test_sendmail_lines),
        cmocka_unit_test(test_gimme_domain),
        cmocka_unit_test(test_percentiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
