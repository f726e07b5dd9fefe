/*
 * policy.h - `sluice policy`: greylisting for Postfix through the policy
 * delegation protocol (details in policy.c and docs/greylisting.md).
 */
#ifndef SLUICE_GREYLIST_POLICY_H
#define SLUICE_GREYLIST_POLICY_H

/* Run the service until SIGTERM. listen: NULL = policy_listen from the
 * configuration; else "host:port", "[v6]:port" or "unix:PATH" (several
 * comma-separated). Returns the exit code. */
int policy_main(const char *config_path, const char *listen);

#endif
