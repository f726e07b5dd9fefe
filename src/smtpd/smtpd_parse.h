/*
 * smtpd_parse.h - pure parsers for the inbound SMTP grammar: splitting a
 * command line into verb and arguments, and the ESMTP parameters of MAIL
 * (SIZE, BODY, SMTPUTF8, RET, ENVID) and RCPT (NOTIFY, ORCPT).
 *
 * No I/O and no global state, so they are unit-tested and fuzzed alone.
 */
#ifndef SLUICE_SMTPD_PARSE_H
#define SLUICE_SMTPD_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_CMD_LINE_MAX 512      /* RFC 5321 4.5.3.1.4, incl. CRLF */
#define SMTP_PARAMS_EXTRA 500      /* RFC 3461 4: room for DSN parameters */
#define SMTP_ENVID_MAX 100
#define SMTP_ORCPT_MAX 500

enum smtp_verb {
    SMTP_UNKNOWN, SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA,
    SMTP_BDAT, SMTP_RSET, SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_EXPN,
    SMTP_HELP, SMTP_STARTTLS, SMTP_AUTH, SMTP_VERB_COUNT
};

struct smtp_command {
    enum smtp_verb verb;
    const char *name;      /* canonical upper-case name, "" if unknown */
    char *args;            /* points into the line, trimmed; "" if none */
};

/* Split a command line (no CRLF, NUL-terminated, modified in place). For
 * MAIL and RCPT the "FROM:" / "TO:" keyword is checked and skipped; returns
 * -1 when it is missing (a 501 syntax error). */
int smtpd_parse_command(char *line, struct smtp_command *out);

enum smtp_body { BODY_UNSPEC, BODY_7BIT, BODY_8BITMIME, BODY_BINARYMIME };
enum smtp_ret { RET_UNSPEC, RET_FULL, RET_HDRS };
enum smtp_notify {
    NOTIFY_NEVER = 1, NOTIFY_SUCCESS = 2, NOTIFY_FAILURE = 4, NOTIFY_DELAY = 8
};

struct mail_params {
    bool has_size;
    uint64_t size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    char envid[SMTP_ENVID_MAX + 1];   /* xtext as received */
};

struct rcpt_params {
    unsigned notify;                   /* 0 = unspecified */
    char orcpt[SMTP_ORCPT_MAX + 1];    /* "rfc822;xtext" as received */
};

/* Parameter errors carry the reply to give. */
struct param_error {
    int code;              /* 501 or 555 */
    const char *enhanced;  /* "5.5.4" */
    char text[128];
};

int smtpd_parse_mail_params(char *s, struct mail_params *p, struct param_error *e);
int smtpd_parse_rcpt_params(char *s, struct rcpt_params *p, struct param_error *e);
/* RFC 3461 4: xtext syntax check. */
bool smtpd_xtext_valid(const char *s);
/* Parse "BDAT size [LAST]". */
int smtpd_parse_bdat(const char *args, uint64_t *size, bool *last);

#endif
