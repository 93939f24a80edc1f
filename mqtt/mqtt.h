/*
 * mqtt.h -- MQTT 3.1.1 (and 3.1) codec.
 *
 * Pure: no sockets, no globals, no allocation. Decoders walk a cursor to an
 * end pointer and return views ({len, ptr}) into the caller's input buffer;
 * they are valid only as long as that buffer is. Encoders write into caller
 * buffers and never write past `cap`.
 *
 * Return convention (one enum for the module): MQTT_OK (0) is success,
 * MQTT_NEED_MORE (positive) means "not an error, feed more bytes", every
 * other value is negative and names the rule that was broken;
 * mqtt_strerror() turns it into words with the spec reference.
 */
#ifndef SECBROKER_MQTT_H
#define SECBROKER_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MQTT_MAX_REMAINING_LENGTH 268435455u /* 0xFFFFFF7F as varint */

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
};

enum mqtt_err {
    MQTT_OK = 0,
    MQTT_NEED_MORE = 1,             /* framing: incomplete, not an error */
    MQTT_ERR_TYPE = -1,             /* packet type 0 or 15 is reserved */
    MQTT_ERR_FLAGS = -2,            /* fixed-header reserved flags wrong [MQTT-2.2.2-2] */
    MQTT_ERR_QOS = -3,              /* PUBLISH QoS 3 [MQTT-3.3.1-4] */
    MQTT_ERR_REMAINING_LENGTH = -4, /* varint longer than 4 bytes (non-minimal accepted) */
    MQTT_ERR_TOO_LARGE = -5,        /* packet larger than the configured maximum */
    MQTT_ERR_LENGTH = -6,           /* body truncated or trailing bytes */
    MQTT_ERR_UTF8 = -7,             /* ill-formed UTF-8, U+0000 or surrogate [MQTT-1.5.3-1..2] */
    MQTT_ERR_PROTOCOL_NAME = -8,    /* not "MQTT"/"MQIsdp" [MQTT-3.1.2-1] */
    MQTT_ERR_PROTOCOL_LEVEL = -9,   /* unsupported level: answer CONNACK 1 [MQTT-3.1.2-2] */
    MQTT_ERR_CONNECT_FLAGS = -10,   /* reserved bit, will or password flag inconsistency */
    MQTT_ERR_TOPIC = -11,           /* empty topic or wildcard in a topic name [MQTT-3.3.2-2] */
    MQTT_ERR_FILTER = -12,          /* invalid topic filter [MQTT-4.7.1-2..3] */
    MQTT_ERR_EMPTY = -13,           /* SUBSCRIBE/UNSUBSCRIBE without filters [MQTT-3.8.3-3] */
    MQTT_ERR_PACKET_ID = -14,       /* packet id 0 where one is required [MQTT-2.3.1-1] */
    MQTT_ERR_SUB_QOS = -15,         /* requested QoS > 2 or reserved bits [MQTT-3.8.3-4] */
    MQTT_ERR_BUFFER = -16,          /* encode: output buffer too small */
    MQTT_ERR_CONNACK = -17,         /* CONNACK reserved bits / return code out of range */
    MQTT_ERR_ARG = -18,             /* encode: invalid argument (e.g. string > 65535) */
};

/* A length-prefixed string or binary field: a view into the input buffer. */
typedef struct {
    const uint8_t *ptr;
    uint16_t len;
} mqtt_str;

/* Result of framing: the fixed header and where the body is. */
typedef struct {
    uint8_t type;        /* enum mqtt_type */
    uint8_t flags;       /* low nibble of byte 1 */
    uint32_t remaining;  /* body length */
    const uint8_t *body; /* points into the framed buffer */
} mqtt_header;

/*
 * mqtt_frame -- find one packet at the start of buf.
 * max_packet: largest accepted total packet size in bytes (0 = the protocol max).
 * Returns MQTT_OK with *hdr filled and *packet_len = fixed header + body,
 * MQTT_NEED_MORE when more bytes are needed (the size check is applied as soon
 * as the remaining length is known, so an oversize packet is refused early),
 * or MQTT_ERR_TYPE / _FLAGS / _QOS / _REMAINING_LENGTH / _TOO_LARGE.
 * On MQTT_NEED_MORE, *packet_len is the whole packet's size once the
 * remaining length is known (0 before); *hdr is only filled on MQTT_OK.
 * Fixed-header flag rules come from a table (PUBREL/SUBSCRIBE/UNSUBSCRIBE = 2,
 * PUBLISH free but QoS != 3, all others 0).
 */
int mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, mqtt_header *hdr,
               size_t *packet_len);

/* Remaining-length varint. decode: MQTT_OK/_NEED_MORE/_ERR_REMAINING_LENGTH.
 * encode: returns bytes written (1..4) or 0 if v > MQTT_MAX_REMAINING_LENGTH. */
int mqtt_varint_decode(const uint8_t *p, size_t len, uint32_t *value, size_t *used);
int mqtt_varint_encode(uint32_t value, uint8_t out[4]);
/* Bytes needed by the varint for value (1..4), 0 if out of range. */
int mqtt_varint_size(uint32_t value);

/* UTF-8 per spec 1.5.3: well-formed, no overlongs, no surrogates,
 * <= U+10FFFF, no U+0000. MQTT_OK or MQTT_ERR_UTF8. */
int mqtt_utf8_validate(const uint8_t *p, size_t len);

/* Topic name (PUBLISH): 1..65535 bytes, valid UTF-8, no '+' or '#'.
 * MQTT_OK, MQTT_ERR_TOPIC or MQTT_ERR_UTF8. */
int mqtt_topic_name_validate(const uint8_t *p, size_t len);
/* Topic filter: valid UTF-8, non-empty, '+' alone in its level, '#' alone and last.
 * MQTT_OK, MQTT_ERR_FILTER or MQTT_ERR_UTF8. */
int mqtt_topic_filter_validate(const uint8_t *p, size_t len);
/* Does (valid) filter match (valid) topic name? A leading wildcard does not
 * match a topic that starts with '$' [MQTT-4.7.2-1]. Cost: O(len). */
bool mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen);

/* ---- packets --------------------------------------------------------- */

typedef struct {
    mqtt_str protocol_name; /* "MQTT" (level 4) or "MQIsdp" (level 3) */
    uint8_t protocol_level;
    bool clean_session;
    bool will_flag;
    uint8_t will_qos;
    bool will_retain;
    bool username_flag;
    bool password_flag;
    uint16_t keepalive;
    mqtt_str client_id;    /* may be empty */
    mqtt_str will_topic;   /* valid topic name when will_flag */
    mqtt_str will_payload; /* binary */
    mqtt_str username;
    mqtt_str password; /* binary */
} mqtt_connect;

typedef struct {
    bool session_present;
    uint8_t return_code; /* 0..5 */
} mqtt_connack;

enum mqtt_connack_code {
    MQTT_CONNACK_ACCEPTED = 0,
    MQTT_CONNACK_PROTOCOL = 1,
    MQTT_CONNACK_IDENTIFIER = 2,
    MQTT_CONNACK_UNAVAILABLE = 3,
    MQTT_CONNACK_BAD_CREDENTIALS = 4,
    MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

typedef struct {
    bool dup;
    uint8_t qos;
    bool retain;
    mqtt_str topic;
    uint16_t packet_id; /* 0 for QoS 0 */
    const uint8_t *payload;
    size_t payload_len;
} mqtt_publish;

/* SUBSCRIBE / UNSUBSCRIBE / SUBACK: decoding validates every entry and
 * counts them; iterate with the _next functions (no allocation). */
typedef struct {
    uint16_t packet_id;
    unsigned count;
    const uint8_t *cur, *end; /* iteration cursor */
    bool has_qos;             /* SUBSCRIBE entries carry a QoS byte */
} mqtt_sublist;

typedef struct {
    uint16_t packet_id;
    const uint8_t *codes; /* count return codes: 0,1,2 or 0x80 */
    unsigned count;
} mqtt_suback;

#define MQTT_SUBACK_FAILURE 0x80

/* Each decoder takes a header produced by mqtt_frame for the matching type.
 * Errors: MQTT_ERR_LENGTH for truncated/trailing data plus the rule-specific
 * codes listed in enum mqtt_err. */
int mqtt_decode_connect(const mqtt_header *h, mqtt_connect *out);
int mqtt_decode_connack(const mqtt_header *h, mqtt_connack *out);
int mqtt_decode_publish(const mqtt_header *h, mqtt_publish *out);
/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: exactly a non-zero packet id. */
int mqtt_decode_ack(const mqtt_header *h, uint16_t *packet_id);
int mqtt_decode_subscribe(const mqtt_header *h, mqtt_sublist *out);
int mqtt_decode_unsubscribe(const mqtt_header *h, mqtt_sublist *out);
int mqtt_decode_suback(const mqtt_header *h, mqtt_suback *out);
/* PINGREQ, PINGRESP, DISCONNECT: remaining length must be 0. */
int mqtt_decode_empty(const mqtt_header *h);

/* Next entry of a decoded (already validated) SUBSCRIBE/UNSUBSCRIBE.
 * Returns true and fills filter (and qos for SUBSCRIBE) or false at the end. */
bool mqtt_sublist_next(mqtt_sublist *it, mqtt_str *filter, uint8_t *qos);

/*
 * Encoders: write one packet into buf (capacity cap), set *written.
 * Return MQTT_OK, MQTT_ERR_BUFFER (nothing useful written) or MQTT_ERR_ARG.
 */
int mqtt_encode_connect(uint8_t *buf, size_t cap, const mqtt_connect *c, size_t *written);
int mqtt_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t rc,
                        size_t *written);
/* Whole PUBLISH including payload. */
int mqtt_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish *p, size_t *written);
/* Only the fixed header + variable header of a PUBLISH whose payload has
 * payload_len bytes (the broker appends the shared payload itself). */
int mqtt_encode_publish_header(uint8_t *buf, size_t cap, uint8_t qos, bool dup, bool retain,
                               const uint8_t *topic, uint16_t topic_len, uint16_t packet_id,
                               size_t payload_len, size_t *written);
/* Size of the header mqtt_encode_publish_header would write: at most
 * 9 + topic_len (1 type byte, up to 4 length bytes, 2 + topic_len, 2 for the
 * packet id), see MQTT_PUBLISH_HEADER_MAX; 0 if the encoder would refuse. */
#define MQTT_PUBLISH_HEADER_MAX(topic_len) (9u + (size_t)(topic_len))
size_t mqtt_publish_header_size(uint8_t qos, uint16_t topic_len, size_t payload_len);
/* PUBACK, PUBREC, PUBREL (flags 0x2), PUBCOMP, UNSUBACK. */
int mqtt_encode_ack(uint8_t *buf, size_t cap, enum mqtt_type type, uint16_t packet_id,
                    size_t *written);
/* filters[i] with qos[i]; qos may be NULL for UNSUBSCRIBE. */
int mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_str *filters,
                          const uint8_t *qos, unsigned count, size_t *written);
int mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_str *filters,
                            unsigned count, size_t *written);
int mqtt_encode_suback(uint8_t *buf, size_t cap, uint16_t packet_id, const uint8_t *codes,
                       unsigned count, size_t *written);
/* PINGREQ, PINGRESP, DISCONNECT (two bytes). */
int mqtt_encode_empty(uint8_t *buf, size_t cap, enum mqtt_type type, size_t *written);

/* Words for an error code, with the spec rule where there is one. Never NULL. */
const char *mqtt_strerror(int err);
/* "CONNECT", "PUBLISH", ... ; "RESERVED" for anything else. */
const char *mqtt_type_name(int type);
/* Words for a CONNACK return code ("not authorized"). */
const char *mqtt_connack_string(int rc);

#endif
