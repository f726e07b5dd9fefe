/*
 * journal.h - the spool's commit journal: one sequential write and one
 * fdatasync make a whole batch of accepted messages durable, and the
 * journal record stays the message's only copy while it can.
 *
 * Why: making N new queue files durable costs a syncfs (file data, inodes
 * and directory blocks, through the kernel's flusher) plus an fsync of
 * queue/, about 0.6 ms per batch on the reference machine, and the batches
 * of 20 concurrent sessions queue up behind it. Appending the same bytes to
 * a journal segment and fdatasync'ing that one file costs about 0.2 ms.
 * Writing a queue file as well (even without syncing it) costs a file
 * creation and a second copy of every message on disk; most mail leaves
 * the queue within seconds, so a message is "resident": its journal
 * record is its only copy, and readers reach it through
 * journal_open_resident. Only a message still queued when the ring needs
 * its segment back gets a queue file ("materialized"), written in bulk by
 * the checkpointer and made durable with one syncfs.
 *
 * Layout: spool/journal/seg.0 .. seg.N-1 (a ring of JOURNAL_SEGMENTS
 * segments, each closed at JOURNAL_SEGMENT_MAX bytes and reused in place),
 * spool/journal/checkpoint (two slots with the highest sequence number
 * whose records are all settled: their messages left the queue or have
 * durable queue files) and spool/journal/lock (held by the process that
 * owns the journal). Record format and recovery: docs/queue-format.md,
 * "Commit journal".
 *
 * Segments are freed oldest first (a gone record in a newer segment may
 * be all that keeps an older record from being replayed): a closed segment
 * is freed, by the checkpointer, once none of its messages is resident and
 * no reader holds it. When fewer than JOURNAL_FREE_LOW segments are free,
 * the oldest closed segment's resident messages are materialized first.
 * If no segment is free, a commit fails with EAGAIN and the spool syncs
 * that batch the classic way. journal_close materializes every resident
 * message, so a stopped server leaves a complete queue/.
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

#define JOURNAL_SEGMENTS 8
/* below this many free segments the oldest closed one is materialized */
#define JOURNAL_FREE_LOW 2
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
 * *ticket identifies the batch for journal_commit_wait (0: nothing was
 * written). From then on each message is resident (see above). 0, EAGAIN
 * when no segment is free (checkpoints behind), EINVAL when an entry is
 * too large, or the errno of the failed write (*ticket may still be set
 * then; no message of the batch is resident). Called from one thread (the
 * spool's sync thread). */
int journal_commit_start(struct journal *jr, const struct journal_entry *e, size_t n,
                         uint64_t *ticket);
/* Wait until the batch is durable: 0, or the errno of the failed
 * fdatasync. */
int journal_commit_wait(struct journal *jr, uint64_t ticket);
/* Start and wait (for tests). */
int journal_commit(struct journal *jr, const struct journal_entry *e, size_t n);
/* Without waiting: 1 when the batch is durable, 0 while its fdatasync is
 * pending, -errno when it failed. */
int journal_ticket_state(struct journal *jr, uint64_t ticket);
/* cb(arg) runs on the flusher thread after every fdatasync round (not
 * under the journal's lock): the moment to look at pending tickets. */
void journal_set_synced_cb(struct journal *jr, void (*cb)(void *arg), void *arg);

/* A resident message's bytes: the queue file image at off, len bytes, in
 * the segment fd refers to. */
struct journal_resident {
    int fd;          /* a descriptor of its own; -1: not open */
    int seg;         /* the pinned segment; -1: none */
    uint64_t off;
    size_t len;
};
/* 1 when qid is resident: its segment is pinned (not reused before
 * journal_close_resident) and r describes the bytes; 0 when it is not
 * (its queue file holds it, or it is unknown); -1 with errno. Thread-safe;
 * jr may be NULL (0). */
int journal_open_resident(struct journal *jr, const char *qid, struct journal_resident *r);
void journal_close_resident(struct journal *jr, struct journal_resident *r);
/* Resident messages now, and messages materialized so far (diagnostics). */
void journal_counts(struct journal *jr, size_t *resident, uint64_t *materialized);

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
