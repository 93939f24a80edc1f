/*
 * tls_words.h -- the broker's words for TLS failures: tls/ says what went
 * wrong in TLS terms (tls_conn_failure), this adds which config key to look
 * at, and names the TLS options by their config keys in setup errors.
 */
#ifndef SECBROKER_BROKER_TLS_WORDS_H
#define SECBROKER_BROKER_TLS_WORDS_H

#include "tls/tls.h"

/* tls_server_opts.opt_names: "certfile", "cafile", "tls_version", ... */
extern const char *const tls_words_server_opts[TLS_OPT_COUNT];

/* The log line for a failed connection, with advice in config keys:
 * "1.2.3.4:5: TLS handshake failed: client sent no certificate, but this
 * listener requires one (require_certificate true) (sent alert ...)".
 * Points to a static buffer valid until the next call. */
const char *tls_words_server_error(const tls_conn *c);

#endif
