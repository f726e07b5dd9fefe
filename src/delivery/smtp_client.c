/*
 * smtp_client.c - the outbound SMTP and LMTP client (RFC 5321, 2033,
 * 2920 pipelining, 3030 CHUNKING, 3207 STARTTLS, 3461 DSN, 1870 SIZE,
 * 6152 8BITMIME, 6531 SMTPUTF8).
 *
 * One struct smtp_session per connection; it delivers the job it was
 * started with and then, while the queue manager has more jobs for the
 * same destination, reuses the connection (smtp_connection_reuse_count).
 * Every state change goes through cs_enter(). Results are per recipient;
 * a failure that concerns the whole connection (cannot connect, lost
 * connection, greeting refused) is set on every recipient still open.
 */
#include "delivery/delivery.h"
#include "delivery/smtp_client.h"
#include "lib/config.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/netaddr.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"
#include "mail/smtp_reply.h"
#include "queue/spool.h"
#include "smtpd/smtpd_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CS_LINE_MAX 2048
#define CS_MAX_ADDRS 16
#define CS_MAX_MX 5
#define CS_BODY_CHUNK (64 * 1024)

enum cs_state {
    CS_RESOLVE, CS_CONNECT, CS_GREETING, CS_EHLO, CS_HELO, CS_STARTTLS, CS_TLS,
    CS_TXN, CS_BODY, CS_RSET, CS_QUIT, CS_DONE, CS_COUNT
};

static const char *const cs_names[CS_COUNT] = {
    "RESOLVE", "CONNECT", "GREETING", "EHLO", "HELO", "STARTTLS", "TLS",
    "TXN", "BODY", "RSET", "QUIT", "DONE",
};

/* What each pipelined command was, to match its reply. */
enum cs_cmd { CMD_MAIL, CMD_RCPT, CMD_DATA };

struct smtp_session {
    struct smtp_session *prev, *next;   /* all sessions, for shutdown */
    struct delivery_job *job;
    bool in_read;                       /* inside cs_read_cb: free later */
    bool dead;
    bool lmtp;
    enum cs_state state;
    struct bufferevent *bev;
    int fd;
    SSL *ssl;
    struct sockaddr_storage addrs[CS_MAX_ADDRS];
    socklen_t addrlens[CS_MAX_ADDRS];
    int naddrs, addr_idx;
    char addr_host[CS_MAX_ADDRS][256];
    /* MX resolution */
    char mxhosts[CS_MAX_MX][256];
    int nmx, mx_idx, mx_stage;
    bool lookup_tempfail;
    char host[256];           /* the host of the current address */
    char ip[64];
    uint16_t port;
    /* peer capabilities */
    bool pipelining, starttls, dsn, smtputf8, eightbit, chunking;
    uint64_t size_limit;
    /* TLS */
    enum tls_need tls_need;
    bool tls_active, no_tls, tls_fell_back;
    /* reply being read */
    struct smtp_reply reply;
    int rcode;
    char renh[16];
    char rtext[512];
    /* transaction */
    enum cs_cmd *cmds;
    size_t *cmd_rcpt;
    size_t ncmds, sent, acked;
    bool *accepted;
    size_t naccepted, final_seen;
    bool mail_ok, need_rset;
    /* body */
    struct spool_content qc;   /* the message being sent (fd -1: none) */
    struct spool *qspool;
    uint64_t body_off;
    bool body_line_start, body_finished;
    unsigned msgs_on_conn;
};

static void cs_read_cb(struct bufferevent *bev, void *arg);
static void cs_write_cb(struct bufferevent *bev, void *arg);
static void cs_event_cb(struct bufferevent *bev, short what, void *arg);
static void cs_connect_next(struct smtp_session *s);
static void cs_start_txn(struct smtp_session *s);
static void cs_finish_job(struct smtp_session *s);

static void cs_enter(struct smtp_session *s, enum cs_state st)
{
    if (getenv("SLUICE_TRACE"))
        log_svc("smtp", "%s: %s -> %s", s->host, cs_names[s->state], cs_names[st]);
    s->state = st;
}

static const struct config *ccfg(void)
{
    return delivery_env.config();
}

static void cs_send(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void cs_send(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
    va_end(ap);
    evbuffer_add(bufferevent_get_output(s->bev), "\r\n", 2);
}

/* ---------------------------------------------------------------------- */
/* session teardown                                                        */

static void cs_close_conn(struct smtp_session *s)
{
    if (s->bev)
        bufferevent_free(s->bev);
    s->bev = NULL;
    if (s->ssl)
        SSL_free(s->ssl);
    s->ssl = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->tls_active = false;
}

static void cs_free_txn(struct smtp_session *s)
{
    free(s->cmds);
    free(s->cmd_rcpt);
    free(s->accepted);
    s->cmds = NULL;
    s->cmd_rcpt = NULL;
    s->accepted = NULL;
    s->ncmds = s->sent = s->acked = s->naccepted = s->final_seen = 0;
    if (s->qc.fd >= 0)
        spool_content_close(s->qspool, &s->qc);
}

static struct smtp_session *all_sessions;

static void cs_free(struct smtp_session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        all_sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    cs_close_conn(s);
    cs_free_txn(s);
    free(s);
}

/* A failure of the connection: every open recipient gets this reply. */
static void cs_fail_all(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cs_fail_all(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->job)
        delivery_set_all(s->job, code, enh, text);
}

/* The job is over; hand it back and end the session. */
static void cs_end(struct smtp_session *s)
{
    cs_enter(s, CS_DONE);
    struct delivery_job *job = s->job;
    s->job = NULL;
    if (job) {
        gettimeofday(&job->t_end, NULL);
        job->done(job);
    }
    if (s->in_read) {
        /* the read loop still holds s: close now, free when it returns */
        cs_close_conn(s);
        s->dead = true;
        return;
    }
    cs_free(s);
}

/* ---------------------------------------------------------------------- */
/* connecting                                                              */

static void cs_relay_name(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    if (s->lmtp && j->hop.unix_socket)
        snprintf(j->relay, sizeof(j->relay), "%s", j->hop.host);
    else
        snprintf(j->relay, sizeof(j->relay), "%s[%s]:%u", s->host, s->ip, s->port);
    str_copy(j->remote_host, s->host, sizeof(j->remote_host));
}

static void cs_connect_next(struct smtp_session *s)
{
    cs_close_conn(s);
    if (s->addr_idx >= s->naddrs) {
        s->job->connect_failed = true;
        cs_end(s);
        return;
    }
    int i = s->addr_idx++;
    struct sockaddr *sa = (struct sockaddr *)&s->addrs[i];
    str_copy(s->host, s->addr_host[i], sizeof(s->host));
    if (sa->sa_family == AF_UNIX) {
        str_copy(s->ip, "unix", sizeof(s->ip));
    } else {
        struct netaddr na;
        netaddr_from_sockaddr(sa, &na);
        netaddr_str(&na, s->ip, sizeof(s->ip));
    }
    s->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        cs_fail_all(s, 451, "4.4.1", "cannot create socket: %s", strerror(errno));
        cs_connect_next(s);
        return;
    }
    s->bev = bufferevent_socket_new(delivery_env.base, s->fd, 0);
    bufferevent_setcb(s->bev, cs_read_cb, cs_write_cb, cs_event_cb, s);
    struct timeval tv = {(time_t)ccfg()->smtp_connect_timeout, 0};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    cs_enter(s, CS_CONNECT);
    cs_relay_name(s);
    if (bufferevent_socket_connect(s->bev, sa, (int)s->addrlens[i]) < 0) {
        cs_fail_all(s, 451, "4.4.1", "connect to %s[%s]:%u: %s", s->host, s->ip, s->port,
                    strerror(errno));
        cs_connect_next(s);
        return;
    }
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void cs_add_addr(struct smtp_session *s, const struct sockaddr *sa, socklen_t len,
                        const char *host)
{
    if (s->naddrs >= CS_MAX_ADDRS || len > sizeof(s->addrs[0]))
        return;
    memcpy(&s->addrs[s->naddrs], sa, len);
    str_copy(s->addr_host[s->naddrs], host, sizeof(s->addr_host[0]));
    s->addrlens[s->naddrs++] = len;
}

static void cs_add_netaddr(struct smtp_session *s, const struct netaddr *na, const char *host)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (na->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(s->port);
        memcpy(&in->sin_addr, na->bytes, 4);
        len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(s->port);
        memcpy(&in6->sin6_addr, na->bytes, 16);
        len = sizeof(*in6);
    }
    cs_add_addr(s, (struct sockaddr *)&ss, len, host);
}

static void cs_resolve_next(struct smtp_session *s);

/* A or AAAA answer for mxhosts[mx_idx]. */
static void cs_addr_answer(void *arg, const struct dns_result *res)
{
    struct smtp_session *s = arg;
    if (res->status == DNS_OK)
        for (size_t i = 0; i < res->n; i++)
            cs_add_netaddr(s, &res->addrs[i], s->mxhosts[s->mx_idx]);
    else if (res->status == DNS_TEMPFAIL)
        s->lookup_tempfail = true;
    if (++s->mx_stage == 2) {
        s->mx_stage = 0;
        s->mx_idx++;
    }
    cs_resolve_next(s);
}

static void cs_resolve_next(struct smtp_session *s)
{
    if (s->mx_idx < s->nmx && s->naddrs < CS_MAX_ADDRS) {
        dns_query(delivery_env.dns, s->mxhosts[s->mx_idx],
                  s->mx_stage == 0 ? DNS_T_A : DNS_T_AAAA, cs_addr_answer, s);
        return;
    }
    if (s->naddrs == 0) {
        cs_fail_all(s, 451, "4.4.3", "%s for the mail servers of %s",
                    s->lookup_tempfail ? "address lookup failed temporarily"
                                       : "no IP address found", s->job->hop.host);
        s->job->connect_failed = true;
        cs_end(s);
        return;
    }
    cs_connect_next(s);
}

/* MX answer: the hosts in preference order, equal preferences shuffled. */
static void cs_mx_answer(void *arg, const struct dns_result *res)
{
    struct smtp_session *s = arg;
    const char *domain = s->job->hop.host;
    if (res->status == DNS_OK && res->n == 1 && strcmp(res->mx[0].host, ".") == 0) {
        cs_fail_all(s, 550, "5.1.10", "domain %s does not accept mail (null MX, RFC 7505)",
                    domain);
        cs_end(s);
        return;
    }
    if (res->status == DNS_NXDOMAIN || res->status == DNS_BADNAME) {
        cs_fail_all(s, 550, "5.1.2", "Host or domain name not found. Name service error "
                    "for name=%s type=MX: Host not found", domain);
        cs_end(s);
        return;
    }
    if (res->status == DNS_TEMPFAIL) {
        cs_fail_all(s, 451, "4.4.3", "Host or domain name lookup failure for %s (MX)", domain);
        s->job->connect_failed = true;
        cs_end(s);
        return;
    }
    if (res->status == DNS_NODATA || res->n == 0) {
        str_copy(s->mxhosts[0], domain, sizeof(s->mxhosts[0])); /* implicit MX */
        s->nmx = 1;
    } else {
        for (size_t i = 0; i < res->n && s->nmx < CS_MAX_MX; i++)
            str_copy(s->mxhosts[s->nmx++], res->mx[i].host, sizeof(s->mxhosts[0]));
        for (int i = 0; i + 1 < s->nmx; i++) {
            int j = i;
            while (j + 1 < s->nmx && res->mx[j + 1].pref == res->mx[i].pref)
                j++;
            for (int k = j; k > i; k--) { /* Fisher-Yates within the run */
                int r = i + (int)(random() % (k - i + 1));
                char tmp[256];
                memcpy(tmp, s->mxhosts[k], sizeof(tmp));
                memcpy(s->mxhosts[k], s->mxhosts[r], sizeof(tmp));
                memcpy(s->mxhosts[r], tmp, sizeof(tmp));
            }
            i = j;
        }
    }
    cs_resolve_next(s);
}

/* Find addresses for the next hop (numeric, unix socket, MX, or A/AAAA). */
static void cs_resolve(struct smtp_session *s)
{
    const struct nexthop *h = &s->job->hop;
    cs_enter(s, CS_RESOLVE);
    if (h->unix_socket) {
        struct sockaddr_un un;
        memset(&un, 0, sizeof(un));
        un.sun_family = AF_UNIX;
        str_copy(un.sun_path, h->host, sizeof(un.sun_path));
        cs_add_addr(s, (struct sockaddr *)&un, sizeof(un), h->host);
        cs_connect_next(s);
        return;
    }
    struct netaddr na;
    if (netaddr_parse(h->host, &na) == 0) {
        cs_add_netaddr(s, &na, h->host);
        cs_connect_next(s);
        return;
    }
    if (h->use_mx) {
        dns_query(delivery_env.dns, h->host, DNS_T_MX, cs_mx_answer, s);
        return;
    }
    str_copy(s->mxhosts[0], h->host, sizeof(s->mxhosts[0]));
    s->nmx = 1;
    cs_resolve_next(s);
}

/* ---------------------------------------------------------------------- */
/* replies                                                                 */

/* Parse one reply line; EHLO lines also set the peer's capabilities.
 * Returns true when the line was the last of the reply. */
static bool cs_reply_line(struct smtp_session *s, const char *line, size_t len)
{
    bool first = !s->reply.open;
    bool last = smtp_reply_feed(&s->reply, line, len);
    if (s->state == CS_EHLO && !first && len > 4 && s->reply.code == 250) {
        uint64_t size = 0;
        unsigned f = smtp_ehlo_keyword(line + 4, &size);
        s->pipelining |= (f & EXT_PIPELINING) != 0;
        s->starttls |= (f & EXT_STARTTLS) != 0;
        s->dsn |= (f & EXT_DSN) != 0;
        s->smtputf8 |= (f & EXT_SMTPUTF8) != 0;
        s->eightbit |= (f & EXT_8BITMIME) != 0;
        s->chunking |= (f & EXT_CHUNKING) != 0;
        if (f & EXT_SIZE)
            s->size_limit = size;
    }
    s->rcode = s->reply.code;
    str_copy(s->renh, s->reply.enh, sizeof(s->renh));
    str_copy(s->rtext, s->reply.text, sizeof(s->rtext));
    return last;
}

static void cs_handle_reply(struct smtp_session *s);

static void cs_connected(struct smtp_session *s)
{
    cs_enter(s, CS_GREETING);
    struct timeval tv = {(time_t)ccfg()->smtp_reply_timeout, 0};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
}

static void cs_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    /* libevent may deliver the greeting before the CONNECTED event when
     * both arrive in one loop pass: data means we are connected. */
    if (s->state == CS_CONNECT)
        cs_connected(s);
    s->in_read = true;
    while (!s->dead && s->bev == bev && s->state != CS_DONE) {
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (line == NULL) {
            if (evbuffer_get_length(in) > CS_LINE_MAX) {
                cs_fail_all(s, 451, "4.5.0", "reply line too long from %s[%s]", s->host, s->ip);
                cs_end(s);
            }
            break;
        }
        if (len > CS_LINE_MAX)
            line[CS_LINE_MAX] = '\0', len = CS_LINE_MAX;
        bool last = cs_reply_line(s, line, len);
        free(line);
        if (last)
            cs_handle_reply(s);
    }
    s->in_read = false;
    if (s->dead)
        cs_free(s);
}

/* ---------------------------------------------------------------------- */
/* greeting, EHLO, STARTTLS                                                */

static void cs_ehlo(struct smtp_session *s)
{
    s->pipelining = s->starttls = s->dsn = s->smtputf8 = s->eightbit = s->chunking = false;
    s->size_limit = 0;
    cs_enter(s, CS_EHLO);
    cs_send(s, "%s %s", s->lmtp ? "LHLO" : "EHLO", ccfg()->smtp_helo_name);
}

static void cs_tls_event_cb(struct bufferevent *bev, short what, void *arg);

static void cs_start_tls(struct smtp_session *s)
{
    bufferevent_free(s->bev);
    s->ssl = SSL_new(smtp_tls_client_ctx());
    SSL_set_tlsext_host_name(s->ssl, s->host);
    s->bev = bufferevent_openssl_socket_new(delivery_env.base, s->fd, s->ssl,
                                            BUFFEREVENT_SSL_CONNECTING, 0);
    bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    bufferevent_setcb(s->bev, cs_read_cb, cs_write_cb, cs_tls_event_cb, s);
    struct timeval tv = {(time_t)ccfg()->smtp_reply_timeout, 0};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    cs_enter(s, CS_TLS);
}

/* STARTTLS failed: plaintext at once unless policy forbids it. */
static void cs_tls_failed(struct smtp_session *s, const char *why)
{
    log_svc("smtp", "%s: STARTTLS with %s[%s] failed: %s", s->job->qid, s->host, s->ip, why);
    if (s->tls_need == TLS_ENCRYPT) {
        cs_fail_all(s, 451, "4.7.5", "TLS is required for %s but the handshake failed: %s",
                    s->host, why);
        cs_end(s);
        return;
    }
    smtp_tls_remember_failure(s->host, (time_t)ccfg()->smtp_tls_fallback_ttl);
    s->no_tls = true;
    s->tls_fell_back = true;
    s->addr_idx--; /* the same address again, in plaintext */
    cs_connect_next(s);
}

static void cs_after_ehlo(struct smtp_session *s)
{
    bool want_tls = s->tls_need != TLS_NONE && !s->tls_active && !s->no_tls;
    if (want_tls && s->starttls) {
        cs_enter(s, CS_STARTTLS);
        cs_send(s, "STARTTLS");
        return;
    }
    if (s->tls_need == TLS_ENCRYPT && !s->tls_active) {
        cs_fail_all(s, 451, "4.7.5", "TLS is required for %s but it %s", s->host,
                    s->starttls ? "failed earlier" : "does not offer STARTTLS");
        cs_enter(s, CS_QUIT);
        cs_send(s, "QUIT");
        return;
    }
    if (s->tls_need != TLS_NONE && !s->tls_active)
        snprintf(s->job->tls, sizeof(s->job->tls), "may:none");
    cs_start_txn(s);
}

/* ---------------------------------------------------------------------- */
/* the transaction                                                         */

static bool needs_8bit(const struct delivery_job *j)
{
    return j->body == BODY_8BITMIME;
}

static void cs_send_mail(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    char params[400] = "";
    size_t o = 0;
    if (s->size_limit)
        o += (size_t)snprintf(params + o, sizeof(params) - o, " SIZE=%llu",
                              (unsigned long long)j->content_length);
    if (needs_8bit(j) && s->eightbit)
        o += (size_t)snprintf(params + o, sizeof(params) - o, " BODY=8BITMIME");
    if (j->smtputf8 && s->smtputf8)
        o += (size_t)snprintf(params + o, sizeof(params) - o, " SMTPUTF8");
    if (s->dsn && j->ret)
        o += (size_t)snprintf(params + o, sizeof(params) - o, " RET=%s",
                              j->ret == RET_FULL ? "FULL" : "HDRS");
    if (s->dsn && j->envid)
        o += (size_t)snprintf(params + o, sizeof(params) - o, " ENVID=%s", j->envid);
    cs_send(s, "MAIL FROM:<%s>%s", j->sender, params);
}

static void cs_send_rcpt(struct smtp_session *s, size_t i)
{
    struct delivery_rcpt *r = &s->job->rcpts[i];
    char params[700] = "";
    if (s->dsn && r->notify) {
        static const char *const w[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};
        size_t o = (size_t)snprintf(params, sizeof(params), " NOTIFY=");
        bool first = true;
        for (int b = 0; b < 4; b++)
            if (r->notify & (1u << b)) {
                o += (size_t)snprintf(params + o, sizeof(params) - o, "%s%s",
                                      first ? "" : ",", w[b]);
                first = false;
            }
    }
    if (s->dsn && r->orcpt) {
        size_t o = strlen(params);
        snprintf(params + o, sizeof(params) - o, " ORCPT=%s", r->orcpt);
    }
    cs_send(s, "RCPT TO:<%s>%s", r->addr, params);
}

static void cs_send_cmd(struct smtp_session *s, size_t k)
{
    switch (s->cmds[k]) {
    case CMD_MAIL: cs_send_mail(s); break;
    case CMD_RCPT: cs_send_rcpt(s, s->cmd_rcpt[k]); break;
    case CMD_DATA:
        if (s->chunking && !s->lmtp)
            return; /* BDAT goes out after the RCPT replies, with the body */
        cs_send(s, "DATA");
        break;
    }
}

/* Refuse before sending what the peer cannot take. */
static bool cs_precheck(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    if (s->size_limit && j->content_length > s->size_limit) {
        delivery_set_all(j, 552, "5.3.4", "message size exceeds the limit the receiving "
                         "server announced (SIZE)");
        return false;
    }
    if (j->smtputf8 && !s->smtputf8) {
        delivery_set_all(j, 550, "5.6.7", "the message needs SMTPUTF8 and the receiving "
                         "server does not offer it");
        return false;
    }
    return true;
}

static void cs_start_txn(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    cs_free_txn(s);
    if (s->need_rset) {
        s->need_rset = false;
        cs_enter(s, CS_RSET);
        cs_send(s, "RSET");
        return;
    }
    if (!cs_precheck(s)) {
        cs_finish_job(s);
        return;
    }
    s->ncmds = j->nrcpt + 2;
    s->cmds = xcalloc(s->ncmds, sizeof(*s->cmds));
    s->cmd_rcpt = xcalloc(s->ncmds, sizeof(*s->cmd_rcpt));
    s->accepted = xcalloc(j->nrcpt + 1, sizeof(bool));
    s->cmds[0] = CMD_MAIL;
    for (size_t i = 0; i < j->nrcpt; i++) {
        s->cmds[i + 1] = CMD_RCPT;
        s->cmd_rcpt[i + 1] = i;
    }
    s->cmds[j->nrcpt + 1] = CMD_DATA;
    s->mail_ok = false;
    cs_enter(s, CS_TXN);
    size_t upto = s->pipelining ? s->ncmds : 1;
    for (s->sent = 0; s->sent < upto; s->sent++)
        cs_send_cmd(s, s->sent);
    struct timeval tv = {(time_t)ccfg()->smtp_reply_timeout, 0};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* Stream the message: DATA (dot-stuffed) or BDAT (raw). Called again
 * from the write callback while the output drains. */
static void cs_body_pump(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    bool raw = s->chunking && !s->lmtp;
    char buf[CS_BODY_CHUNK];
    while (!s->body_finished && evbuffer_get_length(out) < 4 * CS_BODY_CHUNK) {
        uint64_t left = j->content_length - s->body_off;
        size_t want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
        ssize_t r = want ? pread(s->qc.fd, buf, want,
                                      (off_t)(s->qc.base + j->content_offset + s->body_off)) : 0;
        if (want && r <= 0) {
            cs_fail_all(s, 451, "4.3.0", "cannot read the queue file: %s",
                        r < 0 ? strerror(errno) : "short file");
            s->body_finished = true;
            cs_end(s);
            return;
        }
        if (raw) {
            evbuffer_add(out, buf, (size_t)r);
        } else {
            size_t start = 0;
            for (ssize_t i = 0; i < r; i++) {
                if (s->body_line_start && buf[i] == '.') {
                    evbuffer_add(out, buf + start, (size_t)i - start);
                    evbuffer_add(out, ".", 1);
                    start = (size_t)i;
                }
                s->body_line_start = buf[i] == '\n';
            }
            evbuffer_add(out, buf + start, (size_t)r - start);
        }
        s->body_off += (uint64_t)r;
        if (s->body_off >= j->content_length) {
            s->body_finished = true;
            if (!raw) {
                if (!s->body_line_start && j->content_length)
                    evbuffer_add(out, "\r\n", 2);
                evbuffer_add(out, ".\r\n", 3);
            }
        }
    }
}

static void cs_start_body(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    s->qspool = j->spool;
    if (spool_content_open(j->spool, j->qid, &s->qc) < 0) {
        cs_fail_all(s, 451, "4.3.0", "cannot open the queued message: %s", strerror(errno));
        cs_end(s);
        return;
    }
    s->body_off = 0;
    s->body_line_start = true;
    s->body_finished = false;
    s->final_seen = 0;
    cs_enter(s, CS_BODY);
    if (s->chunking && !s->lmtp)
        cs_send(s, "BDAT %llu LAST", (unsigned long long)j->content_length);
    struct timeval tv = {(time_t)ccfg()->smtp_data_timeout, 0};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    cs_body_pump(s);
}

static void cs_write_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    if (s->state == CS_BODY && !s->body_finished)
        cs_body_pump(s);
}

/* A reply in the transaction: MAIL, a RCPT, or DATA's 354. */
static void cs_txn_reply(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    size_t k = s->acked++;
    switch (s->cmds[k]) {
    case CMD_MAIL:
        s->mail_ok = s->rcode >= 200 && s->rcode < 300;
        if (!s->mail_ok)
            delivery_set_all(j, s->rcode, s->renh, s->rtext);
        break;
    case CMD_RCPT: {
        struct delivery_rcpt *r = &j->rcpts[s->cmd_rcpt[k]];
        if (s->mail_ok && s->rcode >= 200 && s->rcode < 300) {
            s->accepted[s->cmd_rcpt[k]] = true;
            s->naccepted++;
        } else if (s->mail_ok) {
            delivery_set_result(r, s->rcode, s->renh, "%s", s->rtext);
        }
        break;
    }
    case CMD_DATA:
        if (s->rcode == 354 && s->naccepted > 0) {
            cs_start_body(s);
        } else if (s->rcode == 354) {
            /* nobody accepted but the peer wants data: end it empty */
            cs_send(s, ".");
            s->need_rset = false;
            cs_enter(s, CS_BODY);
            s->body_finished = true;
            s->naccepted = 0;
        } else {
            if (s->naccepted)
                delivery_set_all(j, s->rcode, s->renh, s->rtext);
            s->need_rset = false;
            cs_finish_job(s);
        }
        return;
    }
    /* non-pipelined: next command; BDAT: after the last RCPT reply */
    if (!s->pipelining && s->sent < s->ncmds &&
        !(s->cmds[s->sent] == CMD_DATA && s->chunking && !s->lmtp)) {
        if (s->cmds[s->sent] == CMD_DATA && (!s->mail_ok || s->naccepted == 0)) {
            s->need_rset = true;
            cs_finish_job(s);
            return;
        }
        if (s->cmds[s->sent] != CMD_MAIL && !s->mail_ok) {
            s->need_rset = true;
            cs_finish_job(s);
            return;
        }
        cs_send_cmd(s, s->sent++);
        return;
    }
    if (s->acked == s->ncmds - 1 && s->chunking && !s->lmtp) {
        if (s->naccepted == 0) {
            s->need_rset = true;
            cs_finish_job(s);
        } else {
            s->acked++;
            cs_start_body(s);
        }
    }
}

/* The reply (or, for LMTP, replies) after the message. */
static void cs_body_reply(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    if (!s->lmtp || s->naccepted == 0) {
        for (size_t i = 0; i < j->nrcpt; i++)
            if (s->accepted[i])
                delivery_set_result(&j->rcpts[i], s->rcode, s->renh, "%s", s->rtext);
        cs_finish_job(s);
        return;
    }
    /* LMTP: one reply per accepted recipient, in order (RFC 2033 4.2) */
    size_t seen = 0;
    for (size_t i = 0; i < j->nrcpt; i++) {
        if (!s->accepted[i])
            continue;
        if (seen++ == s->final_seen) {
            delivery_set_result(&j->rcpts[i], s->rcode, s->renh, "%s", s->rtext);
            break;
        }
    }
    if (++s->final_seen >= s->naccepted)
        cs_finish_job(s);
}

/* The job is done; take another for the same destination or quit. */
static void cs_finish_job(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    cs_free_txn(s);
    s->msgs_on_conn++;
    struct delivery_job *next = NULL;
    if (delivery_env.next_job && s->msgs_on_conn < ccfg()->smtp_connection_reuse_count)
        next = delivery_env.next_job(j->dest_key);
    gettimeofday(&j->t_end, NULL);
    s->job = NULL;
    j->done(j);
    if (next) {
        s->job = next;
        gettimeofday(&next->t_start, NULL);
        next->t_connected = next->t_start;
        cs_relay_name(s);
        if (s->tls_active)
            snprintf(next->tls, sizeof(next->tls), "%s:%s",
                     s->tls_need == TLS_ENCRYPT ? "encrypt" : "may", SSL_get_version(s->ssl));
        else if (s->tls_need != TLS_NONE)
            str_copy(next->tls, "may:none", sizeof(next->tls));
        cs_start_txn(s);
        return;
    }
    cs_enter(s, CS_QUIT);
    cs_send(s, "QUIT");
}

static void cs_handle_reply(struct smtp_session *s)
{
    struct delivery_job *j = s->job;
    switch (s->state) {
    case CS_GREETING:
        gettimeofday(&j->t_connected, NULL);
        if (s->rcode != 220) {
            cs_fail_all(s, s->rcode, s->renh, "%s", s->rtext);
            cs_enter(s, CS_QUIT);
            cs_send(s, "QUIT");
            return;
        }
        cs_ehlo(s);
        break;
    case CS_EHLO:
        if (s->rcode == 250) {
            cs_after_ehlo(s);
        } else if (!s->lmtp) {
            cs_enter(s, CS_HELO);
            cs_send(s, "HELO %s", ccfg()->smtp_helo_name);
        } else {
            cs_fail_all(s, s->rcode, s->renh, "%s", s->rtext);
            cs_end(s);
        }
        break;
    case CS_HELO:
        if (s->rcode != 250) {
            cs_fail_all(s, s->rcode, s->renh, "%s", s->rtext);
            cs_enter(s, CS_QUIT);
            cs_send(s, "QUIT");
            return;
        }
        cs_after_ehlo(s);
        break;
    case CS_STARTTLS:
        if (s->rcode == 220)
            cs_start_tls(s);
        else
            cs_tls_failed(s, s->rtext);
        break;
    case CS_TXN:
        cs_txn_reply(s);
        break;
    case CS_BODY:
        cs_body_reply(s);
        break;
    case CS_RSET:
        cs_start_txn(s);
        break;
    case CS_QUIT:
        cs_end(s);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------------- */
/* connection events                                                       */

static void cs_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (s->state == CS_CONNECT)
            cs_connected(s);
        return;
    }
    const char *why = (what & BEV_EVENT_TIMEOUT) ? "timeout" :
                      (what & BEV_EVENT_EOF) ? "connection closed" :
                      strerror(EVUTIL_SOCKET_ERROR());
    if (s->state == CS_CONNECT) {
        cs_fail_all(s, 451, "4.4.1", "connect to %s[%s]:%u: %s", s->host, s->ip, s->port, why);
        cs_connect_next(s);
        return;
    }
    if (s->state == CS_QUIT || s->job == NULL) {
        cs_end(s);
        return;
    }
    if (s->state == CS_STARTTLS) {
        cs_tls_failed(s, "connection closed after STARTTLS");
        return;
    }
    cs_fail_all(s, 451, "4.4.2", "lost connection with %s[%s] while in %s: %s", s->host,
                s->ip, cs_names[s->state], why);
    cs_end(s);
}

static void cs_tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        s->tls_active = true;
        snprintf(s->job->tls, sizeof(s->job->tls), "%s:%s",
                 s->tls_need == TLS_ENCRYPT ? "encrypt" : "may", SSL_get_version(s->ssl));
        bufferevent_setcb(bev, cs_read_cb, cs_write_cb, cs_event_cb, s);
        cs_ehlo(s);
        return;
    }
    char reason[256] = "connection closed during the TLS handshake";
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    cs_tls_failed(s, reason);
}

/* ---------------------------------------------------------------------- */

void smtp_deliver(struct delivery_job *job)
{
    struct smtp_session *s = xcalloc(1, sizeof(*s));
    s->next = all_sessions;
    if (all_sessions)
        all_sessions->prev = s;
    all_sessions = s;
    s->job = job;
    s->fd = -1;
    s->qc.fd = -1;
    s->lmtp = job->hop.kind == TR_LMTP;
    str_copy(s->host, job->hop.host, sizeof(s->host));
    s->port = job->hop.port;
    const char *at = job->nrcpt ? strrchr(job->rcpts[0].addr, '@') : NULL;
    s->tls_need = s->lmtp ? TLS_NONE : smtp_tls_level(ccfg(), at ? at + 1 : NULL, s->host);
    if (s->tls_need == TLS_MAY && smtp_tls_recently_failed(s->host)) {
        s->no_tls = true;
        s->tls_fell_back = true;
    }
    cs_resolve(s);
}

void smtp_client_shutdown(void)
{
    while (all_sessions) {
        struct smtp_session *s = all_sessions;
        if (s->job)
            cs_fail_all(s, 451, "4.3.2", "delivery interrupted: sluice is shutting down");
        cs_end(s);
    }
}
