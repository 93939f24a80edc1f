/*
 * bridge.c -- bridges (see bridge.h): the MQTT client on an outgoing
 * connection, the local session's outbox, reconnects with the configured
 * delay, resolution off the loop, notifications and counters.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker/bridge.h"
#include "broker/bridge_cfg.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/persist.h"
#include "broker/rng.h"
#include "broker/router.h"
#include "broker/session.h"
#include "mqtt/mqtt.h"
#include "tls/tls.h"

/* The remote is gone when a PINGREQ stays unanswered this many keepalives. */
#define PING_ANSWER_KEEPALIVES 1.0
/* Bytes of a mapped topic (a topic is at most 65535 bytes, plus NUL). */
#define TOPIC_BUF (65535 + 1)
/* Waiting for a resolver that cannot be cancelled, at shutdown. */
#define RESOLVER_WAIT_SECONDS 5
/* round_robin false, connected to a backup: the main address is probed
 * (a non-blocking TCP connect) this long after the CONNACK and again this
 * long after every probe that failed (Mosquitto's 5 s). */
#define PROBE_INTERVAL_SECONDS 5.0

typedef enum {
    BR_IDLE,       /* not running: lazy below threshold, once after its try */
    BR_WAIT,       /* waiting for next_try */
    BR_RESOLVING,  /* getaddrinfo_a running */
    BR_CONNECTING, /* conn exists: TCP, TLS, CONNECT, until CONNACK */
    BR_ACTIVE,     /* CONNACK 0: the session's outbox is attached */
} br_state;

typedef struct bridge {
    broker *b;
    const bridge_cfg *cfg; /* &own */
    bridge_cfg own;        /* moved out of the configuration it came with */
    bool retired;          /* stopped by SIGHUP: waits for its connection to go */
    struct bridge *next_retired;
    listener lst; /* the transport's view: handler, limits (fd -1) */
    listener_cfg lcfg;
    tls_client **tls; /* one per address (name check, SNI, saved session); NULL: plain */
    conn *c;          /* current connection or NULL */
    session *s;       /* the local side (the registry owns it) */
    br_state state;
    size_t addr;                  /* the address tried or in use */
    bool private_ok;              /* the next CONNECT announces a bridge (level | 0x80) */
    bool was_active;              /* the current connection got CONNACK 0 */
    bool connect_sent;            /* the current connection sent CONNECT */
    bool no_retry;                /* this close schedules no retry (idle stop, once) */
    bool retry_now;               /* ... or an immediate one (try_private refused) */
    bool ping_out;                /* PINGREQ sent, no packet since */
    bool v5;                      /* bridge_protocol_version mqttv50 */
    bool retain_ok;               /* the remote takes retained messages (MQTT 5 Retain Available) */
    bool mute_pubrel;             /* a failed PUBREC ends the exchange: no PUBREL */
    uint16_t keepalive;           /* keepalive_interval, or the remote's Server Keep Alive */
    uint32_t remote_max_packet;   /* the remote's MQTT 5 Maximum Packet Size, 0 = none */
    uint8_t max_qos;              /* the remote's MQTT 5 Maximum QoS (2: none given) */
    bool dropping;                /* a queue-drop episode is going on */
    bool gai_busy;                /* gai holds a request */
    struct addrinfo *ai, *ai_cur; /* the resolved addresses (owned), the one tried */
    double next_try, connack_deadline, ping_at, last_rx, last_activity;
    uint64_t delay_ms; /* the last retry delay, 0 after a success */
    uint64_t rng;
    uint64_t sent, received, connects, drops_seen;
    struct gaicb gai;
    struct addrinfo hints;
    char port[8];
    /* the main-address probe while on a backup (round_robin false) */
    int probe_fd;          /* the TCP connect in progress, or -1 */
    bool probe_gai_busy;   /* probe_gai holds a request */
    double probe_at;       /* next probe; 0: none scheduled */
    double probe_deadline; /* the connect in progress gives up then */
    struct gaicb probe_gai;
    struct addrinfo *probe_ai, *probe_ai_cur; /* a name's addresses (owned), the one probed */
    struct addrinfo probe_hints;
    char probe_port[8];
    char *topic_buf; /* TOPIC_BUF bytes: the mapped topic */
    /* over bridge_max_packet_size: QoS 1/2 ids the bridge acknowledges itself
     * at the next tick (the session must not wait for the remote) */
    struct {
        uint16_t pid;
        uint8_t qos;
    } * skipped;
    size_t nskipped, cap_skipped;
    uint64_t too_big;
    uint64_t refused; /* MQTT 5 acks with a failure reason */
} bridge;

static const conn_handler bridge_conn_handler;
static const session_outbox bridge_outbox;
static void probe_stop(bridge *br, double next);
static void reap_retired(broker *b);

static uint32_t br_rand(void *ctx)
{
    uint64_t *x = ctx; /* xorshift64* */
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return (uint32_t)((*x * 0x2545f4914f6cdd1dULL) >> 32);
}

static const char *host_of(const bridge *br)
{
    return br->cfg->addrs[br->addr].host;
}

static int br_send(bridge *br, const uint8_t *p, size_t n)
{
    return conn_write(br->b, br->c, p, n);
}

static void free_resolved(bridge *br)
{
    if (br->ai) freeaddrinfo(br->ai);
    br->ai = br->ai_cur = NULL;
}

/* ---- notifications: $SYS/broker/connection/<remote_clientid>/state ------------ */

static void notify_local(bridge *br, bool up)
{
    const bridge_cfg *cfg = br->cfg;
    if (!cfg->notifications) return;
    msg *m =
        msg_new((const uint8_t *)cfg->notification_topic, (uint16_t)strlen(cfg->notification_topic),
                (const uint8_t *)(up ? "1" : "0"), 1, 1, true);
    if (!m) return;
    router_publish(br->b, NULL, m);
    msg_unref(m);
}

/* On the remote: "1" now, "0" through the will (or before a clean
 * DISCONNECT, which suppresses the will). QoS 0: a QoS 1 packet id of ours
 * could collide with the session's ids, whose acks the session takes. */
static void notify_remote(bridge *br, bool up)
{
    const bridge_cfg *cfg = br->cfg;
    if (!cfg->notifications || cfg->notifications_local_only) return;
    mqtt_publish p = {.qos = 0,
                      .retain = true,
                      .topic = {(const uint8_t *)cfg->notification_topic,
                                (uint16_t)strlen(cfg->notification_topic)},
                      .payload = (const uint8_t *)(up ? "1" : "0"),
                      .payload_len = 1};
    size_t cap = 16 + p.topic.len, n;
    uint8_t *buf = malloc(cap);
    mqtt5_publish p5 = {.p = p};
    int r = !buf     ? MQTT_ERR_BUFFER
            : br->v5 ? mqtt5_encode_publish(buf, cap, &p5, &n)
                     : mqtt_encode_publish(buf, cap, &p, &n);
    if (r == MQTT_OK) (void)br_send(br, buf, n);
    free(buf);
}

/* ---- CONNECT ------------------------------------------------------------------ */

static mqtt_str mstr(const char *s)
{
    return (mqtt_str){(const uint8_t *)(s ? s : ""), (uint16_t)(s ? strlen(s) : 0)};
}

/* MQTT 5 CONNECT: Clean Start = cleansession, and a Session Expiry
 * Interval to match (0: the session ends with the connection; else never),
 * our Receive Maximum and Maximum Packet Size. try_private is not used at
 * level 5: No Local and Retain As Published do its work. */
static int encode_connect5(bridge *br, const mqtt_connect *ck, uint8_t *buf, size_t cap, size_t *n)
{
    const config *bc = br->b->cfg;
    uint8_t pb[32];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    if (!br->cfg->cleansession) (void)mqtt_props_add_int(&w, MQTT_PROP_SESSION_EXPIRY, UINT32_MAX);
    if (bc->max_inflight_messages && bc->max_inflight_messages < 65535)
        (void)mqtt_props_add_int(&w, MQTT_PROP_RECEIVE_MAXIMUM, bc->max_inflight_messages);
    if (bc->max_packet_size)
        (void)mqtt_props_add_int(&w, MQTT_PROP_MAXIMUM_PACKET_SIZE, bc->max_packet_size);
    mqtt5_connect c5 = {.c = *ck};
    c5.props.raw = mqtt_props_writer_bytes(&w);
    return mqtt5_encode_connect(buf, cap, &c5, n);
}

static void send_connect(bridge *br)
{
    const bridge_cfg *cfg = br->cfg;
    uint8_t level = cfg->protocol_version;
    mqtt_connect ck = {
        .protocol_name = mstr(level == 3 ? "MQIsdp" : "MQTT"),
        .protocol_level = (uint8_t)(level | (br->private_ok && !br->v5 ? 0x80 : 0)),
        .clean_session = cfg->cleansession,
        .keepalive = cfg->keepalive_interval,
        .client_id = mstr(cfg->remote_clientid),
        .username_flag = cfg->remote_username != NULL,
        .username = mstr(cfg->remote_username),
        .password_flag = cfg->remote_password != NULL,
        .password = mstr(cfg->remote_password),
    };
    if (cfg->notifications && !cfg->notifications_local_only) {
        ck.will_flag = true;
        ck.will_qos = 1;
        ck.will_retain = true;
        ck.will_topic = mstr(cfg->notification_topic);
        ck.will_payload = mstr("0");
    }
    size_t cap = 64 + ck.client_id.len + ck.username.len + ck.password.len + ck.will_topic.len, n;
    uint8_t *buf = malloc(cap);
    if (!buf || (br->v5 ? encode_connect5(br, &ck, buf, cap, &n)
                        : mqtt_encode_connect(buf, cap, &ck, &n)) != MQTT_OK) {
        free(buf);
        conn_close(br->b, br->c, "cannot encode CONNECT (out of memory)");
        return;
    }
    (void)br_send(br, buf, n); /* a failed write closes */
    free(buf);
    br->connect_sent = true;
    br->connack_deadline = br->b->now + br->b->cfg->handshake_timeout;
}

/* SUBSCRIBE (in/both topics' remote filters) or UNSUBSCRIBE (out-only
 * topics' remote filters, bridge_attempt_unsubscribe: stale subscriptions
 * of an earlier configuration on a persistent remote session). */
static void send_filters(bridge *br, bool subscribe)
{
    const bridge_cfg *cfg = br->cfg;
    mqtt_str *f = calloc(cfg->ntopics ? cfg->ntopics : 1, sizeof *f);
    uint8_t *q = calloc(cfg->ntopics ? cfg->ntopics : 1, 1);
    unsigned n = 0;
    size_t cap = 16;
    for (size_t i = 0; f && q && i < cfg->ntopics; i++) {
        const bridge_topic *t = &cfg->topics[i];
        if (subscribe ? !(t->dir & BRIDGE_IN) : t->dir != BRIDGE_OUT) continue;
        f[n] = mstr(t->remote_filter);
        /* MQTT 5: what the bridge publishes does not come back (No Local),
         * retained messages keep their flag (Retain As Published) */
        q[n] = (uint8_t)(t->qos | (br->v5 ? 4 | 8 : 0));
        cap += 3u + f[n++].len;
    }
    cap += 1; /* an empty property block (MQTT 5) */
    uint8_t *buf = n ? malloc(cap) : NULL;
    size_t len;
    /* an id no PUBLISH of the session has in flight [MQTT-2.3.1-2]; the
     * SUBACK/UNSUBACK is matched by its type */
    uint16_t pid = session_next_pid(br->s);
    int r = !buf        ? MQTT_ERR_BUFFER
            : br->v5    ? (subscribe ? mqtt5_encode_subscribe(buf, cap, pid, NULL, f, q, n, &len)
                                     : mqtt5_encode_unsubscribe(buf, cap, pid, NULL, f, n, &len))
            : subscribe ? mqtt_encode_subscribe(buf, cap, pid, f, q, n, &len)
                        : mqtt_encode_unsubscribe(buf, cap, pid, f, n, &len);
    if (r == MQTT_OK) (void)br_send(br, buf, len);
    free(buf);
    free(f);
    free(q);
}

/* ---- packets from the remote ---------------------------------------------------- */

/* CONNACK 0: the session's outbox goes on this connection. */
static void connack_accepted(bridge *br, bool session_present)
{
    broker *b = br->b;
    br->state = BR_ACTIVE;
    br->was_active = true;
    free_resolved(br);
    br->delay_ms = 0;
    br->connects++;
    br->last_activity = b->now;
    log_msg(LL_NOTICE, "Bridge %s connected to %s (%s:%u) as %s (%s%s%s, session present %d)",
            br->cfg->name, br->c->peer, host_of(br), br->cfg->addrs[br->addr].port,
            br->cfg->remote_clientid, br->c->tls ? "TLS" : "plain", br->v5 ? ", MQTT 5" : "",
            br->private_ok && !br->v5 ? ", announced as bridge" : "", session_present);
    notify_local(br, true);
    notify_remote(br, true);
    br->probe_at = br->addr != 0 && !br->cfg->round_robin ? b->now + PROBE_INTERVAL_SECONDS : 0;
    if (br->cfg->attempt_unsubscribe && !br->cfg->cleansession) send_filters(br, false);
    send_filters(br, true);
    session_attach(br->s, &bridge_outbox, br);
    session_resend(br->s); /* unacknowledged first, in order, then the queue */
}

static void on_connack(bridge *br, const mqtt_header *h)
{
    broker *b = br->b;
    mqtt_connack ca;
    br->connect_sent = false; /* answered: a close from now on is no try_private refusal */
    if (mqtt_decode_connack(h, &ca) != MQTT_OK) {
        conn_close(b, br->c, "protocol error: malformed CONNACK");
        return;
    }
    if (ca.return_code == MQTT_CONNACK_PROTOCOL && br->private_ok) {
        /* a remote that does not know bridges (try_private): plain CONNECT */
        br->private_ok = false;
        br->retry_now = true;
        conn_close(b, br->c,
                   "remote refused the bridge protocol level (try_private); retrying "
                   "without it");
        return;
    }
    if (ca.return_code != MQTT_CONNACK_ACCEPTED) {
        conn_close(b, br->c, "CONNECT refused: CONNACK %u (%s)", ca.return_code,
                   mqtt_connack_string(ca.return_code));
        return;
    }
    br->s->send_max = 0;
    br->remote_max_packet = 0;
    br->max_qos = 2;
    connack_accepted(br, ca.session_present);
}

/* MQTT 5 CONNACK: a failure in words (with the remote's Reason String),
 * else the remote's limits: Receive Maximum bounds the session's window, a
 * message larger than its Maximum Packet Size is not sent (skip_too_big),
 * Server Keep Alive replaces keepalive_interval, Retain Available 0 clears
 * the retain flag of what goes out. */
static void on_connack5(bridge *br, const mqtt_header *h)
{
    broker *b = br->b;
    mqtt5_connack ca;
    br->connect_sent = false;
    int r = mqtt5_decode_connack(h, &ca);
    if (r != MQTT_OK) {
        conn_close(b, br->c, "protocol error: malformed CONNACK (%s)", mqtt_strerror(r));
        return;
    }
    const mqtt_props *p = &ca.props;
    if (ca.reason >= 0x80) {
        conn_close(b, br->c, "CONNECT refused: reason 0x%02x (%s)%s%s", ca.reason,
                   mqtt5_reason_string(MQTT_CONNACK, ca.reason), p->reason_string.len ? ": " : "",
                   p->reason_string.len ? log_escape(p->reason_string.ptr, p->reason_string.len)
                                        : "");
        return;
    }
    br->s->send_max = mqtt_props_has(p, MQTT_PROP_RECEIVE_MAXIMUM) ? p->receive_maximum : 0;
    br->remote_max_packet = p->maximum_packet_size;
    br->retain_ok = !mqtt_props_has(p, MQTT_PROP_RETAIN_AVAILABLE) || p->retain_available;
    if (mqtt_props_has(p, MQTT_PROP_SERVER_KEEP_ALIVE)) br->keepalive = p->server_keep_alive;
    br->max_qos = mqtt_props_has(p, MQTT_PROP_MAXIMUM_QOS) ? p->maximum_qos : 2;
    if (br->max_qos < 2)
        log_msg(LL_NOTICE,
                "Bridge %s: the remote accepts QoS %u at most; messages above it go out at QoS %u "
                "[MQTT-3.2.2-11]",
                br->cfg->name, br->max_qos, br->max_qos);
    connack_accepted(br, ca.session_present);
}

/* The properties of an MQTT 5 PUBLISH that travel with the message: all
 * but the per-delivery ones (Topic Alias, Subscription Identifier, Message
 * Expiry Interval, which becomes the message's expiry). Copied into buf
 * (p->raw.len bytes); returns the length. */
static size_t forwarded_props(const mqtt_props *p, uint8_t *buf)
{
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, p->raw.len);
    mqtt_prop_iter it;
    mqtt_prop pr;
    mqtt_prop_iter_init(&it, &p->raw);
    while (mqtt_prop_next(&it, &pr))
        if (pr.id != MQTT_PROP_TOPIC_ALIAS && pr.id != MQTT_PROP_SUBSCRIPTION_ID &&
            pr.id != MQTT_PROP_MESSAGE_EXPIRY)
            (void)mqtt_props_add(&w, &pr);
    return w.len;
}

/* Decode a PUBLISH from the remote at either level into p, and the message
 * to publish locally (topic mapped, properties kept). NULL when the
 * connection was closed, for a QoS 2 duplicate (*dup_qos2) or when the
 * mapped topic is invalid (dropped, logged). */
static msg *incoming_msg(bridge *br, const mqtt_header *h, mqtt_publish *p, bool *dup_qos2)
{
    broker *b = br->b;
    mqtt5_publish p5 = {0};
    int r = br->v5 ? mqtt5_decode_publish(h, &p5) : mqtt_decode_publish(h, &p5.p);
    if (r == MQTT_OK && mqtt_props_has(&p5.props, MQTT_PROP_TOPIC_ALIAS))
        r = MQTT_ERR_TOPIC_ALIAS; /* the CONNECT allowed none */
    if (r < 0) {
        conn_close(b, br->c, "protocol error from the remote: %s", mqtt_strerror(r));
        return NULL;
    }
    *p = p5.p;
    *dup_qos2 = p->qos == 2 && session_qos2_in_has(br->s, p->packet_id);
    if (*dup_qos2) return NULL;
    const char *topic = (const char *)p->topic.ptr;
    size_t tlen = p->topic.len;
    r = bridge_topic_in(br->cfg, topic, tlen, br->topic_buf, TOPIC_BUF, &tlen, NULL);
    if (r == BRIDGE_CFG_OK) topic = br->topic_buf;
    if (r == BRIDGE_TOPIC_NO_MATCH) tlen = p->topic.len; /* Mosquitto: published unchanged */
    if (r < 0) {
        log_msg(LL_WARNING, "Bridge %s: dropped incoming '%s': the mapped topic is invalid",
                br->cfg->name, log_escape(p->topic.ptr, p->topic.len));
        return NULL;
    }
    uint8_t *props = p5.props.raw.len ? malloc(p5.props.raw.len) : NULL;
    size_t plen = props ? forwarded_props(&p5.props, props) : 0;
    msg *m = msg_new_props((const uint8_t *)topic, (uint16_t)tlen, props, plen, p->payload,
                           p->payload_len, p->qos, p->retain);
    free(props);
    if (!m) {
        conn_close(b, br->c, "out of memory for a %zu-byte message", p->payload_len);
        return NULL;
    }
    if (mqtt_props_has(&p5.props, MQTT_PROP_MESSAGE_EXPIRY))
        m->expire_at = b->now + p5.props.message_expiry;
    return m;
}

static void on_publish(bridge *br, const mqtt_header *h)
{
    broker *b = br->b;
    mqtt_publish p = {0};
    bool dup_qos2 = false;
    conn *c = br->c;
    msg *m = incoming_msg(br, h, &p, &dup_qos2);
    if (c->state == CS_CLOSING) return;
    uint8_t ackbuf[4];
    size_t an;
    if (dup_qos2) {
        if (mqtt_encode_ack(ackbuf, sizeof ackbuf, MQTT_PUBREC, p.packet_id, &an) == MQTT_OK)
            (void)br_send(br, ackbuf, an);
        return;
    }
    if (m) {
        br->received++;
        br->last_activity = b->now;
        router_publish(b, br->s->client_id, m); /* No-Local: not back to this bridge */
        msg_unref(m);
    }
    if (p.qos == 2 && session_qos2_in_add(br->s, p.packet_id) != BK_OK) {
        conn_close(b, br->c, "out of memory");
        return;
    }
    /* a success ack without properties is the same bytes at levels 4 and 5 */
    if (p.qos && mqtt_encode_ack(ackbuf, sizeof ackbuf, p.qos == 1 ? MQTT_PUBACK : MQTT_PUBREC,
                                 p.packet_id, &an) == MQTT_OK)
        (void)br_send(br, ackbuf, an);
}

/* SUBACK, and at level 5 UNSUBACK: refusals are logged (in words at 5). */
static void on_suback(bridge *br, const mqtt_header *h)
{
    mqtt5_suback s5;
    mqtt_suback sa;
    int r = br->v5 ? mqtt5_decode_suback(h, &s5) : mqtt_decode_suback(h, &sa);
    if (r != MQTT_OK) {
        conn_close(br->b, br->c, "protocol error: malformed %s", mqtt_type_name(h->type));
        return;
    }
    const uint8_t *codes = br->v5 ? s5.codes : sa.codes;
    unsigned count = br->v5 ? s5.count : sa.count;
    for (unsigned i = 0; i < count; i++)
        if (codes[i] >= 0x80)
            log_msg(LL_WARNING, "Bridge %s: the remote refused %s %u of %u: 0x%02x (%s)",
                    br->cfg->name, h->type == MQTT_SUBACK ? "subscription" : "unsubscription",
                    i + 1, count, codes[i],
                    br->v5 ? mqtt5_reason_string(h->type, codes[i]) : "failure");
}

static void count_refusal(bridge *br, const mqtt5_ack *a)
{
    if (br->refused++ % 1000 == 0)
        log_msg(LL_WARNING,
                "Bridge %s: the remote refused a message: %s reason 0x%02x (%s)%s%s "
                "(%llu so far)",
                br->cfg->name, mqtt_type_name(a->type), a->reason,
                mqtt5_reason_string(a->type, a->reason), a->props.reason_string.len ? ": " : "",
                a->props.reason_string.len
                    ? log_escape(a->props.reason_string.ptr, a->props.reason_string.len)
                    : "",
                (unsigned long long)br->refused);
}

/* Complete QoS 2 delivery pid without a PUBREL on the wire. */
static void ack_qos2_here(bridge *br, uint16_t pid)
{
    br->mute_pubrel = true;
    if (session_ack(br->s, MQTT_PUBREC, pid) == BK_OK) (void)session_ack(br->s, MQTT_PUBCOMP, pid);
    br->mute_pubrel = false;
}

static int on_ack(bridge *br, const mqtt_header *h)
{
    uint16_t pid;
    int r = mqtt_decode_ack(h, &pid);
    if (r < 0) return r;
    if (h->type == MQTT_PUBREL) {
        uint8_t buf[4];
        size_t n;
        (void)session_qos2_in_del(br->s, pid);
        if (mqtt_encode_ack(buf, sizeof buf, MQTT_PUBCOMP, pid, &n) == MQTT_OK)
            (void)br_send(br, buf, n);
    } else if (h->type != MQTT_UNSUBACK) {
        /* an unknown id is ignored; a PUBACK for a QoS 2 delivery that went
         * out at QoS 1 (the remote's Maximum QoS) ends its exchange */
        if (session_ack(br->s, h->type, pid) == BK_ERR_STATE && h->type == MQTT_PUBACK &&
            br->max_qos < 2)
            ack_qos2_here(br, pid);
        br->last_activity = br->b->now;
    }
    return MQTT_OK;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP at level 5, and DISCONNECT. */
static int on_ack5(bridge *br, const mqtt_header *h)
{
    mqtt5_ack a;
    int r = mqtt5_decode_ack(h, &a);
    if (r < 0) return r;
    if (h->type == MQTT_DISCONNECT) {
        conn_close(br->b, br->c, "the remote sent DISCONNECT: reason 0x%02x (%s)%s%s", a.reason,
                   mqtt5_reason_string(MQTT_DISCONNECT, a.reason),
                   a.props.reason_string.len ? ": " : "",
                   a.props.reason_string.len
                       ? log_escape(a.props.reason_string.ptr, a.props.reason_string.len)
                       : "");
        return MQTT_OK;
    }
    if (a.reason >= 0x80 && h->type != MQTT_PUBREL && h->type != MQTT_PUBCOMP)
        count_refusal(br, &a);
    if (h->type == MQTT_PUBREC && a.reason >= 0x80) {
        /* the exchange ends here (spec 4.3.3): done, no PUBREL */
        ack_qos2_here(br, a.packet_id);
        return MQTT_OK;
    }
    mqtt_header plain = *h;
    plain.remaining = 2; /* the id; the rest was checked */
    return on_ack(br, &plain);
}

static void handle_packet(bridge *br, const mqtt_header *h)
{
    conn *c = br->c;
    if (br->state != BR_ACTIVE) {
        if (h->type == MQTT_CONNACK && br->v5)
            on_connack5(br, h);
        else if (h->type == MQTT_CONNACK)
            on_connack(br, h);
        else
            conn_close(br->b, c, "protocol error: the remote sent %s before CONNACK",
                       mqtt_type_name(h->type));
        return;
    }
    int r = MQTT_OK;
    switch (h->type) {
    case MQTT_PUBLISH:
        on_publish(br, h);
        return;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        r = br->v5 ? on_ack5(br, h) : on_ack(br, h);
        break;
    case MQTT_UNSUBACK:
        if (br->v5) {
            on_suback(br, h);
            return;
        }
        r = on_ack(br, h);
        break;
    case MQTT_SUBACK:
        on_suback(br, h);
        return;
    case MQTT_DISCONNECT:
        if (!br->v5) goto unexpected;
        r = on_ack5(br, h);
        break;
    case MQTT_PINGRESP:
        r = mqtt_decode_empty(h);
        break;
    default:
    unexpected:
        conn_close(br->b, c, "protocol error: the remote sent %s", mqtt_type_name(h->type));
        return;
    }
    if (r < 0) conn_close(br->b, c, "protocol error from the remote: %s", mqtt_strerror(r));
}

/* ---- the conn_handler ------------------------------------------------------------ */

static bridge *br_of(conn *c)
{
    return *(bridge **)c->ud;
}

static int br_on_accept(broker *b, conn *c)
{
    (void)b;
    *(bridge **)c->ud = NULL; /* set by the bridge once conn_connect returns */
    return BK_OK;
}

static void br_on_open(conn *c)
{
    bridge *br = br_of(c);
    if (br->retired) return;
    br->last_rx = br->b->now;
    send_connect(br);
}

static size_t br_on_data(conn *c, const uint8_t *data, size_t len)
{
    bridge *br = br_of(c);
    if (br->retired) return len;
    broker *b = br->b;
    size_t off = 0;
    size_t max = b->cfg->max_packet_size;
    while (off < len && c->state != CS_CLOSING) {
        mqtt_header h;
        size_t plen;
        int r = mqtt_frame_level(data + off, len - off, max, br->v5 ? 5 : 4, &h, &plen);
        if (r == MQTT_NEED_MORE) break;
        if (r < 0) {
            conn_close(b, c, "protocol error from the remote: %s", mqtt_strerror(r));
            return len;
        }
        br->last_rx = b->now;
        br->ping_out = false;
        b->bytes_received += plen;
        /* an answer to a packet that changed durable state (a message queued
         * for a durable session) leaves after the commit, as for clients */
        size_t pending = persist_pending(b), keep = bbuf_used(&c->out);
        handle_packet(br, &h);
        if (c->state != CS_CLOSING && persist_pending(b) > pending)
            conn_hold(b, c, keep, persist_gathering_epoch(b));
        off += plen;
    }
    return off;
}

static size_t br_frame_need(const uint8_t *data, size_t len)
{
    mqtt_header h;
    size_t need = 0;
    (void)mqtt_frame(data, len, 0, &h, &need); /* only the length is wanted */
    return need;
}

static void br_ping(bridge *br)
{
    uint8_t buf[2];
    size_t n;
    if (mqtt_encode_empty(buf, sizeof buf, MQTT_PINGREQ, &n) != MQTT_OK) return;
    (void)br_send(br, buf, n);
    br->ping_out = true;
    br->ping_at = br->b->now;
}

static void br_disconnect(bridge *br, const char *why)
{
    uint8_t buf[2];
    size_t n;
    if (mqtt_encode_empty(buf, sizeof buf, MQTT_DISCONNECT, &n) == MQTT_OK)
        (void)br_send(br, buf, n); /* flushed before the close */
    br->no_retry = true;
    conn_close(br->b, br->c, "%s", why);
}

static void br_on_tick(conn *c)
{
    bridge *br = br_of(c);
    if (br->retired) return;
    broker *b = br->b;
    double ka = br->keepalive;
    if (br->state != BR_ACTIVE) {
        if (c->state == CS_OPEN && b->now >= br->connack_deadline)
            conn_close(b, c, "no CONNACK within handshake_timeout %u s", b->cfg->handshake_timeout);
        return;
    }
    if (br->ping_out && b->now - br->ping_at > PING_ANSWER_KEEPALIVES * ka) {
        conn_close(b, c, "the remote did not answer PINGREQ within the keepalive (%u s)",
                   br->keepalive);
        return;
    }
    if (!br->ping_out && (b->now - br->last_rx >= ka || b->now - c->last_tx >= ka)) br_ping(br);
    if (br->cfg->start_type == BRIDGE_START_LAZY &&
        b->now - br->last_activity > br->cfg->idle_timeout && br->s->queue.count == 0 &&
        br->s->inflight_live == 0)
        br_disconnect(br, "idle for idle_timeout (start_type lazy)");
}

static void connect_to(bridge *br, const struct sockaddr *sa, socklen_t salen);

/* A name resolved to several addresses (localhost: ::1 and 127.0.0.1):
 * after a failed attempt the next one is tried at once. */
static bool try_next_resolved(bridge *br)
{
    if (!br->ai_cur || !br->ai_cur->ai_next) {
        free_resolved(br);
        return false;
    }
    br->ai_cur = br->ai_cur->ai_next;
    connect_to(br, br->ai_cur->ai_addr, br->ai_cur->ai_addrlen);
    return true;
}

/* The retry schedule after a connection or an attempt ended. */
static void schedule_retry(bridge *br)
{
    const bridge_cfg *cfg = br->cfg;
    broker *b = br->b;
    if (b->stop) return;
    if (!br->was_active && !br->no_retry && !br->retry_now && try_next_resolved(br)) return;
    if (br->no_retry || (cfg->start_type == BRIDGE_START_ONCE && !br->retry_now)) {
        if (cfg->start_type == BRIDGE_START_ONCE && !br->no_retry)
            log_msg(LL_NOTICE, "Bridge %s: start_type once, not reconnecting", cfg->name);
        br->state = BR_IDLE;
        br->no_retry = false;
        return;
    }
    if (!br->was_active && cfg->naddrs > 1) /* a failed attempt: the next address */
        br->addr = (br->addr + 1) % cfg->naddrs;
    else if (br->was_active && !cfg->round_robin)
        br->addr = 0; /* the main address first again */
    br->state = BR_WAIT;
    if (br->retry_now) {
        br->retry_now = false;
        br->next_try = b->now;
        return;
    }
    br->delay_ms = bridge_restart_delay_ms(cfg, br->delay_ms, br_rand, &br->rng);
    br->next_try = b->now + (double)br->delay_ms / 1000.0;
    log_msg(LL_NOTICE, "Bridge %s: next attempt in %.1f s (%s:%u)", cfg->name,
            (double)br->delay_ms / 1000.0, host_of(br), cfg->addrs[br->addr].port);
}

static void br_on_close(conn *c, const char *reason)
{
    bridge *br = br_of(c);
    if (!br) return;
    if (br->retired) { /* bridge_stop said everything; reap_retired frees it */
        br->c = NULL;
        return;
    }
    if (br->state == BR_ACTIVE) {
        session_detach(br->s);
        notify_local(br, false);
        log_msg(LL_NOTICE, "Bridge %s disconnected from %s: %s", br->cfg->name, c->peer, reason);
    } else {
        log_msg(LL_NOTICE, "Bridge %s: connection to %s:%u failed: %s (%s)", br->cfg->name,
                host_of(br), br->cfg->addrs[br->addr].port, reason, c->peer);
        if (br->connect_sent && br->private_ok && !br->v5) {
            /* some remotes (RabbitMQ) close instead of answering CONNACK 1 */
            log_msg(LL_NOTICE,
                    "Bridge %s: the remote closed the connection instead of answering the "
                    "bridge CONNECT (try_private); retrying without it",
                    br->cfg->name);
            br->private_ok = false;
            br->retry_now = true;
        }
    }
    br->c = NULL;
    br->ping_out = false;
    probe_stop(br, 0);
    schedule_retry(br);
    br->was_active = false;
}

static const conn_handler bridge_conn_handler = {
    .ud_size = sizeof(bridge *),
    .on_accept = br_on_accept,
    .on_data = br_on_data,
    .frame_need = br_frame_need,
    .on_tick = br_on_tick,
    .on_close = br_on_close,
    .on_open = br_on_open,
};

/* ---- the local session's outbox ---------------------------------------------------- */

static bool out_ready(void *ctx)
{
    const bridge *br = ctx;
    return br->state == BR_ACTIVE && br->c && br->c->state == CS_OPEN;
}

static int ack_later(bridge *br, uint8_t qos, uint16_t pid);

/* A message over bridge_max_packet_size is not sent: counted, logged, and
 * (QoS 1/2) acknowledged by the bridge itself at the next tick. */
static int skip_too_big(bridge *br, const msg *m, uint8_t qos, uint16_t pid, size_t size,
                        uint32_t max)
{
    if (br->too_big++ % 1000 == 0)
        log_msg(LL_WARNING, "Bridge %s: '%s' (%zu bytes) is over %s %u, not sent (%llu so far)",
                br->cfg->name, log_esc(msg_topic(m)), size,
                max == br->cfg->max_packet_size ? "bridge_max_packet_size"
                                                : "the remote's Maximum Packet Size",
                max, (unsigned long long)br->too_big);
    return ack_later(br, qos, pid);
}

/* Acknowledge delivery pid (QoS qos) at the next tick: it was not sent, or
 * sent at QoS 0 (the remote's Maximum QoS). */
static int ack_later(bridge *br, uint8_t qos, uint16_t pid)
{
    if (qos == 0) return BK_OK;
    if (br->nskipped == br->cap_skipped) {
        size_t ncap = br->cap_skipped ? 2 * br->cap_skipped : 16;
        void *n = realloc(br->skipped, ncap * sizeof *br->skipped);
        if (!n) return BK_ERR_NOMEM;
        br->skipped = n;
        br->cap_skipped = ncap;
    }
    br->skipped[br->nskipped].pid = pid;
    br->skipped[br->nskipped++].qos = qos;
    return BK_OK;
}

/* The acknowledgements skip_too_big promised (outside the session's own
 * call, which must not be re-entered). */
static void ack_skipped(bridge *br)
{
    for (size_t i = 0; i < br->nskipped; i++) {
        if (br->skipped[i].qos == 1) {
            (void)session_ack(br->s, MQTT_PUBACK, br->skipped[i].pid);
        } else if (session_ack(br->s, MQTT_PUBREC, br->skipped[i].pid) == BK_OK) {
            (void)session_ack(br->s, MQTT_PUBCOMP, br->skipped[i].pid);
        }
    }
    br->nskipped = 0;
}

/* A QoS 2 PUBLISH or a PUBREL from a durable bridge session waits for the
 * commit that records its packet id (as protocol.c does for clients). */
static void hold_for_durable(bridge *br)
{
    uint64_t epoch = br->s->durable ? persist_hold_epoch(br->b) : 0;
    if (epoch) conn_hold(br->b, br->c, bbuf_used(&br->c->out), epoch);
}

/* The properties an MQTT 5 PUBLISH carries: the message's own block and
 * its remaining Message Expiry Interval. buf has m->props_len + 5 bytes. */
static size_t outgoing_props(const bridge *br, const msg *m, uint8_t *buf)
{
    size_t n = 0;
    if (m->expire_at > 0) {
        mqtt_props_writer w;
        mqtt_props_writer_init(&w, buf, 5);
        double left = m->expire_at - br->b->now;
        (void)mqtt_props_add_int(&w, MQTT_PROP_MESSAGE_EXPIRY,
                                 left < 1 ? 1 : (uint32_t)(left + 0.999));
        n = w.len;
    }
    if (m->props_len) memcpy(buf + n, msg_props(m), m->props_len);
    return n + m->props_len;
}

/* Encode the PUBLISH (either level) into the connection's output. */
static int write_publish(bridge *br, const msg *m, const mqtt_publish *pp, uint16_t pid)
{
    broker *b = br->b;
    uint8_t small[256], *pb = small;
    mqtt5_publish p5 = {.p = *pp};
    p5.p.packet_id = pid;
    size_t hsz = mqtt_publish_header_size(pp->qos, pp->topic.len, m->payload_len);
    if (br->v5) {
        if (m->props_len + 5 > sizeof small && !(pb = malloc(m->props_len + 5)))
            return BK_ERR_NOMEM;
        p5.props.raw = (mqtt_bytes){pb, outgoing_props(br, m, pb)};
        hsz += 4 + p5.props.raw.len + 1; /* room for the property length and a longer varint */
    }
    size_t total = hsz + m->payload_len, n;
    uint8_t *p = conn_reserve(b, br->c, total);
    int r = !p ? BK_ERR_NOMEM
            : br->v5
                ? mqtt5_encode_publish_header(p, total, &p5, &n)
                : mqtt_encode_publish_header(p, total, pp->qos, pp->dup, pp->retain, pp->topic.ptr,
                                             pp->topic.len, pid, m->payload_len, &n);
    if (pb != small) free(pb);
    if (r == BK_ERR_NOMEM) return r;
    if (r != MQTT_OK) return BK_ERR_ENCODE;
    if (m->payload_len) memcpy(p + n, msg_payload(m), m->payload_len);
    conn_commit(b, br->c, n + m->payload_len);
    return BK_OK;
}

/* The size of the PUBLISH write_publish makes (bridge_max_packet_size and
 * the remote's MQTT 5 Maximum Packet Size are checked against it). */
static size_t publish_size(const bridge *br, const msg *m, uint8_t qos, size_t tlen)
{
    size_t props = br->v5 ? m->props_len + (m->expire_at > 0 ? 5 : 0) : 0;
    size_t rem = 2 + tlen + (qos ? 2 : 0) + m->payload_len +
                 (br->v5 ? (size_t)mqtt_varint_size((uint32_t)props) + props : 0);
    return 1 + (size_t)mqtt_varint_size((uint32_t)rem) + rem;
}

static int out_publish(void *ctx, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid)
{
    bridge *br = ctx;
    broker *b = br->b;
    if (!out_ready(br)) return BK_ERR_CLOSED;
    int level = conn_output_check(b, br->c, 0);
    if (level < 0) return level;
    if (qos == 0 && level == CONN_OUT_SOFT) return BK_ERR_FULL;
    size_t tlen;
    int r = bridge_topic_out(br->cfg, msg_topic(m), m->topic_len, br->topic_buf, TOPIC_BUF, &tlen,
                             NULL);
    const char *topic = r == BRIDGE_CFG_OK ? br->topic_buf : msg_topic(m);
    if (r == BRIDGE_TOPIC_NO_MATCH) tlen = m->topic_len;
    if (r < 0) {
        log_msg(LL_WARNING, "Bridge %s: cannot map '%s' for the remote", br->cfg->name,
                log_esc(msg_topic(m)));
        return BK_OK;
    }
    /* retained: as published (a bridge is not a fresh subscriber) unless
     * bridge_outgoing_retain is false or the remote has no retained messages */
    bool ret = br->cfg->outgoing_retain && br->retain_ok && (retain || m->retain);
    if (qos == 2) hold_for_durable(br);
    /* [MQTT-3.2.2-11]: never above the remote's Maximum QoS; what goes at 0
     * is acknowledged here, a QoS 2 sent at 1 by its PUBACK (on_ack) */
    uint8_t wire = qos < br->max_qos ? qos : br->max_qos;
    size_t size = publish_size(br, m, wire, tlen);
    uint32_t max = br->cfg->max_packet_size;
    if (br->remote_max_packet && (!max || br->remote_max_packet < max)) max = br->remote_max_packet;
    if (max && size > max) return skip_too_big(br, m, qos, pid, size, max);
    mqtt_publish pp = {.dup = dup && wire, /* [MQTT-3.3.1-2] */
                       .qos = wire,
                       .retain = ret,
                       .topic = {(const uint8_t *)topic, (uint16_t)tlen},
                       .payload_len = m->payload_len};
    r = write_publish(br, m, &pp, pid);
    if (r != BK_OK) return r;
    if (wire == 0 && qos && ack_later(br, qos, pid) != BK_OK)
        return BK_ERR_NOMEM; /* sent; the session offers it again later */
    b->msgs_sent++;
    br->sent++;
    br->last_activity = b->now;
    return BK_OK;
}

static int out_ack(void *ctx, enum mqtt_type type, uint16_t pid)
{
    bridge *br = ctx;
    uint8_t buf[4];
    size_t n;
    if (!out_ready(br)) return BK_ERR_CLOSED;
    if (type == MQTT_PUBREL && br->mute_pubrel) return BK_OK;
    hold_for_durable(br);
    if (mqtt_encode_ack(buf, sizeof buf, type, pid, &n) != MQTT_OK) return BK_ERR_ENCODE;
    return br_send(br, buf, n);
}

static const session_outbox bridge_outbox = {out_ready, out_publish, out_ack};

/* ---- attempts: resolve, connect --------------------------------------------------- */

static void attempt_failed(bridge *br, const char *why)
{
    log_msg(LL_NOTICE, "Bridge %s: connection to %s:%u failed: %s", br->cfg->name, host_of(br),
            br->cfg->addrs[br->addr].port, why);
    schedule_retry(br);
}

static void connect_to(bridge *br, const struct sockaddr *sa, socklen_t salen)
{
    char err[256];
    conn *c;
    if (conn_connect(br->b, &br->lst, sa, salen, br->tls ? br->tls[br->addr] : NULL, &c, err,
                     sizeof err) != BK_OK) {
        attempt_failed(br, err);
        return;
    }
    *(bridge **)c->ud = br;
    br->c = c;
    br->state = BR_CONNECTING;
    br->was_active = false;
    br->connect_sent = false;
    br->keepalive = br->cfg->keepalive_interval;
    br->retain_ok = true;
    br->max_qos = 2;
    log_msg(LL_INFO, "Bridge %s: connecting to %s:%u (%s)", br->cfg->name, host_of(br),
            br->cfg->addrs[br->addr].port, c->peer);
}

/* A numeric address is used at once; a name goes to the resolver thread. */
static void attempt(bridge *br)
{
    const bridge_addr *a = &br->cfg->addrs[br->addr];
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(a->port)};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(a->port)};
    if (inet_pton(AF_INET, a->host, &s4.sin_addr) == 1) {
        connect_to(br, (struct sockaddr *)&s4, sizeof s4);
        return;
    }
    if (inet_pton(AF_INET6, a->host, &s6.sin6_addr) == 1) {
        connect_to(br, (struct sockaddr *)&s6, sizeof s6);
        return;
    }
    snprintf(br->port, sizeof br->port, "%u", a->port);
    br->hints = (struct addrinfo){.ai_family = AF_UNSPEC,
                                  .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    br->gai = (struct gaicb){.ar_name = a->host, .ar_service = br->port, .ar_request = &br->hints};
    struct gaicb *list[1] = {&br->gai};
    int r = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (r != 0) {
        attempt_failed(br, gai_strerror(r));
        return;
    }
    br->gai_busy = true;
    br->state = BR_RESOLVING;
}

static void resolver_poll(bridge *br)
{
    int r = gai_error(&br->gai);
    if (r == EAI_INPROGRESS) return;
    br->gai_busy = false;
    if (r != 0) {
        char why[256];
        snprintf(why, sizeof why, "cannot resolve %s: %s", host_of(br), gai_strerror(r));
        attempt_failed(br, why);
        return;
    }
    br->ai = br->ai_cur = br->gai.ar_result;
    br->gai.ar_result = NULL;
    connect_to(br, br->ai->ai_addr, br->ai->ai_addrlen);
}

/* ---- back to the main address (round_robin false) ---------------------------------- */

static void resolver_cancel(struct gaicb *gai, bool *busy)
{
    if (!*busy) return;
    if (gai_cancel(gai) == EAI_NOTCANCELED) {
        const struct gaicb *list[1] = {gai};
        struct timespec ts = {RESOLVER_WAIT_SECONDS, 0};
        (void)gai_suspend(list, 1, &ts); /* best effort: the thread owns gai until done */
    }
    if (gai_error(gai) == 0 && gai->ar_result) freeaddrinfo(gai->ar_result);
    gai->ar_result = NULL;
    *busy = false;
}

/* Has our request finished (or none runs)? Then its result is freed.
 * Never blocks. */
static bool gai_settled(struct gaicb *gai, bool *busy)
{
    if (!*busy) return true;
    int r = gai_error(gai);
    if (r == EAI_INPROGRESS) return false;
    if (r == 0 && gai->ar_result) freeaddrinfo(gai->ar_result);
    gai->ar_result = NULL;
    *busy = false;
    return true;
}

/* End the probe in progress; next: when the next probe starts (0: none).
 * A name still being resolved is cancelled or, when it cannot be, its
 * result is dropped once it comes (probe_main). */
static void probe_stop(bridge *br, double next)
{
    if (br->probe_gai_busy) (void)gai_cancel(&br->probe_gai);
    (void)gai_settled(&br->probe_gai, &br->probe_gai_busy);
    if (br->probe_fd >= 0) close(br->probe_fd);
    if (br->probe_ai) freeaddrinfo(br->probe_ai);
    br->probe_ai = br->probe_ai_cur = NULL;
    br->probe_fd = -1;
    br->probe_at = next;
}

static void probe_connect(bridge *br, const struct sockaddr *sa, socklen_t salen);

/* The address probed does not accept: the name's next address at once,
 * else the next probe in PROBE_INTERVAL_SECONDS. */
static void probe_failed(bridge *br, const char *why)
{
    const bridge_addr *a = &br->cfg->addrs[0];
    log_msg(LL_DEBUG, "Bridge %s: the main address %s:%u does not accept yet (%s)", br->cfg->name,
            a->host, a->port, why);
    if (br->probe_ai_cur && br->probe_ai_cur->ai_next) {
        if (br->probe_fd >= 0) close(br->probe_fd);
        br->probe_fd = -1;
        br->probe_ai_cur = br->probe_ai_cur->ai_next;
        probe_connect(br, br->probe_ai_cur->ai_addr, br->probe_ai_cur->ai_addrlen);
        return;
    }
    probe_stop(br, br->b->now + PROBE_INTERVAL_SECONDS);
}

/* The main address accepts: leave the backup cleanly (its state topic
 * set to "0" by hand, as the DISCONNECT suppresses the will) and connect
 * to the main address at once. In-flight and queued messages stay in the
 * session and go out again after the next CONNACK. */
static void leave_backup(bridge *br)
{
    const bridge_cfg *cfg = br->cfg;
    uint8_t buf[2];
    size_t n;
    probe_stop(br, 0);
    log_msg(LL_NOTICE,
            "Bridge %s: the main address %s:%u accepts connections again; leaving %s:%u for it",
            cfg->name, cfg->addrs[0].host, cfg->addrs[0].port, host_of(br),
            cfg->addrs[br->addr].port);
    notify_remote(br, false);
    if (mqtt_encode_empty(buf, sizeof buf, MQTT_DISCONNECT, &n) == MQTT_OK)
        (void)br_send(br, buf, n);
    br->retry_now = true; /* schedule_retry: the main address, no delay */
    conn_close(br->b, br->c, "leaving the backup address for the main one");
}

static void probe_connect(bridge *br, const struct sockaddr *sa, socklen_t salen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        probe_failed(br, strerror(errno));
        return;
    }
    br->probe_fd = fd;
    br->probe_deadline = br->b->now + br->b->cfg->handshake_timeout;
    if (connect(fd, sa, salen) == 0)
        leave_backup(br);
    else if (errno != EINPROGRESS)
        probe_failed(br, strerror(errno));
}

/* A numeric address into ss; false for a name. */
static bool numeric_addr(const bridge_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, a->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        *len = sizeof *s4;
        return true;
    }
    if (inet_pton(AF_INET6, a->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        *len = sizeof *s6;
        return true;
    }
    return false;
}

static void probe_start(bridge *br)
{
    const bridge_addr *a = &br->cfg->addrs[0];
    struct sockaddr_storage ss;
    socklen_t len;
    if (numeric_addr(a, &ss, &len)) {
        probe_connect(br, (struct sockaddr *)&ss, len);
        return;
    }
    snprintf(br->probe_port, sizeof br->probe_port, "%u", a->port);
    br->probe_hints = (struct addrinfo){.ai_family = AF_UNSPEC,
                                        .ai_socktype = SOCK_STREAM,
                                        .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    br->probe_gai = (struct gaicb){
        .ar_name = a->host, .ar_service = br->probe_port, .ar_request = &br->probe_hints};
    struct gaicb *list[1] = {&br->probe_gai};
    int r = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (r != 0) {
        probe_failed(br, gai_strerror(r));
        return;
    }
    br->probe_gai_busy = true;
}

/* Each tick while connected to a backup address: start a probe when due,
 * follow the resolver and the connect in progress; never blocks. */
static void probe_main(bridge *br)
{
    if (br->state != BR_ACTIVE || br->cfg->round_robin || br->addr == 0 || !br->probe_at) {
        (void)gai_settled(&br->probe_gai, &br->probe_gai_busy); /* a stopped probe's result */
        return;
    }
    if (br->probe_gai_busy) {
        int r = gai_error(&br->probe_gai);
        if (r == EAI_INPROGRESS) return;
        br->probe_gai_busy = false;
        if (r != 0) {
            probe_failed(br, gai_strerror(r));
            return;
        }
        br->probe_ai = br->probe_ai_cur = br->probe_gai.ar_result; /* each in turn */
        br->probe_gai.ar_result = NULL;
        probe_connect(br, br->probe_ai->ai_addr, br->probe_ai->ai_addrlen);
        return;
    }
    if (br->probe_fd < 0) {
        if (br->b->now >= br->probe_at) probe_start(br);
        return;
    }
    struct pollfd pfd = {.fd = br->probe_fd, .events = POLLOUT};
    if (poll(&pfd, 1, 0) <= 0) {
        if (br->b->now >= br->probe_deadline)
            probe_failed(br, "no answer within handshake_timeout");
        return;
    }
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(br->probe_fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) err = errno;
    if (err)
        probe_failed(br, strerror(err));
    else
        leave_backup(br);
}

/* A queue-drop episode: logged once when it starts and once when it ends. */
static void watch_drops(bridge *br)
{
    session *s = br->s;
    if (s->dropped > br->drops_seen) {
        if (!br->dropping)
            log_msg(LL_WARNING,
                    "Bridge %s: queue full (%u messages, %llu bytes queued; limits "
                    "%s %u, bridge_max_queued_bytes %llu), dropping QoS 1/2 messages for the "
                    "remote",
                    br->cfg->name, s->queue.count, (unsigned long long)s->queued_bytes,
                    s->own_max_queued ? "bridge_max_queued_messages" : "max_queued_messages",
                    s->own_max_queued ? s->own_max_queued : s->reg->limits.max_queued,
                    (unsigned long long)s->own_max_bytes);
        br->dropping = true;
        br->drops_seen = s->dropped;
    } else if (br->dropping && s->queue.count == 0) {
        log_msg(LL_NOTICE, "Bridge %s: queue drained; %llu messages dropped in all so far",
                br->cfg->name, (unsigned long long)s->dropped);
        br->dropping = false;
    }
}

void bridges_tick(broker *b)
{
    if (b->bridges_retired) reap_retired(b);
    for (size_t i = 0; i < b->nbridges; i++) {
        bridge *br = b->bridges[i];
        watch_drops(br);
        if (br->nskipped) ack_skipped(br);
        probe_main(br);
        if (br->state == BR_WAIT && b->now >= br->next_try)
            attempt(br);
        else if (br->state == BR_RESOLVING)
            resolver_poll(br);
        else if (br->state == BR_IDLE && br->cfg->start_type == BRIDGE_START_LAZY &&
                 br->s->queue.count + br->s->inflight_live >= br->cfg->threshold)
            attempt(br);
    }
}

/* ---- start, $SYS, free ------------------------------------------------------------ */

static int setup_tls(bridge *br, char *err, size_t errlen)
{
    const bridge_cfg *cfg = br->cfg;
    if (!cfg->cafile && !cfg->capath && !cfg->certfile) return BK_OK;
    br->tls = calloc(cfg->naddrs, sizeof *br->tls);
    if (!br->tls) return BK_ERR_NOMEM;
    for (size_t i = 0; i < cfg->naddrs; i++) {
        tls_client_opts o = {.cafile = cfg->cafile,
                             .capath = cfg->capath,
                             .certfile = cfg->certfile,
                             .keyfile = cfg->keyfile,
                             .ciphers = cfg->ciphers,
                             .tls_version = cfg->tls_version,
                             .keylog_file = cfg->keylog_file,
                             .server_name = cfg->addrs[i].host,
                             .insecure = cfg->insecure};
        char terr[512];
        if (tls_client_setup(&br->tls[i], &o, terr, sizeof terr) != TLS_OK) {
            snprintf(err, errlen, "connection %s: %s", cfg->name, terr);
            return BK_ERR_CONFIG;
        }
    }
    return BK_OK;
}

/* The local side: a session under local_clientid (kept when it exists and
 * local_cleansession is false, e.g. restored by persistence), subscribed to
 * the local filter of every out/both topic. */
static int setup_session(bridge *br)
{
    const bridge_cfg *cfg = br->cfg;
    broker *b = br->b;
    size_t idlen = strlen(cfg->local_clientid);
    session *s = session_find(&b->sessions, cfg->local_clientid, idlen);
    if (s && cfg->local_cleansession) session_destroy(s);
    if (!s || cfg->local_cleansession)
        s = session_create(&b->sessions, cfg->local_clientid, idlen, cfg->local_cleansession);
    if (!s) return BK_ERR_NOMEM;
    s->no_local = true;
    s->pinned = true;
    /* durable like a client's persistent session (persistence on, not clean) */
    s->expiry_interval = s->clean ? 0 : UINT32_MAX;
    persist_session_attached(b, s);
    s->own_max_queued = cfg->max_queued_messages;
    s->own_max_bytes = cfg->max_queued_bytes;
    br->s = s;
    for (size_t i = 0; i < cfg->ntopics; i++) {
        const bridge_topic *t = &cfg->topics[i];
        sub_rec *rec;
        if (!(t->dir & BRIDGE_OUT)) continue;
        if (session_subscribe(s, b->root, t->local_filter, strlen(t->local_filter), t->qos, &rec) !=
            BK_OK)
            return BK_ERR_NOMEM;
    }
    return BK_OK;
}

static void bridge_release(bridge *br)
{
    free_resolved(br);
    for (size_t j = 0; br->tls && j < br->own.naddrs; j++)
        tls_client_free(br->tls[j]);
    free(br->tls);
    free(br->topic_buf);
    free(br->skipped);
    bridge_cfg_free(&br->own);
    free(br);
}

/* A bridge for cfg, which it takes over (cfg is left empty), with its TLS
 * contexts; not running yet (bridge_launch). NULL with err on failure. */
static bridge *bridge_new(broker *b, bridge_cfg *cfg, char *err, size_t errlen)
{
    bridge *br = calloc(1, sizeof *br);
    if (!br || !(br->topic_buf = malloc(TOPIC_BUF))) {
        snprintf(err, errlen, "connection %s: out of memory", cfg->name);
        free(br);
        return NULL;
    }
    br->own = *cfg;
    memset(cfg, 0, sizeof *cfg);
    cfg = &br->own;
    br->b = b;
    br->cfg = cfg;
    br->lcfg = (listener_cfg){.port = cfg->addrs[0].port, .max_connections = -1};
    br->lst = (listener){
        .fd = -1, .cfg = &br->lcfg, .handler = &bridge_conn_handler, .limits = &b->out_limits};
    br->private_ok = cfg->try_private;
    br->v5 = cfg->protocol_version == 5;
    br->keepalive = cfg->keepalive_interval;
    br->retain_ok = true;
    br->max_qos = 2;
    br->probe_fd = -1;
    /* the retry jitter only needs to differ between brokers and bridges */
    if (rng_bytes(&br->rng, sizeof br->rng) != 0)
        br->rng = (uint64_t)(uintptr_t)br ^ (uint64_t)time(NULL);
    br->rng |= 1;
    if (setup_tls(br, err, errlen) != BK_OK) {
        bridge_release(br);
        return NULL;
    }
    return br;
}

/* The local session and the first attempt (automatic/once). */
static int bridge_launch(bridge *br, char *err, size_t errlen)
{
    const bridge_cfg *cfg = br->cfg;
    broker *b = br->b;
    if (setup_session(br) != BK_OK) {
        snprintf(err, errlen, "connection %s: out of memory", cfg->name);
        return BK_ERR_NOMEM;
    }
    notify_local(br, false);
    br->state = cfg->start_type == BRIDGE_START_LAZY ? BR_IDLE : BR_WAIT;
    br->next_try = b->now;
    log_msg(LL_NOTICE, "Bridge %s: %zu topic line%s, local client id %s, start_type %s", cfg->name,
            cfg->ntopics, cfg->ntopics == 1 ? "" : "s", cfg->local_clientid,
            cfg->start_type == BRIDGE_START_LAZY   ? "lazy"
            : cfg->start_type == BRIDGE_START_ONCE ? "once"
                                                   : "automatic");
    return BK_OK;
}

int bridges_start(broker *b, char *err, size_t errlen)
{
    config *c = b->cfg;
    if (!c->nbridges) return BK_OK;
    b->bridges = calloc(c->nbridges, sizeof *b->bridges);
    if (!b->bridges) {
        snprintf(err, errlen, "out of memory for %zu bridges", c->nbridges);
        return BK_ERR_NOMEM;
    }
    for (size_t i = 0; i < c->nbridges; i++) {
        bridge *br = bridge_new(b, &c->bridges[i], err, errlen);
        if (!br) return BK_ERR_CONFIG;
        b->bridges[b->nbridges++] = br;
        if (bridge_launch(br, err, errlen) != BK_OK) return BK_ERR_NOMEM;
    }
    return BK_OK;
}

/* ---- SIGHUP ------------------------------------------------------------------------ */

/* Stop br for good: a clean DISCONNECT (its state topic set to "0" on both
 * sides first), the resolver cancelled. The local session keeps its queue
 * when keep_session (a changed bridge with the same local_clientid takes
 * it over; its out filters are removed, the new ones come with the new
 * configuration); otherwise it ends with what it held. br is retired:
 * freed by reap_retired once its connection is gone. */
static void bridge_stop(bridge *br, bool keep_session, const char *why)
{
    broker *b = br->b;
    uint8_t buf[2];
    size_t n;
    probe_stop(br, 0);
    if (br->gai_busy) (void)gai_cancel(&br->gai);
    if (br->c && br->state == BR_ACTIVE) {
        notify_remote(br, false);
        if (mqtt_encode_empty(buf, sizeof buf, MQTT_DISCONNECT, &n) == MQTT_OK)
            (void)br_send(br, buf, n);
    }
    if (br->state == BR_ACTIVE) session_detach(br->s);
    notify_local(br, false);
    session *s = br->s;
    s->pinned = false;
    if (keep_session) {
        for (size_t i = 0; i < br->cfg->ntopics; i++)
            if (br->cfg->topics[i].dir & BRIDGE_OUT)
                (void)session_unsubscribe(s, br->cfg->topics[i].local_filter,
                                          strlen(br->cfg->topics[i].local_filter));
    } else {
        uint64_t held = (uint64_t)s->queue.count + s->inflight_live;
        if (held)
            log_msg(LL_NOTICE, "Bridge %s: %llu queued message%s for the remote dropped with it",
                    br->cfg->name, (unsigned long long)held, held == 1 ? "" : "s");
        session_destroy(s);
    }
    br->s = NULL;
    br->retired = true;
    br->state = BR_IDLE;
    log_msg(LL_NOTICE, "Bridge %s: %s", br->cfg->name, why);
    if (br->c) conn_close(b, br->c, "%s", why);
    br->next_retired = b->bridges_retired;
    b->bridges_retired = br;
}

/* Free the retired bridges whose connection and resolver requests are gone. */
static void reap_retired(broker *b)
{
    for (bridge **pp = &b->bridges_retired; *pp;) {
        bridge *br = *pp;
        bool main_idle = gai_settled(&br->gai, &br->gai_busy); /* both polled, every turn */
        bool probe_idle = gai_settled(&br->probe_gai, &br->probe_gai_busy);
        bool idle = main_idle && probe_idle;
        if (idle && !br->c) {
            *pp = br->next_retired;
            bridge_release(br);
        } else {
            pp = &br->next_retired;
        }
    }
}

static bridge *find_bridge(bridge **list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcmp(list[i]->cfg->name, name) == 0) return list[i];
    return NULL;
}

/* The bridges of nw: unchanged ones stay as they run, new and changed
 * ones are made (TLS contexts loaded) before anything is stopped, so a
 * failure keeps the running bridges. fresh[j]: next[j] is new. */
static bool reload_prepare(broker *b, config *nw, bridge **next, bool *fresh)
{
    char err[1024];
    for (size_t j = 0; j < nw->nbridges; j++) {
        bridge *old = find_bridge(b->bridges, b->nbridges, nw->bridges[j].name);
        if (old && bridge_cfg_same(old->cfg, &nw->bridges[j])) {
            next[j] = old;
            continue;
        }
        fresh[j] = true;
        if (!(next[j] = bridge_new(b, &nw->bridges[j], err, sizeof err))) {
            log_msg(LL_ERROR, "SIGHUP: %s; the running bridges are kept as they are", err);
            for (size_t k = 0; k < j; k++)
                if (fresh[k]) bridge_release(next[k]);
            return false;
        }
    }
    return true;
}

void bridges_reload(broker *b, config *nw, void (*evict)(broker *b, session *s, const char *why))
{
    size_t n = nw->nbridges, stopped = 0, restarted = 0, added = 0;
    if (!n && !b->nbridges) return;
    bridge **next = calloc(n ? n : 1, sizeof *next);
    bool *fresh = calloc(n ? n : 1, sizeof *fresh);
    if (!next || !fresh || !reload_prepare(b, nw, next, fresh)) {
        if (!next || !fresh) log_msg(LL_ERROR, "SIGHUP: out of memory; the bridges are kept");
        free(next);
        free(fresh);
        return;
    }
    for (size_t i = 0; i < b->nbridges; i++) {
        bridge *old = b->bridges[i];
        if (find_bridge(next, n, old->cfg->name) == old) continue; /* unchanged */
        bridge *nb = find_bridge(next, n, old->cfg->name);
        bool same_id = nb && strcmp(nb->cfg->local_clientid, old->cfg->local_clientid) == 0;
        bridge_stop(old, same_id,
                    nb ? "configuration changed (SIGHUP): restarting with the new settings"
                       : "removed from the configuration (SIGHUP): stopped");
        nb ? restarted++ : stopped++;
    }
    char err[256];
    for (size_t j = 0; j < n; j++) {
        if (!fresh[j]) continue;
        const char *id = next[j]->cfg->local_clientid;
        session *s = session_find(&b->sessions, id, strlen(id));
        if (s && !s->pinned && s->out) { /* a client's: a stopped bridge's was released */
            log_msg(LL_NOTICE, "Bridge %s: local client id %s taken over from a client",
                    next[j]->cfg->name, log_esc(id));
            evict(b, s, "taken over by a bridge added by SIGHUP");
        }
        if (bridge_launch(next[j], err, sizeof err) != BK_OK) { /* no session: not kept */
            log_msg(LL_ERROR, "SIGHUP: %s; connection %s not started", err, next[j]->cfg->name);
            bridge_release(next[j]);
            next[j] = NULL;
            continue;
        }
        added++;
    }
    size_t kept = 0;
    for (size_t j = 0; j < n; j++)
        if (next[j]) next[kept++] = next[j];
    n = kept;
    free(b->bridges);
    b->bridges = next;
    b->nbridges = n;
    free(fresh);
    log_msg(LL_NOTICE, "SIGHUP: bridges: %zu unchanged, %zu restarted, %zu added, %zu removed",
            n - added, restarted, added - restarted, stopped);
}

static void sys_one(broker *b, const char *name, const char *what, uint64_t v)
{
    char topic[512], val[32];
    int tl = snprintf(topic, sizeof topic, "$SYS/broker/bridge/%s/%s", name, what);
    if (tl <= 0 || (size_t)tl >= sizeof topic) return;
    snprintf(val, sizeof val, "%llu", (unsigned long long)v);
    msg *m =
        msg_new((const uint8_t *)topic, (uint16_t)tl, (const uint8_t *)val, strlen(val), 0, true);
    if (!m) return;
    uint64_t rx = b->msgs_received;
    router_publish(b, NULL, m);
    b->msgs_received = rx; /* $SYS is not traffic */
    msg_unref(m);
}

void bridges_publish_sys(broker *b)
{
    for (size_t i = 0; i < b->nbridges; i++) {
        bridge *br = b->bridges[i];
        const char *n = br->cfg->name;
        sys_one(b, n, "connected", br->state == BR_ACTIVE);
        sys_one(b, n, "connects", br->connects);
        sys_one(b, n, "messages/sent", br->sent);
        sys_one(b, n, "messages/received", br->received);
        sys_one(b, n, "messages/queued", (uint64_t)br->s->queue.count + br->s->inflight_live);
        sys_one(b, n, "messages/dropped", br->s->dropped);
        sys_one(b, n, "messages/too_big", br->too_big);
    }
}

static void bridge_free_now(bridge *br)
{
    resolver_cancel(&br->gai, &br->gai_busy);
    resolver_cancel(&br->probe_gai, &br->probe_gai_busy);
    probe_stop(br, 0);
    if (br->s) br->s->pinned = false;
    bridge_release(br);
}

void bridges_free(broker *b)
{
    for (size_t i = 0; i < b->nbridges; i++)
        bridge_free_now(b->bridges[i]);
    while (b->bridges_retired) {
        bridge *br = b->bridges_retired;
        b->bridges_retired = br->next_retired;
        bridge_free_now(br);
    }
    free(b->bridges);
    b->bridges = NULL;
    b->nbridges = 0;
}
