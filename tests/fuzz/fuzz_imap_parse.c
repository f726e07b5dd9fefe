/*
 * fuzz_imap_parse.c - libFuzzer harness for the IMAP response parser.
 */
#include "mail/imap_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct imap_resp *r)
{
    char tmp[64];
    for (size_t i = 0; i < r->ntok; i++) {
        imap_tok_str(&r->tok[i], tmp, sizeof(tmp));
        if (r->tok[i].type == IMAP_LIST)
            (void)imap_fetch_item(r, i, "BODY[");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    struct imap_resp r;
    char err[256];
    imap_resp_init(&r);
    if (imap_parse(copy, size, &r, err, sizeof(err)) == 0)
        walk(&r);
    imap_resp_free(&r);
    free(copy);
    return 0;
}
