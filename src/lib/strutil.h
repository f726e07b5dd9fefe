/*
 * strutil.h - small, bounded string helpers that replace the C library
 * functions this project bans (strcpy, sprintf, strtok, atoi, ...).
 */
#ifndef SLUICE_STRUTIL_H
#define SLUICE_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copy with truncation; always NUL-terminates. Returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t dstsize);
/* Lower-case ASCII in place; returns s. */
char *str_lower(char *s);
/* Upper-case ASCII in place; returns s. */
char *str_upper(char *s);
/* Trim ASCII white space at both ends in place; returns the new start. */
char *str_trim(char *s);
/* Case-insensitive ASCII prefix test. */
bool str_iprefix(const char *s, const char *prefix);
bool str_iequal(const char *a, const char *b);
/* Parse a whole decimal unsigned number; -1 on any junk or overflow. */
int str_to_u64(const char *s, uint64_t *out);
/* v in decimal into buf, which holds STR_U64_SIZE bytes; returns buf. The
 * inverse of str_to_u64, without printf: event loops key their
 * connections by id and format one per event. */
#define STR_U64_SIZE 21
char *str_from_u64(uint64_t v, char *buf);
/* Parse a time with optional unit s m h d w (bare number: seconds). */
int str_to_seconds(const char *s, uint64_t *out);
/* Parse a size with optional unit k M G (bare number: bytes; 1024-based). */
int str_to_bytes(const char *s, uint64_t *out);
/* Edit distance, capped at `cap` (for "did you mean" hints). */
size_t str_distance(const char *a, const char *b, size_t cap);

#endif
