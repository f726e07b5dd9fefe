/*
 * maildir.h - local delivery into Maildir (maildir_base/DOMAIN/LOCALPART/).
 *
 * The message is copied from the queued message into tmp/ with LF line
 * endings, Return-Path: and Delivered-To: prepended, fsync'd, then linked
 * into new/ and new/ is fsync'd: a delivered message survives a crash.
 * Blocking: call it from a worker thread (lib/workq.h).
 */
#ifndef SLUICE_MAILDIR_H
#define SLUICE_MAILDIR_H

#include <stddef.h>
#include <stdint.h>

struct maildir_job {
    /* in */
    const char *base;          /* maildir_base */
    int queue_fd;              /* the queued message (spool_content_open) */
    uint64_t content_offset, content_length;   /* in queue_fd */
    const char *sender;
    const char *recipient;     /* local@domain */
    const char *hostname;
    /* out */
    int status;                /* 0 delivered, else an errno */
    int permanent;             /* 1: do not retry (bad mailbox name) */
    char path[600];            /* final file name */
    char error[256];
};

/* Deliver; fills status/permanent/error/path. */
void maildir_deliver(struct maildir_job *job);
/* Safe directory name for a local part or domain; -1 if impossible. */
int maildir_safe_name(const char *in, char *out, size_t outlen);

#endif
