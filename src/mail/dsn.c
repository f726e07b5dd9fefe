/*
 * dsn.c - RFC 3464 delivery status notifications (see dsn.h).
 */
#include "mail/dsn.h"
#include "lib/strutil.h"

#include <stdio.h>
#include <string.h>

#define DSN_HDRS_MAX (64 * 1024)

void dsn_xtext_decode(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < outlen; p++) {
        if (*p == '+' && p[1] && p[2]) {
            char hex[3] = {p[1], p[2], 0};
            unsigned v = 0;
            if (sscanf(hex, "%2X", &v) == 1) {
                out[o++] = (char)v;
                p += 2;
                continue;
            }
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

static void rfc822_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static void put_headers(const struct dsn_report *r, const char *boundary, struct buf *out)
{
    char date[64];
    rfc822_date(time(NULL), date, sizeof(date));
    buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r->reporting_mta);
    buf_printf(out, "To: <%s>\r\n", r->sender);
    buf_printf(out, "Subject: %s\r\n", r->delayed ? "Delayed Mail (still being retried)"
                                                  : "Undelivered Mail Returned to Sender");
    buf_printf(out, "Date: %s\r\n", date);
    buf_printf(out, "Message-ID: <%s.dsn.%ld@%s>\r\n", r->qid, (long)time(NULL),
               r->reporting_mta);
    buf_puts(out, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    buf_printf(out, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
               "\tboundary=\"%s\"\r\n\r\n", boundary);
    buf_puts(out, "This is a MIME-encapsulated message.\r\n\r\n");
}

static void put_human(const struct dsn_report *r, const char *boundary, struct buf *out)
{
    buf_printf(out, "--%s\r\nContent-Description: Notification\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n\r\n", boundary);
    buf_printf(out, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
    if (r->delayed) {
        char until[64];
        rfc822_date(r->retry_until, until, sizeof(until));
        buf_printf(out, "Your message could not be delivered yet. The mail system "
                   "will keep trying until %s.\r\nYou do not have to send it "
                   "again.\r\n\r\n", until);
    } else {
        buf_puts(out, "Your message could not be delivered to one or more "
                 "recipients. It is attached below.\r\n\r\n");
    }
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *d = &r->rcpts[i];
        buf_printf(out, "<%s>:", d->addr);
        if (d->remote_mta)
            buf_printf(out, " host %s said:", d->remote_mta);
        buf_printf(out, " %s\r\n", d->diagnostic ? d->diagnostic : d->status);
        if (d->explanation && d->explanation[0])
            buf_printf(out, "    What this means: %s\r\n", d->explanation);
        buf_puts(out, "\r\n");
    }
}

static void put_status(const struct dsn_report *r, const char *boundary, struct buf *out)
{
    char date[64];
    buf_printf(out, "--%s\r\nContent-Description: Delivery report\r\n"
               "Content-Type: message/delivery-status\r\n\r\n", boundary);
    buf_printf(out, "Reporting-MTA: dns; %s\r\nX-Sluice-Queue-ID: %s\r\n",
               r->reporting_mta, r->qid);
    if (r->envid && r->envid[0]) {
        char env[256];
        dsn_xtext_decode(r->envid, env, sizeof(env));
        buf_printf(out, "Original-Envelope-Id: %s\r\n", env);
    }
    rfc822_date(r->arrival, date, sizeof(date));
    buf_printf(out, "Arrival-Date: %s\r\n", date);
    for (size_t i = 0; i < r->nrcpt; i++) {
        const struct dsn_rcpt *d = &r->rcpts[i];
        buf_printf(out, "\r\nFinal-Recipient: rfc822; %s\r\n", d->addr);
        if (d->orcpt) {
            const char *semi = strchr(d->orcpt, ';');
            char dec[600];
            dsn_xtext_decode(semi ? semi + 1 : d->orcpt, dec, sizeof(dec));
            buf_printf(out, "Original-Recipient: rfc822; %s\r\n", dec);
        }
        buf_printf(out, "Action: %s\r\nStatus: %s\r\n", r->delayed ? "delayed" : "failed",
                   d->status);
        if (d->remote_mta)
            buf_printf(out, "Remote-MTA: dns; %s\r\n", d->remote_mta);
        if (d->diagnostic)
            buf_printf(out, "Diagnostic-Code: smtp; %s\r\n", d->diagnostic);
        if (d->last_attempt) {
            rfc822_date(d->last_attempt, date, sizeof(date));
            buf_printf(out, "Last-Attempt-Date: %s\r\n", date);
        }
        if (r->delayed) {
            rfc822_date(r->retry_until, date, sizeof(date));
            buf_printf(out, "Will-Retry-Until: %s\r\n", date);
        }
    }
    buf_puts(out, "\r\n");
}

/* Length of the header section of a CRLF message (up to and including
 * the empty line), capped. */
static size_t header_length(const char *m, size_t n)
{
    for (size_t i = 0; i + 3 < n && i < DSN_HDRS_MAX; i++)
        if (m[i] == '\r' && m[i + 1] == '\n' && m[i + 2] == '\r' && m[i + 3] == '\n')
            return i + 4;
    return n < DSN_HDRS_MAX ? n : DSN_HDRS_MAX;
}

void dsn_build(const struct dsn_report *r, const char *orig, size_t orig_len,
               struct buf *out)
{
    char boundary[128];
    snprintf(boundary, sizeof(boundary), "%s.%ld/%s", r->qid, (long)time(NULL),
             r->reporting_mta);
    put_headers(r, boundary, out);
    put_human(r, boundary, out);
    put_status(r, boundary, out);
    bool hdrs = r->headers_only || r->delayed;
    buf_printf(out, "--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n\r\n",
               boundary, hdrs ? "Undelivered Message Headers" : "Undelivered Message",
               hdrs ? "text/rfc822-headers" : "message/rfc822");
    size_t n = hdrs ? header_length(orig, orig_len) : orig_len;
    buf_append(out, orig, n);
    if (n < 2 || orig[n - 2] != '\r' || orig[n - 1] != '\n')
        buf_puts(out, "\r\n");
    buf_printf(out, "\r\n--%s--\r\n", boundary);
}
