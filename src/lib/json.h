/*
 * json.h - minimal JSON output into a struct buf (for --json everywhere).
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include "lib/buf.h"

/* Append s as a JSON string literal (quotes included). Invalid UTF-8
 * bytes are replaced by U+FFFD so the output always parses. */
void json_str(struct buf *b, const char *s);
/* Append "key": (with a leading comma unless first). */
void json_key(struct buf *b, const char *key, int first);

#endif
