/*
 * explain.c - `sluice explain 'REPLY'`: what a remote SMTP reply means,
 * through the same classifier the delivery engine uses.
 */
#include "tools/tools.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/json.h"
#include "mail/classify.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int explain_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
        {"mx", required_argument, NULL, 'm'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cfgpath = NULL, *mx = NULL;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:jm:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cfgpath = optarg; break;
        case 'j': json = true; break;
        case 'm': mx = optarg; break;
        case 'h':
            printf("usage: sluice explain [-c FILE] [--mx HOST] [--json] 'REPLY TEXT'\n"
                   "  Classifies an SMTP reply (e.g. '451 4.7.500 Server busy') with the\n"
                   "  delivery engine's rules (reply_rules, else the built-in table) and\n"
                   "  says what it means and what to do.\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "sluice explain: give the reply text as an argument\n");
        return 2;
    }
    struct config *cfg = tools_config_load(cfgpath);
    if (cfg == NULL)
        return 2;
    char err[1024];
    if (cfg->reply_rules[0] && classify_load(cfg->reply_rules, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice: %s\n", err);
        config_free(cfg);
        return 2;
    }
    const char *text = argv[optind];
    char enh[16];
    int code = classify_parse_reply(text, enh, sizeof(enh));
    enum reply_class cls = classify_reply(code, enh[0] ? enh : NULL, text, mx);
    bool temp = classify_is_temporary(cls, code);
    if (json) {
        struct buf b;
        buf_init(&b, 0);
        buf_putc(&b, '{');
        json_key(&b, "reply", 1);
        json_str(&b, text);
        json_key(&b, "code", 0);
        buf_printf(&b, "%d", code);
        json_key(&b, "enhanced", 0);
        json_str(&b, enh);
        json_key(&b, "class", 0);
        json_str(&b, classify_name(cls));
        json_key(&b, "temporary", 0);
        buf_puts(&b, temp ? "true" : "false");
        json_key(&b, "explanation", 0);
        json_str(&b, classify_explain(cls));
        json_key(&b, "next_step", 0);
        json_str(&b, classify_next_step(cls));
        buf_puts(&b, "}\n");
        fwrite(b.data, 1, b.len, stdout);
        buf_free(&b);
    } else {
        printf("reply:       %s\n", text);
        printf("code:        %d%s%s\n", code, enh[0] ? " " : "", enh);
        printf("class:       %s (%s)\n", classify_name(cls), temp ? "temporary: sluice retries"
                                                                  : "permanent: returned to sender");
        printf("meaning:     %s\n", classify_explain(cls));
        printf("next step:   %s\n", classify_next_step(cls));
    }
    classify_free();
    config_free(cfg);
    return 0;
}

const char *tools_config_path(const char *given)
{
    if (given)
        return given;
    const char *env = getenv("SLUICE_CONFIG");
    if (env && *env)
        return env;
    if (access("/etc/sluice/sluice.conf", R_OK) == 0)
        return "/etc/sluice/sluice.conf";
    return NULL;
}

struct config *tools_config_load(const char *given)
{
    char err[1024];
    struct config *cfg = config_load(tools_config_path(given), err, sizeof(err));
    if (cfg == NULL)
        fprintf(stderr, "sluice: %s\n", err);
    return cfg;
}
