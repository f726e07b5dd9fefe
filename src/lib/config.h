/*
 * config.h - sluice.conf: Postfix-style "key = value" configuration.
 *
 * Every key has a built-in default (see the table in config.c), so sluice
 * runs with no file at all. Values are parsed into typed fields of struct
 * config; errors name the file, the line and the fix. A struct config is
 * immutable once loaded: SIGHUP loads a new one and swaps it in.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include "lib/netaddr.h"
#include "lib/table.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type { CFG_STR, CFG_LIST, CFG_TIME, CFG_SIZE, CFG_INT, CFG_BOOL, CFG_ENUM };

struct config {
    /* --- identity and listeners --- */
    char *myhostname;
    char *smtp_listen;
    char *smtpd_banner;
    char *mail_owner;
    /* --- spool and logging --- */
    char *spool_dir;
    char *maillog_file;
    char *log_json_file;
    /* --- recipients and relay policy --- */
    char *mydomains;
    char *local_recipients;
    char *mynetworks;
    /* --- TLS --- */
    char *tls_cert_file;
    char *tls_key_file;
    char *smtpd_tls_security_level;
    /* --- limits --- */
    uint64_t message_size_limit;
    uint64_t smtpd_recipient_limit;
    uint64_t smtpd_client_connection_limit;
    uint64_t smtpd_max_sessions;
    uint64_t smtpd_timeout;
    uint64_t smtpd_error_limit;
    uint64_t smtpd_max_line_length;
    char *smtpd_bare_newline;
    uint64_t smtpd_shutdown_timeout;
    uint64_t spool_sync_delay_us;
    char *spool_sync;
    /* --- delivery --- */
    bool queue_delivery;
    char *dns_resolver;
    char *maildir_base;
    char *transport_maps;
    char *relayhost;
    uint64_t minimal_backoff_time;
    uint64_t maximal_backoff_time;
    uint64_t maximal_queue_lifetime;
    uint64_t throttled_queue_lifetime;
    uint64_t delay_warning_time;
    uint64_t queue_run_delay;
    char *reputation_block_action;
    char *bounce_notice_recipient;
    char *reply_rules;
    uint64_t initial_destination_concurrency;
    uint64_t default_destination_concurrency_limit;
    uint64_t smtp_destination_recipient_limit;
    uint64_t smtp_connection_reuse_count;
    uint64_t smtp_connect_timeout;
    uint64_t smtp_reply_timeout;
    uint64_t smtp_data_timeout;
    char *smtp_tls_security_level;
    char *tls_policy_maps;
    uint64_t smtp_tls_fallback_ttl;
    char *smtp_helo_name;
    uint64_t throttle_pause_time;
    uint64_t destination_rate_delay;
    /* --- DNS --- */
    /* --- greylisting (docs/greylisting.md) --- */
    bool greylist;
    uint64_t greylist_delay;
    uint64_t greylist_window;
    uint64_t greylist_max_age;
    uint64_t greylist_auto_allow_interval;
    uint64_t greylist_auto_allow_count;
    uint64_t greylist_ipv4_prefix;
    uint64_t greylist_ipv6_prefix;
    char *greylist_store;
    char *greylist_failure;
    uint64_t greylist_timeout;
    char *greylist_allow_clients;
    char *greylist_allow_senders;
    char *greylist_allow_recipients;
    char *greylist_allow_pools;
    char *policy_listen;
    uint64_t policy_poll_us;

    /* --- derived at load time --- */
    struct netlist mynetworks_list;
    char **mydomains_v;
    size_t mydomains_n;
    struct table *local_recipients_table;
    struct table *transport_table;
    struct table *tls_policy_table;

    /* --- bookkeeping for `sluice config` --- */
    char *path;            /* file loaded, or NULL for built-in defaults */
    char **raw;            /* effective raw value per key */
    unsigned *lineno;      /* 0 = default */
};

/* Load `path` (NULL: built-in defaults only). On error returns NULL and
 * writes one line "FILE:LINE: problem; fix: ..." into err. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *c);
/* Print "key = value" lines (only_set: only keys set in the file).
 * Non-default values are marked with a comment naming their origin. */
void config_print(const struct config *c, FILE *out, bool only_set, bool json);
/* True when `domain` (lower case, no trailing dot) is one of mydomains. */
bool config_is_local_domain(const struct config *c, const char *domain);

#endif
