/*
 * props.c -- MQTT 5.0 properties (spec 2.2.2): the table of every property
 * with its type and the packets that may carry it, the allocation-free
 * decoder, the iterators and the block writer.
 */
#include <stddef.h>

#include "mqtt/internal.h"

/* Value checks beyond the type. */
enum { CHK_NONE, CHK_BOOL, CHK_NONZERO, CHK_TOPIC };

#define IN(x) (1u << (x))
#define WILL IN(MQTT_PROPS_WILL)
#define CONN IN(MQTT_CONNECT)
#define CACK IN(MQTT_CONNACK)
#define PUBL IN(MQTT_PUBLISH)
#define DISC IN(MQTT_DISCONNECT)
#define AUTH IN(MQTT_AUTH)
#define ACKS (IN(MQTT_PUBACK) | IN(MQTT_PUBREC) | IN(MQTT_PUBREL) | IN(MQTT_PUBCOMP))
#define SUBS IN(MQTT_SUBSCRIBE)
#define SACK (IN(MQTT_SUBACK) | IN(MQTT_UNSUBACK))
#define ANY (CONN | CACK | PUBL | WILL | ACKS | SUBS | SACK | IN(MQTT_UNSUBSCRIBE) | DISC | AUTH)

struct prop_info {
    const char *name;
    uint8_t type;   /* enum mqtt_prop_type */
    uint8_t check;  /* CHK_* */
    uint16_t field; /* offsetof the field in mqtt_props (unused for pairs) */
    uint32_t where; /* IN(packet type) | WILL: places it is allowed */
    uint32_t multi; /* places where it may repeat */
};

#define F(f) offsetof(mqtt_props, f)

/* Spec 2.2.2.2 table 2-4 ("Used in"), with the value rules of each
 * property's own section. */
static const struct prop_info info[MQTT_PROP_ID_MAX + 1] = {
    [0x01] = {"Payload Format Indicator", MQTT_PTYPE_BYTE, CHK_BOOL, F(payload_format), PUBL | WILL,
              0},
    [0x02] = {"Message Expiry Interval", MQTT_PTYPE_U32, CHK_NONE, F(message_expiry), PUBL | WILL,
              0},
    [0x03] = {"Content Type", MQTT_PTYPE_UTF8, CHK_NONE, F(content_type), PUBL | WILL, 0},
    [0x08] = {"Response Topic", MQTT_PTYPE_UTF8, CHK_TOPIC, F(response_topic), PUBL | WILL, 0},
    [0x09] = {"Correlation Data", MQTT_PTYPE_BINARY, CHK_NONE, F(correlation_data), PUBL | WILL, 0},
    /* Several in a PUBLISH to a subscriber [MQTT-3.3.4-4], once in a SUBSCRIBE (3.8.2.1.2). */
    [0x0B] = {"Subscription Identifier", MQTT_PTYPE_VARINT, CHK_NONZERO, F(subscription_id),
              PUBL | SUBS, PUBL},
    [0x11] = {"Session Expiry Interval", MQTT_PTYPE_U32, CHK_NONE, F(session_expiry),
              CONN | CACK | DISC, 0},
    [0x12] = {"Assigned Client Identifier", MQTT_PTYPE_UTF8, CHK_NONE, F(assigned_client_id), CACK,
              0},
    [0x13] = {"Server Keep Alive", MQTT_PTYPE_U16, CHK_NONE, F(server_keep_alive), CACK, 0},
    [0x15] = {"Authentication Method", MQTT_PTYPE_UTF8, CHK_NONE, F(auth_method),
              CONN | CACK | AUTH, 0},
    [0x16] = {"Authentication Data", MQTT_PTYPE_BINARY, CHK_NONE, F(auth_data), CONN | CACK | AUTH,
              0},
    [0x17] = {"Request Problem Information", MQTT_PTYPE_BYTE, CHK_BOOL, F(request_problem_info),
              CONN, 0},
    [0x18] = {"Will Delay Interval", MQTT_PTYPE_U32, CHK_NONE, F(will_delay), WILL, 0},
    [0x19] = {"Request Response Information", MQTT_PTYPE_BYTE, CHK_BOOL, F(request_response_info),
              CONN, 0},
    [0x1A] = {"Response Information", MQTT_PTYPE_UTF8, CHK_NONE, F(response_info), CACK, 0},
    [0x1C] = {"Server Reference", MQTT_PTYPE_UTF8, CHK_NONE, F(server_reference), CACK | DISC, 0},
    [0x1F] = {"Reason String", MQTT_PTYPE_UTF8, CHK_NONE, F(reason_string),
              CACK | ACKS | SACK | DISC | AUTH, 0},
    [0x21] = {"Receive Maximum", MQTT_PTYPE_U16, CHK_NONZERO, F(receive_maximum), CONN | CACK, 0},
    [0x22] = {"Topic Alias Maximum", MQTT_PTYPE_U16, CHK_NONE, F(topic_alias_maximum), CONN | CACK,
              0},
    [0x23] = {"Topic Alias", MQTT_PTYPE_U16, CHK_NONZERO, F(topic_alias), PUBL, 0},
    [0x24] = {"Maximum QoS", MQTT_PTYPE_BYTE, CHK_BOOL, F(maximum_qos), CACK, 0},
    [0x25] = {"Retain Available", MQTT_PTYPE_BYTE, CHK_BOOL, F(retain_available), CACK, 0},
    [0x26] = {"User Property", MQTT_PTYPE_PAIR, CHK_NONE, 0, ANY, ANY},
    [0x27] = {"Maximum Packet Size", MQTT_PTYPE_U32, CHK_NONZERO, F(maximum_packet_size),
              CONN | CACK, 0},
    [0x28] = {"Wildcard Subscription Available", MQTT_PTYPE_BYTE, CHK_BOOL,
              F(wildcard_sub_available), CACK, 0},
    [0x29] = {"Subscription Identifier Available", MQTT_PTYPE_BYTE, CHK_BOOL, F(sub_id_available),
              CACK, 0},
    [0x2A] = {"Shared Subscription Available", MQTT_PTYPE_BYTE, CHK_BOOL, F(shared_sub_available),
              CACK, 0},
};

static const struct prop_info *lookup(unsigned id)
{
    if (id > MQTT_PROP_ID_MAX || info[id].type == MQTT_PTYPE_NONE) return NULL;
    return &info[id];
}

/* mqtt_prop_type_of -- enum mqtt_prop_type of id, MQTT_PTYPE_NONE if unknown. */
int mqtt_prop_type_of(unsigned id)
{
    const struct prop_info *pi = lookup(id);
    return pi ? pi->type : MQTT_PTYPE_NONE;
}

/* mqtt_prop_name -- spec name of id, NULL if unknown. */
const char *mqtt_prop_name(unsigned id)
{
    const struct prop_info *pi = lookup(id);
    return pi ? pi->name : NULL;
}

/* mqtt_prop_allowed -- may id appear in where (packet type or MQTT_PROPS_WILL)? */
bool mqtt_prop_allowed(unsigned id, int where)
{
    const struct prop_info *pi = lookup(id);
    return pi && where >= 0 && where <= MQTT_PROPS_WILL && (pi->where & IN(where));
}

/* UTF-8 string: length-prefixed, well-formed [MQTT-1.5.4-1, MQTT-1.5.4-2]. */
static int read_utf8(mqtt_cursor *c, mqtt_str *s)
{
    int rc = mqtt_cursor_str(c, s);
    if (rc != MQTT_OK) return rc;
    return mqtt_utf8_validate(s->ptr, s->len);
}

/* One value of the given type at the cursor. A value that runs past the
 * block is MQTT_ERR_PROP_LENGTH. */
static int read_value(mqtt_cursor *c, uint8_t type, mqtt_prop *v)
{
    int rc = MQTT_OK;
    uint8_t b;
    uint16_t u;
    switch (type) {
    case MQTT_PTYPE_BYTE:
        if ((rc = mqtt_cursor_u8(c, &b)) == MQTT_OK) v->num = b;
        break;
    case MQTT_PTYPE_U16:
        if ((rc = mqtt_cursor_u16(c, &u)) == MQTT_OK) v->num = u;
        break;
    case MQTT_PTYPE_U32:
        if (mqtt_cursor_left(c) < 4) return MQTT_ERR_PROP_LENGTH;
        v->num =
            (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
        c->p += 4;
        break;
    case MQTT_PTYPE_VARINT:
        rc = mqtt_cursor_varint(c, &v->num);
        break;
    case MQTT_PTYPE_UTF8:
        rc = read_utf8(c, &v->str);
        break;
    case MQTT_PTYPE_BINARY:
        rc = mqtt_cursor_str(c, &v->str);
        break;
    case MQTT_PTYPE_PAIR: /* both strings UTF-8 [MQTT-1.5.7-1] */
        if ((rc = read_utf8(c, &v->str)) == MQTT_OK) rc = read_utf8(c, &v->val);
        break;
    }
    return rc == MQTT_ERR_LENGTH ? MQTT_ERR_PROP_LENGTH : rc;
}

static int check_value(const struct prop_info *pi, const mqtt_prop *v)
{
    switch (pi->check) {
    case CHK_BOOL: /* 0 or 1, e.g. 3.1.2.11.6, 3.1.2.11.7, 3.2.2.3.4 */
        return v->num > 1 ? MQTT_ERR_PROP_VALUE : MQTT_OK;
    case CHK_NONZERO: /* 3.1.2.11.3, 3.1.2.11.4, [MQTT-3.3.2-8], 3.3.2.3.8 */
        return v->num == 0 ? MQTT_ERR_PROP_VALUE : MQTT_OK;
    case CHK_TOPIC: /* a topic name, no wildcards [MQTT-3.3.2-14] */
        return mqtt_topic_name_validate(v->str.ptr, v->str.len) == MQTT_OK ? MQTT_OK
                                                                           : MQTT_ERR_PROP_VALUE;
    default:
        return MQTT_OK;
    }
}

/* Keep a single property in its field; count the repeatable ones. */
static void store(mqtt_props *out, unsigned id, const struct prop_info *pi, const mqtt_prop *v)
{
    char *f = (char *)out + pi->field;
    bool first = !mqtt_props_has(out, id);
    out->present |= (uint64_t)1 << id;
    if (id == MQTT_PROP_USER) {
        out->user_count++;
        return;
    }
    if (id == MQTT_PROP_SUBSCRIPTION_ID) out->sub_id_count++;
    if (!first) return;
    uint8_t b = (uint8_t)v->num;
    uint16_t u = (uint16_t)v->num;
    switch (pi->type) {
    case MQTT_PTYPE_BYTE:
        memcpy(f, &b, sizeof b);
        break;
    case MQTT_PTYPE_U16:
        memcpy(f, &u, sizeof u);
        break;
    case MQTT_PTYPE_U32:
    case MQTT_PTYPE_VARINT:
        memcpy(f, &v->num, sizeof v->num);
        break;
    default:
        memcpy(f, &v->str, sizeof v->str);
        break;
    }
}

/* Every property of the block [c->p, c->end) for `where`. */
static int parse_block(mqtt_cursor *c, int where, mqtt_props *out)
{
    while (mqtt_cursor_left(c) > 0) {
        uint32_t id;
        int rc = mqtt_cursor_varint(c, &id); /* identifiers are varints (2.2.2.2) */
        if (rc != MQTT_OK) return rc;
        const struct prop_info *pi = lookup(id);
        if (pi == NULL) return MQTT_ERR_PROP_ID;
        if (!(pi->where & IN(where))) return MQTT_ERR_PROP_NOT_ALLOWED;
        if (mqtt_props_has(out, id) && !(pi->multi & IN(where))) return MQTT_ERR_PROP_DUP;
        mqtt_prop v = {0};
        if ((rc = read_value(c, pi->type, &v)) != MQTT_OK) return rc;
        if ((rc = check_value(pi, &v)) != MQTT_OK) return rc;
        store(out, id, pi, &v);
    }
    /* Authentication Data without a Method is a Protocol Error (3.1.2.11.10). */
    if (where == MQTT_CONNECT && mqtt_props_has(out, MQTT_PROP_AUTH_DATA) &&
        !mqtt_props_has(out, MQTT_PROP_AUTH_METHOD))
        return MQTT_ERR_AUTH_DATA;
    return MQTT_OK;
}

/* mqtt_props_parse -- see mqtt.h. */
int mqtt_props_parse(const uint8_t *p, size_t len, int where, mqtt_props *out)
{
    memset(out, 0, sizeof *out);
    if (where < MQTT_CONNECT || where > MQTT_PROPS_WILL) return MQTT_ERR_ARG;
    out->raw.ptr = p;
    out->raw.len = len;
    mqtt_cursor c = {p, len ? p + len : p};
    return parse_block(&c, where, out);
}

/* mqtt_props_read -- property length, then the block; advances c. */
int mqtt_props_read(mqtt_cursor *c, int where, mqtt_props *out)
{
    memset(out, 0, sizeof *out);
    uint32_t n;
    int rc = mqtt_cursor_varint(c, &n);
    if (rc != MQTT_OK) return rc;
    if (n > mqtt_cursor_left(c)) return MQTT_ERR_PROP_LENGTH;
    const uint8_t *p = c->p;
    c->p += n;
    return mqtt_props_parse(p, n, where, out);
}

/* mqtt_props_decode -- see mqtt.h. */
int mqtt_props_decode(const uint8_t *p, size_t len, int where, mqtt_props *out, size_t *used)
{
    mqtt_cursor c = {p, len ? p + len : p};
    *used = 0;
    int rc = mqtt_props_read(&c, where, out);
    if (rc == MQTT_OK) *used = (size_t)(c.p - p);
    return rc;
}

/* ---- iteration ------------------------------------------------------ */

void mqtt_prop_iter_init(mqtt_prop_iter *it, const mqtt_bytes *raw)
{
    it->cur = raw->ptr;
    it->end = raw->len ? raw->ptr + raw->len : raw->ptr;
}

/* mqtt_prop_next -- next property in wire order; false at the end (or on a
 * block that was never validated and turns out broken). */
bool mqtt_prop_next(mqtt_prop_iter *it, mqtt_prop *out)
{
    mqtt_cursor c = {it->cur, it->end};
    uint32_t id;
    if (mqtt_cursor_left(&c) == 0 || mqtt_cursor_varint(&c, &id) != MQTT_OK) return false;
    const struct prop_info *pi = lookup(id);
    if (pi == NULL) return false;
    memset(out, 0, sizeof *out);
    out->id = (uint8_t)id;
    out->type = pi->type;
    if (read_value(&c, pi->type, out) != MQTT_OK) return false;
    it->cur = c.p;
    return true;
}

bool mqtt_prop_next_user(mqtt_prop_iter *it, mqtt_str *name, mqtt_str *value)
{
    mqtt_prop p;
    while (mqtt_prop_next(it, &p)) {
        if (p.id != MQTT_PROP_USER) continue;
        *name = p.str;
        *value = p.val;
        return true;
    }
    return false;
}

bool mqtt_prop_next_sub_id(mqtt_prop_iter *it, uint32_t *id)
{
    mqtt_prop p;
    while (mqtt_prop_next(it, &p)) {
        if (p.id != MQTT_PROP_SUBSCRIPTION_ID) continue;
        *id = p.num;
        return true;
    }
    return false;
}

/* ---- writing -------------------------------------------------------- */

void mqtt_props_writer_init(mqtt_props_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
}

/* Room for n more bytes? */
static int room(const mqtt_props_writer *w, size_t n)
{
    return w->cap - w->len >= n ? MQTT_OK : MQTT_ERR_BUFFER;
}

/* mqtt_props_add_int -- see mqtt.h. Identifiers are all below 128, so the
 * identifier varint is one byte. */
int mqtt_props_add_int(mqtt_props_writer *w, unsigned id, uint32_t value)
{
    uint8_t tmp[5];
    size_t n = 0;
    switch (mqtt_prop_type_of(id)) {
    case MQTT_PTYPE_BYTE:
        if (value > 0xff) return MQTT_ERR_ARG;
        tmp[n++] = (uint8_t)value;
        break;
    case MQTT_PTYPE_U16:
        if (value > 0xffff) return MQTT_ERR_ARG;
        n = (size_t)(mqtt_put_u16(tmp, (uint16_t)value) - tmp);
        break;
    case MQTT_PTYPE_U32:
        for (int i = 3; i >= 0; i--)
            tmp[n++] = (uint8_t)(value >> (8 * i));
        break;
    case MQTT_PTYPE_VARINT:
        n = (size_t)mqtt_varint_encode(value, tmp);
        if (n == 0) return MQTT_ERR_ARG;
        break;
    default:
        return MQTT_ERR_ARG;
    }
    if (room(w, 1 + n) != MQTT_OK) return MQTT_ERR_BUFFER;
    w->buf[w->len++] = (uint8_t)id;
    memcpy(w->buf + w->len, tmp, n);
    w->len += n;
    return MQTT_OK;
}

/* mqtt_props_add_str -- UTF-8 (validated) or binary property. */
int mqtt_props_add_str(mqtt_props_writer *w, unsigned id, const void *p, size_t n)
{
    int type = mqtt_prop_type_of(id);
    if ((type != MQTT_PTYPE_UTF8 && type != MQTT_PTYPE_BINARY) || n > 0xffff) return MQTT_ERR_ARG;
    if (type == MQTT_PTYPE_UTF8 && mqtt_utf8_validate(p, n) != MQTT_OK) return MQTT_ERR_UTF8;
    if (room(w, 3 + n) != MQTT_OK) return MQTT_ERR_BUFFER;
    w->buf[w->len] = (uint8_t)id;
    w->len = (size_t)(mqtt_put_str(w->buf + w->len + 1, p, (uint16_t)n) - w->buf);
    return MQTT_OK;
}

/* mqtt_props_add_user -- one User Property (both strings UTF-8 [MQTT-1.5.7-1]). */
int mqtt_props_add_user(mqtt_props_writer *w, const void *name, size_t nlen, const void *value,
                        size_t vlen)
{
    if (nlen > 0xffff || vlen > 0xffff) return MQTT_ERR_ARG;
    if (mqtt_utf8_validate(name, nlen) != MQTT_OK || mqtt_utf8_validate(value, vlen) != MQTT_OK)
        return MQTT_ERR_UTF8;
    if (room(w, 5 + nlen + vlen) != MQTT_OK) return MQTT_ERR_BUFFER;
    uint8_t *p = w->buf + w->len;
    *p++ = MQTT_PROP_USER;
    p = mqtt_put_str(p, name, (uint16_t)nlen);
    p = mqtt_put_str(p, value, (uint16_t)vlen);
    w->len = (size_t)(p - w->buf);
    return MQTT_OK;
}

/* mqtt_props_add -- re-encode a property from mqtt_prop_next. */
int mqtt_props_add(mqtt_props_writer *w, const mqtt_prop *p)
{
    switch (mqtt_prop_type_of(p->id)) {
    case MQTT_PTYPE_UTF8:
    case MQTT_PTYPE_BINARY:
        return mqtt_props_add_str(w, p->id, p->str.ptr, p->str.len);
    case MQTT_PTYPE_PAIR:
        return mqtt_props_add_user(w, p->str.ptr, p->str.len, p->val.ptr, p->val.len);
    default:
        return mqtt_props_add_int(w, p->id, p->num);
    }
}
