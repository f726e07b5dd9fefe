/*
 * qstate.c - the delivery state file (format in docs/queue-format.md).
 */
#include "queue/qstate.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const status_names[] = {
    [RS_PENDING] = "pending", [RS_DEFERRED] = "deferred", [RS_ACTIVE] = "active",
    [RS_SENT] = "sent", [RS_BOUNCED] = "bounced", [RS_DONE] = "done",
};

const char *qstate_status_name(enum rcpt_status s)
{
    return status_names[s];
}

void qstate_init(struct msg_state *st, size_t nrcpt)
{
    memset(st, 0, sizeof(*st));
    st->nrcpt = nrcpt;
    st->r = xcalloc(nrcpt ? nrcpt : 1, sizeof(*st->r));
    for (size_t i = 0; i < nrcpt; i++)
        st->r[i].throttled_only = true;
}

void qstate_free(struct msg_state *st)
{
    free(st->r);
    st->r = NULL;
    st->nrcpt = 0;
}

/* Text fields are stored after a TAB; strip control characters. */
static void clean(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20)
            *s = ' ';
}

int qstate_save(const char *path, const struct msg_state *st)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (fp == NULL)
        return -1;
    fprintf(fp, "SLUICE-STATE 1\nheld %d\ndelay_notified %d\n", st->held ? 1 : 0,
            st->delay_notified ? 1 : 0);
    for (size_t i = 0; i < st->nrcpt; i++) {
        const struct rcpt_state *r = &st->r[i];
        enum rcpt_status s = r->status == RS_ACTIVE ? RS_PENDING : r->status;
        char reply[sizeof(r->reply)], relay[sizeof(r->relay)];
        str_copy(reply, r->reply, sizeof(reply));
        str_copy(relay, r->relay[0] ? r->relay : "-", sizeof(relay));
        clean(reply);
        clean(relay);
        for (char *p = relay; *p; p++)
            if (*p == ' ')
                *p = '_';
        fprintf(fp, "rcpt %zu %s %u %lld %lld %d %s %s %s\t%s\n", i, status_names[s],
                r->attempts, (long long)r->next_attempt, (long long)r->last_attempt,
                r->throttled_only ? 1 : 0, r->cls[0] ? r->cls : "-",
                r->dsn[0] ? r->dsn : "-", relay, reply);
    }
    int rc = ferror(fp) ? -1 : 0;
    if (fclose(fp) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -1;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

static enum rcpt_status status_from(const char *s)
{
    for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
        if (strcmp(s, status_names[i]) == 0)
            return (enum rcpt_status)i;
    return RS_PENDING;
}

static void parse_rcpt(struct msg_state *st, char *line)
{
    char *tab = strchr(line, '\t');
    if (tab)
        *tab++ = '\0';
    char *save = NULL, *f[10];
    int n = 0;
    for (char *w = strtok_r(line, " ", &save); w && n < 10; w = strtok_r(NULL, " ", &save))
        f[n++] = w;
    uint64_t idx, att, next, last, thr;
    if (n < 10 || str_to_u64(f[1], &idx) < 0 || idx >= st->nrcpt ||
        str_to_u64(f[3], &att) < 0 || str_to_u64(f[4], &next) < 0 ||
        str_to_u64(f[5], &last) < 0 || str_to_u64(f[6], &thr) < 0)
        return; /* damaged line: that recipient is simply retried */
    struct rcpt_state *r = &st->r[idx];
    r->status = status_from(f[2]);
    r->attempts = (unsigned)att;
    r->next_attempt = (time_t)next;
    r->last_attempt = (time_t)last;
    r->throttled_only = thr != 0;
    str_copy(r->cls, strcmp(f[7], "-") ? f[7] : "", sizeof(r->cls));
    str_copy(r->dsn, strcmp(f[8], "-") ? f[8] : "", sizeof(r->dsn));
    str_copy(r->relay, strcmp(f[9], "-") ? f[9] : "", sizeof(r->relay));
    str_copy(r->reply, tab ? tab : "", sizeof(r->reply));
}

int qstate_load(const char *path, struct msg_state *st)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return errno == ENOENT ? 0 : -1;
    char line[1200];
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "held ", 5) == 0)
            st->held = line[5] == '1';
        else if (strncmp(line, "delay_notified ", 15) == 0)
            st->delay_notified = line[15] == '1';
        else if (strncmp(line, "rcpt ", 5) == 0)
            parse_rcpt(st, line);
    }
    fclose(fp);
    return 0;
}
