/*
 * fuzz_smtp_reply.c - libFuzzer harness for the client-side reply parser:
 * the input is split into lines and fed as a peer would send them.
 */
#include "mail/smtp_reply.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_reply r;
    smtp_reply_init(&r);
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (smtp_reply_feed(&r, p, len)) {
            if (r.code < 200 || r.code > 599 || strlen(r.text) >= sizeof(r.text) ||
                strlen(r.enh) >= sizeof(r.enh))
                abort();
        }
        /* the client hands C strings (evbuffer_readln) to the keyword parser */
        char line[4096];
        size_t n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        uint64_t size_v;
        if (n > 4)
            smtp_ehlo_keyword(line + 4, &size_v);
        p += len + 1;
    }
    return 0;
}
