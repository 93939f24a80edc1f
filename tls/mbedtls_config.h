/*
 * mbedtls_config.h -- the mbedTLS 3.6 configuration of our own build (make's
 * default where the system has no mbedTLS 3.6; see scripts/mbedtls.mk). It
 * replaces mbedTLS's default mbedtls/mbedtls_config.h entirely, tuned for a
 * broker: TLS 1.3 and 1.2 only, ECDHE (X25519 through Everest for TLS 1.2,
 * P-256, P-384, P-521) with ECDSA or RSA certificates, DHE-RSA for old
 * clients, no static-RSA key exchange, no TLS 1.0/1.1, session tickets and a
 * session cache, AES-NI, and allocator hooks for exact per-connection memory
 * accounting (tls/tls_mem.c).
 */
#ifndef SECBROKER_MBEDTLS_CONFIG_H
#define SECBROKER_MBEDTLS_CONFIG_H

/* ---- system ---- */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY /* mbedtls_platform_set_calloc_free: tls_mem.c */
#define MBEDTLS_FS_IO
#define MBEDTLS_NET_C
#define MBEDTLS_ERROR_C
#define MBEDTLS_VERSION_C

/* ---- randomness ---- */
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_CTR_DRBG_C
#define MBEDTLS_HMAC_DRBG_C

/* ---- symmetric crypto and hashes ---- */
#define MBEDTLS_AES_C
#define MBEDTLS_AESNI_C
#define MBEDTLS_GCM_C
#define MBEDTLS_CCM_C
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C
#define MBEDTLS_CIPHER_C
#define MBEDTLS_CIPHER_MODE_CBC /* TLS 1.2 "-SHA" / "-SHA256" suites */
#define MBEDTLS_CIPHER_PADDING_PKCS7
#define MBEDTLS_MD_C
#define MBEDTLS_SHA1_C /* older certificates, TLS 1.2 HMAC-SHA1 suites */
#define MBEDTLS_SHA224_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C
#define MBEDTLS_HKDF_C
#define MBEDTLS_PKCS5_C /* PBKDF2 for the password file (acl/pwfile.c) */

/* ---- public key ---- */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_SECP521R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED /* X25519 for TLS 1.2 ECDHE, ~5x faster */
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21 /* RSA-PSS: TLS 1.3 signatures with RSA keys */
#define MBEDTLS_DHM_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_PSA_CRYPTO_C /* TLS 1.3 runs its key schedule through PSA */
/* A TLS 1.3 handshake in flight holds PSA keys (a client its key share until
 * the ServerHello): the static store's 32 slots made the 33rd concurrent
 * handshake fail with "Memory allocation failed" (secbench: 245 of 300
 * concurrent resumed TLS 1.3 clients; unit test tls13_many_handshakes_in_
 * flight). The dynamic store grows with the load, as mbedTLS's default
 * configuration has it. */
#define MBEDTLS_PSA_KEY_STORE_DYNAMIC

/* ---- X.509 ---- */
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_CRL_PARSE_C
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT

/* ---- TLS ---- */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE /* what OpenSSL, Python, Node send */
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED /* resumption */
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_DHE_RSA_ENABLED
#define MBEDTLS_SSL_SESSION_TICKETS
#define MBEDTLS_SSL_TICKET_C
#define MBEDTLS_SSL_CACHE_C
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_ENCRYPT_THEN_MAC
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES
/* Records: a peer may send full 16 KB records, so input takes them (TLS
 * 1.2 has no way to ask for less from every client; in TLS 1.3 only
 * record_size_limit would, and mbedTLS 3.6 does not send it). Output is a
 * choice, measured (docs/performance.md): OUT 4096 cuts an idle connection
 * from 36,601 to 24,313 bytes (tls_conn_memory, unit test idle_memory) but
 * costs 13-30% more broker CPU per delivered message over TLS (64-byte
 * fan-out to 100 subscribers +30%, fan-in +13%, 1 KiB and 16 KiB payloads
 * +19-22%: four times the records, each its own send()). Throughput wins:
 * 16384. */
#define MBEDTLS_SSL_IN_CONTENT_LEN 16384
#define MBEDTLS_SSL_OUT_CONTENT_LEN 16384

#endif
