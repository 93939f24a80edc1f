/* wsc.c -- the client side of MQTT over WebSockets (see wsc.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "clients/core/wsc.h"
#include "tls/tls_ws.h"

static void base64_16(const uint8_t in[16], char out[25])
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    uint32_t v = (uint32_t)in[15] << 16;
    out[o++] = tab[v >> 18 & 63];
    out[o++] = tab[v >> 12 & 63];
    out[o++] = '=';
    out[o++] = '=';
    out[o] = 0;
}

size_t wsc_request(char *buf, size_t cap, const char *host, int port, const char *path,
                   const uint8_t nonce[16], char key[25])
{
    base64_16(nonce, key);
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
                     path, host, port, key);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The value of header `name` in the response head h (NUL-terminated), or NULL. */
static const char *header_value(const char *h, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(h, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *s = line + 2;
        if (strncasecmp(s, name, nl) != 0 || s[nl] != ':') continue;
        s += nl + 1;
        while (*s == ' ' || *s == '\t')
            s++;
        const char *e = strstr(s, "\r\n");
        *vlen = e ? (size_t)(e - s) : strlen(s);
        while (*vlen && (s[*vlen - 1] == ' ' || s[*vlen - 1] == '\t'))
            (*vlen)--;
        return s;
    }
    return NULL;
}

int wsc_response(const uint8_t *p, size_t len, const char *key, size_t *used, char *err,
                 size_t errlen)
{
    const uint8_t *end = NULL;
    for (size_t i = 3; i < len && !end; i++)
        if (p[i - 3] == '\r' && p[i - 2] == '\n' && p[i - 1] == '\r' && p[i] == '\n')
            end = p + i + 1;
    if (!end) {
        if (len > 8192) return snprintf(err, errlen, "HTTP response head over 8 KiB"), -1;
        return 1;
    }
    char h[8200];
    size_t hl = (size_t)(end - p);
    memcpy(h, p, hl);
    h[hl] = 0;
    if (strncmp(h, "HTTP/1.1 101", 12) != 0) {
        const char *eol = strstr(h, "\r\n");
        snprintf(err, errlen, "WebSocket upgrade refused: %.*s", (int)(eol - h), h);
        return -1;
    }
    char want[TLS_WS_ACCEPT_LEN + 1];
    size_t vl = 0;
    const char *acc = header_value(h, "Sec-WebSocket-Accept", &vl);
    if (tls_ws_accept_key(key, strlen(key), want, sizeof want) != 0 || !acc || vl != strlen(want) ||
        memcmp(acc, want, vl) != 0) {
        snprintf(err, errlen, "WebSocket upgrade: missing or wrong Sec-WebSocket-Accept");
        return -1;
    }
    *used = hl;
    return 0;
}

size_t wsc_frame_header(uint8_t *hdr, uint64_t len, uint32_t mask)
{
    size_t n = 2;
    hdr[0] = 0x82; /* FIN, binary */
    if (len < 126) {
        hdr[1] = 0x80 | (uint8_t)len;
    } else if (len < 65536) {
        hdr[1] = 0x80 | 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        n = 4;
    } else {
        hdr[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    memcpy(hdr + n, &mask, 4);
    return n + 4;
}

void wsc_mask(uint8_t *p, size_t len, uint32_t mask)
{
    uint64_t m8 = (uint64_t)mask << 32 | mask; /* the key's bytes repeat every 4 */
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= m8;
        memcpy(p + i, &w, 8);
    }
    const uint8_t *k = (const uint8_t *)&mask;
    for (; i < len; i++)
        p[i] ^= k[i & 3];
}

/* Length of the header whose first bytes are in st->hdr (2 known). */
static size_t header_need(const wsc_in *st)
{
    uint8_t l7 = st->hdr[1] & 0x7f;
    return l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
}

long wsc_unframe(wsc_in *st, uint8_t *p, size_t len, char *err, size_t errlen)
{
    size_t out = 0, i = 0;
    while (i < len) {
        if (st->left == 0 && (st->hdr_len < 2 || st->hdr_len < header_need(st))) {
            st->hdr[st->hdr_len++] = p[i++];
            if (st->hdr_len < 2 || st->hdr_len < header_need(st)) continue;
            if (st->hdr[1] & 0x80) return snprintf(err, errlen, "the broker masked a frame"), -1;
            st->op = st->hdr[0] & 0x0f;
            if (st->op == 0x8)
                return snprintf(err, errlen, "the broker sent a WebSocket Close"), -1;
            uint64_t n = st->hdr[1] & 0x7f;
            if (n >= 126) {
                n = 0;
                for (size_t k = 2; k < st->hdr_len; k++)
                    n = n << 8 | st->hdr[k];
            }
            st->left = n;
            st->hdr_len = 0;
            continue;
        }
        size_t take = st->left < len - i ? (size_t)st->left : len - i;
        if (st->op == 0x2 || st->op == 0x0) {
            memmove(p + out, p + i, take);
            out += take;
        }
        i += take;
        st->left -= take;
    }
    return (long)out;
}
