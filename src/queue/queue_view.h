/*
 * queue_view.h - how `sluice queue` shows and changes queued messages,
 * shared by the running server (control socket, qmgr_ctl.c) and the
 * command-line tool when no server runs (files directly).
 */
#ifndef SLUICE_QUEUE_VIEW_H
#define SLUICE_QUEUE_VIEW_H

#include "lib/buf.h"
#include "queue/qstate.h"
#include "queue/spool.h"

#include <stdbool.h>

/* One message as JSON ({id, arrival, sender, size, held, recipients:[...]})
 * or as mailq-style text lines. */
void queue_view_json(const struct spool_envelope *env, const struct msg_state *st,
                     struct buf *out);
void queue_view_text(const struct spool_envelope *env, const struct msg_state *st,
                     struct buf *out);
void queue_view_text_header(struct buf *out);
void queue_view_text_footer(size_t n, uint64_t bytes, struct buf *out);
/* Does any recipient of the message belong to `domain`? */
bool queue_view_has_domain(const struct spool_envelope *env, const char *domain);

/* Offline operations on spool_dir (no server running). They print their
 * result (text or JSON) into out; return 0, 1 (not found) or 2 (error). */
int queue_offline(const char *spool_dir, const char *cmd, const char *arg, bool json,
                  struct buf *out);

#endif
