/*
 * tls_words.c -- advice for TLS failures in the broker's vocabulary (config
 * keys). See tls_words.h.
 */
#include "broker/tls_words.h"

const char *const tls_words_server_opts[TLS_OPT_COUNT] = {
    [TLS_OPT_CERTFILE] = "certfile",
    [TLS_OPT_KEYFILE] = "keyfile",
    [TLS_OPT_CAFILE] = "cafile",
    [TLS_OPT_CAPATH] = "capath",
    [TLS_OPT_CRLFILE] = "crlfile",
    [TLS_OPT_CIPHERS] = "ciphers",
    [TLS_OPT_CIPHERS13] = "ciphers_tls1.3",
    [TLS_OPT_VERSION] = "tls_version",
    [TLS_OPT_KEYLOG] = "tls_keylog_file",
    [TLS_OPT_REQUIRE_CERT] = "require_certificate true",
};

static const char *server_advice(const tls_failure *f)
{
    switch (f->reason) {
    case TLS_REASON_PLAINTEXT:
        return " (use the plain-TCP listener, or enable TLS in the client)";
    case TLS_REASON_CERT_MISSING:
        return " (require_certificate true)";
    case TLS_REASON_CERT_REJECTED:
        return f->crl_stale ? " (check crlfile)" : "";
    case TLS_REASON_VERSION:
        return f->offered_max >= 0 && f->offered_max < f->our_min ? " (see tls_version)" : "";
    default:
        return "";
    }
}

const char *tls_words_server_error(const tls_conn *c)
{
    static char line[1024];
    const tls_failure *f = tls_conn_failure(c);
    if (f == NULL) return tls_conn_error(c);
    tls_failure_format(c, server_advice(f), line, sizeof line);
    return line;
}
