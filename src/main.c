/*
 * main.c - the sluice binary: one verb per job (see docs/architecture.md).
 */
#include "greylist/greylist_cli.h"
#include "greylist/policy.h"
#include "lib/config.h"
#include "lib/strutil.h"
#include "smtpd/smtpd.h"
#include "tools/tools.h"
#include "tools/migrate.h"
#include "tools/report.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/sluice/sluice.conf"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: sluice VERB [options]\n"
        "\n"
        "verbs:\n"
        "  serve   [-c FILE] [-d]        run the MTA (SMTP listener and queue)\n"
        "  config  [-c FILE] [-n] [--json]  print the effective configuration\n"
        "  queue   [-c FILE] [--json] list|show|flush|hold|release|delete|bounce\n"
        "  explain [--json] 'REPLY'     what a remote SMTP reply means\n"
        "  policy  [-c FILE] [--listen ADDR]  greylisting for Postfix (policy protocol)\n"
        "  greylist [-c FILE] [--json] stats|list|allow|forget|expire\n"
        "                               the greylist store\n"
        "  migrate --host1 H --user1 U --passfile1 F --host2 H ...\n"
        "                               IMAP (or POP3) -> IMAP mailbox migration\n"
        "  report  [options] [LOGFILE...]   deliverability report from MTA logs\n"
        "  version                      print the version\n"
        "\n"
        "Without -c, sluice reads $SLUICE_CONFIG, else " DEFAULT_CONFIG " if it\n"
        "exists, else runs on built-in defaults. 'sluice VERB --help' for more.\n");
}

static const char *config_path(const char *given)
{
    return tools_config_path(given);
}

static const struct option common_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"listen", required_argument, NULL, 'l'},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int verb_serve(int argc, char **argv)
{
    const char *cfg = NULL;
    bool daemonize = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:dh", common_opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfg = optarg; break;
        case 'd': daemonize = true; break;
        case 'h':
            printf("usage: sluice serve [-c FILE] [-d]\n"
                   "  Runs the SMTP server in the foreground (-d: in the background,\n"
                   "  logging to syslog unless maillog_file is set).\n"
                   "  SIGHUP reloads the configuration and tables; SIGTERM finishes\n"
                   "  transactions in flight and exits 0.\n");
            return 0;
        default:
            fprintf(stderr, "sluice serve: unknown option; try 'sluice serve --help'\n");
            return 2;
        }
    }
    return smtpd_main(config_path(cfg), daemonize);
}

static int verb_config(int argc, char **argv)
{
    const char *cfgpath = NULL;
    bool only_set = false, json = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:nh", common_opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfgpath = optarg; break;
        case 'n': only_set = true; break;
        case 'j': json = true; break;
        case 'h':
            printf("usage: sluice config [-c FILE] [-n] [--json]\n"
                   "  Prints every key with its effective value; keys set in the\n"
                   "  file are marked with where they were set and the default.\n"
                   "  -n prints only the keys set in the file (like postconf -n).\n");
            return 0;
        default:
            fprintf(stderr, "sluice config: unknown option; try 'sluice config --help'\n");
            return 2;
        }
    }
    char err[1024];
    struct config *cfg = config_load(config_path(cfgpath), err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    config_print(cfg, stdout, only_set, json);
    config_free(cfg);
    return 0;
}

static int verb_policy(int argc, char **argv)
{
    const char *cfg = NULL, *listen = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:h", common_opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfg = optarg; break;
        case 'l': listen = optarg; break;
        case 'h':
            printf("usage: sluice policy [-c FILE] [--listen 127.0.0.1:10023 | unix:PATH]\n"
                   "  Serves greylisting to Postfix through the policy delegation\n"
                   "  protocol (a drop-in for postgrey): in main.cf,\n"
                   "    smtpd_recipient_restrictions = ..., reject_unauth_destination,\n"
                   "        check_policy_service inet:127.0.0.1:10023\n"
                   "  Default address: policy_listen. SIGHUP reloads; SIGTERM stops.\n");
            return 0;
        default:
            fprintf(stderr, "sluice policy: unknown option; try 'sluice policy --help'\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice policy: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return policy_main(config_path(cfg), listen);
}

static int verb_greylist(int argc, char **argv)
{
    const char *cfg = NULL;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "+c:h", common_opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfg = optarg; break;
        case 'j': json = true; break;
        case 'h':
            printf("usage: sluice greylist [-c FILE] [--json] COMMAND\n"
                   "  stats                          counts, waits, client IPs per triplet\n"
                   "  list                           every triplet and auto-allow record\n"
                   "  allow POOL SENDER_DOMAIN       auto-allow a sender domain from a pool\n"
                   "                                 (POOL as in the log: spf:example.com)\n"
                   "  forget POOL [SENDER [RCPT]]    delete records of a pool\n"
                   "  expire                         delete expired records now (LMDB)\n");
            return 0;
        default:
            fprintf(stderr, "sluice greylist: unknown option; try 'sluice greylist --help'\n");
            return 2;
        }
    }
    /* options may also follow the command: "stats --json" */
    char *rest[8];
    int nrest = 0;
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (nrest < 8)
            rest[nrest++] = argv[i];
    }
    if (nrest == 0) {
        fprintf(stderr, "sluice greylist: missing command; try 'sluice greylist --help'\n");
        return 2;
    }
    return greylist_cli(config_path(cfg), rest[0], rest + 1, nrest - 1, json);
}

struct verb {
    const char *name;
    int (*run)(int argc, char **argv);
};

static int verb_version(int argc, char **argv)
{
    printf("sluice %s\n", SLUICE_VERSION);
    return 0;
}

static const struct verb verbs[] = {
    {"serve", verb_serve},
    {"config", verb_config},
    {"policy", verb_policy},
    {"greylist", verb_greylist},
    {"migrate", migrate_main},
    {"report", report_main},
    {"version", verb_version},
    {"queue", queue_cli_main},
    {"explain", explain_main},
};

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown verb '%s'; try 'sluice --help'\n", argv[1]);
    return 2;
}
