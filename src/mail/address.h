/*
 * address.h - RFC 5321 / RFC 6531 envelope address ("path") parsing.
 *
 * Parses "<local@domain>" including the null path "<>", the special
 * "<postmaster>", source routes (accepted and ignored, RFC 5321 4.1.1.3),
 * quoted local parts, address literals ([192.0.2.1], [IPv6:2001:db8::1])
 * and, when SMTPUTF8 is in use, UTF-8 in local parts and domains.
 * Hostile input is bounded: local part 64 octets, domain 255, path 256.
 */
#ifndef SLUICE_ADDRESS_H
#define SLUICE_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_PATH_MAX 256

enum addr_status {
    ADDR_OK = 0,
    ADDR_ESYNTAX,      /* not an RFC 5321 path */
    ADDR_ETOOLONG,     /* local part, domain or path over its limit */
    ADDR_EUTF8,        /* non-ASCII without SMTPUTF8 */
    ADDR_ENULL,        /* "<>" where a mailbox is required */
};

struct address {
    char local[ADDR_LOCAL_MAX + 1];   /* as written (quotes kept) */
    char domain[ADDR_DOMAIN_MAX + 1]; /* ASCII lower-cased, no trailing dot */
    bool is_null;        /* <> */
    bool is_postmaster;  /* <postmaster> without a domain */
    bool quoted;         /* local part was a quoted string */
    bool literal;        /* domain is an address literal */
    bool utf8;           /* contains non-ASCII */
    bool had_route;      /* a source route was given (and dropped) */
};

enum addr_flags {
    ADDR_ALLOW_NULL = 1,       /* MAIL FROM:<> */
    ADDR_ALLOW_POSTMASTER = 2, /* RCPT TO:<postmaster> */
    ADDR_ALLOW_UTF8 = 4,       /* SMTPUTF8 given */
    ADDR_ALLOW_NOBRACKETS = 8, /* tolerate "MAIL FROM:user@example.org" */
};

/* Parse a path at s. On success *end points just past it (at the
 * parameters, if any). */
enum addr_status address_parse_path(const char *s, unsigned flags,
                                    struct address *out, const char **end);
/* "local@domain" (or "" for the null path) into buf. */
const char *address_str(const struct address *a, char *buf, size_t len);
/* Does the local part carry routing characters (% ! @) that could make
 * a local domain relay elsewhere? */
bool address_has_routing(const struct address *a);
const char *address_status_str(enum addr_status st);

#endif
