/*
 * journal.h - the spool's commit journal: one sequential write and one
 * fdatasync make a whole batch of accepted messages durable.
 *
 * Why: making N new queue files durable costs a syncfs (file data, inodes
 * and directory blocks, through the kernel's flusher) plus an fsync of
 * queue/, about 0.6 ms per batch on the reference machine, and the batches
 * of 20 concurrent sessions queue up behind it. Appending the same bytes to
 * a journal segment and fdatasync'ing that one file costs about 0.2 ms.
 * The queue files are still written into queue/ before the commit
 * completes (so what a 250 acknowledges is always complete there), but
 * they become durable later, in bulk, at a checkpoint.
 *
 * Layout: spool/journal/seg.0 .. seg.3 (a ring of segments, each closed
 * at JOURNAL_SEGMENT_MAX bytes), spool/journal/checkpoint (two slots with
 * the highest sequence number known to be in durable queue files) and
 * spool/journal/lock (held by the process that owns the journal).
 * Record format and recovery: docs/queue-format.md, "Commit journal".
 *
 * A closed segment is checkpointed by a background thread: syncfs of the
 * spool filesystem and fsync of queue/ make every file written there
 * before it durable; then the checkpoint slot is written, and the segment may be
 * reused. If no segment is free, a commit fails with EAGAIN and the spool
 * syncs that batch the classic way.
 *
 * Recovery (journal_open, journal_replay): every message record newer than
 * the checkpoint whose queue file is missing or differs from the record is
 * written back, unless a "gone" record says the message left the queue
 * (delivered, bounced or deleted) after it was committed.
 */
#ifndef SLUICE_JOURNAL_H
#define SLUICE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_SEGMENTS 4
#define JOURNAL_SEGMENT_MAX (16u << 20)
#define JOURNAL_RECORD_MAX (4u << 20)    /* larger messages are not journalled */
#define JOURNAL_HDR_LEN 40

enum journal_rec_type { JOURNAL_REC_MESSAGE = 1, JOURNAL_REC_GONE = 2 };

struct journal;

/* One message of a batch: its queue id and the exact queue file bytes. */
struct journal_entry {
    const char *qid;
    const void *data;
    size_t len;
};

/* What a replay found and did (for logs and tests). */
struct journal_replay_stats {
    uint64_t records;      /* valid records newer than the checkpoint */
    uint64_t restored;     /* queue files written back from the journal */
    uint64_t gone;         /* messages skipped: left the queue after commit */
    uint64_t checkpoint;   /* the checkpoint afterwards */
};

/* Open spool_dir/journal (creating it), take its lock, replay what the
 * previous run left and checkpoint. NULL with a reason in err when the
 * journal cannot be used; *fatal is set when acknowledged mail might be
 * lost by going on (a segment cannot be read or a file cannot be
 * restored): start-up must stop then. */
struct journal *journal_open(const char *spool_dir, struct journal_replay_stats *st,
                             bool *fatal, char *err, size_t errlen);
/* Final checkpoint, then release everything. */
void journal_close(struct journal *jr);

/* Append one record per entry (to the page cache) and wake the flusher;
 * *ticket identifies the batch for journal_commit_wait and
 * journal_files_done (0: nothing was written). 0, EAGAIN when no segment
 * is free (checkpoints behind), EINVAL when an entry is too large, or the
 * errno of the failed write (*ticket may still be set then). Called from
 * one thread (the spool's sync thread). */
int journal_commit_start(struct journal *jr, const struct journal_entry *e, size_t n,
                         uint64_t *ticket);
/* The queue files of every batch up to this ticket are in queue/ (or
 * were refused). Batches must be reported in ticket order, each after its
 * files are in queue/, whatever its commit's outcome: a checkpoint makes
 * durable only what is in queue/, so a closed segment is not
 * checkpointed (nor reused) until the files of its message records are
 * there. journal_close checkpoints only if every batch was reported. */
void journal_files_done(struct journal *jr, uint64_t ticket);
/* Wait until the batch is durable: 0, or the errno of the failed
 * fdatasync. */
int journal_commit_wait(struct journal *jr, uint64_t ticket);
/* Start, files done, wait (for tests and callers whose files are in
 * queue/ already). */
int journal_commit(struct journal *jr, const struct journal_entry *e, size_t n);
/* Without waiting: 1 when the batch is durable, 0 while its fdatasync is
 * pending, -errno when it failed. */
int journal_ticket_state(struct journal *jr, uint64_t ticket);
/* cb(arg) runs on the flusher thread after every fdatasync round (not
 * under the journal's lock): the moment to look at pending tickets. */
void journal_set_synced_cb(struct journal *jr, void (*cb)(void *arg), void *arg);

/* Note that a message left the queue; call before unlinking its file.
 * Written but not synced (a lost "gone" record means at worst a message
 * delivered twice after a power failure, never one lost). Thread-safe. */
void journal_forget(struct journal *jr, const char *qid);

/* For a process that finds no server running (offline queue tools):
 * replay and checkpoint if nobody holds the journal. 0 (also when there
 * is no journal or a server holds it) or -1 with a reason in err. */
int journal_replay(const char *spool_dir, struct journal_replay_stats *st,
                   char *err, size_t errlen);

/* ---- the record format (exposed for unit tests and the fuzzer) ---- */

/* Encode a record header; returns JOURNAL_HDR_LEN. */
size_t journal_encode_header(unsigned char hdr[JOURNAL_HDR_LEN], int type, uint64_t seq,
                             const char *qid, const void *payload, size_t len);
/* Bytes a record with this payload length occupies (header, payload,
 * padding to 8). */
size_t journal_record_size(size_t len);

typedef void (*journal_record_cb)(void *arg, int type, uint64_t seq, const char *qid,
                                  const unsigned char *payload, size_t len);
/* Walk the valid records at the start of a segment image, calling cb for
 * each; stops at the first record that is torn, damaged, of an unknown
 * type or not newer than the one before. Returns the bytes consumed. */
size_t journal_parse(const unsigned char *p, size_t len, journal_record_cb cb, void *arg);

/* Checkpoint slots: encode one (64 bytes) and read the newest valid one of
 * an image of the checkpoint file (0 if none). */
#define JOURNAL_CKPT_SLOT 64
void journal_encode_checkpoint(unsigned char slot[JOURNAL_CKPT_SLOT], uint64_t seq);
uint64_t journal_parse_checkpoint(const unsigned char *p, size_t len);

#endif
