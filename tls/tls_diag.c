/*
 * tls_diag.c -- plain-words explanations. Every failed handshake becomes one
 * line naming the peer, what went wrong and the alert we sent; with trace on,
 * every handshake message becomes one line, like Wireshark's packet list.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mbedtls/ecp.h"
#include "mbedtls/net_sockets.h"

#include "tls/tls_int.h"

/* ---- small helpers ------------------------------------------------------- */

const char *tls_version_name(int minor)
{
    switch (minor) {
    case 0:
        return "SSL 3.0";
    case TLS_V10:
        return "TLS 1.0";
    case TLS_V11:
        return "TLS 1.1";
    case TLS_V12:
        return "TLS 1.2";
    case TLS_V13:
        return "TLS 1.3";
    default:
        return "an unknown TLS version";
    }
}

void tls_conn_log(const tls_conn *c, int level, const char *fmt, ...)
{
    tls_log_fn log = c->srv ? c->srv->log : c->cli->log;
    void *ud = c->srv ? c->srv->log_ud : c->cli->log_ud;
    if (log == NULL) return;
    char msg[600], line[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s: %s", c->peer, msg);
    log(ud, level, line);
}

static void hex_bytes(const uint8_t *p, size_t n, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && pos + 4 < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%02x", i ? " " : "", p[i]);
}

/* ---- ClientHello ---------------------------------------------------------- */

static bool grease(int v)
{
    return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* Joins the handshake records at the start of buf into msg (the ClientHello
 * may be spread over several records, or cut short by our copy limit: we
 * keep whatever we could read). Returns the bytes joined. */
static size_t hello_join(const uint8_t *buf, size_t len, uint8_t msg[TLS_FIRST_MAX])
{
    size_t mlen = 0;
    for (size_t off = 0; off + 5 <= len && buf[off] == MBEDTLS_SSL_MSG_HANDSHAKE;) {
        size_t rl = (size_t)buf[off + 3] << 8 | buf[off + 4];
        size_t have = len - off - 5 < rl ? len - off - 5 : rl;
        memcpy(msg + mlen, buf + off + 5, have);
        mlen += have;
        off += 5 + rl;
    }
    return mlen;
}

/* Parses the ClientHello out of the first bytes the client sent. */
bool tls_hello_parse(const uint8_t *buf, size_t len, tls_hello *h)
{
    uint8_t msg[TLS_FIRST_MAX];
    size_t mlen = hello_join(buf, len, msg);
    memset(h, 0, sizeof *h);
    if (mlen < 4 + 2 + 32 + 1 || msg[0] != MBEDTLS_SSL_HS_CLIENT_HELLO) return false;
    const uint8_t *p = msg + 4, *end = msg + mlen;
    size_t hl = (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
    if (4 + hl < mlen) end = msg + 4 + hl;
    h->hello_minor = p[0] == 3 ? p[1] : -1;
    h->max_minor = h->min_minor = h->hello_minor;
    p += 2 + 32;
    h->sid_len = *p++;
    p += h->sid_len;
    if (p + 2 > end) return false;
    size_t sl = (size_t)p[0] << 8 | p[1];
    p += 2;
    for (size_t i = 0; i + 1 < sl && p + i + 1 < end; i += 2) {
        int id = p[i] << 8 | p[i + 1];
        if (grease(id) || id == 0x00ff || id == 0x5600) continue;
        if (h->nsuites < 32) h->suites[h->nsuites] = id;
        h->nsuites++;
    }
    h->suites[h->nsuites < 32 ? h->nsuites : 32] = 0;
    h->ok = true;
    p += sl;
    if (p + 1 > end) return true;
    p += 1 + *p; /* compression methods */
    if (p + 2 > end) return true;
    const uint8_t *eend = p + 2 + ((size_t)p[0] << 8 | p[1]);
    if (eend > end) eend = end;
    p += 2;
    while (p + 4 <= eend) {
        int type = p[0] << 8 | p[1];
        size_t el = (size_t)p[2] << 8 | p[3];
        const uint8_t *e = p + 4;
        if (e + el > eend) break;
        if (type == 0 && el > 5 && e[2] == 0) { /* server_name, host_name */
            size_t nl = (size_t)e[3] << 8 | e[4];
            if (5 + nl <= el && nl < sizeof h->sni) {
                for (size_t i = 0; i < nl; i++)
                    h->sni[i] = (e[5 + i] < 0x20 || e[5 + i] >= 0x7f) ? '?' : (char)e[5 + i];
                h->sni[nl] = '\0';
            }
        } else if (type == 41) { /* pre_shared_key (TLS 1.3 resumption) */
            h->psk = true;
        } else if (type == 35) { /* session_ticket */
            h->ticket_ext = true;
            h->ticket_len = el;
        } else if (type == 43 && el >= 1) { /* supported_versions */
            int hi = -1, lo = 99;
            for (size_t i = 1; i + 1 < el && i < (size_t)e[0] + 1; i += 2) {
                int v = e[i] << 8 | e[i + 1];
                if (grease(v) || e[i] != 3) continue;
                if (e[i + 1] > hi) hi = e[i + 1];
                if (e[i + 1] < lo) lo = e[i + 1];
            }
            if (hi >= 0) {
                h->max_minor = hi;
                h->min_minor = lo;
            }
        }
        p = e + el;
    }
    return true;
}

/* The number of cipher suites as Wireshark counts them ("Cipher Suites (31
 * suites)"): every entry on the wire, the renegotiation SCSV and GREASE
 * included, which tls_hello.nsuites leaves out. */
static size_t hello_wire_suites(const uint8_t *buf, size_t len, size_t fallback)
{
    uint8_t msg[TLS_FIRST_MAX];
    size_t mlen = hello_join(buf, len, msg);
    if (mlen < 4 + 2 + 32 + 1) return fallback;
    size_t at = 4 + 2 + 32;
    at += 1 + msg[at];
    if (at + 2 > mlen) return fallback;
    return ((size_t)msg[at] << 8 | msg[at + 1]) / 2;
}

/* "<- ClientHello: TLS 1.2 (supported_versions up to TLS 1.3), 31 cipher
 * suites, SNI localhost, asks for a ticket": the fields a student finds in
 * Wireshark's ClientHello. */
static void client_hello_line(const tls_conn *c, char *line, size_t len)
{
    tls_hello h;
    if (!tls_hello_parse(c->hs->first, c->hs->first_len, &h)) {
        snprintf(line, len, "<- ClientHello");
        return;
    }
    char ver[128];
    if (h.max_minor != h.hello_minor || h.min_minor != h.hello_minor) {
        if (h.min_minor == h.max_minor)
            snprintf(ver, sizeof ver, "%s (supported_versions: %s only)",
                     tls_version_name(h.hello_minor), tls_version_name(h.max_minor));
        else
            snprintf(ver, sizeof ver, "%s (supported_versions: %s to %s)",
                     tls_version_name(h.hello_minor), tls_version_name(h.min_minor),
                     tls_version_name(h.max_minor));
    } else {
        snprintf(ver, sizeof ver, "%s", tls_version_name(h.hello_minor));
    }
    size_t wire = hello_wire_suites(c->hs->first, c->hs->first_len, h.nsuites);
    char extra[96] = "";
    if (wire != h.nsuites)
        snprintf(extra, sizeof extra,
                 " (Wireshark lists %zu, counting signalling values such as "
                 "the renegotiation SCSV)",
                 wire);
    snprintf(line, len, "<- ClientHello: %s, %zu cipher suite%s%s%s%s%s%s", ver, h.nsuites,
             h.nsuites == 1 ? "" : "s", h.sni[0] ? ", SNI " : ", no SNI", h.sni,
             h.psk          ? ", offers a session ticket (pre_shared_key)"
             : h.ticket_len ? ", offers a session ticket"
             : h.ticket_ext ? ", asks for a ticket"
                            : "",
             h.sid_len && !h.ticket_len ? ", offers a session id" : "", extra);
}

/* ---- trace ------------------------------------------------------------------ */

static const char *curve_name(int tls_id)
{
    const mbedtls_ecp_curve_info *info = mbedtls_ecp_curve_info_from_tls_id((uint16_t)tls_id);
    if (info == NULL) return "an unknown curve";
    if (strcmp(info->name, "x25519") == 0) return "x25519";
    return info->name;
}

/* TLS 1.2 SignatureAndHashAlgorithm, named as Wireshark names it, with its
 * code and what it means in TLS 1.2 ("ecdsa_secp256r1_sha256 (0x0403:
 * ECDSA over SHA-256)": in TLS 1.2 the name's curve is not binding, the key
 * is the certificate's). */
static void sig_alg_name(int hash, int sig, char *buf, size_t len)
{
    static const char *const hashes[] = {NULL,     NULL,     "sha1",  "sha224",
                                         "sha256", "sha384", "sha512"};
    static const char *const intrinsic[] = {"rsa_pss_rsae_sha256", "rsa_pss_rsae_sha384",
                                            "rsa_pss_rsae_sha512", "ed25519"};
    const char *h = hash >= 2 && hash <= 6 ? hashes[hash] : NULL;
    char hu[8] = "";
    for (size_t i = 0; h && h[i] && i < sizeof hu - 1; i++)
        hu[i] = (char)(h[i] >= 'a' && h[i] <= 'z' ? h[i] - 32 : h[i]);
    if (h && sig == 1)
        snprintf(buf, len, "rsa_pkcs1_%s (0x%02x%02x: RSA PKCS#1 v1.5 over %.3s-%s)", h, hash, sig,
                 hu, hu + 3);
    else if (h && sig == 3 && hash >= 4)
        snprintf(buf, len, "ecdsa_%s_%s (0x%02x%02x: ECDSA over %.3s-%s)",
                 hash == 4   ? "secp256r1"
                 : hash == 5 ? "secp384r1"
                             : "secp521r1",
                 h, hash, sig, hu, hu + 3);
    else if (h && sig == 3)
        snprintf(buf, len, "ecdsa_%s (0x%02x%02x: ECDSA over %.3s-%s)", h, hash, sig, hu, hu + 3);
    else if (hash == 8 && sig >= 4 && sig <= 7)
        snprintf(buf, len, "%s (0x08%02x: %s)", intrinsic[sig - 4], sig,
                 sig == 7 ? "Ed25519" : "RSA-PSS with an RSA key");
    else
        snprintf(buf, len, "0x%02x%02x", hash, sig);
}

/* The handshake message mbedTLS just wrote (out_msg) or read (in_msg), if it
 * is of type `type` and at least `need` bytes long: the trace reads what
 * went on the wire rather than mbedTLS's internals, which are not always
 * filled in yet when a step returns. */
static const uint8_t *hs_msg(const tls_conn *c, bool sent, int type, size_t need, size_t *mlen)
{
    const uint8_t *m = sent ? tls_ad_out_msg(&c->ssl) : tls_ad_in_msg(&c->ssl);
    if (m == NULL || m[0] != type) return NULL;
    size_t n = (size_t)m[1] << 16 | (size_t)m[2] << 8 | m[3];
    if (n + 4 < need) return NULL;
    if (mlen) *mlen = n + 4;
    return m;
}

/* The suite in the ServerHello: from the message itself (what Wireshark
 * shows), else from mbedTLS's session. */
static int server_hello_suite(const tls_conn *c, bool srv, int *sid_len)
{
    size_t n = 0;
    const uint8_t *m = hs_msg(c, srv, MBEDTLS_SSL_HS_SERVER_HELLO, 4 + 2 + 32 + 1, &n);
    *sid_len = -1;
    if (m != NULL && 4 + 2 + 32 + 1 + (size_t)m[38] + 2 <= n) {
        *sid_len = m[38];
        return m[39 + m[38]] << 8 | m[40 + m[38]];
    }
    return tls_ad_suite(&c->ssl);
}

static void suite_names(int id, char *ossl, size_t olen, char *iana, size_t ilen)
{
    const mbedtls_ssl_ciphersuite_t *info = mbedtls_ssl_ciphersuite_from_id(id);
    tls_suite_openssl_name(id, ossl, olen);
    if ((id >> 8) == 0x13) { /* TLS 1.3: OpenSSL and IANA agree */
        snprintf(iana, ilen, "%s", ossl);
        return;
    }
    snprintf(iana, ilen, "%s", info ? mbedtls_ssl_get_ciphersuite_name(id) : "?");
    for (char *q = iana; *q; q++)
        if (*q == '-') *q = '_';
}

static const mbedtls_x509_crt *negotiating_peer_cert(const tls_conn *c)
{
    return tls_ad_peer_chain(&c->ssl);
}

static int chain_len(const mbedtls_x509_crt *crt)
{
    int n = 0;
    for (; crt && crt->version; crt = crt->next)
        n++;
    return n;
}

static size_t suite_count(const int *suites)
{
    size_t n = 0;
    while (suites[n])
        n++;
    return n;
}

/* "-> ServerKeyExchange: ECDHE on secp256r1, public key 65 bytes, signed
 * with ecdsa_secp256r1_sha256 (0x0403)" from the message bytes:
 * curve_type(1) named_curve(2) point<1> [hash sig] signature<2>. */
static void server_key_exchange_line(const tls_conn *c, bool srv, char *line, size_t len)
{
    size_t n = 0;
    const uint8_t *m = hs_msg(c, srv, MBEDTLS_SSL_HS_SERVER_KEY_EXCHANGE, 4 + 4, &n);
    const char *dir = srv ? "->" : "<-";
    if (m == NULL || m[4] != 3 /* named_curve */) {
        snprintf(line, len, "%s ServerKeyExchange (ephemeral key, signed)", dir);
        return;
    }
    size_t plen = m[7];
    char sig[112] = "";
    if (8 + plen + 2 <= n && tls_ad_minor(&c->ssl) >= TLS_V12) {
        char alg[88];
        sig_alg_name(m[8 + plen], m[9 + plen], alg, sizeof alg);
        snprintf(sig, sizeof sig, ", signed with %s", alg);
    } else {
        snprintf(sig, sizeof sig, ", signed");
    }
    snprintf(line, len, "%s ServerKeyExchange: ECDHE on %s, public key %zu bytes%s", dir,
             curve_name(m[5] << 8 | m[6]), plen, sig);
}

static size_t cat(char *buf, size_t len, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The DNs of the trusted CAs, "; "-separated, into buf. */
static void ca_names(const tls_conn *c, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (const mbedtls_x509_crt *ca = &c->srv->ca; ca && ca->version && pos < len; ca = ca->next) {
        char dn[200];
        tls_dn_format(&ca->subject, dn, sizeof dn);
        int w = snprintf(buf + pos, len - pos, "%s%s", pos ? "; " : "", dn);
        pos = w < 0 ? len : pos + (size_t)w;
    }
}

/* "-> CertificateRequest (client certificate required): acceptable CAs:
 * CN=...; the client signs its CertificateVerify with one of 9 signature
 * schemes, e.g. ecdsa_secp256r1_sha256 (0x0403: ECDSA over SHA-256)" from
 * the message (TLS 1.2): certificate_types<1> supported_signature_algorithms<2>
 * certificate_authorities<2> (DNs, each <2>). The DNs are the CAs a client
 * certificate must chain to, not a signature on the message. */
static void cert_request_line(const tls_conn *c, char *line, size_t len)
{
    size_t n = 0, nsig = 0, nca = 0;
    char cas[240], first[80] = "";
    bool names = true; /* the message names the CAs (or we could not read it) */
    const uint8_t *m = hs_msg(c, true, MBEDTLS_SSL_HS_CERTIFICATE_REQUEST, 5, &n);
    size_t off = m ? 5 + (size_t)m[4] : 0;
    if (m && off + 2 <= n) {
        size_t sl = (size_t)m[off] << 8 | m[off + 1];
        nsig = sl / 2;
        if (nsig && off + 4 <= n) sig_alg_name(m[off + 2], m[off + 3], first, sizeof first);
        size_t ca = off + 2 + sl;
        if (ca + 2 <= n) {
            size_t end = ca + 2 + ((size_t)m[ca] << 8 | m[ca + 1]);
            for (size_t at = ca + 2; at + 2 <= end && at + 2 <= n;
                 at += 2 + ((size_t)m[at] << 8 | m[at + 1]))
                nca++;
            names = nca > 0;
        }
    }
    ca_names(c, cas, sizeof cas);
    size_t pos = cat(line, len, 0, "-> CertificateRequest (client certificate %s): acceptable CAs",
                     c->srv->require_cert ? "required" : "optional");
    if (names)
        pos = cat(line, len, pos, ": %s", cas);
    else
        pos = cat(line, len, pos, " (none named in the message; the broker trusts %s)", cas);
    if (nsig)
        cat(line, len, pos,
            "; the client signs its CertificateVerify with one of %zu signature schemes, e.g. %s",
            nsig, first);
}

static bool kx_is_ecdhe(const tls_conn *c)
{
    int id = tls_ad_suite(&c->ssl);
    const char *name = id ? mbedtls_ssl_get_ciphersuite_name(id) : NULL;
    return name && strstr(name, "TLS-ECDHE-") == name;
}

static void client_cert_line(const tls_conn *c, char *line, size_t len)
{
    const mbedtls_x509_crt *p = negotiating_peer_cert(c);
    char dn[200];
    if (p) {
        tls_dn_format(&p->subject, dn, sizeof dn);
        snprintf(line, len, "<- Certificate: %s (%d in chain)", dn, chain_len(p));
    } else if (c->hs->leaf_subject[0]) {
        snprintf(line, len, "<- Certificate: %s", c->hs->leaf_subject);
    } else {
        snprintf(line, len, "<- Certificate: empty (the client has none)");
    }
}

/* 2.28 sends/reads NewSessionTicket while staying in the
 * server-ChangeCipherSpec state; the caller watched the flag for us. */
static void trace_ticket(tls_conn *c, bool srv)
{
    size_t n = 0;
    const uint8_t *m = hs_msg(c, srv, MBEDTLS_SSL_HS_NEW_SESSION_TICKET, 4 + 6, &n);
    if (m)
        tls_conn_log(c, 4, "%s NewSessionTicket: lifetime %lu s, ticket %u bytes (for resumption)",
                     srv ? "->" : "<-",
                     (unsigned long)m[4] << 24 | (unsigned long)m[5] << 16 |
                         (unsigned long)m[6] << 8 | m[7],
                     (unsigned)(m[8] << 8 | m[9]));
    else
        tls_conn_log(c, 4, "%s NewSessionTicket", srv ? "->" : "<-");
}

/* ClientHello to ServerHelloDone. */
/* TLS 1.3: does the ServerHello (plaintext: out_msg on the server, in_msg
 * on the client) carry pre_shared_key, i.e. accept the client's ticket? */
static bool server_hello_psk(const tls_conn *c, bool srv)
{
    size_t n = 0;
    const uint8_t *m = hs_msg(c, srv, MBEDTLS_SSL_HS_SERVER_HELLO, 4 + 2 + 32 + 1, &n);
    if (m == NULL) return false;
    size_t at = 4 + 2 + 32;
    at += 1 + m[at]; /* legacy_session_id */
    at += 2 + 1;     /* cipher_suite, legacy_compression_method */
    if (at + 2 > n) return false;
    size_t end = at + 2 + ((size_t)m[at] << 8 | m[at + 1]);
    for (at += 2; at + 4 <= end && at + 4 <= n;) {
        if ((m[at] << 8 | m[at + 1]) == 41) return true;
        at += 4 + ((size_t)m[at + 2] << 8 | m[at + 3]);
    }
    return false;
}

/* TLS 1.3 messages with a state of their own (mbedTLS 3.x). */
static void trace_tls13(tls_conn *c, int prev, char *line, size_t len)
{
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
    bool srv = c->srv != NULL;
    const char *in = srv ? "<-" : "->", *out = srv ? "->" : "<-";
    switch (prev) {
    case MBEDTLS_SSL_ENCRYPTED_EXTENSIONS:
        snprintf(line, len,
                 "%s EncryptedExtensions (encrypted from here on: without the key log "
                 "Wireshark shows only Application Data, the certificate too)",
                 out);
        break;
    case MBEDTLS_SSL_CERTIFICATE_VERIFY:
        snprintf(line, len,
                 "%s CertificateVerify (the server signs the handshake with its certificate's "
                 "key)",
                 out);
        break;
    case MBEDTLS_SSL_CLIENT_CERTIFICATE_VERIFY:
        if ((srv && negotiating_peer_cert(c)) || (!srv && c->cli->have_cert))
            snprintf(line, len,
                     "%s CertificateVerify (proves the client holds the certificate's key)", in);
        break;
    case MBEDTLS_SSL_SERVER_CCS_AFTER_SERVER_HELLO:
    case MBEDTLS_SSL_CLIENT_CCS_AFTER_SERVER_FINISHED:
    case MBEDTLS_SSL_CLIENT_CCS_AFTER_CLIENT_HELLO:
        snprintf(line, len, "%s ChangeCipherSpec (middlebox compatibility only, RFC 8446 D.4)",
                 prev == MBEDTLS_SSL_SERVER_CCS_AFTER_SERVER_HELLO ? out : in);
        break;
    case MBEDTLS_SSL_TLS1_3_NEW_SESSION_TICKET:
        snprintf(line, len, "%s NewSessionTicket (encrypted; the next connection can resume)", out);
        break;
    default:
        break;
    }
#else
    (void)c;
    (void)prev;
    (void)line;
    (void)len;
#endif
}

static void trace_hello_flight(tls_conn *c, int prev, int now, char *line, size_t len)
{
    bool srv = c->srv != NULL;
    const char *out = srv ? "->" : "<-";
    char a[64], b[128];
    switch (prev) {
    case MBEDTLS_SSL_CLIENT_HELLO:
        if (srv) {
            client_hello_line(c, line, len);
        } else {
            snprintf(line, len, "-> ClientHello: %s, %zu cipher suites%s%s%s",
                     tls_version_name(c->cli->minor), suite_count(c->cli->suites),
                     c->cli->server_name && !c->hs->iplen ? ", SNI " : ", no SNI",
                     c->cli->server_name && !c->hs->iplen ? c->cli->server_name : "",
                     c->cli->have_saved && c->cli->resume != TLS_RESUME_OFF ? ", offers to resume"
                                                                            : "");
        }
        break;
    case MBEDTLS_SSL_SERVER_HELLO: {
        int sid_len;
        int id = server_hello_suite(c, srv, &sid_len);
        bool tls13 = tls_ad_minor(&c->ssl) == TLS_V13;
        bool resuming = tls13 ? server_hello_psk(c, srv) : now != MBEDTLS_SSL_SERVER_CERTIFICATE;
        const char *how = "resuming the session";
        if (tls13)
            how = "resuming the session (ticket accepted: pre_shared_key)";
        else if (resuming && srv) {
            tls_hello h;
            how = tls_hello_parse(c->hs->first, c->hs->first_len, &h) && h.ticket_len
                      ? "resuming the session (ticket accepted)"
                      : "resuming the session (session id found in the cache)";
        }
        suite_names(id, a, sizeof a, b, sizeof b);
        snprintf(line, len, "%s ServerHello: %s, %s (%s), %s", out,
                 tls_version_name(tls_ad_minor(&c->ssl)), a, b, resuming ? how : "new session");
        break;
    }
    case MBEDTLS_SSL_SERVER_CERTIFICATE:
        if (srv) {
            char dn[200];
            tls_dn_format(&c->srv->cert.subject, dn, sizeof dn);
            snprintf(line, len, "-> Certificate: %s (%d in chain)", dn, chain_len(&c->srv->cert));
        } else {
            const mbedtls_x509_crt *p = negotiating_peer_cert(c);
            char dn[200] = "";
            if (p) tls_dn_format(&p->subject, dn, sizeof dn);
            snprintf(line, len, "<- Certificate: %s (%d in chain)", dn, chain_len(p));
        }
        break;
    case MBEDTLS_SSL_SERVER_KEY_EXCHANGE:
        if (hs_msg(c, srv, MBEDTLS_SSL_HS_SERVER_KEY_EXCHANGE, 4, NULL))
            server_key_exchange_line(c, srv, line, len);
        break;
    case MBEDTLS_SSL_CERTIFICATE_REQUEST:
        if (srv && c->srv->request_cert)
            cert_request_line(c, line, len);
        else if (!srv && tls_ad_cert_requested(&c->ssl))
            snprintf(line, len, "<- CertificateRequest");
        break;
    case MBEDTLS_SSL_SERVER_HELLO_DONE:
        snprintf(line, len, "%s ServerHelloDone", out);
        break;
    default:
        break;
    }
}

/* Client Certificate to the server's Finished. */
static void trace_key_flight(tls_conn *c, int prev, char *line, size_t len)
{
    bool srv = c->srv != NULL;
    const char *in = srv ? "<-" : "->", *out = srv ? "->" : "<-";
    char a[88];
    switch (prev) {
    case MBEDTLS_SSL_CLIENT_CERTIFICATE:
        if (srv && c->srv->request_cert)
            client_cert_line(c, line, len);
        else if (!srv && tls_ad_cert_requested(&c->ssl))
            snprintf(line, len, "-> Certificate: %s",
                     c->cli->have_cert ? "our client certificate" : "empty (we have none)");
        break;
    case MBEDTLS_SSL_CLIENT_KEY_EXCHANGE: {
        const uint8_t *m = srv && kx_is_ecdhe(c)
                               ? hs_msg(c, false, MBEDTLS_SSL_HS_CLIENT_KEY_EXCHANGE, 5, NULL)
                               : NULL;
        if (m)
            snprintf(line, len, "%s ClientKeyExchange: client's ECDHE public key %u bytes", in,
                     (unsigned)m[4]);
        else
            snprintf(line, len, "%s ClientKeyExchange", in);
        break;
    }
    case MBEDTLS_SSL_CERTIFICATE_VERIFY:
        if ((srv && negotiating_peer_cert(c)) ||
            (!srv && tls_ad_cert_requested(&c->ssl) && c->cli->have_cert)) {
            const uint8_t *m =
                srv ? hs_msg(c, false, MBEDTLS_SSL_HS_CERTIFICATE_VERIFY, 6, NULL) : NULL;
            if (m) {
                sig_alg_name(m[4], m[5], a, sizeof a);
                snprintf(line, len,
                         "%s CertificateVerify: signed with %s (proves the client "
                         "holds the certificate's key)",
                         in, a);
            } else {
                snprintf(line, len, "%s CertificateVerify", in);
            }
        }
        break;
    case MBEDTLS_SSL_CLIENT_CHANGE_CIPHER_SPEC:
        snprintf(line, len, "%s ChangeCipherSpec (the client encrypts from here on)", in);
        break;
    case MBEDTLS_SSL_CLIENT_FINISHED:
        snprintf(line, len,
                 "%s Finished (encrypted: \"Encrypted Handshake Message\" without "
                 "the key log)",
                 in);
        break;
    case TLS_ST_NEW_SESSION_TICKET:
        snprintf(line, len, "%s NewSessionTicket", out);
        break;
    case MBEDTLS_SSL_SERVER_CHANGE_CIPHER_SPEC:
        snprintf(line, len, "%s ChangeCipherSpec (the server encrypts from here on)", out);
        break;
    case MBEDTLS_SSL_SERVER_FINISHED:
        snprintf(line, len,
                 "%s Finished (encrypted: \"Encrypted Handshake Message\" without "
                 "the key log)",
                 out);
        break;
    default:
        break;
    }
}

/* One line per handshake message, in wire order. Driven by the mbedTLS
 * state that just ran (prev): a state handler reads or writes exactly one
 * message (or skips it), so "the state advanced" means "that message went
 * by". Arrows: "->" we sent it, "<-" we received it. */
void tls_diag_trace_step(tls_conn *c, int prev, bool ticket_went)
{
    int now = tls_ad_state(&c->ssl);
    char line[400];
    line[0] = '\0';
    if (ticket_went) trace_ticket(c, c->srv != NULL);
    if (now == prev) return;
    if (tls_ad_minor(&c->ssl) == TLS_V13) trace_tls13(c, prev, line, sizeof line);
    if (!line[0] && !(tls_ad_minor(&c->ssl) == TLS_V13 && prev == MBEDTLS_SSL_CERTIFICATE_VERIFY))
        trace_hello_flight(c, prev, now, line, sizeof line);
    if (!line[0] && !(tls_ad_minor(&c->ssl) == TLS_V13 && prev == MBEDTLS_SSL_CERTIFICATE_VERIFY))
        trace_key_flight(c, prev, line, sizeof line);
    if (line[0]) tls_conn_log(c, 4, "%s", line);
}

static const char *first_bytes_kind(const tls_hs *hs);

/* With trace on, a failed step still shows the message it was reading,
 * then the alert, like Wireshark's packet list does. */
static void trace_failure(tls_conn *c, int alert_in)
{
    bool srv = c->srv != NULL;
    int state = tls_ad_state(&c->ssl);
    char line[400];
    if (srv && state == MBEDTLS_SSL_CLIENT_HELLO && c->hs->first_len > 0 &&
        !first_bytes_kind(c->hs)) {
        tls_hello h;
        if (tls_hello_parse(c->hs->first, c->hs->first_len, &h)) {
            client_hello_line(c, line, sizeof line);
            tls_conn_log(c, 4, "%s", line);
        }
    } else if (srv && state == MBEDTLS_SSL_CLIENT_CERTIFICATE && c->srv->request_cert) {
        client_cert_line(c, line, sizeof line);
        tls_conn_log(c, 4, "%s", line);
    }
    if (alert_in >= 0)
        tls_conn_log(c, 4, "<- Alert: fatal, %s (%d)", tls_alert_name(alert_in), alert_in);
    if (c->hs->alert_sent >= 0)
        tls_conn_log(c, 4, "-> Alert: fatal, %s (%d)", tls_alert_name(c->hs->alert_sent),
                     c->hs->alert_sent);
    else if (c->hs->alert_sent == -2)
        tls_conn_log(c, 4, "-> Alert (encrypted)");
    /* the reason itself is the handshake's one error line (tls_conn_error) */
}

/* ---- failures ------------------------------------------------------------------ */

/* Append to buf at pos (snprintf; the line is cut at len). The new pos. */
static size_t cat(char *buf, size_t len, size_t pos, const char *fmt, ...)
{
    if (pos >= len) return pos;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + pos, len - pos, fmt, ap);
    va_end(ap);
    if (n < 0) return pos;
    pos += (size_t)n;
    return pos < len ? pos : len - 1;
}

/* The alert a verification failure deserves (RFC 5246 7.2.2), in the order
 * a human would fix things. */
static int verify_alert(uint32_t f)
{
    if (f & MBEDTLS_X509_BADCERT_REVOKED) return MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED;
    if (f & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE))
        return MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED;
    if (f & MBEDTLS_X509_BADCERT_NOT_TRUSTED) return MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA;
    if (f & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
             MBEDTLS_X509_BADCERT_NS_CERT_TYPE))
        return MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT;
    if (f & MBEDTLS_X509_BADCERT_OTHER) return MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED;
    return MBEDTLS_SSL_ALERT_MSG_BAD_CERT;
}

/* "not signed by a trusted CA (issuer CN=Other CA); expired on ..." */
void tls_diag_verify_detail(tls_conn *c, uint32_t f, char *buf, size_t len)
{
    tls_hs *hs = c->hs;
    size_t pos = 0;
    const char *sep = "";
    buf[0] = '\0';
    if (f & MBEDTLS_X509_BADCERT_REVOKED) {
        pos = cat(buf, len, pos, "%srevoked by its CA (listed in the CRL)", sep);
        sep = "; ";
    }
    if (f & MBEDTLS_X509_BADCERT_EXPIRED) {
        pos = cat(buf, len, pos, "%sexpired on %s", sep, hs->leaf_to[0] ? hs->leaf_to : "?");
        sep = "; ";
    }
    if (f & MBEDTLS_X509_BADCERT_FUTURE) {
        pos = cat(buf, len, pos, "%snot valid before %s (check the clocks)", sep, hs->leaf_from);
        sep = "; ";
    }
    if (f & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
        pos = cat(buf, len, pos, "%snot signed by a trusted CA (issuer %s)", sep,
                  hs->top_issuer[0] ? hs->top_issuer : "unknown");
        sep = "; ";
    }
    if (f & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        const char *want = c->cli && c->cli->server_name ? c->cli->server_name : NULL;
        if (want)
            pos = cat(buf, len, pos, "%sit is for %s, not for %s", sep, hs->leaf_names, want);
        else
            pos = cat(buf, len, pos, "%sno server name to check it against", sep);
        sep = "; ";
    }
    if (f & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
             MBEDTLS_X509_BADCERT_NS_CERT_TYPE)) {
        pos = cat(buf, len, pos, "%sits key usage does not allow TLS %s authentication", sep,
                  c->srv ? "client" : "server");
        sep = "; ";
    }
    if (f & (MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK |
             MBEDTLS_X509_BADCERT_BAD_KEY)) {
        pos = cat(buf, len, pos, "%sit uses a weak or unsupported algorithm or key size", sep);
        sep = "; ";
    }
    if (f & (MBEDTLS_X509_BADCRL_EXPIRED | MBEDTLS_X509_BADCRL_FUTURE |
             MBEDTLS_X509_BADCRL_NOT_TRUSTED)) {
        pos = cat(buf, len, pos, "%sthe CRL is out of date or not from this CA", sep);
        sep = "; ";
    }
    if (f & MBEDTLS_X509_BADCERT_MISSING) {
        pos = cat(buf, len, pos, "%sno certificate", sep);
        sep = "; ";
    }
    if (pos == 0) {
        char tmp[200];
        mbedtls_x509_crt_verify_info(tmp, sizeof tmp, "", f);
        for (char *q = tmp; *q; q++)
            if (*q == '\n') *q = ' ';
        cat(buf, len, pos, "%s", tmp);
    }
}

static const char *first_bytes_kind(const tls_hs *hs)
{
    if (hs->first_len == 0) return NULL;
    uint8_t b0 = hs->first[0];
    if (b0 == MBEDTLS_SSL_MSG_HANDSHAKE && (hs->first_len < 2 || hs->first[1] == 3)) return NULL;
    if (b0 == MBEDTLS_SSL_MSG_ALERT && (hs->first_len < 2 || hs->first[1] == 3)) return NULL;
    if (b0 == 0x10) return "CONNECT";
    if (b0 == 0x20) return "CONNACK";
    return "";
}

/* ---- structured failure ------------------------------------------------------ */

/* Details every failure carries, whatever the reason. */
static tls_failure *failure_new(tls_conn *c, int ret, bool handshake)
{
    tls_failure *f = c->fail;
    if (f == NULL) f = c->fail = tls_mem_calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    memset(f, 0, sizeof *f);
    f->server = c->srv != NULL;
    f->handshake = handshake;
    f->alert_sent = c->hs ? c->hs->alert_sent : -1;
    f->alert_received = -1;
    f->offered_min = f->offered_max = -1;
    f->our_min = c->srv ? c->srv->min_minor : c->cli->minor;
    f->our_max = c->srv ? TLS_MAX_MINOR : c->cli->minor;
    f->lib_code = ret;
    f->sys_errno = c->last_errno;
    if (c->cli) {
        f->have_own_cert = c->cli->have_cert;
        if (c->cli->server_name)
            snprintf(f->server_name, sizeof f->server_name, "%s", c->cli->server_name);
    }
    tls_hs *hs = c->hs;
    if (hs == NULL) return f;
    tls_hello h;
    if (c->srv && tls_hello_parse(hs->first, hs->first_len, &h)) {
        f->offered_min = h.min_minor;
        f->offered_max = h.max_minor;
        f->offered_nsuites = h.nsuites;
        memcpy(f->offered_suites, h.suites, sizeof f->offered_suites);
    }
    snprintf(f->subject, sizeof f->subject, "%s", hs->leaf_subject);
    snprintf(f->issuer, sizeof f->issuer, "%s", hs->top_issuer);
    snprintf(f->names, sizeof f->names, "%s", hs->leaf_names);
    snprintf(f->not_before, sizeof f->not_before, "%s", hs->leaf_from);
    snprintf(f->not_after, sizeof f->not_after, "%s", hs->leaf_to);
    return f;
}

void tls_failure_format(const tls_conn *c, const char *advice, char *buf, size_t len)
{
    const tls_failure *f = c->fail;
    if (len == 0) return;
    if (f == NULL) {
        snprintf(buf, len, "%s: no error", c->peer);
        return;
    }
    char alert[64] = "";
    if (f->handshake && f->alert_sent >= 0)
        snprintf(alert, sizeof alert, " (sent alert %s)", tls_alert_name(f->alert_sent));
    else if (f->handshake && f->alert_sent == -2)
        snprintf(alert, sizeof alert, " (sent an encrypted alert)");
    snprintf(buf, len, "%s: %s%s%s%s", c->peer, f->handshake ? "TLS handshake failed: " : "",
             f->text, advice ? advice : "", alert);
}

const tls_failure *tls_conn_failure(const tls_conn *c)
{
    return c ? c->fail : NULL;
}

/* Records the verdict: reason, code and tls/'s sentence; c->err gets the
 * line without caller advice (tls_conn_error). */
void tls_conn_fail(tls_conn *c, int ret, enum tls_reason reason, int code, const char *fmt, ...)
{
    tls_failure *f = failure_new(c, ret, !c->done);
    c->result = code;
    if (f == NULL) return;
    f->reason = reason;
    f->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->text, sizeof f->text, fmt, ap);
    va_end(ap);
    char line[1024];
    tls_failure_format(c, "", line, sizeof line);
    tls_mem_free(c->err);
    c->err = tls_mem_strdup(line);
}

/* ---- failures ------------------------------------------------------------------ */

static const char *peer_alert_hint(const tls_conn *c, int desc)
{
    bool srv = c->srv != NULL;
    switch (desc) {
    case 40:
        return srv ? ""
                   : ": no cipher suite in common, or the server requires a client certificate";
    case 42:
        return srv                 ? ": the client rejected our certificate (host name mismatch?)"
               : c->cli->have_cert ? ": the server rejected our client certificate"
                                   : ": the server requires a client certificate";
    case 44:
        return srv ? ": the client says our certificate is revoked"
                   : ": the server says our client certificate is revoked";
    case 45:
        return srv ? ": the client says our certificate has expired or is not yet valid"
                   : ": the server says our client certificate has expired or is not yet valid";
    case 46:
        return srv ? ": the client could not verify our certificate"
                   : ": the server could not verify our client certificate";
    case 48:
        return srv ? ": the client does not trust the CA that signed our certificate (give it our "
                     "ca.crt)"
                   : ": the server does not trust the CA that signed our client certificate";
    case 70:
        return srv ? ": it does not accept the TLS version we chose"
                   : ": the server does not accept the TLS version we offered";
    case 112:
        return ": the server does not know the name we sent in SNI";
    case 116:
        return ": the server requires a client certificate";
    default:
        return "";
    }
}

/* "no cipher suite in common: client offered A, B (+9 more); this listener
 * accepts X, Y". mbedTLS 2.28 says NO_USABLE_CIPHERSUITE instead when names
 * match but the suite cannot be used with our key (ECDHE-RSA with an EC
 * certificate): then we name the overlap and the key type. */
/* Our suites for the versions the client offered (all when unknown). */
static void suites_for_hello(const int *all, const tls_hello *h, int out[33])
{
    size_t n = 0;
    for (size_t i = 0; all[i] && n < 32; i++) {
        bool is13 = (all[i] >> 8) == 0x13;
        if (h && h->nsuites &&
            ((is13 && h->max_minor < TLS_V13) || (!is13 && h->min_minor > TLS_V12)))
            continue;
        out[n++] = all[i];
    }
    out[n] = 0;
}

static enum tls_reason no_common_suite(const tls_conn *c, const tls_hello *h, char *why, size_t len)
{
    int ours[33];
    suites_for_hello(c->srv->suites, h, ours);
    const char *keytype = mbedtls_pk_can_do(&c->srv->key, MBEDTLS_PK_ECDSA) ? "EC" : "RSA";
    char ol[300], tl[300];
    tls_suites_format(ours, 6, ol, sizeof ol);
    if (h == NULL || h->nsuites == 0) {
        cat(why, len, 0,
            "no cipher suite in common (could not read the client's list); this listener "
            "accepts %s",
            ol);
        return TLS_REASON_NO_COMMON_SUITE;
    }
    int both[33];
    size_t nb = 0;
    for (size_t i = 0; h->suites[i]; i++)
        for (size_t j = 0; ours[j]; j++)
            if (ours[j] == h->suites[i] && nb < 32) both[nb++] = h->suites[i];
    both[nb] = 0;
    tls_suites_format(h->suites, 4, tl, sizeof tl);
    if (h->nsuites > 32)
        snprintf(tl + strlen(tl), sizeof tl - strlen(tl), " (%zu in all)", h->nsuites);
    bool key_fits = false;
    for (size_t i = 0; i < nb; i++) {
        const mbedtls_ssl_ciphersuite_t *info = mbedtls_ssl_ciphersuite_from_id(both[i]);
        if (info && mbedtls_pk_can_do(&c->srv->key, (mbedtls_pk_type_t)tls_ad_suite_sig_pk(info)))
            key_fits = true;
    }
    enum tls_reason r = TLS_REASON_NO_COMMON_SUITE;
    if (nb > 0 && key_fits) {
        r = TLS_REASON_SUITE_GROUP;
        char bl[300];
        tls_suites_format(both, 3, bl, sizeof bl);
        cat(why, len, 0,
            "no usable cipher suite: client and listener share %s, but no elliptic curve or "
            "signature algorithm in common (client offered %s)",
            bl, tl);
    } else if (nb > 0) {
        r = TLS_REASON_SUITE_KEY;
        char bl[300];
        tls_suites_format(both, 3, bl, sizeof bl);
        cat(why, len, 0,
            "no usable cipher suite: client and listener share only %s, which cannot be used "
            "with this listener's %s certificate (client offered %s)",
            bl, keytype, tl);
    } else {
        cat(why, len, 0,
            "no cipher suite in common: client offered %s; this listener accepts %s with its "
            "%s certificate",
            tl, ol, keytype);
    }
    return r;
}

/* After a failed handshake the broker closes the socket; unread input
 * would turn that close into a TCP reset, which can overtake our alert. */
static void drain_input(const tls_conn *c)
{
    uint8_t junk[4096];
    for (int i = 0; i < 16; i++)
        if (recv(c->fd, junk, sizeof junk, MSG_DONTWAIT) <= 0) break;
}

/* A plaintext fatal alert record left unread in the socket, or -1. Looked for
 * only after a send/reset error, when mbedTLS never got to read it. */
static int unread_alert(tls_conn *c)
{
    uint8_t pk[512];
    ssize_t n = recv(c->fd, pk, sizeof pk, MSG_DONTWAIT);
    for (ssize_t i = 0; n > 0 && i + 5 <= n;) {
        size_t len = ((size_t)pk[i + 3] << 8) | pk[i + 4];
        if (pk[i] == MBEDTLS_SSL_MSG_ALERT && len == 2 && i + 7 <= n &&
            pk[i + 5] == MBEDTLS_SSL_ALERT_LEVEL_FATAL)
            return pk[i + 6];
        i += 5 + (ssize_t)len;
    }
    return -1;
}

static void fail_peer_alert(tls_conn *c, int ret, int desc)
{
    bool srv = c->srv != NULL;
    char hint[200];
    tls_hello h;
    if (srv && desc == 70 && tls_hello_parse(c->hs->first, c->hs->first_len, &h) &&
        h.max_minor > TLS_MAX_MINOR)
        snprintf(hint, sizeof hint, ": it wants %s only and this mbedTLS build speaks %s at most",
                 tls_version_name(h.min_minor), tls_version_name(TLS_MAX_MINOR));
    else
        snprintf(hint, sizeof hint, "%s", peer_alert_hint(c, desc));
    tls_conn_fail(c, ret, TLS_REASON_PEER_ALERT, TLS_ERR_HANDSHAKE, "%s sent alert %s (%d)%s",
                  srv ? "client" : "server", tls_alert_name(desc), desc, hint);
    if (c->fail) c->fail->alert_received = desc;
}

/* Reasons found before TLS proper: non-TLS bytes, hang-ups, socket errors
 * and the peer's alerts. Returns false when none applies. *alert: what we
 * still owe the peer (-1 nothing). */
static bool fail_transport(tls_conn *c, int ret, int *alert)
{
    tls_hs *hs = c->hs;
    bool srv = c->srv != NULL;
    const char *them = srv ? "client" : "server";
    const char *kind = first_bytes_kind(hs);
    char hex[64];
    hex_bytes(hs->first, hs->first_len < 4 ? hs->first_len : 4, hex, sizeof hex);
    *alert = -1;
    if (kind && *kind) { /* it would not understand a TLS alert */
        tls_conn_fail(c, ret, TLS_REASON_PLAINTEXT, TLS_ERR_PLAINTEXT,
                      "%s sent plain MQTT (%s) on a TLS port", them, kind);
        snprintf(c->fail->plain_packet, sizeof c->fail->plain_packet, "%s", kind);
    } else if (kind && srv && (hs->first[0] & 0x80) && hs->first_len > 2 && hs->first[2] == 1) {
        tls_conn_fail(c, ret, TLS_REASON_SSL2, TLS_ERR_PLAINTEXT,
                      "client sent an SSL 2.0 style ClientHello (first bytes %s); "
                      "SSL 2.0/3.0 clients are not supported",
                      hex);
    } else if (kind) {
        tls_conn_fail(c, ret, TLS_REASON_NOT_TLS, TLS_ERR_PLAINTEXT,
                      "%s did not start a TLS handshake (first bytes %s)", them, hex);
    } else if (ret == MBEDTLS_ERR_SSL_CONN_EOF ||
               (c->eof && ret != MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE)) {
        if (hs->in_total == 0)
            tls_conn_fail(c, ret, TLS_REASON_CLOSED_EARLY, TLS_ERR_CLOSED,
                          "%s closed the connection before sending anything", them);
        else if (srv && (hs->states_seen & (1u << MBEDTLS_SSL_SERVER_HELLO_DONE)) &&
                 !(hs->states_seen & (1u << MBEDTLS_SSL_CLIENT_KEY_EXCHANGE)))
            tls_conn_fail(c, ret, TLS_REASON_CLOSED_AFTER_CERT, TLS_ERR_CLOSED,
                          "client closed the connection after receiving our certificate "
                          "without saying why (it probably does not trust it)");
        else
            tls_conn_fail(c, ret, TLS_REASON_CLOSED, TLS_ERR_CLOSED,
                          "%s closed the connection during the handshake", them);
    } else if (ret == MBEDTLS_ERR_NET_CONN_RESET || ret == MBEDTLS_ERR_NET_RECV_FAILED ||
               ret == MBEDTLS_ERR_NET_SEND_FAILED) {
        /* The peer may have refused us with an alert and hung up while we
         * were still sending (e.g. our Certificate): the alert is unread. */
        int desc = unread_alert(c);
        if (desc >= 0)
            fail_peer_alert(c, ret, desc);
        else
            tls_conn_fail(c, ret, TLS_REASON_IO, TLS_ERR_IO, "%s during the handshake",
                          c->last_errno ? strerror(c->last_errno) : "connection reset");
    } else if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
        fail_peer_alert(c, ret, tls_ad_alert_received(&c->ssl));
    } else {
        *alert = MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE;
        return false;
    }
    if (kind)
        hex_bytes(hs->first, hs->first_len < 4 ? hs->first_len : 4, c->fail->first_bytes,
                  sizeof c->fail->first_bytes);
    return true;
}

static void fail_version(tls_conn *c, int ret, const tls_hello *h)
{
    if (c->srv && h)
        tls_conn_fail(c, ret, TLS_REASON_VERSION, TLS_ERR_HANDSHAKE,
                      "client offered only %s while the minimum is %s",
                      tls_version_name(h->max_minor), tls_version_name(c->srv->min_minor));
    else if (c->srv)
        tls_conn_fail(c, ret, TLS_REASON_VERSION, TLS_ERR_HANDSHAKE,
                      "client offered a TLS version below the minimum %s",
                      tls_version_name(c->srv->min_minor));
    else
        tls_conn_fail(c, ret, TLS_REASON_VERSION, TLS_ERR_HANDSHAKE,
                      "server chose a TLS version other than %s", tls_version_name(c->cli->minor));
}

static void fail_cert(tls_conn *c, int ret, int *alert)
{
    tls_hs *hs = c->hs;
    uint32_t f = mbedtls_ssl_get_verify_result(&c->ssl);
    if (f == (uint32_t)-1 || f == 0) f = hs->vflags;
    *alert = verify_alert(f);
    char detail[400];
    tls_diag_verify_detail(c, f, detail, sizeof detail);
    tls_conn_fail(c, ret, TLS_REASON_CERT_REJECTED, TLS_ERR_HANDSHAKE,
                  "%s certificate %s rejected: %s", c->srv ? "client" : "server",
                  hs->leaf_subject[0] ? hs->leaf_subject : "(unparsed)", detail);
    if (c->fail == NULL) return;
    c->fail->verify_flags = f;
    c->fail->name_mismatch = (f & MBEDTLS_X509_BADCERT_CN_MISMATCH) != 0;
    c->fail->crl_stale = (f & (MBEDTLS_X509_BADCRL_EXPIRED | MBEDTLS_X509_BADCRL_FUTURE |
                               MBEDTLS_X509_BADCRL_NOT_TRUSTED)) != 0;
}

/* 3.x says "handshake failure" for more than a missing suite: count it as
 * one only while the server was choosing (ClientHello / ServerHello). */
static bool no_suite_state(const tls_conn *c)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    int st = tls_ad_state(&c->ssl);
    return c->srv && (st == MBEDTLS_SSL_CLIENT_HELLO || st == MBEDTLS_SSL_SERVER_HELLO);
#else
    (void)c;
    return true;
#endif
}

/* Reasons inside TLS: versions, suites, certificates, Finished. */
static void fail_tls(tls_conn *c, int ret, int *alert)
{
    tls_hello h;
    bool have_hello = c->srv && tls_hello_parse(c->hs->first, c->hs->first_len, &h);
    bool no_suite = (ret == TLS_E_NO_SUITE_A || ret == TLS_E_NO_SUITE_B) && no_suite_state(c);
    char why[700];
    if (ret == TLS_E_VERSION) {
        *alert = MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION;
        fail_version(c, ret, have_hello ? &h : NULL);
    } else if (no_suite && have_hello && h.min_minor > TLS_MAX_MINOR) {
        tls_conn_fail(c, ret, TLS_REASON_NO_TLS13, TLS_ERR_HANDSHAKE,
                      "client offered only %s, and this mbedTLS build speaks %s at most",
                      tls_version_name(h.min_minor), tls_version_name(TLS_MAX_MINOR));
    } else if (no_suite) {
        enum tls_reason r = no_common_suite(c, have_hello ? &h : NULL, why, sizeof why);
        tls_conn_fail(c, ret, r, TLS_ERR_HANDSHAKE, "%s", why);
    } else if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        fail_cert(c, ret, alert);
    } else if (ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE || ret == TLS_E_CERT_REQUIRED) {
        if (tls_ad_minor(&c->ssl) == TLS_V13) *alert = 116; /* certificate_required */
        tls_conn_fail(c, ret, TLS_REASON_CERT_MISSING, TLS_ERR_HANDSHAKE,
                      "client sent no certificate, but this listener requires one");
    } else if (ret == TLS_E_BAD_FINISHED) {
        *alert = MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR;
        tls_conn_fail(c, ret, TLS_REASON_FINISHED, TLS_ERR_HANDSHAKE,
                      "the Finished check failed (keys differ: tampering, or a broken peer)");
    } else {
        tls_strerror(ret, why, sizeof why);
        tls_conn_fail(c, ret, TLS_REASON_LIBRARY, TLS_ERR_HANDSHAKE, "%s", why);
    }
}

/* Turns mbedTLS's verdict into a tls_failure, makes sure the peer got a
 * fatal alert (unless it is gone or not speaking TLS), sets c->result. */
void tls_diag_failure(tls_conn *c, int ret)
{
    tls_hs *hs = c->hs;
    int alert;
    bool tls13 = tls_ad_minor(&c->ssl) == TLS_V13;
    if (!fail_transport(c, ret, &alert)) fail_tls(c, ret, &alert);
    /* TLS 1.3 alerts are encrypted: ask mbedTLS which one it sent */
    if (tls13 && hs->alert_sent < 0 && tls_ad_alert_pended(&c->ssl) > 0)
        hs->alert_sent = tls_ad_alert_pended(&c->ssl);
    /* Make sure a live TLS peer learns why, even where mbedTLS stays silent. */
    if (alert >= 0 && hs->alert_sent == -1) {
        mbedtls_ssl_send_alert_message(&c->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                       (unsigned char)alert);
        if (tls_ad_out_left(&c->ssl) && tls_ad_flush(&c->ssl) != 0)
            c->last_errno = errno; /* best effort: the peer may be gone */
        if (tls13) hs->alert_sent = alert;
    }
    /* the alert we sent is part of the verdict: record it again */
    if (c->fail && c->fail->alert_sent != hs->alert_sent) {
        c->fail->alert_sent = hs->alert_sent;
        char line[1024];
        tls_failure_format(c, "", line, sizeof line);
        tls_mem_free(c->err);
        c->err = tls_mem_strdup(line);
    }
    if (c->result != TLS_ERR_IO && c->result != TLS_ERR_CLOSED) drain_input(c);
    if ((c->srv && c->srv->trace) || (c->cli && c->cli->trace))
        trace_failure(c, c->fail ? c->fail->alert_received : -1);
}
