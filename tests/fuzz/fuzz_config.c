/*
 * fuzz_config.c - libFuzzer harness for the sluice.conf loader: any file
 * either loads or yields one error line naming the file.
 */
#include "lib/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/fuzz-config-%ld", (long)getpid());
    FILE *fp = fopen(path, "w");
    if (fp == NULL)
        return 0;
    fwrite(data, 1, size, fp);
    fclose(fp);
    char err[1024];
    struct config *c = config_load(path, err, sizeof(err));
    if (c)
        config_free(c);
    else if (strstr(err, path) == NULL)
        abort();
    unlink(path);
    return 0;
}
