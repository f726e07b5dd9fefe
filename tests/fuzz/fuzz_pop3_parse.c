/*
 * fuzz_pop3_parse.c - libFuzzer harness for POP3 reply parsing: the input
 * is cut into lines; the first is a status line, the rest a multi-line
 * reply read as a body and as UIDL and LIST scan lines.
 */
#include "mail/pop3_parse.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    struct buf body;
    buf_init(&body, 4096);
    bool first = true;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t ln = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
        if (first) {
            const char *text;
            (void)pop3_status(p, ln, &text);
            first = false;
        } else {
            uint32_t num;
            uint64_t sz;
            char uidl[POP3_UIDL_MAX + 1];
            (void)pop3_uidl_line(p, ln, &num, uidl, sizeof(uidl));
            (void)pop3_list_line(p, ln, &num, &sz);
            if (pop3_body_line(&body, p, ln) != 0)
                break;
        }
        p += nl ? n + 1 : n;
    }
    buf_free(&body);
    return 0;
}
