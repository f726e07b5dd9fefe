/*
 * fsutil.c - file-system helpers (see fsutil.h).
 */
#include "lib/fsutil.h"
#include "lib/strutil.h"

#include <errno.h>
#include <sys/stat.h>

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
