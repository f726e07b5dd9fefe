/*
 * smtp_reply.c - client-side SMTP reply parsing (see smtp_reply.h).
 */
#include "mail/smtp_reply.h"
#include "lib/strutil.h"

#include <stdio.h>
#include <string.h>

void smtp_reply_init(struct smtp_reply *r)
{
    memset(r, 0, sizeof(*r));
}

static int line_code(const char *line, size_t len)
{
    if (len >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' &&
        line[2] >= '0' && line[2] <= '9' && (len == 3 || line[3] == ' ' || line[3] == '-'))
        return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    return 0;
}

/* Length of an enhanced code "c.sss.ddd" at p whose class matches, or 0. */
static size_t enh_at(const char *p, size_t len, char cls)
{
    if (len < 5 || p[0] != cls || p[1] != '.')
        return 0;
    size_t i = 2, dots = 1, digits = 0;
    for (; i < len && i < 15; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            if (++digits > 3)
                return 0;
        } else if (p[i] == '.' && digits > 0 && dots == 1) {
            dots++;
            digits = 0;
        } else {
            break;
        }
    }
    if (dots != 2 || digits == 0 || (i < len && p[i] != ' '))
        return 0;
    return i;
}

bool smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len)
{
    int code = line_code(line, len);
    bool more = code && len > 3 && line[3] == '-';
    const char *text = code && len > 4 ? line + 4 : (code ? "" : line);
    size_t tlen = code ? (len > 4 ? len - 4 : 0) : len;
    if (!r->open) {
        r->code = code ? code : 500;
        r->enh[0] = '\0';
        r->text[0] = '\0';
        r->open = true;
    }
    size_t e = enh_at(text, tlen, (char)('0' + r->code / 100));
    if (e) {
        if (r->enh[0] == '\0') {
            memcpy(r->enh, text, e);
            r->enh[e] = '\0';
        }
        text += e;
        tlen -= e;
        while (tlen && *text == ' ')
            text++, tlen--;
    }
    size_t have = strlen(r->text);
    if (have + 2 < sizeof(r->text) && tlen) {
        size_t room = sizeof(r->text) - have - 2;
        size_t n = tlen < room ? tlen : room;
        if (have)
            r->text[have++] = ' ';
        memcpy(r->text + have, text, n);
        r->text[have + n] = '\0';
    }
    if (more)
        return false;
    if (r->enh[0] == '\0')
        snprintf(r->enh, sizeof(r->enh), "%d.0.0", r->code / 100);
    r->open = false;
    return true;
}

unsigned smtp_ehlo_keyword(const char *text, uint64_t *size)
{
    static const struct { const char *name; unsigned flag; } kw[] = {
        {"PIPELINING", EXT_PIPELINING}, {"STARTTLS", EXT_STARTTLS}, {"DSN", EXT_DSN},
        {"SMTPUTF8", EXT_SMTPUTF8}, {"8BITMIME", EXT_8BITMIME}, {"CHUNKING", EXT_CHUNKING},
        {"ENHANCEDSTATUSCODES", EXT_ENHANCED}, {"SIZE", EXT_SIZE},
    };
    size_t n = strcspn(text, " =");
    for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
        if (strlen(kw[i].name) != n || strncasecmp(text, kw[i].name, n) != 0)
            continue;
        if (kw[i].flag == EXT_SIZE && size) {
            uint64_t v = 0;
            char num[24];
            const char *p = text + n;
            while (*p == ' ' || *p == '=')
                p++;
            str_copy(num, p, sizeof(num));
            num[strcspn(num, " ")] = '\0';
            *size = (num[0] && str_to_u64(num, &v) == 0) ? v : 0;
        }
        return kw[i].flag;
    }
    return 0;
}
