/*
 * tls_files.c -- loading certificates, keys, CAs and the key log, with error
 * messages that name the option and the file; plus certificate formatting
 * (distinguished names, subjectAltName lists, dates) for diagnostics.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mbedtls/asn1.h"
#include "mbedtls/oid.h"

#include "tls/tls_int.h"

/* fopen first: mbedTLS reports a missing file and a bad file alike as
 * "file read error", and the admin needs to know which one it is. */
static int check_readable(const char *key, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: cannot open: %s", key, path, strerror(errno));
        return TLS_ERR_CONFIG;
    }
    fclose(f);
    return TLS_OK;
}

int tls_load_cert(mbedtls_x509_crt *crt, const char *key, const char *path, char *err,
                  size_t errlen)
{
    if (check_readable(key, path, err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
    int ret = mbedtls_x509_crt_parse_file(crt, path);
    if (ret < 0 || crt->version == 0) {
        char why[200];
        if (ret < 0)
            tls_strerror(ret, why, sizeof why);
        else
            snprintf(why, sizeof why, "no PEM or DER certificate in it");
        snprintf(err, errlen, "%s %s: no certificate found: %s", key, path, why);
        return TLS_ERR_CONFIG;
    }
    return TLS_OK;
}

int tls_load_key(mbedtls_pk_context *pk, const mbedtls_x509_crt *crt, const char *key,
                 const char *path, const char *certpath, char *err, size_t errlen)
{
    if (check_readable(key, path, err, errlen) != TLS_OK) return TLS_ERR_CONFIG;
#if MBEDTLS_VERSION_MAJOR >= 3
    int ret = mbedtls_pk_parse_keyfile(pk, path, NULL, tls_rng, NULL);
#else
    int ret = mbedtls_pk_parse_keyfile(pk, path, NULL);
#endif
    if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) {
        snprintf(err, errlen,
                 "%s %s: the key is encrypted with a pass phrase; store it unencrypted "
                 "(openssl pkey -in KEY -out KEY.plain) and protect it with file permissions",
                 key, path);
        return TLS_ERR_CONFIG;
    }
    if (ret != 0) {
        char why[200];
        tls_strerror(ret, why, sizeof why);
        snprintf(err, errlen, "%s %s: no private key found: %s", key, path, why);
        return TLS_ERR_CONFIG;
    }
#if MBEDTLS_VERSION_MAJOR >= 3
    ret = mbedtls_pk_check_pair(&crt->pk, pk, tls_rng, NULL);
#else
    ret = mbedtls_pk_check_pair(&crt->pk, pk);
#endif
    if (ret != 0) {
        snprintf(err, errlen, "%s %s: this key does not belong to the certificate in %s", key, path,
                 certpath);
        return TLS_ERR_CONFIG;
    }
    return TLS_OK;
}

int tls_load_ca(mbedtls_x509_crt *ca, const char *cafile, const char *capath,
                const char *const *names, char *err, size_t errlen)
{
    if (cafile && *cafile) {
        if (check_readable(tls_opt_name(names, TLS_OPT_CAFILE), cafile, err, errlen) != TLS_OK)
            return TLS_ERR_CONFIG;
        int ret = mbedtls_x509_crt_parse_file(ca, cafile);
        if (ret < 0 || ca->version == 0) {
            char why[200];
            if (ret < 0)
                tls_strerror(ret, why, sizeof why);
            else
                snprintf(why, sizeof why, "no PEM or DER certificate in it");
            snprintf(err, errlen, "%s %s: no CA certificate found: %s",
                     tls_opt_name(names, TLS_OPT_CAFILE), cafile, why);
            return TLS_ERR_CONFIG;
        }
    }
    if (capath && *capath) {
        DIR *d = opendir(capath);
        if (d == NULL) {
            snprintf(err, errlen, "%s %s: cannot open directory: %s",
                     tls_opt_name(names, TLS_OPT_CAPATH), capath, strerror(errno));
            return TLS_ERR_CONFIG;
        }
        closedir(d);
        /* A positive result counts files that were not certificates: normal
         * in /etc/ssl/certs-like directories, so only "nothing at all" fails. */
        int ret = mbedtls_x509_crt_parse_path(ca, capath);
        if (ret < 0 || ca->version == 0) {
            snprintf(err, errlen, "%s %s: no CA certificate found in the directory",
                     tls_opt_name(names, TLS_OPT_CAPATH), capath);
            return TLS_ERR_CONFIG;
        }
    }
    return TLS_OK;
}

/* ---- key log ------------------------------------------------------------ */

static void hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One NSS line, written and flushed at once so Wireshark (or a crash) sees it. */
static void keylog_line(tls_keylog *kl, const char *label, const unsigned char *cr,
                        const unsigned char *secret, size_t secret_len)
{
    char crh[65], sh[2 * 64 + 1];
    if (kl->f == NULL || secret_len > 64) return;
    hex(crh, cr, 32);
    hex(sh, secret, secret_len);
    fprintf(kl->f, "%s %s %s\n", label, crh, sh);
    fflush(kl->f);
}

#if MBEDTLS_VERSION_MAJOR >= 3
/* 3.x: per connection (p is the tls_conn). With the application secrets
 * comes the exporter secret, which mbedTLS derives but does not export. */
static void keylog_cb(void *p, mbedtls_ssl_key_export_type type, const unsigned char *secret,
                      size_t secret_len, const unsigned char client_random[32],
                      const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
    (void)server_random;
    (void)prf;
    tls_conn *c = p;
    tls_keylog *kl = c->srv ? &c->srv->keylog : &c->cli->keylog;
    const char *label = NULL;
    switch (type) {
    case MBEDTLS_SSL_KEY_EXPORT_TLS12_MASTER_SECRET:
        label = "CLIENT_RANDOM";
        break;
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
    case MBEDTLS_SSL_KEY_EXPORT_TLS1_3_CLIENT_HANDSHAKE_TRAFFIC_SECRET:
        label = "CLIENT_HANDSHAKE_TRAFFIC_SECRET";
        break;
    case MBEDTLS_SSL_KEY_EXPORT_TLS1_3_SERVER_HANDSHAKE_TRAFFIC_SECRET:
        label = "SERVER_HANDSHAKE_TRAFFIC_SECRET";
        break;
    case MBEDTLS_SSL_KEY_EXPORT_TLS1_3_CLIENT_APPLICATION_TRAFFIC_SECRET:
        label = "CLIENT_TRAFFIC_SECRET_0";
        break;
    case MBEDTLS_SSL_KEY_EXPORT_TLS1_3_SERVER_APPLICATION_TRAFFIC_SECRET:
        label = "SERVER_TRAFFIC_SECRET_0";
        break;
#endif
    default:
        break;
    }
    if (label) keylog_line(kl, label, client_random, secret, secret_len);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
    const unsigned char *exp = tls_ad_exporter_secret(&c->ssl);
    if (type == MBEDTLS_SSL_KEY_EXPORT_TLS1_3_SERVER_APPLICATION_TRAFFIC_SECRET && exp)
        keylog_line(kl, "EXPORTER_SECRET", client_random, exp, secret_len);
#endif
}
#else
static int keylog_cb(void *p, const unsigned char *ms, const unsigned char *kb, size_t maclen,
                     size_t keylen, size_t ivlen, const unsigned char client_random[32],
                     const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
    (void)kb;
    (void)maclen;
    (void)keylen;
    (void)ivlen;
    (void)server_random;
    (void)prf;
    keylog_line(p, "CLIENT_RANDOM", client_random, ms, 48);
    return 0;
}
#endif

int tls_keylog_open(tls_keylog *kl, const char *path, const char *key, char *err, size_t errlen)
{
    kl->f = NULL;
    kl->path = NULL;
    if (path == NULL || *path == '\0') return TLS_OK;
    /* 0600: the file decrypts every session it lists. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: cannot open for appending: %s", key, path, strerror(errno));
        return TLS_ERR_CONFIG;
    }
    kl->f = fdopen(fd, "a");
    kl->path = strdup(path);
    if (kl->f == NULL || kl->path == NULL) {
        if (kl->f)
            fclose(kl->f);
        else
            close(fd);
        free(kl->path);
        kl->f = NULL;
        kl->path = NULL;
        snprintf(err, errlen, "out of memory");
        return TLS_ERR_ALLOC;
    }
    return TLS_OK;
}

void tls_keylog_close(tls_keylog *kl)
{
    if (kl->f) fclose(kl->f);
    free(kl->path);
    kl->f = NULL;
    kl->path = NULL;
}

/* 2.28 exports keys per config, 3.x per context (the callback gets the
 * connection c): call with both and the right one takes effect. */
void tls_keylog_attach(mbedtls_ssl_config *conf, tls_conn *c, tls_keylog *kl)
{
    if (kl->f == NULL) return;
#if MBEDTLS_VERSION_MAJOR >= 3
    if (c) mbedtls_ssl_set_export_keys_cb(&c->ssl, keylog_cb, c);
    (void)conf;
#else
    if (conf) mbedtls_ssl_conf_export_keys_ext_cb(conf, keylog_cb, kl);
    (void)c;
#endif
}

/* ---- certificate formatting --------------------------------------------- */

static void append_value(char *buf, size_t len, size_t *pos, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n && *pos + 1 < len; i++) {
        unsigned char ch = p[i];
        buf[(*pos)++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    buf[*pos] = '\0';
}

/* RFC 4514 order (most specific first), as OpenSSL and Wireshark show it:
 * "CN=labclient,O=Lab". */
void tls_dn_format(const mbedtls_x509_name *dn, char *buf, size_t len)
{
    const mbedtls_x509_name *parts[24];
    size_t n = 0, pos = 0;
    if (len == 0) return;
    buf[0] = '\0';
    for (const mbedtls_x509_name *p = dn; p && n < 24; p = p->next)
        if (p->oid.p != NULL) parts[n++] = p;
    while (n-- > 0) {
        const char *sn = NULL;
        if (mbedtls_oid_get_attr_short_name(&parts[n]->oid, &sn) != 0) sn = "?";
        int w = snprintf(buf + pos, len - pos, "%s%s=", pos ? "," : "", sn);
        if (w < 0 || (size_t)w >= len - pos) {
            buf[len - 1] = '\0';
            return;
        }
        pos += (size_t)w;
        append_value(buf, len, &pos, parts[n]->val.p, parts[n]->val.len);
    }
}

/* The subject CN, or NULL. A CN with control bytes or NUL is refused rather
 * than rewritten: it may become a user name (use_identity_as_username). */
char *tls_dn_cn(const mbedtls_x509_name *dn)
{
    const mbedtls_x509_name *cn = NULL;
    for (const mbedtls_x509_name *p = dn; p; p = p->next)
        if (p->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &p->oid) == 0)
            cn = p; /* the last one is the most specific */
    if (cn == NULL || cn->val.len == 0) return NULL;
    for (size_t i = 0; i < cn->val.len; i++)
        if (cn->val.p[i] < 0x20 || cn->val.p[i] == 0x7f) return NULL;
    char *s = tls_mem_calloc(1, cn->val.len + 1); /* tls_mem_free() it */
    if (s) {
        memcpy(s, cn->val.p, cn->val.len);
        s[cn->val.len] = '\0';
    }
    return s;
}

/* Calls fn for every GeneralName in the subjectAltName extension. 2.28 keeps
 * only dNSName entries in crt->subject_alt_names, so we walk the raw
 * extensions to see iPAddress entries too. */
static void san_walk(const mbedtls_x509_crt *crt,
                     void (*fn)(void *ud, int tag, const unsigned char *p, size_t n), void *ud)
{
    unsigned char *p = crt->v3_ext.p;
    const unsigned char *end;
    size_t len;
    if (p == NULL || crt->v3_ext.len == 0) return;
    end = p + crt->v3_ext.len;
    if (*p == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3)) {
        if (mbedtls_asn1_get_tag(&p, end, &len, *p) != 0) return;
        end = p + len;
    }
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
        return;
    end = p + len;
    while (p < end) {
        unsigned char *ext_end;
        if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) !=
            0)
            return;
        ext_end = p + len;
        mbedtls_x509_buf oid;
        if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID) != 0) return;
        oid.p = p;
        p += oid.len;
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid) != 0) {
            p = ext_end;
            continue;
        }
        if (p < ext_end && *p == MBEDTLS_ASN1_BOOLEAN) {
            if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_BOOLEAN) != 0) return;
            p += len;
        }
        if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0) return;
        if (mbedtls_asn1_get_tag(&p, ext_end, &len,
                                 MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
            return;
        const unsigned char *names_end = p + len;
        while (p < names_end) {
            int tag = *p++;
            if (mbedtls_asn1_get_len(&p, names_end, &len) != 0) return;
            fn(ud, tag, p, len);
            p += len;
        }
        return;
    }
}

struct names_ctx {
    char *buf;
    size_t len, pos;
};

static void names_fn(void *ud, int tag, const unsigned char *p, size_t n)
{
    struct names_ctx *nc = ud;
    char ip[INET6_ADDRSTRLEN + 1];
    if (nc->pos + 3 >= nc->len) return;
    if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2)) { /* dNSName */
        if (nc->pos) append_value(nc->buf, nc->len, &nc->pos, (const unsigned char *)", ", 2);
        append_value(nc->buf, nc->len, &nc->pos, p, n);
    } else if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && (n == 4 || n == 16)) { /* iPAddress */
        if (inet_ntop(n == 4 ? AF_INET : AF_INET6, p, ip, sizeof ip) == NULL) return;
        if (nc->pos) append_value(nc->buf, nc->len, &nc->pos, (const unsigned char *)", ", 2);
        append_value(nc->buf, nc->len, &nc->pos, (const unsigned char *)ip, strlen(ip));
    }
}

/* "localhost, 127.0.0.1, ::1" -- or "CN=x" when there is no SAN at all. */
void tls_crt_names(const mbedtls_x509_crt *crt, char *buf, size_t len)
{
    struct names_ctx nc = {buf, len, 0};
    buf[0] = '\0';
    san_walk(crt, names_fn, &nc);
    if (nc.pos == 0) {
        char *cn = tls_dn_cn(&crt->subject);
        snprintf(buf, len, "no subjectAltName, CN=%s", cn ? cn : "(none)");
        tls_mem_free(cn);
    }
}

struct ip_ctx {
    const uint8_t *ip;
    size_t len;
    bool found;
};

static void ip_fn(void *ud, int tag, const unsigned char *p, size_t n)
{
    struct ip_ctx *ic = ud;
    if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && n == ic->len && memcmp(p, ic->ip, n) == 0)
        ic->found = true;
}

int tls_crt_has_ip(const mbedtls_x509_crt *crt, const uint8_t *ip, size_t iplen)
{
    struct ip_ctx ic = {ip, iplen, false};
    san_walk(crt, ip_fn, &ic);
    return ic.found;
}

void tls_time_format(const mbedtls_x509_time *t, char *buf, size_t len)
{
    snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d UTC", t->year, t->mon, t->day, t->hour,
             t->min, t->sec);
}
