/*
 * jsonw.h - a small streaming JSON writer (objects, arrays, strings,
 * numbers) for the --json outputs. Strings are escaped and made valid
 * UTF-8 (invalid bytes become U+FFFD), so log garbage cannot break the
 * document. Nesting is bounded (JSONW_MAX_DEPTH).
 */
#ifndef SLUICE_JSONW_H
#define SLUICE_JSONW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSONW_MAX_DEPTH 32

struct jsonw {
    FILE *f;
    int depth;
    bool first[JSONW_MAX_DEPTH];
    char close[JSONW_MAX_DEPTH];   /* '}' or ']' per open level */
};

void jsonw_init(struct jsonw *w, FILE *f);
/* key is NULL inside arrays and for the top level. */
void jsonw_obj(struct jsonw *w, const char *key);
void jsonw_arr(struct jsonw *w, const char *key);
void jsonw_end(struct jsonw *w);          /* closes the innermost */
void jsonw_str(struct jsonw *w, const char *key, const char *val);  /* NULL: null */
void jsonw_u64(struct jsonw *w, const char *key, uint64_t v);
void jsonw_dbl(struct jsonw *w, const char *key, double v);
void jsonw_bool(struct jsonw *w, const char *key, bool v);
/* Write s as a JSON string literal (with quotes). */
void jsonw_quote(FILE *f, const char *s);

#endif
