/*
 * fuzz_config.c -- libFuzzer target for the configuration loader
 * (broker/config.c).
 *
 * The input is written to a scratch file and loaded with config_load; a
 * refused file must come with a "FILE:..." message, an accepted one is
 * walked (every listener) and freed. The process works in a scratch
 * directory of its own, because "log_dest file PATH" creates PATH (empty)
 * at load time, as Mosquitto does; so pass the corpus directories with
 * absolute paths (libFuzzer reads them after the first run).
 */
#include "broker/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[128], path[192];

static void scratch_cleanup(void)
{
    char cmd[256];
    if (!dir[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static void scratch_init(void)
{
    if (dir[0]) return;
    const char *t = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%.100s/fuzz_config.XXXXXX", t);
    if (!mkdtemp(dir) || chdir(dir) != 0) abort();
    snprintf(path, sizeof path, "%s/input.conf", dir);
    atexit(scratch_cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    scratch_init();
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(data, 1, size, f);
    if (fclose(f) != 0 || w != size) return 0;
    char err[1024] = "";
    config *c = config_load(path, err, sizeof err);
    if (!c) {
        if (strncmp(err, path, strlen(path)) != 0) abort(); /* the message names the file */
        return 0;
    }
    for (size_t i = 0; i < c->nlisteners; i++) {
        const listener_cfg *l = &c->listeners[i];
        if (l->port < 0 || l->port > 65535) abort();
        if (l->address && !l->address[0]) abort();
    }
    if (c->max_keepalive > 65535) abort();
    config_free(c);
    return 0;
}
