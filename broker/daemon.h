/*
 * daemon.h -- `-d` (run in the background) and pid_file, as Mosquitto does.
 */
#ifndef SECBROKER_DAEMON_H
#define SECBROKER_DAEMON_H

#include <stddef.h>

/* Detach from the terminal (fork, setsid; stdin/stdout/stderr to
 * /dev/null; the working directory is kept so relative paths stay valid).
 * Only before any thread starts. BK_OK (in the child) or BK_ERR_IO with err. */
int daemon_detach(char *err, size_t errlen);
/* Write this process's id to path (created 0644). BK_OK or BK_ERR_IO with err. */
int daemon_write_pid(const char *path, char *err, size_t errlen);
/* Remove path when it still holds this process's id (best effort). */
void daemon_remove_pid(const char *path);

#endif
