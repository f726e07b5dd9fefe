/*
 * normalize.h - the sender half of a greylisting triplet, and the
 * organisational domain of a host name.
 *
 * Senders that change their envelope address on every attempt would never
 * match their own first attempt; norm_sender() removes the parts that vary:
 *   - the domain is lower-cased (the local part too: mailbox case is not
 *     significant in practice, and senders do not vary it per attempt);
 *   - "+extension" subaddresses: user+tag@d -> user@d;
 *   - BATV: prvs=KDDDSSSSSS=user@d (also "btv1==...==user") -> user@d;
 *   - SRS: SRS0=HHH=TT=orig-domain=orig-user@fwd -> orig-user@orig-domain,
 *     SRS1=HHH=fwd1==HHH=TT=orig-domain=orig-user@fwd -> the same;
 *   - VERP-style tags: every all-digit token of the local part (tokens are
 *     split on "-", "_", ".", "=", "+") and every token of 8 or more hex
 *     digits holding a digit becomes "#": bounce-12345-ann=x.org@lists.y
 *     -> bounce-#-ann=x.org@lists.y.
 * The null sender stays "".
 *
 * norm_org_domain(): the registrable ("organisational") domain by a small
 * built-in heuristic, not the Public Suffix List: the last two labels, or
 * the last three when the last two are a known second-level public suffix
 * (co.uk, com.au, co.jp, ...). docs/greylisting.md lists them.
 */
#ifndef SLUICE_GREYLIST_NORMALIZE_H
#define SLUICE_GREYLIST_NORMALIZE_H

#include <stddef.h>

#define NORM_ADDR_MAX 320

/* Normalise a sender address ("" for the null sender) into out. */
void norm_sender(const char *sender, char *out, size_t len);
/* The domain of an address, lower-cased ("" when none). */
void norm_domain_of(const char *addr, char *out, size_t len);
/* The organisational domain of a host name, lower-cased, no final dot. */
void norm_org_domain(const char *host, char *out, size_t len);

#endif
