/*
 * test_mqtt5.c -- the MQTT 5.0 codec: every property (type, the packets
 * that may carry it, duplicates, lengths, values), every reason code per
 * packet, every malformed case, and encode/decode round trips of all 15
 * packet types at protocol level 5.
 *
 * The expectations are written here from the specification (MQTT Version
 * 5.0, OASIS Standard, 7 March 2019), independently of the tables in mqtt/:
 * table 2-4 (properties), table 2-6 (reason codes), chapter 3 (packets).
 * Rows cite the section or conformance statement they prove.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt.h"

#define BYTES(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
#define IN(x) (1u << (x))

/* Places a property block can sit in (packet types, and will properties). */
#define CONN IN(MQTT_CONNECT)
#define CACK IN(MQTT_CONNACK)
#define PUBL IN(MQTT_PUBLISH)
#define PACK IN(MQTT_PUBACK)
#define PREC IN(MQTT_PUBREC)
#define PREL IN(MQTT_PUBREL)
#define PCMP IN(MQTT_PUBCOMP)
#define SUBS IN(MQTT_SUBSCRIBE)
#define SACK IN(MQTT_SUBACK)
#define UNSU IN(MQTT_UNSUBSCRIBE)
#define UACK IN(MQTT_UNSUBACK)
#define DISC IN(MQTT_DISCONNECT)
#define AUTH IN(MQTT_AUTH)
#define WILL IN(MQTT_PROPS_WILL)

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

/* Level-5 decoder for h->type, result discarded. */
static int decode5_any(const mqtt_header *h)
{
    mqtt5_connect c;
    mqtt5_connack ca;
    mqtt5_publish p;
    mqtt5_ack a;
    mqtt5_sublist sl;
    mqtt5_suback sa;
    switch (h->type) {
    case MQTT_CONNECT:
        return mqtt5_decode_connect(h, &c);
    case MQTT_CONNACK:
        return mqtt5_decode_connack(h, &ca);
    case MQTT_PUBLISH:
        return mqtt5_decode_publish(h, &p);
    case MQTT_SUBSCRIBE:
        return mqtt5_decode_subscribe(h, &sl);
    case MQTT_UNSUBSCRIBE:
        return mqtt5_decode_unsubscribe(h, &sl);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return mqtt5_decode_suback(h, &sa);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return mqtt_decode_empty(h);
    default:
        return mqtt5_decode_ack(h, &a);
    }
}

/* Frame at level 5 (must be exactly n bytes), then decode. */
static int frame_decode5(const uint8_t *buf, size_t n)
{
    mqtt_header h;
    size_t plen = 0;
    int rc = mqtt_frame_level(buf, n, 0, 5, &h, &plen);
    if (rc != MQTT_OK) return rc;
    ck_assert_uint_eq(plen, n);
    return decode5_any(&h);
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

/* ---- every property: type, places, duplicates, lengths ------------------ */

/* One row per property of table 2-4: a valid encoded value and the places
 * the spec lets it appear ("Used in" column; "Will Properties" = WILL). */
static const struct prop_row {
    uint8_t id;
    uint8_t type;
    uint8_t val[8];
    size_t vlen;
    uint32_t num; /* integer value of val for integer types */
    const char *str;
    uint32_t where;
} prop_rows[] = {
    /* 3.3.2.3.2, 3.1.3.2.3 */
    {0x01, MQTT_PTYPE_BYTE, {1}, 1, 1, NULL, PUBL | WILL},
    /* 3.3.2.3.3, 3.1.3.2.4 */
    {0x02, MQTT_PTYPE_U32, {0, 0, 0x0e, 0x10}, 4, 3600, NULL, PUBL | WILL},
    /* 3.3.2.3.9, 3.1.3.2.5 */
    {0x03, MQTT_PTYPE_UTF8, {0, 4, 't', 'e', 'x', 't'}, 6, 0, "text", PUBL | WILL},
    /* 3.3.2.3.5, 3.1.3.2.6 */
    {0x08, MQTT_PTYPE_UTF8, {0, 3, 'r', '/', '1'}, 5, 0, "r/1", PUBL | WILL},
    /* 3.3.2.3.6, 3.1.3.2.7 */
    {0x09, MQTT_PTYPE_BINARY, {0, 2, 'a', 'b'}, 4, 0, "ab", PUBL | WILL},
    /* 3.3.2.3.8, 3.8.2.1.2: variable byte integer 128 = 0x80 0x01 */
    {0x0B, MQTT_PTYPE_VARINT, {0x80, 0x01}, 2, 128, NULL, PUBL | SUBS},
    /* 3.1.2.11.2, 3.2.2.3.2, 3.14.2.2.2 */
    {0x11, MQTT_PTYPE_U32, {0, 0, 0, 60}, 4, 60, NULL, CONN | CACK | DISC},
    /* 3.2.2.3.7 */
    {0x12, MQTT_PTYPE_UTF8, {0, 2, 'i', 'd'}, 4, 0, "id", CACK},
    /* 3.2.2.3.14 */
    {0x13, MQTT_PTYPE_U16, {0, 30}, 2, 30, NULL, CACK},
    /* 3.1.2.11.9, 3.2.2.3.17, 3.15.2.2.2 */
    {0x15, MQTT_PTYPE_UTF8, {0, 5, 'P', 'L', 'A', 'I', 'N'}, 7, 0, "PLAIN", CONN | CACK | AUTH},
    /* 3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.3 */
    {0x16, MQTT_PTYPE_BINARY, {0, 1, 'x'}, 3, 0, "x", CONN | CACK | AUTH},
    /* 3.1.2.11.7 */
    {0x17, MQTT_PTYPE_BYTE, {1}, 1, 1, NULL, CONN},
    /* 3.1.3.2.2 */
    {0x18, MQTT_PTYPE_U32, {0, 0, 1, 0}, 4, 256, NULL, WILL},
    /* 3.1.2.11.6 */
    {0x19, MQTT_PTYPE_BYTE, {1}, 1, 1, NULL, CONN},
    /* 3.2.2.3.15 */
    {0x1A, MQTT_PTYPE_UTF8, {0, 1, 'r'}, 3, 0, "r", CACK},
    /* 3.2.2.3.16, 3.14.2.2.5 */
    {0x1C, MQTT_PTYPE_UTF8, {0, 2, 'h', '2'}, 4, 0, "h2", CACK | DISC},
    /* 3.2.2.3.9, 3.4.2.2.2, 3.5.2.2.2, 3.6.2.2.2, 3.7.2.2.2, 3.9.2.1.2, 3.11.2.1.2,
     * 3.14.2.2.3, 3.15.2.2.4 */
    {0x1F,
     MQTT_PTYPE_UTF8,
     {0, 2, 'o', 'k'},
     4,
     0,
     "ok",
     CACK | PACK | PREC | PREL | PCMP | SACK | UACK | DISC | AUTH},
    /* 3.1.2.11.3, 3.2.2.3.3 */
    {0x21, MQTT_PTYPE_U16, {0, 10}, 2, 10, NULL, CONN | CACK},
    /* 3.1.2.11.5, 3.2.2.3.8 */
    {0x22, MQTT_PTYPE_U16, {0, 5}, 2, 5, NULL, CONN | CACK},
    /* 3.3.2.3.4 */
    {0x23, MQTT_PTYPE_U16, {0, 1}, 2, 1, NULL, PUBL},
    /* 3.2.2.3.4 */
    {0x24, MQTT_PTYPE_BYTE, {1}, 1, 1, NULL, CACK},
    /* 3.2.2.3.5 */
    {0x25, MQTT_PTYPE_BYTE, {0}, 1, 0, NULL, CACK},
    /* User Property: every packet with properties, and will properties */
    {0x26,
     MQTT_PTYPE_PAIR,
     {0, 1, 'k', 0, 1, 'v'},
     6,
     0,
     "k",
     CONN | CACK | PUBL | PACK | PREC | PREL | PCMP | SUBS | SACK | UNSU | UACK | DISC | AUTH |
         WILL},
    /* 3.1.2.11.4, 3.2.2.3.6 */
    {0x27, MQTT_PTYPE_U32, {0, 0, 0x10, 0}, 4, 4096, NULL, CONN | CACK},
    /* 3.2.2.3.11 */
    {0x28, MQTT_PTYPE_BYTE, {1}, 1, 1, NULL, CACK},
    /* 3.2.2.3.12 */
    {0x29, MQTT_PTYPE_BYTE, {1}, 1, 1, NULL, CACK},
    /* 3.2.2.3.13 */
    {0x2A, MQTT_PTYPE_BYTE, {0}, 1, 0, NULL, CACK},
};
#define NPROPS ((int)(sizeof prop_rows / sizeof prop_rows[0]))

/* [id value] (twice when dup) into out; with an Authentication Method
 * appended in a CONNECT so Authentication Data is not alone (3.1.2.11.10). */
static size_t prop_block(uint8_t *out, const struct prop_row *r, bool dup, int where)
{
    size_t n = 0;
    for (int k = 0; k < (dup ? 2 : 1); k++) {
        out[n++] = r->id;
        memcpy(out + n, r->val, r->vlen);
        n += r->vlen;
    }
    if (r->id == MQTT_PROP_AUTH_DATA && where == MQTT_CONNECT) {
        memcpy(out + n, (const uint8_t[]){0x15, 0, 1, 'M'}, 4);
        n += 4;
    }
    return n;
}

/* Table 2-4: the property is accepted exactly in its places; its type is
 * the spec's; the iterator gives the value back. */
START_TEST(property_places)
{
    const struct prop_row *r = &prop_rows[_i];
    ck_assert_int_eq(mqtt_prop_type_of(r->id), r->type);
    ck_assert_ptr_nonnull(mqtt_prop_name(r->id));
    for (int where = 1; where <= MQTT_PROPS_WILL; where++) {
        uint8_t blk[32];
        size_t n = prop_block(blk, r, false, where);
        mqtt_props pr;
        int rc = mqtt_props_parse(blk, n, where, &pr);
        bool allowed = (r->where & IN(where)) != 0;
        ck_assert_msg(rc == (allowed ? MQTT_OK : MQTT_ERR_PROP_NOT_ALLOWED),
                      "property 0x%02x in place %d: %s", r->id, where, mqtt_strerror(rc));
        ck_assert(mqtt_prop_allowed(r->id, where) == allowed);
        if (!allowed) continue;
        ck_assert(mqtt_props_has(&pr, r->id));
        mqtt_prop_iter it;
        mqtt_prop p;
        mqtt_prop_iter_init(&it, &pr.raw);
        ck_assert(mqtt_prop_next(&it, &p));
        ck_assert_uint_eq(p.id, r->id);
        ck_assert_uint_eq(p.type, r->type);
        if (r->str)
            ck_assert(str_eq(p.str, r->str));
        else
            ck_assert_uint_eq(p.num, r->num);
    }
}
END_TEST

/* Each property at most once, except User Property anywhere and
 * Subscription Identifier in PUBLISH [MQTT-3.3.4-4]; a second one in a
 * SUBSCRIBE is a Protocol Error (3.8.2.1.2). */
START_TEST(property_duplicates)
{
    const struct prop_row *r = &prop_rows[_i];
    for (int where = 1; where <= MQTT_PROPS_WILL; where++) {
        if (!(r->where & IN(where))) continue;
        uint8_t blk[48];
        size_t n = prop_block(blk, r, true, where);
        mqtt_props pr;
        int rc = mqtt_props_parse(blk, n, where, &pr);
        bool may_repeat = r->id == MQTT_PROP_USER ||
                          (r->id == MQTT_PROP_SUBSCRIPTION_ID && where == MQTT_PUBLISH);
        ck_assert_msg(rc == (may_repeat ? MQTT_OK : MQTT_ERR_PROP_DUP),
                      "property 0x%02x twice in place %d: %s", r->id, where, mqtt_strerror(rc));
        if (may_repeat && r->id == MQTT_PROP_USER) ck_assert_uint_eq(pr.user_count, 2);
        if (may_repeat && r->id != MQTT_PROP_USER) ck_assert_uint_eq(pr.sub_id_count, 2);
    }
}
END_TEST

/* A value cut short anywhere, and a property length that does not match
 * the block, are refused (2.2.2.1); a Property Length of 0 is "none"
 * [MQTT-2.2.2-1]. */
START_TEST(property_lengths)
{
    const struct prop_row *r = &prop_rows[_i];
    int where = __builtin_ctz(r->where);
    uint8_t blk[40];
    size_t n = 1 + r->vlen;
    prop_block(blk + 1, r, false, -1);
    mqtt_props pr;
    size_t used;
    for (size_t cut = 1; cut < n; cut++) {
        int rc = mqtt_props_parse(blk + 1, cut, where, &pr);
        ck_assert_msg(rc == MQTT_ERR_PROP_LENGTH, "0x%02x cut at %zu: %s", r->id, cut,
                      mqtt_strerror(rc));
        blk[0] = (uint8_t)cut; /* length prefix claims less than the property */
        ck_assert_int_eq(mqtt_props_decode(blk, 1 + n, where, &pr, &used), MQTT_ERR_PROP_LENGTH);
    }
    blk[0] = (uint8_t)(n + 1); /* claims one byte more than there is */
    ck_assert_int_eq(mqtt_props_decode(blk, 1 + n, where, &pr, &used), MQTT_ERR_PROP_LENGTH);
    if (r->id == MQTT_PROP_AUTH_DATA) return; /* alone it is AUTH_DATA in a CONNECT */
    blk[0] = (uint8_t)n;
    ck_assert_int_eq(mqtt_props_decode(blk, 1 + n, where, &pr, &used), MQTT_OK);
    ck_assert_uint_eq(used, 1 + n);
    ck_assert_uint_eq(pr.raw.len, n);
    blk[0] = 0;
    ck_assert_int_eq(mqtt_props_decode(blk, 1, where, &pr, &used), MQTT_OK);
    ck_assert_uint_eq(used, 1);
    ck_assert_uint_eq(pr.present, 0);
}
END_TEST

/* ---- malformed property blocks ------------------------------------------ */

static const struct bad_block {
    const char *name;
    int where;
    const uint8_t *blk;
    size_t n;
    int rc;
} bad_blocks[] = {
    /* 2.2.2.2: identifiers not in table 2-4 */
    {"id 0x00", MQTT_PUBLISH, BYTES(0x00, 1), MQTT_ERR_PROP_ID},
    {"id 0x04", MQTT_PUBLISH, BYTES(0x04, 1), MQTT_ERR_PROP_ID},
    {"id 0x0A", MQTT_PUBLISH, BYTES(0x0A, 1), MQTT_ERR_PROP_ID},
    {"id 0x14", MQTT_CONNECT, BYTES(0x14, 1), MQTT_ERR_PROP_ID},
    {"id 0x1B", MQTT_CONNACK, BYTES(0x1B, 1), MQTT_ERR_PROP_ID},
    {"id 0x20", MQTT_CONNACK, BYTES(0x20, 1), MQTT_ERR_PROP_ID},
    {"id 0x2B", MQTT_CONNACK, BYTES(0x2B, 1), MQTT_ERR_PROP_ID},
    {"id 0x7F", MQTT_CONNACK, BYTES(0x7F, 1), MQTT_ERR_PROP_ID},
    {"id 128 as a varint", MQTT_CONNACK, BYTES(0x80, 0x01, 1), MQTT_ERR_PROP_ID},
    /* [MQTT-1.5.5-1]: identifier 1 in two bytes is not minimal */
    {"id non-minimal varint", MQTT_PUBLISH, BYTES(0x81, 0x00, 1), MQTT_ERR_VARINT},
    {"id 5-byte varint", MQTT_PUBLISH, BYTES(0x81, 0x80, 0x80, 0x80, 0x00), MQTT_ERR_VARINT},
    /* table 2-4: valid property, wrong packet */
    {"Topic Alias in CONNECT", MQTT_CONNECT, BYTES(0x23, 0, 1), MQTT_ERR_PROP_NOT_ALLOWED},
    {"Will Delay in CONNECT", MQTT_CONNECT, BYTES(0x18, 0, 0, 0, 1), MQTT_ERR_PROP_NOT_ALLOWED},
    {"Session Expiry in will", MQTT_PROPS_WILL, BYTES(0x11, 0, 0, 0, 1), MQTT_ERR_PROP_NOT_ALLOWED},
    {"Reason String in PUBLISH", MQTT_PUBLISH, BYTES(0x1F, 0, 0), MQTT_ERR_PROP_NOT_ALLOWED},
    {"Subscription Id in UNSUBSCRIBE", MQTT_UNSUBSCRIBE, BYTES(0x0B, 1), MQTT_ERR_PROP_NOT_ALLOWED},
    {"User Property in PINGREQ", MQTT_PINGREQ, BYTES(0x26, 0, 0, 0, 0), MQTT_ERR_PROP_NOT_ALLOWED},
    /* duplicates are Protocol Errors (e.g. 3.1.2.11.2, 3.2.2.3.2) */
    {"Session Expiry twice", MQTT_CONNECT, BYTES(0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2),
     MQTT_ERR_PROP_DUP},
    {"Reason String twice", MQTT_DISCONNECT, BYTES(0x1F, 0, 0, 0x26, 0, 0, 0, 0, 0x1F, 0, 0),
     MQTT_ERR_PROP_DUP},
    {"Subscription Id twice in SUBSCRIBE (3.8.2.1.2)", MQTT_SUBSCRIBE, BYTES(0x0B, 1, 0x0B, 2),
     MQTT_ERR_PROP_DUP},
    /* values out of range */
    {"Receive Maximum 0 (3.1.2.11.3)", MQTT_CONNECT, BYTES(0x21, 0, 0), MQTT_ERR_PROP_VALUE},
    {"Receive Maximum 0 (3.2.2.3.3)", MQTT_CONNACK, BYTES(0x21, 0, 0), MQTT_ERR_PROP_VALUE},
    {"Maximum Packet Size 0 (3.1.2.11.4)", MQTT_CONNECT, BYTES(0x27, 0, 0, 0, 0),
     MQTT_ERR_PROP_VALUE},
    {"Topic Alias 0 [MQTT-3.3.2-8]", MQTT_PUBLISH, BYTES(0x23, 0, 0), MQTT_ERR_PROP_VALUE},
    {"Subscription Id 0 (3.3.2.3.8)", MQTT_SUBSCRIBE, BYTES(0x0B, 0), MQTT_ERR_PROP_VALUE},
    {"Subscription Id non-minimal [MQTT-1.5.5-1]", MQTT_SUBSCRIBE, BYTES(0x0B, 0x81, 0x00),
     MQTT_ERR_VARINT},
    {"Subscription Id 5 bytes", MQTT_PUBLISH, BYTES(0x0B, 0xff, 0xff, 0xff, 0xff, 0x01),
     MQTT_ERR_VARINT},
    {"Payload Format 2", MQTT_PUBLISH, BYTES(0x01, 2), MQTT_ERR_PROP_VALUE},
    {"Request Problem Information 2 (3.1.2.11.7)", MQTT_CONNECT, BYTES(0x17, 2),
     MQTT_ERR_PROP_VALUE},
    {"Request Response Information 2 (3.1.2.11.6)", MQTT_CONNECT, BYTES(0x19, 2),
     MQTT_ERR_PROP_VALUE},
    {"Maximum QoS 2 (3.2.2.3.4)", MQTT_CONNACK, BYTES(0x24, 2), MQTT_ERR_PROP_VALUE},
    {"Retain Available 2 (3.2.2.3.5)", MQTT_CONNACK, BYTES(0x25, 2), MQTT_ERR_PROP_VALUE},
    {"Wildcard Sub Available 2 (3.2.2.3.11)", MQTT_CONNACK, BYTES(0x28, 2), MQTT_ERR_PROP_VALUE},
    {"Sub Id Available 2 (3.2.2.3.12)", MQTT_CONNACK, BYTES(0x29, 0xff), MQTT_ERR_PROP_VALUE},
    {"Shared Sub Available 2 (3.2.2.3.13)", MQTT_CONNACK, BYTES(0x2A, 2), MQTT_ERR_PROP_VALUE},
    {"Response Topic with + [MQTT-3.3.2-14]", MQTT_PUBLISH, BYTES(0x08, 0, 3, 'a', '/', '+'),
     MQTT_ERR_PROP_VALUE},
    {"Response Topic with # in will", MQTT_PROPS_WILL, BYTES(0x08, 0, 1, '#'), MQTT_ERR_PROP_VALUE},
    {"Response Topic empty", MQTT_PUBLISH, BYTES(0x08, 0, 0), MQTT_ERR_PROP_VALUE},
    /* UTF-8 Encoded Strings [MQTT-1.5.4-1], [MQTT-1.5.4-2], pairs [MQTT-1.5.7-1] */
    {"Content Type with U+0000", MQTT_PUBLISH, BYTES(0x03, 0, 2, 'a', 0), MQTT_ERR_UTF8},
    {"Reason String surrogate", MQTT_PUBACK, BYTES(0x1F, 0, 3, 0xed, 0xa0, 0x80), MQTT_ERR_UTF8},
    {"User Property bad name", MQTT_AUTH, BYTES(0x26, 0, 1, 0xff, 0, 0), MQTT_ERR_UTF8},
    {"User Property bad value", MQTT_AUTH, BYTES(0x26, 0, 0, 0, 1, 0xc0), MQTT_ERR_UTF8},
    /* binary data is not UTF-8 checked */
    {"Correlation Data binary", MQTT_PUBLISH, BYTES(0x09, 0, 2, 0xff, 0x00), MQTT_OK},
    /* 3.1.2.11.10 */
    {"Auth Data without Method", MQTT_CONNECT, BYTES(0x16, 0, 1, 'x'), MQTT_ERR_AUTH_DATA},
    {"Auth Data with Method", MQTT_CONNECT, BYTES(0x16, 0, 1, 'x', 0x15, 0, 1, 'M'), MQTT_OK},
    /* truncated values (2.2.2.1) */
    {"Four-byte integer cut", MQTT_PUBLISH, BYTES(0x02, 0, 0, 1), MQTT_ERR_PROP_LENGTH},
    {"String longer than the block", MQTT_PUBLISH, BYTES(0x03, 0, 9, 'a'), MQTT_ERR_PROP_LENGTH},
    {"Pair without value", MQTT_PUBLISH, BYTES(0x26, 0, 1, 'k'), MQTT_ERR_PROP_LENGTH},
    {"Varint cut", MQTT_PUBLISH, BYTES(0x0B, 0x80, 0x80), MQTT_ERR_PROP_LENGTH},
};

START_TEST(bad_block_table)
{
    const struct bad_block *b = &bad_blocks[_i];
    mqtt_props pr;
    int rc = mqtt_props_parse(b->blk, b->n, b->where, &pr);
    ck_assert_msg(rc == b->rc, "%s: got %d (%s), want %d", b->name, rc, mqtt_strerror(rc), b->rc);
}
END_TEST

/* The property length itself is a variable byte integer [MQTT-1.5.5-1]. */
START_TEST(property_length_varint)
{
    mqtt_props pr;
    size_t used;
    ck_assert_int_eq(mqtt_props_decode(BYTES(0x80, 0x00), MQTT_PUBLISH, &pr, &used),
                     MQTT_ERR_VARINT);
    ck_assert_int_eq(
        mqtt_props_decode(BYTES(0xff, 0xff, 0xff, 0xff, 0x7f), MQTT_PUBLISH, &pr, &used),
        MQTT_ERR_VARINT);
    ck_assert_int_eq(mqtt_props_decode(BYTES(0x80), MQTT_PUBLISH, &pr, &used),
                     MQTT_ERR_PROP_LENGTH);
    ck_assert_int_eq(mqtt_props_decode(NULL, 0, MQTT_PUBLISH, &pr, &used), MQTT_ERR_PROP_LENGTH);
    /* a 128-byte block needs a two-byte length */
    uint8_t blk[2 + 128];
    blk[0] = 0x80;
    blk[1] = 0x01;
    blk[2] = 0x26; /* user property "" = 124 bytes of 'v' */
    blk[3] = 0;
    blk[4] = 0;
    blk[5] = 0;
    blk[6] = 123;
    memset(blk + 7, 'v', 123);
    ck_assert_int_eq(mqtt_props_decode(blk, sizeof blk, MQTT_PUBLISH, &pr, &used), MQTT_OK);
    ck_assert_uint_eq(used, sizeof blk);
    ck_assert_uint_eq(pr.user_count, 1);
}
END_TEST

/* ---- malformed packets at level 5 --------------------------------------- */

#define MQTT5 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05
#define CID 0x00, 0x01, 'c'
#define AB 0x00, 0x03, 'a', '/', 'b'

static const struct bad_packet {
    const char *name;
    uint8_t byte0;
    const uint8_t *body;
    size_t n;
    int rc;
} packets[] = {
    /* CONNECT (3.1) */
    {"connect minimal", 0x10, BYTES(MQTT5, 0x02, 0, 60, 0, CID), MQTT_OK},
    {"connect reserved flag [MQTT-3.1.2-3]", 0x10, BYTES(MQTT5, 0x03, 0, 60, 0, CID),
     MQTT_ERR_CONNECT_FLAGS},
    {"connect will qos without will [MQTT-3.1.2-13]", 0x10, BYTES(MQTT5, 0x08, 0, 60, 0, CID),
     MQTT_ERR_CONNECT_FLAGS},
    {"connect will retain without will [MQTT-3.1.2-15]", 0x10, BYTES(MQTT5, 0x20, 0, 60, 0, CID),
     MQTT_ERR_CONNECT_FLAGS},
    {"connect will qos 3 [MQTT-3.1.2-14]", 0x10,
     BYTES(MQTT5, 0x1c, 0, 60, 0, CID, 0, 0, 1, 'w', 0, 0), MQTT_ERR_CONNECT_FLAGS},
    {"connect password without user name (3.1.2.9)", 0x10,
     BYTES(MQTT5, 0x42, 0, 60, 0, CID, 0, 2, 'p', 'w'), MQTT_OK},
    {"connect will with will properties", 0x10,
     BYTES(MQTT5, 0x06, 0, 60, 0, CID, 5, 0x18, 0, 0, 0, 9, 0, 1, 'w', 0, 0), MQTT_OK},
    {"connect will property not allowed (table 2-4)", 0x10,
     BYTES(MQTT5, 0x06, 0, 60, 0, CID, 3, 0x23, 0, 1, 0, 1, 'w', 0, 0), MQTT_ERR_PROP_NOT_ALLOWED},
    {"connect will topic with wildcard [MQTT-3.3.2-2]", 0x10,
     BYTES(MQTT5, 0x06, 0, 60, 0, CID, 0, 0, 1, '#', 0, 0), MQTT_ERR_TOPIC},
    {"connect property not allowed", 0x10, BYTES(MQTT5, 0x02, 0, 60, 2, 0x24, 1, CID),
     MQTT_ERR_PROP_NOT_ALLOWED},
    {"connect property length past the packet", 0x10, BYTES(MQTT5, 0x02, 0, 60, 9, CID),
     MQTT_ERR_PROP_LENGTH},
    {"connect without properties length", 0x10, BYTES(MQTT5, 0x02, 0, 60), MQTT_ERR_PROP_LENGTH},
    {"connect trailing byte [MQTT-3.1.4-1]", 0x10, BYTES(MQTT5, 0x02, 0, 60, 0, CID, 0),
     MQTT_ERR_LENGTH},
    {"connect MQIsdp level 5 [MQTT-3.1.2-2]", 0x10,
     BYTES(0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 5, 2, 0, 60, 0, CID), MQTT_ERR_PROTOCOL_LEVEL},
    {"connect level 6 [MQTT-3.1.2-2]", 0x10, BYTES(0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 60, 0, CID),
     MQTT_ERR_PROTOCOL_LEVEL},
    {"connect level 4 decoded as 3.1.1", 0x10, BYTES(0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, CID),
     MQTT_OK},
    /* CONNACK (3.2) */
    {"connack ok", 0x20, BYTES(1, 0, 0), MQTT_OK},
    {"connack reserved flags [MQTT-3.2.2-1]", 0x20, BYTES(2, 0, 0), MQTT_ERR_CONNACK},
    {"connack session present with failure [MQTT-3.2.2-6]", 0x20, BYTES(1, 0x80, 0),
     MQTT_ERR_CONNACK},
    {"connack reason 0x04 [MQTT-3.2.2-8]", 0x20, BYTES(0, 0x04, 0), MQTT_ERR_REASON},
    {"connack reason 0x8E [MQTT-3.2.2-8]", 0x20, BYTES(0, 0x8E, 0), MQTT_ERR_REASON},
    {"connack without property length", 0x20, BYTES(0, 0), MQTT_ERR_PROP_LENGTH},
    {"connack Topic Alias not allowed", 0x20, BYTES(0, 0, 3, 0x23, 0, 1),
     MQTT_ERR_PROP_NOT_ALLOWED},
    /* PUBLISH (3.3) */
    {"publish qos0", 0x30, BYTES(AB, 0, 'x'), MQTT_OK},
    {"publish qos1 no payload", 0x32, BYTES(AB, 0, 7, 0), MQTT_OK},
    {"publish empty topic with alias (3.3.2.3.4)", 0x30, BYTES(0, 0, 3, 0x23, 0, 4), MQTT_OK},
    {"publish empty topic without alias", 0x30, BYTES(0, 0, 0), MQTT_ERR_TOPIC_ALIAS},
    {"publish wildcard topic [MQTT-3.3.2-2]", 0x30, BYTES(0, 1, '+', 0), MQTT_ERR_TOPIC},
    {"publish packet id 0 [MQTT-2.2.1-3]", 0x32, BYTES(AB, 0, 0, 0), MQTT_ERR_PACKET_ID},
    {"publish qos 3 [MQTT-3.3.1-4]", 0x36, BYTES(AB, 0, 1, 0), MQTT_ERR_QOS},
    {"publish property not allowed", 0x30, BYTES(AB, 3, 0x13, 0, 1), MQTT_ERR_PROP_NOT_ALLOWED},
    {"publish two subscription ids [MQTT-3.3.4-4]", 0x30, BYTES(AB, 4, 0x0B, 1, 0x0B, 2), MQTT_OK},
    {"publish properties past the packet", 0x30, BYTES(AB, 5, 0x23, 0), MQTT_ERR_PROP_LENGTH},
    /* PUBACK .. PUBCOMP (3.4 - 3.7) */
    {"puback short form", 0x40, BYTES(0, 1), MQTT_OK},
    {"puback reason only", 0x40, BYTES(0, 1, 0x10), MQTT_OK},
    {"puback reason and properties", 0x40, BYTES(0, 1, 0x87, 3, 0x1F, 0, 0), MQTT_OK},
    {"puback reason 0x92 [MQTT-3.4.2-1]", 0x40, BYTES(0, 1, 0x92), MQTT_ERR_REASON},
    {"puback packet id 0", 0x40, BYTES(0, 0), MQTT_ERR_PACKET_ID},
    {"puback truncated id", 0x40, BYTES(0), MQTT_ERR_LENGTH},
    {"puback properties past the packet", 0x40, BYTES(0, 1, 0, 4, 0x1F, 0), MQTT_ERR_PROP_LENGTH},
    {"puback trailing byte", 0x40, BYTES(0, 1, 0, 0, 9), MQTT_ERR_LENGTH},
    {"puback property not allowed", 0x40, BYTES(0, 1, 0, 3, 0x23, 0, 1), MQTT_ERR_PROP_NOT_ALLOWED},
    {"pubrec reason 0x92 [MQTT-3.5.2-1]", 0x50, BYTES(0, 1, 0x92), MQTT_ERR_REASON},
    {"pubrel reason 0x92", 0x62, BYTES(0, 1, 0x92), MQTT_OK},
    {"pubrel reason 0x10 [MQTT-3.6.2-1]", 0x62, BYTES(0, 1, 0x10), MQTT_ERR_REASON},
    {"pubrel flags 0 [MQTT-3.6.1-1]", 0x60, BYTES(0, 1), MQTT_ERR_FLAGS},
    {"pubcomp reason 0x80 [MQTT-3.7.2-1]", 0x70, BYTES(0, 1, 0x80), MQTT_ERR_REASON},
    /* SUBSCRIBE (3.8) */
    {"subscribe ok", 0x82, BYTES(0, 1, 0, AB, 0x2e), MQTT_OK},
    {"subscribe reserved option bit 6 [MQTT-3.8.3-5]", 0x82, BYTES(0, 1, 0, AB, 0x40),
     MQTT_ERR_SUB_OPTIONS},
    {"subscribe reserved option bit 7 [MQTT-3.8.3-5]", 0x82, BYTES(0, 1, 0, AB, 0x80),
     MQTT_ERR_SUB_OPTIONS},
    {"subscribe qos 3", 0x82, BYTES(0, 1, 0, AB, 0x03), MQTT_ERR_SUB_QOS},
    {"subscribe retain handling 3 (3.8.3.1)", 0x82, BYTES(0, 1, 0, AB, 0x30),
     MQTT_ERR_RETAIN_HANDLING},
    {"subscribe no local on shared [MQTT-3.8.3-4]", 0x82,
     BYTES(0, 1, 0, 0, 11, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 'b', 0x04),
     MQTT_ERR_SHARED_NO_LOCAL},
    {"subscribe shared without no local", 0x82,
     BYTES(0, 1, 0, 0, 11, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 'b', 0x01), MQTT_OK},
    {"subscribe no filter [MQTT-3.8.3-2]", 0x82, BYTES(0, 1, 0), MQTT_ERR_EMPTY},
    {"subscribe subscription id", 0x82, BYTES(0, 1, 2, 0x0B, 5, AB, 0), MQTT_OK},
    {"subscribe subscription id 0", 0x82, BYTES(0, 1, 2, 0x0B, 0, AB, 0), MQTT_ERR_PROP_VALUE},
    {"subscribe options missing", 0x82, BYTES(0, 1, 0, AB), MQTT_ERR_LENGTH},
    {"subscribe bad filter [MQTT-4.7.1-2]", 0x82, BYTES(0, 1, 0, 0, 2, 'a', '#', 0),
     MQTT_ERR_FILTER},
    {"subscribe flags [MQTT-3.8.1-1]", 0x80, BYTES(0, 1, 0, AB, 0), MQTT_ERR_FLAGS},
    /* SUBACK (3.9), UNSUBSCRIBE (3.10), UNSUBACK (3.11) */
    {"suback ok", 0x90, BYTES(0, 1, 0, 0x00, 0x01, 0x02, 0x9E), MQTT_OK},
    {"suback reason 0x11 [MQTT-3.9.3-2]", 0x90, BYTES(0, 1, 0, 0x11), MQTT_ERR_REASON},
    {"suback without codes", 0x90, BYTES(0, 1, 0), MQTT_ERR_EMPTY},
    {"unsubscribe ok", 0xa2, BYTES(0, 1, 0, AB), MQTT_OK},
    {"unsubscribe subscription id not allowed", 0xa2, BYTES(0, 1, 2, 0x0B, 1, AB),
     MQTT_ERR_PROP_NOT_ALLOWED},
    {"unsubscribe no filter [MQTT-3.10.3-2]", 0xa2, BYTES(0, 1, 0), MQTT_ERR_EMPTY},
    {"unsuback ok", 0xb0, BYTES(0, 1, 0, 0x00, 0x11), MQTT_OK},
    {"unsuback reason 0x01 [MQTT-3.11.3-2]", 0xb0, BYTES(0, 1, 0, 0x01), MQTT_ERR_REASON},
    /* PINGREQ, PINGRESP (3.12, 3.13) */
    {"pingreq", 0xc0, NULL, 0, MQTT_OK},
    {"pingresp with a byte", 0xd0, BYTES(0), MQTT_ERR_LENGTH},
    /* DISCONNECT (3.14) */
    {"disconnect empty", 0xe0, NULL, 0, MQTT_OK},
    {"disconnect reason 0x8E", 0xe0, BYTES(0x8E), MQTT_OK},
    {"disconnect reason and session expiry", 0xe0, BYTES(0x04, 5, 0x11, 0, 0, 0, 0), MQTT_OK},
    {"disconnect reason 0x10 [MQTT-3.14.2-1]", 0xe0, BYTES(0x10), MQTT_ERR_REASON},
    {"disconnect reason 0x84 [MQTT-3.14.2-1]", 0xe0, BYTES(0x84), MQTT_ERR_REASON},
    {"disconnect flags [MQTT-3.14.1-1]", 0xe1, NULL, 0, MQTT_ERR_FLAGS},
    {"disconnect Receive Maximum not allowed", 0xe0, BYTES(0, 3, 0x21, 0, 1),
     MQTT_ERR_PROP_NOT_ALLOWED},
    /* AUTH (3.15) */
    {"auth empty: no method (3.15.2.2.2)", 0xf0, NULL, 0, MQTT_ERR_AUTH_METHOD},
    {"auth reason only: no method", 0xf0, BYTES(0x18), MQTT_ERR_AUTH_METHOD},
    {"auth reason string only: no method", 0xf0, BYTES(0x18, 3, 0x1F, 0, 0), MQTT_ERR_AUTH_METHOD},
    {"auth continue with method", 0xf0, BYTES(0x18, 4, 0x15, 0, 1, 'M'), MQTT_OK},
    {"auth reason 0x87 [MQTT-3.15.2-1]", 0xf0, BYTES(0x87), MQTT_ERR_REASON},
    {"auth flags [MQTT-3.15.1-1]", 0xf2, NULL, 0, MQTT_ERR_FLAGS},
    {"auth Session Expiry not allowed", 0xf0, BYTES(0x19, 5, 0x11, 0, 0, 0, 1),
     MQTT_ERR_PROP_NOT_ALLOWED},
    {"auth duplicate method", 0xf0, BYTES(0x18, 8, 0x15, 0, 1, 'M', 0x15, 0, 1, 'N'),
     MQTT_ERR_PROP_DUP},
};

START_TEST(packet_table)
{
    const struct bad_packet *p = &packets[_i];
    uint8_t buf[256];
    size_t n = build(buf, p->byte0, p->body, p->n);
    int rc = frame_decode5(buf, n);
    ck_assert_msg(rc == p->rc, "%s: got %d (%s), want %d", p->name, rc, mqtt_strerror(rc), p->rc);
}
END_TEST

/* ---- reason codes per packet (spec 2.4 table 2-6, tables 3-1 .. 3-11) --- */

static const struct reason_row {
    uint8_t type;
    const char *rule;
    const uint8_t *codes;
    size_t n;
} reason_rows[] = {
    {MQTT_CONNACK, "[MQTT-3.2.2-8] table 3-1",
     BYTES(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
           0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)},
    {MQTT_PUBACK, "[MQTT-3.4.2-1] table 3-4",
     BYTES(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)},
    {MQTT_PUBREC, "[MQTT-3.5.2-1] table 3-5",
     BYTES(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)},
    {MQTT_PUBREL, "[MQTT-3.6.2-1] table 3-6", BYTES(0x00, 0x92)},
    {MQTT_PUBCOMP, "[MQTT-3.7.2-1] table 3-7", BYTES(0x00, 0x92)},
    {MQTT_SUBACK, "[MQTT-3.9.3-2] table 3-8",
     BYTES(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)},
    {MQTT_UNSUBACK, "[MQTT-3.11.3-2] table 3-9", BYTES(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)},
    {MQTT_DISCONNECT, "[MQTT-3.14.2-1] table 3-10",
     BYTES(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
           0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
           0xA2)},
    {MQTT_AUTH, "[MQTT-3.15.2-1] table 3-11", BYTES(0x00, 0x18, 0x19)},
};

/* The packet carrying reason code rc, decoded at level 5. */
static int decode_with_reason(uint8_t type, uint8_t rc)
{
    uint8_t body[8], buf[16];
    size_t n = 0;
    if (type == MQTT_CONNACK) {
        body[n++] = 0;
        body[n++] = rc;
        body[n++] = 0;
    } else if (type == MQTT_DISCONNECT) {
        body[n++] = rc;
    } else if (type == MQTT_AUTH) { /* with its Authentication Method (3.15.2.2.2) */
        memcpy(body, (const uint8_t[]){rc, 4, 0x15, 0, 1, 'M'}, 6);
        n = 6;
    } else {
        body[n++] = 0;
        body[n++] = 1;
        if (type == MQTT_SUBACK || type == MQTT_UNSUBACK) body[n++] = 0;
        body[n++] = rc;
    }
    return frame_decode5(buf,
                         build(buf, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 2 : 0)), body, n));
}

/* The packet carrying reason code rc, encoded at level 5. */
static int encode_with_reason(uint8_t type, uint8_t rc)
{
    uint8_t buf[16];
    size_t n;
    if (type == MQTT_CONNACK) {
        mqtt5_connack c = {.reason = rc};
        return mqtt5_encode_connack(buf, sizeof buf, &c, &n);
    }
    if (type == MQTT_SUBACK || type == MQTT_UNSUBACK) {
        mqtt5_suback s = {.type = type, .packet_id = 1, .codes = &rc, .count = 1};
        return mqtt5_encode_suback(buf, sizeof buf, &s, &n);
    }
    mqtt5_ack a = {.type = type, .packet_id = 1, .reason = rc};
    if (type == MQTT_DISCONNECT || type == MQTT_AUTH) a.packet_id = 0;
    if (type == MQTT_AUTH) {
        static const uint8_t method[] = {0x15, 0, 1, 'M'};
        a.props.raw.ptr = method;
        a.props.raw.len = sizeof method;
    }
    return mqtt5_encode_ack(buf, sizeof buf, &a, &n);
}

/* All 256 codes in every packet that carries reason codes: the allowed
 * ones decode and encode, every other one is MQTT_ERR_REASON / _ARG. */
START_TEST(reason_code_table)
{
    const struct reason_row *r = &reason_rows[_i];
    for (unsigned code = 0; code < 256; code++) {
        bool allowed = memchr(r->codes, (int)code, r->n) != NULL;
        ck_assert_msg(mqtt5_reason_allowed(r->type, (uint8_t)code) == allowed, "%s 0x%02x %s",
                      mqtt_type_name(r->type), code, r->rule);
        int rc = decode_with_reason(r->type, (uint8_t)code);
        ck_assert_msg(rc == (allowed ? MQTT_OK : MQTT_ERR_REASON), "decode %s 0x%02x: %s",
                      mqtt_type_name(r->type), code, mqtt_strerror(rc));
        rc = encode_with_reason(r->type, (uint8_t)code);
        ck_assert_msg(rc == (allowed ? MQTT_OK : MQTT_ERR_ARG), "encode %s 0x%02x: %s",
                      mqtt_type_name(r->type), code, mqtt_strerror(rc));
        bool named = strcmp(mqtt5_reason_string(r->type, (uint8_t)code), "reserved") != 0;
        ck_assert(named == allowed);
    }
}
END_TEST

START_TEST(reason_names_and_errors)
{
    ck_assert_str_eq(mqtt5_reason_string(MQTT_DISCONNECT, 0), "Normal disconnection");
    ck_assert_str_eq(mqtt5_reason_string(MQTT_SUBACK, 0), "Granted QoS 0");
    ck_assert_str_eq(mqtt5_reason_string(MQTT_PUBACK, 0), "Success");
    ck_assert_str_eq(mqtt5_reason_string(MQTT_DISCONNECT, 0x8E), "Session taken over");
    ck_assert(!mqtt5_reason_allowed(MQTT_PUBLISH, 0));
    ck_assert(!mqtt5_reason_allowed(MQTT_CONNECT, 0));
    ck_assert(!mqtt5_reason_allowed(99, 0));
    /* 2.2.2.2 / 4.13: malformed vs protocol error */
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_PROP_ID), 0x81);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_PROP_NOT_ALLOWED), 0x81);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_SUB_OPTIONS), 0x81);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_LENGTH), 0x81);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_PROP_DUP), 0x82);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_RETAIN_HANDLING), 0x82);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_SHARED_NO_LOCAL), 0x82);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_TOO_LARGE), 0x95);
    ck_assert_uint_eq(mqtt5_reason_for_err(MQTT_ERR_PROTOCOL_LEVEL), 0x84);
    /* every new error has words with a spec reference */
    for (int e = MQTT_ERR_VARINT; e >= MQTT_ERR_AUTH_METHOD; e--) {
        const char *s = mqtt_strerror(e);
        ck_assert_msg(strstr(s, "MQTT") != NULL && strcmp(s, "unknown MQTT codec error") != 0,
                      "%d: %s", e, s);
    }
}
END_TEST

/* ---- framing at level 5 -------------------------------------------------- */

START_TEST(frame_levels)
{
    mqtt_header h;
    size_t plen;
    /* type 15 is reserved in 3.1.1 and stays so for mqtt_frame (spec 2.2.1) */
    ck_assert_int_eq(mqtt_frame(BYTES(0xf0, 0x00), 0, &h, &plen), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_frame_level(BYTES(0xf0, 0x00), 0, 4, &h, &plen), MQTT_ERR_TYPE);
    ck_assert_int_eq(mqtt_frame_level(BYTES(0xf0, 0x00), 0, 5, &h, &plen), MQTT_OK);
    ck_assert_uint_eq(h.type, MQTT_AUTH);
    ck_assert_int_eq(mqtt_frame_level(BYTES(0xf1, 0x00), 0, 5, &h, &plen), MQTT_ERR_FLAGS);
    /* non-minimal remaining length: accepted in 3.1.1, not in 5 [MQTT-1.5.5-1] */
    ck_assert_int_eq(mqtt_frame(BYTES(0xc0, 0x80, 0x00), 0, &h, &plen), MQTT_OK);
    ck_assert_int_eq(mqtt_frame_level(BYTES(0xc0, 0x80, 0x00), 0, 5, &h, &plen), MQTT_ERR_VARINT);
    ck_assert_int_eq(mqtt_frame_level(BYTES(0xc0, 0x80), 0, 5, &h, &plen), MQTT_NEED_MORE);
    ck_assert_int_eq(mqtt_frame_level(BYTES(0x30, 0xff, 0xff, 0xff, 0xff), 0, 5, &h, &plen),
                     MQTT_ERR_REMAINING_LENGTH);
    ck_assert_int_eq(mqtt_frame_level(BYTES(0x30, 0x05, 0, 1, 'a', 0, 'x'), 6, 5, &h, &plen),
                     MQTT_ERR_TOO_LARGE);
    /* the 3.1.1 CONNECT decoder still refuses level 5: the broker answers
     * CONNACK 1 until it asks for v5 [MQTT-3.1.2-2] */
    uint8_t buf[64];
    size_t n = build(buf, 0x10, BYTES(MQTT5, 0x02, 0, 60, 0, CID));
    ck_assert_int_eq(mqtt_frame(buf, n, 0, &h, &plen), MQTT_OK);
    mqtt_connect c;
    ck_assert_int_eq(mqtt_decode_connect(&h, &c), MQTT_ERR_PROTOCOL_LEVEL);
    mqtt5_connect c5;
    ck_assert_int_eq(mqtt5_decode_connect(&h, &c5), MQTT_OK);
    ck_assert_uint_eq(c5.c.protocol_level, 5);
}
END_TEST

/* ---- property writer ------------------------------------------------------ */

START_TEST(writer_every_property)
{
    /* one of every property, written through the API, read back by type */
    uint8_t buf[512];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, sizeof buf);
    for (int i = 0; i < NPROPS; i++) {
        const struct prop_row *r = &prop_rows[i];
        mqtt_prop p = {.id = r->id};
        mqtt_prop_iter it;
        uint8_t tmp[16];
        tmp[0] = r->id;
        memcpy(tmp + 1, r->val, r->vlen);
        mqtt_bytes one = {tmp, 1 + r->vlen};
        mqtt_prop_iter_init(&it, &one);
        ck_assert(mqtt_prop_next(&it, &p));
        ck_assert_int_eq(mqtt_props_add(&w, &p), MQTT_OK);
        ck_assert(!mqtt_prop_next(&it, &p));
    }
    /* the block is the concatenation of the rows, byte for byte */
    size_t off = 0;
    for (int i = 0; i < NPROPS; i++) {
        ck_assert_uint_eq(buf[off], prop_rows[i].id);
        ck_assert_mem_eq(buf + off + 1, prop_rows[i].val, prop_rows[i].vlen);
        off += 1 + prop_rows[i].vlen;
    }
    ck_assert_uint_eq(w.len, off);
}
END_TEST

START_TEST(writer_refusals)
{
    uint8_t buf[8];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, sizeof buf);
    ck_assert_int_eq(mqtt_props_add_int(&w, 0x04, 1), MQTT_ERR_ARG); /* unknown id */
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_CONTENT_TYPE, 1), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_PAYLOAD_FORMAT, 256), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_TOPIC_ALIAS, 65536), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 268435456), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_SESSION_EXPIRY, "a", 1), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_CONTENT_TYPE, "\xc0\x80", 2), MQTT_ERR_UTF8);
    ck_assert_int_eq(mqtt_props_add_user(&w, "k", 1, "\0", 1), MQTT_ERR_UTF8);
    ck_assert_uint_eq(w.len, 0);
    /* binary data may hold any byte */
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_CORRELATION_DATA, "\0\xff", 2), MQTT_OK);
    ck_assert_uint_eq(w.len, 5);
    /* no room: MQTT_ERR_BUFFER and the block unchanged */
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SESSION_EXPIRY, 1), MQTT_ERR_BUFFER);
    ck_assert_int_eq(mqtt_props_add_user(&w, "k", 1, "v", 1), MQTT_ERR_BUFFER);
    ck_assert_uint_eq(w.len, 5);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 16383), MQTT_OK);
    ck_assert_uint_eq(w.len, 8);
    ck_assert_mem_eq(buf + 5, ((const uint8_t[]){0x0B, 0xff, 0x7f}), 3);
}
END_TEST

/* ---- round trips of every packet type at level 5 ---------------------- */

/* Frame at level 5 what an encoder wrote; it must be exactly n bytes. */
static mqtt_header reframe(const uint8_t *buf, size_t n)
{
    mqtt_header h;
    size_t plen;
    ck_assert_int_eq(mqtt_frame_level(buf, n, 0, 5, &h, &plen), MQTT_OK);
    ck_assert_uint_eq(plen, n);
    return h;
}

START_TEST(roundtrip_connect)
{
    uint8_t pb[128], wb[64], buf[512];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SESSION_EXPIRY, 3600), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_RECEIVE_MAXIMUM, 20), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_MAXIMUM_PACKET_SIZE, 65536), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 8), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_REQUEST_PROBLEM_INFO, 0), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_AUTH_METHOD, "SCRAM", 5), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_user(&w, "a", 1, "1", 1), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_user(&w, "a", 1, "2", 1), MQTT_OK);
    mqtt_props_writer ww;
    mqtt_props_writer_init(&ww, wb, sizeof wb);
    ck_assert_int_eq(mqtt_props_add_int(&ww, MQTT_PROP_WILL_DELAY, 30), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_str(&ww, MQTT_PROP_CONTENT_TYPE, "text/plain", 10), MQTT_OK);

    mqtt5_connect c = {0};
    c.c.clean_session = true;
    c.c.keepalive = 30;
    c.c.client_id = S("dev-1");
    c.c.will_flag = c.c.will_retain = true;
    c.c.will_qos = 1;
    c.c.will_topic = S("dev/1/state");
    c.c.will_payload = S("gone");
    c.c.password_flag = true; /* without a user name: allowed at level 5 (3.1.2.9) */
    c.c.password = S("tok");
    c.props.raw = mqtt_props_writer_bytes(&w);
    c.will_props.raw = mqtt_props_writer_bytes(&ww);
    size_t n;
    ck_assert_int_eq(mqtt5_encode_connect(buf, sizeof buf, &c, &n), MQTT_OK);
    mqtt_header h = reframe(buf, n);
    mqtt5_connect d;
    ck_assert_int_eq(mqtt5_decode_connect(&h, &d), MQTT_OK);
    ck_assert_uint_eq(d.c.protocol_level, 5);
    ck_assert(d.c.clean_session && d.c.will_flag && d.c.will_retain && d.c.password_flag);
    ck_assert(!d.c.username_flag);
    ck_assert_uint_eq(d.c.will_qos, 1);
    ck_assert_uint_eq(d.c.keepalive, 30);
    ck_assert(str_eq(d.c.client_id, "dev-1") && str_eq(d.c.will_topic, "dev/1/state"));
    ck_assert(str_eq(d.c.will_payload, "gone") && str_eq(d.c.password, "tok"));
    ck_assert_uint_eq(d.props.session_expiry, 3600);
    ck_assert_uint_eq(d.props.receive_maximum, 20);
    ck_assert_uint_eq(d.props.maximum_packet_size, 65536);
    ck_assert_uint_eq(d.props.topic_alias_maximum, 8);
    ck_assert(mqtt_props_has(&d.props, MQTT_PROP_REQUEST_PROBLEM_INFO));
    ck_assert_uint_eq(d.props.request_problem_info, 0);
    ck_assert(!mqtt_props_has(&d.props, MQTT_PROP_REQUEST_RESPONSE_INFO));
    ck_assert(str_eq(d.props.auth_method, "SCRAM"));
    ck_assert_uint_eq(d.props.user_count, 2);
    ck_assert_uint_eq(d.will_props.will_delay, 30);
    ck_assert(str_eq(d.will_props.content_type, "text/plain"));
    /* user properties in order, from the raw view */
    mqtt_prop_iter it;
    mqtt_str k, v;
    mqtt_prop_iter_init(&it, &d.props.raw);
    ck_assert(mqtt_prop_next_user(&it, &k, &v) && str_eq(k, "a") && str_eq(v, "1"));
    ck_assert(mqtt_prop_next_user(&it, &k, &v) && str_eq(k, "a") && str_eq(v, "2"));
    ck_assert(!mqtt_prop_next_user(&it, &k, &v));
    /* the encoder refuses a block that is wrong for the place */
    c.will_props.raw = c.props.raw;
    ck_assert_int_eq(mqtt5_encode_connect(buf, sizeof buf, &c, &n), MQTT_ERR_PROP_NOT_ALLOWED);
}
END_TEST

START_TEST(roundtrip_connack)
{
    uint8_t pb[128], buf[256];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_ASSIGNED_CLIENT_ID, "auto-1", 6), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SERVER_KEEP_ALIVE, 60), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_MAXIMUM_QOS, 1), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_RETAIN_AVAILABLE, 0), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SHARED_SUB_AVAILABLE, 1), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 10), MQTT_OK);
    mqtt5_connack c = {.session_present = true, .reason = 0};
    c.props.raw = mqtt_props_writer_bytes(&w);
    size_t n;
    ck_assert_int_eq(mqtt5_encode_connack(buf, sizeof buf, &c, &n), MQTT_OK);
    mqtt_header h = reframe(buf, n);
    mqtt5_connack d;
    ck_assert_int_eq(mqtt5_decode_connack(&h, &d), MQTT_OK);
    ck_assert(d.session_present);
    ck_assert_uint_eq(d.reason, 0);
    ck_assert(str_eq(d.props.assigned_client_id, "auto-1"));
    ck_assert_uint_eq(d.props.server_keep_alive, 60);
    ck_assert_uint_eq(d.props.maximum_qos, 1);
    ck_assert(mqtt_props_has(&d.props, MQTT_PROP_RETAIN_AVAILABLE));
    ck_assert_uint_eq(d.props.retain_available, 0);
    ck_assert_uint_eq(d.props.shared_sub_available, 1);
    ck_assert_uint_eq(d.props.topic_alias_maximum, 10);
    /* failure: session present forced to 0 [MQTT-3.2.2-6] */
    c.reason = MQTT5_RC_BAD_AUTH_METHOD;
    c.props.raw.len = 0;
    ck_assert_int_eq(mqtt5_encode_connack(buf, sizeof buf, &c, &n), MQTT_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert_mem_eq(buf, ((const uint8_t[]){0x20, 3, 0, 0x8C, 0}), 5);
}
END_TEST

START_TEST(roundtrip_publish)
{
    uint8_t pb[128], buf[256];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_PAYLOAD_FORMAT, 1), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_MESSAGE_EXPIRY, 120), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_RESPONSE_TOPIC, "re/1", 4), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_CORRELATION_DATA, "\x01\x02", 2), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 7), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 200000), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_user(&w, "x", 1, "y", 1), MQTT_OK);
    mqtt5_publish p = {0};
    p.p.qos = 2;
    p.p.dup = p.p.retain = true;
    p.p.topic = S("a/b");
    p.p.packet_id = 513;
    p.p.payload = (const uint8_t *)"hello";
    p.p.payload_len = 5;
    p.props.raw = mqtt_props_writer_bytes(&w);
    size_t n;
    ck_assert_int_eq(mqtt5_encode_publish(buf, sizeof buf, &p, &n), MQTT_OK);
    mqtt_header h = reframe(buf, n);
    mqtt5_publish d;
    ck_assert_int_eq(mqtt5_decode_publish(&h, &d), MQTT_OK);
    ck_assert(d.p.dup && d.p.retain);
    ck_assert_uint_eq(d.p.qos, 2);
    ck_assert_uint_eq(d.p.packet_id, 513);
    ck_assert(str_eq(d.p.topic, "a/b"));
    ck_assert_uint_eq(d.p.payload_len, 5);
    ck_assert_mem_eq(d.p.payload, "hello", 5);
    ck_assert_uint_eq(d.props.payload_format, 1);
    ck_assert_uint_eq(d.props.message_expiry, 120);
    ck_assert(str_eq(d.props.response_topic, "re/1"));
    ck_assert_uint_eq(d.props.correlation_data.len, 2);
    ck_assert_uint_eq(d.props.sub_id_count, 2);
    ck_assert_uint_eq(d.props.subscription_id, 7);
    mqtt_prop_iter it;
    uint32_t id;
    mqtt_prop_iter_init(&it, &d.props.raw);
    ck_assert(mqtt_prop_next_sub_id(&it, &id) && id == 7);
    ck_assert(mqtt_prop_next_sub_id(&it, &id) && id == 200000);
    ck_assert(!mqtt_prop_next_sub_id(&it, &id));
    /* the header alone is the packet minus the payload */
    size_t hn;
    ck_assert_int_eq(mqtt5_encode_publish_header(buf + 128, 128, &p, &hn), MQTT_OK);
    ck_assert_uint_eq(hn, n - 5);
    ck_assert_mem_eq(buf + 128, buf, hn);
    /* empty topic: only with a Topic Alias (3.3.2.3.4) */
    p.p.topic = S("");
    ck_assert_int_eq(mqtt5_encode_publish(buf, sizeof buf, &p, &n), MQTT_ERR_ARG);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_TOPIC_ALIAS, 3), MQTT_OK);
    p.props.raw = mqtt_props_writer_bytes(&w);
    p.p.qos = 0; /* DUP is dropped for QoS 0 [MQTT-3.3.1-2] */
    ck_assert_int_eq(mqtt5_encode_publish(buf, sizeof buf, &p, &n), MQTT_OK);
    ck_assert_uint_eq(buf[0], 0x31);
    h = reframe(buf, n);
    ck_assert_int_eq(mqtt5_decode_publish(&h, &d), MQTT_OK);
    ck_assert_uint_eq(d.p.topic.len, 0);
    ck_assert_uint_eq(d.props.topic_alias, 3);
    /* a property PUBLISH may not carry */
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SERVER_KEEP_ALIVE, 3), MQTT_OK);
    p.props.raw = mqtt_props_writer_bytes(&w);
    ck_assert_int_eq(mqtt5_encode_publish(buf, sizeof buf, &p, &n), MQTT_ERR_PROP_NOT_ALLOWED);
}
END_TEST

/* PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT, AUTH: short and long forms. */
START_TEST(roundtrip_acks)
{
    static const struct {
        uint8_t type, reason;
        size_t short_len; /* packet size without properties, 0: refused */
    } rows[] = {
        {MQTT_PUBACK, 0x00, 4},     {MQTT_PUBACK, 0x10, 5},  {MQTT_PUBREC, 0x97, 5},
        {MQTT_PUBREL, 0x92, 5},     {MQTT_PUBCOMP, 0x00, 4}, {MQTT_DISCONNECT, 0x00, 2},
        {MQTT_DISCONNECT, 0x8E, 3}, {MQTT_AUTH, 0x00, 0},    {MQTT_AUTH, 0x18, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        bool has_id = rows[i].type <= MQTT_PUBCOMP;
        uint8_t pb[64], buf[128];
        mqtt5_ack a = {
            .type = rows[i].type, .packet_id = has_id ? 0x1234 : 0, .reason = rows[i].reason};
        size_t n;
        mqtt_header h;
        mqtt5_ack d;
        if (rows[i].short_len == 0) { /* AUTH needs its method (3.15.2.2.2) */
            ck_assert_int_eq(mqtt5_encode_ack(buf, sizeof buf, &a, &n), MQTT_ERR_ARG);
        } else {
            ck_assert_int_eq(mqtt5_encode_ack(buf, sizeof buf, &a, &n), MQTT_OK);
            ck_assert_uint_eq(n, rows[i].short_len);
            h = reframe(buf, n);
            ck_assert_int_eq(mqtt5_decode_ack(&h, &d), MQTT_OK);
            ck_assert_uint_eq(d.type, a.type);
            ck_assert_uint_eq(d.packet_id, a.packet_id);
            ck_assert_uint_eq(d.reason, a.reason);
            ck_assert_uint_eq(d.props.present, 0);
        }

        mqtt_props_writer w;
        mqtt_props_writer_init(&w, pb, sizeof pb);
        if (rows[i].type == MQTT_AUTH)
            ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_AUTH_METHOD, "M", 1), MQTT_OK);
        if (rows[i].type == MQTT_DISCONNECT)
            ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SESSION_EXPIRY, 0), MQTT_OK);
        ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_REASON_STRING, "why", 3), MQTT_OK);
        a.props.raw = mqtt_props_writer_bytes(&w);
        ck_assert_int_eq(mqtt5_encode_ack(buf, sizeof buf, &a, &n), MQTT_OK);
        h = reframe(buf, n);
        ck_assert_int_eq(mqtt5_decode_ack(&h, &d), MQTT_OK);
        ck_assert_uint_eq(d.type, a.type);
        ck_assert_uint_eq(d.packet_id, a.packet_id);
        ck_assert_uint_eq(d.reason, a.reason);
        ck_assert(str_eq(d.props.reason_string, "why"));
        ck_assert_uint_eq(d.props.raw.len, a.props.raw.len);
    }
    /* a Topic Alias in a PUBACK is refused by the encoder too */
    uint8_t pb[8], buf[32];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_TOPIC_ALIAS, 1), MQTT_OK);
    mqtt5_ack a = {.type = MQTT_PUBACK, .packet_id = 1, .props.raw = mqtt_props_writer_bytes(&w)};
    size_t n;
    ck_assert_int_eq(mqtt5_encode_ack(buf, sizeof buf, &a, &n), MQTT_ERR_PROP_NOT_ALLOWED);
    a.props.raw.len = 0;
    a.packet_id = 0;
    ck_assert_int_eq(mqtt5_encode_ack(buf, sizeof buf, &a, &n), MQTT_ERR_ARG);
    a.type = MQTT_PUBLISH;
    ck_assert_int_eq(mqtt5_encode_ack(buf, sizeof buf, &a, &n), MQTT_ERR_ARG);
}
END_TEST

START_TEST(roundtrip_subscribe_unsubscribe)
{
    uint8_t pb[16], buf[256];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SUBSCRIPTION_ID, 268435455), MQTT_OK);
    mqtt_bytes props = mqtt_props_writer_bytes(&w);
    const mqtt_str filters[] = {S("a/+"), S("$share/g/b/#"), S("c")};
    mqtt5_subopts o0 = {2, true, true, 2}, o1 = {1, false, false, 1}, o2 = {0, false, true, 0};
    const uint8_t opts[] = {mqtt5_subopts_byte(&o0), mqtt5_subopts_byte(&o1),
                            mqtt5_subopts_byte(&o2)};
    size_t n;
    ck_assert_int_eq(mqtt5_encode_subscribe(buf, sizeof buf, 9, &props, filters, opts, 3, &n),
                     MQTT_OK);
    ck_assert_uint_eq(buf[0], 0x82);
    mqtt_header h = reframe(buf, n);
    mqtt5_sublist d;
    ck_assert_int_eq(mqtt5_decode_subscribe(&h, &d), MQTT_OK);
    ck_assert_uint_eq(d.list.packet_id, 9);
    ck_assert_uint_eq(d.list.count, 3);
    ck_assert_uint_eq(d.props.subscription_id, 268435455);
    mqtt_str f;
    uint8_t ob;
    for (int i = 0; i < 3; i++) {
        ck_assert(mqtt_sublist_next(&d.list, &f, &ob));
        ck_assert_uint_eq(f.len, filters[i].len);
        ck_assert_uint_eq(ob, opts[i]);
    }
    ck_assert(!mqtt_sublist_next(&d.list, &f, &ob));
    mqtt5_subopts back = mqtt5_subopts_parse(opts[0]);
    ck_assert(back.qos == 2 && back.no_local && back.retain_as_published &&
              back.retain_handling == 2);
    /* the encoder refuses what the decoder would */
    uint8_t bad = 0x04; /* No Local on $share [MQTT-3.8.3-4] */
    ck_assert_int_eq(mqtt5_encode_subscribe(buf, sizeof buf, 9, NULL, &filters[1], &bad, 1, &n),
                     MQTT_ERR_ARG);
    bad = 0x30; /* retain handling 3 */
    ck_assert_int_eq(mqtt5_encode_subscribe(buf, sizeof buf, 9, NULL, filters, &bad, 1, &n),
                     MQTT_ERR_ARG);
    bad = 0x40; /* reserved [MQTT-3.8.3-5] */
    ck_assert_int_eq(mqtt5_encode_subscribe(buf, sizeof buf, 9, NULL, filters, &bad, 1, &n),
                     MQTT_ERR_ARG);

    ck_assert_int_eq(mqtt5_encode_unsubscribe(buf, sizeof buf, 10, NULL, filters, 3, &n), MQTT_OK);
    ck_assert_uint_eq(buf[0], 0xa2);
    h = reframe(buf, n);
    ck_assert_int_eq(mqtt5_decode_unsubscribe(&h, &d), MQTT_OK);
    ck_assert_uint_eq(d.list.count, 3);
    ck_assert(mqtt_sublist_next(&d.list, &f, NULL) && str_eq(f, "a/+"));
    /* a Subscription Identifier is not allowed in UNSUBSCRIBE */
    ck_assert_int_eq(mqtt5_encode_unsubscribe(buf, sizeof buf, 10, &props, filters, 3, &n),
                     MQTT_ERR_PROP_NOT_ALLOWED);
    ck_assert_int_eq(mqtt5_encode_unsubscribe(buf, sizeof buf, 10, NULL, filters, 0, &n),
                     MQTT_ERR_ARG);
}
END_TEST

START_TEST(roundtrip_suback_unsuback_ping)
{
    uint8_t pb[16], buf[64];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_user(&w, "k", 1, "v", 1), MQTT_OK);
    const uint8_t sc[] = {0x00, 0x01, 0x02, 0x9E, 0xA2};
    mqtt5_suback s = {.type = MQTT_SUBACK, .packet_id = 77, .codes = sc, .count = 5};
    s.props.raw = mqtt_props_writer_bytes(&w);
    size_t n;
    ck_assert_int_eq(mqtt5_encode_suback(buf, sizeof buf, &s, &n), MQTT_OK);
    mqtt_header h = reframe(buf, n);
    mqtt5_suback d;
    ck_assert_int_eq(mqtt5_decode_suback(&h, &d), MQTT_OK);
    ck_assert_uint_eq(d.type, MQTT_SUBACK);
    ck_assert_uint_eq(d.packet_id, 77);
    ck_assert_uint_eq(d.count, 5);
    ck_assert_mem_eq(d.codes, sc, 5);
    ck_assert_uint_eq(d.props.user_count, 1);

    const uint8_t uc[] = {0x00, 0x11, 0x87};
    mqtt5_suback u = {.type = MQTT_UNSUBACK, .packet_id = 78, .codes = uc, .count = 3};
    ck_assert_int_eq(mqtt5_encode_suback(buf, sizeof buf, &u, &n), MQTT_OK);
    h = reframe(buf, n);
    ck_assert_int_eq(mqtt5_decode_suback(&h, &d), MQTT_OK);
    ck_assert_uint_eq(d.type, MQTT_UNSUBACK);
    ck_assert_uint_eq(d.count, 3);
    ck_assert_mem_eq(d.codes, uc, 3);

    /* PINGREQ / PINGRESP are the same at every level (3.12, 3.13) */
    for (int t = MQTT_PINGREQ; t <= MQTT_PINGRESP; t++) {
        ck_assert_int_eq(mqtt_encode_empty(buf, sizeof buf, (enum mqtt_type)t, &n), MQTT_OK);
        h = reframe(buf, n);
        ck_assert_int_eq(mqtt_decode_empty(&h), MQTT_OK);
    }
}
END_TEST

/* Remaining length on each side of the varint size steps (spec 1.5.5):
 * a PUBLISH whose payload makes the remaining length exactly rems[_i]. */
START_TEST(publish_remaining_boundaries)
{
    static const uint32_t rems[] = {127, 128, 16383, 16384, 2097151, 2097152};
    uint32_t rem = rems[_i];
    uint8_t pb[8];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_MESSAGE_EXPIRY, 9), MQTT_OK);
    /* topic "t" (3) + packet id (2) + property length (1) + 5 property bytes */
    size_t fixed = 3 + 2 + 1 + w.len;
    size_t total = 1 + (size_t)mqtt_varint_size(rem) + rem;
    uint8_t *payload = calloc(1, rem);
    uint8_t *buf = malloc(total);
    ck_assert(payload && buf);
    mqtt5_publish p = {.p = {.qos = 1,
                             .topic = S("t"),
                             .packet_id = 1,
                             .payload = payload,
                             .payload_len = rem - fixed}};
    p.props.raw = mqtt_props_writer_bytes(&w);
    size_t n;
    ck_assert_int_eq(mqtt5_encode_publish(buf, total - 1, &p, &n), MQTT_ERR_BUFFER);
    ck_assert_int_eq(mqtt5_encode_publish(buf, total, &p, &n), MQTT_OK);
    ck_assert_uint_eq(n, total);
    mqtt_header h = reframe(buf, n);
    ck_assert_uint_eq(h.remaining, rem);
    mqtt5_publish d;
    ck_assert_int_eq(mqtt5_decode_publish(&h, &d), MQTT_OK);
    ck_assert_uint_eq(d.p.payload_len, rem - fixed);
    ck_assert_uint_eq(d.props.message_expiry, 9);
    free(payload);
    free(buf);
}
END_TEST

/* No encoder writes past cap: every cap below the packet size is refused. */
START_TEST(encode_never_past_cap)
{
    uint8_t pb[32], buf[128];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_REASON_STRING, "reason", 6), MQTT_OK);
    mqtt5_ack a = {.type = MQTT_DISCONNECT, .reason = 0x8D};
    a.props.raw = mqtt_props_writer_bytes(&w);
    size_t full, n;
    ck_assert_int_eq(mqtt5_encode_ack(buf, sizeof buf, &a, &full), MQTT_OK);
    for (size_t cap = 0; cap < full; cap++) {
        memset(buf, 0xAA, sizeof buf);
        ck_assert_int_eq(mqtt5_encode_ack(buf, cap, &a, &n), MQTT_ERR_BUFFER);
        ck_assert_uint_eq(n, 0);
        for (size_t k = cap; k < sizeof buf; k++)
            ck_assert_uint_eq(buf[k], 0xAA);
    }
    mqtt5_connect c = {.c = {.client_id = S("id"), .username_flag = true, .username = S("u")}};
    ck_assert_int_eq(mqtt5_encode_connect(buf, sizeof buf, &c, &full), MQTT_OK);
    for (size_t cap = 0; cap < full; cap++)
        ck_assert_int_eq(mqtt5_encode_connect(buf, cap, &c, &n), MQTT_ERR_BUFFER);
}
END_TEST

/* Every packet of the round trips cut short at every length decodes to an
 * error, never past its end: the body is copied into an exact-size heap
 * block so ASan catches any read beyond it. */
START_TEST(every_truncation)
{
    uint8_t pb[64], buf[256];
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, pb, sizeof pb);
    ck_assert_int_eq(mqtt_props_add_int(&w, MQTT_PROP_SESSION_EXPIRY, 10), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_str(&w, MQTT_PROP_AUTH_METHOD, "M", 1), MQTT_OK);
    ck_assert_int_eq(mqtt_props_add_user(&w, "k", 1, "v", 1), MQTT_OK);
    mqtt5_connect c = {.c = {.client_id = S("id"),
                             .will_flag = true,
                             .will_topic = S("w"),
                             .username_flag = true,
                             .username = S("u"),
                             .password_flag = true,
                             .password = S("p")}};
    c.props.raw = mqtt_props_writer_bytes(&w);
    size_t n;
    ck_assert_int_eq(mqtt5_encode_connect(buf, sizeof buf, &c, &n), MQTT_OK);
    mqtt_header h = reframe(buf, n);
    for (uint32_t k = 0; k < h.remaining; k++) {
        uint8_t *body = malloc(k ? k : 1);
        ck_assert_ptr_nonnull(body);
        memcpy(body, h.body, k);
        mqtt_header cut = {h.type, h.flags, k, body};
        int rc = decode5_any(&cut);
        ck_assert_msg(rc < 0, "CONNECT cut to %u bytes: %d", (unsigned)k, rc);
        free(body);
    }
    /* the same for SUBSCRIBE: every cut is an error but the end of an entry */
    const mqtt_str f[] = {S("a/b"), S("c")};
    const uint8_t o[] = {0x01, 0x02};
    mqtt_bytes none = {NULL, 0};
    ck_assert_int_eq(mqtt5_encode_subscribe(buf, sizeof buf, 5, &none, f, o, 2, &n), MQTT_OK);
    h = reframe(buf, n);
    for (uint32_t k = 0; k < h.remaining; k++) {
        uint8_t *body = malloc(k ? k : 1);
        ck_assert_ptr_nonnull(body);
        memcpy(body, h.body, k);
        mqtt_header cut = {h.type, h.flags, k, body};
        int rc = decode5_any(&cut);
        /* 9 = id, property length, "a/b" and its options: one whole entry */
        ck_assert_msg(k == 9 ? rc == MQTT_OK : rc < 0, "SUBSCRIBE cut %u: %d", (unsigned)k, rc);
        free(body);
    }
}
END_TEST

static Suite *mqtt5_suite(void)
{
    Suite *s = suite_create("mqtt5");
    TCase *tc = tcase_create("properties");
    tcase_add_loop_test(tc, property_places, 0, NPROPS);
    tcase_add_loop_test(tc, property_duplicates, 0, NPROPS);
    tcase_add_loop_test(tc, property_lengths, 0, NPROPS);
    tcase_add_loop_test(tc, bad_block_table, 0, (int)(sizeof bad_blocks / sizeof bad_blocks[0]));
    tcase_add_test(tc, property_length_varint);
    tcase_add_test(tc, writer_every_property);
    tcase_add_test(tc, writer_refusals);
    suite_add_tcase(s, tc);

    tc = tcase_create("packets");
    tcase_add_loop_test(tc, packet_table, 0, (int)(sizeof packets / sizeof packets[0]));
    tcase_add_loop_test(tc, reason_code_table, 0,
                        (int)(sizeof reason_rows / sizeof reason_rows[0]));
    tcase_add_test(tc, reason_names_and_errors);
    tcase_add_test(tc, frame_levels);
    suite_add_tcase(s, tc);

    tc = tcase_create("roundtrip");
    tcase_add_test(tc, roundtrip_connect);
    tcase_add_test(tc, roundtrip_connack);
    tcase_add_test(tc, roundtrip_publish);
    tcase_add_test(tc, roundtrip_acks);
    tcase_add_test(tc, roundtrip_subscribe_unsubscribe);
    tcase_add_test(tc, roundtrip_suback_unsuback_ping);
    tcase_add_loop_test(tc, publish_remaining_boundaries, 0, 6);
    tcase_add_test(tc, encode_never_past_cap);
    tcase_add_test(tc, every_truncation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mqtt5_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
