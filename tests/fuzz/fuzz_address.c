/*
 * fuzz_address.c - libFuzzer harness for the RFC 5321/6531 path parser
 * under every flag combination; checks the parsed parts stay in bounds.
 */
#include "mail/address.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[1100];
    if (size < 1)
        return 0;
    unsigned flags = data[0] & 15;
    size--;
    data++;
    if (size >= sizeof(s))
        size = sizeof(s) - 1;
    memcpy(s, data, size);
    s[size] = '\0';
    struct address a;
    const char *end;
    if (address_parse_path(s, flags, &a, &end) == ADDR_OK) {
        char buf[ADDR_PATH_MAX * 2];
        address_str(&a, buf, sizeof(buf));
        if (strlen(a.local) > ADDR_LOCAL_MAX || strlen(a.domain) > ADDR_DOMAIN_MAX)
            abort();
        if (end < s || end > s + size)
            abort();
        address_has_routing(&a);
    }
    return 0;
}
