/*
 * protocol.c -- MQTT on a connection (see protocol.h). The codec (mqtt/)
 * enforces framing and field rules; this file enforces the state rules and
 * drives sessions, the router and authorization. Every packet the broker
 * sends is encoded here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/backlog.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/memlimit.h"
#include "broker/persist.h"
#include "broker/protocol.h"
#include "broker/protocol5.h"
#include "broker/rng.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/tree.h"
#include "mqtt/mqtt.h"

/* [MQTT-3.1.2-24]: a client silent for 1.5 x its keepalive is gone. */
#define KEEPALIVE_GRACE 1.5
/* Retained messages one client may be owed at a time (16 bytes each): a
 * SUBSCRIBE of many wide filters cannot hold more of the broker's memory. */
#define RETAINED_BACKLOG_MAX 1000000
/* Output buffered beyond this: further PUBLISHes to the client are held as
 * message references (client.owed) and encoded as the buffer drains. */
#define OWE_FROM (64 * 1024)
/* Log a QoS 0 drop once per this many. */
#define QOS0_DROP_LOG_EVERY 10000

/* ---- encoding: every packet the broker sends ------------------------------- */

static int send_ack(client *cl, enum mqtt_type type, uint16_t pid)
{
    uint8_t buf[4];
    size_t n;
    if (mqtt_encode_ack(buf, sizeof buf, type, pid, &n) != MQTT_OK) return BK_ERR_ENCODE;
    cl->b->packets_sent++;
    return conn_write(cl->b, cl->conn, buf, n);
}

/* An acknowledgement with a reason code (MQTT 5; 3.1.1 has none). */
static int send_ack_rc(client *cl, enum mqtt_type type, uint16_t pid, uint8_t rc, const char *why)
{
    if (cl->v5) return p5_send_ack(cl, type, pid, rc, why);
    return send_ack(cl, type, pid);
}

static int send_empty(client *cl, enum mqtt_type type)
{
    uint8_t buf[2];
    size_t n;
    if (mqtt_encode_empty(buf, sizeof buf, type, &n) != MQTT_OK) return BK_ERR_ENCODE;
    cl->b->packets_sent++;
    return conn_write(cl->b, cl->conn, buf, n);
}

static int send_connack(client *cl, bool sp, uint8_t rc)
{
    if (cl->v5) return p5_send_connack(cl, sp, p5_connack_reason(rc), NULL);
    uint8_t buf[4];
    size_t n;
    if (mqtt_encode_connack(buf, sizeof buf, sp, rc, &n) != MQTT_OK) return BK_ERR_ENCODE;
    cl->b->packets_sent++;
    cl->b->connects_accepted += rc == 0;
    return conn_write_now(cl->b, cl->conn, buf, n);
}

static bool client_ready(const client *cl)
{
    return cl->state == CL_ACTIVE && cl->conn->state == CS_OPEN;
}

bool proto_client_ready(const client *cl)
{
    return client_ready(cl);
}

void proto_close(client *cl, uint8_t rc, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (cl->v5 && cl->state == CL_ACTIVE && cl->conn->state == CS_OPEN)
        p5_send_disconnect(cl, rc, why);
    conn_close(cl->b, cl->conn, "%s", why);
}

/* Encode one PUBLISH into the output buffer: header in place, then the
 * payload: the only per-recipient copy. */
static int encode_publish(client *cl, const msg *m, uint8_t qos, bool retain, bool dup,
                          uint16_t pid)
{
    broker *b = cl->b;
    conn *c = cl->conn;
    size_t hsz = mqtt_publish_header_size(qos, m->topic_len, m->payload_len);
    uint8_t *p = conn_reserve(b, c, hsz + m->payload_len);
    if (!p) return BK_ERR_NOMEM;
    size_t n;
    if (mqtt_encode_publish_header(p, hsz + m->payload_len, qos, dup, retain,
                                   (const uint8_t *)msg_topic(m), m->topic_len, pid, m->payload_len,
                                   &n) != MQTT_OK)
        return BK_ERR_ENCODE;
    if (m->payload_len) memcpy(p + n, msg_payload(m), m->payload_len);
    conn_commit(b, c, n + m->payload_len);
    b->msgs_sent++;
    b->packets_sent++;
    b->pub_bytes_sent += m->payload_len;
    return BK_OK;
}

static size_t publish_size(const msg *m, uint8_t qos)
{
    return mqtt_publish_header_size(qos, m->topic_len, m->payload_len) + m->payload_len;
}

/* The socket is not taking what is buffered: owe the PUBLISH as a message
 * reference (16 bytes, not a copy); proto_on_drain encodes it later. */
static int owe_publish(client *cl, msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid)
{
    if (!cl->owed) cl->owed = calloc(1, sizeof *cl->owed);
    backlog_item it = {m, pid, qos,
                       (uint8_t)((retain ? BACKLOG_RETAIN : 0) | (dup ? BACKLOG_DUP : 0))};
    if (!cl->owed || backlog_push(cl->owed, it) != BK_OK)
        return encode_publish(cl, m, qos, retain, dup, pid); /* no room for a reference */
    cl->conn->out_owed += publish_size(m, qos);
    return BK_OK;
}

/* One PUBLISH, under the output-buffer policy and memory_limit. */
static int send_publish(client *cl, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid)
{
    broker *b = cl->b;
    conn *c = cl->conn;
    if (!client_ready(cl)) return BK_ERR_CLOSED;
    int level = conn_output_check(b, c, 0);
    if (level < 0) return level;
    if (qos == 0 && level == CONN_OUT_SOFT) {
        /* A slow QoS 0 subscriber loses messages, not the broker's memory. */
        b->pub_dropped++;
        if (cl->dropped_qos0++ % QOS0_DROP_LOG_EVERY == 0)
            log_limited(LL_WARNING,
                        "Client %s: output buffer over %llu bytes, dropping QoS 0 "
                        "messages (%llu so far)",
                        cl->client_id ? log_esc(cl->client_id) : "?",
                        (unsigned long long)b->cfg->max_output_buffer,
                        (unsigned long long)cl->dropped_qos0);
        return BK_ERR_FULL;
    }
    bool slow = bbuf_used(&c->out) || c->out_owed;
    if (qos == 0 && slow && memlimit_high()) {
        memlimit_drop_qos0(b->now); /* counted, logged once per episode */
        return BK_ERR_FULL;
    }
    /* MQTT 5: encoded at once (topic aliases follow the order of sending) */
    if (cl->v5) return p5_send_publish(cl, m, qos, retain, dup, pid);
    if (cl->owed || bbuf_used(&c->out) >= OWE_FROM)
        return owe_publish(cl, (msg *)m, qos, retain, dup, pid);
    return encode_publish(cl, m, qos, retain, dup, pid);
}

/* The output buffer is out: encode owed PUBLISHes, in order, until it holds
 * OWE_FROM bytes again. */
static void proto_on_drain(conn *c)
{
    client *cl = c->ud;
    const backlog_item *it;
    while (cl->owed && (it = backlog_peek(cl->owed)) && bbuf_used(&c->out) < OWE_FROM &&
           c->state != CS_CLOSING) {
        c->out_owed -= publish_size(it->m, it->qos);
        (void)encode_publish(cl, it->m, it->qos, it->flags & BACKLOG_RETAIN,
                             it->flags & BACKLOG_DUP, it->pid); /* a failure closes */
        backlog_pop(cl->owed);
    }
    if (cl->owed && !cl->owed->count) {
        free(cl->owed);
        cl->owed = NULL;
    }
}

/* ---- the sessions' outbox ------------------------------------------------------ */

static bool out_ready(void *ctx)
{
    return client_ready(ctx);
}

/* A QoS 2 PUBLISH or a PUBREL to a durable session leaves only after the
 * commit that records its packet id (persist.h): after a crash the same id
 * is resent, so the receiver's exactly-once state still applies. A QoS 1
 * PUBLISH may go at once: at worst it is delivered again (at least once). */
static void hold_for_durable(client *cl)
{
    uint64_t epoch = cl->session && cl->session->durable ? persist_hold_epoch(cl->b) : 0;
    if (epoch) conn_hold(cl->b, cl->conn, bbuf_used(&cl->conn->out), epoch);
}

static int out_publish(void *ctx, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid)
{
    const client *cl = ctx;
    if (qos == 2) hold_for_durable(ctx);
    /* a bridge gets the retain flag as published, as Mosquitto sends it */
    return send_publish(ctx, m, qos, retain || (cl->bridge && m->retain), dup, pid);
}

static int out_ack(void *ctx, enum mqtt_type type, uint16_t pid)
{
    hold_for_durable(ctx);
    return send_ack_rc(ctx, type, pid, 0, NULL);
}

static const session_outbox client_outbox = {out_ready, out_publish, out_ack};

/* ---- CONNECT ---------------------------------------------------------------------- */

/* Refuse a CONNECT: CONNACK rc, then close with the reason in the log. */
static int refuse(client *cl, uint8_t rc, const char *why)
{
    /* a failed CONNACK write has closed the connection already */
    if (cl->v5)
        (void)p5_send_connack(cl, false, p5_connack_reason(rc), why);
    else
        (void)send_connack(cl, false, rc);
    conn_close(cl->b, cl->conn, "CONNECT refused (CONNACK %u, %s): %s", rc, mqtt_connack_string(rc),
               why);
    return BK_ERR_STATE;
}

static int fail_nomem(client *cl)
{
    conn_close(cl->b, cl->conn, "out of memory");
    return BK_ERR_NOMEM;
}

static char *dup_bytes(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, p, len);
    s[len] = 0;
    return s;
}

/* prefix (auto_id_prefix, "auto-" by default) and 128 bits from the
 * kernel's CSPRNG as hex: no id says anything about another. BK_OK, or
 * BK_ERR_IO when no random bytes are available. */
static int generate_id(char *out, size_t len, const char *prefix)
{
    uint8_t r[16];
    if (rng_bytes(r, sizeof r) < 0) return BK_ERR_IO;
    int n = snprintf(out, len, "%s", prefix);
    for (size_t i = 0; i < sizeof r && n > 0 && (size_t)n + 2 < len; i++)
        n += snprintf(out + n, len - (size_t)n, "%02x", r[i]);
    return BK_OK;
}

static int connect_decode(client *cl, const mqtt_header *h, mqtt5_connect *ck5)
{
    mqtt_connect *ck = &ck5->c;
    memset(ck5, 0, sizeof *ck5);
    int r = mqtt5_decode_connect(h, ck5);
    if (r == MQTT_ERR_PROTOCOL_LEVEL) {
        char why[128];
        snprintf(why, sizeof why, "unsupported protocol level %u [MQTT-3.1.2-2]",
                 ck->protocol_level);
        return refuse(cl, MQTT_CONNACK_PROTOCOL, why);
    }
    if (ck->protocol_level == 5 && !cl->v5 && p5_connect_begin(cl, ck5) != BK_OK)
        return BK_ERR_STATE;
    if (r < 0) {
        if (cl->v5) /* [MQTT-3.2.2-7]: a CONNACK with the reason, then close */
            (void)p5_send_connack(cl, false, mqtt5_reason_for_err(r), mqtt_strerror(r));
        conn_close(cl->b, cl->conn, "protocol error: %s", mqtt_strerror(r));
        return BK_ERR_STATE;
    }
    return BK_OK;
}

/* Recent failed logins as this user name from this address (auth.h): check
 * this attempt later, without blocking the loop. after_delay: its hold has
 * ended. Returns 1 when held, BK_OK to go on, < 0 when refused. */
static int connect_hold(client *cl, const mqtt_header *h, const mqtt_connect *ck, bool after_delay)
{
    broker *b = cl->b;
    double delay = auth_attempt_delay(b, cl, ck->username_flag ? &ck->username : NULL, after_delay);
    if (delay < 0)
        return refuse(cl, MQTT_CONNACK_UNAVAILABLE,
                      "a newer login attempt for this user name from this address took its "
                      "turn; try again later");
    if (delay <= 0) return BK_OK;
    /* The packet is copied: the read buffer it lives in is reused. */
    cl->held_connect = malloc(h->remaining ? h->remaining : 1);
    if (!cl->held_connect) return fail_nomem(cl);
    memcpy(cl->held_connect, h->body, h->remaining);
    cl->held_connect_len = h->remaining;
    cl->state = CL_AUTH_DELAY;
    cl->deadline = b->now + delay;
    log_limited_key(LL_INFO, cl->conn->peer,
                    "%s: recent failed logins as '%s' from this address, CONNECT held for "
                    "%.1f s",
                    cl->conn->peer, log_escape(ck->username.ptr, ck->username.len), delay);
    return 1;
}

/* Client id ([MQTT-3.1.3-8]: generated for an empty one) and keepalive. */
static int connect_validate(client *cl, const mqtt_connect *ck)
{
    char idbuf[128]; /* auto_id_prefix (at most 64 bytes) and 32 hex digits */
    const char *id = (const char *)ck->client_id.ptr;
    size_t idlen = ck->client_id.len;
    const char *refusal = clientid_refusal(cl->b->cfg, cl->conn->listener->cfg, id, idlen);
    if (refusal) return refuse(cl, MQTT_CONNACK_IDENTIFIER, refusal);
    if (idlen == 0) {
        if (cl->v5)
            cl->v5->id_assigned = true; /* any Clean Start (spec 3.1.3.1) */
        else if (!ck->clean_session || ck->protocol_level == 3)
            return refuse(cl, MQTT_CONNACK_IDENTIFIER,
                          ck->protocol_level == 3
                              ? "empty client id (MQTT 3.1 requires one)"
                              : "empty client id needs clean session [MQTT-3.1.3-8]");
        if (generate_id(idbuf, sizeof idbuf,
                        config_auto_id_prefix(cl->b->cfg, cl->conn->listener->cfg)) != BK_OK)
            return refuse(cl, MQTT_CONNACK_UNAVAILABLE, "no random bytes for a client id");
        id = idbuf;
        idlen = strlen(idbuf);
    }
    free(cl->client_id);
    cl->client_id = dup_bytes(id, idlen);
    if (!cl->client_id) return fail_nomem(cl);
    cl->protocol_level = ck->protocol_level;
    uint32_t maxka = cl->b->cfg->max_keepalive;
    if (cl->v5) {
        p5_connect_keepalive(cl, ck->keepalive); /* Server Keep Alive instead of a refusal */
        return BK_OK;
    }
    if (maxka < 65535 && (ck->keepalive == 0 || ck->keepalive > maxka)) {
        char why[128];
        snprintf(why, sizeof why, "keepalive %u is over max_keepalive %u", ck->keepalive, maxka);
        return refuse(cl, MQTT_CONNACK_IDENTIFIER, why);
    }
    return BK_OK;
}

/* Record cl as m's publisher (check_retain_source; kept with every
 * retained message so the option can be turned on by a reload). */
static int proto_set_source(client *cl, msg *m)
{
    const listener *l = cl->conn->listener;
    return msg_set_source(m, cl->client_id, cl->username, auth_listener_index(cl->b, l),
                          l && l->cfg ? (uint16_t)l->cfg->port : 0);
}

static int refuse_login(client *cl, int rc)
{
    char why[160];
    if (rc == MQTT_CONNACK_BAD_CREDENTIALS) {
        auth_record_failure(cl->b, cl);
        snprintf(why, sizeof why, "wrong username or password for user '%s'",
                 cl->username ? log_esc(cl->username) : "");
    } else if (cl->conn->listener->cfg->use_identity_as_username && !cl->username) {
        snprintf(why, sizeof why,
                 "use_identity_as_username is on and the client sent no certificate");
    } else {
        snprintf(why, sizeof why, "%s",
                 cl->username ? "user not allowed" : "anonymous clients are not allowed");
    }
    return refuse(cl, (uint8_t)rc, why);
}

/* Credentials, then the will: it must be a topic the client may publish to. */
static int connect_authenticate(client *cl, const mqtt5_connect *ck5)
{
    const mqtt_connect *ck = &ck5->c;
    broker *b = cl->b;
    char *user = ck->username_flag ? dup_bytes(ck->username.ptr, ck->username.len) : NULL;
    if (ck->username_flag && !user) return fail_nomem(cl);
    free(cl->username);
    cl->username = user;
    int rc = auth_login(b, cl, cl->username, ck->password.ptr, ck->password.len, ck->password_flag);
    if (rc != MQTT_CONNACK_ACCEPTED) return refuse_login(cl, rc);
    if (b->cfg->use_username_as_clientid) { /* Mosquitto: the username replaces the id */
        if (!cl->username)
            return refuse(cl, MQTT_CONNACK_NOT_AUTHORIZED,
                          "use_username_as_clientid is on and the client sent no username");
        char *id = strdup(cl->username);
        if (!id) return fail_nomem(cl);
        free(cl->client_id);
        cl->client_id = id;
    }
    if (!ck->will_flag) return BK_OK;
    if (!auth_may_write(b, cl, (const char *)ck->will_topic.ptr, ck->will_topic.len)) {
        char why[160];
        snprintf(why, sizeof why, "will topic '%s' is not allowed for writing",
                 log_escape(ck->will_topic.ptr, ck->will_topic.len));
        return refuse(cl, MQTT_CONNACK_NOT_AUTHORIZED, why);
    }
    cl->will = cl->v5 ? p5_will_new(cl, ck5)
                      : msg_new(ck->will_topic.ptr, ck->will_topic.len, ck->will_payload.ptr,
                                ck->will_payload.len, ck->will_qos, ck->will_retain);
    if (cl->will && ck->will_retain && proto_set_source(cl, cl->will) != BK_OK)
        return fail_nomem(cl);
    return cl->will ? BK_OK : fail_nomem(cl);
}

/* A new persistent session (3.1.1: clean session 0, v5: a session expiry)
 * past max_persistent_sessions: refused, 3.1.1 with CONNACK 3 (server
 * unavailable), v5 with 0x97 (quota exceeded). Resuming one is never
 * refused. What bounds the disk persistent sessions can take. */
static bool persistent_over_limit(const client *cl, const mqtt_connect *ck)
{
    uint32_t max = cl->b->cfg->max_persistent_sessions;
    bool persistent = cl->v5 ? cl->v5->session_expiry != 0 : !ck->clean_session;
    return max && persistent && cl->b->sessions.persistent >= max;
}

static int refuse_persistent(client *cl)
{
    char why[96];
    snprintf(why, sizeof why, "max_persistent_sessions %u reached",
             cl->b->cfg->max_persistent_sessions);
    if (!cl->v5) return refuse(cl, MQTT_CONNACK_UNAVAILABLE, why);
    (void)p5_send_connack(cl, false, MQTT5_RC_QUOTA_EXCEEDED, why);
    conn_close(cl->b, cl->conn, "CONNECT refused (reason 0x97, quota exceeded): %s", why);
    return BK_ERR_STATE;
}

typedef struct {
    broker *b;
    session *s;
} read_check;

static bool resume_may_read(void *ctx, const msg *m)
{
    read_check *rc = ctx;
    return auth_may_read(rc->b, rc->s, msg_topic(m), m->topic_len);
}

/* A session resumed by another identity (another user, or another listener
 * with per_listener_settings true): what it queued or has in flight was
 * authorised for the old one (Mosquitto #3553). Keep only what the new
 * identity may read; s->username / s->listener are already the new ones. */
static void resume_check_identity(client *cl, session *s, const char *was, int16_t was_listener)
{
    const char *now = s->username;
    bool same_user = (!was && !now) || (was && now && strcmp(was, now) == 0);
    bool same_listener = !cl->b->cfg->per_listener_settings || was_listener == s->listener;
    if (same_user && same_listener) return;
    read_check rc = {cl->b, s};
    size_t n = session_filter(s, resume_may_read, &rc);
    if (n)
        log_msg(LL_NOTICE,
                "%s: session resumed by user '%s' (was '%s'%s): %zu queued messages its ACL does "
                "not allow were dropped",
                log_esc(cl->client_id), now ? log_esc(now) : "", was ? log_esc(was) : "",
                same_listener ? "" : ", on another listener", n);
}

/* Takeover [MQTT-3.1.4-2] and the session [MQTT-3.1.2-4..6]. */
static int connect_attach(client *cl, const mqtt_connect *ck, bool *present)
{
    broker *b = cl->b;
    size_t idlen = strlen(cl->client_id);
    session *s = session_find(&b->sessions, cl->client_id, idlen);
    if (s && s->pinned)
        return refuse(cl, MQTT_CONNACK_IDENTIFIER, "the client id is a bridge's local_clientid");
    if (s && s->out) {
        client *old = s->out_ctx;
        proto_close(old, MQTT5_RC_SESSION_TAKEN_OVER, "taken over by a new connection from %s",
                    cl->conn->peer);
        old->session = NULL;
        session_detach(s);
        /* MQTT 5: a delayed will is not sent when the session is resumed at once */
        if (old->v5 && old->v5->will_delay && !ck->clean_session) old->send_will = false;
    }
    *present = false;
    if (s && (ck->clean_session || s->clean)) {
        shared_leave_all(b, s, false);
        session_destroy(s);
        s = NULL;
    }
    if (s) {
        *present = true;
    } else if (persistent_over_limit(cl, ck)) {
        return refuse_persistent(cl);
    } else {
        s = session_create(&b->sessions, cl->client_id, idlen, ck->clean_session);
        if (!s) return refuse(cl, MQTT_CONNACK_UNAVAILABLE, "out of memory for the session");
    }
    char *was = s->username; /* freed once the resume is checked */
    int16_t was_listener = s->listener;
    s->username = cl->username ? strdup(cl->username) : NULL;
    s->listener = (int16_t)auth_listener_index(b, cl->conn->listener); /* its ACL from now on */
    if (*present) resume_check_identity(cl, s, was, was_listener);
    free(was);
    s->expires_at = 0;
    p5_will_cancel(b, cl->client_id);
    if (cl->v5) {
        p5_session_setup(cl, s);
    } else {
        s->send_max = 0;
        s->max_packet = 0;
        s->expiry_interval = ck->clean_session ? 0 : 0xFFFFFFFFu; /* 3.1.1: never expires */
    }
    session_attach(s, &client_outbox, cl);
    cl->session = s;
    cl->bridge = ck->bridge;
    s->no_local = ck->bridge;
    persist_session_attached(b, s);
    return BK_OK;
}

static void connect_answer(client *cl, const mqtt_connect *ck, bool present)
{
    broker *b = cl->b;
    cl->keepalive = cl->v5 && cl->v5->server_keepalive ? cl->v5->server_keepalive : ck->keepalive;
    cl->send_will = ck->will_flag;
    cl->state = CL_ACTIVE;
    if (send_connack(cl, present, MQTT_CONNACK_ACCEPTED) != BK_OK) return;
    if (b->cfg->connection_messages)
        log_msg(LL_NOTICE,
                "New client connected from %s as %s (%s%s, clean session %d, keepalive "
                "%u%s%s%s, %s)",
                cl->conn->peer, log_esc(cl->client_id),
                ck->protocol_level == 3   ? "MQTT 3.1"
                : ck->protocol_level == 4 ? "MQTT 3.1.1"
                                          : "MQTT 5.0",
                ck->bridge ? " bridge" : "", ck->clean_session, ck->keepalive,
                cl->username ? ", username '" : "", cl->username ? log_esc(cl->username) : "",
                cl->username ? "'" : "", cl->conn->tls ? "TLS" : "plain");
    if (present) session_resend(cl->session);
}

static void handle_connect(client *cl, const mqtt_header *h, bool after_delay)
{
    mqtt5_connect ck;
    bool present;
    if (connect_decode(cl, h, &ck) != BK_OK) return;
    if (connect_hold(cl, h, &ck.c, after_delay) != BK_OK) return;
    if (connect_validate(cl, &ck.c) != BK_OK) return;
    if (connect_authenticate(cl, &ck) != BK_OK) return;
    if (connect_attach(cl, &ck.c, &present) != BK_OK) return;
    connect_answer(cl, &ck.c, present);
}

/* Output that answers a packet which changed durable state waits for the
 * commit (strict persistence): hold cl's output from `keep` bytes on when
 * the journal grew from `pending`. */
static void hold_if_journaled(client *cl, size_t keep, size_t pending)
{
    if (persist_pending(cl->b) > pending)
        conn_hold(cl->b, cl->conn, keep, persist_gathering_epoch(cl->b));
}

/* The auth delay is over: check the held CONNECT now. */
static void finish_connect(client *cl)
{
    mqtt_header h = {.type = MQTT_CONNECT,
                     .flags = 0,
                     .remaining = (uint32_t)cl->held_connect_len,
                     .body = cl->held_connect};
    cl->state = CL_AWAIT_CONNECT;
    cl->last_rx = cl->b->now; /* the hold was ours, not the client's silence */
    size_t keep = bbuf_used(&cl->conn->out), pending = persist_pending(cl->b);
    handle_connect(cl, &h, true);
    hold_if_journaled(cl, keep, pending);
    free(cl->held_connect);
    cl->held_connect = NULL;
    cl->held_connect_len = 0;
}

/* ---- PUBLISH ------------------------------------------------------------------------- */

/* $SYS is written by the broker only (Mosquitto drops such publishes too):
 * a client's PUBLISH there is dropped, never routed or retained, but still
 * acknowledged; logged once per client. True when p is such a PUBLISH. */
static bool publish_sys_refused(client *cl, const mqtt_publish *p)
{
    static const char sys[] = "$SYS";
    size_t n = sizeof sys - 1;
    if (p->topic.len < n || memcmp(p->topic.ptr, sys, n) != 0) return false;
    if (p->topic.len > n && p->topic.ptr[n] != '/') return false;
    if (!cl->sys_logged) {
        cl->sys_logged = true;
        log_msg(LL_NOTICE,
                "Dropped PUBLISH from %s to '%s': $SYS topics are written by the broker only "
                "(logged once per client)",
                log_esc(cl->client_id), log_escape(p->topic.ptr, p->topic.len));
    }
    return true;
}

/* Inline into the 3.1.1 handler (one PUBLISH per message: its call costs). */
static inline __attribute__((always_inline)) void publish_core(client *cl, const mqtt_publish *p,
                                                               const uint8_t *props,
                                                               size_t props_len, uint32_t expiry,
                                                               bool has_expiry)
{
    broker *b = cl->b;
    if (p->qos == 0 && p->dup) {
        proto_close(cl, MQTT5_RC_PROTOCOL_ERROR,
                    "protocol error: DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]");
        return;
    }
    if (p->qos == 2 && session_qos2_in_has(cl->session, p->packet_id)) {
        /* A resend before PUBREL: acknowledge, do not deliver twice [MQTT-4.3.3-2] */
        (void)send_ack_rc(cl, MQTT_PUBREC, p->packet_id, 0, NULL); /* a failed write closes */
        return;
    }
    if (p->retain && !b->cfg->retain_available) {
        proto_close(cl, MQTT5_RC_RETAIN_NOT_SUPPORTED,
                    "retained PUBLISH while retain_available is false");
        return;
    }
    uint8_t rc = MQTT5_RC_SUCCESS;
    if (publish_sys_refused(cl, p)) {
        /* dropped (logged once per client), acknowledged below */
    } else if (auth_may_write(b, cl, (const char *)p->topic.ptr, p->topic.len)) {
        if (memlimit_over(msg_size(p->topic.len, props_len + p->payload_len))) {
            /* as Mosquitto: the message is dropped and its publisher disconnected */
            memlimit_refuse(b->now); /* counted, logged once per episode */
            proto_close(cl, MQTT5_RC_QUOTA_EXCEEDED,
                        "PUBLISH of %zu bytes refused: memory_limit %llu reached", p->payload_len,
                        (unsigned long long)b->cfg->memory_limit);
            return;
        }
        msg *m = msg_new_props(p->topic.ptr, p->topic.len, props, props_len, p->payload,
                               p->payload_len, p->qos, p->retain);
        if (m && p->retain && proto_set_source(cl, m) != BK_OK) {
            msg_unref(m);
            m = NULL;
        }
        if (!m) {
            conn_close(b, cl->conn, "out of memory for a %zu-byte message", p->payload_len);
            return;
        }
        if (has_expiry) m->expire_at = b->now + expiry;
        router_publish(b, cl->client_id, m);
        msg_unref(m);
    } else {
        /* Dropped but acknowledged, so the client does not resend forever. */
        rc = MQTT5_RC_NOT_AUTHORIZED;
        log_msg(LL_NOTICE, "Denied PUBLISH from %s (user %s) to '%s': not allowed by the ACL",
                log_esc(cl->client_id), cl->username ? log_esc(cl->username) : "anonymous",
                log_escape(p->topic.ptr, p->topic.len));
    }
    if (p->qos == 2 && rc < 0x80 && session_qos2_in_add(cl->session, p->packet_id) != BK_OK) {
        fail_nomem(cl);
        return;
    }
    if (p->qos)
        (void)send_ack_rc(cl, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id, rc,
                          "not allowed by the ACL");
}

void proto_publish(client *cl, const mqtt_publish *p, const uint8_t *props, size_t props_len,
                   uint32_t expiry, bool has_expiry)
{
    publish_core(cl, p, props, props_len, expiry, has_expiry);
}

static void handle_publish(client *cl, const mqtt_header *h)
{
    mqtt_publish p;
    int r = mqtt_decode_publish(h, &p);
    if (r < 0) {
        conn_close(cl->b, cl->conn, "protocol error: %s", mqtt_strerror(r));
        return;
    }
    publish_core(cl, &p, NULL, 0, 0, false);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------ */

typedef struct {
    client *cl;
    uint8_t qos;
    uint64_t refused; /* over RETAINED_BACKLOG_MAX or out of memory */
} retained_ctx;

/* Must the retained message at QoS qos wait? Until the output is under its
 * soft limit, and for QoS 1/2 until the session's queue has room, so that
 * nothing is dropped: the walk goes on as the client drains. */
static bool retained_must_wait(client *cl, uint8_t qos)
{
    if (!client_ready(cl)) return true;
    if (conn_output_check(cl->b, cl->conn, 0) != BK_OK) return true;
    return qos && session_queue_full(cl->session, qos);
}

/* Send what cl can take of the retained messages it is owed (after a
 * SUBSCRIBE; again on every packet from it and every tick). One that was
 * replaced or cleared since is skipped: its successor went out live. */
static void retained_feed(client *cl)
{
    backlog *q = cl->retained;
    const backlog_item *it;
    while (q && (it = backlog_peek(q))) {
        msg *m = it->m;
        uint8_t qos = m->qos < it->qos ? m->qos : it->qos;
        if (retained_must_wait(cl, qos)) return;
        if (tree_retained_get(cl->b->root, msg_topic(m), m->topic_len) == m &&
            auth_may_read(cl->b, cl->session, msg_topic(m), m->topic_len))
            (void)session_deliver(cl->session, m, it->qos, true); /* [MQTT-3.3.1-8] */
        backlog_pop(q);
    }
    free(cl->retained);
    cl->retained = NULL;
}

static bool send_retained(void *ud, msg *m)
{
    retained_ctx *rc = ud;
    client *cl = rc->cl;
    if (msg_expired(m, cl->b->now) || !auth_source_may_write(cl->b, m)) return true;
    if (!cl->retained) cl->retained = calloc(1, sizeof *cl->retained);
    if (!cl->retained || cl->retained->count >= RETAINED_BACKLOG_MAX ||
        backlog_push(cl->retained, (backlog_item){.m = m, .qos = rc->qos}) != BK_OK)
        rc->refused++;
    return true;
}

/* A new filter past max_subscriptions_per_client? (Replacing one the
 * session holds is always allowed.) */
static bool subscribe_over_limit(const client *cl, mqtt_str f)
{
    uint32_t max_subs = cl->b->cfg->max_subscriptions_per_client;
    return max_subs && cl->session->subs_by_filter.count >= max_subs &&
           !dict_get(&cl->session->subs_by_filter, (const char *)f.ptr, f.len);
}

void proto_log_subscribe_over(client *cl, unsigned over)
{
    if (over)
        log_limited_key(
            LL_NOTICE, cl->conn->peer,
            "Refused %u filters of a SUBSCRIBE from %s: max_subscriptions_per_client %u", over,
            log_esc(cl->client_id), cl->b->cfg->max_subscriptions_per_client);
}

uint8_t proto_subscribe_one(client *cl, mqtt_str f, uint8_t q, uint8_t opts, sub_rec **rec,
                            unsigned *over)
{
    uint8_t granted = q > 2 ? 2 : q;
    *rec = NULL;
    if (subscribe_over_limit(cl, f)) {
        ++*over; /* one line per SUBSCRIBE, not per filter */
        return MQTT5_RC_QUOTA_EXCEEDED;
    }
    if (topic_too_deep((const char *)f.ptr, f.len)) {
        log_msg(LL_NOTICE, "Refused SUBSCRIBE from %s: filter has more than %d levels",
                log_esc(cl->client_id), TOPIC_MAX_LEVELS);
        return MQTT5_RC_QUOTA_EXCEEDED;
    }
    if (!auth_may_subscribe(cl->b, cl, (const char *)f.ptr, f.len)) {
        log_msg(LL_NOTICE, "Denied SUBSCRIBE from %s (user %s) to '%s': not allowed by the ACL",
                log_esc(cl->client_id), cl->username ? log_esc(cl->username) : "anonymous",
                log_escape(f.ptr, f.len));
        return MQTT5_RC_NOT_AUTHORIZED;
    }
    if (session_subscribe(cl->session, cl->b->root, (const char *)f.ptr, f.len, granted | opts,
                          rec) != BK_OK) {
        *rec = NULL;
        return MQTT5_RC_UNSPECIFIED;
    }
    if (log_enabled(LL_SUBSCRIBE))
        log_msg(LL_SUBSCRIBE, "%s subscribed to '%s' (QoS %u)", log_esc(cl->client_id),
                log_escape(f.ptr, f.len), granted);
    return granted;
}

/* Retained messages after the SUBACK [MQTT-3.3.1-6], once per filter even
 * when a packet repeats one: all of them are owed to the client (references
 * in its backlog) and sent as it can take them. */
void proto_subscribe_retained(client *cl, sub_rec **recs, const uint8_t *codes, unsigned count)
{
    uint64_t stamp = ++cl->b->subscribe_seq;
    retained_ctx rc = {cl, 0, 0};
    for (unsigned i = 0; i < count && client_ready(cl); i++) {
        sub_rec *rec = recs[i];
        if (!rec || rec->retained_stamp == stamp) continue;
        rec->retained_stamp = stamp;
        if (codes[i] >= 0x80) continue;
        rc.qos = codes[i];
        tree_retained_match(cl->b->root, rec->filter, rec->filter_len, send_retained, &rc);
    }
    if (rc.refused)
        log_msg(LL_WARNING,
                "Client %s: %llu retained messages of its SUBSCRIBE not sent: more than %d owed "
                "at once, or out of memory",
                log_esc(cl->client_id), (unsigned long long)rc.refused, RETAINED_BACKLOG_MAX);
    retained_feed(cl);
}

/* A 3.1.1 client's $share/G/F (as Mosquitto): a group member, no retained. */
static uint8_t subscribe_shared3(client *cl, mqtt_str f, uint8_t q, sub_rec **rec)
{
    const char *g, *filter;
    size_t glen, flen;
    bool valid;
    *rec = NULL;
    (void)shared_parse((const char *)f.ptr, f.len, &g, &glen, &filter, &flen, &valid);
    if (!valid || topic_too_deep(filter, flen)) return MQTT_SUBACK_FAILURE;
    if (!auth_may_subscribe(cl->b, cl, filter, flen)) { /* the real filter */
        log_msg(LL_NOTICE, "Denied SUBSCRIBE from %s (user %s) to '%.*s': not allowed by the ACL",
                cl->client_id, cl->username ? cl->username : "anonymous", (int)f.len, f.ptr);
        return MQTT_SUBACK_FAILURE;
    }
    if (shared_join(cl->b, cl->session, g, glen, filter, flen, q, 0) != BK_OK)
        return MQTT_SUBACK_FAILURE;
    return q;
}

static void handle_subscribe(client *cl, const mqtt_header *h)
{
    mqtt_sublist sl;
    int r = mqtt_decode_subscribe(h, &sl);
    if (r < 0) {
        conn_close(cl->b, cl->conn, "protocol error: %s", mqtt_strerror(r));
        return;
    }
    /* SUBACK: type, up to 4 length bytes, packet id, one code per filter */
    size_t need = 7 + (size_t)sl.count;
    uint8_t small[128], codes_small[64];
    sub_rec *recs_small[32];
    uint8_t *buf = need <= sizeof small ? small : malloc(need);
    uint8_t *codes = sl.count <= sizeof codes_small ? codes_small : malloc(sl.count);
    sub_rec **recs = sl.count <= 32 ? recs_small : malloc(sl.count * sizeof *recs);
    size_t n;
    if (!buf || !codes || !recs) {
        conn_close(cl->b, cl->conn, "out of memory for a SUBSCRIBE of %u filters", sl.count);
    } else {
        mqtt_sublist it = sl;
        mqtt_str f;
        uint8_t q;
        const char *g, *sf;
        size_t glen, sflen;
        bool valid;
        unsigned over = 0;
        for (unsigned i = 0; mqtt_sublist_next(&it, &f, &q); i++) {
            if (shared_parse((const char *)f.ptr, f.len, &g, &glen, &sf, &sflen, &valid))
                codes[i] = subscribe_shared3(cl, f, q, &recs[i]);
            else
                codes[i] = proto_subscribe_one(cl, f, q, 0, &recs[i], &over);
            if (codes[i] >= 0x80) codes[i] = MQTT_SUBACK_FAILURE;
        }
        proto_log_subscribe_over(cl, over);
        if (mqtt_encode_suback(buf, need, sl.packet_id, codes, sl.count, &n) != MQTT_OK)
            conn_close(cl->b, cl->conn, "internal error: cannot encode a SUBACK of %u codes",
                       sl.count);
        else if (conn_write(cl->b, cl->conn, buf, n) == BK_OK)
            proto_subscribe_retained(cl, recs, codes, sl.count);
    }
    if (buf != small) free(buf);
    if (codes != codes_small) free(codes);
    if (recs != recs_small) free(recs);
}

static void handle_unsubscribe(client *cl, const mqtt_header *h)
{
    mqtt_sublist sl;
    int r = mqtt_decode_unsubscribe(h, &sl);
    if (r < 0) {
        conn_close(cl->b, cl->conn, "protocol error: %s", mqtt_strerror(r));
        return;
    }
    mqtt_str f;
    uint8_t q;
    while (mqtt_sublist_next(&sl, &f, &q)) {
        /* an unknown filter is not an error [MQTT-3.10.4-5]: UNSUBACK anyway */
        const char *g, *sf;
        size_t glen, sflen;
        bool valid;
        if (shared_parse((const char *)f.ptr, f.len, &g, &glen, &sf, &sflen, &valid)) {
            if (valid) (void)shared_leave(cl->b, cl->session, g, glen, sf, sflen);
        } else {
            (void)session_unsubscribe(cl->session, (const char *)f.ptr, f.len);
        }
        if (log_enabled(LL_SUBSCRIBE))
            log_msg(LL_SUBSCRIBE, "%s unsubscribed from '%s'", log_esc(cl->client_id),
                    log_escape(f.ptr, f.len));
    }
    (void)send_ack(cl, MQTT_UNSUBACK, sl.packet_id); /* a failed write closes */
}

/* ---- acks, PING, DISCONNECT -------------------------------------------------------------- */

static int handle_ack(client *cl, const mqtt_header *h)
{
    uint16_t pid;
    int r = mqtt_decode_ack(h, &pid);
    if (r < 0) return r;
    if (h->type == MQTT_PUBREL) {
        (void)session_qos2_in_del(cl->session, pid); /* an unknown id is answered too */
        (void)send_ack(cl, MQTT_PUBCOMP, pid);       /* [MQTT-4.3.3-11] */
    } else {
        /* An ack for an unknown id is ignored, as the spec allows. */
        (void)session_ack(cl->session, h->type, pid);
    }
    return MQTT_OK;
}

static int handle_empty(client *cl, const mqtt_header *h)
{
    int r = mqtt_decode_empty(h);
    if (r < 0) return r;
    if (h->type == MQTT_PINGREQ) {
        (void)send_empty(cl, MQTT_PINGRESP); /* a failed write closes */
    } else {
        cl->send_will = false; /* [MQTT-3.14.4-3] */
        conn_close(cl->b, cl->conn, "client sent DISCONNECT");
    }
    return MQTT_OK;
}

static void dispatch(client *cl, const mqtt_header *h);

/* A packet from an MQTT 5 client (after CONNECT). */
static void proto_handle_packet5(client *cl, const mqtt_header *h)
{
    switch (h->type) {
    case MQTT_CONNECT:
        proto_close(cl, MQTT5_RC_PROTOCOL_ERROR, "protocol error: second CONNECT [MQTT-3.1.0-2]");
        return;
    case MQTT_PUBLISH:
        p5_handle_publish(cl, h);
        return;
    case MQTT_SUBSCRIBE:
        p5_handle_subscribe(cl, h);
        return;
    case MQTT_UNSUBSCRIBE:
        p5_handle_unsubscribe(cl, h);
        return;
    case MQTT_PINGREQ:
        if (mqtt_decode_empty(h) < 0)
            proto_close(cl, MQTT5_RC_MALFORMED, "protocol error: %s",
                        mqtt_strerror(MQTT_ERR_LENGTH));
        else
            (void)send_empty(cl, MQTT_PINGRESP); /* a failed write closes */
        return;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        p5_handle_ack(cl, h);
        return;
    default:
        proto_close(cl, MQTT5_RC_PROTOCOL_ERROR, "protocol error: a client may not send %s",
                    mqtt_type_name(h->type));
        return;
    }
}

void proto_handle_packet(client *cl, const mqtt_header *h)
{
    /* The answers that promise something: CONNACK (a durable session
     * exists), PUBACK/PUBREC (the message is stored), PUBCOMP (the id is
     * forgotten, so the client may reuse it), SUBACK/UNSUBACK. The acks a
     * client sends us answer nothing; what they let out (the next PUBLISH)
     * is held, when it must be, by the session's outbox. */
    bool promises = h->type == MQTT_CONNECT || h->type == MQTT_PUBLISH || h->type == MQTT_PUBREL ||
                    h->type == MQTT_SUBSCRIBE || h->type == MQTT_UNSUBSCRIBE;
    size_t keep = bbuf_used(&cl->conn->out), pending = persist_pending(cl->b);
    dispatch(cl, h);
    if (promises) hold_if_journaled(cl, keep, pending);
}

static void dispatch(client *cl, const mqtt_header *h)
{
    conn *c = cl->conn;
    if (cl->state == CL_AWAIT_CONNECT) {
        if (h->type != MQTT_CONNECT)
            conn_close(cl->b, c, "protocol error: first packet was %s, not CONNECT [MQTT-3.1.0-1]",
                       mqtt_type_name(h->type));
        else
            handle_connect(cl, h, false);
        return;
    }
    if (cl->state != CL_ACTIVE) return;
    if (cl->v5) {
        proto_handle_packet5(cl, h);
        return;
    }
    int r = MQTT_OK;
    switch (h->type) {
    case MQTT_CONNECT:
        conn_close(cl->b, c, "protocol error: second CONNECT [MQTT-3.1.0-2]");
        return;
    case MQTT_PUBLISH:
        handle_publish(cl, h);
        return;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        r = handle_ack(cl, h);
        break;
    case MQTT_SUBSCRIBE:
        handle_subscribe(cl, h);
        return;
    case MQTT_UNSUBSCRIBE:
        handle_unsubscribe(cl, h);
        return;
    case MQTT_PINGREQ:
    case MQTT_DISCONNECT:
        r = handle_empty(cl, h);
        break;
    default:
        conn_close(cl->b, c, "protocol error: a client may not send %s", mqtt_type_name(h->type));
        return;
    }
    if (r < 0) conn_close(cl->b, c, "protocol error: %s", mqtt_strerror(r));
}

/* ---- the conn_handler: framing, deadlines, open and close ------------------------------------ */

static int proto_on_accept(broker *b, conn *c)
{
    client *cl = c->ud; /* allocated (zeroed) with the connection */
    cl->b = b;
    cl->conn = c;
    cl->state = CL_AWAIT_CONNECT;
    cl->deadline = b->now + b->cfg->handshake_timeout; /* TLS handshake and CONNECT */
    cl->last_rx = b->now;
    return BK_OK;
}

/* A TLS ClientHello (record type 22, version 3.x) where a CONNECT belongs:
 * someone pointed a TLS client at a plain port. Reported in one notice
 * (rate-limited per address: anyone can repeat it). A WebSocket listener's
 * HTTP parser sees such bytes first, so only plain MQTT ports get here. */
static bool tls_on_plain_port(client *cl, conn *c, const uint8_t *data, size_t len)
{
    if (cl->state != CL_AWAIT_CONNECT || c->tls || c->listener->cfg->websockets || len < 3 ||
        data[0] != 0x16 || data[1] != 0x03 || data[2] > 0x04)
        return false;
    log_limited_key(LL_NOTICE, c->peer,
                    "%s: a TLS client connected to plain MQTT port %d; it must use a TLS "
                    "listener's port (or connect without TLS)",
                    c->peer, c->listener->cfg->port);
    c->close_logged = true;
    conn_close(cl->b, c, "TLS client on a plain port");
    return true;
}

/* A CONNECT is held: what the client pipelined after it waits for the
 * answer. All of it, the packet still coming included (the transport sizes
 * its buffer from that packet's header), must fit in max_packet_size, and
 * each packet is framed as soon as its header is in. */
static void held_input_check(client *cl, const uint8_t *data, size_t len)
{
    size_t max = cl->b->cfg->max_packet_size;
    for (size_t off = 0; off < len;) {
        mqtt_header h;
        size_t plen = 0;
        int r = mqtt_frame(data + off, len - off, max, &h, &plen);
        if (r < 0) {
            conn_close(cl->b, cl->conn, "protocol error while its CONNECT was held: %s",
                       mqtt_strerror(r));
            return;
        }
        if (r == MQTT_NEED_MORE) plen = plen ? plen : len - off;
        if (off + plen > max) {
            conn_close(cl->b, cl->conn,
                       "sent more than max_packet_size (%zu bytes) while its CONNECT was held",
                       max);
            return;
        }
        if (r == MQTT_NEED_MORE) return;
        off += plen;
    }
}

/* Handle every complete packet in data[0..len); returns bytes consumed. */

static size_t proto_on_data(conn *c, const uint8_t *data, size_t len)
{
    client *cl = c->ud;
    broker *b = cl->b;
    if (tls_on_plain_port(cl, c, data, len)) return len;
    if (cl->state == CL_AUTH_DELAY) {
        held_input_check(cl, data, len);
        return 0;
    }
    size_t off = 0;
    while (off < len && c->state != CS_CLOSING && cl->state != CL_AUTH_DELAY) {
        mqtt_header h;
        size_t plen;
        int r = mqtt_frame_level(data + off, len - off, b->cfg->max_packet_size, cl->v5 ? 5 : 4, &h,
                                 &plen);
        if (r == MQTT_NEED_MORE) break;
        if (r < 0) {
            proto_close(cl, mqtt5_reason_for_err(r), "protocol error: %s", mqtt_strerror(r));
            return len;
        }
        cl->last_rx = b->now;
        b->bytes_received += plen;
        b->packets_received++;
        proto_handle_packet(cl, &h);
        off += plen;
    }
    if (cl->retained) retained_feed(cl); /* acks may have made room */
    return off;
}

/* Bytes the packet at data needs in total, 0 while its length is not known
 * yet (mqtt_frame says so on MQTT_NEED_MORE). */
static size_t proto_frame_need(const uint8_t *data, size_t len)
{
    mqtt_header h;
    size_t need = 0;
    (void)mqtt_frame(data, len, 0, &h, &need); /* only the length is wanted */
    return need;
}

/* [MQTT-3.1.2-24], judged at the tick's due time on the loop's 100 ms grid
 * (b->now outside the loop's ticks): the first tick at or after 1.5 x
 * keepalive of silence closes, and the log says when, after the last packet. */
static void keepalive_check(client *cl)
{
    broker *b = cl->b;
    if (!cl->keepalive) return;
    double at = b->tick_due > 0 ? b->tick_due : b->now;
    double silent = at - cl->last_rx;
    if (silent >= KEEPALIVE_GRACE * cl->keepalive)
        proto_close(cl, MQTT5_RC_KEEP_ALIVE_TIMEOUT,
                    "keepalive timeout (closed %.3f s after the last packet, keepalive %u s)",
                    silent, cl->keepalive);
}

static void proto_on_tick(conn *c)
{
    client *cl = c->ud;
    broker *b = cl->b;
    switch (cl->state) {
    case CL_AWAIT_CONNECT:
        if (b->now >= cl->deadline)
            conn_close(b, c, "no CONNECT within handshake_timeout %u s", b->cfg->handshake_timeout);
        break;
    case CL_AUTH_DELAY:
        if (b->now >= cl->deadline) {
            finish_connect(cl);
            if (cl->state == CL_ACTIVE) conn_offer_input(b, c); /* what it pipelined */
        }
        break;
    case CL_ACTIVE:
        keepalive_check(cl);
        if (cl->retained) retained_feed(cl); /* the output may have drained */
        break;
    }
}

/* The close line. What an attacker repeats at will (refused CONNECTs,
 * handshake and CONNECT timeouts) is rate-limited per address (log.h). */
static void log_close_line(const client *cl, const char *why)
{
    const conn *c = cl->conn;
    bool repeat = !cl->session && (strncmp(why, "CONNECT refused", 15) == 0 ||
                                   (strstr(why, "handshake") && strstr(why, "timeout")));
    bool named = cl->client_id && cl->b->cfg->connection_messages;
    if (named && !repeat)
        log_msg(LL_NOTICE, "Client %s (%s) disconnected: %s", log_esc(cl->client_id), c->peer, why);
    else if (named)
        log_limited_key(LL_NOTICE, c->peer, "Client %s (%s) disconnected: %s",
                        log_esc(cl->client_id), c->peer, why);
    else if (repeat)
        log_limited_key(cl->client_id ? LL_NOTICE : LL_INFO, c->peer,
                        "Connection from %s closed: %s", c->peer, why);
    else
        log_msg(cl->client_id ? LL_NOTICE : LL_INFO, "Connection from %s closed: %s", c->peer, why);
}

/* The session goes offline (or away when clean); the will goes out unless
 * the client said DISCONNECT. */
static void proto_on_close(conn *c, const char *reason)
{
    client *cl = c->ud;
    broker *b = cl->b;
    if (!c->close_logged) /* else said already, in one line (failed TLS handshake, TLS on a plain
                             port) */
        log_close_line(cl, reason);
    session *s = cl->session;
    if (s) session_detach(s);
    if (cl->will && cl->send_will) { /* [MQTT-3.1.2-8]: error, keepalive, takeover */
        if (cl->v5 && cl->v5->has_will_expiry) cl->will->expire_at = b->now + cl->v5->will_expiry;
        if (!p5_will_defer(cl)) router_publish(b, NULL, cl->will);
    }
    if (s && s->clean) {
        shared_leave_all(b, s, true); /* its unacknowledged messages go to other members */
        session_destroy(s);
    } else if (s && s->expiry_interval != 0xFFFFFFFFu) {
        s->expires_at = b->now + s->expiry_interval;
    }
    p5_free(cl);
    if (cl->retained) {
        log_msg(LL_NOTICE,
                "Client %s: %u retained messages of its SUBSCRIBE not sent before it "
                "went away",
                log_esc(cl->client_id), cl->retained->count);
        backlog_free(cl->retained);
        free(cl->retained);
    }
    if (cl->owed) {
        backlog_free(cl->owed);
        free(cl->owed);
        c->out_owed = 0; /* a lingering filter writes no more of it */
    }
    msg_unref(cl->will);
    free(cl->client_id);
    free(cl->username);
    free(cl->held_connect);
}

const conn_handler proto_conn_handler = {
    .ud_size = sizeof(client),
    .on_accept = proto_on_accept,
    .on_data = proto_on_data,
    .frame_need = proto_frame_need,
    .on_tick = proto_on_tick,
    .on_close = proto_on_close,
    .on_drain = proto_on_drain,
};

uint32_t proto_count_level(broker *b, uint8_t level)
{
    uint32_t n = 0;
    for (conn *c = b->conns; c; c = c->next) {
        client *cl = c->ud; /* a bridge's conn (bridge.c) has another ud */
        n += c->state == CS_OPEN && c->h == &proto_conn_handler && cl->state == CL_ACTIVE &&
             cl->protocol_level == level;
    }
    return n;
}

void proto_evict_session(broker *b, session *s, const char *why)
{
    if (s->out && s->out != &client_outbox) return; /* not a client's */
    if (s->out) {
        client *old = s->out_ctx;
        proto_close(old, MQTT5_RC_SESSION_TAKEN_OVER, "%s", why);
        old->session = NULL;
        session_detach(s);
    }
    shared_leave_all(b, s, true);
    session_destroy(s);
}

void proto_shutdown(broker *b)
{
    for (conn *c = b->conns; c; c = c->next)
        if (c->state == CS_OPEN && c->h == &proto_conn_handler && ((client *)c->ud)->v5)
            proto_close(c->ud, MQTT5_RC_SERVER_SHUTTING_DOWN, "broker shutting down");
}

void proto_drop_delayed_wills(broker *b)
{
    p5_wills_due(b, true);
}

void proto_expire_sessions(broker *b)
{
    p5_wills_due(b, false);
    uint32_t it = 0;
    dict_entry *e;
    session *gone[64];
    size_t n = 0;
    while (n < 64 && (e = dict_next(&b->sessions.ids, &it))) {
        session *s = e->val;
        if (!s->out && s->expires_at > 0 && b->now >= s->expires_at) gone[n++] = s;
    }
    for (size_t i = 0; i < n; i++) { /* the rest next second */
        log_msg(LL_INFO, "Session %s expired (session expiry interval %u s)", gone[i]->client_id,
                gone[i]->expiry_interval);
        shared_leave_all(b, gone[i], true);
        session_destroy(gone[i]);
    }
}

uint32_t proto_count_active(broker *b)
{
    uint32_t n = 0;
    for (conn *c = b->conns; c; c = c->next)
        n += c->state == CS_OPEN && c->h == &proto_conn_handler &&
             ((client *)c->ud)->state == CL_ACTIVE;
    return n;
}
