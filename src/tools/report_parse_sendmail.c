/*
 * report_parse_sendmail.c - Sendmail 8.x log messages.
 *
 * Forms: "QID: from=<s>, size=N, ..., nrcpts=N, msgid=<m>, ..., relay=h [ip]",
 * "QID: to=<r>, delay=HH:MM:SS, xdelay=..., mailer=m, relay=h. [ip],
 * dsn=X, stat=S", "STARTTLS=client|server, ..." (and their errors),
 * "[QID: ]ruleset=check_rcpt, arg1=<a>, relay=h [ip], reject=550 ...",
 * "QID: QID2: DSN: ..." (a delivery status notification) and the Solaris
 * "[ID 801593 mail.info]" prefix, which the header parser strips.
 */
#include "tools/report.h"
#include "lib/strutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Sendmail queue ids: 14 characters ("u3NE6PWI025978"), older 8-12. */
static bool sm_is_qid(const char *s, size_t n)
{
    if (n == 7 && memcmp(s, "NOQUEUE", 7) == 0)
        return true;
    if (n < 8 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]))
            return false;
    return true;
}

static char *sm_split_qid(char *msg, const char **qid)
{
    size_t n = strcspn(msg, ": ");
    if (msg[n] != ':' || msg[n + 1] != ' ' || !sm_is_qid(msg, n))
        return NULL;
    msg[n] = '\0';
    *qid = msg;
    return msg + n + 2;
}

/* "[D+]HH:MM:SS" -> seconds. */
static double sm_delay(const char *v)
{
    long d = 0, h = 0, m = 0, s = 0;
    const char *plus = strchr(v, '+');
    const char *comma = strchr(v, ',');
    if (plus && (comma == NULL || plus < comma)) {
        d = strtol(v, NULL, 10);
        v = plus + 1;
    }
    char *end;
    h = strtol(v, &end, 10);
    if (*end == ':') {
        m = strtol(end + 1, &end, 10);
        if (*end == ':')
            s = strtol(end + 1, &end, 10);
    }
    return (double)(d * 86400 + h * 3600 + m * 60 + s);
}

/* relay=host. [ip] or relay=[ip] or relay=host [ip] (may be forged) */
static void sm_relay(const char *msg, struct rp_ev *e, bool as_client)
{
    const char *r = rpp_field(msg, "relay");
    if (r == NULL)
        return;
    char tmp[320];
    size_t n = strcspn(r, ",");
    if (n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    memcpy(tmp, r, n);
    tmp[n] = '\0';
    rpp_split_client(tmp, e->host, sizeof(e->host), e->ip, sizeof(e->ip));
    size_t hl = strlen(e->host);
    while (hl > 0 && e->host[hl - 1] == '.')
        e->host[--hl] = '\0';
    snprintf(e->tbuf, sizeof(e->tbuf), "%s[%s]", e->host[0] ? e->host : "unknown",
             e->ip);
    if (as_client)
        e->client = e->tbuf;
    else
        e->relay = e->ip[0] ? e->tbuf : e->host;
}

static const char *sm_angle(const char *v, char *out, size_t outlen)
{
    rpp_value(v, out, outlen);
    if (out[0] == '<') {
        out[strcspn(out, ">")] = '\0';
        return out + 1;
    }
    return out;
}

static void sm_from(char *rest, struct rp_ev *e)
{
    e->addr = sm_angle(rest + 5, e->fbuf, sizeof(e->fbuf));
    const char *v;
    if ((v = rpp_field(rest, "size")) != NULL) {
        e->size = strtoull(v, NULL, 10);
        e->has_size = true;
    }
    if ((v = rpp_field(rest, "nrcpts")) != NULL)
        e->nrcpt = (int)strtol(v, NULL, 10);
    bool daemon = rpp_field(rest, "daemon") != NULL;
    sm_relay(rest, e, true);
    /* last: cutting the message-id out ends the string there */
    if ((v = rpp_field(rest, "msgid")) != NULL) {
        char *m = (char *)v;
        if (*m == '<') {
            char *gt = strchr(m, '>');
            if (gt)
                *gt = '\0';
            e->msgid = m + 1;
        }
    }
    e->kind = (daemon && e->ip[0]) ? EV_CLIENT : EV_PICKUP;
}

static void sm_to(char *rest, struct rp_ev *e)
{
    char *stat = strstr(rest, "stat=");
    if (stat == NULL || (stat != rest && stat[-1] != ' '))
        return;
    stat[-1] = '\0';
    stat += 5;
    /* "to=<a>,<b>, delay=..." names several recipients: keep the list
     * (report_journey.c splits it at commas) */
    const char *list = rest + 3;
    char *sep = strstr(list, ", ");
    size_t ln = sep ? (size_t)(sep - list) : strlen(list);
    if (ln >= sizeof(e->fbuf))
        ln = sizeof(e->fbuf) - 1;
    memcpy(e->fbuf, list, ln);
    e->fbuf[ln] = '\0';
    e->addr = e->fbuf;
    const char *v;
    if ((v = rpp_field(rest, "delay")) != NULL) {
        e->delay = sm_delay(v);
        e->has_delay = true;
    }
    sm_relay(rest, e, false);
    if (e->relay == NULL) {
        const char *m = rpp_field(rest, "mailer");
        if (m) {
            rpp_value(m, e->word, sizeof(e->word));
            e->relay = e->word;
        } else {
            e->relay = "none";
        }
    }
    if ((v = rpp_field(rest, "dsn")) != NULL) {
        rpp_value(v, e->link, sizeof(e->link));
        e->dsn = e->link;
    }
    char d = e->dsn ? e->dsn[0] : 0;
    if (d == '2' || (d == 0 && strncmp(stat, "Sent", 4) == 0))
        e->status = ST_SENT;
    else if (d == '4' || (d == 0 && strncmp(stat, "Deferred", 8) == 0))
        e->status = ST_DEFERRED;
    else
        e->status = ST_BOUNCED;
    /* "Sent (reply)", "Deferred: 451 ...", "User unknown" */
    char *reply = stat;
    if (strncmp(reply, "Sent (", 6) == 0) {
        reply += 6;
        size_t rl = strlen(reply);
        if (rl && reply[rl - 1] == ')')
            reply[rl - 1] = '\0';
    } else if (strncmp(reply, "Deferred: ", 10) == 0) {
        reply += 10;
    }
    e->reply = reply;
    e->kind = EV_DELIVERY;
}

/* STARTTLS=client|server, relay=..., version=TLSv1.2, verify=..., cipher=... */
static void sm_starttls(char *msg, struct rp_ev *e)
{
    e->outbound = strncmp(msg + 9, "client", 6) == 0;
    sm_relay(msg, e, true);
    if (strstr(msg, "error:") != NULL) {
        e->kind = EV_TLS_FAIL;
        e->text = msg;
        return;
    }
    const char *v;
    if ((v = rpp_field(msg, "version")) != NULL) {
        rpp_value(v, e->word, sizeof(e->word));
        e->tls_proto = e->word;
    }
    if ((v = rpp_field(msg, "cipher")) != NULL) {
        rpp_value(v, e->link, sizeof(e->link));
        e->tls_cipher = e->link;
    }
    e->kind = e->tls_proto ? EV_TLS_OK : EV_IGNORED;
}

/* ruleset=check_rcpt, arg1=<x>, relay=h [ip], reject=550 5.7.1 ... */
static void sm_ruleset(char *msg, struct rp_ev *e)
{
    const char *rej = rpp_field(msg, "reject");
    if (rej == NULL) {
        e->kind = EV_IGNORED;
        return;
    }
    static const struct { const char *rs; const char *stage; } stages[] = {
        {"check_rcpt", "RCPT"}, {"check_mail", "MAIL"}, {"check_relay", "CONNECT"},
        {"check_data", "DATA"}, {"check_eoh", "DATA"}, {"check_eom", "DATA"},
    };
    e->rej_stage = "RCPT";
    for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
        if (strncmp(msg + 8, stages[i].rs, strlen(stages[i].rs)) == 0)
            e->rej_stage = stages[i].stage;
    const char *arg = rpp_field(msg, "arg1");
    char argv[320] = "", tmp[320];
    if (arg)
        str_copy(argv, sm_angle(arg, tmp, sizeof(tmp)), sizeof(argv));
    sm_relay(msg, e, true);
    e->rej_from = e->client;
    e->text = rej;
    if (strcmp(e->rej_stage, "MAIL") == 0) {
        str_copy(e->fbuf, argv, sizeof(e->fbuf));
        e->from = e->fbuf;
    } else {
        str_copy(e->fbuf, argv, sizeof(e->fbuf));
        e->to = e->fbuf;
    }
    e->rej_kind = "reject";
    e->kind = EV_REJECT;
}

static void sm_qid_msg(const char *qid, char *rest, struct rp_ev *e)
{
    e->qid = qid;
    if (strncmp(rest, "from=", 5) == 0) {
        sm_from(rest, e);
        return;
    }
    if (strncmp(rest, "to=", 3) == 0) {
        sm_to(rest, e);
        return;
    }
    if (strncmp(rest, "ruleset=", 8) == 0) {
        sm_ruleset(rest, e);
        e->qid = NULL;
        return;
    }
    if (strncmp(rest, "Milter", 6) == 0 && rpp_field(rest, "reject")) {
        e->kind = EV_REJECT;
        e->rej_kind = "reject";
        e->rej_stage = "DATA";
        e->text = rpp_field(rest, "reject");
        return;
    }
    const char *q2;
    char *r2 = sm_split_qid(rest, &q2);
    if (r2 && strncmp(r2, "DSN: ", 5) == 0) {
        e->link_qid = q2;
        e->kind = EV_NOTICE;
        return;
    }
    if (strncmp(rest, "lost input channel from ", 24) == 0) {
        char *cl = rest + 24;
        char *to = strstr(cl, " to ");
        if (to)
            *to = '\0';
        e->client = cl;
        rpp_split_client(cl, e->host, sizeof(e->host), e->ip, sizeof(e->ip));
        e->kind = EV_LOST;
        e->text = rest;
        e->qid = NULL;
        return;
    }
    if (strncmp(rest, "SYSERR", 6) == 0) {
        e->kind = EV_WARNING;
        e->text = rest;
        return;
    }
    e->kind = EV_IGNORED;   /* clone, alias, Milter add, done, ... */
}

void rpsm_parse(struct rp_hdr *h, struct rp_ev *e)
{
    char *msg = h->msg;
    e->svc = "sendmail";
    if (strncmp(msg, "STARTTLS=", 9) == 0) {
        sm_starttls(msg, e);
        return;
    }
    if (strncmp(msg, "ruleset=", 8) == 0) {
        sm_ruleset(msg, e);
        return;
    }
    const char *qid;
    char *rest = sm_split_qid(msg, &qid);
    if (rest) {
        if (strncmp(rest, "STARTTLS=", 9) == 0) {
            sm_starttls(rest, e);
            return;
        }
        sm_qid_msg(qid, rest, e);
        if (strcmp(qid, "NOQUEUE") == 0 && e->kind != EV_REJECT)
            e->qid = NULL;
        return;
    }
    if (strncmp(msg, "AUTH=", 5) == 0 || strncmp(msg, "starting daemon", 15) == 0 ||
        strncmp(msg, "alias database", 14) == 0 || strstr(msg, "did not issue") != NULL)
        e->kind = EV_IGNORED;
}
