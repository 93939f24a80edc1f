/*
 * frame.c -- fixed header: packet type, reserved flags, remaining length.
 *
 * Framing is the first thing that sees attacker bytes, so it rejects as
 * early as it can: a bad first byte before the length arrives, an oversize
 * length before the body arrives.
 */
#include "mqtt/internal.h"

/* Fixed-header flags per packet type (spec 2.2.2, table 2.2). FLAGS_ANY
 * marks PUBLISH, whose flags carry DUP/QoS/RETAIN; FLAGS_RESERVED marks the
 * forbidden types 0 and 15. Everything else must match exactly
 * [MQTT-2.2.2-1], [MQTT-2.2.2-2]. */
enum { FLAGS_ANY = 0x10, FLAGS_RESERVED = 0x20 };

static const uint8_t fixed_flags[16] = {
    [0] = FLAGS_RESERVED,       [MQTT_CONNECT] = 0x0,     [MQTT_CONNACK] = 0x0,
    [MQTT_PUBLISH] = FLAGS_ANY, [MQTT_PUBACK] = 0x0,      [MQTT_PUBREC] = 0x0,
    [MQTT_PUBREL] = 0x2,                                  /* [MQTT-3.6.1-1] */
    [MQTT_PUBCOMP] = 0x0,       [MQTT_SUBSCRIBE] = 0x2,   /* [MQTT-3.8.1-1] */
    [MQTT_SUBACK] = 0x0,        [MQTT_UNSUBSCRIBE] = 0x2, /* [MQTT-3.10.1-1] */
    [MQTT_UNSUBACK] = 0x0,      [MQTT_PINGREQ] = 0x0,     [MQTT_PINGRESP] = 0x0,
    [MQTT_DISCONNECT] = 0x0,    [15] = FLAGS_RESERVED,
};

/*
 * mqtt_check_fixed_header -- apply the flag table to one (type, flags).
 * Shared with the decoders so a hand-built header gets the same checks.
 */
int mqtt_check_fixed_header(uint8_t type, uint8_t flags)
{
    if (type > 15 || fixed_flags[type] == FLAGS_RESERVED) return MQTT_ERR_TYPE;
    if (fixed_flags[type] == FLAGS_ANY) {
        /* QoS is bits 2..1; both set is QoS 3 [MQTT-3.3.1-4]. */
        if (((flags >> 1) & 0x3) == 3) return MQTT_ERR_QOS;
        return MQTT_OK;
    }
    return flags == fixed_flags[type] ? MQTT_OK : MQTT_ERR_FLAGS;
}

/*
 * mqtt_varint_decode -- remaining length (spec 2.2.3): 7 bits per byte,
 * least significant group first, bit 7 = "more follows", at most 4 bytes.
 *
 * A 4th byte with the continuation bit set is rejected at once: whatever
 * follows would be a 5th byte, so there is no need to wait for it.
 *
 * Non-minimal encodings (e.g. 0x80 0x00 for 0) are accepted: 3.1.1 gives
 * the encoding algorithm but, unlike MQTT 5 [MQTT-1.5.5-1], has no
 * normative statement requiring the shortest form, and the value is still
 * bounded by the 4-byte limit, so accepting them costs nothing in safety.
 */
int mqtt_varint_decode(const uint8_t *p, size_t len, uint32_t *value, size_t *used)
{
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len) return MQTT_NEED_MORE;
        v |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *value = v;
            *used = i + 1;
            return MQTT_OK;
        }
    }
    return MQTT_ERR_REMAINING_LENGTH;
}

/*
 * mqtt_varint_size -- bytes the shortest encoding of value takes (1..4),
 * 0 above MQTT_MAX_REMAINING_LENGTH.
 */
int mqtt_varint_size(uint32_t value)
{
    if (value < 128u) return 1;
    if (value < 16384u) return 2;
    if (value < 2097152u) return 3;
    if (value <= MQTT_MAX_REMAINING_LENGTH) return 4;
    return 0;
}

/*
 * mqtt_varint_encode -- shortest encoding of value into out; returns the
 * byte count, or 0 (nothing written) if value is out of range.
 */
int mqtt_varint_encode(uint32_t value, uint8_t out[4])
{
    int n = mqtt_varint_size(value);
    for (int i = 0; i < n; i++) {
        uint8_t b = value & 0x7f;
        value >>= 7;
        out[i] = (uint8_t)(i + 1 < n ? (b | 0x80) : b);
    }
    return n;
}

/*
 * mqtt_check_fixed_header_level -- level 5 makes type 15 AUTH, whose flags
 * are reserved 0 [MQTT-3.15.1-1]; every other rule is the same at all levels.
 */
int mqtt_check_fixed_header_level(uint8_t type, uint8_t flags, uint8_t level)
{
    if (level == 5 && type == MQTT_AUTH) return flags == 0 ? MQTT_OK : MQTT_ERR_FLAGS;
    return mqtt_check_fixed_header(type, flags);
}

/*
 * mqtt_frame_level -- see mqtt.h. On MQTT_NEED_MORE, *packet_len is the full
 * packet size when the remaining length is already known (so the caller can
 * size its buffer) and 0 otherwise; *hdr is only filled on MQTT_OK.
 */
int mqtt_frame_level(const uint8_t *buf, size_t len, size_t max_packet, uint8_t level,
                     mqtt_header *hdr, size_t *packet_len)
{
    *packet_len = 0;
    if (len < 1) return MQTT_NEED_MORE;

    uint8_t type = buf[0] >> 4, flags = buf[0] & 0x0f;
    int rc = mqtt_check_fixed_header_level(type, flags, level);
    if (rc != MQTT_OK) return rc;

    uint32_t remaining;
    size_t used;
    rc = mqtt_varint_decode(buf + 1, len - 1, &remaining, &used);
    if (rc != MQTT_OK) return rc;
    /* MQTT 5 requires the shortest encoding [MQTT-1.5.5-1]. */
    if (level == 5 && (size_t)mqtt_varint_size(remaining) != used) return MQTT_ERR_VARINT;

    /* At most 1 + 4 + 268435455: fits in a 32-bit size_t too. */
    size_t total = 1 + used + (size_t)remaining;
    if (max_packet != 0 && total > max_packet) return MQTT_ERR_TOO_LARGE;
    *packet_len = total;
    if (len < total) return MQTT_NEED_MORE;

    hdr->type = type;
    hdr->flags = flags;
    hdr->remaining = remaining;
    hdr->body = buf + 1 + used;
    return MQTT_OK;
}

/* mqtt_frame -- 3.1.1/3.1 framing: mqtt_frame_level at level 4. */
int mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, mqtt_header *hdr,
               size_t *packet_len)
{
    return mqtt_frame_level(buf, len, max_packet, 4, hdr, packet_len);
}
