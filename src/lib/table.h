/*
 * table.h - lookup tables in Postfix's "key value" file format.
 *
 * One entry per line: a key, white space, the value (the rest of the line).
 * A key alone means the value "OK". '#' starts a comment line; blank lines
 * are ignored; keys are matched case-insensitively. Reloaded on SIGHUP by
 * loading a new table and swapping it in.
 */
#ifndef SLUICE_TABLE_H
#define SLUICE_TABLE_H

#include "lib/dict.h"

struct table {
    char *path;
    struct dict map;   /* lower-cased key -> char *value */
};

/* Load a table; on error returns NULL and writes "FILE:LINE: what; fix"
 * into err. */
struct table *table_load(const char *path, char *err, size_t errlen);
void table_free(struct table *t);
/* Look up a key (case-insensitive); NULL when absent. */
const char *table_get(const struct table *t, const char *key);

#endif
