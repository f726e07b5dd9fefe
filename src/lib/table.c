/*
 * table.c - "key value" lookup tables (Postfix texthash-like).
 */
#include "lib/table.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_LINE_MAX 4096

struct table *table_load(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(err, errlen, "%s: cannot open table: %s; fix: create the file "
                 "or correct the path in the configuration", path, strerror(errno));
        return NULL;
    }
    struct table *t = xcalloc(1, sizeof(*t));
    t->path = xstrdup(path);
    dict_init(&t->map, free);

    char line[TABLE_LINE_MAX + 2];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), fp)) {
        lineno++;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] != '\n' && !feof(fp)) {
            snprintf(err, errlen, "%s:%u: line longer than %d bytes; fix: "
                     "shorten the entry", path, lineno, TABLE_LINE_MAX);
            goto fail;
        }
        char *s = str_trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *val = s + strcspn(s, " \t");
        if (*val) {
            *val++ = '\0';
            val = str_trim(val);
        }
        if (*val == '\0')
            val = "OK";
        str_lower(s);
        dict_set(&t->map, s, xstrdup(val));
    }
    if (ferror(fp)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    fclose(fp);
    return t;
fail:
    fclose(fp);
    table_free(t);
    return NULL;
}

void table_free(struct table *t)
{
    if (t == NULL)
        return;
    dict_free(&t->map);
    free(t->path);
    free(t);
}

const char *table_get(const struct table *t, const char *key)
{
    char tmp[1024];
    if (t == NULL || str_copy(tmp, key, sizeof(tmp)) >= sizeof(tmp))
        return NULL;
    str_lower(tmp);
    return dict_get(&t->map, tmp);
}
