/*
 * fsutil.c - file-system helpers (see fsutil.h).
 */
#include "lib/fsutil.h"
#include "lib/strutil.h"

#include "lib/xalloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, mode_t mode)
{
    char tmp[1024];
    if (str_copy(tmp, path, sizeof(tmp)) >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* off < 0: at the file position */
static int write_loop(int fd, const char *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t w = off < 0 ? write(fd, p, n) : pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        if (off >= 0)
            off += w;
    }
    return 0;
}

int fs_write_all(int fd, const void *p, size_t n)
{
    return write_loop(fd, p, n, -1);
}

int fs_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    return write_loop(fd, p, n, off);
}

int fs_read_fd(int fd, size_t max, char **out, size_t *len)
{
    struct stat st;
    *out = NULL;
    *len = 0;
    if (fstat(fd, &st) < 0)
        return -1;
    if (st.st_size < 0 || (uint64_t)st.st_size > max) {
        errno = EFBIG;
        return -1;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *b = xmalloc(size + 1);
    while (got < size) {
        ssize_t r = pread(fd, b + got, size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(b);
            return -1;
        }
        if (r == 0)
            break;          /* shrank meanwhile: what is there */
        got += (size_t)r;
    }
    b[got] = '\0';
    *out = b;
    *len = got;
    return 0;
}
