/*
 * pop3_client.h - a POP3 client connection (RFC 1939, CAPA per RFC 2449,
 * STLS per RFC 2595) on the linechat engine: USER/PASS or AUTH PLAIN,
 * UIDL and LIST scans, RETR and TOP, pipelined when the server offers
 * PIPELINING, one at a time otherwise.
 *
 * imapc-like shape: pop3c_open() and the scan pump the event loop;
 * pop3c_fetch() is asynchronous and calls back once per message.
 */
#ifndef SLUICE_POP3_CLIENT_H
#define SLUICE_POP3_CLIENT_H

#include "mail/linechat.h"
#include "mail/pop3_parse.h"

#include <stdbool.h>
#include <stdint.h>

struct pop3c;

enum pop3c_err { POP3C_E_NONE, POP3C_E_CONNECT, POP3C_E_TLS, POP3C_E_AUTH,
                 POP3C_E_PROTOCOL, POP3C_E_CLOSED };

struct pop3c_opts {
    const char *host;
    uint16_t port;
    enum lc_security security;
    SSL_CTX *tls_ctx;
    bool tls_verify;
    const char *user, *password;
    unsigned connect_timeout, cmd_timeout;
    uint64_t max_message;
    const char *trace, *label;
};

struct pop3_msg {
    uint32_t num;
    uint64_t size;
    char uidl[POP3_UIDL_MAX + 1];
};

/* data == NULL: the server refused (err says why) or the connection failed. */
typedef void (*pop3c_msg_fn)(struct pop3c *p, uint32_t num, const char *data, size_t len,
                             const char *err, void *arg);

struct pop3c *pop3c_new(struct event_base *base, const struct pop3c_opts *o);
void pop3c_free(struct pop3c *p);
int pop3c_open(struct pop3c *p);
/* UIDL and LIST: *msgs (malloc'd) and *n. 0 or -1. */
int pop3c_scan(struct pop3c *p, struct pop3_msg **msgs, size_t *n);
/* RETR num (top0: TOP num 0, the header only). */
void pop3c_fetch(struct pop3c *p, uint32_t num, bool top0, pop3c_msg_fn fn, void *arg);
size_t pop3c_pending(const struct pop3c *p);
void pop3c_drain(struct pop3c *p);
void pop3c_quit(struct pop3c *p);
bool pop3c_failed(const struct pop3c *p);
enum pop3c_err pop3c_errclass(const struct pop3c *p);
const char *pop3c_error(const struct pop3c *p);

#endif
