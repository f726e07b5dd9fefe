/*
 * report_input.c - read the logs: files (plain or gzip, through zlib),
 * or stdin; several files are put in time order first (maillog.2.gz,
 * maillog.1, maillog). Lines are bounded (RP_LINE_MAX; longer ones are cut
 * and counted), NUL bytes are replaced, and a progress line goes to stderr
 * when it is a terminal.
 */
#include "tools/report.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define RPI_CHUNK (256 * 1024)
#define RPI_PEEK_LINES 200

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
    struct timespec last;
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
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt = (double)(now.tv_sec - p->last.tv_sec) +
                (double)(now.tv_nsec - p->last.tv_nsec) / 1e9;
    if (!final && dt < 0.5)
        return;
    p->last = now;
    fprintf(stderr, "\rsluice report: %llu lines, %llu MB, %zu messages open   ",
            (unsigned long long)c->lst.lines, (unsigned long long)(p->bytes >> 20),
            dict_count(&c->open));
    p->shown = true;
}

/* Feed a line of n bytes at s (s[n] is writable). */
static void feed(struct rp_ctx *c, char *s, size_t n)
{
    if (n > RP_LINE_MAX) {
        c->lst.cut++;
        n = RP_LINE_MAX;
    }
    if (n > 0 && s[n - 1] == '\r')
        n--;
    s[n] = '\0';
    for (char *p = memchr(s, '\0', n); p; p = memchr(p, '\0', n - (size_t)(p - s)))
        *p = '?';
    rp_feed_line(c, s, n);
}

static int read_one(struct rp_ctx *c, const char *path, struct rpi_progress *pr)
{
    int fd = open_plain(path);
    gzFile gz = fd >= 0 ? NULL : open_gz(path);
    if (fd < 0 && gz == NULL) {
        fprintf(stderr, "sluice report: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    if (gz)
        gzbuffer(gz, 128 * 1024);
    char *buf = xmalloc(RPI_CHUNK + RP_LINE_MAX + 2);
    size_t have = 0;
    bool skipping = false;
    int rc = 0;
    for (;;) {
        int n = read_some(fd, gz, buf + have, RPI_CHUNK);
        if (n < 0) {
            int err;
            fprintf(stderr, "sluice report: %s: read error: %s (the rest of the file "
                    "is skipped)\n", path, gz ? gzerror(gz, &err) : strerror(errno));
            rc = 0;
            break;
        }
        if (n == 0) {
            if (have > 0 && !skipping)
                feed(c, buf, have);
            break;
        }
        pr->bytes += (uint64_t)n;
        have += (size_t)n;
        size_t start = 0;
        char *nl;
        while ((nl = memchr(buf + start, '\n', have - start)) != NULL) {
            size_t len = (size_t)(nl - (buf + start));
            if (skipping)
                skipping = false;
            else
                feed(c, buf + start, len);
            start += len + 1;
            if ((c->lst.lines & 0x3ffff) == 0)
                progress(c, pr, false);
        }
        have -= start;
        memmove(buf, buf + start, have);
        if (have > RP_LINE_MAX) {
            if (!skipping) {
                c->lst.cut++;
                feed(c, buf, RP_LINE_MAX);
                skipping = true;
            }
            have = 0;
        }
    }
    free(buf);
    if (gz)
        gzclose(gz);
    else
        close(fd);
    return rc;
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
    struct rpi_progress pr = {.on = c->o->progress || isatty(STDERR_FILENO)};
    clock_gettime(CLOCK_MONOTONIC, &pr.last);
    int rc = 0;
    for (int i = 0; i < nfiles && rc == 0; i++)
        rc = read_one(c, f[i].path, &pr);
    if (pr.shown) {
        progress(c, &pr, true);
        fputc('\n', stderr);
    }
    c->lst.bytes = pr.bytes;
    free(f);
    return rc;
}
