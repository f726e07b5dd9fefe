/*
 * test_dns.c - the async resolver (src/lib/dns.c): wire-name decoding,
 * reverse names, bad names answered later, cancellation, a dead forwarder
 * timing out as DNS_TEMPFAIL; and, when dnsmasq is installed, real typed
 * answers from a private dnsmasq (A, AAAA, MX sorted, TXT strings joined,
 * PTR, NXDOMAIN, NODATA).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/dns.h"

static void test_wire_names(void **state)
{
    char out[64];
    const unsigned char mx[] = "\x03mx1\x07""example\x03org";
    assert_int_equal(dns_rdata_name(mx, sizeof(mx), out, sizeof(out)), 17);
    assert_string_equal(out, "mx1.example.org");
    const unsigned char root[] = {0};
    assert_int_equal(dns_rdata_name(root, 1, out, sizeof(out)), 1);
    assert_string_equal(out, ".");
    const unsigned char bad[] = "\x09short";
    assert_int_equal(dns_rdata_name(bad, sizeof(bad) - 1, out, sizeof(out)), -1);
    const unsigned char ptr[] = "\xc0\x0c";   /* compression: never valid here */
    assert_int_equal(dns_rdata_name(ptr, 2, out, sizeof(out)), -1);
    assert_int_equal(dns_rdata_name(mx, sizeof(mx), out, 8), -1);   /* too small */
}

static void test_reverse_names(void **state)
{
    struct netaddr a;
    char out[80];
    netaddr_parse("192.0.2.10", &a);
    dns_reverse_name(&a, out, sizeof(out));
    assert_string_equal(out, "10.2.0.192.in-addr.arpa");
    netaddr_parse("2001:db8::567:89ab", &a);
    dns_reverse_name(&a, out, sizeof(out));
    assert_string_equal(out, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
}

/* ---- queries on a real loop ---- */

#define MAXR 16
struct got {
    int n;
    struct {
        enum dns_status st;
        char text[256];
    } r[MAXR];
};

static struct event_base *base;
static int outstanding;

static void collect(void *arg, const struct dns_result *res)
{
    struct got *g = arg;
    int i = g->n++;
    g->r[i].st = res->status;
    char *t = g->r[i].text;
    size_t len = sizeof(g->r[i].text), o = 0;
    t[0] = '\0';
    for (size_t k = 0; k < res->n && o < len - 1; k++) {
        char a[64];
        switch (res->type) {
        case DNS_T_A: case DNS_T_AAAA:
            o += (size_t)snprintf(t + o, len - o, "%s%s", k ? " " : "", netaddr_str(&res->addrs[k], a, sizeof(a)));
            break;
        case DNS_T_MX:
            o += (size_t)snprintf(t + o, len - o, "%s%u %s", k ? " " : "", res->mx[k].pref, res->mx[k].host);
            break;
        case DNS_T_TXT:
            o += (size_t)snprintf(t + o, len - o, "%s%s", k ? "|" : "", res->txt[k]);
            break;
        case DNS_T_PTR:
            o += (size_t)snprintf(t + o, len - o, "%s%s", k ? " " : "", res->names[k]);
            break;
        }
    }
    if (--outstanding == 0)
        event_base_loopbreak(base);
}

static void run_loop(void)
{
    struct timeval tv = {10, 0};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void test_badname_cancel_and_dead_forwarder(void **state)
{
    char err[256];
    base = event_base_new();
    /* nothing listens on port 9 of the loopback: every answer is a timeout */
    struct dns *d = dns_new(base, "127.0.0.1@9", 300, err, sizeof(err));
    assert_non_null(d);
    struct got g = {0};
    outstanding = 2;
    dns_query(d, "a..b.example", DNS_T_A, collect, &g);
    assert_int_equal(g.n, 0);                     /* never from inside dns_query */
    uint64_t id = dns_query(d, "x.example", DNS_T_A, collect, &g);
    dns_cancel(d, id);                            /* no callback for this one */
    dns_query(d, "y.example", DNS_T_TXT, collect, &g);
    run_loop();
    assert_int_equal(g.n, 2);
    assert_int_equal(g.r[0].st, DNS_BADNAME);
    assert_int_equal(g.r[1].st, DNS_TEMPFAIL);
    assert_int_equal(dns_pending(d), 0);
    dns_query(d, "z.example", DNS_T_A, collect, &g);
    dns_free(d);                                  /* cancels, no callback */
    assert_int_equal(g.n, 2);
    assert_null(dns_new(base, "not-an-address", 300, err, sizeof(err)));
    event_base_free(base);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    bind(s, (struct sockaddr *)&sin, sizeof(sin));
    getsockname(s, (struct sockaddr *)&sin, &sl);
    close(s);
    return ntohs(sin.sin_port);
}

static void test_real_answers(void **state)
{
    if (access("/usr/sbin/dnsmasq", X_OK) != 0)
        skip();
    int port = free_port();
    char portarg[32];
    snprintf(portarg, sizeof(portarg), "--port=%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl("/usr/sbin/dnsmasq", "dnsmasq", "--no-daemon", portarg,
              "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
              "--conf-file=/dev/null", "--local=/test/", "--local=/in-addr.arpa/",
              "--mx-host=dom.test,mx2.dom.test,20", "--mx-host=dom.test,mx1.dom.test,10",
              "--mx-host=dom.test,mx0.dom.test,20",
              "--txt-record=dom.test,v=spf1 ip4:192.0.2.0/24, -all",
              "--txt-record=dom.test,second",
              "--host-record=h.dom.test,192.0.2.1,2001:db8::1",
              (char *)NULL);
        _exit(127);
    }
    usleep(300 * 1000);
    char err[256], fwd[64];
    snprintf(fwd, sizeof(fwd), "127.0.0.1@%d", port);
    base = event_base_new();
    struct dns *d = dns_new(base, fwd, 3000, err, sizeof(err));
    assert_non_null(d);
    struct got g[7];
    memset(g, 0, sizeof(g));
    outstanding = 7;
    dns_query(d, "h.dom.test", DNS_T_A, collect, &g[0]);
    dns_query(d, "h.dom.test", DNS_T_AAAA, collect, &g[1]);
    dns_query(d, "dom.test", DNS_T_MX, collect, &g[2]);
    dns_query(d, "dom.test", DNS_T_TXT, collect, &g[3]);
    struct netaddr a;
    netaddr_parse("192.0.2.1", &a);
    dns_query_ptr(d, &a, collect, &g[4]);
    dns_query(d, "nothing.dom.test", DNS_T_A, collect, &g[5]);
    dns_query(d, "h.dom.test", DNS_T_MX, collect, &g[6]);
    run_loop();
    dns_free(d);
    event_base_free(base);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    assert_int_equal(g[0].r[0].st, DNS_OK);
    assert_string_equal(g[0].r[0].text, "192.0.2.1");
    assert_string_equal(g[1].r[0].text, "2001:db8::1");
    assert_string_equal(g[2].r[0].text, "10 mx1.dom.test 20 mx0.dom.test 20 mx2.dom.test");
    /* one record's strings are joined without separators (RFC 7208 3.3) */
    assert_true(strstr(g[3].r[0].text, "v=spf1 ip4:192.0.2.0/24 -all") != NULL);
    assert_true(strstr(g[3].r[0].text, "second") != NULL);
    assert_string_equal(g[4].r[0].text, "h.dom.test");
    assert_int_equal(g[5].r[0].st, DNS_NXDOMAIN);
    assert_int_equal(g[6].r[0].st, DNS_NODATA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_names),
        cmocka_unit_test(test_reverse_names),
        cmocka_unit_test(test_badname_cancel_and_dead_forwarder),
        cmocka_unit_test(test_real_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
