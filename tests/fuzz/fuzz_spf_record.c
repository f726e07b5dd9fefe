/*
 * fuzz_spf_record.c - libFuzzer harness for SPF record parsing and macro
 * expansion (RFC 7208 sections 7 and 12): any TXT string either parses or
 * is a permerror, and any macro-string expands within its bounds or fails.
 */
#include "mail/spf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *txt = malloc(size + 8);
    memcpy(txt, "v=spf1 ", 7);
    memcpy(txt + 7, data, size);
    txt[size + 6] = '\0';   /* the last input byte is dropped for the NUL */
    struct spf_record rec;
    char err[160];
    if (spf_parse_record(txt, &rec, err, sizeof(err)) == 0) {
        struct netaddr ip;
        netaddr_parse("2001:db8::cb01", &ip);
        struct spf_macro_ctx m = {.sender = "strong-bad@email.example.com",
                                  .domain = "email.example.com", .ip = &ip,
                                  .helo = "mx.example.org", .receiver = "r.example",
                                  .validated = "unknown", .now = 1};
        for (size_t i = 0; i < rec.n; i++) {
            char out[SPF_EXPAND_MAX];
            if (rec.terms[i].spec &&
                spf_expand(rec.terms[i].spec, &m, rec.terms[i].kind == SPF_MOD_EXP, true,
                           out, sizeof(out)) == 0 && strlen(out) >= sizeof(out))
                __builtin_trap();
        }
        spf_record_free(&rec);
    }
    free(txt);
    return 0;
}
