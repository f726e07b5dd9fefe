/*
 * log.c - Postfix-compatible text log lines plus optional JSON lines.
 *
 * Lines are assembled in a bounded stack buffer and written with a single
 * write(2) so concurrent writers (the spool thread) never interleave. A
 * thread may batch its lines (log_batch_begin): they then go out whole, in
 * order, one write(2) per flush, so they still never interleave.
 */
#include "lib/log.h"
#include "lib/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static enum log_dest log_dest = LOG_DEST_STDERR;
static int log_fd = 2;
static int log_json_fd = -1;
static char log_host[256];
static const char *log_service = "main";
static char log_ident[64];
static long log_pid;          /* cached: one getpid() per process, not per line */
/* Bumped when the host name or pid changes: the cached line prefixes
 * (text_prefix) are stale then. */
static _Atomic unsigned log_prefix_gen;

/* Pending lines of a batching thread; complete lines only. */
#define LOG_BATCH_MAX (64 * 1024)
struct log_batch {
    size_t text_len, json_len;
    char text[LOG_BATCH_MAX];
    char json[LOG_BATCH_MAX];
};
static _Thread_local struct log_batch *log_batch;

static const char *level_prefix[] = {
    [LOG_LVL_INFO] = "",
    [LOG_LVL_WARN] = "warning: ",
    [LOG_LVL_FATAL] = "fatal: ",
    [LOG_LVL_PANIC] = "panic: ",
};
static const char *level_name[] = {
    [LOG_LVL_INFO] = "info",
    [LOG_LVL_WARN] = "warning",
    [LOG_LVL_FATAL] = "fatal",
    [LOG_LVL_PANIC] = "panic",
};

int log_open(enum log_dest dest, const char *path)
{
    log_flush();   /* pending lines belong to the old file */
    if (log_fd > 2)
        close(log_fd);
    log_fd = 2;
    log_dest = dest;
    if (dest == LOG_DEST_FILE) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            log_dest = LOG_DEST_STDERR;
            return -1;
        }
        log_fd = fd;
    }
    return 0;
}

int log_open_json(const char *path)
{
    log_flush();
    if (log_json_fd >= 0)
        close(log_json_fd);
    log_json_fd = -1;
    if (path == NULL || *path == '\0')
        return 0;
    log_json_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return log_json_fd < 0 ? -1 : 0;
}

void log_close(void)
{
    log_flush();
    if (log_fd > 2)
        close(log_fd);
    log_fd = 2;
    log_open_json(NULL);
    if (log_dest == LOG_DEST_SYSLOG)
        closelog();
}

void log_reset_pid(void)
{
    log_pid = 0;
    log_prefix_gen++;
}

void log_set_hostname(const char *name)
{
    snprintf(log_host, sizeof(log_host), "%s", name);
    log_prefix_gen++;
}

void log_set_service(const char *service)
{
    log_service = service;
}

/* A log that cannot be written has nowhere to report it: go on. */
static void write_all(int fd, const char *p, size_t n)
{
    (void)fs_write_all(fd, p, n);
}

void log_batch_begin(void)
{
    if (log_batch == NULL)
        log_batch = calloc(1, sizeof(*log_batch)); /* NULL: stay unbatched */
}

void log_flush(void)
{
    struct log_batch *b = log_batch;
    if (b == NULL)
        return;
    if (b->text_len)
        write_all(log_fd, b->text, b->text_len);
    if (b->json_len && log_json_fd >= 0)
        write_all(log_json_fd, b->json, b->json_len);
    b->text_len = b->json_len = 0;
}

void log_batch_end(void)
{
    log_flush();
    free(log_batch);
    log_batch = NULL;
}

/* Write a complete line to fd (log_fd or log_json_fd), or queue it when
 * this thread batches. */
static void emit(int fd, const char *line, size_t n)
{
    struct log_batch *b = log_batch;
    if (b == NULL || n > LOG_BATCH_MAX) {
        if (b)
            log_flush();   /* keep the order of lines */
        write_all(fd, line, n);
        return;
    }
    bool json = fd == log_json_fd;
    size_t *len = json ? &b->json_len : &b->text_len;
    if (*len + n > LOG_BATCH_MAX)
        log_flush();
    memcpy((json ? b->json : b->text) + *len, line, n);
    *len += n;
}

/* Append s to dst as JSON string contents, escaping as needed. */
static size_t json_escape_into(char *dst, size_t off, size_t cap, const char *s)
{
    for (; *s && off + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[off++] = '\\';
            dst[off++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            off += (size_t)snprintf(dst + off, cap - off, "\\u%04x", c);
        } else {
            dst[off++] = (char)c;
        }
    }
    return off;
}

static void log_write_json(enum log_level lvl, const char *service,
                           const struct log_kv *kv, size_t nkv, const char *msg)
{
    char line[LOG_LINE_MAX * 2];
    struct timeval tv;
    struct tm tm;
    size_t off;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    off = (size_t)snprintf(line, sizeof(line),
        "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"service\":\"sluice/%s\","
        "\"pid\":%ld,\"level\":\"%s\",\"msg\":\"",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, (long)tv.tv_usec, service, (long)getpid(), level_name[lvl]);
    off = json_escape_into(line, off, sizeof(line) - 4, msg);
    line[off++] = '"';
    for (size_t i = 0; i < nkv && off + 16 < sizeof(line); i++) {
        line[off++] = ',';
        line[off++] = '"';
        off = json_escape_into(line, off, sizeof(line) - 4, kv[i].key);
        line[off++] = '"';
        line[off++] = ':';
        line[off++] = '"';
        off = json_escape_into(line, off, sizeof(line) - 4,
                               kv[i].val ? kv[i].val : "");
        line[off++] = '"';
    }
    line[off++] = '}';
    line[off++] = '\n';
    emit(log_json_fd, line, off);
}

/* Replace line breaks: never let a peer's bytes break the
 * one-line-per-event rule. */
static void scrub_line_breaks(char *p)
{
    for (; (p = strpbrk(p, "\r\n")) != NULL; p++)
        *p = ' ';
}

/* "Mon DD HH:MM:SS host sluice/service[pid]: " into out (cap bytes);
 * returns its length. Cached per thread: it changes once a second or when
 * the service does, and formatting it for every line was a third of the
 * cost of a log line. */
static size_t text_prefix(char *out, size_t cap, const char *service)
{
    static _Thread_local time_t stamp_time = -1;
    static _Thread_local char prefix[256];
    static _Thread_local char prefix_service[64];
    static _Thread_local size_t prefix_len;
    static _Thread_local unsigned prefix_gen;
    time_t now = time(NULL);
    unsigned gen = log_prefix_gen;
    if (now != stamp_time || gen != prefix_gen || strcmp(service, prefix_service) != 0) {
        char stamp[32];
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
        if (log_host[0] == '\0')
            gethostname(log_host, sizeof(log_host) - 1);
        if (log_pid == 0)
            log_pid = (long)getpid();
        int n = snprintf(prefix, sizeof(prefix), "%s %s sluice/%s[%ld]: ", stamp, log_host,
                         service, log_pid);
        prefix_len = n < 0 ? 0 : (size_t)n < sizeof(prefix) ? (size_t)n : sizeof(prefix) - 1;
        size_t sl = strlen(service);
        if (sl >= sizeof(prefix_service))
            sl = sizeof(prefix_service) - 1;   /* never equal again: no cache */
        memcpy(prefix_service, service, sl);
        prefix_service[sl] = '\0';
        stamp_time = now;
        prefix_gen = gen;
    }
    size_t n = prefix_len < cap ? prefix_len : 0;
    memcpy(out, prefix, n);
    return n;
}

static void log_vevent(enum log_level lvl, const char *service,
                       const struct log_kv *kv, size_t nkv,
                       const char *fmt, va_list ap)
{
    int saved_errno = errno;
    bool text = log_dest != LOG_DEST_SYSLOG;
    /* a text line's message is formatted once, in place after the prefix */
    char line[LOG_LINE_MAX + 512];
    size_t n = text ? text_prefix(line, sizeof(line), service) : 0;
    if (text) {
        size_t plen = strlen(level_prefix[lvl]);
        memcpy(line + n, level_prefix[lvl], plen);
        n += plen;
    }
    char *msg = line + n;
    int m = vsnprintf(msg, LOG_LINE_MAX, fmt, ap);
    n += m < 0 ? 0 : (size_t)m < LOG_LINE_MAX ? (size_t)m : LOG_LINE_MAX - 1;
    scrub_line_breaks(msg);
    if (text) {
        line[n] = '\n';
        emit(log_fd, line, n + 1);
    } else {
        char ident[64];
        snprintf(ident, sizeof(ident), "sluice/%s", service);
        if (strcmp(ident, log_ident) != 0) {
            memcpy(log_ident, ident, sizeof(log_ident));
            openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
        }
        int prio = lvl == LOG_LVL_INFO ? LOG_INFO
                 : lvl == LOG_LVL_WARN ? LOG_WARNING : LOG_CRIT;
        syslog(prio, "%s%s", level_prefix[lvl], msg);
    }
    if (log_json_fd >= 0) {
        line[n] = '\0';   /* msg ends here again (the newline went out) */
        log_write_json(lvl, service, kv, nkv, msg);
    }
    errno = saved_errno;
}

void log_event(enum log_level lvl, const char *service,
               const struct log_kv *kv, size_t nkv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vevent(lvl, service, kv, nkv, fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vevent(LOG_LVL_INFO, log_service, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vevent(LOG_LVL_WARN, log_service, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_svc(const char *service, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vevent(LOG_LVL_INFO, service, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_svc_warn(const char *service, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vevent(LOG_LVL_WARN, service, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vevent(LOG_LVL_FATAL, log_service, NULL, 0, fmt, ap);
    va_end(ap);
    log_flush();
    exit(1);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vevent(LOG_LVL_PANIC, log_service, NULL, 0, fmt, ap);
    va_end(ap);
    log_flush();
    abort();
}
