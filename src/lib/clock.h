/*
 * clock.h - monotonic and per-thread CPU clock readings in microseconds,
 * for timeouts, adaptive windows and progress output (never wall time:
 * these do not jump when the system clock is set).
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC, in microseconds. */
uint64_t clock_mono_us(void);
/* CPU time the calling thread has used (user + system), in microseconds. */
uint64_t clock_thread_cpu_us(void);

#endif
