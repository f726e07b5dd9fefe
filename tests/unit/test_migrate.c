/*
 * test_migrate.c - the pure parts of `sluice migrate`: header fields and
 * message identity, folder name translation, and the state file
 * (persistence, UIDVALIDITY changes, torn last records).
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

#include "tools/migrate.h"

static void test_header_field(void **state)
{
    const char *h = "Subject: x\r\nmessage-id:\r\n  <a@b>\r\nDate: Mon,  1 Jan\r\n 2001\r\n\r\n"
                    "Message-ID: <body@x>\r\n";
    char v[100];
    mig_header_field(h, strlen(h), "Message-ID", v, sizeof(v));
    assert_string_equal(v, "<a@b>");
    mig_header_field(h, strlen(h), "Date", v, sizeof(v));
    assert_string_equal(v, "Mon, 1 Jan 2001");
    mig_header_field(h, strlen(h), "From", v, sizeof(v));
    assert_string_equal(v, "");
    const char *nohdr = "\r\nMessage-ID: <x@y>\r\n";
    mig_header_field(nohdr, strlen(nohdr), "Message-ID", v, sizeof(v));
    assert_string_equal(v, "");
    char small[4];
    mig_header_field(h, strlen(h), "Message-ID", small, sizeof(small));
    assert_string_equal(small, "<a@");
}

static void test_identity(void **state)
{
    const char *a = "Message-ID: <m@x>\nDate: Mon, 1 Jan 2001\n\nbody\n";
    const char *b = "Message-ID: <m@x>\r\nDate: Mon,   1 Jan 2001\r\n\r\nother body\r\n";
    char ia[MIG_ID_LEN], ib[MIG_ID_LEN], ic[MIG_ID_LEN];
    assert_true(mig_ident_header(a, strlen(a), 100, ia));
    assert_true(mig_ident_header(b, strlen(b), 100, ib));
    assert_string_equal(ia, ib);
    assert_true(mig_ident_header(a, strlen(a), 101, ic));
    assert_string_not_equal(ia, ic);
    assert_int_equal(strlen(ia), 32);
    assert_false(mig_ident_header("Subject: x\n\n", 12, 5, ic));
    mig_ident_content("abc", 3, ia);
    mig_ident_content("abd", 3, ib);
    assert_string_not_equal(ia, ib);
}

static void test_translate(void **state)
{
    char out[200];
    mig_plan_translate("Archive/2019", "", '/', "INBOX.", '.', out, sizeof(out));
    assert_string_equal(out, "INBOX.Archive.2019");
    mig_plan_translate("INBOX", "", '/', "INBOX.", '.', out, sizeof(out));
    assert_string_equal(out, "INBOX");
    mig_plan_translate("INBOX.Work.a", "INBOX.", '.', "", '/', out, sizeof(out));
    assert_string_equal(out, "Work/a");
    mig_plan_translate("v1.2/x", "", '/', "", '.', out, sizeof(out));
    assert_string_equal(out, "v1_2.x");
    mig_plan_translate("a/b", "", '/', "", '\0', out, sizeof(out));
    assert_string_equal(out, "a_b");
    mig_plan_translate("averyveryverylongname", "", '/', "", '.', out, 8);
    assert_string_equal(out, "averyve");
}

static void test_state_file(void **state)
{
    char path[] = "/tmp/sluice-test-state-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    char err[300];
    struct mig_state *st = mig_state_open(path, false, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(mig_state_folder(st, "A\tB c", 5, 7), 0);
    mig_state_map(st, "A\tB c", 10, 110);
    mig_state_map(st, "A\tB c", 11, 111);
    mig_state_add_uidl(st, "pop3:u@h", "0000abcd");
    assert_int_equal(mig_state_sync(st), 0);
    mig_state_close(st);

    FILE *fp = fopen(path, "a");
    fputs("M A%09B%20c 12 1", fp);        /* torn record: no newline */
    fclose(fp);
    st = mig_state_open(path, true, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(mig_state_folder(st, "A\tB c", 5, 7), 1);
    assert_int_equal(mig_state_lookup(st, "A\tB c", 10), 110);
    assert_int_equal(mig_state_lookup(st, "A\tB c", 11), 111);
    assert_int_equal(mig_state_lookup(st, "A\tB c", 12), 0);
    assert_true(mig_state_has_uidl(st, "pop3:u@h", "0000abcd"));
    assert_false(mig_state_has_uidl(st, "pop3:u@h", "other"));
    /* a new UIDVALIDITY forgets the map */
    assert_int_equal(mig_state_folder(st, "A\tB c", 6, 7), -1);
    assert_int_equal(mig_state_lookup(st, "A\tB c", 10), 0);
    mig_state_close(st);

    fp = fopen(path, "w");
    fputs("not a state file\n", fp);
    fclose(fp);
    assert_null(mig_state_open(path, false, err, sizeof(err)));
    assert_non_null(strstr(err, "not a sluice migrate state file"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_field),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_translate),
        cmocka_unit_test(test_state_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
