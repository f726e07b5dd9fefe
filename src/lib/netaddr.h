/*
 * netaddr.h - IP addresses, CIDR networks and host:port endpoints.
 *
 * Used by relay policy (mynetworks), connection limits and listeners.
 */
#ifndef SLUICE_NETADDR_H
#define SLUICE_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct netaddr {
    int family;            /* AF_INET or AF_INET6 */
    uint8_t bytes[16];     /* network order; first 4 used for IPv4 */
};

struct netmask {
    struct netaddr addr;
    unsigned prefix;
};

/* Parse "1.2.3.4" or "::1"; IPv4-mapped IPv6 becomes IPv4. 0 or -1. */
int netaddr_parse(const char *s, struct netaddr *out);
void netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);
/* Text form into buf (at least 46 bytes). */
const char *netaddr_str(const struct netaddr *a, char *buf, size_t len);
/* Parse "10.0.0.0/8", "::1/128" or a bare address (full-length prefix). */
int netmask_parse(const char *s, struct netmask *out);
bool netmask_match(const struct netmask *m, const struct netaddr *a);

/* A list of networks, e.g. mynetworks. */
struct netlist {
    struct netmask *v;
    size_t n, cap;
};
/* Parse a comma/space separated list; on error returns -1 and points
 * *bad at a static copy of the offending word. */
int netlist_parse(struct netlist *l, const char *text, const char **bad);
bool netlist_match(const struct netlist *l, const struct netaddr *a);
void netlist_free(struct netlist *l);

/* Parse "host:port", "[v6]:port" or "port"; default host 127.0.0.1. */
int endpoint_parse(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
