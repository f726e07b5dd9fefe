/*
 * policy.c - `sluice policy`: the greylisting engine served to an existing
 * Postfix (or Exim) over the policy delegation protocol, as a drop-in
 * replacement for postgrey on 127.0.0.1:10023.
 *
 * Connections are persistent and carry many requests, one at a time: a
 * complete request stops parsing until its answer is given, so answers
 * stay in order. The loop runs one pass at a time; after each pass the
 * pass's log lines are written (one write) and then each connection's
 * answers sent (one send each). Answers:
 *   action=DEFER_IF_PERMIT Greylisted, retry in N seconds
 *   action=PREPEND X-Greylist: delayed N seconds by sluice at HOST; DATE
 *   action=DUNNO
 * A request we cannot judge (no request=, not smtpd_access_policy, an
 * over-long attribute, not at RCPT, a bad client address) gets DUNNO: mail
 * flows as if we were not there. Garbage (a line without "=") closes the
 * connection; so does an overloaded engine, without a reply, so that
 * Postfix retries (its documented behaviour on a policy server error).
 * A client that stops reading is cut off after a write timeout, and at most
 * POLICY_OUT_MAX bytes of answers are held for it.
 */
#include "greylist/policy.h"
#include "greylist/greylist.h"
#include "greylist/policy_attr.h"
#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/config.h"
#include "lib/dict.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sched.h>
#include <unistd.h>

#define POLICY_IDLE_TIMEOUT 600    /* seconds without a request */
#define POLICY_WRITE_TIMEOUT 30    /* a client that does not read */
#define POLICY_OUT_MAX (64 * 1024) /* answers held for a slow reader */
#define POLICY_IN_MAX (256 * 1024) /* requests queued by a pipelining client */
#define POLICY_IN_CHUNK 4096       /* least room offered to one read */
#define POLICY_PENDING_MAX 20000   /* decisions in flight, all connections */
#define POLICY_POLL_START_US 10    /* first poll window once polling pays */

enum pconn_state { PC_READ, PC_WAIT, PC_CLOSING };

struct pconn;

struct pserver {
    struct event_base *base;
    struct config *cfg;
    char *config_path;
    struct dns *dns;
    struct greylist *gl;
    struct dict conns;             /* id -> struct pconn * */
    uint64_t next_id;
    struct pconn *flush_head;      /* connections with answers to send */
    unsigned long nreads;          /* reads so far: polling saw activity */
    uint64_t poll_us;              /* current poll window (adaptive) */
    bool stopping;                 /* SIGTERM/SIGINT seen */
    struct evconnlistener **listeners;
    size_t nlisteners;
    char **unix_paths;
    size_t nunix;
};

/* A connection reads into its own buffer and parses lines in place (no
 * bufferevent: it asked the kernel for the readable size before every
 * read, one more system call per request). Answers collect in `out` and
 * are sent at the end of the loop pass, after the pass's log lines. */
struct pconn {
    uint64_t id;
    struct pserver *srv;
    int fd;
    struct event *rev;             /* readable; idle timeout */
    struct event *wev;             /* writable, armed only with a backlog */
    char *in;                      /* unparsed input: in[in_off..in_len) */
    size_t in_len, in_off, in_cap;
    struct buf out;
    enum pconn_state state;
    struct policy_req req;
    bool discarding;               /* inside an over-long line */
    bool read_paused;              /* reading stopped (input full, answers unread) */
    bool in_callback;
    bool dead;
    bool flush_queued;
    struct pconn *flush_next;
    unsigned long nrequests;
};

/* One server per process; engine answers find connections by id through
 * it. */
static struct pserver *policy_server;

static void pconn_process(struct pconn *c);

/* ---------------------------------------------------------------------- */
/* connections                                                             */

static struct pconn *pconn_find(struct pserver *srv, uint64_t id)
{
    char key[STR_U64_SIZE];
    return dict_get(&srv->conns, str_from_u64(id, key));
}

static void pconn_unqueue(struct pconn *c)
{
    struct pconn **pp = &c->srv->flush_head;
    while (*pp && *pp != c)
        pp = &(*pp)->flush_next;
    if (*pp)
        *pp = c->flush_next;
    c->flush_queued = false;
}

static void pconn_destroy(struct pconn *c)
{
    event_free(c->rev);
    event_free(c->wev);
    close(c->fd);
    free(c->in);
    buf_free(&c->out);
    free(c);
}

static void pconn_free(struct pconn *c)
{
    if (c->in_callback) {
        c->dead = true;
        return;
    }
    if (c->flush_queued)
        pconn_unqueue(c);
    char key[STR_U64_SIZE];
    dict_del(&c->srv->conns, str_from_u64(c->id, key));
    pconn_destroy(c);
}

/* Stop or resume reading; `paused` records why reading is off. */
static void pconn_reading(struct pconn *c, bool on)
{
    if (on && c->read_paused) {
        struct timeval rt = {POLICY_IDLE_TIMEOUT, 0};
        event_add(c->rev, &rt);
    } else if (!on && !c->read_paused) {
        event_del(c->rev);
    }
    c->read_paused = !on;
}

/* Send what is queued: false when the connection failed (and is freed or
 * marked dead). What the socket does not take waits for a write event. */
static bool pconn_send(struct pconn *c)
{
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!event_pending(c->wev, EV_WRITE, NULL)) {
                struct timeval wt = {POLICY_WRITE_TIMEOUT, 0};
                event_add(c->wev, &wt);
            }
            return true;
        }
        c->state = PC_CLOSING;   /* the client is gone */
        pconn_free(c);
        return false;
    }
    if (event_pending(c->wev, EV_WRITE, NULL))
        event_del(c->wev);
    return true;
}

/* Parse what is buffered, keeping c alive meanwhile: a close inside only
 * marks it dead, and it is freed here, once nothing uses it. */
static void pconn_process_guarded(struct pconn *c)
{
    c->in_callback = true;
    pconn_process(c);
    c->in_callback = false;
    if (c->dead) {
        c->dead = false;
        pconn_free(c);
    }
}

/* Send the queued answers; once they have drained, take the requests that
 * were held back. */
static void pconn_drain(struct pconn *c)
{
    if (pconn_send(c) && c->out.len <= POLICY_OUT_MAX / 2 && c->read_paused &&
        c->state == PC_READ)
        pconn_process_guarded(c);
}

/* End of a loop pass: the pass's log lines first (an answer is never
 * seen before its log line is written), then every connection's answers,
 * one send each. */
static void policy_flush(struct pserver *srv)
{
    log_flush();
    while (srv->flush_head) {
        struct pconn *c = srv->flush_head;
        srv->flush_head = c->flush_next;
        c->flush_queued = false;
        pconn_drain(c);
    }
}

/* Answer one request: queued, sent at the end of the pass. */
static void pconn_reply(struct pconn *c, const char *action)
{
    if (buf_puts(&c->out, "action=") < 0 || buf_puts(&c->out, action) < 0 ||
        buf_puts(&c->out, "\n\n") < 0) {
        /* cannot happen: reading stops at POLICY_OUT_MAX, an answer is
         * short; keep the stream well-formed anyway */
        log_svc_warn("greylist", "policy answer buffer full; closing the connection");
        c->state = PC_CLOSING;
        pconn_free(c);
        return;
    }
    c->nrequests++;
    if (!c->flush_queued) {
        c->flush_queued = true;
        c->flush_next = c->srv->flush_head;
        c->srv->flush_head = c;
    }
}

static void pconn_decided(void *arg, const struct greylist_decision *d);

/* A complete request: answer at once, or ask the engine. */
static void pconn_request(struct pconn *c)
{
    struct policy_req *r = &c->req;
    struct netaddr a;
    const char *why = NULL;
    if (r->too_many || r->oversize)
        why = "over-long attribute or too many attributes";
    else if (r->request[0] == '\0')
        why = "no request= attribute";
    else if (strcmp(r->request, "smtpd_access_policy") != 0)
        why = "unknown request type";
    else if (netaddr_parse(r->client_address, &a) < 0)
        why = "bad client_address";
    if (why) {
        log_svc_warn("greylist", "policy request %lu: %s; answering DUNNO",
                     c->nrequests + 1, why);
        pconn_reply(c, "DUNNO");
        policy_req_init(r);
        return;
    }
    if (r->protocol_state[0] && strcmp(r->protocol_state, "RCPT") != 0) {
        pconn_reply(c, "DUNNO");
        policy_req_init(r);
        return;
    }
    if (greylist_pending(c->srv->gl) >= POLICY_PENDING_MAX) {
        log_svc_warn("greylist", "overloaded (%d decisions in flight); closing a "
                     "connection without an answer", POLICY_PENDING_MAX);
        c->state = PC_CLOSING;
        pconn_free(c);
        return;
    }
    struct greylist_request q = {
        .addr = a,
        .client_name = r->client_name[0] ? r->client_name : NULL,
        .helo = r->helo_name, .sender = r->sender, .rcpt = r->recipient,
        .queue_id = r->queue_id,
        .trusted = netlist_match(&c->srv->cfg->mynetworks_list, &a),
        .authenticated = r->sasl_username[0] != '\0',
    };
    /* no more requests are taken until this one is answered; the input
     * buffer's limit bounds what a pipelining client can queue */
    c->state = PC_WAIT;
    greylist_check(c->srv->gl, &q, pconn_decided, (void *)(uintptr_t)c->id);
}

static void pconn_decided(void *arg, const struct greylist_decision *d)
{
    struct pconn *c = policy_server ? pconn_find(policy_server, (uint64_t)(uintptr_t)arg)
                                    : NULL;
    if (c == NULL)
        return;
    char action[600];
    if (d->action == GREYLIST_DEFER)
        snprintf(action, sizeof(action), "DEFER_IF_PERMIT Greylisted, retry in %u seconds",
                 d->retry_in);
    else if (d->action == GREYLIST_TEMPFAIL)
        str_copy(action, "DEFER_IF_PERMIT Greylisting temporarily unavailable, try "
                 "again later", sizeof(action));
    else if (d->delayed) {
        char hdr[512];
        greylist_header(d->delayed, c->srv->cfg->myhostname, hdr, sizeof(hdr));
        snprintf(action, sizeof(action), "PREPEND %s", hdr);
    } else
        str_copy(action, "DUNNO", sizeof(action));
    c->in_callback = true;
    pconn_reply(c, action);
    c->state = c->dead ? PC_CLOSING : PC_READ;
    policy_req_init(&c->req);
    pconn_process_guarded(c);
}

/* Take one line from the input; false when none is complete yet. */
static bool pconn_line(struct pconn *c)
{
    const char *p = c->in + c->in_off;
    size_t have = c->in_len - c->in_off;
    const char *eol = memchr(p, '\n', have);
    if (eol == NULL) {
        if (have > POLICY_LINE_MAX) {
            c->in_off = c->in_len;   /* drop it; the rest of the line too */
            c->discarding = true;
        }
        return false;
    }
    size_t len = (size_t)(eol - p);
    c->in_off += len + 1;
    if (c->discarding || len > POLICY_LINE_MAX) {
        c->discarding = false;
        policy_req_oversize(&c->req);
        return true;
    }
    switch (policy_req_feed(&c->req, p, len)) {
    case POLICY_MORE:
        return true;
    case POLICY_END:
        pconn_request(c);
        return true;
    case POLICY_BAD:
    default:
        log_svc_warn("greylist", "policy client sent a line that is not name=value; "
                     "closing the connection");
        c->state = PC_CLOSING;
        pconn_free(c);
        return false;
    }
}

static void pconn_process(struct pconn *c)
{
    while (!c->dead && c->state == PC_READ) {
        if (c->out.len > POLICY_OUT_MAX) {
            /* the client does not read its answers: wait for the drain */
            pconn_reading(c, false);
            return;
        }
        if (!pconn_line(c))
            break;
    }
    if (c->dead)
        return;
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    /* read again unless a full input buffer still waits for answers */
    pconn_reading(c, c->in_len - c->in_off < POLICY_IN_MAX);
}

/* Make room for one read; false when POLICY_IN_MAX bytes already wait. */
static bool pconn_room(struct pconn *c)
{
    if (c->in_off > 0 && c->in_cap - c->in_len < POLICY_IN_CHUNK) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len >= POLICY_IN_CHUNK)
        return true;
    if (c->in_len >= POLICY_IN_MAX)
        return false;
    size_t cap = c->in_cap ? c->in_cap * 2 : 2 * POLICY_IN_CHUNK;
    if (cap > POLICY_IN_MAX + POLICY_IN_CHUNK)
        cap = POLICY_IN_MAX + POLICY_IN_CHUNK;
    c->in = xrealloc(c->in, cap);
    c->in_cap = cap;
    return true;
}

static void pconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pconn *c = arg;
    if (what & EV_TIMEOUT) {
        log_svc("greylist", "policy client timed out after %lu request(s)", c->nrequests);
        pconn_free(c);   /* in PC_WAIT the engine's answer finds nothing */
        return;
    }
    if (!pconn_room(c)) {
        pconn_reading(c, false);
        return;
    }
    ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        pconn_free(c);   /* closed or reset */
        return;
    }
    c->in_len += (size_t)n;
    c->srv->nreads++;
    if (c->state != PC_READ)
        return;   /* parsed once the pending answer is given */
    pconn_process_guarded(c);
}

static void pconn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pconn *c = arg;
    if (what & EV_TIMEOUT) {
        log_svc("greylist", "policy client timed out after %lu request(s)", c->nrequests);
        pconn_free(c);
        return;
    }
    pconn_drain(c);
}

static void policy_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                             struct sockaddr *sa, int salen, void *arg)
{
    struct pserver *srv = arg;
    struct pconn *c = xcalloc(1, sizeof(*c));
    c->id = ++srv->next_id;
    c->srv = srv;
    c->fd = fd;
    /* the listener made fd non-blocking (accept4) */
    if (sa->sa_family != AF_UNIX) {
        int one = 1;   /* answers are small and must leave at once */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    buf_init(&c->out, POLICY_OUT_MAX + 1024);
    policy_req_init(&c->req);
    c->rev = event_new(srv->base, fd, EV_READ | EV_PERSIST, pconn_read_cb, c);
    c->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, pconn_write_cb, c);
    char key[STR_U64_SIZE];
    dict_set(&srv->conns, str_from_u64(c->id, key), c);
    c->read_paused = true;
    pconn_reading(c, true);
}

/* ---------------------------------------------------------------------- */
/* listeners                                                               */

static int policy_listen_unix(struct pserver *srv, const char *path, char *err,
                              size_t errlen)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (str_copy(sun.sun_path, path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "unix socket path too long: %s", path);
        return -1;
    }
    unlink(path);   /* a stale socket from an earlier run */
    struct evconnlistener *l = evconnlistener_new_bind(
        srv->base, policy_accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        256, (struct sockaddr *)&sun, (int)sizeof(sun));
    if (l == NULL) {
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
        return -1;
    }
    chmod(path, 0666);   /* Postfix's smtpd runs as another user */
    srv->listeners = xrealloc(srv->listeners, (srv->nlisteners + 1) * sizeof(l));
    srv->listeners[srv->nlisteners++] = l;
    srv->unix_paths = xrealloc(srv->unix_paths, (srv->nunix + 1) * sizeof(char *));
    srv->unix_paths[srv->nunix++] = xstrdup(path);
    return 0;
}

static int policy_listen_inet(struct pserver *srv, const char *w, char *err, size_t errlen)
{
    char host[256];
    uint16_t port;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (endpoint_parse(w, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "bad listen address '%s'; fix: use host:port, "
                 "[ipv6]:port or unix:PATH", w);
        return -1;
    }
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        sl = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        sl = sizeof(*in6);
    } else {
        snprintf(err, errlen, "listen host '%s' is not an IP address", host);
        return -1;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        srv->base, policy_accept_cb, srv,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 256,
        (struct sockaddr *)&ss, (int)sl);
    if (l == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s; fix: stop what uses the port "
                 "or change policy_listen / --listen", w, strerror(errno));
        return -1;
    }
    srv->listeners = xrealloc(srv->listeners, (srv->nlisteners + 1) * sizeof(l));
    srv->listeners[srv->nlisteners++] = l;
    return 0;
}

static int policy_open_listeners(struct pserver *srv, const char *spec, char *err,
                                 size_t errlen)
{
    char *copy = xstrdup(spec), *save = NULL;
    int rc = 0;
    for (char *w = strtok_r(copy, ", \t", &save); w && rc == 0;
         w = strtok_r(NULL, ", \t", &save))
        rc = strncmp(w, "unix:", 5) == 0 ? policy_listen_unix(srv, w + 5, err, errlen)
                                         : policy_listen_inet(srv, w, err, errlen);
    free(copy);
    if (rc == 0 && srv->nlisteners == 0) {
        snprintf(err, errlen, "nothing to listen on; fix: set policy_listen or --listen");
        rc = -1;
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* the service                                                             */

static void policy_reload(struct pserver *srv)
{
    char err[1024];
    struct config *c = config_load(srv->config_path, err, sizeof(err));
    if (c == NULL || greylist_reload(srv->gl, c, err, sizeof(err)) < 0) {
        log_svc_warn("greylist", "reload failed, keeping the running configuration: %s", err);
        config_free(c);
        return;
    }
    config_free(srv->cfg);
    srv->cfg = c;
    log_svc("greylist", "reload -- configuration %s", c->path ? c->path : "(built-in defaults)");
}

static void policy_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct pserver *srv = arg;
    if (sig == SIGHUP) {
        policy_reload(srv);
        return;
    }
    log_svc("greylist", "terminating on signal %d", (int)sig);
    srv->stopping = true;
    event_base_loopbreak(srv->base);
}

/* ---------------------------------------------------------------------- */
/* the loop                                                                */

/* Poll for the next request for up to srv->poll_us before sleeping: true
 * when something happened. A client on another CPU answers an answer
 * within tens of microseconds, but waking a sleeping event loop costs more
 * than that on virtual machines (measured here: a TCP echo round trip
 * takes 85 us when the server sleeps in epoll_wait, 25 us when it polls).
 * sched_yield() lets a runnable client on this CPU go first. */
static bool policy_poll(struct pserver *srv)
{
    if (srv->poll_us == 0)
        return false;
    unsigned long reads = srv->nreads;
    uint64_t end = clock_mono_us() + srv->poll_us;
    do {
        if (event_base_loop(srv->base, EVLOOP_NONBLOCK) != 0)
            return false;
        if (srv->nreads != reads || srv->flush_head || srv->stopping)
            return true;
        sched_yield();
    } while (clock_mono_us() < end);
    return false;
}

/* Sleep until something happens, and adapt the poll window as the
 * kernel's halt-polling does: a sleep that a longer poll would have
 * avoided (shorter than policy_poll_us) doubles it, a longer one halves
 * it, so sparse traffic keeps it at 0 and an idle server never spins. */
static int policy_wait(struct pserver *srv)
{
    uint64_t max = srv->cfg->policy_poll_us, t0 = max ? clock_mono_us() : 0;
    int rc = event_base_loop(srv->base, EVLOOP_ONCE);
    if (max && clock_mono_us() - t0 <= max)
        srv->poll_us = srv->poll_us ? srv->poll_us * 2 : POLICY_POLL_START_US;
    else
        srv->poll_us /= 2;
    if (srv->poll_us > max)
        srv->poll_us = max;
    return rc;
}

/* One pass at a time: after each, the pass's log lines and answers leave
 * (policy_flush); then poll briefly, then sleep. */
static void policy_run(struct pserver *srv)
{
    while (!srv->stopping) {
        policy_flush(srv);
        if (policy_poll(srv))
            continue;
        if (srv->stopping || policy_wait(srv) != 0)
            break;
    }
    policy_flush(srv);
}

static int policy_open_logs(const struct config *cfg)
{
    int rc = 0;
    if (cfg->maillog_file[0])
        rc = log_open(LOG_DEST_FILE, cfg->maillog_file);
    else
        log_open(LOG_DEST_STDERR, NULL);
    if (rc == 0 && cfg->log_json_file[0])
        rc = log_open_json(cfg->log_json_file);
    log_set_hostname(cfg->myhostname);
    log_set_service("greylist");
    return rc;
}

static int policy_start(struct pserver *srv, const char *listen, char *err, size_t errlen)
{
    struct config *c = srv->cfg;
    if (policy_open_listeners(srv, listen ? listen : c->policy_listen, err, errlen) < 0)
        return -1;
    srv->dns = dns_new(srv->base, c->dns_resolver, (unsigned)(c->greylist_timeout * 1000 / 4),
                       err, errlen);
    if (srv->dns == NULL)
        return -1;
    struct dns_iface di = dns_iface_of(srv->dns);
    srv->gl = greylist_new(c, srv->base, &di, err, errlen);
    return srv->gl ? 0 : -1;
}

static void policy_cleanup(struct pserver *srv)
{
    size_t pos = 0;
    const char *key;
    void *val;
    while (dict_next(&srv->conns, &pos, &key, &val)) {
        pconn_destroy(val);
    }
    dict_free(&srv->conns);
    greylist_free(srv->gl);
    dns_free(srv->dns);
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_free(srv->listeners[i]);
    free(srv->listeners);
    for (size_t i = 0; i < srv->nunix; i++) {
        unlink(srv->unix_paths[i]);
        free(srv->unix_paths[i]);
    }
    free(srv->unix_paths);
    config_free(srv->cfg);
    free(srv->config_path);
}

int policy_main(const char *config_path, const char *listen)
{
    char err[1024];
    struct pserver srv;
    memset(&srv, 0, sizeof(srv));
    srv.cfg = config_load(config_path, err, sizeof(err));
    if (srv.cfg == NULL) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    srv.config_path = config_path ? xstrdup(config_path) : NULL;
    if (policy_open_logs(srv.cfg) < 0) {
        fprintf(stderr, "sluice: cannot open log file %s: %s\n", srv.cfg->maillog_file,
                strerror(errno));
        config_free(srv.cfg);
        free(srv.config_path);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* no evthread_use_pthreads(): only the loop thread touches libevent
     * (the LMDB writer and libunbound's thread talk through queues and
     * fds), so its locks would be pure cost */
    srv.base = event_base_new();
    dict_init(&srv.conns, NULL);
    int rc = 1;
    log_batch_begin();   /* this thread's lines: one write per loop pass */
    if (policy_start(&srv, listen, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice: fatal: %s\n", err);
        if (srv.cfg->maillog_file[0])
            log_svc("greylist", "fatal: %s", err);
    } else {
        policy_server = &srv;
        struct event *sigs[3];
        int signums[3] = {SIGTERM, SIGINT, SIGHUP};
        for (int i = 0; i < 3; i++) {
            sigs[i] = evsignal_new(srv.base, signums[i], policy_signal_cb, &srv);
            event_add(sigs[i], NULL);
        }
        log_svc("greylist", "policy service started -- version %s, listening on %s, "
                "store %s", SLUICE_VERSION, listen ? listen : srv.cfg->policy_listen,
                srv.cfg->greylist_store);
        policy_run(&srv);
        for (int i = 0; i < 3; i++)
            event_free(sigs[i]);
        policy_server = NULL;
        rc = 0;
    }
    policy_cleanup(&srv);
    event_base_free(srv.base);
    log_batch_end();
    log_close();
    return rc;
}
