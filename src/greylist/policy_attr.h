/*
 * policy_attr.h - the Postfix policy delegation request (SMTPD_POLICY_README):
 * "name=value" lines ending with an empty line. A pure, table-driven
 * parser (fuzzed alone): known attributes are copied into bounded fields,
 * unknown ones ignored, over-long lines and too many attributes flagged.
 */
#ifndef SLUICE_GREYLIST_POLICY_ATTR_H
#define SLUICE_GREYLIST_POLICY_ATTR_H

#include <stdbool.h>
#include <stddef.h>

#define POLICY_LINE_MAX 1024      /* one attribute line, without the LF */
#define POLICY_ATTRS_MAX 512      /* attributes in one request */

struct policy_req {
    char request[32];
    char protocol_state[32];
    char client_address[64];
    char client_name[256];
    char helo_name[256];
    char sender[400];
    char recipient[400];
    char sasl_username[256];
    char queue_id[64];
    char instance[128];
    unsigned nattrs;
    bool oversize;                /* a line or value over its limit */
    bool too_many;                /* more than POLICY_ATTRS_MAX lines */
};

enum policy_feed {
    POLICY_MORE,                  /* an attribute (or ignored line) taken */
    POLICY_END,                   /* the empty line: the request is complete */
    POLICY_BAD,                   /* not "name=value": not a policy client */
};

void policy_req_init(struct policy_req *r);
/* Feed one line (without its LF; a trailing CR is removed). */
enum policy_feed policy_req_feed(struct policy_req *r, const char *line, size_t len);
/* Mark the request as having had an over-long line (read and dropped). */
void policy_req_oversize(struct policy_req *r);

#endif
