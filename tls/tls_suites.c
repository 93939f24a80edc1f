/*
 * tls_suites.c -- cipher suite names. mbedTLS spells suites
 * "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", IANA uses underscores, and
 * OpenSSL / Mosquitto configs (and students reading `openssl s_client`) use
 * "ECDHE-ECDSA-AES128-GCM-SHA256". We accept all three and print OpenSSL's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mbedtls/ssl_ciphersuites.h"

#include "tls/tls_int.h"

#if MBEDTLS_VERSION_MAJOR >= 3
#define SUITE_NAME(info) mbedtls_ssl_ciphersuite_get_name(info)
#define SUITE_ID(info) mbedtls_ssl_ciphersuite_get_id(info)
#else
#define SUITE_NAME(info) ((info)->name)
#define SUITE_ID(info) ((info)->id)
#endif

/* Forward secrecy + AEAD only. */
static const char *const default_suites[] = {
    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256",
    NULL,
};

/* TLS 1.1 has no AEAD suites: when an admin lowers the minimum we add the
 * forward-secret CBC suites, otherwise the setting could never take effect. */
static const char *const tls11_suites[] = {
    "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA",
    "TLS-ECDHE-ECDSA-WITH-AES-256-CBC-SHA",
    "TLS-ECDHE-RSA-WITH-AES-128-CBC-SHA",
    "TLS-ECDHE-RSA-WITH-AES-256-CBC-SHA",
    NULL,
};

/* Suites mbedTLS 2.28 does not know but clients commonly offer. */
static const struct {
    int id;
    const char *name;
} foreign[] = {
    {0x1301, "TLS_AES_128_GCM_SHA256"},
    {0x1302, "TLS_AES_256_GCM_SHA384"},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256"},
    {0x1304, "TLS_AES_128_CCM_SHA256"},
    {0x002f, "AES128-SHA"}, /* static-RSA suites: not in our mbedTLS 3.6 build */
    {0x0035, "AES256-SHA"},
    {0x003c, "AES128-SHA256"},
    {0x003d, "AES256-SHA256"},
    {0x009c, "AES128-GCM-SHA256"},
    {0x009d, "AES256-GCM-SHA384"},
    {0x00ff, "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"},
    {0x5600, "TLS_FALLBACK_SCSV"},
};

static void append(char *buf, size_t len, size_t *pos, const char *s)
{
    int n = snprintf(buf + *pos, *pos < len ? len - *pos : 0, "%s", s);
    if (n > 0) *pos += (size_t)n;
    if (*pos >= len) *pos = len ? len - 1 : 0;
}

/* "TLS-ECDHE-RSA-WITH-AES-128-CBC-SHA" -> "ECDHE-RSA-AES128-SHA". The
 * OpenSSL scheme: key exchange (none for plain RSA), cipher with the key size
 * glued on, mode only for GCM/CCM (and CBC for PSK-AES), MAC except for CCM
 * and ChaCha20. Checked against `openssl ciphers -V`: all 93 suites both
 * libraries know get OpenSSL's name. */
static void openssl_from_mbedtls(const char *name, char *buf, size_t len)
{
    const char *with = strstr(name, "-WITH-");
    if (strncmp(name, "TLS-", 4) != 0 || with == NULL) {
        snprintf(buf, len, "%s", name);
        return;
    }
    char kx[32], rest[64];
    snprintf(kx, sizeof kx, "%.*s", (int)(with - name - 4), name + 4);
    snprintf(rest, sizeof rest, "%s", with + 6);

    char *tok[8];
    int nt = 0;
    for (char *save = NULL, *t = strtok_r(rest, "-", &save); t && nt < 8;
         t = strtok_r(NULL, "-", &save))
        tok[nt++] = t;

    bool psk = strstr(kx, "PSK") != NULL;
    size_t pos = 0;
    buf[0] = '\0';
    if (strcmp(kx, "RSA") != 0) {
        append(buf, len, &pos, kx);
        append(buf, len, &pos, "-");
    }
    int i = 0;
    bool want_mac = true;
    if (nt >= 3 &&
        (!strcmp(tok[0], "AES") || !strcmp(tok[0], "CAMELLIA") || !strcmp(tok[0], "ARIA"))) {
        append(buf, len, &pos, tok[0]);
        append(buf, len, &pos, tok[1]);
        const char *mode = tok[2];
        i = 3;
        if (!strcmp(mode, "GCM")) {
            append(buf, len, &pos, "-GCM");
        } else if (!strcmp(mode, "CCM")) {
            append(buf, len, &pos, "-CCM");
            if (i < nt && !strcmp(tok[i], "8")) {
                append(buf, len, &pos, "8");
                i++;
            }
            want_mac = false;
        } else if (psk && !strcmp(tok[0], "AES")) {
            append(buf, len, &pos, "-CBC");
        }
    } else if (nt >= 2 && !strcmp(tok[0], "CHACHA20")) {
        append(buf, len, &pos, "CHACHA20-POLY1305");
        i = 2;
        want_mac = false;
    } else if (nt >= 3 && !strcmp(tok[0], "3DES")) {
        append(buf, len, &pos, "DES-CBC3");
        i = 3;
    } else if (nt >= 2 && !strcmp(tok[0], "RC4")) {
        append(buf, len, &pos, "RC4");
        i = 2;
    } else if (nt >= 1) {
        append(buf, len, &pos, tok[0]);
        i = 1;
    }
    if (want_mac && i < nt) {
        append(buf, len, &pos, "-");
        append(buf, len, &pos, tok[i]);
    }
}

void tls_suite_openssl_name(int id, char *buf, size_t len)
{
    const mbedtls_ssl_ciphersuite_t *info = mbedtls_ssl_ciphersuite_from_id(id);
    if (info != NULL && (id >> 8) != 0x13) { /* TLS 1.3 suites: OpenSSL uses the IANA name */
        openssl_from_mbedtls(SUITE_NAME(info), buf, len);
        return;
    }
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        if (foreign[i].id == id) {
            snprintf(buf, len, "%s", foreign[i].name);
            return;
        }
    }
    snprintf(buf, len, "0x%04X", (unsigned)id);
}

static bool is_tls13_suite(int id)
{
    return (id >> 8) == 0x13;
}

/* A TLS 1.3 suite by its IANA / OpenSSL name, if this build has it. */
static int suite13_lookup(const char *tok)
{
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
        if (is_tls13_suite(foreign[i].id) && !strcasecmp(foreign[i].name, tok) &&
            mbedtls_ssl_ciphersuite_from_id(foreign[i].id))
            return foreign[i].id;
    return 0;
}

/* One configured name -> suite id, or 0 when this build has no such suite. */
static int suite_lookup(const char *tok)
{
    int id13 = suite13_lookup(tok);
    if (id13) return id13;
    char dashed[96];
    snprintf(dashed, sizeof dashed, "%s", tok);
    for (char *p = dashed; *p; p++)
        if (*p == '_') *p = '-';
    for (const int *id = mbedtls_ssl_list_ciphersuites(); *id != 0; id++) {
        const mbedtls_ssl_ciphersuite_t *info = mbedtls_ssl_ciphersuite_from_id(*id);
        if (info == NULL) continue;
        const char *name = SUITE_NAME(info);
        char ossl[96];
        openssl_from_mbedtls(name, ossl, sizeof ossl);
        if (!strcasecmp(name, dashed) || !strcasecmp(ossl, tok)) return *id;
    }
    return 0;
}

static int add_suite(int **arr, size_t *n, size_t *cap, int id)
{
    for (size_t i = 0; i < *n; i++)
        if ((*arr)[i] == id) return 0;
    if (*n + 2 > *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        int *na = realloc(*arr, ncap * sizeof **arr);
        if (na == NULL) return -1;
        *arr = na;
        *cap = ncap;
    }
    (*arr)[(*n)++] = id;
    (*arr)[*n] = 0;
    return 0;
}

/* The names in list (separated by ':', ',' or ' ') through lookup into arr;
 * a name lookup does not know is a configuration error naming it, then hint. */
static int add_named(const char *list, const char *key, int (*lookup)(const char *),
                     const char *what, const char *hint, int **arr, size_t *n, size_t *cap,
                     char *err, size_t errlen)
{
    char *copy = strdup(list);
    if (copy == NULL) return TLS_ERR_ALLOC;
    int rc = TLS_OK;
    for (char *save = NULL, *t = strtok_r(copy, ":, ", &save); t && rc == TLS_OK;
         t = strtok_r(NULL, ":, ", &save)) {
        int id = lookup(t);
        if (id == 0) {
            snprintf(err, errlen, "%s: unknown %scipher suite '%s' (%s)", key, what, t, hint);
            rc = TLS_ERR_CONFIG;
        } else if (add_suite(arr, n, cap, id) < 0) {
            rc = TLS_ERR_ALLOC;
        }
    }
    free(copy);
    return rc;
}

/* The end both parsers share: an empty list is an error too; on an error
 * arr is freed and err says why. */
static int parse_done(int rc, int *arr, size_t n, const char *key, int **out, char *err,
                      size_t errlen)
{
    if (rc == TLS_OK && n == 0) {
        snprintf(err, errlen, "%s: the list is empty", key);
        rc = TLS_ERR_CONFIG;
    }
    if (rc == TLS_ERR_ALLOC) snprintf(err, errlen, "out of memory");
    if (rc != TLS_OK) {
        free(arr);
        return rc;
    }
    *out = arr;
    return TLS_OK;
}

/* Builds the 0-terminated id list for mbedtls_ssl_conf_ciphersuites(). */
int tls_suites_parse(const char *list, const char *key, int min_minor, int **out, char *err,
                     size_t errlen)
{
    int *arr = NULL;
    size_t n = 0, cap = 0;
    int rc = TLS_OK;
    *out = NULL;
    if (list == NULL || *list == '\0') {
        for (int i = 0; rc == TLS_OK && default_suites[i]; i++) {
            const mbedtls_ssl_ciphersuite_t *info =
                mbedtls_ssl_ciphersuite_from_string(default_suites[i]);
            if (info && add_suite(&arr, &n, &cap, SUITE_ID(info)) < 0) rc = TLS_ERR_ALLOC;
        }
        for (int i = 0; rc == TLS_OK && min_minor < TLS_V12 && tls11_suites[i]; i++) {
            const mbedtls_ssl_ciphersuite_t *info =
                mbedtls_ssl_ciphersuite_from_string(tls11_suites[i]);
            if (info && add_suite(&arr, &n, &cap, SUITE_ID(info)) < 0) rc = TLS_ERR_ALLOC;
        }
    } else {
        rc = add_named(list, key, suite_lookup, "",
                       "use names like ECDHE-ECDSA-AES128-GCM-SHA256 or "
                       "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256; OpenSSL keywords such as HIGH "
                       "or !aNULL are not supported",
                       &arr, &n, &cap, err, errlen);
    }
    return parse_done(rc, arr, n, key, out, err, errlen);
}

/* TLS 1.3 suites (ciphers_tls1.3): a ':'-separated list of IANA names,
 * default AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305. */
int tls_suites13_parse(const char *list, const char *key, int **out, char *err, size_t errlen)
{
    static const int defaults[] = {0x1301, 0x1302, 0x1303, 0};
    int *arr = NULL;
    size_t n = 0, cap = 0;
    int rc = TLS_OK;
    *out = NULL;
    if (list == NULL || *list == '\0') {
        for (int i = 0; rc == TLS_OK && defaults[i]; i++)
            if (mbedtls_ssl_ciphersuite_from_id(defaults[i]) &&
                add_suite(&arr, &n, &cap, defaults[i]) < 0)
                rc = TLS_ERR_ALLOC;
    } else {
        rc = add_named(list, key, suite13_lookup, "TLS 1.3 ",
                       "this build has TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "
                       "TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256",
                       &arr, &n, &cap, err, errlen);
    }
    return parse_done(rc, arr, n, key, out, err, errlen);
}

/* a then b, 0-terminated (NULL when out of memory); either may be NULL. */
int *tls_suites_join(const int *a, const int *b)
{
    size_t na = 0, nb = 0;
    while (a && a[na])
        na++;
    while (b && b[nb])
        nb++;
    int *out = malloc((na + nb + 1) * sizeof *out);
    if (out == NULL) return NULL;
    if (na) memcpy(out, a, na * sizeof *out);
    if (nb) memcpy(out + na, b, nb * sizeof *out);
    out[na + nb] = 0;
    return out;
}

/* "A, B, C (+N more)" in OpenSSL names, for diagnostics. */
void tls_suites_format(const int *suites, size_t max, char *buf, size_t len)
{
    size_t pos = 0, i = 0;
    buf[0] = '\0';
    for (; suites[i] != 0; i++) {
        if (i == max) break;
        char name[64];
        tls_suite_openssl_name(suites[i], name, sizeof name);
        if (i) append(buf, len, &pos, ", ");
        append(buf, len, &pos, name);
    }
    size_t more = 0;
    while (suites[i + more] != 0)
        more++;
    if (more) {
        char tail[32];
        snprintf(tail, sizeof tail, " (+%zu more)", more);
        append(buf, len, &pos, tail);
    }
}
