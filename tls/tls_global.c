/*
 * tls_global.c -- process-wide state (the RNG), version strings, alert names
 * and the small helpers every other tls/ file uses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mbedtls/error.h"
#if defined(MBEDTLS_PSA_CRYPTO_C)
#include "psa/crypto.h"
#endif

#include "tls/tls_int.h"

static mbedtls_entropy_context g_entropy;
static mbedtls_ctr_drbg_context g_drbg;
static bool g_ready;

/* Seeds the DRBG once; the personalisation string only separates us from
 * other DRBG users of the same entropy source. */
int tls_global_setup(char *err, size_t errlen)
{
    static const unsigned char pers[] = "secbroker-tls";
    if (g_ready) return TLS_OK;
    tls_mem_init();
#if defined(MBEDTLS_PSA_CRYPTO_C)
    /* TLS 1.3 in mbedTLS 3.x runs its key schedule through PSA */
    if (psa_crypto_init() != PSA_SUCCESS) {
        snprintf(err, errlen, "PSA crypto initialisation failed");
        return TLS_ERR_CONFIG;
    }
#endif
    mbedtls_entropy_init(&g_entropy);
    mbedtls_ctr_drbg_init(&g_drbg);
    int ret =
        mbedtls_ctr_drbg_seed(&g_drbg, mbedtls_entropy_func, &g_entropy, pers, sizeof pers - 1);
    if (ret != 0) {
        char why[128];
        tls_strerror(ret, why, sizeof why);
        if (err) snprintf(err, errlen, "cannot seed the random number generator: %s", why);
        mbedtls_ctr_drbg_free(&g_drbg);
        mbedtls_entropy_free(&g_entropy);
        return TLS_ERR_CONFIG;
    }
    g_ready = true;
    if (tls_x25519_check(1) != TLS_OK) {
        if (err) snprintf(err, errlen, "X25519 self-test failed: Everest and mbedTLS disagree");
        tls_global_free();
        return TLS_ERR_CONFIG;
    }
    return TLS_OK;
}

void tls_global_free(void)
{
    if (!g_ready) return;
    mbedtls_ctr_drbg_free(&g_drbg);
    mbedtls_entropy_free(&g_entropy);
    g_ready = false;
}

const char *tls_library_version(void)
{
    return "mbed TLS " MBEDTLS_VERSION_STRING;
}

/* Setup functions call this so that forgetting tls_global_setup() is not a
 * crash but merely a lazily seeded RNG. */
int tls_rng_ready(char *err, size_t errlen)
{
    return tls_global_setup(err, errlen);
}

int tls_rng(void *ctx, unsigned char *out, size_t len)
{
    (void)ctx;
    return mbedtls_ctr_drbg_random(&g_drbg, out, len);
}

/* RFC 5246 / 8446 alert descriptions, named as Wireshark shows them. */
const char *tls_alert_name(int desc)
{
    switch (desc) {
    case 0:
        return "close_notify";
    case 10:
        return "unexpected_message";
    case 20:
        return "bad_record_mac";
    case 21:
        return "decryption_failed";
    case 22:
        return "record_overflow";
    case 30:
        return "decompression_failure";
    case 40:
        return "handshake_failure";
    case 41:
        return "no_certificate";
    case 42:
        return "bad_certificate";
    case 43:
        return "unsupported_certificate";
    case 44:
        return "certificate_revoked";
    case 45:
        return "certificate_expired";
    case 46:
        return "certificate_unknown";
    case 47:
        return "illegal_parameter";
    case 48:
        return "unknown_ca";
    case 49:
        return "access_denied";
    case 50:
        return "decode_error";
    case 51:
        return "decrypt_error";
    case 60:
        return "export_restriction";
    case 70:
        return "protocol_version";
    case 71:
        return "insufficient_security";
    case 80:
        return "internal_error";
    case 86:
        return "inappropriate_fallback";
    case 90:
        return "user_canceled";
    case 100:
        return "no_renegotiation";
    case 109:
        return "missing_extension";
    case 110:
        return "unsupported_extension";
    case 112:
        return "unrecognized_name";
    case 113:
        return "bad_certificate_status_response";
    case 115:
        return "unknown_psk_identity";
    case 116:
        return "certificate_required";
    case 120:
        return "no_application_protocol";
    default:
        return "unknown alert";
    }
}

bool tls_version_supported(const char *tls_version)
{
    char err[200];
    int minor;
    return tls_version && *tls_version &&
           tls_parse_version(tls_version, "", &minor, err, sizeof err) == TLS_OK;
}

bool tls_suite_supported(const char *name)
{
    char err[300];
    int *ids = NULL;
    if (name == NULL || *name == '\0' || strchr(name, ':')) return false;
    bool ok = tls_suites_parse(name, "", TLS_V12, &ids, err, sizeof err) == TLS_OK;
    free(ids);
    return ok;
}

const char *tls_opt_name(const char *const *names, enum tls_opt o)
{
    static const char *const neutral[TLS_OPT_COUNT] = {
        [TLS_OPT_CERTFILE] = "certificate file",
        [TLS_OPT_KEYFILE] = "key file",
        [TLS_OPT_CAFILE] = "CA file",
        [TLS_OPT_CAPATH] = "CA directory",
        [TLS_OPT_CRLFILE] = "CRL file",
        [TLS_OPT_CIPHERS] = "cipher list",
        [TLS_OPT_CIPHERS13] = "TLS 1.3 cipher list",
        [TLS_OPT_VERSION] = "TLS version",
        [TLS_OPT_KEYLOG] = "key log file",
        [TLS_OPT_REQUIRE_CERT] = "requiring client certificates",
    };
    if ((unsigned)o >= TLS_OPT_COUNT) return "?";
    return names && names[o] ? names[o] : neutral[o];
}

void tls_strerror(int ret, char *buf, size_t len)
{
    char tmp[160];
    mbedtls_strerror(ret, tmp, sizeof tmp);
    if (snprintf(buf, len, "%s (-0x%04x)", tmp, (unsigned)-ret) < 0 && len) buf[0] = '\0';
}

int tls_set_versions(mbedtls_ssl_config *conf, int min_minor, int max_minor)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    mbedtls_ssl_conf_min_tls_version(conf, (mbedtls_ssl_protocol_version)(0x0300 | min_minor));
    mbedtls_ssl_conf_max_tls_version(conf, (mbedtls_ssl_protocol_version)(0x0300 | max_minor));
#else
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, min_minor);
    mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, max_minor);
#endif
    return 0;
}

/* "tlsv1.2" -> TLS_V12. NULL means the default, TLS 1.2. */
int tls_parse_version(const char *s, const char *key, int *minor, char *err, size_t errlen)
{
    if (s == NULL || *s == '\0') {
        *minor = TLS_V12;
        return TLS_OK;
    }
    if (strcasecmp(s, "tlsv1.2") == 0) {
        *minor = TLS_V12;
        return TLS_OK;
    }
    if (strcasecmp(s, "tlsv1.1") == 0) {
#if defined(MBEDTLS_SSL_PROTO_TLS1_1)
        *minor = TLS_V11;
        return TLS_OK;
#else
        snprintf(err, errlen, "%s %s: this mbedTLS build (%s) has no TLS 1.1", key, s,
                 MBEDTLS_VERSION_STRING);
        return TLS_ERR_CONFIG;
#endif
    }
    if (strcasecmp(s, "tlsv1.3") == 0) {
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
        *minor = TLS_V13;
        return TLS_OK;
#else
        snprintf(err, errlen, "%s %s: this mbedTLS build (%s) has no TLS 1.3; use tlsv1.2", key, s,
                 MBEDTLS_VERSION_STRING);
        return TLS_ERR_CONFIG;
#endif
    }
    if (strcasecmp(s, "tlsv1") == 0 || strcasecmp(s, "tlsv1.0") == 0) {
        snprintf(err, errlen, "%s %s: TLS 1.0 is not supported; use tlsv1.2 (or tlsv1.1)", key, s);
        return TLS_ERR_CONFIG;
    }
    snprintf(err, errlen, "%s %s: unknown version (expected tlsv1.2 or tlsv1.1)", key, s);
    return TLS_ERR_CONFIG;
}
