/*
 * fsutil.h - small file-system helpers shared by the spool, Maildir
 * delivery and the greylist store.
 */
#ifndef SLUICE_FSUTIL_H
#define SLUICE_FSUTIL_H

#include <sys/types.h>

/* mkdir -p: create path and its missing parents with `mode`. 0, or -1
 * with errno (ENAMETOOLONG for paths over 1023 bytes). */
int fs_mkdir_p(const char *path, mode_t mode);

#endif
