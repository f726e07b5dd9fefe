/*
 * pop3_client.c - a POP3 client connection on the linechat engine (see
 * pop3_client.h).
 *
 * Replies come back in command order, so pending commands are a FIFO.
 * Each has a kind (single-line, multi-line) and a completion; multi-line
 * bodies are dot-unstuffed into one bounded buffer.
 */
#include "mail/pop3_client.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POP3C_LINE_MAX (64 * 1024)
#define POP3C_WINDOW 16

enum pop3c_state { PS_NEW, PS_GREETING, PS_AUTH, PS_TRANSACTION, PS_FAILED, PS_COUNT };
static const char *const pop3c_state_names[PS_COUNT] = {
    "NEW", "GREETING", "AUTHORIZATION", "TRANSACTION", "FAILED",
};

struct pop3c_cmd {
    struct pop3c_cmd *next;
    char *line;             /* owned; may hold credentials */
    bool multi, sent, secret;
    uint32_t num;
    void (*done)(struct pop3c *p, struct pop3c_cmd *c, bool ok, const char *text);
    pop3c_msg_fn fn;
    void *arg;
};

struct pop3c {
    struct event_base *base;
    struct pop3c_opts o;
    char host[256], label[32], trace[64];
    char *user, *password;
    struct lc_conn *lc;
    enum pop3c_state state;
    bool pipelining, stls, uidl_cap, greeted, tls_done;
    struct pop3c_cmd *head, *tail;
    size_t npending, nsent;
    bool in_body;
    struct buf body;
    enum pop3c_err err;
    char errmsg[512], last[256];
};

static void pop3c_enter(struct pop3c *p, enum pop3c_state st)
{
    if (p->trace[0])
        log_svc("pop3", "%s: %s -> %s", p->trace, pop3c_state_names[p->state],
                pop3c_state_names[st]);
    p->state = st;
}

static void pop3c_set_error(struct pop3c *p, enum pop3c_err e, const char *why)
{
    if (p->err != POP3C_E_NONE)
        return;
    p->err = e;
    snprintf(p->errmsg, sizeof(p->errmsg), "%s (%s): %s", p->label, p->host, why);
    pop3c_enter(p, PS_FAILED);
}

static void cmd_free(struct pop3c_cmd *c)
{
    if (c->secret)
        OPENSSL_cleanse(c->line, strlen(c->line));
    free(c->line);
    free(c);
}

static void pop3c_fail_all(struct pop3c *p)
{
    while (p->head) {
        struct pop3c_cmd *c = p->head;
        p->head = c->next;
        if (c->done)
            c->done(p, c, false, NULL);
        cmd_free(c);
    }
    p->tail = NULL;
    p->npending = p->nsent = 0;
}

static void on_error(struct lc_conn *lc, void *arg, enum lc_error e, const char *why)
{
    struct pop3c *p = arg;
    enum pop3c_err cls = e == LC_ERR_CONNECT ? POP3C_E_CONNECT
                       : e == LC_ERR_TLS ? POP3C_E_TLS
                       : e == LC_ERR_AUTH ? POP3C_E_AUTH
                       : (e == LC_ERR_CLOSED || e == LC_ERR_TIMEOUT) ?
                         (p->state < PS_AUTH ? POP3C_E_CONNECT : POP3C_E_CLOSED)
                       : POP3C_E_PROTOCOL;
    pop3c_set_error(p, cls, why);
    pop3c_fail_all(p);
}

/* Send queued commands: all up to the window when pipelining, else one. */
static void pop3c_push(struct pop3c *p)
{
    size_t window = p->pipelining ? POP3C_WINDOW : 1;
    for (struct pop3c_cmd *c = p->head; c && p->nsent < window; c = c->next) {
        if (c->sent)
            continue;
        c->sent = true;
        p->nsent++;
        lc_expect_reply(p->lc);
        lc_send(p->lc, 0, c->line, strlen(c->line), c->secret ? LC_SEG_SECRET : 0);
    }
}

static void pop3c_queue(struct pop3c *p, const char *line, bool multi, bool secret,
                        void (*done)(struct pop3c *, struct pop3c_cmd *, bool, const char *),
                        pop3c_msg_fn fn, void *arg, uint32_t num)
{
    struct pop3c_cmd *c = xcalloc(1, sizeof(*c));
    c->line = xasprintf("%s\r\n", line);
    c->multi = multi;
    c->secret = secret;
    c->done = done;
    c->fn = fn;
    c->arg = arg;
    c->num = num;
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    p->npending++;
    if (p->err != POP3C_E_NONE) {
        pop3c_fail_all(p);
        return;
    }
    pop3c_push(p);
}

static void pop3c_complete(struct pop3c *p, bool ok, const char *text)
{
    struct pop3c_cmd *c = p->head;
    p->head = c->next;
    if (p->head == NULL)
        p->tail = NULL;
    p->npending--;
    p->nsent--;
    p->in_body = false;
    lc_reply_done(p->lc);
    snprintf(p->last, sizeof(p->last), "%s", text ? text : "");
    if (c->done)
        c->done(p, c, ok, text);
    cmd_free(c);
    buf_reset(&p->body);
    if (p->err == POP3C_E_NONE)
        pop3c_push(p);
}

static int on_line(struct lc_conn *lc, void *arg, char *line, size_t len, uint64_t *lit)
{
    struct pop3c *p = arg;
    const char *text;
    if (!p->greeted) {
        p->greeted = true;
        if (pop3_status(line, len, &text) != 1)
            lc_fail(lc, LC_ERR_CONNECT, "bad greeting: %.100s", line);
        return LC_LINE_OK;
    }
    if (p->head == NULL || !p->head->sent) {
        lc_fail(lc, LC_ERR_PROTOCOL, "unexpected line from the server: %.100s", line);
        return LC_LINE_STOP;
    }
    if (p->in_body) {
        int r = pop3_body_line(&p->body, line, len);
        if (r < 0)
            lc_fail(lc, LC_ERR_TOOBIG, "reply larger than %zu bytes", p->body.max);
        else if (r == 1)
            pop3c_complete(p, true, "");
        return LC_LINE_OK;
    }
    int st = pop3_status(line, len, &text);
    if (st < 0) {
        lc_fail(lc, LC_ERR_PROTOCOL, "not a POP3 status line: %.100s", line);
        return LC_LINE_STOP;
    }
    if (st == 1 && p->head->multi)
        p->in_body = true;
    else
        pop3c_complete(p, st == 1, text);
    return LC_LINE_OK;
}

static void on_tls(struct lc_conn *lc, void *arg)
{
    ((struct pop3c *)arg)->tls_done = true;
}

static const struct lc_proto pop3c_proto = {
    .name = "pop3", .on_line = on_line, .on_tls = on_tls, .on_error = on_error,
};

/* ---------------------------------------------------------------------- */
/* waiting                                                                 */

struct wait_one {
    bool done, ok;
};

static void wait_done(struct pop3c *p, struct pop3c_cmd *c, bool ok, const char *text)
{
    struct wait_one *w = c->arg;
    w->done = true;
    w->ok = ok;
}

static void pump(struct pop3c *p, const bool *flag)
{
    while (!*flag && p->err == POP3C_E_NONE)
        event_base_loop(p->base, EVLOOP_ONCE);
}

static int run(struct pop3c *p, const char *line, bool multi, bool secret)
{
    struct wait_one w = {false, false};
    pop3c_queue(p, line, multi, secret, wait_done, NULL, &w, 0);
    pump(p, &w.done);
    return w.done && w.ok ? 0 : -1;
}

/* ---------------------------------------------------------------------- */
/* session                                                                 */

static void note_capa(struct pop3c *p)
{
    char *save = NULL;
    for (char *l = strtok_r(p->body.data, "\r\n", &save); l; l = strtok_r(NULL, "\r\n", &save)) {
        if (str_iequal(l, "PIPELINING"))
            p->pipelining = true;
        else if (str_iequal(l, "STLS"))
            p->stls = true;
        else if (str_iequal(l, "UIDL"))
            p->uidl_cap = true;
    }
}

static void capa_done(struct pop3c *p, struct pop3c_cmd *c, bool ok, const char *text)
{
    if (ok)
        note_capa(p);
    wait_done(p, c, ok, text);
}

static int pop3c_capa(struct pop3c *p)
{
    struct wait_one w = {false, false};
    p->pipelining = p->stls = false;
    pop3c_queue(p, "CAPA", true, false, capa_done, NULL, &w, 0);
    pump(p, &w.done);
    return w.done ? 0 : -1;
}

static int pop3c_login(struct pop3c *p)
{
    pop3c_enter(p, PS_AUTH);
    char *line = xasprintf("USER %s", p->user);
    int rc = run(p, line, false, false);
    free(line);
    if (rc == 0) {
        line = xasprintf("PASS %s", p->password);
        rc = run(p, line, false, true);
        OPENSSL_cleanse(line, strlen(line));
        free(line);
    }
    if (rc < 0 && p->err == POP3C_E_NONE) {
        char why[400];
        snprintf(why, sizeof(why), "authentication as %s failed: %s", p->user, p->last);
        pop3c_set_error(p, POP3C_E_AUTH, why);
    }
    return rc;
}

int pop3c_open(struct pop3c *p)
{
    struct lc_opts lo = {
        .host = p->host, .port = p->o.port, .security = p->o.security,
        .tls_ctx = p->o.tls_ctx, .tls_verify = p->o.tls_verify,
        .connect_timeout = p->o.connect_timeout, .cmd_timeout = p->o.cmd_timeout,
        .line_max = POP3C_LINE_MAX, .trace_tag = p->trace[0] ? p->trace : NULL,
    };
    p->lc = lc_new(p->base, NULL, &pop3c_proto, p, &lo);
    pop3c_enter(p, PS_GREETING);
    if (lc_connect(p->lc) < 0 && p->err == POP3C_E_NONE)
        pop3c_set_error(p, POP3C_E_CONNECT, "cannot connect");
    lc_expect_reply(p->lc);
    pump(p, &p->greeted);
    if (p->err != POP3C_E_NONE)
        return -1;
    lc_reply_done(p->lc);
    pop3c_capa(p);
    if (p->o.security == LC_TLS_STARTTLS) {
        if (!p->stls) {
            pop3c_set_error(p, POP3C_E_TLS, "STLS was requested but is not offered");
            return -1;
        }
        if (run(p, "STLS", false, false) < 0 || lc_starttls(p->lc) < 0) {
            pop3c_set_error(p, POP3C_E_TLS, "STLS failed");
            return -1;
        }
        pump(p, &p->tls_done);
        if (p->err != POP3C_E_NONE || pop3c_capa(p) < 0)
            return -1;
    }
    if (pop3c_login(p) < 0)
        return -1;
    pop3c_capa(p);     /* PIPELINING may be announced only after login */
    pop3c_enter(p, PS_TRANSACTION);
    return p->err == POP3C_E_NONE ? 0 : -1;
}

struct scan {
    struct pop3_msg *v;
    size_t n, cap;
    bool done, ok;
};

static struct pop3_msg *scan_find(struct scan *s, uint32_t num)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].num == num)
            return &s->v[i];
    return NULL;
}

static void uidl_done(struct pop3c *p, struct pop3c_cmd *c, bool ok, const char *text)
{
    struct scan *s = c->arg;
    s->ok = ok;
    char *save = NULL;
    for (char *l = ok ? strtok_r(p->body.data, "\r\n", &save) : NULL; l;
         l = strtok_r(NULL, "\r\n", &save)) {
        struct pop3_msg m = {0};
        if (pop3_uidl_line(l, strlen(l), &m.num, m.uidl, sizeof(m.uidl)) < 0) {
            lc_fail(p->lc, LC_ERR_PROTOCOL, "bad UIDL line: %.80s", l);
            s->ok = false;
            break;
        }
        s->v = xgrow(s->v, &s->cap, s->n + 1, sizeof(*s->v));
        s->v[s->n++] = m;
    }
}

static void list_done(struct pop3c *p, struct pop3c_cmd *c, bool ok, const char *text)
{
    struct scan *s = c->arg;
    s->done = true;
    s->ok = s->ok && ok;
    char *save = NULL;
    for (char *l = ok ? strtok_r(p->body.data, "\r\n", &save) : NULL; l;
         l = strtok_r(NULL, "\r\n", &save)) {
        uint32_t num;
        uint64_t size;
        struct pop3_msg *m;
        if (pop3_list_line(l, strlen(l), &num, &size) < 0 || (m = scan_find(s, num)) == NULL) {
            lc_fail(p->lc, LC_ERR_PROTOCOL, "bad LIST line: %.80s", l);
            s->ok = false;
            break;
        }
        m->size = size;
    }
}

int pop3c_scan(struct pop3c *p, struct pop3_msg **msgs, size_t *n)
{
    struct scan s = {0};
    pop3c_queue(p, "UIDL", true, false, uidl_done, NULL, &s, 0);
    pop3c_queue(p, "LIST", true, false, list_done, NULL, &s, 0);
    pump(p, &s.done);
    if (!s.ok) {
        if (p->err == POP3C_E_NONE)
            pop3c_set_error(p, POP3C_E_PROTOCOL, "UIDL or LIST refused (UIDL is required)");
        free(s.v);
        return -1;
    }
    *msgs = s.v;
    *n = s.n;
    return 0;
}

static void fetch_done(struct pop3c *p, struct pop3c_cmd *c, bool ok, const char *text)
{
    if (ok)
        c->fn(p, c->num, p->body.data ? p->body.data : "", p->body.len, NULL, c->arg);
    else
        c->fn(p, c->num, NULL, 0, text ? text : pop3c_error(p), c->arg);
}

void pop3c_fetch(struct pop3c *p, uint32_t num, bool top0, pop3c_msg_fn fn, void *arg)
{
    char line[64];
    snprintf(line, sizeof(line), top0 ? "TOP %u 0" : "RETR %u", num);
    pop3c_queue(p, line, true, false, fetch_done, fn, arg, num);
}

size_t pop3c_pending(const struct pop3c *p)
{
    return p->npending;
}

void pop3c_drain(struct pop3c *p)
{
    while (p->npending > 0 && p->err == POP3C_E_NONE)
        event_base_loop(p->base, EVLOOP_ONCE);
}

void pop3c_quit(struct pop3c *p)
{
    if (p->err == POP3C_E_NONE && p->lc && lc_is_open(p->lc))
        run(p, "QUIT", false, false);
}

struct pop3c *pop3c_new(struct event_base *base, const struct pop3c_opts *o)
{
    struct pop3c *p = xcalloc(1, sizeof(*p));
    p->base = base;
    p->o = *o;
    str_copy(p->host, o->host ? o->host : "127.0.0.1", sizeof(p->host));
    str_copy(p->label, o->label ? o->label : "pop3", sizeof(p->label));
    if (o->trace)
        snprintf(p->trace, sizeof(p->trace), "%s", o->trace);
    p->user = xstrdup(o->user ? o->user : "");
    p->password = xstrdup(o->password ? o->password : "");
    p->o.password = NULL;
    if (p->o.max_message == 0)
        p->o.max_message = 64u * 1024 * 1024;
    buf_init(&p->body, (size_t)p->o.max_message + 64 * 1024);
    return p;
}

void pop3c_free(struct pop3c *p)
{
    if (p == NULL)
        return;
    if (p->lc) {
        lc_close(p->lc);
        pop3c_fail_all(p);
        lc_free(p->lc);
    }
    OPENSSL_cleanse(p->password, strlen(p->password));
    free(p->password);
    free(p->user);
    buf_free(&p->body);
    free(p);
}

bool pop3c_failed(const struct pop3c *p)
{
    return p->err != POP3C_E_NONE;
}

enum pop3c_err pop3c_errclass(const struct pop3c *p)
{
    return p->err;
}

const char *pop3c_error(const struct pop3c *p)
{
    return p->errmsg[0] ? p->errmsg : "no error";
}
