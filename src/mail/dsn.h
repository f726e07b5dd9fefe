/*
 * dsn.h - RFC 3464 delivery status notifications (bounces and delay
 * notices) as multipart/report; report-type=delivery-status messages.
 *
 * Each recipient carries the reply class explanation, so the person who
 * reads the bounce learns what happened and what to do, not only a code.
 */
#ifndef SLUICE_DSN_H
#define SLUICE_DSN_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct dsn_rcpt {
    const char *addr;          /* final recipient */
    const char *orcpt;         /* "rfc822;xtext" from RCPT ORCPT=, or NULL */
    const char *status;        /* enhanced code, "5.1.1" */
    const char *remote_mta;    /* host name, or NULL */
    const char *diagnostic;    /* the remote reply, or our reason */
    const char *explanation;   /* plain language, may be NULL */
    time_t last_attempt;
};

struct dsn_report {
    const char *reporting_mta; /* myhostname */
    const char *qid;
    const char *envid;         /* ENVID (xtext) or NULL */
    const char *sender;        /* original envelope sender (the recipient) */
    time_t arrival;
    bool delayed;              /* delay notice instead of failure */
    time_t retry_until;        /* for delay notices */
    bool headers_only;         /* RET=HDRS: return only the headers */
    const struct dsn_rcpt *rcpts;
    size_t nrcpt;
};

/* Build the whole notification (headers + body, CRLF) into out. `orig`
 * is the original message (CRLF lines). */
void dsn_build(const struct dsn_report *r, const char *orig, size_t orig_len,
               struct buf *out);
/* Decode RFC 3461 xtext ("a+2Bb" -> "a+b") into out. */
void dsn_xtext_decode(const char *in, char *out, size_t outlen);

#endif
