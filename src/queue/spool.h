/*
 * spool.h - the durable on-disk queue.
 *
 * A message is kept in memory while it arrives (or streamed to spool/tmp/,
 * created O_EXCL, once it is large), then committed by the sync thread.
 * Only after the commit does the callback run on the event loop, and only
 * then may smtpd say 250. Commits from concurrent sessions are batched
 * (group commit): by default a batch is made durable by appending its
 * messages to the commit journal and fdatasync'ing that (queue/journal.h),
 * and no queue file is written: while a message is "resident" its journal
 * record is its copy, and the journal writes spool/queue/QID only if the
 * message is still queued when the journal needs the space, or at
 * shutdown. So readers never open queue/QID themselves: they use
 * spool_content_open or spool_read_message. Otherwise
 * (spool_sync = auto | fdatasync, or messages too large for the journal)
 * the file goes through spool/tmp/ and is renamed into spool/queue/
 * without replacing anything, and a batch of several files is made durable
 * with one syncfs() of the spool filesystem while the system holds little
 * dirty data, else with write-back started for every file before each is
 * fdatasync'ed; then the queue directory is fsync'ed.
 *
 * File format: docs/queue-format.md. A file is valid only if it ends with
 * its "end" record, so a torn file can never be mistaken for a message.
 */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#define QID_LEN 16

struct spool;
struct event_base;

struct spool_rcpt {
    char *addr;
    unsigned notify;     /* NOTIFY_* bits from smtpd_parse.h, 0 = unspecified */
    char *orcpt;         /* "rfc822;xtext" or NULL */
};

struct spool_envelope {
    char qid[QID_LEN + 1];
    struct timeval arrival;
    char *sender;        /* "" for the null sender */
    char *envid;         /* DSN ENVID or NULL */
    int ret;             /* RET_* */
    int body;            /* BODY_* */
    bool smtputf8;
    char *client_addr;
    char *client_name;
    char *helo;
    char *proto;
    struct spool_rcpt *rcpts;
    size_t nrcpt, rcpt_cap;
    int kind;            /* SPOOL_KIND_* */
    uint64_t content_offset;
    uint64_t content_length;
};

/* What a queued message is: ordinary mail, a DSN we generated for a
 * sender, or a notice to the postmaster about a DSN that failed. */
enum { SPOOL_KIND_MAIL = 0, SPOOL_KIND_DSN = 1, SPOOL_KIND_NOTICE = 2 };

struct spool_writer {
    int fd;
    int error;           /* first errno seen; 0 = fine */
    char qid[QID_LEN + 1];
    char tmp_path[512];
    char final_path[512];
    uint64_t content_offset;
    uint64_t content_length;
    struct buf out;      /* write-behind buffer */
};

typedef void (*spool_commit_cb)(uint64_t token, const char *qid, int err);

/* Open (creating directories) and clean spool/tmp. base may be NULL for
 * tools that only read. NULL + err on failure. */
struct spool *spool_open(const char *dir, struct event_base *base,
                         char *err, size_t errlen);
void spool_close(struct spool *sp);
const char *spool_queue_dir(const struct spool *sp);
/* Group-commit window: the sync thread waits this long after the first
 * commit of a batch for others to join (0: no wait). */
void spool_set_gather(struct spool *sp, unsigned usec);
/* spool_sync: journal = one journal append + fdatasync per batch
 * (queue/journal.h; files too large for it as with auto), auto = syncfs
 * for batches of several files (see spool.c), fdatasync = one fdatasync
 * per file. */
enum spool_sync_mode { SPOOL_SYNC_JOURNAL, SPOOL_SYNC_AUTO, SPOOL_SYNC_FDATASYNC };
void spool_set_sync(struct spool *sp, enum spool_sync_mode mode);
/* Parse a spool_sync value; -1 if unknown. */
int spool_sync_mode_parse(const char *s);
/* A message leaves the queue (delivered, bounced, deleted): tell the
 * journal before its file is unlinked, so a replay never brings it back. */
void spool_forget(struct spool *sp, const char *qid);

/* What the sync thread has done (for tests and diagnostics). */
struct spool_stats {
    uint64_t batches;          /* commits of one or more files */
    uint64_t batches_syncfs;   /* ...made durable with one syncfs */
    uint64_t batches_journal;  /* ...whose in-memory messages went to the journal */
    uint64_t files;
    uint64_t syncfs_slow;      /* slow syncfs calls (each starts a back-off) */
};
void spool_get_stats(struct spool *sp, struct spool_stats *out);

/* Pure helpers of the batch sync decision (exposed for tests): Dirty: +
 * Writeback: of a /proc/meminfo text in kB, -1 if malformed; whether a
 * batch may go through syncfs (mode, size, back-off); and whether that
 * much dirty data allows it (checked second: it reads /proc/meminfo). */
long spool_meminfo_dirty_kb(const char *text);
bool spool_sync_by_fs(bool fs_sync, size_t nfiles, uint64_t now_ms, uint64_t backoff_until_ms);
bool spool_dirty_ok(long dirty_kb);

/* Number of messages in the queue directory at open time. */
size_t spool_initial_count(const struct spool *sp);

/* A new, unique, time-sortable queue id (16 upper-case hex digits). */
void spool_new_qid(char out[QID_LEN + 1]);

int spool_writer_open(struct spool *sp, const char *qid, struct spool_writer *w);
void spool_writer_envelope(struct spool_writer *w, const struct spool_envelope *env);
void spool_writer_write(struct spool_writer *w, const void *p, size_t n);
/* Flush, append the end record. Returns 0 or the first errno. */
int spool_writer_finish(struct spool_writer *w);
void spool_writer_abort(struct spool_writer *w);
/* Hand a finished writer to the sync thread; cb(token, qid, err) runs on
 * the event loop when the message is durable (err 0) or failed. */
void spool_commit(struct spool *sp, struct spool_writer *w, uint64_t token,
                  spool_commit_cb cb);
/* Commits not yet called back. */
size_t spool_pending(const struct spool *sp);

/* Envelope records (exposed for tests and the queue tools). */
void spool_envelope_format(const struct spool_envelope *env, struct buf *out);
/* Parse a whole queue file image; -1 with a reason in err if invalid,
 * SPOOL_PARSE_INCOMPLETE if it is the start of one without its end
 * record (empty, or cut short: a crash while it was written). */
#define SPOOL_PARSE_INCOMPLETE (-2)
int spool_envelope_parse(const char *data, size_t len, struct spool_envelope *env,
                         char *err, size_t errlen);
void spool_envelope_free(struct spool_envelope *env);
void spool_envelope_add_rcpt(struct spool_envelope *env, const char *addr,
                             unsigned notify, const char *orcpt);
/* Read and validate a queue file (results as spool_envelope_parse). */
int spool_read_file(const char *path, struct spool_envelope *env, char *err,
                    size_t errlen);

/* A queued message's bytes, wherever they are: fd (a descriptor of the
 * caller's until spool_content_close) holds the queue file image at base;
 * read content_offset bytes further on for the content. While open, a
 * resident message's journal segment is not reused. Thread-safe. 0, or -1
 * with errno (ENOENT: no such message). */
struct spool_content {
    int fd;
    uint64_t base;
    size_t len;      /* the image's length when resident, else 0 */
    int seg;         /* journal segment held, -1: a queue file */
};
int spool_content_open(struct spool *sp, const char *qid, struct spool_content *c);
void spool_content_close(struct spool *sp, struct spool_content *c);
/* Read and validate a queued message wherever it is (results as
 * spool_read_file). */
int spool_read_message(struct spool *sp, const char *qid, struct spool_envelope *env,
                       char *err, size_t errlen);
/* Messages resident in the journal now, and written out of it so far. */
void spool_resident_counts(struct spool *sp, size_t *resident, uint64_t *materialized);

#endif
