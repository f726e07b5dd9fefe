/*
 * queue_cli.c - `sluice queue`: list and change the queue, through the
 * control socket of a running sluice, or directly on the files when none
 * runs (so the operator's tool works in both cases).
 */
#include "tools/tools.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/strutil.h"
#include "queue/journal.h"
#include "queue/queue_view.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
        "usage: sluice queue [-c FILE] [--json] COMMAND [ARG]\n"
        "  list [DOMAIN]   queued messages (like mailq); --json: an array of\n"
        "                  {id, arrival, sender, size, held, recipients: [{address,\n"
        "                  status, attempts, next_attempt, last_reply, class}]}\n"
        "  show ID         one message\n"
        "  flush [DOMAIN]  try deferred mail now\n"
        "  hold ID         keep a message from delivery\n"
        "  release ID      undo hold\n"
        "  delete ID       remove a message without notice\n"
        "  bounce ID       return a message to its sender with a notice\n"
        "Works while sluice serve runs (control socket) and when it does not.\n"
        "Exit: 0 ok, 1 no such message, 2 usage or error.\n");
}

/* Ask the running server. Returns -1 when no server answers. */
static int ask_server(const char *spool_dir, const char *cmd, const char *arg, bool json,
                      struct buf *out)
{
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof(un.sun_path), "%s/control", spool_dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[600];
    int n = snprintf(req, sizeof(req), "%s%s%s%s%s\n", cmd, (json || arg) ? " " : "",
                     json ? "json" : "", (json && arg) ? " " : "", arg ? arg : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    char chunk[8192];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(out, chunk, (size_t)r);
    close(fd);
    uint64_t rc = 2;
    if (out->len < 5 || strncmp(out->data, "rc ", 3) != 0)
        return 2;
    char *nl = strchr(out->data, '\n');
    if (nl) {
        *nl = '\0';
        str_to_u64(out->data + 3, &rc);
        buf_consume(out, (size_t)(nl - out->data) + 1);
    }
    return (int)rc;
}

int queue_cli_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *cfgpath = NULL;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfgpath = optarg; break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    const char *arg = optind + 1 < argc ? argv[optind + 1] : NULL;
    static const char *const cmds[] = {"list", "show", "flush", "hold", "release",
                                       "delete", "bounce"};
    bool known = false;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        known |= strcmp(cmd, cmds[i]) == 0;
    if (!known) {
        fprintf(stderr, "sluice queue: unknown command '%s'; try 'sluice queue --help'\n", cmd);
        return 2;
    }
    struct config *cfg = tools_config_load(cfgpath);
    if (cfg == NULL)
        return 2;
    struct buf out;
    buf_init(&out, 0);
    int rc = ask_server(cfg->spool_dir, cmd, arg, json, &out);
    if (rc < 0) {
        /* no server: bring back what a crash left only in the journal
         * first, so the queue shown (or changed) is the real one */
        struct journal_replay_stats st;
        char err[600];
        bool replayed = journal_replay(cfg->spool_dir, &st, err, sizeof(err)) == 0;
        bool changes = strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0;
        if (!replayed)
            fprintf(stderr, "sluice queue: %s: %s; fix: start sluice serve on this spool "
                    "once, it replays the journal\n", changes ? "error" : "warning", err);
        buf_reset(&out);
        /* a change before the replay could be undone by it (a deleted
         * message written back): refuse */
        rc = !replayed && changes ? 1 : queue_offline(cfg->spool_dir, cmd, arg, json, &out);
    }
    fwrite(out.data ? out.data : "", 1, out.len, rc == 0 ? stdout : stderr);
    buf_free(&out);
    config_free(cfg);
    return rc;
}
