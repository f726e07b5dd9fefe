/*
 * journal.c - the spool's commit journal (see journal.h for why and the
 * protocol, docs/queue-format.md for the on-disk format).
 *
 * Threads: journal_commit_start/wait run on the spool's sync thread,
 * journal_forget on the event loop, journal_open_resident wherever a
 * message is read (the loop, delivery workers), the flusher and the
 * checkpointer on their own threads. `mu` guards the write position, the
 * sequence counters, the segment states and the index of resident
 * messages; record bytes are written under it (page cache only,
 * microseconds) so the offsets never interleave. The flusher's fdatasync
 * and the checkpointer's file writes and syncs run outside it.
 */
#include "queue/journal.h"
#include "lib/dict.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define QID_CHARS 16
/* Segments grow in zero-filled steps ahead of the records (see extend) */
#define EXTEND_STEP (1u << 20)
#define IOV_BATCH (IOV_MAX / 3) /* records per pwritev (header, payload, pad) */

static const unsigned char rec_magic[4] = {'S', 'J', 'R', '1'};
static const unsigned char ckpt_magic[4] = {'S', 'J', 'C', '1'};
static const unsigned char zero_pad[8];

enum seg_state { SEG_FREE, SEG_ACTIVE, SEG_CLOSED };

struct journal {
    char dir[512];
    int dir_fd, queue_dir_fd, ckpt_fd, lock_fd;
    int seg_fd[JOURNAL_SEGMENTS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    unsigned active;
    uint64_t off;                              /* write position in active */
    uint64_t next_seq;
    enum seg_state state[JOURNAL_SEGMENTS];
    uint64_t seg_last[JOURNAL_SEGMENTS];       /* highest seq written there */
    uint64_t seg_size[JOURNAL_SEGMENTS];       /* bytes allocated and written */
    /* resident messages (journal.h): qid -> struct resident, how many of
     * them each segment holds, and readers holding each segment */
    struct dict resident;
    size_t seg_live[JOURNAL_SEGMENTS];
    unsigned seg_pins[JOURNAL_SEGMENTS];
    bool unsynced;              /* materialized files not yet made durable */
    uint64_t materialized;
    uint64_t ckpt_seq;
    unsigned ckpt_writes;
    bool stopping;
    pthread_t ckpt_thread;
    bool ckpt_started;
    /* flusher (under mu): records up to written_seq are in the page cache,
     * up to synced_seq on disk. A failed fdatasync fails every record
     * written when it was noticed that was not durable before it, (fail_lo,
     * fail_hi] (the union over all failures), even if a later round works:
     * Linux marks the failed pages clean, so they may never reach the disk.
     * The segment is closed then (need_rotate): on disk it may hold a hole
     * at which a replay stops, so nothing acknowledged may follow it there. */
    pthread_cond_t flush_cv, done_cv;
    uint64_t written_seq, synced_seq, fail_lo, fail_hi;
    int fail_err;
    bool need_rotate;
    bool seg_dirty[JOURNAL_SEGMENTS];
    pthread_t flush_thread;
    bool flush_started;
    void (*synced_cb)(void *arg);
    void *synced_arg;
};

/* ---------------------------------------------------------------------- */
/* record format                                                           */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool qid_ok(const char *q)
{
    for (int i = 0; i < QID_CHARS; i++)
        if (!((q[i] >= '0' && q[i] <= '9') || (q[i] >= 'A' && q[i] <= 'F')))
            return false;
    return true;
}

/* CRC-32 of the header without its crc field, then the payload. */
static uint32_t rec_crc(const unsigned char *hdr, const void *payload, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, hdr, 12);
    c = crc32(c, hdr + 16, JOURNAL_HDR_LEN - 16);
    const unsigned char *p = payload;
    while (len > 0) {              /* zlib takes a uInt length */
        uInt k = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, k);
        p += k;
        len -= k;
    }
    return (uint32_t)c;
}

size_t journal_record_size(size_t len)
{
    return JOURNAL_HDR_LEN + ((len + 7) & ~(size_t)7);
}

/* Layout: magic[4] type[1] zero[3] len[4] crc[4] seq[8] qid[16]. */
size_t journal_encode_header(unsigned char hdr[JOURNAL_HDR_LEN], int type, uint64_t seq,
                             const char *qid, const void *payload, size_t len)
{
    memset(hdr, 0, JOURNAL_HDR_LEN);
    memcpy(hdr, rec_magic, 4);
    hdr[4] = (unsigned char)type;
    put32(hdr + 8, (uint32_t)len);
    put64(hdr + 16, seq);
    memcpy(hdr + 24, qid, QID_CHARS);
    put32(hdr + 12, rec_crc(hdr, payload, len));
    return JOURNAL_HDR_LEN;
}

size_t journal_parse(const unsigned char *p, size_t len, journal_record_cb cb, void *arg)
{
    size_t pos = 0;
    uint64_t prev = 0;
    while (len - pos >= JOURNAL_HDR_LEN) {
        const unsigned char *h = p + pos;
        int type = h[4];
        uint32_t plen = get32(h + 8);
        uint64_t seq = get64(h + 16);
        if (memcmp(h, rec_magic, 4) != 0 || h[5] || h[6] || h[7] ||
            (type != JOURNAL_REC_MESSAGE && type != JOURNAL_REC_GONE) ||
            plen > JOURNAL_RECORD_MAX || (type == JOURNAL_REC_GONE && plen != 0) ||
            journal_record_size(plen) > len - pos || seq <= prev ||
            !qid_ok((const char *)h + 24) ||
            rec_crc(h, h + JOURNAL_HDR_LEN, plen) != get32(h + 12))
            break;
        char qid[QID_CHARS + 1];
        memcpy(qid, h + 24, QID_CHARS);
        qid[QID_CHARS] = '\0';
        if (cb)
            cb(arg, type, seq, qid, h + JOURNAL_HDR_LEN, plen);
        prev = seq;
        pos += journal_record_size(plen);
    }
    return pos;
}

/* Slot: magic[4] zero[4] seq[8] crc[4] of the first 16 bytes, zeros. */
void journal_encode_checkpoint(unsigned char slot[JOURNAL_CKPT_SLOT], uint64_t seq)
{
    memset(slot, 0, JOURNAL_CKPT_SLOT);
    memcpy(slot, ckpt_magic, 4);
    put64(slot + 8, seq);
    put32(slot + 16, (uint32_t)crc32(crc32(0L, Z_NULL, 0), slot, 16));
}

uint64_t journal_parse_checkpoint(const unsigned char *p, size_t len)
{
    uint64_t best = 0;
    for (size_t off = 0; off + JOURNAL_CKPT_SLOT <= len && off < 2 * JOURNAL_CKPT_SLOT;
         off += JOURNAL_CKPT_SLOT) {
        const unsigned char *s = p + off;
        if (memcmp(s, ckpt_magic, 4) != 0 ||
            get32(s + 16) != (uint32_t)crc32(crc32(0L, Z_NULL, 0), s, 16))
            continue;
        uint64_t seq = get64(s + 8);
        if (seq > best)
            best = seq;
    }
    return best;
}

/* ---------------------------------------------------------------------- */
/* files                                                                   */

/* A whole journal file (a segment may exceed its size a little: removals
 * when no segment is free). */
#define JOURNAL_FILE_MAX ((size_t)JOURNAL_SEGMENT_MAX * 64)

static int read_all(int fd, unsigned char **out, size_t *outlen)
{
    return fs_read_fd(fd, JOURNAL_FILE_MAX, (char **)out, outlen);
}

/* Write the next checkpoint slot and make it durable. */
static int ckpt_write(int fd, unsigned *writes, uint64_t seq)
{
    unsigned char slot[JOURNAL_CKPT_SLOT];
    journal_encode_checkpoint(slot, seq);
    off_t off = (off_t)(*writes % 2) * JOURNAL_CKPT_SLOT;
    if (fs_pwrite_all(fd, slot, sizeof(slot), off) < 0 || fdatasync(fd) < 0)
        return -1;   /* the same slot again next time: the other keeps the last good one */
    (*writes)++;
    return 0;
}

/* syncfs of the spool filesystem, then the queue/ directory (syncfs may
 * flush the disk cache before the directory blocks it wrote have landed;
 * the directory's own fsync waits for them and flushes again). */
static int make_queue_durable(int queue_dir_fd)
{
    if (syncfs(queue_dir_fd) < 0 || fsync(queue_dir_fd) < 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* replay                                                                  */

struct replay_rec {
    uint64_t seq;
    char qid[QID_CHARS + 1];
    const unsigned char *payload;
    size_t len;
};

struct replay {
    uint64_t after, max_seq;
    struct replay_rec *v;
    size_t n, cap;
    struct dict gone;
};

static void replay_cb(void *arg, int type, uint64_t seq, const char *qid,
                      const unsigned char *payload, size_t len)
{
    struct replay *r = arg;
    if (seq > r->max_seq)
        r->max_seq = seq;
    if (seq <= r->after)
        return;
    if (type == JOURNAL_REC_GONE) {
        dict_set(&r->gone, qid, (void *)1);
        return;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    struct replay_rec *x = &r->v[r->n++];
    x->seq = seq;
    memcpy(x->qid, qid, sizeof(x->qid));
    x->payload = payload;
    x->len = len;
}

/* Does queue/QID hold exactly these bytes? */
static bool file_matches(int queue_dir_fd, const char *qid, const unsigned char *p, size_t len)
{
    int fd = openat(queue_dir_fd, qid, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* a file of another size differs without reading it; the limit makes
     * fs_read_fd refuse (EFBIG) anything longer than the record */
    unsigned char *b = NULL;
    size_t blen;
    bool same = fs_read_fd(fd, len, (char **)&b, &blen) == 0 && blen == len &&
                memcmp(b, p, len) == 0;
    free(b);
    close(fd);
    return same;
}

/* Files the journal creates belong to whoever owns queue/: `sluice serve`
 * opens the spool as root and then runs as mail_owner, and a root-owned
 * queue file would be unreadable to it (moved to corrupt/ as damaged). */
static void own_like_queue(int fd, int queue_dir_fd)
{
    struct stat q, f;
    if (geteuid() != 0 || fstat(queue_dir_fd, &q) < 0 || fstat(fd, &f) < 0)
        return;
    if ((f.st_uid != q.st_uid || f.st_gid != q.st_gid) && fchown(fd, q.st_uid, q.st_gid) < 0)
        log_svc_warn("queue", "cannot give a journal file to uid %ld: %s",
                     (long)q.st_uid, strerror(errno));
}

/* Remove restore files a crash during an earlier replay left behind. */
static void clean_restore_debris(int queue_dir_fd)
{
    int fd = dup(queue_dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' && n > 8 && strcmp(de->d_name + n - 8, ".restore") == 0)
            unlinkat(queue_dir_fd, de->d_name, 0);
    }
    closedir(d);
}

/* Write a message's bytes as queue/QID, not synced: whoever checkpoints
 * past its record makes the queue durable first (make_queue_durable). A
 * crash while writing leaves a file without its end record, which the
 * next replay rewrites (the record is not checkpointed yet). 0, or -1 with
 * errno and nothing left behind. */
static int write_queue_file(int queue_dir_fd, const char *qid, const void *p, size_t len)
{
    int fd = openat(queue_dir_fd, qid, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    own_like_queue(fd, queue_dir_fd);
    int rc = fs_pwrite_all(fd, p, len, 0);
    int e = errno;
    /* one close whatever happens: the descriptor is gone even when close
     * fails, and a second one could close another thread's new file */
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc < 0) {
        unlinkat(queue_dir_fd, qid, 0);
        errno = e;
    }
    return rc;
}

/* Map a whole segment read-only (*p NULL when empty). */
static int map_segment(int fd, unsigned char **p, size_t *len)
{
    struct stat stt;
    *p = NULL;
    *len = 0;
    if (fstat(fd, &stt) < 0)
        return -1;
    if (stt.st_size <= 0)
        return 0;
    if ((uint64_t)stt.st_size > JOURNAL_FILE_MAX) {
        errno = EFBIG;
        return -1;
    }
    void *m = mmap(NULL, (size_t)stt.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        return -1;
    *p = m;
    *len = (size_t)stt.st_size;
    return 0;
}

/* Replay with the lock held: restore, make the queue durable, checkpoint.
 * Leaves the next sequence number in *next_seq. */
static int replay_locked(int dir_fd, int queue_dir_fd, int ckpt_fd, unsigned *ckpt_writes,
                         uint64_t *next_seq, struct journal_replay_stats *st,
                         char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    unsigned char *ck;
    size_t cklen;
    if (read_all(ckpt_fd, &ck, &cklen) < 0) {
        snprintf(err, errlen, "cannot read the journal checkpoint: %s", strerror(errno));
        return -1;
    }
    struct replay r = {.after = journal_parse_checkpoint(ck, cklen)};
    /* go on alternating: the next write replaces the older slot */
    *ckpt_writes = cklen >= 2 * JOURNAL_CKPT_SLOT &&
                   journal_parse_checkpoint(ck, JOURNAL_CKPT_SLOT) >
                   journal_parse_checkpoint(ck + JOURNAL_CKPT_SLOT, JOURNAL_CKPT_SLOT);
    free(ck);
    r.max_seq = r.after;
    dict_init(&r.gone, NULL);
    unsigned char *img[JOURNAL_SEGMENTS] = {0};
    size_t img_len[JOURNAL_SEGMENTS] = {0};
    int rc = 0;
    for (int i = 0; i < JOURNAL_SEGMENTS && rc == 0; i++) {
        char name[16];
        snprintf(name, sizeof(name), "seg.%d", i);
        int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue;
        if (fd < 0 || map_segment(fd, &img[i], &img_len[i]) < 0) {
            snprintf(err, errlen, "cannot read journal segment %s: %s", name, strerror(errno));
            rc = -1;
        } else {
            journal_parse(img[i], img_len[i], replay_cb, &r);
        }
        if (fd >= 0)
            close(fd);
    }
    if (rc == 0)
        clean_restore_debris(queue_dir_fd);
    for (size_t k = 0; k < r.n && rc == 0; k++) {
        const struct replay_rec *x = &r.v[k];
        st->records++;
        if (dict_get(&r.gone, x->qid)) {
            st->gone++;
            continue;
        }
        if (file_matches(queue_dir_fd, x->qid, x->payload, x->len))
            continue;
        if (write_queue_file(queue_dir_fd, x->qid, x->payload, x->len) < 0) {
            snprintf(err, errlen, "cannot restore queue file %s from the journal: %s",
                     x->qid, strerror(errno));
            rc = -1;
            break;
        }
        st->restored++;
        log_svc("queue", "%s: queue file written from the journal", x->qid);
    }
    /* files that matched may still be only in the page cache (a killed
     * process, not a power failure): make them durable before the
     * checkpoint moves past their records; nothing to do without records */
    if (rc == 0 && r.n > 0 && make_queue_durable(queue_dir_fd) < 0) {
        snprintf(err, errlen, "cannot sync the queue after replaying the journal: %s",
                 strerror(errno));
        rc = -1;
    }
    if (rc == 0 && r.max_seq > r.after && ckpt_write(ckpt_fd, ckpt_writes, r.max_seq) < 0) {
        snprintf(err, errlen, "cannot write the journal checkpoint: %s", strerror(errno));
        rc = -1;
    }
    st->checkpoint = r.max_seq;
    *next_seq = r.max_seq + 1;
    for (int i = 0; i < JOURNAL_SEGMENTS; i++)
        if (img[i])
            munmap(img[i], img_len[i]);
    free(r.v);
    dict_free(&r.gone);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* open / close                                                            */

static int open_dirs(const char *spool_dir, char *dir, size_t dirlen, int *dir_fd,
                     int *queue_dir_fd, bool create)
{
    char q[600];
    snprintf(dir, dirlen, "%s/journal", spool_dir);
    snprintf(q, sizeof(q), "%s/queue", spool_dir);
    *dir_fd = *queue_dir_fd = -1;
    if (create && fs_mkdir_p(dir, 0700) < 0)
        return -1;
    *dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *queue_dir_fd = open(q, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *dir_fd < 0 || *queue_dir_fd < 0 ? -1 : 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void *ckpt_main(void *arg);
static void *flush_main(void *arg);
static void close_checkpoint(struct journal *jr);

struct journal *journal_open(const char *spool_dir, struct journal_replay_stats *st,
                             bool *fatal, char *err, size_t errlen)
{
    struct journal *jr = xcalloc(1, sizeof(*jr));
    jr->ckpt_fd = jr->lock_fd = -1;
    for (int i = 0; i < JOURNAL_SEGMENTS; i++)
        jr->seg_fd[i] = -1;
    *fatal = false;
    char jdir[600];
    snprintf(jdir, sizeof(jdir), "%s/journal", spool_dir);
    /* once a journal exists it may hold accepted mail: failing to use it
     * must stop the start, not silently skip the replay */
    bool existed = access(jdir, F_OK) == 0;
    pthread_mutex_init(&jr->mu, NULL);
    pthread_cond_init(&jr->cv, NULL);
    pthread_cond_init(&jr->flush_cv, NULL);
    pthread_cond_init(&jr->done_cv, NULL);
    dict_init(&jr->resident, free);
    if (open_dirs(spool_dir, jr->dir, sizeof(jr->dir), &jr->dir_fd, &jr->queue_dir_fd, true) < 0) {
        snprintf(err, errlen, "cannot open %s: %s", jr->dir, strerror(errno));
        goto fail;
    }
    jr->lock_fd = openat(jr->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (jr->lock_fd < 0 || flock(jr->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "cannot lock %s/lock: %s (%s)", jr->dir, strerror(errno),
                 errno == EWOULDBLOCK ? "another sluice serve uses this spool"
                                      : "give the spool to the user sluice runs as");
        *fatal = true;
        goto fail;
    }
    jr->ckpt_fd = openat(jr->dir_fd, "checkpoint", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (jr->ckpt_fd < 0) {
        snprintf(err, errlen, "cannot open %s/checkpoint: %s", jr->dir, strerror(errno));
        goto fail;
    }
    own_like_queue(jr->dir_fd, jr->queue_dir_fd);
    own_like_queue(jr->lock_fd, jr->queue_dir_fd);
    own_like_queue(jr->ckpt_fd, jr->queue_dir_fd);
    if (replay_locked(jr->dir_fd, jr->queue_dir_fd, jr->ckpt_fd, &jr->ckpt_writes,
                      &jr->next_seq, st, err, errlen) < 0) {
        *fatal = true;
        goto fail;
    }
    jr->ckpt_seq = jr->written_seq = jr->synced_seq = jr->next_seq - 1;
    for (int i = 0; i < JOURNAL_SEGMENTS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "seg.%d", i);
        jr->seg_fd[i] = openat(jr->dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        struct stat stt;
        if (jr->seg_fd[i] < 0 || fstat(jr->seg_fd[i], &stt) < 0) {
            snprintf(err, errlen, "cannot open %s/%s: %s", jr->dir, name, strerror(errno));
            goto fail;
        }
        jr->seg_size[i] = (uint64_t)stt.st_size;
        own_like_queue(jr->seg_fd[i], jr->queue_dir_fd);
    }
    /* new segment files must be durable before records in them count */
    if (fsync(jr->dir_fd) < 0) {
        snprintf(err, errlen, "cannot sync %s: %s", jr->dir, strerror(errno));
        goto fail;
    }
    jr->active = 0;
    jr->state[0] = SEG_ACTIVE;
    if (pthread_create(&jr->ckpt_thread, NULL, ckpt_main, jr) != 0) {
        snprintf(err, errlen, "cannot start the journal checkpoint thread");
        goto fail;
    }
    jr->ckpt_started = true;
    if (pthread_create(&jr->flush_thread, NULL, flush_main, jr) != 0) {
        snprintf(err, errlen, "cannot start the journal flusher thread");
        goto fail;
    }
    jr->flush_started = true;
    return jr;
fail:
    if (existed)
        *fatal = true;
    journal_close(jr);
    return NULL;
}

void journal_close(struct journal *jr)
{
    if (jr == NULL)
        return;
    pthread_mutex_lock(&jr->mu);
    jr->stopping = true;
    pthread_cond_broadcast(&jr->cv);
    pthread_cond_broadcast(&jr->flush_cv);
    pthread_mutex_unlock(&jr->mu);
    if (jr->flush_started)
        pthread_join(jr->flush_thread, NULL);
    if (jr->ckpt_started) {
        pthread_join(jr->ckpt_thread, NULL);
        close_checkpoint(jr);
    }
    for (int i = 0; i < JOURNAL_SEGMENTS; i++)
        close_fd(&jr->seg_fd[i]);
    close_fd(&jr->ckpt_fd);
    close_fd(&jr->lock_fd);   /* releases the lock */
    close_fd(&jr->queue_dir_fd);
    close_fd(&jr->dir_fd);
    pthread_mutex_destroy(&jr->mu);
    pthread_cond_destroy(&jr->cv);
    pthread_cond_destroy(&jr->flush_cv);
    pthread_cond_destroy(&jr->done_cv);
    dict_free(&jr->resident);
    free(jr);
}

int journal_replay(const char *spool_dir, struct journal_replay_stats *st,
                   char *err, size_t errlen)
{
    char dir[512];
    int dir_fd, queue_dir_fd, lock_fd = -1, ckpt_fd = -1, rc = 0;
    memset(st, 0, sizeof(*st));
    if (open_dirs(spool_dir, dir, sizeof(dir), &dir_fd, &queue_dir_fd, false) < 0) {
        int e = errno;
        close_fd(&dir_fd);
        close_fd(&queue_dir_fd);
        if (e == ENOENT)
            return 0;   /* no journal (or no queue): nothing to replay */
        snprintf(err, errlen, "cannot open %s: %s", dir, strerror(e));
        return -1;
    }
    lock_fd = openat(dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) == 0) {
        ckpt_fd = openat(dir_fd, "checkpoint", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        unsigned writes = 0;
        uint64_t next;
        if (ckpt_fd < 0) {
            snprintf(err, errlen, "cannot open %s/checkpoint: %s", dir, strerror(errno));
            rc = -1;
        } else {
            own_like_queue(lock_fd, queue_dir_fd);
            own_like_queue(ckpt_fd, queue_dir_fd);
            rc = replay_locked(dir_fd, queue_dir_fd, ckpt_fd, &writes, &next, st, err, errlen);
        }
    } else if (lock_fd < 0) {
        snprintf(err, errlen, "cannot open %s/lock: %s", dir, strerror(errno));
        rc = -1;
    }
    close_fd(&ckpt_fd);
    close_fd(&lock_fd);
    close_fd(&queue_dir_fd);
    close_fd(&dir_fd);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* commit, forget, checkpoints                                             */

/* Move to the next segment; false if it is not free yet. Called with mu
 * held. */
static bool rotate(struct journal *jr)
{
    unsigned next = (jr->active + 1) % JOURNAL_SEGMENTS;
    if (jr->state[next] != SEG_FREE)
        return false;
    jr->state[jr->active] = SEG_CLOSED;
    jr->active = next;
    jr->state[next] = SEG_ACTIVE;
    jr->seg_last[next] = 0;
    jr->off = 0;
    jr->need_rotate = false;
    pthread_cond_broadcast(&jr->cv);   /* the checkpointer may have work */
    return true;
}

/* Make sure [off, off + need) of the active segment lies within written
 * blocks, zero-filling ahead in EXTEND_STEP pieces (mu held). Why: an
 * fdatasync after writes that grow a file or fill unwritten extents must
 * also write the inode (a second disk write before the flush: ~280 us
 * instead of ~160 us per commit here); a segment is extended this way
 * about once per megabyte of records, and reused segments never again. */
static int extend(struct journal *jr, uint64_t need)
{
    static const unsigned char zeros[64 * 1024];
    unsigned a = jr->active;
    uint64_t want = jr->off + need;
    if (want <= jr->seg_size[a])
        return 0;
    if (jr->seg_size[a] < jr->off)      /* never zero what is written */
        jr->seg_size[a] = jr->off;
    want = (want + EXTEND_STEP - 1) / EXTEND_STEP * EXTEND_STEP;
    uint64_t before = jr->seg_size[a];
    while (jr->seg_size[a] < want) {
        uint64_t k = want - jr->seg_size[a];
        if (k > sizeof(zeros))
            k = sizeof(zeros);
        if (fs_pwrite_all(jr->seg_fd[a], zeros, (size_t)k, (off_t)jr->seg_size[a]) < 0) {
            /* give the space back (a full disk): the classic path that
             * takes this batch needs it for the queue files */
            int e = errno;
            if (ftruncate(jr->seg_fd[a], (off_t)before) == 0)
                jr->seg_size[a] = before;
            return e;
        }
        jr->seg_size[a] += k;
    }
    return 0;
}

struct resident {
    unsigned seg;
    uint64_t off;          /* of the queue file image in the segment */
    size_t len;
};

/* Index a message just written at off of the active segment (mu held). */
static void add_resident(struct journal *jr, const char *qid, uint64_t off, size_t len)
{
    struct resident *old = dict_get(&jr->resident, qid);
    if (old)             /* the same id twice: only the newest record counts */
        jr->seg_live[old->seg]--;
    struct resident *r = xmalloc(sizeof(*r));
    *r = (struct resident){jr->active, off, len};
    dict_set(&jr->resident, qid, r);
    jr->seg_live[jr->active]++;
}

/* Write records for entries [0, n) at the write position (mu held); when
 * all went out, the messages are resident. */
static int write_records(struct journal *jr, const struct journal_entry *e, size_t n)
{
    unsigned char (*hdr)[JOURNAL_HDR_LEN] = xmalloc(n * JOURNAL_HDR_LEN);
    struct iovec iov[IOV_BATCH * 3];
    int fd = jr->seg_fd[jr->active];
    uint64_t start = jr->off;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        int niov = 0;
        size_t bytes = 0;
        for (; i < n && niov + 3 <= (int)(sizeof(iov) / sizeof(iov[0])); i++) {
            size_t pad = journal_record_size(e[i].len) - JOURNAL_HDR_LEN - e[i].len;
            journal_encode_header(hdr[i], JOURNAL_REC_MESSAGE, jr->next_seq++, e[i].qid,
                                  e[i].data, e[i].len);
            iov[niov++] = (struct iovec){hdr[i], JOURNAL_HDR_LEN};
            iov[niov++] = (struct iovec){(void *)e[i].data, e[i].len};
            if (pad)
                iov[niov++] = (struct iovec){(void *)zero_pad, pad};
            bytes += journal_record_size(e[i].len);
        }
        struct iovec *v = iov;
        while (bytes > 0) {
            ssize_t w = pwritev(fd, v, niov, (off_t)jr->off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = w < 0 ? errno : EIO;
                break;
            }
            jr->off += (uint64_t)w;
            bytes -= (size_t)w;
            /* a short write: skip what went out */
            while (niov > 0 && (size_t)w >= v->iov_len) {
                w -= (ssize_t)v->iov_len;
                v++;
                niov--;
            }
            if (niov > 0) {
                v->iov_base = (char *)v->iov_base + w;
                v->iov_len -= (size_t)w;
            }
        }
    }
    jr->seg_last[jr->active] = jr->written_seq = jr->next_seq - 1;
    jr->seg_dirty[jr->active] = true;
    for (size_t i = 0; i < n && rc == 0; i++) {
        add_resident(jr, e[i].qid, start + JOURNAL_HDR_LEN, e[i].len);
        start += journal_record_size(e[i].len);
    }
    free(hdr);
    return rc;
}

int journal_commit_start(struct journal *jr, const struct journal_entry *e, size_t n,
                         uint64_t *ticket)
{
    size_t total = 0;
    *ticket = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].len > JOURNAL_RECORD_MAX || strlen(e[i].qid) != QID_CHARS)
            return EINVAL;
        total += journal_record_size(e[i].len);
    }
    if (n == 0)
        return 0;
    pthread_mutex_lock(&jr->mu);
    if ((jr->need_rotate || (jr->off > 0 && jr->off + total > JOURNAL_SEGMENT_MAX)) &&
        !rotate(jr)) {
        pthread_mutex_unlock(&jr->mu);
        return EAGAIN;
    }
    /* a failed extension wrote nothing (a full disk): the segment goes on */
    int rc = extend(jr, total);
    if (rc == 0 && (rc = write_records(jr, e, n)) != 0)
        jr->need_rotate = true;   /* torn records: nothing may follow them here */
    *ticket = jr->written_seq;
    pthread_cond_signal(&jr->flush_cv);
    pthread_mutex_unlock(&jr->mu);
    return rc;
}

/* 1 durable, 0 pending, -errno failed (mu held). */
static int ticket_state(const struct journal *jr, uint64_t ticket)
{
    if (jr->fail_hi && ticket > jr->fail_lo && ticket <= jr->fail_hi)
        return -jr->fail_err;
    return jr->synced_seq >= ticket;
}

int journal_commit_wait(struct journal *jr, uint64_t ticket)
{
    pthread_mutex_lock(&jr->mu);
    int st;
    while ((st = ticket_state(jr, ticket)) == 0)
        pthread_cond_wait(&jr->done_cv, &jr->mu);
    pthread_mutex_unlock(&jr->mu);
    return st < 0 ? -st : 0;
}

int journal_ticket_state(struct journal *jr, uint64_t ticket)
{
    pthread_mutex_lock(&jr->mu);
    int st = ticket_state(jr, ticket);
    pthread_mutex_unlock(&jr->mu);
    return st;
}

void journal_set_synced_cb(struct journal *jr, void (*cb)(void *arg), void *arg)
{
    pthread_mutex_lock(&jr->mu);
    jr->synced_cb = cb;
    jr->synced_arg = arg;
    pthread_mutex_unlock(&jr->mu);
}

int journal_commit(struct journal *jr, const struct journal_entry *e, size_t n)
{
    uint64_t ticket;
    int rc = journal_commit_start(jr, e, n, &ticket);
    return rc ? rc : journal_commit_wait(jr, ticket);
}

/* The flusher: one fdatasync per segment written since the last round
 * covers every record written before it started (group commit). */
static void *flush_main(void *arg)
{
    struct journal *jr = arg;
    pthread_mutex_lock(&jr->mu);
    for (;;) {
        if (jr->written_seq <= jr->synced_seq || jr->written_seq <= jr->fail_hi) {
            if (jr->stopping)
                break;
            pthread_cond_wait(&jr->flush_cv, &jr->mu);
            continue;
        }
        uint64_t target = jr->written_seq;
        int fds[JOURNAL_SEGMENTS], nfd = 0;
        for (int i = 0; i < JOURNAL_SEGMENTS; i++)
            if (jr->seg_dirty[i]) {
                jr->seg_dirty[i] = false;
                fds[nfd++] = jr->seg_fd[i];
            }
        pthread_mutex_unlock(&jr->mu);
        int err = 0;
        for (int i = 0; i < nfd; i++)
            if (fdatasync(fds[i]) < 0 && err == 0)
                err = errno;
        pthread_mutex_lock(&jr->mu);
        if (err) {
            if (jr->fail_hi == 0 || jr->synced_seq < jr->fail_lo)
                jr->fail_lo = jr->synced_seq;
            jr->fail_hi = jr->written_seq;
            jr->fail_err = err;
            jr->need_rotate = true;
            log_svc_warn("queue", "journal fdatasync failed: %s", strerror(err));
        } else if (target > jr->synced_seq) {
            jr->synced_seq = target;
        }
        pthread_cond_broadcast(&jr->done_cv);
        if (jr->synced_cb) {
            void (*cb)(void *) = jr->synced_cb;
            void *cb_arg = jr->synced_arg;
            pthread_mutex_unlock(&jr->mu);
            cb(cb_arg);
            pthread_mutex_lock(&jr->mu);
        }
    }
    pthread_mutex_unlock(&jr->mu);
    return NULL;
}

void journal_forget(struct journal *jr, const char *qid)
{
    if (jr == NULL || strlen(qid) != QID_CHARS)
        return;
    unsigned char hdr[JOURNAL_HDR_LEN];
    pthread_mutex_lock(&jr->mu);
    struct resident *r = dict_get(&jr->resident, qid);
    if (r) {
        unsigned seg = r->seg;
        dict_del(&jr->resident, qid);
        if (--jr->seg_live[seg] == 0 && jr->state[seg] == SEG_CLOSED)
            pthread_cond_broadcast(&jr->cv);   /* it may be freed now */
    }
    /* removals alone (no commits: a quiet server, spool_sync = auto) must
     * not grow a segment for ever; if no segment is free the record goes
     * to the full one, a little past its size. After a torn write or a
     * failed fdatasync (need_rotate) a replay stops at the hole, so a gone
     * record written after it would be lost: a new segment first. */
    if (jr->need_rotate || jr->off + sizeof(hdr) > JOURNAL_SEGMENT_MAX)
        rotate(jr);
    journal_encode_header(hdr, JOURNAL_REC_GONE, jr->next_seq, qid, NULL, 0);
    if (extend(jr, sizeof(hdr)) == 0 &&
        fs_pwrite_all(jr->seg_fd[jr->active], hdr, sizeof(hdr), (off_t)jr->off) == 0) {
        jr->off += sizeof(hdr);
        jr->seg_last[jr->active] = jr->written_seq = jr->next_seq++;
        jr->seg_dirty[jr->active] = true;   /* synced with the next batch */
    }
    pthread_mutex_unlock(&jr->mu);
}

/* ---------------------------------------------------------------------- */
/* readers of resident messages                                            */

int journal_open_resident(struct journal *jr, const char *qid, struct journal_resident *r)
{
    *r = (struct journal_resident){-1, -1, 0, 0};
    if (jr == NULL)
        return 0;
    pthread_mutex_lock(&jr->mu);
    const struct resident *x = dict_get(&jr->resident, qid);
    int rc = 0;
    if (x) {
        /* a descriptor of its own: the reader closes it, and the pin (not
         * the descriptor) keeps the segment from being overwritten */
        r->fd = fcntl(jr->seg_fd[x->seg], F_DUPFD_CLOEXEC, 0);
        rc = r->fd < 0 ? -1 : 1;
        if (rc == 1) {
            r->seg = (int)x->seg;
            r->off = x->off;
            r->len = x->len;
            jr->seg_pins[x->seg]++;
        }
    }
    pthread_mutex_unlock(&jr->mu);
    return rc;
}

void journal_close_resident(struct journal *jr, struct journal_resident *r)
{
    if (r->fd >= 0)
        close(r->fd);
    if (jr && r->seg >= 0) {
        pthread_mutex_lock(&jr->mu);
        if (--jr->seg_pins[r->seg] == 0)
            pthread_cond_broadcast(&jr->cv);   /* it may be freed now */
        pthread_mutex_unlock(&jr->mu);
    }
    *r = (struct journal_resident){-1, -1, 0, 0};
}

void journal_counts(struct journal *jr, size_t *resident, uint64_t *materialized)
{
    *resident = 0;
    *materialized = 0;
    if (jr == NULL)
        return;
    pthread_mutex_lock(&jr->mu);
    *resident = dict_count(&jr->resident);
    *materialized = jr->materialized;
    pthread_mutex_unlock(&jr->mu);
}

/* ---------------------------------------------------------------------- */
/* checkpoints                                                             */

/* The k-th oldest segment other than the active one (the ring is used in
 * order, so age order is ring order after the active segment). */
static unsigned by_age(const struct journal *jr, unsigned k)
{
    return (jr->active + 1 + k) % JOURNAL_SEGMENTS;
}

/* The checkpoint the closed segments allow now (mu held; 0: none): the
 * last seq of the oldest closed segments, in age order, that hold no
 * resident message and no reader. Their records are settled: each message
 * left the queue or has a queue file (durable once *unsynced is dealt
 * with). Oldest first, because a gone record in a newer segment may be
 * what keeps an older message from coming back in a replay. */
static uint64_t ckpt_due(const struct journal *jr)
{
    uint64_t upto = 0;
    for (unsigned k = 0; k + 1 < JOURNAL_SEGMENTS; k++) {
        unsigned s = by_age(jr, k);
        if (jr->state[s] == SEG_FREE)
            continue;
        if (jr->state[s] != SEG_CLOSED || jr->seg_live[s] || jr->seg_pins[s])
            break;
        if (jr->seg_last[s] > upto)
            upto = jr->seg_last[s];
    }
    return upto > jr->ckpt_seq ? upto : 0;
}

/* The oldest closed segment, when the ring runs short of free segments
 * and resident messages keep it (mu held; -1: nothing to do). One at a
 * time: while a reader holds it, the next ones wait too. */
static int materialize_due(const struct journal *jr)
{
    unsigned nfree = 0;
    int oldest = -1;
    for (unsigned k = 0; k + 1 < JOURNAL_SEGMENTS; k++) {
        unsigned s = by_age(jr, k);
        nfree += jr->state[s] == SEG_FREE;
        if (oldest < 0 && jr->state[s] == SEG_CLOSED)
            oldest = (int)s;
    }
    if (nfree >= JOURNAL_FREE_LOW || oldest < 0 || jr->seg_live[oldest] == 0)
        return -1;
    return oldest;
}

struct to_write {
    char qid[QID_CHARS + 1];
    unsigned seg;
    uint64_t off;
    size_t len;
};

/* Give every resident message of segment seg (all segments: -1) its queue
 * file. Called with mu held; drops it for the I/O (the segment cannot be
 * reused meanwhile: it holds resident messages). A message that left the
 * queue while its file was written loses the file again. 0, or -1 with
 * errno (what was written stays, and is resident no more). */
static int materialize(struct journal *jr, int seg)
{
    size_t n = 0, cap = 0, pos = 0;
    struct to_write *v = NULL;
    const char *key;
    void *val;
    while (dict_next(&jr->resident, &pos, &key, &val)) {
        const struct resident *r = val;
        if (seg >= 0 && r->seg != (unsigned)seg)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            v = xrealloc(v, cap * sizeof(*v));
        }
        memcpy(v[n].qid, key, sizeof(v[n].qid));
        v[n].seg = r->seg;
        v[n].off = r->off;
        v[n++].len = r->len;
    }
    pthread_mutex_unlock(&jr->mu);
    int rc = 0, err = 0;
    size_t done = 0;
    char *buf = NULL;
    size_t bufcap = 0;
    for (; done < n; done++) {
        if (v[done].len > bufcap) {
            bufcap = v[done].len;
            buf = xrealloc(buf, bufcap);
        }
        ssize_t got = pread(jr->seg_fd[v[done].seg], buf, v[done].len, (off_t)v[done].off);
        if (got != (ssize_t)v[done].len) {
            err = got < 0 ? errno : EIO;
            rc = -1;
            break;
        }
        if (write_queue_file(jr->queue_dir_fd, v[done].qid, buf, v[done].len) < 0) {
            err = errno;
            rc = -1;
            break;
        }
    }
    free(buf);
    pthread_mutex_lock(&jr->mu);
    for (size_t i = 0; i < done; i++) {
        const struct resident *r = dict_get(&jr->resident, v[i].qid);
        if (r == NULL || r->seg != v[i].seg || r->off != v[i].off) {
            unlinkat(jr->queue_dir_fd, v[i].qid, 0);   /* it left the queue meanwhile */
            continue;
        }
        dict_del(&jr->resident, v[i].qid);
        jr->seg_live[v[i].seg]--;
        jr->materialized++;
        jr->unsynced = true;
    }
    free(v);
    errno = err;
    return rc;
}

/* Make the materialized files durable, then write the checkpoint (mu
 * held; dropped for the I/O). */
static int checkpoint(struct journal *jr, uint64_t upto)
{
    bool sync = jr->unsynced;
    jr->unsynced = false;
    pthread_mutex_unlock(&jr->mu);
    int rc = sync ? make_queue_durable(jr->queue_dir_fd) : 0;
    if (rc == 0)
        rc = ckpt_write(jr->ckpt_fd, &jr->ckpt_writes, upto);
    int err = errno;
    pthread_mutex_lock(&jr->mu);
    if (rc < 0 && sync)
        jr->unsynced = true;
    errno = err;
    return rc;
}

/* The checkpointer: free the oldest closed segments once their messages
 * have left the queue, materializing them first when the ring runs short
 * of free segments. */
static void *ckpt_main(void *arg)
{
    struct journal *jr = arg;
    pthread_mutex_lock(&jr->mu);
    for (;;) {
        /* what the checkpoint covers (or an empty segment) is free once
         * no reader holds it */
        for (int i = 0; i < JOURNAL_SEGMENTS; i++)
            if (jr->state[i] == SEG_CLOSED && jr->seg_last[i] <= jr->ckpt_seq &&
                jr->seg_live[i] == 0 && jr->seg_pins[i] == 0)
                jr->state[i] = SEG_FREE;
        uint64_t upto = ckpt_due(jr);
        int seg = upto ? -1 : materialize_due(jr);
        if (upto == 0 && seg < 0) {
            if (jr->stopping)
                break;
            pthread_cond_wait(&jr->cv, &jr->mu);
            continue;
        }
        int rc = upto ? checkpoint(jr, upto) : materialize(jr, seg);
        if (rc < 0)
            log_svc_warn("queue", "journal %s failed: %s; retrying in 1 s",
                         upto ? "checkpoint" : "writing queue files", strerror(errno));
        if (rc == 0 && upto) {
            jr->ckpt_seq = upto;     /* the loop's first rule frees them */
        } else if (rc < 0 && jr->stopping) {
            break;                  /* journal_close tries once more */
        } else if (rc < 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&jr->cv, &jr->mu, &ts);
        }
    }
    pthread_mutex_unlock(&jr->mu);
    return NULL;
}

/* At close (threads stopped): every resident message gets its queue
 * file, the queue is made durable and the checkpoint covers everything, so
 * the next start (or an offline tool) has nothing to replay. If that
 * fails, the records stay for the replay. */
static void close_checkpoint(struct journal *jr)
{
    pthread_mutex_lock(&jr->mu);
    int rc = dict_count(&jr->resident) ? materialize(jr, -1) : 0;
    if (rc < 0)
        log_svc_warn("queue", "journal: cannot write queue files at shutdown (%s); the "
                     "next start restores them from the journal", strerror(errno));
    if (rc == 0 && jr->next_seq - 1 > jr->ckpt_seq &&
        checkpoint(jr, jr->next_seq - 1) == 0)
        jr->ckpt_seq = jr->next_seq - 1;
    pthread_mutex_unlock(&jr->mu);
}
