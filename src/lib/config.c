/*
 * config.c - loader for sluice.conf (Postfix habits: key = value, '#'
 * comment lines, indented continuation lines, $name expansion).
 *
 * The key table below is the single source of truth for names, types,
 * defaults and one-line documentation; docs/configuration.md mirrors it.
 */
#include "lib/config.h"
#include "lib/buf.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cfg_def {
    const char *name;
    enum cfg_type type;
    const char *def;       /* "" = computed at load (see cfg_default) */
    size_t offset;
    const char *choices;   /* CFG_ENUM: "a|b|c" */
};

#define F(field) offsetof(struct config, field)

static const struct cfg_def cfg_defs[] = {
    {"myhostname", CFG_STR, "", F(myhostname), NULL},
    {"smtp_listen", CFG_LIST, "127.0.0.1:2525", F(smtp_listen), NULL},
    {"smtpd_banner", CFG_STR, "$myhostname ESMTP sluice", F(smtpd_banner), NULL},
    {"mail_owner", CFG_STR, "", F(mail_owner), NULL},
    {"spool_dir", CFG_STR, "./var/spool", F(spool_dir), NULL},
    {"maillog_file", CFG_STR, "", F(maillog_file), NULL},
    {"log_json_file", CFG_STR, "", F(log_json_file), NULL},
    {"mydomains", CFG_LIST, "localhost", F(mydomains), NULL},
    {"local_recipients", CFG_STR, "", F(local_recipients), NULL},
    {"mynetworks", CFG_LIST, "127.0.0.0/8 ::1/128", F(mynetworks), NULL},
    {"tls_cert_file", CFG_STR, "", F(tls_cert_file), NULL},
    {"tls_key_file", CFG_STR, "", F(tls_key_file), NULL},
    {"smtpd_tls_security_level", CFG_ENUM, "may", F(smtpd_tls_security_level), "none|may"},
    {"message_size_limit", CFG_SIZE, "50M", F(message_size_limit), NULL},
    {"smtpd_recipient_limit", CFG_INT, "1000", F(smtpd_recipient_limit), NULL},
    {"smtpd_client_connection_limit", CFG_INT, "50", F(smtpd_client_connection_limit), NULL},
    {"smtpd_max_sessions", CFG_INT, "10000", F(smtpd_max_sessions), NULL},
    {"smtpd_timeout", CFG_TIME, "300s", F(smtpd_timeout), NULL},
    {"smtpd_error_limit", CFG_INT, "10", F(smtpd_error_limit), NULL},
    {"smtpd_max_line_length", CFG_INT, "998", F(smtpd_max_line_length), NULL},
    {"smtpd_bare_newline", CFG_ENUM, "normalize", F(smtpd_bare_newline), "normalize|reject"},
    {"smtpd_shutdown_timeout", CFG_TIME, "30s", F(smtpd_shutdown_timeout), NULL},
    {"spool_sync_delay_us", CFG_INT, "0", F(spool_sync_delay_us), NULL},
    {"spool_sync", CFG_ENUM, "journal", F(spool_sync), "journal|auto|fdatasync"},
    {"queue_delivery", CFG_BOOL, "yes", F(queue_delivery), NULL},
    {"dns_resolver", CFG_STR, "system", F(dns_resolver), NULL},
    {"maildir_base", CFG_STR, "./var/mail", F(maildir_base), NULL},
    {"transport_maps", CFG_STR, "", F(transport_maps), NULL},
    {"relayhost", CFG_STR, "", F(relayhost), NULL},
    {"minimal_backoff_time", CFG_TIME, "5m", F(minimal_backoff_time), NULL},
    {"maximal_backoff_time", CFG_TIME, "1h", F(maximal_backoff_time), NULL},
    {"maximal_queue_lifetime", CFG_TIME, "5d", F(maximal_queue_lifetime), NULL},
    {"throttled_queue_lifetime", CFG_TIME, "10d", F(throttled_queue_lifetime), NULL},
    {"delay_warning_time", CFG_TIME, "4h", F(delay_warning_time), NULL},
    {"queue_run_delay", CFG_TIME, "1s", F(queue_run_delay), NULL},
    {"reputation_block_action", CFG_ENUM, "bounce", F(reputation_block_action), "bounce|hold"},
    {"bounce_notice_recipient", CFG_STR, "postmaster", F(bounce_notice_recipient), NULL},
    {"reply_rules", CFG_STR, "", F(reply_rules), NULL},
    {"initial_destination_concurrency", CFG_INT, "2", F(initial_destination_concurrency), NULL},
    {"default_destination_concurrency_limit", CFG_INT, "20",
     F(default_destination_concurrency_limit), NULL},
    {"smtp_destination_recipient_limit", CFG_INT, "50", F(smtp_destination_recipient_limit), NULL},
    {"smtp_connection_reuse_count", CFG_INT, "100", F(smtp_connection_reuse_count), NULL},
    {"smtp_connect_timeout", CFG_TIME, "30s", F(smtp_connect_timeout), NULL},
    {"smtp_reply_timeout", CFG_TIME, "300s", F(smtp_reply_timeout), NULL},
    {"smtp_data_timeout", CFG_TIME, "600s", F(smtp_data_timeout), NULL},
    {"smtp_tls_security_level", CFG_ENUM, "may", F(smtp_tls_security_level), "none|may|encrypt"},
    {"tls_policy_maps", CFG_STR, "", F(tls_policy_maps), NULL},
    {"smtp_tls_fallback_ttl", CFG_TIME, "1d", F(smtp_tls_fallback_ttl), NULL},
    {"smtp_helo_name", CFG_STR, "$myhostname", F(smtp_helo_name), NULL},
    {"throttle_pause_time", CFG_TIME, "60s", F(throttle_pause_time), NULL},
    {"destination_rate_delay", CFG_TIME, "0s", F(destination_rate_delay), NULL},
    {"greylist", CFG_BOOL, "no", F(greylist), NULL},
    {"greylist_delay", CFG_TIME, "2m", F(greylist_delay), NULL},
    {"greylist_window", CFG_TIME, "48h", F(greylist_window), NULL},
    {"greylist_max_age", CFG_TIME, "35d", F(greylist_max_age), NULL},
    {"greylist_auto_allow_interval", CFG_TIME, "1h", F(greylist_auto_allow_interval), NULL},
    {"greylist_auto_allow_count", CFG_INT, "2", F(greylist_auto_allow_count), NULL},
    {"greylist_ipv4_prefix", CFG_INT, "24", F(greylist_ipv4_prefix), NULL},
    {"greylist_ipv6_prefix", CFG_INT, "64", F(greylist_ipv6_prefix), NULL},
    {"greylist_store", CFG_STR, "lmdb:$spool_dir/greylist", F(greylist_store), NULL},
    {"greylist_failure", CFG_ENUM, "open", F(greylist_failure), "open|closed"},
    {"greylist_timeout", CFG_TIME, "10s", F(greylist_timeout), NULL},
    {"greylist_allow_clients", CFG_LIST, "", F(greylist_allow_clients), NULL},
    {"greylist_allow_senders", CFG_LIST, "", F(greylist_allow_senders), NULL},
    {"greylist_allow_recipients", CFG_LIST, "", F(greylist_allow_recipients), NULL},
    {"greylist_allow_pools", CFG_LIST, "", F(greylist_allow_pools), NULL},
    {"policy_listen", CFG_LIST, "127.0.0.1:10023", F(policy_listen), NULL},
    {"policy_poll_us", CFG_INT, "200", F(policy_poll_us), NULL},
};

#define CFG_NKEYS (sizeof(cfg_defs) / sizeof(cfg_defs[0]))

static const char *type_hint[] = {
    [CFG_STR] = "a string",
    [CFG_LIST] = "a comma- or space-separated list",
    [CFG_TIME] = "a time such as 300s, 5m, 4h or 5d (units s m h d w)",
    [CFG_SIZE] = "a size such as 10240, 512k, 50M or 1G (units k M G)",
    [CFG_INT] = "a whole number",
    [CFG_BOOL] = "yes or no",
    [CFG_ENUM] = "one of the listed words",
};

static int cfg_index(const char *name)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (strcmp(cfg_defs[i].name, name) == 0)
            return (int)i;
    return -1;
}

static const char *cfg_suggest(const char *name)
{
    const char *best = NULL;
    size_t bestd = 4;
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        size_t d = str_distance(name, cfg_defs[i].name, 4);
        if (d < bestd) {
            bestd = d;
            best = cfg_defs[i].name;
        }
    }
    return best;
}

static char *cfg_default(const struct cfg_def *d)
{
    if (strcmp(d->name, "myhostname") == 0) {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        return xstrdup(host);
    }
    return xstrdup(d->def);
}

/* Expand $name and ${name} from other keys (one level, like most
 * operators use it). Unknown names expand to nothing. */
static char *cfg_expand(struct config *c, const char *v)
{
    struct buf b;
    buf_init(&b, 65536);
    for (const char *p = v; *p;) {
        if (*p != '$') {
            buf_putc(&b, *p++);
            continue;
        }
        p++;
        char name[64];
        size_t n = 0;
        bool brace = *p == '{';
        if (brace)
            p++;
        while ((*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
               && n < sizeof(name) - 1)
            name[n++] = *p++;
        name[n] = '\0';
        if (brace && *p == '}')
            p++;
        int i = cfg_index(name);
        if (i >= 0 && c->raw[i] && strchr(c->raw[i], '$') == NULL)
            buf_puts(&b, c->raw[i]);
        else if (n == 0)
            buf_putc(&b, '$');
    }
    return buf_steal(&b);
}

static int cfg_error(char *err, size_t errlen, const struct config *c,
                     unsigned line, const char *fmt, const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, a, b ? b : "");
    if (c->path && line > 0)
        snprintf(err, errlen, "%s:%u: %s", c->path, line, msg);
    else if (c->path)
        snprintf(err, errlen, "%s: %s", c->path, msg);
    else
        snprintf(err, errlen, "built-in default: %s", msg);
    return -1;
}

/* Store one "key = value" assignment. */
static int cfg_assign(struct config *c, char *key, char *val, unsigned line,
                      char *err, size_t errlen)
{
    int i = cfg_index(key);
    if (i < 0) {
        const char *s = cfg_suggest(key);
        if (s)
            return cfg_error(err, errlen, c, line,
                             "unknown key '%s'; fix: did you mean '%s'?", key, s);
        return cfg_error(err, errlen, c, line,
                         "unknown key '%s'; fix: see 'sluice config' for the "
                         "list of keys%s", key, NULL);
    }
    free(c->raw[i]);
    c->raw[i] = xstrdup(val);
    c->lineno[i] = line;
    return 0;
}

static int cfg_parse_file(struct config *c, char *err, size_t errlen)
{
    FILE *fp = fopen(c->path, "r");
    if (fp == NULL)
        return cfg_error(err, errlen, c, 0, "cannot open: %s; fix: create the "
                         "file or pass another with -c", strerror(errno), NULL);
    char line[8192];
    unsigned lineno = 0, keyline = 0;
    struct buf key, val;
    buf_init(&key, 256);
    buf_init(&val, 65536);
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), fp)) {
        lineno++;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] != '\n' && !feof(fp)) {
            rc = cfg_error(err, errlen, c, lineno, "line too long%s%s; fix: split "
                           "it with indented continuation lines", "", NULL);
            break;
        }
        bool indented = line[0] == ' ' || line[0] == '\t';
        char *s = str_trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        if (indented) {
            if (key.len == 0) {
                rc = cfg_error(err, errlen, c, lineno, "continuation line '%s' "
                               "with no key before it; fix: remove the leading "
                               "white space%s", s, NULL);
                break;
            }
            if (buf_putc(&val, ' ') < 0 || buf_puts(&val, s) < 0)
                rc = cfg_error(err, errlen, c, lineno, "value too long%s%s", "", NULL);
            continue;
        }
        if (key.len > 0)
            rc = cfg_assign(c, key.data, str_trim(val.data), keyline, err, errlen);
        buf_reset(&key);
        buf_reset(&val);
        if (rc < 0)
            break;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = cfg_error(err, errlen, c, lineno, "missing '=' in '%s'; fix: "
                           "write 'key = value'%s", s, NULL);
            break;
        }
        *eq = '\0';
        char *k = str_trim(s);
        if (*k == '\0' || strcspn(k, " \t") != strlen(k)) {
            rc = cfg_error(err, errlen, c, lineno, "bad key '%s'; fix: write "
                           "'key = value' with a single-word key%s", k, NULL);
            break;
        }
        buf_puts(&key, k);
        buf_puts(&val, str_trim(eq + 1));
        keyline = lineno;
    }
    if (rc == 0 && key.len > 0)
        rc = cfg_assign(c, key.data, str_trim(val.data), keyline, err, errlen);
    buf_free(&key);
    buf_free(&val);
    fclose(fp);
    return rc;
}

static bool enum_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        size_t len = strcspn(p, "|");
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p += len;
        if (*p == '|')
            p++;
    }
    return false;
}

/* Convert raw strings into the typed fields. */
static int cfg_convert(struct config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const struct cfg_def *d = &cfg_defs[i];
        char *v = cfg_expand(c, c->raw[i]);
        void *field = (char *)c + d->offset;
        uint64_t num = 0;
        int bad = 0;
        switch (d->type) {
        case CFG_STR:
        case CFG_LIST:
            *(char **)field = v;
            v = NULL;
            break;
        case CFG_ENUM:
            bad = !enum_ok(d->choices, v);
            if (!bad) {
                *(char **)field = v;
                v = NULL;
            }
            break;
        case CFG_TIME: bad = str_to_seconds(v, &num) < 0; break;
        case CFG_SIZE: bad = str_to_bytes(v, &num) < 0; break;
        case CFG_INT: bad = str_to_u64(v, &num) < 0; break;
        case CFG_BOOL:
            if (strcmp(v, "yes") == 0 || strcmp(v, "no") == 0)
                *(bool *)field = strcmp(v, "yes") == 0;
            else
                bad = 1;
            break;
        }
        if (!bad && (d->type == CFG_TIME || d->type == CFG_SIZE || d->type == CFG_INT))
            *(uint64_t *)field = num;
        if (bad) {
            char hint[160];
            snprintf(hint, sizeof(hint), "%s%s%s", type_hint[d->type],
                     d->choices ? ": " : "", d->choices ? d->choices : "");
            char what[600];
            snprintf(what, sizeof(what), "bad value '%s' for %s; fix: use %s",
                     c->raw[i], d->name, hint);
            free(v);
            return cfg_error(err, errlen, c, c->lineno[i], "%s%s", what, NULL);
        }
        free(v);
    }
    return 0;
}

/* Load an optional table named by key `name` (empty path: none). */
static int load_table(struct config *c, const char *name, const char *path,
                      struct table **out, char *err, size_t errlen)
{
    char terr[512];
    if (path[0] == '\0')
        return 0;
    *out = table_load(path, terr, sizeof(terr));
    if (*out == NULL)
        return cfg_error(err, errlen, c, c->lineno[cfg_index(name)], "%s: %s",
                         name, terr);
    return 0;
}

/* Build the derived objects (network list, domain list, tables). */
static int cfg_derive(struct config *c, char *err, size_t errlen)
{
    const char *badword = NULL;
    int i = cfg_index("mynetworks");
    if (netlist_parse(&c->mynetworks_list, c->mynetworks, &badword) < 0)
        return cfg_error(err, errlen, c, c->lineno[i], "bad network '%s' in "
                         "mynetworks; fix: use address/prefix such as "
                         "192.0.2.0/24 or 2001:db8::/32%s", badword, NULL);
    char *copy = xstrdup(c->mydomains), *save = NULL;
    for (char *w = strtok_r(copy, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save)) {
        size_t cap = c->mydomains_n;
        c->mydomains_v = xgrow(c->mydomains_v, &cap, c->mydomains_n + 1, sizeof(char *));
        size_t n = strlen(w);
        if (n > 1 && w[n - 1] == '.')
            w[n - 1] = '\0';
        c->mydomains_v[c->mydomains_n++] = str_lower(xstrdup(w));
    }
    free(copy);
    if (c->local_recipients[0]) {
        char terr[512];
        c->local_recipients_table = table_load(c->local_recipients, terr, sizeof(terr));
        if (c->local_recipients_table == NULL) {
            i = cfg_index("local_recipients");
            return cfg_error(err, errlen, c, c->lineno[i], "local_recipients: %s%s",
                             terr, NULL);
        }
    }
    if (load_table(c, "transport_maps", c->transport_maps, &c->transport_table,
                   err, errlen) < 0 ||
        load_table(c, "tls_policy_maps", c->tls_policy_maps, &c->tls_policy_table,
                   err, errlen) < 0)
        return -1;
    if ((c->tls_cert_file[0] == '\0') != (c->tls_key_file[0] == '\0')) {
        i = cfg_index(c->tls_cert_file[0] ? "tls_cert_file" : "tls_key_file");
        return cfg_error(err, errlen, c, c->lineno[i], "tls_cert_file and "
                         "tls_key_file must be set together%s%s; fix: set both "
                         "or neither", "", NULL);
    }
    if (c->greylist_ipv4_prefix > 32 || c->greylist_ipv6_prefix > 128) {
        i = cfg_index(c->greylist_ipv4_prefix > 32 ? "greylist_ipv4_prefix"
                                                    : "greylist_ipv6_prefix");
        return cfg_error(err, errlen, c, c->lineno[i], "greylist prefix too long%s%s; "
                         "fix: use at most 32 (IPv4) or 128 (IPv6)", "", NULL);
    }
    if (c->greylist_timeout == 0 || c->greylist_delay > c->greylist_window) {
        i = cfg_index(c->greylist_timeout == 0 ? "greylist_timeout" : "greylist_delay");
        return cfg_error(err, errlen, c, c->lineno[i], "%s%s", c->greylist_timeout == 0 ?
                         "greylist_timeout is 0; fix: use a time such as 5s" :
                         "greylist_delay is longer than greylist_window; fix: shorten "
                         "the delay or lengthen the window", NULL);
    }
    if (c->smtpd_max_line_length < 78) {
        i = cfg_index("smtpd_max_line_length");
        return cfg_error(err, errlen, c, c->lineno[i], "smtpd_max_line_length "
                         "below 78%s%s; fix: use 998 (RFC 5322) or more", "", NULL);
    }
    return 0;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    struct config *c = xcalloc(1, sizeof(*c));
    c->raw = xcalloc(CFG_NKEYS, sizeof(char *));
    c->lineno = xcalloc(CFG_NKEYS, sizeof(unsigned));
    for (size_t i = 0; i < CFG_NKEYS; i++)
        c->raw[i] = cfg_default(&cfg_defs[i]);
    if (path)
        c->path = xstrdup(path);
    if ((path && cfg_parse_file(c, err, errlen) < 0) ||
        cfg_convert(c, err, errlen) < 0 || cfg_derive(c, err, errlen) < 0) {
        config_free(c);
        return NULL;
    }
    return c;
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const struct cfg_def *d = &cfg_defs[i];
        if (d->type == CFG_STR || d->type == CFG_LIST || d->type == CFG_ENUM)
            free(*(char **)((char *)c + d->offset));
        free(c->raw[i]);
    }
    for (size_t i = 0; i < c->mydomains_n; i++)
        free(c->mydomains_v[i]);
    free(c->mydomains_v);
    netlist_free(&c->mynetworks_list);
    table_free(c->local_recipients_table);
    table_free(c->transport_table);
    table_free(c->tls_policy_table);
    free(c->raw);
    free(c->lineno);
    free(c->path);
    free(c);
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

void config_print(const struct config *c, FILE *out, bool only_set, bool json)
{
    if (json)
        fputs("{", out);
    bool first = true;
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const struct cfg_def *d = &cfg_defs[i];
        bool set = c->lineno[i] > 0;
        if (only_set && !set)
            continue;
        if (json) {
            fprintf(out, "%s\n  ", first ? "" : ",");
            json_str(out, d->name);
            fputs(": {\"value\": ", out);
            json_str(out, c->raw[i]);
            fprintf(out, ", \"default\": %s", set ? "false" : "true");
            if (set)
                fprintf(out, ", \"line\": %u", c->lineno[i]);
            fputs("}", out);
        } else if (set) {
            fprintf(out, "%s = %s    # set at %s:%u (default: %s)\n", d->name,
                     c->raw[i], c->path, c->lineno[i],
                     d->def[0] ? d->def : "computed");
        } else {
            fprintf(out, "%s = %s\n", d->name, c->raw[i]);
        }
        first = false;
    }
    if (json)
        fputs("\n}\n", out);
}

bool config_is_local_domain(const struct config *c, const char *domain)
{
    for (size_t i = 0; i < c->mydomains_n; i++)
        if (strcmp(c->mydomains_v[i], domain) == 0)
            return true;
    return false;
}
