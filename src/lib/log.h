/*
 * log.h - Postfix-compatible logging.
 *
 * Text lines look exactly like Postfix's ("Nov 22 22:46:31 host
 * sluice/smtpd[123]: QID: ...") so pflogsumm (--syslog-name=sluice),
 * fail2ban and mailgraph work unchanged. They go to stderr, a file or
 * syslog. Optionally every event is also written as one JSON object per line
 * to a second file, with structured fields (log_event()).
 *
 * Severity ladder (as Postfix): info < warning < fatal (clean exit 1) <
 * panic (a bug: abort with a core).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_FATAL, LOG_LVL_PANIC };
enum log_dest { LOG_DEST_STDERR, LOG_DEST_FILE, LOG_DEST_SYSLOG };

struct log_kv {
    const char *key;
    const char *val;
};

/* Configure where lines go. `path` is used for LOG_DEST_FILE. Returns 0 or
 * -1 (errno set) when the file cannot be opened. */
int log_open(enum log_dest dest, const char *path);
/* Also write JSON lines to `path` (NULL closes). */
int log_open_json(const char *path);
void log_close(void);
/* Host name printed in text lines (default: gethostname). */
void log_set_hostname(const char *name);
/* Forget the cached pid (call in a child after fork). */
void log_reset_pid(void);
/* Hold the text lines of the calling thread until log_flush() (or until
 * 64 KB wait), so an event loop writes the lines of one pass with one
 * write(2). Lines of other threads, fatal and panic lines are written at
 * once. Call before starting other threads. log_close() flushes. */
void log_hold(void);
void log_flush(void);
/* Service name used by the short helpers below ("smtpd", "qmgr", ...). */
void log_set_service(const char *service);

void log_event(enum log_level lvl, const char *service,
               const struct log_kv *kv, size_t nkv, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* Service-tagged variants: log_svc("smtpd", "connect from %s", ...). */
void log_svc(const char *service, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_svc_warn(const char *service, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
