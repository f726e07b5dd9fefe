/*
 * report_parse_postfix.c - Postfix 2.x-3.x log messages (and sluice's,
 * which use the same forms under the syslog name "sluice/...").
 *
 * Dispatch is a table from the daemon name (last component of the syslog
 * name, so "postfix-out/smtp" and "postfix/submission/smtpd" work) to a
 * handler; each handler matches its message forms in turn. Fields are
 * NUL-terminated in place in the line buffer.
 */
#include "tools/report.h"
#include "lib/strutil.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static void p_smtpd(char *msg, struct rp_ev *e);
static void p_postscreen(char *msg, struct rp_ev *e);
static void p_cleanup(char *msg, struct rp_ev *e);
static void p_qmgr(char *msg, struct rp_ev *e);
static void p_delivery(char *msg, struct rp_ev *e);
static void p_bounce(char *msg, struct rp_ev *e);
static void p_pickup(char *msg, struct rp_ev *e);
static void p_master(char *msg, struct rp_ev *e);
static void p_quiet(char *msg, struct rp_ev *e);

struct rpp_svc {
    const char *name;
    rpp_fn fn;
};

static const struct rpp_svc services[] = {
    {"smtpd", p_smtpd},       {"postscreen", p_postscreen}, {"cleanup", p_cleanup},
    {"qmgr", p_qmgr},         {"nqmgr", p_qmgr},            {"smtp", p_delivery},
    {"lmtp", p_delivery},     {"local", p_delivery},        {"virtual", p_delivery},
    {"pipe", p_delivery},     {"error", p_delivery},        {"retry", p_delivery},
    {"discard", p_delivery},  {"relay", p_delivery},        {"bounce", p_bounce},
    {"defer", p_bounce},      {"trace", p_bounce},          {"pickup", p_pickup},
    {"master", p_master},     {"postsuper", p_qmgr},        {"anvil", p_quiet},
    {"scache", p_quiet},      {"tlsmgr", p_quiet},          {"tlsproxy", p_smtpd},
    {"dnsblog", p_quiet},     {"verify", p_quiet},          {"trivial-rewrite", p_quiet},
    {"proxymap", p_quiet},    {"flush", p_quiet},           {"showq", p_quiet},
    {"sendmail", p_quiet},    {"postdrop", p_quiet},        {"postqueue", p_quiet},
    {"postfix-script", p_quiet}, {"postlog", p_quiet},      {"postmulti", p_quiet},
    {"oqmgr", p_qmgr},        {"spawn", p_quiet},           {"qmqpd", p_smtpd},
};

static const struct rpp_svc *find_svc_slow(const char *svc)
{
    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
        if (services[i].name[0] == svc[0] && strcmp(services[i].name, svc) == 0)
            return &services[i];
    return NULL;
}

/* Daemon names repeat: a direct-mapped cache in front of the table. */
static const struct rpp_svc *find_svc(const char *svc)
{
    static struct { char name[24]; const struct rpp_svc *s; } cache[32];
    size_t n = strlen(svc);
    if (n == 0 || n >= sizeof(cache[0].name))
        return find_svc_slow(svc);
    unsigned k = (unsigned)(n * 7 + (unsigned char)svc[0] + (unsigned char)svc[n - 1]) % 32;
    if (memcmp(cache[k].name, svc, n + 1) == 0)
        return cache[k].s;
    const struct rpp_svc *s = find_svc_slow(svc);
    memcpy(cache[k].name, svc, n + 1);
    cache[k].s = s;
    return s;
}

bool rpp_is_postfix(const char *prog, const char *svc)
{
    if (strcmp(prog, "postfix") == 0 || strncmp(prog, "postfix-script", 14) == 0)
        return true;
    if (strchr(prog, '/') == NULL)
        return false;
    return find_svc(svc) != NULL;
}

/* ---- shared helpers ------------------------------------------------- */

/* strtoull(s, NULL, 10), without the call for a plain run of digits. */
static uint64_t parse_u64(const char *s)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < 19 && rp_is_digit((unsigned char)s[i]); i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (i == 0 || i == 19)       /* sign, blanks, or maybe too large */
        return strtoull(s, NULL, 10);
    return v;
}

/* (int)strtol(s, NULL, 10), likewise. */
static int parse_int(const char *s)
{
    long v = 0;
    size_t i = 0;
    for (; i < 9 && rp_is_digit((unsigned char)s[i]); i++)
        v = v * 10 + (s[i] - '0');
    if (i == 0 || i == 9)
        return (int)strtol(s, NULL, 10);
    return (int)v;
}

/* strtod(s, NULL) for "123" and "1.25" with at most 15 digits: both the
 * digits and the power of ten are exact doubles, so one division is
 * correctly rounded, as strtod is. Anything else goes to strtod. */
static double parse_decimal(const char *s)
{
    static const double pow10[16] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
                                     1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    uint64_t m = 0;
    int digits = 0, frac = 0;
    const char *p = s;
    for (; rp_is_digit((unsigned char)*p) && digits < 15; p++, digits++)
        m = m * 10 + (uint64_t)(*p - '0');
    if (digits == 0 || rp_is_digit((unsigned char)*p))
        return strtod(s, NULL);
    if (*p == '.') {
        for (p++; rp_is_digit((unsigned char)*p) && digits < 15; p++, digits++, frac++)
            m = m * 10 + (uint64_t)(*p - '0');
        if (rp_is_digit((unsigned char)*p))
            return strtod(s, NULL);
    }
    if (*p == 'e' || *p == 'E' || *p == 'x' || *p == 'X')
        return strtod(s, NULL);
    return (double)m / pow10[frac];
}

/* Queue id characters: 2 upper-case hex digit, 1 other alphanumeric, 0 not. */
static const unsigned char qid_cls[256] = {
    ['0'] = 2, ['1'] = 2, ['2'] = 2, ['3'] = 2, ['4'] = 2, ['5'] = 2, ['6'] = 2,
    ['7'] = 2, ['8'] = 2, ['9'] = 2, ['A'] = 2, ['B'] = 2, ['C'] = 2, ['D'] = 2,
    ['E'] = 2, ['F'] = 2, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1,
    ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

bool rpp_is_qid(const char *s, size_t n)
{
    if (n == 7 && memcmp(s, "NOQUEUE", 7) == 0)
        return true;
    if (n < 5 || n > 20)
        return false;
    unsigned all = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char k = qid_cls[(unsigned char)s[i]];
        if (k == 0)
            return false;
        all &= k;
    }
    bool hex = all == 2;
    /* short ids are upper-case hex; long ids (enable_long_queue_ids) mix
     * case and contain a 'z' separator */
    return hex || (n >= 12 && memchr(s, 'z', n) != NULL);
}

/* "QID: rest" -> qid NUL-terminated, returns rest; NULL if no qid.
 * rpp_is_qid() in the same pass as the scan for the colon. */
static char *split_qid(char *msg, const char **qid)
{
    size_t n = 0;
    unsigned all = 2, k;
    while (n <= 20 && (k = qid_cls[(unsigned char)msg[n]]) != 0) {
        all &= k;
        n++;
    }
    if (msg[n] != ':' || msg[n + 1] != ' ')
        return NULL;
    if (!(n == 7 && memcmp(msg, "NOQUEUE", 7) == 0) &&
        (n < 5 || n > 20 || (all != 2 && (n < 12 || memchr(msg, 'z', n) == NULL))))
        return NULL;
    msg[n] = '\0';
    *qid = msg;
    return msg + n + 2;
}

void rpp_split_client(const char *s, char *host, size_t hl, char *ip, size_t il)
{
    host[0] = ip[0] = '\0';
    if (s == NULL)
        return;
    /* one pass: the '[' and, failing it, the first of " ,:" */
    const char *p = s, *stop = NULL;
    for (; *p && *p != '['; p++)
        if (stop == NULL && (*p == ' ' || *p == ',' || *p == ':'))
            stop = p;
    const char *lb = *p == '[' ? p : NULL;
    size_t hn = lb ? (size_t)(lb - s) : (size_t)((stop ? stop : p) - s);
    while (hn > 0 && s[hn - 1] == ' ')
        hn--;
    if (hn >= hl)
        hn = hl - 1;
    memcpy(host, s, hn);
    host[hn] = '\0';
    if (lb) {
        const char *rb = lb + 1;
        while (*rb && *rb != ']')
            rb++;
        size_t in = (size_t)(rb - lb - 1);
        if (in >= il)
            in = il - 1;
        memcpy(ip, lb + 1, in);
        ip[in] = '\0';
        if ((ip[0] == 'I' || ip[0] == 'i') && strncasecmp(ip, "IPv6:", 5) == 0)
            memmove(ip, ip + 5, strlen(ip + 5) + 1);
    }
}

const char *rpp_field(const char *s, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = s; (p = strstr(p, key)) != NULL; p += kl) {
        if ((p == s || p[-1] == ' ' || p[-1] == ',') && p[kl] == '=')
            return p + kl + 1;
    }
    return NULL;
}

size_t rpp_value(const char *v, char *out, size_t outlen)
{
    size_t n;
    if (*v == '<') {
        const char *gt = strchr(v, '>');
        n = gt ? (size_t)(gt - v + 1) : strlen(v);
    } else {
        n = strcspn(v, ", ");
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return n;
}

/* Cut "<addr>" at p (p at '<'): NUL-terminates, returns addr, sets *end. */
static char *take_angle(char *p, char **end)
{
    if (*p != '<')
        return NULL;
    char *gt = strchr(p, '>');
    if (gt == NULL)
        return NULL;
    *gt = '\0';
    *end = gt + 1;
    return p + 1;
}

/* Set e->client (NUL-terminated copy in the line) and host/ip. */
static void set_client(struct rp_ev *e, char *client)
{
    e->client = client;
    rpp_split_client(client, e->host, sizeof(e->host), e->ip, sizeof(e->ip));
}

/* "... from CLIENT[: rest]" -> client NUL-terminated. */
static char *cut_from(char *p)
{
    char *f = strstr(p, " from ");
    if (f == NULL)
        return NULL;
    f += 6;
    char *rb = strchr(f, ']');
    if (rb) {
        if (rb[1] == ':' && isdigit((unsigned char)rb[2])) {   /* postscreen [ip]:port */
            rb += 2;
            while (isdigit((unsigned char)*rb))
                rb++;
            *rb = '\0';
        } else {
            rb[1] = '\0';
        }
    } else {
        f[strcspn(f, " :")] = '\0';
    }
    return f;
}

/* Common message forms: warning/fatal/panic. Returns true if handled. */
static bool p_severity(char *msg, struct rp_ev *e)
{
    static const struct { const char *pfx; size_t n; enum rp_ev_kind k; } sev[] = {
        {"warning: ", 9, EV_WARNING}, {"fatal: ", 7, EV_FATAL}, {"panic: ", 7, EV_PANIC},
        {"error: ", 7, EV_IGNORED},
    };
    if (msg[0] != 'w' && msg[0] != 'f' && msg[0] != 'p' && msg[0] != 'e')
        return false;
    for (size_t i = 0; i < sizeof(sev) / sizeof(sev[0]); i++) {
        size_t n = sev[i].n;
        if (msg[0] == sev[i].pfx[0] && strncmp(msg, sev[i].pfx, n) == 0) {
            e->kind = sev[i].k;
            e->text = msg + n;
            /* TLS handshake trouble reported as a warning */
            if (strncmp(e->text, "TLS library problem", 19) == 0)
                e->kind = EV_WARNING;
            return true;
        }
    }
    return false;
}

/* ---- smtpd (and tlsproxy, qmqpd) ------------------------------------ */

/* "reject: RCPT from host[ip]: 554 ...; from=<a> to=<b> proto=.. helo=<h>" */
static void p_reject(char *kind, char *rest, struct rp_ev *e)
{
    e->kind = EV_REJECT;
    e->rej_kind = kind;
    char *sp = strchr(rest, ' ');
    if (sp) {
        *sp = '\0';
        e->rej_stage = rest;
        rest = sp + 1;
    }
    if (strncmp(rest, "from ", 5) == 0) {
        char *cl = rest + 5;
        char *colon = strstr(cl, ": ");
        if (colon) {
            *colon = '\0';
            e->text = colon + 2;
        }
        set_client(e, cl);
        e->rej_from = cl;
    } else {
        e->text = rest;
    }
    if (e->text) {
        const char *f = rpp_field(e->text, "from");
        const char *t = rpp_field(e->text, "to");
        if (f && *f == '<') {
            rpp_value(f, e->fbuf, sizeof(e->fbuf));
            e->fbuf[strcspn(e->fbuf, ">")] = '\0';
            e->from = e->fbuf + 1;
        }
        if (t && *t == '<') {
            rpp_value(t, e->tbuf, sizeof(e->tbuf));
            e->tbuf[strcspn(e->tbuf, ">")] = '\0';
            e->to = e->tbuf + 1;
        }
    }
}

static bool p_session(char *msg, struct rp_ev *e)
{
    static const struct { const char *pfx; size_t n; enum rp_ev_kind k; } forms[] = {
        {"connect from ", 13, EV_CONNECT},       {"disconnect from ", 16, EV_IGNORED},
        {"lost connection after ", 22, EV_LOST}, {"timeout after ", 14, EV_LOST},
        {"too many errors after ", 22, EV_LOST}, {"SSL_accept error from ", 22, EV_TLS_FAIL},
        {"SSL_connect error to ", 21, EV_TLS_FAIL},
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        size_t n = forms[i].n;
        if (msg[0] != forms[i].pfx[0] || strncmp(msg, forms[i].pfx, n) != 0)
            continue;
        e->kind = forms[i].k;
        e->text = msg;
        if (i <= 1) {           /* connect/disconnect: nothing is counted */
            e->kind = EV_IGNORED;
            return true;
        }
        if (strncmp(msg, "SSL_connect", 11) == 0) {
            e->outbound = true;
            char *to = msg + n;
            to[strcspn(to, ": ")] = '\0';
            set_client(e, to);
            return true;
        }
        char *cl = cut_from(msg);
        if (cl)
            set_client(e, cl);
        /* "lost connection after STARTTLS" is a TLS handshake failure */
        if (e->kind == EV_LOST && strstr(msg, " after STARTTLS") != NULL)
            e->kind = EV_TLS_FAIL;
        return true;
    }
    return false;
}

/* "Anonymous TLS connection established from host[ip]: TLSv1.2 with cipher
 * ECDHE-RSA-AES256-SHA384 (256/256 bits)" (from = inbound, to = outbound) */
static bool p_tls_established(char *msg, struct rp_ev *e)
{
    /* strstr(msg, " TLS connection established ") within the first 13
     * characters, without scanning the whole line */
    static const char needle[] = " TLS connection established ";
    char *p = NULL;
    for (size_t i = 0; i <= 12 && msg[i]; i++)
        if (msg[i] == ' ' && strncmp(msg + i, needle, sizeof(needle) - 1) == 0) {
            p = msg + i;
            break;
        }
    if (p == NULL)
        return false;
    p += 28;
    if (strncmp(p, "from ", 5) == 0) {
        p += 5;
    } else if (strncmp(p, "to ", 3) == 0) {
        p += 3;
        e->outbound = true;
    } else {
        return false;
    }
    char *colon = strstr(p, ": ");
    if (colon == NULL)
        return false;
    *colon = '\0';
    set_client(e, p);
    char *proto = colon + 2;
    char *sp = strchr(proto, ' ');
    if (sp) {
        *sp = '\0';
        char *c = strncmp(sp + 1, "with cipher ", 12) == 0 ? sp + 1
                                                           : strstr(sp + 1, "with cipher ");
        if (c) {
            c += 12;
            c[strcspn(c, " ")] = '\0';
            e->tls_cipher = c;
        }
    }
    e->tls_proto = proto;
    e->kind = EV_TLS_OK;
    return true;
}

static void p_smtpd_qid(const char *qid, char *rest, struct rp_ev *e)
{
    e->qid = qid;
    if (strncmp(rest, "client=", 7) == 0) {
        char *cl = rest + 7;
        cl[strcspn(cl, ",")] = '\0';
        set_client(e, cl);
        e->kind = EV_CLIENT;
        return;
    }
    static const char *const kinds[] = {"reject", "reject_warning", "hold", "discard"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(rest, kinds[i], n) == 0 && rest[n] == ':' && rest[n + 1] == ' ') {
            rest[n] = '\0';
            p_reject(rest, rest + n + 2, e);
            return;
        }
    }
    /* Postfix 3.10: "NOQUEUE: lost connection after ..." etc. */
    if (p_session(rest, e))
        return;
    if (strncmp(rest, "milter-", 7) == 0 || strncmp(rest, "filter:", 7) == 0 ||
        strncmp(rest, "redirect:", 9) == 0 || strncmp(rest, "warn:", 5) == 0 ||
        strncmp(rest, "proxy-", 6) == 0 || strncmp(rest, "prepend:", 8) == 0 ||
        strncmp(rest, "info:", 5) == 0) {
        e->kind = EV_IGNORED;
        return;
    }
}

static void p_smtpd(char *msg, struct rp_ev *e)
{
    const char *qid;
    char *rest = split_qid(msg, &qid);
    if (rest) {
        p_smtpd_qid(qid, rest, e);
        return;
    }
    if (p_session(msg, e) || p_tls_established(msg, e))
        return;
    static const char *const quiet[] = {
        "setting up TLS connection", "improper command pipelining", "TLS SNI",
        "discarding EHLO keywords", "Untrusted TLS", "Anonymous TLS", "statistics:",
        "AUTH command", "SASL", "reject: ", "auth failure", "warning:", "NOQUEUE",
        "enabling PIX", "certificate verification", "ANONYMOUS", "verify=",
        "client certificate", "server certificate", "connection established",
        "Trusted TLS", "Verified TLS", "host ", "read ", "write ", "smtp_stream",
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        if (strncmp(msg, quiet[i], strlen(quiet[i])) == 0) {
            e->kind = EV_IGNORED;
            return;
        }
}

/* ---- postscreen ------------------------------------------------------ */

static void p_postscreen(char *msg, struct rp_ev *e)
{
    const char *qid;
    char *rest = split_qid(msg, &qid);
    if (rest) {
        p_smtpd_qid(qid, rest, e);
        e->qid = NULL;
        return;
    }
    static const char *const verdicts[] = {
        "CONNECT from", "PASS NEW", "PASS OLD", "DNSBL rank", "PREGREET", "HANGUP",
        "DISCONNECT", "WHITELISTED", "BLACKLISTED", "ALLOWLISTED", "DENYLISTED",
        "WHITELIST VETO", "ALLOWLIST VETO", "COMMAND PIPELINING", "NON-SMTP COMMAND",
        "BARE NEWLINE", "COMMAND TIME LIMIT", "COMMAND COUNT LIMIT",
        "COMMAND LENGTH LIMIT", "NOQUEUE", "cache ", "DATA without",
        "BDAT without", "warning:",
    };
    for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++) {
        size_t n = strlen(verdicts[i]);
        if (strncmp(msg, verdicts[i], n) != 0)
            continue;
        char *ip = strchr(msg, '[');
        if (ip) {
            char *end = ip + 1 + strcspn(ip + 1, "]");
            if (*end == ']') {
                end[1] = '\0';
                set_client(e, ip);
            }
        }
        str_copy(e->word, verdicts[i], sizeof(e->word));
        if (strcmp(e->word, "CONNECT from") == 0)
            str_copy(e->word, "CONNECT", sizeof(e->word));
        e->text = e->word;
        e->kind = strncmp(e->word, "cache ", 6) == 0 ? EV_IGNORED : EV_POSTSCREEN;
        return;
    }
}

/* ---- cleanup --------------------------------------------------------- */

static void p_cleanup(char *msg, struct rp_ev *e)
{
    const char *qid;
    char *rest = split_qid(msg, &qid);
    if (rest == NULL)
        return;
    e->qid = qid;
    if (strncmp(rest, "message-id=", 11) == 0) {
        char *v = rest + 11, *end;
        char *id = take_angle(v, &end);
        if (id == NULL) {
            id = v;
            id[strcspn(id, " ")] = '\0';
        }
        e->msgid = id;
        e->kind = EV_MSGID;
        return;
    }
    static const char *const kinds[] = {"milter-reject", "reject", "warning", "hold",
                                        "discard"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(rest, kinds[i], n) == 0 && rest[n] == ':' && rest[n + 1] == ' ') {
            char *stage = rest + n + 2;
            size_t sl = strcspn(stage, " ");
            if (!((sl == 6 && strncmp(stage, "header", 6) == 0) ||
                  (sl == 4 && strncmp(stage, "body", 4) == 0) ||
                  (sl == 14 && strncmp(stage, "END-OF-MESSAGE", 14) == 0)))
                break;
            rest[n] = '\0';
            e->kind = EV_REJECT;
            e->rej_kind = rest;
            e->rej_stage = stage;
            if (stage[sl]) {
                stage[sl] = '\0';
                e->text = stage + sl + 1;
            } else {
                e->text = "";
            }
            return;
        }
    }
    e->kind = EV_IGNORED;   /* resent-message-id, replace:, info:, filter: */
}

/* ---- qmgr ------------------------------------------------------------ */

static void p_qmgr(char *msg, struct rp_ev *e)
{
    const char *qid;
    char *rest = split_qid(msg, &qid);
    if (rest == NULL)
        return;
    e->qid = qid;
    if (strcmp(rest, "removed") == 0 || strncmp(rest, "removed ", 8) == 0) {
        e->kind = EV_REMOVED;
        return;
    }
    if (strncmp(rest, "to=<", 4) == 0) {
        p_delivery(msg, e);
        e->qid = qid;
        return;
    }
    if (strncmp(rest, "from=<", 6) == 0) {
        char *end;
        char *addr = take_angle(rest + 5, &end);
        if (addr == NULL)
            return;
        e->addr = addr;
        const char *sz, *nr;
        if (strncmp(end, ", size=", 7) == 0) {
            /* the usual ", size=N, nrcpt=N": what rpp_field() finds */
            sz = end + 7;
            const char *q = sz;
            while (rp_is_digit((unsigned char)*q))
                q++;
            nr = strncmp(q, ", nrcpt=", 8) == 0 ? q + 8 : rpp_field(end, "nrcpt");
        } else {
            sz = rpp_field(end, "size");
            nr = rpp_field(end, "nrcpt");
        }
        if (sz) {
            e->size = parse_u64(sz);
            e->has_size = true;
            e->nrcpt = nr ? parse_int(nr) : 0;
            e->kind = EV_QUEUED;
        } else if (strstr(end, "status=expired") || strstr(end, "status=force-expired")) {
            e->kind = EV_EXPIRED;
        } else {
            e->kind = EV_IGNORED;
        }
        return;
    }
    e->kind = EV_IGNORED;   /* skipped, held, released, requeued, ... */
}

/* ---- delivery agents ------------------------------------------------- */

static enum rp_status status_of(const char *s)
{
    switch (s[0]) {
    case 's': return strcmp(s, "sent") == 0 ? ST_SENT : ST_OTHER;
    case 'd': return strcmp(s, "deferred") == 0 ? ST_DEFERRED : ST_OTHER;
    case 'b': return strcmp(s, "bounced") == 0 ? ST_BOUNCED : ST_OTHER;
    default: return ST_OTHER;
    }
}

/* "to=<r>, orig_to=<o>, relay=R, conn_use=N, delay=D, delays=a/b/c/d,
 * dsn=X, tls=..., status=S (reply)": fields in any order, unknown ones
 * skipped (Postfix 3.11 adds tls=). */
static void p_to_fields(char *p, struct rp_ev *e)
{
    /* the fields are short: plain loops, no library call per field */
    while (*p) {
        char *eq = p;
        while (*eq != '=' && *eq != '\0')
            eq++;
        if (*eq == '\0')
            return;
        *eq = '\0';
        char *key = p, *val = eq + 1, *next;
        if (eq - key == 6 && memcmp(key, "status", 6) == 0) {
            char *sp = val;
            while (*sp != ' ' && *sp != '\0')
                sp++;
            char *reply = NULL;
            if (*sp) {
                *sp = '\0';
                reply = sp + 1;
                if (*reply == '(') {
                    reply++;
                    size_t rl = strlen(reply);
                    if (rl && reply[rl - 1] == ')')
                        reply[rl - 1] = '\0';
                }
            }
            e->status = status_of(val);
            e->reply = reply ? reply : "";
            e->forwarded = reply && strstr(reply, "forwarded as ") != NULL;
            return;
        }
        if (*val == '<') {
            next = val;
            while (*next != '>' && *next != '\0')
                next++;
            if (*next == '>')
                next++;
        } else {
            next = val;
            while (*next != ',' && *next != '\0')
                next++;
        }
        if (*next == ',') {
            *next++ = '\0';
            while (*next == ' ')
                next++;
        } else if (*next) {
            *next++ = '\0';
        }
        size_t kl = (size_t)(eq - key);
        if (kl == 7 && memcmp(key, "orig_to", 7) == 0) {
            char *end;
            e->orig_to = take_angle(val, &end);
        } else if (kl == 5 && memcmp(key, "relay", 5) == 0) {
            e->relay = val;
        } else if (kl == 5 && memcmp(key, "delay", 5) == 0) {
            e->delay = parse_decimal(val);
            e->has_delay = true;
        } else if (kl == 3 && memcmp(key, "dsn", 3) == 0) {
            e->dsn = val;
        } else if (kl == 3 && memcmp(key, "tls", 3) == 0) {
            char *colon = strchr(val, ':');     /* "TLSv1.3:CIPHER" */
            if (colon) {
                *colon = '\0';
                e->tls_cipher = colon + 1;
            }
            e->tls_proto = val;
        }
        p = next;
    }
}

static void p_delivery(char *msg, struct rp_ev *e)
{
    const char *qid;
    char *rest = split_qid(msg, &qid);
    if (rest == NULL) {
        if (p_tls_established(msg, e) || p_session(msg, e))
            return;
        if (strncmp(msg, "connect to ", 11) == 0) {
            char *host = msg + 11;
            char *colon = strstr(host, ": ");
            if (colon) {
                *colon = '\0';
                e->text = colon + 2;
                set_client(e, host);
                e->kind = EV_SMTP_FAIL;
            }
            return;
        }
        if (strncmp(msg, "Trusted TLS", 11) == 0 || strncmp(msg, "Untrusted TLS", 13) == 0 ||
            strncmp(msg, "Verified TLS", 12) == 0 || strncmp(msg, "certificate", 11) == 0 ||
            strncmp(msg, "host ", 5) == 0 || strncmp(msg, "SSL_", 4) == 0 ||
            strncmp(msg, "server certificate", 18) == 0)
            e->kind = EV_IGNORED;
        return;
    }
    e->qid = qid;
    if (strncmp(rest, "to=<", 4) != 0) {
        if (strncmp(rest, "Cannot start TLS", 16) == 0) {
            e->kind = EV_TLS_FAIL;
            e->outbound = true;
            e->text = rest;
            e->qid = NULL;
            return;
        }
        e->kind = EV_IGNORED;  /* lost connection with, host said, enabling PIX */
        return;
    }
    char *end;
    e->addr = take_angle(rest + 3, &end);
    if (e->addr == NULL)
        return;
    if (*end == ',')
        end++;
    while (*end == ' ')
        end++;
    p_to_fields(end, e);
    if (e->status != ST_NONE && e->relay != NULL) {
        e->kind = EV_DELIVERY;
        const char *qa = e->reply ? strstr(e->reply, "queued as ") : NULL;
        if (qa) {
            size_t n = strcspn(qa + 10, " )");
            if (n < sizeof(e->link) && rpp_is_qid(qa + 10, n)) {
                memcpy(e->link, qa + 10, n);
                e->link[n] = '\0';
                e->link_qid = e->link;
            }
        }
    }
}

/* ---- bounce, pickup, master ------------------------------------------ */

static void p_bounce(char *msg, struct rp_ev *e)
{
    const char *qid;
    char *rest = split_qid(msg, &qid);
    if (rest == NULL)
        return;
    e->qid = qid;
    char *n = strstr(rest, "notification: ");
    if (n) {
        char *q = n + 14;
        q[strcspn(q, " ")] = '\0';
        e->link_qid = q;
        e->kind = EV_NOTICE;
        return;
    }
    e->kind = EV_IGNORED;
}

static void p_pickup(char *msg, struct rp_ev *e)
{
    const char *qid;
    char *rest = split_qid(msg, &qid);
    if (rest == NULL)
        return;
    e->qid = qid;
    if (strncmp(rest, "uid=", 4) == 0 || strncmp(rest, "sender=", 7) == 0) {
        const char *f = rpp_field(rest, "from");
        if (f && *f == '<') {
            rpp_value(f, e->fbuf, sizeof(e->fbuf));
            e->fbuf[strcspn(e->fbuf, ">")] = '\0';
            e->addr = e->fbuf + 1;
        }
        e->kind = EV_PICKUP;
        return;
    }
    e->kind = EV_IGNORED;
}

static void p_master(char *msg, struct rp_ev *e)
{
    e->kind = EV_MASTER;
    e->text = msg;
}

static void p_quiet(char *msg, struct rp_ev *e)
{
    e->kind = EV_IGNORED;
}

rpp_fn rpp_handler(const char *svc)
{
    const struct rpp_svc *s = find_svc(svc);
    /* an unknown daemon name (a renamed transport): delivery forms */
    return s ? s->fn : p_delivery;
}

void rpp_parse(struct rp_hdr *h, struct rp_ev *e)
{
    e->svc = h->svc;
    if (p_severity(h->msg, e))
        return;
    (h->fn ? h->fn : rpp_handler(h->svc))(h->msg, e);
}
