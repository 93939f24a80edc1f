/*
 * ws_frame.c -- RFC 6455 section 5 framing, server side: client frames in
 * (masked, binary, possibly fragmented, control frames interleaved), MQTT
 * bytes out; unmasked binary frames out.
 *
 * The decoder is a byte-driven state machine over ws_conn, so a frame split
 * anywhere across reads decodes the same as a whole one. Errors are decided
 * as early as the bytes allow: the first two header bytes already settle the
 * reserved bits, the mask bit and the opcode.
 */
#include "ws/ws.h"
#include "ws/ws_int.h"
#include "mqtt/mqtt.h"

#include <string.h>

enum {
    OP_CONT = 0x0,
    OP_TEXT = 0x1,
    OP_BINARY = 0x2,
    OP_CLOSE = 0x8,
    OP_PING = 0x9,
    OP_PONG = 0xA,
};

void ws_conn_init(ws_conn *ws)
{
    memset(ws, 0, sizeof *ws);
    ws->state = WS_ST_HANDSHAKE;
}

static uint64_t opt_max_message(const ws_opts *o)
{
    return o->max_message ? o->max_message : WS_MAX_MESSAGE_DEFAULT;
}

/* A Close frame with code (no reason text) into ws->ctl, as io->reply. */
static void close_reply(ws_conn *ws, uint16_t code, bool with_code, ws_io *io)
{
    ws->ctl[0] = 0x80 | OP_CLOSE;
    ws->ctl[1] = with_code ? 2 : 0;
    ws->ctl[2] = (uint8_t)(code >> 8);
    ws->ctl[3] = (uint8_t)code;
    io->reply = ws->ctl;
    io->reply_len = with_code ? 4 : 2;
}

static int fail(ws_conn *ws, uint16_t code, const char *why, ws_io *io)
{
    close_reply(ws, code, true, io);
    io->close_code = code;
    io->reason = why;
    ws->state = WS_ST_CLOSED;
    return WS_ERR_CLOSE;
}

static bool header_complete(const ws_conn *ws)
{
    return ws->hdr_len >= 2 && ws->hdr_len == ws->hdr_need;
}

static bool is_control(uint8_t op)
{
    return op & 0x8;
}

/* The first two bytes decide the reserved bits, masking and the opcode. */
static int check_first_bytes(ws_conn *ws, ws_io *io)
{
    uint8_t op = ws->hdr[0] & 0x0f;
    if (ws->hdr[0] & 0x70) return fail(ws, WS_CLOSE_PROTOCOL, "reserved bits set in a frame", io);
    if (!(ws->hdr[1] & 0x80))
        return fail(ws, WS_CLOSE_PROTOCOL, "unmasked frame from the client", io);
    if (op == OP_TEXT)
        return fail(ws, WS_CLOSE_UNSUPPORTED, "text frame: MQTT needs binary frames", io);
    if (op != OP_CONT && op != OP_BINARY && op != OP_CLOSE && op != OP_PING && op != OP_PONG)
        return fail(ws, WS_CLOSE_PROTOCOL, "reserved opcode", io);
    uint8_t len7 = ws->hdr[1] & 0x7f;
    if (is_control(op) && (!(ws->hdr[0] & 0x80) || len7 > 125))
        return fail(ws, WS_CLOSE_PROTOCOL, "fragmented or over-long control frame", io);
    ws->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4);
    return WS_OK;
}

/* Payload length from a complete header, checked for the minimal encoding. */
static int payload_length(ws_conn *ws, uint64_t *len, ws_io *io)
{
    uint8_t len7 = ws->hdr[1] & 0x7f;
    if (len7 < 126) {
        *len = len7;
        return WS_OK;
    }
    size_t n = len7 == 126 ? 2 : 8;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | ws->hdr[2 + i];
    if (n == 8 && (v >> 63))
        return fail(ws, WS_CLOSE_PROTOCOL, "frame length has its top bit set", io);
    if ((n == 2 && v < 126) || (n == 8 && v < 65536))
        return fail(ws, WS_CLOSE_PROTOCOL, "frame length not minimally encoded", io);
    *len = v;
    return WS_OK;
}

/* A complete header: sequence and size rules for the frame it starts. */
static int start_frame(ws_conn *ws, const ws_opts *o, ws_io *io)
{
    uint64_t len;
    if (payload_length(ws, &len, io) != WS_OK) return WS_ERR_CLOSE;
    ws->opcode = ws->hdr[0] & 0x0f;
    ws->fin = ws->hdr[0] >> 7;
    ws->left = len;
    ws->mask_pos = 0;
    ws->ctl_len = 0;
    if (is_control(ws->opcode)) return WS_OK;
    if (ws->opcode == OP_CONT && !ws->in_msg)
        return fail(ws, WS_CLOSE_PROTOCOL, "continuation frame outside a message", io);
    if (ws->opcode == OP_BINARY && ws->in_msg)
        return fail(ws, WS_CLOSE_PROTOCOL, "new message before the fragmented one ended", io);
    if (len > opt_max_message(o) - ws->msg_len)
        return fail(ws, WS_CLOSE_TOO_BIG, "message larger than the limit", io);
    ws->msg_len += len;
    ws->in_msg = !ws->fin;
    return WS_OK;
}

static bool close_code_valid(uint16_t c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* The peer's Close: checked, then echoed (unless it answers ours). */
static int on_close(ws_conn *ws, ws_io *io)
{
    const uint8_t *body = ws->ctl + 2;
    uint16_t code = WS_CLOSE_NO_STATUS;
    if (ws->ctl_len == 1) return fail(ws, WS_CLOSE_PROTOCOL, "Close frame with a 1-byte body", io);
    if (ws->ctl_len >= 2) {
        code = (uint16_t)(body[0] << 8 | body[1]);
        if (!close_code_valid(code))
            return fail(ws, WS_CLOSE_PROTOCOL, "Close frame with an invalid code", io);
        if (ws->ctl_len > 2 && mqtt_utf8_validate(body + 2, ws->ctl_len - 2u) != MQTT_OK)
            return fail(ws, WS_CLOSE_BAD_DATA, "Close reason is not UTF-8", io);
    }
    if (ws->state == WS_ST_OPEN) close_reply(ws, code, ws->ctl_len >= 2, io);
    io->close_code = code;
    io->reason = "peer closed the WebSocket";
    ws->state = WS_ST_CLOSED;
    return WS_CLOSED;
}

/* The last payload byte of a frame (or a frame without payload) arrived. */
static int end_frame(ws_conn *ws, ws_io *io)
{
    ws->hdr_len = ws->hdr_need = 0;
    switch (ws->opcode) {
    case OP_CLOSE:
        return on_close(ws, io);
    case OP_PING:
        if (ws->state != WS_ST_OPEN) return WS_OK;
        ws->ctl[0] = 0x80 | OP_PONG;
        ws->ctl[1] = ws->ctl_len;
        io->reply = ws->ctl;
        io->reply_len = 2u + ws->ctl_len;
        return WS_REPLY;
    case OP_PONG:
        return WS_OK;
    default:
        if (ws->fin) ws->msg_len = 0;
        return WS_OK;
    }
}

/* Takes header bytes from in[*i..len). WS_OK with hdr_len == hdr_need when
 * the header is complete, WS_OK with fewer when the input ran out. */
static int read_header(ws_conn *ws, const ws_opts *o, const uint8_t *in, size_t len, size_t *i,
                       ws_io *io)
{
    while (*i < len && !header_complete(ws)) {
        ws->hdr[ws->hdr_len++] = in[(*i)++];
        if (ws->hdr_len == 2 && check_first_bytes(ws, io) != WS_OK) return WS_ERR_CLOSE;
    }
    if (!header_complete(ws)) return WS_OK;
    return start_frame(ws, o, io);
}

/* Unmasks n payload bytes into dst (NULL: discard), 8 at a time with the
 * key rotated to the current position. In place (dst <= src) is safe: each
 * 8-byte word is read before its (earlier or equal) destination is written. */
static void unmask(ws_conn *ws, const uint8_t *src, uint8_t *dst, size_t n)
{
    const uint8_t *key = ws->hdr + ws->hdr_need - 4;
    uint32_t k = ws->mask_pos;
    size_t j = 0;
    if (dst) {
        uint8_t rot[8];
        uint64_t m, w;
        for (int b = 0; b < 8; b++)
            rot[b] = key[(k + (uint32_t)b) & 3];
        memcpy(&m, rot, 8);
        for (; j + 8 <= n; j += 8) {
            memcpy(&w, src + j, 8);
            w ^= m;
            memcpy(dst + j, &w, 8);
        }
        for (; j < n; j++)
            dst[j] = src[j] ^ key[(k + j) & 3];
    }
    ws->mask_pos = (k + (uint32_t)n) & 3;
    ws->left -= n;
}

/* Moves payload bytes of the current frame; returns how many were taken. */
static size_t take_payload(ws_conn *ws, const uint8_t *src, size_t avail, uint8_t *out, size_t *o,
                           size_t cap)
{
    size_t n = avail < ws->left ? avail : (size_t)ws->left;
    if (is_control(ws->opcode)) {
        unmask(ws, src, ws->ctl + 2 + ws->ctl_len, n);
        ws->ctl_len = (uint8_t)(ws->ctl_len + n);
        return n;
    }
    if (ws->state != WS_ST_OPEN) { /* closing: data is no longer delivered */
        unmask(ws, src, NULL, n);
        return n;
    }
    if (n > cap - *o) n = cap - *o;
    if (!n) return 0;
    unmask(ws, src, out + *o, n);
    *o += n;
    return n;
}

int ws_feed(ws_conn *ws, const ws_opts *o, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
            ws_io *io)
{
    size_t i = 0, olen = 0;
    int rc = WS_OK;

    memset(io, 0, sizeof *io);
    if (ws->state == WS_ST_HANDSHAKE)
        return fail(ws, WS_CLOSE_PROTOCOL, "frame before the handshake", io);
    if (ws->state == WS_ST_CLOSED) {
        io->used = len;
        return WS_CLOSED;
    }
    while (i < len && rc == WS_OK) {
        if (!header_complete(ws)) {
            rc = read_header(ws, o, in, len, &i, io);
            if (rc != WS_OK || !header_complete(ws)) break;
        } else {
            size_t n = take_payload(ws, in + i, len - i, out, &olen, cap);
            if (!n && ws->left) break; /* out is full */
            i += n;
        }
        if (!ws->left) rc = end_frame(ws, io);
    }
    io->used = i;
    io->out_len = olen;
    return rc;
}

int ws_close(ws_conn *ws, uint16_t code, ws_io *io)
{
    memset(io, 0, sizeof *io);
    if (ws->state != WS_ST_OPEN) return WS_CLOSED;
    close_reply(ws, code, true, io);
    io->close_code = code;
    io->reason = "server closed the WebSocket";
    ws->state = WS_ST_CLOSING;
    return WS_OK;
}

size_t ws_frame_header(uint8_t *hdr, uint8_t opcode, uint64_t len)
{
    hdr[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        hdr[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        return 4;
    }
    hdr[1] = 127;
    for (int b = 0; b < 8; b++)
        hdr[2 + b] = (uint8_t)(len >> (56 - 8 * b));
    return 10;
}

size_t ws_wrap(uint8_t *buf, size_t headroom, size_t len)
{
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t n = ws_frame_header(hdr, OP_BINARY, len);
    memcpy(buf + headroom - n, hdr, n);
    return headroom - n;
}
