/*
 * imap_client.h - an IMAP4rev1/IMAP4rev2 client connection on the linechat
 * engine: connect (plaintext, implicit TLS, STARTTLS), capabilities,
 * LOGIN / AUTHENTICATE PLAIN / XOAUTH2, ID, NAMESPACE, and pipelined
 * commands with literals (LITERAL+ / LITERAL- when offered, synchronising
 * literals otherwise).
 *
 * Commands are asynchronous: build one with imapc_cmd_*(), send it with a
 * completion callback; untagged responses go to the handler set with
 * imapc_set_untagged() (after the client has noted CAPABILITY, EXISTS,
 * UIDVALIDITY and friends), whenever they arrive. imapc_run() and
 * imapc_wait() pump the event loop for code that wants to wait.
 *
 * When the connection fails, every pending command completes with a NULL
 * response, and imapc_failed() / imapc_error() say why.
 */
#ifndef SLUICE_IMAP_CLIENT_H
#define SLUICE_IMAP_CLIENT_H

#include "mail/imap_parse.h"
#include "mail/linechat.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imapc;

enum imapc_cap {
    IMAPC_IMAP4REV2 = 1u << 0, IMAPC_LITERALPLUS = 1u << 1, IMAPC_LITERALMINUS = 1u << 2,
    IMAPC_UIDPLUS = 1u << 3, IMAPC_MULTIAPPEND = 1u << 4, IMAPC_ESEARCH = 1u << 5,
    IMAPC_CONDSTORE = 1u << 6, IMAPC_QRESYNC = 1u << 7, IMAPC_NAMESPACE = 1u << 8,
    IMAPC_LIST_EXTENDED = 1u << 9, IMAPC_SPECIAL_USE = 1u << 10, IMAPC_ID = 1u << 11,
    IMAPC_APPENDLIMIT = 1u << 12, IMAPC_STARTTLS = 1u << 13,
    IMAPC_LOGINDISABLED = 1u << 14, IMAPC_SASL_IR = 1u << 15, IMAPC_CAP_PLAIN = 1u << 16,
    IMAPC_CAP_XOAUTH2 = 1u << 17, IMAPC_ENABLE = 1u << 18, IMAPC_UNSELECT = 1u << 19,
    IMAPC_IMAP4REV1 = 1u << 20,
};

/* Failure classes, mapped to exit codes by the tools. */
enum imapc_err { IMAPC_E_NONE, IMAPC_E_CONNECT, IMAPC_E_TLS, IMAPC_E_AUTH,
                 IMAPC_E_PROTOCOL, IMAPC_E_CLOSED };

enum imapc_auth { IMAPC_AUTH_AUTO, IMAPC_AUTH_LOGIN, IMAPC_AUTH_PLAIN, IMAPC_AUTH_XOAUTH2 };

struct imapc_opts {
    const char *host;
    uint16_t port;
    enum lc_security security;
    SSL_CTX *tls_ctx;
    bool tls_verify;
    const char *user;
    const char *password;      /* or the OAuth2 access token for XOAUTH2 */
    enum imapc_auth auth;
    unsigned connect_timeout, cmd_timeout;
    uint64_t max_message;      /* largest literal accepted */
    const char *trace;         /* log the dialogue (never credentials) */
    const char *label;         /* "host1" / "host2" in messages */
};

struct imapc_mailbox {
    uint64_t uidvalidity, uidnext, exists, highestmodseq;
    bool readonly;
};

typedef void (*imapc_done_fn)(struct imapc *c, const struct imap_resp *r, void *arg);
typedef void (*imapc_untagged_fn)(struct imapc *c, const struct imap_resp *r, void *arg);

struct imapc *imapc_new(struct event_base *base, const struct imapc_opts *o);
void imapc_free(struct imapc *c);
/* Connect, negotiate TLS, authenticate, read capabilities, ID, NAMESPACE.
 * 0 or -1 (imapc_error() says why). Pumps the event loop. */
int imapc_open(struct imapc *c);
void imapc_logout(struct imapc *c);

bool imapc_has(const struct imapc *c, unsigned cap);
uint64_t imapc_appendlimit(const struct imapc *c);
/* Personal namespace prefix and hierarchy separator ('\0' when flat). */
const char *imapc_ns_prefix(const struct imapc *c);
char imapc_separator(const struct imapc *c);
const struct imapc_mailbox *imapc_selected(const struct imapc *c);

bool imapc_failed(const struct imapc *c);
enum imapc_err imapc_errclass(const struct imapc *c);
const char *imapc_error(const struct imapc *c);
const char *imapc_label(const struct imapc *c);
/* Text of the most recent tagged response of a command run by imapc_run. */
const char *imapc_last_text(const struct imapc *c);

void imapc_set_untagged(struct imapc *c, imapc_untagged_fn fn, void *arg);

/* Building a command: "TAG " is added by imapc_cmd_new(). */
struct imapc_cmd;
struct imapc_cmd *imapc_cmd_new(struct imapc *c);
void imapc_cmd_text(struct imapc_cmd *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A string argument: quoted, or a literal when it needs one. */
void imapc_cmd_astring(struct imapc_cmd *b, const char *s);
/* A literal; takes ownership of malloc'd data. */
void imapc_cmd_literal(struct imapc_cmd *b, char *data, size_t len);
void imapc_cmd_send(struct imapc_cmd *b, imapc_done_fn done, void *arg);
/* Send and wait: the status (IMAP_OK, IMAP_NO, IMAP_BAD) or -1. */
int imapc_cmd_wait(struct imapc_cmd *b);
/* Commands sent but not completed. */
size_t imapc_pending(const struct imapc *c);

/* Send a simple command and wait for it. Returns the status (IMAP_OK,
 * IMAP_NO, IMAP_BAD) or -1 when the connection failed. */
int imapc_run(struct imapc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* SELECT (or EXAMINE) a mailbox, with CONDSTORE when offered; fills
 * imapc_selected(). Status or -1. */
int imapc_select(struct imapc *c, const char *mailbox, bool readonly);
/* Pump the event loop until *flag is true or the connection failed. */
void imapc_wait(struct imapc *c, const bool *flag);
/* Pump until no command is pending on c. */
void imapc_drain(struct imapc *c);
struct event_base *imapc_base(const struct imapc *c);

/* Flags as IMAP text: from a FETCH FLAGS list, without \Recent. */
void imapc_flags_text(const struct imap_resp *r, long list, char *dst, size_t dstlen);

#endif
