/*
 * tls_ws.c -- Sec-WebSocket-Accept through mbedTLS' SHA-1 and base64.
 */
#include "tls/tls_ws.h"

#include <string.h>

#include "mbedtls/base64.h"
#include "mbedtls/sha1.h"
#include "mbedtls/version.h"

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* 16 bytes encode to 22 significant characters plus "==". mbedTLS' decoder
 * tolerates line breaks and spaces, so the shape is checked here first. */
static int key_shape_ok(const char *key, size_t key_len)
{
    if (key_len != 24 || key[22] != '=' || key[23] != '=') return 0;
    for (size_t i = 0; i < 22; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    return 1;
}

int tls_ws_accept_key(const char *key, size_t key_len, char *out, size_t out_len)
{
    unsigned char raw[18], digest[20], text[24 + sizeof WS_GUID];
    size_t olen = 0;

    if (out_len < TLS_WS_ACCEPT_LEN + 1) return -2;
    if (!key_shape_ok(key, key_len)) return -1;
    if (mbedtls_base64_decode(raw, sizeof raw, &olen, (const unsigned char *)key, key_len) != 0 ||
        olen != 16)
        return -1;
    memcpy(text, key, key_len);
    memcpy(text + key_len, WS_GUID, sizeof WS_GUID - 1);
#if MBEDTLS_VERSION_MAJOR >= 3
    if (mbedtls_sha1(text, key_len + sizeof WS_GUID - 1, digest) != 0) return -2;
#else
    if (mbedtls_sha1_ret(text, key_len + sizeof WS_GUID - 1, digest) != 0) return -2;
#endif
    if (mbedtls_base64_encode((unsigned char *)out, out_len, &olen, digest, sizeof digest) != 0 ||
        olen != TLS_WS_ACCEPT_LEN)
        return -2;
    out[TLS_WS_ACCEPT_LEN] = '\0';
    return 0;
}
