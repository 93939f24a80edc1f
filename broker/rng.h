/*
 * rng.h -- random bytes from the kernel's CSPRNG (getrandom(2)) for secrets
 * that clients must not predict: hash table keys and generated client ids.
 * A small pool amortises the system call; bytes are handed out once and the
 * pool is wiped as it is used.
 */
#ifndef SECBROKER_RNG_H
#define SECBROKER_RNG_H
#include <stddef.h>

/* Fill buf with n fresh random bytes. Returns 0, or -1 (errno set) when the
 * kernel gives none; callers then refuse the operation, never fall back to
 * something guessable. */
int rng_bytes(void *buf, size_t n);

#endif
