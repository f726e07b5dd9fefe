/*
 * strutil.c - bounded string helpers (see strutil.h).
 */
#include "lib/strutil.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

size_t str_copy(char *dst, const char *src, size_t dstsize)
{
    size_t len = strlen(src);
    if (dstsize > 0) {
        size_t n = len < dstsize - 1 ? len : dstsize - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}

char *str_lower(char *s)
{
    for (char *p = s; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return s;
}

char *str_upper(char *s)
{
    for (char *p = s; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return s;
}

char *str_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                     s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

bool str_iprefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

bool str_iequal(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

int str_to_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

char *str_from_u64(uint64_t v, char *buf)
{
    char tmp[STR_U64_SIZE];
    char *p = tmp + sizeof(tmp) - 1;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(buf, p, (size_t)(tmp + sizeof(tmp) - p));
    return buf;
}

/* Split "123x" into number and one-letter unit; unit 0 when absent. */
static int split_unit(const char *s, uint64_t *num, char *unit)
{
    char tmp[32];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n + 1);
    *unit = 0;
    if (!isdigit((unsigned char)tmp[n - 1])) {
        *unit = tmp[n - 1];
        tmp[n - 1] = '\0';
    }
    return str_to_u64(tmp, num);
}

static int mul_checked(uint64_t v, uint64_t m, uint64_t *out)
{
    if (m != 0 && v > UINT64_MAX / m)
        return -1;
    *out = v * m;
    return 0;
}

int str_to_seconds(const char *s, uint64_t *out)
{
    uint64_t v;
    char u;
    if (split_unit(s, &v, &u) < 0)
        return -1;
    switch (u) {
    case 0: case 's': return mul_checked(v, 1, out);
    case 'm': return mul_checked(v, 60, out);
    case 'h': return mul_checked(v, 3600, out);
    case 'd': return mul_checked(v, 86400, out);
    case 'w': return mul_checked(v, 604800, out);
    default: return -1;
    }
}

int str_to_bytes(const char *s, uint64_t *out)
{
    uint64_t v;
    char u;
    if (split_unit(s, &v, &u) < 0)
        return -1;
    switch (u) {
    case 0: case 'b': case 'B': return mul_checked(v, 1, out);
    case 'k': case 'K': return mul_checked(v, 1024, out);
    case 'm': case 'M': return mul_checked(v, 1024 * 1024, out);
    case 'g': case 'G': return mul_checked(v, 1024ULL * 1024 * 1024, out);
    default: return -1;
    }
}

size_t str_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb] < cap ? row[lb] : cap;
}
