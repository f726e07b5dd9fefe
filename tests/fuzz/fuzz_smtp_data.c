/*
 * fuzz_smtp_data.c - libFuzzer harness for the DATA/BDAT decoder. Feeds the
 * input in pieces whose sizes come from the input itself and checks the
 * invariants: the stored copy has only CRLF line endings, and splitting
 * the input differently never changes where the message ends, the stored
 * copy or the flags.
 */
#include "smtpd/smtpd_data.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t run(const char *in, size_t n, size_t step, bool raw, struct buf *out,
                  unsigned *flags)
{
    struct data_decoder d;
    data_decoder_init(&d, raw, 998);
    size_t i = 0;
    while (i < n && d.state != DD_DONE) {
        size_t k = n - i < step ? n - i : step;
        i += data_decode(&d, in + i, k, out);
    }
    if (raw)
        data_decoder_finish_raw(&d, out);
    *flags = d.flags;
    return d.state == DD_DONE ? i : (size_t)-1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool raw = data[0] & 1;
    size_t step = (size_t)(data[1] % 17) + 1;
    const char *in = (const char *)data + 2;
    size -= 2;
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    unsigned fa, fb;
    size_t ea = run(in, size, size ? size : 1, raw, &a, &fa);
    size_t eb = run(in, size, step, raw, &b, &fb);
    /* the fast path (whole CRLF lines) never sees a line end split
     * between pieces of one byte, so this also compares it with the
     * byte-at-a-time path */
    if (ea != eb || fa != fb || a.len != b.len ||
        (a.len && memcmp(a.data, b.data, a.len) != 0))
        abort();
    for (size_t i = 0; i < a.len; i++) {
        if (a.data[i] == '\n' && (i == 0 || a.data[i - 1] != '\r'))
            abort();
        if (a.data[i] == '\r' && (i + 1 >= a.len || a.data[i + 1] != '\n'))
            abort();
    }
    buf_free(&a);
    buf_free(&b);
    return 0;
}
