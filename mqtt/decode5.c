/*
 * decode5.c -- MQTT 5.0 variable headers and payloads (spec chapter 3).
 *
 * Same shape as decode.c: one cursor over exactly h->remaining bytes,
 * views into the framed buffer, the first broken rule is the result.
 * Property blocks go through mqtt_props_read with the packet type as the
 * place, reason codes through mqtt5_reason_allowed.
 */
#include "mqtt/internal.h"

/* Type + level-5 flag check, then a cursor over the body. */
static int start5(const mqtt_header *h, uint8_t type, mqtt_cursor *c)
{
    if (h->type != type) return MQTT_ERR_TYPE;
    int rc = mqtt_check_fixed_header_level(h->type, h->flags, 5);
    if (rc != MQTT_OK) return rc;
    c->p = h->body;
    c->end = h->remaining ? h->body + h->remaining : h->body;
    return MQTT_OK;
}

static int finish(const mqtt_cursor *c)
{
    return c->p == c->end ? MQTT_OK : MQTT_ERR_LENGTH;
}

/* Connect flags at level 5 (3.1.2.3): as 3.1.1 but a password may come
 * without a user name (3.1.2.9). */
static int connect_flags(uint8_t flags, mqtt_connect *out)
{
    out->clean_session = flags & 0x02;
    out->will_flag = flags & 0x04;
    out->will_qos = (flags >> 3) & 0x3;
    out->will_retain = flags & 0x20;
    out->password_flag = flags & 0x40;
    out->username_flag = flags & 0x80;
    if (flags & 0x01) return MQTT_ERR_CONNECT_FLAGS; /* [MQTT-3.1.2-3] */
    if (!out->will_flag && (out->will_qos != 0 || out->will_retain))
        return MQTT_ERR_CONNECT_FLAGS;                     /* [MQTT-3.1.2-11], -13, -15 */
    if (out->will_qos == 3) return MQTT_ERR_CONNECT_FLAGS; /* [MQTT-3.1.2-14] */
    return MQTT_OK;
}

/* Payload of a level-5 CONNECT (3.1.3): client id, will properties, will
 * topic, will payload, user name, password [MQTT-3.1.3-1]. */
static int connect_payload(mqtt_cursor *c, mqtt5_connect *out)
{
    mqtt_connect *m = &out->c;
    int rc;
    if ((rc = mqtt_cursor_str(c, &m->client_id)) != MQTT_OK) return rc;
    if ((rc = mqtt_utf8_validate(m->client_id.ptr, m->client_id.len)) != MQTT_OK)
        return rc; /* [MQTT-3.1.3-4] */
    if (m->will_flag) {
        if ((rc = mqtt_props_read(c, MQTT_PROPS_WILL, &out->will_props)) != MQTT_OK) return rc;
        if ((rc = mqtt_cursor_str(c, &m->will_topic)) != MQTT_OK) return rc;
        rc = mqtt_topic_name_validate(m->will_topic.ptr, m->will_topic.len);
        if (rc != MQTT_OK) return rc; /* [MQTT-3.1.3-9], [MQTT-3.3.2-2] */
        if ((rc = mqtt_cursor_str(c, &m->will_payload)) != MQTT_OK) return rc;
    }
    if (m->username_flag) {
        if ((rc = mqtt_cursor_str(c, &m->username)) != MQTT_OK) return rc;
        if ((rc = mqtt_utf8_validate(m->username.ptr, m->username.len)) != MQTT_OK)
            return rc; /* [MQTT-3.1.3-10] */
    }
    if (m->password_flag && (rc = mqtt_cursor_str(c, &m->password)) != MQTT_OK) return rc;
    return finish(c);
}

/*
 * mqtt5_decode_connect -- spec 3.1 at level 5; a CONNECT that is not
 * "MQTT" level 5 is handed to mqtt_decode_connect unchanged (3.1.1/3.1, or
 * MQTT_ERR_PROTOCOL_NAME / _PROTOCOL_LEVEL) with empty property sets.
 */
int mqtt5_decode_connect(const mqtt_header *h, mqtt5_connect *out)
{
    mqtt_cursor c;
    int rc = start5(h, MQTT_CONNECT, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    mqtt_str name;
    uint8_t level = 0;
    if (mqtt_cursor_str(&c, &name) != MQTT_OK || mqtt_cursor_u8(&c, &level) != MQTT_OK ||
        level != 5 || name.len != 4 || memcmp(name.ptr, "MQTT", 4) != 0)
        return mqtt_decode_connect(h, &out->c); /* [MQTT-3.1.2-1], [MQTT-3.1.2-2] */
    out->c.protocol_name = name;
    out->c.protocol_level = level;

    uint8_t flags;
    if ((rc = mqtt_cursor_u8(&c, &flags)) != MQTT_OK) return rc;
    if ((rc = connect_flags(flags, &out->c)) != MQTT_OK) return rc;
    if ((rc = mqtt_cursor_u16(&c, &out->c.keepalive)) != MQTT_OK) return rc;
    if ((rc = mqtt_props_read(&c, MQTT_CONNECT, &out->props)) != MQTT_OK) return rc;
    return connect_payload(&c, out);
}

/*
 * mqtt5_decode_connack -- spec 3.2: acknowledge flags (bits 7..1 reserved
 * [MQTT-3.2.2-1]), a CONNACK reason code [MQTT-3.2.2-8], properties.
 * Session present with a failure code is MQTT_ERR_CONNACK [MQTT-3.2.2-6].
 */
int mqtt5_decode_connack(const mqtt_header *h, mqtt5_connack *out)
{
    mqtt_cursor c;
    int rc = start5(h, MQTT_CONNACK, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    uint8_t flags;
    if ((rc = mqtt_cursor_u8(&c, &flags)) != MQTT_OK) return rc;
    if ((rc = mqtt_cursor_u8(&c, &out->reason)) != MQTT_OK) return rc;
    if (flags & 0xfe) return MQTT_ERR_CONNACK;
    if (!mqtt5_reason_allowed(MQTT_CONNACK, out->reason)) return MQTT_ERR_REASON;
    out->session_present = flags & 0x01;
    if (out->session_present && out->reason != 0) return MQTT_ERR_CONNACK;
    if ((rc = mqtt_props_read(&c, MQTT_CONNACK, &out->props)) != MQTT_OK) return rc;
    return finish(&c);
}

/*
 * mqtt5_decode_publish -- spec 3.3: topic name, packet id when QoS > 0,
 * properties, payload. An empty topic name needs a Topic Alias (3.3.2.1,
 * 3.3.2.3.4), else MQTT_ERR_TOPIC_ALIAS. Subscription Identifiers are
 * accepted (a server sends them); a server must refuse them from a client
 * itself [MQTT-3.3.4-6].
 */
int mqtt5_decode_publish(const mqtt_header *h, mqtt5_publish *out)
{
    mqtt_cursor c;
    int rc = start5(h, MQTT_PUBLISH, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    mqtt_publish *p = &out->p;
    p->dup = h->flags & 0x08;
    p->qos = (h->flags >> 1) & 0x3;
    p->retain = h->flags & 0x01;

    if ((rc = mqtt_cursor_str(&c, &p->topic)) != MQTT_OK) return rc;
    if (p->topic.len > 0 && (rc = mqtt_topic_name_validate(p->topic.ptr, p->topic.len)) != MQTT_OK)
        return rc; /* [MQTT-3.3.2-1], [MQTT-3.3.2-2] */
    if (p->qos > 0) {
        if ((rc = mqtt_cursor_u16(&c, &p->packet_id)) != MQTT_OK) return rc;
        if (p->packet_id == 0) return MQTT_ERR_PACKET_ID; /* [MQTT-2.2.1-3] */
    }
    if ((rc = mqtt_props_read(&c, MQTT_PUBLISH, &out->props)) != MQTT_OK) return rc;
    if (p->topic.len == 0 && !mqtt_props_has(&out->props, MQTT_PROP_TOPIC_ALIAS))
        return MQTT_ERR_TOPIC_ALIAS;
    p->payload = c.p;
    p->payload_len = mqtt_cursor_left(&c);
    return MQTT_OK;
}

/*
 * mqtt5_decode_ack -- PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7: packet id,
 * then optional reason code and properties) and DISCONNECT, AUTH (3.14,
 * 3.15: optional reason code and properties). A missing reason code is
 * 0x00; a reason code without properties means none.
 */
int mqtt5_decode_ack(const mqtt_header *h, mqtt5_ack *out)
{
    bool has_id = h->type >= MQTT_PUBACK && h->type <= MQTT_PUBCOMP;
    if (!has_id && h->type != MQTT_DISCONNECT && h->type != MQTT_AUTH) return MQTT_ERR_TYPE;
    mqtt_cursor c;
    int rc = start5(h, h->type, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    out->type = h->type;
    if (has_id) {
        if ((rc = mqtt_cursor_u16(&c, &out->packet_id)) != MQTT_OK) return rc;
        if (out->packet_id == 0) return MQTT_ERR_PACKET_ID; /* [MQTT-2.2.1-5] */
    }
    if (mqtt_cursor_left(&c) > 0) { /* else Success, no properties */
        (void)mqtt_cursor_u8(&c, &out->reason);
        if (!mqtt5_reason_allowed(h->type, out->reason)) return MQTT_ERR_REASON;
    }
    if (mqtt_cursor_left(&c) > 0) {
        if ((rc = mqtt_props_read(&c, h->type, &out->props)) != MQTT_OK) return rc;
        if ((rc = finish(&c)) != MQTT_OK) return rc;
    }
    /* It is a Protocol Error to omit the Authentication Method (3.15.2.2.2). */
    if (h->type == MQTT_AUTH && !mqtt_props_has(&out->props, MQTT_PROP_AUTH_METHOD))
        return MQTT_ERR_AUTH_METHOD;
    return MQTT_OK;
}

/* One SUBSCRIBE entry's options byte (3.8.3.1). */
static int check_subopts(const mqtt_str *filter, uint8_t o)
{
    if (o & 0xc0) return MQTT_ERR_SUB_OPTIONS;                /* [MQTT-3.8.3-5] */
    if ((o & 3) == 3) return MQTT_ERR_SUB_QOS;                /* QoS 3 is malformed */
    if (((o >> 4) & 3) == 3) return MQTT_ERR_RETAIN_HANDLING; /* Protocol Error */
    static const char share[] = "$share/";
    if ((o & 4) && filter->len >= sizeof share - 1 &&
        memcmp(filter->ptr, share, sizeof share - 1) == 0)
        return MQTT_ERR_SHARED_NO_LOCAL; /* [MQTT-3.8.3-4] */
    return MQTT_OK;
}

/* SUBSCRIBE (options bytes) or UNSUBSCRIBE: packet id, properties, at
 * least one entry [MQTT-3.8.3-2], [MQTT-3.10.3-2], every entry validated. */
static int decode_sublist5(const mqtt_header *h, uint8_t type, mqtt5_sublist *out)
{
    mqtt_cursor c;
    int rc = start5(h, type, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    mqtt_sublist *l = &out->list;
    l->has_qos = type == MQTT_SUBSCRIBE;
    if ((rc = mqtt_cursor_u16(&c, &l->packet_id)) != MQTT_OK) return rc;
    if (l->packet_id == 0) return MQTT_ERR_PACKET_ID; /* [MQTT-2.2.1-3] */
    if ((rc = mqtt_props_read(&c, type, &out->props)) != MQTT_OK) return rc;
    if (mqtt_cursor_left(&c) == 0) return MQTT_ERR_EMPTY;
    l->cur = c.p;
    l->end = c.end;
    while (mqtt_cursor_left(&c) > 0) {
        mqtt_str f;
        if ((rc = mqtt_cursor_str(&c, &f)) != MQTT_OK) return rc;
        if ((rc = mqtt_topic_filter_validate(f.ptr, f.len)) != MQTT_OK)
            return rc; /* [MQTT-3.8.3-1], [MQTT-3.10.3-1] */
        if (l->has_qos) {
            uint8_t o;
            if ((rc = mqtt_cursor_u8(&c, &o)) != MQTT_OK) return rc;
            if ((rc = check_subopts(&f, o)) != MQTT_OK) return rc;
        }
        l->count++;
    }
    return MQTT_OK;
}

int mqtt5_decode_subscribe(const mqtt_header *h, mqtt5_sublist *out)
{
    return decode_sublist5(h, MQTT_SUBSCRIBE, out);
}

int mqtt5_decode_unsubscribe(const mqtt_header *h, mqtt5_sublist *out)
{
    return decode_sublist5(h, MQTT_UNSUBSCRIBE, out);
}

/*
 * mqtt5_decode_suback -- SUBACK (3.9) and UNSUBACK (3.11): packet id,
 * properties, one reason code per filter from the packet's table
 * [MQTT-3.9.3-2], [MQTT-3.11.3-2].
 */
int mqtt5_decode_suback(const mqtt_header *h, mqtt5_suback *out)
{
    if (h->type != MQTT_SUBACK && h->type != MQTT_UNSUBACK) return MQTT_ERR_TYPE;
    mqtt_cursor c;
    int rc = start5(h, h->type, &c);
    if (rc != MQTT_OK) return rc;
    memset(out, 0, sizeof *out);
    out->type = h->type;
    if ((rc = mqtt_cursor_u16(&c, &out->packet_id)) != MQTT_OK) return rc;
    if (out->packet_id == 0) return MQTT_ERR_PACKET_ID;
    if ((rc = mqtt_props_read(&c, h->type, &out->props)) != MQTT_OK) return rc;
    size_t n = mqtt_cursor_left(&c);
    if (n == 0) return MQTT_ERR_EMPTY;
    for (size_t i = 0; i < n; i++)
        if (!mqtt5_reason_allowed(h->type, c.p[i])) return MQTT_ERR_REASON;
    out->codes = c.p;
    out->count = (unsigned)n;
    return MQTT_OK;
}
