/*
 * test_fsutil.c - the shared file helpers: mkdir -p, whole writes at the
 * file position and at an offset, whole-file reads with a size limit.
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
#include <unistd.h>

#include "lib/fsutil.h"

static int tmpfile_fd(char *path)
{
    strcpy(path, "/tmp/sluice-fsutil-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    return fd;
}

static void test_write_read(void **state)
{
    char path[64];
    int fd = tmpfile_fd(path);
    static char big[300000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(fs_write_all(fd, big, sizeof(big)), 0);
    assert_int_equal(fs_pwrite_all(fd, "XYZ", 3, 10), 0);     /* in place */
    assert_int_equal(fs_pwrite_all(fd, "END", 3, sizeof(big)), 0);   /* grows */
    char *b;
    size_t len;
    assert_int_equal(fs_read_fd(fd, 1 << 20, &b, &len), 0);
    assert_int_equal(len, sizeof(big) + 3);
    assert_memory_equal(b, big, 10);
    assert_memory_equal(b + 10, "XYZ", 3);
    assert_memory_equal(b + 13, big + 13, sizeof(big) - 13);
    assert_memory_equal(b + sizeof(big), "END", 3);
    assert_int_equal(b[len], '\0');
    free(b);
    /* over the limit */
    assert_int_equal(fs_read_fd(fd, 1000, &b, &len), -1);
    assert_int_equal(errno, EFBIG);
    assert_null(b);
    /* empty */
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(fs_read_fd(fd, 10, &b, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(b[0], '\0');
    free(b);
    close(fd);
    unlink(path);
    /* a bad descriptor reports its errno */
    assert_int_equal(fs_write_all(fd, "x", 1), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(fs_pwrite_all(fd, "x", 1, 0), -1);
    assert_int_equal(fs_read_fd(fd, 10, &b, &len), -1);
}

static void test_mkdir_p(void **state)
{
    char dir[] = "/tmp/sluice-fsutil-dir-XXXXXX", deep[128];
    assert_non_null(mkdtemp(dir));
    snprintf(deep, sizeof(deep), "%s/a/b/c", dir);
    assert_int_equal(fs_mkdir_p(deep, 0700), 0);
    assert_int_equal(fs_mkdir_p(deep, 0700), 0);      /* exists: fine */
    struct stat st;
    assert_int_equal(stat(deep, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    char longp[1100];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(fs_mkdir_p(longp, 0700), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_read),
        cmocka_unit_test(test_mkdir_p),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
