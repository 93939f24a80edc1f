/*
 * encode.c -- packets into caller buffers.
 *
 * Every encoder computes the exact packet size first and refuses
 * (MQTT_ERR_BUFFER, nothing written) if it exceeds cap, so no byte is ever
 * written past cap and a failed encode leaves no half packet behind.
 * Arguments are checked for what would make the packet malformed on the
 * wire (lengths, QoS values, packet id 0, empty lists: MQTT_ERR_ARG); the
 * content of topics and filters is not re-validated here because the
 * broker's hot path only re-encodes topics it has already validated --
 * tools that take topics from users call mqtt_topic_*_validate first.
 */
#include <string.h>

#include "mqtt/internal.h"

/*
 * mqtt_encode_begin -- check that a packet with this remaining length is legal
 * (MQTT_ERR_ARG) and fits in cap (MQTT_ERR_BUFFER), then write the fixed
 * header; *p is where the variable header goes, *total the packet size.
 * Callers compute remaining lengths in 64 bits so nothing wraps before
 * this check.
 */
int mqtt_encode_begin(uint8_t *buf, size_t cap, uint8_t byte0, uint64_t remaining, uint8_t **p,
                      size_t *total)
{
    if (remaining > MQTT_MAX_REMAINING_LENGTH) return MQTT_ERR_ARG;
    uint8_t len[4];
    int n = mqtt_varint_encode((uint32_t)remaining, len);
    size_t need = 1 + (size_t)n + (size_t)remaining;
    if (need > cap) return MQTT_ERR_BUFFER;
    buf[0] = byte0;
    memcpy(buf + 1, len, (size_t)n);
    *p = buf + 1 + n;
    *total = need;
    return MQTT_OK;
}

/*
 * mqtt_encode_connect -- spec 3.1. An empty protocol_name means the name
 * that goes with protocol_level ("MQIsdp" for 3, "MQTT" otherwise); level 0
 * means 4. Any other name/level is encoded as given, so test tools can
 * offer the broker a version it must refuse. The flag booleans decide which
 * payload fields are written; will QoS/retain are only encoded with the
 * will flag. MQTT_ERR_ARG for will QoS > 2 or a password without a user
 * name [MQTT-3.1.2-22], which would make the packet malformed.
 */
int mqtt_encode_connect(uint8_t *buf, size_t cap, const mqtt_connect *c, size_t *written)
{
    *written = 0;
    if (c->will_flag && c->will_qos > 2) return MQTT_ERR_ARG;
    if (c->password_flag && !c->username_flag) return MQTT_ERR_ARG;

    uint8_t level = c->protocol_level ? c->protocol_level : 4;
    mqtt_str name = c->protocol_name;
    if (name.len == 0) {
        const char *def = level == 3 ? "MQIsdp" : "MQTT";
        name.ptr = (const uint8_t *)def;
        name.len = (uint16_t)strlen(def);
    }

    uint8_t flags = 0;
    uint64_t rem = 2u + name.len + 1 + 1 + 2 + 2u + c->client_id.len;
    if (c->clean_session) flags |= 0x02;
    if (c->will_flag) {
        flags |= (uint8_t)(0x04 | (c->will_qos << 3) | (c->will_retain ? 0x20 : 0));
        rem += 2u + c->will_topic.len + 2u + c->will_payload.len;
    }
    if (c->username_flag) {
        flags |= 0x80;
        rem += 2u + c->username.len;
    }
    if (c->password_flag) {
        flags |= 0x40;
        rem += 2u + c->password.len;
    }

    uint8_t *p;
    size_t total;
    int rc = mqtt_encode_begin(buf, cap, MQTT_CONNECT << 4, rem, &p, &total);
    if (rc != MQTT_OK) return rc;
    p = mqtt_put_str(p, name.ptr, name.len);
    *p++ = level;
    *p++ = flags;
    p = mqtt_put_u16(p, c->keepalive);
    p = mqtt_put_str(p, c->client_id.ptr, c->client_id.len);
    if (c->will_flag) {
        p = mqtt_put_str(p, c->will_topic.ptr, c->will_topic.len);
        p = mqtt_put_str(p, c->will_payload.ptr, c->will_payload.len);
    }
    if (c->username_flag) p = mqtt_put_str(p, c->username.ptr, c->username.len);
    if (c->password_flag) p = mqtt_put_str(p, c->password.ptr, c->password.len);
    (void)p;
    *written = total;
    return MQTT_OK;
}

/*
 * mqtt_encode_connack -- spec 3.2. rc must be 0..5 (else MQTT_ERR_ARG).
 * session_present is forced to 0 with a non-zero rc, as [MQTT-3.2.2-4]
 * requires, so callers can pass their session state unconditionally.
 */
int mqtt_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t rc, size_t *written)
{
    *written = 0;
    if (rc > MQTT_CONNACK_NOT_AUTHORIZED) return MQTT_ERR_ARG;
    uint8_t *p;
    size_t total;
    int err = mqtt_encode_begin(buf, cap, MQTT_CONNACK << 4, 2, &p, &total);
    if (err != MQTT_OK) return err;
    p[0] = (rc == 0 && session_present) ? 1 : 0;
    p[1] = rc;
    *written = total;
    return MQTT_OK;
}

/* Remaining length of a PUBLISH, or UINT64_MAX for bad arguments. DUP is
 * not an argument here: it is cleared for QoS 0 by the encoders
 * ([MQTT-3.3.1-2]), which does not change the size. */
static uint64_t publish_remaining(uint8_t qos, uint16_t topic_len, uint16_t packet_id,
                                  bool check_id, size_t payload_len)
{
    if (qos > 2 || topic_len == 0) return UINT64_MAX;
    if (check_id && qos > 0 && packet_id == 0) return UINT64_MAX; /* [MQTT-2.3.1-1] */
    if (payload_len > MQTT_MAX_REMAINING_LENGTH) return UINT64_MAX;
    return 2u + (uint64_t)topic_len + (qos > 0 ? 2u : 0u) + (uint64_t)payload_len;
}

/*
 * mqtt_publish_header_size -- bytes mqtt_encode_publish_header writes for
 * these arguments: 1 + varint(remaining) + 2 + topic_len (+ 2 for QoS > 0),
 * so at most 9 + topic_len (MQTT_PUBLISH_HEADER_MAX). 0 when the encoder
 * would refuse (QoS > 2, empty topic, remaining length above the maximum).
 */
size_t mqtt_publish_header_size(uint8_t qos, uint16_t topic_len, size_t payload_len)
{
    uint64_t rem = publish_remaining(qos, topic_len, 1, false, payload_len);
    if (rem > MQTT_MAX_REMAINING_LENGTH) return 0;
    return 1 + (size_t)mqtt_varint_size((uint32_t)rem) + (size_t)(rem - payload_len);
}

/* Fixed + variable header of a PUBLISH into at most `avail` bytes. */
static int write_publish_header(uint8_t *buf, size_t avail, uint8_t qos, bool dup, bool retain,
                                const uint8_t *topic, uint16_t topic_len, uint16_t packet_id,
                                size_t payload_len, size_t *written)
{
    uint64_t rem = publish_remaining(qos, topic_len, packet_id, true, payload_len);
    if (rem > MQTT_MAX_REMAINING_LENGTH) return MQTT_ERR_ARG;
    size_t hsize = mqtt_publish_header_size(qos, topic_len, payload_len);
    if (hsize > avail) return MQTT_ERR_BUFFER;

    uint8_t byte0 = (uint8_t)(MQTT_PUBLISH << 4 | qos << 1);
    if (dup && qos > 0) byte0 |= 0x08;
    if (retain) byte0 |= 0x01;
    uint8_t *p = buf;
    *p++ = byte0;
    p += mqtt_varint_encode((uint32_t)rem, p);
    p = mqtt_put_str(p, topic, topic_len);
    if (qos > 0) p = mqtt_put_u16(p, packet_id);
    *written = (size_t)(p - buf);
    return MQTT_OK;
}

/*
 * mqtt_encode_publish_header -- see mqtt.h. DUP is dropped for QoS 0
 * [MQTT-3.3.1-2] (a broker downgrading QoS need not remember to clear it).
 * MQTT_ERR_ARG for QoS > 2, an empty topic, packet id 0 with QoS > 0 or a
 * payload that makes the packet too large; MQTT_ERR_BUFFER if the header
 * does not fit in cap (the payload is not counted against cap here).
 */
int mqtt_encode_publish_header(uint8_t *buf, size_t cap, uint8_t qos, bool dup, bool retain,
                               const uint8_t *topic, uint16_t topic_len, uint16_t packet_id,
                               size_t payload_len, size_t *written)
{
    *written = 0;
    return write_publish_header(buf, cap, qos, dup, retain, topic, topic_len, packet_id,
                                payload_len, written);
}

/*
 * mqtt_encode_publish -- header plus payload, all of it within cap.
 * Same argument rules as mqtt_encode_publish_header.
 */
int mqtt_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish *pub, size_t *written)
{
    *written = 0;
    uint64_t rem =
        publish_remaining(pub->qos, pub->topic.len, pub->packet_id, true, pub->payload_len);
    if (rem > MQTT_MAX_REMAINING_LENGTH) return MQTT_ERR_ARG;
    size_t hsize = mqtt_publish_header_size(pub->qos, pub->topic.len, pub->payload_len);
    if (hsize > cap || pub->payload_len > cap - hsize) return MQTT_ERR_BUFFER;
    size_t n;
    int rc = write_publish_header(buf, cap, pub->qos, pub->dup, pub->retain, pub->topic.ptr,
                                  pub->topic.len, pub->packet_id, pub->payload_len, &n);
    if (rc != MQTT_OK) return rc;
    if (pub->payload_len) memcpy(buf + n, pub->payload, pub->payload_len);
    *written = n + pub->payload_len;
    return MQTT_OK;
}

/*
 * mqtt_encode_ack -- PUBACK, PUBREC, PUBREL (flags 0x2 [MQTT-3.6.1-1]),
 * PUBCOMP, UNSUBACK with a non-zero packet id; MQTT_ERR_ARG otherwise.
 */
int mqtt_encode_ack(uint8_t *buf, size_t cap, enum mqtt_type type, uint16_t packet_id,
                    size_t *written)
{
    *written = 0;
    switch (type) {
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        break;
    default:
        return MQTT_ERR_ARG;
    }
    if (packet_id == 0) return MQTT_ERR_ARG;
    uint8_t byte0 = (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 0x2 : 0));
    uint8_t *p;
    size_t total;
    int rc = mqtt_encode_begin(buf, cap, byte0, 2, &p, &total);
    if (rc != MQTT_OK) return rc;
    mqtt_put_u16(p, packet_id);
    *written = total;
    return MQTT_OK;
}

/* SUBSCRIBE (qos_bytes) or UNSUBSCRIBE: non-zero id, at least one
 * non-empty filter, QoS 0..2 (a NULL qos array means QoS 0 throughout). */
static int encode_sublist(uint8_t *buf, size_t cap, enum mqtt_type type, uint16_t packet_id,
                          const mqtt_str *filters, const uint8_t *qos, unsigned count,
                          size_t *written)
{
    *written = 0;
    bool qos_bytes = type == MQTT_SUBSCRIBE;
    if (packet_id == 0 || count == 0 || filters == NULL) return MQTT_ERR_ARG;
    uint64_t rem = 2;
    for (unsigned i = 0; i < count; i++) {
        if (filters[i].len == 0) return MQTT_ERR_ARG;
        if (qos_bytes && qos && qos[i] > 2) return MQTT_ERR_ARG;
        rem += 2u + filters[i].len + (qos_bytes ? 1u : 0u);
        if (rem > MQTT_MAX_REMAINING_LENGTH)
            return MQTT_ERR_ARG; /* stop before a huge count can wrap */
    }
    uint8_t *p;
    size_t total;
    int rc = mqtt_encode_begin(buf, cap, (uint8_t)(type << 4 | 0x2), rem, &p, &total);
    if (rc != MQTT_OK) return rc;
    p = mqtt_put_u16(p, packet_id);
    for (unsigned i = 0; i < count; i++) {
        p = mqtt_put_str(p, filters[i].ptr, filters[i].len);
        if (qos_bytes) *p++ = qos ? qos[i] : 0;
    }
    *written = total;
    return MQTT_OK;
}

/*
 * mqtt_encode_subscribe -- spec 3.8 (flags 0x2 [MQTT-3.8.1-1]). qos may be
 * NULL (all QoS 0). MQTT_ERR_ARG for packet id 0, no filters, an empty
 * filter or QoS > 2.
 */
int mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_str *filters,
                          const uint8_t *qos, unsigned count, size_t *written)
{
    return encode_sublist(buf, cap, MQTT_SUBSCRIBE, packet_id, filters, qos, count, written);
}

/*
 * mqtt_encode_unsubscribe -- spec 3.10 (flags 0x2 [MQTT-3.10.1-1]).
 * MQTT_ERR_ARG for packet id 0, no filters or an empty filter.
 */
int mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_str *filters,
                            unsigned count, size_t *written)
{
    return encode_sublist(buf, cap, MQTT_UNSUBSCRIBE, packet_id, filters, NULL, count, written);
}

/*
 * mqtt_encode_suback -- spec 3.9. MQTT_ERR_ARG for packet id 0, no codes or
 * a code other than 0, 1, 2, 0x80 [MQTT-3.9.3-2].
 */
int mqtt_encode_suback(uint8_t *buf, size_t cap, uint16_t packet_id, const uint8_t *codes,
                       unsigned count, size_t *written)
{
    *written = 0;
    if (packet_id == 0 || count == 0 || codes == NULL) return MQTT_ERR_ARG;
    for (unsigned i = 0; i < count; i++)
        if (codes[i] > 2 && codes[i] != MQTT_SUBACK_FAILURE) return MQTT_ERR_ARG;
    uint8_t *p;
    size_t total;
    int rc = mqtt_encode_begin(buf, cap, MQTT_SUBACK << 4, 2u + (uint64_t)count, &p, &total);
    if (rc != MQTT_OK) return rc;
    p = mqtt_put_u16(p, packet_id);
    memcpy(p, codes, count);
    *written = total;
    return MQTT_OK;
}

/*
 * mqtt_encode_empty -- PINGREQ, PINGRESP, DISCONNECT: two bytes.
 * MQTT_ERR_ARG for any other type.
 */
int mqtt_encode_empty(uint8_t *buf, size_t cap, enum mqtt_type type, size_t *written)
{
    *written = 0;
    if (type != MQTT_PINGREQ && type != MQTT_PINGRESP && type != MQTT_DISCONNECT)
        return MQTT_ERR_ARG;
    uint8_t *p;
    size_t total;
    int rc = mqtt_encode_begin(buf, cap, (uint8_t)(type << 4), 0, &p, &total);
    if (rc != MQTT_OK) return rc;
    *written = total;
    return MQTT_OK;
}
