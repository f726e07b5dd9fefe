/*
 * test_imap_parse.c - the IMAP response parser, well-formed and hostile.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail/imap_parse.h"

static char err[256];

static int parse(const char *s, struct imap_resp *r)
{
    static char buf[70000];
    size_t n = strlen(s);
    memcpy(buf, s, n + 1);
    return imap_parse(buf, n, r, err, sizeof(err));
}

static void test_tagged(void **state)
{
    struct imap_resp r;
    imap_resp_init(&r);
    assert_int_equal(parse("A1 OK [APPENDUID 38505 3955] APPEND completed\r\n", &r), 0);
    assert_int_equal(r.kind, IMAP_TAGGED);
    assert_string_equal(r.tag, "A1");
    assert_int_equal(r.status, IMAP_OK);
    assert_true(imap_code_is(&r, "APPENDUID"));
    assert_int_equal(r.code_end - r.code, 3);
    assert_int_equal(r.tok[r.code + 1].num, 38505);
    assert_memory_equal(r.text, "APPEND completed", r.text_len);
    assert_int_equal(parse("a2 no Mailbox does not exist\r\n", &r), 0);
    assert_int_equal(r.status, IMAP_NO);
    assert_int_equal(r.code, r.code_end);
    assert_int_not_equal(parse("A3 FETCH 1\r\n", &r), 0);
    imap_resp_free(&r);
}

static void test_untagged(void **state)
{
    struct imap_resp r;
    imap_resp_init(&r);
    assert_int_equal(parse("* 23 EXISTS\r\n", &r), 0);
    assert_true(r.has_num);
    assert_int_equal(r.num, 23);
    assert_string_equal(r.keyword, "EXISTS");
    assert_int_equal(parse("* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n", &r), 0);
    assert_int_equal(r.status, IMAP_OK);
    assert_true(imap_code_is(&r, "PERMANENTFLAGS"));
    assert_int_equal(r.tok[r.code + 1].type, IMAP_LIST);
    assert_int_equal(parse("* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\n", &r), 0);
    assert_int_equal(r.ntok - r.data, 3);
    assert_true(imap_tok_is(&r.tok[r.data + 1], "literal+"));
    assert_int_equal(parse("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n", &r), 0);
    assert_string_equal(r.keyword, "LIST");
    assert_int_equal(r.tok[r.data].type, IMAP_LIST);
    assert_int_equal(r.tok[r.data].end, r.data + 3);
    char name[64];
    assert_string_equal(imap_tok_str(&r.tok[r.data + 4], name, sizeof(name)), "Sent Items");
    assert_int_equal(parse("* LIST () NIL INBOX\r\n", &r), 0);
    assert_int_equal(r.tok[r.data + 1].type, IMAP_NIL);
    assert_int_equal(parse("+ go ahead\r\n", &r), 0);
    assert_int_equal(r.kind, IMAP_CONTINUE);
    assert_int_equal(parse("+\r\n", &r), 0);
    assert_int_equal(parse("* BYE shutting down\r\n", &r), 0);
    assert_int_equal(r.status, IMAP_BYE);
    imap_resp_free(&r);
}

static void test_fetch_literal(void **state)
{
    struct imap_resp r;
    imap_resp_init(&r);
    const char *s = "* 12 FETCH (UID 99 FLAGS (\\Seen $Label1) INTERNALDATE "
                    "\"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 11 "
                    "BODY[HEADER.FIELDS (MESSAGE-ID DATE)] {10}\r\nab\r\ncd\r\nef)\r\n";
    int prc = parse(s, &r);
    if (prc) fprintf(stderr, "err: %s\n", err);
    assert_int_equal(prc, 0);
    assert_string_equal(r.keyword, "FETCH");
    size_t l = r.data;
    long uid = imap_fetch_item(&r, l, "UID");
    assert_true(uid > 0);
    assert_int_equal(r.tok[uid].num, 99);
    long fl = imap_fetch_item(&r, l, "FLAGS");
    assert_int_equal(r.tok[fl].type, IMAP_LIST);
    assert_int_equal(r.tok[fl].end - fl - 1, 2);
    long body = imap_fetch_item(&r, l, "BODY[");
    assert_int_equal(r.tok[body].type, IMAP_STR);
    assert_int_equal(r.tok[body].len, 10);
    assert_memory_equal(r.tok[body].p, "ab\r\ncd\r\nef", 10);
    long sz = imap_fetch_item(&r, l, "RFC822.SIZE");
    assert_int_equal(r.tok[sz].num, 11);
    assert_int_equal(imap_fetch_item(&r, l, "ENVELOPE"), -1);
    /* zero-length literal and NIL body */
    assert_int_equal(parse("* 1 FETCH (BODY[] {0}\r\n UID 4)\r\n", &r), 0);
    assert_int_equal(r.tok[imap_fetch_item(&r, r.data, "BODY[")].len, 0);
    assert_int_equal(parse("* 1 FETCH (BODY[] NIL)\r\n", &r), 0);
    imap_resp_free(&r);
}

static void test_quoted_escapes(void **state)
{
    struct imap_resp r;
    imap_resp_init(&r);
    assert_int_equal(parse("* LIST () \"/\" \"a\\\"b\\\\c\"\r\n", &r), 0);
    char out[32];
    assert_string_equal(imap_tok_str(&r.tok[r.data + 2], out, sizeof(out)), "a\"b\\c");
    assert_int_not_equal(parse("* LIST () \"/\" \"abc\r\n", &r), 0);
    imap_resp_free(&r);
}

static void test_hostile(void **state)
{
    struct imap_resp r;
    imap_resp_init(&r);
    /* truncated literal */
    assert_int_not_equal(parse("* 1 FETCH (BODY[] {100}\r\nshort)\r\n", &r), 0);
    assert_non_null(strstr(err, "truncated"));
    /* literal announced at 2 GB, nothing follows */
    assert_int_not_equal(parse("* 1 FETCH (BODY[] {2147483648}\r\n", &r), 0);
    /* absurd literal sizes */
    assert_int_not_equal(parse("* 1 FETCH (BODY[] {99999999999999999999999}\r\n", &r), 0);
    assert_int_not_equal(parse("* 1 FETCH (BODY[] {}\r\n", &r), 0);
    assert_int_not_equal(parse("* 1 FETCH (BODY[] {12x}\r\n", &r), 0);
    /* nesting bomb */
    char deep[200];
    memset(deep, '(', 100);
    memcpy(deep + 100, "\r\n", 3);
    char line[300];
    snprintf(line, sizeof(line), "* 1 FETCH %s", deep);
    assert_int_not_equal(parse(line, &r), 0);
    /* unbalanced */
    assert_int_not_equal(parse("* 1 FETCH (UID 1))\r\n", &r), 0);
    assert_int_not_equal(parse("* 1 FETCH (UID 1\r\n", &r), 0);
    assert_int_not_equal(parse("* 1 FETCH (BODY[HEADER\r\n", &r), 0);
    /* garbage */
    assert_int_not_equal(parse("\x01\x02\x03\r\n", &r), 0);
    assert_int_not_equal(parse("", &r), 0);
    assert_int_not_equal(parse("*\r\n", &r), 0);
    assert_int_not_equal(parse("* OK [UNTERMINATED code\r\n", &r), 0);
    assert_int_not_equal(parse("A1 OK done\r\nextra", &r), 0);
    char tag[100];
    memset(tag, 'A', 60);
    memcpy(tag + 60, " OK x\r\n", 8);
    assert_int_not_equal(parse(tag, &r), 0);
    /* too many tokens */
    static char many[IMAP_TOK_MAX * 2 + 64];
    size_t n = (size_t)snprintf(many, sizeof(many), "* SEARCH");
    for (size_t i = 0; i < IMAP_TOK_MAX + 5; i++) {
        many[n++] = ' ';
        many[n++] = '1';
    }
    memcpy(many + n, "\r\n", 3);
    char *copy = malloc(n + 3);
    memcpy(copy, many, n + 3);
    assert_int_not_equal(imap_parse(copy, n + 2, &r, err, sizeof(err)), 0);
    free(copy);
    imap_resp_free(&r);
}

static void count(uint64_t n, void *arg)
{
    (*(uint64_t *)arg) += n;
}

static void test_seqset(void **state)
{
    uint64_t sum = 0;
    assert_int_equal(imap_seqset_each("1:3,7", 5, 100, count, &sum), 0);
    assert_int_equal(sum, 13);
    sum = 0;
    assert_int_equal(imap_seqset_each("5:4", 3, 100, count, &sum), 0);
    assert_int_equal(sum, 9);
    assert_int_not_equal(imap_seqset_each("1:4294967295", 12, 100000, count, &sum), 0);
    assert_int_not_equal(imap_seqset_each("1,,2", 4, 100, count, &sum), 0);
    assert_int_not_equal(imap_seqset_each("x", 1, 100, count, &sum), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tagged),
        cmocka_unit_test(test_untagged),
        cmocka_unit_test(test_fetch_literal),
        cmocka_unit_test(test_quoted_escapes),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_seqset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
