/*
 * normalize.c - sender normalisation and organisational domains for
 * greylisting (rules in normalize.h).
 */
#include "greylist/normalize.h"
#include "lib/strutil.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Known second-level public suffixes under which names register at the
 * third level. Small on purpose: docs/greylisting.md. */
static const char *const norm_sld_suffixes[] = {
    "co.uk", "org.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "me.uk", "net.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "asn.au", "id.au",
    "co.nz", "org.nz", "net.nz", "ac.nz", "govt.nz",
    "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "ad.jp",
    "co.kr", "or.kr", "ac.kr", "co.za", "org.za", "ac.za", "gov.za",
    "com.br", "net.br", "org.br", "gov.br", "com.mx", "org.mx", "gob.mx",
    "com.ar", "com.co", "com.tr", "com.tw", "com.hk", "com.sg", "com.my",
    "com.cn", "net.cn", "org.cn", "edu.cn", "gov.cn", "co.in", "net.in",
    "org.in", "ac.in", "co.il", "ac.il", "co.id", "or.id", "ac.id",
    "com.ua", "co.th", "ac.th", "in.th", "com.vn", "com.pl", "com.ru",
    "com.es", "com.pt", "com.sa", "com.eg", "com.ng", "co.ke",
    "gv.at", "ac.at", "co.at", "or.at",
};

static bool norm_is_sld_suffix(const char *s)
{
    for (size_t i = 0; i < sizeof(norm_sld_suffixes) / sizeof(norm_sld_suffixes[0]); i++)
        if (strcasecmp(s, norm_sld_suffixes[i]) == 0)
            return true;
    return false;
}

void norm_org_domain(const char *host, char *out, size_t len)
{
    char h[300];
    str_copy(h, host, sizeof(h));
    str_lower(h);
    size_t n = strlen(h);
    while (n > 0 && h[n - 1] == '.')
        h[--n] = '\0';
    /* start of the last, second-last and third-last labels */
    const char *l1 = NULL, *l2 = NULL, *l3 = NULL;
    for (size_t i = n; i-- > 0;) {
        if (h[i] != '.')
            continue;
        if (!l1)
            l1 = h + i + 1;
        else if (!l2)
            l2 = h + i + 1;
        else if (!l3) {
            l3 = h + i + 1;
            break;
        }
    }
    const char *two = l2 ? l2 : h;     /* "example.com" */
    if (l1 == NULL) {
        str_copy(out, h, len);
        return;
    }
    if (norm_is_sld_suffix(two))
        str_copy(out, l3 ? l3 : (l2 ? h : two), len);
    else
        str_copy(out, two, len);
}

void norm_domain_of(const char *addr, char *out, size_t len)
{
    const char *at = strrchr(addr, '@');
    str_copy(out, at ? at + 1 : "", len);
    str_lower(out);
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == '.')
        out[n - 1] = '\0';
}

/* SRS0=HHH=TT=domain=local, SRS1=HHH=fwd==HHH=TT=domain=local:
 * the last two "="-separated fields are domain and local part. */
static bool norm_srs(char *local, char *domain, size_t dlen)
{
    if (!str_iprefix(local, "SRS0=") && !str_iprefix(local, "SRS1=") &&
        !str_iprefix(local, "SRS0+") && !str_iprefix(local, "SRS0-"))
        return false;
    char *last = strrchr(local, '=');
    if (last == NULL || last == local)
        return false;
    *last = '\0';
    char *prev = strrchr(local, '=');
    if (prev == NULL) {
        *last = '=';
        return false;
    }
    str_copy(domain, prev + 1, dlen);
    memmove(local, last + 1, strlen(last + 1) + 1);
    return true;
}

/* prvs=KDDDSSSSSS=user, msprvs1=...=user, btv1==...==user */
static void norm_batv(char *local)
{
    static const char *const tags[] = {"prvs=", "msprvs1=", "btv1="};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        if (!str_iprefix(local, tags[i]))
            continue;
        char *last = strrchr(local, '=');
        if (last && last[1])
            memmove(local, last + 1, strlen(last + 1) + 1);
        return;
    }
}

static bool norm_tag_token(const char *t, size_t n)
{
    bool digit = false, hex = true, alldigit = true;
    for (size_t i = 0; i < n; i++) {
        if (isdigit((unsigned char)t[i]))
            digit = true;
        else
            alldigit = false;
        if (!isxdigit((unsigned char)t[i]))
            hex = false;
    }
    return n > 0 && (alldigit || (hex && digit && n >= 8));
}

/* Replace VERP-style numeric tokens by "#". */
static void norm_verp(char *local, size_t cap)
{
    char out[NORM_ADDR_MAX];
    size_t o = 0;
    for (const char *p = local; *p && o + 2 < sizeof(out);) {
        size_t n = strcspn(p, "-_.=+");
        if (norm_tag_token(p, n)) {
            out[o++] = '#';
        } else {
            size_t k = n < sizeof(out) - 2 - o ? n : sizeof(out) - 2 - o;
            memcpy(out + o, p, k);
            o += k;
        }
        p += n;
        if (*p && o + 2 < sizeof(out))
            out[o++] = *p++;
    }
    out[o] = '\0';
    str_copy(local, out, cap);
}

void norm_sender(const char *sender, char *out, size_t len)
{
    char local[NORM_ADDR_MAX], domain[NORM_ADDR_MAX];
    const char *at = strrchr(sender, '@');
    if (*sender == '\0' || at == NULL) {
        str_copy(out, sender, len);
        str_lower(out);
        return;
    }
    size_t ln = (size_t)(at - sender);
    if (ln >= sizeof(local))
        ln = sizeof(local) - 1;
    memcpy(local, sender, ln);
    local[ln] = '\0';
    norm_domain_of(sender, domain, sizeof(domain));
    if (!norm_srs(local, domain, sizeof(domain)))
        norm_batv(local);
    str_lower(domain);
    bool quoted = local[0] == '"';
    char *plus = quoted ? NULL : strchr(local, '+');
    if (plus && plus != local)
        *plus = '\0';
    str_lower(local);
    norm_verp(local, sizeof(local));
    snprintf(out, len, "%s@%s", local, domain);
}
