/*
 * wsc.h -- the client side of MQTT over WebSockets (RFC 6455), for secbench:
 * the HTTP Upgrade request and the check of its 101 answer, masked binary
 * frames out, server frames in (decoded in place). No sockets, no allocation.
 *
 * Return convention as elsewhere: 0 = ok, positive = not yet (need more
 * bytes), negative = refused or malformed (a reason in err).
 */
#ifndef SECBROKER_WSC_H
#define SECBROKER_WSC_H

#include <stddef.h>
#include <stdint.h>

/* Room for the request wsc_request writes (host names are at most 253). */
#define WSC_REQUEST_MAX 512
/* Largest header of a masked client frame: 2 + 8 bytes of length + 4 of mask. */
#define WSC_HEADER_MAX 14

/* Writes "GET path HTTP/1.1 ... Sec-WebSocket-Protocol: mqtt" with a
 * Sec-WebSocket-Key made from the 16 bytes of nonce (its base64 goes to key,
 * 25 bytes). Returns the request's length, 0 if cap is too small. */
size_t wsc_request(char *buf, size_t cap, const char *host, int port, const char *path,
                   const uint8_t nonce[16], char key[25]);

/* Checks the response at p[0..len): 1 while the blank line has not arrived,
 * 0 for "101" with the right Sec-WebSocket-Accept (*used = the response's
 * bytes; frames may follow), -1 otherwise (err says why). */
int wsc_response(const uint8_t *p, size_t len, const char *key, size_t *used, char *err,
                 size_t errlen);

/* The header of one masked binary frame of len bytes with mask key `mask`
 * into hdr (WSC_HEADER_MAX); returns its length. */
size_t wsc_frame_header(uint8_t *hdr, uint64_t len, uint32_t mask);
/* XORs p[0..len) with the mask key (the payload of a frame whose header
 * wsc_frame_header wrote). */
void wsc_mask(uint8_t *p, size_t len, uint32_t mask);

/* Decoding state of the server's frames. Zero it to start. */
typedef struct {
    uint8_t hdr[10];
    uint8_t hdr_len;
    uint8_t op;
    uint64_t left; /* payload bytes of the current frame still to come */
} wsc_in;

/* Decodes server frames in p[0..len) in place: the payload of data frames is
 * moved to the front of p, control frames are dropped. Returns the payload
 * bytes now at p[0..), or -1 with err set on a Close, a masked frame or a bad
 * header (the connection is over). */
long wsc_unframe(wsc_in *st, uint8_t *p, size_t len, char *err, size_t errlen);

#endif
