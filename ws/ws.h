/*
 * ws.h -- MQTT over WebSockets (RFC 6455, server side) as a transport filter.
 *
 * No sockets, no allocation, no globals: the caller (the broker's transport)
 * owns the socket, the TLS session and the buffers, and passes bytes through:
 *
 *   bytes from the socket (after TLS)
 *     -> ws_handshake()  until the HTTP Upgrade is answered (101 or 4xx)
 *     -> ws_feed()       frames in, MQTT bytes out (to the normal MQTT framing,
 *                        which reassembles packets that straddle frames
 *                        [MQTT-6.0.0-2]), plus replies (pong, close) to send
 *   MQTT bytes from the protocol
 *     -> ws_wrap()       one unmasked binary frame around a whole coalesced
 *                        output buffer, written into headroom in front of it
 *
 * State per connection is one ws_conn (under 200 bytes); options are shared
 * by every connection of a listener (ws_opts).
 *
 * Return convention: WS_OK (0), positive sentinels that are not errors
 * (WS_NEED_MORE, WS_HTTP, WS_REPLY, WS_CLOSED), negative WS_ERR_* on a
 * refused request or a protocol violation. Every refusal comes with a status
 * or close code, bytes to send to the peer, and a reason in plain words for
 * the log.
 */
#ifndef SECBROKER_WS_H
#define SECBROKER_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_err {
    WS_OK = 0,
    WS_NEED_MORE = 1, /* handshake: the request is incomplete; keep the bytes, call again */
    WS_HTTP = 2,      /* handshake: a plain GET (no Upgrade) on a listener with http_dir */
    WS_REPLY = 3,     /* feed: a ping was answered; send io->reply, call again */
    WS_CLOSED = 4,    /* feed: the close handshake is done (or was already) */
    WS_ERR_HTTP = -1, /* handshake refused: send the response, then close */
    WS_ERR_CLOSE = -2 /* frame protocol violation: send the Close frame, then close */
};

/* Defaults of the limits (each option 0 = its default). */
#define WS_HEADERS_SIZE_DEFAULT 4096u /* websockets_headers_size */
#define WS_MAX_HEADERS_DEFAULT 64u
#define WS_MAX_MESSAGE_DEFAULT 268435460u /* MQTT's largest packet plus its fixed header */

/* Room a caller reserves for a handshake response (101 or error). */
#define WS_RESP_MAX 512
/* Largest header of a frame we send (2 + 8 bytes of length). */
#define WS_FRAME_HEADER_MAX 10

/* Close codes (RFC 6455 7.4.1) this module sends. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003, /* text frames: MQTT is binary only [MQTT-6.0.0-1] */
    WS_CLOSE_NO_STATUS = 1005,   /* reported, never sent: the peer's Close had no code */
    WS_CLOSE_BAD_DATA = 1007,    /* Close reason not UTF-8 */
    WS_CLOSE_TOO_BIG = 1009
};

/* Per-listener options. Not copied: must outlive the connections. */
typedef struct {
    size_t headers_size;        /* request line + headers + blank line, bytes */
    unsigned max_headers;       /* header lines */
    uint64_t max_message;       /* a data message (all its fragments), bytes */
    const char *const *origins; /* Origin allow-list (exact, ASCII case-insensitive) */
    size_t n_origins;           /* 0 = any Origin; a request without Origin (not a
                                   browser) is always allowed: only browsers send one
                                   and any other client can forge it */
    bool http_dir;              /* the listener serves static files (see http_dir.h) */
} ws_opts;

/* One connection. ws_conn_init() before use; nothing to free. */
typedef struct {
    uint32_t scanned;     /* handshake: bytes already searched for the blank line */
    uint8_t state;        /* private: handshake, open, closing, closed */
    uint8_t hdr_len;      /* bytes of the current frame header received */
    uint8_t hdr_need;     /* bytes the header has in all (2..14), once known */
    uint8_t opcode;       /* current frame's opcode */
    uint8_t fin;          /* current frame's FIN bit */
    uint8_t in_msg;       /* a fragmented binary message is open */
    uint8_t ctl_len;      /* control payload bytes collected */
    uint8_t hdr[14];      /* current frame header */
    uint64_t left;        /* payload bytes of the current frame still to come */
    uint64_t msg_len;     /* bytes of the current data message so far */
    uint32_t mask_pos;    /* payload bytes unmasked so far in this frame (mod 4) */
    uint8_t ctl[2 + 125]; /* control payload, after room for the reply's header */
} ws_conn;

/* Outcome of ws_handshake(). Pointers point into the caller's input. */
typedef struct {
    int status;              /* 101, 200 (WS_HTTP) or the 4xx sent */
    size_t used;             /* bytes of the request (drop them from the input) */
    size_t resp_len;         /* bytes of the response written into resp */
    const char *target;      /* request target (path), not NUL-terminated */
    size_t target_len;       /*   ... its length */
    const char *subprotocol; /* "mqtt" or "mqttv3.1" on 101 */
    char reason[128];        /* plain words for the log ("" on 101) */
} ws_hs;

/* Outcome of ws_feed() / ws_close(). */
typedef struct {
    size_t used;          /* input bytes consumed */
    size_t out_len;       /* MQTT bytes written to out: pass them on even when a
                             non-OK value is returned */
    const uint8_t *reply; /* bytes to send to the peer (pong or close frame); they
                             live in the ws_conn until its next ws_* call */
    size_t reply_len;
    uint16_t close_code; /* WS_CLOSED: the peer's code (1005 if none);
                            WS_ERR_CLOSE: the code we sent */
    const char *reason;  /* plain words for the log, static */
} ws_io;

void ws_conn_init(ws_conn *ws);

/* Parses the HTTP/1.1 Upgrade request at the start of in[0..len) (all bytes
 * received so far; the caller accumulates, up to o->headers_size), and writes
 * the response into resp (resp_cap >= WS_RESP_MAX).
 * Returns WS_NEED_MORE (nothing written; call again with more bytes), WS_OK
 * (101 written: the connection now carries frames; bytes after r->used are
 * already frames), WS_HTTP (a plain GET on an http_dir listener: serve
 * r->target with http_dir_open(), then close; nothing written), or
 * WS_ERR_HTTP (a 400/403/405/426/431 response written: send, then close;
 * status 0 and nothing written if the handshake was already answered). */
int ws_handshake(ws_conn *ws, const ws_opts *o, const uint8_t *in, size_t len, char *resp,
                 size_t resp_cap, ws_hs *r);

/* Decodes client frames from in[0..len) and writes their unmasked binary
 * payload to out (capacity cap); out may be the same buffer as in (decoding
 * in place) but must not start after in. Partial frames are kept in the
 * ws_conn, so every input byte can be consumed.
 * Returns WS_OK (stopped at the end of the input or when out is full),
 * WS_REPLY (a ping: send io->reply, then call again with in + io->used),
 * WS_CLOSED (the peer closed: send io->reply if any, flush, close the socket;
 * later calls discard input and return WS_CLOSED), or WS_ERR_CLOSE (send the
 * Close frame in io->reply, flush, close the socket; io->reason says why). */
int ws_feed(ws_conn *ws, const ws_opts *o, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
            ws_io *io);

/* Starts a server-side close (e.g. 1001 at shutdown, 1002 after an MQTT
 * protocol error): io->reply is the Close frame to send. Incoming data is
 * discarded from then on; the peer's answering Close gives WS_CLOSED.
 * Returns WS_OK, or WS_CLOSED if a Close was already sent (no reply). */
int ws_close(ws_conn *ws, uint16_t code, ws_io *io);

/* Writes the header of one unmasked frame (FIN set, the given opcode) for a
 * payload of len bytes into hdr (WS_FRAME_HEADER_MAX bytes); returns its
 * length (2, 4 or 10). */
size_t ws_frame_header(uint8_t *hdr, uint8_t opcode, uint64_t len);

/* Wraps buf[headroom .. headroom + len) in one binary frame by writing the
 * header right before it, inside the headroom (headroom >=
 * WS_FRAME_HEADER_MAX). Returns the offset in buf where the frame starts;
 * the frame is buf[offset .. headroom + len). */
size_t ws_wrap(uint8_t *buf, size_t headroom, size_t len);

/* True once ws_handshake() returned WS_OK. */
bool ws_is_open(const ws_conn *ws);

#endif
