/*
 * migrate_state.c - the resumable state file of `sluice migrate`.
 *
 * An append-only journal of text records, one per line:
 *   F KEY UIDVALIDITY1 UIDVALIDITY2   a folder pair (starts a new map)
 *   M KEY UID1 UID2                   source UID1 is destination UID2
 *   P KEY UIDL                        a POP3 message already copied
 *   Q KEY HIGHESTMODSEQ1              the source was in sync at this MODSEQ
 * KEY is the folder pair (or POP3 account) percent-encoded. A line counts
 * only when complete (ends in a newline), so a run killed mid-write loses
 * at most its last record; identity matching covers that gap. On open the
 * journal is compacted (written anew, fsync'd, renamed into place).
 * Records are appended in batches and fsync'd by mig_state_sync().
 */
#include "tools/migrate.h"
#include "lib/fsutil.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAGIC "sluice-migrate-state 1\n"

struct mst_folder {
    uint64_t uv1, uv2;
    uint64_t modseq1;           /* source HIGHESTMODSEQ when last in sync */
    struct dict map;            /* "uid1" -> (uintptr_t)uid2 */
};

struct mig_state {
    pthread_mutex_t lock;
    char *path;
    int fd;
    bool readonly, failed;
    struct dict folders;        /* key -> struct mst_folder */
    struct dict uidls;          /* key "\x01" uidl -> 1 */
    struct buf out;             /* records not yet written */
};

static void folder_free(void *p)
{
    struct mst_folder *f = p;
    dict_free(&f->map);
    free(f);
}

static void key_encode(const char *key, char *dst, size_t dstlen)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p && n + 4 < dstlen; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '%')
            n += (size_t)snprintf(dst + n, dstlen - n, "%%%02X", *p);
        else
            dst[n++] = (char)*p;
    }
    dst[n] = '\0';
}

static void key_decode(char *s)
{
    char *w = s;
    for (char *p = s; *p; p++) {
        unsigned v;
        if (*p == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &v) == 1) {
            *w++ = (char)v;
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
}

static struct mst_folder *folder_get(struct mig_state *st, const char *key, bool create)
{
    struct mst_folder *f = dict_get(&st->folders, key);
    if (f == NULL && create) {
        f = xcalloc(1, sizeof(*f));
        dict_init(&f->map, NULL);
        dict_set(&st->folders, key, f);
    }
    return f;
}

static void uidl_key(char *dst, size_t len, const char *key, const char *uidl)
{
    snprintf(dst, len, "%s\001%s", key, uidl);
}

/* ---------------------------------------------------------------------- */
/* loading                                                                 */

static void load_record(struct mig_state *st, char *line)
{
    char *save = NULL;
    char *type = strtok_r(line, " ", &save);
    char *key = strtok_r(NULL, " ", &save);
    char *a = strtok_r(NULL, " ", &save);
    char *b = strtok_r(NULL, " ", &save);
    uint64_t x, y;
    if (type == NULL || key == NULL || a == NULL)
        return;
    key_decode(key);
    if (strcmp(type, "F") == 0 && b && str_to_u64(a, &x) == 0 && str_to_u64(b, &y) == 0) {
        dict_del(&st->folders, key);
        struct mst_folder *f = folder_get(st, key, true);
        f->uv1 = x;
        f->uv2 = y;
    } else if (strcmp(type, "M") == 0 && b && str_to_u64(a, &x) == 0 &&
               str_to_u64(b, &y) == 0 && y <= UINT32_MAX) {
        struct mst_folder *f = folder_get(st, key, false);
        if (f)
            dict_set(&f->map, a, (void *)(uintptr_t)y);
    } else if (strcmp(type, "Q") == 0 && str_to_u64(a, &x) == 0) {
        struct mst_folder *f = folder_get(st, key, false);
        if (f)
            f->modseq1 = x;
    } else if (strcmp(type, "P") == 0) {
        char k[1200];
        uidl_key(k, sizeof(k), key, a);
        dict_set(&st->uidls, k, (void *)1);
    }
}

static int load_file(struct mig_state *st, char *err, size_t errlen)
{
    FILE *fp = fopen(st->path, "r");
    if (fp == NULL)
        return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool first = true;
    while ((n = getline(&line, &cap, fp)) > 0) {
        if (line[n - 1] != '\n')
            break;                      /* torn last record: ignore */
        line[n - 1] = '\0';
        if (first && strcmp(line, "sluice-migrate-state 1") != 0) {
            snprintf(err, errlen, "%s is not a sluice migrate state file", st->path);
            free(line);
            fclose(fp);
            errno = EINVAL;
            return -1;
        }
        if (!first)
            load_record(st, line);
        first = false;
    }
    free(line);
    fclose(fp);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* writing                                                                 */

static void put_folder(struct buf *b, const char *key, const struct mst_folder *f)
{
    char k[1200];
    key_encode(key, k, sizeof(k));
    buf_printf(b, "F %s %llu %llu\n", k, (unsigned long long)f->uv1,
               (unsigned long long)f->uv2);
    size_t pos = 0;
    const char *u1;
    void *u2;
    while (dict_next(&f->map, &pos, &u1, &u2))
        buf_printf(b, "M %s %s %lu\n", k, u1, (unsigned long)(uintptr_t)u2);
    if (f->modseq1)
        buf_printf(b, "Q %s %llu\n", k, (unsigned long long)f->modseq1);
}

static int fsync_dir(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Write the whole state anew and rename it into place. */
static int compact(struct mig_state *st)
{
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, STATE_MAGIC);
    size_t pos = 0;
    const char *key;
    void *val;
    while (dict_next(&st->folders, &pos, &key, &val))
        put_folder(&b, key, val);
    pos = 0;
    while (dict_next(&st->uidls, &pos, &key, &val)) {
        const char *sep = strchr(key, '\001');
        char k[1200], acct[1200];
        snprintf(acct, sizeof(acct), "%.*s", (int)(sep - key), key);
        key_encode(acct, k, sizeof(k));
        buf_printf(&b, "P %s %s\n", k, sep + 1);
    }
    char *tmp = xasprintf("%s.tmp", st->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 || fs_write_all(fd, b.data, b.len) < 0 || fsync(fd) < 0 ? -1 : 0;
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        rc = rename(tmp, st->path);
    if (rc == 0)
        fsync_dir(st->path);
    else
        unlink(tmp);
    free(tmp);
    buf_free(&b);
    return rc;
}

static int mkdirs_for(const char *path)
{
    char *copy = xstrdup(path);
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) < 0 && errno != EEXIST) {
            free(copy);
            return -1;
        }
        *p = '/';
    }
    free(copy);
    return 0;
}

struct mig_state *mig_state_open(const char *path, bool readonly, char *err, size_t errlen)
{
    struct mig_state *st = xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->path = xstrdup(path);
    st->fd = -1;
    st->readonly = readonly;
    dict_init(&st->folders, folder_free);
    dict_init(&st->uidls, NULL);
    buf_init(&st->out, 0);
    if (load_file(st, err, errlen) < 0) {
        if (errno != EINVAL)
            snprintf(err, errlen, "cannot read state file %s: %s", path, strerror(errno));
        mig_state_close(st);
        return NULL;
    }
    if (readonly)
        return st;
    if (mkdirs_for(path) < 0 || compact(st) < 0 ||
        (st->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cannot write state file %s: %s; fix: --statefile FILE in a "
                 "writable directory", path, strerror(errno));
        mig_state_close(st);
        return NULL;
    }
    return st;
}

void mig_state_close(struct mig_state *st)
{
    if (st == NULL)
        return;
    mig_state_sync(st);
    if (st->fd >= 0)
        close(st->fd);
    dict_free(&st->folders);
    dict_free(&st->uidls);
    buf_free(&st->out);
    pthread_mutex_destroy(&st->lock);
    free(st->path);
    free(st);
}

int mig_state_sync(struct mig_state *st)
{
    pthread_mutex_lock(&st->lock);
    int rc = 0;
    if (!st->readonly && st->fd >= 0 && st->out.len > 0) {
        if (fs_write_all(st->fd, st->out.data, st->out.len) < 0 || fdatasync(st->fd) < 0) {
            st->failed = true;
            rc = -1;
        }
        buf_reset(&st->out);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

bool mig_state_failed(const struct mig_state *st)
{
    return st->failed;
}

/* ---------------------------------------------------------------------- */
/* queries and records                                                     */

int mig_state_folder(struct mig_state *st, const char *key, uint64_t uv1, uint64_t uv2)
{
    pthread_mutex_lock(&st->lock);
    struct mst_folder *f = folder_get(st, key, false);
    int known = f != NULL;
    bool same = f && f->uv1 == uv1 && f->uv2 == uv2;
    if (!same) {
        dict_del(&st->folders, key);
        f = folder_get(st, key, true);
        f->uv1 = uv1;
        f->uv2 = uv2;
        char k[1200];
        key_encode(key, k, sizeof(k));
        if (!st->readonly)
            buf_printf(&st->out, "F %s %llu %llu\n", k, (unsigned long long)uv1,
                       (unsigned long long)uv2);
    }
    pthread_mutex_unlock(&st->lock);
    return same ? 1 : known ? -1 : 0;
}

uint32_t mig_state_lookup(struct mig_state *st, const char *key, uint32_t uid1)
{
    char u[16];
    snprintf(u, sizeof(u), "%u", uid1);
    pthread_mutex_lock(&st->lock);
    struct mst_folder *f = folder_get(st, key, false);
    uint32_t v = f ? (uint32_t)(uintptr_t)dict_get(&f->map, u) : 0;
    pthread_mutex_unlock(&st->lock);
    return v;
}

void mig_state_map(struct mig_state *st, const char *key, uint32_t uid1, uint32_t uid2)
{
    char u[16], k[1200];
    snprintf(u, sizeof(u), "%u", uid1);
    pthread_mutex_lock(&st->lock);
    struct mst_folder *f = folder_get(st, key, true);
    dict_set(&f->map, u, (void *)(uintptr_t)uid2);
    key_encode(key, k, sizeof(k));
    if (!st->readonly)
        buf_printf(&st->out, "M %s %u %u\n", k, uid1, uid2);
    pthread_mutex_unlock(&st->lock);
}

bool mig_state_has_uidl(struct mig_state *st, const char *key, const char *uidl)
{
    char k[1200];
    uidl_key(k, sizeof(k), key, uidl);
    pthread_mutex_lock(&st->lock);
    bool has = dict_get(&st->uidls, k) != NULL;
    pthread_mutex_unlock(&st->lock);
    return has;
}

void mig_state_add_uidl(struct mig_state *st, const char *key, const char *uidl)
{
    char k[1200], e[1200];
    uidl_key(k, sizeof(k), key, uidl);
    key_encode(key, e, sizeof(e));
    pthread_mutex_lock(&st->lock);
    dict_set(&st->uidls, k, (void *)1);
    if (!st->readonly)
        buf_printf(&st->out, "P %s %s\n", e, uidl);
    pthread_mutex_unlock(&st->lock);
}

uint64_t mig_state_modseq(struct mig_state *st, const char *key)
{
    pthread_mutex_lock(&st->lock);
    struct mst_folder *f = folder_get(st, key, false);
    uint64_t v = f ? f->modseq1 : 0;
    pthread_mutex_unlock(&st->lock);
    return v;
}

void mig_state_set_modseq(struct mig_state *st, const char *key, uint64_t modseq)
{
    char k[1200];
    key_encode(key, k, sizeof(k));
    pthread_mutex_lock(&st->lock);
    struct mst_folder *f = folder_get(st, key, true);
    f->modseq1 = modseq;
    if (!st->readonly)
        buf_printf(&st->out, "Q %s %llu\n", k, (unsigned long long)modseq);
    pthread_mutex_unlock(&st->lock);
}
