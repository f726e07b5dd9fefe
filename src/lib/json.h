/*
 * json.h - a small streaming JSON writer (objects, arrays, strings,
 * numbers) for the --json outputs. Strings are escaped and made valid
 * UTF-8 (invalid bytes become U+FFFD), so log garbage cannot break the
 * document. Nesting is bounded (JSON_MAX_DEPTH).
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

struct json_w {
    FILE *f;
    int depth;
    bool first[JSON_MAX_DEPTH];
    char close[JSON_MAX_DEPTH];   /* '}' or ']' per open level */
};

void json_init(struct json_w *w, FILE *f);
/* key is NULL inside arrays and for the top level. */
void json_obj(struct json_w *w, const char *key);
void json_arr(struct json_w *w, const char *key);
void json_end(struct json_w *w);          /* closes the innermost */
void json_str(struct json_w *w, const char *key, const char *val);  /* NULL: null */
void json_u64(struct json_w *w, const char *key, uint64_t v);
void json_dbl(struct json_w *w, const char *key, double v);
void json_bool(struct json_w *w, const char *key, bool v);
/* Write s as a JSON string literal (with quotes). */
void json_quote(FILE *f, const char *s);

#endif
