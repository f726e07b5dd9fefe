/*
 * xalloc.h - allocation wrappers that never return NULL.
 *
 * Running out of memory in a mail server is not something a caller can
 * sensibly recover from half-way through a protocol exchange, so these
 * wrappers log and exit (the queue is durable, nothing acknowledged is lost).
 */
#ifndef SLUICE_XALLOC_H
#define SLUICE_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/* Grow an array to at least `need` elements, doubling; updates *cap. */
void *xgrow(void *p, size_t *cap, size_t need, size_t elem_size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Formatted allocation (vasprintf that never fails). */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
