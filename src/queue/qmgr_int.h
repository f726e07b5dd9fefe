/*
 * qmgr_int.h - the queue manager's internal structures, shared by
 * qmgr.c (scheduling), qmgr_notify.c (bounces, delay notices, removal)
 * and qmgr_ctl.c (sluice queue operations). Not for other modules.
 */
#ifndef SLUICE_QMGR_INT_H
#define SLUICE_QMGR_INT_H

#include "delivery/delivery.h"
#include "lib/dict.h"
#include "queue/qstate.h"
#include "queue/spool.h"

#include <stdbool.h>
#include <sys/time.h>
#include <time.h>

struct config;

struct qmsg {
    char qid[QID_LEN + 1];
    char path[600];
    char state_path[600];
    struct spool_envelope env;
    struct msg_state st;
    struct timeval loaded;
    unsigned active_jobs;
    bool finishing;          /* a DSN for it is being queued */
};

struct qjob_node {
    struct qjob_node *next;
    struct delivery_job *job;
};

struct qdest {
    char key[300];
    struct nexthop hop;
    struct qjob_node *head, *tail;
    size_t nwaiting;
    unsigned active;
    double concurrency;
    time_t paused_until;
    unsigned fail_streak;
    struct timeval last_start;
    bool probed;             /* a first job finished: parallel connections allowed */
};

struct qmgr {
    struct event_base *base;
    struct config **cfgp;
    struct spool *spool;
    struct workq *wq;
    struct dict msgs;        /* qid -> struct qmsg */
    struct dict dests;       /* key -> struct qdest */
    struct event *tick;
    uint64_t next_job_id;
    size_t active_jobs;
    size_t dsn_pending;
    bool stopping;           /* shutting down: start nothing new */
    struct evconnlistener *ctl;
    struct dns *dns;
    struct dict mxcache;     /* domain -> struct mx_entry */
    char queue_dir[512];
    char state_dir[512];
};

/* What the MX lookup of a domain said, cached (MX rollup). */
enum mx_state { MX_PENDING, MX_OK, MX_NULL, MX_NXDOMAIN, MX_TEMPFAIL };
struct mx_entry {
    enum mx_state state;
    time_t expires;
    char key[300];           /* sorted MX host set: the destination key */
    char domain[256];
};

void qmgr_save_state(struct qmgr *q, struct qmsg *m);
void qmgr_remove(struct qmgr *q, struct qmsg *m);
void qmgr_schedule_msg(struct qmgr *q, struct qmsg *m);
void qmgr_dest_pump(struct qmgr *q, struct qdest *d);
int qmgr_route(const struct config *c, const char *addr, struct nexthop *hop);
int qmgr_parse_nexthop(const char *spec, struct nexthop *hop);
struct evconnlistener *qmgr_ctl_listen(struct qmgr *q, const char *spool_dir);
/* qmgr_notify.c */
void qmgr_msg_check_done(struct qmgr *q, struct qmsg *m);
void qmgr_delay_notice_check(struct qmgr *q, struct qmsg *m, time_t now);
void qmgr_notify_detach(struct qmgr *q);

#endif
