/*
 * json.c - JSON string escaping (see json.h).
 */
#include "lib/json.h"

#include <stdio.h>

/* Length of a valid UTF-8 sequence at p, or 0. */
static size_t utf8_len(const unsigned char *p)
{
    if (p[0] >= 0xc2 && p[0] <= 0xdf && (p[1] & 0xc0) == 0x80)
        return 2;
    if (p[0] >= 0xe0 && p[0] <= 0xef && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80)
        return 3;
    if (p[0] >= 0xf0 && p[0] <= 0xf4 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 &&
        (p[3] & 0xc0) == 0x80)
        return 4;
    return 0;
}

void json_str(struct buf *b, const char *s)
{
    buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        if (*p == '"' || *p == '\\') {
            buf_putc(b, '\\');
            buf_putc(b, (char)*p++);
        } else if (*p < 0x20 || *p == 0x7f) {
            buf_printf(b, "\\u%04x", *p++);
        } else if (*p < 0x80) {
            buf_putc(b, (char)*p++);
        } else {
            size_t n = utf8_len(p);
            if (n) {
                buf_append(b, p, n);
                p += n;
            } else {
                buf_puts(b, "\\ufffd");
                p++;
            }
        }
    }
    buf_putc(b, '"');
}

void json_key(struct buf *b, const char *key, int first)
{
    if (!first)
        buf_putc(b, ',');
    json_str(b, key);
    buf_putc(b, ':');
}
