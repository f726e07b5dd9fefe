/*
 * migrate_run.c - one account pair of `sluice migrate`: open the state
 * file, plan the folders, and sync them with --jobs worker threads, each
 * with its own event loop and its own pair of connections.
 */
#include "tools/migrate.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

struct workq {
    struct mig_run *run;
    struct mig_plan *plan;
    pthread_mutex_t lock;
    size_t next;
};

struct imapc *mig_connect(struct mig_run *run, int side, struct event_base *base)
{
    const struct mig_endpoint *e = &run->o->e[side];
    char trace[64];
    snprintf(trace, sizeof(trace), "%s", e->label);
    struct imapc_opts io = {
        .host = e->host, .port = e->port, .security = e->security, .tls_ctx = e->ctx,
        .tls_verify = e->verify, .user = e->user, .password = e->password,
        .auth = e->auth, .connect_timeout = run->o->timeout, .cmd_timeout = run->o->timeout,
        .max_message = run->o->max_message, .trace = run->o->trace ? trace : NULL,
        .label = e->label,
    };
    struct imapc *c = imapc_new(base, &io);
    if (imapc_open(c) == 0)
        return c;
    int code = mig_exit_for_imapc(imapc_errclass(c));
    mig_fail(run->t, code, "%s: %s", run->account, imapc_error(c));
    run->code = mig_exit_worst(run->code, code);
    imapc_free(c);
    return NULL;
}

static void close_pair(struct imapc **c1, struct imapc **c2)
{
    for (struct imapc **c = c1; c; c = c == c1 ? c2 : NULL) {
        if (*c) {
            imapc_logout(*c);
            imapc_free(*c);
        }
        *c = NULL;
    }
}

static bool open_pair(struct mig_run *run, struct event_base *base, struct imapc **c1,
                      struct imapc **c2)
{
    *c1 = mig_connect(run, 0, base);
    *c2 = *c1 ? mig_connect(run, 1, base) : NULL;
    if (*c2 == NULL)
        close_pair(c1, c2);
    return *c2 != NULL;
}

static void *worker(void *arg)
{
    struct workq *q = arg;
    struct event_base *base = event_base_new();
    struct imapc *c1 = NULL, *c2 = NULL;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        size_t i = q->next < q->plan->n ? q->next++ : SIZE_MAX;
        pthread_mutex_unlock(&q->lock);
        if (i == SIZE_MAX)
            break;
        if (c1 == NULL && !open_pair(q->run, base, &c1, &c2)) {
            q->run->t->folders_failed++;
            continue;
        }
        mig_folder_sync(q->run, c1, c2, &q->plan->v[i]);
        if (imapc_failed(c1) || imapc_failed(c2))
            close_pair(&c1, &c2);     /* a fresh pair for the next folder */
    }
    close_pair(&c1, &c2);
    event_base_free(base);
    return NULL;
}

static int run_folders(struct mig_run *run)
{
    struct event_base *base = event_base_new();
    struct imapc *c1, *c2;
    struct mig_plan plan = {0};
    if (!open_pair(run, base, &c1, &c2)) {
        event_base_free(base);
        return -1;
    }
    int rc = mig_plan_build(c1, c2, run->o, &plan);
    if (rc < 0)
        mig_fail(run->t, MIG_EXIT_PARTIAL, "%s: cannot list folders: %s", run->account,
                 imapc_failed(c1) ? imapc_error(c1) : imapc_error(c2));
    close_pair(&c1, &c2);
    event_base_free(base);
    if (rc < 0)
        return -1;
    run->t->folders_total += plan.n;
    run->t->msgs_planned += plan.messages;
    struct workq q = {.run = run, .plan = &plan};
    pthread_mutex_init(&q.lock, NULL);
    unsigned jobs = run->o->jobs ? run->o->jobs : 1;
    if (jobs > plan.n)
        jobs = plan.n ? (unsigned)plan.n : 1;
    pthread_t *th = xcalloc(jobs, sizeof(*th));
    for (unsigned i = 0; i < jobs; i++)
        pthread_create(&th[i], NULL, worker, &q);
    for (unsigned i = 0; i < jobs; i++)
        pthread_join(th[i], NULL);
    free(th);
    pthread_mutex_destroy(&q.lock);
    mig_plan_free(&plan);
    return 0;
}

static void default_state_path(const struct mig_opts *o, char *dst, size_t len)
{
    const char *home = getenv("HOME");
    char name[600];
    snprintf(name, sizeof(name), "%s@%s_%u--%s@%s_%u.state", o->e[0].user, o->e[0].host,
             o->e[0].port, o->e[1].user, o->e[1].host, o->e[1].port);
    for (char *p = name; *p; p++)
        if (*p == '/' || *p == ' ')
            *p = '_';
    if (o->statedir)
        snprintf(dst, len, "%s/%s", o->statedir, name);
    else
        snprintf(dst, len, "%s/.sluice/migrate/%s", home && *home ? home : ".", name);
}

int mig_account(const struct mig_opts *o, struct mig_tally *t)
{
    struct mig_run run = {.o = o, .t = t};
    struct mig_throttle th = {.msgs_rate = o->max_msgs_per_sec,
                              .bytes_rate = o->max_bytes_per_sec, .start = mig_now()};
    pthread_mutex_init(&th.lock, NULL);
    run.th = &th;
    snprintf(run.account, sizeof(run.account), "%s@%s -> %s@%s", o->e[0].user, o->e[0].host,
             o->e[1].user, o->e[1].host);
    char path[1200], err[1400];
    if (o->statefile)
        str_copy(path, o->statefile, sizeof(path));
    else
        default_state_path(o, path, sizeof(path));
    uint64_t failed0 = t->failed + t->folders_failed + t->missing;
    int code = MIG_EXIT_OK;
    run.state = mig_state_open(path, o->dry, err, sizeof(err));
    if (run.state == NULL) {
        mig_fail(t, MIG_EXIT_STATE, "%s: %s", run.account, err);
        code = MIG_EXIT_STATE;
    } else {
        int rc = 0;
        if (o->e[0].pop3) {
            struct event_base *base = event_base_new();
            rc = mig_pop3(&run, base);
            event_base_free(base);
        } else {
            rc = run_folders(&run);
        }
        if (mig_state_failed(run.state))
            code = MIG_EXIT_STATE;
        mig_state_close(run.state);
        if (rc < 0 && code == MIG_EXIT_OK)
            code = run.code ? run.code : MIG_EXIT_PARTIAL;
    }
    if (code == MIG_EXIT_OK && t->failed + t->folders_failed + t->missing > failed0)
        code = MIG_EXIT_PARTIAL;
    pthread_mutex_destroy(&th.lock);
    return code;
}
