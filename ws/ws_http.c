/*
 * ws_http.c -- the WebSocket opening handshake (RFC 6455 section 4.2): the
 * HTTP/1.1 Upgrade request, bounded in bytes and header lines, checked, and
 * answered with 101 or a 4xx whose reason goes to the log.
 *
 * The request stays in the caller's input buffer until it is complete (the
 * blank line has arrived); ws_conn.scanned remembers how far the search for
 * that line got, so bytes arriving one at a time cost O(n) in all.
 */
#include "ws/ws.h"
#include "ws/ws_int.h"
#include "ws/http_dir.h"
#include "tls/tls_ws.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* What the request said, as views into the input. */
typedef struct {
    const char *method, *target, *version;
    size_t method_len, target_len, version_len;
    const char *host, *upgrade, *connection, *key, *wsversion, *origin;
    size_t host_len, upgrade_len, connection_len, key_len, wsversion_len, origin_len;
    unsigned n_headers, n_keys;
    bool proto_mqtt, proto_mqttv31, proto_seen;
} ws_req;

static size_t opt_headers_size(const ws_opts *o)
{
    return o->headers_size ? o->headers_size : WS_HEADERS_SIZE_DEFAULT;
}

static unsigned opt_max_headers(const ws_opts *o)
{
    return o->max_headers ? o->max_headers : WS_MAX_HEADERS_DEFAULT;
}

/* Offset just past "\r\n\r\n" within the first limit bytes, 0 if absent. */
static size_t find_end(ws_conn *ws, const uint8_t *in, size_t len, size_t limit)
{
    size_t n = len < limit ? len : limit;
    size_t i = ws->scanned > 3 ? ws->scanned - 3 : 0;
    for (; i + 4 <= n; i++)
        if (in[i] == '\r' && in[i + 1] == '\n' && in[i + 2] == '\r' && in[i + 3] == '\n')
            return i + 4;
    ws->scanned = (uint32_t)n;
    return 0;
}

static bool eq_ci(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

static void trim(const char **p, size_t *len)
{
    while (*len && (**p == ' ' || **p == '\t'))
        (*p)++, (*len)--;
    while (*len && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t'))
        (*len)--;
}

/* Does the comma-separated list v contain token (ASCII case-insensitive)? */
static bool list_has(const char *v, size_t vlen, const char *token)
{
    while (vlen) {
        const char *comma = memchr(v, ',', vlen);
        size_t n = comma ? (size_t)(comma - v) : vlen;
        const char *t = v;
        size_t tlen = n;
        trim(&t, &tlen);
        if (eq_ci(t, tlen, token)) return true;
        if (!comma) break;
        v += n + 1;
        vlen -= n + 1;
    }
    return false;
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "GET /path HTTP/1.1": three fields separated by single spaces. */
static int parse_request_line(ws_req *q, const char *p, size_t len)
{
    const char *sp1 = memchr(p, ' ', len);
    if (!sp1) return -1;
    const char *sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - p));
    if (!sp2) return -1;
    q->method = p;
    q->method_len = (size_t)(sp1 - p);
    q->target = sp1 + 1;
    q->target_len = (size_t)(sp2 - sp1 - 1);
    q->version = sp2 + 1;
    q->version_len = len - (size_t)(sp2 + 1 - p);
    if (!q->method_len || !q->target_len || memchr(q->version, ' ', q->version_len)) return -1;
    for (size_t i = 0; i < q->method_len; i++)
        if (!is_tchar(q->method[i])) return -1;
    for (size_t i = 0; i < q->target_len; i++)
        if ((unsigned char)q->target[i] <= ' ' || q->target[i] == 0x7f) return -1;
    return 0;
}

static void note_protocols(ws_req *q, const char *v, size_t vlen)
{
    q->proto_seen = true;
    if (list_has(v, vlen, "mqtt")) q->proto_mqtt = true;
    if (list_has(v, vlen, "mqttv3.1")) q->proto_mqttv31 = true;
}

/* Remembers the header fields the handshake needs; others are skipped. */
static void note_header(ws_req *q, const char *name, size_t nlen, const char *v, size_t vlen)
{
    static const struct {
        const char *name;
        size_t off_p, off_len;
    } known[] = {
        {"Host", offsetof(ws_req, host), offsetof(ws_req, host_len)},
        {"Upgrade", offsetof(ws_req, upgrade), offsetof(ws_req, upgrade_len)},
        {"Connection", offsetof(ws_req, connection), offsetof(ws_req, connection_len)},
        {"Sec-WebSocket-Key", offsetof(ws_req, key), offsetof(ws_req, key_len)},
        {"Sec-WebSocket-Version", offsetof(ws_req, wsversion), offsetof(ws_req, wsversion_len)},
        {"Origin", offsetof(ws_req, origin), offsetof(ws_req, origin_len)},
    };
    if (eq_ci(name, nlen, "Sec-WebSocket-Protocol")) {
        note_protocols(q, v, vlen);
        return;
    }
    if (eq_ci(name, nlen, "Sec-WebSocket-Key")) q->n_keys++;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (!eq_ci(name, nlen, known[i].name)) continue;
        *(const char **)((char *)q + known[i].off_p) = v;
        *(size_t *)((char *)q + known[i].off_len) = vlen;
    }
}

/* One "Name: value" line. Returns 0, or -1 if malformed. */
static int parse_header(ws_req *q, const char *p, size_t len)
{
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p) return -1; /* also refuses obs-fold (leading space) */
    size_t nlen = (size_t)(colon - p);
    for (size_t i = 0; i < nlen; i++)
        if (!is_tchar(p[i])) return -1;
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    for (size_t i = 0; i < vlen; i++)
        if ((v[i] < ' ' && v[i] != '\t') || v[i] == 0x7f) return -1;
    trim(&v, &vlen);
    note_header(q, p, nlen, v, vlen);
    return 0;
}

/* Splits in[0..end) (ending in the blank line) into lines. Returns 0, or a
 * status (400/431) with the reason written. */
static int parse_request(ws_req *q, const ws_opts *o, const char *in, size_t end, ws_hs *r)
{
    const char *p = in, *stop = in + end - 2; /* before the final empty line */
    bool first = true;
    while (p < stop) {
        const char *eol = memchr(p, '\r', (size_t)(stop - p));
        if (!eol || eol[1] != '\n' || memchr(p, '\n', (size_t)(eol - p))) {
            snprintf(r->reason, sizeof r->reason, "bare CR or LF in the request");
            return 400;
        }
        size_t n = (size_t)(eol - p);
        if (first && parse_request_line(q, p, n) != 0) {
            snprintf(r->reason, sizeof r->reason, "malformed HTTP request line");
            return 400;
        }
        if (!first && ++q->n_headers > opt_max_headers(o)) {
            snprintf(r->reason, sizeof r->reason, "more than %u header lines", opt_max_headers(o));
            return 431;
        }
        if (!first && parse_header(q, p, n) != 0) {
            snprintf(r->reason, sizeof r->reason, "malformed HTTP header line");
            return 400;
        }
        first = false;
        p = eol + 2;
    }
    return 0;
}

static bool origin_allowed(const ws_opts *o, const ws_req *q)
{
    if (!o->n_origins || !q->origin) return true;
    for (size_t i = 0; i < o->n_origins; i++)
        if (eq_ci(q->origin, q->origin_len, o->origins[i])) return true;
    return false;
}

/* The Upgrade checks of RFC 6455 4.2.1, in the order a client can fix
 * them. Returns 0 or the status to refuse with (reason written). */
static int check_upgrade(const ws_req *q, const ws_opts *o, ws_hs *r)
{
    int vis = q->origin_len > 60 ? 60 : (int)q->origin_len;
    if (!q->host) return snprintf(r->reason, sizeof r->reason, "no Host header"), 400;
    if (!q->connection || !list_has(q->connection, q->connection_len, "upgrade"))
        return snprintf(r->reason, sizeof r->reason, "Connection header lacks Upgrade"), 400;
    if (!q->wsversion || !eq_ci(q->wsversion, q->wsversion_len, "13"))
        return snprintf(r->reason, sizeof r->reason, "Sec-WebSocket-Version %s, only 13 is spoken",
                        q->wsversion ? "is not 13" : "missing"),
               426;
    if (q->n_keys != 1)
        return snprintf(r->reason, sizeof r->reason, "%s Sec-WebSocket-Key",
                        q->n_keys ? "more than one" : "no"),
               400;
    if (!origin_allowed(o, q))
        return snprintf(r->reason, sizeof r->reason, "Origin %.*s is not in websockets_origin", vis,
                        q->origin),
               403;
    if (!q->proto_mqtt && !q->proto_mqttv31)
        return snprintf(r->reason, sizeof r->reason, "%s",
                        q->proto_seen ? "Sec-WebSocket-Protocol offers neither mqtt nor mqttv3.1"
                                      : "no Sec-WebSocket-Protocol (MQTT needs mqtt)"),
               400;
    return 0;
}

/* Writes the 101 response; 400 if the key is not base64 of 16 bytes. */
static int accept_upgrade(ws_conn *ws, const ws_req *q, char *resp, size_t cap, ws_hs *r)
{
    char accept[TLS_WS_ACCEPT_LEN + 1];
    if (tls_ws_accept_key(q->key, q->key_len, accept, sizeof accept) != 0) {
        snprintf(r->reason, sizeof r->reason, "Sec-WebSocket-Key is not base64 of 16 bytes");
        return 400;
    }
    r->subprotocol = q->proto_mqtt ? "mqtt" : "mqttv3.1";
    int n = snprintf(resp, cap,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n\r\n",
                     accept, r->subprotocol);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(r->reason, sizeof r->reason, "response buffer too small");
        return 431;
    }
    r->status = 101;
    r->resp_len = (size_t)n;
    ws->state = WS_ST_OPEN;
    ws->scanned = 0;
    return 0;
}

/* Decides what a complete, well-formed request gets. */
static int judge(ws_conn *ws, const ws_opts *o, const ws_req *q, char *resp, size_t cap, ws_hs *r)
{
    if (q->method_len != 3 || memcmp(q->method, "GET", 3) != 0) {
        snprintf(r->reason, sizeof r->reason, "method %.*s, only GET is served",
                 q->method_len > 16 ? 16 : (int)q->method_len, q->method);
        return 405;
    }
    if (q->version_len != 8 || memcmp(q->version, "HTTP/1.1", 8) != 0) {
        snprintf(r->reason, sizeof r->reason, "not an HTTP/1.1 request");
        return 400;
    }
    if (!q->upgrade || !list_has(q->upgrade, q->upgrade_len, "websocket")) {
        if (o->http_dir) return 200;
        snprintf(r->reason, sizeof r->reason, "not a WebSocket upgrade (no Upgrade: websocket)");
        return 426;
    }
    int st = check_upgrade(q, o, r);
    return st ? st : accept_upgrade(ws, q, resp, cap, r);
}

static int refuse(ws_conn *ws, int status, char *resp, size_t cap, ws_hs *r)
{
    const char *extra = NULL;
    if (status == 405) extra = "Allow: GET\r\n";
    if (status == 426) extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    r->status = status;
    r->resp_len = http_error_response(resp, cap, status, extra, r->reason);
    ws->state = WS_ST_CLOSED;
    return WS_ERR_HTTP;
}

int ws_handshake(ws_conn *ws, const ws_opts *o, const uint8_t *in, size_t len, char *resp,
                 size_t resp_cap, ws_hs *r)
{
    size_t limit = opt_headers_size(o);
    ws_req q;

    memset(r, 0, sizeof *r);
    memset(&q, 0, sizeof q);
    if (ws->state != WS_ST_HANDSHAKE) {
        snprintf(r->reason, sizeof r->reason, "handshake already answered");
        return WS_ERR_HTTP;
    }
    size_t end = find_end(ws, in, len, limit);
    if (!end && len < limit) return WS_NEED_MORE;
    if (!end) {
        snprintf(r->reason, sizeof r->reason, "request headers exceed %zu bytes", limit);
        return refuse(ws, 431, resp, resp_cap, r);
    }
    r->used = end;
    int st = parse_request(&q, o, (const char *)in, end, r);
    if (!st) st = judge(ws, o, &q, resp, resp_cap, r);
    r->target = q.target;
    r->target_len = q.target_len;
    if (st == 0) return WS_OK;
    if (st == 200) {
        r->status = 200;
        ws->state = WS_ST_CLOSED;
        return WS_HTTP;
    }
    return refuse(ws, st, resp, resp_cap, r);
}

bool ws_is_open(const ws_conn *ws)
{
    return ws->state == WS_ST_OPEN;
}
