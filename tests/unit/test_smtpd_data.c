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

/* Decode in pieces of `step` bytes; returns consumed bytes (or -1 if the
 * terminator never came). */
static size_t decode_steps(const char *in, size_t n, size_t step, struct data_decoder *d,
                           struct buf *out)
{
    data_decoder_init(d, false, 20);
    buf_init(out, 1 << 20);
    size_t i = 0;
    while (i < n && d->state != DD_DONE) {
        size_t k = n - i < step ? n - i : step;
        i += data_decode(d, in + i, k, out);
    }
    return d->state == DD_DONE ? i : (size_t)-1;
}

/* Whole CRLF lines take a fast path that one-byte pieces never reach:
 * every kind of line, decoded whole and byte by byte, must agree. */
static void test_fast_path_matches_bytewise(void **state)
{
    static const char in[] =
        "Subject: fast\r\n"
        "\r\n"
        "plain line\r\n"
        "..stuffed\r\n"
        "bare\rcr\r\n"
        "bare\nlf\r\n"
        "nul\0inside\r\n"
        "a line longer than twenty characters\r\n"
        "ends with cr\r"
        "\r\n"
        ".\r\n"
        "after the end\r\n";
    size_t n = sizeof(in) - 1;
    struct data_decoder whole, bytes;
    struct buf a, b;
    size_t ea = decode_steps(in, n, n, &whole, &a);
    size_t eb = decode_steps(in, n, 1, &bytes, &b);
    assert_int_equal(ea, eb);
    assert_int_equal(ea, n - strlen("after the end\r\n"));
    assert_int_equal(whole.flags, bytes.flags);
    assert_true(whole.flags & DD_BARE_CR);
    assert_true(whole.flags & DD_BARE_LF);
    assert_true(whole.flags & DD_NUL);
    assert_true(whole.flags & DD_LONG_LINE);
    assert_int_equal(whole.in_headers, bytes.in_headers);
    assert_false(whole.in_headers);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_non_null(memmem(a.data, a.len, "\r\n.stuffed\r\n", 12));
    buf_free(&a);
    buf_free(&b);
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
        cmocka_unit_test(test_fast_path_matches_bytewise),
        cmocka_unit_test(test_smuggling_variants),
        cmocka_unit_test(test_smuggled_then_real_end),
        cmocka_unit_test(test_nul_and_long_lines),
        cmocka_unit_test(test_raw_bdat),
        cmocka_unit_test(test_headers_tracked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
