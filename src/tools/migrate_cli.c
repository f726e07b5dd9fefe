/*
 * migrate_cli.c - the command line of `sluice migrate`: options (named
 * after imapsync's where the concept is the same), secrets from files or
 * commands, --accounts files, the progress loop, the closing report and
 * the exit code. Everything else is in the other migrate_*.c files.
 */
#include "tools/migrate.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIG_ACCOUNTS_MAX 10000

enum {
    O_HOST = 1000, O_PORT = 1002, O_USER = 1004, O_PASSFILE = 1006, O_PASSWORD = 1008,
    O_SSL = 1010, O_TLS = 1012, O_AUTHMECH = 1014, O_OAUTHFILE = 1016, O_OAUTHCMD = 1018,
    O_CAFILE = 1020, O_INSECURE = 1022,
    O_POP3 = 1100, O_DRY, O_DELETE2, O_MAXSIZE, O_JOBS, O_MPS, O_BPS, O_F1F2, O_INCLUDE,
    O_EXCLUDE, O_SYNCDUP, O_STATEFILE, O_JSON, O_NOPROGRESS, O_NOVERIFY, O_TIMEOUT,
    O_ACCOUNTS, O_PARALLEL, O_TRACE, O_STATEDIR, O_MAXLITERAL, O_HELP, O_PROGRESS, O_NOFLAGS,
};

#define SIDE_OPTS(n, base) \
    {"host" n, required_argument, NULL, O_HOST + (base)}, \
    {"port" n, required_argument, NULL, O_PORT + (base)}, \
    {"user" n, required_argument, NULL, O_USER + (base)}, \
    {"passfile" n, required_argument, NULL, O_PASSFILE + (base)}, \
    {"password" n, required_argument, NULL, O_PASSWORD + (base)}, \
    {"ssl" n, no_argument, NULL, O_SSL + (base)}, \
    {"tls" n, no_argument, NULL, O_TLS + (base)}, \
    {"authmech" n, required_argument, NULL, O_AUTHMECH + (base)}, \
    {"oauthaccesstoken" n, required_argument, NULL, O_OAUTHFILE + (base)}, \
    {"oauthcommand" n, required_argument, NULL, O_OAUTHCMD + (base)}, \
    {"cafile" n, required_argument, NULL, O_CAFILE + (base)}, \
    {"insecure" n, no_argument, NULL, O_INSECURE + (base)}

static const struct option long_opts[] = {
    SIDE_OPTS("1", 0), SIDE_OPTS("2", 1),
    {"pop3", no_argument, NULL, O_POP3},
    {"dry", no_argument, NULL, O_DRY},
    {"delete2", no_argument, NULL, O_DELETE2},
    {"maxsize", required_argument, NULL, O_MAXSIZE},
    {"jobs", required_argument, NULL, O_JOBS},
    {"maxmessagespersecond", required_argument, NULL, O_MPS},
    {"maxbytespersecond", required_argument, NULL, O_BPS},
    {"f1f2", required_argument, NULL, O_F1F2},
    {"include", required_argument, NULL, O_INCLUDE},
    {"exclude", required_argument, NULL, O_EXCLUDE},
    {"syncduplicates", no_argument, NULL, O_SYNCDUP},
    {"statefile", required_argument, NULL, O_STATEFILE},
    {"statedir", required_argument, NULL, O_STATEDIR},
    {"json", no_argument, NULL, O_JSON},
    {"noprogress", no_argument, NULL, O_NOPROGRESS},
    {"progress", no_argument, NULL, O_PROGRESS},
    {"noverify", no_argument, NULL, O_NOVERIFY},
    {"noflags", no_argument, NULL, O_NOFLAGS},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"accounts", required_argument, NULL, O_ACCOUNTS},
    {"parallel", required_argument, NULL, O_PARALLEL},
    {"trace", no_argument, NULL, O_TRACE},
    {"maxliteral", required_argument, NULL, O_MAXLITERAL},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
"usage: sluice migrate --host1 H --user1 U --passfile1 F --host2 H --user2 U --passfile2 F\n"
"                      [options]\n"
"  Copies mailboxes from host1 (IMAP, or POP3 with --pop3) to host2 (IMAP):\n"
"  folders, messages, flags, keywords, INTERNALDATE. Reruns copy only what is\n"
"  new (a state file plus Message-ID/size/Date identity), and the run ends with\n"
"  a verification of the destination. See docs/migrate.md.\n"
"\n"
"  each side (1 = source, 2 = destination):\n"
"    --hostN H --portN N      server (ports: 143/993 IMAP, 110/995 POP3)\n"
"    --sslN | --tlsN          implicit TLS | STARTTLS (default: plaintext)\n"
"    --userN U --passfileN F  login; the password is the file's first line\n"
"    --passwordN P            password on the command line (visible in ps; warns)\n"
"    --authmechN M            LOGIN, PLAIN or XOAUTH2 (default: PLAIN if offered)\n"
"    --oauthaccesstokenN F    XOAUTH2 with the token in file F\n"
"    --oauthcommandN CMD      XOAUTH2 with the token printed by CMD\n"
"    --cafileN F | --insecureN  trust F's CAs | skip certificate checks\n"
"  what to sync:\n"
"    --pop3                   host1 is a POP3 server; all goes to host2's INBOX\n"
"    --f1f2 'A=B'             map source folder A to destination folder B\n"
"    --include RE --exclude RE  select source folders (extended regexes)\n"
"    --maxsize N              skip messages larger than N bytes (k/M/G allowed)\n"
"    --syncduplicates         copy duplicates on host1 too (default: once)\n"
"    --delete2                delete host2 messages that are not on host1\n"
"    --noflags                do not resync flags of messages already copied\n"
"  how:\n"
"    --dry                    say what would happen; change nothing\n"
"    --jobs N                 sync N folders in parallel (default 4)\n"
"    --maxmessagespersecond R, --maxbytespersecond R   throttles\n"
"    --statefile F            state file (default ~/.sluice/migrate/...)\n"
"    --statedir D             directory for per-account state files\n"
"    --timeout S              connect and command timeout (default 120)\n"
"    --maxliteral N           largest message accepted (default 256M)\n"
"    --accounts FILE          one account pair per line (options as above);\n"
"                             --parallel N of them at once (default 2)\n"
"  output:\n"
"    --json                   the summary as one JSON object\n"
"    --noprogress, --progress  progress bar off / on (default: on a terminal)\n"
"    --noverify               skip the closing verification\n"
"    --trace                  log the protocol dialogue (never passwords)\n"
"\n"
"exit codes: 0 done and verified, 2 usage, 3 connection, 4 TLS,\n"
"  5 authentication, 6 partial (some messages or folders failed or missing),\n"
"  7 state file, 8 server protocol violation\n");
}

/* ---------------------------------------------------------------------- */
/* secrets                                                                 */

static char *first_line(FILE *fp)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, fp);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

static char *secret_from_file(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    char *s = fp ? first_line(fp) : NULL;
    if (fp)
        fclose(fp);
    if (s == NULL)
        snprintf(err, errlen, "cannot read a secret from %s", path);
    return s;
}

static char *secret_from_command(const char *cmd, char *err, size_t errlen)
{
    FILE *fp = popen(cmd, "r");
    char *s = fp ? first_line(fp) : NULL;
    int rc = fp ? pclose(fp) : -1;
    if (s == NULL || rc != 0) {
        snprintf(err, errlen, "the token command failed (exit %d)", rc);
        free(s);
        return NULL;
    }
    return s;
}

/* ---------------------------------------------------------------------- */
/* options                                                                 */

static void opts_defaults(struct mig_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->jobs = 4;
    o->verify = true;
    o->progress = isatty(2);
    o->timeout = 120;
    o->max_message = 256u * 1024 * 1024;
    o->e[0].label = "host1";
    o->e[1].label = "host2";
    o->e[0].verify = o->e[1].verify = true;
}

static int add_regex(struct mig_opts *o, bool inc, const char *re, char *err,
                     size_t errlen)
{
    regex_t **v = inc ? &o->include : &o->exclude;
    char ***pat = inc ? &o->include_pat : &o->exclude_pat;
    size_t *n = inc ? &o->ninclude : &o->nexclude;
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    *pat = xrealloc(*pat, (*n + 1) * sizeof(**pat));
    if (regcomp(&(*v)[*n], re, REG_EXTENDED | REG_NOSUB) != 0) {
        snprintf(err, errlen, "bad regex '%s'", re);
        return -1;
    }
    (*pat)[(*n)++] = xstrdup(re);
    return 0;
}

static int side_opt(struct mig_opts *o, int c, const char *arg, char *err, size_t errlen)
{
    int side = (c - O_HOST) % 2, what = (c - O_HOST) - side;
    struct mig_endpoint *e = &o->e[side];
    uint64_t v;
    char *tok;
    switch (what + O_HOST) {
    case O_HOST: free(e->host); e->host = xstrdup(arg); return 0;
    case O_PORT:
        if (str_to_u64(arg, &v) < 0 || v == 0 || v > 65535) {
            snprintf(err, errlen, "bad port '%s'", arg);
            return -1;
        }
        e->port = (uint16_t)v;
        return 0;
    case O_USER: free(e->user); e->user = xstrdup(arg); return 0;
    case O_PASSWORD:
        fprintf(stderr, "sluice migrate: warning: --password%d puts the password on the "
                "command line, where other users can see it; prefer --passfile%d\n",
                side + 1, side + 1);
        free(e->password);
        e->password = xstrdup(arg);
        return 0;
    case O_PASSFILE:
    case O_OAUTHFILE:
    case O_OAUTHCMD:
        tok = what + O_HOST == O_OAUTHCMD ? secret_from_command(arg, err, errlen)
                                          : secret_from_file(arg, err, errlen);
        if (tok == NULL)
            return -1;
        free(e->password);
        e->password = tok;
        if (what + O_HOST != O_PASSFILE)
            e->auth = IMAPC_AUTH_XOAUTH2;
        return 0;
    case O_SSL: e->security = LC_TLS_IMPLICIT; return 0;
    case O_TLS: e->security = LC_TLS_STARTTLS; return 0;
    case O_CAFILE: free(e->cafile); e->cafile = xstrdup(arg); return 0;
    case O_INSECURE: e->verify = false; return 0;
    case O_AUTHMECH:
        if (str_iequal(arg, "LOGIN"))
            e->auth = IMAPC_AUTH_LOGIN;
        else if (str_iequal(arg, "PLAIN"))
            e->auth = IMAPC_AUTH_PLAIN;
        else if (str_iequal(arg, "XOAUTH2"))
            e->auth = IMAPC_AUTH_XOAUTH2;
        else {
            snprintf(err, errlen, "unknown --authmech%d '%s' (LOGIN, PLAIN, XOAUTH2)",
                     side + 1, arg);
            return -1;
        }
        return 0;
    }
    return -1;
}

static int num_opt(const char *arg, uint64_t *v, bool bytes, char *err, size_t errlen)
{
    if ((bytes ? str_to_bytes(arg, v) : str_to_u64(arg, v)) < 0) {
        snprintf(err, errlen, "bad number '%s'", arg);
        return -1;
    }
    return 0;
}

static int general_opt(struct mig_opts *o, int c, const char *arg, char **accounts,
                       unsigned *parallel, char *err, size_t errlen)
{
    uint64_t v = 0;
    switch (c) {
    case O_POP3: o->e[0].pop3 = true; return 0;
    case O_DRY: o->dry = true; return 0;
    case O_DELETE2: o->delete2 = true; return 0;
    case O_SYNCDUP: o->syncduplicates = true; return 0;
    case O_JSON: o->json = true; o->progress = false; return 0;
    case O_NOPROGRESS: o->progress = false; return 0;
    case O_PROGRESS: o->progress = true; return 0;
    case O_NOVERIFY: o->verify = false; return 0;
    case O_NOFLAGS: o->noflags = true; return 0;
    case O_TRACE: o->trace = "trace"; return 0;
    case O_MAXSIZE: return num_opt(arg, &o->maxsize, true, err, errlen);
    case O_MAXLITERAL: return num_opt(arg, &o->max_message, true, err, errlen);
    case O_JOBS:
    case O_TIMEOUT:
    case O_PARALLEL:
        if (num_opt(arg, &v, false, err, errlen) < 0 || v == 0 || v > 1000) {
            snprintf(err, errlen, "bad count '%s' (1..1000)", arg);
            return -1;
        }
        if (c == O_JOBS)
            o->jobs = (unsigned)v;
        else if (c == O_TIMEOUT)
            o->timeout = (unsigned)v;
        else
            *parallel = (unsigned)v;
        return 0;
    case O_MPS:
    case O_BPS: {
        char *end;
        double d = strtod(arg, &end);
        if (*end || d <= 0) {
            snprintf(err, errlen, "bad rate '%s'", arg);
            return -1;
        }
        *(c == O_MPS ? &o->max_msgs_per_sec : &o->max_bytes_per_sec) = d;
        return 0;
    }
    case O_F1F2: {
        const char *eq = strchr(arg, '=');
        if (eq == NULL || eq == arg || !eq[1]) {
            snprintf(err, errlen, "bad --f1f2 '%s'; use 'SOURCE=DESTINATION'", arg);
            return -1;
        }
        o->f1f2 = xrealloc(o->f1f2, (o->nf1f2 + 1) * sizeof(*o->f1f2));
        o->f1f2[o->nf1f2].from = xstrndup(arg, (size_t)(eq - arg));
        o->f1f2[o->nf1f2++].to = xstrdup(eq + 1);
        return 0;
    }
    case O_INCLUDE: return add_regex(o, true, arg, err, errlen);
    case O_EXCLUDE: return add_regex(o, false, arg, err, errlen);
    case O_STATEFILE: free(o->statefile); o->statefile = xstrdup(arg); return 0;
    case O_STATEDIR: free(o->statedir); o->statedir = xstrdup(arg); return 0;
    case O_ACCOUNTS:
        if (accounts == NULL) {
            snprintf(err, errlen, "--accounts inside an accounts file");
            return -1;
        }
        free(*accounts);
        *accounts = xstrdup(arg);
        return 0;
    default:
        snprintf(err, errlen, "unknown option; try 'sluice migrate --help'");
        return -1;
    }
}

/* Parse argv into o (on top of what o holds). 1 = --help shown. */
static int parse_opts(int argc, char **argv, struct mig_opts *o, char **accounts,
                      unsigned *parallel, char *err, size_t errlen)
{
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", long_opts, NULL)) != -1) {
        if (c == O_HELP || c == 'h')
            return 1;
        int rc = c >= O_HOST && c < O_POP3 ? side_opt(o, c, optarg, err, errlen)
                                           : general_opt(o, c, optarg, accounts, parallel,
                                                         err, errlen);
        if (rc < 0) {
            if (c == '?')
                snprintf(err, errlen, "unknown option '%s'; try 'sluice migrate --help'",
                         argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    return 0;
}

static int finish_side(struct mig_endpoint *e, int n, char *err, size_t errlen)
{
    if (e->host == NULL || e->user == NULL) {
        snprintf(err, errlen, "--host%d and --user%d are required", n, n);
        return -1;
    }
    if (e->password == NULL) {
        snprintf(err, errlen, "no password for %s; fix: --passfile%d FILE (or "
                 "--oauthaccesstoken%d FILE)", e->user, n, n);
        return -1;
    }
    if (e->port == 0)
        e->port = e->pop3 ? (e->security == LC_TLS_IMPLICIT ? 995 : 110)
                          : (e->security == LC_TLS_IMPLICIT ? 993 : 143);
    if (e->security != LC_TLS_NONE) {
        e->ctx = lc_tls_client_ctx(e->cafile, err, errlen);
        if (e->ctx == NULL)
            return -1;
    }
    return 0;
}

static void opts_free(struct mig_opts *o)
{
    for (int i = 0; i < 2; i++) {
        struct mig_endpoint *e = &o->e[i];
        free(e->host);
        free(e->user);
        free(e->cafile);
        if (e->password)
            memset(e->password, 0, strlen(e->password));
        free(e->password);
        if (e->ctx)
            SSL_CTX_free(e->ctx);
    }
    for (size_t i = 0; i < o->nf1f2; i++) {
        free(o->f1f2[i].from);
        free(o->f1f2[i].to);
    }
    free(o->f1f2);
    for (size_t i = 0; i < o->ninclude; i++) {
        regfree(&o->include[i]);
        free(o->include_pat[i]);
    }
    for (size_t i = 0; i < o->nexclude; i++) {
        regfree(&o->exclude[i]);
        free(o->exclude_pat[i]);
    }
    free(o->include);
    free(o->exclude);
    free(o->include_pat);
    free(o->exclude_pat);
    free(o->statefile);
    free(o->statedir);
}

/* Deep copy of the shared options for one accounts-file line. */
static void opts_copy(struct mig_opts *dst, const struct mig_opts *src)
{
    *dst = *src;
    for (int i = 0; i < 2; i++) {
        struct mig_endpoint *e = &dst->e[i];
        e->host = e->host ? xstrdup(e->host) : NULL;
        e->user = e->user ? xstrdup(e->user) : NULL;
        e->cafile = e->cafile ? xstrdup(e->cafile) : NULL;
        e->password = e->password ? xstrdup(e->password) : NULL;
        e->ctx = NULL;
    }
    dst->f1f2 = NULL;
    dst->nf1f2 = 0;
    dst->include = dst->exclude = NULL;
    dst->include_pat = dst->exclude_pat = NULL;
    dst->ninclude = dst->nexclude = 0;
    dst->statefile = src->statefile ? xstrdup(src->statefile) : NULL;
    dst->statedir = src->statedir ? xstrdup(src->statedir) : NULL;
    char err[64];
    for (size_t i = 0; i < src->ninclude; i++)
        add_regex(dst, true, src->include_pat[i], err, sizeof(err));
    for (size_t i = 0; i < src->nexclude; i++)
        add_regex(dst, false, src->exclude_pat[i], err, sizeof(err));
    for (size_t i = 0; i < src->nf1f2; i++) {
        dst->f1f2 = xrealloc(dst->f1f2, (dst->nf1f2 + 1) * sizeof(*dst->f1f2));
        dst->f1f2[dst->nf1f2].from = xstrdup(src->f1f2[i].from);
        dst->f1f2[dst->nf1f2++].to = xstrdup(src->f1f2[i].to);
    }
}

/* ---------------------------------------------------------------------- */
/* running                                                                 */

struct acct {
    struct mig_opts o;
    int code;
    char label[600];
};

struct acct_pool {
    struct acct *v;
    size_t n, next;
    struct mig_tally *t;
    pthread_mutex_t lock;
    pthread_cond_t done;
    int running;
};

static void *acct_worker(void *arg)
{
    struct acct_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->next < p->n ? p->next++ : SIZE_MAX;
        pthread_mutex_unlock(&p->lock);
        if (i == SIZE_MAX)
            break;
        p->v[i].code = mig_account(&p->v[i].o, p->t);
    }
    pthread_mutex_lock(&p->lock);
    p->running--;
    pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void run_pool(struct acct_pool *p, unsigned parallel, bool progress)
{
    if (parallel > p->n)
        parallel = (unsigned)p->n;
    pthread_t *th = xcalloc(parallel, sizeof(*th));
    p->running = (int)parallel;
    for (unsigned i = 0; i < parallel; i++)
        pthread_create(&th[i], NULL, acct_worker, p);
    pthread_mutex_lock(&p->lock);
    while (p->running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->done, &p->lock, &ts);
        if (progress && p->running > 0)
            mig_progress(p->t, stderr, false);
    }
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < parallel; i++)
        pthread_join(th[i], NULL);
    if (progress)
        mig_progress(p->t, stderr, true);
    free(th);
}

static int load_accounts(const char *path, const struct mig_opts *base, struct acct **v,
                         size_t *n, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(err, errlen, "cannot read %s", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, vcap = 0, lineno = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, fp) > 0 && *n < MIG_ACCOUNTS_MAX) {
        lineno++;
        char *s = str_trim(line), *save = NULL, *argv[64];
        int argc = 1;
        if (*s == '\0' || *s == '#')
            continue;
        argv[0] = "migrate";
        for (char *w = strtok_r(s, " \t", &save); w && argc < 63; w = strtok_r(NULL, " \t", &save))
            argv[argc++] = w;
        argv[argc] = NULL;
        *v = xgrow(*v, &vcap, *n + 1, sizeof(**v));
        struct acct *a = &(*v)[*n];
        memset(a, 0, sizeof(*a));
        opts_copy(&a->o, base);
        unsigned dummy;
        char e[400];
        (*n)++;
        if (parse_opts(argc, argv, &a->o, NULL, &dummy, e, sizeof(e)) != 0 ||
            finish_side(&a->o.e[0], 1, e, sizeof(e)) < 0 ||
            finish_side(&a->o.e[1], 2, e, sizeof(e)) < 0) {
            snprintf(err, errlen, "%s:%zu: %s", path, lineno, e);
            rc = -1;
        }
        snprintf(a->label, sizeof(a->label), "%s@%s -> %s@%s", a->o.e[0].user ?
                 a->o.e[0].user : "?", a->o.e[0].host ? a->o.e[0].host : "?",
                 a->o.e[1].user ? a->o.e[1].user : "?",
                 a->o.e[1].host ? a->o.e[1].host : "?");
    }
    free(line);
    fclose(fp);
    return rc;
}

static int report(struct mig_tally *t, const struct mig_opts *o, struct acct *v, size_t n)
{
    int code = MIG_EXIT_OK;
    for (size_t i = 0; i < n; i++)
        code = mig_exit_worst(code, v[i].code);
    t->worst = code;
    if (o->json) {
        mig_report_json(t, o, stdout);
    } else {
        mig_report_text(t, o, stdout);
        if (n > 1)
            for (size_t i = 0; i < n; i++)
                printf("account %s: exit %d\n", v[i].label, v[i].code);
    }
    fflush(stdout);
    return code;
}

int migrate_main(int argc, char **argv)
{
    struct mig_opts o;
    char err[1200], *accounts = NULL;
    unsigned parallel = 2;
    opts_defaults(&o);
    log_set_service("migrate");
    int rc = parse_opts(argc, argv, &o, &accounts, &parallel, err, sizeof(err));
    if (rc == 1) {
        usage(stdout);
        opts_free(&o);
        return 0;
    }
    struct acct *v = NULL;
    size_t n = 0;
    if (rc == 0 && accounts && o.statefile) {
        snprintf(err, sizeof(err), "--statefile names one account's state; with --accounts "
                 "use --statedir DIR (or --statefile on each line)");
        rc = -1;
    }
    if (rc == 0 && accounts)
        rc = load_accounts(accounts, &o, &v, &n, err, sizeof(err));
    if (rc == 0 && !accounts) {
        v = xcalloc(1, sizeof(*v));
        n = 1;
        opts_copy(&v[0].o, &o);
        rc = finish_side(&v[0].o.e[0], 1, err, sizeof(err)) < 0 ||
             finish_side(&v[0].o.e[1], 2, err, sizeof(err)) < 0 ? -1 : 0;
    }
    int code = MIG_EXIT_USAGE;
    if (rc != 0) {
        fprintf(stderr, "sluice migrate: %s\n", err);
    } else {
        struct mig_tally t;
        mig_tally_init(&t);
        struct acct_pool pool = {.v = v, .n = n, .t = &t};
        pthread_mutex_init(&pool.lock, NULL);
        pthread_cond_init(&pool.done, NULL);
        run_pool(&pool, parallel, o.progress);
        code = report(&t, &o, v, n);
        pthread_cond_destroy(&pool.done);
        pthread_mutex_destroy(&pool.lock);
        mig_tally_free(&t);
    }
    for (size_t i = 0; i < n; i++)
        opts_free(&v[i].o);
    free(v);
    free(accounts);
    opts_free(&o);
    return code;
}
