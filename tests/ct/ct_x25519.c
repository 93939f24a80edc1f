/*
 * ct_x25519.c -- constant-time check of the X25519 code our mbedTLS build
 * uses (Everest, compiled at -O3 by scripts/mbedtls.mk), run by `make
 * ct-check` under valgrind's memcheck. The secret scalar and the peer's
 * point are marked undefined; memcheck then reports every conditional jump
 * and every memory address computed from them, so a clean run means no
 * branch and no table index depends on the secret for this compiler and
 * these flags. `ct_x25519 leak` adds one deliberate secret-dependent branch:
 * make ct-check expects memcheck to report it (the check itself works).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <valgrind/memcheck.h>

void Hacl_Curve25519_crypto_scalarmult(uint8_t *mypublic, uint8_t *secret, uint8_t *basepoint);

int main(int argc, char **argv)
{
    int leak = argc > 1 && strcmp(argv[1], "leak") == 0;
    uint8_t out[32], scalar[32], point[32] = {9};
    for (int i = 0; i < 32; i++)
        scalar[i] = (uint8_t)(i * 37 + 11);
    VALGRIND_MAKE_MEM_UNDEFINED(scalar, sizeof scalar);
    VALGRIND_MAKE_MEM_UNDEFINED(point, sizeof point);
    Hacl_Curve25519_crypto_scalarmult(out, scalar, point); /* our key share */
    Hacl_Curve25519_crypto_scalarmult(out, scalar, out);   /* an agreement */
    volatile uint8_t sink = out[0];
    if (leak && scalar[3] & 1) sink ^= 1; /* deliberately secret-dependent */
    VALGRIND_MAKE_MEM_DEFINED(out, sizeof out);
    printf("ct_x25519: %s done\n", leak ? "leak" : "check");
    (void)sink;
    return 0;
}
