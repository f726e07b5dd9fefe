/*
 * linechat.c - the client line-protocol engine (contract in linechat.h).
 *
 * One connection is one bufferevent plus a queue of output segments, a
 * bounded line buffer, a literal countdown and one timer (connect timeout
 * while connecting, command timeout while replies are outstanding). Every
 * state change goes through lc_enter().
 */
#include "mail/linechat.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LC_OUT_HIGH (256 * 1024)   /* refill output below this */
#define LC_CHUNK (64 * 1024)       /* literal bytes handed over at once */

enum lc_state {
    LC_ST_NEW, LC_ST_CONNECTING, LC_ST_OPEN, LC_ST_STARTTLS, LC_ST_CLOSED, LC_ST_COUNT
};

static const char *const lc_state_names[LC_ST_COUNT] = {
    "NEW", "CONNECTING", "OPEN", "STARTTLS", "CLOSED",
};

struct lc_seg {
    struct lc_seg *next;
    uint64_t cmd;
    char *data;
    size_t len, off;
    unsigned flags;
};

struct lc_conn {
    struct event_base *base;
    struct evdns_base *dns;
    const struct lc_proto *proto;
    void *arg;
    struct lc_opts opts;
    char host[256];
    char trace[64];
    struct bufferevent *bev;
    bool tls;
    enum lc_state state;
    struct lc_seg *head, *tail;
    bool gate_open;
    size_t outstanding;
    struct event *timer;
    uint64_t literal_left;
    bool in_literal;
    struct buf line;
    int in_cb;
    bool dead;
};

static void lc_read_cb(struct bufferevent *bev, void *arg);
static void lc_write_cb(struct bufferevent *bev, void *arg);
static void lc_event_cb(struct bufferevent *bev, short what, void *arg);
static void lc_destroy(struct lc_conn *lc);

static void lc_enter(struct lc_conn *lc, enum lc_state st)
{
    if (lc->trace[0])
        log_svc(lc->proto->name, "%s: %s -> %s", lc->trace, lc_state_names[lc->state],
                lc_state_names[st]);
    lc->state = st;
}

const char *lc_error_name(enum lc_error e)
{
    static const char *const names[] = {
        "ok", "connection failed", "TLS failed", "timeout", "connection closed",
        "too long", "protocol error", "authentication failed",
    };
    return (size_t)e < sizeof(names) / sizeof(names[0]) ? names[e] : "error";
}

/* ---------------------------------------------------------------------- */
/* creation and teardown                                                   */

struct lc_conn *lc_new(struct event_base *base, struct evdns_base *dns,
                       const struct lc_proto *proto, void *arg,
                       const struct lc_opts *opts)
{
    struct lc_conn *lc = xcalloc(1, sizeof(*lc));
    lc->base = base;
    lc->dns = dns;
    lc->proto = proto;
    lc->arg = arg;
    lc->opts = *opts;
    str_copy(lc->host, opts->host ? opts->host : "127.0.0.1", sizeof(lc->host));
    lc->opts.host = lc->host;
    if (opts->trace_tag)
        str_copy(lc->trace, opts->trace_tag, sizeof(lc->trace));
    lc->opts.trace_tag = NULL;
    if (lc->opts.connect_timeout == 0)
        lc->opts.connect_timeout = 30;
    if (lc->opts.cmd_timeout == 0)
        lc->opts.cmd_timeout = 120;
    if (lc->opts.line_max == 0)
        lc->opts.line_max = 8192;
    buf_init(&lc->line, lc->opts.line_max);
    return lc;
}

static void lc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lc_conn *lc = arg;
    if (lc->state == LC_ST_CONNECTING)
        lc_fail(lc, LC_ERR_CONNECT, "no connection to %s:%u within %u s", lc->host,
                lc->opts.port, lc->opts.connect_timeout);
    else
        lc_fail(lc, LC_ERR_TIMEOUT, "no reply from %s within %u s", lc->host,
                lc->opts.cmd_timeout);
}

static void lc_arm(struct lc_conn *lc, unsigned seconds)
{
    struct timeval tv = {(time_t)seconds, 0};
    evtimer_add(lc->timer, &tv);
}

/* The command timer runs exactly while replies are outstanding. */
static void lc_rearm(struct lc_conn *lc)
{
    if (lc->state != LC_ST_OPEN && lc->state != LC_ST_STARTTLS)
        return;
    if (lc->outstanding > 0 || lc->state == LC_ST_STARTTLS)
        lc_arm(lc, lc->opts.cmd_timeout);
    else
        evtimer_del(lc->timer);
}

static bool is_ip_literal(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

static SSL *lc_new_ssl(struct lc_conn *lc)
{
    SSL *ssl = SSL_new(lc->opts.tls_ctx);
    if (ssl == NULL)
        return NULL;
    if (is_ip_literal(lc->host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), lc->host);
    } else {
        SSL_set_tlsext_host_name(ssl, lc->host);
        SSL_set1_host(ssl, lc->host);
    }
    SSL_set_verify(ssl, lc->opts.tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ssl;
}

static void lc_setup_bev(struct lc_conn *lc)
{
    bufferevent_setcb(lc->bev, lc_read_cb, lc_write_cb, lc_event_cb, lc);
    bufferevent_setwatermark(lc->bev, EV_WRITE, LC_OUT_HIGH / 2, 0);
    bufferevent_setwatermark(lc->bev, EV_READ, 0, 1024 * 1024);
    bufferevent_enable(lc->bev, EV_READ | EV_WRITE);
}

int lc_connect(struct lc_conn *lc)
{
    if (lc->opts.security == LC_TLS_IMPLICIT) {
        SSL *ssl = lc_new_ssl(lc);
        if (ssl == NULL)
            return -1;
        lc->bev = bufferevent_openssl_socket_new(lc->base, -1, ssl,
                                                 BUFFEREVENT_SSL_CONNECTING,
                                                 BEV_OPT_CLOSE_ON_FREE);
        bufferevent_openssl_set_allow_dirty_shutdown(lc->bev, 1);
        lc->tls = true;
    } else {
        lc->bev = bufferevent_socket_new(lc->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (lc->bev == NULL)
        return -1;
    lc->timer = evtimer_new(lc->base, lc_timer_cb, lc);
    lc_setup_bev(lc);
    lc_enter(lc, LC_ST_CONNECTING);
    lc_arm(lc, lc->opts.connect_timeout);
    lc->in_cb++;
    int rc = bufferevent_socket_connect_hostname(lc->bev, lc->dns, AF_UNSPEC, lc->host,
                                                 lc->opts.port);
    lc->in_cb--;
    if (rc < 0 && lc->state == LC_ST_CONNECTING)
        lc_fail(lc, LC_ERR_CONNECT, "cannot connect to %s:%u", lc->host, lc->opts.port);
    if (lc->dead) {
        lc_destroy(lc);
        return -1;
    }
    return 0;
}

static void lc_free_segs(struct lc_conn *lc)
{
    while (lc->head) {
        struct lc_seg *s = lc->head;
        lc->head = s->next;
        free(s->data);
        free(s);
    }
    lc->tail = NULL;
}

static void lc_destroy(struct lc_conn *lc)
{
    if (lc->bev)
        bufferevent_free(lc->bev);
    if (lc->timer)
        event_free(lc->timer);
    lc_free_segs(lc);
    buf_free(&lc->line);
    free(lc);
}

void lc_free(struct lc_conn *lc)
{
    if (lc == NULL)
        return;
    if (lc->in_cb > 0) {
        lc->dead = true;
        lc_close(lc);
        return;
    }
    lc_destroy(lc);
}

void lc_close(struct lc_conn *lc)
{
    if (lc->state == LC_ST_CLOSED)
        return;
    lc_enter(lc, LC_ST_CLOSED);
    if (lc->timer)
        evtimer_del(lc->timer);
    if (lc->bev)
        bufferevent_disable(lc->bev, EV_READ | EV_WRITE);
    lc_free_segs(lc);
}

void lc_fail(struct lc_conn *lc, enum lc_error err, const char *fmt, ...)
{
    if (lc->state == LC_ST_CLOSED)
        return;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    lc_close(lc);
    lc->in_cb++;
    if (lc->proto->on_error)
        lc->proto->on_error(lc, lc->arg, err, why);
    lc->in_cb--;
}

/* ---------------------------------------------------------------------- */
/* output                                                                  */

static void lc_flush(struct lc_conn *lc)
{
    if (lc->state != LC_ST_OPEN || lc->bev == NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(lc->bev);
    while (lc->head && evbuffer_get_length(out) < LC_OUT_HIGH) {
        struct lc_seg *s = lc->head;
        if ((s->flags & LC_SEG_GATED) && s->off == 0) {
            if (!lc->gate_open)
                return;
            lc->gate_open = false;
        }
        size_t n = s->len - s->off;
        if (n > LC_OUT_HIGH)
            n = LC_OUT_HIGH;
        if (lc->trace[0] && s->off == 0 && !(s->flags & (LC_SEG_GATED | LC_SEG_SECRET)))
            log_svc(lc->proto->name, "%s: C: %.*s", lc->trace,
                    (int)(s->len > 200 ? 200 : s->len), s->data);
        evbuffer_add(out, s->data + s->off, n);
        s->off += n;
        if (s->off < s->len)
            continue;
        lc->head = s->next;
        if (lc->head == NULL)
            lc->tail = NULL;
        free(s->data);
        free(s);
    }
}

void lc_send_owned(struct lc_conn *lc, uint64_t cmd, char *data, size_t len,
                   unsigned flags)
{
    if (lc->state == LC_ST_CLOSED) {
        free(data);
        return;
    }
    struct lc_seg *s = xcalloc(1, sizeof(*s));
    s->cmd = cmd;
    s->data = data;
    s->len = len;
    s->flags = flags;
    if (lc->tail)
        lc->tail->next = s;
    else
        lc->head = s;
    lc->tail = s;
    lc_flush(lc);
}

void lc_send(struct lc_conn *lc, uint64_t cmd, const void *data, size_t len,
             unsigned flags)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, data, len);
    copy[len] = '\0';
    lc_send_owned(lc, cmd, copy, len, flags);
}

void lc_expect_reply(struct lc_conn *lc)
{
    lc->outstanding++;
    lc_rearm(lc);
}

void lc_reply_done(struct lc_conn *lc)
{
    if (lc->outstanding > 0)
        lc->outstanding--;
    lc_rearm(lc);
}

void lc_continue(struct lc_conn *lc)
{
    lc->gate_open = true;
    lc_flush(lc);
}

bool lc_gate_waiting(const struct lc_conn *lc)
{
    return lc->head && (lc->head->flags & LC_SEG_GATED) && lc->head->off == 0 &&
           !lc->gate_open;
}

void lc_cancel_gated(struct lc_conn *lc, uint64_t cmd)
{
    struct lc_seg **pp = &lc->head, *prev = NULL;
    bool dropping = false;
    while (*pp) {
        struct lc_seg *s = *pp;
        if (s->cmd == cmd && (dropping || ((s->flags & LC_SEG_GATED) && s->off == 0))) {
            dropping = true;
            *pp = s->next;
            free(s->data);
            free(s);
            continue;
        }
        prev = s;
        pp = &s->next;
    }
    lc->tail = prev;
    lc->gate_open = false;
    lc_flush(lc);
}

/* ---------------------------------------------------------------------- */
/* input                                                                   */

/* Feed literal bytes; returns false when input ran out. */
static bool lc_take_literal(struct lc_conn *lc, struct evbuffer *in)
{
    while (lc->literal_left > 0) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return false;
        size_t n = avail < LC_CHUNK ? avail : LC_CHUNK;
        if (n > lc->literal_left)
            n = (size_t)lc->literal_left;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        lc->literal_left -= n;
        lc->proto->on_literal(lc, lc->arg, p, n, lc->literal_left == 0);
        evbuffer_drain(in, n);
        if (lc->state == LC_ST_CLOSED)
            return false;
    }
    lc->in_literal = false;
    return true;
}

static int lc_line_result(struct lc_conn *lc, int r, uint64_t lit)
{
    if (r != LC_LINE_LITERAL || lc->state == LC_ST_CLOSED)
        return r;
    if (lit > lc->opts.literal_max) {
        lc_fail(lc, LC_ERR_TOOBIG, "%s announced a literal of %llu bytes (limit %llu)",
                lc->host, (unsigned long long)lit,
                (unsigned long long)lc->opts.literal_max);
        return LC_LINE_STOP;
    }
    lc->literal_left = lit;
    lc->in_literal = true;
    if (lit == 0) {
        lc->in_literal = false;
        lc->proto->on_literal(lc, lc->arg, "", 0, true);
    }
    return r;
}

/* Cut one line; returns false when no complete line is buffered. */
static bool lc_take_line(struct lc_conn *lc, struct evbuffer *in)
{
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (p.pos < 0) {
        if (evbuffer_get_length(in) > lc->opts.line_max)
            lc_fail(lc, LC_ERR_TOOBIG, "%s sent a line longer than %zu bytes", lc->host,
                    lc->opts.line_max);
        return false;
    }
    size_t n = (size_t)p.pos;
    if (n > lc->opts.line_max) {
        lc_fail(lc, LC_ERR_TOOBIG, "%s sent a line longer than %zu bytes", lc->host,
                lc->opts.line_max);
        return false;
    }
    buf_reset(&lc->line);
    buf_append(&lc->line, evbuffer_pullup(in, (ev_ssize_t)n), n);
    evbuffer_drain(in, n + eol_len);
    if (lc->line.len > 0 && lc->line.data[lc->line.len - 1] == '\r')
        lc->line.data[--lc->line.len] = '\0';
    if (lc->trace[0])
        log_svc(lc->proto->name, "%s: S: %.200s", lc->trace, lc->line.data);
    uint64_t lit = 0;
    int r = lc->proto->on_line(lc, lc->arg, lc->line.data, lc->line.len, &lit);
    return lc_line_result(lc, r, lit) != LC_LINE_STOP && lc->state != LC_ST_CLOSED;
}

static void lc_read_cb(struct bufferevent *bev, void *arg)
{
    struct lc_conn *lc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    lc->in_cb++;
    if (lc->outstanding > 0 && lc->state == LC_ST_OPEN)
        lc_arm(lc, lc->opts.cmd_timeout);
    while (lc->state == LC_ST_OPEN && !lc->dead) {
        if (lc->in_literal ? !lc_take_literal(lc, in) : !lc_take_line(lc, in))
            break;
    }
    lc->in_cb--;
    if (lc->dead && lc->in_cb == 0)
        lc_destroy(lc);
}

static void lc_write_cb(struct bufferevent *bev, void *arg)
{
    struct lc_conn *lc = arg;
    lc_flush(lc);
}

/* ---------------------------------------------------------------------- */
/* connection events and TLS                                               */

static enum lc_error lc_classify(struct lc_conn *lc, short what, char *why, size_t len)
{
    unsigned long e = bufferevent_get_openssl_error(lc->bev);
    int dns = bufferevent_socket_get_dns_error(lc->bev);
    int sock = EVUTIL_SOCKET_ERROR();
    bool handshaking = lc->tls && (lc->state == LC_ST_CONNECTING ||
                                   lc->state == LC_ST_STARTTLS);
    if (dns) {
        snprintf(why, len, "cannot resolve %s: %s", lc->host, evutil_gai_strerror(dns));
        return LC_ERR_CONNECT;
    }
    if (e) {
        char es[256];
        ERR_error_string_n(e, es, sizeof(es));
        snprintf(why, len, "TLS with %s:%u failed: %s", lc->host, lc->opts.port, es);
        return handshaking || lc->state != LC_ST_OPEN ? LC_ERR_TLS : LC_ERR_CLOSED;
    }
    if (lc->state == LC_ST_CONNECTING && (!lc->tls || (what & BEV_EVENT_ERROR && sock))) {
        snprintf(why, len, "cannot connect to %s:%u: %s", lc->host, lc->opts.port,
                 sock ? evutil_socket_error_to_string(sock) : "closed");
        return LC_ERR_CONNECT;
    }
    if (handshaking) {
        snprintf(why, len, "TLS with %s:%u failed: the peer closed during the handshake",
                 lc->host, lc->opts.port);
        return LC_ERR_TLS;
    }
    snprintf(why, len, "%s closed the connection%s%s", lc->host,
             (what & BEV_EVENT_ERROR) && sock ? ": " : "",
             (what & BEV_EVENT_ERROR) && sock ? evutil_socket_error_to_string(sock) : "");
    return LC_ERR_CLOSED;
}

static void lc_connected(struct lc_conn *lc)
{
    if (lc->state == LC_ST_STARTTLS) {
        lc_enter(lc, LC_ST_OPEN);
        lc_rearm(lc);
        if (lc->proto->on_tls)
            lc->proto->on_tls(lc, lc->arg);
        lc_flush(lc);
        return;
    }
    lc_enter(lc, LC_ST_OPEN);
    evtimer_del(lc->timer);
    lc_rearm(lc);
    if (lc->proto->on_open)
        lc->proto->on_open(lc, lc->arg);
    lc_flush(lc);
}

static void lc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct lc_conn *lc = arg;
    lc->in_cb++;
    if (what & BEV_EVENT_CONNECTED) {
        lc_connected(lc);
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* Deliver complete lines that arrived before the close first. */
        if (lc->state == LC_ST_OPEN && (what & BEV_EVENT_EOF))
            lc_read_cb(bev, lc);
        if (lc->state != LC_ST_CLOSED) {
            char why[400];
            enum lc_error e = lc_classify(lc, what, why, sizeof(why));
            lc_fail(lc, e, "%s", why);
        }
    }
    lc->in_cb--;
    if (lc->dead && lc->in_cb == 0)
        lc_destroy(lc);
}

int lc_starttls(struct lc_conn *lc)
{
    if (lc->tls || lc->state != LC_ST_OPEN)
        return -1;
    if (evbuffer_get_length(bufferevent_get_input(lc->bev)) > 0) {
        lc_fail(lc, LC_ERR_PROTOCOL, "%s sent data after its STARTTLS go-ahead "
                "(possible injection); refusing to continue", lc->host);
        return -1;
    }
    SSL *ssl = lc_new_ssl(lc);
    if (ssl == NULL) {
        lc_fail(lc, LC_ERR_TLS, "cannot create a TLS session");
        return -1;
    }
    struct bufferevent *f = bufferevent_openssl_filter_new(
        lc->base, lc->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (f == NULL) {
        SSL_free(ssl);
        lc_fail(lc, LC_ERR_TLS, "cannot start TLS");
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
    lc->bev = f;
    lc->tls = true;
    lc_setup_bev(lc);
    lc_enter(lc, LC_ST_STARTTLS);
    lc_rearm(lc);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* accessors                                                               */

bool lc_is_open(const struct lc_conn *lc)
{
    return lc->state == LC_ST_OPEN;
}

bool lc_is_tls(const struct lc_conn *lc)
{
    return lc->tls;
}

size_t lc_outstanding(const struct lc_conn *lc)
{
    return lc->outstanding;
}

size_t lc_pending_output(const struct lc_conn *lc)
{
    size_t n = lc->bev ? evbuffer_get_length(bufferevent_get_output(lc->bev)) : 0;
    for (const struct lc_seg *s = lc->head; s; s = s->next)
        n += s->len - s->off;
    return n;
}

const char *lc_host(const struct lc_conn *lc)
{
    return lc->host;
}

SSL_CTX *lc_tls_client_ctx(const char *cafile, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    int ok = cafile ? SSL_CTX_load_verify_locations(ctx, cafile, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errlen, "cannot load CA certificates%s%s; fix: give a PEM file",
                 cafile ? " from " : "", cafile ? cafile : "");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
