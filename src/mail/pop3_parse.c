/*
 * pop3_parse.c - POP3 reply parsing (see pop3_parse.h).
 */
#include "mail/pop3_parse.h"
#include "lib/strutil.h"

#include <string.h>
#include <strings.h>

int pop3_status(const char *line, size_t len, const char **text)
{
    static const struct {
        const char *word;
        int value;
    } words[] = {{"+OK", 1}, {"-ERR", 0}};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i].word);
        if (len >= n && strncasecmp(line, words[i].word, n) == 0 &&
            (len == n || line[n] == ' ')) {
            *text = line + (len > n ? n + 1 : n);
            return words[i].value;
        }
    }
    *text = line;
    return -1;
}

int pop3_body_line(struct buf *body, const char *line, size_t len)
{
    if (len == 1 && line[0] == '.')
        return 1;
    if (len > 0 && line[0] == '.') {
        line++;
        len--;
    }
    if (buf_append(body, line, len) < 0 || buf_append(body, "\r\n", 2) < 0)
        return -1;
    return 0;
}

/* Leading decimal message number (1..2^32-1) and one space. */
static int msgnum(const char **p, const char *end, uint32_t *num)
{
    uint64_t v = 0;
    int d = 0;
    while (*p < end && **p >= '0' && **p <= '9' && d < 11) {
        v = v * 10 + (uint64_t)(**p - '0');
        (*p)++;
        d++;
    }
    if (d == 0 || d > 10 || v == 0 || v > UINT32_MAX || *p >= end || **p != ' ')
        return -1;
    while (*p < end && **p == ' ')
        (*p)++;
    *num = (uint32_t)v;
    return 0;
}

int pop3_uidl_line(const char *line, size_t len, uint32_t *num, char *uidl, size_t cap)
{
    const char *p = line, *end = line + len;
    if (msgnum(&p, end, num) < 0)
        return -1;
    while (end > p && end[-1] == ' ')
        end--;
    size_t n = (size_t)(end - p);
    if (n == 0 || n > POP3_UIDL_MAX || n >= cap)
        return -1;
    for (const char *q = p; q < end; q++)
        if ((unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e)
            return -1;
    memcpy(uidl, p, n);
    uidl[n] = '\0';
    return 0;
}

int pop3_list_line(const char *line, size_t len, uint32_t *num, uint64_t *size)
{
    const char *p = line, *end = line + len;
    if (msgnum(&p, end, num) < 0)
        return -1;
    char tmp[24];
    size_t n = 0;
    while (p < end && *p >= '0' && *p <= '9' && n + 1 < sizeof(tmp))
        tmp[n++] = *p++;
    tmp[n] = '\0';
    if (p < end && *p != ' ')
        return -1;
    return str_to_u64(tmp, size);
}
