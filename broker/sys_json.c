/*
 * sys_json.c -- the dashboard's $SYS topics in JSON (see sys.h and
 * docs/sys.md).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "broker/log.h"
#include "broker/protocol.h"
#include "broker/router.h"
#include "broker/sys.h"
#include "tls/tls.h"

typedef struct {
    time_t when;
    char peer[64];
    char transport[8];
    int port;
    int status;
    char kind[12];
    char reason[400];
    char alert[48];
} sys_failure;

/* The broker is one per process; this is its $SYS memory. */
static struct {
    sys_failure fail[SYS_FAILURES_MAX]; /* ring, newest at (next - 1) */
    uint32_t next, nfail;
    uint64_t total_fail;
    uint64_t sig_clients, sig_subs; /* what was published last */
    bool fail_dirty, published_once;
    uint64_t last_rx, last_tx, last_brx, last_btx;
    struct {
        time_t t;
        float rx, tx;
    } hist[SYS_RATES_HISTORY]; /* ring, newest at (hist_next - 1) */
    uint32_t hist_next, nhist;
} S;

/* ---- a small JSON writer into a bbuf ------------------------------------------------------- */

/* Out of memory: the document is dropped (sys_publish sees bad). */
typedef struct {
    bbuf b;
    bool bad;
} jbuf;

static void js_raw(jbuf *o, const char *s, size_t n)
{
    if (!o->bad && bbuf_append(&o->b, (const uint8_t *)s, n) != BK_OK) o->bad = true;
}

static void js_fmt(jbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void js_fmt(jbuf *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) js_raw(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* "key":"escaped value" (NULL is written as null); comma before unless first. */
static void js_str(jbuf *o, const char *key, const char *v, bool first)
{
    js_fmt(o, "%s\"%s\":", first ? "" : ",", key);
    if (!v) {
        js_raw(o, "null", 4);
        return;
    }
    js_raw(o, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            js_fmt(o, "\\%c", *p);
        else if (*p < 0x20)
            js_fmt(o, "\\u%04x", *p);
        else
            js_raw(o, (const char *)p, 1);
    }
    js_raw(o, "\"", 1);
}

static void sys_publish(broker *b, const char *topic, jbuf *o)
{
    if (o->bad) {
        log_msg(LL_WARNING, "$SYS: out of memory for %s", topic);
        bbuf_free(&o->b);
        return;
    }
    msg *m = msg_new((const uint8_t *)topic, (uint16_t)strlen(topic), o->b.data, o->b.len, 0, true);
    bbuf_free(&o->b);
    if (!m) return;
    uint64_t rx = b->msgs_received;
    router_publish(b, NULL, m);
    b->msgs_received = rx; /* $SYS is not traffic */
    msg_unref(m);
}

/* ---- clients ------------------------------------------------------------------------------ */

const char *sys_transport_name(const conn *c)
{
    bool ws = c->listener->filter != NULL;
    if (c->tls) return ws ? "wss" : "tls";
    return ws ? "ws" : "tcp";
}

static const client *active_client(const conn *c)
{
    if (c->state != CS_OPEN || c->h != &proto_conn_handler) return NULL;
    const client *cl = c->ud;
    return cl->state == CL_ACTIVE ? cl : NULL;
}

/* The parts of tls_conn_describe(): "TLS 1.2, SUITE, full handshake, client
 * certificate CN=x,O=y" (or "no client certificate"). */
static void js_tls(jbuf *o, const conn *c)
{
    if (!c->tls) {
        js_raw(o, ",\"tls\":null", 11);
        return;
    }
    char d[512], *part[3] = {0};
    tls_conn_describe(c->tls, d, sizeof d);
    char *p = d;
    for (int i = 0; i < 3 && p; i++) {
        part[i] = p;
        p = strstr(p, ", ");
        if (p) *p = 0, p += 2;
    }
    const char *subject = p && strncmp(p, "client certificate ", 19) == 0 ? p + 19 : NULL;
    js_raw(o, ",\"tls\":{", 8);
    js_str(o, "version", part[0], true);
    js_str(o, "cipher", part[1], false);
    js_str(o, "handshake", tls_conn_resumed(c->tls) ? "resumed" : "full", false);
    js_str(o, "cert_subject", subject, false);
    js_raw(o, "}", 1);
}

static void js_client(jbuf *o, const conn *c, const client *cl, bool first)
{
    js_raw(o, first ? "{" : ",{", first ? 1 : 2);
    js_str(o, "id", cl->client_id, true);
    js_str(o, "address", c->peer, false);
    js_fmt(o, ",\"protocol\":\"%s\"",
           cl->protocol_level == 5   ? "MQTT 5"
           : cl->protocol_level == 3 ? "MQTT 3.1"
                                     : "MQTT 3.1.1");
    js_fmt(o, ",\"port\":%d", c->listener->cfg->port);
    js_str(o, "transport", sys_transport_name(c), false);
    js_str(o, "username", cl->username, false);
    js_tls(o, c);
    js_fmt(o, ",\"subscriptions\":%u", cl->session ? cl->session->nsubs : 0);
    js_raw(o, "}", 1);
}

static void publish_clients(broker *b)
{
    jbuf o = {0};
    uint32_t total = 0, shown = 0;
    js_raw(&o, "{\"clients\":[", 12);
    for (const conn *c = b->conns; c; c = c->next) {
        const client *cl = active_client(c);
        if (!cl) continue;
        if (shown < SYS_CLIENTS_MAX) js_client(&o, c, cl, shown++ == 0);
        total++;
    }
    js_fmt(&o, "],\"total\":%u,\"shown\":%u,\"max\":%u}", total, shown, SYS_CLIENTS_MAX);
    sys_publish(b, "$SYS/broker/clients/list", &o);
}

static void publish_subs(broker *b)
{
    jbuf o = {0};
    uint32_t total = 0, shown = 0;
    js_raw(&o, "{\"subscriptions\":[", 18);
    for (const conn *c = b->conns; c; c = c->next) {
        const client *cl = active_client(c);
        if (!cl || !cl->session) continue;
        for (const sub_rec *r = cl->session->subs; r; r = r->next) {
            total++;
            if (shown >= SYS_SUBS_MAX) continue;
            js_raw(&o, shown ? ",{" : "{", shown ? 2 : 1);
            shown++;
            js_str(&o, "client", cl->client_id, true);
            js_str(&o, "filter", r->filter, false);
            js_fmt(&o, ",\"qos\":%u}",
                   (unsigned)(r->qos & SUBOPT_QOS_MASK)); /* no v5 option bits */
        }
    }
    js_fmt(&o, "],\"total\":%u,\"shown\":%u,\"max\":%u}", total, shown, SYS_SUBS_MAX);
    sys_publish(b, "$SYS/broker/subscriptions/list", &o);
}

/* ---- failed handshakes -------------------------------------------------------------------- */

/* "PEER: TLS handshake failed: WHY (sent alert NAME)" -> reason WHY, alert NAME. */
static void split_tls_error(const char *line, const char *peer, sys_failure *f)
{
    size_t pl = strlen(peer);
    if (strncmp(line, peer, pl) == 0 && strncmp(line + pl, ": ", 2) == 0) line += pl + 2;
    static const char hs[] = "TLS handshake failed: ";
    if (strncmp(line, hs, sizeof hs - 1) == 0) line += sizeof hs - 1;
    snprintf(f->reason, sizeof f->reason, "%s", line);
    snprintf(f->alert, sizeof f->alert, "none");
    char *a = strstr(f->reason, " (sent alert ");
    if (a && a[strlen(a) - 1] == ')') {
        snprintf(f->alert, sizeof f->alert, "%.*s", (int)(strlen(a) - 14), a + 13);
        *a = 0;
    } else if ((a = strstr(f->reason, " (sent an encrypted alert)")) != NULL) {
        snprintf(f->alert, sizeof f->alert, "encrypted alert");
        *a = 0;
    }
}

void sys_note_failure(broker *b, const conn *c, const char *kind, const char *reason, int status)
{
    sys_failure *f = &S.fail[S.next];
    memset(f, 0, sizeof *f);
    f->when = time(NULL);
    snprintf(f->peer, sizeof f->peer, "%s", c->peer);
    snprintf(f->transport, sizeof f->transport, "%s", sys_transport_name(c));
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    f->port = c->listener->cfg->port;
    f->status = status;
    if (strcmp(kind, "tls") == 0) {
        split_tls_error(reason, c->peer, f);
    } else {
        snprintf(f->reason, sizeof f->reason, "%s", reason);
        snprintf(f->alert, sizeof f->alert, "none");
    }
    S.next = (S.next + 1) % SYS_FAILURES_MAX;
    if (S.nfail < SYS_FAILURES_MAX) S.nfail++;
    S.total_fail++;
    S.fail_dirty = true;
    (void)b;
}

static void publish_failures(broker *b)
{
    jbuf o = {0};
    js_raw(&o, "{\"failures\":[", 13);
    for (uint32_t i = 0; i < S.nfail; i++) { /* newest first */
        const sys_failure *f = &S.fail[(S.next + SYS_FAILURES_MAX - 1 - i) % SYS_FAILURES_MAX];
        char when[32];
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&f->when, &tm));
        js_raw(&o, i ? ",{" : "{", i ? 2 : 1);
        js_str(&o, "time", when, true);
        js_str(&o, "address", f->peer, false);
        js_fmt(&o, ",\"port\":%d", f->port);
        js_str(&o, "transport", f->transport, false);
        js_str(&o, "stage", f->kind, false);
        js_str(&o, "reason", f->reason, false);
        js_str(&o, "alert", f->alert, false);
        js_fmt(&o, ",\"http_status\":%d}", f->status);
    }
    js_fmt(&o, "],\"total\":%llu,\"max\":%u}", (unsigned long long)S.total_fail, SYS_FAILURES_MAX);
    sys_publish(b, "$SYS/broker/handshakes/failed", &o);
}

/* ---- when to publish ---------------------------------------------------------------------- */

/* Cheap fingerprints of the client and subscription lists. */
static void signatures(broker *b, uint64_t *sc, uint64_t *ss)
{
    uint64_t h1 = 1469598103934665603ULL, h2 = h1;
    for (const conn *c = b->conns; c; c = c->next) {
        const client *cl = active_client(c);
        if (!cl) continue;
        h1 = (h1 ^ (uint64_t)(uintptr_t)c) * 1099511628211ULL;
        for (const char *p = cl->client_id; p && *p; p++)
            h1 = (h1 ^ (uint8_t)*p) * 1099511628211ULL;
        if (!cl->session) continue;
        for (const sub_rec *r = cl->session->subs; r; r = r->next)
            h2 = (h2 ^ ((uint64_t)(uintptr_t)r + r->qos)) * 1099511628211ULL;
    }
    *sc = h1;
    *ss = h2;
}

void sys_tick(broker *b)
{
    uint64_t sc, ss;
    signatures(b, &sc, &ss);
    if (sc != S.sig_clients || !S.published_once) publish_clients(b);
    if (ss != S.sig_subs || !S.published_once) publish_subs(b);
    if (S.fail_dirty || !S.published_once) publish_failures(b);
    S.sig_clients = sc;
    S.sig_subs = ss;
    S.fail_dirty = false;
    S.published_once = true;
}

/* The last SYS_RATES_HISTORY samples, oldest first: [[time, rx/s, tx/s], ...]. */
static void js_history(jbuf *o)
{
    js_raw(o, ",\"history\":[", 12);
    for (uint32_t i = 0; i < S.nhist; i++) {
        uint32_t k = (S.hist_next + SYS_RATES_HISTORY - S.nhist + i) % SYS_RATES_HISTORY;
        js_fmt(o, "%s[%lld,%.2f,%.2f]", i ? "," : "", (long long)S.hist[k].t, S.hist[k].rx,
               S.hist[k].tx);
    }
    js_raw(o, "]", 1);
}

void sys_publish_rates(broker *b, double interval)
{
    if (interval <= 0) interval = 1;
    double rx = (double)(b->msgs_received - S.last_rx) / interval;
    double tx = (double)(b->msgs_sent - S.last_tx) / interval;
    time_t now = time(NULL);
    S.hist[S.hist_next].t = now;
    S.hist[S.hist_next].rx = (float)rx;
    S.hist[S.hist_next].tx = (float)tx;
    S.hist_next = (S.hist_next + 1) % SYS_RATES_HISTORY;
    if (S.nhist < SYS_RATES_HISTORY) S.nhist++;
    jbuf o = {0};
    js_fmt(&o, "{\"time\":%lld,\"interval\":%.1f", (long long)now, interval);
    js_fmt(&o, ",\"messages_received_per_s\":%.2f,\"messages_sent_per_s\":%.2f", rx, tx);
    js_fmt(&o, ",\"bytes_received_per_s\":%.0f",
           (double)(b->bytes_received - S.last_brx) / interval);
    js_fmt(&o, ",\"bytes_sent_per_s\":%.0f", (double)(b->bytes_sent - S.last_btx) / interval);
    js_fmt(&o, ",\"clients\":%u", proto_count_active(b));
    js_history(&o);
    js_raw(&o, "}", 1);
    S.last_rx = b->msgs_received;
    S.last_tx = b->msgs_sent;
    S.last_brx = b->bytes_received;
    S.last_btx = b->bytes_sent;
    sys_publish(b, "$SYS/broker/rates", &o);
}
