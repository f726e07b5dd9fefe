/*
 * provider.h - which mailbox provider runs a destination (Microsoft,
 * Google, Yahoo, ...), from its MX host name or, failing that, from
 * well-known recipient domains.
 *
 * Shared by `sluice report` (the provider view) and the delivery engine
 * (destinations that share a provider share limits: MX rollup).
 */
#ifndef SLUICE_PROVIDER_H
#define SLUICE_PROVIDER_H

/* The provider's display name ("Microsoft"), or NULL when the host is not
 * one we know. Host names are matched case-insensitively; a trailing dot
 * and a "[ip]:port" suffix are ignored. */
const char *provider_from_host(const char *mx_host);
/* Same, from a recipient domain such as "hotmail.de" or "gmail.com". */
const char *provider_from_domain(const char *domain);
/* Host first, then domain; "other" when neither is known. */
const char *provider_of(const char *mx_host, const char *domain);

#endif
