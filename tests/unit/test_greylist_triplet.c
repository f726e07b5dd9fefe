/*
 * test_greylist_triplet.c - greylisting records and decisions: delay,
 * window, passing, the retry's pool, auto-allow after passes an interval
 * apart, the null sender; record text round trips; the policy attribute
 * parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "greylist/policy_attr.h"
#include "greylist/pool.h"
#include "greylist/triplet.h"

static const struct triplet_params P = {.delay = 120, .window = 48 * 3600,
                                        .aa_interval = 3600, .aa_count = 2};

struct world {
    struct triplet t;
    struct triplet_aa aa;
    bool have_t, have_aa;
};

static struct triplet_verdict attempt(struct world *w, unsigned kind, const char *ip,
                                      uint64_t now)
{
    struct triplet_verdict v;
    if (!w->have_t) {
        memset(&w->t, 0, sizeof(w->t));
        strcpy(w->t.pool, "spf:example.com");
        strcpy(w->t.sender, "ann@example.com");
        strcpy(w->t.rcpt, "bob@example.org");
    }
    if (!w->have_aa) {
        memset(&w->aa, 0, sizeof(w->aa));
        strcpy(w->aa.pool, "spf:example.com");
        strcpy(w->aa.domain, "example.com");
    }
    triplet_decide(&P, &w->t, w->have_t, &w->aa, w->have_aa, kind, triplet_ip_hash(ip), now, &v);
    /* store what the engine would store, through the text form */
    char buf[2048];
    if (v.write_t) {
        triplet_format(&w->t, buf, sizeof(buf));
        assert_int_equal(triplet_parse(buf, &w->t), 0);
        w->have_t = true;
    }
    if (v.write_aa) {
        triplet_aa_format(&w->aa, buf, sizeof(buf));
        assert_int_equal(triplet_aa_parse(buf, &w->aa), 0);
        w->have_aa = true;
    }
    return v;
}

static void test_delay_and_pass(void **state)
{
    struct world w = {0};
    struct triplet_verdict v = attempt(&w, POOL_SPF, "40.107.1.1", 1000);
    assert_int_equal(v.action, TRIPLET_DEFER);
    assert_string_equal(v.reason, "new");
    assert_int_equal(v.retry_in, 120);
    v = attempt(&w, POOL_SPF, "52.100.1.1", 1060);      /* too early */
    assert_int_equal(v.action, TRIPLET_DEFER);
    assert_string_equal(v.reason, "early");
    assert_int_equal(v.retry_in, 60);
    v = attempt(&w, POOL_SPF, "40.92.7.7", 1130);       /* after the delay */
    assert_int_equal(v.action, TRIPLET_ACCEPT);
    assert_string_equal(v.reason, "retry");
    assert_int_equal(v.delayed, 130);
    assert_int_equal(w.t.waited, 130);
    assert_int_equal(w.t.nips, 3);                      /* three servers, one triplet */
    v = attempt(&w, POOL_SPF, "40.92.7.8", 1200);
    assert_int_equal(v.action, TRIPLET_ACCEPT);
    assert_string_equal(v.reason, "passed");
    assert_int_equal(v.delayed, 0);
}

static void test_window(void **state)
{
    struct world w = {0};
    attempt(&w, POOL_NET, "192.0.2.1", 1000);
    struct triplet_verdict v = attempt(&w, POOL_NET, "192.0.2.1", 1000 + 48 * 3600 + 1);
    assert_int_equal(v.action, TRIPLET_DEFER);
    assert_string_equal(v.reason, "new");               /* a never-retried one restarts */
    assert_int_equal(w.t.first, 1000 + 48 * 3600 + 1);
}

static void test_weaker_pool(void **state)
{
    struct world w = {0};
    attempt(&w, POOL_SPF, "192.0.2.1", 1000);
    struct triplet_verdict v = attempt(&w, POOL_NET, "192.0.2.1", 2000);
    assert_int_equal(v.action, TRIPLET_DEFER);         /* not as strong: starts over */
    assert_string_equal(v.reason, "new");
}

static void test_auto_allow(void **state)
{
    struct world w = {0};
    attempt(&w, POOL_SPF, "40.107.1.1", 1000);
    attempt(&w, POOL_SPF, "40.107.1.2", 1200);          /* pass 1 */
    assert_int_equal(w.aa.count, 1);
    assert_false(w.aa.allowed);
    attempt(&w, POOL_SPF, "40.107.1.3", 1300);          /* within the hour: not counted */
    assert_int_equal(w.aa.count, 1);
    attempt(&w, POOL_SPF, "40.107.1.4", 1200 + 3600);   /* pass 2, an hour later */
    assert_int_equal(w.aa.count, 2);
    assert_true(w.aa.allowed);
    /* a new recipient from the same pool and sender domain: accepted */
    w.have_t = false;
    struct triplet_verdict v = attempt(&w, POOL_SPF, "40.107.1.5", 5000);
    assert_int_equal(v.action, TRIPLET_ACCEPT);
    assert_string_equal(v.reason, "auto-allowed");
    assert_false(v.write_t);
}

static void test_null_sender_never_auto_allowed(void **state)
{
    struct world w = {0};
    w.have_aa = true;
    memset(&w.aa, 0, sizeof(w.aa));
    attempt(&w, POOL_NET, "192.0.2.1", 1000);
    attempt(&w, POOL_NET, "192.0.2.1", 1200);
    attempt(&w, POOL_NET, "192.0.2.1", 9000);
    attempt(&w, POOL_NET, "192.0.2.1", 19000);
    assert_false(w.aa.allowed);
}

static void test_records(void **state)
{
    struct triplet t;
    assert_int_equal(triplet_parse("garbage", &t), -1);
    assert_int_equal(triplet_parse("T1\t1\t2\t3\t3\t4\t5\t-\tp\t<>\tr", &t), 0);
    assert_string_equal(t.sender, "");
    assert_int_equal(t.nips, 0);
    char k1[TRIPLET_KEY_LEN + 1], k2[TRIPLET_KEY_LEN + 1];
    triplet_key("spf:a", "b", "c", k1);
    triplet_key("spf:ab", "", "c", k2);
    assert_int_equal(strlen(k1), TRIPLET_KEY_LEN);
    assert_string_not_equal(k1, k2);                    /* parts are delimited */
    assert_memory_equal(k1, "gl:t:", 5);
    triplet_aa_key("spf:a", "b", k2);
    assert_memory_equal(k2, "gl:a:", 5);
    struct triplet_aa a;
    assert_int_equal(triplet_aa_parse("A1\t1\t2\t3\t4\tx\tp\td", &a), -1);
}

static enum policy_feed feed(struct policy_req *r, const char *line)
{
    return policy_req_feed(r, line, strlen(line));
}

static void test_policy_attrs(void **state)
{
    struct policy_req r;
    policy_req_init(&r);
    assert_int_equal(feed(&r, "request=smtpd_access_policy"), POLICY_MORE);
    assert_int_equal(feed(&r, "client_address=192.0.2.1\r"), POLICY_MORE);
    assert_int_equal(feed(&r, "sender="), POLICY_MORE);
    assert_int_equal(feed(&r, "recipient=bob@example.org"), POLICY_MORE);
    assert_int_equal(feed(&r, "future_attribute=whatever=x"), POLICY_MORE);
    assert_int_equal(feed(&r, ""), POLICY_END);
    assert_string_equal(r.request, "smtpd_access_policy");
    assert_string_equal(r.client_address, "192.0.2.1");
    assert_string_equal(r.recipient, "bob@example.org");
    assert_false(r.oversize);
    assert_int_equal(feed(&r, "no equals sign"), POLICY_BAD);
    assert_int_equal(feed(&r, "=value"), POLICY_BAD);
    char big[2048];
    memset(big, 'a', sizeof(big));
    memcpy(big, "recipient=", 10);
    big[sizeof(big) - 1] = '\0';
    policy_req_init(&r);
    assert_int_equal(feed(&r, big), POLICY_MORE);
    assert_true(r.oversize);
    big[500] = '\0';                                    /* over the field, under the line */
    policy_req_init(&r);
    assert_int_equal(feed(&r, big), POLICY_MORE);
    assert_true(r.oversize);
    policy_req_init(&r);
    for (int i = 0; i < POLICY_ATTRS_MAX + 5; i++)
        feed(&r, "x=y");
    assert_true(r.too_many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_and_pass),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_weaker_pool),
        cmocka_unit_test(test_auto_allow),
        cmocka_unit_test(test_null_sender_never_auto_allowed),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_policy_attrs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
