/*
 * decode.c -- variable header and payload of every packet type.
 *
 * Each decoder takes a header from mqtt_frame, walks a cursor over exactly
 * h->remaining bytes and fails on the first broken rule. Strings come back
 * as views into the framed buffer. Decoders re-check the fixed header
 * against the flag table so a header built by hand (tests, fuzzers) gets
 * the same treatment as a framed one; a header of the wrong type is
 * MQTT_ERR_TYPE.
 */
#include <string.h>

#include "mqtt/internal.h"

/* Type + flags check, then a cursor over the body. */
static int start(const mqtt_header *h, uint8_t type, mqtt_cursor *c)
{
    if (h->type != type) return MQTT_ERR_TYPE;
    int rc = mqtt_check_fixed_header(h->type, h->flags);
    if (rc != MQTT_OK) return rc;
    c->p = h->body;
    /* No arithmetic on a NULL body (a hand-built empty header). */
    c->end = h->remaining ? h->body + h->remaining : h->body;
    return MQTT_OK;
}

/* A body must be consumed exactly: trailing bytes are malformed. */
static int finish(const mqtt_cursor *c)
{
    return c->p == c->end ? MQTT_OK : MQTT_ERR_LENGTH;
}

static bool str_is(const mqtt_str *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

/*
 * mqtt_decode_connect -- spec 3.1. The protocol name and level are judged
 * before anything else, so a client speaking another version gets
 * MQTT_ERR_PROTOCOL_LEVEL (CONNACK 1 [MQTT-3.1.2-2]) even if the rest of its
 * CONNECT would be garbage under 3.1.1 rules (e.g. an MQTT 5 properties
 * block). "MQTT" pairs with level 4, "MQIsdp" (MQTT 3.1) with level 3.
 * Returns MQTT_OK, MQTT_ERR_LENGTH, _PROTOCOL_NAME, _PROTOCOL_LEVEL,
 * _CONNECT_FLAGS, _UTF8 or _TOPIC.
 */
int mqtt_decode_connect(const mqtt_header *h, mqtt_connect *out)
{
    mqtt_cursor c;
    int rc = start(h, MQTT_CONNECT, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);

    if ((rc = mqtt_cursor_str(&c, &out->protocol_name)) != MQTT_OK) return rc;
    if ((rc = mqtt_cursor_u8(&c, &out->protocol_level)) != MQTT_OK) return rc;
    /* bit 0x80: a bridge announcing itself (Mosquitto's try_private) */
    out->bridge = out->protocol_level & 0x80;
    out->protocol_level &= 0x7f;
    uint8_t want_level;
    if (str_is(&out->protocol_name, "MQTT"))
        want_level = 4;
    else if (str_is(&out->protocol_name, "MQIsdp"))
        want_level = 3;
    else
        return MQTT_ERR_PROTOCOL_NAME;                                     /* [MQTT-3.1.2-1] */
    if (out->protocol_level != want_level) return MQTT_ERR_PROTOCOL_LEVEL; /* [MQTT-3.1.2-2] */

    uint8_t flags;
    if ((rc = mqtt_cursor_u8(&c, &flags)) != MQTT_OK) return rc;
    out->clean_session = flags & 0x02;
    out->will_flag = flags & 0x04;
    out->will_qos = (flags >> 3) & 0x3;
    out->will_retain = flags & 0x20;
    out->password_flag = flags & 0x40;
    out->username_flag = flags & 0x80;
    if (flags & 0x01) return MQTT_ERR_CONNECT_FLAGS; /* reserved [MQTT-3.1.2-3] */
    if (!out->will_flag && (out->will_qos != 0 || out->will_retain))
        return MQTT_ERR_CONNECT_FLAGS;                     /* [MQTT-3.1.2-11], -13, -15 */
    if (out->will_qos == 3) return MQTT_ERR_CONNECT_FLAGS; /* [MQTT-3.1.2-14] */
    if (out->password_flag && !out->username_flag)
        return MQTT_ERR_CONNECT_FLAGS; /* [MQTT-3.1.2-22] */

    if ((rc = mqtt_cursor_u16(&c, &out->keepalive)) != MQTT_OK) return rc;

    /* Payload order is fixed: client id, will topic, will message, user
     * name, password [MQTT-3.1.3-1]. */
    if ((rc = mqtt_cursor_str(&c, &out->client_id)) != MQTT_OK) return rc;
    if ((rc = mqtt_utf8_validate(out->client_id.ptr, out->client_id.len)) != MQTT_OK)
        return rc; /* [MQTT-3.1.3-4] */
    if (out->will_flag) {
        if ((rc = mqtt_cursor_str(&c, &out->will_topic)) != MQTT_OK) return rc;
        rc = mqtt_topic_name_validate(out->will_topic.ptr, out->will_topic.len);
        if (rc != MQTT_OK) return rc; /* [MQTT-3.1.3-10], no wildcards [MQTT-3.3.2-2] */
        if ((rc = mqtt_cursor_str(&c, &out->will_payload)) != MQTT_OK) return rc;
    }
    if (out->username_flag) {
        if ((rc = mqtt_cursor_str(&c, &out->username)) != MQTT_OK) return rc;
        if ((rc = mqtt_utf8_validate(out->username.ptr, out->username.len)) != MQTT_OK)
            return rc; /* [MQTT-3.1.3-11] */
    }
    if (out->password_flag) {
        if ((rc = mqtt_cursor_str(&c, &out->password)) != MQTT_OK) return rc;
    }
    return finish(&c);
}

/*
 * mqtt_decode_connack -- spec 3.2: exactly two bytes; only the Session
 * Present bit may be set in the first [MQTT-3.2.2-1]; return codes above 5
 * are reserved. MQTT_OK, MQTT_ERR_LENGTH or MQTT_ERR_CONNACK.
 */
int mqtt_decode_connack(const mqtt_header *h, mqtt_connack *out)
{
    mqtt_cursor c;
    int rc = start(h, MQTT_CONNACK, &c);
    if (rc != MQTT_OK) return rc;
    if (mqtt_cursor_left(&c) != 2) return MQTT_ERR_LENGTH;
    uint8_t flags = c.p[0], code = c.p[1];
    if ((flags & 0xfe) != 0 || code > MQTT_CONNACK_NOT_AUTHORIZED) return MQTT_ERR_CONNACK;
    out->session_present = flags & 0x01;
    out->return_code = code;
    return MQTT_OK;
}

/*
 * mqtt_decode_publish -- spec 3.3: topic name (valid, no wildcards), packet
 * id only when QoS > 0 and then non-zero [MQTT-2.3.1-1], payload = the rest
 * (possibly empty, possibly far above 64 KiB).
 * MQTT_OK, MQTT_ERR_QOS, _LENGTH, _TOPIC, _UTF8 or _PACKET_ID.
 */
int mqtt_decode_publish(const mqtt_header *h, mqtt_publish *out)
{
    mqtt_cursor c;
    int rc = start(h, MQTT_PUBLISH, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    out->dup = h->flags & 0x08;
    out->qos = (h->flags >> 1) & 0x3;
    out->retain = h->flags & 0x01;

    if ((rc = mqtt_cursor_str(&c, &out->topic)) != MQTT_OK) return rc;
    if ((rc = mqtt_topic_name_validate(out->topic.ptr, out->topic.len)) != MQTT_OK)
        return rc; /* [MQTT-3.3.2-1], [MQTT-3.3.2-2], [MQTT-4.7.3-1] */
    if (out->qos > 0) {
        if ((rc = mqtt_cursor_u16(&c, &out->packet_id)) != MQTT_OK) return rc;
        if (out->packet_id == 0) return MQTT_ERR_PACKET_ID;
    }
    out->payload = c.p;
    out->payload_len = mqtt_cursor_left(&c);
    return MQTT_OK;
}

/*
 * mqtt_decode_ack -- PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: exactly a
 * non-zero packet id. MQTT_OK, MQTT_ERR_TYPE, _FLAGS, _LENGTH, _PACKET_ID.
 */
int mqtt_decode_ack(const mqtt_header *h, uint16_t *packet_id)
{
    switch (h->type) {
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        break;
    default:
        return MQTT_ERR_TYPE;
    }
    mqtt_cursor c;
    int rc = start(h, h->type, &c);
    if (rc != MQTT_OK) return rc;
    if (mqtt_cursor_left(&c) != 2) return MQTT_ERR_LENGTH;
    uint16_t id;
    (void)mqtt_cursor_u16(&c, &id);
    if (id == 0) return MQTT_ERR_PACKET_ID;
    *packet_id = id;
    return MQTT_OK;
}

/* Shared body of SUBSCRIBE (with QoS bytes) and UNSUBSCRIBE (without):
 * validate every entry once so mqtt_sublist_next can trust them. */
static int decode_sublist(const mqtt_header *h, uint8_t type, mqtt_sublist *out)
{
    mqtt_cursor c;
    int rc = start(h, type, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    out->has_qos = type == MQTT_SUBSCRIBE;

    if ((rc = mqtt_cursor_u16(&c, &out->packet_id)) != MQTT_OK) return rc;
    if (out->packet_id == 0) return MQTT_ERR_PACKET_ID;   /* [MQTT-2.3.1-1] */
    if (mqtt_cursor_left(&c) == 0) return MQTT_ERR_EMPTY; /* [MQTT-3.8.3-3], [MQTT-3.10.3-2] */

    out->cur = c.p;
    out->end = c.end;
    while (mqtt_cursor_left(&c) > 0) {
        mqtt_str f;
        if ((rc = mqtt_cursor_str(&c, &f)) != MQTT_OK) return rc;
        if ((rc = mqtt_topic_filter_validate(f.ptr, f.len)) != MQTT_OK)
            return rc; /* [MQTT-3.8.3-1], [MQTT-4.7.1-2], [MQTT-4.7.1-3] */
        if (out->has_qos) {
            uint8_t q;
            if ((rc = mqtt_cursor_u8(&c, &q)) != MQTT_OK) return rc;
            if (q > 2) return MQTT_ERR_SUB_QOS; /* also catches the reserved bits [MQTT-3.8.3-4] */
        }
        out->count++;
    }
    return MQTT_OK;
}

/*
 * mqtt_decode_subscribe -- spec 3.8. MQTT_OK, MQTT_ERR_LENGTH, _PACKET_ID,
 * _EMPTY, _FILTER, _UTF8 or _SUB_QOS.
 */
int mqtt_decode_subscribe(const mqtt_header *h, mqtt_sublist *out)
{
    return decode_sublist(h, MQTT_SUBSCRIBE, out);
}

/*
 * mqtt_decode_unsubscribe -- spec 3.10. MQTT_OK, MQTT_ERR_LENGTH,
 * _PACKET_ID, _EMPTY, _FILTER or _UTF8.
 */
int mqtt_decode_unsubscribe(const mqtt_header *h, mqtt_sublist *out)
{
    return decode_sublist(h, MQTT_UNSUBSCRIBE, out);
}

/*
 * mqtt_sublist_next -- next (filter, qos) of an already validated list; qos
 * may be NULL, and is set to 0 for UNSUBSCRIBE entries.
 */
bool mqtt_sublist_next(mqtt_sublist *it, mqtt_str *filter, uint8_t *qos)
{
    mqtt_cursor c = {it->cur, it->end};
    if (mqtt_cursor_str(&c, filter) != MQTT_OK) return false;
    uint8_t q = 0;
    if (it->has_qos && mqtt_cursor_u8(&c, &q) != MQTT_OK) return false;
    if (qos) *qos = q;
    it->cur = c.p;
    return true;
}

/*
 * mqtt_decode_suback -- spec 3.9: packet id then one return code per
 * filter; codes other than 0, 1, 2 and 0x80 are reserved [MQTT-3.9.3-2]
 * (MQTT_ERR_SUB_QOS). A SUBACK without codes answers no SUBSCRIBE
 * (MQTT_ERR_EMPTY).
 */
int mqtt_decode_suback(const mqtt_header *h, mqtt_suback *out)
{
    mqtt_cursor c;
    int rc = start(h, MQTT_SUBACK, &c);
    if (rc != MQTT_OK) return rc;
    uint16_t id;
    if ((rc = mqtt_cursor_u16(&c, &id)) != MQTT_OK) return rc;
    if (id == 0) return MQTT_ERR_PACKET_ID;
    size_t n = mqtt_cursor_left(&c);
    if (n == 0) return MQTT_ERR_EMPTY;
    for (size_t i = 0; i < n; i++)
        if (c.p[i] > 2 && c.p[i] != MQTT_SUBACK_FAILURE) return MQTT_ERR_SUB_QOS;
    out->packet_id = id;
    out->codes = c.p;
    out->count = (unsigned)n;
    return MQTT_OK;
}

/*
 * mqtt_decode_empty -- PINGREQ, PINGRESP, DISCONNECT carry nothing.
 * MQTT_OK, MQTT_ERR_TYPE, _FLAGS or _LENGTH.
 */
int mqtt_decode_empty(const mqtt_header *h)
{
    if (h->type != MQTT_PINGREQ && h->type != MQTT_PINGRESP && h->type != MQTT_DISCONNECT)
        return MQTT_ERR_TYPE;
    mqtt_cursor c;
    int rc = start(h, h->type, &c);
    if (rc != MQTT_OK) return rc;
    return finish(&c);
}
