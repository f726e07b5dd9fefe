/*
 * test_delivery.c - next-hop parsing and routing (transport_maps, local
 * domains, relayhost, MX), the delivery state file, DSN construction and
 * Maildir delivery.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delivery/delivery.h"
#include "delivery/maildir.h"
#include "lib/config.h"
#include "mail/dsn.h"
#include "queue/qmgr_int.h"
#include "queue/qstate.h"

static void test_parse_nexthop(void **state)
{
    struct nexthop h;
    assert_int_equal(qmgr_parse_nexthop("smtp:[127.0.0.1]:2526", &h), 0);
    assert_int_equal(h.kind, TR_SMTP);
    assert_string_equal(h.host, "127.0.0.1");
    assert_int_equal(h.port, 2526);
    assert_false(h.use_mx);
    assert_int_equal(qmgr_parse_nexthop("smtp:mx.example.org", &h), 0);
    assert_true(h.use_mx);
    assert_int_equal(h.port, 25);
    assert_int_equal(qmgr_parse_nexthop("lmtp:unix:/run/dovecot/lmtp", &h), 0);
    assert_int_equal(h.kind, TR_LMTP);
    assert_true(h.unix_socket);
    assert_int_equal(qmgr_parse_nexthop("lmtp:[::1]:24", &h), 0);
    assert_string_equal(h.host, "::1");
    assert_int_equal(qmgr_parse_nexthop("maildir", &h), 0);
    assert_int_equal(h.kind, TR_MAILDIR);
    assert_int_equal(qmgr_parse_nexthop("error:5.1.1 gone", &h), 0);
    assert_int_equal(h.kind, TR_ERROR);
    assert_string_equal(h.error_text, "5.1.1 gone");
    assert_int_equal(qmgr_parse_nexthop("[10.0.0.1]:587", &h), 0);
    assert_int_equal(h.port, 587);
    assert_int_equal(qmgr_parse_nexthop("smtp:[1.2.3.4]:99999", &h), -1);
    assert_int_equal(qmgr_parse_nexthop("smtp:[1.2.3.4", &h), -1);
    assert_int_equal(qmgr_parse_nexthop("smtp:", &h), -1);
    assert_int_equal(qmgr_parse_nexthop("lmtp:unix:", &h), -1);
    assert_int_equal(qmgr_parse_nexthop("smtp:host:12x", &h), -1);
}

static struct config *load(const char *text, const char *table)
{
    char path[] = "/tmp/sluice-route-XXXXXX", tpath[] = "/tmp/sluice-tbl-XXXXXX";
    int fd = mkstemp(path), tfd = mkstemp(tpath);
    dprintf(tfd, "%s", table);
    close(tfd);
    dprintf(fd, "%s\ntransport_maps = %s\n", text, tpath);
    close(fd);
    char err[512];
    struct config *c = config_load(path, err, sizeof(err));
    if (c == NULL)
        fail_msg("%s", err);
    unlink(path);
    unlink(tpath);
    return c;
}

static void test_route(void **state)
{
    struct config *c = load("mydomains = local.example\nrelayhost =",
                            "special@other.example error:5.7.1 not this one\n"
                            "other.example smtp:[127.0.0.1]:2526\n"
                            ".sub.example lmtp:[127.0.0.1]:24\n");
    struct nexthop h;
    assert_int_equal(qmgr_route(c, "u@local.example", &h), 0);
    assert_int_equal(h.kind, TR_MAILDIR);
    assert_int_equal(qmgr_route(c, "u@other.example", &h), 0);
    assert_int_equal(h.kind, TR_SMTP);
    assert_int_equal(h.port, 2526);
    assert_int_equal(qmgr_route(c, "special@other.example", &h), 0);
    assert_int_equal(h.kind, TR_ERROR);
    assert_int_equal(qmgr_route(c, "u@a.sub.example", &h), 0);
    assert_int_equal(h.kind, TR_LMTP);
    assert_int_equal(qmgr_route(c, "u@REMOTE.example", &h), 0);
    assert_int_equal(h.kind, TR_SMTP);
    assert_true(h.use_mx);
    assert_string_equal(h.host, "remote.example");
    assert_int_equal(qmgr_route(c, "postmaster", &h), 0);
    assert_int_equal(h.kind, TR_MAILDIR);
    config_free(c);
    c = load("relayhost = [192.0.2.1]:587", "");
    assert_int_equal(qmgr_route(c, "u@remote.example", &h), 0);
    assert_string_equal(h.host, "192.0.2.1");
    assert_int_equal(h.port, 587);
    config_free(c);
}

static void test_qstate_round_trip(void **state)
{
    char path[] = "/tmp/sluice-state-XXXXXX";
    close(mkstemp(path));
    struct msg_state st, back;
    qstate_init(&st, 3);
    st.held = true;
    st.r[0].status = RS_SENT;
    st.r[1].status = RS_DEFERRED;
    st.r[1].attempts = 4;
    st.r[1].next_attempt = 1700000000;
    st.r[1].throttled_only = true;
    strcpy(st.r[1].cls, "busy");
    strcpy(st.r[1].dsn, "4.7.500");
    strcpy(st.r[1].relay, "mx 1[1.2.3.4]:25");
    strcpy(st.r[1].reply, "451 4.7.500 Server busy\twith tab\nand newline");
    st.r[2].status = RS_ACTIVE; /* saved as pending */
    assert_int_equal(qstate_save(path, &st), 0);
    qstate_init(&back, 3);
    assert_int_equal(qstate_load(path, &back), 0);
    assert_true(back.held);
    assert_int_equal(back.r[0].status, RS_SENT);
    assert_int_equal(back.r[1].status, RS_DEFERRED);
    assert_int_equal(back.r[1].attempts, 4);
    assert_int_equal(back.r[1].next_attempt, 1700000000);
    assert_true(back.r[1].throttled_only);
    assert_string_equal(back.r[1].cls, "busy");
    assert_string_equal(back.r[1].reply, "451 4.7.500 Server busy with tab and newline");
    assert_int_equal(back.r[2].status, RS_PENDING);
    qstate_free(&st);
    qstate_free(&back);
    /* a damaged file leaves fresh state */
    FILE *fp = fopen(path, "w");
    fputs("SLUICE-STATE 1\nrcpt 99 sent 1 2 3 0 - - -\t\nrcpt x\n", fp);
    fclose(fp);
    qstate_init(&back, 1);
    assert_int_equal(qstate_load(path, &back), 0);
    assert_int_equal(back.r[0].status, RS_PENDING);
    qstate_free(&back);
    unlink(path);
}

static void test_dsn(void **state)
{
    struct dsn_rcpt r = {.addr = "u@remote.example", .orcpt = "rfc822;U+2Bx@remote.example",
                         .status = "5.7.1", .remote_mta = "mx.remote.example",
                         .diagnostic = "550 5.7.1 blocked (S3150)",
                         .explanation = "Your IP is on a block list.", .last_attempt = 1};
    struct dsn_report rep = {.reporting_mta = "mx.test.example", .qid = "0123456789ABCDEF",
                             .envid = "E+2B1", .sender = "s@test.example", .arrival = 1,
                             .rcpts = &r, .nrcpt = 1};
    const char *orig = "Subject: hi\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n";
    struct buf out;
    buf_init(&out, 0);
    dsn_build(&rep, orig, strlen(orig), &out);
    assert_non_null(strstr(out.data, "Content-Type: multipart/report; report-type=delivery-status;"));
    assert_non_null(strstr(out.data, "Final-Recipient: rfc822; u@remote.example\r\n"));
    assert_non_null(strstr(out.data, "Original-Recipient: rfc822; U+x@remote.example\r\n"));
    assert_non_null(strstr(out.data, "Original-Envelope-Id: E+1\r\n"));
    assert_non_null(strstr(out.data, "Action: failed\r\nStatus: 5.7.1\r\n"));
    assert_non_null(strstr(out.data, "Diagnostic-Code: smtp; 550 5.7.1 blocked (S3150)"));
    assert_non_null(strstr(out.data, "What this means: Your IP is on a block list."));
    assert_non_null(strstr(out.data, "Content-Type: message/rfc822\r\n\r\nSubject: hi"));
    /* every line ends in CRLF */
    for (size_t i = 0; i < out.len; i++)
        if (out.data[i] == '\n')
            assert_true(i > 0 && out.data[i - 1] == '\r');
    buf_free(&out);
    rep.delayed = true;
    buf_init(&out, 0);
    dsn_build(&rep, orig, strlen(orig), &out);
    assert_non_null(strstr(out.data, "Action: delayed"));
    assert_non_null(strstr(out.data, "Will-Retry-Until:"));
    assert_non_null(strstr(out.data, "text/rfc822-headers"));
    assert_null(strstr(out.data, "body\r\n"));
    buf_free(&out);
}

static void test_maildir(void **state)
{
    char dir[] = "/tmp/sluice-md-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char qf[600];
    snprintf(qf, sizeof(qf), "%s/qfile", dir);
    FILE *fp = fopen(qf, "w");
    fputs("ENVELOPE\nSubject: x\r\n\r\nline\r\n.dot\r\n", fp);
    fclose(fp);
    int qfd = open(qf, O_RDONLY);
    assert_true(qfd >= 0);
    struct maildir_job j = {.base = dir, .queue_fd = qfd, .content_offset = 9,
                            .content_length = 26, .sender = "s@e.example",
                            .recipient = "User@Local.example", .hostname = "h"};
    maildir_deliver(&j);
    if (j.status != 0)
        fail_msg("maildir: %s", j.error);
    assert_non_null(strstr(j.path, "/local.example/user/new/"));
    fp = fopen(j.path, "r");
    char buf[256] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    assert_string_equal(buf, "Return-Path: <s@e.example>\nDelivered-To: User@Local.example\n"
                             "Subject: x\n\nline\n.dot\n");
    struct maildir_job bad = j;
    bad.recipient = "../../etc@local.example";
    maildir_deliver(&bad);
    assert_int_not_equal(bad.status, 0);
    assert_true(bad.permanent);
    char out[64];
    assert_int_equal(maildir_safe_name("a/b", out, sizeof(out)), 0);
    assert_string_equal(out, "a%2Fb");
    assert_int_equal(maildir_safe_name(".hidden", out, sizeof(out)), -1);
    close(qfd);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_nexthop), cmocka_unit_test(test_route),
        cmocka_unit_test(test_qstate_round_trip), cmocka_unit_test(test_dsn),
        cmocka_unit_test(test_maildir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
