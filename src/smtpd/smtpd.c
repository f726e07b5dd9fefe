/*
 * smtpd.c - `sluice serve`: start-up, listeners, per-IP and global
 * connection limits, SIGHUP reload, SIGTERM graceful shutdown.
 *
 * Start-up fails with one clear line and exit 1 when the configuration is
 * wrong, a listen address is taken or the spool is not writable.
 */
#include "smtpd/smtpd.h"
#include "queue/qmgr.h"
#include "greylist/greylist.h"
#include "queue/spool.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/tls.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* One server per process; sessions are found by id through it. */
static struct smtpd *the_server;

struct smtpd_session *smtpd_find_session(struct smtpd *srv, uint64_t id)
{
    char key[STR_U64_SIZE];
    if (srv == NULL)
        srv = the_server;
    if (srv == NULL)
        return NULL;
    return dict_get(&srv->sessions, str_from_u64(id, key));
}

void smtpd_register_session(struct smtpd *srv, struct smtpd_session *s, uint64_t id)
{
    char key[STR_U64_SIZE];
    dict_set(&srv->sessions, str_from_u64(id, key), s);
    srv->nsessions++;
}

static void per_ip_adjust(struct smtpd *srv, const char *ip, int delta)
{
    uintptr_t n = (uintptr_t)dict_get(&srv->per_ip, ip);
    n = (uintptr_t)((intptr_t)n + delta);
    if (n == 0)
        dict_del(&srv->per_ip, ip);
    else
        dict_set(&srv->per_ip, ip, (void *)n);
}

void smtpd_unregister_session(struct smtpd *srv, uint64_t id, const char *ip)
{
    char key[STR_U64_SIZE];
    if (dict_del(&srv->sessions, str_from_u64(id, key))) {
        srv->nsessions--;
        per_ip_adjust(srv, ip, -1);
    }
    smtpd_check_shutdown_done(srv);
}

void smtpd_queue_flush(struct smtpd *srv, uint64_t id)
{
    if (srv->nflush == srv->flush_cap) {
        srv->flush_cap = srv->flush_cap ? srv->flush_cap * 2 : 64;
        srv->flush_ids = xrealloc(srv->flush_ids, srv->flush_cap * sizeof(*srv->flush_ids));
    }
    srv->flush_ids[srv->nflush++] = id;
}

/* End of a loop pass: first the pass's log lines (one write), then the
 * replies of every plaintext session that has some. So a log line is in
 * the file before the reply it goes with leaves, and a busy server makes
 * one log write per pass rather than one per line. */
static void smtpd_end_of_pass(struct smtpd *srv)
{
    log_flush();
    for (size_t i = 0; i < srv->nflush; i++) {   /* may grow meanwhile */
        struct smtpd_session *s = smtpd_find_session(srv, srv->flush_ids[i]);
        if (s)
            smtpd_session_flush(s);
    }
    srv->nflush = 0;
    log_flush();   /* disconnect lines of sessions closed just now */
}

/* The event loop, one pass at a time (see smtpd_end_of_pass). */
static void smtpd_run(struct smtpd *srv)
{
    log_batch_begin();
    for (;;) {
        int rc = event_base_loop(srv->base, EVLOOP_ONCE);
        smtpd_end_of_pass(srv);
        if (rc != 0 || event_base_got_exit(srv->base) || event_base_got_break(srv->base))
            break;
    }
    log_batch_end();
}

void smtpd_notify_queued(const char *qid, struct spool_envelope *env)
{
    if (the_server && the_server->qmgr)
        qmgr_message_accepted(the_server->qmgr, qid, env);
}

void smtpd_check_shutdown_done(struct smtpd *srv)
{
    if (srv->shutting_down && srv->nsessions == 0 && spool_pending(srv->spool) == 0)
        event_base_loopexit(srv->base, NULL);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct smtpd *srv = arg;
    char ip[64];
    struct netaddr a;
    netaddr_from_sockaddr(sa, &a);
    netaddr_str(&a, ip, sizeof(ip));
    per_ip_adjust(srv, ip, +1);
    smtpd_session_start(srv, fd, sa);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: keep running; the listener retries. */
    log_svc_warn("smtpd", "accept: %s", evutil_socket_error_to_string(err));
}

/* Bind every smtp_listen address; fatal (one line) on the first failure. */
static int open_listeners(struct smtpd *srv, char *err, size_t errlen)
{
    char *copy = xstrdup(srv->cfg->smtp_listen), *save = NULL;
    int rc = 0;
    for (char *w = strtok_r(copy, ", \t", &save); w && rc == 0;
         w = strtok_r(NULL, ", \t", &save)) {
        char host[256];
        uint16_t port;
        if (endpoint_parse(w, host, sizeof(host), &port) < 0) {
            snprintf(err, errlen, "bad smtp_listen address '%s'; fix: use host:port "
                     "or [ipv6]:port", w);
            rc = -1;
            break;
        }
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        socklen_t sl;
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            in4->sin_port = htons(port);
            sl = sizeof(*in4);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
            sl = sizeof(*in6);
        } else {
            snprintf(err, errlen, "smtp_listen host '%s' is not an IP address; fix: "
                     "use a numeric address", host);
            rc = -1;
            break;
        }
        struct evconnlistener *l = evconnlistener_new_bind(
            srv->base, accept_cb, srv,
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
            1024, (struct sockaddr *)&ss, (int)sl);
        if (l == NULL) {
            snprintf(err, errlen, "cannot listen on %s: %s; fix: stop what uses "
                     "the port or change smtp_listen", w, strerror(errno));
            rc = -1;
            break;
        }
        evconnlistener_set_error_cb(l, accept_error_cb);
        srv->listeners = xrealloc(srv->listeners, (srv->nlisteners + 1) * sizeof(l));
        srv->listeners[srv->nlisteners++] = l;
    }
    free(copy);
    return rc;
}

/* TLS from the configured files or a self-signed certificate under the
 * spool (development instances). */
static SSL_CTX *load_tls(const struct config *cfg, char *err, size_t errlen)
{
    if (strcmp(cfg->smtpd_tls_security_level, "none") == 0)
        return NULL;
    if (cfg->tls_cert_file[0])
        return tls_server_ctx(cfg->tls_cert_file, cfg->tls_key_file, err, errlen);
    char dir[512], cert[600], key[600];
    snprintf(dir, sizeof(dir), "%s/tls", cfg->spool_dir);
    if (tls_ensure_selfsigned(dir, cfg->myhostname, err, errlen) < 0)
        return NULL;
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    return tls_server_ctx(cert, key, err, errlen);
}

static int open_logs(const struct config *cfg, bool daemonized)
{
    int rc = 0;
    if (cfg->maillog_file[0])
        rc = log_open(LOG_DEST_FILE, cfg->maillog_file);
    else
        log_open(daemonized ? LOG_DEST_SYSLOG : LOG_DEST_STDERR, NULL);
    if (rc == 0 && cfg->log_json_file[0])
        rc = log_open_json(cfg->log_json_file);
    log_set_hostname(cfg->myhostname);
    return rc;
}

/* Greylisting (src/greylist/): the resolver and the engine, made when
 * `greylist = yes` (at start, or at the first reload that turns it on). */
static int greylist_start(struct smtpd *srv, const struct config *c, char *err,
                          size_t errlen)
{
    if (!c->greylist || srv->greylist)
        return 0;
    if (srv->dns == NULL)
        srv->dns = dns_new(srv->base, c->dns_resolver,
                           (unsigned)(c->greylist_timeout * 1000 / 4), err, errlen);
    if (srv->dns == NULL)
        return -1;
    struct dns_iface di = dns_iface_of(srv->dns);
    srv->greylist = greylist_new(c, srv->base, &di, err, errlen);
    return srv->greylist ? 0 : -1;
}

/* The spool's settings from the configuration (at start and on reload;
 * config.c has already checked spool_sync against its choices). */
static void spool_configure(struct spool *sp, const struct config *c)
{
    spool_set_gather(sp, (unsigned)c->spool_sync_delay_us);
    spool_set_sync(sp, (enum spool_sync_mode)spool_sync_mode_parse(c->spool_sync));
}

static void reload(struct smtpd *srv)
{
    char err[1024];
    struct config *c = config_load(srv->config_path, err, sizeof(err));
    if (c == NULL) {
        log_svc_warn("master", "reload failed, keeping the running configuration: %s", err);
        return;
    }
    SSL_CTX *ctx = load_tls(c, err, sizeof(err));
    if (ctx == NULL && strcmp(c->smtpd_tls_security_level, "none") != 0) {
        log_svc_warn("master", "reload failed, keeping the running configuration: %s", err);
        config_free(c);
        return;
    }
    if ((srv->greylist && greylist_reload(srv->greylist, c, err, sizeof(err)) < 0) ||
        greylist_start(srv, c, err, sizeof(err)) < 0) {
        log_svc_warn("master", "reload failed, keeping the running configuration: %s", err);
        if (ctx)
            SSL_CTX_free(ctx);
        config_free(c);
        return;
    }
    if (strcmp(c->smtp_listen, srv->cfg->smtp_listen) != 0 ||
        strcmp(c->spool_dir, srv->cfg->spool_dir) != 0)
        log_svc_warn("master", "smtp_listen and spool_dir changes take effect "
                     "after a restart");
    /* Sessions look the configuration up at each decision, and hold no
     * pointers into it across callbacks, so a swap is safe here. */
    config_free(srv->cfg);
    srv->cfg = c;
    if (srv->tls_ctx)
        SSL_CTX_free(srv->tls_ctx); /* live SSL objects keep their own ref */
    srv->tls_ctx = ctx;
    spool_configure(srv->spool, c);
    open_logs(c, false);
    log_svc("master", "reload -- configuration %s", c->path ? c->path : "(built-in defaults)");
}

/* Ids of all sessions (shutting one down may free it, so collect first). */
/* Apply fn to every open session. Ids are taken first: fn may close a
 * session, which changes the table being walked. */
static void for_each_session(struct smtpd *srv, void (*fn)(struct smtpd_session *))
{
    size_t pos = 0, n = 0;
    const char *key;
    void *val;
    uint64_t *ids = xcalloc(srv->nsessions + 1, sizeof(*ids));
    while (dict_next(&srv->sessions, &pos, &key, &val) && n < srv->nsessions) {
        uint64_t id;
        if (str_to_u64(key, &id) == 0)
            ids[n++] = id;
    }
    for (size_t i = 0; i < n; i++) {
        struct smtpd_session *s = smtpd_find_session(srv, ids[i]);
        if (s)
            fn(s);
    }
    free(ids);
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd *srv = arg;
    log_svc_warn("master", "shutdown: %zu session(s) still busy after %llus; exiting",
                 srv->nsessions, (unsigned long long)srv->cfg->smtpd_shutdown_timeout);
    /* their clients have no 250, so nothing acknowledged is dropped */
    for_each_session(srv, smtpd_session_abort);
    event_base_loopbreak(srv->base);
}

static void begin_shutdown(struct smtpd *srv)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = true;
    log_svc("master", "terminating on signal 15; %zu session(s) open", srv->nsessions);
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_disable(srv->listeners[i]);
    for_each_session(srv, smtpd_session_shutdown);
    struct timeval tv = {(time_t)srv->cfg->smtpd_shutdown_timeout, 0};
    srv->shutdown_timer = evtimer_new(srv->base, shutdown_timeout_cb, srv);
    evtimer_add(srv->shutdown_timer, &tv);
    smtpd_check_shutdown_done(srv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct smtpd *srv = arg;
    if (sig == SIGHUP)
        reload(srv);
    else
        begin_shutdown(srv);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int drop_privileges(const char *user, char *err, size_t errlen)
{
    if (user[0] == '\0' || geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, errlen, "mail_owner '%s' does not exist; fix: create the "
                 "user or change mail_owner", user);
        return -1;
    }
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot switch to mail_owner '%s': %s", user, strerror(errno));
        return -1;
    }
    return 0;
}

static void daemonize_now(void)
{
    pid_t pid = fork();
    if (pid < 0)
        log_fatal("fork: %s", strerror(errno));
    if (pid > 0)
        _exit(0);
    log_reset_pid();
    setsid();
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
}

int smtpd_main(const char *config_path, bool daemonize)
{
    char err[1024];
    struct smtpd srv;
    memset(&srv, 0, sizeof(srv));
    log_set_service("master");
    srv.cfg = config_load(config_path, err, sizeof(err));
    if (srv.cfg == NULL) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    srv.config_path = config_path ? xstrdup(config_path) : NULL;
    srv.trace = getenv("SLUICE_TRACE") != NULL;
    if (open_logs(srv.cfg, daemonize) < 0) {
        fprintf(stderr, "sluice: cannot open log file %s: %s\n",
                srv.cfg->maillog_file, strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    evthread_use_pthreads();
    struct event_config *ecfg = event_config_new();
    /* coalesce the many enable/disable changes a session makes per loop
     * pass into one epoll_ctl each */
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    srv.base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    dict_init(&srv.sessions, NULL);
    dict_init(&srv.per_ip, NULL);

    int rc = 1;
    if (open_listeners(&srv, err, sizeof(err)) < 0)
        goto fatal;
    if (daemonize)
        daemonize_now(); /* before the spool starts its thread */
    srv.spool = spool_open(srv.cfg->spool_dir, srv.base, err, sizeof(err));
    if (srv.spool == NULL)
        goto fatal;
    spool_configure(srv.spool, srv.cfg);
    srv.tls_ctx = load_tls(srv.cfg, err, sizeof(err));
    if (srv.tls_ctx == NULL && strcmp(srv.cfg->smtpd_tls_security_level, "none") != 0)
        goto fatal;
    if (greylist_start(&srv, srv.cfg, err, sizeof(err)) < 0)
        goto fatal;
    if (drop_privileges(srv.cfg->mail_owner, err, sizeof(err)) < 0)
        goto fatal;
    the_server = &srv;
    srv.qmgr = qmgr_new(srv.base, &srv.cfg, srv.spool, srv.cfg->spool_dir, err, sizeof(err));
    if (srv.qmgr == NULL)
        goto fatal;


    struct event *sig_term = evsignal_new(srv.base, SIGTERM, signal_cb, &srv);
    struct event *sig_int = evsignal_new(srv.base, SIGINT, signal_cb, &srv);
    struct event *sig_hup = evsignal_new(srv.base, SIGHUP, signal_cb, &srv);
    event_add(sig_term, NULL);
    event_add(sig_int, NULL);
    event_add(sig_hup, NULL);
    log_svc("master", "daemon started -- version %s, configuration %s, listening on %s, "
            "%zu message(s) in queue", SLUICE_VERSION,
            srv.cfg->path ? srv.cfg->path : "(built-in defaults)", srv.cfg->smtp_listen,
            spool_initial_count(srv.spool));

    smtpd_run(&srv);

    rc = srv.shutting_down ? 0 : 1;
    log_svc("master", "stopped");
    event_free(sig_term);
    event_free(sig_int);
    event_free(sig_hup);
    if (srv.shutdown_timer)
        event_free(srv.shutdown_timer);
    goto cleanup;
fatal:
    if (srv.cfg->maillog_file[0] || daemonize)
        log_svc("master", "fatal: %s", err);
    if (!daemonize)
        fprintf(stderr, "sluice: fatal: %s\n", err);
cleanup:
    qmgr_free(srv.qmgr);
    srv.qmgr = NULL;   /* commits spool_close still hands over must not reach it */
    greylist_free(srv.greylist);
    dns_free(srv.dns);
    spool_close(srv.spool);
    the_server = NULL;
    for (size_t i = 0; i < srv.nlisteners; i++)
        evconnlistener_free(srv.listeners[i]);
    free(srv.listeners);
    if (srv.tls_ctx)
        SSL_CTX_free(srv.tls_ctx);
    dict_free(&srv.sessions);
    dict_free(&srv.per_ip);
    free(srv.flush_ids);
    event_base_free(srv.base);
    config_free(srv.cfg);
    free(srv.config_path);
    log_close();
    return rc;
}
