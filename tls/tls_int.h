/*
 * tls_int.h -- private to tls/: the structures behind the opaque handles in
 * tls.h and the helpers the files in tls/ share. Never included outside tls/.
 *
 * Written against mbedTLS 2.28 (TLS 1.2). Where mbedTLS 3.x renamed or hid a
 * field the TLS_PRIV() / #if MBEDTLS_VERSION_MAJOR guards keep the file
 * compiling there; 3.x is not tested.
 */
#ifndef SECBROKER_TLS_INT_H
#define SECBROKER_TLS_INT_H

#include <stdio.h>

#include "mbedtls/version.h"
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/pk.h"
#include "mbedtls/ssl.h"
#include "mbedtls/ssl_cache.h"
#include "mbedtls/ssl_ticket.h"
#include "mbedtls/x509_crl.h"
#include "mbedtls/x509_crt.h"
#if MBEDTLS_VERSION_MAJOR < 3
#include "mbedtls/ssl_internal.h"
#endif

#include "tls/tls.h"

/* Fields we read directly (ssl->state, ssl->in_msg, ...) are public in 2.28
 * and wrapped in MBEDTLS_PRIVATE() in 3.x. */
#if MBEDTLS_VERSION_MAJOR >= 3
#define TLS_PRIV(f) MBEDTLS_PRIVATE(f)
#else
#define TLS_PRIV(f) f
#endif

/* TLS 1.x minor version numbers as they appear on the wire (0x03 0x0N). */
enum { TLS_V10 = 1, TLS_V11 = 2, TLS_V12 = 3, TLS_V13 = 4 };

/* The first bytes the peer sends, kept during the handshake only: enough for
 * any ClientHello we want to explain (suites come early in it). */
#define TLS_FIRST_MAX 4096

typedef struct {
    FILE *f;
    char *path;
} tls_keylog;

struct tls_server {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
    mbedtls_x509_crt ca;
    mbedtls_x509_crl crl;
    mbedtls_ssl_cache_context cache;
    mbedtls_ssl_ticket_context ticket;
    int *suites; /* 0-terminated, referenced by conf */
    int min_minor;
    bool have_ca, have_crl;
    bool require_cert, request_cert;
    bool trace;
    tls_keylog keylog;
    tls_log_fn log;
    void *log_ud;
};

struct tls_client {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
    int *suites;
    int minor; /* fixed version (min == max) */
    bool have_ca, have_cert;
    bool verify; /* false: --insecure without any CA */
    bool insecure;
    char *server_name;
    mbedtls_ssl_session saved; /* last session, offered on the next connect */
    bool have_saved;
    int resume; /* enum tls_resume */
    bool trace;
    tls_keylog keylog;
    tls_log_fn log;
    void *log_ud;
};

/* What a handshake needs only while it runs; freed when it ends. */
typedef struct {
    uint8_t first[TLS_FIRST_MAX]; /* copy of the first bytes received */
    size_t first_len;
    size_t in_total; /* bytes received so far */
    /* outgoing record scanner: did we put an alert on the wire, which one */
    uint8_t ohdr[5];
    size_t ohdr_len;
    size_t orem; /* body bytes left in the current record */
    size_t opos; /* body bytes seen of the current record */
    int otype;
    int alert_sent; /* -1 none, -2 encrypted (unknown), else description */
    uint8_t alert_body[2];
    /* certificate verification details, filled by the verify callback */
    uint32_t vflags;
    bool cert_seen;
    char leaf_subject[160];
    char leaf_issuer[160];
    char top_issuer[160];
    char leaf_names[160]; /* SAN DNS/IP list, for hostname errors */
    char leaf_from[24], leaf_to[24];
    /* state machine bookkeeping */
    uint32_t states_seen; /* bit per mbedTLS handshake state executed */
    int pending_fail;     /* our own post-step verdict (alert to send) */
    uint8_t ip[16];       /* client: server_name as an IP address */
    size_t iplen;
    bool offered_ticket; /* client: resumption offered with a ticket */
} tls_hs;

struct tls_conn {
    mbedtls_ssl_context ssl;
    tls_server *srv; /* exactly one of srv / cli is set */
    tls_client *cli;
    tls_hs *hs;
    int fd;
    int last_errno;
    int result; /* sticky failure (TLS_ERR_*), 0 while fine */
    bool done, eof, close_sent;
    uint8_t resumed; /* 0 full, 1 session id, 2 ticket */
    char *err;
    char *peer_subject;
    char *peer_cn;
    char peer[64];
};

/* tls_global.c */
int tls_rng_ready(char *err, size_t errlen);
int tls_rng(void *ctx, unsigned char *out, size_t len);
const char *tls_alert_name(int desc);
void tls_strerror(int ret, char *buf, size_t len);
int tls_set_versions(mbedtls_ssl_config *conf, int min_minor, int max_minor);
int tls_parse_version(const char *s, const char *key, int *minor, char *err, size_t errlen);

/* tls_suites.c */
void tls_suite_openssl_name(int id, char *buf, size_t len);
int tls_suites_parse(const char *list, int min_minor, int **out, char *err, size_t errlen);
void tls_suites_format(const int *suites, size_t max, char *buf, size_t len);

/* tls_files.c */
int tls_load_cert(mbedtls_x509_crt *crt, const char *key, const char *path, char *err,
                  size_t errlen);
int tls_load_key(mbedtls_pk_context *pk, const mbedtls_x509_crt *crt, const char *key,
                 const char *path, const char *certpath, char *err, size_t errlen);
int tls_load_ca(mbedtls_x509_crt *ca, const char *cafile, const char *capath, char *err,
                size_t errlen);
int tls_keylog_open(tls_keylog *kl, const char *path, char *err, size_t errlen);
void tls_keylog_close(tls_keylog *kl);
void tls_keylog_attach(mbedtls_ssl_config *conf, mbedtls_ssl_context *ssl, tls_keylog *kl);
void tls_dn_format(const mbedtls_x509_name *dn, char *buf, size_t len);
char *tls_dn_cn(const mbedtls_x509_name *dn);
void tls_crt_names(const mbedtls_x509_crt *crt, char *buf, size_t len);
int tls_crt_has_ip(const mbedtls_x509_crt *crt, const uint8_t *ip, size_t iplen);
void tls_time_format(const mbedtls_x509_time *t, char *buf, size_t len);

/* What we could read from the peer's ClientHello (tls_diag.c). */
typedef struct {
    bool ok;                  /* parsed at least up to the cipher suites */
    int hello_minor;          /* legacy client_version */
    int max_minor, min_minor; /* offered range (supported_versions wins) */
    size_t nsuites;
    int suites[33]; /* the first 32, SCSV/GREASE dropped, 0-terminated */
    char sni[128];
    size_t sid_len;
    bool ticket_ext;
    size_t ticket_len;
} tls_hello;

/* tls_diag.c */
bool tls_hello_parse(const uint8_t *buf, size_t len, tls_hello *h);
const char *tls_version_name(int minor);
void tls_diag_failure(tls_conn *c, int ret);
void tls_diag_trace_step(tls_conn *c, int prev_state, bool ticket_went);
void tls_diag_verify_detail(tls_conn *c, uint32_t flags, char *buf, size_t len);
void tls_conn_set_error(tls_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tls_conn_log(const tls_conn *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
