/*
 * tools.h - entry points of the operator verbs (sluice queue, explain, ...).
 * Each returns the process exit code.
 */
#ifndef SLUICE_TOOLS_H
#define SLUICE_TOOLS_H

struct config;

int queue_cli_main(int argc, char **argv);
int explain_main(int argc, char **argv);
/* Shared: -c FILE, else $SLUICE_CONFIG, else /etc/sluice/sluice.conf if it
 * exists, else NULL (built-in defaults). */
const char *tools_config_path(const char *given);
/* config_load() of tools_config_path(given); on failure, says why on
 * stderr ("sluice: ...") and returns NULL. */
struct config *tools_config_load(const char *given);

#endif
