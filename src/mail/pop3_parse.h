/*
 * pop3_parse.h - POP3 (RFC 1939, RFC 2449) reply parsing: status lines,
 * multi-line bodies (dot-unstuffing, the terminating "."), and the UIDL and
 * LIST scan lines. Pure functions over one line, so the client and the
 * fuzzer use exactly the same code. Every size is bounded.
 */
#ifndef SLUICE_POP3_PARSE_H
#define SLUICE_POP3_PARSE_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POP3_UIDL_MAX 70     /* RFC 1939: 1 to 70 characters 0x21..0x7e */

/* "+OK text" -> 1, "-ERR text" -> 0, anything else -1; *text points past
 * the status word. */
int pop3_status(const char *line, size_t len, const char **text);

/* One line of a multi-line reply into body: returns 1 at the terminating
 * ".", 0 for a data line (unstuffed, appended with CRLF), -1 when body
 * would pass its bound. */
int pop3_body_line(struct buf *body, const char *line, size_t len);

/* "N UIDL" -> 0 and fills num, uidl; -1 on junk. */
int pop3_uidl_line(const char *line, size_t len, uint32_t *num, char *uidl, size_t cap);
/* "N SIZE" -> 0; -1 on junk. */
int pop3_list_line(const char *line, size_t len, uint32_t *num, uint64_t *size);

#endif
