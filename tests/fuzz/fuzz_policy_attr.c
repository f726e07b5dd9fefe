/*
 * fuzz_policy_attr.c - libFuzzer harness for the Postfix policy attribute
 * parser: any byte stream, split into lines as the server splits it, must
 * parse without overflowing a field.
 */
#include "greylist/policy_attr.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_req r;
    policy_req_init(&r);
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > POLICY_LINE_MAX)
            policy_req_oversize(&r);
        else if (policy_req_feed(&r, p, len) == POLICY_END)
            policy_req_init(&r);
        p += len + (nl ? 1 : 0);
    }
    /* every field stays NUL-terminated within its bounds */
    if (strlen(r.recipient) >= sizeof(r.recipient) || strlen(r.sender) >= sizeof(r.sender))
        __builtin_trap();
    return 0;
}
