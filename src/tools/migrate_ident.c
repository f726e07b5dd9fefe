/*
 * migrate_ident.c - message identity for `sluice migrate`.
 *
 * A message is the same message on both sides when its Message-ID, its
 * size (RFC822.SIZE) and its Date header agree; a message without a
 * Message-ID is identified by a hash of its whole content. The identity is
 * the first 128 bits of a SHA-256, in hex. Rules: docs/migrate.md.
 */
#include "tools/migrate.h"
#include "lib/strutil.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Append the unfolded value of the header line starting at p. */
static size_t field_value(const char *p, const char *end, char *dst, size_t dstlen)
{
    size_t n = 0;
    bool space = false;
    for (; p < end; p++) {
        if (*p == '\n') {
            if (p + 1 < end && (p[1] == ' ' || p[1] == '\t')) {
                space = true;
                continue;
            }
            break;
        }
        if (*p == '\r' || *p == ' ' || *p == '\t') {
            space = n > 0;
            continue;
        }
        if (space && n + 1 < dstlen)
            dst[n++] = ' ';
        space = false;
        if (n + 1 < dstlen)
            dst[n++] = *p;
    }
    dst[n] = '\0';
    return n;
}

void mig_header_field(const char *hdr, size_t len, const char *name, char *dst,
                      size_t dstlen)
{
    const char *p = hdr, *end = hdr + len;
    size_t nl = strlen(name);
    dst[0] = '\0';
    while (p < end) {
        if (*p == '\r' || *p == '\n')
            return;                       /* the blank line ends the header */
        if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            field_value(p + nl + 1, end, dst, dstlen);
            return;
        }
        const char *nlp = memchr(p, '\n', (size_t)(end - p));
        if (nlp == NULL)
            return;
        p = nlp + 1;
    }
}

static void digest_hex(EVP_MD_CTX *ctx, char id[MIG_ID_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", md[i]);
}

bool mig_ident_header(const char *hdr, size_t len, uint64_t size, char id[MIG_ID_LEN])
{
    char msgid[1000], date[200], num[24];
    mig_header_field(hdr, len, "Message-ID", msgid, sizeof(msgid));
    if (msgid[0] == '\0')
        return false;
    mig_header_field(hdr, len, "Date", date, sizeof(date));
    snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, "M", 2);
    EVP_DigestUpdate(ctx, msgid, strlen(msgid) + 1);
    EVP_DigestUpdate(ctx, num, strlen(num) + 1);
    EVP_DigestUpdate(ctx, date, strlen(date) + 1);
    digest_hex(ctx, id);
    return true;
}

void mig_ident_content(const char *msg, size_t len, char id[MIG_ID_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, "H", 2);
    EVP_DigestUpdate(ctx, msg, len);
    digest_hex(ctx, id);
}
