/*
 * tls.h -- the only interface to mbedTLS. Nothing outside tls/ includes an
 * mbedtls header.
 *
 * A tls_server holds what one TLS listener shares between its connections
 * (certificates, keys, CA chain, CRL, cipher list, ticket keys, session
 * cache, key log). A tls_client holds the same for the command-line clients.
 * A tls_conn is one non-blocking connection on a socket the caller owns
 * (tls_conn_free never closes the fd).
 *
 * Return convention: TLS_OK (0) or a count (>= 0) on success,
 * TLS_WANT_READ / TLS_WANT_WRITE (positive sentinels, NOT errors: wait for
 * the fd to become readable/writable and call again), negative TLS_ERR_* on
 * failure. After a failure, tls_conn_failure() says why as data (a reason
 * and its details) and tls_conn_error() in plain TLS words (peer address
 * included); callers add advice in their own vocabulary.
 *
 * Lifecycle: init-free pairs follow mbedTLS: *_setup allocates, *_free
 * accepts NULL.
 */
#ifndef SECBROKER_TLS_H
#define SECBROKER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum tls_err {
    TLS_OK = 0,
    TLS_WANT_READ = 1 << 28, /* sentinels far away from byte counts */
    TLS_WANT_WRITE = (1 << 28) + 1,
    TLS_ERR_CONFIG = -1,    /* bad option / unreadable file (setup only) */
    TLS_ERR_HANDSHAKE = -2, /* handshake failed; see tls_conn_error() */
    TLS_ERR_CLOSED = -3,    /* peer sent close_notify or the socket hit EOF */
    TLS_ERR_IO = -4,        /* socket error (errno-based) */
    TLS_ERR_PROTOCOL = -5,  /* bad record / MAC failure / alert after handshake */
    TLS_ERR_ALLOC = -6,
    TLS_ERR_PLAINTEXT = -7, /* handshake: peer spoke plain MQTT (or other
                               non-TLS bytes) on a TLS port */
};

typedef struct tls_server tls_server;
typedef struct tls_client tls_client;
typedef struct tls_conn tls_conn;

typedef struct {
    const char *certfile;         /* required */
    const char *keyfile;          /* required */
    const char *cafile;           /* CA(s) used to verify client certificates */
    const char *capath;           /* directory of CA certificates */
    const char *crlfile;          /* optional CRL (PEM) */
    const char *ciphers;          /* NULL = secure default; ':'-separated
                                     OpenSSL-style or IANA names */
    const char *ciphers13;        /* TLS 1.3 suites (IANA names), NULL = default */
    const char *tls_version;      /* minimum: "tlsv1.1", "tlsv1.2" (default), "tlsv1.3" */
    const char *keylog_file;      /* NSS key log, appended, flushed per line */
    bool require_certificate;     /* mutual authentication */
    bool request_certificate;     /* ask for (but do not require) a client cert,
                                     verified when shown (needs cafile/capath) */
    unsigned session_cache_size;  /* 0 = default (10000) */
    unsigned session_timeout;     /* seconds, 0 = default (86400) */
    bool trace;                   /* log each handshake step (log_type tls) */
    const char *const *opt_names; /* [TLS_OPT_COUNT]: how errors name options */
} tls_server_opts;

/* Log hook: the broker passes its logger so tls/ never prints on its own.
 * level: 0 = error, 1 = warning, 2 = notice, 3 = info, 4 = debug/trace. */
typedef void (*tls_log_fn)(void *ud, int level, const char *line);

/* Global once-per-process setup (RNG). Returns TLS_OK or TLS_ERR_CONFIG. */
int tls_global_setup(char *err, size_t errlen);
void tls_global_free(void);
/* "mbed TLS 2.28.3" */
const char *tls_library_version(void);
/* Does this mbedTLS build speak `tls_version` ("tlsv1.1", "tlsv1.3", ...)? */
bool tls_version_supported(const char *tls_version);
/* Does it know the cipher suite `name` (OpenSSL or IANA spelling)? */
bool tls_suite_supported(const char *name);

/* Loads every file. On failure returns TLS_ERR_CONFIG with a plain-words
 * reason ("certfile /x/y.pem: no certificate found") in err. */
int tls_server_setup(tls_server **out, const tls_server_opts *opts, tls_log_fn log, void *log_ud,
                     char *err, size_t errlen);
void tls_server_free(tls_server *srv);
/* Called about once per second by the owner: rotates ticket keys, expires
 * cache entries. */
void tls_server_tick(tls_server *srv, time_t now);

typedef struct {
    const char *cafile, *capath;    /* trust anchors (none = system default if insecure==false) */
    const char *certfile, *keyfile; /* client certificate for mutual auth */
    const char *ciphers;
    const char *ciphers13;        /* TLS 1.3 suites (IANA names), NULL = default */
    const char *tls_version;      /* minimum and maximum are both this if set */
    const char *keylog_file;      /* NSS key log (the caller resolves SSLKEYLOGFILE) */
    const char *server_name;      /* for SNI and hostname verification */
    bool insecure;                /* skip hostname verification only */
    const char *const *opt_names; /* [TLS_OPT_COUNT]: how errors name options */
} tls_client_opts;

int tls_client_setup(tls_client **out, const tls_client_opts *opts, char *err, size_t errlen);
void tls_client_free(tls_client *cli);

/* Wrap an accepted, non-blocking fd. peer is "1.2.3.4:5678" (copied). */
int tls_conn_accept(tls_conn **out, tls_server *srv, int fd, const char *peer);
/* Wrap a connected (blocking or not) fd for a client connection. */
int tls_conn_connect(tls_conn **out, tls_client *cli, int fd, const char *peer);
/* Drive the handshake. TLS_OK when done, TLS_WANT_*, or TLS_ERR_HANDSHAKE /
 * TLS_ERR_PLAINTEXT / TLS_ERR_IO / TLS_ERR_CLOSED with tls_conn_error() set.
 * A failed server handshake has already sent the matching fatal alert. */
int tls_conn_handshake(tls_conn *c);
bool tls_conn_handshake_done(const tls_conn *c);
/* Application data. read: n > 0 bytes, TLS_WANT_*, TLS_ERR_CLOSED at EOF or
 * close_notify, other negatives on error. write: n > 0 bytes consumed (at
 * most one record's worth per call is fine; the caller loops), or TLS_WANT_*. */
ssize_t tls_conn_read(tls_conn *c, uint8_t *buf, size_t len);
ssize_t tls_conn_write(tls_conn *c, const uint8_t *buf, size_t len);
/* (tls_conn_write with len 0 only pushes out what an earlier call sealed into
 * a record: TLS_OK (0) when nothing is left, TLS_WANT_WRITE while bytes remain.
 * A byte count > 0 means "consumed", not "on the wire": finish every burst
 * with a len-0 call before dropping interest in writability.) */
/* Decrypted bytes already buffered inside the TLS layer: the caller must keep
 * reading while this is non-zero because epoll will not report them. */
size_t tls_conn_pending(const tls_conn *c);
/* Send close_notify (best effort, non-blocking). */
void tls_conn_close_notify(tls_conn *c);
void tls_conn_free(tls_conn *c);

/* After a failure: "127.0.0.1:5555: TLS handshake failed: client offered
 * only TLS 1.1 while the minimum is TLS 1.2 (sent alert protocol_version)".
 * In TLS terms only: the caller's advice (which config key or command-line
 * flag to change) comes from tls_conn_failure() + tls_failure_format(). */
const char *tls_conn_error(const tls_conn *c);

/* ---- structured failures ----------------------------------------------------
 * Why a connection failed, as data: the broker and the clients turn it into
 * advice in their own vocabulary (broker/tls_words.c, clients/core/tls_words.c). */
enum tls_reason {
    TLS_REASON_NONE = 0,
    TLS_REASON_PLAINTEXT,         /* peer spoke plain MQTT (plain_packet) */
    TLS_REASON_SSL2,              /* SSL 2.0 style ClientHello */
    TLS_REASON_NOT_TLS,           /* other non-TLS bytes (first_bytes) */
    TLS_REASON_CLOSED_EARLY,      /* peer hung up before sending anything */
    TLS_REASON_CLOSED_AFTER_CERT, /* client hung up after our certificate */
    TLS_REASON_CLOSED,            /* peer hung up (handshake or data) */
    TLS_REASON_CLOSE_NOTIFY,      /* peer closed the TLS session cleanly */
    TLS_REASON_PEER_ALERT,        /* peer sent alert_received */
    TLS_REASON_IO,                /* socket error (sys_errno) */
    TLS_REASON_VERSION,           /* no TLS version in common */
    TLS_REASON_NO_TLS13,          /* peer wants TLS 1.3 only, this build has none */
    TLS_REASON_NO_COMMON_SUITE,   /* offered_suites vs our suites */
    TLS_REASON_SUITE_KEY,         /* shared suites do not fit our key */
    TLS_REASON_SUITE_GROUP,       /* shared suites, but no curve/signature in common */
    TLS_REASON_CERT_REJECTED,     /* verify_flags, subject, issuer ... */
    TLS_REASON_CERT_MISSING,      /* client showed none, listener requires one */
    TLS_REASON_FINISHED,          /* Finished check failed */
    TLS_REASON_BAD_MAC,           /* a record failed authentication */
    TLS_REASON_ALLOC,
    TLS_REASON_LIBRARY, /* anything else: lib_code */
};

typedef struct {
    enum tls_reason reason;
    int code;                     /* the TLS_ERR_* returned */
    bool server;                  /* we were the server side */
    bool handshake;               /* failed during the handshake */
    int alert_sent;               /* fatal alert we sent: description, -1 none, -2 encrypted */
    int alert_received;           /* fatal alert the peer sent, -1 none */
    int offered_min, offered_max; /* peer's TLS versions (minor: 3 = 1.2), -1 unknown */
    int our_min, our_max;
    size_t offered_nsuites; /* the peer's cipher suites (server side) */
    int offered_suites[33]; /* first 32 IANA ids, 0-terminated */
    uint32_t verify_flags;  /* mbedTLS X.509 verification flags */
    bool name_mismatch;     /* certificate not for server_name */
    bool crl_stale;         /* the CRL is out of date or not from this CA */
    char subject[160];      /* the rejected certificate */
    char issuer[160];       /* top of the chain: the unknown CA */
    char names[160];        /* its SAN names (host name errors) */
    char not_before[24], not_after[24];
    char server_name[128]; /* client: the name we checked against */
    bool have_own_cert;    /* client: we had a certificate to show */
    char plain_packet[12]; /* "CONNECT" for TLS_REASON_PLAINTEXT */
    char first_bytes[16];  /* hex of the first bytes, for NOT_TLS/SSL2 */
    int sys_errno;
    int lib_code;   /* the mbedTLS error code */
    char text[700]; /* tls/'s sentence, in TLS terms */
} tls_failure;

/* NULL while nothing failed. */
const tls_failure *tls_conn_failure(const tls_conn *c);
/* The one log line: "<peer>: TLS handshake failed: <text><advice> (sent
 * alert x)", with the caller's advice (may be "") placed after the text. */
void tls_failure_format(const tls_conn *c, const char *advice, char *buf, size_t len);

/* Options named in setup errors. Each caller passes its own spelling in
 * opts.opt_names (config keys, command-line flags); NULL = neutral words. */
enum tls_opt {
    TLS_OPT_CERTFILE,
    TLS_OPT_KEYFILE,
    TLS_OPT_CAFILE,
    TLS_OPT_CAPATH,
    TLS_OPT_CRLFILE,
    TLS_OPT_CIPHERS,
    TLS_OPT_CIPHERS13,
    TLS_OPT_VERSION,
    TLS_OPT_KEYLOG,
    TLS_OPT_REQUIRE_CERT,
    TLS_OPT_COUNT
};
/* After the handshake: "TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256, full
 * handshake, client certificate CN=labclient,O=Lab" (or "no client certificate"). */
void tls_conn_describe(const tls_conn *c, char *buf, size_t len);
bool tls_conn_resumed(const tls_conn *c);
/* Client certificate's subject CN, or NULL when none was presented. */
const char *tls_conn_peer_cn(const tls_conn *c);
/* Its whole subject, RFC 2253 order ("CN=x,O=y,C=z"), or NULL. */
const char *tls_conn_peer_subject(const tls_conn *c);
/* Bytes currently allocated for this connection, counted rather than
 * estimated (tls/tls_mem.c): every allocation tls/ or mbedTLS makes on its
 * behalf and has not freed yet. */
size_t tls_conn_memory(const tls_conn *c);

/* ---- additions (tls/ owner) ---------------------------------------------
 * Session resumption for clients: a tls_client remembers the session of its
 * last successful handshake and offers it on the next tls_conn_connect.
 * TLS_RESUME_TICKET (default) offers a session ticket (RFC 5077),
 * TLS_RESUME_SESSION_ID disables tickets so the server's session-id cache is
 * used, TLS_RESUME_OFF forgets the saved session and never resumes (every
 * handshake is a full one: what secbench measures as "full handshakes"). */
enum tls_resume {
    TLS_RESUME_TICKET = 0,
    TLS_RESUME_SESSION_ID = 1,
    TLS_RESUME_OFF = 2,
};
void tls_client_set_resume(tls_client *cli, enum tls_resume mode);
/* Client-side log hook (secpub/secsub -d): with trace, each handshake step
 * is logged as it happens, like the server's log_type tls. */
void tls_client_set_log(tls_client *cli, tls_log_fn log, void *log_ud, bool trace);

/* X25519 key shares (TLS 1.3) computed by Everest instead of mbedTLS's
 * bignum ladder (tls/mbedtls_x25519.c, bundled mbedTLS 3.6 build only):
 * tls_x25519_everest_calls() counts the key shares it made (0 without it).
 * tls_x25519_check(N) compares both on N random private keys: TLS_OK when
 * they agree and Everest did the work (tls_global_setup runs it once);
 * TLS_OK at once without Everest. */
unsigned long tls_x25519_everest_calls(void);
int tls_x25519_check(int rounds);

#endif
