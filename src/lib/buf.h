/*
 * buf.h - the one owned, bounded byte buffer used everywhere in sluice.
 *
 * Ownership rule: a struct buf owns `data`; buf_free() releases it. The data
 * pointer may move on any append (realloc), so never keep a pointer into a
 * buffer across an append. `data` is always NUL-terminated (the NUL is not
 * counted in `len`), so text buffers can be passed to C string functions.
 *
 * Every buffer has a maximum size fixed at creation (`max`, 0 = 1 GiB hard
 * cap): appends past it fail with -1 and leave the buffer unchanged, so a
 * peer can never make us allocate without limit.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

#define BUF_HARD_MAX ((size_t)1 << 30)

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
/* Make room for `extra` more bytes in one allocation (for a size known
 * in advance). Returns 0, or -1 when that would exceed b->max. */
int buf_reserve(struct buf *b, size_t extra);
/* Returns 0, or -1 when the result would exceed b->max. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Remove the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Hand the data to the caller (who must free() it) and reset the buffer. */
char *buf_steal(struct buf *b);

#endif
