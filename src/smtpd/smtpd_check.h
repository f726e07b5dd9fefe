/*
 * smtpd_check.h - recipient and relay policy: which RCPT TO addresses are
 * ours, which clients may relay, and the reply for everything else.
 */
#ifndef SLUICE_SMTPD_CHECK_H
#define SLUICE_SMTPD_CHECK_H

#include "lib/config.h"
#include "lib/netaddr.h"
#include "mail/address.h"

#include <stdbool.h>

struct check_result {
    int code;               /* 0 = accept */
    const char *enhanced;
    char text[256];
};

/* Decide on one recipient. `trusted` = client in mynetworks. */
void smtpd_check_rcpt(const struct config *cfg, const struct address *rcpt,
                      bool trusted, struct check_result *res);

#endif
