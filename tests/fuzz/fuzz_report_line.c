/*
 * fuzz_report_line.c - libFuzzer harness for `sluice report`'s line
 * parsers (syslog header, Postfix, Sendmail, Exim), the journey joiner and
 * the text/JSON writers. The first byte picks the format (auto, postfix,
 * sendmail, exim) and whether --trace is on; the rest is a log.
 */
#include "tools/report.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (devnull == NULL)
        devnull = fopen("/dev/null", "w");
    struct rp_opts o = {.top = 5, .bucket = RP_BUCKET_DEFAULT, .year = 2024};
    o.format = (enum rp_fmt)(data[0] % RP_FMT__COUNT);
    if (data[0] & 0x10)
        o.trace = "3F1A21C0E8B";
    struct rp_ctx c;
    rp_ctx_init(&c, &o);
    c.year.year = 2024;
    c.year.fixed = true;
    static char line[RP_LINE_MAX + 1];
    const uint8_t *p = data + 1, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t m = n < RP_LINE_MAX ? n : RP_LINE_MAX;
        memcpy(line, p, m);
        line[m] = '\0';
        for (size_t i = 0; i < m; i++)
            if (line[i] == '\0')
                line[i] = '?';
        rp_feed_line(&c, line, m);
        p += n + 1;
    }
    rp_ctx_finish(&c);
    if (o.trace) {
        rp_trace_text(&c, devnull);
        rp_trace_json(&c, devnull);
    } else {
        rp_text(&c, devnull);
        rp_json(&c, devnull);
    }
    rp_ctx_free(&c);
    return 0;
}
