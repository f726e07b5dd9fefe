/*
 * fuzz_spf_eval.c - libFuzzer harness for the SPF evaluator (spf.c) on the
 * stub resolver: input lines become the TXT records of a.test, b.test, ...
 * (includes, redirects and macros between them are the fuzzer's to find);
 * every evaluation must end with exactly one result, within the lookup
 * limits, whatever the records say.
 */
#include "../unit/dns_stub.h"
#include "mail/spf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int results;
static unsigned lookups;

static void on_result(void *arg, const struct spf_outcome *o)
{
    results++;
    lookups = o->lookups;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"a.test", "b.test", "c.test", "d.test",
                                        "e.test", "f.test", "g.test", "h.test"};
    stub_reset();
    const char *p = (const char *)data, *end = p + size;
    for (size_t i = 0; i < 8 && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char rec[500];
        if (len >= sizeof(rec))
            len = sizeof(rec) - 1;
        memcpy(rec, p, len);
        rec[len] = '\0';
        if (strlen(rec) == len)
            stub_add(names[i], DNS_T_TXT, rec);
        p += len + (nl ? 1 : 0);
    }
    stub_add("a.test", DNS_T_A, "192.0.2.1");
    stub_add("b.test", DNS_T_MX, "10 a.test");
    stub_add("1.2.0.192.in-addr.arpa", DNS_T_PTR, "a.test");
    struct dns_iface i = stub_iface();
    struct spf_ctx *c = spf_ctx_new(&i);
    struct spf_request req = {.sender = "x@a.test", .helo = "h.test", .domain = "a.test",
                              .receiver = "mx.test"};
    netaddr_parse("192.0.2.1", &req.ip);
    results = 0;
    spf_check(c, &req, on_result, NULL);
    stub_run();
    if (results != 1 || lookups > SPF_MAX_LOOKUPS + 1 || stub_queries > 400)
        __builtin_trap();
    spf_ctx_free(c);
    return 0;
}
