/*
 * migrate_report.c - what `sluice migrate` tells people: the progress bar
 * on a terminal, the closing tally and verification (text or --json), the
 * failure list; plus the shared counters and the throttle they feed.
 */
#include "tools/migrate.h"
#include "lib/clock.h"
#include "lib/jsonw.h"
#include "lib/xalloc.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MIG_LIST_MAX 1000       /* failures and missing messages kept */

double mig_now(void)
{
    return (double)clock_mono_us() / 1e6;
}

void mig_tally_init(struct mig_tally *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    t->start = mig_now();
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void mig_tally_free(struct mig_tally *t)
{
    free_list(t->failures, t->nfailures);
    free_list(t->missing_list, t->nmissing);
    pthread_mutex_destroy(&t->lock);
}

/* Exit classes in order of severity for "the worst one wins". */
static int severity(int code)
{
    static const int order[] = {MIG_EXIT_OK, MIG_EXIT_PARTIAL, MIG_EXIT_PROTOCOL,
                                MIG_EXIT_CONNECT, MIG_EXIT_TLS, MIG_EXIT_AUTH,
                                MIG_EXIT_STATE, MIG_EXIT_USAGE};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (order[i] == code)
            return (int)i;
    return 0;
}

int mig_exit_worst(int a, int b)
{
    return severity(b) > severity(a) ? b : a;
}

void mig_note_exit(struct mig_tally *t, int code)
{
    pthread_mutex_lock(&t->lock);
    if (severity(code) > severity(t->worst))
        t->worst = code;
    pthread_mutex_unlock(&t->lock);
}

static void add_line(struct mig_tally *t, char ***v, size_t *n, size_t *cap, char *line)
{
    pthread_mutex_lock(&t->lock);
    if (*n < MIG_LIST_MAX) {
        *v = xgrow(*v, cap, *n + 1, sizeof(**v));
        (*v)[(*n)++] = line;
        line = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    free(line);
}

/* The formatted line, or NULL when it cannot be made. */
static char *vline(const char *fmt, va_list ap)
{
    char *line = NULL;
    if (vasprintf(&line, fmt, ap) < 0)
        line = NULL;
    return line;
}

void mig_fail(struct mig_tally *t, int exit_class, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = vline(fmt, ap);
    va_end(ap);
    if (line == NULL)
        return;
    for (char *p = line; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    mig_note_exit(t, exit_class);
    add_line(t, &t->failures, &t->nfailures, &t->capfailures, line);
}

void mig_missing(struct mig_tally *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = vline(fmt, ap);
    va_end(ap);
    if (line)
        add_line(t, &t->missing_list, &t->nmissing, &t->capmissing, line);
}

int mig_exit_for_imapc(enum imapc_err e)
{
    switch (e) {
    case IMAPC_E_CONNECT: return MIG_EXIT_CONNECT;
    case IMAPC_E_TLS: return MIG_EXIT_TLS;
    case IMAPC_E_AUTH: return MIG_EXIT_AUTH;
    case IMAPC_E_PROTOCOL: return MIG_EXIT_PROTOCOL;
    case IMAPC_E_CLOSED: return MIG_EXIT_PARTIAL;
    default: return MIG_EXIT_OK;
    }
}

/* ---------------------------------------------------------------------- */
/* progress                                                                */

static void human_bytes(double b, char *dst, size_t len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(dst, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void mig_progress(struct mig_tally *t, FILE *out, bool final)
{
    double el = mig_now() - t->start;
    uint64_t done = t->copied + t->skipped + t->duplicates + t->failed + t->already;
    uint64_t total = t->msgs_planned;
    double rate = el > 0 ? (double)t->copied / el : 0;
    double bps = el > 0 ? (double)t->bytes / el : 0;
    char bytes[32], brate[32], eta[32] = "--:--";
    human_bytes((double)t->bytes, bytes, sizeof(bytes));
    human_bytes(bps, brate, sizeof(brate));
    if (total > done && rate > 0) {
        double left = (double)(total - done) / (rate > 0 ? rate : 1);
        snprintf(eta, sizeof(eta), "%02d:%02d", (int)left / 60, (int)left % 60);
    }
    int width = 24, fill = total ? (int)((double)done * width / (double)total) : 0;
    if (fill > width)
        fill = width;
    char bar[32];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    fprintf(out, "\r[%s] folders %llu/%llu  msgs %llu/%llu  %s  %.0f msg/s %s/s  ETA %s ",
            bar, (unsigned long long)t->folders_done, (unsigned long long)t->folders_total,
            (unsigned long long)done, (unsigned long long)total, bytes, rate, brate, eta);
    if (final)
        fputc('\n', out);
    fflush(out);
}

/* ---------------------------------------------------------------------- */
/* the closing report                                                      */

static const char *verdict(const struct mig_tally *t, const struct mig_opts *o)
{
    if (o->dry)
        return "dry run: nothing changed";
    if (!o->verify)
        return "not verified (--noverify)";
    return t->missing == 0 ? "ok" : "missing messages";
}

void mig_report_text(struct mig_tally *t, const struct mig_opts *o, FILE *out)
{
    double el = mig_now() - t->start;
    char bytes[32];
    human_bytes((double)t->bytes, bytes, sizeof(bytes));
    fprintf(out, "%sfolders synced:       %llu of %llu (%llu created, %llu failed)\n",
            o->dry ? "[dry run] " : "", (unsigned long long)t->folders_done,
            (unsigned long long)t->folders_total, (unsigned long long)t->folders_created,
            (unsigned long long)t->folders_failed);
    fprintf(out, "messages transferred: %llu%s\n", (unsigned long long)t->copied,
            o->dry ? " (would be)" : "");
    fprintf(out, "already there:        %llu\n", (unsigned long long)t->already);
    fprintf(out, "skipped:              %llu\n", (unsigned long long)t->skipped);
    fprintf(out, "duplicates:           %llu\n", (unsigned long long)t->duplicates);
    fprintf(out, "failed:               %llu\n", (unsigned long long)t->failed);
    fprintf(out, "flags updated:        %llu\n", (unsigned long long)t->flags_updated);
    fprintf(out, "deleted on host2:     %llu\n", (unsigned long long)t->deleted);
    fprintf(out, "bytes transferred:    %llu (%s)\n", (unsigned long long)t->bytes, bytes);
    fprintf(out, "rate:                 %.1f msg/s, %.1f KiB/s\n",
            el > 0 ? (double)t->copied / el : 0.0, el > 0 ? (double)t->bytes / el / 1024 : 0.0);
    fprintf(out, "elapsed:              %.2f s\n", el);
    for (size_t i = 0; i < t->nfailures; i++)
        fprintf(out, "failure: %s\n", t->failures[i]);
    if (o->verify && !o->dry) {
        if (t->missing == 0)
            fprintf(out, "verification: all %llu identified source messages are on host2\n",
                    (unsigned long long)t->src_identified);
        else
            fprintf(out, "verification: %llu of %llu identified source messages are "
                    "missing on host2:\n", (unsigned long long)t->missing,
                    (unsigned long long)t->src_identified);
        for (size_t i = 0; i < t->nmissing; i++)
            fprintf(out, "  missing: %s\n", t->missing_list[i]);
    }
}

static void json_list(FILE *out, const char *name, char **v, size_t n)
{
    fprintf(out, ",\"%s\":[", name);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', out);
        jsonw_quote(out, v[i]);
    }
    fputc(']', out);
}

void mig_report_json(struct mig_tally *t, const struct mig_opts *o, FILE *out)
{
    double el = mig_now() - t->start;
    fprintf(out, "{\"dry\":%s,\"folders_total\":%llu,\"folders_synced\":%llu,"
            "\"folders_created\":%llu,\"folders_failed\":%llu,\"transferred\":%llu,"
            "\"already\":%llu,\"skipped\":%llu,\"duplicates\":%llu,\"failed\":%llu,"
            "\"flags_updated\":%llu,\"deleted\":%llu,\"bytes\":%llu,"
            "\"elapsed\":%.3f,\"msgs_per_sec\":%.2f,\"verified\":%s,"
            "\"identified\":%llu,\"missing\":%llu,\"verdict\":",
            o->dry ? "true" : "false", (unsigned long long)t->folders_total,
            (unsigned long long)t->folders_done, (unsigned long long)t->folders_created,
            (unsigned long long)t->folders_failed, (unsigned long long)t->copied,
            (unsigned long long)t->already, (unsigned long long)t->skipped,
            (unsigned long long)t->duplicates, (unsigned long long)t->failed,
            (unsigned long long)t->flags_updated, (unsigned long long)t->deleted,
            (unsigned long long)t->bytes, el, el > 0 ? (double)t->copied / el : 0.0,
            o->verify && !o->dry ? "true" : "false",
            (unsigned long long)t->src_identified, (unsigned long long)t->missing);
    jsonw_quote(out, verdict(t, o));
    json_list(out, "failures", t->failures, t->nfailures);
    json_list(out, "missing_messages", t->missing_list, t->nmissing);
    fprintf(out, ",\"exit\":%d}\n", t->worst);
}

double mig_throttle_delay(struct mig_throttle *th, uint64_t msgs, uint64_t bytes)
{
    if (th == NULL || (th->msgs_rate <= 0 && th->bytes_rate <= 0))
        return 0;
    pthread_mutex_lock(&th->lock);
    double el = mig_now() - th->start, wait = 0;
    if (th->msgs_rate > 0) {
        double due = (double)th->msgs / th->msgs_rate;
        if (due > el)
            wait = due - el;
    }
    if (th->bytes_rate > 0) {
        double due = (double)th->bytes / th->bytes_rate;
        if (due - el > wait)
            wait = due - el;
    }
    if (wait <= 0) {
        th->msgs += msgs;
        th->bytes += bytes;
    }
    pthread_mutex_unlock(&th->lock);
    return wait > 0 ? wait : 0;
}
