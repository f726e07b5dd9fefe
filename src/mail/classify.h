/*
 * classify.h - the SMTP reply classifier shared by delivery and reporting.
 *
 * A remote reply (basic code, enhanced status code, text, the MX host that
 * said it) maps to one class: busy, rate limited, reputation block, ...
 * Each class carries a plain-language explanation and the operator's next
 * step. The rules come from a table file (etc/reply_rules, format described
 * there); the same rules are compiled in, so classification works without
 * the file. Replies no rule matches fall back to their code class.
 */
#ifndef SLUICE_CLASSIFY_H
#define SLUICE_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>

enum reply_class {
    RC_UNKNOWN = 0,
    RC_BUSY,
    RC_RATE_LIMITED,
    RC_CONNECTION_CAP,
    RC_REPUTATION_BLOCK,
    RC_AUTH_POLICY,
    RC_TLS_REQUIRED,
    RC_TLS_FAILURE,
    RC_GREYLISTED,
    RC_MAILBOX_FULL,
    RC_NO_SUCH_USER,
    RC_MESSAGE_TOO_BIG,
    RC_POLICY,
    RC_DNS,
    RC_NETWORK,
    RC_OTHER_TEMP,
    RC_OTHER_PERM,
    RC__COUNT
};

/* Classify a reply. code: 0 when none; enhanced: "4.7.500" or NULL; text:
 * the reply text or Postfix's status text (may be NULL); mx_host: the
 * remote host name or NULL. Never fails: unmatched replies get
 * RC_OTHER_TEMP / RC_OTHER_PERM by code, or RC_UNKNOWN without one. */
enum reply_class classify_reply(int code, const char *enhanced,
                                const char *text, const char *mx_host);

/* Pull "NNN" and "X.Y.Z" out of a reply such as "host x[1.2.3.4] said:
 * 451 4.7.500 Server busy" or "550-5.7.26 ...". enh gets "" when absent.
 * Returns the code or 0. */
int classify_parse_reply(const char *text, char *enh, size_t enhlen);

/* Short machine name ("rate_limited"), explanation and next step. */
const char *classify_name(enum reply_class c);
const char *classify_explain(enum reply_class c);
const char *classify_next_step(enum reply_class c);
/* RC__COUNT when the name is unknown. */
enum reply_class classify_from_name(const char *name);
/* True for classes a later retry may cure (busy, greylisted, ...). */
bool classify_is_temporary(enum reply_class c, int code);

/* Replace the active rules with those of `path`. On error keeps the current
 * rules, writes "FILE:LINE: problem; fix: ..." into err and returns -1. */
int classify_load(const char *path, char *err, size_t errlen);
/* Back to the compiled-in rules. */
void classify_reset(void);
/* The compiled-in rule text (what etc/reply_rules holds, less comments). */
const char *classify_default_rules(void);
/* Number of rules in the active set (for tests and `sluice config`). */
size_t classify_rule_count(void);
/* Release the active rule set (tests, leak checkers). */
void classify_free(void);

#endif
