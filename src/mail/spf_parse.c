/*
 * spf_parse.c - SPF record syntax (RFC 7208 section 12) and macro
 * expansion (section 7). Pure functions: no DNS, no global state.
 *
 * The parser is table-driven: each mechanism or modifier name maps to its
 * kind and to what may follow it (":" domain-spec required / optional,
 * CIDR lengths, "=" value). Any syntax error anywhere in the record makes
 * the whole record a permerror (4.6), so the record is parsed before any
 * term is evaluated.
 */
#include "mail/spf.h"
#include "lib/buf.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum spf_arg {
    ARG_NONE,       /* all */
    ARG_DOMAIN,     /* include, exists: ":" domain-spec required */
    ARG_OPT_CIDR,   /* a, mx: [":" domain-spec] [dual-cidr-length] */
    ARG_OPT,        /* ptr: [":" domain-spec] */
    ARG_IP4,        /* ip4: ":" ip4-network [cidr] */
    ARG_IP6,        /* ip6: ":" ip6-network [cidr] */
};

struct spf_mech_def {
    const char *name;
    enum spf_term_kind kind;
    enum spf_arg arg;
};

static const struct spf_mech_def spf_mechs[] = {
    {"all", SPF_M_ALL, ARG_NONE},
    {"include", SPF_M_INCLUDE, ARG_DOMAIN},
    {"a", SPF_M_A, ARG_OPT_CIDR},
    {"mx", SPF_M_MX, ARG_OPT_CIDR},
    {"ptr", SPF_M_PTR, ARG_OPT},
    {"ip4", SPF_M_IP4, ARG_IP4},
    {"ip6", SPF_M_IP6, ARG_IP6},
    {"exists", SPF_M_EXISTS, ARG_DOMAIN},
};

static const char *const spf_kind_names[] = {
    [SPF_M_ALL] = "all", [SPF_M_INCLUDE] = "include", [SPF_M_A] = "a",
    [SPF_M_MX] = "mx", [SPF_M_PTR] = "ptr", [SPF_M_IP4] = "ip4",
    [SPF_M_IP6] = "ip6", [SPF_M_EXISTS] = "exists",
    [SPF_MOD_REDIRECT] = "redirect", [SPF_MOD_EXP] = "exp",
    [SPF_MOD_UNKNOWN] = "modifier",
};

const char *spf_term_name(enum spf_term_kind k)
{
    return spf_kind_names[k];
}

bool spf_is_record(const char *txt)
{
    return str_iprefix(txt, "v=spf1") && (txt[6] == '\0' || txt[6] == ' ');
}

/* ---------------------------------------------------------------------- */
/* macro-string syntax                                                     */

static bool spf_is_delim(char c)
{
    return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

static bool spf_is_macro_letter(char c, bool exp)
{
    c = (char)tolower((unsigned char)c);
    if (strchr("slodiphv", c) != NULL && c != '\0')
        return true;
    return exp && c != '\0' && strchr("crt", c) != NULL;
}

/* Check a "%{...}" at p (p[0] == '%', p[1] == '{'); returns its length or
 * -1. */
static int spf_macro_len(const char *p, bool exp)
{
    size_t i = 2;
    if (!spf_is_macro_letter(p[i], exp))
        return -1;
    i++;
    while (isdigit((unsigned char)p[i]))
        i++;
    if (p[i] == 'r' || p[i] == 'R')
        i++;
    while (spf_is_delim(p[i]))
        i++;
    return p[i] == '}' ? (int)i + 1 : -1;
}

/* macro-string = *( macro-expand / macro-literal ). */
static bool spf_macro_string_ok(const char *s, bool exp)
{
    for (const char *p = s; *p;) {
        if (*p == '%') {
            if (p[1] == '%' || p[1] == '_' || p[1] == '-') {
                p += 2;
                continue;
            }
            if (p[1] != '{')
                return false;
            int n = spf_macro_len(p, exp);
            if (n < 0)
                return false;
            p += n;
            continue;
        }
        unsigned char c = (unsigned char)*p;
        /* explain-string = *( macro-string / SP ) (6.2) */
        if ((c < 0x21 && !(exp && c == ' ')) || c > 0x7e)
            return false;
        p++;
    }
    return true;
}

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static bool spf_toplabel_ok(const char *l, size_t n)
{
    bool alpha = false;
    if (n == 0 || !isalnum((unsigned char)l[0]) || !isalnum((unsigned char)l[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (isalpha((unsigned char)l[i]))
            alpha = true;
        else if (l[i] == '-')
            alpha = true;   /* the second form: a hyphen makes it non-numeric */
        else if (!isdigit((unsigned char)l[i]))
            return false;
    }
    return alpha;
}

/* domain-spec = macro-string domain-end;
 * domain-end = ( "." toplabel [ "." ] ) / macro-expand */
static bool spf_domain_spec_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || !spf_macro_string_ok(s, false))
        return false;
    if (s[n - 1] == '}') {
        /* ends with a macro-expand: find its "%{" */
        for (size_t i = n - 1; i-- > 0;)
            if (s[i] == '%' && s[i + 1] == '{' && (i == 0 || s[i - 1] != '%'))
                return spf_macro_len(s + i, false) == (int)(n - i);
        return false;
    }
    if (s[n - 1] == '.')
        n--;
    size_t start = n;
    while (start > 0 && s[start - 1] != '.')
        start--;
    if (start == 0)
        return false;   /* no "." before the top label */
    return spf_toplabel_ok(s + start, n - start);
}

/* ---------------------------------------------------------------------- */
/* terms                                                                   */

/* Parse "/N" with 0 <= N <= max and no leading zero. */
static int spf_cidr(const char *s, size_t n, unsigned max, unsigned *out)
{
    char tmp[8];
    uint64_t v;
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (str_to_u64(tmp, &v) < 0 || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Split a trailing dual-cidr-length off arg (modified in place). */
static int spf_dual_cidr(char *arg, struct spf_term *t)
{
    char *dbl = strstr(arg, "//");
    if (dbl) {
        if (spf_cidr(dbl + 2, strlen(dbl + 2), 128, &t->cidr6) < 0)
            return -1;
        *dbl = '\0';
    }
    char *slash = strrchr(arg, '/');
    if (slash) {
        if (spf_cidr(slash + 1, strlen(slash + 1), 32, &t->cidr4) < 0)
            return -1;
        *slash = '\0';
    }
    return 0;
}

static int spf_ip_arg(char *arg, struct spf_term *t, int family)
{
    char *slash = strchr(arg, '/');
    unsigned max = family == AF_INET ? 32 : 128, len = max;
    if (slash) {
        if (spf_cidr(slash + 1, strlen(slash + 1), max, &len) < 0)
            return -1;
        *slash = '\0';
    }
    memset(&t->net, 0, sizeof(t->net));
    if (inet_pton(family, arg, t->net.addr.bytes) != 1)
        return -1;
    t->net.addr.family = family;
    t->net.prefix = len;
    return 0;
}

/* Parse one mechanism (qualifier already removed). */
static int spf_parse_mech(char *w, struct spf_term *t, char *err, size_t errlen)
{
    size_t nlen = strcspn(w, ":/");
    const struct spf_mech_def *def = NULL;
    for (size_t i = 0; i < sizeof(spf_mechs) / sizeof(spf_mechs[0]); i++)
        if (strlen(spf_mechs[i].name) == nlen && strncasecmp(w, spf_mechs[i].name, nlen) == 0)
            def = &spf_mechs[i];
    if (def == NULL) {
        snprintf(err, errlen, "unknown mechanism '%.60s'", w);
        return -1;
    }
    t->kind = def->kind;
    t->cidr4 = 32;
    t->cidr6 = 128;
    char *rest = w + nlen;
    char *arg = *rest == ':' ? rest + 1 : NULL;
    int rc = 0;
    switch (def->arg) {
    case ARG_NONE:
        rc = *rest ? -1 : 0;
        break;
    case ARG_DOMAIN:
        rc = (arg && spf_domain_spec_ok(arg)) ? 0 : -1;
        break;
    case ARG_OPT_CIDR:
        if (spf_dual_cidr(rest, t) < 0)
            rc = -1;
        else if (*rest && (arg == NULL || !spf_domain_spec_ok(arg)))
            rc = -1;
        break;
    case ARG_OPT:
        if (*rest && (arg == NULL || !spf_domain_spec_ok(arg)))
            rc = -1;
        break;
    case ARG_IP4:
    case ARG_IP6:
        rc = arg ? spf_ip_arg(arg, t, def->arg == ARG_IP4 ? AF_INET : AF_INET6) : -1;
        arg = NULL;
        break;
    }
    if (rc < 0) {
        snprintf(err, errlen, "bad %s mechanism '%.60s'", def->name, w);
        return -1;
    }
    t->spec = arg && *arg ? xstrdup(arg) : NULL;
    return 0;
}

/* name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
static bool spf_modifier_name_ok(const char *s, size_t n)
{
    if (n == 0 || !isalpha((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i]))
            return false;
    return true;
}

static int spf_parse_modifier(char *w, char *eq, struct spf_record *rec,
                              struct spf_term *t, char *err, size_t errlen)
{
    size_t nlen = (size_t)(eq - w);
    const char *val = eq + 1;
    if (!spf_modifier_name_ok(w, nlen)) {
        snprintf(err, errlen, "bad modifier '%.60s'", w);
        return -1;
    }
    if (nlen == 8 && strncasecmp(w, "redirect", 8) == 0)
        t->kind = SPF_MOD_REDIRECT;
    else if (nlen == 3 && strncasecmp(w, "exp", 3) == 0)
        t->kind = SPF_MOD_EXP;
    else
        t->kind = SPF_MOD_UNKNOWN;
    bool ok = t->kind == SPF_MOD_UNKNOWN ? spf_macro_string_ok(val, false)
                                         : spf_domain_spec_ok(val);
    int *slot = t->kind == SPF_MOD_REDIRECT ? &rec->redirect :
                t->kind == SPF_MOD_EXP ? &rec->exp : NULL;
    if (!ok || (slot && *slot >= 0)) {
        snprintf(err, errlen, "%s modifier '%.60s'", ok ? "repeated" : "bad", w);
        return -1;
    }
    if (slot)
        *slot = (int)rec->n;
    t->spec = xstrdup(val);
    return 0;
}

static int spf_parse_term(char *w, struct spf_record *rec, char *err, size_t errlen)
{
    struct spf_term t;
    memset(&t, 0, sizeof(t));
    t.qual = '+';
    /* A modifier has "=" before any ":" or "/" (name = ALPHA ...). */
    char *eq = strchr(w, '=');
    int rc;
    if (eq && eq < w + strcspn(w, ":/")) {
        rc = spf_parse_modifier(w, eq, rec, &t, err, errlen);
    } else {
        if (strchr("+-~?", *w) != NULL)
            t.qual = *w++;
        rc = spf_parse_mech(w, &t, err, errlen);
    }
    if (rc < 0)
        return -1;
    rec->terms = xrealloc(rec->terms, (rec->n + 1) * sizeof(t));
    rec->terms[rec->n++] = t;
    return 0;
}

int spf_parse_record(const char *txt, struct spf_record *rec, char *err, size_t errlen)
{
    memset(rec, 0, sizeof(*rec));
    rec->redirect = rec->exp = -1;
    if (!spf_is_record(txt)) {
        snprintf(err, errlen, "not an SPF record");
        return -1;
    }
    char *copy = xstrdup(txt + 6);
    int rc = 0;
    for (char *p = copy; *p && rc == 0;) {
        if (*p != ' ') {
            snprintf(err, errlen, "bad character 0x%02x between terms",
                     (unsigned char)*p);
            rc = -1;
            break;
        }
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        size_t n = strcspn(p, " ");
        char save = p[n];
        p[n] = '\0';
        rc = spf_parse_term(p, rec, err, errlen);
        p[n] = save;
        p += n;
    }
    free(copy);
    if (rc < 0)
        spf_record_free(rec);
    return rc;
}

void spf_record_free(struct spf_record *rec)
{
    for (size_t i = 0; i < rec->n; i++)
        free(rec->terms[i].spec);
    free(rec->terms);
    memset(rec, 0, sizeof(*rec));
    rec->redirect = rec->exp = -1;
}

/* ---------------------------------------------------------------------- */
/* macro expansion (7.3, 7.4)                                              */

static void spf_ip_macro(const struct netaddr *a, bool dotted_v6, char *out, size_t len)
{
    if (a->family == AF_INET || !dotted_v6) {
        netaddr_str(a, out, len);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16 && o + 4 < len; i++) {
        out[o++] = hex[a->bytes[i] >> 4];
        out[o++] = '.';
        out[o++] = hex[a->bytes[i] & 15];
        out[o++] = '.';
    }
    out[o ? o - 1 : 0] = '\0';
}

/* The raw value of one macro letter. */
static void spf_macro_value(char letter, const struct spf_macro_ctx *m, char *out,
                            size_t len)
{
    const char *at = strrchr(m->sender, '@');
    switch (tolower((unsigned char)letter)) {
    case 's': str_copy(out, m->sender, len); break;
    case 'l':
        if (at) {
            size_t n = (size_t)(at - m->sender);
            snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), m->sender);
        } else {
            str_copy(out, "postmaster", len);
        }
        break;
    case 'o': str_copy(out, at ? at + 1 : m->sender, len); break;
    case 'd': str_copy(out, m->domain, len); break;
    case 'i': spf_ip_macro(m->ip, true, out, len); break;
    case 'c': spf_ip_macro(m->ip, false, out, len); break;
    case 'p': str_copy(out, m->validated ? m->validated : "unknown", len); break;
    case 'v': str_copy(out, m->ip->family == AF_INET ? "in-addr" : "ip6", len); break;
    case 'h': str_copy(out, m->helo, len); break;
    case 'r': str_copy(out, m->receiver && *m->receiver ? m->receiver : "unknown", len); break;
    case 't': snprintf(out, len, "%llu", (unsigned long long)m->now); break;
    default: out[0] = '\0'; break;
    }
}

/* Split on delimiters, optionally reverse, keep the rightmost `keep`
 * parts (0 = all), join with ".". */
static void spf_transform(char *val, const char *delims, bool reverse, unsigned keep,
                          struct buf *out)
{
    char *parts[128];
    size_t n = 0;
    char *p = val;
    parts[n++] = p;
    for (; *p && n < 128; p++)
        if (strchr(delims, *p)) {
            *p = '\0';
            parts[n++] = p + 1;
        }
    if (reverse)
        for (size_t i = 0; i < n / 2; i++) {
            char *t = parts[i];
            parts[i] = parts[n - 1 - i];
            parts[n - 1 - i] = t;
        }
    size_t first = (keep && keep < n) ? n - keep : 0;
    for (size_t i = first; i < n; i++) {
        if (i > first)
            buf_putc(out, '.');
        buf_puts(out, parts[i]);
    }
}

static void spf_url_escape(const char *s, struct buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c))
            buf_putc(out, (char)c);
        else {
            buf_putc(out, '%');
            buf_putc(out, hex[c >> 4]);
            buf_putc(out, hex[c & 15]);
        }
    }
}

/* Expand one "%{...}" of length n at p into out. */
static int spf_expand_one(const char *p, size_t n, const struct spf_macro_ctx *m,
                          struct buf *out)
{
    char letter = p[2], val[SPF_EXPAND_MAX], delims[16] = "";
    size_t i = 3, nd = 0;
    unsigned keep = 0;
    bool reverse = false;
    while (isdigit((unsigned char)p[i]) && keep < 1000)
        keep = keep * 10 + (unsigned)(p[i++] - '0');
    if (i > 3 && keep == 0)
        return -1;   /* 7.3: the DIGIT transformer must be nonzero */
    while (isdigit((unsigned char)p[i]))
        i++;
    if (p[i] == 'r' || p[i] == 'R') {
        reverse = true;
        i++;
    }
    while (i < n - 1 && nd < sizeof(delims) - 1)
        delims[nd++] = p[i++];
    delims[nd] = '\0';
    if (nd == 0)
        str_copy(delims, ".", sizeof(delims));
    spf_macro_value(letter, m, val, sizeof(val));
    struct buf t;
    buf_init(&t, SPF_EXPAND_MAX * 2);
    spf_transform(val, delims, reverse, keep, &t);
    if (isupper((unsigned char)letter))
        spf_url_escape(t.data ? t.data : "", out);
    else
        buf_puts(out, t.data ? t.data : "");
    buf_free(&t);
    return 0;
}

/* 7.3: a domain over 253 octets loses labels on the left until it fits. */
static void spf_truncate_domain(char *s)
{
    size_t n = strlen(s);
    char *p = s;
    while (n > SPF_DOMAIN_MAX) {
        char *dot = strchr(p, '.');
        if (dot == NULL)
            break;
        n -= (size_t)(dot + 1 - p);
        p = dot + 1;
    }
    if (p != s)
        memmove(s, p, strlen(p) + 1);
}

int spf_expand(const char *spec, const struct spf_macro_ctx *m, bool exp,
               bool domain, char *out, size_t outlen)
{
    if (!spf_macro_string_ok(spec, exp))
        return -1;
    struct buf b;
    buf_init(&b, SPF_EXPAND_MAX * 4);
    int rc = 0;
    for (const char *p = spec; *p && rc == 0;) {
        if (*p != '%') {
            buf_putc(&b, *p++);
            continue;
        }
        if (p[1] == '%' || p[1] == '_' || p[1] == '-') {
            buf_puts(&b, p[1] == '%' ? "%" : p[1] == '_' ? " " : "%20");
            p += 2;
            continue;
        }
        int n = spf_macro_len(p, exp);
        rc = n < 0 ? -1 : spf_expand_one(p, (size_t)n, m, &b);
        p += n > 0 ? n : 1;
    }
    if (rc == 0) {
        str_copy(out, b.data ? b.data : "", outlen);
        if (domain)
            spf_truncate_domain(out);
    }
    buf_free(&b);
    return rc;
}

bool spf_uses_p(const char *spec)
{
    return spec && (strstr(spec, "%{p") || strstr(spec, "%{P"));
}

bool spf_domain_ok(const char *d)
{
    size_t n = strlen(d), label = 0, labels = 0;
    if (n == 0 || n > SPF_DOMAIN_MAX + 1 || (n == SPF_DOMAIN_MAX + 1 && d[n - 1] != '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '.') {
            if (label == 0)
                return false;
            labels++;
            label = 0;
        } else if (++label > 63 || (unsigned char)d[i] <= 0x20 ||
                   (unsigned char)d[i] >= 0x7f) {
            return false;
        }
    }
    if (label > 0)
        labels++;
    return labels >= 2;
}
