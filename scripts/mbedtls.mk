# mbedtls.mk -- builds the mbedTLS 3.6 library objects our programs need,
# with tls/mbedtls_config.h, into one static archive. Run by the top-level
# Makefile after scripts/mbedtls.sh unpacked the sources:
#   make -f scripts/mbedtls.mk SRC=build/mbedtls/src OUT=build/mbedtls
# Only the modules the configuration enables are compiled (about half of
# library/), in parallel under the caller's -j.

SRC ?= build/mbedtls/src
OUT ?= build/mbedtls
CC ?= cc
MBEDTLS_CFLAGS ?= -O2
# Everest's X25519 (HACL*, verified, written branch-free) at -O3: 0.49 M
# instructions per scalar multiplication instead of 1.07 M at -O2 (GCC 12
# inlines and unrolls its field arithmetic), half the CPU time; memcheck finds
# no branch or address depending on the secret at either level
# (docs/performance.md, "Where a full handshake's CPU goes").
EVEREST_CFLAGS ?= -O3

# library/ modules used by tls/ with tls/mbedtls_config.h, plus Everest.
MODULES = aes aesni asn1parse asn1write base64 bignum bignum_core cipher cipher_wrap \
    constant_time ctr_drbg debug dhm ecdh ecdsa ecp ecp_curves entropy entropy_poll error \
    gcm ccm chacha20 chachapoly poly1305 hkdf hmac_drbg md net_sockets oid pem pkcs5 pk pk_ecc \
    pk_wrap pkparse pkwrite platform platform_util psa_crypto psa_crypto_aead \
    psa_crypto_cipher psa_crypto_client psa_crypto_driver_wrappers_no_static psa_crypto_ecp \
    psa_crypto_ffdh psa_crypto_hash psa_crypto_mac psa_crypto_pake psa_crypto_random psa_crypto_rsa \
    psa_crypto_slot_management psa_crypto_storage psa_util rsa rsa_alt_helpers sha1 sha256 \
    sha512 ssl_cache ssl_ciphersuites ssl_client ssl_debug_helpers_generated ssl_msg \
    ssl_ticket ssl_tls ssl_tls12_client ssl_tls12_server ssl_tls13_client ssl_tls13_generic \
    ssl_tls13_keys ssl_tls13_server version x509 x509_crl x509_crt bignum_mod bignum_mod_raw
EVEREST = everest x25519 Hacl_Curve25519_joined

# ours: X25519 key shares through Everest (linked with -Wl,--wrap=mbedtls_ecp_mul)
OURS = mbedtls_x25519

OBJS = $(patsubst %,$(OUT)/obj/%.o,$(MODULES)) $(patsubst %,$(OUT)/obj/everest/%.o,$(EVEREST)) \
    $(patsubst %,$(OUT)/obj/ours/%.o,$(OURS))
INC = -I$(SRC)/include -I$(SRC)/library -I$(SRC)/3rdparty/everest/include \
    -I$(SRC)/3rdparty/everest/include/everest -I$(SRC)/3rdparty/everest/include/everest/kremlib
DEFS = -DMBEDTLS_CONFIG_FILE='"$(CURDIR)/tls/mbedtls_config.h"'

$(OUT)/libmbedtls-all.a: $(OBJS) scripts/mbedtls.mk
	rm -f $@
	ar rcs $@ $(OBJS)

$(OUT)/obj/%.o: $(SRC)/library/%.c tls/mbedtls_config.h
	@mkdir -p $(dir $@)
	@$(CC) $(MBEDTLS_CFLAGS) $(DEFS) $(INC) -c -o $@ $<

$(OUT)/obj/everest/%.o: $(SRC)/3rdparty/everest/library/%.c tls/mbedtls_config.h scripts/mbedtls.mk
	@mkdir -p $(dir $@)
	@$(CC) $(MBEDTLS_CFLAGS) $(EVEREST_CFLAGS) $(DEFS) $(INC) -c -o $@ $<

$(OUT)/obj/ours/%.o: tls/%.c tls/mbedtls_config.h
	@mkdir -p $(dir $@)
	@$(CC) $(MBEDTLS_CFLAGS) -Wall -Wextra -Werror $(DEFS) $(INC) -c -o $@ $<
