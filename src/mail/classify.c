/*
 * classify.c - SMTP reply classifier: rules from etc/reply_rules (or the
 * compiled-in copy of it), first matching rule wins, code-class fallback.
 *
 * Rule syntax and the list of classes: etc/reply_rules and classify.h.
 * Text conditions are matched case-insensitively against the whole reply,
 * which is lower-cased once per call into a bounded buffer.
 */
#include "mail/classify.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLS_TEXT_MAX 1024   /* reply text examined (longer is cut) */
#define CLS_LINE_MAX 2048
#define CLS_MAX_CONDS 4

enum cond_kind { COND_CODE, COND_ENH, COND_TEXT, COND_MX };

struct cls_cond {
    enum cond_kind kind;
    char code[4];          /* "4x1": digits or 'x' */
    int enh[3];            /* -1 = any */
    int enh_hi;            /* upper bound of the last part */
    char *str;             /* text (lower case) or mx glob */
};

struct cls_rule {
    enum reply_class cls;
    struct cls_cond cond[CLS_MAX_CONDS];
    int ncond;
};

struct cls_set {
    struct cls_rule *rules;
    size_t n, cap;
    char *explain[RC__COUNT];
    char *next[RC__COUNT];
};

static const char *const class_names[RC__COUNT] = {
    [RC_UNKNOWN] = "unknown",
    [RC_BUSY] = "busy",
    [RC_RATE_LIMITED] = "rate_limited",
    [RC_CONNECTION_CAP] = "connection_cap",
    [RC_REPUTATION_BLOCK] = "reputation_block",
    [RC_AUTH_POLICY] = "auth_policy",
    [RC_TLS_REQUIRED] = "tls_required",
    [RC_TLS_FAILURE] = "tls_failure",
    [RC_GREYLISTED] = "greylisted",
    [RC_MAILBOX_FULL] = "mailbox_full",
    [RC_NO_SUCH_USER] = "no_such_user",
    [RC_MESSAGE_TOO_BIG] = "message_too_big",
    [RC_POLICY] = "policy",
    [RC_DNS] = "dns",
    [RC_NETWORK] = "network",
    [RC_OTHER_TEMP] = "other_temp",
    [RC_OTHER_PERM] = "other_perm",
};

static const char default_rules[] =
#include "mail/classify_rules.inc"
    ;

static struct cls_set *active;

static void set_free(struct cls_set *s);
static int set_parse_text(struct cls_set *s, const char *text, const char *src,
                          char *err, size_t errlen);

/* ---- the rule set ---------------------------------------------------- */

static struct cls_set *active_set(void)
{
    if (active == NULL) {
        char err[256];
        active = xcalloc(1, sizeof(*active));
        if (set_parse_text(active, default_rules, "built-in", err, sizeof(err)) < 0)
            abort();   /* the compiled-in table is tested; a bug if bad */
    }
    return active;
}

void classify_free(void)
{
    set_free(active);
    active = NULL;
}

void classify_reset(void)
{
    classify_free();
    (void)active_set();
}

const char *classify_default_rules(void)
{
    return default_rules;
}

size_t classify_rule_count(void)
{
    return active_set()->n;
}

int classify_load(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s; fix: correct the path "
                 "or omit it to use the built-in rules", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t cap = 0, len = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        text = xgrow(text, &cap, len + n + 1, 1);
        memcpy(text + len, chunk, n);
        len += n;
    }
    fclose(fp);
    text = xgrow(text, &cap, len + 1, 1);
    text[len] = '\0';
    struct cls_set *s = xcalloc(1, sizeof(*s));
    int rc = set_parse_text(s, text, path, err, errlen);
    free(text);
    if (rc < 0) {
        set_free(s);
        return -1;
    }
    set_free(active);
    active = s;
    return 0;
}

static void set_free(struct cls_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        for (int j = 0; j < s->rules[i].ncond; j++)
            free(s->rules[i].cond[j].str);
    free(s->rules);
    for (int c = 0; c < RC__COUNT; c++) {
        free(s->explain[c]);
        free(s->next[c]);
    }
    free(s);
}

/* ---- parsing rule lines ---------------------------------------------- */

/* Next token: a word, or KEY="quoted text" / "quoted text" with the quotes
 * removed in place. Returns NULL at the end of the line. */
static char *next_token(char **pp)
{
    char *p = *pp;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return NULL;
    char *start = p, *out = p;
    bool quoted = false;
    for (; *p; p++) {
        if (*p == '"') {
            quoted = !quoted;
            continue;
        }
        if (!quoted && (*p == ' ' || *p == '\t'))
            break;
        *out++ = *p;
    }
    if (*p)
        p++;
    *out = '\0';
    *pp = p;
    return start;
}

static int parse_enh(const char *s, struct cls_cond *c)
{
    int part = 0;
    c->enh_hi = -1;
    for (const char *p = s; part < 3; part++) {
        if (*p == 'x' || *p == 'X') {
            c->enh[part] = -1;
            p++;
        } else {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > 999)
                return -1;
            c->enh[part] = (int)v;
            p = end;
            if (part == 2 && *p == '-') {
                v = strtol(p + 1, &end, 10);
                if (end == p + 1 || v < c->enh[2] || v > 999)
                    return -1;
                c->enh_hi = (int)v;
                p = end;
            }
        }
        if (part < 2 && *p++ != '.')
            return -1;
        if (part == 2 && *p != '\0')
            return -1;
    }
    if (c->enh_hi < 0)
        c->enh_hi = c->enh[2];
    return 0;
}

static int parse_cond(const char *tok, struct cls_cond *c)
{
    memset(c, 0, sizeof(*c));
    if (strncmp(tok, "code=", 5) == 0) {
        const char *v = tok + 5;
        if (strlen(v) != 3)
            return -1;
        for (int i = 0; i < 3; i++) {
            if (!isdigit((unsigned char)v[i]) && v[i] != 'x')
                return -1;
            c->code[i] = v[i];
        }
        c->kind = COND_CODE;
        return 0;
    }
    if (strncmp(tok, "enh=", 4) == 0) {
        c->kind = COND_ENH;
        return parse_enh(tok + 4, c);
    }
    if (strncmp(tok, "text=", 5) == 0 && tok[5]) {
        c->kind = COND_TEXT;
        c->str = str_lower(xstrdup(tok + 5));
        return 0;
    }
    if (strncmp(tok, "mx=", 3) == 0 && tok[3]) {
        c->kind = COND_MX;
        c->str = str_lower(xstrdup(tok + 3));
        return 0;
    }
    return -1;
}

static int parse_rule(struct cls_set *s, char *rest, char *err, size_t errlen,
                      const char *where)
{
    char *name = next_token(&rest);
    enum reply_class cls = name ? classify_from_name(name) : RC__COUNT;
    if (cls == RC__COUNT) {
        snprintf(err, errlen, "%s: unknown class '%s'; fix: use one of the "
                 "classes listed in etc/reply_rules", where, name ? name : "");
        return -1;
    }
    struct cls_rule r = {.cls = cls};
    char *tok;
    while ((tok = next_token(&rest)) != NULL) {
        if (r.ncond == CLS_MAX_CONDS || parse_cond(tok, &r.cond[r.ncond]) < 0) {
            for (int j = 0; j < r.ncond; j++)
                free(r.cond[j].str);
            snprintf(err, errlen, "%s: bad condition '%s'; fix: code=NNN, "
                     "enh=X.Y.Z, text=\"...\" or mx=HOST (at most %d)",
                     where, tok, CLS_MAX_CONDS);
            return -1;
        }
        r.ncond++;
    }
    if (r.ncond == 0) {
        snprintf(err, errlen, "%s: rule without a condition; fix: add "
                 "code=, enh=, text= or mx=", where);
        return -1;
    }
    s->rules = xgrow(s->rules, &s->cap, s->n + 1, sizeof(*s->rules));
    s->rules[s->n++] = r;
    return 0;
}

static int parse_explain(struct cls_set *s, char *rest, char *err, size_t errlen,
                         const char *where)
{
    char *name = next_token(&rest);
    enum reply_class cls = name ? classify_from_name(name) : RC__COUNT;
    char *what = next_token(&rest);
    char *todo = next_token(&rest);
    if (cls == RC__COUNT || what == NULL || todo == NULL) {
        snprintf(err, errlen, "%s: bad explain line; fix: explain CLASS "
                 "\"meaning\" \"next step\"", where);
        return -1;
    }
    free(s->explain[cls]);
    free(s->next[cls]);
    s->explain[cls] = xstrdup(what);
    s->next[cls] = xstrdup(todo);
    return 0;
}

static int parse_line(struct cls_set *s, char *line, const char *where,
                      char *err, size_t errlen)
{
    char *p = line;
    char *kw = next_token(&p);
    if (kw == NULL || *kw == '#')
        return 0;
    if (strcmp(kw, "rule") == 0)
        return parse_rule(s, p, err, errlen, where);
    if (strcmp(kw, "explain") == 0)
        return parse_explain(s, p, err, errlen, where);
    snprintf(err, errlen, "%s: unknown keyword '%s'; fix: lines start with "
             "'rule' or 'explain'", where, kw);
    return -1;
}

static int set_parse_text(struct cls_set *s, const char *text, const char *src,
                          char *err, size_t errlen)
{
    unsigned lineno = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[CLS_LINE_MAX];
        char where[300];
        lineno++;
        snprintf(where, sizeof(where), "%s:%u", src, lineno);
        if (n >= sizeof(line)) {
            snprintf(err, errlen, "%s: line too long; fix: shorten it", where);
            return -1;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        if (parse_line(s, line, where, err, errlen) < 0)
            return -1;
        p += n + (nl ? 1 : 0);
    }
    return 0;
}

/* ---- matching -------------------------------------------------------- */

static bool match_code(const struct cls_cond *c, int code)
{
    char s[8];
    if (code < 100 || code > 999)
        return false;
    snprintf(s, sizeof(s), "%d", code);
    for (int i = 0; i < 3; i++)
        if (c->code[i] != 'x' && c->code[i] != s[i])
            return false;
    return true;
}

static bool match_enh(const struct cls_cond *c, const int e[3])
{
    if (e[0] < 0)
        return false;
    for (int i = 0; i < 2; i++)
        if (c->enh[i] >= 0 && c->enh[i] != e[i])
            return false;
    if (c->enh[2] >= 0 && (e[2] < c->enh[2] || e[2] > c->enh_hi))
        return false;
    return true;
}

static bool match_mx(const char *glob, const char *host)
{
    if (host == NULL || *host == '\0')
        return false;
    if (strncmp(glob, "*.", 2) == 0) {
        size_t hl = strlen(host), gl = strlen(glob + 1);
        return hl > gl && strcasecmp(host + hl - gl, glob + 1) == 0;
    }
    return strcasecmp(glob, host) == 0;
}

struct cls_input {
    int code;
    int enh[3];
    const char *lower;     /* lower-cased text */
    const char *mx;
};

static bool match_rule(const struct cls_rule *r, const struct cls_input *in)
{
    for (int i = 0; i < r->ncond; i++) {
        const struct cls_cond *c = &r->cond[i];
        bool ok = false;
        switch (c->kind) {
        case COND_CODE: ok = match_code(c, in->code); break;
        case COND_ENH: ok = match_enh(c, in->enh); break;
        case COND_TEXT: ok = strstr(in->lower, c->str) != NULL; break;
        case COND_MX: ok = match_mx(c->str, in->mx); break;
        }
        if (!ok)
            return false;
    }
    return true;
}

static void parse_enh_triplet(const char *s, int e[3])
{
    e[0] = e[1] = e[2] = -1;
    if (s == NULL || *s == '\0')
        return;
    unsigned a, b, c;
    char tail;
    int n = sscanf(s, "%3u.%3u.%3u%c", &a, &b, &c, &tail);
    if (n == 3 || (n == 4 && !isdigit((unsigned char)tail))) {
        e[0] = (int)a;
        e[1] = (int)b;
        e[2] = (int)c;
    }
}

static enum reply_class fallback(int code, const int e[3])
{
    int lead = code >= 100 ? code / 100 : (e[0] >= 0 ? e[0] : 0);
    if (lead == 4)
        return RC_OTHER_TEMP;
    if (lead == 5)
        return RC_OTHER_PERM;
    return RC_UNKNOWN;
}

enum reply_class classify_reply(int code, const char *enhanced,
                                const char *text, const char *mx_host)
{
    char lower[CLS_TEXT_MAX];
    char enhbuf[16];
    struct cls_input in = {.code = code, .mx = mx_host};
    str_copy(lower, text ? text : "", sizeof(lower));
    str_lower(lower);
    if ((enhanced == NULL || *enhanced == '\0') && text != NULL) {
        int c = classify_parse_reply(text, enhbuf, sizeof(enhbuf));
        if (in.code == 0)
            in.code = c;
        enhanced = enhbuf;
    }
    parse_enh_triplet(enhanced, in.enh);
    in.lower = lower;
    const struct cls_set *s = active_set();
    for (size_t i = 0; i < s->n; i++)
        if (match_rule(&s->rules[i], &in))
            return s->rules[i].cls;
    return fallback(in.code, in.enh);
}

/* ---- reply text helpers ---------------------------------------------- */

static bool is_code_at(const char *p)
{
    return (p[0] >= '2' && p[0] <= '5') && isdigit((unsigned char)p[1]) &&
           isdigit((unsigned char)p[2]) && (p[3] == ' ' || p[3] == '-' || p[3] == '\0');
}

static size_t enh_len_at(const char *p)
{
    const char *q = p;
    if (*q < '2' || *q > '5' || q[1] != '.')
        return 0;
    q += 2;
    for (int part = 0; part < 2; part++) {
        int digits = 0;
        while (isdigit((unsigned char)*q) && digits < 3) {
            q++;
            digits++;
        }
        if (digits == 0)
            return 0;
        if (part == 0 && *q++ != '.')
            return 0;
    }
    if (isdigit((unsigned char)*q) || *q == '.')
        return 0;
    return (size_t)(q - p);
}

int classify_parse_reply(const char *text, char *enh, size_t enhlen)
{
    if (enhlen)
        enh[0] = '\0';
    if (text == NULL)
        return 0;
    const char *said = strstr(text, " said: ");
    const char *p = said ? said + 7 : text;
    int code = 0;
    for (; *p; p++) {
        if ((p == text || p[-1] == ' ' || p[-1] == '(' || p[-1] == '[') && is_code_at(p)) {
            code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
            p += 3;
            if (*p)
                p++;
            break;
        }
    }
    if (code == 0)
        p = said ? said + 7 : text;
    for (const char *q = p; *q; q++) {
        if (q != text && q[-1] != ' ' && q[-1] != '-' && q[-1] != '(' && q[-1] != '#')
            continue;
        size_t n = enh_len_at(q);
        if (n > 0) {
            if (n < enhlen) {
                memcpy(enh, q, n);
                enh[n] = '\0';
            }
            break;
        }
    }
    return code;
}

const char *classify_name(enum reply_class c)
{
    return (c >= 0 && c < RC__COUNT) ? class_names[c] : "unknown";
}

enum reply_class classify_from_name(const char *name)
{
    for (int c = 0; c < RC__COUNT; c++)
        if (strcmp(class_names[c], name) == 0)
            return (enum reply_class)c;
    return RC__COUNT;
}

const char *classify_explain(enum reply_class c)
{
    const struct cls_set *s = active_set();
    if (c < 0 || c >= RC__COUNT || s->explain[c] == NULL)
        return "";
    return s->explain[c];
}

const char *classify_next_step(enum reply_class c)
{
    const struct cls_set *s = active_set();
    if (c < 0 || c >= RC__COUNT || s->next[c] == NULL)
        return "";
    return s->next[c];
}

bool classify_is_temporary(enum reply_class c, int code)
{
    if (code >= 500 && code < 600)
        return false;
    if (code >= 400 && code < 500)
        return true;
    switch (c) {
    case RC_NO_SUCH_USER:
    case RC_MESSAGE_TOO_BIG:
    case RC_OTHER_PERM:
    case RC_REPUTATION_BLOCK:
        return false;
    default:
        return true;
    }
}
