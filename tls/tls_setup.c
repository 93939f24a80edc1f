/*
 * tls_setup.c -- server (per listener) and client contexts: everything that
 * is loaded once and shared by many connections.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls_int.h"

/* ECDHE groups, most preferred first. mbedTLS 2.28's default list starts with
 * secp521r1, several times the cost of P-256 per handshake, and its server
 * picks by its own order. P-256 comes first: with Debian's build
 * (MBEDTLS_ECP_NIST_OPTIM on, FIXED_POINT_OPTIM off) one ECDHE costs about
 * 1.58 ms on P-256 against 1.80 ms on X25519 (measured here, keygen + shared
 * secret), and it matches the lab's P-256 certificates. */
static void conf_curves(mbedtls_ssl_config *conf)
{
#if MBEDTLS_VERSION_NUMBER < 0x03000000
    static const mbedtls_ecp_group_id curves[] = {
        MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP384R1,
        MBEDTLS_ECP_DP_SECP521R1, MBEDTLS_ECP_DP_NONE,
    };
    mbedtls_ssl_conf_curves(conf, curves);
#else
    static const uint16_t groups[] = {
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1, MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1,
        MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
    };
    mbedtls_ssl_conf_groups(conf, groups);
#endif
}

#define DEFAULT_CACHE_SIZE 10000
#define DEFAULT_SESSION_TIMEOUT 86400
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

static void say(tls_log_fn log, void *ud, int level, const char *line)
{
    if (log) log(ud, level, line);
}

static const char *key_kind(const mbedtls_pk_context *pk)
{
    switch (mbedtls_pk_get_type(pk)) {
    case MBEDTLS_PK_RSA:
        return "RSA";
    case MBEDTLS_PK_ECKEY:
    case MBEDTLS_PK_ECDSA:
        return "EC";
    default:
        return "unusual";
    }
}

/* A suite list that cannot work with the server's key makes every handshake
 * fail with "no cipher suite in common"; say so at startup instead. */
static int check_suites_fit_key(const int *suites, const mbedtls_pk_context *key, char *err,
                                size_t errlen)
{
    for (const int *id = suites; *id; id++) {
        const mbedtls_ssl_ciphersuite_t *info = mbedtls_ssl_ciphersuite_from_id(*id);
        if (info == NULL) continue;
        mbedtls_pk_type_t alg = mbedtls_ssl_get_ciphersuite_sig_pk_alg(info);
        if (alg != MBEDTLS_PK_NONE && mbedtls_pk_can_do(key, alg)) return TLS_OK;
    }
    char list[256];
    tls_suites_format(suites, 6, list, sizeof list);
    snprintf(err, errlen,
             "ciphers: none of %s can be used with the %s key in keyfile; "
             "for an %s key list %s suites",
             list, key_kind(key), key_kind(key),
             strcmp(key_kind(key), "EC") == 0 ? "ECDHE-ECDSA-..." : "ECDHE-RSA-...");
    return TLS_ERR_CONFIG;
}

static void warn_validity(const mbedtls_x509_crt *crt, const char *path, tls_log_fn log, void *ud)
{
    char when[32], line[512];
    if (mbedtls_x509_time_is_past(&crt->valid_to)) {
        tls_time_format(&crt->valid_to, when, sizeof when);
        snprintf(line, sizeof line,
                 "certfile %s: the certificate expired on %s; clients will refuse it", path, when);
        say(log, ud, 1, line);
    } else if (mbedtls_x509_time_is_future(&crt->valid_from)) {
        tls_time_format(&crt->valid_from, when, sizeof when);
        snprintf(line, sizeof line,
                 "certfile %s: the certificate is not valid before %s; "
                 "clients will refuse it (is the clock right?)",
                 path, when);
        say(log, ud, 1, line);
    }
}

int tls_server_setup(tls_server **out, const tls_server_opts *o, tls_log_fn log, void *log_ud,
                     char *err, size_t errlen)
{
    char dummy[2];
    int ret;
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    *out = NULL;
    if (tls_rng_ready(err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
    if (o->certfile == NULL || *o->certfile == '\0') {
        snprintf(err, errlen, "certfile is required for a TLS listener");
        return TLS_ERR_CONFIG;
    }
    if (o->keyfile == NULL || *o->keyfile == '\0') {
        snprintf(err, errlen, "keyfile is required for a TLS listener (certfile %s)", o->certfile);
        return TLS_ERR_CONFIG;
    }

    tls_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_x509_crt_init(&s->cert);
    mbedtls_pk_init(&s->key);
    mbedtls_x509_crt_init(&s->ca);
    mbedtls_x509_crl_init(&s->crl);
    mbedtls_ssl_cache_init(&s->cache);
    mbedtls_ssl_ticket_init(&s->ticket);
    s->log = log;
    s->log_ud = log_ud;
    s->trace = o->trace;
    s->require_cert = o->require_certificate;

    ret = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail_alloc;
    }
    mbedtls_ssl_conf_rng(&s->conf, tls_rng, NULL);
    mbedtls_ssl_conf_renegotiation(&s->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    conf_curves(&s->conf);

    if (tls_parse_version(o->tls_version, "tls_version", &s->min_minor, err, errlen) != TLS_OK)
        goto fail;
    tls_set_versions(&s->conf, s->min_minor, TLS_V12);

    if (tls_load_cert(&s->cert, "certfile", o->certfile, err, errlen) != TLS_OK ||
        tls_load_key(&s->key, &s->cert, "keyfile", o->keyfile, o->certfile, err, errlen) != TLS_OK)
        goto fail;
    warn_validity(&s->cert, o->certfile, log, log_ud);
    if ((ret = mbedtls_ssl_conf_own_cert(&s->conf, &s->cert, &s->key)) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail_alloc;
    }

    if ((o->cafile && *o->cafile) || (o->capath && *o->capath)) {
        if (tls_load_ca(&s->ca, o->cafile, o->capath, err, errlen) != TLS_OK) goto fail;
        s->have_ca = true;
    }
    if (o->crlfile && *o->crlfile) {
        if (!s->have_ca) {
            snprintf(err, errlen,
                     "crlfile %s: needs cafile or capath (a CRL only matters when "
                     "client certificates are verified)",
                     o->crlfile);
            goto fail;
        }
        FILE *f = fopen(o->crlfile, "rb");
        if (f == NULL) {
            snprintf(err, errlen, "crlfile %s: cannot open: %s", o->crlfile, strerror(errno));
            goto fail;
        }
        fclose(f);
        if ((ret = mbedtls_x509_crl_parse_file(&s->crl, o->crlfile)) != 0) {
            char why[200];
            tls_strerror(ret, why, sizeof why);
            snprintf(err, errlen, "crlfile %s: not a CRL: %s", o->crlfile, why);
            goto fail;
        }
        s->have_crl = true;
    }
    if (!s->have_ca && o->require_certificate) {
        snprintf(err, errlen,
                 "require_certificate true needs cafile or capath to verify client certificates");
        goto fail;
    }
    s->request_cert = s->have_ca && (o->require_certificate || o->request_certificate);
    /* We ask for a client certificate only when told to (Mosquitto: a CA
     * alone asks for nothing); only require_certificate makes a missing
     * certificate fatal. A presented but invalid certificate is refused
     * either way (see tls_conn.c), as OpenSSL-based brokers do. */
    if (s->request_cert) {
        mbedtls_ssl_conf_authmode(&s->conf, o->require_certificate ? MBEDTLS_SSL_VERIFY_REQUIRED
                                                                   : MBEDTLS_SSL_VERIFY_OPTIONAL);
        mbedtls_ssl_conf_ca_chain(&s->conf, &s->ca, s->have_crl ? &s->crl : NULL);
    } else {
        mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_NONE);
    }

    if ((ret = tls_suites_parse(o->ciphers, s->min_minor, &s->suites, err, errlen)) != TLS_OK) {
        if (ret == TLS_ERR_ALLOC) goto fail_alloc;
        goto fail;
    }
    if (check_suites_fit_key(s->suites, &s->key, err, errlen) != TLS_OK) goto fail;
    mbedtls_ssl_conf_ciphersuites(&s->conf, s->suites);

    unsigned timeout = o->session_timeout ? o->session_timeout : DEFAULT_SESSION_TIMEOUT;
    unsigned cache_size = o->session_cache_size ? o->session_cache_size : DEFAULT_CACHE_SIZE;
    mbedtls_ssl_cache_set_max_entries(&s->cache, (int)cache_size);
    mbedtls_ssl_cache_set_timeout(&s->cache, (int)timeout);
    mbedtls_ssl_conf_session_cache(&s->conf, &s->cache, mbedtls_ssl_cache_get,
                                   mbedtls_ssl_cache_set);
    /* The ticket module rotates its two keys itself: a key encrypts new
     * tickets for `timeout` seconds, then decrypts only, then is replaced. */
    ret = mbedtls_ssl_ticket_setup(&s->ticket, tls_rng, NULL, MBEDTLS_CIPHER_AES_256_GCM,
                                   (uint32_t)timeout);
    if (ret != 0) {
        char why[200];
        tls_strerror(ret, why, sizeof why);
        snprintf(err, errlen, "session tickets: %s", why);
        goto fail;
    }
    mbedtls_ssl_conf_session_tickets_cb(&s->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &s->ticket);

    if (tls_keylog_open(&s->keylog, o->keylog_file, err, errlen) != TLS_OK) goto fail;
    if (s->keylog.f) {
        char line[512];
        snprintf(line, sizeof line,
                 "tls_keylog_file %s: anyone who can read this file can decrypt the TLS traffic",
                 o->keylog_file);
        say(log, log_ud, 1, line);
        tls_keylog_attach(&s->conf, NULL, &s->keylog);
    }
    *out = s;
    return TLS_OK;

fail_alloc:
    tls_server_free(s);
    return TLS_ERR_ALLOC;
fail:
    tls_server_free(s);
    return TLS_ERR_CONFIG;
}

void tls_server_free(tls_server *s)
{
    if (s == NULL) return;
    mbedtls_ssl_config_free(&s->conf);
    mbedtls_x509_crt_free(&s->cert);
    mbedtls_pk_free(&s->key);
    mbedtls_x509_crt_free(&s->ca);
    mbedtls_x509_crl_free(&s->crl);
    mbedtls_ssl_cache_free(&s->cache);
    mbedtls_ssl_ticket_free(&s->ticket);
    tls_keylog_close(&s->keylog);
    free(s->suites);
    free(s);
}

/* Nothing to do on a timer with mbedTLS 2.28: ticket keys rotate inside
 * mbedtls_ssl_ticket_write/parse when their lifetime is up, and the session
 * cache drops expired entries when it looks them up or needs room. Kept so
 * the owner's contract does not change if a future backend needs it. */
void tls_server_tick(tls_server *srv, time_t now)
{
    (void)srv;
    (void)now;
}

int tls_client_setup(tls_client **out, const tls_client_opts *o, char *err, size_t errlen)
{
    char dummy[2];
    int ret;
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    *out = NULL;
    if (tls_rng_ready(err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
    tls_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_x509_crt_init(&c->cert);
    mbedtls_pk_init(&c->key);
    mbedtls_ssl_session_init(&c->saved);
    c->insecure = o->insecure;

    ret = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail_alloc;
    }
    mbedtls_ssl_conf_rng(&c->conf, tls_rng, NULL);
    mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    conf_curves(&c->conf);
    mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);

    if (tls_parse_version(o->tls_version, "tls-version", &c->minor, err, errlen) != TLS_OK)
        goto fail;
    tls_set_versions(&c->conf, c->minor, c->minor);
    if ((ret = tls_suites_parse(o->ciphers, c->minor, &c->suites, err, errlen)) != TLS_OK) {
        if (ret == TLS_ERR_ALLOC) goto fail_alloc;
        goto fail;
    }
    mbedtls_ssl_conf_ciphersuites(&c->conf, c->suites);

    if ((o->cafile && *o->cafile) || (o->capath && *o->capath)) {
        if (tls_load_ca(&c->ca, o->cafile, o->capath, err, errlen) != TLS_OK) goto fail;
        c->have_ca = true;
    } else if (!o->insecure) {
        if (tls_load_ca(&c->ca, SYSTEM_CA_BUNDLE, NULL, err, errlen) != TLS_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "no cafile/capath given and the system CA bundle is unusable: %s",
                     why);
            goto fail;
        }
        c->have_ca = true;
    }
    /* --insecure skips the host name check only; with no trust anchor at all
     * there is nothing to verify the chain against, so verification is off
     * and tls_conn_describe says so. */
    c->verify = c->have_ca;
    mbedtls_ssl_conf_authmode(&c->conf,
                              c->verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
    if (c->have_ca) mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);

    bool has_cert = o->certfile && *o->certfile, has_key = o->keyfile && *o->keyfile;
    if (has_cert != has_key) {
        snprintf(err, errlen,
                 has_cert ? "cert %s: a client certificate needs its key (--key)"
                          : "key %s: a client key needs its certificate (--cert)",
                 has_cert ? o->certfile : o->keyfile);
        goto fail;
    }
    if (has_cert) {
        if (tls_load_cert(&c->cert, "cert", o->certfile, err, errlen) != TLS_OK ||
            tls_load_key(&c->key, &c->cert, "key", o->keyfile, o->certfile, err, errlen) != TLS_OK)
            goto fail;
        if (mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail_alloc;
        }
        c->have_cert = true;
    }
    if (o->server_name && (c->server_name = strdup(o->server_name)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail_alloc;
    }
    if (tls_keylog_open(&c->keylog, o->keylog_file, err, errlen) != TLS_OK) goto fail;
    tls_keylog_attach(&c->conf, NULL, &c->keylog);
    *out = c;
    return TLS_OK;

fail_alloc:
    tls_client_free(c);
    return TLS_ERR_ALLOC;
fail:
    tls_client_free(c);
    return TLS_ERR_CONFIG;
}

void tls_client_free(tls_client *c)
{
    if (c == NULL) return;
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_x509_crt_free(&c->cert);
    mbedtls_pk_free(&c->key);
    mbedtls_ssl_session_free(&c->saved);
    tls_keylog_close(&c->keylog);
    free(c->suites);
    free(c->server_name);
    free(c);
}

void tls_client_set_resume(tls_client *c, enum tls_resume mode)
{
    if (c == NULL) return;
    c->resume = (int)mode;
    mbedtls_ssl_conf_session_tickets(&c->conf, mode == TLS_RESUME_TICKET
                                                   ? MBEDTLS_SSL_SESSION_TICKETS_ENABLED
                                                   : MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
    if (mode != TLS_RESUME_TICKET && c->have_saved) {
        /* a saved ticket would still be offered: start from a clean slate */
        mbedtls_ssl_session_free(&c->saved);
        mbedtls_ssl_session_init(&c->saved);
        c->have_saved = false;
    }
}

void tls_client_set_log(tls_client *c, tls_log_fn log, void *log_ud, bool trace)
{
    if (c == NULL) return;
    c->log = log;
    c->log_ud = log_ud;
    c->trace = trace;
}
