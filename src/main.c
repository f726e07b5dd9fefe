/*
 * main.c - the sluice binary: one verb per job (see docs/architecture.md).
 */
#include "lib/config.h"
#include "lib/strutil.h"
#include "smtpd/smtpd.h"
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
        "  report  [options] [LOGFILE...]   deliverability report from MTA logs\n"
        "  version                      print the version\n"
        "\n"
        "Without -c, sluice reads $SLUICE_CONFIG, else " DEFAULT_CONFIG " if it\n"
        "exists, else runs on built-in defaults. 'sluice VERB --help' for more.\n");
}

/* -c FILE, $SLUICE_CONFIG, the system file if present, or NULL. */
static const char *config_path(const char *given)
{
    if (given)
        return given;
    const char *env = getenv("SLUICE_CONFIG");
    if (env && *env)
        return env;
    if (access(DEFAULT_CONFIG, R_OK) == 0)
        return DEFAULT_CONFIG;
    return NULL;
}

static const struct option common_opts[] = {
    {"config", required_argument, NULL, 'c'},
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
    {"report", report_main},
    {"version", verb_version},
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
