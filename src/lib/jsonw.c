/*
 * jsonw.c - streaming JSON writer (see jsonw.h).
 */
#include "lib/jsonw.h"

#include <math.h>
#include <string.h>

void jsonw_init(struct jsonw *w, FILE *f)
{
    memset(w, 0, sizeof(*w));
    w->f = f;
    w->first[0] = true;
}

/* Length of a valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
             : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || (n == 2 && s[0] < 0xc2) || (n == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && s[0] == 0xe0 && s[1] < 0xa0)
        return 0;
    if (n == 3 && s[0] == 0xed && s[1] >= 0xa0)
        return 0;
    if (n == 4 && s[0] == 0xf0 && s[1] < 0x90)
        return 0;
    if (n == 4 && s[0] == 0xf4 && s[1] >= 0x90)
        return 0;
    return n;
}

void jsonw_quote(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        if (*s == '"' || *s == '\\') {
            fputc('\\', f);
            fputc(*s++, f);
        } else if (*s < 0x20 || *s == 0x7f) {
            fprintf(f, "\\u%04x", *s++);
        } else if (*s < 0x80) {
            fputc(*s++, f);
        } else {
            size_t n = utf8_len(s);
            if (n == 0) {
                fputs("\\ufffd", f);
                s++;
            } else {
                fwrite(s, 1, n, f);
                s += n;
            }
        }
    }
    fputc('"', f);
}

static void sep(struct jsonw *w, const char *key)
{
    if (!w->first[w->depth])
        fputc(',', w->f);
    w->first[w->depth] = false;
    if (key) {
        jsonw_quote(w->f, key);
        fputc(':', w->f);
    }
}

static void open_(struct jsonw *w, const char *key, char c)
{
    sep(w, key);
    fputc(c, w->f);
    if (w->depth + 1 < JSONW_MAX_DEPTH)
        w->depth++;
    w->first[w->depth] = true;
    w->close[w->depth] = c == '{' ? '}' : ']';
}

void jsonw_obj(struct jsonw *w, const char *key)
{
    open_(w, key, '{');
}

void jsonw_arr(struct jsonw *w, const char *key)
{
    open_(w, key, '[');
}

void jsonw_end(struct jsonw *w)
{
    if (w->depth > 0) {
        fputc(w->close[w->depth], w->f);
        w->depth--;
    }
    if (w->depth == 0)
        fputc('\n', w->f);
}

void jsonw_str(struct jsonw *w, const char *key, const char *val)
{
    sep(w, key);
    if (val)
        jsonw_quote(w->f, val);
    else
        fputs("null", w->f);
}

void jsonw_u64(struct jsonw *w, const char *key, uint64_t v)
{
    sep(w, key);
    fprintf(w->f, "%llu", (unsigned long long)v);
}

void jsonw_dbl(struct jsonw *w, const char *key, double v)
{
    sep(w, key);
    if (isfinite(v))
        fprintf(w->f, "%.3f", v);
    else
        fputs("null", w->f);
}

void jsonw_bool(struct jsonw *w, const char *key, bool v)
{
    sep(w, key);
    fputs(v ? "true" : "false", w->f);
}
