/*
 * report_input.c - read the logs: files (plain or gzip, through zlib),
 * or stdin; several files are put in time order first (maillog.2.gz,
 * maillog.1, maillog). Lines are bounded (RP_LINE_MAX; longer ones are cut
 * and counted), NUL bytes are replaced, and a progress line goes to stderr
 * when it is a terminal.
 *
 * Two stages on two threads when the machine has two cores: this thread
 * reads and parses lines into batches of events (each batch owns the input
 * chunk its events point into); a second thread joins them into journeys
 * and accounts them. Batches circulate through two bounded queues, so
 * memory stays fixed. --trace, one core, or SLUICE_REPORT_THREADS=1 run
 * everything on one thread, line by line.
 */
#include "tools/report.h"
#include "lib/clock.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define RPI_CHUNK (256 * 1024)
#define RPI_PEEK_LINES 200
#define RPI_EVENTS 1024          /* journey events per batch */
#define RPI_BATCHES 4
#define RPI_BUF (2 * RPI_CHUNK + RP_LINE_MAX + 2)
#define RPI_SPIN 4000            /* pauses (~0.1-0.5 ms) before sleeping */

struct rpi_batch {
    char *buf;                   /* the input the events point into */
    size_t len;
    struct rp_ev *ev;
    size_t nev;
    bool last;                   /* end of input */
};

struct rpi_queue {
    struct rpi_batch *v[RPI_BATCHES];
    size_t head;
    _Atomic size_t n;            /* changed under the lock, peeked without */
    pthread_cond_t cv;
    int waiting;                 /* threads asleep on cv */
};

struct rpi_pipe {
    struct rp_ctx *c;
    bool threaded, immediate;
    pthread_t th;
    pthread_mutex_t mu;
    struct rpi_queue full, free;
    struct rpi_batch b[RPI_BATCHES];
    struct rpi_batch *cur;       /* the batch being filled */
};

struct rpi_file {
    const char *path;
    int64_t first_ts;
    bool full, has_ts;
    time_t mtime;
    long rot;          /* rotation number: maillog.2 -> 2, maillog -> -1 */
    int argpos;
};

struct rpi_progress {
    bool on, shown;
    uint64_t last_us;
    uint64_t bytes;
};

static gzFile open_gz(const char *path)
{
    if (strcmp(path, "-") == 0)
        return gzdopen(dup(STDIN_FILENO), "rb");
    return gzopen(path, "rb");
}

/* A plain (not gzip) regular file is read with read(2): no extra copy. */
static int open_plain(const char *path)
{
    if (strcmp(path, "-") == 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    unsigned char magic[2];
    if (pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read up to n bytes from the plain fd or the gzip stream. */
static int read_some(int fd, gzFile gz, char *buf, unsigned n)
{
    if (fd >= 0) {
        ssize_t r;
        do
            r = read(fd, buf, n);
        while (r < 0 && errno == EINTR);
        return (int)r;
    }
    return gzread(gz, buf, n);
}

/* "maillog.2.gz" -> 2; "maillog" -> -1 */
static long rotation_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *p = strchr(base, '.');
    while (p) {
        char *end;
        long n = strtol(p + 1, &end, 10);
        if (end != p + 1 && (*end == '\0' || *end == '.'))
            return n;
        p = strchr(p + 1, '.');
    }
    return -1;
}

static void peek_file(struct rpi_file *f)
{
    gzFile gz = open_gz(f->path);
    if (gz == NULL)
        return;
    char line[1024];
    for (int i = 0; i < RPI_PEEK_LINES && gzgets(gz, line, sizeof(line)); i++)
        if (rpl_peek_ts(line, &f->first_ts, &f->full) == 0) {
            f->has_ts = true;
            break;
        }
    gzclose(gz);
}

static bool all_full;

static int file_cmp(const void *x, const void *y)
{
    const struct rpi_file *a = x, *b = y;
    if (all_full && a->has_ts && b->has_ts && a->first_ts != b->first_ts)
        return (a->first_ts > b->first_ts) - (a->first_ts < b->first_ts);
    if (!all_full && a->mtime != b->mtime)
        return (a->mtime > b->mtime) - (a->mtime < b->mtime);
    if (a->rot != b->rot)
        return (a->rot < b->rot) - (a->rot > b->rot);
    return a->argpos - b->argpos;
}

static void progress(struct rp_ctx *c, struct rpi_progress *p, bool final)
{
    if (!p->on)
        return;
    uint64_t now = clock_mono_us();
    if (!final && now - p->last_us < 500000)
        return;
    p->last_us = now;
    fprintf(stderr, "\rsluice report: %llu lines, %llu MB, %zu messages open   ",
            (unsigned long long)c->lst.lines, (unsigned long long)(p->bytes >> 20),
            atomic_load_explicit(&c->open_now, memory_order_relaxed));
    p->shown = true;
}

/* ---- the batch pipeline ----------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void q_push(struct rpi_queue *q, struct rpi_batch *b)
{
    q->v[(q->head + q->n++) % RPI_BATCHES] = b;
}

static struct rpi_batch *q_pop(struct rpi_queue *q)
{
    struct rpi_batch *b = q->v[q->head];
    q->head = (q->head + 1) % RPI_BATCHES;
    q->n--;
    return b;
}

/* Take a batch from queue q, waiting for one. The two stages run at
 * about the same speed, so the wait is mostly short: spin a little before
 * sleeping (a sleep and a wake-up cost more than a batch's hand-off
 * should, above all on virtual machines). */
static struct rpi_batch *take(struct rpi_pipe *p, struct rpi_queue *q)
{
    for (int i = 0; i < RPI_SPIN && atomic_load_explicit(&q->n, memory_order_acquire) == 0;
         i++)
        cpu_relax();
    pthread_mutex_lock(&p->mu);
    while (q->n == 0) {
        q->waiting++;
        pthread_cond_wait(&q->cv, &p->mu);
        q->waiting--;
    }
    struct rpi_batch *b = q_pop(q);
    pthread_mutex_unlock(&p->mu);
    return b;
}

static void give(struct rpi_pipe *p, struct rpi_queue *q, struct rpi_batch *b)
{
    pthread_mutex_lock(&p->mu);
    q_push(q, b);
    if (q->waiting)
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&p->mu);
}

/* The journeys' table lookups wait on memory: hash the names RPI_AHEAD
 * events early and prefetch their slots, then RPI_AHEAD2 events early the
 * records the slots point to. */
#define RPI_AHEAD 8
#define RPI_AHEAD2 4

static void run_batch(struct rp_ctx *c, struct rpi_batch *b)
{
    size_t n = b->nev;
    for (size_t i = 0; i < n && i < RPI_AHEAD; i++)
        rpj_ahead(c, &b->ev[i]);
    for (size_t i = 0; i < n && i < RPI_AHEAD2; i++)
        rpj_ahead2(c, &b->ev[i]);
    for (size_t i = 0; i < n; i++) {
        if (i + RPI_AHEAD < n)
            rpj_ahead(c, &b->ev[i + RPI_AHEAD]);
        if (i + RPI_AHEAD2 < n)
            rpj_ahead2(c, &b->ev[i + RPI_AHEAD2]);
        rpj_event(c, &b->ev[i]);
    }
    atomic_store_explicit(&c->open_now, c->open.n, memory_order_relaxed);
}

static void *journey_thread(void *arg)
{
    struct rpi_pipe *p = arg;
    for (;;) {
        struct rpi_batch *b = take(p, &p->full);
        bool last = b->last;
        run_batch(p->c, b);
        give(p, &p->free, b);
        if (last)
            return NULL;
    }
}

static bool want_threads(const struct rp_ctx *c)
{
    const char *env = getenv("SLUICE_REPORT_THREADS");
    if (env && strcmp(env, "1") == 0)
        return false;
    return c->o->trace == NULL && sysconf(_SC_NPROCESSORS_ONLN) > 1;
}

static void pipe_start(struct rpi_pipe *p, struct rp_ctx *c)
{
    memset(p, 0, sizeof(*p));
    p->c = c;
    p->immediate = c->o->trace != NULL;
    for (int i = 0; i < RPI_BATCHES; i++) {
        p->b[i].buf = xmalloc(RPI_BUF);
        p->b[i].ev = xmalloc(RPI_EVENTS * sizeof(*p->b[i].ev));
        q_push(&p->free, &p->b[i]);
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->full.cv, NULL);
    pthread_cond_init(&p->free.cv, NULL);
    p->threaded = want_threads(c) &&
                  pthread_create(&p->th, NULL, journey_thread, p) == 0;
    p->cur = q_pop(&p->free);
    p->cur->len = p->cur->nev = 0;
}

/* Hand the current batch to the journeys and start a new one holding the
 * `keep` bytes at `from` (a partial line). */
static void pipe_flush(struct rpi_pipe *p, const char *from, size_t keep, bool last)
{
    struct rpi_batch *b = p->cur;
    b->last = last;
    struct rpi_batch *n;
    if (p->threaded) {
        give(p, &p->full, b);
        n = last ? NULL : take(p, &p->free);
    } else {
        run_batch(p->c, b);
        n = b;
    }
    if (n == NULL) {
        p->cur = NULL;
        return;
    }
    if (keep)
        memmove(n->buf, from, keep);
    n->len = keep;
    n->nev = 0;
    n->last = false;
    p->cur = n;
}

static void pipe_stop(struct rpi_pipe *p)
{
    if (p->cur)
        pipe_flush(p, NULL, 0, true);
    if (p->threaded) {
        pthread_join(p->th, NULL);
        p->threaded = false;
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->full.cv);
    pthread_cond_destroy(&p->free.cv);
    for (int i = 0; i < RPI_BATCHES; i++) {
        free(p->b[i].buf);
        free(p->b[i].ev);
    }
}

/* Parse a line of n bytes at s (s[n] is writable) into the current batch. */
static void feed(struct rpi_pipe *p, char *s, size_t n)
{
    struct rp_ctx *c = p->c;
    if (n > RP_LINE_MAX) {
        c->lst.cut++;
        n = RP_LINE_MAX;
    }
    if (n > 0 && s[n - 1] == '\r')
        n--;
    s[n] = '\0';        /* NUL bytes were replaced as the block was read */
    struct rpi_batch *b = p->cur;
    struct rp_ev *e = &b->ev[b->nev];
    if (!rp_parse_line(c, s, n, e))
        return;
    if (p->immediate)
        rpj_event(c, e);      /* --trace: the raw line goes with the event */
    else
        b->nev++;
}

static int read_one(struct rp_ctx *c, struct rpi_pipe *p, const char *path,
                    struct rpi_progress *pr)
{
    int fd = open_plain(path);
    gzFile gz = fd >= 0 ? NULL : open_gz(path);
    if (fd < 0 && gz == NULL) {
        fprintf(stderr, "sluice report: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    if (gz)
        gzbuffer(gz, 128 * 1024);
    bool skipping = false;
    for (;;) {
        struct rpi_batch *b = p->cur;
        int n = read_some(fd, gz, b->buf + b->len, RPI_CHUNK);
        if (n < 0) {
            int err;
            fprintf(stderr, "sluice report: %s: read error: %s (the rest of the file "
                    "is skipped)\n", path, gz ? gzerror(gz, &err) : strerror(errno));
            break;
        }
        if (n == 0) {
            if (b->len > 0 && !skipping)
                feed(p, b->buf, b->len);
            /* the next file must not overwrite what these events point to */
            if (b->nev > 0)
                pipe_flush(p, NULL, 0, false);
            else
                b->len = 0;
            break;
        }
        pr->bytes += (uint64_t)n;
        /* a NUL byte would end its line early: one scan per block */
        char *fresh = b->buf + b->len;
        for (char *q = memchr(fresh, '\0', (size_t)n); q;
             q = memchr(q, '\0', (size_t)n - (size_t)(q - fresh)))
            *q = '?';
        b->len += (size_t)n;
        size_t start = 0;
        char *nl;
        while ((nl = memchr(b->buf + start, '\n', b->len - start)) != NULL) {
            if (b->nev == RPI_EVENTS) {            /* full: go on in a new batch */
                pipe_flush(p, b->buf + start, b->len - start, false);
                b = p->cur;
                start = 0;
                continue;
            }
            size_t len = (size_t)(nl - (b->buf + start));
            if (skipping)
                skipping = false;
            else
                feed(p, b->buf + start, len);
            start += len + 1;
            if ((c->lst.lines & 0x3ffff) == 0)
                progress(c, pr, false);
        }
        size_t rest = b->len - start;
        if (rest > RP_LINE_MAX) {
            if (!skipping && b->nev < RPI_EVENTS) {
                c->lst.cut++;
                feed(p, b->buf + start, RP_LINE_MAX);
                skipping = true;
            }
            rest = 0;
        }
        if (b->nev > 0 || p->threaded)
            pipe_flush(p, b->buf + start, rest, false);
        else {
            memmove(b->buf, b->buf + start, rest);
            b->len = rest;
        }
    }
    if (gz)
        gzclose(gz);
    else
        close(fd);
    return 0;
}

static void set_reference(struct rp_ctx *c, const struct rpi_file *first)
{
    if (c->o->year) {
        c->year.year = c->o->year;
        c->year.fixed = true;
        return;
    }
    time_t ref = (first && first->mtime) ? first->mtime : time(NULL);
    struct tm tm;
    localtime_r(&ref, &tm);
    c->year.ref_year = tm.tm_year + 1900;
    c->year.ref_mon = tm.tm_mon + 1;
    c->year.year = c->year.ref_year;
}

int rpi_run(struct rp_ctx *c, char **files, int nfiles)
{
    static char *stdin_only[] = {"-"};
    if (nfiles == 0) {
        files = stdin_only;
        nfiles = 1;
    }
    struct rpi_file *f = xcalloc((size_t)nfiles, sizeof(*f));
    all_full = true;
    for (int i = 0; i < nfiles; i++) {
        f[i].path = files[i];
        f[i].argpos = i;
        f[i].rot = rotation_of(files[i]);
        struct stat st;
        if (strcmp(files[i], "-") != 0) {
            if (stat(files[i], &st) != 0) {
                fprintf(stderr, "sluice report: %s: %s\n", files[i], strerror(errno));
                free(f);
                return -1;
            }
            f[i].mtime = st.st_mtime;
            if (nfiles > 1)
                peek_file(&f[i]);
        }
        if (!f[i].full)
            all_full = false;
    }
    if (nfiles > 1)
        qsort(f, (size_t)nfiles, sizeof(*f), file_cmp);
    set_reference(c, &f[0]);
    struct rpi_progress pr = {.on = c->o->progress || isatty(STDERR_FILENO),
                              .last_us = clock_mono_us()};
    struct rpi_pipe p;
    pipe_start(&p, c);
    int rc = 0;
    for (int i = 0; i < nfiles && rc == 0; i++)
        rc = read_one(c, &p, f[i].path, &pr);
    pipe_stop(&p);
    if (pr.shown) {
        progress(c, &pr, true);
        fputc('\n', stderr);
    }
    c->lst.bytes = pr.bytes;
    free(f);
    return rc;
}
