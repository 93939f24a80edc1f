/*
 * tls_x25519.c -- checks the Everest X25519 path of our mbedTLS build
 * (tls/mbedtls_x25519.c) against mbedTLS's own ladder.
 */
#include <sys/random.h>

#include "tls/tls_int.h"

#if defined(TLS_X25519_WRAP) && defined(MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED)

typedef int rng_fn(void *, unsigned char *, size_t);
int __real_mbedtls_ecp_mul(mbedtls_ecp_group *grp, mbedtls_ecp_point *R, const mbedtls_mpi *m,
                           const mbedtls_ecp_point *P, rng_fn *f_rng, void *p_rng);
int __wrap_mbedtls_ecp_mul(mbedtls_ecp_group *grp, mbedtls_ecp_point *R, const mbedtls_mpi *m,
                           const mbedtls_ecp_point *P, rng_fn *f_rng, void *p_rng);
unsigned long secbroker_x25519_everest_calls(void);

/* the kernel's random bytes: no dependency on tls_global's DRBG */
static int os_rng(void *ctx, unsigned char *out, size_t len)
{
    (void)ctx;
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n <= 0) return MBEDTLS_ERR_ECP_RANDOM_FAILED;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

int tls_x25519_check(int rounds)
{
    mbedtls_ecp_group grp;
    mbedtls_mpi d;
    mbedtls_ecp_point fast, slow;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_ecp_point_init(&fast);
    mbedtls_ecp_point_init(&slow);
    unsigned long calls = secbroker_x25519_everest_calls();
    int ret = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519);
    for (int i = 0; ret == 0 && i < rounds; i++) {
        ret = mbedtls_ecp_gen_privkey(&grp, &d, os_rng, NULL);
        if (ret == 0) ret = __wrap_mbedtls_ecp_mul(&grp, &fast, &d, &grp.G, os_rng, NULL);
        if (ret == 0) ret = __real_mbedtls_ecp_mul(&grp, &slow, &d, &grp.G, os_rng, NULL);
        if (ret == 0 && mbedtls_ecp_point_cmp(&fast, &slow) != 0) ret = -1;
    }
    mbedtls_ecp_point_free(&slow);
    mbedtls_ecp_point_free(&fast);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&grp);
    /* the Everest path must have run, once per key */
    if (ret == 0 && secbroker_x25519_everest_calls() - calls != (unsigned long)rounds) ret = -1;
    return ret == 0 ? TLS_OK : TLS_ERR_CONFIG;
}

unsigned long tls_x25519_everest_calls(void)
{
    return secbroker_x25519_everest_calls();
}

#else

int tls_x25519_check(int rounds)
{
    (void)rounds;
    return TLS_OK;
}

unsigned long tls_x25519_everest_calls(void)
{
    return 0;
}

#endif
