/*
 * smtpd_check.c - recipient and relay policy.
 *
 * Local recipients: domain in mydomains (the bare <postmaster> too). Any
 * other domain is relaying, allowed only for mynetworks clients. Local
 * parts that carry routing syntax (user%host@, host!user@, "u@h"@) are
 * relaying in disguise and get the same answer from untrusted clients, so
 * the classic open-relay tricks fail (docs/architecture.md, "Relay").
 */
#include "smtpd/smtpd_check.h"
#include "lib/strutil.h"

#include <stdio.h>
#include <string.h>

static void deny(struct check_result *r, int code, const char *enh,
                 const char *addr, const char *why)
{
    r->code = code;
    r->enhanced = enh;
    snprintf(r->text, sizeof(r->text), "<%s>: %s", addr, why);
}

/* Strip a +extension for the table lookup ("user+tag@d" -> "user@d"). */
static void base_address(const struct address *a, char *out, size_t len)
{
    char local[ADDR_LOCAL_MAX + 1];
    str_copy(local, a->local, sizeof(local));
    char *plus = a->quoted ? NULL : strchr(local, '+');
    if (plus && plus != local)
        *plus = '\0';
    snprintf(out, len, "%s@%s", local, a->domain);
}

/* local_recipients: "user@domain", "@domain" (catch-all), or "user"
 * (any local domain). */
static bool known_local(const struct config *cfg, const struct address *a)
{
    const struct table *t = cfg->local_recipients_table;
    char full[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 4], base[sizeof(full)];
    if (t == NULL)
        return true;
    snprintf(full, sizeof(full), "%s@%s", a->local, a->domain);
    base_address(a, base, sizeof(base));
    char catchall[ADDR_DOMAIN_MAX + 2];
    snprintf(catchall, sizeof(catchall), "@%s", a->domain);
    return table_get(t, full) || table_get(t, base) || table_get(t, catchall) ||
           table_get(t, a->local);
}

void smtpd_check_rcpt(const struct config *cfg, const struct address *rcpt,
                      bool trusted, struct check_result *res)
{
    char addr[ADDR_LOCAL_MAX + ADDR_DOMAIN_MAX + 4];
    address_str(rcpt, addr, sizeof(addr));
    memset(res, 0, sizeof(*res));
    if (rcpt->is_postmaster)
        return; /* RFC 5321 4.5.1: always accepted */
    bool local = !rcpt->literal && config_is_local_domain(cfg, rcpt->domain);
    if (!trusted && address_has_routing(rcpt)) {
        deny(res, 554, "5.7.1", addr, "Relay access denied (sender-specified "
             "routing in the local part)");
        return;
    }
    if (!local && !trusted) {
        deny(res, 554, "5.7.1", addr, "Relay access denied");
        return;
    }
    if (local && !known_local(cfg, rcpt))
        deny(res, 550, "5.1.1", addr, "Recipient address rejected: User unknown "
             "in local recipient table");
}
