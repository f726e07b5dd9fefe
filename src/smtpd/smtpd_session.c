/*
 * smtpd_session.c - one inbound SMTP connection: the state machine.
 *
 * I/O. Plaintext sessions use two raw events and two evbuffers: the read
 * event stays registered while the session reads (including while its
 * message is being committed), replies collect in `out` and are written
 * once at the end of the loop pass, after the pass's log lines, and a
 * write event is registered only when the socket would block. A
 * bufferevent would register and unregister its write event for every
 * reply and ask FIONREAD before every read: three system calls per
 * command that this path does not make. After STARTTLS the session runs
 * on an OpenSSL bufferevent. Both report "input available", "output
 * drained", "timeout" and "closed" to the same handlers. Commands are
 * dispatched through a table (name, flags, handler); every state change
 * goes through session_enter().
 *
 * Lifetime: a session is freed only at a safe point (end of a libevent
 * callback), never from inside a handler; handlers set s->dead instead.
 * The spool's commit callback finds the session by id, not by pointer.
 */
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_check.h"
#include "smtpd/smtpd_data.h"
#include "smtpd/smtpd_parse.h"
#include "queue/spool.h"
#include "greylist/greylist.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "mail/address.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CMD_READ_MAX (SMTP_CMD_LINE_MAX + SMTP_PARAMS_EXTRA)
#define INPUT_HIGH_WATER (256 * 1024)
#define DATA_FLUSH (64 * 1024)
#define READ_CHUNK (16 * 1024)      /* one read(2) per readable event */
#define CLOSE_WAIT_SECS 5           /* for a peer that does not read our 421 */

enum session_state {
    SS_INIT,        /* connected, no HELO/EHLO yet */
    SS_READY,       /* greeted, no transaction */
    SS_MAIL,        /* MAIL accepted */
    SS_RCPT,        /* at least one RCPT accepted */
    SS_DATA,        /* reading DATA content */
    SS_BDAT,        /* reading a BDAT chunk */
    SS_COMMIT,      /* waiting for the spool to make the message durable */
    SS_TLS_START,   /* 220 for STARTTLS queued; switch when it is sent */
    SS_TLS,         /* TLS handshake in progress */
    SS_CLOSING,     /* last reply queued; close when it is sent */
    SS_GREYLIST,    /* RCPT waits for the greylisting decision */
    SS_COUNT
};

static const char *const state_names[SS_COUNT] = {
    "INIT", "READY", "MAIL", "RCPT", "DATA", "BDAT", "COMMIT", "TLS_START", "TLS",
    "CLOSING", "GREYLIST",
};

struct smtpd_session {
    uint64_t id;
    struct smtpd *srv;
    struct bufferevent *bev;       /* OpenSSL socket after STARTTLS, else NULL */
    int fd;                        /* owned by the session, not the bev */
    /* plaintext I/O (bev == NULL): see the header comment */
    struct evbuffer *in, *out;
    struct event *rev, *wev;
    struct timeval io_tv;          /* read/write timeout (common timeout) */
    bool reading;                  /* rev is registered */
    bool flush_queued;             /* on the server's end-of-pass list */
    SSL *ssl;
    enum session_state state;
    bool dead;                     /* free at the next safe point */
    bool in_callback;
    bool shutdown_requested;
    /* client */
    struct netaddr addr;
    char ip[64];
    char name[64];                 /* "unknown" until reverse DNS exists */
    char helo[256];
    bool esmtp;
    bool tls;
    char tls_proto[32];
    char tls_cipher[96];
    int tls_bits, tls_alg_bits;
    bool trusted;                  /* in mynetworks */
    /* accounting for the disconnect line */
    unsigned ok[SMTP_VERB_COUNT], total[SMTP_VERB_COUNT];
    unsigned errors;
    const char *last_cmd;          /* for "lost connection after X" */
    bool discarding;               /* skipping an over-long command line */
    /* transaction */
    struct spool_envelope env;
    struct mail_params mp;
    bool have_qid;
    bool used_bdat;
    struct spool_writer writer;
    bool writer_open;
    struct data_decoder dd;
    struct buf data_out;           /* decoded content awaiting the writer */
    uint64_t bdat_remaining;
    bool bdat_last;
    enum session_state bdat_prev_state;
    int txn_error;                 /* 0, or the reply code to give at the end */
    char msgid[256];
    struct buf hdr_scan;           /* start of the header section */
    /* greylisting: the RCPT waiting in SS_GREYLIST, and the longest delay
     * a recipient of this transaction waited (for X-Greylist:) */
    char gl_rcpt[ADDR_PATH_MAX + 4];
    struct rcpt_params gl_rp;
    enum session_state gl_prev;
    unsigned gl_delayed;
    bool gl_uncounted;             /* greylisting 451s are not client errors */
};

static void session_process(struct smtpd_session *s);
static void session_free(struct smtpd_session *s);
static void session_start_tls(struct smtpd_session *s);
static void session_io_event(struct smtpd_session *s, short what);

/* ---------------------------------------------------------------------- */
/* I/O: raw events (plaintext) or a bufferevent (TLS)                      */

static struct evbuffer *sio_input(struct smtpd_session *s)
{
    return s->bev ? bufferevent_get_input(s->bev) : s->in;
}

/* Read only when the state machine wants input (and the buffer has room). */
static void sio_read_resume(struct smtpd_session *s)
{
    if (s->bev) {
        bufferevent_enable(s->bev, EV_READ);
    } else if (!s->reading && s->rev &&
               evbuffer_get_length(s->in) < INPUT_HIGH_WATER) {
        event_add(s->rev, &s->io_tv);
        s->reading = true;
    }
}

/* After the state machine ran: read again if its state takes input. The
 * read event may have been paused with a full input buffer (a client
 * that sent a lot while its message was committed), which is now drained:
 * nothing else would resume it. */
static void sio_read_again(struct smtpd_session *s)
{
    if (s->dead || s->bev)
        return;  /* a bufferevent resumes by itself below its watermark */
    if (s->state == SS_GREYLIST || s->state == SS_TLS_START || s->state == SS_TLS ||
        s->state == SS_CLOSING)
        return;
    sio_read_resume(s);
}

static void sio_read_pause(struct smtpd_session *s)
{
    if (s->bev) {
        bufferevent_disable(s->bev, EV_READ);
    } else if (s->reading) {
        event_del(s->rev);
        s->reading = false;
    }
}

/* Queue output; plaintext leaves at the end of the loop pass. */
static void sio_write(struct smtpd_session *s, const void *p, size_t n)
{
    if (s->bev) {
        bufferevent_write(s->bev, p, n);
        return;
    }
    if (s->out == NULL)
        return;
    evbuffer_add(s->out, p, n);
    if (!s->flush_queued) {
        s->flush_queued = true;
        smtpd_queue_flush(s->srv, s->id);
    }
}

/* All output has left: finish what waited for it. Frees s when closing. */
static void session_drained(struct smtpd_session *s)
{
    if (s->state == SS_CLOSING)
        session_free(s);
    else if (s->state == SS_TLS_START)
        session_start_tls(s);
}

/* Write what the socket takes; register the write event for the rest.
 * May free s. */
static void sio_send(struct smtpd_session *s)
{
    if (evbuffer_get_length(s->out) > 0) {
        int n = evbuffer_write(s->out, s->fd);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            session_io_event(s, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
            return;
        }
    }
    if (evbuffer_get_length(s->out) > 0) {
        event_add(s->wev, &s->io_tv);
        return;
    }
    event_del(s->wev);
    session_drained(s);
}

void smtpd_session_flush(struct smtpd_session *s)
{
    s->flush_queued = false;
    if (s->bev == NULL && s->out != NULL)
        sio_send(s);
}

/* ---------------------------------------------------------------------- */
/* state and replies                                                       */

static void session_enter(struct smtpd_session *s, enum session_state st)
{
    if (s->srv->trace)
        log_svc("smtpd", "session %llu: %s -> %s", (unsigned long long)s->id,
                state_names[s->state], state_names[st]);
    s->state = st;
}

static const char *hostname(const struct smtpd_session *s)
{
    return s->srv->cfg->myhostname;
}

static void reply_raw(struct smtpd_session *s, const char *text, size_t n)
{
    if (!s->dead)
        sio_write(s, text, n);
}

static void session_close_after_reply(struct smtpd_session *s)
{
    session_enter(s, SS_CLOSING);
    sio_read_pause(s);
    /* Plaintext: hold the last reply until close(), which sends it with
     * the FIN in one segment instead of two (one fewer packet for both
     * sides to process on every connection). */
    if (s->bev == NULL && s->fd >= 0) {
        int one = 1;
        (void)setsockopt(s->fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one));
    }
}

static void too_many_errors(struct smtpd_session *s)
{
    char line[300];
    int n = snprintf(line, sizeof(line), "421 4.7.0 %s Error: too many errors\r\n",
                     hostname(s));
    reply_raw(s, line, (size_t)n);
    log_svc("smtpd", "too many errors after %s from %s[%s]",
            s->last_cmd ? s->last_cmd : "CONNECT", s->name, s->ip);
    session_close_after_reply(s);
}

/* One reply line: "CODE ENH text". Counts errors (4xx/5xx). */
static void reply(struct smtpd_session *s, int code, const char *enh,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void reply(struct smtpd_session *s, int code, const char *enh,
                  const char *fmt, ...)
{
    char line[1024];
    int n = enh[0] ? snprintf(line, sizeof(line), "%d %s ", code, enh)
                   : snprintf(line, sizeof(line), "%d ", code);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n - 3, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 3)
        n = (int)sizeof(line) - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    reply_raw(s, line, (size_t)n);
    if (code >= 400 && code != 421 && s->state != SS_CLOSING && !s->gl_uncounted &&
        ++s->errors >= s->srv->cfg->smtpd_error_limit)
        too_many_errors(s);
}

/* ---------------------------------------------------------------------- */
/* transactions                                                            */

static void txn_reset(struct smtpd_session *s)
{
    if (s->writer_open)
        spool_writer_abort(&s->writer);
    s->writer_open = false;
    spool_envelope_free(&s->env);
    memset(&s->mp, 0, sizeof(s->mp));
    s->have_qid = false;
    s->used_bdat = false;
    s->txn_error = 0;
    s->bdat_remaining = 0;
    s->bdat_last = false;
    s->msgid[0] = '\0';
    s->gl_delayed = 0;
    buf_reset(&s->data_out);
    buf_reset(&s->hdr_scan);
}

static const char *proto_name(const struct smtpd_session *s)
{
    if (s->mp.smtputf8)
        return s->tls ? "UTF8SMTPS" : "UTF8SMTP";
    if (!s->esmtp)
        return "SMTP";
    return s->tls ? "ESMTPS" : "ESMTP";
}

static void log_reject(struct smtpd_session *s, const char *cmd, int code,
                       const char *enh, const char *text, const char *to)
{
    char tobuf[600] = "";
    if (to)
        snprintf(tobuf, sizeof(tobuf), " to=<%s>", to);
    log_svc("smtpd", "NOQUEUE: reject: %s from %s[%s]: %d %s %s; from=<%s>%s "
            "proto=%s helo=<%s>", cmd, s->name, s->ip, code, enh, text,
            s->env.sender ? s->env.sender : "", tobuf, proto_name(s), s->helo);
}

/* ---------------------------------------------------------------------- */
/* command handlers                                                        */

static void cmd_ehlo_helo(struct smtpd_session *s, char *args, bool esmtp)
{
    if (*args == '\0') {
        reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    txn_reset(s);
    str_copy(s->helo, args, sizeof(s->helo));
    s->esmtp = esmtp;
    session_enter(s, SS_READY);
    if (!esmtp) {
        reply(s, 250, "", "%s", hostname(s));
        return;
    }
    char out[1024];
    int n = snprintf(out, sizeof(out), "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n"
                     "%s250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n", hostname(s),
                     (unsigned long long)s->srv->cfg->message_size_limit,
                     s->srv->tls_ctx && !s->tls ? "250-STARTTLS\r\n" : "");
    if (n >= (int)sizeof(out))
        n = (int)sizeof(out) - 1;   /* cannot happen: myhostname is bounded */
    reply_raw(s, out, (size_t)n);
}

static void cmd_ehlo(struct smtpd_session *s, char *args) { cmd_ehlo_helo(s, args, true); }
static void cmd_helo(struct smtpd_session *s, char *args) { cmd_ehlo_helo(s, args, false); }

static void reply_addr_error(struct smtpd_session *s, enum addr_status st, bool sender)
{
    if (st == ADDR_EUTF8)
        reply(s, 553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter");
    else if (st == ADDR_ENULL)
        reply(s, 501, "5.1.3", "Null address not allowed as a recipient");
    else if (sender)
        reply(s, 501, "5.1.7", "Bad sender address syntax (%s)", address_status_str(st));
    else
        reply(s, 553, "5.1.3", "Bad recipient address syntax (%s)", address_status_str(st));
}

static void cmd_mail(struct smtpd_session *s, char *args)
{
    if (s->state == SS_INIT) {
        reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return;
    }
    if (s->state != SS_READY) {
        reply(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    struct address a;
    const char *end;
    /* Find where the path ends (a quoted local part may hold '>' or ' '),
     * then read the parameters: SMTPUTF8 decides what the path may hold. */
    unsigned flags = ADDR_ALLOW_NULL | ADDR_ALLOW_NOBRACKETS | ADDR_ALLOW_UTF8;
    enum addr_status st = address_parse_path(args, flags, &a, &end);
    if (st != ADDR_OK) {
        reply_addr_error(s, st, true);
        return;
    }
    struct param_error pe;
    char ptmp[CMD_READ_MAX + 1];
    str_copy(ptmp, end, sizeof(ptmp));
    if (smtpd_parse_mail_params(ptmp, &s->mp, &pe) < 0) {
        reply(s, pe.code, pe.enhanced, "%s", pe.text);
        return;
    }
    if (s->mp.smtputf8 && !s->esmtp) {
        reply(s, 555, "5.5.4", "SMTPUTF8 requires EHLO");
        return;
    }
    if (a.utf8 && !s->mp.smtputf8) {
        reply_addr_error(s, ADDR_EUTF8, true);
        return;
    }
    if (s->mp.has_size && s->mp.size > s->srv->cfg->message_size_limit) {
        reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
        return;
    }
    char addr[ADDR_PATH_MAX + 4];
    s->env.sender = xstrdup(address_str(&a, addr, sizeof(addr)));
    s->env.envid = s->mp.envid[0] ? xstrdup(s->mp.envid) : NULL;
    s->env.ret = s->mp.ret;
    s->env.body = s->mp.body;
    s->env.smtputf8 = s->mp.smtputf8;
    session_enter(s, SS_MAIL);
    reply(s, 250, "2.1.0", "Ok");
}

static void assign_qid(struct smtpd_session *s)
{
    if (s->have_qid)
        return;
    spool_new_qid(s->env.qid);
    s->have_qid = true;
    log_svc("smtpd", "%s: client=%s[%s]", s->env.qid, s->name, s->ip);
}

static void rcpt_accept(struct smtpd_session *s, const char *addr,
                        const struct rcpt_params *rp)
{
    assign_qid(s);
    spool_envelope_add_rcpt(&s->env, addr, rp->notify, rp->orcpt);
    session_enter(s, SS_RCPT);
    reply(s, 250, "2.1.5", "Ok");
}

static void greylist_done(void *arg, const struct greylist_decision *d);

/* Greylisting decides asynchronously (DNS, store): the session waits in
 * SS_GREYLIST, reading nothing, until greylist_done() finds it by id. */
static void rcpt_greylist(struct smtpd_session *s, const char *addr,
                          const struct rcpt_params *rp)
{
    struct greylist_request q = {
        .addr = s->addr, .client_name = s->name, .helo = s->helo,
        .sender = s->env.sender ? s->env.sender : "", .rcpt = addr,
        .queue_id = s->have_qid ? s->env.qid : NULL, .trusted = s->trusted,
    };
    str_copy(s->gl_rcpt, addr, sizeof(s->gl_rcpt));
    s->gl_rp = *rp;
    s->gl_prev = s->state;
    session_enter(s, SS_GREYLIST);
    sio_read_pause(s);
    greylist_check(s->srv->greylist, &q, greylist_done, (void *)(uintptr_t)s->id);
}

static void cmd_rcpt(struct smtpd_session *s, char *args)
{
    if (s->state != SS_MAIL && s->state != SS_RCPT) {
        reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->env.nrcpt >= s->srv->cfg->smtpd_recipient_limit) {
        reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    struct address a;
    const char *end;
    unsigned flags = ADDR_ALLOW_POSTMASTER | ADDR_ALLOW_NOBRACKETS;
    if (s->mp.smtputf8)
        flags |= ADDR_ALLOW_UTF8;
    enum addr_status st = address_parse_path(args, flags, &a, &end);
    if (st != ADDR_OK) {
        reply_addr_error(s, st, false);
        return;
    }
    char ptmp[CMD_READ_MAX + 1];
    str_copy(ptmp, end, sizeof(ptmp));
    struct rcpt_params rp;
    struct param_error pe;
    if (smtpd_parse_rcpt_params(ptmp, &rp, &pe) < 0) {
        reply(s, pe.code, pe.enhanced, "%s", pe.text);
        return;
    }
    char addr[ADDR_PATH_MAX + 4];
    address_str(&a, addr, sizeof(addr));
    struct check_result res;
    smtpd_check_rcpt(s->srv->cfg, &a, s->trusted, &res);
    if (res.code) {
        log_reject(s, "RCPT", res.code, res.enhanced, res.text, addr);
        reply(s, res.code, res.enhanced, "%s", res.text);
        return;
    }
    if (s->srv->cfg->greylist && s->srv->greylist) {
        rcpt_greylist(s, addr, &rp);
        return;
    }
    rcpt_accept(s, addr, &rp);
}

/* Start writing the queue file: envelope, then our Received: header. */
static void data_begin(struct smtpd_session *s)
{
    gettimeofday(&s->env.arrival, NULL);
    s->env.client_addr = xstrdup(s->ip);
    s->env.client_name = xstrdup(s->name);
    s->env.helo = xstrdup(s->helo);
    s->env.proto = xstrdup(proto_name(s));
    s->txn_error = 0;
    if (spool_writer_open(s->srv->spool, s->env.qid, &s->writer) < 0) {
        log_svc_warn("smtpd", "%s: cannot create queue file: %s", s->env.qid,
                     strerror(s->writer.error));
        s->txn_error = 452;
        return;
    }
    s->writer_open = true;
    spool_writer_envelope(&s->writer, &s->env);

    char date[64];
    struct tm tm;
    localtime_r(&s->env.arrival.tv_sec, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
    struct buf h;
    buf_init(&h, 4096);
    buf_printf(&h, "Received: from %s (%s [%s])\r\n", s->helo, s->name, s->ip);
    if (s->tls)
        buf_printf(&h, "\t(using %s with cipher %s (%d/%d bits))\r\n",
                   s->tls_proto, s->tls_cipher, s->tls_bits, s->tls_alg_bits);
    buf_printf(&h, "\tby %s (sluice) with %s id %s", hostname(s),
               s->env.proto, s->env.qid);
    if (s->env.nrcpt == 1)
        buf_printf(&h, "\r\n\tfor <%s>", s->env.rcpts[0].addr);
    buf_printf(&h, "; %s\r\n", date);
    if (s->gl_delayed) {
        char xg[512];
        greylist_header(s->gl_delayed, hostname(s), xg, sizeof(xg));
        buf_printf(&h, "%s\r\n", xg);
    }
    spool_writer_write(&s->writer, h.data, h.len);
    buf_free(&h);
}

static void cmd_data(struct smtpd_session *s, char *args)
{
    if (s->state != SS_RCPT) {
        reply(s, 503, "5.5.1", s->state == SS_MAIL ? "Error: need RCPT command"
                                                    : "Error: need MAIL command");
        return;
    }
    if (*args) {
        reply(s, 501, "5.5.4", "Syntax: DATA (no arguments)");
        return;
    }
    if (s->used_bdat) {
        reply(s, 503, "5.5.1", "Error: DATA cannot follow BDAT");
        return;
    }
    data_begin(s);
    data_decoder_init(&s->dd, false, s->srv->cfg->smtpd_max_line_length);
    session_enter(s, SS_DATA);
    reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
}

static void cmd_bdat(struct smtpd_session *s, char *args)
{
    uint64_t size;
    bool last;
    if (smtpd_parse_bdat(args, &size, &last) < 0) {
        /* We cannot know how many octets follow: the stream is lost. */
        reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
        log_svc("smtpd", "bad BDAT syntax from %s[%s]; closing", s->name, s->ip);
        reply(s, 421, "4.5.0", "%s Error: cannot resynchronise after bad BDAT", hostname(s));
        session_close_after_reply(s);
        return;
    }
    s->bdat_remaining = size;
    s->bdat_last = last;
    if (s->state != SS_RCPT) {
        /* Consume and discard the chunk, then say why. */
        s->txn_error = s->state == SS_MAIL ? 5031 : 5030;
        s->bdat_prev_state = s->state;
        session_enter(s, SS_BDAT);
        return;
    }
    if (!s->used_bdat) {
        s->used_bdat = true;
        data_begin(s);
        data_decoder_init(&s->dd, true, s->srv->cfg->smtpd_max_line_length);
    }
    session_enter(s, SS_BDAT);
}

static void cmd_rset(struct smtpd_session *s, char *args)
{
    txn_reset(s);
    if (s->state != SS_INIT)
        session_enter(s, SS_READY);
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtpd_session *s, char *args)
{
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtpd_session *s, char *args)
{
    reply(s, 221, "2.0.0", "Bye");
    session_close_after_reply(s);
}

static void cmd_vrfy(struct smtpd_session *s, char *args)
{
    if (*args == '\0') {
        reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    reply(s, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtpd_session *s, char *args)
{
    reply(s, 502, "5.5.1", "EXPN is not supported");
}

static void cmd_help(struct smtpd_session *s, char *args)
{
    reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP "
          "QUIT VRFY HELP STARTTLS; see RFC 5321");
}

static void cmd_auth(struct smtpd_session *s, char *args)
{
    reply(s, 502, "5.5.1", "AUTH is not offered here");
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);

static void cmd_starttls(struct smtpd_session *s, char *args)
{
    if (s->tls) {
        reply(s, 503, "5.5.1", "Error: TLS already active");
        return;
    }
    if (s->srv->tls_ctx == NULL) {
        reply(s, 502, "5.5.1", "Error: STARTTLS is not offered");
        return;
    }
    if (*args) {
        reply(s, 501, "5.5.4", "Syntax: STARTTLS (no arguments)");
        return;
    }
    struct evbuffer *in = sio_input(s);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        /* CVE-2011-0411: commands pipelined before the handshake must not
         * be executed as if they had come over TLS. */
        log_svc("smtpd", "discarding %zu byte(s) pipelined after STARTTLS from "
                "%s[%s]", junk, s->name, s->ip);
        evbuffer_drain(in, junk);
    }
    reply(s, 220, "2.0.0", "Ready to start TLS");
    /* Read nothing more in plaintext; the handshake starts once the 220
     * has left (session_drained -> session_start_tls). */
    sio_read_pause(s);
    session_enter(s, SS_TLS_START);
}

static void sio_free_raw(struct smtpd_session *s)
{
    if (s->rev)
        event_free(s->rev);
    if (s->wev)
        event_free(s->wev);
    if (s->in)
        evbuffer_free(s->in);
    if (s->out)
        evbuffer_free(s->out);
    s->rev = s->wev = NULL;
    s->in = s->out = NULL;
    s->reading = false;
}

static void session_start_tls(struct smtpd_session *s)
{
    sio_free_raw(s);
    s->ssl = SSL_new(s->srv->tls_ctx);
    s->bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, s->ssl,
                                            BUFFEREVENT_SSL_ACCEPTING, 0);
    bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    txn_reset(s);
    s->helo[0] = '\0';
    s->esmtp = false;
    struct timeval tv = {(time_t)s->srv->cfg->smtpd_timeout, 0};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    bufferevent_setcb(s->bev, read_cb, write_cb, tls_event_cb, (void *)(uintptr_t)s->id);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH_WATER);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    session_enter(s, SS_TLS);
}

enum cmd_flags {
    CMD_LAST = 1,        /* RFC 2920: must end a pipelined group */
};

struct smtpd_command_def {
    enum smtp_verb verb;
    unsigned flags;
    void (*handler)(struct smtpd_session *, char *);
};

static const struct smtpd_command_def command_table[SMTP_VERB_COUNT] = {
    [SMTP_EHLO] = {SMTP_EHLO, CMD_LAST, cmd_ehlo},
    [SMTP_HELO] = {SMTP_HELO, CMD_LAST, cmd_helo},
    [SMTP_MAIL] = {SMTP_MAIL, 0, cmd_mail},
    [SMTP_RCPT] = {SMTP_RCPT, 0, cmd_rcpt},
    [SMTP_DATA] = {SMTP_DATA, CMD_LAST, cmd_data},
    [SMTP_BDAT] = {SMTP_BDAT, 0, cmd_bdat},
    [SMTP_RSET] = {SMTP_RSET, 0, cmd_rset},
    [SMTP_NOOP] = {SMTP_NOOP, 0, cmd_noop},
    [SMTP_QUIT] = {SMTP_QUIT, 0, cmd_quit},
    [SMTP_VRFY] = {SMTP_VRFY, 0, cmd_vrfy},
    [SMTP_EXPN] = {SMTP_EXPN, 0, cmd_expn},
    [SMTP_HELP] = {SMTP_HELP, 0, cmd_help},
    [SMTP_STARTTLS] = {SMTP_STARTTLS, 0, cmd_starttls},
    [SMTP_AUTH] = {SMTP_AUTH, 0, cmd_auth},
};

/* Execute one complete command line (CRLF stripped). */
static void session_command(struct smtpd_session *s, char *line, size_t len)
{
    if (memchr(line, '\0', len) != NULL) {
        s->total[SMTP_UNKNOWN]++;
        reply(s, 500, "5.5.2", "Error: NUL character in command");
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            /* a bare CR or other control character could smuggle header
             * lines into our Received: header or the logs */
            s->total[SMTP_UNKNOWN]++;
            reply(s, 501, "5.5.4", "Error: control character in command arguments");
            return;
        }
    }
    struct smtp_command cmd;
    int prc = smtpd_parse_command(line, &cmd);
    s->total[cmd.verb]++;
    s->last_cmd = cmd.verb == SMTP_UNKNOWN ? "UNKNOWN" : cmd.name;
    if (cmd.verb == SMTP_UNKNOWN || command_table[cmd.verb].handler == NULL) {
        reply(s, 500, "5.5.2", "Error: command not recognized");
        return;
    }
    if (prc < 0) {
        reply(s, 501, "5.5.4", "Syntax: %s", cmd.verb == SMTP_MAIL ?
              "MAIL FROM:<address>" : "RCPT TO:<address>");
        return;
    }
    unsigned errors_before = s->errors;
    command_table[cmd.verb].handler(s, cmd.args);
    if (s->errors == errors_before)
        s->ok[cmd.verb]++;
    /* RFC 2920: nothing may follow these in the same group. Content sent
     * before the 354 or commands sent before the EHLO reply mean a client
     * that does not wait: the classic spam-bot and smuggling pattern. */
    if ((command_table[cmd.verb].flags & CMD_LAST) && s->state != SS_CLOSING &&
        evbuffer_get_length(sio_input(s)) > 0 &&
        (cmd.verb == SMTP_DATA ? s->state == SS_DATA : true)) {
        log_svc("smtpd", "improper command pipelining after %s from %s[%s]",
                cmd.name, s->name, s->ip);
        reply(s, 554, "5.5.0", "Error: SMTP protocol synchronization");
        session_close_after_reply(s);
    }
}

/* Process what the client sent, then read again if the state takes
 * input. Ends a callback: may free s. */
static void session_input(struct smtpd_session *s)
{
    s->in_callback = true;
    session_process(s);
    sio_read_again(s);
    s->in_callback = false;
    if (s->dead)
        session_free(s);
}

/* An asynchronous step (commit, greylisting) has answered: take input
 * again, including what a pipelining client sent meanwhile. May free s. */
static void session_resume(struct smtpd_session *s)
{
    if (s->state != SS_CLOSING)
        sio_read_resume(s);   /* a TLS session paused reading for the step */
    session_input(s);
}

/* ---------------------------------------------------------------------- */
/* DATA / BDAT content                                                     */

/* Remember the Message-ID for the log, scanning the first header bytes. */
static void scan_message_id(struct smtpd_session *s, const char *p, size_t n)
{
    /* keep the first 16 KiB: the header section, or most of it */
    if (s->hdr_scan.len < 16384)
        buf_append(&s->hdr_scan, p, n < 16384 - s->hdr_scan.len ? n : 16384 - s->hdr_scan.len);
}

static void find_message_id(struct smtpd_session *s)
{
    const char *h = s->hdr_scan.data;
    if (h == NULL)
        return;
    for (const char *p = h; p && *p; p = strstr(p, "\r\n")) {
        if (p != h)
            p += 2;
        if (p[0] == '\r' && p[1] == '\n')
            break; /* end of headers */
        if (strncasecmp(p, "Message-ID:", 11) == 0) {
            const char *v = p + 11;
            while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
                v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= sizeof(s->msgid))
                n = sizeof(s->msgid) - 1;
            memcpy(s->msgid, v, n);
            s->msgid[n] = '\0';
            return;
        }
    }
}

/* Move decoded bytes to the queue file, enforcing the size limit. */
static void data_flush(struct smtpd_session *s)
{
    if (s->data_out.len == 0)
        return;
    scan_message_id(s, s->data_out.data, s->data_out.len);
    if (s->txn_error == 0 && s->dd.out_bytes > s->srv->cfg->message_size_limit)
        s->txn_error = 552;
    if (s->txn_error == 0 && s->writer_open) {
        spool_writer_write(&s->writer, s->data_out.data, s->data_out.len);
        if (s->writer.error)
            s->txn_error = 452;
    }
    buf_reset(&s->data_out);
}

static void commit_done(uint64_t token, const char *qid, int err);

/* The whole message has been read: decide, then commit or refuse. */
static void data_end(struct smtpd_session *s, const char *cmd)
{
    data_flush(s);
    unsigned f = s->dd.flags;
    const char *bad = NULL;
    int code = 0;
    const char *enh = "";
    if (s->txn_error == 452 || (s->writer_open && s->writer.error)) {
        code = 452; enh = "4.3.1"; bad = "Insufficient system storage";
    } else if (s->txn_error == 552) {
        code = 552; enh = "5.3.4"; bad = "Message size exceeds fixed limit";
    } else if (f & DD_NUL) {
        code = 550; enh = "5.6.0"; bad = "Message contains NUL characters";
    } else if ((f & (DD_BARE_LF | DD_BARE_CR)) &&
               strcmp(s->srv->cfg->smtpd_bare_newline, "reject") == 0) {
        code = 550; enh = "5.5.2";
        bad = "Message contains bare <CR> or <LF>; lines must end in <CR><LF> "
              "(RFC 5321 section 2.3.8)";
    } else if (f & DD_LONG_LINE) {
        code = 552; enh = "5.6.0"; bad = "Message has a line longer than the limit";
    }
    if (code == 0 && s->writer_open && spool_writer_finish(&s->writer) != 0) {
        code = 452; enh = "4.3.1"; bad = "Insufficient system storage";
    }
    if (code) {
        if (code == 452)
            log_svc_warn("smtpd", "%s: cannot write queue file: %s", s->env.qid,
                         strerror(s->writer.error ? s->writer.error : ENOSPC));
        log_reject(s, cmd, code, enh, bad, NULL);
        txn_reset(s);
        session_enter(s, SS_READY);
        reply(s, code, enh, "%s", bad);
        return;
    }
    find_message_id(s);
    if (s->msgid[0])
        log_svc("cleanup", "%s: message-id=%s", s->env.qid, s->msgid);
    spool_commit(s->srv->spool, &s->writer, s->id, commit_done);
    s->writer_open = false;
    session_enter(s, SS_COMMIT);
    /* Input is not processed in COMMIT, so replies stay in order. A TLS
     * session stops reading; a plaintext one keeps its read event (two
     * epoll_ctl calls fewer per message), buffers what a pipelining
     * client sends, and ignores its idle timer until the commit reports. */
    if (s->bev)
        sio_read_pause(s);
}

/* Feed DATA bytes through the decoder. Returns false to stop reading. */
static bool data_input(struct smtpd_session *s, struct evbuffer *in)
{
    while (evbuffer_get_length(in) > 0 && s->dd.state != DD_DONE) {
        size_t avail = evbuffer_get_contiguous_space(in);
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);
        size_t used = data_decode(&s->dd, p, avail, &s->data_out);
        evbuffer_drain(in, used);
        if (s->data_out.len >= DATA_FLUSH)
            data_flush(s);
    }
    data_flush(s);
    if (s->dd.state != DD_DONE)
        return false;
    data_end(s, "DATA");
    return true;
}

static void bdat_chunk_done(struct smtpd_session *s)
{
    if (s->txn_error == 5030 || s->txn_error == 5031) {
        /* a chunk sent out of sequence was read and thrown away */
        bool need_rcpt = s->txn_error == 5031;
        s->txn_error = 0;
        session_enter(s, s->bdat_prev_state);
        reply(s, 503, "5.5.1", need_rcpt ? "Error: need RCPT command"
                                         : "Error: need MAIL command");
        return;
    }
    if (s->bdat_last) {
        data_decoder_finish_raw(&s->dd, &s->data_out);
        data_end(s, "BDAT");
        return;
    }
    data_flush(s);
    session_enter(s, SS_RCPT);
    reply(s, 250, "2.0.0", "Ok: %llu octets received",
          (unsigned long long)s->dd.out_bytes);
}

static bool bdat_input(struct smtpd_session *s, struct evbuffer *in)
{
    bool discard = s->txn_error == 5030 || s->txn_error == 5031;
    while (s->bdat_remaining > 0 && evbuffer_get_length(in) > 0) {
        size_t avail = evbuffer_get_contiguous_space(in);
        if (avail > s->bdat_remaining)
            avail = (size_t)s->bdat_remaining;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);
        if (!discard)
            data_decode(&s->dd, p, avail, &s->data_out);
        evbuffer_drain(in, avail);
        s->bdat_remaining -= avail;
        if (s->data_out.len >= DATA_FLUSH)
            data_flush(s);
    }
    if (s->bdat_remaining > 0)
        return false;
    bdat_chunk_done(s);
    return true;
}

/* ---------------------------------------------------------------------- */
/* command lines                                                           */

/* Take one command line from the input. Returns false when none is
 * complete yet. */
static bool command_input(struct smtpd_session *s, struct evbuffer *in)
{
    size_t eol_len = 0;
    struct evbuffer_ptr pos = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (pos.pos < 0) {
        size_t have = evbuffer_get_length(in);
        if (have > CMD_READ_MAX) {
            evbuffer_drain(in, have);
            s->discarding = true;
        }
        return false;
    }
    size_t len = (size_t)pos.pos;
    if (s->discarding || len > CMD_READ_MAX) {
        evbuffer_drain(in, len + eol_len);
        s->discarding = false;
        s->total[SMTP_UNKNOWN]++;
        reply(s, 500, "5.5.2", "Error: line too long (limit %d octets)",
              SMTP_CMD_LINE_MAX);
        return true;
    }
    char line[CMD_READ_MAX + 2];
    evbuffer_remove(in, line, len + eol_len);
    line[len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    /* RFC 5321 4.5.3.1.4: 512 octets including CRLF; MAIL and RCPT may
     * carry up to 500 more for ESMTP parameters (RFC 3461 4). */
    size_t limit = SMTP_CMD_LINE_MAX - 2;
    if (str_iprefix(line, "MAIL ") || str_iprefix(line, "RCPT "))
        limit += SMTP_PARAMS_EXTRA;
    if (len > limit) {
        s->total[SMTP_UNKNOWN]++;
        reply(s, 500, "5.5.2", "Error: line too long (limit %d octets)",
              SMTP_CMD_LINE_MAX);
        return true;
    }
    session_command(s, line, len);
    return true;
}

/* Process as much buffered input as the state allows. */
static void session_process(struct smtpd_session *s)
{
    while (!s->dead) {
        struct evbuffer *in = sio_input(s);
        bool progressed;
        switch (s->state) {
        case SS_DATA:
            progressed = data_input(s, in);
            break;
        case SS_BDAT:
            progressed = bdat_input(s, in);
            break;
        case SS_COMMIT:
        case SS_GREYLIST:
        case SS_TLS_START:
        case SS_TLS:
        case SS_CLOSING:
            return;
        default:
            if (s->shutdown_requested && s->state <= SS_READY) {
                smtpd_session_shutdown(s);
                return;
            }
            progressed = command_input(s, in);
            break;
        }
        if (!progressed)
            return;
    }
}

/* ---------------------------------------------------------------------- */
/* spool commit completion                                                 */

static void commit_done(uint64_t token, const char *qid, int err)
{
    struct smtpd_session *s = smtpd_find_session(NULL, token);
    if (err == 0)
        log_svc("qmgr", "%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)", qid,
                s ? s->env.sender : "", s ? (unsigned long long)s->writer.content_length : 0ULL,
                s ? s->env.nrcpt : (size_t)0);
    if (err == 0 && s != NULL) {
        s->env.content_offset = s->writer.content_offset;
        s->env.content_length = s->writer.content_length;
        smtpd_notify_queued(qid, &s->env);
    } else if (err == 0) {
        smtpd_notify_queued(qid, NULL);
    }
    if (s == NULL || s->dead) {
        /* The client went away before our reply; the message is queued
         * (if err == 0) and will be delivered: at-least-once. */
        if (s) {
            s->dead = false;
            session_free(s);
        }
        return;
    }
    s->in_callback = true;
    txn_reset(s);
    session_enter(s, SS_READY);
    if (err == 0) {
        reply(s, 250, "2.0.0", "Ok: queued as %s", qid);
    } else {
        log_svc_warn("smtpd", "%s: cannot write queue file: %s", qid, strerror(err));
        reply(s, 452, "4.3.1", "Insufficient system storage");
    }
    session_resume(s);
}

/* ---------------------------------------------------------------------- */
/* greylisting completion                                                  */

static void greylist_done(void *arg, const struct greylist_decision *d)
{
    struct smtpd_session *s = smtpd_find_session(NULL, (uint64_t)(uintptr_t)arg);
    if (s == NULL || s->dead) {
        if (s) {   /* the client left while we decided */
            s->dead = false;
            session_free(s);
        }
        return;
    }
    s->in_callback = true;
    session_enter(s, s->gl_prev);
    if (d->action == GREYLIST_ACCEPT) {
        if (d->delayed > s->gl_delayed)
            s->gl_delayed = d->delayed;
        rcpt_accept(s, s->gl_rcpt, &s->gl_rp);
    } else {
        char text[128];
        if (d->action == GREYLIST_DEFER)
            snprintf(text, sizeof(text), "Greylisted, retry in %u seconds", d->retry_in);
        else
            str_copy(text, "Greylisting temporarily unavailable, try again later",
                     sizeof(text));
        s->ok[SMTP_RCPT]--;   /* counted as ok when the command was taken */
        log_reject(s, "RCPT", 451, "4.7.1", text, s->gl_rcpt);
        /* a message to 50 recipients must not hit smtpd_error_limit */
        s->gl_uncounted = true;
        reply(s, 451, "4.7.1", "%s", text);
        s->gl_uncounted = false;
    }
    session_resume(s);
}

/* ---------------------------------------------------------------------- */
/* libevent callbacks                                                      */

static struct smtpd_session *session_from_arg(void *arg)
{
    return smtpd_find_session(NULL, (uint64_t)(uintptr_t)arg);
}


static void read_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = session_from_arg(arg);
    if (s != NULL)
        session_input(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = session_from_arg(arg);
    if (s != NULL && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        session_drained(s);
}

/* Plaintext: the socket is readable (or the idle timer fired). One
 * read(2) into the input buffer; level-triggered epoll reports the rest. */
static void sio_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_session *s = session_from_arg(arg);
    if (s == NULL)
        return;
    if (what & EV_TIMEOUT) {
        if (s->state != SS_COMMIT)   /* the disk, not the client, is slow */
            session_io_event(s, BEV_EVENT_READING | BEV_EVENT_TIMEOUT);
        return;
    }
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(s->in, READ_CHUNK, &v, 1) < 1) {
        session_io_event(s, BEV_EVENT_READING | BEV_EVENT_ERROR);
        return;
    }
    ssize_t n = read(fd, v.iov_base, v.iov_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        session_io_event(s, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
        return;
    }
    v.iov_len = (size_t)n;
    evbuffer_commit_space(s->in, &v, 1);
    if (evbuffer_get_length(s->in) >= INPUT_HIGH_WATER)
        sio_read_pause(s);  /* resumed when the state machine reads again */
    session_input(s);
}

/* Plaintext: the socket takes more output (or the write timed out). */
static void sio_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_session *s = session_from_arg(arg);
    if (s == NULL)
        return;
    if (what & EV_TIMEOUT)
        session_io_event(s, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT);
    else
        sio_send(s);
}

static void log_lost(struct smtpd_session *s, const char *why)
{
    const char *after = s->state == SS_DATA ? "DATA" :
                        s->state == SS_BDAT ? "BDAT" :
                        s->last_cmd ? s->last_cmd : "CONNECT";
    log_svc("smtpd", "%s after %s from %s[%s]", why, after, s->name, s->ip);
}

/* Timeout, end of file or error, from either kind of I/O. May free s. */
static void session_io_event(struct smtpd_session *s, short what)
{
    if (what & BEV_EVENT_TIMEOUT) {
        if (s->state == SS_CLOSING) {
            session_free(s);
            return;
        }
        log_lost(s, "timeout");
        reply(s, 421, "4.4.2", "%s Error: timeout exceeded", hostname(s));
        session_close_after_reply(s);
        /* bound the wait for a peer that does not read either */
        struct timeval tv = {CLOSE_WAIT_SECS, 0};
        if (s->bev)
            bufferevent_set_timeouts(s->bev, NULL, &tv);
        else
            s->io_tv = tv;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (s->state != SS_CLOSING && s->state != SS_COMMIT)
            log_lost(s, "lost connection");
        if (s->state == SS_COMMIT || s->state == SS_GREYLIST) {
            /* keep the session until the commit reports; just mark it */
            s->dead = true;
            /* nothing more will come or go: no events while we wait (a
             * broken socket would report itself again and again) */
            sio_read_pause(s);
            if (s->wev)
                event_del(s->wev);
            return;
        }
        session_free(s);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtpd_session *s = session_from_arg(arg);
    if (s != NULL)
        session_io_event(s, what);
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtpd_session *s = session_from_arg(arg);
    if (s == NULL)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        s->tls = true;
        str_copy(s->tls_proto, SSL_get_version(ssl), sizeof(s->tls_proto));
        str_copy(s->tls_cipher, SSL_get_cipher_name(ssl), sizeof(s->tls_cipher));
        s->tls_bits = SSL_get_cipher_bits(ssl, &s->tls_alg_bits);
        log_svc("smtpd", "Anonymous TLS connection established from %s[%s]: %s "
                "with cipher %s (%d/%d bits)", s->name, s->ip, s->tls_proto,
                s->tls_cipher, s->tls_bits, s->tls_alg_bits);
        bufferevent_setcb(bev, read_cb, write_cb, event_cb, arg);
        session_enter(s, SS_INIT);
        s->in_callback = true;
        session_process(s);
        s->in_callback = false;
        if (s->dead)
            session_free(s);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF | BEV_EVENT_TIMEOUT)) {
        char reason[256] = "connection closed by the client";
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e)
            ERR_error_string_n(e, reason, sizeof(reason));
        else if (what & BEV_EVENT_TIMEOUT)
            str_copy(reason, "handshake timed out", sizeof(reason));
        log_svc("smtpd", "SSL_accept error from %s[%s]: %s", s->name, s->ip, reason);
        log_svc("smtpd", "lost connection after STARTTLS from %s[%s]", s->name, s->ip);
        session_free(s);
    }
}

/* ---------------------------------------------------------------------- */
/* start and end                                                           */

static void log_disconnect(struct smtpd_session *s)
{
    static const char *const order[] = {"ehlo", "helo", "starttls", "mail", "rcpt",
                                        "bdat", "data", "rset", "noop", "vrfy",
                                        "expn", "help", "auth", "quit", "unknown"};
    static const enum smtp_verb verbs[] = {SMTP_EHLO, SMTP_HELO, SMTP_STARTTLS,
                                           SMTP_MAIL, SMTP_RCPT, SMTP_BDAT,
                                           SMTP_DATA, SMTP_RSET, SMTP_NOOP,
                                           SMTP_VRFY, SMTP_EXPN, SMTP_HELP,
                                           SMTP_AUTH, SMTP_QUIT, SMTP_UNKNOWN};
    char line[512];
    size_t off = 0;
    unsigned ok = 0, total = 0;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        unsigned t = s->total[verbs[i]], o = s->ok[verbs[i]];
        if (t == 0)
            continue;
        ok += o;
        total += t;
        if (o == t)
            off += (size_t)snprintf(line + off, sizeof(line) - off, " %s=%u", order[i], t);
        else
            off += (size_t)snprintf(line + off, sizeof(line) - off, " %s=%u/%u",
                                    order[i], o, t);
        if (off >= sizeof(line))
            off = sizeof(line) - 1;
    }
    if (ok == total)
        snprintf(line + off, sizeof(line) - off, " commands=%u", total);
    else
        snprintf(line + off, sizeof(line) - off, " commands=%u/%u", ok, total);
    log_svc("smtpd", "disconnect from %s[%s]%s", s->name, s->ip, line);
}

static void session_free(struct smtpd_session *s)
{
    if (s->in_callback) {
        s->dead = true;
        return;
    }
    log_disconnect(s);
    txn_reset(s);
    buf_free(&s->data_out);
    buf_free(&s->hdr_scan);
    if (s->bev)
        bufferevent_free(s->bev);
    sio_free_raw(s);
    if (s->ssl)
        SSL_free(s->ssl);
    if (s->fd >= 0)
        close(s->fd);
    smtpd_unregister_session(s->srv, s->id, s->ip);
    free(s);
}

void smtpd_session_abort(struct smtpd_session *s)
{
    log_lost(s, "shutdown: closing");
    s->in_callback = false;
    session_free(s);
}

void smtpd_session_shutdown(struct smtpd_session *s)
{
    s->shutdown_requested = true;
    if (s->state > SS_READY || s->state == SS_CLOSING)
        return; /* finish the transaction first (bounded by the timer) */
    reply(s, 421, "4.3.2", "%s Service shutting down, closing transmission channel",
          hostname(s));
    session_close_after_reply(s);
}

static bool reject_at_connect(struct smtpd_session *s, const char *why, const char *enh,
                              const char *text)
{
    log_svc("smtpd", "%s from %s[%s]", why, s->name, s->ip);
    reply(s, 421, enh, "%s %s", hostname(s), text);
    session_close_after_reply(s);
    return true;
}

void smtpd_session_start(struct smtpd *srv, int fd, const struct sockaddr *sa)
{
    struct smtpd_session *s = xcalloc(1, sizeof(*s));
    s->srv = srv;
    s->id = ++srv->next_session_id;
    netaddr_from_sockaddr(sa, &s->addr);
    netaddr_str(&s->addr, s->ip, sizeof(s->ip));
    str_copy(s->name, "unknown", sizeof(s->name));
    s->trusted = netlist_match(&srv->cfg->mynetworks_list, &s->addr);
    buf_init(&s->data_out, DATA_FLUSH * 4);
    buf_init(&s->hdr_scan, 16384);
    s->fd = fd;
    smtpd_register_session(srv, s, s->id);
    void *arg = (void *)(uintptr_t)s->id;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    s->rev = event_new(srv->base, fd, EV_READ | EV_PERSIST, sio_read_cb, arg);
    s->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, sio_write_cb, arg);
    if (s->in == NULL || s->out == NULL || s->rev == NULL || s->wev == NULL)
        log_fatal("out of memory for a session's events");
    struct timeval tv = {(time_t)srv->cfg->smtpd_timeout, 0};
    /* one shared timeout queue: re-arming a timer is O(1) */
    const struct timeval *ct = event_base_init_common_timeout(srv->base, &tv);
    s->io_tv = ct ? *ct : tv;
    log_svc("smtpd", "connect from %s[%s]", s->name, s->ip);

    uintptr_t count = (uintptr_t)dict_get(&srv->per_ip, s->ip);
    if (srv->shutting_down)
        reject_at_connect(s, "reject: shutting down", "4.3.2", "Service shutting down");
    else if (count > srv->cfg->smtpd_client_connection_limit)
        reject_at_connect(s, "warning: too many connections", "4.7.0",
                          "Error: too many connections from your address");
    else if (srv->nsessions > srv->cfg->smtpd_max_sessions)
        reject_at_connect(s, "warning: too many sessions", "4.3.2",
                          "Error: too many sessions; try again later");
    else
        reply(s, 220, "", "%s", srv->cfg->smtpd_banner);
    /* the greeting is not an error reply */
    s->errors = 0;
    if (s->state != SS_CLOSING)
        sio_read_resume(s);
}
