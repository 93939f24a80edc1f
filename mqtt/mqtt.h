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
    /* MQTT 5.0 only (see the "MQTT 5.0" section below). */
    MQTT_ERR_VARINT = -19,      /* variable byte integer > 4 bytes or not minimal [MQTT-1.5.5-1] */
    MQTT_ERR_PROP_LENGTH = -20, /* property length past the packet, value truncated (2.2.2.1) */
    MQTT_ERR_PROP_ID = -21,     /* unknown property identifier (spec 2.2.2.2) */
    MQTT_ERR_PROP_NOT_ALLOWED = -22, /* property not allowed in this packet (spec 2.2.2.2) */
    MQTT_ERR_PROP_DUP = -23,         /* property more than once (only user property repeats) */
    MQTT_ERR_PROP_VALUE = -24,       /* property value out of range (0 receive maximum ...) */
    MQTT_ERR_AUTH_DATA = -25,        /* Authentication Data without Method (3.1.2.11.10) */
    MQTT_ERR_REASON = -26,           /* reason code not allowed in this packet [MQTT-3.4.2-1] ... */
    MQTT_ERR_SUB_OPTIONS = -27,      /* subscription options reserved bits set [MQTT-3.8.3-5] */
    MQTT_ERR_RETAIN_HANDLING = -28,  /* retain handling 3 (spec 3.8.3.1) */
    MQTT_ERR_SHARED_NO_LOCAL = -29,  /* No Local on a shared subscription [MQTT-3.8.3-4] */
    MQTT_ERR_TOPIC_ALIAS = -30,      /* empty topic name without a Topic Alias (3.3.2.3.4) */
    MQTT_ERR_AUTH_METHOD = -31,      /* AUTH without Authentication Method (3.15.2.2.2) */
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
    bool bridge;       /* decoded: level had bit 0x80 (a Mosquitto-style bridge; stripped) */
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

/* ==== MQTT 5.0 ==========================================================
 *
 * Design: MQTT 5.0 lives beside 3.1.1/3.1 in parallel functions named
 * mqtt5_*; nothing above changes behaviour. mqtt_frame and the mqtt_decode_*
 * functions above stay 3.1.1/3.1 only (type 15 is reserved there and a level
 * 5 CONNECT is MQTT_ERR_PROTOCOL_LEVEL). A caller that wants to speak v5:
 *   1. frames with mqtt_frame_level(.., level, ..): level 5 admits AUTH
 *      (type 15, flags 0 [MQTT-3.15.1-1]) and refuses a non-minimal remaining
 *      length [MQTT-1.5.5-1]; level 3/4 is exactly mqtt_frame;
 *   2. decodes the CONNECT with mqtt5_decode_connect, which accepts levels 3,
 *      4 and 5 (a 3/4 CONNECT goes through mqtt_decode_connect unchanged and
 *      gets empty property sets);
 *   3. then uses the mqtt5_* decoders/encoders for a level-5 connection and
 *      the functions above for 3.1.1/3.1 ones. PINGREQ/PINGRESP are the same
 *      at every level (mqtt_decode_empty, mqtt_encode_empty).
 *
 * Properties (spec 2.2.2) are decoded without allocation: each single
 * property lands in a field of mqtt_props (its bit set in `present`), the
 * repeatable ones (User Property; Subscription Identifier in PUBLISH) are
 * counted and read back from the raw block with an iterator. Every decoder
 * checks the property against the packet it is in, duplicates, lengths and
 * values, and every reason code against the packet's table (spec 2.4).
 * Encoders take a ready property block (mqtt_bytes: build one with
 * mqtt_props_writer) and validate it against the packet before writing, so
 * they never put a packet on the wire that their own decoder would refuse.
 * ======================================================================= */

#define MQTT_AUTH 15 /* packet type 15 at protocol level 5 (spec 3.15) */

/* A byte range longer than 65535 (property blocks). */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} mqtt_bytes;

/* Property identifiers (spec 2.2.2.2, table 2-4). */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,         /* byte, PUBLISH, will */
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,         /* four-byte, PUBLISH, will */
    MQTT_PROP_CONTENT_TYPE = 0x03,           /* UTF-8, PUBLISH, will */
    MQTT_PROP_RESPONSE_TOPIC = 0x08,         /* UTF-8, PUBLISH, will */
    MQTT_PROP_CORRELATION_DATA = 0x09,       /* binary, PUBLISH, will */
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,        /* varint, PUBLISH, SUBSCRIBE */
    MQTT_PROP_SESSION_EXPIRY = 0x11,         /* four-byte, CONNECT, CONNACK, DISCONNECT */
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,     /* UTF-8, CONNACK */
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,      /* two-byte, CONNACK */
    MQTT_PROP_AUTH_METHOD = 0x15,            /* UTF-8, CONNECT, CONNACK, AUTH */
    MQTT_PROP_AUTH_DATA = 0x16,              /* binary, CONNECT, CONNACK, AUTH */
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,   /* byte, CONNECT */
    MQTT_PROP_WILL_DELAY = 0x18,             /* four-byte, will */
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,  /* byte, CONNECT */
    MQTT_PROP_RESPONSE_INFO = 0x1A,          /* UTF-8, CONNACK */
    MQTT_PROP_SERVER_REFERENCE = 0x1C,       /* UTF-8, CONNACK, DISCONNECT */
    MQTT_PROP_REASON_STRING = 0x1F,          /* UTF-8, all acks, DISCONNECT, AUTH */
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,        /* two-byte, CONNECT, CONNACK */
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,    /* two-byte, CONNECT, CONNACK */
    MQTT_PROP_TOPIC_ALIAS = 0x23,            /* two-byte, PUBLISH */
    MQTT_PROP_MAXIMUM_QOS = 0x24,            /* byte, CONNACK */
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,       /* byte, CONNACK */
    MQTT_PROP_USER = 0x26,                   /* UTF-8 pair, every packet with properties */
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,    /* four-byte, CONNECT, CONNACK */
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28, /* byte, CONNACK */
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,       /* byte, CONNACK */
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,   /* byte, CONNACK */
};
#define MQTT_PROP_ID_MAX 0x2A

/* Data types of property values (spec 1.5). */
enum mqtt_prop_type {
    MQTT_PTYPE_NONE = 0, /* not a property identifier */
    MQTT_PTYPE_BYTE,
    MQTT_PTYPE_U16,    /* two-byte integer */
    MQTT_PTYPE_U32,    /* four-byte integer */
    MQTT_PTYPE_VARINT, /* variable byte integer */
    MQTT_PTYPE_UTF8,   /* UTF-8 encoded string */
    MQTT_PTYPE_BINARY, /* binary data */
    MQTT_PTYPE_PAIR,   /* UTF-8 string pair */
};

/* Where a property block sits: a packet type (MQTT_CONNECT .. MQTT_AUTH)
 * or MQTT_PROPS_WILL for the will properties of a CONNECT. */
#define MQTT_PROPS_WILL 16

/* A decoded property block. Fields of absent properties are 0/empty; test
 * presence with mqtt_props_has. Strings are views into the packet. */
typedef struct {
    uint64_t present;      /* bit (1 << id) for every property id found */
    mqtt_bytes raw;        /* the block without its length prefix (iterators, forwarding) */
    unsigned user_count;   /* User Property pairs */
    unsigned sub_id_count; /* Subscription Identifiers (several only in PUBLISH) */
    uint8_t payload_format, request_problem_info, request_response_info, maximum_qos;
    uint8_t retain_available, wildcard_sub_available, sub_id_available, shared_sub_available;
    uint16_t server_keep_alive, receive_maximum, topic_alias_maximum, topic_alias;
    uint32_t message_expiry, session_expiry, will_delay, maximum_packet_size;
    uint32_t subscription_id; /* the first one */
    mqtt_str content_type, response_topic, correlation_data, assigned_client_id;
    mqtt_str auth_method, auth_data, response_info, server_reference, reason_string;
} mqtt_props;

/* One property as the iterator returns it: num for the integer types, str
 * for UTF-8/binary, str (name) and val (value) for a pair. */
typedef struct {
    uint8_t id;
    uint8_t type; /* enum mqtt_prop_type */
    uint32_t num;
    mqtt_str str, val;
} mqtt_prop;

typedef struct {
    const uint8_t *cur, *end;
} mqtt_prop_iter;

/* Type of a property id (MQTT_PTYPE_NONE for unknown ids), its spec name
 * ("Session Expiry Interval", NULL if unknown), and whether it may appear in
 * the given place (packet type or MQTT_PROPS_WILL) [spec 2.2.2.2]. */
int mqtt_prop_type_of(unsigned id);
const char *mqtt_prop_name(unsigned id);
bool mqtt_prop_allowed(unsigned id, int where);

/*
 * mqtt_props_decode -- the property length (variable byte integer) and the
 * properties at p, for the place `where`; at most len bytes are read and
 * *used says how many were. Returns MQTT_OK, MQTT_ERR_VARINT (length or id
 * not a minimal varint of <= 4 bytes), _PROP_LENGTH (length beyond len or a
 * value running past the block), _PROP_ID, _PROP_NOT_ALLOWED, _PROP_DUP,
 * _PROP_VALUE (receive maximum / maximum packet size / topic alias /
 * subscription identifier 0, byte flags other than 0 or 1, wildcards in a
 * response topic [MQTT-3.3.2-14]), _UTF8 [MQTT-1.5.4-1..2, MQTT-1.5.7-1] or
 * _AUTH_DATA (CONNECT only).
 */
int mqtt_props_decode(const uint8_t *p, size_t len, int where, mqtt_props *out, size_t *used);
/* The same for a bare block of exactly len bytes (no length prefix). */
int mqtt_props_parse(const uint8_t *p, size_t len, int where, mqtt_props *out);
static inline bool mqtt_props_has(const mqtt_props *p, unsigned id)
{
    return id < 64 && (p->present >> id) & 1u;
}

/* Iterate a validated block (from a decoder or a writer), in wire order.
 * The _next functions return false at the end. _next_user and _next_sub_id
 * skip every other property. */
void mqtt_prop_iter_init(mqtt_prop_iter *it, const mqtt_bytes *raw);
bool mqtt_prop_next(mqtt_prop_iter *it, mqtt_prop *out);
bool mqtt_prop_next_user(mqtt_prop_iter *it, mqtt_str *name, mqtt_str *value);
bool mqtt_prop_next_sub_id(mqtt_prop_iter *it, uint32_t *id);

/* Property block writer over a caller buffer. Each add returns MQTT_OK,
 * MQTT_ERR_BUFFER (no room; the block is left as it was), MQTT_ERR_ARG
 * (unknown id, id of another type, value out of range for the type) or
 * MQTT_ERR_UTF8. Allowedness per packet and duplicates are checked by the
 * packet encoders. */
typedef struct {
    uint8_t *buf;
    size_t cap, len;
} mqtt_props_writer;

void mqtt_props_writer_init(mqtt_props_writer *w, uint8_t *buf, size_t cap);
/* BYTE, U16, U32 and VARINT properties. */
int mqtt_props_add_int(mqtt_props_writer *w, unsigned id, uint32_t value);
/* UTF8 and BINARY properties (n <= 65535). */
int mqtt_props_add_str(mqtt_props_writer *w, unsigned id, const void *p, size_t n);
/* User Property. */
int mqtt_props_add_user(mqtt_props_writer *w, const void *name, size_t nlen, const void *value,
                        size_t vlen);
/* Any property returned by mqtt_prop_next (forwarding). */
int mqtt_props_add(mqtt_props_writer *w, const mqtt_prop *p);
static inline mqtt_bytes mqtt_props_writer_bytes(const mqtt_props_writer *w)
{
    mqtt_bytes b = {w->buf, w->len};
    return b;
}

/* Reason codes (spec 2.4, table 2-6). */
enum mqtt5_reason {
    MQTT5_RC_SUCCESS = 0x00, /* also Normal disconnection, Granted QoS 0 */
    MQTT5_RC_GRANTED_QOS1 = 0x01,
    MQTT5_RC_GRANTED_QOS2 = 0x02,
    MQTT5_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT5_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT5_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT5_RC_CONTINUE_AUTH = 0x18,
    MQTT5_RC_REAUTHENTICATE = 0x19,
    MQTT5_RC_UNSPECIFIED = 0x80,
    MQTT5_RC_MALFORMED = 0x81,
    MQTT5_RC_PROTOCOL_ERROR = 0x82,
    MQTT5_RC_IMPLEMENTATION = 0x83,
    MQTT5_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT5_RC_CLIENT_ID_INVALID = 0x85,
    MQTT5_RC_BAD_CREDENTIALS = 0x86,
    MQTT5_RC_NOT_AUTHORIZED = 0x87,
    MQTT5_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT5_RC_SERVER_BUSY = 0x89,
    MQTT5_RC_BANNED = 0x8A,
    MQTT5_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT5_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT5_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT5_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT5_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT5_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT5_RC_PACKET_ID_IN_USE = 0x91,
    MQTT5_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT5_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    MQTT5_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT5_RC_PACKET_TOO_LARGE = 0x95,
    MQTT5_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT5_RC_QUOTA_EXCEEDED = 0x97,
    MQTT5_RC_ADMINISTRATIVE_ACTION = 0x98,
    MQTT5_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT5_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT5_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT5_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT5_RC_SERVER_MOVED = 0x9D,
    MQTT5_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
    MQTT5_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT5_RC_MAXIMUM_CONNECT_TIME = 0xA0,
    MQTT5_RC_SUB_ID_NOT_SUPPORTED = 0xA1,
    MQTT5_RC_WILDCARD_SUB_NOT_SUPPORTED = 0xA2,
};

/* May packet `type` carry reason code `rc`? (CONNACK [MQTT-3.2.2-8],
 * PUBACK [MQTT-3.4.2-1], PUBREC [MQTT-3.5.2-1], PUBREL [MQTT-3.6.2-1],
 * PUBCOMP [MQTT-3.7.2-1], SUBACK [MQTT-3.9.3-2], UNSUBACK [MQTT-3.11.3-2],
 * DISCONNECT [MQTT-3.14.2-1], AUTH [MQTT-3.15.2-1]). */
bool mqtt5_reason_allowed(int type, uint8_t rc);
/* Spec name of a reason code as that packet uses it ("Normal disconnection"
 * for 0 in DISCONNECT, "Granted QoS 0" in SUBACK); "reserved" if unknown. */
const char *mqtt5_reason_string(int type, uint8_t rc);
/* The reason code a receiver sends (DISCONNECT, or CONNACK before the
 * session exists) for a codec error: 0x81 malformed, 0x82 protocol error,
 * 0x84 unsupported version, 0x95 too large, 0x90 topic name invalid,
 * 0x8F topic filter invalid; 0x80 for codes the codec does not return on
 * decode. */
uint8_t mqtt5_reason_for_err(int err);

/* Framing with a protocol level: 5 admits AUTH and requires minimal
 * remaining-length varints; 3 and 4 behave exactly like mqtt_frame. */
int mqtt_frame_level(const uint8_t *buf, size_t len, size_t max_packet, uint8_t level,
                     mqtt_header *hdr, size_t *packet_len);

/* CONNECT. c holds the 3.1.1 fields (clean_session = Clean Start); at level
 * 5 a password without a user name is allowed. */
typedef struct {
    mqtt_connect c;
    mqtt_props props;      /* where = MQTT_CONNECT */
    mqtt_props will_props; /* where = MQTT_PROPS_WILL, only with c.will_flag */
} mqtt5_connect;

typedef struct {
    bool session_present;
    uint8_t reason;
    mqtt_props props;
} mqtt5_connack;

/* PUBLISH. p.topic may be empty when props carries a Topic Alias. */
typedef struct {
    mqtt_publish p;
    mqtt_props props;
} mqtt5_publish;

/* PUBACK, PUBREC, PUBREL, PUBCOMP (packet_id != 0) and DISCONNECT, AUTH
 * (packet_id 0): a reason code and properties, both optional on the wire
 * (absent = 0x00 and no properties). */
typedef struct {
    uint8_t type;
    uint16_t packet_id;
    uint8_t reason;
    mqtt_props props;
} mqtt5_ack;

/* SUBSCRIBE / UNSUBSCRIBE: iterate `list` with mqtt_sublist_next; for a
 * SUBSCRIBE its qos output is the whole subscription options byte (split
 * it with mqtt5_subopts_parse). */
typedef struct {
    mqtt_sublist list;
    mqtt_props props;
} mqtt5_sublist;

/* SUBACK and UNSUBACK: one reason code per filter. */
typedef struct {
    uint8_t type;
    uint16_t packet_id;
    const uint8_t *codes;
    unsigned count;
    mqtt_props props;
} mqtt5_suback;

/* Subscription options byte (spec 3.8.3.1). */
typedef struct {
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling; /* 0, 1, 2 */
} mqtt5_subopts;

static inline mqtt5_subopts mqtt5_subopts_parse(uint8_t b)
{
    mqtt5_subopts o = {(uint8_t)(b & 3), (b & 4) != 0, (b & 8) != 0, (uint8_t)((b >> 4) & 3)};
    return o;
}
static inline uint8_t mqtt5_subopts_byte(const mqtt5_subopts *o)
{
    return (uint8_t)((o->qos & 3) | (o->no_local ? 4 : 0) | (o->retain_as_published ? 8 : 0) |
                     ((o->retain_handling & 3) << 4));
}

/*
 * Decoders: a header from mqtt_frame_level(.., 5, ..) of the matching type.
 * Errors: those of the 3.1.1 decoders, those of mqtt_props_decode, plus
 * MQTT_ERR_REASON (reason code not in the packet's table), and:
 *  connect: level 3/4 falls back to mqtt_decode_connect; "MQTT" level 5 is
 *           decoded here; _CONNECT_FLAGS [MQTT-3.1.2-3, -11, -13, -14, -15].
 *  connack: _CONNACK for reserved flag bits [MQTT-3.2.2-1] or session
 *           present with a failure code [MQTT-3.2.2-6].
 *  publish: _TOPIC_ALIAS for an empty topic without a Topic Alias.
 *  ack:     PUBACK..PUBCOMP, DISCONNECT, AUTH; an AUTH without an
 *           Authentication Method (in any form) is _AUTH_METHOD (3.15.2.2.2).
 *  subscribe: _SUB_OPTIONS [MQTT-3.8.3-5], _SUB_QOS, _RETAIN_HANDLING,
 *           _SHARED_NO_LOCAL [MQTT-3.8.3-4] (filter starting "$share/").
 *  suback:  SUBACK and UNSUBACK; _EMPTY without codes.
 */
int mqtt5_decode_connect(const mqtt_header *h, mqtt5_connect *out);
int mqtt5_decode_connack(const mqtt_header *h, mqtt5_connack *out);
int mqtt5_decode_publish(const mqtt_header *h, mqtt5_publish *out);
int mqtt5_decode_ack(const mqtt_header *h, mqtt5_ack *out);
int mqtt5_decode_subscribe(const mqtt_header *h, mqtt5_sublist *out);
int mqtt5_decode_unsubscribe(const mqtt_header *h, mqtt5_sublist *out);
int mqtt5_decode_suback(const mqtt_header *h, mqtt5_suback *out);

/*
 * Encoders (level 5). Property blocks are taken from props.raw (or the
 * mqtt_bytes argument; NULL/empty = none) and validated for the packet
 * first: a refused block returns the property error (MQTT_ERR_PROP_*,
 * _UTF8, ...). Otherwise MQTT_OK, MQTT_ERR_BUFFER (nothing useful written)
 * or MQTT_ERR_ARG (QoS > 2, packet id 0, empty list, reason code not in the
 * packet's table, oversize fields, AUTH without Authentication Method). Acks, DISCONNECT and AUTH
 * use the shortest form the spec allows (reason and property length omitted when reason is 0 and
 * there are no properties).
 */
int mqtt5_encode_connect(uint8_t *buf, size_t cap, const mqtt5_connect *c, size_t *written);
int mqtt5_encode_connack(uint8_t *buf, size_t cap, const mqtt5_connack *c, size_t *written);
int mqtt5_encode_publish(uint8_t *buf, size_t cap, const mqtt5_publish *p, size_t *written);
/* Only the fixed + variable header (with properties) of p; the payload
 * (p->p.payload_len bytes) is appended by the caller. */
int mqtt5_encode_publish_header(uint8_t *buf, size_t cap, const mqtt5_publish *p, size_t *written);
int mqtt5_encode_ack(uint8_t *buf, size_t cap, const mqtt5_ack *a, size_t *written);
/* options[i]: subscription options byte of filters[i] (see mqtt5_subopts_byte). */
int mqtt5_encode_subscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_bytes *props,
                           const mqtt_str *filters, const uint8_t *options, unsigned count,
                           size_t *written);
int mqtt5_encode_unsubscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_bytes *props,
                             const mqtt_str *filters, unsigned count, size_t *written);
int mqtt5_encode_suback(uint8_t *buf, size_t cap, const mqtt5_suback *s, size_t *written);

/* ==== end of MQTT 5.0 ================================================== */

#endif
