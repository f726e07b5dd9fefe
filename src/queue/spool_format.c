/*
 * spool_format.c - the queue file record format (docs/queue-format.md):
 * envelope records as text lines, the message, and a trailing end record
 * that makes every complete file self-validating.
 */
#include "queue/spool.h"
#include "smtpd/smtpd_parse.h"
#include "lib/fsutil.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_MAGIC "SLUICE-QUEUE 1\n"
#define SPOOL_TRAILER_MAX 64

static const char *const notify_words[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};

static void format_notify(unsigned notify, struct buf *out)
{
    if (notify == 0) {
        buf_putc(out, '-');
        return;
    }
    bool first = true;
    for (unsigned i = 0; i < 4; i++) {
        if (notify & (1u << i)) {
            if (!first)
                buf_putc(out, ',');
            buf_puts(out, notify_words[i]);
            first = false;
        }
    }
}

static unsigned parse_notify(const char *s)
{
    unsigned v = 0;
    for (unsigned i = 0; i < 4; i++)
        if (strstr(s, notify_words[i]))
            v |= 1u << i;
    return v;
}

void spool_envelope_format(const struct spool_envelope *env, struct buf *out)
{
    static const char *const ret_words[] = {"", "FULL", "HDRS"};
    static const char *const body_words[] = {"", "7BIT", "8BITMIME", "BINARYMIME"};
    buf_puts(out, SPOOL_MAGIC);
    buf_printf(out, "id %s\n", env->qid);
    buf_printf(out, "arrival %lld.%06ld\n", (long long)env->arrival.tv_sec,
               (long)env->arrival.tv_usec);
    buf_printf(out, "client %s %s\n", env->client_addr ? env->client_addr : "",
               env->client_name ? env->client_name : "");
    buf_printf(out, "helo %s\n", env->helo ? env->helo : "");
    buf_printf(out, "proto %s\n", env->proto ? env->proto : "SMTP");
    buf_printf(out, "sender %s\n", env->sender ? env->sender : "");
    if (env->envid && env->envid[0])
        buf_printf(out, "envid %s\n", env->envid);
    if (env->ret > 0 && env->ret <= 2)
        buf_printf(out, "ret %s\n", ret_words[env->ret]);
    if (env->body > 0 && env->body <= 3)
        buf_printf(out, "body %s\n", body_words[env->body]);
    if (env->smtputf8)
        buf_puts(out, "smtputf8\n");
    if (env->kind == SPOOL_KIND_DSN || env->kind == SPOOL_KIND_NOTICE)
        buf_printf(out, "kind %s\n", env->kind == SPOOL_KIND_DSN ? "dsn" : "notice");
    for (size_t i = 0; i < env->nrcpt; i++) {
        buf_printf(out, "rcpt %s\t", env->rcpts[i].addr);
        format_notify(env->rcpts[i].notify, out);
        buf_printf(out, "\t%s\n", env->rcpts[i].orcpt ? env->rcpts[i].orcpt : "-");
    }
    buf_puts(out, "content\n");
}

void spool_envelope_add_rcpt(struct spool_envelope *env, const char *addr,
                             unsigned notify, const char *orcpt)
{
    env->rcpts = xgrow(env->rcpts, &env->rcpt_cap, env->nrcpt + 1, sizeof(*env->rcpts));
    struct spool_rcpt *r = &env->rcpts[env->nrcpt++];
    r->addr = xstrdup(addr);
    r->notify = notify;
    r->orcpt = orcpt && orcpt[0] && strcmp(orcpt, "-") != 0 ? xstrdup(orcpt) : NULL;
}

void spool_envelope_free(struct spool_envelope *env)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        free(env->rcpts[i].addr);
        free(env->rcpts[i].orcpt);
    }
    free(env->rcpts);
    free(env->sender);
    free(env->envid);
    free(env->client_addr);
    free(env->client_name);
    free(env->helo);
    free(env->proto);
    memset(env, 0, sizeof(*env));
}

static int fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    return -1;
}

/* Parse the trailer "\nend OFFSET LENGTH\n" at the end of the image. */
static int parse_trailer(const char *data, size_t len, uint64_t *off, uint64_t *clen)
{
    if (len < 8 || data[len - 1] != '\n')
        return -1;
    size_t start = len - 1;
    while (start > 0 && data[start - 1] != '\n' && len - start < SPOOL_TRAILER_MAX)
        start--;
    char tmp[SPOOL_TRAILER_MAX + 1];
    size_t n = len - 1 - start;
    if (n >= sizeof(tmp) || start == 0)
        return -1;
    memcpy(tmp, data + start, n);
    tmp[n] = '\0';
    char *a = NULL, *b = NULL, *save = NULL;
    char *w = strtok_r(tmp, " ", &save);
    if (w == NULL || strcmp(w, "end") != 0)
        return -1;
    a = strtok_r(NULL, " ", &save);
    b = strtok_r(NULL, " ", &save);
    if (a == NULL || b == NULL || str_to_u64(a, off) < 0 || str_to_u64(b, clen) < 0)
        return -1;
    /* content is followed by exactly "\n" + the trailer line */
    if (*off > len || *clen > len || *off + *clen + 1 != start)
        return -1;
    return 0;
}

/* Each single-valued record may appear once; a repeat means damage. */
static int set_once(char **field, const char *val)
{
    if (*field != NULL)
        return -1;
    *field = xstrdup(val);
    return 0;
}

static int parse_record(struct spool_envelope *env, char *line)
{
    char *sp = strchr(line, ' ');
    char *val = sp ? sp + 1 : (char *)"";
    if (sp)
        *sp = '\0';
    if (strcmp(line, "id") == 0) {
        str_copy(env->qid, val, sizeof(env->qid));
    } else if (strcmp(line, "arrival") == 0) {
        char *dot = strchr(val, '.');
        uint64_t s = 0, us = 0;
        if (dot)
            *dot = '\0';
        if (str_to_u64(val, &s) < 0 || (dot && str_to_u64(dot + 1, &us) < 0))
            return -1;
        env->arrival.tv_sec = (time_t)s;
        env->arrival.tv_usec = (suseconds_t)us;
    } else if (strcmp(line, "client") == 0) {
        char *name = strchr(val, ' ');
        if (name)
            *name++ = '\0';
        if (set_once(&env->client_addr, val) < 0)
            return -1;
        env->client_name = xstrdup(name ? name : "");
    } else if (strcmp(line, "helo") == 0) {
        return set_once(&env->helo, val);
    } else if (strcmp(line, "proto") == 0) {
        return set_once(&env->proto, val);
    } else if (strcmp(line, "sender") == 0) {
        return set_once(&env->sender, val);
    } else if (strcmp(line, "envid") == 0) {
        return set_once(&env->envid, val);
    } else if (strcmp(line, "ret") == 0) {
        env->ret = strcmp(val, "FULL") == 0 ? RET_FULL : RET_HDRS;
    } else if (strcmp(line, "body") == 0) {
        env->body = strcmp(val, "8BITMIME") == 0 ? BODY_8BITMIME : BODY_7BIT;
    } else if (strcmp(line, "kind") == 0) {
        env->kind = strcmp(val, "dsn") == 0 ? SPOOL_KIND_DSN
                  : strcmp(val, "notice") == 0 ? SPOOL_KIND_NOTICE : SPOOL_KIND_MAIL;
    } else if (strcmp(line, "smtputf8") == 0) {
        env->smtputf8 = true;
    } else if (strcmp(line, "rcpt") == 0) {
        char *t1 = strchr(val, '\t');
        char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (t1 == NULL || t2 == NULL)
            return -1;
        *t1 = *t2 = '\0';
        spool_envelope_add_rcpt(env, val, parse_notify(t1 + 1), t2 + 1);
    }
    /* Unknown records are skipped: newer writers may add some. */
    return 0;
}

int spool_envelope_parse(const char *data, size_t len, struct spool_envelope *env,
                         char *err, size_t errlen)
{
    memset(env, 0, sizeof(*env));
    size_t ml = strlen(SPOOL_MAGIC);
    bool magic_prefix = len == 0 || memcmp(data, SPOOL_MAGIC, len < ml ? len : ml) == 0;
    if (len < ml && magic_prefix) {
        fail(err, errlen, "incomplete queue file (cut short in its first line)");
        return SPOOL_PARSE_INCOMPLETE;
    }
    if (!magic_prefix)
        return fail(err, errlen, "not a sluice queue file (bad magic)");
    uint64_t off, clen;
    if (parse_trailer(data, len, &off, &clen) < 0) {
        fail(err, errlen, "incomplete queue file (no valid end record)");
        return SPOOL_PARSE_INCOMPLETE;
    }
    size_t pos = ml;
    bool saw_content = false;
    while (pos < off) {
        const char *nl = memchr(data + pos, '\n', off - pos);
        if (nl == NULL)
            break;
        size_t n = (size_t)(nl - (data + pos));
        char *line = xstrndup(data + pos, n);
        if (strcmp(line, "content") == 0) {
            saw_content = true;
            free(line);
            pos += n + 1;
            break;
        }
        int rc = parse_record(env, line);
        free(line);
        if (rc < 0) {
            spool_envelope_free(env);
            return fail(err, errlen, "malformed envelope record");
        }
        pos += n + 1;
    }
    if (!saw_content || pos != off) {
        spool_envelope_free(env);
        return fail(err, errlen, "envelope does not end where content begins");
    }
    if (env->sender == NULL || env->nrcpt == 0 || env->qid[0] == '\0') {
        spool_envelope_free(env);
        return fail(err, errlen, "envelope lacks id, sender or recipients");
    }
    env->content_offset = off;
    env->content_length = clen;
    return 0;
}

int spool_read_file(const char *path, struct spool_envelope *env, char *err,
                    size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *data;
    size_t len;
    int rc = fs_read_fd(fd, SIZE_MAX - 1, &data, &len);
    close(fd);
    if (rc < 0)
        return fail(err, errlen, "cannot read queue file");
    rc = spool_envelope_parse(data, len, env, err, errlen);
    free(data);
    return rc;
}
