/*
 * fdlimit.c -- the open-files limit (see fdlimit.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/fdlimit.h"
#include "broker/log.h"

uint64_t fdlimit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_msg(LL_WARNING, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return 0;
    }
    if (rl.rlim_cur >= rl.rlim_max) {
        log_msg(LL_INFO, "open files limit: %llu (already the hard limit)",
                (unsigned long long)rl.rlim_cur);
        return rl.rlim_cur;
    }
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_msg(LL_WARNING,
                "open files limit stays %llu: cannot raise it to the hard limit %llu: %s",
                (unsigned long long)old, (unsigned long long)rl.rlim_max, strerror(errno));
        return old;
    }
    log_msg(LL_NOTICE, "open files limit raised from %llu to the hard limit %llu",
            (unsigned long long)old, (unsigned long long)rl.rlim_cur);
    return rl.rlim_cur;
}

int fdlimit_reserve_open(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int fdlimit_shed_one(int *reserve, int listen_fd)
{
    if (*reserve < 0) {
        *reserve = fdlimit_reserve_open(); /* a descriptor may have come free */
        return -1;
    }
    close(*reserve);
    *reserve = -1;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    int e = errno;
    if (fd >= 0) close(fd);
    *reserve = fdlimit_reserve_open();
    if (fd >= 0) return 1;
    return e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED || e == EINTR ? 0 : -1;
}
