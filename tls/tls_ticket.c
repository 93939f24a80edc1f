/*
 * tls_ticket.c -- session tickets that keep the client's verified identity,
 * on listeners that ask for client certificates.
 *
 * mbedTLS 3.6 writes a TLS 1.3 session into its ticket without the peer
 * certificate, and on resumption takes only the keys out of the parsed
 * ticket (ssl_tls13_session_copy_ticket): a resumed client would come back
 * without a certificate, so without the identity use_identity_as_username
 * and the ACL need. Here mbedTLS's own ticket (mbedtls_ssl_ticket_write /
 * _parse: AES-256-GCM under keys that rotate every session_timeout) gets a
 * second layer around it:
 *
 *   u16 inner length | inner ticket | 12-byte nonce | sealed identity | tag
 *
 * The identity (u8 flags, u16 + subject DN, u16 + CN) is copied from the
 * connection the ticket is issued on, whose certificate was verified
 * (tls_conn.c refuses an unverified one) or which showed none. It is sealed
 * with AES-256-GCM under this listener's identity key, with the inner ticket
 * as additional data, so it cannot be moved to another ticket, changed or
 * read: a client sends its ticket in the clear in its next ClientHello. A
 * ticket whose layer does not authenticate (another listener, another
 * broker process, tampering) is not a ticket of ours: a full handshake.
 * The identity key lives as long as the listener; the inner ticket's
 * lifetime bounds the ticket's. Like a TLS 1.2 ticket (which carries the
 * certificate itself), a resumed session is not checked against a CRL
 * loaded after the ticket was issued.
 *
 * The callbacks get the mbedTLS session, not our connection: the
 * connection is the one tls/ is working for at that moment
 * (tls_conn_active(); the broker and the clients are single-threaded).
 */
#include <string.h>

#include "mbedtls/gcm.h"
#include "mbedtls/platform_util.h"

#include "tls/tls_int.h"

#define TK_NONCE 12
#define TK_TAG 16
#define TK_ID_MAX (1 + 2 + TLS_TK_SUBJECT_MAX + 2 + TLS_TK_CN_MAX)
#define TK_HAS_IDENTITY 1

int tls_ticket_setup(tls_server *s)
{
    unsigned char key[32];
    int ret = tls_rng(NULL, key, sizeof key);
    if (ret == 0) ret = mbedtls_gcm_setkey(&s->id_gcm, MBEDTLS_CIPHER_ID_AES, key, 256);
    mbedtls_platform_zeroize(key, sizeof key);
    if (ret == 0) s->id_gcm_ready = true;
    return ret;
}

void tls_ticket_free(tls_server *s)
{
    mbedtls_gcm_free(&s->id_gcm);
    s->id_gcm_ready = false;
}

static size_t put_str(unsigned char *p, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max) n = max;
    p[0] = (unsigned char)(n >> 8);
    p[1] = (unsigned char)n;
    if (n) memcpy(p + 2, s, n);
    return 2 + n;
}

/* the identity of the connection being served, as the layer carries it */
static size_t identity_bytes(unsigned char *id)
{
    char subject[TLS_TK_SUBJECT_MAX + 1], cn[TLS_TK_CN_MAX + 1];
    bool have = tls_conn_identity(tls_conn_active(), subject, sizeof subject, cn, sizeof cn);
    size_t n = 0;
    id[n++] = have ? TK_HAS_IDENTITY : 0;
    n += put_str(id + n, have ? subject : NULL, TLS_TK_SUBJECT_MAX);
    n += put_str(id + n, have ? cn : NULL, TLS_TK_CN_MAX);
    return n;
}

int tls_ticket_write(void *p_ticket, const mbedtls_ssl_session *session, unsigned char *start,
                     const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    tls_server *s = p_ticket;
    unsigned char id[TK_ID_MAX];
    size_t idlen = identity_bytes(id), inner = 0;
    size_t room = (size_t)(end - start);
    if (!s->id_gcm_ready || room < 2 + TK_NONCE + idlen + TK_TAG)
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    unsigned char *in = start + 2;
    int ret = mbedtls_ssl_ticket_write(&s->ticket, session, in, end - (TK_NONCE + idlen + TK_TAG),
                                       &inner, lifetime);
    if (ret != 0) return ret;
    if (inner > 0xffff) return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    start[0] = (unsigned char)(inner >> 8);
    start[1] = (unsigned char)inner;
    unsigned char *nonce = in + inner, *sealed = nonce + TK_NONCE;
    ret = tls_rng(NULL, nonce, TK_NONCE);
    if (ret == 0)
        ret = mbedtls_gcm_crypt_and_tag(&s->id_gcm, MBEDTLS_GCM_ENCRYPT, idlen, nonce, TK_NONCE, in,
                                        inner, id, sealed, TK_TAG, sealed + idlen);
    mbedtls_platform_zeroize(id, sizeof id);
    if (ret != 0) return ret;
    *tlen = 2 + inner + TK_NONCE + idlen + TK_TAG;
    return 0;
}

static bool get_str(const unsigned char **p, const unsigned char *end, char *out, size_t max)
{
    if (end - *p < 2) return false;
    size_t n = ((size_t)(*p)[0] << 8) | (*p)[1];
    *p += 2;
    if (n > max || (size_t)(end - *p) < n || memchr(*p, 0, n)) return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return true;
}

/* the opened identity into the handshake of the connection being served */
static bool keep_identity(const unsigned char *id, size_t idlen)
{
    tls_conn *c = tls_conn_active();
    if (c == NULL || c->hs == NULL || idlen < 1) return false;
    tls_hs *hs = c->hs;
    hs->tk_identity = false;
    const unsigned char *p = id + 1, *end = id + idlen;
    if (!get_str(&p, end, hs->tk_subject, TLS_TK_SUBJECT_MAX) ||
        !get_str(&p, end, hs->tk_cn, TLS_TK_CN_MAX) || p != end)
        return false;
    hs->tk_identity = (id[0] & TK_HAS_IDENTITY) != 0;
    return true;
}

int tls_ticket_parse(void *p_ticket, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    tls_server *s = p_ticket;
    if (!s->id_gcm_ready || len < 2) return MBEDTLS_ERR_SSL_INVALID_MAC;
    size_t inner = ((size_t)buf[0] << 8) | buf[1];
    if (len < 2 + inner + TK_NONCE + 1 + 4 + TK_TAG) return MBEDTLS_ERR_SSL_INVALID_MAC;
    size_t idlen = len - (2 + inner + TK_NONCE + TK_TAG);
    if (idlen > TK_ID_MAX) return MBEDTLS_ERR_SSL_INVALID_MAC;
    unsigned char *in = buf + 2, *nonce = in + inner, *sealed = nonce + TK_NONCE;
    unsigned char id[TK_ID_MAX];
    if (mbedtls_gcm_auth_decrypt(&s->id_gcm, idlen, nonce, TK_NONCE, in, inner, sealed + idlen,
                                 TK_TAG, sealed, id) != 0)
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    /* mbedTLS's own checks (its MAC, lifetime, key rotation) on the inner
     * ticket; the identity counts only for a ticket that passes them */
    int ret = mbedtls_ssl_ticket_parse(&s->ticket, session, in, inner);
    if (ret == 0 && !keep_identity(id, idlen)) ret = MBEDTLS_ERR_SSL_INVALID_MAC;
    mbedtls_platform_zeroize(id, sizeof id);
    return ret;
}
