/*
 * tls_conn.c -- one non-blocking TLS connection on a caller-owned fd: our
 * own send/recv callbacks, the handshake driven step by step (so we can
 * trace it and check things between steps), application data, close.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mbedtls/net_sockets.h"
#include "mbedtls/platform.h"

#include "tls/tls_int.h"

/* ---- I/O callbacks ------------------------------------------------------- */

/* Follows our outgoing records so that, when a handshake fails, we know
 * whether mbedTLS already put a fatal alert on the wire and which one.
 * Before ChangeCipherSpec alerts are plaintext: a 2-byte record body. */
static void scan_out(tls_hs *hs, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (hs->ohdr_len < 5) {
            size_t take = 5 - hs->ohdr_len < n ? 5 - hs->ohdr_len : n;
            memcpy(hs->ohdr + hs->ohdr_len, p, take);
            hs->ohdr_len += take;
            p += take;
            n -= take;
            if (hs->ohdr_len == 5) {
                hs->otype = hs->ohdr[0];
                hs->orem = (size_t)hs->ohdr[3] << 8 | hs->ohdr[4];
                hs->opos = 0;
                if (hs->otype == MBEDTLS_SSL_MSG_ALERT) hs->alert_sent = -2;
                if (hs->orem == 0) hs->ohdr_len = 0;
            }
            continue;
        }
        size_t take = hs->orem < n ? hs->orem : n;
        size_t total = (size_t)hs->ohdr[3] << 8 | hs->ohdr[4];
        if (hs->otype == MBEDTLS_SSL_MSG_HANDSHAKE && hs->opos == 0 && take > 0 &&
            p[0] == MBEDTLS_SSL_HS_NEW_SESSION_TICKET)
            hs->nst_sent = true;
        if (hs->otype == MBEDTLS_SSL_MSG_ALERT && total == 2)
            for (size_t i = 0; i < take && hs->opos + i < 2; i++)
                hs->alert_body[hs->opos + i] = p[i];
        hs->opos += take;
        hs->orem -= take;
        p += take;
        n -= take;
        if (hs->orem == 0) {
            if (hs->otype == MBEDTLS_SSL_MSG_ALERT && total == 2 &&
                hs->alert_body[0] == MBEDTLS_SSL_ALERT_LEVEL_FATAL)
                hs->alert_sent = hs->alert_body[1];
            hs->ohdr_len = 0;
        }
    }
}

static int conn_send(void *ctx, const unsigned char *buf, size_t len)
{
    tls_conn *c = ctx;
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = write(c->fd, buf, len);
        if (n >= 0) {
            if (c->hs) scan_out(c->hs, buf, (size_t)n);
            return (int)n;
        }
        if (errno == EINTR) continue;
        c->last_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return MBEDTLS_ERR_SSL_WANT_WRITE;
        if (errno == EPIPE || errno == ECONNRESET) return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

/* Keeps a copy of the first bytes of the handshake: the ClientHello we
 * explain when no suite matches, or the plain MQTT a confused client sent. */
static int conn_recv(void *ctx, unsigned char *buf, size_t len)
{
    tls_conn *c = ctx;
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n < 0 && errno == ENOTSOCK) n = read(c->fd, buf, len);
        if (n > 0) {
            tls_hs *hs = c->hs;
            if (hs) {
                size_t room = sizeof hs->first - hs->first_len;
                size_t take = (size_t)n < room ? (size_t)n : room;
                memcpy(hs->first + hs->first_len, buf, take);
                hs->first_len += take;
                hs->in_total += (size_t)n;
            }
            return (int)n;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR) continue;
        c->last_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return MBEDTLS_ERR_SSL_WANT_READ;
        if (errno == ECONNRESET) return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

/* ---- certificate verification hook ---------------------------------------- */

/* Called by mbedTLS for each certificate of the peer's chain, top first.
 * Records what the diagnostics need, and does the host name policy that
 * mbedTLS 2.28 cannot: iPAddress SANs, and --insecure (skip the name only). */
static int verify_cb(void *ud, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    tls_conn *c = ud;
    tls_hs *hs = c->hs;
    if (hs == NULL) return 0;
    if (!hs->cert_seen) tls_dn_format(&crt->issuer, hs->top_issuer, sizeof hs->top_issuer);
    hs->cert_seen = true;
    if (depth == 0) {
        if (c->cli) {
            if (c->cli->insecure)
                *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
            else if (hs->iplen && !tls_crt_has_ip(crt, hs->ip, hs->iplen))
                *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
            else if (c->cli->server_name == NULL)
                *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
        }
        tls_dn_format(&crt->subject, hs->leaf_subject, sizeof hs->leaf_subject);
        tls_dn_format(&crt->issuer, hs->leaf_issuer, sizeof hs->leaf_issuer);
        tls_crt_names(crt, hs->leaf_names, sizeof hs->leaf_names);
        tls_time_format(&crt->valid_from, hs->leaf_from, sizeof hs->leaf_from);
        tls_time_format(&crt->valid_to, hs->leaf_to, sizeof hs->leaf_to);
    }
    hs->vflags |= *flags;
    return 0;
}

/* ---- setup ---------------------------------------------------------------- */

/* The struct and its handshake bookkeeping, charged to mem. */
static tls_conn *conn_alloc(tls_mem_account *mem, int fd, const char *peer)
{
    tls_conn *c = tls_mem_calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->hs = tls_mem_calloc(1, sizeof *c->hs);
    if (c->hs == NULL) {
        tls_mem_free(c);
        return NULL;
    }
    c->mem = mem;
    c->hs->alert_sent = -1;
    c->hs->pending_fail = -1;
    mbedtls_ssl_init(&c->ssl);
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "?");
    return c;
}

/* What a server and a client connection share: the struct, the handshake
 * bookkeeping, the SSL context on conf, our I/O callbacks, the verify hook
 * and the key log. NULL when out of memory. */
static tls_conn *conn_new(int fd, const char *peer, const mbedtls_ssl_config *conf,
                          tls_keylog *keylog)
{
    tls_mem_account *mem = tls_mem_account_new();
    if (mem == NULL) return NULL;
    tls_mem_account *prev = tls_mem_scope(mem);
    tls_conn *c = conn_alloc(mem, fd, peer);
    if (c == NULL) {
        tls_mem_scope(prev);
        tls_mem_account_release(mem);
        return NULL;
    }
    if (mbedtls_ssl_setup(&c->ssl, conf) != 0) {
        tls_conn_free(c); /* releases mem */
        c = NULL;
    } else {
        mbedtls_ssl_set_bio(&c->ssl, c, conn_send, conn_recv, NULL);
        mbedtls_ssl_set_verify(&c->ssl, verify_cb, c);
        tls_keylog_attach(NULL, c, keylog);
    }
    tls_mem_scope(prev);
    return c;
}

int tls_conn_accept(tls_conn **out, tls_server *srv, int fd, const char *peer)
{
    *out = NULL;
    tls_conn *c = conn_new(fd, peer, &srv->conf, &srv->keylog);
    if (c == NULL) return TLS_ERR_ALLOC;
    c->srv = srv;
    *out = c;
    return TLS_OK;
}

int tls_conn_connect(tls_conn **out, tls_client *cli, int fd, const char *peer)
{
    *out = NULL;
    tls_conn *c = conn_new(fd, peer, &cli->conf, &cli->keylog);
    if (c == NULL) return TLS_ERR_ALLOC;
    c->cli = cli;

    /* An IP address is neither sent as SNI (RFC 6066 forbids it) nor given
     * to mbedTLS, whose 2.28 name check only knows DNS names: verify_cb
     * matches it against the iPAddress SANs instead. */
    const char *name = cli->server_name;
    int ret = 0;
    if (name && inet_pton(AF_INET, name, c->hs->ip) == 1)
        c->hs->iplen = 4;
    else if (name && inet_pton(AF_INET6, name, c->hs->ip) == 1)
        c->hs->iplen = 16;
    if (name && c->hs->iplen == 0)
        ret = mbedtls_ssl_set_hostname(&c->ssl, name);
    else
        ret = mbedtls_ssl_set_hostname(&c->ssl, NULL);
    if (ret != 0) {
        tls_conn_free(c);
        return TLS_ERR_ALLOC;
    }
    if (cli->have_saved && cli->resume != TLS_RESUME_OFF) {
        if (mbedtls_ssl_set_session(&c->ssl, &cli->saved) == 0)
            c->hs->offered_ticket = tls_ad_session_has_ticket(&cli->saved);
    }
    *out = c;
    return TLS_OK;
}

/* ---- handshake ------------------------------------------------------------ */

static int ssl_state(const tls_conn *c)
{
    return tls_ad_state(&c->ssl);
}

/* The parsed peer chain is 1-3 KB per connection that nothing needs after
 * the handshake: we keep the subject and CN as strings and free it. mbedTLS
 * has already copied it into the session cache / ticket by now. */
static void drop_peer_chain(tls_conn *c)
{
    tls_ad_drop_peer_chain(&c->ssl);
}

/* Keeps the session for the client's next connect. */
static void save_session(tls_conn *c)
{
    if (c->cli == NULL || c->cli->resume == TLS_RESUME_OFF) return;
    /* the saved session belongs to the tls_client, not to this connection */
    tls_mem_account *prev = tls_mem_scope(NULL);
    mbedtls_ssl_session_free(&c->cli->saved);
    mbedtls_ssl_session_init(&c->cli->saved);
    c->cli->have_saved = mbedtls_ssl_get_session(&c->ssl, &c->cli->saved) == 0;
    tls_mem_scope(prev);
}

static void handshake_finished(tls_conn *c)
{
    tls_hs *hs = c->hs;
    c->done = true;
    /* A full handshake always runs the server-Certificate state; a resumed
     * one (TLS 1.2 abbreviated, TLS 1.3 PSK) goes around it. */
    if (!(hs->states_seen & (1u << MBEDTLS_SSL_SERVER_CERTIFICATE))) {
        bool ticket;
        if (c->srv) {
            tls_hello h;
            ticket = tls_hello_parse(hs->first, hs->first_len, &h) && (h.ticket_len > 0 || h.psk);
        } else {
            ticket = hs->offered_ticket;
        }
        c->resumed = ticket ? 2 : 1;
    }
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&c->ssl);
    if (peer) {
        char dn[256];
        tls_dn_format(&peer->subject, dn, sizeof dn);
        c->peer_subject = tls_mem_strdup(dn);
        c->peer_cn = tls_dn_cn(&peer->subject);
    } else if (c->resumed == 2 && hs->tk_identity) {
        /* TLS 1.3 resumed: the certificate verified when the ticket was issued */
        c->peer_subject = tls_mem_strdup(hs->tk_subject);
        c->peer_cn = hs->tk_cn[0] ? tls_mem_strdup(hs->tk_cn) : NULL;
    }
    drop_peer_chain(c);
    if (tls_ad_minor(&c->ssl) < TLS_V13) save_session(c);
    if ((c->srv && c->srv->trace) || (c->cli && c->cli->trace)) {
        char d[300];
        tls_conn_describe(c, d, sizeof d);
        tls_conn_log(c, 4, "handshake complete: %s", d);
    }
    tls_mem_free(c->hs);
    c->hs = NULL;
}

/* Server with a CA but without require_certificate: mbedTLS (VERIFY_OPTIONAL)
 * would accept a certificate that fails verification. A client that shows
 * a certificate we cannot trust is refused, like OpenSSL's SSL_VERIFY_PEER. */
static int check_optional_cert(tls_conn *c)
{
    if (c->srv == NULL || !c->srv->request_cert) return 0;
    /* mbedTLS 3.6 answers a missing certificate in TLS 1.3 with the SSL 3.0
     * alert no_certificate (41); we verify optionally and refuse it here,
     * with certificate_required (116) as RFC 8446 says (tls_diag.c). */
    if (!c->hs->cert_seen) return c->srv->require_cert ? TLS_E_CERT_REQUIRED : 0;
    uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
    if (flags == 0 || flags == (uint32_t)-1) return 0;
    return MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
}

/* NewSessionTicket is handled inside another state in 2.28; this flag
 * tells us when it went by. */
static bool ticket_pending(const tls_conn *c)
{
    if (c->srv) return !c->hs->nst_sent; /* "pending" until it is on the wire */
    return tls_ad_ticket_pending(&c->ssl);
}

/* Allocations made while tls/ works for c are charged to c (tls_mem.c).
 * Without allocator hooks only setup and handshake are metered. */
typedef struct {
    tls_mem_account *prev;
    tls_conn *prev_active;
    bool on;
} mem_guard;

static tls_conn *g_active; /* tls_conn_active() */

static mem_guard mem_enter(tls_conn *c)
{
    mem_guard g = {NULL, g_active, tls_mem_hooked() || !c->done};
    if (g.on) g.prev = tls_mem_scope(c->mem);
    g_active = c;
    return g;
}

static void mem_leave(mem_guard g)
{
    if (g.on) tls_mem_scope(g.prev);
    g_active = g.prev_active;
}

tls_conn *tls_conn_active(void)
{
    return g_active;
}

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

bool tls_conn_identity(tls_conn *c, char *subject, size_t slen, char *cn, size_t cnlen)
{
    if (c == NULL) return false;
    if (c->peer_subject) { /* after the handshake */
        copy_str(subject, slen, c->peer_subject);
        copy_str(cn, cnlen, c->peer_cn);
        return true;
    }
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&c->ssl);
    if (peer) { /* verified in this handshake (check_optional_cert) */
        tls_dn_format(&peer->subject, subject, slen);
        char *name = tls_dn_cn(&peer->subject);
        copy_str(cn, cnlen, name);
        tls_mem_free(name);
        return true;
    }
    if (c->hs && c->hs->tk_identity) { /* resumed with a ticket that carried it */
        copy_str(subject, slen, c->hs->tk_subject);
        copy_str(cn, cnlen, c->hs->tk_cn);
        return true;
    }
    return false;
}

static int handshake_run(tls_conn *c)
{
    for (;;) {
        int prev = ssl_state(c);
        if (prev == MBEDTLS_SSL_HANDSHAKE_OVER) {
            handshake_finished(c);
            return TLS_OK;
        }
        bool nst_before = ticket_pending(c);
        int ret = mbedtls_ssl_handshake_step(&c->ssl);
        if (prev < 32) c->hs->states_seen |= 1u << prev;
        if ((c->srv && c->srv->trace) || (c->cli && c->cli->trace))
            tls_diag_trace_step(c, prev, nst_before && !ticket_pending(c));
        if (ret == 0 && prev == MBEDTLS_SSL_CLIENT_CERTIFICATE && ssl_state(c) != prev)
            ret = check_optional_cert(c);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
        if (ret == 0 && c->srv && prev == MBEDTLS_SSL_SERVER_FINISHED && ssl_state(c) != prev &&
            tls_ad_minor(&c->ssl) == TLS_V13)
            tls_ad_tls13_server_app_keys(&c->ssl);
#endif
        if (ret == MBEDTLS_ERR_SSL_WANT_READ) return TLS_WANT_READ;
        if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) return TLS_WANT_WRITE;
        if (ret != 0) {
            tls_diag_failure(c, ret);
            return c->result;
        }
    }
}

int tls_conn_handshake(tls_conn *c)
{
    if (c->result) return c->result;
    if (c->done) return TLS_OK;
    mem_guard g = mem_enter(c);
    int r = handshake_run(c);
    mem_leave(g);
    return r;
}

bool tls_conn_handshake_done(const tls_conn *c)
{
    return c && c->done;
}

/* ---- application data ------------------------------------------------------ */

static ssize_t io_failure(tls_conn *c, int ret, const char *what)
{
    char why[200];
    int e = c->last_errno ? c->last_errno : ECONNRESET;
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_CONN_EOF) {
        tls_conn_fail(c, ret, TLS_REASON_CLOSED, TLS_ERR_CLOSED,
                      "peer closed the connection (without close_notify)");
    } else if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        tls_conn_fail(c, ret, TLS_REASON_CLOSE_NOTIFY, TLS_ERR_CLOSED,
                      "peer closed the TLS session (close_notify)");
    } else if (ret == MBEDTLS_ERR_NET_CONN_RESET || ret == MBEDTLS_ERR_NET_SEND_FAILED ||
               ret == MBEDTLS_ERR_NET_RECV_FAILED) {
        tls_conn_fail(c, ret, TLS_REASON_IO, TLS_ERR_IO, "TLS %s failed: %s", what, strerror(e));
    } else if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
        int desc = tls_ad_alert_received(&c->ssl);
        tls_conn_fail(c, ret, TLS_REASON_PEER_ALERT, TLS_ERR_PROTOCOL,
                      "peer sent fatal alert %s (%d)", tls_alert_name(desc), desc);
        if (c->fail) c->fail->alert_received = desc;
    } else if (ret == MBEDTLS_ERR_SSL_INVALID_MAC) {
        tls_conn_fail(c, ret, TLS_REASON_BAD_MAC, TLS_ERR_PROTOCOL,
                      "TLS %s failed: a record failed authentication (bad_record_mac): "
                      "corrupted or tampered with in transit",
                      what);
    } else if (ret == MBEDTLS_ERR_SSL_ALLOC_FAILED) {
        tls_conn_fail(c, ret, TLS_REASON_ALLOC, TLS_ERR_ALLOC, "TLS %s failed: out of memory",
                      what);
    } else {
        tls_strerror(ret, why, sizeof why);
        tls_conn_fail(c, ret, TLS_REASON_LIBRARY, TLS_ERR_PROTOCOL, "TLS %s failed: %s", what, why);
    }
    return c->result;
}

static ssize_t conn_read(tls_conn *c, uint8_t *buf, size_t len)
{
    if (!c->done && !c->result) {
        int r = tls_conn_handshake(c);
        if (r != TLS_OK) return r;
    }
    if (c->result) return c->result;
    if (len == 0) return 0;
    for (;;) {
        int ret = mbedtls_ssl_read(&c->ssl, buf, len);
        if (ret > 0) return ret;
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) && defined(MBEDTLS_SSL_CLI_C)
        /* TLS 1.3 client: a NewSessionTicket record was taken in and waits
         * to be parsed on the next call; the socket will not wake us for it */
        if (ret == MBEDTLS_ERR_SSL_WANT_READ && c->cli &&
            tls_ad_state(&c->ssl) == MBEDTLS_SSL_TLS1_3_NEW_SESSION_TICKET)
            continue;
#endif
        if (ret == MBEDTLS_ERR_SSL_WANT_READ) return TLS_WANT_READ;
        if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) return TLS_WANT_WRITE;
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
        if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            save_session(c); /* TLS 1.3: the ticket comes after the handshake */
            continue;
        }
#endif
        return io_failure(c, ret, "read");
    }
}

ssize_t tls_conn_read(tls_conn *c, uint8_t *buf, size_t len)
{
    mem_guard g = mem_enter(c);
    ssize_t n = conn_read(c, buf, len);
    mem_leave(g);
    return n;
}

/* Flushes a record mbedTLS buffered earlier (out_left > 0). */
static int flush_pending(tls_conn *c)
{
    if (tls_ad_out_left(&c->ssl) == 0) return 0;
    return tls_ad_flush(&c->ssl);
}

/* mbedTLS wants a write that returned WANT_WRITE repeated with the same
 * data. We hide that: once mbedTLS has sealed the bytes into a record they
 * count as written, and the next call first pushes that record out. */
static ssize_t conn_write(tls_conn *c, const uint8_t *buf, size_t len)
{
    if (!c->done && !c->result) {
        int r = tls_conn_handshake(c);
        if (r != TLS_OK) return r;
    }
    if (c->result) return c->result;
    int ret = flush_pending(c);
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) return TLS_WANT_WRITE;
    if (ret != 0) return io_failure(c, ret, "write");
    if (len == 0) return 0;
    int maxp = mbedtls_ssl_get_max_out_record_payload(&c->ssl);
    size_t n = len;
    if (maxp > 0 && n > (size_t)maxp) n = (size_t)maxp;
    ret = mbedtls_ssl_write(&c->ssl, buf, n);
    if (ret > 0) return ret;
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return tls_ad_out_left(&c->ssl) > 0 ? (ssize_t)n : TLS_WANT_WRITE;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ) return TLS_WANT_READ;
    return io_failure(c, ret, "write");
}

ssize_t tls_conn_write(tls_conn *c, const uint8_t *buf, size_t len)
{
    mem_guard g = mem_enter(c);
    ssize_t n = conn_write(c, buf, len);
    mem_leave(g);
    return n;
}

size_t tls_conn_pending(const tls_conn *c)
{
    if (c == NULL || !c->done || c->result) return 0;
    size_t n = mbedtls_ssl_get_bytes_avail(&c->ssl);
    /* a whole record already read but not yet decrypted also needs a read */
    if (n == 0 && mbedtls_ssl_check_pending(&c->ssl)) n = 1;
    return n;
}

void tls_conn_close_notify(tls_conn *c)
{
    if (c == NULL || !c->done || c->close_sent) return;
    if (c->result && c->result != TLS_ERR_CLOSED) return;
    c->close_sent = true;
    mem_guard g = mem_enter(c);
    (void)mbedtls_ssl_close_notify(&c->ssl);
    mem_leave(g);
}

void tls_conn_free(tls_conn *c)
{
    if (c == NULL) return;
    tls_mem_account *prev = tls_mem_scope(c->mem), *mem = c->mem;
    mbedtls_ssl_free(&c->ssl);
    tls_mem_free(c->hs);
    tls_mem_free(c->err);
    tls_mem_free(c->fail);
    tls_mem_free(c->peer_subject);
    tls_mem_free(c->peer_cn);
    tls_mem_free(c);
    tls_mem_scope(prev);
    tls_mem_account_release(mem);
}

/* ---- introspection ---------------------------------------------------------- */

const char *tls_conn_error(const tls_conn *c)
{
    if (c == NULL) return "no connection";
    return c->err ? c->err : "no error";
}

bool tls_conn_resumed(const tls_conn *c)
{
    return c && c->done && c->resumed != 0;
}

const char *tls_conn_peer_cn(const tls_conn *c)
{
    return c ? c->peer_cn : NULL;
}

const char *tls_conn_peer_subject(const tls_conn *c)
{
    return c ? c->peer_subject : NULL;
}

void tls_conn_describe(const tls_conn *c, char *buf, size_t len)
{
    if (len == 0) return;
    if (!c->done) {
        snprintf(buf, len, "%s", c->result ? "handshake failed" : "handshake in progress");
        return;
    }
    const char *v = mbedtls_ssl_get_version(&c->ssl); /* "TLSv1.2" */
    char ver[16];
    if (strncmp(v, "TLSv", 4) == 0)
        snprintf(ver, sizeof ver, "TLS %s", v + 4);
    else
        snprintf(ver, sizeof ver, "%s", v);
    char suite[64];
    tls_suite_openssl_name(mbedtls_ssl_get_ciphersuite_id(mbedtls_ssl_get_ciphersuite(&c->ssl)),
                           suite, sizeof suite);
    const char *how = c->resumed == 2   ? "resumed session (ticket)"
                      : c->resumed == 1 ? "resumed session (session id)"
                                        : "full handshake";
    char who[300];
    if (c->srv) {
        if (c->peer_subject)
            snprintf(who, sizeof who, "client certificate %s", c->peer_subject);
        else
            snprintf(who, sizeof who, "no client certificate");
    } else if (!c->cli->verify) {
        snprintf(who, sizeof who, "server certificate %s NOT verified (no CA given)",
                 c->peer_subject ? c->peer_subject : "");
    } else {
        snprintf(who, sizeof who, "server certificate %s%s",
                 c->peer_subject ? c->peer_subject : "(resumed)",
                 c->cli->insecure ? " (host name not checked)" : "");
    }
    snprintf(buf, len, "%s, %s, %s, %s", ver, suite, how, who);
}

/* Counted, not estimated: see tls_mem.c. */
size_t tls_conn_memory(const tls_conn *c)
{
    return c ? tls_mem_account_bytes(c->mem) : 0;
}
