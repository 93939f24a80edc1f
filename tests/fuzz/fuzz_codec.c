/*
 * fuzz_codec.c -- libFuzzer target for the MQTT codec (mqtt/).
 *
 * The input is a byte stream as a client would send it. Every packet that
 * mqtt_frame finds is handed to the decoder of its type; a packet that
 * decodes is encoded again, framed and decoded a second time, and the two
 * decoded forms must agree field by field (the round trip). The same bytes
 * are also given, as a hand-built header of every type, to every decoder, so
 * each decoder sees arbitrary bodies and not only well-framed ones. The
 * topic helpers are run on every decoded topic and filter. The MQTT 5
 * decoders get the same hand-built headers, and every property block they
 * accept is walked with the property iterators.
 * A disagreement calls abort(), which libFuzzer reports as a crash.
 */
#include "mqtt/mqtt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: round trip broken: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Largest packet we re-encode: a body is at most the input's size. */
#define FUZZ_OUT_CAP(n) ((n) + 64)

static bool str_eq(mqtt_str a, mqtt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Frame exactly one packet from buf[0..len) and check it is all of it. */
static void reframe(const uint8_t *buf, size_t len, mqtt_header *h)
{
    size_t plen = 0;
    int rc = mqtt_frame(buf, len, 0, h, &plen);
    FUZZ_ASSERT(rc == MQTT_OK);
    FUZZ_ASSERT(plen == len);
}

static void topic_checks(mqtt_str filter, mqtt_str topic)
{
    if (mqtt_topic_filter_validate(filter.ptr, filter.len) != MQTT_OK) return;
    if (mqtt_topic_name_validate(topic.ptr, topic.len) != MQTT_OK) return;
    bool m = mqtt_topic_matches(filter.ptr, filter.len, topic.ptr, topic.len);
    /* a topic name is a filter matching exactly itself */
    FUZZ_ASSERT(mqtt_topic_matches(topic.ptr, topic.len, topic.ptr, topic.len));
    if (filter.len == 1 && filter.ptr[0] == '#') FUZZ_ASSERT(m == (topic.ptr[0] != '$'));
}

static void trip_connect(const mqtt_connect *c, uint8_t *out, size_t cap)
{
    size_t n = 0;
    FUZZ_ASSERT(mqtt_encode_connect(out, cap, c, &n) == MQTT_OK);
    mqtt_header h;
    reframe(out, n, &h);
    mqtt_connect d;
    FUZZ_ASSERT(mqtt_decode_connect(&h, &d) == MQTT_OK);
    FUZZ_ASSERT(str_eq(d.protocol_name, c->protocol_name));
    FUZZ_ASSERT(d.protocol_level == c->protocol_level && d.clean_session == c->clean_session);
    FUZZ_ASSERT(d.will_flag == c->will_flag && d.will_qos == c->will_qos);
    FUZZ_ASSERT(d.will_retain == c->will_retain && d.keepalive == c->keepalive);
    FUZZ_ASSERT(d.username_flag == c->username_flag && d.password_flag == c->password_flag);
    FUZZ_ASSERT(str_eq(d.client_id, c->client_id) && str_eq(d.username, c->username));
    FUZZ_ASSERT(str_eq(d.password, c->password) && str_eq(d.will_topic, c->will_topic));
    FUZZ_ASSERT(str_eq(d.will_payload, c->will_payload));
    if (c->will_flag) topic_checks(c->will_topic, c->will_topic);
}

static void trip_publish(const mqtt_publish *p, uint8_t *out, size_t cap)
{
    size_t n = 0, hn = 0;
    FUZZ_ASSERT(mqtt_encode_publish(out, cap, p, &n) == MQTT_OK);
    mqtt_header h;
    reframe(out, n, &h);
    mqtt_publish d;
    FUZZ_ASSERT(mqtt_decode_publish(&h, &d) == MQTT_OK);
    /* the decoder reports DUP on QoS 0 (the broker refuses it), the
     * encoders clear it [MQTT-3.3.1-2] */
    FUZZ_ASSERT(d.dup == (p->dup && p->qos > 0) && d.qos == p->qos && d.retain == p->retain);
    FUZZ_ASSERT(str_eq(d.topic, p->topic) && d.packet_id == p->packet_id);
    FUZZ_ASSERT(d.payload_len == p->payload_len);
    FUZZ_ASSERT(d.payload_len == 0 || memcmp(d.payload, p->payload, d.payload_len) == 0);
    /* the header-only encoder plus the payload gives the same bytes */
    uint8_t hdr[9 + 65535];
    FUZZ_ASSERT(mqtt_encode_publish_header(hdr, sizeof hdr, p->qos, p->dup, p->retain, p->topic.ptr,
                                           p->topic.len, p->packet_id, p->payload_len,
                                           &hn) == MQTT_OK);
    FUZZ_ASSERT(hn == mqtt_publish_header_size(p->qos, p->topic.len, p->payload_len));
    FUZZ_ASSERT(hn <= MQTT_PUBLISH_HEADER_MAX(p->topic.len));
    FUZZ_ASSERT(hn + p->payload_len == n && memcmp(hdr, out, hn) == 0);
}

/* SUBSCRIBE (qos != NULL) or UNSUBSCRIBE: collect, re-encode, compare. */
static void trip_sublist(mqtt_sublist it, bool sub, const mqtt_str *topic, uint8_t *out, size_t cap)
{
    mqtt_str *f = calloc(it.count ? it.count : 1, sizeof *f);
    uint8_t *q = calloc(it.count ? it.count : 1, 1);
    FUZZ_ASSERT(f && q);
    unsigned n = 0;
    while (mqtt_sublist_next(&it, &f[n], &q[n])) {
        FUZZ_ASSERT(n < it.count);
        FUZZ_ASSERT(mqtt_topic_filter_validate(f[n].ptr, f[n].len) == MQTT_OK);
        if (topic) topic_checks(f[n], *topic);
        n++;
    }
    FUZZ_ASSERT(n == it.count && n > 0);
    size_t w = 0;
    int rc = sub ? mqtt_encode_subscribe(out, cap, it.packet_id, f, q, n, &w)
                 : mqtt_encode_unsubscribe(out, cap, it.packet_id, f, n, &w);
    FUZZ_ASSERT(rc == MQTT_OK);
    mqtt_header h;
    reframe(out, w, &h);
    mqtt_sublist d;
    rc = sub ? mqtt_decode_subscribe(&h, &d) : mqtt_decode_unsubscribe(&h, &d);
    FUZZ_ASSERT(rc == MQTT_OK && d.count == n && d.packet_id == it.packet_id);
    mqtt_str g;
    uint8_t gq = 0;
    for (unsigned i = 0; i < n; i++) {
        FUZZ_ASSERT(mqtt_sublist_next(&d, &g, &gq));
        FUZZ_ASSERT(str_eq(g, f[i]) && (!sub || gq == q[i]));
    }
    FUZZ_ASSERT(!mqtt_sublist_next(&d, &g, &gq));
    free(f);
    free(q);
}

static void trip_small(const mqtt_header *h, uint8_t *out, size_t cap)
{
    size_t n = 0;
    mqtt_header r;
    if (h->type == MQTT_CONNACK) {
        mqtt_connack a, b;
        if (mqtt_decode_connack(h, &a) != MQTT_OK) return;
        FUZZ_ASSERT(mqtt_encode_connack(out, cap, a.session_present, a.return_code, &n) == 0);
        reframe(out, n, &r);
        FUZZ_ASSERT(mqtt_decode_connack(&r, &b) == MQTT_OK);
        /* the decoder tolerates Session Present with a refusal, the encoder
         * clears it [MQTT-3.2.2-4] */
        FUZZ_ASSERT(b.session_present == (a.session_present && a.return_code == 0));
        FUZZ_ASSERT(a.return_code == b.return_code);
        (void)mqtt_connack_string(a.return_code);
    } else if (h->type == MQTT_SUBACK) {
        mqtt_suback a, b;
        if (mqtt_decode_suback(h, &a) != MQTT_OK) return;
        FUZZ_ASSERT(mqtt_encode_suback(out, cap, a.packet_id, a.codes, a.count, &n) == 0);
        reframe(out, n, &r);
        FUZZ_ASSERT(mqtt_decode_suback(&r, &b) == MQTT_OK);
        FUZZ_ASSERT(a.packet_id == b.packet_id && a.count == b.count);
        FUZZ_ASSERT(memcmp(a.codes, b.codes, a.count) == 0);
    } else if (h->type >= MQTT_PUBACK && h->type <= MQTT_PUBCOMP) {
        uint16_t a, b;
        if (mqtt_decode_ack(h, &a) != MQTT_OK) return;
        FUZZ_ASSERT(a != 0);
        FUZZ_ASSERT(mqtt_encode_ack(out, cap, h->type, a, &n) == MQTT_OK);
        reframe(out, n, &r);
        FUZZ_ASSERT(mqtt_decode_ack(&r, &b) == MQTT_OK && a == b);
    } else if (h->type == MQTT_UNSUBACK) {
        uint16_t a, b;
        if (mqtt_decode_ack(h, &a) != MQTT_OK) return;
        FUZZ_ASSERT(mqtt_encode_ack(out, cap, MQTT_UNSUBACK, a, &n) == MQTT_OK);
        reframe(out, n, &r);
        FUZZ_ASSERT(mqtt_decode_ack(&r, &b) == MQTT_OK && a == b);
    } else if (h->type == MQTT_PINGREQ || h->type == MQTT_PINGRESP || h->type == MQTT_DISCONNECT) {
        if (mqtt_decode_empty(h) != MQTT_OK) return;
        FUZZ_ASSERT(mqtt_encode_empty(out, cap, h->type, &n) == MQTT_OK && n == 2);
        reframe(out, n, &r);
        FUZZ_ASSERT(r.type == h->type && mqtt_decode_empty(&r) == MQTT_OK);
    }
}

/* Decode one framed packet of any type; round trip the ones that decode. */
static void one_packet(const mqtt_header *h, mqtt_str *last_topic, uint8_t *out, size_t cap)
{
    int rc;
    (void)mqtt_type_name(h->type);
    if (h->type == MQTT_CONNECT) {
        mqtt_connect c;
        rc = mqtt_decode_connect(h, &c);
        if (rc == MQTT_OK) trip_connect(&c, out, cap);
    } else if (h->type == MQTT_PUBLISH) {
        mqtt_publish p;
        rc = mqtt_decode_publish(h, &p);
        if (rc == MQTT_OK) {
            trip_publish(&p, out, cap);
            *last_topic = p.topic;
        }
    } else if (h->type == MQTT_SUBSCRIBE || h->type == MQTT_UNSUBSCRIBE) {
        bool sub = h->type == MQTT_SUBSCRIBE;
        mqtt_sublist l;
        rc = sub ? mqtt_decode_subscribe(h, &l) : mqtt_decode_unsubscribe(h, &l);
        if (rc == MQTT_OK) trip_sublist(l, sub, last_topic->len ? last_topic : NULL, out, cap);
    } else {
        trip_small(h, out, cap);
        rc = MQTT_OK;
    }
    FUZZ_ASSERT(mqtt_strerror(rc) != NULL);
}

/* Walk a property block a decoder accepted: the iterators must stay inside
 * it and see exactly the counts the decoder reported. */
static void walk_props(const mqtt_props *pr)
{
    mqtt_prop_iter it;
    mqtt_prop one;
    mqtt_str name, value;
    uint32_t id;
    unsigned users = 0, sub_ids = 0;
    mqtt_prop_iter_init(&it, &pr->raw);
    while (mqtt_prop_next(&it, &one))
        FUZZ_ASSERT(mqtt_prop_type_of(one.id) == one.type && mqtt_props_has(pr, one.id));
    mqtt_prop_iter_init(&it, &pr->raw);
    while (mqtt_prop_next_user(&it, &name, &value))
        users++;
    mqtt_prop_iter_init(&it, &pr->raw);
    while (mqtt_prop_next_sub_id(&it, &id))
        sub_ids++;
    FUZZ_ASSERT(users == pr->user_count && sub_ids == pr->sub_id_count);
}

/* The MQTT 5 decoders (and a property block at every place) on the same
 * body and header. */
static void every_decoder5(const mqtt_header *h)
{
    mqtt5_connect c;
    mqtt5_connack ca;
    mqtt5_publish p;
    mqtt5_ack a;
    mqtt5_sublist l;
    mqtt5_suback sa;
    mqtt_str f;
    uint8_t q;
    if (mqtt5_decode_connect(h, &c) == MQTT_OK && c.c.protocol_level == 5) {
        walk_props(&c.props);
        if (c.c.will_flag) walk_props(&c.will_props);
    }
    if (mqtt5_decode_connack(h, &ca) == MQTT_OK) walk_props(&ca.props);
    if (mqtt5_decode_publish(h, &p) == MQTT_OK) walk_props(&p.props);
    if (mqtt5_decode_ack(h, &a) == MQTT_OK) walk_props(&a.props);
    if (mqtt5_decode_subscribe(h, &l) == MQTT_OK) {
        walk_props(&l.props);
        while (mqtt_sublist_next(&l.list, &f, &q))
            (void)mqtt5_subopts_parse(q);
    }
    if (mqtt5_decode_unsubscribe(h, &l) == MQTT_OK) {
        walk_props(&l.props);
        while (mqtt_sublist_next(&l.list, &f, &q))
            ;
    }
    if (mqtt5_decode_suback(h, &sa) == MQTT_OK) walk_props(&sa.props);
    if (h->type == 0 && h->flags == 0) { /* once per body */
        for (int where = MQTT_CONNECT; where <= MQTT_PROPS_WILL; where++) {
            mqtt_props pr;
            size_t used = 0;
            if (mqtt_props_decode(h->body, h->remaining, where, &pr, &used) == MQTT_OK) {
                FUZZ_ASSERT(used <= h->remaining);
                walk_props(&pr);
            }
        }
    }
}

/* Every decoder on the same body, with a hand-built header of every type. */
static void every_decoder(const uint8_t *body, size_t len)
{
    if (len > MQTT_MAX_REMAINING_LENGTH) return;
    for (uint8_t t = 0; t < 16; t++) {
        for (uint8_t flags = 0; flags < 16; flags += (t == MQTT_PUBLISH ? 1 : 2)) {
            mqtt_header h = {.type = t, .flags = flags, .remaining = (uint32_t)len, .body = body};
            mqtt_connect c;
            mqtt_connack ca;
            mqtt_publish p;
            mqtt_sublist l;
            mqtt_suback sa;
            uint16_t id;
            mqtt_str f;
            uint8_t q;
            (void)mqtt_decode_connect(&h, &c);
            (void)mqtt_decode_connack(&h, &ca);
            (void)mqtt_decode_publish(&h, &p);
            (void)mqtt_decode_ack(&h, &id);
            if (mqtt_decode_subscribe(&h, &l) == MQTT_OK)
                while (mqtt_sublist_next(&l, &f, &q))
                    ;
            if (mqtt_decode_unsubscribe(&h, &l) == MQTT_OK)
                while (mqtt_sublist_next(&l, &f, &q))
                    ;
            (void)mqtt_decode_suback(&h, &sa);
            (void)mqtt_decode_empty(&h);
            every_decoder5(&h);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cap = FUZZ_OUT_CAP(size) + 65536;
    uint8_t *out = malloc(cap);
    if (!out) return 0;
    /* the stream: packet after packet, as a connection would see it; the
     * first byte also picks the configured maximum packet size */
    size_t max_packet = size && (data[0] & 1) ? 64 + data[0] : 0;
    mqtt_str last_topic = {0};
    size_t off = 0;
    while (off < size) {
        mqtt_header h;
        size_t plen = 0;
        int rc = mqtt_frame(data + off, size - off, max_packet, &h, &plen);
        if (rc != MQTT_OK) {
            FUZZ_ASSERT(rc == MQTT_NEED_MORE || rc < 0);
            if (rc == MQTT_NEED_MORE && plen) FUZZ_ASSERT(plen > size - off);
            break;
        }
        FUZZ_ASSERT(plen >= 2 && plen <= size - off && h.remaining <= plen);
        FUZZ_ASSERT(h.body == data + off + (plen - h.remaining));
        if (max_packet) FUZZ_ASSERT(plen <= max_packet);
        one_packet(&h, &last_topic, out, cap);
        off += plen;
    }
    uint32_t v;
    size_t used;
    uint8_t vb[4];
    if (mqtt_varint_decode(data, size, &v, &used) == MQTT_OK) {
        int n = mqtt_varint_encode(v, vb);
        FUZZ_ASSERT(n > 0 && n == mqtt_varint_size(v) && (size_t)n <= used);
    }
    (void)mqtt_utf8_validate(data, size);
    if (size > 0) every_decoder(data + 1, size - 1);
    free(out);
    return 0;
}
