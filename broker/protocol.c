/*
 * protocol.c -- what the broker does with each decoded packet. The codec
 * (mqtt/) has already enforced framing and field rules; this file enforces
 * the state rules (CONNECT first and once, [MQTT-3.1.0-1/2]) and drives
 * sessions, the router and authorization.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/log.h"
#include "broker/rng.h"
#include "mqtt/mqtt.h"
#include "tls/tls.h"

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

/* "auto-" and 128 bits from the kernel's CSPRNG as hex: no id says anything
 * about another. 0, or -1 when no random bytes are available. */
static int generate_id(broker *b, char *out, size_t len)
{
    (void)b;
    uint8_t r[16];
    if (rng_bytes(r, sizeof r) < 0) return -1;
    int n = snprintf(out, len, "auto-");
    for (size_t i = 0; i < sizeof r && n > 0 && (size_t)n + 2 < len; i++)
        n += snprintf(out + n, len - (size_t)n, "%02x", r[i]);
    return 0;
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

    {
        double delay =
            auth_attempt_delay(b, c, ck.username_flag ? &ck.username : NULL, after_delay);
        if (delay < 0) {
            refuse(b, c, MQTT_CONNACK_UNAVAILABLE,
                   "a newer login attempt for this user name from this address took its "
                   "turn; try again later");
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
            log_limited_key(LL_INFO, c->peer,
                            "%s: recent failed logins as '%s' from this address, CONNECT "
                            "held for %.1f s",
                            c->peer, log_escape(ck.username.ptr, ck.username.len), delay);
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
        if (generate_id(b, idbuf, sizeof idbuf) < 0) {
            refuse(b, c, MQTT_CONNACK_UNAVAILABLE, "no random bytes for a client id");
            return;
        }
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
        if (rc == MQTT_CONNACK_BAD_CREDENTIALS) auth_record_failure(b, c);
        char why[160];
        if (rc == MQTT_CONNACK_BAD_CREDENTIALS)
            snprintf(why, sizeof why, "wrong username or password for user '%s'",
                     c->username ? log_esc(c->username) : "");
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
    session *s = session_find(b, c->client_id, idlen);
    if (s && s->conn) {
        conn *old = s->conn;
        conn_close(b, old, "taken over by a new connection from %s", c->peer);
        old->session = NULL;
        s->conn = NULL;
    }
    bool present = false;
    if (s && (ck.clean_session || s->clean)) {
        session_destroy(b, s);
        s = NULL;
    }
    if (s) {
        present = true;
    } else {
        s = session_create(b, c->client_id, idlen, ck.clean_session);
        if (!s) {
            refuse(b, c, MQTT_CONNACK_UNAVAILABLE, "out of memory for the session");
            return;
        }
    }
    free(s->username);
    s->username = c->username ? strdup(c->username) : NULL;
    s->conn = c;
    c->session = s;
    c->keepalive = ck.keepalive;
    c->send_will = ck.will_flag;
    c->state = CS_ACTIVE;
    send_connack(b, c, present, MQTT_CONNACK_ACCEPTED);
    if (b->cfg->connection_messages)
        log_msg(LL_NOTICE,
                "New client connected from %s as %s (%s, clean session %d, keepalive "
                "%u%s%s%s, %s)",
                c->peer, log_esc(c->client_id), ck.protocol_level == 3 ? "MQTT 3.1" : "MQTT 3.1.1",
                ck.clean_session, ck.keepalive, c->username ? ", username '" : "",
                c->username ? log_esc(c->username) : "", c->username ? "'" : "",
                c->tls ? "TLS" : "plain");
    if (present) session_resend(b, s);
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
        router_publish(b, c, m);
        msg_unref(m);
    } else {
        /* Dropped but acknowledged, so the client does not resend forever. */
        log_msg(LL_NOTICE, "Denied PUBLISH from %s (user %s) to '%s': not allowed by the ACL",
                log_esc(c->client_id), c->username ? log_esc(c->username) : "anonymous",
                log_escape(p.topic.ptr, p.topic.len));
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
    session *s;
    uint8_t qos;
} retained_ctx;

/* Would every further delivery to s at this QoS be dropped? Then a retained
 * walk can stop: a huge SUBSCRIBE cannot make the broker walk the whole
 * store again and again for a client that cannot take the messages. */
static bool session_saturated(broker *b, session *s, uint8_t qos)
{
    conn *c = s->conn;
    if (!c || c->state != CS_ACTIVE) return true;
    if (bbuf_used(&c->out) <= b->cfg->max_output_buffer) return false;
    if (qos == 0) return true;
    uint32_t maxq = b->cfg->max_queued_messages;
    return maxq && s->queue.count >= maxq;
}

static bool send_retained(void *ud, msg *m)
{
    retained_ctx *rc = ud;
    if (auth_may_read(rc->b, rc->s, msg_topic(m), m->topic_len)) {
        uint8_t q = m->qos < rc->qos ? m->qos : rc->qos;
        session_deliver(rc->b, rc->s, m, q, true); /* [MQTT-3.3.1-8]: retain=1 */
    }
    return !session_saturated(rc->b, rc->s, rc->qos);
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
    unsigned i = 0, over = 0;
    uint32_t max_subs = b->cfg->max_subscriptions_per_client;
    while (mqtt_sublist_next(&it, &f, &q)) {
        uint8_t granted = q > 2 ? 2 : q;
        recs[i] = NULL;
        if (max_subs && c->session->subs_by_filter.count >= max_subs &&
            !dict_get(&c->session->subs_by_filter, (const char *)f.ptr, f.len)) {
            granted = MQTT_SUBACK_FAILURE; /* a new filter past the limit */
            over++;
        } else if (topic_too_deep((const char *)f.ptr, f.len)) {
            log_msg(LL_NOTICE, "Refused SUBSCRIBE from %s: filter has more than %d levels",
                    log_esc(c->client_id), TOPIC_MAX_LEVELS);
            granted = MQTT_SUBACK_FAILURE;
        } else if (!auth_may_subscribe(b, c, (const char *)f.ptr, f.len)) {
            log_msg(LL_NOTICE,
                    "Denied SUBSCRIBE from %s (user %s) to '%s': not allowed by "
                    "the ACL",
                    log_esc(c->client_id), c->username ? log_esc(c->username) : "anonymous",
                    log_escape(f.ptr, f.len));
            granted = MQTT_SUBACK_FAILURE;
        } else if (!(recs[i] =
                         tree_subscribe(b, c->session, (const char *)f.ptr, f.len, granted))) {
            granted = MQTT_SUBACK_FAILURE;
        } else if (log_enabled(LL_SUBSCRIBE)) {
            log_msg(LL_SUBSCRIBE, "%s subscribed to '%s' (QoS %u)", log_esc(c->client_id),
                    log_escape(f.ptr, f.len), granted);
        }
        codes[i++] = granted;
    }
    if (over)
        log_msg(LL_NOTICE,
                "Refused %u filters of a SUBSCRIBE from %s: max_subscriptions_per_client %u", over,
                log_esc(c->client_id), max_subs);
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
        if (session_saturated(b, c->session, codes[i])) break;
        retained_ctx rc = {b, c->session, codes[i]};
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
        tree_unsubscribe(b, c->session, (const char *)f.ptr, f.len);
        if (log_enabled(LL_SUBSCRIBE))
            log_msg(LL_SUBSCRIBE, "%s unsubscribed from '%s'", log_esc(c->client_id),
                    log_escape(f.ptr, f.len));
    }
    conn_send_ack(b, c, MQTT_UNSUBACK, sl.packet_id);
}

void proto_handle_packet(broker *b, conn *c, const void *hdr)
{
    const mqtt_header *h = hdr;
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
        session_ack(b, c->session, h->type, pid);
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
        s->conn = NULL;
        c->session = NULL;
    }
    if (c->will && c->send_will) {
        /* [MQTT-3.1.2-8]: closed without DISCONNECT (error, keepalive, takeover) */
        c->send_will = false;
        router_publish(b, NULL, c->will);
    }
    if (s && s->clean) session_destroy(b, s);
}
