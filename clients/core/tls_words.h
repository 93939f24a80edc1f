/*
 * tls_words.h -- the command-line clients' words for TLS failures: tls/ says
 * what went wrong in TLS terms (tls_conn_failure), this adds which flag to
 * use, and names the TLS options by their flags in setup errors.
 */
#ifndef SECBROKER_CLIENTS_TLS_WORDS_H
#define SECBROKER_CLIENTS_TLS_WORDS_H

#include "tls/tls.h"

/* tls_client_opts.opt_names: "--cafile", "--cert", "--tls-version", ... */
extern const char *const tls_words_client_opts[TLS_OPT_COUNT];

/* The stderr line for a failed connection, with advice in flags:
 * "localhost:8883: TLS handshake failed: server sent alert
 * certificate_required (116): the server requires a client certificate
 * (--cert/--key)". Points to a static buffer valid until the next call. */
const char *tls_words_client_error(const tls_conn *c);

#endif
