/*
 * greylist_cli.h - `sluice greylist`: stats, list, allow, forget, expire on
 * the greylist store (LMDB or Redis), as text or JSON.
 */
#ifndef SLUICE_GREYLIST_CLI_H
#define SLUICE_GREYLIST_CLI_H

#include <stdbool.h>

/* cmd: stats | list | allow POOL DOMAIN | forget POOL [SENDER [RCPT]] |
 * expire. Returns the exit code. */
int greylist_cli(const char *config_path, const char *cmd, char **args, int nargs, bool json);

#endif
