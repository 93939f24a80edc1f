/*
 * protocol.c -- what the broker does with each decoded packet. The codec
 * (mqtt/) has already enforced framing and field rules; this file enforces
 * the state rules (CONNECT first and once, [MQTT-3.1.0-1/2]) and drives
 * sessions, the router and authorization.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/protocol.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/tree.h"
#include "mqtt/mqtt.h"

/* The session's outbox: its packets go to the connection's output buffer. */
static bool out_ready(void *ctx)
{
    const conn *c = ctx;
    return c->state == CS_ACTIVE;
}

static int out_publish(void *ctx, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid)
{
    conn *c = ctx;
    return conn_send_publish(c->b, c, m, qos, retain, dup, pid);
}

static int out_ack(void *ctx, enum mqtt_type type, uint16_t pid)
{
    conn *c = ctx;
    return conn_send_ack(c->b, c, type, pid);
}

static const session_outbox conn_outbox = {out_ready, out_publish, out_ack};

static void send_connack(broker *b, conn *c, bool sp, uint8_t rc)
{
    uint8_t buf[4];
    size_t n;
    if (mqtt_encode_connack(buf, sizeof buf, sp, rc, &n) == MQTT_OK) conn_write_now(b, c, buf, n);
}

/* Refuse a CONNECT: CONNACK rc, then close with the reason in the log. */
static void refuse(broker *b, conn *c, uint8_t rc, const char *why)
{
    send_connack(b, c, false, rc);
    conn_close(b, c, "CONNECT refused (CONNACK %u, %s): %s", rc, mqtt_connack_string(rc), why);
}

static char *dup_str(const mqtt_str *s)
{
    char *p = malloc((size_t)s->len + 1);
    if (!p) return NULL;
    memcpy(p, s->ptr, s->len);
    p[s->len] = 0;
    return p;
}

static void generate_id(broker *b, char *out, size_t len)
{
    /* the process's random base plus a counter: unique, and unguessable enough
     * without reading /dev/urandom on every connect */
    static uint64_t counter;
    uint64_t x = b->random_base + 0x9e3779b97f4a7c15ULL * ++counter;
    x ^= x >> 31;
    snprintf(out, len, "auto-%016llx", (unsigned long long)x);
}

static void handle_connect(broker *b, conn *c, const mqtt_header *h, bool after_delay)
{
    mqtt_connect ck;
    memset(&ck, 0, sizeof ck);
    int r = mqtt_decode_connect(h, &ck);
    if (r == MQTT_ERR_PROTOCOL_LEVEL) {
        char why[128];
        snprintf(why, sizeof why, "unsupported protocol level %u [MQTT-3.1.2-2]",
                 ck.protocol_level);
        refuse(b, c, MQTT_CONNACK_PROTOCOL, why);
        return;
    }
    if (r < 0) {
        conn_close(b, c, "protocol error: %s", mqtt_strerror(r));
        return;
    }

    if (!after_delay) {
        double delay = auth_attempt_delay(b, c->peer);
        if (delay > b->cfg->handshake_timeout) {
            /* the queue of held attempts from this address is already long */
            refuse(b, c, MQTT_CONNACK_UNAVAILABLE,
                   "too many recent failed logins from this "
                   "address; try again later");
            return;
        }
        if (delay > 0) {
            /* Recent failed logins from this address: check this attempt later,
             * without blocking the loop. The packet is copied: the read buffer
             * it lives in is reused. */
            c->held_connect = malloc(h->remaining ? h->remaining : 1);
            if (!c->held_connect) {
                conn_close(b, c, "out of memory");
                return;
            }
            memcpy(c->held_connect, h->body, h->remaining);
            c->held_connect_len = h->remaining;
            c->state = CS_AUTH_DELAY;
            c->deadline = b->now + delay;
            log_msg(LL_INFO, "%s: recent failed logins from this address, CONNECT held for %.1f s",
                    c->peer, delay);
            return;
        }
    }

    char idbuf[64];
    const char *id = (const char *)ck.client_id.ptr;
    size_t idlen = ck.client_id.len;
    if (idlen == 0) {
        if (!ck.clean_session || ck.protocol_level == 3) {
            refuse(b, c, MQTT_CONNACK_IDENTIFIER,
                   ck.protocol_level == 3 ? "empty client id (MQTT 3.1 requires one)"
                                          : "empty client id needs clean session [MQTT-3.1.3-8]");
            return;
        }
        generate_id(b, idbuf, sizeof idbuf);
        id = idbuf;
        idlen = strlen(idbuf);
    }
    free(c->client_id);
    c->client_id = malloc(idlen + 1);
    if (!c->client_id) {
        conn_close(b, c, "out of memory");
        return;
    }
    memcpy(c->client_id, id, idlen);
    c->client_id[idlen] = 0;
    c->protocol_level = ck.protocol_level;

    uint32_t maxka = b->cfg->max_keepalive;
    if (maxka < 65535 && (ck.keepalive == 0 || ck.keepalive > maxka)) {
        char why[128];
        snprintf(why, sizeof why, "keepalive %u is over max_keepalive %u", ck.keepalive, maxka);
        refuse(b, c, MQTT_CONNACK_IDENTIFIER, why);
        return;
    }

    /* Authentication. */
    char *user = ck.username_flag ? dup_str(&ck.username) : NULL;
    if (ck.username_flag && !user) {
        conn_close(b, c, "out of memory");
        return;
    }
    free(c->username);
    c->username = user;
    int rc = auth_login(b, c, c->username, ck.password.ptr, ck.password.len, ck.password_flag);
    if (rc != 0) {
        if (rc == MQTT_CONNACK_BAD_CREDENTIALS) auth_record_failure(b, c->peer);
        char why[160];
        if (rc == MQTT_CONNACK_BAD_CREDENTIALS)
            snprintf(why, sizeof why, "wrong username or password for user '%s'",
                     c->username ? c->username : "");
        else if (c->listener->cfg->use_identity_as_username && !c->username)
            snprintf(why, sizeof why,
                     "use_identity_as_username is on and the client sent no "
                     "certificate");
        else
            snprintf(why, sizeof why, "%s",
                     c->username ? "user not allowed" : "anonymous clients are not allowed");
        refuse(b, c, (uint8_t)rc, why);
        return;
    }

    /* The will must be a topic the client may publish to. */
    if (ck.will_flag) {
        if (!auth_may_write(b, c, (const char *)ck.will_topic.ptr, ck.will_topic.len)) {
            char why[160];
            snprintf(why, sizeof why, "will topic '%.*s' is not allowed for writing",
                     (int)ck.will_topic.len, ck.will_topic.ptr);
            refuse(b, c, MQTT_CONNACK_NOT_AUTHORIZED, why);
            return;
        }
        c->will = msg_new(ck.will_topic.ptr, ck.will_topic.len, ck.will_payload.ptr,
                          ck.will_payload.len, ck.will_qos, ck.will_retain);
        if (!c->will) {
            conn_close(b, c, "out of memory");
            return;
        }
    }

    /* Takeover [MQTT-3.1.4-2] and the session [MQTT-3.1.2-4..6]. */
    session *s = session_find(&b->sessions, c->client_id, idlen);
    if (s && s->out) {
        conn *old = s->out_ctx;
        conn_close(b, old, "taken over by a new connection from %s", c->peer);
        old->session = NULL;
        session_detach(s);
    }
    bool present = false;
    if (s && (ck.clean_session || s->clean)) {
        session_destroy(s);
        s = NULL;
    }
    if (s) {
        present = true;
    } else {
        s = session_create(&b->sessions, c->client_id, idlen, ck.clean_session);
        if (!s) {
            refuse(b, c, MQTT_CONNACK_UNAVAILABLE, "out of memory for the session");
            return;
        }
    }
    free(s->username);
    s->username = c->username ? strdup(c->username) : NULL;
    session_attach(s, &conn_outbox, c);
    c->session = s;
    c->keepalive = ck.keepalive;
    c->send_will = ck.will_flag;
    c->state = CS_ACTIVE;
    send_connack(b, c, present, MQTT_CONNACK_ACCEPTED);
    if (b->cfg->connection_messages)
        log_msg(LL_NOTICE,
                "New client connected from %s as %s (%s, clean session %d, keepalive "
                "%u%s%s%s, %s)",
                c->peer, c->client_id, ck.protocol_level == 3 ? "MQTT 3.1" : "MQTT 3.1.1",
                ck.clean_session, ck.keepalive, c->username ? ", username '" : "",
                c->username ? c->username : "", c->username ? "'" : "", c->tls ? "TLS" : "plain");
    if (present) session_resend(s);
}

void proto_finish_connect(broker *b, conn *c)
{
    mqtt_header h = {.type = MQTT_CONNECT,
                     .flags = 0,
                     .remaining = (uint32_t)c->held_connect_len,
                     .body = c->held_connect};
    c->state = CS_AWAIT_CONNECT;
    c->last_rx = b->now; /* the hold was ours, not the client's silence */
    handle_connect(b, c, &h, true);
    free(c->held_connect);
    c->held_connect = NULL;
    c->held_connect_len = 0;
}

static void handle_publish(broker *b, conn *c, const mqtt_header *h)
{
    mqtt_publish p;
    int r = mqtt_decode_publish(h, &p);
    if (r < 0) {
        conn_close(b, c, "protocol error: %s", mqtt_strerror(r));
        return;
    }
    if (p.qos == 0 && p.dup) {
        conn_close(b, c, "protocol error: DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]");
        return;
    }
    session *s = c->session;
    if (p.qos == 2 && session_qos2_in_has(s, p.packet_id)) {
        /* A resend before PUBREL: acknowledge, do not deliver twice [MQTT-4.3.3-2] */
        conn_send_ack(b, c, MQTT_PUBREC, p.packet_id);
        return;
    }
    if (p.retain && !b->cfg->retain_available) {
        conn_close(b, c, "retained PUBLISH while retain_available is false");
        return;
    }
    if (auth_may_write(b, c, (const char *)p.topic.ptr, p.topic.len)) {
        msg *m = msg_new(p.topic.ptr, p.topic.len, p.payload, p.payload_len, p.qos, p.retain);
        if (!m) {
            conn_close(b, c, "out of memory for a %zu-byte message", p.payload_len);
            return;
        }
        router_publish(b, c->client_id, m);
        msg_unref(m);
    } else {
        /* Dropped but acknowledged, so the client does not resend forever. */
        log_msg(LL_NOTICE, "Denied PUBLISH from %s (user %s) to '%.*s': not allowed by the ACL",
                c->client_id, c->username ? c->username : "anonymous", (int)p.topic.len,
                p.topic.ptr);
    }
    if (p.qos == 1) {
        conn_send_ack(b, c, MQTT_PUBACK, p.packet_id);
    } else if (p.qos == 2) {
        if (session_qos2_in_add(s, p.packet_id) < 0) {
            conn_close(b, c, "out of memory");
            return;
        }
        conn_send_ack(b, c, MQTT_PUBREC, p.packet_id);
    }
}

typedef struct {
    broker *b;
    conn *c;
    uint8_t qos;
} retained_ctx;

/* Would every further delivery to s at this QoS be dropped? Then a retained
 * walk can stop: a huge SUBSCRIBE cannot make the broker walk the whole
 * store again and again for a client that cannot take the messages. */
static bool session_saturated(broker *b, conn *c, uint8_t qos)
{
    if (c->state != CS_ACTIVE) return true;
    if (bbuf_used(&c->out) <= b->cfg->max_output_buffer) return false;
    return session_queue_full(c->session, qos);
}

static bool send_retained(void *ud, msg *m)
{
    retained_ctx *rc = ud;
    session *s = rc->c->session;
    if (auth_may_read(rc->b, s, msg_topic(m), m->topic_len))
        (void)session_deliver(s, m, rc->qos, true); /* [MQTT-3.3.1-8]: retain=1 */
    return !session_saturated(rc->b, rc->c, rc->qos);
}

static void handle_subscribe(broker *b, conn *c, const mqtt_header *h)
{
    mqtt_sublist sl;
    int r = mqtt_decode_subscribe(h, &sl);
    if (r < 0) {
        conn_close(b, c, "protocol error: %s", mqtt_strerror(r));
        return;
    }
    /* SUBACK: type, up to 4 length bytes, packet id, one code per filter */
    size_t need = 7 + (size_t)sl.count;
    uint8_t small[128], codes_small[64];
    sub_rec *recs_small[32];
    uint8_t *buf = need <= sizeof small ? small : malloc(need);
    uint8_t *codes = sl.count <= sizeof codes_small ? codes_small : malloc(sl.count);
    sub_rec **recs = sl.count <= 32 ? recs_small : malloc(sl.count * sizeof *recs);
    if (!buf || !codes || !recs) {
        conn_close(b, c, "out of memory for a SUBSCRIBE of %u filters", sl.count);
        goto out;
    }
    mqtt_sublist it = sl;
    mqtt_str f;
    uint8_t q;
    unsigned i = 0;
    while (mqtt_sublist_next(&it, &f, &q)) {
        uint8_t granted = q > 2 ? 2 : q;
        recs[i] = NULL;
        if (topic_too_deep((const char *)f.ptr, f.len)) {
            log_msg(LL_NOTICE, "Refused SUBSCRIBE from %s: filter has more than %d levels",
                    c->client_id, TOPIC_MAX_LEVELS);
            granted = MQTT_SUBACK_FAILURE;
        } else if (!auth_may_subscribe(b, c, (const char *)f.ptr, f.len)) {
            log_msg(LL_NOTICE,
                    "Denied SUBSCRIBE from %s (user %s) to '%.*s': not allowed by "
                    "the ACL",
                    c->client_id, c->username ? c->username : "anonymous", (int)f.len, f.ptr);
            granted = MQTT_SUBACK_FAILURE;
        } else if (session_subscribe(c->session, b->root, (const char *)f.ptr, f.len, granted,
                                     &recs[i]) != BK_OK) {
            recs[i] = NULL;
            granted = MQTT_SUBACK_FAILURE;
        } else if (log_enabled(LL_SUBSCRIBE)) {
            log_msg(LL_SUBSCRIBE, "%s subscribed to '%.*s' (QoS %u)", c->client_id, (int)f.len,
                    f.ptr, granted);
        }
        codes[i++] = granted;
    }
    size_t n;
    if (mqtt_encode_suback(buf, need, sl.packet_id, codes, sl.count, &n) != MQTT_OK) {
        conn_close(b, c, "internal error: cannot encode a SUBACK of %u codes", sl.count);
        goto out;
    }
    conn_write(b, c, buf, n);

    /* Retained messages after the SUBACK [MQTT-3.3.1-6], once per filter even
     * when a packet repeats one. */
    uint64_t stamp = ++b->subscribe_seq;
    for (i = 0; i < sl.count && c->state == CS_ACTIVE; i++) {
        sub_rec *rec = recs[i];
        if (!rec || rec->retained_stamp == stamp) continue;
        rec->retained_stamp = stamp;
        if (session_saturated(b, c, codes[i])) break;
        retained_ctx rc = {b, c, codes[i]};
        tree_retained_match(b->root, rec->filter, rec->filter_len, send_retained, &rc);
    }
out:
    if (buf != small) free(buf);
    if (codes != codes_small) free(codes);
    if (recs != recs_small) free(recs);
}

static void handle_unsubscribe(broker *b, conn *c, const mqtt_header *h)
{
    mqtt_sublist sl;
    int r = mqtt_decode_unsubscribe(h, &sl);
    if (r < 0) {
        conn_close(b, c, "protocol error: %s", mqtt_strerror(r));
        return;
    }
    mqtt_str f;
    uint8_t q;
    while (mqtt_sublist_next(&sl, &f, &q)) {
        /* an unknown filter is not an error [MQTT-3.10.4-5]: UNSUBACK anyway */
        (void)session_unsubscribe(c->session, (const char *)f.ptr, f.len);
        if (log_enabled(LL_SUBSCRIBE))
            log_msg(LL_SUBSCRIBE, "%s unsubscribed from '%.*s'", c->client_id, (int)f.len, f.ptr);
    }
    conn_send_ack(b, c, MQTT_UNSUBACK, sl.packet_id);
}

void proto_handle_packet(broker *b, conn *c, const mqtt_header *h)
{
    int r;
    uint16_t pid;
    if (c->state == CS_AWAIT_CONNECT) {
        if (h->type != MQTT_CONNECT) {
            conn_close(b, c, "protocol error: first packet was %s, not CONNECT [MQTT-3.1.0-1]",
                       mqtt_type_name(h->type));
            return;
        }
        handle_connect(b, c, h, false);
        return;
    }
    if (c->state != CS_ACTIVE) return;
    switch (h->type) {
    case MQTT_CONNECT:
        conn_close(b, c, "protocol error: second CONNECT [MQTT-3.1.0-2]");
        return;
    case MQTT_PUBLISH:
        handle_publish(b, c, h);
        return;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        if ((r = mqtt_decode_ack(h, &pid)) < 0) break;
        /* An ack for an unknown id is ignored, as the spec allows. */
        (void)session_ack(c->session, h->type, pid);
        return;
    case MQTT_PUBREL:
        if ((r = mqtt_decode_ack(h, &pid)) < 0) break;
        session_qos2_in_del(c->session, pid);
        conn_send_ack(b, c, MQTT_PUBCOMP, pid); /* [MQTT-4.3.3-11] */
        return;
    case MQTT_SUBSCRIBE:
        handle_subscribe(b, c, h);
        return;
    case MQTT_UNSUBSCRIBE:
        handle_unsubscribe(b, c, h);
        return;
    case MQTT_PINGREQ:
        if ((r = mqtt_decode_empty(h)) < 0) break;
        {
            uint8_t buf[2];
            size_t n;
            if (mqtt_encode_empty(buf, sizeof buf, MQTT_PINGRESP, &n) == MQTT_OK)
                conn_write(b, c, buf, n);
        }
        return;
    case MQTT_DISCONNECT:
        if ((r = mqtt_decode_empty(h)) < 0) break;
        c->send_will = false; /* [MQTT-3.14.4-3] */
        conn_close(b, c, "client sent DISCONNECT");
        return;
    default:
        conn_close(b, c, "protocol error: a client may not send %s", mqtt_type_name(h->type));
        return;
    }
    conn_close(b, c, "protocol error: %s", mqtt_strerror(r));
}

void proto_connection_lost(broker *b, conn *c)
{
    session *s = c->session;
    if (s) {
        session_detach(s);
        c->session = NULL;
    }
    if (c->will && c->send_will) {
        /* [MQTT-3.1.2-8]: closed without DISCONNECT (error, keepalive, takeover) */
        c->send_will = false;
        router_publish(b, NULL, c->will);
    }
    if (s && s->clean) session_destroy(s);
}
