/*
 * smtp_reply.h - parser for SMTP/LMTP replies as a client reads them:
 * multi-line replies ("250-..." ... "250 ..."), the basic code, the RFC
 * 3463 enhanced code (RFC 2034 puts it on every line), and the EHLO
 * extension keywords. Pure and bounded: unit-tested and fuzzed.
 */
#ifndef SLUICE_SMTP_REPLY_H
#define SLUICE_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct smtp_reply {
    int code;            /* 200..599; 500 for a line that has no code */
    char enh[16];        /* "4.7.500", or "N.0.0" when the peer gave none */
    char text[512];      /* lines joined by one space, truncated */
    bool open;           /* inside a multi-line reply */
};

/* EHLO extensions (bit flags) and the SIZE value. */
enum smtp_ext {
    EXT_PIPELINING = 1, EXT_STARTTLS = 2, EXT_DSN = 4, EXT_SMTPUTF8 = 8,
    EXT_8BITMIME = 16, EXT_CHUNKING = 32, EXT_SIZE = 64, EXT_ENHANCED = 128,
};

void smtp_reply_init(struct smtp_reply *r);
/* Feed one line (CRLF removed). Returns true when the reply is complete;
 * the next line then starts a new reply. */
bool smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len);
/* The extension named on one line of a 250 EHLO reply (after "250-"/"250 "):
 * returns its EXT_ flag (0 if unknown); *size gets SIZE's value. */
unsigned smtp_ehlo_keyword(const char *text, uint64_t *size);

#endif
