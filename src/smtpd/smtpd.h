/*
 * smtpd.h - the inbound SMTP server: orchestration (listeners, limits,
 * signals, reload, shutdown) shared by all sessions. The per-connection
 * state machine is in smtpd_session.c; recipient/relay policy in
 * smtpd_check.c.
 */
#ifndef SLUICE_SMTPD_H
#define SLUICE_SMTPD_H

#include "lib/config.h"
#include "lib/dict.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct spool;
struct smtpd_session;
struct greylist;
struct dns;

struct smtpd {
    struct event_base *base;
    struct config *cfg;          /* current; replaced on SIGHUP */
    struct spool *spool;
    struct qmgr *qmgr;
    SSL_CTX *tls_ctx;            /* NULL when TLS is off */
    struct dict sessions;        /* id (decimal) -> struct smtpd_session * */
    struct dict per_ip;          /* client address -> connection count */
    size_t nsessions;
    uint64_t next_session_id;
    bool shutting_down;
    bool trace;                  /* SLUICE_TRACE=1: log state transitions */
    struct evconnlistener **listeners;
    size_t nlisteners;
    struct event *shutdown_timer;
    char *config_path;
    struct dns *dns;             /* async resolver (NULL until needed) */
    struct greylist *greylist;   /* NULL unless greylist = yes */
    /* sessions with replies to send at the end of this loop pass */
    uint64_t *flush_ids;
    size_t nflush, flush_cap;
};

/* Run `sluice serve`: returns the process exit code. */
int smtpd_main(const char *config_path, bool daemonize);

/* Session registry (ids, not pointers, cross async boundaries). */
struct smtpd_session *smtpd_find_session(struct smtpd *srv, uint64_t id);
void smtpd_register_session(struct smtpd *srv, struct smtpd_session *s, uint64_t id);
void smtpd_unregister_session(struct smtpd *srv, uint64_t id, const char *ip);
/* A message is durable in the queue: hand it to the queue manager. `env`
 * (may be NULL) is the envelope already in memory; the queue manager may
 * take its contents (it is left empty). */
struct spool_envelope;
void smtpd_notify_queued(const char *qid, struct spool_envelope *env);
/* Called by a session that went idle during shutdown, or closed. */
void smtpd_check_shutdown_done(struct smtpd *srv);

/* smtpd_session.c */
void smtpd_session_start(struct smtpd *srv, int fd, const struct sockaddr *sa);
/* Close a session now, whatever it is doing (end of the shutdown wait). */
void smtpd_session_abort(struct smtpd_session *s);
/* Ask an idle session to say 421 and close (shutdown). */
void smtpd_session_shutdown(struct smtpd_session *s);
/* Send what a plaintext session queued during this loop pass (called by
 * the loop between passes, after the pass's log lines are written). */
void smtpd_session_flush(struct smtpd_session *s);
/* smtpd.c: have smtpd_session_flush(id) called at the end of the pass. */
void smtpd_queue_flush(struct smtpd *srv, uint64_t id);

#endif
