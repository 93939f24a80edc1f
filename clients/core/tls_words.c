/*
 * tls_words.c -- advice for TLS failures in the clients' vocabulary
 * (command-line flags). See tls_words.h.
 */
#include "clients/core/tls_words.h"

const char *const tls_words_client_opts[TLS_OPT_COUNT] = {
    [TLS_OPT_CERTFILE] = "--cert",     [TLS_OPT_KEYFILE] = "--key",
    [TLS_OPT_CAFILE] = "--cafile",     [TLS_OPT_CAPATH] = "--capath",
    [TLS_OPT_CRLFILE] = "--crlfile",   [TLS_OPT_CIPHERS] = "--ciphers",
    [TLS_OPT_CIPHERS13] = "--ciphers", [TLS_OPT_VERSION] = "--tls-version",
    [TLS_OPT_KEYLOG] = "--keylog",     [TLS_OPT_REQUIRE_CERT] = "--cert",
};

static const char *alert_advice(const tls_failure *f)
{
    switch (f->alert_received) {
    case 40:  /* handshake_failure */
    case 116: /* certificate_required */
        return " (--cert/--key)";
    case 42: /* bad_certificate */
        return f->have_own_cert ? "" : " (--cert/--key)";
    case 70: /* protocol_version */
        return " (see --tls-version)";
    default:
        return "";
    }
}

static const char *client_advice(const tls_failure *f)
{
    switch (f->reason) {
    case TLS_REASON_PLAINTEXT:
        return " (this port does not speak TLS)";
    case TLS_REASON_CLOSED_EARLY:
        return " (is this a TLS port?)";
    case TLS_REASON_PEER_ALERT:
        return alert_advice(f); /* TLS 1.3: the refusal comes after our Finished */
    case TLS_REASON_VERSION:
        return " (our --tls-version)";
    case TLS_REASON_CERT_REJECTED:
        return f->name_mismatch && f->server_name[0]
                   ? " (use -h with one of those names, or --insecure to skip the name check)"
                   : "";
    default:
        return "";
    }
}

const char *tls_words_client_error(const tls_conn *c)
{
    static char line[1024];
    const tls_failure *f = tls_conn_failure(c);
    if (f == NULL) return tls_conn_error(c);
    tls_failure_format(c, client_advice(f), line, sizeof line);
    return line;
}
