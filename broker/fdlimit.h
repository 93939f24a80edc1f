/*
 * fdlimit.h -- living with the open-files limit: raise the soft
 * RLIMIT_NOFILE to the hard limit at startup, and keep one reserve
 * descriptor so that a listener at the limit can still take a pending
 * connection off its queue and close it (shed it) instead of staying
 * readable forever under level-triggered epoll (libev's and nginx' classic
 * EMFILE answer).
 */
#ifndef SECBROKER_FDLIMIT_H
#define SECBROKER_FDLIMIT_H

#include <stdint.h>

/* Raise the soft open-files limit to the hard one and log what was done.
 * Returns the soft limit now in force (0 when it cannot be read). */
uint64_t fdlimit_raise(void);

/* Open the reserve descriptor (/dev/null). Returns it, or -1 (errno set). */
int fdlimit_reserve_open(void);

/* At EMFILE/ENFILE: close *reserve, accept one pending connection from
 * listen_fd and close it at once, reopen *reserve. Returns 1 when a
 * connection was shed, 0 when none was pending, -1 when the trick failed
 * (no reserve, or still no descriptor: the caller pauses the listener). */
int fdlimit_shed_one(int *reserve, int listen_fd);

#endif
