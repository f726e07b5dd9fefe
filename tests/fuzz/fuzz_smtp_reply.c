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
        uint64_t size_v;
        if (len > 4)
            smtp_ehlo_keyword(len > 4 ? p + 4 : p, &size_v);
        p += len + 1;
    }
    return 0;
}
