/*
 * imap_parse.c - the IMAP response parser (see imap_parse.h).
 *
 * A cursor walks the wire bytes once. Values are parsed by one function per
 * first byte, chosen from a table; lists nest through an explicit depth
 * bound. Nothing is allocated per byte: tokens go into one growable array
 * capped at IMAP_TOK_MAX.
 */
#include "mail/imap_parse.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cur {
    char *p, *end;
    struct imap_resp *r;
    char *err;
    size_t errlen;
    unsigned depth;
};

static int value(struct cur *c, char term);

static int fail(struct cur *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct cur *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void imap_resp_init(struct imap_resp *r)
{
    memset(r, 0, sizeof(*r));
}

void imap_resp_free(struct imap_resp *r)
{
    free(r->tok);
    memset(r, 0, sizeof(*r));
}

static long push(struct cur *c, enum imap_tok_type type, const char *p, size_t len)
{
    struct imap_resp *r = c->r;
    if (r->ntok >= IMAP_TOK_MAX)
        return fail(c, "response has more than %d items", IMAP_TOK_MAX);
    r->tok = xgrow(r->tok, &r->cap, r->ntok + 1, sizeof(*r->tok));
    struct imap_tok *t = &r->tok[r->ntok];
    t->type = type;
    t->p = p;
    t->len = len;
    t->num = 0;
    t->end = r->ntok + 1;
    return (long)r->ntok++;
}

static bool at_eol(const struct cur *c)
{
    return c->p >= c->end || *c->p == '\r' || *c->p == '\n';
}

static void skip_sp(struct cur *c)
{
    while (c->p < c->end && *c->p == ' ')
        c->p++;
}

/* ---------------------------------------------------------------------- */
/* values                                                                  */

static int quoted(struct cur *c, char term)
{
    char *start = ++c->p, *w = start;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p == '\r' || *c->p == '\n')
            return fail(c, "quoted string broken by a line end");
        if (*c->p == '\\') {
            if (++c->p >= c->end)
                break;
        }
        *w++ = *c->p++;
    }
    if (c->p >= c->end)
        return fail(c, "unterminated quoted string");
    c->p++;
    return push(c, IMAP_STR, start, (size_t)(w - start)) < 0 ? -1 : 0;
}

static int literal(struct cur *c, char term)
{
    if (*c->p == '~')
        c->p++;
    if (c->p >= c->end || *c->p != '{')
        return fail(c, "bad literal");
    c->p++;
    uint64_t n = 0;
    int digits = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (++digits > 19)
            return fail(c, "literal size too large");
        n = n * 10 + (uint64_t)(*c->p++ - '0');
    }
    if (c->p < c->end && *c->p == '+')
        c->p++;
    if (digits == 0 || c->p >= c->end || *c->p != '}')
        return fail(c, "bad literal size");
    c->p++;
    if (c->p < c->end && *c->p == '\r')
        c->p++;
    if (c->p >= c->end || *c->p != '\n')
        return fail(c, "literal size not followed by a line end");
    c->p++;
    if (n > (uint64_t)(c->end - c->p))
        return fail(c, "truncated literal (%llu bytes announced, %zu present)",
                    (unsigned long long)n, (size_t)(c->end - c->p));
    if (push(c, IMAP_STR, c->p, (size_t)n) < 0)
        return -1;
    c->p += n;
    return 0;
}

static int list(struct cur *c, char term)
{
    if (++c->depth > IMAP_DEPTH_MAX)
        return fail(c, "lists nested deeper than %d", IMAP_DEPTH_MAX);
    long at = push(c, IMAP_LIST, NULL, 0);
    if (at < 0)
        return -1;
    c->p++;
    for (;;) {
        skip_sp(c);
        if (at_eol(c))
            return fail(c, "unterminated list");
        if (*c->p == ')')
            break;
        if (value(c, ')') < 0)
            return -1;
    }
    c->p++;
    c->depth--;
    c->r->tok[at].end = c->r->ntok;
    return 0;
}

static bool atom_char(char ch, char term)
{
    unsigned char u = (unsigned char)ch;
    if (u <= 0x20 || u == 0x7f)
        return false;
    return ch != '(' && ch != ')' && ch != '{' && ch != '"' && ch != term;
}

static void classify_atom(struct imap_tok *t)
{
    if (t->len == 3 && strncasecmp(t->p, "NIL", 3) == 0) {
        t->type = IMAP_NIL;
        return;
    }
    if (t->len == 0 || t->len > 19)
        return;
    uint64_t n = 0;
    for (size_t i = 0; i < t->len; i++) {
        if (t->p[i] < '0' || t->p[i] > '9')
            return;
        n = n * 10 + (uint64_t)(t->p[i] - '0');
    }
    t->type = IMAP_NUM;
    t->num = n;
}

/* An atom; "BODY[HEADER.FIELDS (A B)]<0>" counts as one: inside [...] any
 * byte but a line end is allowed. */
static int atom(struct cur *c, char term)
{
    char *start = c->p;
    while (c->p < c->end && atom_char(*c->p, term)) {
        if (*c->p++ != '[')
            continue;
        while (c->p < c->end && *c->p != ']' && *c->p != '\r' && *c->p != '\n')
            c->p++;
        if (c->p >= c->end || *c->p != ']')
            return fail(c, "unterminated [ in an atom");
        c->p++;
    }
    if (c->p == start)
        return fail(c, "unexpected byte 0x%02x", (unsigned char)*c->p);
    long at = push(c, IMAP_ATOM, start, (size_t)(c->p - start));
    if (at < 0)
        return -1;
    classify_atom(&c->r->tok[at]);
    return 0;
}

typedef int (*value_fn)(struct cur *c, char term);

static value_fn value_for(char ch)
{
    switch (ch) {
    case '"': return quoted;
    case '{': case '~': return literal;
    case '(': return list;
    default: return atom;
    }
}

static int value(struct cur *c, char term)
{
    return value_for(*c->p)(c, term);
}

/* Values up to the end of the line (or `term` at depth 0). */
static int values(struct cur *c, char term)
{
    for (;;) {
        skip_sp(c);
        if (at_eol(c) || (term && *c->p == term))
            return 0;
        if (*c->p == ')')
            return fail(c, "unbalanced )");
        if (value(c, term) < 0)
            return -1;
    }
}

/* ---------------------------------------------------------------------- */
/* response framing                                                        */

static int word(struct cur *c, char *dst, size_t dstlen, const char *what)
{
    size_t n = 0;
    while (c->p < c->end && atom_char(*c->p, ']') && *c->p != '[') {
        if (n + 1 >= dstlen)
            return fail(c, "%s too long", what);
        dst[n++] = *c->p++;
    }
    dst[n] = '\0';
    if (n == 0)
        return fail(c, "missing %s", what);
    return 0;
}

static const struct {
    const char *name;
    enum imap_status st;
} status_words[] = {
    {"OK", IMAP_OK}, {"NO", IMAP_NO}, {"BAD", IMAP_BAD}, {"BYE", IMAP_BYE},
    {"PREAUTH", IMAP_PREAUTH},
};

static enum imap_status status_of(const char *kw)
{
    for (size_t i = 0; i < sizeof(status_words) / sizeof(status_words[0]); i++)
        if (strcmp(kw, status_words[i].name) == 0)
            return status_words[i].st;
    return IMAP_NONE;
}

static void rest_as_text(struct cur *c)
{
    skip_sp(c);
    c->r->text = c->p;
    while (!at_eol(c))
        c->p++;
    c->r->text_len = (size_t)(c->p - c->r->text);
}

static int status_rest(struct cur *c)
{
    skip_sp(c);
    c->r->code = c->r->code_end = c->r->ntok;
    const char *full = c->p;
    if (c->p < c->end && *c->p == '[') {
        c->p++;
        if (values(c, ']') < 0)
            return -1;
        if (c->p >= c->end || *c->p != ']')
            return fail(c, "unterminated response code");
        c->p++;
        c->r->code_end = c->r->ntok;
    }
    rest_as_text(c);
    c->r->full = full;
    c->r->full_len = (size_t)(c->p - full);
    return 0;
}

static int untagged(struct cur *c)
{
    struct imap_resp *r = c->r;
    if (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        char num[24];
        if (word(c, num, sizeof(num), "message number") < 0 ||
            str_to_u64(num, &r->num) < 0)
            return fail(c, "bad message number");
        r->has_num = true;
        skip_sp(c);
    }
    if (word(c, r->keyword, sizeof(r->keyword), "response keyword") < 0)
        return -1;
    str_upper(r->keyword);
    r->status = r->has_num ? IMAP_NONE : status_of(r->keyword);
    if (r->status != IMAP_NONE)
        return status_rest(c);
    r->data = r->ntok;
    return values(c, 0);
}

static int finish(struct cur *c)
{
    if (c->p < c->end && *c->p == '\r')
        c->p++;
    if (c->p < c->end && *c->p == '\n')
        c->p++;
    if (c->p != c->end)
        return fail(c, "data after the end of the response");
    return 0;
}

int imap_parse(char *data, size_t len, struct imap_resp *r, char *err, size_t errlen)
{
    struct cur c = {data, data + len, r, err, errlen, 0};
    r->kind = IMAP_UNTAGGED;
    r->tag[0] = r->keyword[0] = '\0';
    r->has_num = false;
    r->num = 0;
    r->status = IMAP_NONE;
    r->code = r->code_end = r->data = r->ntok = 0;
    r->text = r->full = "";
    r->text_len = r->full_len = 0;
    if (len == 0)
        return fail(&c, "empty response");
    if (*c.p == '+') {
        r->kind = IMAP_CONTINUE;
        c.p++;
        rest_as_text(&c);
        return finish(&c);
    }
    if (word(&c, r->tag, sizeof(r->tag), "tag") < 0)
        return -1;
    if (c.p >= c.end || *c.p != ' ')
        return fail(&c, "no space after the tag");
    skip_sp(&c);
    int rc;
    if (strcmp(r->tag, "*") == 0) {
        rc = untagged(&c);
    } else {
        r->kind = IMAP_TAGGED;
        if (word(&c, r->keyword, sizeof(r->keyword), "status") < 0)
            return -1;
        str_upper(r->keyword);
        r->status = status_of(r->keyword);
        if (r->status != IMAP_OK && r->status != IMAP_NO && r->status != IMAP_BAD)
            return fail(&c, "tagged response is not OK, NO or BAD");
        rc = status_rest(&c);
    }
    return rc < 0 ? -1 : finish(&c);
}

/* ---------------------------------------------------------------------- */
/* helpers for readers                                                     */

bool imap_tok_is(const struct imap_tok *t, const char *s)
{
    if (t->type != IMAP_ATOM && t->type != IMAP_STR)
        return false;
    size_t n = strlen(s);
    return t->len == n && strncasecmp(t->p, s, n) == 0;
}

const char *imap_tok_str(const struct imap_tok *t, char *dst, size_t dstlen)
{
    if (dstlen == 0)
        return dst;
    size_t n = t->p ? t->len : 0;
    if (n >= dstlen)
        n = dstlen - 1;
    if (n)
        memcpy(dst, t->p, n);
    dst[n] = '\0';
    return dst;
}

long imap_fetch_item(const struct imap_resp *r, size_t list, const char *name)
{
    if (list >= r->ntok || r->tok[list].type != IMAP_LIST)
        return -1;
    size_t n = strlen(name);
    bool prefix = n > 0 && name[n - 1] == '[';
    for (size_t i = list + 1; i < r->tok[list].end;) {
        const struct imap_tok *k = &r->tok[i];
        size_t v = k->end;
        if (v >= r->tok[list].end)
            return -1;
        if (k->type == IMAP_ATOM && (prefix ? k->len >= n : k->len == n) &&
            strncasecmp(k->p, name, n) == 0)
            return (long)v;
        i = r->tok[v].end;
    }
    return -1;
}

bool imap_code_is(const struct imap_resp *r, const char *name)
{
    return r->code < r->code_end && imap_tok_is(&r->tok[r->code], name);
}

int imap_seqset_each(const char *s, size_t len, uint64_t max,
                     void (*fn)(uint64_t n, void *arg), void *arg)
{
    const char *p = s, *end = s + len;
    uint64_t count = 0;
    while (p < end) {
        uint64_t a = 0, b;
        int d = 0;
        while (p < end && *p >= '0' && *p <= '9' && d < 10)
            a = a * 10 + (uint64_t)(*p++ - '0'), d++;
        if (d == 0)
            return -1;
        b = a;
        if (p < end && *p == ':') {
            p++;
            b = 0;
            d = 0;
            while (p < end && *p >= '0' && *p <= '9' && d < 10)
                b = b * 10 + (uint64_t)(*p++ - '0'), d++;
            if (d == 0)
                return -1;
        }
        if (a > b) {
            uint64_t t = a;
            a = b;
            b = t;
        }
        if (b - a >= max || count + (b - a + 1) > max)
            return -1;
        count += b - a + 1;
        for (uint64_t n = a; n <= b; n++)
            fn(n, arg);
        if (p < end && *p != ',')
            return -1;
        if (p < end)
            p++;
    }
    return 0;
}
