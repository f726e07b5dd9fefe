/*
 * smtpd_data.h - the DATA / BDAT content decoder.
 *
 * Turns the bytes a client sends after DATA (or inside BDAT chunks) into
 * the message as stored: dot-unstuffed, every line ending CRLF.
 *
 * End of data is ONLY <CR><LF>.<CR><LF>: the "." line must end in CRLF and
 * so must the line before it. Bare LF and bare CR never end a line that
 * could end the message, so "<LF>.<LF>", "<CR><LF>.<LF>", "<LF>.<CR><LF>"
 * and "<CR>.<CR>" cannot split one message into two (SMTP smuggling,
 * CVE-2023-51764 class). What happens to bare LF / CR is the caller's
 * policy: the decoder always reports them (flags) and, in the stored copy,
 * normalises them to CRLF so nothing downstream can be smuggled either.
 */
#ifndef SLUICE_SMTPD_DATA_H
#define SLUICE_SMTPD_DATA_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dd_state { DD_LINE_START, DD_IN_LINE, DD_CR, DD_DOT, DD_DOT_CR, DD_DONE };

enum dd_flags {
    DD_BARE_LF = 1,
    DD_BARE_CR = 2,
    DD_NUL = 4,
    DD_LONG_LINE = 8,
};

struct data_decoder {
    enum dd_state state;
    bool raw;              /* BDAT: no dot handling, no terminator */
    bool prev_crlf;        /* the previous line ended in CRLF */
    size_t line_len;
    size_t max_line;       /* longest text line allowed, without CRLF */
    unsigned flags;
    uint64_t out_bytes;    /* bytes emitted so far */
    bool in_headers;       /* still in the header section */
};

void data_decoder_init(struct data_decoder *d, bool raw, size_t max_line);
/* Decode up to n bytes, appending output to out (whose max must allow
 * it: callers flush out between calls). Returns bytes consumed; the
 * decoder is in DD_DONE when the terminator was consumed. */
size_t data_decode(struct data_decoder *d, const char *in, size_t n, struct buf *out);
/* BDAT: finish the last chunk (flush a pending CR as a bare CR). */
void data_decoder_finish_raw(struct data_decoder *d, struct buf *out);

#endif
