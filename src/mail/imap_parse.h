/*
 * imap_parse.h - the IMAP response parser (RFC 3501 / RFC 9051).
 *
 * imap_parse() takes one complete server response in wire form (the first
 * line, every literal "{N}\r\n" followed by its N bytes, the continuation
 * lines, CRLFs included) and turns it into a flat array of tokens: atoms,
 * numbers, strings (quoted or literal), NIL and parenthesised lists. A list
 * token's `end` is the index just past its last descendant, so a reader
 * walks siblings with i = tok[i].end.
 *
 * Tokens point into the caller's buffer, which the parser modifies (quoted
 * strings are unescaped in place) and which must outlive the tokens. Every
 * size is bounded: nesting depth (IMAP_DEPTH_MAX), token count
 * (IMAP_TOK_MAX), tag length; a literal must be wholly present. Hostile or
 * malformed input yields -1 and a one-line reason, never a crash.
 */
#ifndef SLUICE_IMAP_PARSE_H
#define SLUICE_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_DEPTH_MAX 32
#define IMAP_TOK_MAX 65536
#define IMAP_TAG_MAX 32

enum imap_tok_type { IMAP_ATOM, IMAP_NUM, IMAP_STR, IMAP_NIL, IMAP_LIST };

struct imap_tok {
    enum imap_tok_type type;
    const char *p;        /* text (not NUL terminated); NULL for NIL and lists */
    size_t len;
    uint64_t num;         /* IMAP_NUM */
    size_t end;           /* index past this token (and its children) */
};

enum imap_kind { IMAP_TAGGED, IMAP_UNTAGGED, IMAP_CONTINUE };
enum imap_status { IMAP_NONE, IMAP_OK, IMAP_NO, IMAP_BAD, IMAP_BYE, IMAP_PREAUTH };

struct imap_resp {
    enum imap_kind kind;
    char tag[IMAP_TAG_MAX + 1];
    bool has_num;               /* "* 12 FETCH": num = 12 */
    uint64_t num;
    char keyword[32];           /* upper case: OK, FETCH, EXISTS, CAPABILITY... */
    enum imap_status status;    /* for OK/NO/BAD/BYE/PREAUTH */
    size_t code, code_end;      /* tokens of "[CODE args]"; code == code_end: none */
    const char *text;           /* human-readable text of a status, or "+ text" */
    size_t text_len;
    const char *full;           /* the status text with its [CODE] (for messages) */
    size_t full_len;
    struct imap_tok *tok;       /* data tokens [data, ntok) */
    size_t data;
    size_t ntok, cap;
};

void imap_resp_init(struct imap_resp *r);
void imap_resp_free(struct imap_resp *r);
/* Parse one response; 0, or -1 with a reason in err. */
int imap_parse(char *data, size_t len, struct imap_resp *r, char *err, size_t errlen);

/* Does a token equal `s` (ASCII case-insensitive; atoms and strings)? */
bool imap_tok_is(const struct imap_tok *t, const char *s);
/* Copy a token's text into dst (truncating, NUL-terminated; "" for NIL). */
const char *imap_tok_str(const struct imap_tok *t, char *dst, size_t dstlen);
/* In the FETCH attribute list at index `list`, find item `name` (matched
 * case-insensitively; "BODY[" matches any section) and return the index of
 * its value, or -1. */
long imap_fetch_item(const struct imap_resp *r, size_t list, const char *name);
/* Is the response code (the first word inside [...]) `name`? */
bool imap_code_is(const struct imap_resp *r, const char *name);

/* Parse an RFC 3501 sequence set of UIDs ("1:3,7") into a callback; -1 on
 * junk or more than `max` numbers. */
int imap_seqset_each(const char *s, size_t len, uint64_t max,
                     void (*fn)(uint64_t n, void *arg), void *arg);

#endif
