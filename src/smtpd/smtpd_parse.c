/*
 * smtpd_parse.c - command-line and ESMTP parameter parsing for smtpd.
 *
 * Table-driven: the verbs are a table of names; parameters are a table of
 * keyword -> handler. Everything works on a bounded, NUL-terminated line.
 */
#include "smtpd/smtpd_parse.h"
#include "lib/strutil.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const verb_names[SMTP_VERB_COUNT] = {
    [SMTP_UNKNOWN] = "", [SMTP_HELO] = "HELO", [SMTP_EHLO] = "EHLO",
    [SMTP_MAIL] = "MAIL", [SMTP_RCPT] = "RCPT", [SMTP_DATA] = "DATA",
    [SMTP_BDAT] = "BDAT", [SMTP_RSET] = "RSET", [SMTP_NOOP] = "NOOP",
    [SMTP_QUIT] = "QUIT", [SMTP_VRFY] = "VRFY", [SMTP_EXPN] = "EXPN",
    [SMTP_HELP] = "HELP", [SMTP_STARTTLS] = "STARTTLS", [SMTP_AUTH] = "AUTH",
};

int smtpd_parse_command(char *line, struct smtp_command *out)
{
    char *s = line;
    while (*s == ' ')
        s++;
    size_t n = strcspn(s, " ");
    out->verb = SMTP_UNKNOWN;
    out->name = "";
    for (int v = 1; v < SMTP_VERB_COUNT; v++) {
        if (strlen(verb_names[v]) == n && strncasecmp(s, verb_names[v], n) == 0) {
            out->verb = (enum smtp_verb)v;
            out->name = verb_names[v];
            break;
        }
    }
    char *args = s + n;
    while (*args == ' ')
        args++;
    /* Trailing white space is common and harmless. */
    size_t alen = strlen(args);
    while (alen > 0 && (args[alen - 1] == ' ' || args[alen - 1] == '\t'))
        args[--alen] = '\0';
    out->args = args;
    if (out->verb == SMTP_MAIL || out->verb == SMTP_RCPT) {
        const char *kw = out->verb == SMTP_MAIL ? "FROM:" : "TO:";
        if (!str_iprefix(args, kw))
            return -1;
        args += strlen(kw);
        while (*args == ' ') /* tolerated by every MTA, though not RFC */
            args++;
        out->args = args;
    }
    return 0;
}

bool smtpd_xtext_valid(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '+') {
            if (!strchr("0123456789ABCDEF", s[1]) || s[1] == '\0' ||
                !strchr("0123456789ABCDEF", s[2]) || s[2] == '\0')
                return false;
            s += 2;
        } else if (c < '!' || c > '~' || c == '=') {
            return false;
        }
    }
    return true;
}

static int perr(struct param_error *e, int code, const char *fmt, const char *a)
{
    e->code = code;
    e->enhanced = "5.5.4";
    snprintf(e->text, sizeof(e->text), fmt, a);
    return -1;
}

/* Split "KEY=value" in place; value NULL when there is no '='. */
static void split_param(char *w, char **key, char **val)
{
    char *eq = strchr(w, '=');
    *key = w;
    *val = NULL;
    if (eq) {
        *eq = '\0';
        *val = eq + 1;
    }
}

static int mail_size(struct mail_params *p, char *v, struct param_error *e)
{
    if (v == NULL || str_to_u64(v, &p->size) < 0 || strlen(v) > 20)
        return perr(e, 501, "Bad SIZE parameter value%s", "");
    p->has_size = true;
    return 0;
}

static int mail_body(struct mail_params *p, char *v, struct param_error *e)
{
    if (v && str_iequal(v, "7BIT"))
        p->body = BODY_7BIT;
    else if (v && str_iequal(v, "8BITMIME"))
        p->body = BODY_8BITMIME;
    else if (v && str_iequal(v, "BINARYMIME"))
        return perr(e, 555, "BODY=BINARYMIME is not supported%s", "");
    else
        return perr(e, 501, "Bad BODY parameter value%s", "");
    return 0;
}

static int mail_utf8(struct mail_params *p, char *v, struct param_error *e)
{
    if (v != NULL)
        return perr(e, 501, "SMTPUTF8 takes no value%s", "");
    p->smtputf8 = true;
    return 0;
}

static int mail_ret(struct mail_params *p, char *v, struct param_error *e)
{
    if (p->ret != RET_UNSPEC)
        return perr(e, 501, "Duplicate RET parameter%s", "");
    if (v && str_iequal(v, "FULL"))
        p->ret = RET_FULL;
    else if (v && str_iequal(v, "HDRS"))
        p->ret = RET_HDRS;
    else
        return perr(e, 501, "Bad RET parameter value (use FULL or HDRS)%s", "");
    return 0;
}

static int mail_envid(struct mail_params *p, char *v, struct param_error *e)
{
    if (p->envid[0])
        return perr(e, 501, "Duplicate ENVID parameter%s", "");
    if (v == NULL || *v == '\0' || strlen(v) > SMTP_ENVID_MAX || !smtpd_xtext_valid(v))
        return perr(e, 501, "Bad ENVID parameter (xtext, at most 100 characters)%s", "");
    str_copy(p->envid, v, sizeof(p->envid));
    return 0;
}

struct mail_param_def {
    const char *name;
    int (*handler)(struct mail_params *, char *, struct param_error *);
};

static const struct mail_param_def mail_param_table[] = {
    {"SIZE", mail_size}, {"BODY", mail_body}, {"SMTPUTF8", mail_utf8},
    {"RET", mail_ret}, {"ENVID", mail_envid},
};

int smtpd_parse_mail_params(char *s, struct mail_params *p, struct param_error *e)
{
    char *save = NULL;
    memset(p, 0, sizeof(*p));
    for (char *w = strtok_r(s, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        char *key, *val;
        split_param(w, &key, &val);
        size_t i;
        for (i = 0; i < sizeof(mail_param_table) / sizeof(mail_param_table[0]); i++)
            if (str_iequal(key, mail_param_table[i].name))
                break;
        if (i == sizeof(mail_param_table) / sizeof(mail_param_table[0]))
            return perr(e, 555, "Unsupported MAIL parameter %.40s", key);
        if (mail_param_table[i].handler(p, val, e) < 0)
            return -1;
    }
    return 0;
}

static int rcpt_notify(struct rcpt_params *p, char *v, struct param_error *e)
{
    char *save = NULL;
    if (p->notify)
        return perr(e, 501, "Duplicate NOTIFY parameter%s", "");
    if (v == NULL || *v == '\0')
        return perr(e, 501, "Bad NOTIFY parameter value%s", "");
    for (char *w = strtok_r(v, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (str_iequal(w, "NEVER"))
            p->notify |= NOTIFY_NEVER;
        else if (str_iequal(w, "SUCCESS"))
            p->notify |= NOTIFY_SUCCESS;
        else if (str_iequal(w, "FAILURE"))
            p->notify |= NOTIFY_FAILURE;
        else if (str_iequal(w, "DELAY"))
            p->notify |= NOTIFY_DELAY;
        else
            return perr(e, 501, "Bad NOTIFY keyword %.30s", w);
    }
    if ((p->notify & NOTIFY_NEVER) && p->notify != NOTIFY_NEVER)
        return perr(e, 501, "NOTIFY=NEVER cannot be combined with others%s", "");
    return 0;
}

static int rcpt_orcpt(struct rcpt_params *p, char *v, struct param_error *e)
{
    if (p->orcpt[0])
        return perr(e, 501, "Duplicate ORCPT parameter%s", "");
    char *semi = v ? strchr(v, ';') : NULL;
    if (semi == NULL || semi == v || strlen(v) > SMTP_ORCPT_MAX ||
        !smtpd_xtext_valid(semi + 1) || semi[1] == '\0')
        return perr(e, 501, "Bad ORCPT parameter (addr-type;xtext)%s", "");
    for (char *t = v; t < semi; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') ||
              (*t >= '0' && *t <= '9') || *t == '-'))
            return perr(e, 501, "Bad ORCPT address type%s", "");
    str_copy(p->orcpt, v, sizeof(p->orcpt));
    return 0;
}

int smtpd_parse_rcpt_params(char *s, struct rcpt_params *p, struct param_error *e)
{
    char *save = NULL;
    memset(p, 0, sizeof(*p));
    for (char *w = strtok_r(s, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        char *key, *val;
        split_param(w, &key, &val);
        int rc;
        if (str_iequal(key, "NOTIFY"))
            rc = rcpt_notify(p, val, e);
        else if (str_iequal(key, "ORCPT"))
            rc = rcpt_orcpt(p, val, e);
        else
            return perr(e, 555, "Unsupported RCPT parameter %.40s", key);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int smtpd_parse_bdat(const char *args, uint64_t *size, bool *last)
{
    char tmp[64];
    if (str_copy(tmp, args, sizeof(tmp)) >= sizeof(tmp))
        return -1;
    char *sp = strchr(tmp, ' ');
    *last = false;
    if (sp) {
        *sp++ = '\0';
        while (*sp == ' ')
            sp++;
        if (!str_iequal(sp, "LAST"))
            return -1;
        *last = true;
    }
    if (strlen(tmp) > 18 || str_to_u64(tmp, size) < 0)
        return -1;
    return 0;
}
