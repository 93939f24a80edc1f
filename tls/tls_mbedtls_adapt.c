/*
 * tls_mbedtls_adapt.c -- the only file in tls/ that reads mbedTLS's private
 * state (fields of mbedtls_ssl_context / mbedtls_ssl_session that 2.28 keeps
 * public and 3.x wraps in MBEDTLS_PRIVATE(), and 2.28's ssl_internal.h).
 * Every access says why no public API does the job. A new mbedTLS version
 * touches this file only.
 */
#include "mbedtls/platform.h"

#include "tls/tls_int.h"

#if MBEDTLS_VERSION_MAJOR < 3
#include "mbedtls/ssl_internal.h"
#define PRIV(f) f
#else
#define PRIV(f) MBEDTLS_PRIVATE(f)
/* Not in the public headers (library/ssl_misc.h) but an exported function of
 * libmbedtls 3.x: the only way to push out a record mbedTLS buffered after a
 * WANT_WRITE without handing it new data. */
int mbedtls_ssl_flush_output(mbedtls_ssl_context *ssl);
/* library/ssl_ciphersuites_internal.h in 3.x (public in 2.28): the
 * signature algorithm a suite needs from the server's key. */
mbedtls_pk_type_t mbedtls_ssl_get_ciphersuite_sig_pk_alg(const mbedtls_ssl_ciphersuite_t *info);
/* library/ssl_misc.h, exported: selects the keys outgoing records use. */
void mbedtls_ssl_set_outbound_transform(mbedtls_ssl_context *ssl, mbedtls_ssl_transform *transform);
#endif

/* The handshake state machine's current state: we drive the handshake one
 * mbedtls_ssl_handshake_step() at a time and trace "the state advanced" as
 * "that message went by". No public getter (3.x has only is_handshake_over). */
int tls_ad_state(const mbedtls_ssl_context *ssl)
{
    return ssl->PRIV(state);
}

/* The handshake message mbedTLS last read / wrote: the trace shows what was on
 * the wire (key share, signature algorithm, ticket lifetime); the library
 * exposes none of these fields. NULL before the buffers exist. */
const uint8_t *tls_ad_in_msg(const mbedtls_ssl_context *ssl)
{
    return ssl->PRIV(in_msg);
}

const uint8_t *tls_ad_out_msg(const mbedtls_ssl_context *ssl)
{
    return ssl->PRIV(out_msg);
}

/* The alert description of the fatal alert just received: mbedTLS returns
 * MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE and leaves the record in in_msg, with
 * no getter for its description. */
int tls_ad_alert_received(const mbedtls_ssl_context *ssl)
{
    const uint8_t *m = ssl->PRIV(in_msg);
    return m ? m[1] : -1;
}

/* The TLS minor version being negotiated (3 = TLS 1.2, 4 = TLS 1.3), also
 * during the handshake, when mbedtls_ssl_get_version() still says "unknown"
 * in 2.28. 3.x has a public inline getter. */
int tls_ad_minor(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_MAJOR < 3
    return ssl->minor_ver;
#else
    return (int)(mbedtls_ssl_get_version_number(ssl) & 0xff);
#endif
}

/* Bytes of a sealed record still waiting for the socket: tls_conn_write
 * counts data as written once sealed and must know whether to flush. */
size_t tls_ad_out_left(const mbedtls_ssl_context *ssl)
{
    return ssl->PRIV(out_left);
}

/* Pushes out what out_left says is pending (see the declaration above). */
int tls_ad_flush(mbedtls_ssl_context *ssl)
{
    return mbedtls_ssl_flush_output(ssl);
}

/* The session being negotiated: mbedtls_ssl_get_ciphersuite() and
 * get_peer_cert() only look at the finished session, the trace and the
 * diagnostics need them before the handshake completes. */
static const mbedtls_ssl_session *negotiating(const mbedtls_ssl_context *ssl)
{
    return ssl->PRIV(session_negotiate) ? ssl->PRIV(session_negotiate) : ssl->PRIV(session);
}

int tls_ad_suite(const mbedtls_ssl_context *ssl)
{
    const mbedtls_ssl_session *s = negotiating(ssl);
    return s ? s->PRIV(ciphersuite) : 0;
}

/* The peer's chain while the handshake runs (trace of the Certificate
 * message). NULL when the build does not keep peer certificates. */
const mbedtls_x509_crt *tls_ad_peer_chain(const mbedtls_ssl_context *ssl)
{
#if defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE)
    const mbedtls_ssl_session *s = ssl->PRIV(session_negotiate);
    return s ? s->PRIV(peer_cert) : NULL;
#else
    (void)ssl;
    return NULL;
#endif
}

/* After the handshake the parsed peer chain (1-3 KB) is needed by nobody: we
 * keep subject and CN as strings. mbedTLS has no call to drop it. */
void tls_ad_drop_peer_chain(mbedtls_ssl_context *ssl)
{
#if defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE)
    mbedtls_ssl_session *s = ssl->PRIV(session);
    if (s && s->PRIV(peer_cert)) {
        mbedtls_x509_crt_free(s->PRIV(peer_cert));
        mbedtls_free(s->PRIV(peer_cert));
        s->PRIV(peer_cert) = NULL;
    }
#else
    (void)ssl;
#endif
}

/* Client: did the server send a CertificateRequest (trace of our reply)?
 * Kept in the handshake parameters, whose type is internal to the library;
 * reachable in 2.28 only. */
bool tls_ad_cert_requested(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_MAJOR < 3
    return ssl->client_auth != 0;
#else
    (void)ssl;
    return false;
#endif
}

/* 2.28 sends / reads NewSessionTicket inside the ChangeCipherSpec state; this
 * handshake flag is the only sign it went by. 3.x has a state of its own. */
bool tls_ad_ticket_pending(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_MAJOR < 3 && defined(MBEDTLS_SSL_SESSION_TICKETS)
    return ssl->handshake && ssl->handshake->new_session_ticket;
#else
    (void)ssl;
    return false;
#endif
}

/* The key type a TLS 1.2 suite needs (ECDSA, RSA), to tell "no suite fits
 * this key" from "no suite in common"; MBEDTLS_PK_NONE for TLS 1.3 suites. */
int tls_ad_suite_sig_pk(const mbedtls_ssl_ciphersuite_t *info)
{
    return (int)mbedtls_ssl_get_ciphersuite_sig_pk_alg(info);
}

/* TLS 1.3 server, right after it sent its Finished: encrypt what follows
 * with the application traffic keys, as RFC 8446 4.4.4 / 7.2 expect. mbedTLS
 * 3.6 keeps the handshake keys until the client's Finished, so a fatal
 * alert about the client's certificate reaches OpenSSL, Python and Node
 * encrypted with keys they no longer use ("bad record mac" instead of
 * unknown_ca). No public call does this. Returns true when it switched. */
bool tls_ad_tls13_server_app_keys(mbedtls_ssl_context *ssl)
{
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) && defined(MBEDTLS_SSL_SRV_C)
    if (ssl->PRIV(transform_application) == NULL) return false;
    mbedtls_ssl_set_outbound_transform(ssl, ssl->PRIV(transform_application));
    return true;
#else
    (void)ssl;
    return false;
#endif
}

/* The fatal alert mbedTLS itself queued and sent on a failed handshake step
 * (3.x), 0 when none: TLS 1.3 alerts are encrypted, so our record scanner
 * cannot read them off the wire. */
int tls_ad_alert_pended(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    return ssl->PRIV(alert_type);
#else
    (void)ssl;
    return 0;
#endif
}

/* TLS 1.3 exporter_master_secret of the session being negotiated, for the
 * key log's EXPORTER_SECRET line: derived with the application secrets but,
 * unlike them, not handed to the key-export callback. NULL without 1.3. */
const unsigned char *tls_ad_exporter_secret(const mbedtls_ssl_context *ssl)
{
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
    const mbedtls_ssl_session *s = ssl->PRIV(session_negotiate);
    return s ? s->PRIV(app_secrets).exporter_master_secret : NULL;
#else
    (void)ssl;
    return NULL;
#endif
}

/* Client: does a saved session carry a ticket (the trace and
 * tls_conn_describe tell ticket from session-id resumption)? */
bool tls_ad_session_has_ticket(const mbedtls_ssl_session *s)
{
#if defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_CLI_C)
    return s->PRIV(ticket_len) > 0;
#else
    (void)s;
    return false;
#endif
}
