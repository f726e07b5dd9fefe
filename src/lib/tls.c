/*
 * tls.c - OpenSSL server contexts and self-signed certificates.
 */
#include "lib/tls.h"
#include "lib/strutil.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tls_last_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        str_copy(buf, "unknown TLS error", len);
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file,
                        char *err, size_t errlen)
{
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot create TLS context: %s", tls_last_error(e, sizeof(e)));
        return NULL;
    }
    /* Opportunistic TLS between MTAs: accept what OpenSSL accepts by
     * default (TLS 1.2+), prefer our cipher order, no renegotiation. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(err, errlen, "cannot load tls_cert_file %s: %s; fix: point it "
                 "at a PEM certificate chain", cert_file, tls_last_error(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "cannot load tls_key_file %s: %s; fix: point it "
                 "at the PEM key matching tls_cert_file", key_file,
                 tls_last_error(e, sizeof(e)));
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int write_pem(const char *path, int (*writer)(FILE *, void *), void *obj,
                     mode_t mode)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (fp == NULL)
        return -1;
    chmod(tmp, mode);
    int ok = writer(fp, obj);
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
        ok = 0;
    fclose(fp);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int write_key(FILE *fp, void *k)
{
    return PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL);
}

static int write_cert(FILE *fp, void *x)
{
    return PEM_write_X509(fp, x);
}

int tls_ensure_selfsigned(const char *dir, const char *cn, char *err, size_t errlen)
{
    char cert[512], key[512], e[256];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    if (access(cert, R_OK) == 0 && access(key, R_OK) == 0)
        return 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int rc = -1;
    if (pkey == NULL || x == NULL)
        goto out;
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (X509_sign(x, pkey, EVP_sha256()) == 0)
        goto out;
    if (write_pem(key, write_key, pkey, 0600) < 0 ||
        write_pem(cert, write_cert, x, 0644) < 0) {
        snprintf(err, errlen, "cannot write a self-signed certificate under %s: %s",
                 dir, strerror(errno));
        goto done;
    }
    rc = 0;
    goto done;
out:
    snprintf(err, errlen, "cannot make a self-signed certificate: %s",
             tls_last_error(e, sizeof(e)));
done:
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}
