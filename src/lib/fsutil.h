/*
 * fsutil.h - small file-system helpers shared by the spool and its
 * journal, Maildir delivery, the greylist store and migrate's state file.
 */
#ifndef SLUICE_FSUTIL_H
#define SLUICE_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p: create path and its missing parents with `mode`. 0, or -1
 * with errno (ENAMETOOLONG for paths over 1023 bytes). */
int fs_mkdir_p(const char *path, mode_t mode);

/* Write all n bytes (at the file position, or at `off`), going on after
 * short writes and EINTR. 0, or -1 with errno (EIO if the kernel took
 * nothing). */
int fs_write_all(int fd, const void *p, size_t n);
int fs_pwrite_all(int fd, const void *p, size_t n, off_t off);

/* Read a whole file from offset 0 into a new buffer (*out, NUL-terminated
 * for convenience, *len bytes, free() it). 0, or -1 with errno (EFBIG
 * when it is larger than max). An empty file gives a 1-byte buffer. */
int fs_read_fd(int fd, size_t max, char **out, size_t *len);

#endif
