/*
 * fuzz_smtp_command.c - libFuzzer harness for the SMTP command grammar:
 * verb splitting, MAIL/RCPT parameters, BDAT arguments and the path
 * parser, fed exactly as smtpd feeds them (bounded, NUL-terminated line).
 */
#include "mail/address.h"
#include "smtpd/smtpd_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[1100];
    if (size >= sizeof(line))
        size = sizeof(line) - 1;
    memcpy(line, data, size);
    line[size] = '\0';
    struct smtp_command cmd;
    if (smtpd_parse_command(line, &cmd) < 0)
        return 0;
    struct param_error e;
    struct address a;
    const char *end;
    char params[1100];
    if (cmd.verb == SMTP_MAIL) {
        struct mail_params mp;
        address_parse_path(cmd.args, ADDR_ALLOW_NULL | ADDR_ALLOW_UTF8, &a, &end);
        memcpy(params, cmd.args, strlen(cmd.args) + 1);
        smtpd_parse_mail_params(params, &mp, &e);
    } else if (cmd.verb == SMTP_RCPT) {
        struct rcpt_params rp;
        if (address_parse_path(cmd.args, ADDR_ALLOW_POSTMASTER, &a, &end) == ADDR_OK) {
            memcpy(params, end, strlen(end) + 1);
            smtpd_parse_rcpt_params(params, &rp, &e);
        }
    } else if (cmd.verb == SMTP_BDAT) {
        uint64_t n;
        bool last;
        smtpd_parse_bdat(cmd.args, &n, &last);
    }
    return 0;
}
