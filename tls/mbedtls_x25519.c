/*
 * mbedtls_x25519.c -- part of our mbedTLS 3.6 build (scripts/mbedtls.mk puts
 * it into build/mbedtls/libmbedtls-all.a; the Makefile links every program
 * with -Wl,--wrap=mbedtls_ecp_mul). Not compiled against a system mbedTLS.
 *
 * A TLS 1.3 server (and client) makes its ephemeral key share with
 * psa_generate_key + psa_export_public_key. For X25519, mbedTLS 3.6's PSA
 * generates only the private scalar; the export then computes scalar * G
 * with the generic bignum Montgomery ladder (mbedtls_ecp_mul): about 3.8 M
 * instructions per call, more than half of a TLS 1.3 full handshake on the
 * server, where Everest's verified, constant-time X25519 (already built in
 * for TLS 1.2 ECDHE and used for the TLS 1.3 shared secret) needs about
 * 1.1 M. Calls to mbedtls_ecp_mul from mbedTLS's other modules (the PSA
 * export among them) arrive here: only scalar * G on Curve25519 with a valid
 * (clamped) private scalar takes the Everest path, which is X25519 by
 * definition; everything else goes to mbedTLS unchanged. tls/tls_x25519.c
 * compares both paths at startup and the unit tests on many scalars.
 */
#include <stdbool.h>
#include <string.h>

#include "mbedtls/ecp.h"
#include <stdint.h>

#include "mbedtls/platform_util.h"

/* everest/Hacl_Curve25519.h (its headers want include paths of their own) */
void Hacl_Curve25519_crypto_scalarmult(uint8_t *mypublic, uint8_t *secret, uint8_t *basepoint);

#define X25519_BYTES 32

typedef int rng_fn(void *, unsigned char *, size_t);
/* the linker's names for mbedTLS's function and ours (ld --wrap) */
int __real_mbedtls_ecp_mul(mbedtls_ecp_group *grp, mbedtls_ecp_point *R, const mbedtls_mpi *m,
                           const mbedtls_ecp_point *P, rng_fn *f_rng, void *p_rng);
int __wrap_mbedtls_ecp_mul(mbedtls_ecp_group *grp, mbedtls_ecp_point *R, const mbedtls_mpi *m,
                           const mbedtls_ecp_point *P, rng_fn *f_rng, void *p_rng);

/* x-coordinate as X25519 writes it (32 bytes, little endian) */
static bool u_bytes(const mbedtls_ecp_group *grp, const mbedtls_ecp_point *P, unsigned char *u)
{
    size_t n = 0;
    return mbedtls_ecp_point_write_binary(grp, P, MBEDTLS_ECP_PF_UNCOMPRESSED, &n, u,
                                          X25519_BYTES) == 0 &&
           n == X25519_BYTES;
}

/* m * P with P the base point and m a valid private key: X25519(m, 9) */
static bool is_x25519_base(const mbedtls_ecp_group *grp, const mbedtls_ecp_point *P,
                           const mbedtls_mpi *m, unsigned char *g)
{
    unsigned char p[X25519_BYTES];
    return grp->id == MBEDTLS_ECP_DP_CURVE25519 && mbedtls_ecp_check_privkey(grp, m) == 0 &&
           u_bytes(grp, &grp->G, g) && u_bytes(grp, P, p) && memcmp(p, g, sizeof p) == 0;
}

/* R = m * G on Curve25519 (x only, Z = 1), as mbedTLS's ladder leaves it */
static int everest_base_mul(const mbedtls_ecp_group *grp, mbedtls_ecp_point *R,
                            const mbedtls_mpi *m, unsigned char *g)
{
    unsigned char k[X25519_BYTES], out[X25519_BYTES];
    int ret = mbedtls_mpi_write_binary_le(m, k, sizeof k);
    if (ret == 0) {
        Hacl_Curve25519_crypto_scalarmult(out, k, g);
        ret = mbedtls_ecp_point_read_binary(grp, R, out, sizeof out);
    }
    mbedtls_platform_zeroize(k, sizeof k);
    return ret;
}

unsigned long secbroker_x25519_everest_calls(void);

/* how many times the Everest path ran (tests; the broker is one thread) */
static unsigned long everest_calls;
unsigned long secbroker_x25519_everest_calls(void)
{
    return everest_calls;
}

int __wrap_mbedtls_ecp_mul(mbedtls_ecp_group *grp, mbedtls_ecp_point *R, const mbedtls_mpi *m,
                           const mbedtls_ecp_point *P, rng_fn *f_rng, void *p_rng)
{
    unsigned char g[X25519_BYTES];
    if (grp && R && m && P && is_x25519_base(grp, P, m, g)) {
        everest_calls++;
        return everest_base_mul(grp, R, m, g);
    }
    return __real_mbedtls_ecp_mul(grp, R, m, P, f_rng, p_rng);
}
