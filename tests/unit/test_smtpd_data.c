/*
 * test_smtpd_data.c - the DATA/BDAT decoder: dot-unstuffing, the one true
 * terminator, and every smuggling variant (CVE-2023-51764 class).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "smtpd/smtpd_data.h"

/* Decode `in` whole; returns consumed bytes, output in out. */
static size_t decode_all(const char *in, size_t n, bool raw, struct data_decoder *d,
                         struct buf *out)
{
    data_decoder_init(d, raw, 998);
    buf_init(out, 1 << 20);
    return data_decode(d, in, n, out);
}

static void test_simple_message(void **state)
{
    struct data_decoder d;
    struct buf out;
    const char *in = "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    size_t used = decode_all(in, strlen(in), false, &d, &out);
    assert_int_equal(d.state, DD_DONE);
    assert_int_equal(used, strlen("Subject: x\r\n\r\nbody\r\n.\r\n"));
    assert_string_equal(out.data, "Subject: x\r\n\r\nbody\r\n");
    assert_int_equal(d.flags, 0);
    buf_free(&out);
}

static void test_empty_message(void **state)
{
    struct data_decoder d;
    struct buf out;
    size_t used = decode_all(".\r\n", 3, false, &d, &out);
    assert_int_equal(used, 3);
    assert_int_equal(d.state, DD_DONE);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_dot_unstuffing(void **state)
{
    struct data_decoder d;
    struct buf out;
    const char *in = "..hidden\r\n...\r\n.x\r\n.\r\n";
    decode_all(in, strlen(in), false, &d, &out);
    assert_int_equal(d.state, DD_DONE);
    assert_string_equal(out.data, ".hidden\r\n..\r\nx\r\n");
    buf_free(&out);
}

/* Byte-at-a-time feeding must give the same result. */
static void test_split_feed(void **state)
{
    struct data_decoder d;
    struct buf out;
    const char *in = "a\r\n..b\r\n\r\n.\r\n";
    data_decoder_init(&d, false, 998);
    buf_init(&out, 4096);
    size_t i = 0;
    while (d.state != DD_DONE && i < strlen(in))
        i += data_decode(&d, in + i, 1, &out);
    assert_int_equal(d.state, DD_DONE);
    assert_int_equal(i, strlen(in));
    assert_string_equal(out.data, "a\r\n.b\r\n\r\n");
    buf_free(&out);
}

static void expect_not_terminated(const char *in, unsigned flag)
{
    struct data_decoder d;
    struct buf out;
    size_t used = decode_all(in, strlen(in), false, &d, &out);
    assert_int_not_equal(d.state, DD_DONE);
    assert_int_equal(used, strlen(in));
    assert_true(d.flags & flag);
    /* the stored copy never contains a bare CR or LF */
    for (size_t i = 0; i < out.len; i++) {
        if (out.data[i] == '\n')
            assert_true(i > 0 && out.data[i - 1] == '\r');
        if (out.data[i] == '\r')
            assert_true(i + 1 < out.len && out.data[i + 1] == '\n');
    }
    buf_free(&out);
}

static void test_smuggling_variants(void **state)
{
    expect_not_terminated("a\n.\nMAIL FROM:<x@y>\r\n", DD_BARE_LF);      /* <LF>.<LF> */
    expect_not_terminated("a\r\n.\nMAIL FROM:<x@y>\r\n", DD_BARE_LF);    /* <CRLF>.<LF> */
    expect_not_terminated("a\n.\r\nMAIL FROM:<x@y>\r\n", DD_BARE_LF);    /* <LF>.<CRLF> */
    expect_not_terminated("a\r.\rMAIL FROM:<x@y>\r\n", DD_BARE_CR);      /* <CR>.<CR> */
    expect_not_terminated("a\r\n.\rMAIL FROM:<x@y>\r\n", DD_BARE_CR);    /* <CRLF>.<CR> */
    expect_not_terminated("a\r.\r\nMAIL FROM:<x@y>\r\n", DD_BARE_CR);    /* <CR>.<CRLF> */
}

static void test_smuggled_then_real_end(void **state)
{
    struct data_decoder d;
    struct buf out;
    const char *in = "a\n.\nRCPT TO:<v@x>\r\n.\r\n";
    size_t used = decode_all(in, strlen(in), false, &d, &out);
    assert_int_equal(d.state, DD_DONE);
    assert_int_equal(used, strlen(in));
    assert_string_equal(out.data, "a\r\n.\r\nRCPT TO:<v@x>\r\n");
    buf_free(&out);
}

static void test_nul_and_long_lines(void **state)
{
    struct data_decoder d;
    struct buf out;
    const char in[] = "a\0b\r\n.\r\n";
    decode_all(in, sizeof(in) - 1, false, &d, &out);
    assert_true(d.flags & DD_NUL);
    buf_free(&out);
    char longline[1200];
    memset(longline, 'x', 999);
    strcpy(longline + 999, "\r\n.\r\n");
    decode_all(longline, strlen(longline), false, &d, &out);
    assert_true(d.flags & DD_LONG_LINE);
    buf_free(&out);
    memset(longline, 'x', 998);
    strcpy(longline + 998, "\r\n.\r\n");
    decode_all(longline, strlen(longline), false, &d, &out);
    assert_false(d.flags & DD_LONG_LINE);
    buf_free(&out);
}

static void test_raw_bdat(void **state)
{
    struct data_decoder d;
    struct buf out;
    const char *in = "a\r\n.\r\n.b\nc";
    size_t used = decode_all(in, strlen(in), true, &d, &out);
    assert_int_equal(used, strlen(in));
    assert_int_not_equal(d.state, DD_DONE);
    data_decoder_finish_raw(&d, &out);
    assert_string_equal(out.data, "a\r\n.\r\n.b\r\nc\r\n");
    assert_true(d.flags & DD_BARE_LF);
    buf_free(&out);
}

static void test_headers_tracked(void **state)
{
    struct data_decoder d;
    struct buf out;
    const char *in = "A: b\r\n";
    decode_all(in, strlen(in), false, &d, &out);
    assert_true(d.in_headers);
    data_decode(&d, "\r\nbody\r\n", 8, &out);
    assert_false(d.in_headers);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_message),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_dot_unstuffing),
        cmocka_unit_test(test_split_feed),
        cmocka_unit_test(test_smuggling_variants),
        cmocka_unit_test(test_smuggled_then_real_end),
        cmocka_unit_test(test_nul_and_long_lines),
        cmocka_unit_test(test_raw_bdat),
        cmocka_unit_test(test_headers_tracked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
