/*
 * linechat.h - the client line-protocol engine shared by the IMAP and POP3
 * clients (and, later, the SMTP and LMTP delivery clients), as curl's
 * pingpong.c serves smtp.c and imap.c.
 *
 * The engine owns the socket and TLS (a libevent bufferevent, an OpenSSL
 * one for implicit TLS, an OpenSSL filter after STARTTLS) and knows no
 * protocol. It gives the protocol code semantic events and takes commands.
 *
 * Contract for a protocol module (what an SMTP client does with it):
 *
 *  - Create with lc_new(base, &proto, arg, &opts) and lc_connect(). The
 *    engine resolves, connects (connect timeout), and for LC_TLS_IMPLICIT
 *    completes the TLS handshake, then calls proto->on_open(). Greetings are
 *    ordinary lines: an SMTP client waits for its 220 in on_line().
 *
 *  - Input is cut into lines (CRLF or bare LF, terminator stripped, NUL
 *    terminated, at most opts.line_max bytes or the connection fails with
 *    LC_ERR_TOOBIG). Each line goes to proto->on_line(). The callback may ask
 *    for N raw bytes to follow the line (IMAP literals {N}): it stores N in
 *    *literal and returns LC_LINE_LITERAL; the bytes then go to
 *    proto->on_literal() in chunks (last == true on the final chunk, also
 *    for N == 0) before line reading resumes. N must be bounded by the
 *    protocol; the engine only refuses more than opts.literal_max.
 *
 *  - The protocol decides when a response is complete and which command it
 *    answers; the engine only counts how many responses are outstanding
 *    (lc_send() with expect_reply) and runs the command timeout while any
 *    are: no input for opts.cmd_timeout seconds fails the connection with
 *    LC_ERR_TIMEOUT. The protocol calls lc_reply_done() once per response.
 *
 *  - Output is a queue of segments. A segment marked LC_SEG_GATED is held
 *    (with everything behind it) until the protocol calls lc_continue():
 *    that is IMAP's synchronizing literal ("+ go ahead") and SMTP's DATA
 *    (354). When the peer refuses instead (IMAP tagged NO, SMTP 554), the
 *    protocol calls lc_cancel_gated() to drop the rest of that command.
 *    Pipelining is the protocol's choice: the engine writes everything that
 *    is not gated, up to an output high-water mark, and refills as it drains.
 *
 *  - STARTTLS: after the peer's go-ahead, the protocol calls lc_starttls();
 *    buffered plaintext input is a protocol violation (CVE-2011-0411) and
 *    fails the connection. proto->on_tls() is called after the handshake.
 *
 *  - Errors (connect, TLS, timeout, peer closed, too long) end in one
 *    proto->on_error(code, text) call; the protocol may also call
 *    lc_fail(). After that the connection is closed and sends nothing.
 *
 *  - Lifetime: lc_free() may be called from inside any callback; the
 *    connection is then freed when the callback returns.
 */
#ifndef SLUICE_LINECHAT_H
#define SLUICE_LINECHAT_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lc_conn;
struct evdns_base;

enum lc_security { LC_TLS_NONE, LC_TLS_IMPLICIT, LC_TLS_STARTTLS };

enum lc_error {
    LC_OK,
    LC_ERR_CONNECT,     /* resolve or connect failed, connect timeout */
    LC_ERR_TLS,         /* handshake or certificate verification failed */
    LC_ERR_TIMEOUT,     /* no reply within the command timeout */
    LC_ERR_CLOSED,      /* the peer closed the connection */
    LC_ERR_TOOBIG,      /* a line or literal past its limit */
    LC_ERR_PROTOCOL,    /* set by the protocol module through lc_fail() */
    LC_ERR_AUTH,        /* set by the protocol module through lc_fail() */
};

enum lc_line_result { LC_LINE_OK, LC_LINE_LITERAL, LC_LINE_STOP };

struct lc_proto {
    const char *name;   /* "imap", "pop3", "smtp": for log lines */
    void (*on_open)(struct lc_conn *lc, void *arg);
    int (*on_line)(struct lc_conn *lc, void *arg, char *line, size_t len,
                   uint64_t *literal);
    void (*on_literal)(struct lc_conn *lc, void *arg, const char *data, size_t len,
                       bool last);
    void (*on_tls)(struct lc_conn *lc, void *arg);
    void (*on_error)(struct lc_conn *lc, void *arg, enum lc_error err, const char *why);
};

struct lc_opts {
    const char *host;
    uint16_t port;
    enum lc_security security;
    SSL_CTX *tls_ctx;            /* required for TLS; the engine takes no ownership */
    bool tls_verify;             /* verify the peer's name (host) and chain */
    unsigned connect_timeout;    /* seconds; 0 = 30 */
    unsigned cmd_timeout;        /* seconds; 0 = 120 */
    size_t line_max;             /* 0 = 8192 */
    uint64_t literal_max;        /* 0 = no literals allowed */
    const char *trace_tag;       /* log every line sent/received when set */
};

/* LC_SEG_GATED: hold until lc_continue(). LC_SEG_SECRET: never traced
 * (credentials). */
enum lc_seg_flags { LC_SEG_GATED = 1, LC_SEG_SECRET = 2 };

struct lc_conn *lc_new(struct event_base *base, struct evdns_base *dns,
                       const struct lc_proto *proto, void *arg,
                       const struct lc_opts *opts);
int lc_connect(struct lc_conn *lc);
void lc_free(struct lc_conn *lc);

/* Queue bytes (copied). `cmd` groups segments for lc_cancel_gated(); it is
 * any number the protocol picks (a tag number). */
void lc_send(struct lc_conn *lc, uint64_t cmd, const void *data, size_t len,
             unsigned flags);
/* Queue malloc'd bytes; the engine frees them. */
void lc_send_owned(struct lc_conn *lc, uint64_t cmd, char *data, size_t len,
                   unsigned flags);
/* Count one more reply we wait for (arms the command timeout). */
void lc_expect_reply(struct lc_conn *lc);
void lc_reply_done(struct lc_conn *lc);
/* Open the first gate. */
void lc_continue(struct lc_conn *lc);
/* Drop the gated segment of command `cmd` and the rest of that command. */
void lc_cancel_gated(struct lc_conn *lc, uint64_t cmd);
/* True while a gated segment waits for lc_continue(). */
bool lc_gate_waiting(const struct lc_conn *lc);
int lc_starttls(struct lc_conn *lc);
/* Fail the connection: one on_error() call, then closed. */
void lc_fail(struct lc_conn *lc, enum lc_error err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void lc_close(struct lc_conn *lc);

bool lc_is_open(const struct lc_conn *lc);
bool lc_is_tls(const struct lc_conn *lc);
size_t lc_outstanding(const struct lc_conn *lc);
/* Bytes queued but not yet handed to the kernel. */
size_t lc_pending_output(const struct lc_conn *lc);
const char *lc_host(const struct lc_conn *lc);
const char *lc_error_name(enum lc_error e);
/* A client TLS context: system CAs, or cafile when given. NULL + err. */
SSL_CTX *lc_tls_client_ctx(const char *cafile, char *err, size_t errlen);

#endif
