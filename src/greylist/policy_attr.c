/*
 * policy_attr.c - parse Postfix policy delegation attributes (see
 * policy_attr.h). Names are matched through a table of the attributes
 * greylisting uses; everything else is counted and ignored, as the
 * protocol requires for attributes a newer Postfix may add.
 */
#include "greylist/policy_attr.h"
#include "lib/strutil.h"

#include <stddef.h>
#include <string.h>

struct policy_attr_def {
    const char *name;
    size_t offset;
    size_t size;
};

#define PA(name, field) {name, offsetof(struct policy_req, field), \
                         sizeof(((struct policy_req *)0)->field)}

static const struct policy_attr_def policy_attrs[] = {
    PA("request", request),
    PA("protocol_state", protocol_state),
    PA("client_address", client_address),
    PA("client_name", client_name),
    PA("helo_name", helo_name),
    PA("sender", sender),
    PA("recipient", recipient),
    PA("sasl_username", sasl_username),
    PA("queue_id", queue_id),
    PA("instance", instance),
};

void policy_req_init(struct policy_req *r)
{
    memset(r, 0, sizeof(*r));
}

void policy_req_oversize(struct policy_req *r)
{
    r->oversize = true;
    r->nattrs++;
}

enum policy_feed policy_req_feed(struct policy_req *r, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return POLICY_END;
    if (++r->nattrs > POLICY_ATTRS_MAX) {
        r->too_many = true;
        return POLICY_MORE;
    }
    if (len > POLICY_LINE_MAX) {
        r->oversize = true;
        return POLICY_MORE;
    }
    const char *eq = memchr(line, '=', len);
    if (eq == NULL || eq == line || memchr(line, '\0', len) != NULL)
        return POLICY_BAD;
    size_t nlen = (size_t)(eq - line), vlen = len - nlen - 1;
    for (size_t i = 0; i < sizeof(policy_attrs) / sizeof(policy_attrs[0]); i++) {
        const struct policy_attr_def *d = &policy_attrs[i];
        if (strlen(d->name) != nlen || memcmp(d->name, line, nlen) != 0)
            continue;
        if (vlen >= d->size) {
            r->oversize = true;
            return POLICY_MORE;
        }
        char *field = (char *)r + d->offset;
        memcpy(field, eq + 1, vlen);
        field[vlen] = '\0';
        return POLICY_MORE;
    }
    return POLICY_MORE;
}
