/*
 * imap_client.c - an IMAP client connection on the linechat engine (see
 * imap_client.h).
 *
 * Responses are assembled in wire form (lines, literals) in one bounded
 * buffer and handed whole to imap_parse(); the client notes what it needs
 * (capabilities, mailbox state), passes untagged responses on and completes
 * tagged ones by tag. Session set-up is a sequence of imapc_run() calls
 * through the states of imapc_enter().
 */
#include "mail/imap_client.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAPC_LINE_MAX (256 * 1024)
#define IMAPC_RESP_SLACK (1024 * 1024)

enum imapc_state {
    IC_NEW, IC_GREETING, IC_NOAUTH, IC_STARTTLS, IC_AUTH, IC_READY, IC_FAILED, IC_COUNT
};

static const char *const imapc_state_names[IC_COUNT] = {
    "NEW", "GREETING", "NOT-AUTHENTICATED", "STARTTLS", "AUTHENTICATING", "READY", "FAILED",
};

struct imapc_pending {
    struct imapc_pending *next;
    char tag[16];
    uint64_t id;
    imapc_done_fn done;
    void *arg;
};

struct imapc_cmd {
    struct imapc *c;
    uint64_t id;
    struct buf text;
};

struct imapc {
    struct event_base *base;
    struct imapc_opts o;
    char host[256], user[256], label[32], trace[64];
    char *password;
    struct lc_conn *lc;
    enum imapc_state state;
    unsigned caps;
    uint64_t appendlimit;
    char ns_prefix[256];
    char sep;
    struct imapc_mailbox mbox;
    struct buf resp;
    struct imap_resp parsed;
    struct imapc_pending *pending, *pending_tail;
    size_t npending;
    uint64_t next_id;
    imapc_untagged_fn untagged;
    void *untagged_arg;
    bool greeted, preauth, tls_done, caps_seen;
    char *auth_reply;           /* base64 SASL response awaiting a "+" */
    enum imapc_err err;
    char errmsg[512];
    char last_text[512];
};

static void imapc_enter(struct imapc *c, enum imapc_state st)
{
    if (c->trace[0])
        log_svc("imap", "%s: %s -> %s", c->trace, imapc_state_names[c->state],
                imapc_state_names[st]);
    c->state = st;
}

/* ---------------------------------------------------------------------- */
/* failure                                                                 */

static void imapc_fail_pending(struct imapc *c)
{
    while (c->pending) {
        struct imapc_pending *p = c->pending;
        c->pending = p->next;
        c->npending--;
        if (p->done)
            p->done(c, NULL, p->arg);
        free(p);
    }
    c->pending_tail = NULL;
}

static void imapc_set_error(struct imapc *c, enum imapc_err e, const char *why)
{
    if (c->err != IMAPC_E_NONE)
        return;
    c->err = e;
    snprintf(c->errmsg, sizeof(c->errmsg), "%s (%s): %s", c->label, c->host, why);
    imapc_enter(c, IC_FAILED);
}

static enum imapc_err class_of(struct imapc *c, enum lc_error e)
{
    switch (e) {
    case LC_ERR_CONNECT: return IMAPC_E_CONNECT;
    case LC_ERR_TLS: return IMAPC_E_TLS;
    case LC_ERR_AUTH: return IMAPC_E_AUTH;
    case LC_ERR_CLOSED:
    case LC_ERR_TIMEOUT: return c->state < IC_NOAUTH ? IMAPC_E_CONNECT : IMAPC_E_CLOSED;
    default: return IMAPC_E_PROTOCOL;
    }
}

static void on_error(struct lc_conn *lc, void *arg, enum lc_error e, const char *why)
{
    struct imapc *c = arg;
    imapc_set_error(c, class_of(c, e), why);
    imapc_fail_pending(c);
}

static void protocol_error(struct imapc *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void protocol_error(struct imapc *c, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    lc_fail(c->lc, LC_ERR_PROTOCOL, "%s", why);
}

/* ---------------------------------------------------------------------- */
/* capabilities and response codes                                         */

static const struct {
    const char *name;
    unsigned bit;
} cap_table[] = {
    {"IMAP4REV2", IMAPC_IMAP4REV2}, {"IMAP4REV1", IMAPC_IMAP4REV1},
    {"LITERAL+", IMAPC_LITERALPLUS}, {"LITERAL-", IMAPC_LITERALMINUS},
    {"UIDPLUS", IMAPC_UIDPLUS}, {"MULTIAPPEND", IMAPC_MULTIAPPEND},
    {"ESEARCH", IMAPC_ESEARCH}, {"CONDSTORE", IMAPC_CONDSTORE}, {"QRESYNC", IMAPC_QRESYNC},
    {"NAMESPACE", IMAPC_NAMESPACE}, {"LIST-EXTENDED", IMAPC_LIST_EXTENDED},
    {"SPECIAL-USE", IMAPC_SPECIAL_USE}, {"ID", IMAPC_ID}, {"STARTTLS", IMAPC_STARTTLS},
    {"LOGINDISABLED", IMAPC_LOGINDISABLED}, {"SASL-IR", IMAPC_SASL_IR},
    {"AUTH=PLAIN", IMAPC_CAP_PLAIN}, {"AUTH=XOAUTH2", IMAPC_CAP_XOAUTH2},
    {"ENABLE", IMAPC_ENABLE}, {"UNSELECT", IMAPC_UNSELECT},
};

static void note_caps(struct imapc *c, const struct imap_resp *r, size_t from, size_t to)
{
    c->caps = 0;
    c->caps_seen = true;
    for (size_t i = from; i < to; i++) {
        const struct imap_tok *t = &r->tok[i];
        if (t->type != IMAP_ATOM)
            continue;
        if (t->len > 12 && strncasecmp(t->p, "APPENDLIMIT=", 12) == 0) {
            char num[24];
            imap_tok_str(t, num, sizeof(num));
            uint64_t v;
            if (str_to_u64(num + 12, &v) == 0)
                c->appendlimit = v;
            c->caps |= IMAPC_APPENDLIMIT;
            continue;
        }
        for (size_t k = 0; k < sizeof(cap_table) / sizeof(cap_table[0]); k++)
            if (imap_tok_is(t, cap_table[k].name))
                c->caps |= cap_table[k].bit;
    }
}

static void note_code(struct imapc *c, const struct imap_resp *r)
{
    if (r->code == r->code_end)
        return;
    const struct imap_tok *arg = r->code + 1 < r->code_end ? &r->tok[r->code + 1] : NULL;
    if (imap_code_is(r, "CAPABILITY"))
        note_caps(c, r, r->code + 1, r->code_end);
    else if (imap_code_is(r, "UIDVALIDITY") && arg && arg->type == IMAP_NUM)
        c->mbox.uidvalidity = arg->num;
    else if (imap_code_is(r, "UIDNEXT") && arg && arg->type == IMAP_NUM)
        c->mbox.uidnext = arg->num;
    else if (imap_code_is(r, "HIGHESTMODSEQ") && arg && arg->type == IMAP_NUM)
        c->mbox.highestmodseq = arg->num;
    else if (imap_code_is(r, "READ-ONLY"))
        c->mbox.readonly = true;
    else if (imap_code_is(r, "ALERT"))
        log_svc_warn("imap", "%s (%s) alert: %.*s", c->label, c->host, (int)r->text_len,
                     r->text);
}

/* ---------------------------------------------------------------------- */
/* responses                                                               */

static void handle_untagged(struct imapc *c, const struct imap_resp *r)
{
    note_code(c, r);
    if (r->status == IMAP_BYE) {
        snprintf(c->last_text, sizeof(c->last_text), "%.*s", (int)r->text_len, r->text);
        char why[400];
        snprintf(why, sizeof(why), "server said BYE: %.*s", (int)(r->text_len > 300 ? 300 :
                 r->text_len), r->text);
        if (!c->greeted)
            c->greeted = true;
        lc_fail(c->lc, c->state == IC_GREETING ? LC_ERR_CONNECT : LC_ERR_CLOSED, "%s", why);
        return;
    }
    if (!c->greeted) {
        c->greeted = true;
        c->preauth = r->status == IMAP_PREAUTH;
        if (r->status != IMAP_OK && r->status != IMAP_PREAUTH)
            protocol_error(c, "bad greeting");
        return;
    }
    if (strcmp(r->keyword, "CAPABILITY") == 0)
        note_caps(c, r, r->data, r->ntok);
    else if (r->has_num && strcmp(r->keyword, "EXISTS") == 0)
        c->mbox.exists = r->num;
    else if (r->has_num && strcmp(r->keyword, "EXPUNGE") == 0 && c->mbox.exists > 0)
        c->mbox.exists--;
    if (c->untagged)
        c->untagged(c, r, c->untagged_arg);
}

static void handle_tagged(struct imapc *c, const struct imap_resp *r)
{
    note_code(c, r);
    struct imapc_pending **pp = &c->pending, *prev = NULL;
    while (*pp && strcmp((*pp)->tag, r->tag) != 0) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    struct imapc_pending *p = *pp;
    if (p == NULL) {
        protocol_error(c, "tagged response for unknown tag '%s'", r->tag);
        return;
    }
    *pp = p->next;
    if (c->pending_tail == p)
        c->pending_tail = prev;
    c->npending--;
    if (r->status != IMAP_OK && lc_is_open(c->lc))
        lc_cancel_gated(c->lc, p->id);
    lc_reply_done(c->lc);
    if (p->done)
        p->done(c, r, p->arg);
    free(p);
}

static void handle_continue(struct imapc *c, const struct imap_resp *r)
{
    if (c->auth_reply) {
        lc_send_owned(c->lc, 0, c->auth_reply, strlen(c->auth_reply), LC_SEG_SECRET);
        c->auth_reply = NULL;
    } else if (c->state == IC_AUTH) {
        lc_send(c->lc, 0, "\r\n", 2, 0);     /* SASL error challenge: end it */
    } else if (lc_gate_waiting(c->lc)) {
        lc_continue(c->lc);
    } else {
        protocol_error(c, "unexpected continuation request");
    }
}

static void dispatch(struct imapc *c)
{
    char err[256];
    if (imap_parse(c->resp.data, c->resp.len, &c->parsed, err, sizeof(err)) < 0) {
        char head[80];
        size_t n = c->resp.len < 60 ? c->resp.len : 60;
        size_t k = 0;
        for (size_t i = 0; i < n && c->resp.data[i] != '\r' && c->resp.data[i] != '\n'; i++)
            head[k++] = (c->resp.data[i] >= 0x20 && c->resp.data[i] < 0x7f) ?
                        c->resp.data[i] : '?';
        head[k] = '\0';
        protocol_error(c, "unparsable response (%s): \"%s\"", err, head);
        return;
    }
    if (c->parsed.kind == IMAP_CONTINUE)
        handle_continue(c, &c->parsed);
    else if (c->parsed.kind == IMAP_TAGGED)
        handle_tagged(c, &c->parsed);
    else
        handle_untagged(c, &c->parsed);
}

/* A line ending in {N} announces a literal. */
static bool trailing_literal(const char *line, size_t len, uint64_t *n)
{
    if (len < 3 || line[len - 1] != '}')
        return false;
    size_t i = len - 1;
    if (line[i - 1] == '+')
        i--;
    size_t end = i;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
        i--;
    if (i == 0 || line[i - 1] != '{' || end == i || end - i > 19)
        return false;
    uint64_t v = 0;
    for (size_t k = i; k < end; k++) {
        uint64_t d = (uint64_t)(line[k] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *n = v;
    return true;
}

static void resp_reset(struct imapc *c)
{
    if (c->resp.cap > 4 * IMAPC_RESP_SLACK) {
        size_t max = c->resp.max;
        buf_free(&c->resp);
        buf_init(&c->resp, max);
    }
    buf_reset(&c->resp);
}

static int on_line(struct lc_conn *lc, void *arg, char *line, size_t len, uint64_t *lit)
{
    struct imapc *c = arg;
    if (buf_append(&c->resp, line, len) < 0 || buf_append(&c->resp, "\r\n", 2) < 0) {
        lc_fail(lc, LC_ERR_TOOBIG, "response larger than %zu bytes", c->resp.max);
        return LC_LINE_STOP;
    }
    uint64_t n;
    if (trailing_literal(line, len, &n)) {
        if (n > c->resp.max - c->resp.len) {
            lc_fail(lc, LC_ERR_TOOBIG, "server announced a literal of %llu bytes, over "
                    "the limit of %llu", (unsigned long long)n,
                    (unsigned long long)c->o.max_message);
            return LC_LINE_STOP;
        }
        *lit = n;
        return LC_LINE_LITERAL;
    }
    dispatch(c);
    resp_reset(c);
    return LC_LINE_OK;
}

static void on_literal(struct lc_conn *lc, void *arg, const char *data, size_t len,
                       bool last)
{
    struct imapc *c = arg;
    if (buf_append(&c->resp, data, len) < 0)
        lc_fail(lc, LC_ERR_TOOBIG, "response larger than %zu bytes", c->resp.max);
}

static void on_tls(struct lc_conn *lc, void *arg)
{
    ((struct imapc *)arg)->tls_done = true;
}

static const struct lc_proto imapc_proto = {
    .name = "imap",
    .on_open = NULL,
    .on_line = on_line,
    .on_literal = on_literal,
    .on_tls = on_tls,
    .on_error = on_error,
};

/* ---------------------------------------------------------------------- */
/* commands                                                                */

struct imapc_cmd *imapc_cmd_new(struct imapc *c)
{
    struct imapc_cmd *b = xcalloc(1, sizeof(*b));
    b->c = c;
    b->id = ++c->next_id;
    buf_init(&b->text, IMAPC_LINE_MAX);
    buf_printf(&b->text, "S%llu ", (unsigned long long)b->id);
    return b;
}

void imapc_cmd_text(struct imapc_cmd *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b->text, fmt, ap);
    va_end(ap);
}

void imapc_cmd_literal(struct imapc_cmd *b, char *data, size_t len)
{
    struct imapc *c = b->c;
    bool plus = imapc_has(c, IMAPC_LITERALPLUS) ||
                (imapc_has(c, IMAPC_LITERALMINUS) && len <= 4096);
    buf_printf(&b->text, "{%zu%s}\r\n", len, plus ? "+" : "");
    unsigned flags = 0;
    if (lc_is_open(c->lc)) {
        size_t n = b->text.len;
        lc_send_owned(c->lc, b->id, buf_steal(&b->text), n, 0);
        buf_init(&b->text, IMAPC_LINE_MAX);
        flags = plus ? 0 : LC_SEG_GATED;
    }
    if (lc_is_open(c->lc))
        lc_send_owned(c->lc, b->id, data, len, flags);
    else
        free(data);
}

void imapc_cmd_astring(struct imapc_cmd *b, const char *s)
{
    bool plain = true;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            plain = false;
    if (!plain) {
        imapc_cmd_literal(b, xstrdup(s), strlen(s));
        return;
    }
    buf_putc(&b->text, '"');
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_putc(&b->text, '\\');
        buf_putc(&b->text, *p);
    }
    buf_putc(&b->text, '"');
}

static void imapc_cmd_send_flags(struct imapc_cmd *b, imapc_done_fn done, void *arg,
                                 unsigned flags)
{
    struct imapc *c = b->c;
    buf_puts(&b->text, "\r\n");
    if (c->err != IMAPC_E_NONE || !lc_is_open(c->lc)) {
        buf_free(&b->text);
        free(b);
        if (done)
            done(c, NULL, arg);
        return;
    }
    struct imapc_pending *p = xcalloc(1, sizeof(*p));
    snprintf(p->tag, sizeof(p->tag), "S%llu", (unsigned long long)b->id);
    p->id = b->id;
    p->done = done;
    p->arg = arg;
    if (c->pending_tail)
        c->pending_tail->next = p;
    else
        c->pending = p;
    c->pending_tail = p;
    c->npending++;
    lc_expect_reply(c->lc);
    size_t n = b->text.len;
    lc_send_owned(c->lc, b->id, buf_steal(&b->text), n, flags);
    free(b);
}

void imapc_cmd_send(struct imapc_cmd *b, imapc_done_fn done, void *arg)
{
    imapc_cmd_send_flags(b, done, arg, 0);
}

size_t imapc_pending(const struct imapc *c)
{
    return c->npending;
}

struct run_state {
    bool done;
    int status;
};

static void run_done(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct run_state *rs = arg;
    rs->done = true;
    rs->status = r ? (int)r->status : -1;
    if (r)
        snprintf(c->last_text, sizeof(c->last_text), "%.*s", (int)r->full_len, r->full);
}

static int imapc_send_wait(struct imapc *c, struct imapc_cmd *b, unsigned flags)
{
    struct run_state rs = {false, -1};
    imapc_cmd_send_flags(b, run_done, &rs, flags);
    imapc_wait(c, &rs.done);
    return rs.done ? rs.status : -1;
}

int imapc_cmd_wait(struct imapc_cmd *b)
{
    return imapc_send_wait(b->c, b, 0);
}

int imapc_run(struct imapc *c, const char *fmt, ...)
{
    struct imapc_cmd *b = imapc_cmd_new(c);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b->text, fmt, ap);
    va_end(ap);
    return imapc_send_wait(c, b, 0);
}

void imapc_wait(struct imapc *c, const bool *flag)
{
    while (!*flag && c->err == IMAPC_E_NONE)
        event_base_loop(c->base, EVLOOP_ONCE);
}

void imapc_drain(struct imapc *c)
{
    while (c->npending > 0 && c->err == IMAPC_E_NONE)
        event_base_loop(c->base, EVLOOP_ONCE);
}

int imapc_select(struct imapc *c, const char *mailbox, bool readonly)
{
    memset(&c->mbox, 0, sizeof(c->mbox));
    struct imapc_cmd *b = imapc_cmd_new(c);
    imapc_cmd_text(b, "%s ", readonly ? "EXAMINE" : "SELECT");
    imapc_cmd_astring(b, mailbox);
    if (imapc_has(c, IMAPC_CONDSTORE))
        imapc_cmd_text(b, " (CONDSTORE)");     /* RFC 7162: report HIGHESTMODSEQ */
    return imapc_send_wait(c, b, 0);
}

/* ---------------------------------------------------------------------- */
/* session set-up                                                          */

static char *b64(const unsigned char *p, size_t n)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 3);
    int k = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    out[k] = '\0';
    return out;
}

/* base64 of the SASL initial response, with CRLF. */
static char *sasl_response(struct imapc *c, bool xoauth2)
{
    struct buf raw;
    buf_init(&raw, 64 * 1024);
    if (xoauth2)
        buf_printf(&raw, "user=%s\001auth=Bearer %s\001\001", c->user, c->password);
    else {
        buf_putc(&raw, '\0');
        buf_puts(&raw, c->user);
        buf_putc(&raw, '\0');
        buf_puts(&raw, c->password);
    }
    char *enc = b64((unsigned char *)raw.data, raw.len);
    OPENSSL_cleanse(raw.data, raw.len);
    buf_free(&raw);
    char *line = xasprintf("%s\r\n", enc);
    free(enc);
    return line;
}

static int imapc_authenticate(struct imapc *c)
{
    enum imapc_auth how = c->o.auth;
    if (how == IMAPC_AUTH_AUTO)
        how = imapc_has(c, IMAPC_CAP_PLAIN) ? IMAPC_AUTH_PLAIN : IMAPC_AUTH_LOGIN;
    if (how == IMAPC_AUTH_LOGIN && imapc_has(c, IMAPC_LOGINDISABLED)) {
        imapc_set_error(c, IMAPC_E_AUTH, "LOGIN is disabled on this connection (try TLS)");
        return -1;
    }
    imapc_enter(c, IC_AUTH);
    struct imapc_cmd *b = imapc_cmd_new(c);
    if (how == IMAPC_AUTH_LOGIN) {
        imapc_cmd_text(b, "LOGIN ");
        imapc_cmd_astring(b, c->user);
        imapc_cmd_text(b, " ");
        imapc_cmd_astring(b, c->password);
    } else {
        const char *mech = how == IMAPC_AUTH_XOAUTH2 ? "XOAUTH2" : "PLAIN";
        char *resp = sasl_response(c, how == IMAPC_AUTH_XOAUTH2);
        imapc_cmd_text(b, "AUTHENTICATE %s", mech);
        if (imapc_has(c, IMAPC_SASL_IR)) {
            imapc_cmd_text(b, " %.*s", (int)(strlen(resp) - 2), resp);
            free(resp);
        } else {
            c->auth_reply = resp;
        }
    }
    int st = imapc_send_wait(c, b, LC_SEG_SECRET);
    free(c->auth_reply);
    c->auth_reply = NULL;
    if (st == IMAP_OK)
        return 0;
    if (st >= 0) {
        char why[600];
        snprintf(why, sizeof(why), "authentication as %s failed: %s", c->user, c->last_text);
        imapc_set_error(c, IMAPC_E_AUTH, why);
    }
    return -1;
}

static int imapc_starttls(struct imapc *c)
{
    if (!imapc_has(c, IMAPC_STARTTLS)) {
        imapc_set_error(c, IMAPC_E_TLS, "STARTTLS was requested but is not offered");
        return -1;
    }
    imapc_enter(c, IC_STARTTLS);
    if (imapc_run(c, "STARTTLS") != IMAP_OK) {
        imapc_set_error(c, IMAPC_E_TLS, "STARTTLS refused");
        return -1;
    }
    if (lc_starttls(c->lc) < 0)
        return -1;
    imapc_wait(c, &c->tls_done);
    if (c->err != IMAPC_E_NONE)
        return -1;
    c->caps_seen = false;
    c->caps = 0;
    return imapc_run(c, "CAPABILITY") == IMAP_OK ? 0 : -1;
}

static void ns_untagged(struct imapc *c, const struct imap_resp *r, void *arg)
{
    if (strcmp(r->keyword, "NAMESPACE") != 0 || r->data >= r->ntok)
        return;
    const struct imap_tok *personal = &r->tok[r->data];
    if (personal->type != IMAP_LIST || personal->end <= r->data + 1)
        return;
    size_t first = r->data + 1;   /* ("prefix" "sep") */
    if (r->tok[first].type != IMAP_LIST || r->tok[first].end < first + 3)
        return;
    imap_tok_str(&r->tok[first + 1], c->ns_prefix, sizeof(c->ns_prefix));
    const struct imap_tok *s = &r->tok[first + 2];
    c->sep = s->type == IMAP_STR && s->len == 1 ? s->p[0] : '\0';
}

static void sep_untagged(struct imapc *c, const struct imap_resp *r, void *arg)
{
    if (strcmp(r->keyword, "LIST") != 0 || r->data + 1 >= r->ntok)
        return;
    const struct imap_tok *s = &r->tok[r->tok[r->data].end];
    c->sep = s->type == IMAP_STR && s->len == 1 ? s->p[0] : '\0';
}

static void imapc_after_login(struct imapc *c)
{
    if (!c->caps_seen || !(c->caps & (IMAPC_IMAP4REV1 | IMAPC_IMAP4REV2)))
        imapc_run(c, "CAPABILITY");
    imapc_untagged_fn saved = c->untagged;
    void *saved_arg = c->untagged_arg;
    if (imapc_has(c, IMAPC_IMAP4REV2 | IMAPC_ENABLE))
        imapc_run(c, "ENABLE IMAP4rev2");      /* RFC 9051 where offered */
    if (imapc_has(c, IMAPC_ID))
        imapc_run(c, "ID (\"name\" \"sluice\" \"version\" \"%s\")", SLUICE_VERSION);
    c->untagged = ns_untagged;
    if (imapc_has(c, IMAPC_NAMESPACE))
        imapc_run(c, "NAMESPACE");
    if (!imapc_has(c, IMAPC_NAMESPACE) || c->sep == '\0') {
        c->untagged = sep_untagged;
        imapc_run(c, "LIST \"\" \"\"");
    }
    c->untagged = saved;
    c->untagged_arg = saved_arg;
}

int imapc_open(struct imapc *c)
{
    struct lc_opts lo = {
        .host = c->host, .port = c->o.port, .security = c->o.security,
        .tls_ctx = c->o.tls_ctx, .tls_verify = c->o.tls_verify,
        .connect_timeout = c->o.connect_timeout, .cmd_timeout = c->o.cmd_timeout,
        .line_max = IMAPC_LINE_MAX, .literal_max = c->o.max_message,
        .trace_tag = c->trace[0] ? c->trace : NULL,
    };
    c->lc = lc_new(c->base, NULL, &imapc_proto, c, &lo);
    imapc_enter(c, IC_GREETING);
    if (lc_connect(c->lc) < 0 && c->err == IMAPC_E_NONE)
        imapc_set_error(c, IMAPC_E_CONNECT, "cannot connect");
    lc_expect_reply(c->lc);      /* the greeting */
    imapc_wait(c, &c->greeted);
    if (c->err != IMAPC_E_NONE)
        return -1;
    lc_reply_done(c->lc);
    imapc_enter(c, IC_NOAUTH);
    if (!c->caps_seen && imapc_run(c, "CAPABILITY") != IMAP_OK)
        return -1;
    if (c->o.security == LC_TLS_STARTTLS && imapc_starttls(c) < 0)
        return -1;
    if (!c->preauth && imapc_authenticate(c) < 0)
        return -1;
    imapc_after_login(c);
    if (c->err != IMAPC_E_NONE)
        return -1;
    imapc_enter(c, IC_READY);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* lifetime and accessors                                                  */

struct imapc *imapc_new(struct event_base *base, const struct imapc_opts *o)
{
    struct imapc *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->o = *o;
    str_copy(c->host, o->host ? o->host : "127.0.0.1", sizeof(c->host));
    str_copy(c->user, o->user ? o->user : "", sizeof(c->user));
    str_copy(c->label, o->label ? o->label : "imap", sizeof(c->label));
    if (o->trace)
        snprintf(c->trace, sizeof(c->trace), "%s", o->trace);
    c->password = xstrdup(o->password ? o->password : "");
    c->o.host = c->host;
    c->o.user = c->user;
    c->o.password = NULL;
    if (c->o.max_message == 0)
        c->o.max_message = 64u * 1024 * 1024;
    buf_init(&c->resp, (size_t)c->o.max_message + IMAPC_RESP_SLACK);
    imap_resp_init(&c->parsed);
    return c;
}

void imapc_logout(struct imapc *c)
{
    if (c->err == IMAPC_E_NONE && c->lc && lc_is_open(c->lc))
        imapc_run(c, "LOGOUT");
}

void imapc_free(struct imapc *c)
{
    if (c == NULL)
        return;
    if (c->lc) {
        lc_close(c->lc);
        imapc_fail_pending(c);
        lc_free(c->lc);
    }
    OPENSSL_cleanse(c->password, strlen(c->password));
    free(c->password);
    free(c->auth_reply);
    buf_free(&c->resp);
    imap_resp_free(&c->parsed);
    free(c);
}

bool imapc_has(const struct imapc *c, unsigned cap)
{
    return (c->caps & cap) == cap;
}

uint64_t imapc_appendlimit(const struct imapc *c)
{
    return c->appendlimit;
}

const char *imapc_ns_prefix(const struct imapc *c)
{
    return c->ns_prefix;
}

char imapc_separator(const struct imapc *c)
{
    return c->sep;
}

const struct imapc_mailbox *imapc_selected(const struct imapc *c)
{
    return &c->mbox;
}

bool imapc_failed(const struct imapc *c)
{
    return c->err != IMAPC_E_NONE;
}

enum imapc_err imapc_errclass(const struct imapc *c)
{
    return c->err;
}

const char *imapc_error(const struct imapc *c)
{
    return c->errmsg[0] ? c->errmsg : "no error";
}

const char *imapc_label(const struct imapc *c)
{
    return c->label;
}

const char *imapc_last_text(const struct imapc *c)
{
    return c->last_text;
}

struct event_base *imapc_base(const struct imapc *c)
{
    return c->base;
}

void imapc_set_untagged(struct imapc *c, imapc_untagged_fn fn, void *arg)
{
    c->untagged = fn;
    c->untagged_arg = arg;
}

void imapc_flags_text(const struct imap_resp *r, long list, char *dst, size_t dstlen)
{
    size_t off = 0;
    dst[0] = '\0';
    if (list < 0 || r->tok[list].type != IMAP_LIST)
        return;
    for (size_t i = (size_t)list + 1; i < r->tok[list].end; i = r->tok[i].end) {
        const struct imap_tok *t = &r->tok[i];
        if (t->type != IMAP_ATOM || imap_tok_is(t, "\\Recent"))
            continue;
        if (off + t->len + 2 >= dstlen)
            break;
        if (off)
            dst[off++] = ' ';
        memcpy(dst + off, t->p, t->len);
        off += t->len;
        dst[off] = '\0';
    }
}
