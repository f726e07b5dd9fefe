/*
 * netaddr.c - IP address and CIDR parsing and matching.
 */
#include "lib/netaddr.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = {0,0,0,0,0,0,0,0,0,0,0xff,0xff};

int netaddr_parse(const char *s, struct netaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, s, out->bytes) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out->bytes) == 1) {
        out->family = AF_INET6;
        if (memcmp(out->bytes, v4mapped_prefix, 12) == 0) {
            memmove(out->bytes, out->bytes + 12, 4);
            memset(out->bytes + 4, 0, 12);
            out->family = AF_INET;
        }
        return 0;
    }
    return -1;
}

void netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->family = AF_INET;
        memcpy(out->bytes, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        out->family = AF_INET6;
        memcpy(out->bytes, &in6->sin6_addr, 16);
        if (memcmp(out->bytes, v4mapped_prefix, 12) == 0) {
            memmove(out->bytes, out->bytes + 12, 4);
            memset(out->bytes + 4, 0, 12);
            out->family = AF_INET;
        }
    }
}

const char *netaddr_str(const struct netaddr *a, char *buf, size_t len)
{
    if (inet_ntop(a->family, a->bytes, buf, (socklen_t)len) == NULL)
        str_copy(buf, "unknown", len);
    return buf;
}

int netmask_parse(const char *s, struct netmask *out)
{
    char tmp[64];
    if (str_copy(tmp, s, sizeof(tmp)) >= sizeof(tmp))
        return -1;
    char *slash = strchr(tmp, '/');
    /* Postfix allows [::1]/128 style brackets. */
    char *host = tmp;
    if (slash)
        *slash = '\0';
    if (*host == '[') {
        host++;
        char *end = strchr(host, ']');
        if (end == NULL)
            return -1;
        *end = '\0';
    }
    if (netaddr_parse(host, &out->addr) < 0)
        return -1;
    unsigned maxp = out->addr.family == AF_INET ? 32 : 128;
    out->prefix = maxp;
    if (slash) {
        uint64_t p;
        if (str_to_u64(slash + 1, &p) < 0 || p > maxp)
            return -1;
        out->prefix = (unsigned)p;
    }
    return 0;
}

bool netmask_match(const struct netmask *m, const struct netaddr *a)
{
    if (m->addr.family != a->family)
        return false;
    unsigned full = m->prefix / 8, rest = m->prefix % 8;
    if (memcmp(m->addr.bytes, a->bytes, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (m->addr.bytes[full] & mask) == (a->bytes[full] & mask);
}

int netlist_parse(struct netlist *l, const char *text, const char **bad)
{
    static char badword[64];
    char *copy = xstrdup(text);
    char *save = NULL;
    int rc = 0;
    memset(l, 0, sizeof(*l));
    for (char *w = strtok_r(copy, ", \t\n", &save); w;
         w = strtok_r(NULL, ", \t\n", &save)) {
        struct netmask m;
        if (netmask_parse(w, &m) < 0) {
            str_copy(badword, w, sizeof(badword));
            if (bad)
                *bad = badword;
            rc = -1;
            break;
        }
        l->v = xgrow(l->v, &l->cap, l->n + 1, sizeof(*l->v));
        l->v[l->n++] = m;
    }
    free(copy);
    if (rc < 0)
        netlist_free(l);
    return rc;
}

bool netlist_match(const struct netlist *l, const struct netaddr *a)
{
    for (size_t i = 0; i < l->n; i++)
        if (netmask_match(&l->v[i], a))
            return true;
    return false;
}

void netlist_free(struct netlist *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

int endpoint_parse(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *portstr;
    char tmp[300];
    if (str_copy(tmp, s, sizeof(tmp)) >= sizeof(tmp))
        return -1;
    if (tmp[0] == '[') {
        char *end = strchr(tmp, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        *end = '\0';
        str_copy(host, tmp + 1, hostlen);
        portstr = end + 2;
    } else {
        char *colon = strrchr(tmp, ':');
        if (colon == NULL) {
            str_copy(host, "127.0.0.1", hostlen);
            portstr = tmp;
        } else {
            if (strchr(tmp, ':') != colon)
                return -1; /* bare IPv6 needs brackets */
            *colon = '\0';
            str_copy(host, tmp, hostlen);
            portstr = colon + 1;
        }
    }
    uint64_t p;
    if (str_to_u64(portstr, &p) < 0 || p == 0 || p > 65535)
        return -1;
    *port = (uint16_t)p;
    return 0;
}
