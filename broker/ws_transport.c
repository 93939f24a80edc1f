/*
 * ws_transport.c -- the WebSockets conn_filter (see ws_transport.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/log.h"
#include "broker/sys.h"
#include "broker/ws_transport.h"
#include "ws/http_dir.h"
#include "ws/ws.h"

/* Largest static file served (the dashboard's biggest is MQTT.js, ~400 KB). */
#define HTTP_FILE_MAX (16u * 1024 * 1024)
/* A WebSocket message may carry this many times max_packet_size: clients
 * send one MQTT packet per message, some coalesce a few. */
#define WS_MESSAGE_FACTOR 2

typedef struct {
    ws_opts opts;
    char root[PATH_MAX]; /* realpath of http_dir */
} ws_listener;

enum ws_phase { WP_UPGRADE, WP_OPEN, WP_HTTP_SENT };

typedef struct {
    ws_conn ws;
    uint8_t phase; /* enum ws_phase */
    bbuf pending;  /* MQTT bytes decoded but not consumed by the handler yet */
} ws_state;

static void ws_on_flush(broker *b, conn *c);

/* Queue bytes that must not go inside a data frame (a 101 response, HTTP,
 * a pong or a Close): what the handler wrote before is wrapped first. */
static void ws_send_raw(broker *b, conn *c, const uint8_t *p, size_t n)
{
    if (c->out_framed < bbuf_used(&c->out)) ws_on_flush(b, c);
    if (c->state == CS_CLOSING) {
        /* on_close: conn_write refuses, the last bytes go in directly */
        if (bbuf_append(&c->out, p, n) != BK_OK) return;
    } else if (conn_write(b, c, p, n) != BK_OK) {
        return;
    }
    c->out_framed = bbuf_used(&c->out);
}

/* Wrap c->out[off + out_framed .. len) in one binary frame: in place when
 * the buffer has headroom in front, else by moving the bytes up. */
static void ws_on_flush(broker *b, conn *c)
{
    size_t n = bbuf_used(&c->out) - c->out_framed;
    if (n == 0) return;
    uint8_t hdr[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header(hdr, 0x2, n);
    /* held output (persistence) moves behind the header */
    conn_note_inserted(c, c->out_framed, hl);
    if (c->out_framed == 0 && c->out.off >= hl) {
        c->out.off -= hl;
        memcpy(c->out.data + c->out.off, hdr, hl);
    } else {
        if (bbuf_reserve(&c->out, hl) != BK_OK) {
            conn_close(b, c, "out of memory for the output buffer");
            c->out.off = c->out.len = c->out_framed = 0;
            return;
        }
        uint8_t *start = c->out.data + c->out.off + c->out_framed; /* after any compaction */
        memmove(start + hl, start, n);
        memcpy(start, hdr, hl);
        c->out.len += hl;
    }
    c->out_framed = bbuf_used(&c->out);
}

/* Offer the decoded bytes kept in st->pending to the handler. */
static void ws_offer(broker *b, conn *c)
{
    ws_state *st = conn_filter_state(c);
    if (c->state != CS_OPEN || bbuf_used(&st->pending) == 0) return;
    st->pending.off +=
        c->h->on_data(c, st->pending.data + st->pending.off, bbuf_used(&st->pending));
    if (bbuf_used(&st->pending) == 0 || c->state == CS_CLOSING) bbuf_free(&st->pending);
}

/* MQTT bytes p[0..n) decoded from frames: to the handler, the rest kept.
 * A packet held from an earlier read is completed first by copying only the
 * bytes it still needs; what follows goes to the handler from p directly. */
static void ws_deliver(broker *b, conn *c, ws_state *st, const uint8_t *p, size_t n)
{
    while (n && bbuf_used(&st->pending) && c->state == CS_OPEN) {
        size_t used = bbuf_used(&st->pending);
        size_t need = c->h->frame_need(st->pending.data + st->pending.off, used);
        size_t take = need > used ? need - used : 8; /* 8: enough to learn the length */
        if (take > n) take = n;
        if (bbuf_append(&st->pending, p, take) != BK_OK) {
            conn_close(b, c, "out of memory for the input buffer");
            return;
        }
        p += take;
        n -= take;
        ws_offer(b, c);
    }
    if (n == 0 || c->state != CS_OPEN) return;
    size_t k = c->h->on_data(c, p, n);
    if (k == n || c->state != CS_OPEN) return;
    if (bbuf_append(&st->pending, p + k, n - k) != BK_OK)
        conn_close(b, c, "out of memory for the input buffer");
}

/* Frames in in[0..len): decoded in place, delivered, control frames
 * answered. Consumes everything. */
static size_t ws_feed_all(broker *b, conn *c, ws_state *st, uint8_t *in, size_t len)
{
    const ws_listener *wl = c->listener->filter_opts;
    size_t off = 0;
    while (off < len && c->state != CS_CLOSING) {
        ws_io io;
        int r = ws_feed(&st->ws, &wl->opts, in + off, len - off, in + off, len - off, &io);
        if (io.out_len) ws_deliver(b, c, st, in + off, io.out_len);
        off += io.used;
        if (c->state == CS_CLOSING) break;
        if (r == WS_REPLY) {
            ws_send_raw(b, c, io.reply, io.reply_len);
        } else if (r == WS_CLOSED && c->state == CS_LINGER) {
            conn_close(b, c, "%s", c->close_reason ? c->close_reason : "");
        } else if (r == WS_CLOSED) {
            if (io.reply_len) ws_send_raw(b, c, io.reply, io.reply_len);
            conn_close(b, c, "WebSocket closed by the client (close code %u)", io.close_code);
        } else if (r == WS_ERR_CLOSE) {
            ws_send_raw(b, c, io.reply, io.reply_len);
            conn_close(b, c, "WebSocket protocol error: %s (sent close code %u)", io.reason,
                       io.close_code);
        } else if (io.used == 0) {
            break; /* WS_OK without progress: nothing more to do with these bytes */
        }
    }
    return len;
}

/* A plain GET on a listener with http_dir: the file, then close. */
static void ws_serve_file(broker *b, conn *c, ws_state *st, const ws_hs *r)
{
    const ws_listener *wl = c->listener->filter_opts;
    char head[512];
    http_file f;
    int tl = r->target_len > 200 ? 200 : (int)r->target_len;
    if (http_dir_open(wl->root, r->target, r->target_len, &f) < 0) {
        size_t n = http_error_response(head, sizeof head, f.status, NULL, f.reason);
        ws_send_raw(b, c, (const uint8_t *)head, n);
        conn_close(b, c, "HTTP GET %.*s refused (%d %s): %s", tl, r->target, f.status,
                   http_status_text(f.status), f.reason);
        return;
    }
    if (f.size > HTTP_FILE_MAX) {
        close(f.fd);
        size_t n = http_error_response(head, sizeof head, 500, NULL, "file too large to serve");
        ws_send_raw(b, c, (const uint8_t *)head, n);
        conn_close(b, c, "HTTP GET %.*s refused (500): file over %u bytes", tl, r->target,
                   HTTP_FILE_MAX);
        return;
    }
    size_t hn = http_response_head(head, sizeof head, 200, f.mime, f.size, NULL);
    ws_send_raw(b, c, (const uint8_t *)head, hn);
    uint8_t *p = conn_reserve(b, c, (size_t)f.size);
    size_t got = 0;
    while (p && got < f.size) {
        ssize_t n = read(f.fd, p + got, (size_t)f.size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(f.fd);
    if (!p) return;
    if (got < f.size) {
        conn_close(b, c, "HTTP GET %.*s: file shrank or unreadable while read", tl, r->target);
        return;
    }
    conn_commit(b, c, got);
    c->out_framed = bbuf_used(&c->out);
    st->phase = WP_HTTP_SENT; /* closed by ws_on_tick once the output drained */
    log_msg(LL_INFO, "%s: HTTP GET %.*s: 200, %llu bytes", c->peer, tl, r->target,
            (unsigned long long)got);
}

/* The HTTP Upgrade; returns the bytes it used (all on refusal). */
static size_t ws_upgrade(broker *b, conn *c, ws_state *st, uint8_t *data, size_t len)
{
    const ws_listener *wl = c->listener->filter_opts;
    char resp[WS_RESP_MAX];
    ws_hs r;
    int rc = ws_handshake(&st->ws, &wl->opts, data, len, resp, sizeof resp, &r);
    if (rc == WS_NEED_MORE) return 0;
    if (rc == WS_HTTP) {
        ws_serve_file(b, c, st, &r);
        return len;
    }
    if (rc != WS_OK) {
        if (r.resp_len) ws_send_raw(b, c, (const uint8_t *)resp, r.resp_len);
        sys_note_failure(b, c, "websocket", r.reason, r.status);
        conn_close(b, c, "WebSocket upgrade refused (%d %s): %s", r.status,
                   http_status_text(r.status), r.reason);
        return len;
    }
    ws_send_raw(b, c, (const uint8_t *)resp, r.resp_len);
    st->phase = WP_OPEN;
    log_msg(LL_DEBUG, "%s: WebSocket open (subprotocol %s)", c->peer, r.subprotocol);
    return r.used;
}

static size_t ws_on_data(broker *b, conn *c, uint8_t *data, size_t len)
{
    ws_state *st = conn_filter_state(c);
    size_t used = 0;
    if (st->phase == WP_HTTP_SENT) return len; /* one request per connection */
    if (st->phase == WP_UPGRADE) {
        used = ws_upgrade(b, c, st, data, len);
        if (st->phase != WP_OPEN) return used;
    }
    return used + ws_feed_all(b, c, st, data + used, len - used);
}

static void ws_on_tick(broker *b, conn *c)
{
    ws_state *st = conn_filter_state(c);
    if (st->phase == WP_OPEN) {
        c->h->on_tick(c);
    } else if (st->phase == WP_HTTP_SENT && bbuf_used(&c->out) == 0) {
        conn_close(b, c, "HTTP response sent");
    } else if (b->now >= c->deadline + (st->phase == WP_HTTP_SENT ? 60 : 0)) {
        sys_note_failure(b, c, "websocket", "HTTP Upgrade not finished within handshake_timeout",
                         0);
        conn_close(b, c, "%s not finished within handshake_timeout %u s",
                   st->phase == WP_UPGRADE ? "WebSocket upgrade" : "HTTP response",
                   b->cfg->handshake_timeout);
    }
}

/* A server-side close of an open WebSocket says goodbye with a Close frame
 * and lingers for the client's: closing the socket with its Close (or a last
 * ack) still unread would reset the connection under the client. */
static bool ws_on_close(broker *b, conn *c)
{
    ws_state *st = conn_filter_state(c);
    ws_io io;
    bool linger = false;
    if (st->phase == WP_OPEN &&
        ws_close(&st->ws, b->stop ? WS_CLOSE_GOING_AWAY : WS_CLOSE_NORMAL, &io) == WS_OK) {
        ws_send_raw(b, c, io.reply, io.reply_len);
        linger = true;
    }
    bbuf_free(&st->pending);
    return linger;
}

const conn_filter ws_conn_filter = {
    .state_size = sizeof(ws_state),
    .headroom = WS_FRAME_HEADER_MAX,
    .on_data = ws_on_data,
    .on_flush = ws_on_flush,
    .on_tick = ws_on_tick,
    .offer = ws_offer,
    .on_close = ws_on_close,
};

int ws_transport_setup(broker *b, listener *l, char *err, size_t errlen)
{
    const listener_cfg *lc = l->cfg;
    ws_listener *wl = calloc(1, sizeof *wl);
    if (!wl) {
        snprintf(err, errlen, "out of memory");
        return BK_ERR_NOMEM;
    }
    wl->opts.headers_size = lc->ws_headers_size;
    wl->opts.max_message = (uint64_t)b->cfg->max_packet_size * WS_MESSAGE_FACTOR;
    wl->opts.origins = (const char *const *)lc->ws_origins;
    wl->opts.n_origins = lc->n_ws_origins;
    wl->opts.http_dir = lc->http_dir != NULL;
    if (lc->http_dir) {
        char why[256];
        if (http_dir_root(lc->http_dir, wl->root, sizeof wl->root, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s:%d: listener %d: http_dir: %s", b->cfg->path, lc->line,
                     lc->port, why);
            free(wl);
            return BK_ERR_CONFIG;
        }
    }
    l->filter = &ws_conn_filter;
    l->filter_opts = wl;
    return BK_OK;
}

void ws_transport_free(listener *l)
{
    free(l->filter_opts);
    l->filter_opts = NULL;
}
