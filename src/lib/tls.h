/*
 * tls.h - OpenSSL 3 contexts for the SMTP server (and later the client),
 * and the self-signed certificate a development instance makes on first
 * start.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Load cert+key into a new server context. NULL + err on failure. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file,
                        char *err, size_t errlen);
/* Make dir/cert.pem and dir/key.pem for `cn` unless both exist.
 * 0 or -1 + err. */
int tls_ensure_selfsigned(const char *dir, const char *cn, char *err, size_t errlen);
/* The most recent OpenSSL error as text (for logs). */
const char *tls_last_error(char *buf, size_t len);

#endif
