/*
 * maildir.c - Maildir delivery (see maildir.h). Unique names follow the
 * Maildir convention "SECONDS.MUSECPPIDQCOUNTER.HOST".
 */
#include "delivery/maildir.h"
#include "lib/fsutil.h"
#include "lib/strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MD_COPY_CHUNK 65536

int maildir_safe_name(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    if (in[0] == '\0' || in[0] == '.')
        return -1;
    for (const char *p = in; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (o + 4 >= outlen)
            return -1;
        if (c == '/' || c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            o += (size_t)snprintf(out + o, outlen - o, "%%%02X", c);
            continue;
        }
        out[o++] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    out[o] = '\0';
    return 0;
}


static int fail(struct maildir_job *j, int err, const char *what)
{
    j->status = err ? err : EIO;
    snprintf(j->error, sizeof(j->error), "%s: %s", what, strerror(j->status));
    return -1;
}

/* Copy the message body converting CRLF to LF (a CR whose LF is in the
 * next chunk is carried over in `cr`). */
static int copy_content(struct maildir_job *j, int in, int out)
{
    char buf[MD_COPY_CHUNK], obuf[MD_COPY_CHUNK + 1];
    uint64_t left = j->content_length;
    off_t off = (off_t)j->content_offset;
    bool cr = false;
    while (left > 0) {
        size_t want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
        ssize_t r = pread(in, buf, want, off);
        if (r <= 0) {
            if (r == 0)
                errno = EIO; /* the queue file is shorter than its record says */
            return -1;
        }
        size_t o = 0;
        for (ssize_t i = 0; i < r; i++) {
            if (cr && buf[i] != '\n')
                obuf[o++] = '\r';
            cr = buf[i] == '\r';
            if (!cr)
                obuf[o++] = buf[i];
        }
        if (fs_write_all(out, obuf, o) < 0)
            return -1;
        off += r;
        left -= (uint64_t)r;
    }
    if (cr && fs_write_all(out, "\r", 1) < 0)
        return -1;
    return 0;
}

static void unique_name(const char *host, char *out, size_t len)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static unsigned long counter;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    pthread_mutex_lock(&lock);
    unsigned long n = ++counter;
    pthread_mutex_unlock(&lock);
    snprintf(out, len, "%ld.M%ldP%ldQ%lu.%s", (long)tv.tv_sec, (long)tv.tv_usec,
             (long)getpid(), n, host);
}

void maildir_deliver(struct maildir_job *j)
{
    char local[200], domain[300], dir[600], sub[700], tmpf[800], newf[800], name[300];
    const char *at = strrchr(j->recipient, '@');
    j->status = 0;
    j->permanent = 0;
    char lp[200];
    size_t ln = at ? (size_t)(at - j->recipient) : strlen(j->recipient);
    if (ln >= sizeof(lp))
        ln = sizeof(lp) - 1;
    memcpy(lp, j->recipient, ln);
    lp[ln] = '\0';
    if (maildir_safe_name(lp, local, sizeof(local)) < 0 ||
        maildir_safe_name(at ? at + 1 : "localhost", domain, sizeof(domain)) < 0) {
        j->permanent = 1;
        fail(j, EINVAL, "mailbox name cannot be mapped to a directory");
        return;
    }
    snprintf(dir, sizeof(dir), "%s/%s/%s", j->base, domain, local);
    static const char *const subs[] = {"tmp", "new", "cur"};
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
        if (fs_mkdir_p(sub, 0700) < 0) {
            fail(j, errno, "cannot create maildir");
            return;
        }
    }
    unique_name(j->hostname, name, sizeof(name));
    snprintf(tmpf, sizeof(tmpf), "%s/tmp/%s", dir, name);
    snprintf(newf, sizeof(newf), "%s/new/%s", dir, name);
    int in = j->queue_fd;
    int out = open(tmpf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        fail(j, errno, "cannot create maildir file");
        return;
    }
    char hdr[1200];
    int hn = snprintf(hdr, sizeof(hdr), "Return-Path: <%s>\nDelivered-To: %s\n",
                      j->sender, j->recipient);
    int rc = fs_write_all(out, hdr, (size_t)hn) < 0 ? -1 : copy_content(j, in, out);
    if (rc == 0 && fsync(out) < 0)
        rc = -1;
    int err = errno;
    if (close(out) < 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc == 0 && rename(tmpf, newf) < 0) {
        rc = -1;
        err = errno;
    }
    if (rc == 0) {
        snprintf(sub, sizeof(sub), "%s/new", dir);
        int dfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0) {
            rc = -1;
            err = errno;
        }
        if (dfd >= 0)
            close(dfd);
    }
    if (rc < 0) {
        unlink(tmpf);
        fail(j, err, "maildir write failed");
        return;
    }
    str_copy(j->path, newf, sizeof(j->path));
}
