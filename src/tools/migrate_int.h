/*
 * migrate_int.h - what migrate_sync.c and migrate_copy.c share about one
 * folder pair being synced: both sides' message lists, the identity
 * queues used for matching, and the copy pipeline's entry point.
 */
#ifndef SLUICE_MIGRATE_INT_H
#define SLUICE_MIGRATE_INT_H

#include "tools/migrate.h"

enum mfate {
    MF_NEW,        /* not yet decided */
    MF_MATCHED,    /* already on the other side (peer set) */
    MF_COPY,       /* to copy */
    MF_HASH,       /* to copy unless its content is already there */
    MF_COPIED,
    MF_DUP,        /* a duplicate of another source message */
    MF_SKIPPED,    /* too large (--maxsize, APPENDLIMIT) */
    MF_FAILED,
};

struct mmsg {
    uint32_t uid;
    uint32_t peer_uid;          /* matched or appended UID on the other side */
    uint64_t size;
    char *flags;                /* without \Recent; NULL: unchanged (CONDSTORE) */
    char *msgid;                /* for reports; NULL when none */
    char idate[48];
    char id[MIG_ID_LEN];        /* identity; "" while unknown */
    enum mfate fate;
    bool single;                /* retry alone after a failed MULTIAPPEND */
    bool listed;                /* seen in the verification listing */
    char *body;                 /* while being copied */
    size_t blen;
};

struct mside {
    struct mmsg *v;
    size_t n, cap;
};

/* identity -> indexes of not-yet-matched destination messages */
struct idq {
    size_t *idx;
    size_t n, cap, next;
};

struct mfolder {
    struct mig_run *run;
    struct imapc *c1, *c2;
    const struct mig_folder *f;
    char key[2100];
    struct mside s, d;
    struct dict dst_ids;        /* identity -> struct idq */
    struct dict src_seen;       /* identity -> count among copied/matched */
    enum { MF_LIST, MF_HEADERS, MF_BODIES, MF_UPDATE } mode;  /* what FETCH fills */
    bool state_same;            /* the state's UIDVALIDITYs match both sides */
    bool esearch_bad;
    struct mside *fill;         /* the side a listing fills */
    size_t would_copy;
    uint64_t would_bytes;
};

struct mmsg *mf_find(struct mside *side, uint32_t uid);
/* Match a source message by identity: true when a destination copy was
 * taken (and recorded), false otherwise; *dup when it duplicates one. */
bool mf_match_identity(struct mfolder *mf, struct mmsg *m, bool *dup);
void mf_fetch_untagged(struct imapc *c, const struct imap_resp *r, void *arg);
/* List a side (UID, FLAGS, RFC822.SIZE; INTERNALDATE for the source;
 * Message-ID and Date when headers) into side, sorted by UID. 0 or -1. */
int mf_list_side(struct mfolder *mf, struct imapc *c, struct mside *side, bool src,
                 bool headers);
/* Identity of a fetched message: Message-ID + size + Date, or content. */
void mf_ident_body(struct mmsg *m);
void mf_side_free(struct mside *s);
/* Content identities of destination messages without a Message-ID. */
int mf_hash_dst_bodies(struct mfolder *mf);
void mf_idq_free(void *q);
/* Queue unmatched destination messages by identity for matching. */
void mf_index_dst(struct mfolder *mf);
/* Relist the destination and check every source message that should be
 * there is; updates the tally. 0 or -1. */
int mf_verify(struct mfolder *mf);
/* Copy every source message in state MF_COPY / MF_HASH. 0 or -1. */
int mf_copy(struct mfolder *mf);
/* Append "a,b:c" UID-set text for idx[0..n) of side into b. */
void mf_uidset(struct buf *b, const struct mside *side, const size_t *idx, size_t n);

#endif
