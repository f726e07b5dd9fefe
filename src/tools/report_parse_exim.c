/*
 * report_parse_exim.c - Exim 4 main log lines (its own file or syslog).
 *
 * "ID <= sender H=host (helo) [ip]:port P=esmtps X=TLS1.3:CIPHER:256 S=N
 * id=msgid", "ID => rcpt <orig> R=router T=transport H=mx [ip] C="250 ..."",
 * "ID -> rcpt" (same delivery), "ID == rcpt ... defer (N): reply" (deferred),
 * "ID ** rcpt ...: reply" (bounced), "ID Completed", rejects ("H=... F=<s>
 * rejected RCPT <r>: reason") and TLS errors. Message ids are the 16
 * character form (6-6-2) or the 23 character form of Exim 4.97 (6-11-4).
 */
#include "tools/report.h"
#include "lib/strutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static bool alnum_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]))
            return false;
    return true;
}

/* Length of an Exim message id at s (16 or 23), or 0. */
static size_t x_id_len(const char *s)
{
    if (strnlen(s, 24) >= 16 && alnum_run(s, 6) && s[6] == '-' && alnum_run(s + 7, 6) &&
        s[13] == '-' && alnum_run(s + 14, 2) && (s[16] == ' ' || s[16] == '\0'))
        return 16;
    if (strnlen(s, 24) >= 23 && alnum_run(s, 6) && s[6] == '-' && alnum_run(s + 7, 11) &&
        s[18] == '-' && alnum_run(s + 19, 4) && (s[23] == ' ' || s[23] == '\0'))
        return 23;
    return 0;
}

/* Exim time: "1d2h3m4s", "45s", "2m" -> seconds; -1 on junk. */
static double x_time(const char *v)
{
    double t = 0;
    bool any = false;
    while (isdigit((unsigned char)*v)) {
        char *end;
        long n = strtol(v, &end, 10);
        switch (*end) {
        case 'w': t += n * 604800.0; break;
        case 'd': t += n * 86400.0; break;
        case 'h': t += n * 3600.0; break;
        case 'm': t += n * 60.0; break;
        case 's': t += n; break;
        default: return any ? t : -1;
        }
        any = true;
        v = end + 1;
    }
    return any ? t : -1;
}

/* "KEY=value" token after a space; value up to the next space (or quoted). */
static const char *x_field(const char *s, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (const char *p = s; (p = strstr(p, key)) != NULL; p += kl) {
        if ((p != s && p[-1] != ' ') || p[kl] != '=')
            continue;
        const char *v = p + kl + 1;
        size_t n;
        if (*v == '"') {
            v++;
            const char *q = strchr(v, '"');
            n = q ? (size_t)(q - v) : strlen(v);
        } else {
            n = strcspn(v, " ");
        }
        if (n >= outlen)
            n = outlen - 1;
        memcpy(out, v, n);
        out[n] = '\0';
        return out;
    }
    return NULL;
}

/* H=host (helo) [ip]:port -> e->host/e->ip, and "host[ip]" in buf. */
static bool x_host(const char *s, struct rp_ev *e, char *buf, size_t buflen)
{
    const char *h = strncmp(s, "H=", 2) == 0 ? s + 2 : strstr(s, " H=");
    if (h == NULL)
        return false;
    if (h != s + 2)
        h += 3;
    const char *lb = strchr(h, '[');
    const char *sp = h + strcspn(h, " ");
    size_t hn = (h[0] == '[' || h[0] == '(') ? 0 : (size_t)(sp - h);
    if (hn >= sizeof(e->host))
        hn = sizeof(e->host) - 1;
    memcpy(e->host, h, hn);
    e->host[hn] = '\0';
    e->ip[0] = '\0';
    if (lb && (size_t)(lb - h) < 300) {
        size_t in = strcspn(lb + 1, "]");
        if (in >= sizeof(e->ip))
            in = sizeof(e->ip) - 1;
        memcpy(e->ip, lb + 1, in);
        e->ip[in] = '\0';
    }
    snprintf(buf, buflen, "%s[%s]", e->host[0] ? e->host : "unknown", e->ip);
    return true;
}

/* X=TLS1.3:TLS_AES_256_GCM_SHA384:256 -> protocol and cipher. */
static void x_tls(const char *s, struct rp_ev *e)
{
    char x[160];
    if (x_field(s, "X", x, sizeof(x)) == NULL)
        return;
    char *c1 = strchr(x, ':');
    if (c1 == NULL)
        return;
    *c1++ = '\0';
    char *c2 = strchr(c1, ':');
    if (c2)
        *c2 = '\0';
    /* "TLS1.3" -> "TLSv1.3" (Postfix's spelling, so the views merge) */
    if (strncmp(x, "TLS", 3) == 0 && isdigit((unsigned char)x[3]))
        snprintf(e->word, sizeof(e->word), "TLSv%s", x + 3);
    else
        str_copy(e->word, x, sizeof(e->word));
    str_copy(e->link, c1, sizeof(e->link));
    e->tls_proto = e->word;
    e->tls_cipher = e->link;
}

static void x_arrival(char *rest, struct rp_ev *e)
{
    char v[64];
    char *sp = strchr(rest, ' ');
    if (sp)
        *sp = '\0';
    str_copy(e->fbuf, rest, sizeof(e->fbuf));
    e->addr = strcmp(e->fbuf, "<>") == 0 ? "" : e->fbuf;
    if (sp == NULL) {
        e->kind = EV_PICKUP;
        return;
    }
    char *f = sp + 1;
    if (x_field(f, "S", v, sizeof(v))) {
        e->size = strtoull(v, NULL, 10);
        e->has_size = true;
    }
    char *id = strstr(f, " id=");
    if (id) {
        id += 4;
        id[strcspn(id, " ")] = '\0';
        e->msgid = id;
    }
    x_tls(f, e);
    if (x_host(f, e, e->tbuf, sizeof(e->tbuf))) {
        e->client = e->tbuf;
        e->kind = EV_CLIENT;
    } else {
        e->kind = EV_PICKUP;   /* local (P=local) or bounce (R=parent) */
    }
}

/* "=> rcpt <orig> R=.. T=.. H=mx [ip] C="250 ..." QT=1s" and friends. */
static void x_delivery(char *rest, enum rp_status st, struct rp_ev *e)
{
    char v[64];
    size_t an = strcspn(rest, " ");
    if (an >= sizeof(e->fbuf))
        an = sizeof(e->fbuf) - 1;
    memcpy(e->fbuf, rest, an);
    e->fbuf[an] = '\0';
    e->addr = e->fbuf;
    char *f = rest + an;
    if (f[0] == ' ' && f[1] == '<') {            /* "=> a <orig@x>" */
        char *gt = strchr(f + 2, '>');
        if (gt && (size_t)(gt - f - 2) < sizeof(e->tbuf)) {
            memcpy(e->tbuf, f + 2, (size_t)(gt - f - 2));
            e->tbuf[gt - f - 2] = '\0';
            e->orig_to = e->tbuf;
        }
    }
    char relay[320];
    if (x_host(f, e, relay, sizeof(relay))) {
        str_copy(e->host, relay, sizeof(e->host));
        e->relay = e->host;
    } else {
        e->relay = x_field(f, "T", e->link, sizeof(e->link)) ? e->link : "none";
    }
    if (st == ST_SENT) {
        x_tls(f, e);
        char *c = strstr(f, " C=\"");
        if (c) {
            c += 4;
            char *q = strchr(c, '"');
            if (q)
                *q = '\0';
            e->reply = c;
        } else {
            e->reply = "";
        }
    } else {
        /* "... H=host [ip]: SMTP error from remote mail server after RCPT
         * TO:<a>: 451 ..." -> "451 ..."; "R=router: Unrouteable address" */
        static const char smtp_err[] = "SMTP error from remote mail server after ";
        char *t = strstr(f, "]: ");
        if (t) {
            t += 3;
        } else {
            char *colon = strstr(f, ": ");
            t = colon ? colon + 2 : f;
        }
        if (strncmp(t, smtp_err, sizeof(smtp_err) - 1) == 0) {
            char *c = strstr(t + sizeof(smtp_err) - 1, ": ");
            if (c)
                t = c + 2;
        }
        e->reply = t;
    }
    if (x_field(f, "QT", v, sizeof(v))) {
        double t = x_time(v);
        if (t >= 0) {
            e->delay = t;
            e->has_delay = true;
        }
    }
    e->status = st;
    e->kind = EV_DELIVERY;
}

/* "H=host [ip] F=<s> rejected RCPT <r>: reason" */
static bool x_reject(char *msg, struct rp_ev *e)
{
    char *rj = strstr(msg, " rejected ");
    if (rj == NULL || strncmp(msg, "H=", 2) != 0)
        return false;
    *rj = '\0';
    char *what = rj + 10;
    char buf[400];
    snprintf(buf, sizeof(buf), " %s", msg);
    x_host(buf, e, e->tbuf, sizeof(e->tbuf));
    e->client = e->tbuf;
    e->rej_from = e->tbuf;
    char f[320];
    if (x_field(msg, "F", f, sizeof(f))) {
        f[strcspn(f, ">")] = '\0';
        str_copy(e->fbuf, f[0] == '<' ? f + 1 : f, sizeof(e->fbuf));
        e->from = e->fbuf;
    }
    if (strncmp(what, "RCPT ", 5) == 0) {
        e->rej_stage = "RCPT";
        char *lt = strchr(what, '<');
        if (lt) {
            size_t n = strcspn(lt + 1, ">");
            if (n < sizeof(e->link)) {
                memcpy(e->link, lt + 1, n);
                e->link[n] = '\0';
                e->to = e->link;
            }
        }
    } else if (strncmp(what, "MAIL ", 5) == 0) {
        e->rej_stage = "MAIL";
    } else if (strncmp(what, "after DATA", 10) == 0) {
        e->rej_stage = "DATA";
    } else if (strncmp(what, "EHLO", 4) == 0 || strncmp(what, "HELO", 4) == 0) {
        e->rej_stage = "HELO";
    } else {
        e->rej_stage = "CONNECT";
    }
    char *colon = strstr(what, ": ");
    e->text = colon ? colon + 2 : what;
    e->rej_kind = "reject";
    e->kind = EV_REJECT;
    return true;
}

static void x_session(char *msg, struct rp_ev *e)
{
    if (strncmp(msg, "TLS error on connection ", 24) == 0) {
        char *p = msg + 24;
        e->outbound = strncmp(p, "to ", 3) == 0;
        p += e->outbound ? 3 : 5;
        char buf[400];
        snprintf(buf, sizeof(buf), " H=%s", p);
        x_host(buf, e, e->tbuf, sizeof(e->tbuf));
        e->client = e->tbuf;
        e->text = msg;
        e->kind = EV_TLS_FAIL;
        return;
    }
    if (strncmp(msg, "SMTP connection from ", 21) == 0) {
        char buf[400];
        snprintf(buf, sizeof(buf), " H=%s", msg + 21);
        x_host(buf, e, e->tbuf, sizeof(e->tbuf));
        e->client = e->tbuf;
        e->text = msg;
        if (strstr(msg, " lost") != NULL)
            e->kind = EV_LOST;
        else if (strstr(msg, "connection count") != NULL)
            e->kind = EV_CONNECT;
        else
            e->kind = EV_IGNORED;
        return;
    }
    if (x_reject(msg, e))
        return;
    static const char *const quiet[] = {
        "Start queue run", "End queue run", "exim ", "daemon", "no host name found",
        "SMTP command timeout", "SMTP protocol", "unexpected disconnection",
        "SMTP call from", "no MAIL in SMTP connection", "H=", "cwd=", "Spool file",
        "rejected", "Warning:", "LOG:", "ACL", "TLS", "DKIM", "SPF",
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        if (strncmp(msg, quiet[i], strlen(quiet[i])) == 0) {
            e->kind = EV_IGNORED;
            return;
        }
}

void rpx_parse(struct rp_hdr *h, struct rp_ev *e)
{
    char *msg = h->msg;
    e->svc = "exim";
    /* syslog form may repeat Exim's own timestamp */
    int64_t ts;
    bool full;
    if (!h->exim_native && rpl_peek_ts(msg, &ts, &full) == 0 && full && strlen(msg) > 20)
        msg += 20;
    size_t idn = x_id_len(msg);
    if (idn == 0) {
        x_session(msg, e);
        return;
    }
    msg[idn] = '\0';
    e->qid = msg;
    char *rest = msg + idn + 1;
    if (strncmp(rest, "<= ", 3) == 0) {
        x_arrival(rest + 3, e);
    } else if (strncmp(rest, "=> ", 3) == 0 || strncmp(rest, "-> ", 3) == 0 ||
               strncmp(rest, "*> ", 3) == 0) {
        x_delivery(rest + 3, ST_SENT, e);
    } else if (strncmp(rest, "== ", 3) == 0) {
        x_delivery(rest + 3, ST_DEFERRED, e);
    } else if (strncmp(rest, "** ", 3) == 0) {
        x_delivery(rest + 3, ST_BOUNCED, e);
    } else if (strncmp(rest, "Completed", 9) == 0) {
        e->kind = EV_REMOVED;
    } else if (strncmp(rest, "H=", 2) == 0 && x_reject(rest, e)) {
        e->qid = msg;
    } else {
        e->kind = EV_IGNORED;   /* Frozen, SMTP error, Message is frozen, ... */
    }
}
