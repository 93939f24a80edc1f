/* Unit tests for the protocol layer (broker/protocol.c) over a fake
 * transport: each fake client is a conn whose socket is one end of a
 * socketpair. Bytes are fed straight into the connection's handler (no
 * event loop); what the broker writes is read back from the other end.
 * CONNECT/CONNACK (refusals from a table), SUBSCRIBE/SUBACK, PUBLISH routing
 * between two clients at QoS 0/1/2, retained messages, wills, takeover, and
 * a malformed packet closing only its own client. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/backlog.h"
#include "broker/bbuf.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/conn.h"
#include "broker/protocol.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/tree.h"
#include "mqtt/mqtt.h"

static broker B;
static listener L;
static conn_limits LIM;

typedef struct {
    conn *c;
    int peer; /* the client's end of the socketpair */
    uint8_t rx[65536];
    size_t rxlen;
} fake;

static fake F[3];

/* ---- fixture ---------------------------------------------------------------------- */
static void setup(void)
{
    char path[] = "/tmp/secbroker-test-protocol-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    dprintf(fd, "allow_anonymous true\nlog_dest none\n");
    close(fd);
    char err[256];
    memset(&B, 0, sizeof B);
    B.cfg = config_load(path, err, sizeof err);
    unlink(path);
    ck_assert_msg(B.cfg != NULL, "%s", err);
    B.epfd = -1;
    B.now = 1000;
    B.root = tree_new_root();
    session_registry_init(&B.sessions,
                          (session_limits){.max_inflight = B.cfg->max_inflight_messages,
                                           .max_queued = B.cfg->max_queued_messages});
    dict_init(&B.auth_fails);
    memset(&L, 0, sizeof L);
    L.cfg = &B.cfg->listeners[0];
    L.handler = &proto_conn_handler;
    LIM = (conn_limits){B.cfg->max_output_buffer, B.cfg->output_buffer_hard_limit,
                        B.cfg->output_buffer_soft_seconds, B.cfg->max_packet_size};
    L.limits = &LIM;
    memset(F, 0, sizeof F);
}

/* Free what conn_close marked, as the event loop does before it sleeps. */
static void reap(void)
{
    conn_flush_all(&B);
    for (int i = 0; i < 3; i++)
        if (F[i].c && F[i].c->state == CS_CLOSING) F[i].c = NULL; /* freed below */
    conn_free_closed(&B);
    conn_flush_all(&B); /* wills published by the closes */
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++)
        if (F[i].c) conn_close(&B, F[i].c, "test over");
    reap();
    for (int i = 0; i < 3; i++)
        if (F[i].peer > 0) close(F[i].peer);
    shared_free(&B);
    session_registry_free(&B.sessions);
    tree_free(B.root);
    free(B.match_sessions);
    dict_free(&B.auth_fails);
    config_free(B.cfg);
}

/* ---- the fake transport ------------------------------------------------------------- */
static fake *open_client(int i)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    conn *c = calloc(1, sizeof *c + L.handler->ud_size);
    ck_assert_ptr_nonnull(c);
    c->ud = c + 1; /* as conn_accept does */
    c->fd = sv[0];
    c->listener = &L;
    c->h = L.handler;
    c->state = CS_OPEN;
    snprintf(c->peer, sizeof c->peer, "fake:%d", i);
    ck_assert_int_eq(c->h->on_accept(&B, c), BK_OK);
    c->next = B.conns;
    if (B.conns) B.conns->prev = c;
    B.conns = c;
    B.nconns++;
    L.nconns++;
    F[i].c = c;
    F[i].peer = sv[1];
    return &F[i];
}

/* Feed bytes to the connection's handler; returns what it consumed. */
static size_t feed(fake *f, const uint8_t *p, size_t n)
{
    return f->c->h->on_data(f->c, p, n);
}

/* Everything the broker wrote to f so far (after the loop's flush). */
static void drain(fake *f)
{
    conn_flush_all(&B);
    for (;;) {
        ssize_t n = recv(f->peer, f->rx + f->rxlen, sizeof f->rx - f->rxlen, MSG_DONTWAIT);
        if (n <= 0) return;
        f->rxlen += (size_t)n;
    }
}

/* Next packet the broker sent to f; false when there is none. The body
 * stays valid until the next call. */
static uint8_t last_pkt[65536];
static bool next_packet(fake *f, mqtt_header *h)
{
    drain(f);
    size_t plen;
    if (mqtt_frame(f->rx, f->rxlen, 0, h, &plen) != MQTT_OK) return false;
    memcpy(last_pkt, f->rx, plen);
    h->body = last_pkt + (h->body - f->rx);
    memmove(f->rx, f->rx + plen, f->rxlen - plen);
    f->rxlen -= plen;
    return true;
}

static mqtt_str str(const char *s)
{
    return (mqtt_str){(const uint8_t *)s, (uint16_t)strlen(s)};
}

static size_t enc_connect(uint8_t *buf, const char *id, bool clean, const char *will)
{
    mqtt_connect ck;
    memset(&ck, 0, sizeof ck);
    ck.protocol_name = str("MQTT");
    ck.protocol_level = 4;
    ck.clean_session = clean;
    ck.keepalive = 30;
    ck.client_id = str(id);
    if (will) {
        ck.will_flag = true;
        ck.will_topic = str(will);
        ck.will_payload = str("gone");
    }
    size_t n;
    ck_assert_int_eq(mqtt_encode_connect(buf, 512, &ck, &n), MQTT_OK);
    return n;
}

static void expect_connack(fake *f, uint8_t rc, bool sp)
{
    mqtt_header h;
    ck_assert(next_packet(f, &h));
    ck_assert_uint_eq(h.type, MQTT_CONNACK);
    mqtt_connack ca;
    ck_assert_int_eq(mqtt_decode_connack(&h, &ca), MQTT_OK);
    ck_assert_uint_eq(ca.return_code, rc);
    ck_assert_uint_eq(ca.session_present, sp);
}

static fake *connect_client(int i, const char *id, bool clean, const char *will)
{
    fake *f = open_client(i);
    uint8_t buf[512];
    size_t n = enc_connect(buf, id, clean, will);
    ck_assert_uint_eq(feed(f, buf, n), n);
    expect_connack(f, MQTT_CONNACK_ACCEPTED, false);
    return f;
}

static void subscribe(fake *f, uint16_t pid, const char *filter, uint8_t qos, uint8_t granted)
{
    uint8_t buf[512];
    size_t n;
    mqtt_str fs = str(filter);
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, pid, &fs, &qos, 1, &n), MQTT_OK);
    ck_assert_uint_eq(feed(f, buf, n), n);
    mqtt_header h;
    ck_assert(next_packet(f, &h));
    ck_assert_uint_eq(h.type, MQTT_SUBACK);
    mqtt_suback sa;
    ck_assert_int_eq(mqtt_decode_suback(&h, &sa), MQTT_OK);
    ck_assert_uint_eq(sa.packet_id, pid);
    ck_assert_uint_eq(sa.count, 1);
    ck_assert_uint_eq(sa.codes[0], granted);
}

static void publish(fake *f, const char *topic, const char *payload, uint8_t qos, uint16_t pid,
                    bool retain, bool dup)
{
    uint8_t buf[1024];
    size_t n;
    mqtt_publish p = {.dup = dup,
                      .qos = qos,
                      .retain = retain,
                      .topic = str(topic),
                      .packet_id = pid,
                      .payload = (const uint8_t *)payload,
                      .payload_len = strlen(payload)};
    ck_assert_int_eq(mqtt_encode_publish(buf, sizeof buf, &p, &n), MQTT_OK);
    ck_assert_uint_eq(feed(f, buf, n), n);
}

static void send_ack(fake *f, enum mqtt_type t, uint16_t pid)
{
    uint8_t buf[4];
    size_t n;
    ck_assert_int_eq(mqtt_encode_ack(buf, sizeof buf, t, pid, &n), MQTT_OK);
    ck_assert_uint_eq(feed(f, buf, n), n);
}

static void expect_ack(fake *f, enum mqtt_type t, uint16_t pid)
{
    mqtt_header h;
    ck_assert(next_packet(f, &h));
    ck_assert_uint_eq(h.type, t);
    uint16_t got;
    ck_assert_int_eq(mqtt_decode_ack(&h, &got), MQTT_OK);
    ck_assert_uint_eq(got, pid);
}

static mqtt_publish expect_publish(fake *f, const char *topic, const char *payload, uint8_t qos)
{
    mqtt_header h;
    ck_assert(next_packet(f, &h));
    ck_assert_uint_eq(h.type, MQTT_PUBLISH);
    mqtt_publish p;
    ck_assert_int_eq(mqtt_decode_publish(&h, &p), MQTT_OK);
    ck_assert_uint_eq(p.topic.len, strlen(topic));
    ck_assert(memcmp(p.topic.ptr, topic, p.topic.len) == 0);
    ck_assert_uint_eq(p.payload_len, strlen(payload));
    ck_assert(memcmp(p.payload, payload, p.payload_len) == 0);
    ck_assert_uint_eq(p.qos, qos);
    return p;
}

static void expect_nothing(fake *f)
{
    mqtt_header h;
    ck_assert(!next_packet(f, &h));
}

static void expect_closed(fake *f, const char *reason_part)
{
    ck_assert_ptr_nonnull(f->c);
    ck_assert_int_eq(f->c->state, CS_CLOSING);
    ck_assert_ptr_nonnull(f->c->close_reason);
    ck_assert_msg(strstr(f->c->close_reason, reason_part), "reason '%s' lacks '%s'",
                  f->c->close_reason, reason_part);
}

/* ---- CONNECT ---------------------------------------------------------------------------- */
START_TEST(connect_accepted)
{
    fake *a = connect_client(0, "a", true, NULL);
    ck_assert_int_eq(((client *)a->c->ud)->state, CL_ACTIVE);
    ck_assert_uint_eq(proto_count_active(&B), 1);
    ck_assert_ptr_nonnull(session_find(&B.sessions, "a", 1));
    expect_nothing(a);
}
END_TEST

/* CONNECTs that are refused with a CONNACK code, then closed. */
static const struct {
    const char *name;
    const char *id;
    bool clean;
    uint8_t level; /* patched into the encoded packet */
    uint8_t rc;
    const char *reason;
} refusal_table[] = {
    {"protocol level 6", "x", true, 6, MQTT_CONNACK_PROTOCOL, "unsupported protocol level 6"},
    {"empty id without clean session", "", false, 4, MQTT_CONNACK_IDENTIFIER, "needs clean"},
    {"empty id on MQTT 3.1", "", true, 3, MQTT_CONNACK_IDENTIFIER, "MQTT 3.1 requires one"},
};

START_TEST(connect_refused)
{
    fake *f = open_client(0);
    uint8_t buf[512];
    size_t n = enc_connect(buf, refusal_table[_i].id, refusal_table[_i].clean, NULL);
    if (refusal_table[_i].level == 3) {
        /* MQTT 3.1: protocol name "MQIsdp", level 3 */
        mqtt_connect ck;
        memset(&ck, 0, sizeof ck);
        ck.protocol_name = str("MQIsdp");
        ck.protocol_level = 3;
        ck.clean_session = refusal_table[_i].clean;
        ck.keepalive = 30;
        ck.client_id = str(refusal_table[_i].id);
        ck_assert_int_eq(mqtt_encode_connect(buf, sizeof buf, &ck, &n), MQTT_OK);
    } else {
        buf[8] = refusal_table[_i].level; /* 0x10, len, 0 4 M Q T T, level */
    }
    feed(f, buf, n);
    expect_connack(f, refusal_table[_i].rc, false);
    expect_closed(f, refusal_table[_i].reason);
    ck_assert_uint_eq(proto_count_active(&B), 0);
}
END_TEST

START_TEST(first_packet_must_be_connect)
{
    fake *f = open_client(0);
    static const uint8_t ping[] = {0xC0, 0x00};
    feed(f, ping, sizeof ping);
    expect_closed(f, "not CONNECT [MQTT-3.1.0-1]");
    expect_nothing(f);
}
END_TEST

START_TEST(second_connect_closes)
{
    fake *a = connect_client(0, "a", true, NULL);
    uint8_t buf[512];
    size_t n = enc_connect(buf, "a", true, NULL);
    feed(a, buf, n);
    expect_closed(a, "second CONNECT");
}
END_TEST

START_TEST(takeover_and_session_present)
{
    fake *a = connect_client(0, "same", false, NULL);
    subscribe(a, 1, "t", 1, 1);
    fake *b = open_client(1);
    uint8_t buf[512];
    size_t n = enc_connect(buf, "same", false, NULL);
    feed(b, buf, n);
    expect_connack(b, MQTT_CONNACK_ACCEPTED, true); /* [MQTT-3.2.2-2] */
    expect_closed(a, "taken over");
    reap();
    /* the subscription came along */
    fake *c = connect_client(2, "pub", true, NULL);
    publish(c, "t", "hi", 1, 5, false, false);
    expect_ack(c, MQTT_PUBACK, 5);
    expect_publish(b, "t", "hi", 1);
}
END_TEST

/* ---- SUBSCRIBE, PUBLISH ---------------------------------------------------------------------- */
START_TEST(subscribe_suback_codes)
{
    fake *a = connect_client(0, "a", true, NULL);
    uint8_t buf[2048];
    size_t n;
    char deep[2 * TOPIC_MAX_LEVELS + 8] = "";
    for (int i = 0; i <= TOPIC_MAX_LEVELS; i++)
        strcat(deep, i ? "/a" : "a");
    mqtt_str fs[3] = {str("x/#"), str("y/+"), str(deep)};
    uint8_t qos[3] = {1, 2, 0};
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 42, fs, qos, 3, &n), MQTT_OK);
    ck_assert_uint_eq(feed(a, buf, n), n);
    mqtt_header h;
    ck_assert(next_packet(a, &h));
    ck_assert_uint_eq(h.type, MQTT_SUBACK);
    mqtt_suback sa;
    ck_assert_int_eq(mqtt_decode_suback(&h, &sa), MQTT_OK);
    ck_assert_uint_eq(sa.packet_id, 42);
    ck_assert_uint_eq(sa.count, 3);
    ck_assert_uint_eq(sa.codes[0], 1);
    ck_assert_uint_eq(sa.codes[1], 2);
    ck_assert_uint_eq(sa.codes[2], MQTT_SUBACK_FAILURE); /* deeper than TOPIC_MAX_LEVELS */
    ck_assert_uint_eq(((client *)a->c->ud)->session->nsubs, 2);
}
END_TEST

START_TEST(publish_routes_between_clients)
{
    fake *sub = connect_client(0, "sub", true, NULL);
    fake *pub = connect_client(1, "pub", true, NULL);
    subscribe(sub, 1, "t/#", 1, 1);
    /* QoS 1 in, QoS 1 out with the broker's own packet id */
    publish(pub, "t/x", "one", 1, 7, false, false);
    expect_ack(pub, MQTT_PUBACK, 7);
    mqtt_publish p = expect_publish(sub, "t/x", "one", 1);
    ck_assert(!p.retain && !p.dup);
    send_ack(sub, MQTT_PUBACK, p.packet_id);
    ck_assert_uint_eq(((client *)sub->c->ud)->session->inflight_live, 0);
    /* QoS 0 */
    publish(pub, "t/y", "zero", 0, 0, false, false);
    expect_nothing(pub);
    expect_publish(sub, "t/y", "zero", 0);
    /* QoS 2 in, downgraded to the subscription's QoS 1, exactly once */
    publish(pub, "t/z", "two", 2, 9, false, false);
    expect_ack(pub, MQTT_PUBREC, 9);
    publish(pub, "t/z", "two", 2, 9, false, true); /* resent before PUBREL */
    expect_ack(pub, MQTT_PUBREC, 9);
    send_ack(pub, MQTT_PUBREL, 9);
    expect_ack(pub, MQTT_PUBCOMP, 9);
    expect_publish(sub, "t/z", "two", 1);
    expect_nothing(sub);
    /* a topic nobody subscribed to goes nowhere */
    publish(pub, "other", "x", 0, 0, false, false);
    expect_nothing(sub);
    ck_assert_uint_eq(B.msgs_received, 4);
}
END_TEST

START_TEST(retained_after_suback)
{
    fake *pub = connect_client(0, "pub", true, NULL);
    publish(pub, "r/1", "kept", 0, 0, true, false);
    fake *sub = connect_client(1, "sub", true, NULL);
    subscribe(sub, 1, "r/+", 1, 1); /* SUBACK first [MQTT-3.3.1-6] */
    mqtt_publish p = expect_publish(sub, "r/1", "kept", 0);
    ck_assert(p.retain); /* [MQTT-3.3.1-8] */
}
END_TEST

START_TEST(partial_packet_waits)
{
    fake *sub = connect_client(0, "sub", true, NULL);
    fake *pub = connect_client(1, "pub", true, NULL);
    subscribe(sub, 1, "p", 0, 0);
    uint8_t buf[64];
    size_t n;
    mqtt_publish p = {
        .qos = 0, .topic = str("p"), .payload = (const uint8_t *)"abc", .payload_len = 3};
    ck_assert_int_eq(mqtt_encode_publish(buf, sizeof buf, &p, &n), MQTT_OK);
    ck_assert_uint_eq(feed(pub, buf, n - 2), 0); /* incomplete: nothing consumed */
    expect_nothing(sub);
    ck_assert_uint_eq(feed(pub, buf, n), n);
    expect_publish(sub, "p", "abc", 0);
}
END_TEST

/* ---- failures and wills ------------------------------------------------------------------------
 */
START_TEST(malformed_closes_only_that_client)
{
    fake *bad = connect_client(0, "bad", true, NULL);
    fake *good = connect_client(1, "good", true, NULL);
    static const uint8_t garbage[] = {0x00, 0x00}; /* packet type 0 is reserved */
    feed(bad, garbage, sizeof garbage);
    expect_closed(bad, "protocol error");
    ck_assert_int_eq(good->c->state, CS_OPEN);
    reap();
    /* the bad one's socket is closed; the good one still talks */
    char x;
    ck_assert_int_eq(recv(bad->peer, &x, 1, MSG_DONTWAIT), 0);
    static const uint8_t ping[] = {0xC0, 0x00};
    feed(good, ping, sizeof ping);
    mqtt_header h;
    ck_assert(next_packet(good, &h));
    ck_assert_uint_eq(h.type, MQTT_PINGRESP);
    ck_assert_uint_eq(proto_count_active(&B), 1);
}
END_TEST

START_TEST(will_on_error_not_on_disconnect)
{
    fake *watch = connect_client(0, "watch", true, NULL);
    subscribe(watch, 1, "will/#", 0, 0);
    fake *a = connect_client(1, "a", true, "will/a");
    fake *b = connect_client(2, "b", true, "will/b");
    static const uint8_t disconnect[] = {0xE0, 0x00};
    feed(b, disconnect, sizeof disconnect);
    expect_closed(b, "DISCONNECT");
    conn_close(&B, a->c, "socket error: test");
    reap();
    expect_publish(watch, "will/a", "gone", 0); /* [MQTT-3.1.2-8] */
    expect_nothing(watch);                      /* none for b [MQTT-3.14.4-3] */
}
END_TEST

/* ---- the output-buffer policy -----------------------------------------------------------------
 */
static void small_output_limits(void)
{
    B.cfg->max_output_buffer = 1000; /* for the log lines */
    LIM = (conn_limits){.soft = 1000, .hard = 4000, .soft_seconds = 60, .slack = 1000};
}

/* Unsent bytes in c's output buffer, as if the client stopped reading. */
static void stuff_output(conn *c, size_t n)
{
    static const uint8_t zeros[8192];
    ck_assert_int_eq(bbuf_append(&c->out, zeros, n), BK_OK);
}

START_TEST(output_soft_limit_drops_qos0_only)
{
    fake *sub = connect_client(0, "sub", true, NULL);
    fake *pub = connect_client(1, "pub", true, NULL);
    subscribe(sub, 1, "o", 1, 1);
    small_output_limits();
    stuff_output(sub->c, 1500); /* over the soft limit, under the hard one */
    client *cl = sub->c->ud;
    size_t before = bbuf_used(&sub->c->out);
    publish(pub, "o", "q0", 0, 0, false, false);
    ck_assert_uint_eq(cl->dropped_qos0, 1);
    ck_assert_uint_eq(bbuf_used(&sub->c->out), before);
    publish(pub, "o", "q1", 1, 3, false, false);
    ck_assert_uint_gt(bbuf_used(&sub->c->out), before); /* QoS 1 still goes out */
    ck_assert_uint_eq(cl->session->inflight_live, 1);
    ck_assert_int_eq(sub->c->state, CS_OPEN);
    ck_assert(sub->c->over_since > 0);
    sub->c->out.off = sub->c->out.len = 0; /* the fake client never reads it */
    expect_ack(pub, MQTT_PUBACK, 3);
}
END_TEST

/* A client whose output backs up (over 64 KiB buffered) is owed further
 * PUBLISHes as message references, not copies; once its buffer is written
 * out they are encoded in order (conn_handler.on_drain). */
START_TEST(owed_references_sent_in_order_after_drain)
{
    fake *sub = connect_client(0, "sub", true, NULL);
    fake *pub = connect_client(1, "pub", true, NULL);
    subscribe(sub, 1, "o", 1, 1);
    for (int i = 0; i < 9; i++)
        stuff_output(sub->c, 8192); /* 72 KiB the socket has not taken */
    client *cl = sub->c->ud;
    size_t before = bbuf_used(&sub->c->out);
    publish(pub, "o", "m1", 0, 0, false, false);
    publish(pub, "o", "m2", 1, 7, false, false);
    publish(pub, "o", "m3", 0, 0, false, false);
    expect_ack(pub, MQTT_PUBACK, 7);
    ck_assert_uint_eq(bbuf_used(&sub->c->out), before); /* no copies */
    ck_assert_ptr_nonnull(cl->owed);
    ck_assert_uint_eq(cl->owed->count, 3);
    ck_assert_uint_gt(sub->c->out_owed, 0);
    sub->c->out.off = sub->c->out.len = 0; /* the socket took the stuffing */
    conn_schedule_write(&B, sub->c);
    expect_publish(sub, "o", "m1", 0);
    mqtt_publish p = expect_publish(sub, "o", "m2", 1);
    expect_publish(sub, "o", "m3", 0);
    send_ack(sub, MQTT_PUBACK, p.packet_id);
    ck_assert_ptr_null(cl->owed);
    ck_assert_uint_eq(sub->c->out_owed, 0);
    ck_assert_uint_eq(cl->session->inflight_live, 0);
}
END_TEST

START_TEST(output_soft_seconds_then_closed)
{
    fake *sub = connect_client(0, "sub", true, NULL);
    small_output_limits();
    stuff_output(sub->c, 1500);
    ck_assert_int_eq(conn_output_check(&B, sub->c, 0), CONN_OUT_SOFT);
    B.now += 59;
    ck_assert_int_eq(conn_output_check(&B, sub->c, 0), CONN_OUT_SOFT);
    B.now += 2; /* over for more than output_buffer_soft_seconds */
    ck_assert_int_eq(conn_output_check(&B, sub->c, 0), BK_ERR_FULL);
    expect_closed(sub, "slow subscriber");
    sub->c->out.off = sub->c->out.len = 0;
}
END_TEST

START_TEST(output_back_under_soft_limit_resets)
{
    fake *sub = connect_client(0, "sub", true, NULL);
    small_output_limits();
    stuff_output(sub->c, 1500);
    ck_assert_int_eq(conn_output_check(&B, sub->c, 0), CONN_OUT_SOFT);
    sub->c->out.off = sub->c->out.len = 0; /* it read everything */
    ck_assert_int_eq(conn_output_check(&B, sub->c, 0), BK_OK);
    ck_assert(sub->c->over_since == 0);
    B.now += 100;
    stuff_output(sub->c, 1500);
    ck_assert_int_eq(conn_output_check(&B, sub->c, 0), CONN_OUT_SOFT); /* a new period */
    sub->c->out.off = sub->c->out.len = 0;
}
END_TEST

START_TEST(output_hard_limit_closes_at_once)
{
    fake *sub = connect_client(0, "sub", true, NULL);
    fake *pub = connect_client(1, "pub", true, NULL);
    subscribe(sub, 1, "o", 1, 1);
    small_output_limits();
    stuff_output(sub->c, 4001);
    publish(pub, "o", "x", 1, 4, false, false);
    expect_closed(sub, "output buffer over 4000 bytes: client does not read");
    ck_assert_int_eq(pub->c->state, CS_OPEN);
    sub->c->out.off = sub->c->out.len = 0;
}
END_TEST

/* ---- the policy's configuration keys
 * ------------------------------------------------------------- */
static config *load_conf(const char *text, char *err, size_t errlen)
{
    char path[] = "/tmp/secbroker-test-conf-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    dprintf(fd, "%s", text);
    close(fd);
    config *c = config_load(path, err, errlen);
    unlink(path);
    return c;
}

START_TEST(output_config_keys)
{
    char err[512];
    /* defaults: hard = 4 x max_output_buffer, 60 s */
    config *c = load_conf("allow_anonymous true\n", err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->max_output_buffer, 16 * 1024 * 1024);
    ck_assert_uint_eq(c->output_buffer_hard_limit, 4ULL * 16 * 1024 * 1024);
    ck_assert_uint_eq(c->output_buffer_soft_seconds, 60);
    config_free(c);
    /* max_output_buffer alone keeps its meaning: the hard limit follows it */
    c = load_conf("max_output_buffer 100000\n", err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->output_buffer_hard_limit, 400000);
    config_free(c);
    c = load_conf("max_output_buffer 100000\noutput_buffer_hard_limit 150000\n"
                  "output_buffer_soft_seconds 5\n",
                  err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->output_buffer_hard_limit, 150000);
    ck_assert_uint_eq(c->output_buffer_soft_seconds, 5);
    config_free(c);
    c = load_conf("max_output_buffer 100000\noutput_buffer_hard_limit 70000\n", err, sizeof err);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, "output_buffer_hard_limit 70000 is below max_output_buffer"));
    c = load_conf("output_buffer_soft_seconds 0\n", err, sizeof err);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, ":1: output_buffer_soft_seconds: 0 is out of range"));
}
END_TEST

/* ---- shared subscriptions --------------------------------------------------------------- */
static uint16_t expect_pid(fake *f, const char *topic, const char *payload)
{
    return expect_publish(f, topic, payload, 1).packet_id;
}

START_TEST(shared_round_robin_skips_full_and_redelivers)
{
    /* window 1, queue 1 per session: a member that does not ack is full after two */
    B.sessions.limits = (session_limits){.max_inflight = 1, .max_queued = 1};
    fake *a = connect_client(0, "a", true, NULL);
    fake *b = connect_client(1, "b", true, NULL);
    fake *pub = connect_client(2, "pub", true, NULL);
    subscribe(a, 1, "$share/g/s/#", 1, 1); /* 3.1.1 clients too, as Mosquitto */
    subscribe(b, 1, "$share/g/s/#", 1, 1);
    publish(pub, "s/1", "1", 1, 1, false, false);
    publish(pub, "s/2", "2", 1, 2, false, false);
    /* round robin: one each, in turn */
    uint16_t a1 = expect_pid(a, "s/1", "1");
    uint16_t b1 = expect_pid(b, "s/2", "2");
    expect_nothing(a);
    send_ack(b, MQTT_PUBACK, b1);
    publish(pub, "s/3", "3", 1, 3, false, false); /* a's turn: queued behind a1 */
    publish(pub, "s/4", "4", 1, 4, false, false); /* b */
    publish(pub, "s/5", "5", 1, 5, false, false); /* a is full (1 in flight, 1 queued): b */
    expect_nothing(a);
    send_ack(b, MQTT_PUBACK, expect_pid(b, "s/4", "4"));
    uint16_t b5 = expect_pid(b, "s/5", "5");
    ck_assert_uint_eq(shared_delivered(&B), 5);
    (void)a1;
    /* a goes away (clean session): its unacknowledged s/1 and queued s/3 go
     * to b (whose queue may now hold them) */
    B.sessions.limits.max_queued = 10;
    conn_close(&B, a->c, "test: member leaves");
    reap();
    send_ack(b, MQTT_PUBACK, b5);
    send_ack(b, MQTT_PUBACK, expect_pid(b, "s/1", "1"));
    send_ack(b, MQTT_PUBACK, expect_pid(b, "s/3", "3"));
    expect_nothing(b);
    ck_assert(shared_is_member(&B, ((client *)b->c->ud)->session));
}
END_TEST

int main(void)
{
    Suite *su = suite_create("protocol");
    TCase *tc = tcase_create("protocol");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, connect_accepted);
    tcase_add_loop_test(tc, connect_refused, 0, sizeof refusal_table / sizeof refusal_table[0]);
    tcase_add_test(tc, first_packet_must_be_connect);
    tcase_add_test(tc, second_connect_closes);
    tcase_add_test(tc, takeover_and_session_present);
    tcase_add_test(tc, subscribe_suback_codes);
    tcase_add_test(tc, publish_routes_between_clients);
    tcase_add_test(tc, retained_after_suback);
    tcase_add_test(tc, partial_packet_waits);
    tcase_add_test(tc, malformed_closes_only_that_client);
    tcase_add_test(tc, will_on_error_not_on_disconnect);
    tcase_add_test(tc, output_soft_limit_drops_qos0_only);
    tcase_add_test(tc, owed_references_sent_in_order_after_drain);
    tcase_add_test(tc, output_soft_seconds_then_closed);
    tcase_add_test(tc, output_back_under_soft_limit_resets);
    tcase_add_test(tc, output_hard_limit_closes_at_once);
    tcase_add_test(tc, output_config_keys);
    tcase_add_test(tc, shared_round_robin_skips_full_and_redelivers);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
