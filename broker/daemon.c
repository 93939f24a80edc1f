/* daemon.c -- see daemon.h. */
#include "broker/daemon.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/err.h"

int daemon_detach(char *err, size_t errlen)
{
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "-d: cannot fork: %s", strerror(errno));
        return BK_ERR_IO;
    }
    if (pid > 0) _exit(0); /* the parent: the shell gets its prompt back */
    if (setsid() < 0) {
        snprintf(err, errlen, "-d: setsid: %s", strerror(errno));
        return BK_ERR_IO;
    }
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0) {
        snprintf(err, errlen, "-d: /dev/null: %s", strerror(errno));
        return BK_ERR_IO;
    }
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO) close(fd);
    return BK_OK;
}

int daemon_write_pid(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
        return BK_ERR_IO;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    bool ok = write(fd, buf, (size_t)n) == n;
    int e = errno;
    close(fd);
    if (!ok) {
        snprintf(err, errlen, "pid_file %s: %s", path, strerror(e));
        return BK_ERR_IO;
    }
    return BK_OK;
}

void daemon_remove_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    long pid = 0;
    bool mine = fscanf(f, "%ld", &pid) == 1 && pid == (long)getpid();
    fclose(f);
    if (mine) (void)unlink(path); /* may fail after dropping privileges, like Mosquitto's */
}
