/*
 * smtp_tls.c - outbound TLS policy and the STARTTLS-failure memory.
 *
 * Opportunistic TLS must never stall delivery: when a peer breaks the
 * handshake or drops the connection after "220 Ready to start TLS" (the
 * Outlook.com incident), the client retries the same host at once in
 * plaintext unless policy requires TLS, and remembers the host for
 * smtp_tls_fallback_ttl so later connections skip the broken handshake.
 * The memory is a small text file in the spool ("host expiry" lines), so
 * it survives restarts.
 */
#include "delivery/smtp_client.h"
#include "lib/config.h"
#include "lib/dict.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct dict fallback;       /* host -> (void *)(intptr_t)expiry */
static bool fallback_ready;
static char fallback_path[600];
static SSL_CTX *client_ctx;

enum tls_need smtp_tls_level(const struct config *c, const char *domain, const char *host)
{
    const char *v = NULL;
    if (c->tls_policy_table) {
        if (domain)
            v = table_get(c->tls_policy_table, domain);
        if (v == NULL && host)
            v = table_get(c->tls_policy_table, host);
    }
    if (v == NULL)
        v = c->smtp_tls_security_level;
    if (str_iprefix(v, "encrypt") || str_iprefix(v, "secure") || str_iprefix(v, "verify") ||
        str_iprefix(v, "dane"))
        return TLS_ENCRYPT;
    if (str_iprefix(v, "none"))
        return TLS_NONE;
    return TLS_MAY;
}

static void cache_save(void)
{
    if (!fallback_path[0])
        return;
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", fallback_path);
    FILE *fp = fopen(tmp, "w");
    if (fp == NULL)
        return;
    size_t pos = 0;
    const char *k;
    void *v;
    time_t now = time(NULL);
    while (dict_next(&fallback, &pos, &k, &v))
        if ((time_t)(intptr_t)v > now)
            fprintf(fp, "%s %lld\n", k, (long long)(intptr_t)v);
    if (fclose(fp) == 0)
        rename(tmp, fallback_path);
}

void smtp_tls_cache_open(const char *spool_dir)
{
    if (!fallback_ready) {
        dict_init(&fallback, NULL);
        fallback_ready = true;
    }
    snprintf(fallback_path, sizeof(fallback_path), "%s/tls_fallback", spool_dir);
    FILE *fp = fopen(fallback_path, "r");
    if (fp == NULL)
        return;
    char line[400];
    while (fgets(line, sizeof(line), fp)) {
        char *sp = strchr(line, ' ');
        uint64_t exp;
        if (sp == NULL)
            continue;
        *sp = '\0';
        sp[strcspn(sp + 1, "\n") + 1] = '\0';
        if (str_to_u64(sp + 1, &exp) == 0 && (time_t)exp > time(NULL))
            dict_set(&fallback, line, (void *)(intptr_t)exp);
    }
    fclose(fp);
}

void smtp_tls_remember_failure(const char *host, time_t ttl)
{
    if (!fallback_ready) {
        dict_init(&fallback, NULL);
        fallback_ready = true;
    }
    char key[300];
    str_copy(key, host, sizeof(key));
    str_lower(key);
    dict_set(&fallback, key, (void *)(intptr_t)(time(NULL) + ttl));
    cache_save();
}

bool smtp_tls_recently_failed(const char *host)
{
    if (!fallback_ready)
        return false;
    char key[300];
    str_copy(key, host, sizeof(key));
    str_lower(key);
    void *v = dict_get(&fallback, key);
    return v != NULL && (time_t)(intptr_t)v > time(NULL);
}

SSL_CTX *smtp_tls_client_ctx(void)
{
    if (client_ctx == NULL) {
        client_ctx = SSL_CTX_new(TLS_client_method());
        /* Opportunistic: encrypt, do not authenticate (RFC 7435). */
        SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_options(client_ctx, SSL_OP_NO_RENEGOTIATION);
    }
    return client_ctx;
}
