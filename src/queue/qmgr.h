/*
 * qmgr.h - the queue manager: picks up queued messages (at start and as
 * smtpd accepts them), routes each recipient to a next hop, groups them
 * into per-destination jobs, runs delivery agents within each
 * destination's concurrency and pacing, and acts on every result through
 * the reply classifier: retry with backoff, throttle the destination,
 * hold, bounce (RFC 3464), delay notices, expiry.
 */
#ifndef SLUICE_QMGR_H
#define SLUICE_QMGR_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct spool;
struct config;
struct qmgr;
struct buf;

struct qmgr *qmgr_new(struct event_base *base, struct config **cfgp, struct spool *sp,
                      const char *spool_dir, char *err, size_t errlen);
void qmgr_free(struct qmgr *q);
/* A message was committed to the queue (read from its file). */
void qmgr_message_queued(struct qmgr *q, const char *qid);
/* The same, from smtpd, with the envelope it has in memory: the queue
 * manager takes its contents (env is left empty) and skips the re-read.
 * env may be NULL. */
struct spool_envelope;
void qmgr_message_accepted(struct qmgr *q, const char *qid, struct spool_envelope *env);
/* Deliveries and notices still running (for shutdown). */
size_t qmgr_busy(const struct qmgr *q);

/* Control operations (sluice queue). Results as JSON into out; return 0,
 * or -1 with a message in out. */
int qmgr_ctl(struct qmgr *q, const char *cmd, const char *arg, struct buf *out);

#endif
