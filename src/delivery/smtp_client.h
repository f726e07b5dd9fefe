/*
 * smtp_client.h - internals of the outbound SMTP/LMTP client shared by
 * smtp_client.c (the session state machine) and smtp_tls.c (TLS policy
 * and the memory of hosts whose STARTTLS failed).
 */
#ifndef SLUICE_SMTP_CLIENT_H
#define SLUICE_SMTP_CLIENT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <time.h>

struct config;

enum tls_need { TLS_NONE, TLS_MAY, TLS_ENCRYPT };

/* The TLS level for a destination: tls_policy_maps (by domain or host),
 * else smtp_tls_security_level. */
enum tls_need smtp_tls_level(const struct config *c, const char *domain, const char *host);
/* Remember that STARTTLS to `host` failed (for smtp_tls_fallback_ttl). */
void smtp_tls_remember_failure(const char *host, time_t ttl);
bool smtp_tls_recently_failed(const char *host);
/* Load/save the memory under spool_dir (tls_fallback file). */
void smtp_tls_cache_open(const char *spool_dir);
SSL_CTX *smtp_tls_client_ctx(void);

#endif
