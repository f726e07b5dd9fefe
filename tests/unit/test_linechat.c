/*
 * test_linechat.c - the client line-protocol engine against a scripted
 * peer on loopback: line cutting (CRLF and LF), literals, the output gate
 * (continue and cancel), the line bound, the command timeout and connect
 * failures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/buf.h"
#include "mail/linechat.h"

struct peer {
    int lfd, fd;
    uint16_t port;
};

struct rec {
    struct buf lines;           /* "line|" per line, "[literal]" per literal */
    enum lc_error err;
    bool opened, failed;
    uint64_t next_literal;      /* literal to ask for on the next line */
};

static void peer_listen(struct peer *p)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    getsockname(p->lfd, (struct sockaddr *)&sa, &len);
    p->port = ntohs(sa.sin_port);
    p->fd = -1;
}

static void on_open(struct lc_conn *lc, void *arg)
{
    ((struct rec *)arg)->opened = true;
}

static int on_line(struct lc_conn *lc, void *arg, char *line, size_t len, uint64_t *lit)
{
    struct rec *r = arg;
    buf_append(&r->lines, line, len);
    buf_putc(&r->lines, '|');
    if (r->next_literal) {
        *lit = r->next_literal;
        r->next_literal = 0;
        return LC_LINE_LITERAL;
    }
    return LC_LINE_OK;
}

static void on_literal(struct lc_conn *lc, void *arg, const char *d, size_t n, bool last)
{
    struct rec *r = arg;
    buf_putc(&r->lines, '[');
    buf_append(&r->lines, d, n);
    buf_putc(&r->lines, ']');
}

static void on_error(struct lc_conn *lc, void *arg, enum lc_error e, const char *why)
{
    struct rec *r = arg;
    r->err = e;
    r->failed = true;
}

static const struct lc_proto proto = {
    .name = "test", .on_open = on_open, .on_line = on_line, .on_literal = on_literal,
    .on_error = on_error,
};

static struct lc_conn *client(struct event_base *base, struct peer *p, struct rec *r,
                              size_t line_max, unsigned timeout)
{
    struct lc_opts o = {.host = "127.0.0.1", .port = p->port, .line_max = line_max,
                        .literal_max = 1000, .cmd_timeout = timeout};
    buf_init(&r->lines, 0);
    struct lc_conn *lc = lc_new(base, NULL, &proto, r, &o);
    assert_int_equal(lc_connect(lc), 0);
    while (!r->opened && !r->failed)
        event_base_loop(base, EVLOOP_ONCE);
    p->fd = accept(p->lfd, NULL, NULL);
    return lc;
}

static void pump(struct event_base *base, int rounds)
{
    for (int i = 0; i < rounds; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    usleep(20000);
    for (int i = 0; i < rounds; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

static void test_lines_and_literals(void **state)
{
    struct event_base *base = event_base_new();
    struct peer p;
    struct rec r = {0};
    peer_listen(&p);
    struct lc_conn *lc = client(base, &p, &r, 100, 5);
    r.next_literal = 0;
    assert_int_equal(write(p.fd, "one\r\ntwo\n", 9), 9);
    pump(base, 5);
    r.next_literal = 5;
    assert_int_equal(write(p.fd, "lit\r\nab\r\ncrest\r\n", 16), 16);
    pump(base, 5);
    assert_string_equal(r.lines.data, "one|two|lit|[ab\r\nc]rest|");
    assert_false(r.failed);
    lc_free(lc);
    close(p.fd);
    close(p.lfd);
    buf_free(&r.lines);
    event_base_free(base);
}

static void test_gate(void **state)
{
    struct event_base *base = event_base_new();
    struct peer p;
    struct rec r = {0};
    peer_listen(&p);
    struct lc_conn *lc = client(base, &p, &r, 100, 5);
    lc_send(lc, 1, "A APPEND {3}\r\n", 14, 0);
    lc_send(lc, 1, "abc", 3, LC_SEG_GATED);
    lc_send(lc, 1, "\r\n", 2, 0);
    lc_send(lc, 2, "B NOOP\r\n", 8, 0);
    pump(base, 5);
    char got[100] = {0};
    ssize_t n = read(p.fd, got, sizeof(got) - 1);
    assert_int_equal(n, 14);
    assert_true(lc_gate_waiting(lc));
    lc_continue(lc);
    pump(base, 5);
    n = read(p.fd, got, sizeof(got) - 1);
    got[n] = '\0';
    assert_string_equal(got, "abc\r\nB NOOP\r\n");
    lc_send(lc, 3, "C APPEND {3}\r\n", 14, 0);
    lc_send(lc, 3, "xyz", 3, LC_SEG_GATED);
    lc_send(lc, 3, "\r\n", 2, 0);
    lc_send(lc, 4, "D NOOP\r\n", 8, 0);
    lc_cancel_gated(lc, 3);
    pump(base, 5);
    n = read(p.fd, got, sizeof(got) - 1);
    got[n] = '\0';
    assert_string_equal(got, "C APPEND {3}\r\nD NOOP\r\n");
    lc_free(lc);
    close(p.fd);
    close(p.lfd);
    buf_free(&r.lines);
    event_base_free(base);
}

static void test_line_too_long(void **state)
{
    struct event_base *base = event_base_new();
    struct peer p;
    struct rec r = {0};
    peer_listen(&p);
    struct lc_conn *lc = client(base, &p, &r, 16, 5);
    char big[64];
    memset(big, 'x', sizeof(big));
    assert_int_equal(write(p.fd, big, sizeof(big)), (ssize_t)sizeof(big));
    pump(base, 5);
    assert_true(r.failed);
    assert_int_equal(r.err, LC_ERR_TOOBIG);
    r.failed = false;
    lc_send(lc, 1, "x", 1, 0);             /* no effect once closed */
    assert_false(lc_is_open(lc));
    lc_free(lc);
    close(p.fd);
    close(p.lfd);
    buf_free(&r.lines);
    event_base_free(base);
}

static void test_timeout_and_refused(void **state)
{
    struct event_base *base = event_base_new();
    struct peer p;
    struct rec r = {0};
    peer_listen(&p);
    struct lc_conn *lc = client(base, &p, &r, 100, 1);
    lc_expect_reply(lc);
    while (!r.failed)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(r.err, LC_ERR_TIMEOUT);
    lc_free(lc);
    close(p.fd);
    close(p.lfd);            /* now nobody listens on p.port */
    struct rec r2 = {0};
    buf_init(&r2.lines, 0);
    struct lc_opts o = {.host = "127.0.0.1", .port = p.port};
    lc = lc_new(base, NULL, &proto, &r2, &o);
    lc_connect(lc);
    while (!r2.failed)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(r2.err, LC_ERR_CONNECT);
    lc_free(lc);
    buf_free(&r.lines);
    buf_free(&r2.lines);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_and_literals),
        cmocka_unit_test(test_gate),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_timeout_and_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
