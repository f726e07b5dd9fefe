/*
 * spool.c - the durable on-disk queue: writers, the sync thread and group
 * commit (see spool.h for the protocol and docs/queue-format.md).
 *
 * The event loop never waits on the disk for a commit: the sync thread
 * (with the journal's flusher) does the file and sync work and wakes the
 * loop through a pipe. Writes of message data are buffered (64 KiB) and go to the page
 * cache, which does not block in practice.
 *
 * By default (spool_sync = journal) a batch's in-memory messages are made
 * durable by one append to the commit journal and one fdatasync of it
 * (queue/journal.h): a third of the time of the file syncs below. No
 * queue file is written for them: the journal record is the message's
 * copy while it is resident there (spool_content_open and
 * spool_read_message find it either way), and the journal writes queue
 * files, in bulk, only for messages still queued when it needs the space.
 *
 * Otherwise, and for messages too large for the journal, a batch of
 * several files is made durable with one syncfs() of the spool
 * filesystem instead of one fdatasync per file (spool_sync = auto): every
 * fdatasync ends with its own disk-cache flush, journal or not, while
 * syncfs writes the whole batch with merged I/O and flushes once. syncfs
 * also writes what other programs have dirtied on that filesystem, so it
 * is used only while the system holds little dirty data (/proc/meminfo,
 * read at most every 100 ms), and a syncfs slower than SPOOL_SYNCFS_SLOW_MS
 * switches the spool to per-file fdatasync for a minute (logged).
 */
#include "queue/spool.h"
#include "queue/journal.h"
#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define SPOOL_WRITE_CHUNK (64 * 1024)
/* Messages up to this size stay in memory until commit, and the sync
 * thread creates and writes their file: the event loop never touches the
 * disk for them. Larger ones are streamed to tmp/ as they arrive. */
#define SPOOL_MEM_MAX (256 * 1024)
#define SPOOL_WRITER_INITIAL (16 * 1024)
/* syncfs is used while the system's dirty + writeback data is below this */
#define SPOOL_SYNCFS_DIRTY_MAX_KB (64 * 1024)
#define SPOOL_SYNCFS_SLOW_MS 250      /* a slower syncfs means other writers */
#define SPOOL_SYNCFS_BACKOFF_S 60     /* ...then per-file fdatasync this long */
#define SPOOL_MEMINFO_EVERY_MS 100

struct spool_job {
    struct spool_job *next;
    int fd;                  /* -1: the data is in `mem`, no file yet */
    char *mem;
    size_t memlen;
    int err;
    bool in_queue;           /* renamed into queue/: final_path is its file */
    bool journaled;          /* durable through its journal record (no file) */
    uint64_t token;
    spool_commit_cb cb;
    char qid[QID_LEN + 1];
    char tmp_path[512];
    char final_path[512];
};

/* A batch whose queue files are in queue/ and whose journal records wait
 * for the flusher's fdatasync (ticket). */
struct spool_inflight {
    struct spool_inflight *next;
    struct spool_job *batch;
    uint64_t ticket;
};

struct spool {
    char *dir;
    char tmp_dir[512];
    char queue_dir[512];
    int queue_dir_fd;
    size_t initial_count;
    /* sync thread */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct spool_job *todo, *todo_tail;
    struct spool_job *done, *done_tail;
    struct spool_inflight *inflight, *inflight_tail;  /* journal not synced yet */
    bool stopping;
    size_t pending;
    unsigned gather_us;
    enum spool_sync_mode mode; /* spool_sync (the sync thread reads it) */
    struct journal *journal;   /* NULL: not opened or unusable */
    /* sync thread only */
    int meminfo_fd;
    uint64_t meminfo_at_ms;    /* when dirty_kb was read; 0 = never */
    long dirty_kb;             /* -1: unknown */
    uint64_t backoff_until_ms;
    struct spool_stats stats;
    int wake_pipe[2];
    /* a wake byte is in the pipe and the loop has not taken the done list
     * since: later batches need no byte of their own */
    atomic_bool wake_sent;
    struct event *wake_ev;
};


/* Remove leftovers of interrupted receives and check writability. */
static int spool_clean_tmp(struct spool *sp, char *err, size_t errlen)
{
    DIR *d = opendir(sp->tmp_dir);
    if (d == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", sp->tmp_dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    size_t removed = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    if (removed)
        log_svc("queue", "removed %zu incomplete message file(s) from %s",
                removed, sp->tmp_dir);
    char probe[600];
    snprintf(probe, sizeof(probe), "%s/.probe.%ld", sp->tmp_dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "spool directory %s is not writable: %s; fix: "
                 "check its owner and permissions or set spool_dir",
                 sp->tmp_dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

static size_t count_queue(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void spool_wake_cb(evutil_socket_t fd, short what, void *arg);
static void *spool_sync_main(void *arg);
static void spool_journal_synced(void *arg);

/* Replay what the last run left in the journal, then keep it open for
 * commits. A journal that cannot be created only costs speed (batches are
 * synced the classic way); one that cannot be replayed stops start-up,
 * because acknowledged mail may be in it. */
static int spool_open_journal(struct spool *sp, char *err, size_t errlen)
{
    struct journal_replay_stats st;
    bool fatal;
    char why[600];
    sp->journal = journal_open(sp->dir, &st, &fatal, why, sizeof(why));
    if (sp->journal == NULL && fatal) {
        snprintf(err, errlen, "%s; fix: check the spool's disk and permissions (the "
                 "journal may hold accepted mail: do not delete it)", why);
        return -1;
    }
    if (sp->journal == NULL)
        log_svc_warn("queue", "commit journal unavailable (%s): queue files are synced "
                     "one batch at a time", why);
    if (sp->journal)
        journal_set_synced_cb(sp->journal, spool_journal_synced, sp);
    if (sp->journal && st.records)
        log_svc("queue", "journal replayed: %llu record(s), %llu queue file(s) restored, "
                "%llu already gone", (unsigned long long)st.records,
                (unsigned long long)st.restored, (unsigned long long)st.gone);
    return 0;
}

struct spool *spool_open(const char *dir, struct event_base *base,
                         char *err, size_t errlen)
{
    struct spool *sp = xcalloc(1, sizeof(*sp));
    sp->dir = xstrdup(dir);
    sp->queue_dir_fd = -1;
    sp->meminfo_fd = -1;
    sp->dirty_kb = -1;
    sp->mode = SPOOL_SYNC_JOURNAL;
    sp->wake_pipe[0] = sp->wake_pipe[1] = -1;
    snprintf(sp->tmp_dir, sizeof(sp->tmp_dir), "%s/tmp", dir);
    snprintf(sp->queue_dir, sizeof(sp->queue_dir), "%s/queue", dir);
    if (fs_mkdir_p(sp->tmp_dir, 0700) < 0 || fs_mkdir_p(sp->queue_dir, 0700) < 0) {
        snprintf(err, errlen, "cannot create spool directory under %s: %s; fix: "
                 "check permissions or set spool_dir", dir, strerror(errno));
        goto fail;
    }
    if (spool_clean_tmp(sp, err, errlen) < 0)
        goto fail;
    sp->queue_dir_fd = open(sp->queue_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->queue_dir_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", sp->queue_dir, strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&sp->lock, NULL);
    pthread_cond_init(&sp->cond, NULL);
    if (base && spool_open_journal(sp, err, errlen) < 0)
        goto fail;
    sp->initial_count = count_queue(sp->queue_dir);
    if (base) {
        if (pipe2(sp->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
            snprintf(err, errlen, "pipe: %s", strerror(errno));
            goto fail;
        }
        sp->wake_ev = event_new(base, sp->wake_pipe[0], EV_READ | EV_PERSIST,
                                spool_wake_cb, sp);
        event_add(sp->wake_ev, NULL);
        if (pthread_create(&sp->thread, NULL, spool_sync_main, sp) != 0) {
            snprintf(err, errlen, "cannot start the spool sync thread");
            goto fail;
        }
        sp->thread_started = true;
    }
    return sp;
fail:
    spool_close(sp);
    return NULL;
}

void spool_close(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->thread_started) {
        pthread_mutex_lock(&sp->lock);
        sp->stopping = true;
        pthread_cond_signal(&sp->cond);
        pthread_mutex_unlock(&sp->lock);
        pthread_join(sp->thread, NULL);
    }
    /* its flusher finishes the batches in flight (and hands them over) */
    journal_close(sp->journal);
    sp->journal = NULL;
    if (sp->thread_started)
        spool_wake_cb(-1, 0, sp);   /* deliver outstanding callbacks: no writer leaks */
    if (sp->wake_ev)
        event_free(sp->wake_ev);
    for (int i = 0; i < 2; i++)
        if (sp->wake_pipe[i] >= 0)
            close(sp->wake_pipe[i]);
    if (sp->queue_dir_fd >= 0)
        close(sp->queue_dir_fd);
    if (sp->meminfo_fd >= 0)
        close(sp->meminfo_fd);
    free(sp->dir);
    free(sp);
}

void spool_set_gather(struct spool *sp, unsigned usec)
{
    pthread_mutex_lock(&sp->lock);
    sp->gather_us = usec > 100000 ? 100000 : usec;
    pthread_mutex_unlock(&sp->lock);
}

void spool_set_sync(struct spool *sp, enum spool_sync_mode mode)
{
    pthread_mutex_lock(&sp->lock);
    sp->mode = mode;
    pthread_mutex_unlock(&sp->lock);
}

int spool_sync_mode_parse(const char *s)
{
    static const char *const names[] = {"journal", "auto", "fdatasync"};  /* enum order */
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void spool_forget(struct spool *sp, const char *qid)
{
    if (sp)
        journal_forget(sp->journal, qid);
}

void spool_get_stats(struct spool *sp, struct spool_stats *out)
{
    pthread_mutex_lock(&sp->lock);
    *out = sp->stats;
    pthread_mutex_unlock(&sp->lock);
}

const char *spool_queue_dir(const struct spool *sp)
{
    return sp->queue_dir;
}

size_t spool_initial_count(const struct spool *sp)
{
    return sp->initial_count;
}

size_t spool_pending(const struct spool *sp)
{
    return sp->pending;
}

void spool_new_qid(char out[QID_LEN + 1])
{
    static pthread_mutex_t qid_lock = PTHREAD_MUTEX_INITIALIZER;
    static unsigned long last_sec, last_usec, counter;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    pthread_mutex_lock(&qid_lock);
    unsigned long sec = (unsigned long)tv.tv_sec, usec = (unsigned long)tv.tv_usec;
    /* Never go backwards, so ids stay sortable and unique in-process. */
    if (sec < last_sec || (sec == last_sec && usec <= last_usec)) {
        sec = last_sec;
        usec = last_usec;
        if (++counter > 0xfff) {
            counter = 0;
            if (++usec > 999999) {
                usec = 0;
                sec++;
            }
        }
    } else {
        counter = 0;
    }
    last_sec = sec;
    last_usec = usec;
    snprintf(out, QID_LEN + 1, "%08lX%05lX%03lX", sec & 0xffffffffUL, usec, counter);
    pthread_mutex_unlock(&qid_lock);
}

int spool_writer_open(struct spool *sp, const char *qid, struct spool_writer *w)
{
    memset(w, 0, sizeof(*w));
    str_copy(w->qid, qid, sizeof(w->qid));
    snprintf(w->tmp_path, sizeof(w->tmp_path), "%s/%s", sp->tmp_dir, qid);
    snprintf(w->final_path, sizeof(w->final_path), "%s/%s", sp->queue_dir, qid);
    buf_init(&w->out, SPOOL_MEM_MAX + SPOOL_WRITE_CHUNK * 2);
    /* most messages are small: one allocation instead of ~8 doublings */
    buf_reserve(&w->out, SPOOL_WRITER_INITIAL);
    w->fd = -1; /* created when the message outgrows memory, or at commit */
    return 0;
}

/* Create the tmp/ file (O_EXCL). 0 or -1 with errno. */
static int tmp_create(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

static void writer_flush(struct spool_writer *w)
{
    if (w->fd < 0 && w->error == 0) {
        w->fd = tmp_create(w->tmp_path);
        if (w->fd < 0)
            w->error = errno;
    }
    if (w->error == 0 && fs_write_all(w->fd, w->out.data, w->out.len) < 0)
        w->error = errno;
    buf_reset(&w->out);
}

void spool_writer_envelope(struct spool_writer *w, const struct spool_envelope *env)
{
    struct buf tmp;
    buf_init(&tmp, 0);
    spool_envelope_format(env, &tmp);
    w->content_offset = tmp.len;
    spool_writer_write(w, tmp.data, tmp.len);
    w->content_length = 0;
    buf_free(&tmp);
}

void spool_writer_write(struct spool_writer *w, const void *p, size_t n)
{
    if (w->error)
        return;
    w->content_length += n;
    /* in memory while small; once streaming, in SPOOL_WRITE_CHUNK writes */
    size_t limit = w->fd < 0 ? SPOOL_MEM_MAX : SPOOL_WRITE_CHUNK;
    while (n > 0) {
        size_t room = w->out.len < limit ? limit - w->out.len : 0;
        size_t k = n < room ? n : room;
        buf_append(&w->out, p, k);
        p = (const char *)p + k;
        n -= k;
        if (w->out.len >= limit) {
            writer_flush(w);
            limit = SPOOL_WRITE_CHUNK;
        }
        if (w->error)
            return;
    }
}

int spool_writer_finish(struct spool_writer *w)
{
    char trailer[80];
    int n = snprintf(trailer, sizeof(trailer), "\nend %llu %llu\n",
                     (unsigned long long)w->content_offset,
                     (unsigned long long)w->content_length);
    buf_append(&w->out, trailer, (size_t)n);
    if (w->fd >= 0)
        writer_flush(w);
    return w->error;
}

void spool_writer_abort(struct spool_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp_path);
    }
    w->fd = -1;
    buf_free(&w->out);
}

void spool_commit(struct spool *sp, struct spool_writer *w, uint64_t token,
                  spool_commit_cb cb)
{
    struct spool_job *j = xcalloc(1, sizeof(*j));
    j->fd = w->fd;
    j->err = w->error;
    if (w->fd < 0 && w->error == 0) {
        j->memlen = w->out.len;
        j->mem = buf_steal(&w->out);
    }
    j->token = token;
    j->cb = cb;
    str_copy(j->qid, w->qid, sizeof(j->qid));
    str_copy(j->tmp_path, w->tmp_path, sizeof(j->tmp_path));
    str_copy(j->final_path, w->final_path, sizeof(j->final_path));
    w->fd = -1;
    buf_free(&w->out);
    sp->pending++;
    pthread_mutex_lock(&sp->lock);
    if (sp->todo_tail)
        sp->todo_tail->next = j;
    else
        sp->todo = j;
    sp->todo_tail = j;
    pthread_mutex_unlock(&sp->lock);
    /* after the unlock: a woken sync thread would otherwise block at once
     * on the lock this thread still holds */
    pthread_cond_signal(&sp->cond);
}

/* Write an in-memory message the journal did not take to its tmp/ file
 * (on the sync thread), for the rename into queue/. */
static void job_write_mem(struct spool_job *j)
{
    j->fd = tmp_create(j->tmp_path);
    if (j->fd < 0) {
        j->err = errno;
        return;
    }
    if (fs_write_all(j->fd, j->mem, j->memlen) < 0)
        j->err = errno;
}

/* ---------------------------------------------------------------------- */
/* how a batch is made durable                                             */

/* One "Key:   123 kB" line of /proc/meminfo; -1 if absent or malformed. */
static long meminfo_field_kb(const char *text, const char *key)
{
    size_t klen = strlen(key);
    const char *p = text;
    while (p && strncmp(p, key, klen) != 0) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (p == NULL)
        return -1;
    p += klen;
    while (*p == ' ' || *p == '\t')
        p++;
    long v = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (LONG_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    while (*p == ' ')
        p++;
    return strncmp(p, "kB", 2) == 0 ? v : -1;
}

long spool_meminfo_dirty_kb(const char *text)
{
    long dirty = meminfo_field_kb(text, "Dirty:");
    long wb = meminfo_field_kb(text, "Writeback:");
    if (dirty < 0 || wb < 0 || dirty > LONG_MAX - wb)
        return -1;
    return dirty + wb;
}

bool spool_sync_by_fs(bool fs_sync, size_t nfiles, uint64_t now_ms, uint64_t backoff_until_ms)
{
    return fs_sync && nfiles >= 2 && now_ms >= backoff_until_ms;
}

bool spool_dirty_ok(long dirty_kb)
{
    return dirty_kb >= 0 && dirty_kb <= SPOOL_SYNCFS_DIRTY_MAX_KB;
}

/* The system's dirty data (kB), read again at most every
 * SPOOL_MEMINFO_EVERY_MS; -1 when unknown (then files sync one by one). */
static long spool_dirty_kb(struct spool *sp, uint64_t now)
{
    if (sp->meminfo_at_ms && now - sp->meminfo_at_ms < SPOOL_MEMINFO_EVERY_MS)
        return sp->dirty_kb;
    sp->meminfo_at_ms = now ? now : 1;
    sp->dirty_kb = -1;
    if (sp->meminfo_fd < 0)
        sp->meminfo_fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    char text[16384];
    ssize_t n = sp->meminfo_fd >= 0 ? pread(sp->meminfo_fd, text, sizeof(text) - 1, 0) : -1;
    if (n > 0) {
        text[n] = '\0';
        sp->dirty_kb = spool_meminfo_dirty_kb(text);
    }
    return sp->dirty_kb;
}

/* syncfs of the spool filesystem; a slow one starts the back-off. */
static int spool_syncfs(struct spool *sp, struct spool_stats *delta)
{
    uint64_t t0 = clock_mono_us() / 1000;
    int rc = syncfs(sp->queue_dir_fd) < 0 ? errno : 0;
    uint64_t took = clock_mono_us() / 1000 - t0;
    if (took > SPOOL_SYNCFS_SLOW_MS) {
        sp->backoff_until_ms = t0 + took + SPOOL_SYNCFS_BACKOFF_S * 1000u;
        delta->syncfs_slow++;
        log_svc_warn("spool", "syncfs of %s took %llu ms (other writers on its "
                     "filesystem?); syncing queue files one by one for %d s",
                     sp->dir, (unsigned long long)took, SPOOL_SYNCFS_BACKOFF_S);
    }
    return rc;
}

/* Append every in-memory message of the batch to the journal (its
 * fdatasync starts on the flusher thread at once). Marks the jobs; 0 or
 * the error (then none is marked and the classic way syncs them). */
static int spool_journal_start(struct spool *sp, struct spool_job *batch, uint64_t *ticket)
{
    size_t n = 0, k = 0;
    for (struct spool_job *j = batch; j; j = j->next)
        n += j->err == 0 && j->mem != NULL;
    *ticket = 0;
    if (n == 0)
        return 0;
    struct journal_entry *e = xmalloc(n * sizeof(*e));
    for (struct spool_job *j = batch; j; j = j->next)
        if (j->err == 0 && j->mem != NULL)
            e[k++] = (struct journal_entry){j->qid, j->mem, j->memlen};
    int rc = journal_commit_start(sp->journal, e, n, ticket);
    free(e);
    for (struct spool_job *j = batch; j && rc == 0; j = j->next)
        j->journaled = j->err == 0 && j->mem != NULL;
    return rc;
}

/* The classic way for the files the journal did not take: one syncfs for
 * several files (see the header comment) or, for a single file or while
 * syncfs is off, write-back started for every file (sync_file_range) and
 * an fdatasync of each; then the queue/ directory's fsync (on ext4 without
 * a journal syncfs flushes the disk cache before it waits for the
 * directory blocks it wrote, and the directory's own fsync waits for them
 * and flushes again). */
static void spool_sync_files(struct spool *sp, struct spool_job *batch, bool fs_sync,
                             struct spool_stats *delta)
{
    size_t nfiles = 0;
    for (struct spool_job *j = batch; j; j = j->next)
        nfiles += j->err == 0 && !j->journaled;
    if (nfiles == 0)
        return;
    uint64_t now = clock_mono_us() / 1000;
    bool by_fs = spool_sync_by_fs(fs_sync, nfiles, now, sp->backoff_until_ms) &&
                 spool_dirty_ok(spool_dirty_kb(sp, now));
    /* With one file, its fdatasync starts the write-back itself. */
    if (!by_fs && nfiles >= 2)
        for (struct spool_job *j = batch; j; j = j->next)
            if (j->err == 0 && !j->journaled)
                sync_file_range(j->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    int fs_err = by_fs ? spool_syncfs(sp, delta) : 0;
    for (struct spool_job *j = batch; j; j = j->next) {
        if (j->err || j->journaled)
            continue;
        if (by_fs)
            j->err = fs_err;
        else if (fdatasync(j->fd) < 0)
            j->err = errno;
    }
    if (fsync(sp->queue_dir_fd) < 0) {
        int e = errno;
        for (struct spool_job *j = batch; j; j = j->next)
            if (j->err == 0 && !j->journaled)
                j->err = e;
    }
    delta->batches_syncfs += by_fs;
}

/* Make one batch durable; per-job results in j->err.
 *
 * The in-memory messages are appended to the journal first (spool_sync =
 * journal) and become resident there: no file of theirs is written. Its
 * fdatasync runs on the flusher thread while this thread writes and syncs
 * the files of the others (streamed to tmp/, too large for the journal,
 * or refused by it: no free segment) the classic way; then the batch waits
 * for that fdatasync without this thread (spool_batch_written: the
 * flusher hands it to the loop), and this thread takes the next batch.
 * Returns the journal ticket to wait for (0: none).
 *
 * A crash before the journal's fdatasync loses only messages no 250 was
 * sent for; after it, the next start writes their queue files from the
 * journal (journal_open's replay).
 */
static uint64_t spool_sync_batch(struct spool *sp, struct spool_job *batch,
                                 enum spool_sync_mode mode, struct spool_stats *delta)
{
    size_t nfiles = 0;
    uint64_t ticket = 0;
    bool tried_journal = mode == SPOOL_SYNC_JOURNAL && sp->journal != NULL;
    bool journaled = tried_journal && spool_journal_start(sp, batch, &ticket) == 0;
    for (struct spool_job *j = batch; j; j = j->next) {
        if (j->journaled)
            continue;
        if (j->err == 0 && j->fd < 0)
            job_write_mem(j);
        if (j->err == 0 &&
            renameat2(AT_FDCWD, j->tmp_path, AT_FDCWD, j->final_path, RENAME_NOREPLACE) < 0)
            j->err = errno;
        j->in_queue = j->err == 0;
        nfiles += j->err == 0;
    }
    delta->batches_journal += journaled;
    spool_sync_files(sp, batch, mode != SPOOL_SYNC_FDATASYNC, delta);
    delta->batches++;
    delta->files += nfiles;
    for (struct spool_job *j = batch; j; j = j->next) {
        free(j->mem);
        j->mem = NULL;
        if (j->fd >= 0)
            close(j->fd);
        j->fd = -1;
        if (j->err && tried_journal)
            journal_forget(sp->journal, j->qid);   /* never replay a refused one */
        if (j->err)
            unlink(j->in_queue ? j->final_path : j->tmp_path);
    }
    return journaled ? ticket : 0;
}

/* Hand a finished batch to the loop (sp->lock held); the caller then
 * calls spool_wake_loop, after unlocking. */
static void spool_done_locked(struct spool *sp, struct spool_job *batch)
{
    struct spool_job *last = batch;
    while (last->next)
        last = last->next;
    if (sp->done_tail)
        sp->done_tail->next = batch;
    else
        sp->done = batch;
    sp->done_tail = last;
}

/* Wake the loop for the done list (without sp->lock: the loop takes it at
 * once). One byte until the loop has taken the list: it takes every batch
 * added before it looks, and clears wake_sent before it does. */
static void spool_wake_loop(struct spool *sp)
{
    if (atomic_exchange(&sp->wake_sent, true))
        return;
    char c = 1;
    if (write(sp->wake_pipe[1], &c, 1) < 0) {
        /* pipe full: the loop is already due to wake */
    }
}

/* The journal's verdict on a batch (sp->lock held): if its fdatasync
 * failed, every journaled message of it is refused (4xx), its record
 * marked gone and its queue file removed, should the journal have written
 * one meanwhile (it may, for the oldest segment, before the verdict; a
 * file it writes after the forget it removes itself). */
static void spool_journal_verdict(struct spool *sp, struct spool_job *batch, int state)
{
    for (struct spool_job *j = batch; j && state < 0; j = j->next) {
        if (!j->journaled || j->err)
            continue;
        j->err = -state;
        journal_forget(sp->journal, j->qid);
        unlink(j->final_path);
    }
}

/* After each fdatasync round of the journal's flusher (on its thread):
 * batches whose records are now durable, or failed, go to the loop. */
static void spool_journal_synced(void *arg)
{
    struct spool *sp = arg;
    bool any = false;
    pthread_mutex_lock(&sp->lock);
    while (sp->inflight) {
        struct spool_inflight *f = sp->inflight;
        int state = journal_ticket_state(sp->journal, f->ticket);
        if (state == 0)
            break;
        sp->inflight = f->next;
        if (sp->inflight == NULL)
            sp->inflight_tail = NULL;
        spool_journal_verdict(sp, f->batch, state);
        spool_done_locked(sp, f->batch);
        free(f);
        any = true;
    }
    pthread_mutex_unlock(&sp->lock);
    if (any)
        spool_wake_loop(sp);
}

/* A batch whose files are in queue/: done now (true: wake the loop), or
 * in flight until the journal's fdatasync covers its ticket (sp->lock
 * held). The state is read under sp->lock, which spool_journal_synced
 * takes after the flusher recorded its round: no round's news can fall
 * between the two. */
static bool spool_batch_written(struct spool *sp, struct spool_job *batch, uint64_t ticket)
{
    int state = ticket ? journal_ticket_state(sp->journal, ticket) : 1;
    if (state != 0) {
        spool_journal_verdict(sp, batch, state);
        spool_done_locked(sp, batch);
        return true;
    }
    struct spool_inflight *f = xcalloc(1, sizeof(*f));
    f->batch = batch;
    f->ticket = ticket;
    if (sp->inflight_tail)
        sp->inflight_tail->next = f;
    else
        sp->inflight = f;
    sp->inflight_tail = f;
    return false;
}

static void *spool_sync_main(void *arg)
{
    struct spool *sp = arg;
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        bool idle = sp->todo == NULL;
        while (sp->todo == NULL && !sp->stopping)
            pthread_cond_wait(&sp->cond, &sp->lock);
        if (sp->todo == NULL && sp->stopping)
            break;
        unsigned gather = sp->gather_us;   /* read under the lock: reload sets it */
        if (gather && idle) {
            /* group-commit window: let concurrent sessions join the batch.
             * Only after idling: commits that queued up while the last
             * batch was on disk already make a batch, and waiting more
             * would only add latency. */
            pthread_mutex_unlock(&sp->lock);
            usleep(gather);
            pthread_mutex_lock(&sp->lock);
        }
        struct spool_job *batch = sp->todo;
        sp->todo = sp->todo_tail = NULL;
        enum spool_sync_mode mode = sp->mode;
        pthread_mutex_unlock(&sp->lock);

        struct spool_stats delta = {0};
        uint64_t ticket = spool_sync_batch(sp, batch, mode, &delta);

        pthread_mutex_lock(&sp->lock);
        sp->stats.batches += delta.batches;
        sp->stats.batches_syncfs += delta.batches_syncfs;
        sp->stats.batches_journal += delta.batches_journal;
        sp->stats.files += delta.files;
        sp->stats.syncfs_slow += delta.syncfs_slow;
        /* no waiting for the journal: the next batch's records go out
         * while this one's fdatasync runs (the flusher hands it over) */
        if (spool_batch_written(sp, batch, ticket)) {
            pthread_mutex_unlock(&sp->lock);
            spool_wake_loop(sp);
            pthread_mutex_lock(&sp->lock);
        }
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

/* On the event loop: run the callbacks of finished commits. */
static void spool_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct spool *sp = arg;
    char drain[256];
    (void)what;
    /* one read empties the pipe unless it held a full drain's worth: the
     * sync thread writes one byte per batch */
    if (fd >= 0)
        while (read(fd, drain, sizeof(drain)) == (ssize_t)sizeof(drain))
            ;
    atomic_store(&sp->wake_sent, false);   /* before taking the list */
    pthread_mutex_lock(&sp->lock);
    struct spool_job *list = sp->done;
    sp->done = sp->done_tail = NULL;
    pthread_mutex_unlock(&sp->lock);
    while (list) {
        struct spool_job *j = list;
        list = j->next;
        sp->pending--;
        j->cb(j->token, j->qid, j->err);
        free(j);
    }
}

/* ---------------------------------------------------------------------- */
/* reading queued messages                                                 */

int spool_content_open(struct spool *sp, const char *qid, struct spool_content *c)
{
    struct journal_resident r;
    *c = (struct spool_content){-1, 0, 0, -1};
    int rc = journal_open_resident(sp->journal, qid, &r);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        *c = (struct spool_content){r.fd, r.off, r.len, r.seg};
        return 0;
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", sp->queue_dir, qid);
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    return c->fd < 0 ? -1 : 0;
}

void spool_content_close(struct spool *sp, struct spool_content *c)
{
    struct journal_resident r = {c->fd, c->seg, c->base, c->len};
    if (c->seg >= 0)
        journal_close_resident(sp->journal, &r);
    else if (c->fd >= 0)
        close(c->fd);
    *c = (struct spool_content){-1, 0, 0, -1};
}

int spool_read_message(struct spool *sp, const char *qid, struct spool_envelope *env,
                       char *err, size_t errlen)
{
    struct spool_content c;
    if (spool_content_open(sp, qid, &c) < 0) {
        snprintf(err, errlen, "%s: %s", qid, strerror(errno));
        return -1;
    }
    char *data = NULL;
    size_t len = c.len;
    int rc;
    errno = 0;                  /* a short read sets none */
    if (c.seg >= 0) {           /* resident: its record, c.len bytes at c.base */
        data = xmalloc(len + 1);
        rc = pread(c.fd, data, len, (off_t)c.base) == (ssize_t)len ? 0 : -1;
    } else {
        rc = fs_read_fd(c.fd, SIZE_MAX - 1, &data, &len);
    }
    int e = errno;
    spool_content_close(sp, &c);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read %s: %s", qid, e ? strerror(e) : "short read");
        free(data);
        return -1;
    }
    rc = spool_envelope_parse(data, len, env, err, errlen);
    free(data);
    return rc;
}

void spool_resident_counts(struct spool *sp, size_t *resident, uint64_t *materialized)
{
    journal_counts(sp ? sp->journal : NULL, resident, materialized);
}
