/*
 * test_ws.c -- ws/: the WebSocket opening handshake (RFC 6455 4), framing
 * (RFC 6455 5, MQTT 3.1.1 section 6) and http_dir static files.
 *
 * Frames are built here by an independent little client encoder (masking
 * with a fixed key) rather than by ws_frame_header(), so the decoder is not
 * tested against its own encoder.
 */
#include "ws/ws.h"
#include "ws/http_dir.h"
#include "tls/tls_ws.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------- */

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A client frame: FIN/RSV/opcode byte as given, masked unless !masked. */
static size_t cframe(uint8_t *b, uint8_t b0, bool masked, const void *payload, size_t len)
{
    size_t n = 0;
    b[n++] = b0;
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        b[n++] = m | (uint8_t)len;
    } else if (len < 65536) {
        b[n++] = m | 126;
        b[n++] = (uint8_t)(len >> 8);
        b[n++] = (uint8_t)len;
    } else {
        b[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            b[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (masked) memcpy(b + n, MASK, 4), n += 4;
    for (size_t i = 0; i < len; i++)
        b[n + i] = ((const uint8_t *)payload)[i] ^ (masked ? MASK[i & 3] : 0);
    return n + len;
}

#define BIN(fin) ((fin) ? 0x82 : 0x02)
#define CONT(fin) ((fin) ? 0x80 : 0x00)

typedef struct {
    uint8_t out[200000];
    size_t out_len;
    uint8_t replies[2048];
    size_t replies_len;
    int rc;
    uint16_t code;
    const char *reason;
} result;

/* Feeds in[0..len) in chunks of `step` bytes through an out buffer of
 * `cap` bytes, answering WS_REPLY like a transport would. */
static void run(ws_conn *ws, const ws_opts *o, const uint8_t *in, size_t len, size_t step,
                size_t cap, result *r)
{
    static uint8_t out[200000];
    memset(r, 0, sizeof *r);
    r->rc = WS_OK;
    for (size_t off = 0; off < len && r->rc == WS_OK;) {
        size_t chunk = len - off < step ? len - off : step, pos = 0;
        while (pos < chunk) {
            ws_io io;
            int rc = ws_feed(ws, o, in + off + pos, chunk - pos, out, cap, &io);
            memcpy(r->out + r->out_len, out, io.out_len);
            r->out_len += io.out_len;
            if (io.reply_len) memcpy(r->replies + r->replies_len, io.reply, io.reply_len);
            r->replies_len += io.reply_len;
            pos += io.used;
            if (rc != WS_OK && rc != WS_REPLY) {
                r->rc = rc, r->code = io.close_code, r->reason = io.reason;
                break;
            }
            ck_assert(io.used > 0 || io.out_len > 0 || rc == WS_REPLY);
        }
        off += chunk;
    }
}

/* ---- Sec-WebSocket-Accept --------------------------------------------------- */

START_TEST(accept_key_rfc_example)
{
    char out[TLS_WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ=="; /* RFC 6455 section 1.3 */
    ck_assert_int_eq(tls_ws_accept_key(key, strlen(key), out, sizeof out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

START_TEST(accept_key_refuses_bad_keys)
{
    char out[TLS_WS_ACCEPT_LEN + 1];
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",      /* 23 chars */
        "dGhlIHNhbXBsZSBub25jZQ",       /* no padding */
        "dGhlIHNhbXBsZSBub25j!Q==",     /* not base64 */
        "dGhlIHNhbXBsZSBub25jZQ==dGhl", /* 28 chars */
        "dGhl IHNhbXBsZSBub25jZQ=",     /* space */
        "dGhlIHNhbXBsZSBub25jZSE=",     /* 17 bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(tls_ws_accept_key(bad[i], strlen(bad[i]), out, sizeof out), -1);
    ck_assert_int_eq(tls_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out, 28), -2);
}
END_TEST

/* ---- the opening handshake ------------------------------------------------------ */

#define REQ_HEAD "GET /mqtt HTTP/1.1\r\nHost: server.example.com\r\n"
#define REQ_UPG "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define REQ_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define REQ_VER "Sec-WebSocket-Version: 13\r\n"
#define REQ_PROTO "Sec-WebSocket-Protocol: mqtt\r\n"
#define GOOD_REQ REQ_HEAD REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n"

static char resp[WS_RESP_MAX];

/* Feeds req one more byte at a time (step 1) or whole (step 0). */
static int handshake(ws_conn *ws, const ws_opts *o, const char *req, size_t len, int step, ws_hs *r)
{
    ws_conn_init(ws);
    if (step)
        for (size_t n = 1; n < len; n++) {
            int rc = ws_handshake(ws, o, (const uint8_t *)req, n, resp, sizeof resp, r);
            if (rc != WS_NEED_MORE) return rc;
        }
    return ws_handshake(ws, o, (const uint8_t *)req, len, resp, sizeof resp, r);
}

START_TEST(handshake_ok_whole_and_bytewise)
{
    ws_opts o = {0};
    for (int step = 0; step <= 1; step++) {
        ws_conn ws;
        ws_hs r;
        int rc = handshake(&ws, &o, GOOD_REQ, strlen(GOOD_REQ), step, &r);
        ck_assert_int_eq(rc, WS_OK);
        ck_assert_int_eq(r.status, 101);
        ck_assert_uint_eq(r.used, strlen(GOOD_REQ));
        ck_assert_str_eq(r.subprotocol, "mqtt");
        ck_assert(ws_is_open(&ws));
        resp[r.resp_len] = '\0';
        ck_assert_str_eq(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Protocol: mqtt\r\n\r\n");
        ck_assert_uint_eq(r.target_len, 5);
        ck_assert(memcmp(r.target, "/mqtt", 5) == 0);
    }
}
END_TEST

START_TEST(handshake_leaves_following_frames)
{
    ws_opts o = {0};
    ws_conn ws;
    ws_hs r;
    uint8_t buf[512];
    size_t n = strlen(GOOD_REQ);
    memcpy(buf, GOOD_REQ, n);
    n += cframe(buf + n, BIN(1), true, "\x10\x00", 2);
    ws_conn_init(&ws);
    ck_assert_int_eq(ws_handshake(&ws, &o, buf, n, resp, sizeof resp, &r), WS_OK);
    ck_assert_uint_eq(r.used, strlen(GOOD_REQ));
    result res;
    run(&ws, &o, buf + r.used, n - r.used, n, 100, &res);
    ck_assert_int_eq(res.rc, WS_OK);
    ck_assert_uint_eq(res.out_len, 2);
    ck_assert(memcmp(res.out, "\x10\x00", 2) == 0);
}
END_TEST

START_TEST(handshake_subprotocol_choice)
{
    static const struct {
        const char *hdr, *want;
    } t[] = {
        {"Sec-WebSocket-Protocol: mqttv3.1\r\n", "mqttv3.1"},
        {"Sec-WebSocket-Protocol: foo, mqttv3.1 , MQTT\r\n", "mqtt"},
        {"Sec-WebSocket-Protocol: foo\r\nSec-WebSocket-Protocol: mqtt\r\n", "mqtt"},
    };
    ws_opts o = {0};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char req[1024];
        snprintf(req, sizeof req, REQ_HEAD REQ_UPG REQ_KEY REQ_VER "%s\r\n", t[i].hdr);
        ws_conn ws;
        ws_hs r;
        ck_assert_int_eq(handshake(&ws, &o, req, strlen(req), 0, &r), WS_OK);
        ck_assert_str_eq(r.subprotocol, t[i].want);
    }
}
END_TEST

/* One refused request: status, response head, reason words, state. */
static void expect_refusal(const ws_opts *o, const char *req, size_t len, int status,
                           const char *reason_part, const char *resp_part)
{
    for (int step = 0; step <= 1; step++) {
        ws_conn ws;
        ws_hs r;
        int rc = handshake(&ws, o, req, len, step, &r);
        ck_assert_msg(rc == WS_ERR_HTTP, "%s: rc %d status %d", reason_part, rc, r.status);
        ck_assert_int_eq(r.status, status);
        ck_assert_msg(strstr(r.reason, reason_part), "reason '%s' lacks '%s'", r.reason,
                      reason_part);
        ck_assert_uint_gt(r.resp_len, 0);
        resp[r.resp_len] = '\0';
        char head[64];
        snprintf(head, sizeof head, "HTTP/1.1 %d ", status);
        ck_assert(strncmp(resp, head, strlen(head)) == 0);
        ck_assert(strstr(resp, "Connection: close\r\n"));
        if (resp_part) ck_assert_msg(strstr(resp, resp_part), "response lacks %s", resp_part);
        ck_assert(!ws_is_open(&ws));
        ws_io io;
        ck_assert_int_eq(ws_feed(&ws, o, (const uint8_t *)"\x82\x80", 2, NULL, 0, &io), WS_CLOSED);
    }
}

START_TEST(handshake_bad_requests)
{
    static const struct {
        const char *req;
        int status;
        const char *reason, *resp;
    } t[] = {
        {REQ_HEAD REQ_UPG REQ_VER REQ_PROTO "\r\n", 400, "no Sec-WebSocket-Key", NULL},
        {REQ_HEAD REQ_UPG REQ_KEY REQ_KEY REQ_VER REQ_PROTO "\r\n", 400, "more than one", NULL},
        {REQ_HEAD REQ_UPG "Sec-WebSocket-Key: c2hvcnQ=\r\n" REQ_VER REQ_PROTO "\r\n", 400,
         "not base64 of 16 bytes", NULL},
        {REQ_HEAD REQ_UPG REQ_KEY "Sec-WebSocket-Version: 8\r\n" REQ_PROTO "\r\n", 426, "only 13",
         "Sec-WebSocket-Version: 13\r\n"},
        {REQ_HEAD REQ_UPG REQ_KEY REQ_PROTO "\r\n", 426, "missing", "Sec-WebSocket-Version: 13"},
        {"POST /mqtt HTTP/1.1\r\nHost: h\r\n" REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n", 405,
         "method POST", "Allow: GET\r\n"},
        {"get /mqtt HTTP/1.1\r\nHost: h\r\n" REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n", 405,
         "only GET", NULL},
        {"GET /mqtt HTTP/1.0\r\nHost: h\r\n" REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n", 400,
         "HTTP/1.1", NULL},
        {REQ_HEAD "Connection: Upgrade\r\n" REQ_KEY REQ_VER REQ_PROTO "\r\n", 426,
         "no Upgrade: websocket", "Upgrade: websocket\r\n"},
        {REQ_HEAD "Upgrade: websocket\r\nConnection: keep-alive\r\n" REQ_KEY REQ_VER REQ_PROTO
                  "\r\n",
         400, "Connection header lacks Upgrade", NULL},
        {"GET / HTTP/1.1\r\n" REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n", 400, "no Host", NULL},
        {REQ_HEAD REQ_UPG REQ_KEY REQ_VER "\r\n", 400, "no Sec-WebSocket-Protocol", NULL},
        {REQ_HEAD REQ_UPG REQ_KEY REQ_VER "Sec-WebSocket-Protocol: chat\r\n\r\n", 400,
         "neither mqtt", NULL},
        {REQ_HEAD "Bad Header: x\r\n" REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n", 400,
         "malformed HTTP header", NULL},
        {REQ_HEAD " folded\r\n" REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n", 400,
         "malformed HTTP header", NULL},
        {"GET /mqtt\r\nHost: h\r\n\r\n", 400, "request line", NULL},
        {"GET  /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request line", NULL},
        {REQ_HEAD "X: a\nY: b\r\n" REQ_UPG REQ_KEY REQ_VER REQ_PROTO "\r\n", 400, "bare CR or LF",
         NULL},
    };
    ws_opts o = {0};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        expect_refusal(&o, t[i].req, strlen(t[i].req), t[i].status, t[i].reason, t[i].resp);
}
END_TEST

START_TEST(handshake_origin_allow_list)
{
    static const char *const origins[] = {"https://lab.example", "http://127.0.0.1:8080"};
    ws_opts o = {.origins = origins, .n_origins = 2};
    const char *refused =
        REQ_HEAD REQ_UPG REQ_KEY REQ_VER REQ_PROTO "Origin: https://evil.example\r\n\r\n";
    expect_refusal(&o, refused, strlen(refused), 403, "Origin https://evil.example", NULL);
    const char *allowed =
        REQ_HEAD REQ_UPG REQ_KEY REQ_VER REQ_PROTO "Origin: HTTPS://lab.example\r\n\r\n";
    ws_conn ws;
    ws_hs r;
    ck_assert_int_eq(handshake(&ws, &o, allowed, strlen(allowed), 1, &r), WS_OK);
    /* no Origin: not a browser, which is what the allow-list protects */
    ck_assert_int_eq(handshake(&ws, &o, GOOD_REQ, strlen(GOOD_REQ), 0, &r), WS_OK);
    /* without an allow-list any Origin is accepted */
    ws_opts any = {0};
    ck_assert_int_eq(handshake(&ws, &any, refused, strlen(refused), 0, &r), WS_OK);
}
END_TEST

START_TEST(handshake_huge_headers)
{
    static char req[12000];
    ws_opts o = {0};
    /* a cookie that pushes the request past the default 4096 bytes */
    int n = snprintf(req, sizeof req, "%s%s%s%sCookie: ", REQ_HEAD REQ_UPG, REQ_KEY, REQ_VER,
                     REQ_PROTO);
    memset(req + n, 'c', 4500);
    strcpy(req + n + 4500, "\r\n\r\n");
    expect_refusal(&o, req, strlen(req), 431, "exceed 4096 bytes", NULL);
    /* refused as soon as the limit is reached, without the blank line */
    ws_conn ws;
    ws_hs r;
    ws_conn_init(&ws);
    ck_assert_int_eq(ws_handshake(&ws, &o, (uint8_t *)req, 4095, resp, sizeof resp, &r),
                     WS_NEED_MORE);
    ck_assert_int_eq(ws_handshake(&ws, &o, (uint8_t *)req, 4096, resp, sizeof resp, &r),
                     WS_ERR_HTTP);
    ck_assert_int_eq(r.status, 431);
    /* websockets_headers_size raised: the same request passes */
    ws_opts big = {.headers_size = 8192};
    ck_assert_int_eq(handshake(&ws, &big, req, strlen(req), 0, &r), WS_OK);
    /* and lowered below the good request */
    ws_opts small = {.headers_size = 64};
    expect_refusal(&small, GOOD_REQ, strlen(GOOD_REQ), 431, "exceed 64 bytes", NULL);
}
END_TEST

START_TEST(handshake_too_many_headers)
{
    static char req[8000];
    ws_opts o = {0};
    size_t n = (size_t)snprintf(req, sizeof req, "%s", REQ_HEAD REQ_UPG REQ_KEY REQ_VER REQ_PROTO);
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(req + n, sizeof req - n, "X-%d: y\r\n", i);
    strcpy(req + n, "\r\n");
    expect_refusal(&o, req, strlen(req), 431, "more than 64 header lines", NULL);
    ws_opts more = {.max_headers = 70};
    ws_conn ws;
    ws_hs r;
    ck_assert_int_eq(handshake(&ws, &more, req, strlen(req), 0, &r), WS_OK);
    ws_opts three = {.max_headers = 3};
    expect_refusal(&three, GOOD_REQ, strlen(GOOD_REQ), 431, "more than 3 header lines", NULL);
}
END_TEST

START_TEST(handshake_plain_get_on_http_dir)
{
    const char *req = "GET /index.html?v=2 HTTP/1.1\r\nHost: h\r\n\r\n";
    ws_opts o = {.http_dir = true};
    ws_conn ws;
    ws_hs r;
    ck_assert_int_eq(handshake(&ws, &o, req, strlen(req), 1, &r), WS_HTTP);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.target_len, strlen("/index.html?v=2"));
    ck_assert_uint_eq(r.resp_len, 0);
    /* other methods still get 405 on an http_dir listener */
    const char *head = "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n";
    expect_refusal(&o, head, strlen(head), 405, "method HEAD", "Allow: GET");
    /* a WebSocket upgrade still works there */
    ck_assert_int_eq(handshake(&ws, &o, GOOD_REQ, strlen(GOOD_REQ), 0, &r), WS_OK);
}
END_TEST

/* ---- frames ------------------------------------------------------------------ */

/* A connection after a successful handshake. */
static void open_conn(ws_conn *ws)
{
    ws_opts o = {0};
    ws_hs r;
    ws_conn_init(ws);
    ck_assert_int_eq(
        ws_handshake(ws, &o, (const uint8_t *)GOOD_REQ, strlen(GOOD_REQ), resp, sizeof resp, &r),
        WS_OK);
}

START_TEST(frame_masked_binary)
{
    ws_opts o = {0};
    ws_conn ws;
    uint8_t buf[64];
    size_t n = cframe(buf, BIN(1), true, "\xc0\x00", 2); /* PINGREQ */
    open_conn(&ws);
    result r;
    run(&ws, &o, buf, n, n, 64, &r);
    ck_assert_int_eq(r.rc, WS_OK);
    ck_assert_uint_eq(r.out_len, 2);
    ck_assert(memcmp(r.out, "\xc0\x00", 2) == 0);
    ck_assert_uint_eq(r.replies_len, 0);
}
END_TEST

START_TEST(frame_sizes_16_and_64_bit)
{
    static uint8_t payload[70000], buf[70100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    size_t sizes[] = {0, 125, 126, 300, 65535, 65536, 70000};
    ws_opts o = {0};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        ws_conn ws;
        result r;
        size_t n = cframe(buf, BIN(1), true, payload, sizes[s]);
        open_conn(&ws);
        run(&ws, &o, buf, n, n, sizeof r.out, &r);
        ck_assert_int_eq(r.rc, WS_OK);
        ck_assert_uint_eq(r.out_len, sizes[s]);
        ck_assert(memcmp(r.out, payload, sizes[s]) == 0);
    }
}
END_TEST

/* One bad frame: the close code sent and the reply bytes. */
static void expect_close(const ws_opts *o, const uint8_t *in, size_t n, uint16_t code,
                         const char *why)
{
    for (size_t step = 1; step <= n; step += n - 1) {
        ws_conn ws;
        result r;
        open_conn(&ws);
        run(&ws, o, in, n, step, 4096, &r);
        ck_assert_msg(r.rc == WS_ERR_CLOSE, "%s: rc %d", why, r.rc);
        ck_assert_int_eq(r.code, code);
        ck_assert_msg(strstr(r.reason, why), "reason '%s' lacks '%s'", r.reason, why);
        uint8_t want[4] = {0x88, 0x02, (uint8_t)(code >> 8), (uint8_t)code};
        ck_assert_uint_eq(r.replies_len, 4);
        ck_assert(memcmp(r.replies, want, 4) == 0);
        ws_io io;
        ck_assert_int_eq(ws_feed(&ws, o, in, n, r.out, 10, &io), WS_CLOSED);
        ck_assert_uint_eq(io.used, n);
        ck_assert_uint_eq(io.reply_len, 0);
        if (n == 1) break;
    }
}

START_TEST(frame_protocol_errors)
{
    ws_opts o = {.max_message = 100};
    uint8_t b[512], big[200];
    size_t n;
    memset(big, 'x', sizeof big);

    n = cframe(b, BIN(1), false, "\xc0\x00", 2);
    expect_close(&o, b, n, 1002, "unmasked");
    n = cframe(b, 0x81, true, "hello", 5);
    expect_close(&o, b, n, 1003, "text frame");
    n = cframe(b, 0x82 | 0x40, true, "x", 1); /* RSV1 without an extension */
    expect_close(&o, b, n, 1002, "reserved bits");
    n = cframe(b, 0x83, true, "x", 1);
    expect_close(&o, b, n, 1002, "reserved opcode");
    n = cframe(b, 0x8B, true, "x", 1);
    expect_close(&o, b, n, 1002, "reserved opcode");
    n = cframe(b, 0x89, true, big, 126); /* ping longer than 125 */
    expect_close(&o, b, n, 1002, "control frame");
    n = cframe(b, 0x09, true, "x", 1); /* fragmented ping */
    expect_close(&o, b, n, 1002, "control frame");
    n = cframe(b, CONT(1), true, "x", 1);
    expect_close(&o, b, n, 1002, "continuation frame outside");
    n = cframe(b, BIN(0), true, "a", 1);
    n += cframe(b + n, BIN(1), true, "b", 1);
    expect_close(&o, b, n, 1002, "new message before");
    n = cframe(b, BIN(1), true, big, 101);
    expect_close(&o, b, n, 1009, "larger than the limit");
    n = cframe(b, BIN(0), true, big, 60);
    n += cframe(b + n, CONT(1), true, big, 41);
    expect_close(&o, b, n, 1009, "larger than the limit");
}
END_TEST

START_TEST(frame_length_encoding_errors)
{
    ws_opts o = {0};
    /* 100 bytes announced with the 16-bit form, 1000 with the 64-bit form */
    uint8_t a[] = {0x82, 0xfe, 0x00, 100, 1, 2, 3, 4};
    expect_close(&o, a, sizeof a, 1002, "not minimally encoded");
    uint8_t c[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 1, 2, 3, 4};
    expect_close(&o, c, sizeof c, 1002, "not minimally encoded");
    uint8_t d[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    expect_close(&o, d, sizeof d, 1002, "top bit");
}
END_TEST

START_TEST(frame_limit_is_inclusive)
{
    ws_opts o = {.max_message = 100};
    uint8_t b[512], big[100];
    memset(big, 'y', sizeof big);
    size_t n = cframe(b, BIN(0), true, big, 60);
    n += cframe(b + n, CONT(1), true, big, 40);
    n += cframe(b + n, BIN(1), true, big, 100); /* the count restarts per message */
    ws_conn ws;
    result r;
    open_conn(&ws);
    run(&ws, &o, b, n, n, 4096, &r);
    ck_assert_int_eq(r.rc, WS_OK);
    ck_assert_uint_eq(r.out_len, 200);
}
END_TEST

START_TEST(frame_close_handshake)
{
    ws_opts o = {0};
    uint8_t b[256];
    ws_conn ws;
    result r;
    size_t n = cframe(b, 0x88, true,
                      "\x03\xe8"
                      "bye",
                      5);
    open_conn(&ws);
    run(&ws, &o, b, n, 1, 100, &r);
    ck_assert_int_eq(r.rc, WS_CLOSED);
    ck_assert_int_eq(r.code, 1000);
    ck_assert_uint_eq(r.replies_len, 4);
    ck_assert(memcmp(r.replies, "\x88\x02\x03\xe8", 4) == 0); /* the code echoed */
    ws_io io;
    ck_assert_int_eq(ws_feed(&ws, &o, b, n, r.out, 10, &io), WS_CLOSED);

    n = cframe(b, 0x88, true, "", 0); /* no code: 1005 reported, empty Close echoed */
    open_conn(&ws);
    run(&ws, &o, b, n, n, 100, &r);
    ck_assert_int_eq(r.rc, WS_CLOSED);
    ck_assert_int_eq(r.code, 1005);
    ck_assert_uint_eq(r.replies_len, 2);
    ck_assert(memcmp(r.replies, "\x88\x00", 2) == 0);

    n = cframe(b, 0x88, true, "\x0f\xa0", 2); /* 4000: application range */
    open_conn(&ws);
    run(&ws, &o, b, n, n, 100, &r);
    ck_assert_int_eq(r.rc, WS_CLOSED);
    ck_assert_int_eq(r.code, 4000);
}
END_TEST

START_TEST(frame_bad_close_frames)
{
    ws_opts o = {0};
    uint8_t b[64];
    static const char *bad_codes[] = {
        "\x03\xe7", "\x03\xec", "\x03\xed", "\x03\xee",
        "\x03\xf7", "\x07\xd0", "\x13\x88"}; /* 999 1004-1006 1015 2000 5000 */
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        size_t n = cframe(b, 0x88, true, bad_codes[i], 2);
        expect_close(&o, b, n, 1002, "invalid code");
    }
    size_t n = cframe(b, 0x88, true, "\x03", 1);
    expect_close(&o, b, n, 1002, "1-byte body");
    n = cframe(b, 0x88, true, "\x03\xe8\xc3\x28", 4);
    expect_close(&o, b, n, 1007, "not UTF-8");
}
END_TEST

START_TEST(frame_server_initiated_close)
{
    ws_opts o = {0};
    ws_conn ws;
    ws_io io;
    uint8_t b[128];
    open_conn(&ws);
    ck_assert_int_eq(ws_close(&ws, WS_CLOSE_GOING_AWAY, &io), WS_OK);
    ck_assert_uint_eq(io.reply_len, 4);
    ck_assert(memcmp(io.reply, "\x88\x02\x03\xe9", 4) == 0);
    ck_assert_int_eq(ws_close(&ws, WS_CLOSE_GOING_AWAY, &io), WS_CLOSED);
    /* data and pings after our Close are dropped; the peer's Close ends it */
    size_t n = cframe(b, BIN(1), true, "data", 4);
    n += cframe(b + n, 0x89, true, "p", 1);
    n += cframe(b + n, 0x88, true, "\x03\xe9", 2);
    result r;
    run(&ws, &o, b, n, 1, 100, &r);
    ck_assert_int_eq(r.rc, WS_CLOSED);
    ck_assert_int_eq(r.code, 1001);
    ck_assert_uint_eq(r.out_len, 0);
    ck_assert_uint_eq(r.replies_len, 0);
}
END_TEST

START_TEST(frame_before_handshake)
{
    ws_opts o = {0};
    ws_conn ws;
    ws_io io;
    uint8_t b[16];
    size_t n = cframe(b, BIN(1), true, "x", 1);
    ws_conn_init(&ws);
    ck_assert_int_eq(ws_feed(&ws, &o, b, n, b, sizeof b, &io), WS_ERR_CLOSE);
}
END_TEST

/* A stream of fragmented MQTT packets, an interleaved ping, a packet
 * straddling frames, an empty frame, a pong and a close. */
static size_t mixed_stream(uint8_t *b, uint8_t *mqtt, size_t *mqtt_len)
{
    static const uint8_t connect[] = {0x10, 0x10, 0x00, 0x04, 'M',  'Q', 'T', 'T', 0x04,
                                      0x02, 0x00, 0x3c, 0x00, 0x04, 'c', 'l', 'i', 'd'};
    static const uint8_t sub[] = {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00};
    size_t n = 0;
    memcpy(mqtt, connect, sizeof connect);
    memcpy(mqtt + sizeof connect, sub, sizeof sub);
    *mqtt_len = sizeof connect + sizeof sub;
    n += cframe(b + n, BIN(0), true, mqtt, 5);
    n += cframe(b + n, 0x89, true, "ping!", 5); /* between fragments */
    n += cframe(b + n, CONT(0), true, mqtt + 5, 0);
    /* the rest of CONNECT and the start of SUBSCRIBE in one frame */
    n += cframe(b + n, CONT(1), true, mqtt + 5, sizeof connect - 5 + 3);
    n += cframe(b + n, 0x8A, true, "unsolicited", 11);
    n += cframe(b + n, BIN(1), true, mqtt + sizeof connect + 3, sizeof sub - 3);
    n += cframe(b + n, 0x89, true, "", 0);
    n += cframe(b + n, 0x88, true, "\x03\xe8", 2);
    return n;
}

static const uint8_t MIXED_REPLIES[] = {0x8a, 0x05, 'p',  'i',  'n',  'g', '!',
                                        0x8a, 0x00, 0x88, 0x02, 0x03, 0xe8};

START_TEST(frame_fragments_and_interleaved_ping)
{
    ws_opts o = {0};
    uint8_t b[512], mqtt[64];
    size_t mlen, n = mixed_stream(b, mqtt, &mlen);
    ws_conn ws;
    result r;
    open_conn(&ws);
    run(&ws, &o, b, n, n, 4096, &r);
    ck_assert_int_eq(r.rc, WS_CLOSED);
    ck_assert_uint_eq(r.out_len, mlen);
    ck_assert(memcmp(r.out, mqtt, mlen) == 0);
    ck_assert_uint_eq(r.replies_len, sizeof MIXED_REPLIES);
    ck_assert(memcmp(r.replies, MIXED_REPLIES, sizeof MIXED_REPLIES) == 0);
}
END_TEST

START_TEST(frame_split_at_every_boundary)
{
    ws_opts o = {0};
    uint8_t b[512], mqtt[64];
    size_t mlen, n = mixed_stream(b, mqtt, &mlen);
    /* every chunk size, every output capacity from 1 byte */
    for (size_t step = 1; step <= n; step++) {
        ws_conn ws;
        result r;
        open_conn(&ws);
        run(&ws, &o, b, n, step, step % 7 + 1, &r);
        ck_assert_int_eq(r.rc, WS_CLOSED);
        ck_assert_uint_eq(r.out_len, mlen);
        ck_assert(memcmp(r.out, mqtt, mlen) == 0);
        ck_assert(memcmp(r.replies, MIXED_REPLIES, sizeof MIXED_REPLIES) == 0);
    }
    /* two pieces split at every offset */
    for (size_t k = 0; k <= n; k++) {
        ws_conn ws;
        result a, c;
        open_conn(&ws);
        run(&ws, &o, b, k, k ? k : 1, 4096, &a);
        ck_assert_int_eq(a.rc, k == n ? WS_CLOSED : WS_OK);
        run(&ws, &o, b + k, n - k, n, 4096, &c);
        ck_assert_uint_eq(a.out_len + c.out_len, mlen);
        ck_assert(memcmp(a.out, mqtt, a.out_len) == 0);
        ck_assert(memcmp(c.out, mqtt + a.out_len, c.out_len) == 0);
    }
}
END_TEST

START_TEST(frame_decode_in_place)
{
    ws_opts o = {0};
    uint8_t b[512], mqtt[64];
    size_t mlen, n = mixed_stream(b, mqtt, &mlen), in = 0, out = 0;
    ws_conn ws;
    open_conn(&ws);
    for (;;) {
        ws_io io;
        int rc = ws_feed(&ws, &o, b + in, n - in, b + out, n - in, &io);
        in += io.used;
        out += io.out_len;
        if (rc != WS_REPLY) {
            ck_assert_int_eq(rc, WS_CLOSED);
            break;
        }
    }
    ck_assert_uint_eq(out, mlen);
    ck_assert(memcmp(b, mqtt, mlen) == 0);
}
END_TEST

START_TEST(frame_state_is_small)
{
    ck_assert_uint_le(sizeof(ws_conn), 200);
}
END_TEST

/* ---- frames we send -------------------------------------------------------------- */

START_TEST(frame_encoder)
{
    static const struct {
        uint64_t len;
        size_t hlen;
        uint8_t hdr[10];
    } t[] = {
        {0, 2, {0x82, 0}},
        {125, 2, {0x82, 125}},
        {126, 4, {0x82, 126, 0, 126}},
        {65535, 4, {0x82, 126, 0xff, 0xff}},
        {65536, 10, {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
        {0x123456789aULL, 10, {0x82, 127, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9a}},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint8_t h[WS_FRAME_HEADER_MAX];
        ck_assert_uint_eq(ws_frame_header(h, 2, t[i].len), t[i].hlen);
        ck_assert(memcmp(h, t[i].hdr, t[i].hlen) == 0);
    }
    /* a coalesced buffer of two MQTT packets becomes one frame in place */
    uint8_t buf[WS_FRAME_HEADER_MAX + 4] = {0};
    memcpy(buf + WS_FRAME_HEADER_MAX, "\xd0\x00\xd0\x00", 4);
    size_t off = ws_wrap(buf, WS_FRAME_HEADER_MAX, 4);
    ck_assert_uint_eq(off, WS_FRAME_HEADER_MAX - 2);
    ck_assert(memcmp(buf + off, "\x82\x04\xd0\x00\xd0\x00", 6) == 0);
}
END_TEST

/* ---- http_dir ------------------------------------------------------------------- */

static char tmp[256], root[4096];

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void mk(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    ck_assert_int_eq(mkdir(p, 0755), 0);
}

static void lnk(const char *target, const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    ck_assert_int_eq(symlink(target, p), 0);
}

static void http_setup(void)
{
    char err[256];
    snprintf(tmp, sizeof tmp, "/tmp/test_ws.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    put("outside.txt", "secret outside\n");
    mk("www");
    put("www/index.html", "<p>home</p>\n");
    put("www/a.css", "p{}");
    put("www/app.js", "1;");
    put("www/data.json", "{}");
    put("www/img.png", "PNG");
    put("www/pic.svg", "<svg/>");
    put("www/favicon.ico", "ICO");
    put("www/notes.txt", "notes");
    put("www/blob.bin", "bin");
    put("www/.secret", "dot");
    mk("www/sub");
    put("www/sub/index.html", "<p>sub</p>");
    mk("www/empty");
    lnk("../outside.txt", "www/escape.txt");
    lnk("/etc", "www/etc");
    lnk("notes.txt", "www/alias.txt"); /* a symlink that stays inside is fine */
    char dir[300];
    snprintf(dir, sizeof dir, "%s/www", tmp);
    ck_assert_int_eq(http_dir_root(dir, root, sizeof root, err, sizeof err), 0);
}

static void http_teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", tmp);
}

START_TEST(http_dir_table)
{
    static const struct {
        const char *target;
        int status;
        const char *mime, *body;
    } t[] = {
        {"/", 200, "text/html; charset=utf-8", "<p>home</p>\n"},
        {"/index.html?x=1#frag", 200, "text/html; charset=utf-8", "<p>home</p>\n"},
        {"/a.css", 200, "text/css; charset=utf-8", "p{}"},
        {"/app.js", 200, "text/javascript; charset=utf-8", "1;"},
        {"/data.json", 200, "application/json", "{}"},
        {"/img.png", 200, "image/png", "PNG"},
        {"/pic.svg", 200, "image/svg+xml", "<svg/>"},
        {"/favicon.ico", 200, "image/vnd.microsoft.icon", "ICO"},
        {"/notes.txt", 200, "text/plain; charset=utf-8", "notes"},
        {"/n%6ftes.txt", 200, "text/plain; charset=utf-8", "notes"},
        {"/alias.txt", 200, "text/plain; charset=utf-8", "notes"},
        {"/sub/", 200, "text/html; charset=utf-8", "<p>sub</p>"},
        {"/sub", 200, "text/html; charset=utf-8", "<p>sub</p>"},
        {"/blob.bin", 404, NULL, NULL},
        {"/missing.html", 404, NULL, NULL},
        {"/empty/", 404, NULL, NULL},
        {"/empty", 404, NULL, NULL},
        {"/../outside.txt", 403, NULL, NULL},
        {"/%2e%2e/outside.txt", 403, NULL, NULL},
        {"/%2E%2E%2Foutside.txt", 403, NULL, NULL},
        {"/sub/../../outside.txt", 403, NULL, NULL},
        {"/sub/%2e%2e/%2e%2e/outside.txt", 403, NULL, NULL},
        {"/./index.html", 403, NULL, NULL},
        {"/.secret", 403, NULL, NULL},
        {"/escape.txt", 403, NULL, NULL},
        {"/etc/passwd", 403, NULL, NULL},
        {"/notes.txt%00.html", 400, NULL, NULL},
        {"/..%5coutside.txt", 400, NULL, NULL},
        {"/%zz", 400, NULL, NULL},
        {"/%2", 400, NULL, NULL},
        {"index.html", 400, NULL, NULL},
        {"http://host/index.html", 400, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        http_file f;
        int rc = http_dir_open(root, t[i].target, strlen(t[i].target), &f);
        ck_assert_msg(f.status == t[i].status, "%s: status %d (%s), want %d", t[i].target, f.status,
                      f.reason, t[i].status);
        if (t[i].status != 200) {
            ck_assert_int_eq(rc, -1);
            ck_assert_int_eq(f.fd, -1);
            ck_assert(f.reason[0]);
            continue;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_str_eq(f.mime, t[i].mime);
        char got[64] = {0};
        ck_assert_uint_eq(f.size, strlen(t[i].body));
        ck_assert_int_eq(read(f.fd, got, sizeof got - 1), (int)strlen(t[i].body));
        ck_assert_str_eq(got, t[i].body);
        close(f.fd);
    }
}
END_TEST

START_TEST(http_dir_root_errors)
{
    char real[4096], err[256], p[300];
    snprintf(p, sizeof p, "%s/outside.txt", tmp);
    ck_assert_int_eq(http_dir_root(p, real, sizeof real, err, sizeof err), -1);
    ck_assert(strstr(err, "not a directory"));
    snprintf(p, sizeof p, "%s/nope", tmp);
    ck_assert_int_eq(http_dir_root(p, real, sizeof real, err, sizeof err), -1);
    ck_assert(strstr(err, "nope"));
}
END_TEST

START_TEST(http_response_heads)
{
    char b[256];
    size_t n = http_response_head(b, sizeof b, 200, "text/css; charset=utf-8", 3, NULL);
    ck_assert_uint_eq(n, strlen(b));
    ck_assert_str_eq(b, "HTTP/1.1 200 OK\r\nContent-Type: text/css; charset=utf-8\r\n"
                        "Content-Length: 3\r\nConnection: close\r\n\r\n");
    n = http_error_response(b, sizeof b, 404, NULL, "no such file");
    b[n] = '\0';
    ck_assert(strstr(b, "HTTP/1.1 404 Not Found\r\n") == b);
    ck_assert(strstr(b, "Content-Length: 13\r\n"));
    ck_assert(strstr(b, "\r\n\r\nno such file\n"));
    ck_assert_uint_eq(http_error_response(b, 40, 404, NULL, "no such file"), 0);
}
END_TEST

static Suite *ws_suite(void)
{
    Suite *s = suite_create("ws");
    TCase *k = tcase_create("accept");
    tcase_add_test(k, accept_key_rfc_example);
    tcase_add_test(k, accept_key_refuses_bad_keys);
    suite_add_tcase(s, k);
    TCase *h = tcase_create("handshake");
    tcase_add_test(h, handshake_ok_whole_and_bytewise);
    tcase_add_test(h, handshake_leaves_following_frames);
    tcase_add_test(h, handshake_subprotocol_choice);
    tcase_add_test(h, handshake_bad_requests);
    tcase_add_test(h, handshake_origin_allow_list);
    tcase_add_test(h, handshake_huge_headers);
    tcase_add_test(h, handshake_too_many_headers);
    tcase_add_test(h, handshake_plain_get_on_http_dir);
    suite_add_tcase(s, h);
    TCase *f = tcase_create("frames");
    tcase_add_test(f, frame_masked_binary);
    tcase_add_test(f, frame_sizes_16_and_64_bit);
    tcase_add_test(f, frame_protocol_errors);
    tcase_add_test(f, frame_length_encoding_errors);
    tcase_add_test(f, frame_limit_is_inclusive);
    tcase_add_test(f, frame_close_handshake);
    tcase_add_test(f, frame_bad_close_frames);
    tcase_add_test(f, frame_server_initiated_close);
    tcase_add_test(f, frame_before_handshake);
    tcase_add_test(f, frame_fragments_and_interleaved_ping);
    tcase_add_test(f, frame_split_at_every_boundary);
    tcase_add_test(f, frame_decode_in_place);
    tcase_add_test(f, frame_state_is_small);
    tcase_add_test(f, frame_encoder);
    suite_add_tcase(s, f);
    TCase *d = tcase_create("http_dir");
    tcase_add_checked_fixture(d, http_setup, http_teardown);
    tcase_add_test(d, http_dir_table);
    tcase_add_test(d, http_dir_root_errors);
    tcase_add_test(d, http_response_heads);
    suite_add_tcase(s, d);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ws_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
