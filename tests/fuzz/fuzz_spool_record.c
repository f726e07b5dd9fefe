/*
 * fuzz_spool_record.c - libFuzzer harness for the queue file parser (a
 * damaged spool must be detected, never crash the server at start) and
 * for the /proc/meminfo reader of the sync thread.
 */
#include "queue/spool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct spool_envelope env;
    char err[128];
    if (spool_envelope_parse((const char *)data, size, &env, err, sizeof(err)) == 0) {
        if (env.content_offset + env.content_length > size)
            abort();
        spool_envelope_free(&env);
    }
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (spool_meminfo_dirty_kb(text) < -1)
        abort();
    free(text);
    return 0;
}
