/*
 * test_greylist_pool.c - sender normalisation, organisational domains and
 * pool derivation (SPF, confirmed PTR, netmask) on a stub resolver,
 * including forged and generic PTR names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "dns_stub.h"
#include "greylist/normalize.h"
#include "greylist/pool.h"

static void norm_is(const char *in, const char *want)
{
    char out[NORM_ADDR_MAX];
    norm_sender(in, out, sizeof(out));
    assert_string_equal(out, want);
}

static void test_sender_normalisation(void **state)
{
    norm_is("", "");
    norm_is("Ann@Example.ORG", "ann@example.org");
    norm_is("ann+newsletter@example.org", "ann@example.org");
    norm_is("prvs=1234abcdef=ann@example.org", "ann@example.org");
    norm_is("PRVS=0123456789=ann@example.org", "ann@example.org");
    norm_is("msprvs1=19876dead=bounces-ann@example.org", "bounces-ann@example.org");
    norm_is("btv1==1234abcdef==ann@example.org", "ann@example.org");
    norm_is("SRS0=HHH=TT=origin.example=ann@forwarder.example", "ann@origin.example");
    norm_is("SRS1=XXX=fwd1.example==HHH=TT=origin.example=ann@fwd2.example",
            "ann@origin.example");
    norm_is("bounce-12345-ann=x.org@lists.example", "bounce-#-ann=x.org@lists.example");
    norm_is("list-return-987654-ann@lists.example", "list-return-#-ann@lists.example");
    norm_is("bounces.5f3a9b2c7d1e@mailer.example", "bounces.#@mailer.example");
    norm_is("john.smith@example.org", "john.smith@example.org");
    norm_is("user2024@example.org", "user2024@example.org");
    /* the same message retried with a new VERP id normalises the same */
    char a[NORM_ADDR_MAX], b[NORM_ADDR_MAX];
    norm_sender("bounce-mc.us5_123.456-ann=x.org@mcsv.example", a, sizeof(a));
    norm_sender("bounce-mc.us5_789.012-ann=x.org@mcsv.example", b, sizeof(b));
    assert_string_equal(a, b);
}

static void org_is(const char *in, const char *want)
{
    char out[300];
    norm_org_domain(in, out, sizeof(out));
    assert_string_equal(out, want);
}

static void test_org_domain(void **state)
{
    org_is("mail-am1on0123.outbound.protection.outlook.com", "outlook.com");
    org_is("mx.example.co.uk", "example.co.uk");
    org_is("a.b.example.com.au.", "example.com.au");
    org_is("example.com", "example.com");
    org_is("co.uk", "co.uk");
    org_is("localhost", "localhost");
    org_is("MX1.Example.ORG", "example.org");
}

static void test_generic_names(void **state)
{
    struct netaddr a;
    netaddr_parse("157.56.112.123", &a);
    assert_false(pool_name_generic("mail-am1on0123.outbound.protection.outlook.com", &a));
    assert_true(pool_name_generic("123-112-56-157.dyn.example.net", &a));
    assert_true(pool_name_generic("157.56.112.123.static.example.net", &a));
    assert_true(pool_name_generic("host157-56-112-123.example.net", &a));
    assert_true(pool_name_generic("9d38707b.example.net", &a));
    assert_true(pool_name_generic("c157056112123.example.net", &a));
    assert_true(pool_name_generic("adsl-pool.example.net", &a));
    assert_true(pool_name_generic("dynamic.customer.example.net", &a));
    assert_false(pool_name_generic("smtp.example.net", &a));
    assert_false(pool_name_generic("example.net", &a));
    netaddr_parse("2001:db8:1:2::beef", &a);
    assert_true(pool_name_generic("2001-db8-1-2--beef.ip6.example.net", &a));
    assert_false(pool_name_generic("mx6.example.net", &a));
}

static void test_net_keys(void **state)
{
    struct netaddr a;
    char k[POOL_KEY_MAX];
    netaddr_parse("192.0.2.77", &a);
    pool_net_key(&a, 24, 64, k, sizeof(k));
    assert_string_equal(k, "net:192.0.2.0/24");
    pool_net_key(&a, 20, 64, k, sizeof(k));
    assert_string_equal(k, "net:192.0.0.0/20");
    netaddr_parse("2001:db8:1:2:3:4:5:6", &a);
    pool_net_key(&a, 24, 64, k, sizeof(k));
    assert_string_equal(k, "net:2001:db8:1:2::/64");
    pool_net_key(&a, 24, 48, k, sizeof(k));
    assert_string_equal(k, "net:2001:db8:1::/48");
}

static struct pool_id got;
static int ncalls;

static void on_pool(void *arg, const struct pool_id *p)
{
    got = *p;
    ncalls++;
}

static const struct pool_id *derive(const char *ip, const char *sender, const char *helo)
{
    struct dns_iface i = stub_iface();
    struct pool_ctx *c = pool_ctx_new(&i, 24, 64, "mx.example.org", 0);
    struct netaddr a;
    assert_int_equal(netaddr_parse(ip, &a), 0);
    ncalls = 0;
    memset(&got, 0, sizeof(got));
    pool_derive(c, &a, sender, helo, on_pool, NULL);
    assert_int_equal(ncalls, 0);
    stub_run();
    assert_int_equal(ncalls, 1);
    pool_ctx_free(c);
    return &got;
}

/* The Microsoft 365 shape: SPF authorises the cluster's networks. */
static void zone_cluster(void)
{
    stub_reset();
    stub_add("contoso.example", DNS_T_TXT, "v=spf1 include:spf.protection.outlook.com -all");
    stub_add("spf.protection.outlook.com", DNS_T_TXT,
             "v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/14 -all");
    /* a real outbound server: one PTR name that resolves back */
    stub_add("1.10.107.40.in-addr.arpa", DNS_T_PTR,
             "mail-am6eur05on2001.outbound.protection.outlook.com");
    stub_add("mail-am6eur05on2001.outbound.protection.outlook.com", DNS_T_A, "40.107.10.1");
    /* a spammer's own address with a PTR that claims to be Outlook */
    stub_add("9.113.0.203.in-addr.arpa", DNS_T_PTR,
             "i.am.spammer.outbound.protection.outlook.com");
    stub_add("i.am.spammer.outbound.protection.outlook.com", DNS_T_A, "40.107.99.99");
}

static void test_pool_spf(void **state)
{
    zone_cluster();
    const struct pool_id *p = derive("40.107.10.1", "ann@contoso.example", "x");
    assert_int_equal(p->kind, POOL_SPF);
    assert_string_equal(p->key, "spf:contoso.example");
    assert_string_equal(p->spf_match, "spf.protection.outlook.com");
    /* another server of the cluster, another network: the same pool */
    p = derive("52.101.7.8", "Ann+x@Contoso.Example", "y");
    assert_string_equal(p->key, "spf:contoso.example");
    /* the null sender: the HELO identity */
    stub_add("helo.contoso.example", DNS_T_TXT, "v=spf1 ip4:40.107.0.0/16 -all");
    p = derive("40.107.10.1", "", "helo.contoso.example");
    assert_string_equal(p->key, "spf:helo.contoso.example");
}

static void test_pool_forgeries(void **state)
{
    zone_cluster();
    /* SPF fail: a forgery of the cluster's domain gets a netmask key */
    const struct pool_id *p = derive("203.0.113.9", "ann@contoso.example", "x");
    assert_int_equal(p->spf, SPF_FAIL);
    assert_int_equal(p->kind, POOL_NET);
    assert_string_equal(p->key, "net:203.0.113.0/24");
    assert_string_equal(p->ptr_name, "");   /* forged PTR: not confirmed */
    /* softfail too */
    stub_add("soft.example", DNS_T_TXT, "v=spf1 ip4:40.107.0.0/16 ~all");
    p = derive("203.0.113.9", "ann@soft.example", "x");
    assert_int_equal(p->spf, SPF_SOFTFAIL);
    assert_int_equal(p->kind, POOL_NET);
}

static void test_pool_ptr(void **state)
{
    zone_cluster();
    /* no SPF for the sender's domain: the confirmed PTR name decides */
    const struct pool_id *p = derive("40.107.10.1", "ann@nospf.example", "x");
    assert_int_equal(p->spf, SPF_NONE);
    assert_int_equal(p->kind, POOL_PTR);
    assert_string_equal(p->key, "ptr:outlook.com");
    /* generic PTR names: netmask */
    stub_add("5.2.0.192.in-addr.arpa", DNS_T_PTR, "192-0-2-5.dsl.example.net");
    stub_add("192-0-2-5.dsl.example.net", DNS_T_A, "192.0.2.5");
    p = derive("192.0.2.5", "ann@nospf.example", "x");
    assert_int_equal(p->kind, POOL_NET);
    /* several PTR names: netmask */
    stub_add("6.2.0.192.in-addr.arpa", DNS_T_PTR, "a.example.net");
    stub_add("6.2.0.192.in-addr.arpa", DNS_T_PTR, "b.example.net");
    stub_add("a.example.net", DNS_T_A, "192.0.2.6");
    stub_add("b.example.net", DNS_T_A, "192.0.2.6");
    p = derive("192.0.2.6", "ann@nospf.example", "x");
    assert_int_equal(p->kind, POOL_NET);
    /* no PTR at all */
    p = derive("192.0.2.7", "ann@nospf.example", "x");
    assert_string_equal(p->key, "net:192.0.2.0/24");
    assert_false(p->dns_failed);
    /* IPv6 */
    p = derive("2001:db8:aa:bb::1", "ann@nospf.example", "x");
    assert_string_equal(p->key, "net:2001:db8:aa:bb::/64");
}

static void test_pool_dns_failure(void **state)
{
    stub_reset();
    stub_fail("down.example", DNS_T_TXT);
    stub_fail("1.2.0.192.in-addr.arpa", DNS_T_PTR);
    const struct pool_id *p = derive("192.0.2.1", "ann@down.example", "x");
    assert_int_equal(p->kind, POOL_NET);
    assert_true(p->dns_failed);
    /* SPF temperror alone: fall back, no failure */
    stub_reset();
    stub_fail("down.example", DNS_T_TXT);
    p = derive("192.0.2.1", "ann@down.example", "x");
    assert_false(p->dns_failed);
    assert_int_equal(p->spf, SPF_TEMPERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sender_normalisation),
        cmocka_unit_test(test_org_domain),
        cmocka_unit_test(test_generic_names),
        cmocka_unit_test(test_net_keys),
        cmocka_unit_test(test_pool_spf),
        cmocka_unit_test(test_pool_forgeries),
        cmocka_unit_test(test_pool_ptr),
        cmocka_unit_test(test_pool_dns_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
