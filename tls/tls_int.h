/*
 * tls_int.h -- private to tls/: the structures behind the opaque handles in
 * tls.h and the helpers the files in tls/ share. Never included outside tls/.
 *
 * Builds against mbedTLS 2.28 and 3.6. Private mbedTLS state is read only
 * through tls_mbedtls_adapt.c (tls_ad_*).
 */
#ifndef SECBROKER_TLS_INT_H
#define SECBROKER_TLS_INT_H

#include <stdio.h>

#include "mbedtls/version.h"
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/gcm.h"
#include "mbedtls/pk.h"
#include "mbedtls/ssl.h"
#include "mbedtls/ssl_cache.h"
#include "mbedtls/ssl_ticket.h"
#include "mbedtls/x509_crl.h"
#include "mbedtls/x509_crt.h"

#include "tls/tls.h"

/* TLS 1.x minor version numbers as they appear on the wire (0x03 0x0N). */
enum { TLS_V10 = 1, TLS_V11 = 2, TLS_V12 = 3, TLS_V13 = 4 };
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define TLS_MAX_MINOR TLS_V13
#else
#define TLS_MAX_MINOR TLS_V12
#endif

/* Error codes and states 3.x renamed or merged. */
#if MBEDTLS_VERSION_MAJOR >= 3
#define TLS_E_NO_SUITE_A MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE /* + state check, tls_diag.c */
#define TLS_E_NO_SUITE_B MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE
#define TLS_E_VERSION MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION
#define TLS_E_CERT_REQUIRED MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE
#define TLS_E_BAD_FINISHED (-0x7fff) /* 3.x: HANDSHAKE_FAILURE, with a decrypt_error alert */
#define TLS_ST_NEW_SESSION_TICKET MBEDTLS_SSL_NEW_SESSION_TICKET
#else
#define TLS_E_NO_SUITE_A MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN
#define TLS_E_NO_SUITE_B MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE
#define TLS_E_VERSION MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION
#define TLS_E_CERT_REQUIRED MBEDTLS_ERR_SSL_CERTIFICATE_REQUIRED
#define TLS_E_BAD_FINISHED MBEDTLS_ERR_SSL_BAD_HS_FINISHED
#define TLS_ST_NEW_SESSION_TICKET MBEDTLS_SSL_SERVER_NEW_SESSION_TICKET
#endif

/* The first bytes the peer sends, kept during the handshake only: enough for
 * any ClientHello we want to explain (suites come early in it). */
#define TLS_FIRST_MAX 4096

typedef struct tls_mem_account tls_mem_account;

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
    mbedtls_gcm_context id_gcm; /* tls_ticket.c: seals the identity in tickets */
    bool id_gcm_ready;
    int *suites; /* 0-terminated, referenced by conf */
    int min_minor;
    bool have_ca, have_crl;
    bool require_cert, request_cert;
    bool trace;
    tls_keylog keylog;
    tls_log_fn log;
    void *log_ud;
    const char *const *names; /* opts.opt_names */
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
    const char *const *names; /* opts.opt_names */
};

/* The identity a ticket carries (tls_ticket.c): DN and CN, bytes. */
#define TLS_TK_SUBJECT_MAX 255
#define TLS_TK_CN_MAX 127

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
    bool nst_sent;       /* server: a plaintext NewSessionTicket went out (TLS 1.2) */
    /* server: the identity in the last ticket of ours the client offered
     * that parsed (tls_ticket.c); used if the handshake resumes with it */
    bool tk_identity;
    char tk_subject[TLS_TK_SUBJECT_MAX + 1];
    char tk_cn[TLS_TK_CN_MAX + 1];
} tls_hs;

struct tls_conn {
    mbedtls_ssl_context ssl;
    tls_server *srv; /* exactly one of srv / cli is set */
    tls_client *cli;
    tls_hs *hs;
    tls_mem_account *mem; /* what this connection allocated (tls_mem.c) */
    int fd;
    int last_errno;
    int result; /* sticky failure (TLS_ERR_*), 0 while fine */
    bool done, eof, close_sent;
    uint8_t resumed;   /* 0 full, 1 session id, 2 ticket */
    char *err;         /* tls_conn_error()'s line */
    tls_failure *fail; /* NULL while fine */
    char *peer_subject;
    char *peer_cn;
    char peer[64];
};

/* tls_conn.c: the connection tls/ is working for right now (set by every
 * tls_conn_* entry point that calls into mbedTLS), NULL between calls; and
 * its verified client identity (certificate, or a resumed ticket's). */
tls_conn *tls_conn_active(void);
bool tls_conn_identity(tls_conn *c, char *subject, size_t slen, char *cn, size_t cnlen);

/* tls_ticket.c: session tickets that carry the client's identity */
int tls_ticket_setup(tls_server *s);
void tls_ticket_free(tls_server *s);
int tls_ticket_write(void *p_ticket, const mbedtls_ssl_session *session, unsigned char *start,
                     const unsigned char *end, size_t *tlen, uint32_t *lifetime);
int tls_ticket_parse(void *p_ticket, mbedtls_ssl_session *session, unsigned char *buf, size_t len);

/* tls_mbedtls_adapt.c: every read of mbedTLS internals */
int tls_ad_state(const mbedtls_ssl_context *ssl);
const uint8_t *tls_ad_in_msg(const mbedtls_ssl_context *ssl);
const uint8_t *tls_ad_out_msg(const mbedtls_ssl_context *ssl);
int tls_ad_alert_received(const mbedtls_ssl_context *ssl);
int tls_ad_minor(const mbedtls_ssl_context *ssl);
size_t tls_ad_out_left(const mbedtls_ssl_context *ssl);
int tls_ad_flush(mbedtls_ssl_context *ssl);
int tls_ad_suite(const mbedtls_ssl_context *ssl);
const mbedtls_x509_crt *tls_ad_peer_chain(const mbedtls_ssl_context *ssl);
void tls_ad_drop_peer_chain(mbedtls_ssl_context *ssl);
bool tls_ad_cert_requested(const mbedtls_ssl_context *ssl);
bool tls_ad_ticket_pending(const mbedtls_ssl_context *ssl);
bool tls_ad_session_has_ticket(const mbedtls_ssl_session *s);
int tls_ad_suite_sig_pk(const mbedtls_ssl_ciphersuite_t *info);
bool tls_ad_tls13_server_app_keys(mbedtls_ssl_context *ssl);
int tls_ad_alert_pended(const mbedtls_ssl_context *ssl);
const unsigned char *tls_ad_exporter_secret(const mbedtls_ssl_context *ssl);

/* tls_mem.c: per-connection memory accounting (see the file's comment) */
void tls_mem_init(void); /* before the first mbedTLS allocation */
bool tls_mem_hooked(void);
tls_mem_account *tls_mem_account_new(void);
void tls_mem_account_release(tls_mem_account *a);
size_t tls_mem_account_bytes(const tls_mem_account *a);
/* Charges allocations to `a` (NULL: to nobody) until the next call; returns
 * the account in charge before, to be restored. */
tls_mem_account *tls_mem_scope(tls_mem_account *a);
void *tls_mem_calloc(size_t n, size_t size);
void tls_mem_free(void *p);
char *tls_mem_strdup(const char *s);

/* tls_global.c */
/* The caller's name for option o (opts.opt_names), else a neutral one. */
const char *tls_opt_name(const char *const *names, enum tls_opt o);
int tls_rng_ready(char *err, size_t errlen);
int tls_rng(void *ctx, unsigned char *out, size_t len);
const char *tls_alert_name(int desc);
void tls_strerror(int ret, char *buf, size_t len);
int tls_set_versions(mbedtls_ssl_config *conf, int min_minor, int max_minor);
int tls_parse_version(const char *s, const char *key, int *minor, char *err, size_t errlen);

/* tls_suites.c */
void tls_suite_openssl_name(int id, char *buf, size_t len);
int tls_suites_parse(const char *list, const char *key, int min_minor, int **out, char *err,
                     size_t errlen);
int tls_suites13_parse(const char *list, const char *key, int **out, char *err, size_t errlen);
int *tls_suites_join(const int *a, const int *b);
void tls_suites_format(const int *suites, size_t max, char *buf, size_t len);

/* tls_files.c */
int tls_load_cert(mbedtls_x509_crt *crt, const char *key, const char *path, char *err,
                  size_t errlen);
int tls_load_key(mbedtls_pk_context *pk, const mbedtls_x509_crt *crt, const char *key,
                 const char *path, const char *certpath, char *err, size_t errlen);
int tls_load_ca(mbedtls_x509_crt *ca, const char *cafile, const char *capath,
                const char *const *names, char *err, size_t errlen);
int tls_keylog_open(tls_keylog *kl, const char *path, const char *key, char *err, size_t errlen);
void tls_keylog_close(tls_keylog *kl);
void tls_keylog_attach(mbedtls_ssl_config *conf, tls_conn *c, tls_keylog *kl);
void tls_dn_format(const mbedtls_x509_name *dn, char *buf, size_t len);
char *tls_dn_cn(const mbedtls_x509_name *dn); /* tls_mem_free() the result */
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
    bool psk; /* TLS 1.3 pre_shared_key: offers a ticket */
} tls_hello;

/* tls_diag.c */
bool tls_hello_parse(const uint8_t *buf, size_t len, tls_hello *h);
const char *tls_version_name(int minor);
void tls_diag_failure(tls_conn *c, int ret);
void tls_diag_trace_step(tls_conn *c, int prev_state, bool ticket_went);
void tls_diag_verify_detail(tls_conn *c, uint32_t flags, char *buf, size_t len);
void tls_conn_fail(tls_conn *c, int ret, enum tls_reason reason, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void tls_conn_log(const tls_conn *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
