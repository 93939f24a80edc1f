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
#include <string.h>

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

/* ---- the topic engine (spec 4.7) -------------------------------------
 *
 * The one implementation of topic levels, wildcards and the '$' rule; the
 * ACL (acl/) and the broker's subscription tree use it. Everything here is
 * pure and allocation-free, takes byte views that need not be
 * NUL-terminated, and expects valid inputs (see the validators); on invalid
 * ones the answers are unspecified but no read leaves the given buffers. */

/* Topic name (PUBLISH): 1..65535 bytes, valid UTF-8, no '+' or '#'.
 * MQTT_OK, MQTT_ERR_TOPIC or MQTT_ERR_UTF8. */
int mqtt_topic_name_validate(const uint8_t *p, size_t len);
/* Topic filter: 1..65535 bytes, valid UTF-8, '+' alone in its level, '#'
 * alone and last [MQTT-4.7.1-2..3]; empty levels are legal.
 * MQTT_OK, MQTT_ERR_FILTER or MQTT_ERR_UTF8. */
int mqtt_topic_filter_validate(const uint8_t *p, size_t len);
/* More than max_levels levels? Only strings of at least max_levels bytes can
 * be (n levels need n - 1 separators), so shorter ones are not scanned. */
bool mqtt_topic_deeper_than(const uint8_t *p, size_t len, size_t max_levels);

/* Cursor over the '/'-separated levels of a topic name or filter. A string
 * of n separators has n + 1 levels, any of them possibly empty ("" is one
 * empty level, "/" two). Usage:
 *     for (mqtt_levels_init(&it, s, len); !it.done; mqtt_levels_next(&it))
 *         use(it.ptr, it.len);
 */
typedef struct {
    const uint8_t *ptr; /* the current level, it.len bytes, no '/' */
    size_t len;
    const uint8_t *end; /* end of the whole string */
    bool done;          /* moved past the last level: ptr/len are stale */
} mqtt_levels;

/* The level cursor and the two tests below run for every level of every
 * PUBLISH the broker routes, so they are inline. mqtt_levels_load_ (not
 * for callers) measures the level starting at it->ptr. */
static inline void mqtt_levels_load_(mqtt_levels *it)
{
    const uint8_t *slash = memchr(it->ptr, '/', (size_t)(it->end - it->ptr));
    it->len = (size_t)((slash ? slash : it->end) - it->ptr);
}

static inline void mqtt_levels_init(mqtt_levels *it, const uint8_t *s, size_t len)
{
    it->ptr = s;
    it->end = s + len;
    it->done = false;
    it->len = 0;
    if (len > 0) mqtt_levels_load_(it);
}

/* Is the current level the last one? */
static inline bool mqtt_levels_last(const mqtt_levels *it)
{
    return it->ptr + it->len == it->end;
}

/* *out = the cursor one level further than *it (done after the last
 * level); out may be it. Recursive walks (the broker's tree) keep it for
 * their siblings and descend with out. */
static inline void mqtt_levels_step(mqtt_levels *out, const mqtt_levels *it)
{
    const uint8_t *p = it->ptr, *end = it->end;
    size_t len = it->len;
    out->end = end;
    if (it->done || p + len == end) {
        out->ptr = p;
        out->len = len;
        out->done = true;
        return;
    }
    out->ptr = p + len + 1; /* skip the '/' */
    out->done = false;
    mqtt_levels_load_(out);
}

/* Move to the next level, or set done after the last one. */
static inline void mqtt_levels_next(mqtt_levels *it)
{
    mqtt_levels_step(it, it);
}

enum mqtt_level_kind {
    MQTT_LEVEL_TEXT = 0, /* anything but a lone wildcard */
    MQTT_LEVEL_PLUS = 1, /* "+": exactly one level [MQTT-4.7.1-3] */
    MQTT_LEVEL_HASH = 2, /* "#": this level, all below, and the parent [MQTT-4.7.1-2] */
};

/* The kind of one filter level (a '+' or '#' inside a longer level is TEXT;
 * such a filter is invalid anyway). */
static inline enum mqtt_level_kind mqtt_level_kind(const uint8_t *p, size_t len)
{
    if (len != 1) return MQTT_LEVEL_TEXT;
    return p[0] == '+' ? MQTT_LEVEL_PLUS : p[0] == '#' ? MQTT_LEVEL_HASH : MQTT_LEVEL_TEXT;
}

/* The '$' rule, the only place it is written down: a filter whose first
 * level is a wildcard never matches a topic starting with '$' ($SYS/...)
 * [MQTT-4.7.2-1]; '$' matters only as the very first character. True when
 * topic is such a topic. */
static inline bool mqtt_topic_is_dollar(const uint8_t *topic, size_t len)
{
    return len > 0 && topic[0] == '$';
}

/* Incremental matching, for callers whose filter is not one string (the ACL
 * substitutes %c/%u per level): init with the subject, then feed the
 * filter's levels in order until the answer is not MQTT_MATCH_MORE.
 * The subject is a topic name (matching) or a filter (covering: does the
 * fed filter match every topic name the subject filter can match? Its '+'
 * is covered only by '+' or '#', its '#' only by '#'). */
enum mqtt_match_result {
    MQTT_MATCH_NO = 0,
    MQTT_MATCH_YES = 1,
    MQTT_MATCH_MORE = 2, /* undecided: feed the next filter level */
};

typedef struct {
    mqtt_levels subject;
    bool subject_is_filter;
    bool dollar; /* subject starts with '$' */
    bool first;  /* no filter level fed yet */
} mqtt_match;

static inline void mqtt_match_init(mqtt_match *m, const uint8_t *subject, size_t len,
                                   bool subject_is_filter)
{
    mqtt_levels_init(&m->subject, subject, len);
    m->subject_is_filter = subject_is_filter;
    m->dollar = mqtt_topic_is_dollar(subject, len);
    m->first = true;
}

/*
 * mqtt_match_level -- feed one filter level: its kind, its text (used for
 * MQTT_LEVEL_TEXT only; may be NULL when len is 0) and whether it is the
 * filter's last level. Returns MQTT_MATCH_YES or _NO (final) or
 * MQTT_MATCH_MORE. After the last level the answer is always final.
 * (Inline: the ACL runs it per rule level for every delivery.)
 *
 * '#' decides at once: it covers this level, everything below and the
 * parent (spec 4.7.1.2), so "a/#" matches "a" (the subject ran out right
 * before it). '+' takes exactly one level, also an empty one (4.7.1.3).
 * A wildcard as the first filter level never matches a '$' subject
 * [MQTT-4.7.2-1]. When the subject is a filter, its '#' is covered only by
 * a '#' and its '+' only by '+' or '#'.
 */
static inline enum mqtt_match_result mqtt_match_level(mqtt_match *m, enum mqtt_level_kind kind,
                                                      const uint8_t *text, size_t len, bool last)
{
    bool first = m->first;
    m->first = false;
    mqtt_levels *s = &m->subject;
    if (kind == MQTT_LEVEL_HASH) return first && m->dollar ? MQTT_MATCH_NO : MQTT_MATCH_YES;
    if (s->done) return MQTT_MATCH_NO;
    enum mqtt_level_kind sk =
        m->subject_is_filter ? mqtt_level_kind(s->ptr, s->len) : MQTT_LEVEL_TEXT;
    if (sk == MQTT_LEVEL_HASH) return MQTT_MATCH_NO;
    if (kind == MQTT_LEVEL_PLUS) {
        if (first && m->dollar) return MQTT_MATCH_NO;
    } else if (sk == MQTT_LEVEL_PLUS || len != s->len ||
               (len > 0 && memcmp(text, s->ptr, len) != 0)) {
        return MQTT_MATCH_NO;
    }
    mqtt_levels_next(s);
    if (last) return s->done ? MQTT_MATCH_YES : MQTT_MATCH_NO;
    return MQTT_MATCH_MORE;
}

/* Does (valid) filter match (valid) topic name? '+' matches one level, also
 * an empty one; "a/#" matches "a"; the '$' rule applies. An empty filter
 * matches nothing. Cost: O(flen + tlen). */
bool mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen);
/* Does (valid) filter outer match every topic name (valid) filter inner
 * matches? Conservative: it answers true only level by level (a literal or
 * '+' level of outer covers the same literal, '+' covers '+', '#' covers
 * the rest), so "+/#" does not cover "#". Empty filters cover nothing. */
bool mqtt_filter_covers(const uint8_t *outer, size_t olen, const uint8_t *inner, size_t ilen);

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
