/*
 * test_mqtt_codec.c -- framing, remaining length, decoding and encoding of
 * every MQTT 3.1.1 packet type.
 *
 * Malformed-input rows cite the spec rule they prove next to the row.
 * Packets in the tables are hand-written: a fixed-header byte and a body;
 * the test prepends the remaining length so each row's bytes are exactly
 * what is written (truncation and trailing bytes are expressed in the body).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt.h"

#define BODY(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
#define NOBODY NULL, 0

/* Common fragments of hand-written bodies. */
#define MQTT4 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04
#define AB 0x00, 0x03, 'a', '/', 'b'

/* ---- helpers ------------------------------------------------------------ */

/* byte0 + varint(n) + body into out; returns the packet size. */
static size_t build(uint8_t *out, uint8_t byte0, const uint8_t *body, size_t n)
{
    uint8_t len[4];
    int k = mqtt_varint_encode((uint32_t)n, len);
    ck_assert_int_gt(k, 0);
    out[0] = byte0;
    memcpy(out + 1, len, (size_t)k);
    if (n) memcpy(out + 1 + k, body, n);
    return 1 + (size_t)k + n;
}

/* Frame a complete packet: must be exactly n bytes. Returns mqtt_frame's rc. */
static int frame_exact(const uint8_t *buf, size_t n, mqtt_header *h)
{
    size_t plen = 12345;
    int rc = mqtt_frame(buf, n, 0, h, &plen);
    if (rc == MQTT_OK) ck_assert_uint_eq(plen, n);
    return rc;
}

/* Decode with the decoder for h->type, discarding the result. */
static int decode_any(const mqtt_header *h)
{
    mqtt_connect c;
    mqtt_connack ca;
    mqtt_publish p;
    mqtt_sublist sl;
    mqtt_suback sa;
    uint16_t id;
    switch (h->type) {
    case MQTT_CONNECT:
        return mqtt_decode_connect(h, &c);
    case MQTT_CONNACK:
        return mqtt_decode_connack(h, &ca);
    case MQTT_PUBLISH:
        return mqtt_decode_publish(h, &p);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        return mqtt_decode_ack(h, &id);
    case MQTT_SUBSCRIBE:
        return mqtt_decode_subscribe(h, &sl);
    case MQTT_UNSUBSCRIBE:
        return mqtt_decode_unsubscribe(h, &sl);
    case MQTT_SUBACK:
        return mqtt_decode_suback(h, &sa);
    default:
        return mqtt_decode_empty(h);
    }
}

static mqtt_str S(const char *s)
{
    mqtt_str r = {(const uint8_t *)s, (uint16_t)strlen(s)};
    return r;
}

static bool str_eq(mqtt_str a, const char *b)
{
    return a.len == strlen(b) && (a.len == 0 || memcmp(a.ptr, b, a.len) == 0);
}

/* ---- remaining length --------------------------------------------------- */

static const struct {
    uint32_t value;
    uint8_t bytes[4];
    int n;
} varints[] = {
    {0, {0x00}, 1},
    {127, {0x7f}, 1},
    {128, {0x80, 0x01}, 2},
    {16383, {0xff, 0x7f}, 2},
    {16384, {0x80, 0x80, 0x01}, 3},
    {2097151, {0xff, 0xff, 0x7f}, 3},
    {2097152, {0x80, 0x80, 0x80, 0x01}, 4},
    {268435455, {0xff, 0xff, 0xff, 0x7f}, 4},
};

START_TEST(varint_boundaries)
{
    uint8_t out[4];
    memset(out, 0xee, sizeof out);
    int n = mqtt_varint_encode(varints[_i].value, out);
    ck_assert_int_eq(n, varints[_i].n);
    ck_assert_int_eq(mqtt_varint_size(varints[_i].value), varints[_i].n);
    ck_assert_mem_eq(out, varints[_i].bytes, (size_t)n);

    uint32_t v = 0xdeadbeef;
    size_t used = 0;
    ck_assert_int_eq(mqtt_varint_decode(varints[_i].bytes, (size_t)n, &v, &used), MQTT_OK);
    ck_assert_uint_eq(v, varints[_i].value);
    ck_assert_uint_eq(used, (size_t)n);
    /* Every proper prefix is incomplete, not an error. */
    for (int k = 0; k < n; k++)
        ck_assert_int_eq(mqtt_varint_decode(varints[_i].bytes, (size_t)k, &v, &used),
                         MQTT_NEED_MORE);
}
END_TEST

START_TEST(varint_out_of_range)
{
    uint8_t out[4] = {0xee, 0xee, 0xee, 0xee};
    /* 268435456 needs a 5th byte (spec 2.2.3): the encoder refuses, writes nothing. */
    ck_assert_int_eq(mqtt_varint_encode(268435456u, out), 0);
    ck_assert_int_eq(mqtt_varint_size(268435456u), 0);
    ck_assert_int_eq(mqtt_varint_encode(UINT32_MAX, out), 0);
    ck_assert_uint_eq(out[0], 0xee);

    uint32_t v;
    size_t used;
    /* Five bytes (spec 2.2.3: at most four). */
    const uint8_t five[] = {0xff, 0xff, 0xff, 0xff, 0x7f};
    ck_assert_int_eq(mqtt_varint_decode(five, 5, &v, &used), MQTT_ERR_REMAINING_LENGTH);
    /* The 4th byte announcing a 5th is enough to know (spec 2.2.3). */
    ck_assert_int_eq(mqtt_varint_decode(five, 4, &v, &used), MQTT_ERR_REMAINING_LENGTH);
    ck_assert_int_eq(mqtt_varint_decode(five, 3, &v, &used), MQTT_NEED_MORE);
    ck_assert_int_eq(mqtt_varint_decode(five, 0, &v, &used), MQTT_NEED_MORE);
}
END_TEST

START_TEST(varint_non_minimal_accepted)
{
    /* Design choice (see frame.c): 3.1.1 has no rule against padding. */
    uint32_t v = 1;
    size_t used = 0;
    const uint8_t zero2[] = {0x80, 0x00};
    ck_assert_int_eq(mqtt_varint_decode(zero2, 2, &v, &used), MQTT_OK);
    ck_assert_uint_eq(v, 0);
    ck_assert_uint_eq(used, 2);
    const uint8_t one4[] = {0x81, 0x80, 0x80, 0x00};
    ck_assert_int_eq(mqtt_varint_decode(one4, 4, &v, &used), MQTT_OK);
    ck_assert_uint_eq(v, 1);
    ck_assert_uint_eq(used, 4);
}
END_TEST

/* ---- framing ------------------------------------------------------------ */

/* Independent statement of table 2.2 for the exhaustive test below. */
static int expected_header_rc(int type, int flags)
{
    if (type == 0 || type == 15) return MQTT_ERR_TYPE; /* spec 2.2.1: reserved */
    if (type == MQTT_PUBLISH)
        return ((flags >> 1) & 3) == 3 ? MQTT_ERR_QOS : MQTT_OK; /* [MQTT-3.3.1-4] */
    if (type == MQTT_PUBREL || type == MQTT_SUBSCRIBE || type == MQTT_UNSUBSCRIBE)
        return flags == 2 ? MQTT_OK
                          : MQTT_ERR_FLAGS; /* [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1] */
    return flags == 0 ? MQTT_OK : MQTT_ERR_FLAGS; /* [MQTT-2.2.2-2] */
}

START_TEST(frame_every_first_byte)
{
    /* All 256 first bytes; with remaining length 0 and with only the first
     * byte present (type and flags are judged before the length arrives). */
    int type = _i >> 4, flags = _i & 0xf;
    uint8_t buf[2] = {(uint8_t)_i, 0x00};
    mqtt_header h;
    size_t plen;
    int want = expected_header_rc(type, flags);
    ck_assert_int_eq(mqtt_frame(buf, 2, 0, &h, &plen), want);
    ck_assert_int_eq(mqtt_frame(buf, 1, 0, &h, &plen), want == MQTT_OK ? MQTT_NEED_MORE : want);
    if (want == MQTT_OK) {
        ck_assert_int_eq(mqtt_frame(buf, 2, 0, &h, &plen), MQTT_OK);
        ck_assert_uint_eq(h.type, (unsigned)type);
        ck_assert_uint_eq(h.flags, (unsigned)flags);
        ck_assert_uint_eq(h.remaining, 0);
        ck_assert_ptr_eq(h.body, buf + 2);
        ck_assert_uint_eq(plen, 2);
    }
}
END_TEST

START_TEST(frame_need_more)
{
    mqtt_header h;
    size_t plen = 99;
    ck_assert_int_eq(mqtt_frame(NULL, 0, 0, &h, &plen), MQTT_NEED_MORE);
    ck_assert_uint_eq(plen, 0);
    /* Length not known yet: packet_len stays 0. */
    const uint8_t partial[] = {0x30, 0x80};
    ck_assert_int_eq(mqtt_frame(partial, 2, 0, &h, &plen), MQTT_NEED_MORE);
    ck_assert_uint_eq(plen, 0);
    /* Length known, body missing: packet_len tells the caller what to expect. */
    const uint8_t known[] = {0x30, 0x80, 0x01, 0x00};
    ck_assert_int_eq(mqtt_frame(known, 4, 0, &h, &plen), MQTT_NEED_MORE);
    ck_assert_uint_eq(plen, 3 + 128);
}
END_TEST

START_TEST(frame_five_byte_length)
{
    /* spec 2.2.3: the remaining length is at most four bytes. Detected with
     * exactly the five length bytes present and before any body. */
    const uint8_t five[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x7f};
    mqtt_header h;
    size_t plen;
    ck_assert_int_eq(mqtt_frame(five, 6, 0, &h, &plen), MQTT_ERR_REMAINING_LENGTH);
    ck_assert_int_eq(mqtt_frame(five, 5, 0, &h, &plen), MQTT_ERR_REMAINING_LENGTH);
    ck_assert_int_eq(mqtt_frame(five, 4, 0, &h, &plen), MQTT_NEED_MORE);
}
END_TEST

START_TEST(frame_oversize_before_body)
{
    mqtt_header h;
    size_t plen;
    /* PUBLISH announcing 2097151 bytes, only the header has arrived. */
    const uint8_t big[] = {0x30, 0xff, 0xff, 0x7f};
    ck_assert_int_eq(mqtt_frame(big, 4, 1024, &h, &plen), MQTT_ERR_TOO_LARGE);
    ck_assert_int_eq(mqtt_frame(big, 4, 0, &h, &plen), MQTT_NEED_MORE);
    ck_assert_uint_eq(plen, 4 + 2097151);
    /* The largest legal packet with no configured limit: still NEED_MORE. */
    const uint8_t max[] = {0x30, 0xff, 0xff, 0xff, 0x7f};
    ck_assert_int_eq(mqtt_frame(max, 5, 0, &h, &plen), MQTT_NEED_MORE);
    ck_assert_uint_eq(plen, 5 + 268435455u);
    /* Bad first byte wins over size: reported as soon as byte 0 arrives. */
    const uint8_t bad[] = {0x36, 0xff, 0xff, 0x7f};
    ck_assert_int_eq(mqtt_frame(bad, 4, 16, &h, &plen), MQTT_ERR_QOS);

    /* The limit counts the whole packet, header included: exactly at the
     * limit is fine, one byte over is refused. */
    uint8_t buf[16] = {0x40, 0x02, 0x00, 0x01};
    ck_assert_int_eq(mqtt_frame(buf, 4, 4, &h, &plen), MQTT_OK);
    ck_assert_int_eq(mqtt_frame(buf, 4, 3, &h, &plen), MQTT_ERR_TOO_LARGE);
    ck_assert_int_eq(mqtt_frame(buf, 2, 3, &h, &plen), MQTT_ERR_TOO_LARGE);
}
END_TEST

START_TEST(frame_first_of_two)
{
    uint8_t buf[8] = {0xc0, 0x00, 0x40, 0x02, 0x00, 0x07};
    mqtt_header h;
    size_t plen;
    ck_assert_int_eq(mqtt_frame(buf, 6, 0, &h, &plen), MQTT_OK);
    ck_assert_uint_eq(plen, 2);
    ck_assert_uint_eq(h.type, MQTT_PINGREQ);
    ck_assert_int_eq(mqtt_frame(buf + 2, 4, 0, &h, &plen), MQTT_OK);
    ck_assert_uint_eq(plen, 4);
    uint16_t id = 0;
    ck_assert_int_eq(mqtt_decode_ack(&h, &id), MQTT_OK);
    ck_assert_uint_eq(id, 7);
}
END_TEST

/* Valid packets of every type, made by the encoders, in several sizes:
 * encode sample `which` into buf with capacity cap. */
enum { SAMPLES = 10 };

static int encode_sample(int which, uint8_t *buf, size_t cap, size_t *n)
{
    static uint8_t payload[20000];
    int rc = MQTT_ERR_ARG;
    mqtt_str filters[2] = {S("a/+"), S("#")};
    const uint8_t qos[2] = {1, 2}, codes[2] = {0, 0x80};
    mqtt_connect c;
    mqtt_publish p;
    memset(&c, 0, sizeof c);
    memset(&p, 0, sizeof p);
    switch (which) {
    case 0:
        c.protocol_level = 4;
        c.clean_session = true;
        c.keepalive = 30;
        c.client_id = S("dev1");
        c.will_flag = true;
        c.will_qos = 1;
        c.will_topic = S("w/t");
        c.will_payload = S("bye");
        c.username_flag = c.password_flag = true;
        c.username = S("u");
        c.password = S("p");
        rc = mqtt_encode_connect(buf, cap, &c, n);
        break;
    case 1:
        rc = mqtt_encode_connack(buf, cap, true, 0, n);
        break;
    case 2:
        p.qos = 1;
        p.packet_id = 9;
        p.topic = S("s/t");
        p.payload = payload;
        p.payload_len = 10;
        rc = mqtt_encode_publish(buf, cap, &p, n);
        break;
    case 3: /* 2-byte remaining length */
        p.topic = S("s/t");
        p.payload = payload;
        p.payload_len = 300;
        rc = mqtt_encode_publish(buf, cap, &p, n);
        break;
    case 4: /* 3-byte remaining length */
        p.qos = 2;
        p.packet_id = 65535;
        p.topic = S("big");
        p.payload = payload;
        p.payload_len = sizeof payload;
        rc = mqtt_encode_publish(buf, cap, &p, n);
        break;
    case 5:
        rc = mqtt_encode_ack(buf, cap, MQTT_PUBREL, 3, n);
        break;
    case 6:
        rc = mqtt_encode_subscribe(buf, cap, 4, filters, qos, 2, n);
        break;
    case 7:
        rc = mqtt_encode_unsubscribe(buf, cap, 5, filters, 2, n);
        break;
    case 8:
        rc = mqtt_encode_suback(buf, cap, 6, codes, 2, n);
        break;
    case 9:
        rc = mqtt_encode_empty(buf, cap, MQTT_DISCONNECT, n);
        break;
    }
    return rc;
}

static size_t make_sample(int which, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    ck_assert_int_eq(encode_sample(which, buf, cap, &n), MQTT_OK);
    return n;
}

START_TEST(frame_every_truncation)
{
    /* Every proper prefix of a valid packet is NEED_MORE, never an error;
     * the whole packet frames and decodes. */
    static uint8_t buf[20100];
    size_t n = make_sample(_i, buf, sizeof buf);
    mqtt_header h;
    size_t plen;
    for (size_t k = 0; k < n; k++) {
        int rc = mqtt_frame(buf, k, 0, &h, &plen);
        if (rc != MQTT_NEED_MORE) ck_abort_msg("sample %d prefix %zu of %zu: rc %d", _i, k, n, rc);
    }
    ck_assert_int_eq(mqtt_frame(buf, n, 0, &h, &plen), MQTT_OK);
    ck_assert_uint_eq(plen, n);
    ck_assert_int_eq(decode_any(&h), MQTT_OK);
}
END_TEST

/* ---- hand-written packets: valid and malformed -------------------------- */

static const struct pkt_case {
    const char *name;
    uint8_t byte0;
    const uint8_t *body;
    size_t n;
    int expect;
} packets[] = {
    /* CONNECT */
    {"connect minimal", 0x10, BODY(MQTT4, 0x02, 0x00, 0x3c, 0x00, 0x00), MQTT_OK},
    {"connect full (binary password)", 0x10,
     BODY(MQTT4, 0xee, 0x00, 0x0a, 0x00, 0x02, 'c', '1', AB, 0x00, 0x02, 'h', 'i', 0x00, 0x01, 'u',
          0x00, 0x03, 0x00, 0xff, 0xc0),
     MQTT_OK},
    {"connect MQIsdp level 3", 0x10,
     BODY(0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03, 0x02, 0x00, 0x3c, 0x00, 0x01, 'x'),
     MQTT_OK},
    {"connect client id multibyte", 0x10, BODY(MQTT4, 0x02, 0, 0, 0x00, 0x02, 0xc3, 0xa9), MQTT_OK},
    {"connect will payload binary", 0x10, BODY(MQTT4, 0x06, 0, 0, 0, 0, AB, 0x00, 0x01, 0x00),
     MQTT_OK},
    /* [MQTT-2.2.2-2] CONNECT flags nibble must be 0 */
    {"connect fixed flags 1", 0x11, BODY(MQTT4, 0x02, 0, 0, 0, 0), MQTT_ERR_FLAGS},
    /* [MQTT-3.1.2-1] wrong protocol name */
    {"connect name MQTX", 0x10, BODY(0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 0, 0, 0),
     MQTT_ERR_PROTOCOL_NAME},
    /* [MQTT-3.1.2-1] the name is case sensitive */
    {"connect name mqtt", 0x10, BODY(0, 4, 'm', 'q', 't', 't', 4, 2, 0, 0, 0, 0),
     MQTT_ERR_PROTOCOL_NAME},
    /* [MQTT-3.1.2-1] */
    {"connect name empty", 0x10, BODY(0, 0, 4, 2, 0, 0, 0, 0), MQTT_ERR_PROTOCOL_NAME},
    /* [MQTT-3.1.2-2] MQTT 5 CONNECT (properties follow): level judged first */
    {"connect level 5", 0x10, BODY(0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0x00, 0, 0),
     MQTT_ERR_PROTOCOL_LEVEL},
    /* [MQTT-3.1.2-2] level 5 whose flags would be invalid under 3.1.1 */
    {"connect level 5 garbage", 0x10, BODY(0, 4, 'M', 'Q', 'T', 'T', 5, 0xff, 0xff),
     MQTT_ERR_PROTOCOL_LEVEL},
    /* [MQTT-3.1.2-2] level 5 and nothing after it */
    {"connect level 5 cut", 0x10, BODY(0, 4, 'M', 'Q', 'T', 'T', 5), MQTT_ERR_PROTOCOL_LEVEL},
    /* [MQTT-3.1.2-2] "MQTT" goes with level 4 only */
    {"connect MQTT level 3", 0x10, BODY(0, 4, 'M', 'Q', 'T', 'T', 3, 2, 0, 0, 0, 0),
     MQTT_ERR_PROTOCOL_LEVEL},
    /* [MQTT-3.1.2-2] "MQIsdp" goes with level 3 only */
    {"connect MQIsdp level 4", 0x10, BODY(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 4, 2, 0, 0, 0, 0),
     MQTT_ERR_PROTOCOL_LEVEL},
    /* [MQTT-4.8.0-1] truncated variable header */
    {"connect empty body", 0x10, NOBODY, MQTT_ERR_LENGTH},
    {"connect name cut", 0x10, BODY(0, 4, 'M', 'Q'), MQTT_ERR_LENGTH},
    {"connect level missing", 0x10, BODY(0, 4, 'M', 'Q', 'T', 'T'), MQTT_ERR_LENGTH},
    {"connect flags missing", 0x10, BODY(MQTT4), MQTT_ERR_LENGTH},
    {"connect keepalive cut", 0x10, BODY(MQTT4, 0x02, 0x00), MQTT_ERR_LENGTH},
    /* [MQTT-3.1.3-3] the client id must be present */
    {"connect client id missing", 0x10, BODY(MQTT4, 0x02, 0, 0), MQTT_ERR_LENGTH},
    {"connect client id overrun", 0x10, BODY(MQTT4, 0x02, 0, 0, 0, 5, 'a', 'b'), MQTT_ERR_LENGTH},
    /* [MQTT-3.1.2-3] reserved flag bit 0 */
    {"connect reserved flag", 0x10, BODY(MQTT4, 0x03, 0, 0, 0, 0), MQTT_ERR_CONNECT_FLAGS},
    /* [MQTT-3.1.2-11] [MQTT-3.1.2-13] will QoS without will flag */
    {"connect will qos 1 without will", 0x10, BODY(MQTT4, 0x0a, 0, 0, 0, 0),
     MQTT_ERR_CONNECT_FLAGS},
    {"connect will qos 2 without will", 0x10, BODY(MQTT4, 0x12, 0, 0, 0, 0),
     MQTT_ERR_CONNECT_FLAGS},
    /* [MQTT-3.1.2-11] [MQTT-3.1.2-15] will retain without will flag */
    {"connect will retain without will", 0x10, BODY(MQTT4, 0x22, 0, 0, 0, 0),
     MQTT_ERR_CONNECT_FLAGS},
    /* [MQTT-3.1.2-14] will QoS 3 */
    {"connect will qos 3", 0x10, BODY(MQTT4, 0x1e, 0, 0, 0, 0, AB, 0, 0), MQTT_ERR_CONNECT_FLAGS},
    /* [MQTT-3.1.2-22] password without user name */
    {"connect password without user", 0x10, BODY(MQTT4, 0x42, 0, 0, 0, 0, 0, 1, 'p'),
     MQTT_ERR_CONNECT_FLAGS},
    /* [MQTT-3.1.3-4] [MQTT-1.5.3-1] client id: overlong NUL */
    {"connect client id C0 80", 0x10, BODY(MQTT4, 0x02, 0, 0, 0, 2, 0xc0, 0x80), MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-2] client id: U+0000 */
    {"connect client id U+0000", 0x10, BODY(MQTT4, 0x02, 0, 0, 0, 1, 0x00), MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-1] client id: surrogate */
    {"connect client id surrogate", 0x10, BODY(MQTT4, 0x02, 0, 0, 0, 3, 0xed, 0xa0, 0x80),
     MQTT_ERR_UTF8},
    /* [MQTT-4.7.1-1] [MQTT-3.3.2-2] will topic is a topic name: no wildcards */
    {"connect will topic +", 0x10, BODY(MQTT4, 0x06, 0, 0, 0, 0, 0, 3, 'a', '/', '+', 0, 0),
     MQTT_ERR_TOPIC},
    {"connect will topic #", 0x10, BODY(MQTT4, 0x06, 0, 0, 0, 0, 0, 1, '#', 0, 0), MQTT_ERR_TOPIC},
    /* [MQTT-4.7.3-1] will topic empty */
    {"connect will topic empty", 0x10, BODY(MQTT4, 0x06, 0, 0, 0, 0, 0, 0, 0, 0), MQTT_ERR_TOPIC},
    /* [MQTT-3.1.3-10] will topic must be UTF-8 */
    {"connect will topic bad utf8", 0x10, BODY(MQTT4, 0x06, 0, 0, 0, 0, 0, 1, 0xff, 0, 0),
     MQTT_ERR_UTF8},
    /* [MQTT-3.1.2-9] will flag: will topic and message must be present */
    {"connect will message missing", 0x10, BODY(MQTT4, 0x06, 0, 0, 0, 0, AB), MQTT_ERR_LENGTH},
    {"connect will topic missing", 0x10, BODY(MQTT4, 0x06, 0, 0, 0, 0), MQTT_ERR_LENGTH},
    /* [MQTT-3.1.2-19] user name flag: user name must be present */
    {"connect user name missing", 0x10, BODY(MQTT4, 0x82, 0, 0, 0, 0), MQTT_ERR_LENGTH},
    /* [MQTT-3.1.2-21] password flag: password must be present */
    {"connect password missing", 0x10, BODY(MQTT4, 0xc2, 0, 0, 0, 0, 0, 1, 'u'), MQTT_ERR_LENGTH},
    /* [MQTT-3.1.3-11] user name must be UTF-8 */
    {"connect user name surrogate", 0x10, BODY(MQTT4, 0x82, 0, 0, 0, 0, 0, 3, 0xed, 0xa0, 0x80),
     MQTT_ERR_UTF8},
    /* [MQTT-4.8.0-1] trailing byte after the payload */
    {"connect trailing byte", 0x10, BODY(MQTT4, 0x02, 0, 0, 0, 0, 0xaa), MQTT_ERR_LENGTH},
    /* [MQTT-3.1.2-18] user name without its flag is trailing data */
    {"connect user name without flag", 0x10, BODY(MQTT4, 0x02, 0, 0, 0, 0, 0, 1, 'u'),
     MQTT_ERR_LENGTH},

    /* CONNACK */
    {"connack accepted", 0x20, BODY(0x00, 0x00), MQTT_OK},
    {"connack session present", 0x20, BODY(0x01, 0x00), MQTT_OK},
    {"connack not authorized", 0x20, BODY(0x00, 0x05), MQTT_OK},
    /* [MQTT-2.2.2-2] */
    {"connack fixed flags", 0x22, BODY(0x00, 0x00), MQTT_ERR_FLAGS},
    /* spec 3.2.2.1: bits 7-1 of the acknowledge flags are reserved */
    {"connack reserved flag 0x02", 0x20, BODY(0x02, 0x00), MQTT_ERR_CONNACK},
    {"connack reserved flag 0x80", 0x20, BODY(0x80, 0x00), MQTT_ERR_CONNACK},
    /* spec 3.2.2.3: return codes 6-255 are reserved */
    {"connack rc 6", 0x20, BODY(0x00, 0x06), MQTT_ERR_CONNACK},
    {"connack rc 255", 0x20, BODY(0x00, 0xff), MQTT_ERR_CONNACK},
    /* [MQTT-4.8.0-1] CONNACK is exactly two bytes */
    {"connack short", 0x20, BODY(0x00), MQTT_ERR_LENGTH},
    {"connack long", 0x20, BODY(0x00, 0x00, 0x00), MQTT_ERR_LENGTH},
    {"connack empty", 0x20, NOBODY, MQTT_ERR_LENGTH},

    /* PUBLISH */
    {"publish qos0 empty payload", 0x30, BODY(AB), MQTT_OK},
    {"publish qos0", 0x30, BODY(AB, 'h', 'i'), MQTT_OK},
    {"publish qos1", 0x32, BODY(AB, 0, 10, 'x'), MQTT_OK},
    {"publish dup qos2 retain", 0x3d, BODY(AB, 0, 1), MQTT_OK},
    /* DUP with QoS 0 breaks a sender rule [MQTT-3.3.1-2] but is not
     * malformed: accepted (see decode.c) */
    {"publish dup qos0", 0x38, BODY(AB), MQTT_OK},
    {"publish $SYS topic", 0x30, BODY(0, 4, '$', 'S', 'Y', 'S'), MQTT_OK},
    {"publish topic with space and slash", 0x30, BODY(0, 3, ' ', '/', '/'), MQTT_OK},
    /* [MQTT-3.3.1-4] QoS 3 */
    {"publish qos3", 0x36, BODY(AB), MQTT_ERR_QOS},
    {"publish qos3 dup retain", 0x3f, BODY(AB, 0, 1), MQTT_ERR_QOS},
    /* [MQTT-3.3.2-2] wildcards in a topic name */
    {"publish topic +", 0x30, BODY(0, 3, 'a', '/', '+'), MQTT_ERR_TOPIC},
    {"publish topic #", 0x30, BODY(0, 1, '#'), MQTT_ERR_TOPIC},
    {"publish topic a+", 0x30, BODY(0, 2, 'a', '+'), MQTT_ERR_TOPIC},
    /* [MQTT-4.7.3-1] topic names are at least one character */
    {"publish topic empty", 0x30, BODY(0, 0), MQTT_ERR_TOPIC},
    /* [MQTT-3.3.2-1] topic must be UTF-8 */
    {"publish topic C0 80", 0x30, BODY(0, 2, 0xc0, 0x80), MQTT_ERR_UTF8},
    /* [MQTT-4.7.3-2] no U+0000 in topic names */
    {"publish topic U+0000", 0x30, BODY(0, 3, 'a', 0x00, 'b'), MQTT_ERR_UTF8},
    /* [MQTT-2.3.1-1] QoS > 0 needs a non-zero packet id */
    {"publish qos1 id 0", 0x32, BODY(AB, 0, 0), MQTT_ERR_PACKET_ID},
    {"publish qos2 id 0", 0x34, BODY(AB, 0, 0, 'x'), MQTT_ERR_PACKET_ID},
    /* [MQTT-4.8.0-1] truncated */
    {"publish qos1 id missing", 0x32, BODY(AB), MQTT_ERR_LENGTH},
    {"publish qos1 id cut", 0x32, BODY(AB, 0), MQTT_ERR_LENGTH},
    {"publish topic overrun", 0x30, BODY(0, 9, 'a'), MQTT_ERR_LENGTH},
    {"publish topic length cut", 0x30, BODY(0), MQTT_ERR_LENGTH},
    {"publish empty body", 0x30, NOBODY, MQTT_ERR_LENGTH},

    /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
    {"puback", 0x40, BODY(0, 1), MQTT_OK},
    {"pubrec", 0x50, BODY(0, 2), MQTT_OK},
    {"pubrel", 0x62, BODY(0, 3), MQTT_OK},
    {"pubcomp", 0x70, BODY(0xff, 0xff), MQTT_OK},
    {"unsuback", 0xb0, BODY(0, 5), MQTT_OK},
    /* [MQTT-3.6.1-1] PUBREL flags must be 0010 */
    {"pubrel flags 0", 0x60, BODY(0, 3), MQTT_ERR_FLAGS},
    {"pubrel flags 3", 0x63, BODY(0, 3), MQTT_ERR_FLAGS},
    /* [MQTT-2.2.2-2] */
    {"puback flags 1", 0x41, BODY(0, 1), MQTT_ERR_FLAGS},
    {"pubrec flags 2", 0x52, BODY(0, 1), MQTT_ERR_FLAGS},
    {"pubcomp flags 2", 0x72, BODY(0, 1), MQTT_ERR_FLAGS},
    {"unsuback flags 2", 0xb2, BODY(0, 1), MQTT_ERR_FLAGS},
    /* [MQTT-2.3.1-1] packet id 0 */
    {"puback id 0", 0x40, BODY(0, 0), MQTT_ERR_PACKET_ID},
    {"pubrel id 0", 0x62, BODY(0, 0), MQTT_ERR_PACKET_ID},
    /* [MQTT-4.8.0-1] acks are exactly two bytes */
    {"puback short", 0x40, BODY(0), MQTT_ERR_LENGTH},
    {"puback long", 0x40, BODY(0, 1, 0), MQTT_ERR_LENGTH},
    {"pubcomp empty", 0x70, NOBODY, MQTT_ERR_LENGTH},

    /* SUBSCRIBE */
    {"subscribe one", 0x82, BODY(0, 10, AB, 1), MQTT_OK},
    {"subscribe three", 0x82,
     BODY(0, 1, 0, 1, '#', 2, 0, 3, 'a', '/', '+', 0, 0, 6, '$', 'S', 'Y', 'S', '/', '#', 1),
     MQTT_OK},
    {"subscribe +//+", 0x82, BODY(0, 1, 0, 4, '+', '/', '/', '+', 0), MQTT_OK},
    /* [MQTT-3.8.1-1] SUBSCRIBE flags must be 0010 */
    {"subscribe flags 0", 0x80, BODY(0, 1, AB, 0), MQTT_ERR_FLAGS},
    {"subscribe flags 3", 0x83, BODY(0, 1, AB, 0), MQTT_ERR_FLAGS},
    /* [MQTT-2.3.1-1] */
    {"subscribe id 0", 0x82, BODY(0, 0, AB, 0), MQTT_ERR_PACKET_ID},
    /* [MQTT-3.8.3-3] at least one filter */
    {"subscribe no filters", 0x82, BODY(0, 1), MQTT_ERR_EMPTY},
    /* [MQTT-3.8.3-4] QoS above 2 or reserved bits */
    {"subscribe qos 3", 0x82, BODY(0, 1, AB, 3), MQTT_ERR_SUB_QOS},
    {"subscribe qos reserved 0x41", 0x82, BODY(0, 1, AB, 0x41), MQTT_ERR_SUB_QOS},
    {"subscribe qos reserved 0x80", 0x82, BODY(0, 1, AB, 0x80), MQTT_ERR_SUB_QOS},
    {"subscribe second qos bad", 0x82, BODY(0, 1, AB, 0, AB, 0x04), MQTT_ERR_SUB_QOS},
    /* [MQTT-4.7.1-2] '#' must be last and alone */
    {"subscribe filter a#", 0x82, BODY(0, 1, 0, 2, 'a', '#', 0), MQTT_ERR_FILTER},
    {"subscribe filter a/#/b", 0x82, BODY(0, 1, 0, 5, 'a', '/', '#', '/', 'b', 0), MQTT_ERR_FILTER},
    /* [MQTT-4.7.1-3] '+' must be alone in its level */
    {"subscribe filter a+", 0x82, BODY(0, 1, 0, 2, 'a', '+', 0), MQTT_ERR_FILTER},
    {"subscribe second filter ++", 0x82, BODY(0, 1, AB, 0, 0, 2, '+', '+', 0), MQTT_ERR_FILTER},
    /* [MQTT-4.7.3-1] empty filter */
    {"subscribe filter empty", 0x82, BODY(0, 1, 0, 0, 0), MQTT_ERR_FILTER},
    /* [MQTT-3.8.3-1] filters are UTF-8 */
    {"subscribe filter C0 AF", 0x82, BODY(0, 1, 0, 2, 0xc0, 0xaf, 0), MQTT_ERR_UTF8},
    /* [MQTT-4.8.0-1] truncated */
    {"subscribe qos missing", 0x82, BODY(0, 1, AB), MQTT_ERR_LENGTH},
    {"subscribe second cut", 0x82, BODY(0, 1, AB, 0, 0, 3, 'a'), MQTT_ERR_LENGTH},
    {"subscribe half a length", 0x82, BODY(0, 1, AB, 0, 0), MQTT_ERR_LENGTH},
    {"subscribe id cut", 0x82, BODY(0), MQTT_ERR_LENGTH},
    {"subscribe empty body", 0x82, NOBODY, MQTT_ERR_LENGTH},

    /* UNSUBSCRIBE */
    {"unsubscribe one", 0xa2, BODY(0, 2, AB), MQTT_OK},
    {"unsubscribe two", 0xa2, BODY(0, 2, AB, 0, 1, '#'), MQTT_OK},
    /* [MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010 */
    {"unsubscribe flags 0", 0xa0, BODY(0, 2, AB), MQTT_ERR_FLAGS},
    /* [MQTT-2.3.1-1] */
    {"unsubscribe id 0", 0xa2, BODY(0, 0, AB), MQTT_ERR_PACKET_ID},
    /* [MQTT-3.10.3-2] at least one filter */
    {"unsubscribe no filters", 0xa2, BODY(0, 2), MQTT_ERR_EMPTY},
    /* [MQTT-4.7.1-2] */
    {"unsubscribe filter #a", 0xa2, BODY(0, 2, 0, 2, '#', 'a'), MQTT_ERR_FILTER},
    /* [MQTT-4.7.3-1] */
    {"unsubscribe filter empty", 0xa2, BODY(0, 2, 0, 0), MQTT_ERR_FILTER},
    /* [MQTT-3.10.3-1] filters are UTF-8 */
    {"unsubscribe filter FF", 0xa2, BODY(0, 2, 0, 1, 0xff), MQTT_ERR_UTF8},
    /* [MQTT-4.8.0-1] */
    {"unsubscribe stray byte", 0xa2, BODY(0, 2, AB, 0), MQTT_ERR_LENGTH},
    {"unsubscribe overrun", 0xa2, BODY(0, 2, 0, 5, 'a'), MQTT_ERR_LENGTH},

    /* SUBACK */
    {"suback one", 0x90, BODY(0, 1, 0), MQTT_OK},
    {"suback four", 0x90, BODY(0, 1, 0, 1, 2, 0x80), MQTT_OK},
    /* [MQTT-3.9.3-2] codes other than 0, 1, 2, 0x80 are reserved */
    {"suback code 3", 0x90, BODY(0, 1, 3), MQTT_ERR_SUB_QOS},
    {"suback code 0x81", 0x90, BODY(0, 1, 0, 0x81), MQTT_ERR_SUB_QOS},
    {"suback code 0x40", 0x90, BODY(0, 1, 0x40), MQTT_ERR_SUB_QOS},
    /* [MQTT-3.8.4-5] one code per filter, and a SUBSCRIBE has at least one */
    {"suback no codes", 0x90, BODY(0, 1), MQTT_ERR_EMPTY},
    /* [MQTT-2.3.1-1] */
    {"suback id 0", 0x90, BODY(0, 0, 0), MQTT_ERR_PACKET_ID},
    /* [MQTT-4.8.0-1] */
    {"suback id cut", 0x90, BODY(0), MQTT_ERR_LENGTH},
    /* [MQTT-2.2.2-2] */
    {"suback flags 2", 0x92, BODY(0, 1, 0), MQTT_ERR_FLAGS},

    /* PINGREQ, PINGRESP, DISCONNECT */
    {"pingreq", 0xc0, NOBODY, MQTT_OK},
    {"pingresp", 0xd0, NOBODY, MQTT_OK},
    {"disconnect", 0xe0, NOBODY, MQTT_OK},
    /* [MQTT-4.8.0-1] these carry no body */
    {"pingreq with body", 0xc0, BODY(0), MQTT_ERR_LENGTH},
    {"disconnect with body", 0xe0, BODY(0, 0), MQTT_ERR_LENGTH},
    /* [MQTT-2.2.2-2] */
    {"pingreq flags 1", 0xc1, NOBODY, MQTT_ERR_FLAGS},
    /* [MQTT-3.14.1-1] DISCONNECT reserved bits */
    {"disconnect flags 2", 0xe2, NOBODY, MQTT_ERR_FLAGS},

    /* spec 2.2.1: types 0 and 15 are reserved */
    {"type 0", 0x00, NOBODY, MQTT_ERR_TYPE},
    {"type 15", 0xf0, BODY(0, 1), MQTT_ERR_TYPE},
};

START_TEST(packet_table)
{
    const struct pkt_case *t = &packets[_i];
    uint8_t buf[300];
    size_t n = build(buf, t->byte0, t->body, t->n);
    mqtt_header h;
    int rc = frame_exact(buf, n, &h);
    if (rc == MQTT_OK) rc = decode_any(&h);
    ck_assert_msg(rc == t->expect, "%s: got %d (%s), want %d (%s)", t->name, rc, mqtt_strerror(rc),
                  t->expect, mqtt_strerror(t->expect));
}
END_TEST

/* ---- field checks on hand-written packets ------------------------------- */

START_TEST(decode_connect_fields)
{
    uint8_t buf[64];
    size_t n = build(buf, 0x10,
                     BODY(MQTT4, 0xee, 0x00, 0x0a, 0x00, 0x02, 'c', '1', AB, 0x00, 0x02, 'h', 'i',
                          0x00, 0x01, 'u', 0x00, 0x03, 0x00, 0xff, 0xc0));
    mqtt_header h;
    mqtt_connect c;
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_connect(&h, &c), MQTT_OK);
    ck_assert(str_eq(c.protocol_name, "MQTT"));
    ck_assert_uint_eq(c.protocol_level, 4);
    ck_assert(c.clean_session);
    ck_assert(c.will_flag);
    ck_assert_uint_eq(c.will_qos, 1);
    ck_assert(c.will_retain);
    ck_assert(c.username_flag);
    ck_assert(c.password_flag);
    ck_assert_uint_eq(c.keepalive, 10);
    ck_assert(str_eq(c.client_id, "c1"));
    ck_assert(str_eq(c.will_topic, "a/b"));
    ck_assert(str_eq(c.will_payload, "hi"));
    ck_assert(str_eq(c.username, "u"));
    ck_assert_uint_eq(c.password.len, 3);
    ck_assert_mem_eq(c.password.ptr, "\x00\xff\xc0", 3);
    /* Views point into the input buffer. */
    ck_assert(c.client_id.ptr > buf && c.client_id.ptr < buf + n);

    /* Level 5 is reported with the level filled in, for the log line. */
    n = build(buf, 0x10, BODY(0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0x00, 0, 0));
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_connect(&h, &c), MQTT_ERR_PROTOCOL_LEVEL);
    ck_assert_uint_eq(c.protocol_level, 5);
}
END_TEST

START_TEST(decode_publish_fields)
{
    uint8_t buf[64];
    size_t n = build(buf, 0x3b, BODY(AB, 0x12, 0x34, 'p', 0x00, 'q'));
    mqtt_header h;
    mqtt_publish p;
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_publish(&h, &p), MQTT_OK);
    ck_assert(p.dup);
    ck_assert_uint_eq(p.qos, 1);
    ck_assert(p.retain);
    ck_assert(str_eq(p.topic, "a/b"));
    ck_assert_uint_eq(p.packet_id, 0x1234);
    ck_assert_uint_eq(p.payload_len, 3);
    ck_assert_mem_eq(p.payload, "p\0q", 3);

    /* QoS 0: no packet id, the two bytes after the topic are payload. */
    n = build(buf, 0x30, BODY(AB, 0x00, 0x00));
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_publish(&h, &p), MQTT_OK);
    ck_assert_uint_eq(p.qos, 0);
    ck_assert(!p.dup && !p.retain);
    ck_assert_uint_eq(p.packet_id, 0);
    ck_assert_uint_eq(p.payload_len, 2);
}
END_TEST

START_TEST(decode_subscribe_iterate)
{
    uint8_t buf[64];
    size_t n = build(
        buf, 0x82,
        BODY(0, 1, 0, 1, '#', 2, 0, 3, 'a', '/', '+', 0, 0, 6, '$', 'S', 'Y', 'S', '/', '#', 1));
    mqtt_header h;
    mqtt_sublist sl;
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_subscribe(&h, &sl), MQTT_OK);
    ck_assert_uint_eq(sl.packet_id, 1);
    ck_assert_uint_eq(sl.count, 3);
    const char *want[] = {"#", "a/+", "$SYS/#"};
    const uint8_t wq[] = {2, 0, 1};
    mqtt_str f;
    uint8_t q;
    for (unsigned i = 0; i < 3; i++) {
        ck_assert(mqtt_sublist_next(&sl, &f, &q));
        ck_assert(str_eq(f, want[i]));
        ck_assert_uint_eq(q, wq[i]);
    }
    ck_assert(!mqtt_sublist_next(&sl, &f, &q));

    n = build(buf, 0xa2, BODY(0, 2, AB, 0, 1, '#'));
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_unsubscribe(&h, &sl), MQTT_OK);
    ck_assert_uint_eq(sl.packet_id, 2);
    ck_assert_uint_eq(sl.count, 2);
    ck_assert(mqtt_sublist_next(&sl, &f, NULL));
    ck_assert(str_eq(f, "a/b"));
    q = 7;
    ck_assert(mqtt_sublist_next(&sl, &f, &q));
    ck_assert(str_eq(f, "#"));
    ck_assert_uint_eq(q, 0);
    ck_assert(!mqtt_sublist_next(&sl, &f, &q));
}
END_TEST

START_TEST(decode_acks_fields)
{
    uint8_t buf[8];
    mqtt_header h;
    mqtt_connack ca;
    mqtt_suback sa;
    uint16_t id;

    size_t n = build(buf, 0x20, BODY(0x01, 0x04));
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_connack(&h, &ca), MQTT_OK);
    ck_assert(ca.session_present);
    ck_assert_uint_eq(ca.return_code, 4);

    n = build(buf, 0x90, BODY(0xab, 0xcd, 0, 1, 2, 0x80));
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_suback(&h, &sa), MQTT_OK);
    ck_assert_uint_eq(sa.packet_id, 0xabcd);
    ck_assert_uint_eq(sa.count, 4);
    ck_assert_mem_eq(sa.codes, "\x00\x01\x02\x80", 4);

    n = build(buf, 0x62, BODY(0x01, 0x02));
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_ack(&h, &id), MQTT_OK);
    ck_assert_uint_eq(id, 0x0102);
}
END_TEST

START_TEST(decode_wrong_type)
{
    /* A decoder handed another type's header refuses it. */
    uint8_t buf[8];
    size_t n = build(buf, 0x40, BODY(0, 1));
    mqtt_header h;
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    mqtt_connect c;
    mqtt_publish p;
    mqtt_sublist sl;
    mqtt_suback sa;
    mqtt_connack ca;
    uint16_t id;
    ck_assert_int_eq(mqtt_decode_connect(&h, &c), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_decode_connack(&h, &ca), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_decode_publish(&h, &p), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_decode_subscribe(&h, &sl), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_decode_unsubscribe(&h, &sl), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_decode_suback(&h, &sa), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_decode_empty(&h), MQTT_ERR_TYPE);
    n = build(buf, 0xc0, NOBODY);
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_ack(&h, &id), MQTT_ERR_TYPE);
    /* Hand-built header with bad flags gets the table's verdict too. */
    mqtt_header bad = {MQTT_PUBLISH, 0x6, 0, NULL};
    ck_assert_int_eq(mqtt_decode_publish(&bad, &p), MQTT_ERR_QOS);
    mqtt_header badrel = {MQTT_PUBREL, 0x0, 2, (const uint8_t *)"\x00\x01"};
    ck_assert_int_eq(mqtt_decode_ack(&badrel, &id), MQTT_ERR_FLAGS);
}
END_TEST

/* ---- round trips -------------------------------------------------------- */

START_TEST(roundtrip_connect)
{
    mqtt_connect in, out;
    uint8_t buf[256];
    size_t n;
    mqtt_header h;

    /* Variants: bare, will only, user only, user+password, everything, 3.1. */
    for (int v = 0; v < 6; v++) {
        memset(&in, 0, sizeof in);
        in.protocol_level = v == 5 ? 3 : 4;
        in.clean_session = v & 1;
        in.keepalive = (uint16_t)(v * 1000 + 7);
        in.client_id = v == 0 ? S("") : S("client-\xc3\xa9");
        if (v == 1 || v == 4) {
            in.will_flag = true;
            in.will_qos = (uint8_t)(v == 1 ? 2 : 1);
            in.will_retain = v == 4;
            in.will_topic = S("status/dev");
            in.will_payload = S("offline");
        }
        if (v >= 2) {
            in.username_flag = true;
            in.username = S("alice");
        }
        if (v == 3 || v == 4 || v == 5) {
            in.password_flag = true;
            in.password.ptr = (const uint8_t *)"\x00\x01\xfe";
            in.password.len = 3;
        }
        ck_assert_int_eq(mqtt_encode_connect(buf, sizeof buf, &in, &n), MQTT_OK);
        ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
        ck_assert_uint_eq(h.type, MQTT_CONNECT);
        ck_assert_int_eq(mqtt_decode_connect(&h, &out), MQTT_OK);
        ck_assert(str_eq(out.protocol_name, v == 5 ? "MQIsdp" : "MQTT"));
        ck_assert_uint_eq(out.protocol_level, in.protocol_level);
        ck_assert_int_eq(out.clean_session, in.clean_session);
        ck_assert_uint_eq(out.keepalive, in.keepalive);
        ck_assert_uint_eq(out.client_id.len, in.client_id.len);
        ck_assert_int_eq(out.will_flag, in.will_flag);
        ck_assert_uint_eq(out.will_qos, in.will_qos);
        ck_assert_int_eq(out.will_retain, in.will_retain);
        ck_assert_int_eq(out.username_flag, in.username_flag);
        ck_assert_int_eq(out.password_flag, in.password_flag);
        if (in.client_id.len)
            ck_assert_mem_eq(out.client_id.ptr, in.client_id.ptr, in.client_id.len);
        if (in.will_flag) {
            ck_assert(str_eq(out.will_topic, "status/dev"));
            ck_assert(str_eq(out.will_payload, "offline"));
        }
        if (in.username_flag) ck_assert(str_eq(out.username, "alice"));
        if (in.password_flag) {
            ck_assert_uint_eq(out.password.len, 3);
            ck_assert_mem_eq(out.password.ptr, "\x00\x01\xfe", 3);
        }
    }

    /* Bytes of the minimal CONNECT, protocol name defaulted from level 0. */
    memset(&in, 0, sizeof in);
    in.clean_session = true;
    in.keepalive = 60;
    ck_assert_int_eq(mqtt_encode_connect(buf, sizeof buf, &in, &n), MQTT_OK);
    const uint8_t want[] = {0x10, 0x0c, MQTT4, 0x02, 0x00, 0x3c, 0x00, 0x00};
    ck_assert_uint_eq(n, sizeof want);
    ck_assert_mem_eq(buf, want, sizeof want);

    /* Will QoS/retain are not encoded without the will flag. */
    in.will_qos = 2;
    in.will_retain = true;
    ck_assert_int_eq(mqtt_encode_connect(buf, sizeof buf, &in, &n), MQTT_OK);
    ck_assert_uint_eq(buf[9], 0x02);
}
END_TEST

START_TEST(roundtrip_connack)
{
    uint8_t buf[8];
    size_t n;
    mqtt_header h;
    mqtt_connack ca;
    for (int rc = 0; rc <= 5; rc++) {
        for (int sp = 0; sp <= 1; sp++) {
            ck_assert_int_eq(mqtt_encode_connack(buf, sizeof buf, sp, (uint8_t)rc, &n), MQTT_OK);
            ck_assert_uint_eq(n, 4);
            ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
            ck_assert_int_eq(mqtt_decode_connack(&h, &ca), MQTT_OK);
            ck_assert_uint_eq(ca.return_code, rc);
            /* [MQTT-3.2.2-4] session present is 0 with a non-zero code */
            ck_assert_int_eq(ca.session_present, sp && rc == 0);
        }
    }
    ck_assert_int_eq(mqtt_encode_connack(buf, sizeof buf, false, 0, &n), MQTT_OK);
    ck_assert_mem_eq(buf, "\x20\x02\x00\x00", 4);
}
END_TEST

START_TEST(roundtrip_publish)
{
    static uint8_t payload[70000], buf[70100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    const size_t sizes[] = {0, 1, 100, 65535, 65536, sizeof payload};
    for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (uint8_t qos = 0; qos <= 2; qos++) {
            mqtt_publish in = {.dup = qos > 0,
                               .qos = qos,
                               .retain = s & 1,
                               .topic = S("sensors/\xe2\x82\xac/temp"),
                               .packet_id = qos ? (uint16_t)(s + 1) : 0,
                               .payload = payload,
                               .payload_len = sizes[s]};
            mqtt_publish out;
            size_t n;
            mqtt_header h;
            ck_assert_int_eq(mqtt_encode_publish(buf, sizeof buf, &in, &n), MQTT_OK);
            ck_assert_uint_eq(n, mqtt_publish_header_size(qos, in.topic.len, sizes[s]) + sizes[s]);
            ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
            ck_assert_int_eq(mqtt_decode_publish(&h, &out), MQTT_OK);
            ck_assert_int_eq(out.dup, in.dup);
            ck_assert_uint_eq(out.qos, qos);
            ck_assert_int_eq(out.retain, in.retain);
            ck_assert_uint_eq(out.topic.len, in.topic.len);
            ck_assert_mem_eq(out.topic.ptr, in.topic.ptr, in.topic.len);
            ck_assert_uint_eq(out.packet_id, in.packet_id);
            ck_assert_uint_eq(out.payload_len, sizes[s]);
            if (sizes[s]) ck_assert_mem_eq(out.payload, payload, sizes[s]);
        }
    }
}
END_TEST

START_TEST(roundtrip_acks)
{
    const enum mqtt_type types[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP,
                                    MQTT_UNSUBACK};
    const uint16_t ids[] = {1, 0x00ff, 0xff00, 65535};
    for (unsigned t = 0; t < 5; t++) {
        for (unsigned k = 0; k < 4; k++) {
            uint8_t buf[4];
            size_t n;
            mqtt_header h;
            uint16_t id = 0;
            ck_assert_int_eq(mqtt_encode_ack(buf, sizeof buf, types[t], ids[k], &n), MQTT_OK);
            ck_assert_uint_eq(n, 4);
            ck_assert_uint_eq(buf[0], types[t] << 4 | (types[t] == MQTT_PUBREL ? 2 : 0));
            ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
            ck_assert_uint_eq(h.type, types[t]);
            ck_assert_int_eq(mqtt_decode_ack(&h, &id), MQTT_OK);
            ck_assert_uint_eq(id, ids[k]);
        }
    }
}
END_TEST

START_TEST(roundtrip_subscribe_unsubscribe)
{
    mqtt_str filters[] = {S("a/b"),           S("+/+"), S("#"),
                          S("$SYS/broker/#"), S("/"),   S("caf\xc3\xa9/+/x")};
    const uint8_t qos[] = {0, 1, 2, 0, 1, 2};
    unsigned count = 6;
    uint8_t buf[256];
    size_t n;
    mqtt_header h;
    mqtt_sublist sl;
    mqtt_str f;
    uint8_t q;

    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 42, filters, qos, count, &n), MQTT_OK);
    ck_assert_uint_eq(buf[0], 0x82);
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_subscribe(&h, &sl), MQTT_OK);
    ck_assert_uint_eq(sl.packet_id, 42);
    ck_assert_uint_eq(sl.count, count);
    for (unsigned i = 0; i < count; i++) {
        ck_assert(mqtt_sublist_next(&sl, &f, &q));
        ck_assert_uint_eq(f.len, filters[i].len);
        ck_assert_mem_eq(f.ptr, filters[i].ptr, f.len);
        ck_assert_uint_eq(q, qos[i]);
    }
    ck_assert(!mqtt_sublist_next(&sl, &f, &q));

    /* qos NULL: every entry QoS 0. */
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 1, filters, NULL, 2, &n), MQTT_OK);
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_subscribe(&h, &sl), MQTT_OK);
    while (mqtt_sublist_next(&sl, &f, &q))
        ck_assert_uint_eq(q, 0);

    ck_assert_int_eq(mqtt_encode_unsubscribe(buf, sizeof buf, 43, filters, count, &n), MQTT_OK);
    ck_assert_uint_eq(buf[0], 0xa2);
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_unsubscribe(&h, &sl), MQTT_OK);
    ck_assert_uint_eq(sl.packet_id, 43);
    ck_assert_uint_eq(sl.count, count);
    for (unsigned i = 0; i < count; i++) {
        ck_assert(mqtt_sublist_next(&sl, &f, NULL));
        ck_assert_uint_eq(f.len, filters[i].len);
        ck_assert_mem_eq(f.ptr, filters[i].ptr, f.len);
    }
    ck_assert(!mqtt_sublist_next(&sl, &f, NULL));

    /* Exact bytes of a one-filter SUBSCRIBE. */
    mqtt_str one = S("a/b");
    const uint8_t q1 = 1;
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 10, &one, &q1, 1, &n), MQTT_OK);
    const uint8_t want[] = {0x82, 0x08, 0, 10, AB, 1};
    ck_assert_uint_eq(n, sizeof want);
    ck_assert_mem_eq(buf, want, sizeof want);
}
END_TEST

START_TEST(roundtrip_suback_and_empty)
{
    const uint8_t codes[] = {0, 1, 2, 0x80, 0x80, 2};
    uint8_t buf[32];
    size_t n;
    mqtt_header h;
    mqtt_suback sa;
    ck_assert_int_eq(mqtt_encode_suback(buf, sizeof buf, 7, codes, 6, &n), MQTT_OK);
    ck_assert_uint_eq(n, 10);
    ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
    ck_assert_int_eq(mqtt_decode_suback(&h, &sa), MQTT_OK);
    ck_assert_uint_eq(sa.packet_id, 7);
    ck_assert_uint_eq(sa.count, 6);
    ck_assert_mem_eq(sa.codes, codes, 6);

    const enum mqtt_type empties[] = {MQTT_PINGREQ, MQTT_PINGRESP, MQTT_DISCONNECT};
    for (unsigned i = 0; i < 3; i++) {
        ck_assert_int_eq(mqtt_encode_empty(buf, sizeof buf, empties[i], &n), MQTT_OK);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(buf[0], empties[i] << 4);
        ck_assert_uint_eq(buf[1], 0);
        ck_assert_int_eq(frame_exact(buf, n, &h), MQTT_OK);
        ck_assert_uint_eq(h.type, empties[i]);
        ck_assert_int_eq(mqtt_decode_empty(&h), MQTT_OK);
    }
}
END_TEST

/* ---- remaining-length boundaries in real packets ------------------------ */

START_TEST(publish_remaining_boundaries)
{
    /* PUBLISH QoS 0 with topic "t": remaining = 3 + payload. */
    const uint32_t rems[] = {127, 128, 16383, 16384, 2097151, 2097152};
    const int vbytes[] = {1, 2, 2, 3, 3, 4};
    uint32_t rem = rems[_i];
    size_t payload_len = rem - 3;
    size_t cap = 1 + 4 + rem;
    uint8_t *buf = malloc(cap);
    uint8_t *payload = calloc(1, payload_len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_ptr_nonnull(payload);
    mqtt_publish in = {.topic = S("t"), .payload = payload, .payload_len = payload_len};
    size_t n;
    ck_assert_int_eq(mqtt_encode_publish(buf, cap, &in, &n), MQTT_OK);
    ck_assert_uint_eq(n, 1 + (size_t)vbytes[_i] + rem);
    ck_assert_uint_eq(mqtt_publish_header_size(0, 1, payload_len), 1 + (size_t)vbytes[_i] + 3);

    mqtt_header h;
    size_t plen;
    ck_assert_int_eq(mqtt_frame(buf, n, 0, &h, &plen), MQTT_OK);
    ck_assert_uint_eq(h.remaining, rem);
    ck_assert_uint_eq(plen, n);
    /* One byte short of the limit: refused before the body. */
    ck_assert_int_eq(mqtt_frame(buf, 1 + (size_t)vbytes[_i], n - 1, &h, &plen), MQTT_ERR_TOO_LARGE);
    ck_assert_int_eq(mqtt_frame(buf, n - 1, n, &h, &plen), MQTT_NEED_MORE);
    ck_assert_int_eq(mqtt_frame(buf, n, n, &h, &plen), MQTT_OK);
    mqtt_publish out;
    ck_assert_int_eq(mqtt_decode_publish(&h, &out), MQTT_OK);
    ck_assert_uint_eq(out.payload_len, payload_len);
    free(buf);
    free(payload);
}
END_TEST

START_TEST(publish_header_limits)
{
    uint8_t buf[16];
    size_t n;
    /* Remaining exactly 268435455: a 4-byte length, header only. */
    size_t max_payload = MQTT_MAX_REMAINING_LENGTH - 3;
    ck_assert_int_eq(mqtt_encode_publish_header(buf, sizeof buf, 0, false, false,
                                                (const uint8_t *)"t", 1, 0, max_payload, &n),
                     MQTT_OK);
    ck_assert_uint_eq(n, 8);
    ck_assert_uint_eq(mqtt_publish_header_size(0, 1, max_payload), 8);
    const uint8_t want[] = {0x30, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01, 't'};
    ck_assert_mem_eq(buf, want, sizeof want);
    mqtt_header h;
    size_t plen;
    ck_assert_int_eq(mqtt_frame(buf, n, 0, &h, &plen), MQTT_NEED_MORE);
    ck_assert_uint_eq(plen, 5 + (size_t)MQTT_MAX_REMAINING_LENGTH);

    /* 268435456: one byte over the protocol maximum. */
    ck_assert_int_eq(mqtt_encode_publish_header(buf, sizeof buf, 0, false, false,
                                                (const uint8_t *)"t", 1, 0, max_payload + 1, &n),
                     MQTT_ERR_ARG);
    ck_assert_uint_eq(mqtt_publish_header_size(0, 1, max_payload + 1), 0);
    ck_assert_int_eq(mqtt_encode_publish_header(buf, sizeof buf, 1, false, false,
                                                (const uint8_t *)"t", 1, 1, max_payload, &n),
                     MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_publish_header(buf, sizeof buf, 0, false, false,
                                                (const uint8_t *)"t", 1, 0, SIZE_MAX, &n),
                     MQTT_ERR_ARG);

    /* Header size == bytes written, across QoS, topic and payload sizes,
     * and never above MQTT_PUBLISH_HEADER_MAX. */
    static uint8_t topic[65535], big[65535 + 16];
    memset(topic, 'x', sizeof topic);
    const uint16_t tlens[] = {1, 2, 120, 121, 122, 123, 124, 125, 126, 16378, 16380, 65535};
    const size_t plens[] = {0, 1, 2, 100, 16000, 2097000, 268000000};
    for (unsigned t = 0; t < sizeof tlens / sizeof tlens[0]; t++)
        for (unsigned p = 0; p < sizeof plens / sizeof plens[0]; p++)
            for (uint8_t qos = 0; qos <= 2; qos++) {
                size_t want_n = mqtt_publish_header_size(qos, tlens[t], plens[p]);
                ck_assert_int_eq(mqtt_encode_publish_header(big, sizeof big, qos, true, true, topic,
                                                            tlens[t], 5, plens[p], &n),
                                 MQTT_OK);
                ck_assert_uint_eq(n, want_n);
                ck_assert_uint_le(n, MQTT_PUBLISH_HEADER_MAX(tlens[t]));
                /* The header frames as a packet of header + payload bytes. */
                ck_assert_int_eq(mqtt_frame(big, n, 0, &h, &plen),
                                 plens[p] ? MQTT_NEED_MORE : MQTT_OK);
                ck_assert_uint_eq(plen, n + plens[p]);
                /* DUP is dropped for QoS 0 [MQTT-3.3.1-2], kept otherwise. */
                ck_assert_uint_eq(big[0], 0x30 | qos << 1 | (qos ? 0x08 : 0) | 0x01);
            }
    /* Largest header: QoS 1, 4-byte length, 65535-byte topic. */
    ck_assert_uint_eq(mqtt_publish_header_size(1, 65535, 200000000), 9 + 65535);
}
END_TEST

/* ---- encoder errors and buffer discipline ------------------------------- */

START_TEST(encode_never_past_cap)
{
    /* For every capacity below the packet size: MQTT_ERR_BUFFER, *written
     * 0 and not a single byte written. */
    static uint8_t buf[20100], guard[20100];
    size_t full = make_sample(_i, buf, sizeof buf);
    for (size_t cap = 0; cap < full; cap += (full > 400 ? 97 : 1)) {
        memset(guard, 0xa5, sizeof guard);
        size_t n = 77;
        int rc = encode_sample(_i, guard, cap, &n);
        ck_assert_msg(rc == MQTT_ERR_BUFFER, "sample %d cap %zu: rc %d", _i, cap, rc);
        ck_assert_uint_eq(n, 0);
        /* Plain loop: a check assertion per byte would be far too slow. */
        size_t k = 0;
        while (k < sizeof guard && guard[k] == 0xa5)
            k++;
        ck_assert_msg(k == sizeof guard, "sample %d cap %zu wrote byte %zu", _i, cap, k);
    }
    /* Exactly the packet size is enough. */
    size_t n;
    ck_assert_int_eq(encode_sample(_i, guard, full, &n), MQTT_OK);
    ck_assert_uint_eq(n, full);
    ck_assert_mem_eq(guard, buf, full);
}
END_TEST

START_TEST(encode_bad_arguments)
{
    uint8_t buf[512];
    size_t n = 77;
    mqtt_str f = S("a/b"), empty = S("");
    uint8_t q3 = 3, q1 = 1;

    /* CONNECT: will QoS 3 [MQTT-3.1.2-14], password without user [MQTT-3.1.2-22] */
    mqtt_connect c;
    memset(&c, 0, sizeof c);
    c.will_flag = true;
    c.will_qos = 3;
    c.will_topic = f;
    ck_assert_int_eq(mqtt_encode_connect(buf, sizeof buf, &c, &n), MQTT_ERR_ARG);
    ck_assert_uint_eq(n, 0);
    memset(&c, 0, sizeof c);
    c.password_flag = true;
    ck_assert_int_eq(mqtt_encode_connect(buf, sizeof buf, &c, &n), MQTT_ERR_ARG);

    /* CONNACK: codes above 5 are reserved (spec 3.2.2.3) */
    ck_assert_int_eq(mqtt_encode_connack(buf, sizeof buf, false, 6, &n), MQTT_ERR_ARG);

    /* PUBLISH: QoS 3 [MQTT-3.3.1-4], id 0 with QoS > 0 [MQTT-2.3.1-1], empty topic [MQTT-4.7.3-1]
     */
    mqtt_publish p = {.qos = 3, .topic = f, .packet_id = 1};
    ck_assert_int_eq(mqtt_encode_publish(buf, sizeof buf, &p, &n), MQTT_ERR_ARG);
    p.qos = 1;
    p.packet_id = 0;
    ck_assert_int_eq(mqtt_encode_publish(buf, sizeof buf, &p, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_publish(buf, 0, &p, &n), MQTT_ERR_ARG); /* ARG before BUFFER */
    p.packet_id = 1;
    p.topic = empty;
    ck_assert_int_eq(mqtt_encode_publish(buf, sizeof buf, &p, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(
        mqtt_encode_publish_header(buf, sizeof buf, 1, false, false, f.ptr, f.len, 0, 0, &n),
        MQTT_ERR_ARG);
    ck_assert_int_eq(
        mqtt_encode_publish_header(buf, sizeof buf, 3, false, false, f.ptr, f.len, 1, 0, &n),
        MQTT_ERR_ARG);
    ck_assert_uint_eq(mqtt_publish_header_size(3, 3, 0), 0);

    /* Acks: wrong type, id 0 */
    ck_assert_int_eq(mqtt_encode_ack(buf, sizeof buf, MQTT_PUBLISH, 1, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_ack(buf, sizeof buf, MQTT_SUBACK, 1, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_ack(buf, sizeof buf, MQTT_PUBACK, 0, &n), MQTT_ERR_ARG);

    /* SUBSCRIBE/UNSUBSCRIBE: id 0, no filters [MQTT-3.8.3-3], empty filter, QoS 3 */
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 0, &f, &q1, 1, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 1, &f, &q1, 0, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 1, &empty, &q1, 1, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 1, &f, &q3, 1, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_unsubscribe(buf, sizeof buf, 0, &f, 1, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_unsubscribe(buf, sizeof buf, 1, &f, 0, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_unsubscribe(buf, sizeof buf, 1, &empty, 1, &n), MQTT_ERR_ARG);

    /* SUBACK: reserved codes [MQTT-3.9.3-2], no codes, id 0 */
    const uint8_t bad[] = {0, 3}, good[] = {0x80};
    ck_assert_int_eq(mqtt_encode_suback(buf, sizeof buf, 1, bad, 2, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_suback(buf, sizeof buf, 1, good, 0, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_suback(buf, sizeof buf, 0, good, 1, &n), MQTT_ERR_ARG);

    /* Empty packets: only PINGREQ, PINGRESP, DISCONNECT */
    ck_assert_int_eq(mqtt_encode_empty(buf, sizeof buf, MQTT_CONNECT, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_empty(buf, sizeof buf, MQTT_PUBACK, &n), MQTT_ERR_ARG);
}
END_TEST

START_TEST(encode_remaining_too_large)
{
    /* 4097 filters of 65535 bytes exceed 268435455: MQTT_ERR_ARG, not a
     * wrapped length and not MQTT_ERR_BUFFER. */
    static uint8_t topic[65535];
    enum { COUNT = 4097 };
    static mqtt_str filters[COUNT];
    memset(topic, 'x', sizeof topic);
    for (unsigned i = 0; i < COUNT; i++) {
        filters[i].ptr = topic;
        filters[i].len = 65535;
    }
    uint8_t buf[16];
    size_t n;
    ck_assert_int_eq(mqtt_encode_subscribe(buf, sizeof buf, 1, filters, NULL, COUNT, &n),
                     MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_encode_unsubscribe(buf, sizeof buf, 1, filters, COUNT, &n), MQTT_ERR_ARG);
    /* Just under the limit it is only the buffer that is too small. */
    ck_assert_int_eq(mqtt_encode_unsubscribe(buf, sizeof buf, 1, filters, 4000, &n),
                     MQTT_ERR_BUFFER);
}
END_TEST

/* ---- runner ------------------------------------------------------------- */

static Suite *codec_suite(void)
{
    Suite *s = suite_create("mqtt_codec");
    TCase *tc;

    tc = tcase_create("varint");
    tcase_add_loop_test(tc, varint_boundaries, 0, (int)(sizeof varints / sizeof varints[0]));
    tcase_add_test(tc, varint_out_of_range);
    tcase_add_test(tc, varint_non_minimal_accepted);
    suite_add_tcase(s, tc);

    tc = tcase_create("frame");
    tcase_add_loop_test(tc, frame_every_first_byte, 0, 256);
    tcase_add_test(tc, frame_need_more);
    tcase_add_test(tc, frame_five_byte_length);
    tcase_add_test(tc, frame_oversize_before_body);
    tcase_add_test(tc, frame_first_of_two);
    tcase_add_loop_test(tc, frame_every_truncation, 0, SAMPLES);
    suite_add_tcase(s, tc);

    tc = tcase_create("decode");
    tcase_add_loop_test(tc, packet_table, 0, (int)(sizeof packets / sizeof packets[0]));
    tcase_add_test(tc, decode_connect_fields);
    tcase_add_test(tc, decode_publish_fields);
    tcase_add_test(tc, decode_subscribe_iterate);
    tcase_add_test(tc, decode_acks_fields);
    tcase_add_test(tc, decode_wrong_type);
    suite_add_tcase(s, tc);

    tc = tcase_create("roundtrip");
    tcase_add_test(tc, roundtrip_connect);
    tcase_add_test(tc, roundtrip_connack);
    tcase_add_test(tc, roundtrip_publish);
    tcase_add_test(tc, roundtrip_acks);
    tcase_add_test(tc, roundtrip_subscribe_unsubscribe);
    tcase_add_test(tc, roundtrip_suback_and_empty);
    tcase_add_loop_test(tc, publish_remaining_boundaries, 0, 6);
    tcase_add_test(tc, publish_header_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_loop_test(tc, encode_never_past_cap, 0, SAMPLES);
    tcase_add_test(tc, encode_bad_arguments);
    tcase_add_test(tc, encode_remaining_too_large);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
