/*
 * migrate.h - `sluice migrate`: IMAP (or POP3) -> IMAP mailbox migration.
 *
 * The pieces: migrate_cli.c (options, accounts, exit codes), migrate_plan.c
 * (folder discovery and mapping), migrate_sync.c + migrate_copy.c (one
 * folder: listing, matching, pipelined copy, flags, --delete2,
 * verification), migrate_pop3.c (POP3 source), migrate_ident.c (message
 * identity), migrate_state.c (the resumable state file), migrate_report.c
 * (progress bar, tally, JSON). Documentation: docs/migrate.md.
 */
#ifndef SLUICE_MIGRATE_H
#define SLUICE_MIGRATE_H

#include "lib/dict.h"
#include "mail/imap_client.h"
#include "mail/pop3_client.h"

#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes (docs/migrate.md). */
enum mig_exit {
    MIG_EXIT_OK = 0,
    MIG_EXIT_USAGE = 2,
    MIG_EXIT_CONNECT = 3,
    MIG_EXIT_TLS = 4,
    MIG_EXIT_AUTH = 5,
    MIG_EXIT_PARTIAL = 6,
    MIG_EXIT_STATE = 7,
    MIG_EXIT_PROTOCOL = 8,
};

struct mig_endpoint {
    char *host;
    uint16_t port;
    enum lc_security security;
    bool verify;
    char *cafile;
    char *user;
    char *password;             /* loaded secret; never logged */
    enum imapc_auth auth;
    bool pop3;
    const char *label;          /* "host1" / "host2" */
    SSL_CTX *ctx;
};

struct mig_f1f2 {
    char *from, *to;
};

struct mig_opts {
    struct mig_endpoint e[2];
    bool dry, delete2, syncduplicates, json, progress, verify, noflags;
    uint64_t maxsize;
    unsigned jobs;
    double max_msgs_per_sec, max_bytes_per_sec;
    char *statefile, *statedir;
    struct mig_f1f2 *f1f2;
    size_t nf1f2;
    regex_t *include, *exclude;
    char **include_pat, **exclude_pat;
    size_t ninclude, nexclude;
    unsigned timeout;
    uint64_t max_message;
    const char *trace;
};

/* Counters shared by the worker threads of one run. */
struct mig_tally {
    atomic_uint_fast64_t folders_total, folders_done, folders_failed, folders_created;
    atomic_uint_fast64_t msgs_planned, bytes_planned;
    atomic_uint_fast64_t copied, skipped, duplicates, failed, already, flags_updated,
                         deleted, bytes;
    atomic_uint_fast64_t verified, missing, src_identified;
    pthread_mutex_t lock;
    char **failures;            /* "what: why" lines, bounded */
    size_t nfailures, capfailures;
    char **missing_list;
    size_t nmissing, capmissing;
    int worst;                  /* worst exit class seen */
    double start;
};

/* A token bucket shared by all jobs of one account. */
struct mig_throttle {
    pthread_mutex_t lock;
    double msgs_rate, bytes_rate;
    double start;
    uint64_t msgs, bytes;
};

/* ---- identity (migrate_ident.c) ---- */
#define MIG_ID_LEN 33           /* 32 hex digits + NUL */
/* Identity from a header block: Message-ID + size + Date. Returns false
 * (id untouched) when the header has no Message-ID. */
bool mig_ident_header(const char *hdr, size_t len, uint64_t size, char id[MIG_ID_LEN]);
/* Identity from the whole content (for messages without Message-ID). */
void mig_ident_content(const char *msg, size_t len, char id[MIG_ID_LEN]);
/* The Message-ID (trimmed, unfolded) into dst; "" when absent. */
void mig_header_field(const char *hdr, size_t len, const char *name, char *dst,
                      size_t dstlen);

/* ---- state file (migrate_state.c) ---- */
struct mig_state;
/* Load (or create) path; readonly: never write (--dry). NULL + err. */
struct mig_state *mig_state_open(const char *path, bool readonly, char *err, size_t errlen);
void mig_state_close(struct mig_state *st);
/* Folder pair key: 1 when the stored UIDVALIDITYs match; else forgets the
 * folder's map, records the new ones and returns 0 (new) or -1 (changed). */
int mig_state_folder(struct mig_state *st, const char *key, uint64_t uv1, uint64_t uv2);
/* Destination UID mapped from source UID in folder key, 0 when none. */
uint32_t mig_state_lookup(struct mig_state *st, const char *key, uint32_t uid1);
void mig_state_map(struct mig_state *st, const char *key, uint32_t uid1, uint32_t uid2);
/* CONDSTORE: the source HIGHESTMODSEQ at which the folder was last fully
 * in sync (0 = unknown); a later MODSEQ resets with the F record. */
uint64_t mig_state_modseq(struct mig_state *st, const char *key);
void mig_state_set_modseq(struct mig_state *st, const char *key, uint64_t modseq);
/* POP3: has this UIDL been copied? */
bool mig_state_has_uidl(struct mig_state *st, const char *key, const char *uidl);
void mig_state_add_uidl(struct mig_state *st, const char *key, const char *uidl);
/* Make what was written durable (fsync). -1 on a write error. */
int mig_state_sync(struct mig_state *st);
bool mig_state_failed(const struct mig_state *st);

/* ---- folders (migrate_plan.c) ---- */
struct mig_folder {
    char *name1, *name2;
    bool exists2, noselect1;
    const char *use;            /* special use of the source folder, or NULL */
};

struct mig_plan {
    struct mig_folder *v;
    size_t n, cap;
    uint64_t messages;          /* source messages (STATUS), for the ETA */
};

/* List both sides and map folders. 0 or -1 (connection failure). */
int mig_plan_build(struct imapc *c1, struct imapc *c2, const struct mig_opts *o,
                   struct mig_plan *plan);
void mig_plan_free(struct mig_plan *plan);
/* Name translation alone (exposed for tests): src name -> dst name. */
void mig_plan_translate(const char *name1, const char *prefix1, char sep1,
                        const char *prefix2, char sep2, char *out, size_t outlen);

/* ---- one account (migrate_sync.c, migrate_copy.c, migrate_pop3.c) ---- */
struct mig_run {
    const struct mig_opts *o;
    struct mig_tally *t;
    struct mig_throttle *th;
    struct mig_state *state;
    char account[600];          /* "user1@host1 -> user2@host2" */
    int code;                   /* exit class of a failure to connect */
};

/* Connect one side (imap) in a fresh connection on base. */
struct imapc *mig_connect(struct mig_run *run, int side, struct event_base *base);
/* Run one account pair. Returns an exit code. */
int mig_account(const struct mig_opts *o, struct mig_tally *t);
/* Sync one folder pair over c1/c2. 0, or -1 when a connection failed. */
int mig_folder_sync(struct mig_run *run, struct imapc *c1, struct imapc *c2,
                    const struct mig_folder *f);
int mig_pop3(struct mig_run *run, struct event_base *base);

/* ---- tally, progress, report (migrate_report.c) ---- */
void mig_tally_init(struct mig_tally *t);
void mig_tally_free(struct mig_tally *t);
void mig_fail(struct mig_tally *t, int exit_class, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mig_missing(struct mig_tally *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mig_note_exit(struct mig_tally *t, int code);
/* The worse of two exit codes (usage > state > auth > TLS > connection >
 * protocol > partial > ok). */
int mig_exit_worst(int a, int b);
int mig_exit_for_imapc(enum imapc_err e);
double mig_now(void);
void mig_progress(struct mig_tally *t, FILE *out, bool final);
void mig_report_text(struct mig_tally *t, const struct mig_opts *o, FILE *out);
void mig_report_json(struct mig_tally *t, const struct mig_opts *o, FILE *out);
/* Throttle: wait (seconds) before starting msgs/bytes more; 0 = go. */
double mig_throttle_delay(struct mig_throttle *th, uint64_t msgs, uint64_t bytes);

int migrate_main(int argc, char **argv);

#endif
