/*
 * qstate.h - per-message delivery state, kept beside the immutable queue
 * file in spool/state/QID: each recipient's status, attempts, next try,
 * last reply and its class, plus message flags (held, delay notice sent).
 *
 * Written atomically (temp file + rename) but not fsync'd: losing it in a
 * crash only means some recipients are tried again (at-least-once), never
 * that mail is lost, and it keeps the disk off the delivery fast path.
 */
#ifndef SLUICE_QSTATE_H
#define SLUICE_QSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum rcpt_status {
    RS_PENDING,     /* never tried or due */
    RS_DEFERRED,    /* failed temporarily; next_attempt set */
    RS_ACTIVE,      /* in a delivery right now (memory only) */
    RS_SENT,        /* delivered */
    RS_BOUNCED,     /* failed permanently; needs a DSN */
    RS_DONE,        /* finished, nothing more to do (DSN sent or suppressed) */
};

struct rcpt_state {
    enum rcpt_status status;
    unsigned attempts;
    time_t next_attempt;
    time_t last_attempt;
    bool throttled_only;   /* every failure so far was provider throttling */
    char cls[24];          /* reply class name */
    char dsn[16];          /* enhanced status code of the last reply */
    char relay[128];
    char reply[512];       /* last reply text */
};

struct msg_state {
    bool held;
    bool delay_notified;
    size_t nrcpt;
    struct rcpt_state *r;
};

void qstate_init(struct msg_state *st, size_t nrcpt);
void qstate_free(struct msg_state *st);
/* Load spool/state/QID if present (missing file: fresh state). 0 or -1. */
int qstate_load(const char *path, struct msg_state *st);
int qstate_save(const char *path, const struct msg_state *st);
const char *qstate_status_name(enum rcpt_status s);

#endif
