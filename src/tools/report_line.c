/*
 * report_line.c - the part of a log line before the message: timestamp
 * (traditional syslog with the year inferred, RFC 3339, Exim's own), host,
 * program name and pid; plus the civil-time helpers the report uses.
 *
 * Times stay in the log's wall clock (no zone conversion), as pflogsumm
 * does: a report about "17:02" means 17:02 as logged.
 */
#include "tools/report.h"

#include <stdio.h>
#include <string.h>

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's method). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int64_t rpl_civil_to_ts(int y, int mon, int d, int h, int mi, int s)
{
    return days_from_civil(y, mon, d) * 86400 + h * 3600 + mi * 60 + s;
}

void rpl_ts_to_civil(int64_t ts, int *y, int *mon, int *d, int *h, int *mi, int *s)
{
    int64_t days = ts >= 0 ? ts / 86400 : (ts - 86399) / 86400;
    int64_t secs = ts - days * 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int dd = (int)(doy - (153 * mp + 2) / 5 + 1);
    int mm = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (mm <= 2));
    *mon = mm;
    *d = dd;
    *h = (int)(secs / 3600);
    *mi = (int)(secs / 60 % 60);
    *s = (int)(secs % 60);
}

void rpl_fmt_ts(int64_t ts, char *out, size_t outlen)
{
    int y, mo, d, h, mi, s;
    rpl_ts_to_civil(ts, &y, &mo, &d, &h, &mi, &s);
    snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d", y, mo, d, h, mi, s);
}

/* n decimal digits at p into *v; false unless all are digits. */
static bool digits(const char *p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!rp_is_digit((unsigned char)p[i]))
            return false;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return true;
}

static bool valid(int mon, int d, int h, int mi, int s)
{
    return mon >= 1 && mon <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && s <= 60;
}

/* "YYYY-MM-DD?HH:MM:SS" at p (sep is 'T' or ' '). */
static bool iso_datetime(const char *p, char sep, int64_t *ts)
{
    int y, mo, d, h, mi, s;
    if (!digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) || p[7] != '-' ||
        !digits(p + 8, 2, &d) || p[10] != sep || !digits(p + 11, 2, &h) ||
        p[13] != ':' || !digits(p + 14, 2, &mi) || p[16] != ':' || !digits(p + 17, 2, &s))
        return false;
    if (!valid(mo, d, h, mi, s))
        return false;
    *ts = rpl_civil_to_ts(y, mo, d, h, mi, s);
    return true;
}

int rpl_parse_when(const char *s, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    size_t n = strlen(s);
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d))
        return -1;
    if (n > 10) {
        if ((s[10] != ' ' && s[10] != 'T') || n < 16 || !digits(s + 11, 2, &h) ||
            s[13] != ':' || !digits(s + 14, 2, &mi))
            return -1;
        if (n > 16 && (s[16] != ':' || n != 19 || !digits(s + 17, 2, &sec)))
            return -1;
    }
    if (!valid(mo, d, h, mi, sec))
        return -1;
    *out = rpl_civil_to_ts(y, mo, d, h, mi, sec);
    return 0;
}

static int month_of(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(p, months[i], 3) == 0)
            return i + 1;
    return 0;
}

/* "Mmm dd HH:MM:SS" at p: month, day and seconds of day; length 15. */
static bool trad_stamp(const char *p, int *mon, int *day, int *sod)
{
    int d, h, mi, s;
    *mon = month_of(p);
    if (*mon == 0 || p[3] != ' ')
        return false;
    if (p[4] == ' ' && digits(p + 5, 1, &d))
        ;
    else if (!digits(p + 4, 2, &d))
        return false;
    if (p[6] != ' ' || !digits(p + 7, 2, &h) || p[9] != ':' || !digits(p + 10, 2, &mi) ||
        p[12] != ':' || !digits(p + 13, 2, &s) || !valid(*mon, d, h, mi, s))
        return false;
    *day = d;
    *sod = h * 3600 + mi * 60 + s;
    return true;
}

/* The year of a traditional timestamp: roll forward across New Year, and
 * place a stray December line after a January one in the year before. */
static int infer_year(struct rp_year *yr, int mon)
{
    if (yr->last_mon == 0) {
        /* the newest line is not after the reference time */
        if (!yr->fixed)
            yr->year = yr->ref_year - (mon > yr->ref_mon ? 1 : 0);
        yr->last_mon = mon;
        return yr->year;
    }
    if (mon + 6 < yr->last_mon) {          /* Dec -> Jan: a new year */
        yr->year++;
        yr->last_mon = mon;
        return yr->year;
    }
    if (mon > yr->last_mon + 6)            /* a late line from last year */
        return yr->year - 1;
    yr->last_mon = mon;
    return yr->year;
}

int rpl_peek_ts(const char *line, int64_t *ts, bool *full)
{
    int mon, day, sod;
    if (iso_datetime(line, 'T', ts) || iso_datetime(line, ' ', ts)) {
        *full = true;
        return 0;
    }
    if (strnlen(line, 16) >= 15 && trad_stamp(line, &mon, &day, &sod)) {
        *full = false;
        *ts = rpl_civil_to_ts(2000, mon, day, 0, 0, 0) + sod;
        return 0;
    }
    return -1;
}

/* Skip an RFC 3339 fraction and zone after the seconds. */
static char *skip_zone(char *p)
{
    if (*p == '.' || *p == ',')
        for (p++; rp_is_digit((unsigned char)*p); p++)
            ;
    if (*p == 'Z')
        return p + 1;
    if ((*p == '+' || *p == '-') && rp_is_digit((unsigned char)p[1]) &&
        rp_is_digit((unsigned char)p[2])) {
        p += 3;
        if (*p == ':')
            p++;
        if (rp_is_digit((unsigned char)p[0]) && rp_is_digit((unsigned char)p[1]))
            p += 2;
    }
    return p;
}

/* "prog[pid]: msg" or "prog: msg" at p. */
static int parse_prog(char *p, struct rp_hdr *h)
{
    static const unsigned char stop[256] = {[0] = 1, ['['] = 1, [':'] = 1, [' '] = 1};
    char *start = p, *slash = NULL;
    for (; !stop[(unsigned char)*p]; p++)
        if (*p == '/')
            slash = p;
    if (p == start)
        return -1;
    h->prog_len = (size_t)(p - start);
    if (*p == '[') {
        *p++ = '\0';
        long pid = 0;
        while (rp_is_digit((unsigned char)*p) && pid < 100000000)
            pid = pid * 10 + (*p++ - '0');
        if (*p != ']' || p[1] != ':')
            return -1;
        h->pid = pid;
        p += 2;
    } else if (*p == ':') {
        *p++ = '\0';
    } else {
        return -1;
    }
    if (*p == ' ')
        p++;
    h->prog = start;
    h->svc = slash ? slash + 1 : start;
    /* Solaris: "[ID 801593 mail.info] " */
    if (p[0] == '[' && strncmp(p, "[ID ", 4) == 0) {
        char *end = strchr(p, ']');
        if (end) {
            p = end + 1;
            while (*p == ' ')
                p++;
        }
    }
    h->msg = p;
    return 0;
}

/* "host prog..." after a syslog timestamp. */
static int parse_host_prog(char *p, struct rp_hdr *h)
{
    if (*p != ' ')
        return -1;
    p++;
    h->host = p;
    while (*p != ' ' && *p != '\0')      /* host names are short: no call */
        p++;
    if (*p == '\0')
        return -1;
    *p++ = '\0';
    return parse_prog(p, h);
}

/* Exim's own main log: "YYYY-MM-DD HH:MM:SS[.mmm] [+ZZZZ] [[pid]] msg". */
static int parse_exim_native(char *p, struct rp_hdr *h)
{
    p = skip_zone(p + 19);
    if (*p == ' ' && (p[1] == '+' || p[1] == '-') && rp_is_digit((unsigned char)p[2])) {
        p += 2;
        while (rp_is_digit((unsigned char)*p))
            p++;
    }
    if (*p != ' ')
        return -1;
    p++;
    if (*p == '[') {
        char *end = strchr(p, ']');
        if (end && end[1] == ' ') {
            long pid = 0;
            for (char *q = p + 1; q < end && rp_is_digit((unsigned char)*q); q++)
                pid = pid * 10 + (*q - '0');
            h->pid = pid;
            p = end + 2;
        }
    }
    h->host = "";
    h->prog = "exim";
    h->prog_len = 4;
    h->svc = "exim";
    h->msg = p;
    h->exim_native = true;
    return 0;
}

int rpl_parse_header(char *line, struct rp_year *yr, struct rp_hdr *h)
{
    memset(h, 0, sizeof(*h));
    int mon, day, sod;
    if (rp_is_digit((unsigned char)line[0])) {
        if (iso_datetime(line, 'T', &h->ts))
            return parse_host_prog(skip_zone(line + 19), h);
        if (iso_datetime(line, ' ', &h->ts))
            return parse_exim_native(line, h);
        return -1;
    }
    /* consecutive lines mostly share "Mmm dd": reuse the day's start */
    static struct { char md[6]; struct rp_year *yr; int year, last_mon; int64_t day0; }
        memo;
    if (memo.yr == yr && memo.year == yr->year && memo.last_mon == yr->last_mon &&
        memcmp(line, memo.md, 6) == 0 && strnlen(line, 16) >= 15) {
        int h2, mi, s;
        if (digits(line + 7, 2, &h2) && line[9] == ':' && digits(line + 10, 2, &mi) &&
            line[12] == ':' && digits(line + 13, 2, &s) && h2 <= 23 && mi <= 59 && s <= 60) {
            h->ts = memo.day0 + h2 * 3600 + mi * 60 + s;
            return parse_host_prog(line + 15, h);
        }
    }
    if (strnlen(line, 16) < 15 || !trad_stamp(line, &mon, &day, &sod))
        return -1;
    int y = infer_year(yr, mon);
    int64_t day0 = days_from_civil(y, mon, day) * 86400;
    h->ts = day0 + sod;
    memcpy(memo.md, line, 6);
    memo.yr = yr;
    memo.year = yr->year;
    memo.last_mon = yr->last_mon;
    memo.day0 = day0;
    return parse_host_prog(line + 15, h);
}
