/*
 * test_spf.c - SPF (RFC 7208) section by section on a stub resolver:
 * record selection (4.5), syntax (4.6, 12), limits (4.6.4), default
 * (4.7), each mechanism (5.1-5.7), redirect and exp (6.1, 6.2), macros
 * (7, with the examples of 7.4), the seven results, and the domain whose
 * record decided.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "dns_stub.h"
#include "mail/spf.h"

static struct spf_outcome last;
static int calls;

static void on_result(void *arg, const struct spf_outcome *o)
{
    last = *o;
    calls++;
}

/* Evaluate check_host(ip, domain, sender) on the stub zone. */
static enum spf_result check(const char *ip, const char *domain, const char *sender)
{
    struct dns_iface i = stub_iface();
    struct spf_ctx *c = spf_ctx_new(&i);
    struct spf_request req;
    memset(&req, 0, sizeof(req));
    assert_int_equal(netaddr_parse(ip, &req.ip), 0);
    req.sender = sender;
    req.helo = "helo.example.net";
    req.domain = domain;
    req.receiver = "mx.example.org";
    calls = 0;
    memset(&last, 0, sizeof(last));
    spf_check(c, &req, on_result, NULL);
    assert_int_equal(calls, 0);   /* never from inside spf_check */
    stub_run();
    assert_int_equal(calls, 1);
    assert_int_equal(spf_pending(c), 0);
    spf_ctx_free(c);
    return last.result;
}

static enum spf_result rec(const char *record, const char *ip)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, record);
    return check(ip, "example.com", "user@example.com");
}

/* 4.3, 4.4, 4.5: which record, none, multiple, NXDOMAIN, temperror */
static void test_record_selection(void **state)
{
    stub_reset();
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_NONE);
    stub_add("example.com", DNS_T_TXT, "some other text");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_NONE);
    stub_add("example.com", DNS_T_TXT, "v=spf10 -all");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_NONE);
    stub_add("example.com", DNS_T_TXT, "v=spf1 -all");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_FAIL);
    stub_add("example.com", DNS_T_TXT, "V=SPF1 +all");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PERMERROR);
    /* not a multi-label domain, over-long label: none without a lookup */
    stub_reset();
    assert_int_equal(check("192.0.2.1", "localhost", "a@localhost"), SPF_NONE);
    char longlabel[100];
    memset(longlabel, 'a', 70);
    strcpy(longlabel + 70, ".example.com");
    assert_int_equal(check("192.0.2.1", longlabel, "a@b"), SPF_NONE);
    stub_fail("example.com", DNS_T_TXT);
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_TEMPERROR);
}

/* 4.6, 12: syntax errors anywhere make a permerror, even after a match */
static void test_syntax(void **state)
{
    assert_int_equal(rec("v=spf1 +all foo:bar", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 ip4:192.0.2.300 -all", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 ip4:192.0.2.0/33 -all", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 ip6:2001:db8::/129 -all", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 include -all", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 include:foo -all", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 a:%{z}.example.com -all", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 exists:%{c}.example.com -all", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 redirect=a.example.com redirect=b.example.com", "192.0.2.1"),
                     SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 exp=a.example.com exp=b.example.com", "192.0.2.1"),
                     SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 all/24", "192.0.2.1"), SPF_PERMERROR);
    assert_int_equal(rec("v=spf1 a/024 -all", "192.0.2.1"), SPF_PERMERROR);
    /* unknown modifiers are ignored; mechanism names are case-insensitive */
    assert_int_equal(rec("v=spf1 foo=bar.%{d} IP4:192.0.2.1 -ALL", "192.0.2.1"), SPF_PASS);
    assert_int_equal(rec("v=spf1", "192.0.2.1"), SPF_NEUTRAL);   /* 4.7 */
    assert_int_equal(rec("v=spf1   ip4:192.0.2.1  ", "192.0.2.1"), SPF_PASS);
    struct spf_record r;
    char err[128];
    assert_int_equal(spf_parse_record("v=spf1 a:example.com/24//64 mx/16 ptr ~all", &r,
                                      err, sizeof(err)), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.terms[0].cidr4, 24);
    assert_int_equal(r.terms[0].cidr6, 64);
    assert_string_equal(r.terms[0].spec, "example.com");
    assert_int_equal(r.terms[1].cidr4, 16);
    assert_int_equal(r.terms[3].qual, '~');
    spf_record_free(&r);
}

/* 2.6 and 4.6.2: the seven results and the qualifiers */
static void test_qualifiers(void **state)
{
    assert_int_equal(rec("v=spf1 +all", "192.0.2.1"), SPF_PASS);
    assert_int_equal(rec("v=spf1 -all", "192.0.2.1"), SPF_FAIL);
    assert_int_equal(rec("v=spf1 ~all", "192.0.2.1"), SPF_SOFTFAIL);
    assert_int_equal(rec("v=spf1 ?all", "192.0.2.1"), SPF_NEUTRAL);
    assert_string_equal(last.mechanism, "?all");
}

/* 5.6: ip4 and ip6 with CIDR lengths; a family never matches the other */
static void test_ip(void **state)
{
    const char *r = "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all";
    assert_int_equal(rec(r, "192.0.2.77"), SPF_PASS);
    assert_int_equal(rec(r, "192.0.3.1"), SPF_FAIL);
    assert_int_equal(rec(r, "2001:db8:1::5"), SPF_PASS);
    assert_int_equal(rec(r, "2001:db9::5"), SPF_FAIL);
    assert_int_equal(rec(r, "::ffff:192.0.2.5"), SPF_PASS);  /* mapped = IPv4 */
    assert_int_equal(rec("v=spf1 ip4:0.0.0.0/0 -all", "2001:db8::1"), SPF_FAIL);
}

/* 5.3: a, with a domain and dual CIDR */
static void test_a(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 a a:mail.example.com/28//64 -all");
    stub_add("example.com", DNS_T_A, "192.0.2.10");
    stub_add("mail.example.com", DNS_T_A, "198.51.100.1");
    stub_add("mail.example.com", DNS_T_AAAA, "2001:db8:5::1");
    assert_int_equal(check("192.0.2.10", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(check("192.0.2.11", "example.com", "a@example.com"), SPF_FAIL);
    assert_int_equal(check("198.51.100.14", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(check("198.51.100.16", "example.com", "a@example.com"), SPF_FAIL);
    assert_int_equal(check("2001:db8:5::ffff", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(last.lookups, 2);
    stub_fail("example.com", DNS_T_A);
    assert_int_equal(check("192.0.2.10", "example.com", "a@example.com"), SPF_TEMPERROR);
}

/* 5.4: mx, sorted exchanges, their addresses, null MX, limit of 10 */
static void test_mx(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 mx -all");
    stub_add("example.com", DNS_T_MX, "10 mx1.example.com");
    stub_add("example.com", DNS_T_MX, "20 mx2.example.com");
    stub_add("mx1.example.com", DNS_T_A, "192.0.2.1");
    stub_add("mx2.example.com", DNS_T_A, "192.0.2.2");
    assert_int_equal(check("192.0.2.2", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(check("192.0.2.3", "example.com", "a@example.com"), SPF_FAIL);
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 mx -all");
    for (int i = 0; i < 11; i++) {
        char h[64];
        snprintf(h, sizeof(h), "%d mx%d.example.com", i, i);
        stub_add("example.com", DNS_T_MX, h);
    }
    assert_int_equal(check("192.0.2.3", "example.com", "a@example.com"), SPF_PERMERROR);
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 mx ?all");
    stub_add("example.com", DNS_T_MX, "0 .");
    assert_int_equal(check("192.0.2.3", "example.com", "a@example.com"), SPF_NEUTRAL);
}

/* 5.5: ptr, validated names within the target domain */
static void test_ptr(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 ptr -all");
    stub_add("1.2.0.192.in-addr.arpa", DNS_T_PTR, "mail.example.com");
    stub_add("mail.example.com", DNS_T_A, "192.0.2.1");
    stub_add("2.2.0.192.in-addr.arpa", DNS_T_PTR, "forged.example.com");
    stub_add("forged.example.com", DNS_T_A, "192.0.2.99");
    stub_add("3.2.0.192.in-addr.arpa", DNS_T_PTR, "mail.example.net");
    stub_add("mail.example.net", DNS_T_A, "192.0.2.3");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(check("192.0.2.2", "example.com", "a@example.com"), SPF_FAIL);
    assert_int_equal(check("192.0.2.3", "example.com", "a@example.com"), SPF_FAIL);
    assert_int_equal(check("192.0.2.4", "example.com", "a@example.com"), SPF_FAIL);
    stub_fail("5.2.0.192.in-addr.arpa", DNS_T_PTR);  /* DNS error: no match */
    assert_int_equal(check("192.0.2.5", "example.com", "a@example.com"), SPF_FAIL);
}

/* 5.7: exists, always an A query */
static void test_exists(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all");
    stub_add("1.2.0.192.joe._spf.example.com", DNS_T_A, "127.0.0.2");
    assert_int_equal(check("192.0.2.1", "example.com", "joe@example.com"), SPF_PASS);
    assert_int_equal(check("192.0.2.1", "example.com", "ann@example.com"), SPF_FAIL);
}

/* 5.2: include; pass matches, fail/softfail/neutral do not, none and
 * errors propagate; the matching record's domain is reported */
static void test_include(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 include:_spf.other.example include:spf.cluster.example -all");
    stub_add("_spf.other.example", DNS_T_TXT, "v=spf1 ip4:198.51.100.0/24 ~all");
    stub_add("spf.cluster.example", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 -all");
    assert_int_equal(check("192.0.2.9", "example.com", "a@example.com"), SPF_PASS);
    assert_string_equal(last.match_domain, "spf.cluster.example");
    assert_string_equal(last.mechanism, "+ip4");
    assert_int_equal(check("198.51.100.9", "example.com", "a@example.com"), SPF_PASS);
    assert_string_equal(last.match_domain, "_spf.other.example");
    assert_int_equal(check("203.0.113.9", "example.com", "a@example.com"), SPF_FAIL);
    assert_string_equal(last.match_domain, "example.com");
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 include:none.example -all");
    assert_int_equal(check("192.0.2.9", "example.com", "a@example.com"), SPF_PERMERROR);
    stub_add("none.example", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 foo");
    assert_int_equal(check("192.0.2.9", "example.com", "a@example.com"), SPF_PERMERROR);
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 include:t.example -all");
    stub_fail("t.example", DNS_T_TXT);
    assert_int_equal(check("192.0.2.9", "example.com", "a@example.com"), SPF_TEMPERROR);
}

/* 6.1: redirect, used only when no mechanism matched */
static void test_redirect(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 ip4:192.0.2.1 redirect=_spf.example.net");
    stub_add("_spf.example.net", DNS_T_TXT, "v=spf1 ip4:198.51.100.0/24 -all");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(check("198.51.100.5", "example.com", "a@example.com"), SPF_PASS);
    assert_string_equal(last.match_domain, "_spf.example.net");
    assert_int_equal(check("203.0.113.5", "example.com", "a@example.com"), SPF_FAIL);
    /* a redirect overrides nothing when all is present */
    assert_int_equal(rec("v=spf1 -all redirect=_spf.example.net", "198.51.100.5"), SPF_FAIL);
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 redirect=nothing.example");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PERMERROR);
}

/* 6.2: exp, expanded with the explanation-only macros */
static void test_exp(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 -all exp=explain._spf.%{d}");
    stub_add("explain._spf.example.com", DNS_T_TXT,
             "%{i} is not one of %{d}'s designated mail servers (%{c}, %{r})");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_FAIL);
    assert_string_equal(last.explanation, "192.0.2.1 is not one of example.com's "
                        "designated mail servers (192.0.2.1, mx.example.org)");
}

/* 4.6.4: ten DNS-querying terms, two void lookups */
static void test_limits(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 a:a1.example.com a:a2.example.com "
             "a:a3.example.com a:a4.example.com a:a5.example.com a:a6.example.com "
             "a:a7.example.com a:a8.example.com a:a9.example.com a:a10.example.com "
             "a:a11.example.com -all");
    for (int i = 1; i <= 11; i++) {
        char n[64];
        snprintf(n, sizeof(n), "a%d.example.com", i);
        stub_add(n, DNS_T_A, "203.0.113.1");
    }
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PERMERROR);
    assert_int_equal(last.lookups, 11);
    /* exactly ten are fine */
    stub_zone[0].value[strlen(stub_zone[0].value) - strlen(" a:a11.example.com -all")] = 0;
    strcat(stub_zone[0].value, " -all");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_FAIL);
    /* includes count too, also as a loop */
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 include:example.com -all");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PERMERROR);
    /* void lookups: the third one is a permerror */
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 a:v1.example.com a:v2.example.com "
             "ip4:192.0.2.1 a:v3.example.com -all");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(check("192.0.2.2", "example.com", "a@example.com"), SPF_PERMERROR);
    assert_int_equal(last.void_lookups, 3);
}

static void expand_is(const char *spec, const char *ip, const char *want)
{
    struct netaddr a;
    netaddr_parse(ip, &a);
    struct spf_macro_ctx m = {
        .sender = "strong-bad@email.example.com", .domain = "email.example.com",
        .ip = &a, .helo = "mx.example.org", .receiver = "rcv.example",
        .validated = "mx.example.org", .now = 1000,
    };
    char out[SPF_EXPAND_MAX];
    assert_int_equal(spf_expand(spec, &m, true, false, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

/* 7.4: the RFC's own examples */
static void test_macros(void **state)
{
    expand_is("%{s}", "192.0.2.3", "strong-bad@email.example.com");
    expand_is("%{o}", "192.0.2.3", "email.example.com");
    expand_is("%{d}", "192.0.2.3", "email.example.com");
    expand_is("%{d4}", "192.0.2.3", "email.example.com");
    expand_is("%{d3}", "192.0.2.3", "email.example.com");
    expand_is("%{d2}", "192.0.2.3", "example.com");
    expand_is("%{d1}", "192.0.2.3", "com");
    expand_is("%{dr}", "192.0.2.3", "com.example.email");
    expand_is("%{d2r}", "192.0.2.3", "example.email");
    expand_is("%{l}", "192.0.2.3", "strong-bad");
    expand_is("%{l-}", "192.0.2.3", "strong.bad");
    expand_is("%{lr}", "192.0.2.3", "strong-bad");
    expand_is("%{lr-}", "192.0.2.3", "bad.strong");
    expand_is("%{l1r-}", "192.0.2.3", "strong");
    expand_is("%{ir}.%{v}._spf.%{d2}", "192.0.2.3", "3.2.0.192.in-addr._spf.example.com");
    expand_is("%{lr-}.lp._spf.%{d2}", "192.0.2.3", "bad.strong.lp._spf.example.com");
    expand_is("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "192.0.2.3",
              "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
    expand_is("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "192.0.2.3",
              "3.2.0.192.in-addr.strong.lp._spf.example.com");
    expand_is("%{d2}.trusted-domains.example.net", "192.0.2.3",
              "example.com.trusted-domains.example.net");
    expand_is("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01",
              "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
    expand_is("%%%_%-", "192.0.2.3", "% %20");
    expand_is("%{S}", "192.0.2.3", "strong-bad%40email.example.com");
    expand_is("%{c} %{r} %{t} %{h} %{p}", "2001:db8::cb01",
              "2001:db8::cb01 rcv.example 1000 mx.example.org mx.example.org");
    struct netaddr a;
    netaddr_parse("192.0.2.3", &a);
    struct spf_macro_ctx m = {.sender = "a@b.c", .domain = "b.c", .ip = &a, .helo = "h"};
    char out[64];
    assert_int_equal(spf_expand("%{d0}", &m, false, false, out, sizeof(out)), -1);
    assert_int_equal(spf_expand("%{c}", &m, false, false, out, sizeof(out)), -1);
    assert_int_equal(spf_expand("%x", &m, false, false, out, sizeof(out)), -1);
    assert_int_equal(spf_expand("%{d", &m, false, false, out, sizeof(out)), -1);
}

/* 7.3: %{p} resolved before use; null sender uses postmaster@helo */
static void test_p_macro_and_null_sender(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 exists:%{p}.ok.example.com -all");
    stub_add("1.2.0.192.in-addr.arpa", DNS_T_PTR, "host.example.com");
    stub_add("host.example.com", DNS_T_A, "192.0.2.1");
    stub_add("host.example.com.ok.example.com", DNS_T_A, "127.0.0.2");
    assert_int_equal(check("192.0.2.1", "example.com", "a@example.com"), SPF_PASS);
    assert_int_equal(check("192.0.2.2", "example.com", "a@example.com"), SPF_FAIL);
    stub_reset();
    stub_add("helo.example.net", DNS_T_TXT, "v=spf1 exists:%{l}.%{o} -all");
    stub_add("postmaster.helo.example.net", DNS_T_A, "127.0.0.2");
    assert_int_equal(check("192.0.2.1", "helo.example.net", ""), SPF_PASS);
}

/* Cancelling an evaluation in flight: no callback, nothing leaks. */
static void test_cancel(void **state)
{
    stub_reset();
    stub_add("example.com", DNS_T_TXT, "v=spf1 -all");
    struct dns_iface i = stub_iface();
    struct spf_ctx *c = spf_ctx_new(&i);
    struct spf_request req = {.sender = "a@example.com", .helo = "h", .domain = "example.com"};
    netaddr_parse("192.0.2.1", &req.ip);
    calls = 0;
    uint64_t id = spf_check(c, &req, on_result, NULL);
    spf_check(c, &req, on_result, NULL);
    spf_cancel(c, id);
    stub_run();
    assert_int_equal(calls, 1);
    spf_check(c, &req, on_result, NULL);
    spf_ctx_free(c);   /* cancels the one left */
    stub_run();
    assert_int_equal(calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_selection),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_qualifiers),
        cmocka_unit_test(test_ip),
        cmocka_unit_test(test_a),
        cmocka_unit_test(test_mx),
        cmocka_unit_test(test_ptr),
        cmocka_unit_test(test_exists),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_p_macro_and_null_sender),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
