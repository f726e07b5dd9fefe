/*
 * smtpd_data.c - DATA/BDAT content decoder (rules in smtpd_data.h).
 *
 * A byte-at-a-time state machine with a fast path: runs of ordinary bytes
 * are found with memchr and copied in one append, a whole CRLF-ended line
 * with its line end (most lines of most messages).
 */
#include "smtpd/smtpd_data.h"

#include <string.h>

void data_decoder_init(struct data_decoder *d, bool raw, size_t max_line)
{
    memset(d, 0, sizeof(*d));
    d->state = DD_LINE_START;
    d->raw = raw;
    d->prev_crlf = true;   /* the DATA command line itself ended the line */
    d->max_line = max_line;
    d->in_headers = true;
}

static void emit(struct data_decoder *d, struct buf *out, const char *p, size_t n)
{
    buf_append(out, p, n);
    d->out_bytes += n;
}

/* A line ended (its CRLF is already out). */
static void line_done(struct data_decoder *d, bool crlf)
{
    if (d->line_len == 0)
        d->in_headers = false;
    d->line_len = 0;
    d->prev_crlf = crlf;
    d->state = DD_LINE_START;
}

/* A line ended: CRLF goes out in every case (normalisation). */
static void end_line(struct data_decoder *d, struct buf *out, bool crlf)
{
    emit(d, out, "\r\n", 2);
    line_done(d, crlf);
}

/* Where the run of ordinary bytes from in[i] ends: the first CR, LF or
 * NUL, or n. memchr is vectorised; a loop over three tests per byte was
 * ~3% of the server's CPU time. */
static size_t plain_run_end(const char *in, size_t i, size_t n)
{
    static const char stops[] = {'\n', '\r', '\0'};
    size_t end = n;
    for (size_t k = 0; k < sizeof(stops); k++) {
        const char *hit = memchr(in + i, stops[k], end - i);
        if (hit)
            end = (size_t)(hit - in);
    }
    return end;
}

static void count_line(struct data_decoder *d, size_t n)
{
    d->line_len += n;
    if (d->line_len > d->max_line)
        d->flags |= DD_LONG_LINE;
}

/* Process one byte in the in-line states. */
static void in_line_byte(struct data_decoder *d, struct buf *out, char c)
{
    if (c == '\r') {
        d->state = DD_CR;
    } else if (c == '\n') {
        d->flags |= DD_BARE_LF;
        end_line(d, out, false);
    } else if (c == '\0') {
        d->flags |= DD_NUL;
        d->state = DD_IN_LINE;
    } else {
        emit(d, out, &c, 1);
        count_line(d, 1);
        d->state = DD_IN_LINE;
    }
}

size_t data_decode(struct data_decoder *d, const char *in, size_t n, struct buf *out)
{
    size_t i = 0;
    while (i < n && d->state != DD_DONE) {
        char c = in[i];
        switch (d->state) {
        case DD_LINE_START:
            if (c == '.' && !d->raw) {
                d->state = DD_DOT;
                i++;
                break;
            }
            d->state = DD_IN_LINE;
            /* fall through */
        case DD_IN_LINE: {
            size_t j = plain_run_end(in, i, n);
            if (j + 1 < n && in[j] == '\r' && in[j + 1] == '\n') {
                /* the rest of a CRLF line: text and line end in one go */
                count_line(d, j - i);
                emit(d, out, in + i, j + 2 - i);
                line_done(d, true);
                i = j + 2;
                break;
            }
            if (j > i) {
                emit(d, out, in + i, j - i);
                count_line(d, j - i);
                i = j;
                break;
            }
            in_line_byte(d, out, c);
            i++;
            break;
        }
        case DD_CR:
            if (c == '\n') {
                end_line(d, out, true);
                i++;
            } else {
                /* bare CR: ends the line in the stored copy, reprocess c */
                d->flags |= DD_BARE_CR;
                end_line(d, out, false);
            }
            break;
        case DD_DOT:
            if (c == '\r') {
                d->state = DD_DOT_CR;
                i++;
            } else if (c == '\n') {
                /* "<LF>.<LF>" or "<CRLF>.<LF>": never a terminator */
                d->flags |= DD_BARE_LF;
                emit(d, out, ".", 1);
                count_line(d, 1);
                end_line(d, out, false);
                i++;
            } else {
                /* dot-stuffed line: drop the leading dot */
                d->state = DD_IN_LINE;
            }
            break;
        case DD_DOT_CR:
            if (c == '\n' && d->prev_crlf) {
                d->state = DD_DONE;
                i++;
            } else if (c == '\n') {
                /* "<LF>.<CR><LF>": the line before was not CRLF-ended */
                emit(d, out, ".", 1);
                count_line(d, 1);
                end_line(d, out, true);
                i++;
            } else {
                /* "<CR>.<CR>" style: bare CR after the dot */
                d->flags |= DD_BARE_CR;
                emit(d, out, ".", 1);
                count_line(d, 1);
                end_line(d, out, false);
            }
            break;
        case DD_DONE:
            break;
        }
    }
    return i;
}

void data_decoder_finish_raw(struct data_decoder *d, struct buf *out)
{
    if (d->state == DD_CR) {
        d->flags |= DD_BARE_CR;
        end_line(d, out, false);
    } else if (d->state == DD_IN_LINE) {
        /* a chunked message need not end in CRLF; the stored copy does */
        end_line(d, out, true);
    }
}
