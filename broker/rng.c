/* rng.c -- see rng.h. */
#include "broker/rng.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define RNG_POOL 512

static unsigned char pool[RNG_POOL];
static size_t pool_left; /* unread bytes at the end of pool */

/* getrandom until n bytes arrived (it may return fewer, or EINTR). */
static int fill(unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int rng_bytes(void *buf, size_t n)
{
    unsigned char *out = buf;
    if (n > RNG_POOL / 4) return fill(out, n);
    if (pool_left < n) {
        if (fill(pool, RNG_POOL) < 0) return -1;
        pool_left = RNG_POOL;
    }
    unsigned char *src = pool + RNG_POOL - pool_left;
    memcpy(out, src, n);
    memset(src, 0, n); /* never hand the same bytes out twice */
    pool_left -= n;
    return 0;
}
