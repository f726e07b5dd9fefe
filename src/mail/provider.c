/*
 * provider.c - mailbox providers by MX host pattern and by domain.
 *
 * Two tables: host suffixes (the MX names providers really use) and
 * consumer domains (for mail that never reached an MX, e.g. DNS failures).
 * A pattern "*.x.y" matches any name ending in ".x.y"; others match the
 * whole name.
 */
#include "mail/provider.h"
#include "lib/strutil.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

struct prov_pat {
    const char *pattern;
    const char *provider;
};

static const struct prov_pat host_pats[] = {
    {"*.protection.outlook.com", "Microsoft"},
    {"*.mail.protection.outlook.com", "Microsoft"},
    {"*.olc.protection.outlook.com", "Microsoft"},
    {"*.outbound.protection.outlook.com", "Microsoft"},
    {"*.hotmail.com", "Microsoft"},
    {"*.outlook.com", "Microsoft"},
    {"*.msn.com", "Microsoft"},
    {"*.google.com", "Google"},
    {"gmail-smtp-in.l.google.com", "Google"},
    {"*.googlemail.com", "Google"},
    {"*.yahoodns.net", "Yahoo"},
    {"*.yahoo.com", "Yahoo"},
    {"*.aol.com", "Yahoo"},
    {"*.mail.icloud.com", "Apple"},
    {"*.icloud.com", "Apple"},
    {"*.me.com", "Apple"},
    {"*.gmx.net", "GMX/WEB.DE"},
    {"*.web.de", "GMX/WEB.DE"},
    {"*.gmx.com", "GMX/WEB.DE"},
    {"*.t-online.de", "T-Online"},
    {"*.pphosted.com", "Proofpoint"},
    {"*.ppe-hosted.com", "Proofpoint"},
    {"*.mimecast.com", "Mimecast"},
    {"*.mimecast.co.za", "Mimecast"},
    {"*.iphmx.com", "Cisco Secure Email"},
    {"*.barracudanetworks.com", "Barracuda"},
    {"*.zoho.com", "Zoho"},
    {"*.zoho.eu", "Zoho"},
    {"*.messagingengine.com", "Fastmail"},
    {"*.mailbox.org", "mailbox.org"},
    {"*.protonmail.ch", "Proton"},
    {"*.mail.ru", "Mail.ru"},
    {"*.yandex.net", "Yandex"},
    {"*.yandex.ru", "Yandex"},
    {"*.secureserver.net", "GoDaddy"},
    {"*.ovh.net", "OVH"},
    {"*.ionos.de", "IONOS"},
    {"*.ionos.com", "IONOS"},
    {"*.kundenserver.de", "IONOS"},
    {"*.comcast.net", "Comcast"},
};

static const struct prov_pat domain_pats[] = {
    {"outlook.com", "Microsoft"}, {"hotmail.com", "Microsoft"},
    {"hotmail.de", "Microsoft"}, {"hotmail.co.uk", "Microsoft"},
    {"hotmail.fr", "Microsoft"}, {"hotmail.it", "Microsoft"},
    {"live.com", "Microsoft"}, {"live.de", "Microsoft"},
    {"msn.com", "Microsoft"}, {"outlook.de", "Microsoft"},
    {"gmail.com", "Google"}, {"googlemail.com", "Google"},
    {"yahoo.com", "Yahoo"}, {"yahoo.de", "Yahoo"}, {"yahoo.co.uk", "Yahoo"},
    {"yahoo.fr", "Yahoo"}, {"ymail.com", "Yahoo"}, {"aol.com", "Yahoo"},
    {"icloud.com", "Apple"}, {"me.com", "Apple"}, {"mac.com", "Apple"},
    {"gmx.de", "GMX/WEB.DE"}, {"gmx.net", "GMX/WEB.DE"},
    {"gmx.com", "GMX/WEB.DE"}, {"web.de", "GMX/WEB.DE"},
    {"t-online.de", "T-Online"}, {"mail.ru", "Mail.ru"},
    {"yandex.ru", "Yandex"}, {"proton.me", "Proton"},
    {"protonmail.com", "Proton"}, {"zoho.com", "Zoho"},
    {"fastmail.com", "Fastmail"}, {"comcast.net", "Comcast"},
};

static bool pat_match(const char *pat, const char *name, size_t len)
{
    if (strncmp(pat, "*.", 2) == 0) {
        size_t pl = strlen(pat + 1);
        return len > pl && strncasecmp(name + len - pl, pat + 1, pl) == 0;
    }
    return strlen(pat) == len && strncasecmp(pat, name, len) == 0;
}

static const char *table_lookup(const struct prov_pat *t, size_t n,
                                const char *name)
{
    if (name == NULL)
        return NULL;
    size_t len = strcspn(name, "[:");
    while (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (pat_match(t[i].pattern, name, len))
            return t[i].provider;
    return NULL;
}

const char *provider_from_host(const char *mx_host)
{
    return table_lookup(host_pats, sizeof(host_pats) / sizeof(host_pats[0]), mx_host);
}

const char *provider_from_domain(const char *domain)
{
    return table_lookup(domain_pats, sizeof(domain_pats) / sizeof(domain_pats[0]),
                        domain);
}

const char *provider_of(const char *mx_host, const char *domain)
{
    const char *p = provider_from_host(mx_host);
    if (p == NULL)
        p = provider_from_domain(domain);
    return p ? p : "other";
}
