/*
 * address.c - RFC 5321 path parser (with RFC 6531 UTF-8 extensions).
 *
 * A hand-written recursive-descent parser over the grammar of RFC 5321
 * section 4.1.2. Every loop is bounded by the length limits of section
 * 4.5.3.1, so hostile input costs at most ADDR_PATH_MAX steps.
 */
#include "mail/address.h"
#include "lib/strutil.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static bool is_atext(unsigned char c, bool utf8)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    if (c >= 0x80)
        return utf8;
    return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

static bool is_letdig(unsigned char c, bool utf8)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (utf8 && c >= 0x80);
}

/* Validate UTF-8 sequences (no overlongs, no surrogates). */
static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += len;
    }
    return true;
}

/* Domain = sub-domain *("." sub-domain); returns chars consumed or 0. */
static size_t parse_domain(const char *s, bool utf8)
{
    size_t i = 0;
    for (;;) {
        size_t start = i;
        if (!is_letdig((unsigned char)s[i], utf8))
            return 0;
        while (is_letdig((unsigned char)s[i], utf8) || s[i] == '-') {
            if (i - start >= 63 * 4 || i > ADDR_DOMAIN_MAX)
                return 0;
            i++;
        }
        if (s[i - 1] == '-')
            return 0;
        if (s[i] != '.')
            return i;
        if (!is_letdig((unsigned char)s[i + 1], utf8))
            return i; /* a trailing dot is handled by the caller */
        i++;
    }
}

/* "[...]" address literal; returns chars consumed or 0. */
static size_t parse_literal(const char *s)
{
    const char *close = strchr(s, ']');
    if (s[0] != '[' || close == NULL || close - s > 60)
        return 0;
    char inner[64];
    size_t n = (size_t)(close - s - 1);
    memcpy(inner, s + 1, n);
    inner[n] = '\0';
    unsigned char bin[16];
    if (str_iprefix(inner, "IPv6:")) {
        if (inet_pton(AF_INET6, inner + 5, bin) != 1)
            return 0;
    } else if (inet_pton(AF_INET, inner, bin) != 1) {
        return 0;
    }
    return n + 2;
}

/* Local-part; returns chars consumed or 0. */
static size_t parse_local(const char *s, bool utf8, bool *quoted)
{
    size_t i = 0;
    *quoted = false;
    if (s[0] == '"') {
        *quoted = true;
        for (i = 1; s[i] != '"'; i++) {
            unsigned char c = (unsigned char)s[i];
            if (i > ADDR_LOCAL_MAX + 1)
                return 0;
            if (c == '\\') {
                unsigned char e = (unsigned char)s[i + 1];
                if (e < 32 || e > 126)
                    return 0;
                i++;
            } else if (!((c >= 32 && c <= 126 && c != '"') || (utf8 && c >= 0x80))) {
                return 0;
            }
        }
        return i + 1;
    }
    for (;;) {
        size_t start = i;
        while (is_atext((unsigned char)s[i], utf8)) {
            if (i > ADDR_LOCAL_MAX)
                return 0;
            i++;
        }
        if (i == start)
            return 0;
        if (s[i] != '.')
            return i;
        i++;
    }
}

/* A-d-l = At-domain *( "," At-domain ) ":"; returns chars consumed or 0. */
static size_t parse_route(const char *s, bool utf8)
{
    size_t i = 0;
    for (;;) {
        if (s[i] != '@')
            return 0;
        size_t n = parse_domain(s + i + 1, utf8);
        if (n == 0)
            return 0;
        i += 1 + n;
        if (s[i] == ':')
            return i + 1;
        if (s[i] != ',' || i > ADDR_PATH_MAX)
            return 0;
        i++;
    }
}

static bool has_nonascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

static enum addr_status parse_mailbox(const char *s, unsigned flags,
                                      struct address *out, size_t *used)
{
    bool utf8 = true; /* parse permissively, decide on UTF-8 below */
    size_t ln = parse_local(s, utf8, &out->quoted);
    if (ln == 0)
        return ADDR_ESYNTAX;
    if (ln > ADDR_LOCAL_MAX)
        return ADDR_ETOOLONG;
    memcpy(out->local, s, ln);
    out->local[ln] = '\0';
    if (s[ln] != '@') {
        if ((flags & ADDR_ALLOW_POSTMASTER) && !out->quoted &&
            str_iequal(out->local, "postmaster")) {
            out->is_postmaster = true;
            *used = ln;
            return ADDR_OK;
        }
        return ADDR_ESYNTAX;
    }
    const char *d = s + ln + 1;
    size_t dn = d[0] == '[' ? parse_literal(d) : parse_domain(d, utf8);
    if (dn == 0)
        return ADDR_ESYNTAX;
    out->literal = d[0] == '[';
    if (dn > ADDR_DOMAIN_MAX)
        return ADDR_ETOOLONG;
    memcpy(out->domain, d, dn);
    out->domain[dn] = '\0';
    str_lower(out->domain);
    size_t total = ln + 1 + dn;
    if (!out->literal && d[dn] == '.')
        total++; /* one trailing dot: the same domain, normalised away */
    out->utf8 = has_nonascii(s, total);
    if (out->utf8 && !utf8_valid((const unsigned char *)s, total))
        return ADDR_ESYNTAX;
    if (out->utf8 && !(flags & ADDR_ALLOW_UTF8))
        return ADDR_EUTF8;
    *used = total;
    return ADDR_OK;
}

enum addr_status address_parse_path(const char *s, unsigned flags,
                                    struct address *out, const char **end)
{
    memset(out, 0, sizeof(*out));
    bool brackets = s[0] == '<';
    if (!brackets && !(flags & ADDR_ALLOW_NOBRACKETS))
        return ADDR_ESYNTAX;
    const char *p = brackets ? s + 1 : s;
    if (brackets && *p == '>') {
        if (!(flags & ADDR_ALLOW_NULL))
            return ADDR_ENULL;
        out->is_null = true;
        *end = p + 1;
        return ADDR_OK;
    }
    if (*p == '@') {
        size_t rn = parse_route(p, true);
        if (rn == 0)
            return ADDR_ESYNTAX;
        out->had_route = true;
        p += rn;
    }
    size_t used = 0;
    enum addr_status st = parse_mailbox(p, flags, out, &used);
    if (st != ADDR_OK)
        return st;
    p += used;
    if (brackets) {
        if (*p != '>')
            return ADDR_ESYNTAX;
        p++;
    }
    if ((size_t)(p - s) > ADDR_PATH_MAX + 2)
        return ADDR_ETOOLONG;
    if (*p != '\0' && *p != ' ')
        return ADDR_ESYNTAX;
    *end = p;
    return ADDR_OK;
}

const char *address_str(const struct address *a, char *buf, size_t len)
{
    if (a->is_null)
        str_copy(buf, "", len);
    else if (a->is_postmaster)
        str_copy(buf, a->local, len);
    else
        snprintf(buf, len, "%s@%s", a->local, a->domain);
    return buf;
}

bool address_has_routing(const struct address *a)
{
    /* A source route is harmless: RFC 5321 says ignore it, and we do. */
    return strpbrk(a->local, "%!@") != NULL;
}

const char *address_status_str(enum addr_status st)
{
    switch (st) {
    case ADDR_OK: return "ok";
    case ADDR_ESYNTAX: return "bad address syntax";
    case ADDR_ETOOLONG: return "address too long";
    case ADDR_EUTF8: return "non-ASCII address without SMTPUTF8";
    case ADDR_ENULL: return "null address not allowed here";
    }
    return "unknown";
}
