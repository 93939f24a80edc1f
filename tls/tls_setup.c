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
 * picks by its own order. With 2.28 (Debian 12: MBEDTLS_ECP_NIST_OPTIM on,
 * no Everest) P-256 comes first: one ECDHE costs about 1.58 ms on P-256
 * against 1.80 ms on X25519. With our 3.6 build X25519 comes first, by
 * instructions per server handshake (valgrind --tool=callgrind on
 * `secbench --crypto-bound`, see docs/performance.md): TLS 1.2 full
 * 6.5 M (X25519 through Everest) against 15.5 M (P-256); TLS 1.3 full
 * 13.3 M against 15.7 M and resumed (psk_dhe_ke) 9.7 M against 12.1 M.
 * A TLS 1.2 server picks by this order; a TLS 1.3 server takes the client's
 * first key share it supports, so there the order is our clients' offer. */
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
        MBEDTLS_SSL_IANA_TLS_GROUP_X25519,    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
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
static int check_suites_fit_key(const int *suites, const mbedtls_pk_context *key,
                                const char *const *nm, char *err, size_t errlen)
{
    for (const int *id = suites; *id; id++) {
        const mbedtls_ssl_ciphersuite_t *info = mbedtls_ssl_ciphersuite_from_id(*id);
        if (info == NULL) continue;
        mbedtls_pk_type_t alg = (mbedtls_pk_type_t)tls_ad_suite_sig_pk(info);
        if (alg != MBEDTLS_PK_NONE && mbedtls_pk_can_do(key, alg)) return TLS_OK;
    }
    char list[256];
    tls_suites_format(suites, 6, list, sizeof list);
    snprintf(err, errlen,
             "%s: none of %s can be used with the %s key in %s; "
             "for an %s key list %s suites",
             tls_opt_name(nm, TLS_OPT_CIPHERS), list, key_kind(key),
             tls_opt_name(nm, TLS_OPT_KEYFILE), key_kind(key),
             strcmp(key_kind(key), "EC") == 0 ? "ECDHE-ECDSA-..." : "ECDHE-RSA-...");
    return TLS_ERR_CONFIG;
}

static void warn_validity(const mbedtls_x509_crt *crt, const char *key, const char *path,
                          tls_log_fn log, void *ud)
{
    char when[32], line[512];
    if (mbedtls_x509_time_is_past(&crt->valid_to)) {
        tls_time_format(&crt->valid_to, when, sizeof when);
        snprintf(line, sizeof line, "%s %s: the certificate expired on %s; clients will refuse it",
                 key, path, when);
        say(log, ud, 1, line);
    } else if (mbedtls_x509_time_is_future(&crt->valid_from)) {
        tls_time_format(&crt->valid_from, when, sizeof when);
        snprintf(line, sizeof line,
                 "%s %s: the certificate is not valid before %s; "
                 "clients will refuse it (is the clock right?)",
                 key, path, when);
        say(log, ud, 1, line);
    }
}

/* A cache entry belongs to the listener, not to the connection whose
 * handshake stores it: charge it to nobody (tls_mem.c). */
#if MBEDTLS_VERSION_MAJOR < 3
static int cache_set(void *data, const mbedtls_ssl_session *session)
{
    tls_mem_account *prev = tls_mem_scope(NULL);
    int ret = mbedtls_ssl_cache_set(data, session);
    tls_mem_scope(prev);
    return ret;
}
#else
static int cache_set(void *data, const unsigned char *id, size_t id_len,
                     const mbedtls_ssl_session *session)
{
    tls_mem_account *prev = tls_mem_scope(NULL);
    int ret = mbedtls_ssl_cache_set(data, id, id_len, session);
    tls_mem_scope(prev);
    return ret;
}
#endif

/* The suite list for versions min..max: the TLS 1.3 suites (ciphers13)
 * first, then the TLS 1.2 ones (ciphers). *only12 gets the latter alone. */
static int suites_for(const char *ciphers, const char *ciphers13, const char *const *nm, int min,
                      int max, int **out, int **only12, char *err, size_t errlen)
{
    int *l12 = NULL, *l13 = NULL, ret = TLS_OK;
    *out = *only12 = NULL;
    if (min <= TLS_V12)
        ret = tls_suites_parse(ciphers, tls_opt_name(nm, TLS_OPT_CIPHERS), min, &l12, err, errlen);
    if (ret == TLS_OK && max >= TLS_V13)
        ret = tls_suites13_parse(ciphers13, tls_opt_name(nm, TLS_OPT_CIPHERS13), &l13, err, errlen);
    if (ret == TLS_OK && (*out = tls_suites_join(l13, l12)) == NULL) {
        snprintf(err, errlen, "out of memory");
        ret = TLS_ERR_ALLOC;
    }
    free(l13);
    if (ret == TLS_OK)
        *only12 = l12;
    else
        free(l12);
    return ret;
}

static int server_suites(tls_server *s, const tls_server_opts *o, char *err, size_t errlen)
{
    int *l12 = NULL;
    int ret = suites_for(o->ciphers, o->ciphers13, o->opt_names, s->min_minor, TLS_MAX_MINOR,
                         &s->suites, &l12, err, errlen);
    if (ret == TLS_OK && l12 && check_suites_fit_key(l12, &s->key, o->opt_names, err, errlen))
        ret = TLS_ERR_CONFIG;
    free(l12);
    if (ret != TLS_OK) return ret;
    mbedtls_ssl_conf_ciphersuites(&s->conf, s->suites);
    return TLS_OK;
}

static int client_suites(tls_client *c, const tls_client_opts *o, char *err, size_t errlen)
{
    int *l12 = NULL;
    tls_set_versions(&c->conf, c->minor, c->minor);
    int ret = suites_for(o->ciphers, o->ciphers13, o->opt_names, c->minor, c->minor, &c->suites,
                         &l12, err, errlen);
    free(l12);
    if (ret != TLS_OK) return ret;
    mbedtls_ssl_conf_ciphersuites(&c->conf, c->suites);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) && defined(MBEDTLS_SSL_SESSION_TICKETS)
    /* TLS 1.3 tickets arrive after the handshake: have mbedtls_ssl_read
     * report them so tls_conn_read saves the session for resumption */
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        &c->conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
    return TLS_OK;
}

/* Defaults every endpoint shares: RNG, no renegotiation, our group order. */
static int conf_base(mbedtls_ssl_config *conf, int endpoint)
{
    int ret = mbedtls_ssl_config_defaults(conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) return TLS_ERR_ALLOC;
    mbedtls_ssl_conf_rng(conf, tls_rng, NULL);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    conf_curves(conf);
    return TLS_OK;
}

static tls_server *server_new(const tls_server_opts *o, tls_log_fn log, void *log_ud)
{
    tls_server *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_x509_crt_init(&s->cert);
    mbedtls_pk_init(&s->key);
    mbedtls_x509_crt_init(&s->ca);
    mbedtls_x509_crl_init(&s->crl);
    mbedtls_ssl_cache_init(&s->cache);
    mbedtls_ssl_ticket_init(&s->ticket);
    mbedtls_gcm_init(&s->id_gcm);
    s->log = log;
    s->log_ud = log_ud;
    s->trace = o->trace;
    s->require_cert = o->require_certificate;
    s->names = o->opt_names;
    return s;
}

/* Version range, certificate and key. */
static int server_identity(tls_server *s, const tls_server_opts *o, char *err, size_t errlen)
{
    const char *const *nm = o->opt_names;
    if (tls_parse_version(o->tls_version, tls_opt_name(nm, TLS_OPT_VERSION), &s->min_minor, err,
                          errlen) != TLS_OK)
        return TLS_ERR_CONFIG;
    tls_set_versions(&s->conf, s->min_minor, TLS_MAX_MINOR);
    if (tls_load_cert(&s->cert, tls_opt_name(nm, TLS_OPT_CERTFILE), o->certfile, err, errlen) !=
            TLS_OK ||
        tls_load_key(&s->key, &s->cert, tls_opt_name(nm, TLS_OPT_KEYFILE), o->keyfile, o->certfile,
                     err, errlen) != TLS_OK)
        return TLS_ERR_CONFIG;
    warn_validity(&s->cert, tls_opt_name(nm, TLS_OPT_CERTFILE), o->certfile, s->log, s->log_ud);
    if (mbedtls_ssl_conf_own_cert(&s->conf, &s->cert, &s->key) != 0) {
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    return TLS_OK;
}

static int server_crl(tls_server *s, const tls_server_opts *o, char *err, size_t errlen)
{
    const char *const *nm = o->opt_names;
    const char *key = tls_opt_name(nm, TLS_OPT_CRLFILE);
    if (!s->have_ca) {
        snprintf(err, errlen,
                 "%s %s: needs %s or %s (a CRL only matters when client certificates are "
                 "verified)",
                 key, o->crlfile, tls_opt_name(nm, TLS_OPT_CAFILE),
                 tls_opt_name(nm, TLS_OPT_CAPATH));
        return TLS_ERR_CONFIG;
    }
    FILE *f = fopen(o->crlfile, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: cannot open: %s", key, o->crlfile, strerror(errno));
        return TLS_ERR_CONFIG;
    }
    fclose(f);
    int ret = mbedtls_x509_crl_parse_file(&s->crl, o->crlfile);
    if (ret != 0) {
        char why[200];
        tls_strerror(ret, why, sizeof why);
        snprintf(err, errlen, "%s %s: not a CRL: %s", key, o->crlfile, why);
        return TLS_ERR_CONFIG;
    }
    s->have_crl = true;
    return TLS_OK;
}

/* CA, CRL and the client-certificate policy. */
static int server_trust(tls_server *s, const tls_server_opts *o, char *err, size_t errlen)
{
    const char *const *nm = o->opt_names;
    if ((o->cafile && *o->cafile) || (o->capath && *o->capath)) {
        if (tls_load_ca(&s->ca, o->cafile, o->capath, nm, err, errlen) != TLS_OK)
            return TLS_ERR_CONFIG;
        s->have_ca = true;
    }
    if (o->crlfile && *o->crlfile && server_crl(s, o, err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
    if (!s->have_ca && o->require_certificate) {
        snprintf(err, errlen, "%s needs %s or %s to verify client certificates",
                 tls_opt_name(nm, TLS_OPT_REQUIRE_CERT), tls_opt_name(nm, TLS_OPT_CAFILE),
                 tls_opt_name(nm, TLS_OPT_CAPATH));
        return TLS_ERR_CONFIG;
    }
    s->request_cert = s->have_ca && (o->require_certificate || o->request_certificate);
    /* We ask for a client certificate only when told to (Mosquitto: a CA
     * alone asks for nothing); only require_certificate makes a missing
     * certificate fatal. A presented but invalid certificate is refused
     * either way (see tls_conn.c), as OpenSSL-based brokers do. */
    if (s->request_cert) {
        int mode =
            o->require_certificate ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_OPTIONAL;
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
        mode = MBEDTLS_SSL_VERIFY_OPTIONAL; /* a missing certificate is refused in tls_conn.c */
#endif
        mbedtls_ssl_conf_authmode(&s->conf, mode);
        mbedtls_ssl_conf_ca_chain(&s->conf, &s->ca, s->have_crl ? &s->crl : NULL);
    } else {
        mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_NONE);
    }
    return TLS_OK;
}

/* Cipher suites, session cache and tickets. */
static int server_sessions(tls_server *s, const tls_server_opts *o, char *err, size_t errlen)
{
    int ret = server_suites(s, o, err, errlen);
    if (ret != TLS_OK) return ret;
    unsigned timeout = o->session_timeout ? o->session_timeout : DEFAULT_SESSION_TIMEOUT;
    unsigned cache_size = o->session_cache_size ? o->session_cache_size : DEFAULT_CACHE_SIZE;
    mbedtls_ssl_cache_set_max_entries(&s->cache, (int)cache_size);
    mbedtls_ssl_cache_set_timeout(&s->cache, (int)timeout);
    mbedtls_ssl_conf_session_cache(&s->conf, &s->cache, mbedtls_ssl_cache_get, cache_set);
    /* The ticket module rotates its two keys itself: a key encrypts new
     * tickets for `timeout` seconds, then decrypts only, then is replaced. */
    ret = mbedtls_ssl_ticket_setup(&s->ticket, tls_rng, NULL, MBEDTLS_CIPHER_AES_256_GCM,
                                   (uint32_t)timeout);
    if (ret != 0) {
        char why[200];
        tls_strerror(ret, why, sizeof why);
        snprintf(err, errlen, "session tickets: %s", why);
        return TLS_ERR_CONFIG;
    }
    if (!s->request_cert) {
        mbedtls_ssl_conf_session_tickets_cb(&s->conf, mbedtls_ssl_ticket_write,
                                            mbedtls_ssl_ticket_parse, &s->ticket);
        return TLS_OK;
    }
    /* mbedTLS 3.6's TLS 1.3 tickets do not carry the client certificate:
     * where client certificates are asked for, ours carry the verified
     * identity beside mbedTLS's ticket (tls_ticket.c) */
    ret = tls_ticket_setup(s);
    if (ret != 0) {
        char why[200];
        tls_strerror(ret, why, sizeof why);
        snprintf(err, errlen, "session tickets: %s", why);
        return TLS_ERR_CONFIG;
    }
    mbedtls_ssl_conf_session_tickets_cb(&s->conf, tls_ticket_write, tls_ticket_parse, s);
    return TLS_OK;
}

static int server_keylog(tls_server *s, const tls_server_opts *o, char *err, size_t errlen)
{
    const char *key = tls_opt_name(o->opt_names, TLS_OPT_KEYLOG);
    if (tls_keylog_open(&s->keylog, o->keylog_file, key, err, errlen) != TLS_OK)
        return TLS_ERR_CONFIG;
    if (s->keylog.f) {
        char line[512];
        snprintf(line, sizeof line,
                 "%s %s: anyone who can read this file can decrypt the TLS traffic", key,
                 o->keylog_file);
        say(s->log, s->log_ud, 1, line);
        tls_keylog_attach(&s->conf, NULL, &s->keylog);
    }
    return TLS_OK;
}

static int check_required(const tls_server_opts *o, char *err, size_t errlen)
{
    const char *const *nm = o->opt_names;
    if (o->certfile == NULL || *o->certfile == '\0') {
        snprintf(err, errlen, "%s is required for a TLS listener",
                 tls_opt_name(nm, TLS_OPT_CERTFILE));
        return TLS_ERR_CONFIG;
    }
    if (o->keyfile == NULL || *o->keyfile == '\0') {
        snprintf(err, errlen, "%s is required for a TLS listener (%s %s)",
                 tls_opt_name(nm, TLS_OPT_KEYFILE), tls_opt_name(nm, TLS_OPT_CERTFILE),
                 o->certfile);
        return TLS_ERR_CONFIG;
    }
    return TLS_OK;
}

int tls_server_setup(tls_server **out, const tls_server_opts *o, tls_log_fn log, void *log_ud,
                     char *err, size_t errlen)
{
    char dummy[2];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    *out = NULL;
    if (tls_rng_ready(err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
    if (check_required(o, err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
    tls_server *s = server_new(o, log, log_ud);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    int ret = conf_base(&s->conf, MBEDTLS_SSL_IS_SERVER);
    if (ret != TLS_OK) snprintf(err, errlen, "out of memory");
    if (ret == TLS_OK) ret = server_identity(s, o, err, errlen);
    if (ret == TLS_OK) ret = server_trust(s, o, err, errlen);
    if (ret == TLS_OK) ret = server_sessions(s, o, err, errlen);
    if (ret == TLS_OK) ret = server_keylog(s, o, err, errlen);
    if (ret != TLS_OK) {
        tls_server_free(s);
        return ret == TLS_ERR_ALLOC ? TLS_ERR_ALLOC : TLS_ERR_CONFIG;
    }
    *out = s;
    return TLS_OK;
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
    tls_ticket_free(s);
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

static tls_client *client_new(const tls_client_opts *o)
{
    tls_client *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_x509_crt_init(&c->cert);
    mbedtls_pk_init(&c->key);
    mbedtls_ssl_session_init(&c->saved);
    c->insecure = o->insecure;
    c->names = o->opt_names;
    return c;
}

/* Trust anchors: the given CA, else the system bundle (unless --insecure). */
static int client_trust(tls_client *c, const tls_client_opts *o, char *err, size_t errlen)
{
    const char *const *nm = o->opt_names;
    if ((o->cafile && *o->cafile) || (o->capath && *o->capath)) {
        if (tls_load_ca(&c->ca, o->cafile, o->capath, nm, err, errlen) != TLS_OK)
            return TLS_ERR_CONFIG;
        c->have_ca = true;
    } else if (!o->insecure) {
        if (tls_load_ca(&c->ca, SYSTEM_CA_BUNDLE, NULL, nm, err, errlen) != TLS_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "no %s/%s given and the system CA bundle is unusable: %s",
                     tls_opt_name(nm, TLS_OPT_CAFILE), tls_opt_name(nm, TLS_OPT_CAPATH), why);
            return TLS_ERR_CONFIG;
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
    return TLS_OK;
}

/* Our own certificate for mutual authentication, if any. */
static int client_identity(tls_client *c, const tls_client_opts *o, char *err, size_t errlen)
{
    const char *const *nm = o->opt_names;
    const char *ck = tls_opt_name(nm, TLS_OPT_CERTFILE), *kk = tls_opt_name(nm, TLS_OPT_KEYFILE);
    bool has_cert = o->certfile && *o->certfile, has_key = o->keyfile && *o->keyfile;
    if (has_cert != has_key) {
        if (has_cert)
            snprintf(err, errlen, "%s %s: a client certificate needs its key (%s)", ck, o->certfile,
                     kk);
        else
            snprintf(err, errlen, "%s %s: a client key needs its certificate (%s)", kk, o->keyfile,
                     ck);
        return TLS_ERR_CONFIG;
    }
    if (!has_cert) return TLS_OK;
    if (tls_load_cert(&c->cert, ck, o->certfile, err, errlen) != TLS_OK ||
        tls_load_key(&c->key, &c->cert, kk, o->keyfile, o->certfile, err, errlen) != TLS_OK)
        return TLS_ERR_CONFIG;
    if (mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key) != 0) {
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    c->have_cert = true;
    return TLS_OK;
}

/* Version, suites, name, key log. */
static int client_params(tls_client *c, const tls_client_opts *o, char *err, size_t errlen)
{
    const char *const *nm = o->opt_names;
    mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    if (tls_parse_version(o->tls_version, tls_opt_name(nm, TLS_OPT_VERSION), &c->minor, err,
                          errlen) != TLS_OK)
        return TLS_ERR_CONFIG;
    int ret = client_suites(c, o, err, errlen);
    if (ret != TLS_OK) return ret;
    if (o->server_name && (c->server_name = strdup(o->server_name)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    if (tls_keylog_open(&c->keylog, o->keylog_file, tls_opt_name(nm, TLS_OPT_KEYLOG), err,
                        errlen) != TLS_OK)
        return TLS_ERR_CONFIG;
    tls_keylog_attach(&c->conf, NULL, &c->keylog);
    return TLS_OK;
}

int tls_client_setup(tls_client **out, const tls_client_opts *o, char *err, size_t errlen)
{
    char dummy[2];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    *out = NULL;
    if (tls_rng_ready(err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
    tls_client *c = client_new(o);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    int ret = conf_base(&c->conf, MBEDTLS_SSL_IS_CLIENT);
    if (ret != TLS_OK) snprintf(err, errlen, "out of memory");
    if (ret == TLS_OK) ret = client_params(c, o, err, errlen);
    if (ret == TLS_OK) ret = client_trust(c, o, err, errlen);
    if (ret == TLS_OK) ret = client_identity(c, o, err, errlen);
    if (ret != TLS_OK) {
        tls_client_free(c);
        return ret == TLS_ERR_ALLOC ? TLS_ERR_ALLOC : TLS_ERR_CONFIG;
    }
    *out = c;
    return TLS_OK;
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
