/*
 * tls_ws.h -- the WebSocket opening handshake's one piece of cryptography,
 * kept in tls/ because only tls/ includes mbedTLS headers.
 */
#ifndef SECBROKER_TLS_WS_H
#define SECBROKER_TLS_WS_H

#include <stddef.h>

/* Characters of a Sec-WebSocket-Accept value: base64 of a 20-byte SHA-1. */
#define TLS_WS_ACCEPT_LEN 28

/* RFC 6455 4.2.2: Sec-WebSocket-Accept = base64(SHA-1(key "258EAFA5-E914-
 * 47DA-95CA-C5AB0DC85B11")), where key is the client's Sec-WebSocket-Key
 * exactly as sent (surrounding whitespace already trimmed).
 * The key must be the base64 encoding of exactly 16 bytes (24 characters
 * ending in "=="); anything else is refused.
 * Returns 0 and writes TLS_WS_ACCEPT_LEN characters plus a NUL into out,
 * -1 if the key is not base64 of 16 bytes, -2 if out_len is smaller than
 * TLS_WS_ACCEPT_LEN + 1 or the hash failed. */
int tls_ws_accept_key(const char *key, size_t key_len, char *out, size_t out_len);

#endif
