/*
 * test_journal.c - the spool's commit journal: the record and checkpoint
 * formats with hostile input (torn, damaged, reordered, oversized,
 * garbage), and replay after a simulated crash: a committed message whose
 * queue file is missing or damaged comes back, one that left the queue
 * ("gone") or was checkpointed does not, segments rotate and are reused.
 * Resident messages: no queue file until the ring needs their segment or
 * the journal closes, readable meanwhile, their segment never reused under
 * a reader; a segment whose messages all left is freed without files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue/journal.h"

/* ---- format ---------------------------------------------------------- */

struct seen {
    int n;
    uint64_t seq[16];
    char qid[16][17];
    size_t len[16];
    int type[16];
};

static void collect(void *arg, int type, uint64_t seq, const char *qid,
                    const unsigned char *payload, size_t len)
{
    struct seen *s = arg;
    (void)payload;
    if (s->n < 16) {
        s->seq[s->n] = seq;
        strcpy(s->qid[s->n], qid);
        s->len[s->n] = len;
        s->type[s->n] = type;
    }
    s->n++;
}

/* Append one record to img at *pos. */
static void put_rec(unsigned char *img, size_t *pos, int type, uint64_t seq, const char *qid,
                    const char *payload)
{
    size_t len = payload ? strlen(payload) : 0;
    journal_encode_header(img + *pos, type, seq, qid, payload, len);
    memset(img + *pos + JOURNAL_HDR_LEN, 0, journal_record_size(len) - JOURNAL_HDR_LEN);
    if (len)
        memcpy(img + *pos + JOURNAL_HDR_LEN, payload, len);
    *pos += journal_record_size(len);
}

static const char *Q1 = "6B03CFA01C0C3000", *Q2 = "6B03CFA01C0D6000", *Q3 = "6B03CFA01C0E5000";

static void test_round_trip(void **state)
{
    unsigned char img[4096];
    size_t pos = 0;
    put_rec(img, &pos, JOURNAL_REC_MESSAGE, 1, Q1, "SLUICE-QUEUE 1\nhello\n");
    put_rec(img, &pos, JOURNAL_REC_MESSAGE, 2, Q2, "x");
    put_rec(img, &pos, JOURNAL_REC_GONE, 5, Q1, NULL);
    assert_int_equal(journal_record_size(0), JOURNAL_HDR_LEN);
    assert_int_equal(journal_record_size(1), JOURNAL_HDR_LEN + 8);
    assert_int_equal(journal_record_size(8), JOURNAL_HDR_LEN + 8);
    struct seen s = {0};
    assert_int_equal(journal_parse(img, pos, collect, &s), pos);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 1);
    assert_string_equal(s.qid[1], Q2);
    assert_int_equal(s.len[0], strlen("SLUICE-QUEUE 1\nhello\n"));
    assert_int_equal(s.type[2], JOURNAL_REC_GONE);
    assert_int_equal(s.len[2], 0);
    /* what follows the last record (zeros of a pre-extended segment) ends it */
    memset(img + pos, 0, 200);
    memset(&s, 0, sizeof(s));
    assert_int_equal(journal_parse(img, pos + 200, collect, &s), pos);
    assert_int_equal(s.n, 3);
}

/* Every way a record can be bad stops the walk right before it. */
static void test_hostile_records(void **state)
{
    unsigned char img[4096], bad[4096];
    size_t pos = 0;
    put_rec(img, &pos, JOURNAL_REC_MESSAGE, 10, Q1, "first");
    size_t second = pos;
    put_rec(img, &pos, JOURNAL_REC_MESSAGE, 11, Q2, "second message");
    struct seen s;

    /* torn: any prefix of the second record */
    for (size_t cut = second; cut < pos; cut++) {
        memset(&s, 0, sizeof(s));
        assert_int_equal(journal_parse(img, cut, collect, &s), second);
        assert_int_equal(s.n, 1);
    }
    /* one flipped bit anywhere in the second record (header or payload) */
    for (size_t i = second; i < second + JOURNAL_HDR_LEN + 14; i++) {
        memcpy(bad, img, pos);
        bad[i] ^= 0x10;
        memset(&s, 0, sizeof(s));
        assert_int_equal(journal_parse(bad, pos, collect, &s), second);
    }
    /* not newer than the one before (a stale record of an older cycle) */
    size_t p2 = 0;
    put_rec(bad, &p2, JOURNAL_REC_MESSAGE, 10, Q1, "first");
    put_rec(bad, &p2, JOURNAL_REC_MESSAGE, 10, Q2, "same seq");
    assert_int_equal(journal_parse(bad, p2, NULL, NULL), journal_record_size(5));
    /* a queue id that is not 16 upper-case hex digits */
    p2 = 0;
    put_rec(bad, &p2, JOURNAL_REC_MESSAGE, 1, "6b03cfa01c0c3000", "lower");
    assert_int_equal(journal_parse(bad, p2, NULL, NULL), 0);
    p2 = 0;
    put_rec(bad, &p2, JOURNAL_REC_MESSAGE, 1, "../../etc/passwd", "path");
    assert_int_equal(journal_parse(bad, p2, NULL, NULL), 0);
    /* unknown type, a gone record with a payload */
    p2 = 0;
    put_rec(bad, &p2, 3, 1, Q1, "x");
    assert_int_equal(journal_parse(bad, p2, NULL, NULL), 0);
    p2 = 0;
    put_rec(bad, &p2, JOURNAL_REC_GONE, 1, Q1, "x");
    assert_int_equal(journal_parse(bad, p2, NULL, NULL), 0);
    /* a length beyond the image or the limit, crc recomputed to match */
    unsigned char hdr[JOURNAL_HDR_LEN];
    journal_encode_header(hdr, JOURNAL_REC_MESSAGE, 1, Q3, "", 0);
    hdr[8] = 0xff;
    hdr[9] = 0xff;
    hdr[10] = 0xff;
    hdr[11] = 0x7f;
    assert_int_equal(journal_parse(hdr, sizeof(hdr), NULL, NULL), 0);
    /* tiny and empty images */
    assert_int_equal(journal_parse(img, 0, NULL, NULL), 0);
    assert_int_equal(journal_parse(img, JOURNAL_HDR_LEN - 1, NULL, NULL), 0);
    /* garbage */
    for (size_t i = 0; i < sizeof(bad); i++)
        bad[i] = (unsigned char)(i * 131 + 7);
    assert_int_equal(journal_parse(bad, sizeof(bad), NULL, NULL), 0);
    memcpy(bad, "SJR1", 4);
    assert_int_equal(journal_parse(bad, sizeof(bad), NULL, NULL), 0);
}

static void test_checkpoint_slots(void **state)
{
    unsigned char img[2 * JOURNAL_CKPT_SLOT];
    memset(img, 0, sizeof(img));
    assert_int_equal(journal_parse_checkpoint(img, sizeof(img)), 0);   /* new */
    journal_encode_checkpoint(img, 41);
    journal_encode_checkpoint(img + JOURNAL_CKPT_SLOT, 42);
    assert_int_equal(journal_parse_checkpoint(img, sizeof(img)), 42);
    /* a torn newer slot: the other one counts */
    img[JOURNAL_CKPT_SLOT + 9] ^= 1;
    assert_int_equal(journal_parse_checkpoint(img, sizeof(img)), 41);
    assert_int_equal(journal_parse_checkpoint(img, JOURNAL_CKPT_SLOT - 1), 0);
    assert_int_equal(journal_parse_checkpoint(img, 0), 0);
    memset(img, 0xff, sizeof(img));
    assert_int_equal(journal_parse_checkpoint(img, sizeof(img)), 0);
}

/* ---- replay ---------------------------------------------------------- */

static char spool[64];

static int setup_spool(void **state)
{
    strcpy(spool, "/tmp/sluice-journal-XXXXXX");
    assert_non_null(mkdtemp(spool));
    char q[128];
    snprintf(q, sizeof(q), "%s/queue", spool);
    assert_int_equal(mkdir(q, 0700), 0);
    return 0;
}

static int teardown_spool(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void qpath(char *out, size_t n, const char *qid)
{
    snprintf(out, n, "%s/queue/%s", spool, qid);
}

static void write_file(const char *qid, const char *data, size_t len)
{
    char p[128];
    qpath(p, sizeof(p), qid);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static char *read_file(const char *qid, size_t *len)
{
    char p[128];
    qpath(p, sizeof(p), qid);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return NULL;
    char *b = malloc(1 << 20);
    *len = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

static struct journal *open_journal(struct journal_replay_stats *st)
{
    bool fatal = true;
    char err[256] = "";
    struct journal *jr = journal_open(spool, st, &fatal, err, sizeof(err));
    if (jr == NULL)
        print_message("journal_open: %s\n", err);
    assert_non_null(jr);
    assert_false(fatal);
    return jr;
}

/* Run body(jr, arg) in a child that opened the journal, then let the
 * child die without the final checkpoint, as a crash would. body returns
 * 0, or the child's exit code when something failed. */
static void in_crashing_child(int (*body)(struct journal *jr, void *arg), void *arg)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct journal_replay_stats st;
        bool fatal;
        char err[256];
        struct journal *jr = journal_open(spool, &st, &fatal, err, sizeof(err));
        _exit(jr == NULL ? 3 : body(jr, arg));
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Write each file (what the spool does first) and commit it. */
static int commit_files(struct journal *jr, const struct journal_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        write_file(e[i].qid, e[i].data, e[i].len);
    return journal_commit(jr, e, n) != 0 ? 4 : 0;
}

struct crash_args {
    const struct journal_entry *e;
    size_t n;
    const char *forget;
};

static int commit_and_forget(struct journal *jr, void *arg)
{
    struct crash_args *c = arg;
    int rc = commit_files(jr, c->e, c->n);
    if (rc == 0 && c->forget)
        journal_forget(jr, c->forget);
    return rc;
}

/* Commit the messages (and forget one), then crash. */
static void crash_after(const struct journal_entry *e, size_t n, const char *forget)
{
    struct crash_args c = {e, n, forget};
    in_crashing_child(commit_and_forget, &c);
}

static const char M1[] = "SLUICE-QUEUE 1\nid 6B03CFA01C0C3000\ncontent\nhello\n\nend 36 6\n";
static const char M2[] = "SLUICE-QUEUE 1\nid 6B03CFA01C0D6000\ncontent\nworld\n\nend 36 6\n";
static const char M3[] = "SLUICE-QUEUE 1\nid 6B03CFA01C0E5000\ncontent\nthird\n\nend 36 6\n";

static void test_replay_restores(void **state)
{
    struct journal_entry e[3] = {
        {Q1, M1, sizeof(M1) - 1}, {Q2, M2, sizeof(M2) - 1}, {Q3, M3, sizeof(M3) - 1}};
    crash_after(e, 3, NULL);
    /* the crash lost Q1's file, tore Q2's, Q3's survived */
    char p[128];
    qpath(p, sizeof(p), Q1);
    assert_int_equal(unlink(p), 0);
    qpath(p, sizeof(p), Q2);
    assert_int_equal(truncate(p, 20), 0);
    struct journal_replay_stats st;
    char err[256];
    assert_int_equal(journal_replay(spool, &st, err, sizeof(err)), 0);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.restored, 2);
    size_t len;
    char *b = read_file(Q1, &len);
    assert_non_null(b);
    assert_int_equal(len, sizeof(M1) - 1);
    assert_memory_equal(b, M1, len);
    free(b);
    b = read_file(Q2, &len);
    assert_int_equal(len, sizeof(M2) - 1);
    assert_memory_equal(b, M2, len);
    free(b);
    /* replayed and checkpointed: a second replay has nothing to do, and
     * a message delivered since does not come back */
    qpath(p, sizeof(p), Q3);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(journal_replay(spool, &st, err, sizeof(err)), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(access(p, F_OK), -1);
}

static void test_gone_not_revived(void **state)
{
    struct journal_entry e[2] = {{Q1, M1, sizeof(M1) - 1}, {Q2, M2, sizeof(M2) - 1}};
    crash_after(e, 2, Q1);   /* Q1 delivered and removed before the crash */
    char p[128];
    qpath(p, sizeof(p), Q1);
    assert_int_equal(unlink(p), 0);
    qpath(p, sizeof(p), Q2);
    assert_int_equal(unlink(p), 0);
    struct journal_replay_stats st;
    struct journal *jr = open_journal(&st);   /* the server's start-up replay */
    assert_int_equal(st.records, 2);
    assert_int_equal(st.gone, 1);
    assert_int_equal(st.restored, 1);
    qpath(p, sizeof(p), Q1);
    assert_int_equal(access(p, F_OK), -1);
    qpath(p, sizeof(p), Q2);
    assert_int_equal(access(p, F_OK), 0);
    /* a second process cannot take the journal while it is open */
    char err[256];
    bool fatal = false;
    assert_null(journal_open(spool, &st, &fatal, err, sizeof(err)));
    assert_true(fatal);
    assert_non_null(strstr(err, "lock"));
    /* ...and an offline replay leaves it to the owner */
    assert_int_equal(journal_replay(spool, &st, err, sizeof(err)), 0);
    assert_int_equal(st.records, 0);
    journal_close(jr);
}

static void test_clean_close_checkpoints(void **state)
{
    struct journal_replay_stats st;
    struct journal *jr = open_journal(&st);
    struct journal_entry e = {Q1, M1, sizeof(M1) - 1};
    write_file(Q1, M1, sizeof(M1) - 1);
    assert_int_equal(journal_commit(jr, &e, 1), 0);
    journal_close(jr);
    char p[128];
    qpath(p, sizeof(p), Q1);
    assert_int_equal(unlink(p), 0);   /* e.g. `sluice queue delete` offline */
    jr = open_journal(&st);
    assert_int_equal(st.records, 0);
    assert_int_equal(access(p, F_OK), -1);
    /* bad entries are refused */
    struct journal_entry badq = {"short", M1, 3};
    assert_int_equal(journal_commit(jr, &badq, 1), EINVAL);
    assert_int_equal(journal_commit(jr, &e, 0), 0);
    journal_close(jr);
}

/* Gone records beyond the zero-filled part of a segment, then a commit:
 * growing the segment must not zero what is already written (the walk
 * would stop there and never reach the commit). */
static int commit_forget_commit(struct journal *jr, void *arg)
{
    struct journal_entry e1 = {Q1, M1, sizeof(M1) - 1}, e2 = {Q2, M2, sizeof(M2) - 1};
    (void)arg;
    if (commit_files(jr, &e1, 1) != 0)
        return 4;
    for (int i = 0; i < 40000; i++)          /* 1.6 MB of gone records */
        journal_forget(jr, Q3);
    return commit_files(jr, &e2, 1) != 0 ? 5 : 0;
}

static void test_forget_across_extension(void **state)
{
    in_crashing_child(commit_forget_commit, NULL);
    char p[128];
    qpath(p, sizeof(p), Q2);
    assert_int_equal(unlink(p), 0);
    struct journal_replay_stats st;
    char err[256];
    assert_int_equal(journal_replay(spool, &st, err, sizeof(err)), 0);
    assert_int_equal(st.records, 2);
    assert_int_equal(st.restored, 1);
    assert_int_equal(access(p, F_OK), 0);
}

/* A batch larger than one pwritev can take (IOV_MAX iovecs). */
static void test_big_batch(void **state)
{
    enum { N = 700 };
    struct journal_entry e[N];
    static char qids[N][17];
    for (int i = 0; i < N; i++) {
        snprintf(qids[i], sizeof(qids[i]), "6B03CFA1%08X", i);
        e[i] = (struct journal_entry){qids[i], M1, sizeof(M1) - 1};
    }
    crash_after(e, N, NULL);
    for (int i = 0; i < N; i += 7) {
        char p[128];
        qpath(p, sizeof(p), qids[i]);
        assert_int_equal(unlink(p), 0);
    }
    struct journal_replay_stats st;
    char err[256];
    assert_int_equal(journal_replay(spool, &st, err, sizeof(err)), 0);
    assert_int_equal(st.records, N);
    assert_int_equal(st.restored, (N + 6) / 7);
}

/* Removals alone rotate the ring too: a segment never grows without end. */
static void test_forget_only_rotates(void **state)
{
    struct journal_replay_stats st;
    struct journal *jr = open_journal(&st);
    size_t n = JOURNAL_SEGMENT_MAX / JOURNAL_HDR_LEN + 20000;
    for (size_t i = 0; i < n; i++)
        journal_forget(jr, Q3);
    journal_close(jr);
    char p[128];
    struct stat s0, s1;
    snprintf(p, sizeof(p), "%s/journal/seg.0", spool);
    assert_int_equal(stat(p, &s0), 0);
    snprintf(p, sizeof(p), "%s/journal/seg.1", spool);
    assert_int_equal(stat(p, &s1), 0);
    assert_true((uint64_t)s0.st_size <= JOURNAL_SEGMENT_MAX + (1u << 20));
    assert_true(s1.st_size > 0);
}

/* The newest checkpoint in spool/journal/checkpoint (0: none). */
static uint64_t checkpoint_now(void)
{
    char p[128];
    unsigned char img[4 * JOURNAL_CKPT_SLOT];
    snprintf(p, sizeof(p), "%s/journal/checkpoint", spool);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, img, sizeof(img));
    close(fd);
    return n > 0 ? journal_parse_checkpoint(img, (size_t)n) : 0;
}

/* A segment whose messages all left the queue is freed and checkpointed
 * without any queue file ever being written. */
static void test_gone_segment_freed_without_files(void **state)
{
    struct journal_replay_stats st;
    struct journal *jr = open_journal(&st);
    struct journal_entry e = {Q1, M1, sizeof(M1) - 1};
    assert_int_equal(journal_commit(jr, &e, 1), 0);
    journal_forget(jr, Q1);
    size_t n = JOURNAL_SEGMENT_MAX / JOURNAL_HDR_LEN + 10;   /* closes seg.0 */
    for (size_t i = 0; i < n; i++)
        journal_forget(jr, Q3);
    for (int i = 0; i < 500 && checkpoint_now() == 0; i++)
        usleep(10000);
    assert_true(checkpoint_now() >= 1);
    char p[128];
    qpath(p, sizeof(p), Q1);
    assert_int_equal(access(p, F_OK), -1);
    size_t resident;
    uint64_t materialized;
    journal_counts(jr, &resident, &materialized);
    assert_int_equal(resident, 0);
    assert_int_equal(materialized, 0);
    journal_close(jr);
}

/* A committed message is resident: no queue file, its bytes readable
 * through journal_open_resident, until it leaves the queue; a clean close
 * writes the queue files of those still resident. */
static void test_resident_until_close(void **state)
{
    struct journal_replay_stats st;
    struct journal *jr = open_journal(&st);
    struct journal_entry e[2] = {{Q1, M1, sizeof(M1) - 1}, {Q2, M2, sizeof(M2) - 1}};
    assert_int_equal(journal_commit(jr, e, 2), 0);
    char p[128];
    qpath(p, sizeof(p), Q1);
    assert_int_equal(access(p, F_OK), -1);
    struct journal_resident r;
    assert_int_equal(journal_open_resident(jr, Q1, &r), 1);
    assert_int_equal(r.len, sizeof(M1) - 1);
    char buf[128];
    assert_int_equal(pread(r.fd, buf, r.len, (off_t)r.off), (ssize_t)r.len);
    assert_memory_equal(buf, M1, r.len);
    journal_close_resident(jr, &r);
    assert_int_equal(r.fd, -1);
    assert_int_equal(journal_open_resident(jr, Q3, &r), 0);   /* unknown */
    assert_int_equal(journal_open_resident(NULL, Q1, &r), 0);
    journal_forget(jr, Q1);
    assert_int_equal(journal_open_resident(jr, Q1, &r), 0);
    journal_close(jr);
    assert_int_equal(access(p, F_OK), -1);          /* left the queue: no file */
    size_t len;
    char *b = read_file(Q2, &len);                   /* still queued: its file */
    assert_non_null(b);
    assert_int_equal(len, sizeof(M2) - 1);
    assert_memory_equal(b, M2, len);
    free(b);
    jr = open_journal(&st);
    assert_int_equal(st.records, 0);                 /* nothing left to replay */
    journal_close(jr);
}

/* A journal that exists but cannot be used stops the start (it may hold
 * accepted mail); a new spool where none can be made only loses speed. */
static void test_unusable_journal_is_fatal(void **state)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/journal", spool);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/journal/checkpoint", spool);
    assert_int_equal(mkdir(p, 0700), 0);     /* cannot be opened as a file */
    struct journal_replay_stats st;
    bool fatal = false;
    char err[256];
    assert_null(journal_open(spool, &st, &fatal, err, sizeof(err)));
    assert_true(fatal);
    assert_non_null(strstr(err, "checkpoint"));
    assert_int_equal(journal_replay(spool, &st, err, sizeof(err)), -1);
}

/* Started as root, files written back belong to the owner of queue/ (the
 * mail_owner the server runs as after start-up). */
static void test_restored_file_owner(void **state)
{
    if (geteuid() != 0) {
        print_message("not root: ownership not tested\n");
        return;
    }
    char q[128];
    snprintf(q, sizeof(q), "%s/queue", spool);
    assert_int_equal(chown(q, 65534, 65534), 0);
    struct journal_entry e = {Q1, M1, sizeof(M1) - 1};
    crash_after(&e, 1, NULL);
    char p[128];
    qpath(p, sizeof(p), Q1);
    assert_int_equal(unlink(p), 0);
    struct journal_replay_stats st;
    struct journal *jr = open_journal(&st);
    assert_int_equal(st.restored, 1);
    struct stat f;
    assert_int_equal(stat(p, &f), 0);
    assert_int_equal(f.st_uid, 65534);
    assert_int_equal(f.st_gid, 65534);
    snprintf(p, sizeof(p), "%s/journal/seg.0", spool);
    assert_int_equal(stat(p, &f), 0);
    assert_int_equal(f.st_uid, 65534);
    journal_close(jr);
}

struct big_args {
    const char *payload;
    size_t size, n;
};

/* n commits of one big message each (message i's bytes start with i),
 * none leaving the queue; a full ring (queue files still being written)
 * is waited out, as the spool would sync that one the classic way */
static int commit_big_ones(struct journal *jr, void *arg)
{
    struct big_args *b = arg;
    char *payload = malloc(b->size);
    for (size_t i = 0; i < b->n; i++) {
        char qid[17];
        snprintf(qid, sizeof(qid), "6B03CFA0%08zX", i);
        memcpy(payload, b->payload, b->size);
        memcpy(payload, &i, sizeof(i));
        struct journal_entry e = {qid, payload, b->size};
        int rc = journal_commit(jr, &e, 1);
        while (rc == EAGAIN) {
            usleep(10000);
            rc = journal_commit(jr, &e, 1);
        }
        if (rc != 0)
            return 4;
    }
    size_t resident;
    uint64_t materialized;
    journal_counts(jr, &resident, &materialized);
    free(payload);
    /* the ring made room by writing the oldest messages' files */
    return materialized > 0 && resident + materialized == b->n ? 0 : 5;
}

/* More records than the ring holds, none leaving the queue: the oldest
 * segments' messages get queue files and their segments are reused, and
 * after a crash the replay writes the files of the rest: every message is
 * in queue/, whole. */
static void test_rotation(void **state)
{
    size_t big = 256 * 1024, n = JOURNAL_SEGMENTS * (JOURNAL_SEGMENT_MAX / big) + 10;
    char *payload = malloc(big);
    memset(payload, 'm', big);
    struct big_args args = {payload, big, n};
    in_crashing_child(commit_big_ones, &args);
    for (int i = 0; i < JOURNAL_SEGMENTS; i++) {
        char p[128];
        struct stat stt;
        snprintf(p, sizeof(p), "%s/journal/seg.%d", spool, i);
        assert_int_equal(stat(p, &stt), 0);
        assert_true(stt.st_size > 0);
    }
    struct journal_replay_stats st;
    char err[256];
    assert_int_equal(journal_replay(spool, &st, err, sizeof(err)), 0);
    assert_true(st.records >= 1 && st.records < n);   /* older ones checkpointed */
    /* (files written just before the crash match their records) */
    assert_true(st.restored > 0 && st.restored <= st.records);
    for (size_t i = 0; i < n; i++) {
        char qid[17];
        snprintf(qid, sizeof(qid), "6B03CFA0%08zX", i);
        size_t len;
        char *b = read_file(qid, &len);
        assert_non_null(b);
        assert_int_equal(len, big);
        memcpy(payload, &i, sizeof(i));
        assert_memory_equal(b, payload, big);
        free(b);
    }
    free(payload);
}

/* A reader holds the oldest segment: the ring may write that message's
 * file but must not reuse the segment (commits wait: EAGAIN) until the
 * reader lets go; the bytes it reads never change. */
static int pin_oldest(struct journal *jr, void *arg)
{
    (void)arg;
    size_t big = 256 * 1024;
    char *payload = malloc(big);
    memset(payload, 'A', big);
    struct journal_entry e = {Q1, payload, big};
    if (journal_commit(jr, &e, 1) != 0)
        return 4;
    struct journal_resident r;
    if (journal_open_resident(jr, Q1, &r) != 1)
        return 5;
    memset(payload, 'b', big);
    size_t i = 0, eagain = 0;
    for (; i < 2 * JOURNAL_SEGMENTS * (JOURNAL_SEGMENT_MAX / big) && eagain < 100; i++) {
        char qid[17];
        snprintf(qid, sizeof(qid), "6B03CFA2%08zX", i);
        e = (struct journal_entry){qid, payload, big};
        int rc = journal_commit(jr, &e, 1);
        if (rc == EAGAIN) {
            eagain++;
            usleep(10000);
            continue;
        }
        if (rc != 0)
            return 6;
        journal_forget(jr, qid);   /* delivered at once */
    }
    if (eagain < 100)
        return 7;                  /* the ring went through the held segment */
    char *got = malloc(big);
    if (pread(r.fd, got, big, (off_t)r.off) != (ssize_t)big || memchr(got, 'b', big))
        return 8;
    journal_close_resident(jr, &r);
    int rc = EAGAIN;
    for (int k = 0; k < 500 && rc == EAGAIN; k++) {
        usleep(10000);
        e = (struct journal_entry){"6B03CFA3FFFFFFFF", payload, big};
        rc = journal_commit(jr, &e, 1);
    }
    free(got);
    free(payload);
    return rc == 0 ? 0 : 9;
}

static void test_held_segment_not_reused(void **state)
{
    in_crashing_child(pin_oldest, NULL);
    size_t len;
    char *b = read_file(Q1, &len);      /* written when the ring ran short */
    assert_non_null(b);
    assert_int_equal(len, 256 * 1024);
    assert_int_equal(b[0], 'A');
    free(b);
}

/* a test on a fresh spool directory */
#define SPOOL_TEST(f) cmocka_unit_test_setup_teardown(f, setup_spool, teardown_spool)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hostile_records),
        cmocka_unit_test(test_checkpoint_slots),
        SPOOL_TEST(test_replay_restores),
        SPOOL_TEST(test_gone_not_revived),
        SPOOL_TEST(test_clean_close_checkpoints),
        SPOOL_TEST(test_forget_across_extension),
        SPOOL_TEST(test_big_batch),
        SPOOL_TEST(test_forget_only_rotates),
        SPOOL_TEST(test_gone_segment_freed_without_files),
        SPOOL_TEST(test_resident_until_close),
        SPOOL_TEST(test_held_segment_not_reused),
        SPOOL_TEST(test_unusable_journal_is_fatal),
        SPOOL_TEST(test_restored_file_owner),
        SPOOL_TEST(test_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
