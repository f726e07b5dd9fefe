/*
 * queue_view.c - formatting and offline operations for `sluice queue`.
 */
#include "queue/queue_view.h"
#include "lib/json.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void queue_view_json(const struct spool_envelope *env, const struct msg_state *st,
                     struct buf *out)
{
    buf_putc(out, '{');
    json_key(out, "id", 1);
    json_str(out, env->qid);
    json_key(out, "arrival", 0);
    buf_printf(out, "%lld", (long long)env->arrival.tv_sec);
    json_key(out, "sender", 0);
    json_str(out, env->sender);
    json_key(out, "size", 0);
    buf_printf(out, "%llu", (unsigned long long)env->content_length);
    json_key(out, "held", 0);
    buf_puts(out, st->held ? "true" : "false");
    json_key(out, "recipients", 0);
    buf_putc(out, '[');
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct rcpt_state *r = &st->r[i];
        buf_puts(out, i ? ",{" : "{");
        json_key(out, "address", 1);
        json_str(out, env->rcpts[i].addr);
        json_key(out, "status", 0);
        json_str(out, qstate_status_name(r->status));
        json_key(out, "attempts", 0);
        buf_printf(out, "%u", r->attempts);
        json_key(out, "next_attempt", 0);
        buf_printf(out, "%lld", (long long)r->next_attempt);
        json_key(out, "last_reply", 0);
        json_str(out, r->reply);
        json_key(out, "class", 0);
        json_str(out, r->cls);
        buf_putc(out, '}');
    }
    buf_puts(out, "]}");
}

void queue_view_text_header(struct buf *out)
{
    buf_puts(out, "-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
}

void queue_view_text(const struct spool_envelope *env, const struct msg_state *st,
                     struct buf *out)
{
    char when[32];
    struct tm tm;
    localtime_r(&env->arrival.tv_sec, &tm);
    strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
    buf_printf(out, "%-16s%c %8llu %-20s  %s\n", env->qid, st->held ? '!' : ' ',
               (unsigned long long)env->content_length, when,
               env->sender[0] ? env->sender : "MAILER-DAEMON");
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct rcpt_state *r = &st->r[i];
        if (r->status == RS_SENT || r->status == RS_DONE)
            continue;
        if (r->reply[0])
            buf_printf(out, "%48s(%s%s%s)\n", "", r->cls[0] ? r->cls : "", r->cls[0] ? ": " : "",
                       r->reply);
        buf_printf(out, "%48s%s\n", "", env->rcpts[i].addr);
    }
    buf_putc(out, '\n');
}

void queue_view_text_footer(size_t n, uint64_t bytes, struct buf *out)
{
    if (n == 0)
        buf_puts(out, "Mail queue is empty\n");
    else
        buf_printf(out, "-- %llu Kbytes in %zu Request%s.\n",
                   (unsigned long long)((bytes + 1023) / 1024), n, n == 1 ? "" : "s");
}

bool queue_view_has_domain(const struct spool_envelope *env, const char *domain)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        const char *at = strrchr(env->rcpts[i].addr, '@');
        if (at && strcasecmp(at + 1, domain) == 0)
            return true;
    }
    return false;
}

/* ---- offline --------------------------------------------------------- */

static int load(const char *spool_dir, const char *qid, struct spool_envelope *env,
                struct msg_state *st, char *statepath, size_t splen)
{
    char path[700], err[256];
    if (strlen(qid) != QID_LEN || strspn(qid, "0123456789ABCDEF") != QID_LEN)
        return -1;
    snprintf(path, sizeof(path), "%s/queue/%s", spool_dir, qid);
    if (spool_read_file(path, env, err, sizeof(err)) < 0)
        return -1;
    snprintf(statepath, splen, "%s/state/%s", spool_dir, qid);
    qstate_init(st, env->nrcpt);
    qstate_load(statepath, st);
    return 0;
}

static int offline_list(const char *spool_dir, bool json, const char *domain, struct buf *out)
{
    char qdir[600];
    snprintf(qdir, sizeof(qdir), "%s/queue", spool_dir);
    DIR *d = opendir(qdir);
    if (d == NULL) {
        buf_printf(out, json ? "[]\n" : "Mail queue is empty\n");
        return 0;
    }
    struct dirent *de;
    size_t n = 0;
    uint64_t bytes = 0;
    if (json)
        buf_putc(out, '[');
    else
        queue_view_text_header(out);
    while ((de = readdir(d)) != NULL) {
        struct spool_envelope env;
        struct msg_state st;
        char sp[700];
        if (de->d_name[0] == '.' || load(spool_dir, de->d_name, &env, &st, sp, sizeof(sp)) < 0)
            continue;
        if (domain == NULL || queue_view_has_domain(&env, domain)) {
            if (json) {
                if (n)
                    buf_putc(out, ',');
                queue_view_json(&env, &st, out);
            } else {
                queue_view_text(&env, &st, out);
            }
            n++;
            bytes += env.content_length;
        }
        spool_envelope_free(&env);
        qstate_free(&st);
    }
    closedir(d);
    if (json)
        buf_puts(out, "]\n");
    else
        queue_view_text_footer(n, bytes, out);
    return 0;
}

/* hold, release, bounce, flush of one message by editing its state. */
static int offline_edit(const char *spool_dir, const char *cmd, const char *qid,
                        struct buf *out)
{
    struct spool_envelope env;
    struct msg_state st;
    char sp[700];
    if (load(spool_dir, qid, &env, &st, sp, sizeof(sp)) < 0) {
        buf_printf(out, "sluice queue: %s: no such message in %s/queue\n", qid, spool_dir);
        return 1;
    }
    if (strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0) {
        st.held = strcmp(cmd, "hold") == 0;
    } else {
        for (size_t i = 0; i < st.nrcpt; i++) {
            struct rcpt_state *r = &st.r[i];
            if (r->status != RS_PENDING && r->status != RS_DEFERRED)
                continue;
            if (strcmp(cmd, "bounce") == 0) {
                r->status = RS_BOUNCED;
                str_copy(r->dsn, "5.0.0", sizeof(r->dsn));
                str_copy(r->reply, "returned to sender by the postmaster (sluice queue bounce)",
                         sizeof(r->reply));
            } else {
                r->next_attempt = 0;
            }
        }
    }
    int rc = qstate_save(sp, &st) < 0 ? 2 : 0;
    buf_printf(out, rc ? "sluice queue: %s: cannot write state: %s\n" : "%s: %s%s\n", qid,
               rc ? strerror(errno) : cmd, rc ? "" : " (takes effect when sluice serve runs)");
    spool_envelope_free(&env);
    qstate_free(&st);
    return rc;
}

/* Make every deferred recipient (of DOMAIN, or all) due at the next start. */
static int offline_flush(const char *spool_dir, const char *domain, struct buf *out)
{
    char qdir[600];
    snprintf(qdir, sizeof(qdir), "%s/queue", spool_dir);
    DIR *d = opendir(qdir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        struct spool_envelope env;
        struct msg_state st;
        char sp[700];
        if (de->d_name[0] == '.' || load(spool_dir, de->d_name, &env, &st, sp, sizeof(sp)) < 0)
            continue;
        bool changed = false;
        if (domain == NULL || queue_view_has_domain(&env, domain))
            for (size_t i = 0; i < st.nrcpt; i++)
                if (st.r[i].status == RS_DEFERRED) {
                    st.r[i].next_attempt = 0;
                    changed = true;
                    n++;
                }
        if (changed)
            qstate_save(sp, &st);
        spool_envelope_free(&env);
        qstate_free(&st);
    }
    if (d)
        closedir(d);
    buf_printf(out, "flush: %zu deferred recipient(s) will be tried as soon as sluice "
               "serve runs\n", n);
    return 0;
}

int queue_offline(const char *spool_dir, const char *cmd, const char *arg, bool json,
                  struct buf *out)
{
    if (strcmp(cmd, "list") == 0)
        return offline_list(spool_dir, json, arg, out);
    if (strcmp(cmd, "show") == 0) {
        struct spool_envelope env;
        struct msg_state st;
        char sp[700];
        if (arg == NULL || load(spool_dir, arg, &env, &st, sp, sizeof(sp)) < 0) {
            buf_printf(out, "sluice queue: %s: no such message\n", arg ? arg : "(none)");
            return 1;
        }
        if (json) {
            queue_view_json(&env, &st, out);
            buf_putc(out, '\n');
        } else {
            queue_view_text_header(out);
            queue_view_text(&env, &st, out);
        }
        spool_envelope_free(&env);
        qstate_free(&st);
        return 0;
    }
    if (strcmp(cmd, "delete") == 0) {
        char path[700];
        if (arg == NULL || strlen(arg) != QID_LEN || strspn(arg, "0123456789ABCDEF") != QID_LEN) {
            buf_printf(out, "sluice queue: %s: no such message\n", arg ? arg : "(none)");
            return 1;
        }
        snprintf(path, sizeof(path), "%s/queue/%s", spool_dir, arg);
        if (unlink(path) < 0) {
            buf_printf(out, "sluice queue: %s: no such message\n", arg);
            return 1;
        }
        snprintf(path, sizeof(path), "%s/state/%s", spool_dir, arg);
        unlink(path);
        buf_printf(out, "%s: deleted\n", arg);
        return 0;
    }
    if (strcmp(cmd, "flush") == 0)
        return offline_flush(spool_dir, arg, out);
    if (arg == NULL) {
        buf_printf(out, "sluice queue: %s needs a queue id\n", cmd);
        return 2;
    }
    return offline_edit(spool_dir, cmd, arg, out);
}
