/*
 * workq.h - a small pool of worker threads for blocking disk work (Maildir
 * writes, state files), so the event loop never waits on the disk.
 *
 * workq_submit(q, work, done, arg): `work(arg)` runs on a worker thread,
 * then `done(arg)` runs on the event loop. `arg` is owned by the caller
 * until `done` runs; `work` must not touch event-loop objects.
 */
#ifndef SLUICE_WORKQ_H
#define SLUICE_WORKQ_H

#include <stddef.h>

struct event_base;
struct workq;

struct workq *workq_new(struct event_base *base, unsigned nthreads);
void workq_submit(struct workq *q, void (*work)(void *), void (*done)(void *), void *arg);
/* Jobs submitted and not yet completed (done not yet called). */
size_t workq_pending(const struct workq *q);
/* Waits for running jobs, runs remaining done callbacks, frees. */
void workq_free(struct workq *q);

#endif
