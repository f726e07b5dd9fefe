/*
 * tools.h - entry points of the operator verbs (sluice queue, explain, ...).
 * Each returns the process exit code.
 */
#ifndef SLUICE_TOOLS_H
#define SLUICE_TOOLS_H

int queue_cli_main(int argc, char **argv);
int explain_main(int argc, char **argv);
/* Shared: -c FILE, else $SLUICE_CONFIG, else /etc/sluice/sluice.conf if it
 * exists, else NULL (built-in defaults). */
const char *tools_config_path(const char *given);

#endif
