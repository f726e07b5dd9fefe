/*
 * fuzz_journal.c - libFuzzer harness for the commit journal's segment and
 * checkpoint parsers: a segment left by a crash (torn, stale, damaged) is
 * read at every start, so no input may crash it or make it report a
 * record outside the image.
 */
#include "queue/journal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct bounds {
    const uint8_t *lo, *hi;
    uint64_t last;
};

static void check(void *arg, int type, uint64_t seq, const char *qid,
                  const unsigned char *payload, size_t len)
{
    struct bounds *b = arg;
    if (payload < b->lo || payload + len > b->hi || seq <= b->last || strlen(qid) != 16 ||
        (type != JOURNAL_REC_MESSAGE && type != JOURNAL_REC_GONE))
        abort();
    b->last = seq;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bounds b = {data, data + size, 0};
    if (journal_parse(data, size, check, &b) > size)
        abort();
    (void)journal_parse_checkpoint(data, size);
    return 0;
}
