/*
 * encode5.c -- MQTT 5.0 packets into caller buffers.
 *
 * Same contract as encode.c (exact size first, nothing past cap, no half
 * packet on MQTT_ERR_BUFFER). Property blocks are validated for the packet
 * with the decoder's own rules first, so an encoder never writes a packet
 * that mqtt5_decode_* would refuse for its properties.
 */
#include "mqtt/internal.h"

/* Validate a property block for `where`; *size is what it takes on the
 * wire (length varint + block). NULL = no properties. */
static int props_size(const mqtt_bytes *raw, int where, uint64_t *size)
{
    size_t n = raw ? raw->len : 0;
    if (n > MQTT_MAX_REMAINING_LENGTH) return MQTT_ERR_ARG;
    if (n > 0) {
        mqtt_props tmp;
        int rc = mqtt_props_parse(raw->ptr, n, where, &tmp);
        if (rc != MQTT_OK) return rc;
    }
    *size = (uint64_t)mqtt_varint_size((uint32_t)n) + n;
    return MQTT_OK;
}

static uint8_t *put_props(uint8_t *p, const mqtt_bytes *raw)
{
    size_t n = raw ? raw->len : 0;
    p += mqtt_varint_encode((uint32_t)n, p);
    if (n) memcpy(p, raw->ptr, n);
    return p + n;
}

/* Connect flags byte at level 5. */
static uint8_t connect_flags(const mqtt_connect *c)
{
    uint8_t flags = c->clean_session ? 0x02 : 0;
    if (c->will_flag) flags |= (uint8_t)(0x04 | (c->will_qos << 3) | (c->will_retain ? 0x20 : 0));
    if (c->username_flag) flags |= 0x80;
    if (c->password_flag) flags |= 0x40;
    return flags;
}

/* Body of a level-5 CONNECT after the fixed header. */
static void put_connect(uint8_t *p, const mqtt5_connect *x)
{
    const mqtt_connect *c = &x->c;
    p = mqtt_put_str(p, (const uint8_t *)"MQTT", 4);
    *p++ = 5;
    *p++ = connect_flags(c);
    p = mqtt_put_u16(p, c->keepalive);
    p = put_props(p, &x->props.raw);
    p = mqtt_put_str(p, c->client_id.ptr, c->client_id.len);
    if (c->will_flag) {
        p = put_props(p, &x->will_props.raw);
        p = mqtt_put_str(p, c->will_topic.ptr, c->will_topic.len);
        p = mqtt_put_str(p, c->will_payload.ptr, c->will_payload.len);
    }
    if (c->username_flag) p = mqtt_put_str(p, c->username.ptr, c->username.len);
    if (c->password_flag) mqtt_put_str(p, c->password.ptr, c->password.len);
}

/*
 * mqtt5_encode_connect -- spec 3.1, always "MQTT" level 5 (protocol_name
 * and protocol_level of x->c are ignored). MQTT_ERR_ARG for will QoS > 2.
 */
int mqtt5_encode_connect(uint8_t *buf, size_t cap, const mqtt5_connect *x, size_t *written)
{
    *written = 0;
    const mqtt_connect *c = &x->c;
    if (c->will_flag && c->will_qos > 2) return MQTT_ERR_ARG;
    uint64_t ps, ws = 0;
    int rc = props_size(&x->props.raw, MQTT_CONNECT, &ps);
    if (rc == MQTT_OK && c->will_flag) rc = props_size(&x->will_props.raw, MQTT_PROPS_WILL, &ws);
    if (rc != MQTT_OK) return rc;
    uint64_t rem = 6u + 1 + 1 + 2 + ps + 2u + c->client_id.len;
    if (c->will_flag) rem += ws + 2u + c->will_topic.len + 2u + c->will_payload.len;
    if (c->username_flag) rem += 2u + c->username.len;
    if (c->password_flag) rem += 2u + c->password.len;
    uint8_t *p;
    size_t total;
    if ((rc = mqtt_encode_begin(buf, cap, MQTT_CONNECT << 4, rem, &p, &total)) != MQTT_OK)
        return rc;
    put_connect(p, x);
    *written = total;
    return MQTT_OK;
}

/*
 * mqtt5_encode_connack -- spec 3.2. MQTT_ERR_ARG for a reason code not in
 * the CONNACK table [MQTT-3.2.2-8]; session present is sent only with
 * reason 0 [MQTT-3.2.2-6].
 */
int mqtt5_encode_connack(uint8_t *buf, size_t cap, const mqtt5_connack *c, size_t *written)
{
    *written = 0;
    if (!mqtt5_reason_allowed(MQTT_CONNACK, c->reason)) return MQTT_ERR_ARG;
    uint64_t ps;
    int rc = props_size(&c->props.raw, MQTT_CONNACK, &ps);
    if (rc != MQTT_OK) return rc;
    uint8_t *p;
    size_t total;
    if ((rc = mqtt_encode_begin(buf, cap, MQTT_CONNACK << 4, 2 + ps, &p, &total)) != MQTT_OK)
        return rc;
    *p++ = (c->reason == 0 && c->session_present) ? 1 : 0;
    *p++ = c->reason;
    put_props(p, &c->props.raw);
    *written = total;
    return MQTT_OK;
}

/* Remaining length of a v5 PUBLISH (MQTT_ERR_* on bad arguments). */
static int publish_remaining5(const mqtt5_publish *x, uint64_t *rem)
{
    const mqtt_publish *p = &x->p;
    if (p->qos > 2 || (p->qos > 0 && p->packet_id == 0)) return MQTT_ERR_ARG;
    if (p->payload_len > MQTT_MAX_REMAINING_LENGTH) return MQTT_ERR_ARG;
    uint64_t ps;
    int rc = props_size(&x->props.raw, MQTT_PUBLISH, &ps);
    if (rc != MQTT_OK) return rc;
    if (p->topic.len == 0) { /* only with a Topic Alias (3.3.2.3.4) */
        mqtt_props tmp;
        mqtt_props_parse(x->props.raw.ptr, x->props.raw.len, MQTT_PUBLISH, &tmp);
        if (!mqtt_props_has(&tmp, MQTT_PROP_TOPIC_ALIAS)) return MQTT_ERR_ARG;
    }
    *rem = 2u + p->topic.len + (p->qos > 0 ? 2u : 0u) + ps + p->payload_len;
    return *rem > MQTT_MAX_REMAINING_LENGTH ? MQTT_ERR_ARG : MQTT_OK;
}

/*
 * mqtt5_encode_publish_header -- fixed header, topic, packet id and
 * properties of x; the caller appends x->p.payload_len payload bytes (they
 * are not counted against cap). DUP is dropped for QoS 0 [MQTT-3.3.1-2].
 */
int mqtt5_encode_publish_header(uint8_t *buf, size_t cap, const mqtt5_publish *x, size_t *written)
{
    *written = 0;
    const mqtt_publish *p = &x->p;
    uint64_t rem;
    int rc = publish_remaining5(x, &rem);
    if (rc != MQTT_OK) return rc;
    size_t hsize = 1 + (size_t)mqtt_varint_size((uint32_t)rem) + (size_t)(rem - p->payload_len);
    if (hsize > cap) return MQTT_ERR_BUFFER;
    uint8_t *w = buf;
    *w = (uint8_t)(MQTT_PUBLISH << 4 | p->qos << 1 | (p->retain ? 1 : 0));
    if (p->dup && p->qos > 0) *w |= 0x08;
    w++;
    w += mqtt_varint_encode((uint32_t)rem, w);
    w = mqtt_put_str(w, p->topic.ptr, p->topic.len);
    if (p->qos > 0) w = mqtt_put_u16(w, p->packet_id);
    w = put_props(w, &x->props.raw);
    *written = (size_t)(w - buf);
    return MQTT_OK;
}

/* mqtt5_encode_publish -- header and payload, all within cap. */
int mqtt5_encode_publish(uint8_t *buf, size_t cap, const mqtt5_publish *x, size_t *written)
{
    size_t n;
    int rc = mqtt5_encode_publish_header(buf, cap, x, &n);
    if (rc != MQTT_OK) return rc;
    if (x->p.payload_len > cap - n) {
        *written = 0;
        return MQTT_ERR_BUFFER;
    }
    if (x->p.payload_len) memcpy(buf + n, x->p.payload, x->p.payload_len);
    *written = n + x->p.payload_len;
    return MQTT_OK;
}

/* Does a (validated) property block hold an Authentication Method? */
static bool has_auth_method(const mqtt_bytes *raw)
{
    mqtt_props tmp;
    return raw->len > 0 && mqtt_props_parse(raw->ptr, raw->len, MQTT_AUTH, &tmp) == MQTT_OK &&
           mqtt_props_has(&tmp, MQTT_PROP_AUTH_METHOD);
}

/*
 * mqtt5_encode_ack -- PUBACK, PUBREC, PUBREL (flags 0x2), PUBCOMP with a
 * non-zero packet id, DISCONNECT and AUTH without one. The reason code is
 * omitted when it is 0 and there are no properties, the property length
 * when there are none (3.4.2.1, 3.14.2.1). An AUTH always carries its
 * Authentication Method (3.15.2.2.2), so it is always the long form.
 */
int mqtt5_encode_ack(uint8_t *buf, size_t cap, const mqtt5_ack *a, size_t *written)
{
    *written = 0;
    bool has_id = a->type >= MQTT_PUBACK && a->type <= MQTT_PUBCOMP;
    if (!has_id && a->type != MQTT_DISCONNECT && a->type != MQTT_AUTH) return MQTT_ERR_ARG;
    if ((has_id && a->packet_id == 0) || !mqtt5_reason_allowed(a->type, a->reason))
        return MQTT_ERR_ARG;
    uint64_t ps;
    int rc = props_size(&a->props.raw, a->type, &ps);
    if (rc != MQTT_OK) return rc;
    if (a->type == MQTT_AUTH && !has_auth_method(&a->props.raw)) return MQTT_ERR_ARG;
    bool with_props = a->props.raw.len > 0, with_reason = with_props || a->reason != 0;
    uint64_t rem = (has_id ? 2u : 0u) + (with_reason ? 1u : 0u) + (with_props ? ps : 0u);
    uint8_t *p;
    size_t total;
    uint8_t byte0 = (uint8_t)(a->type << 4 | (a->type == MQTT_PUBREL ? 0x2 : 0));
    if ((rc = mqtt_encode_begin(buf, cap, byte0, rem, &p, &total)) != MQTT_OK) return rc;
    if (has_id) p = mqtt_put_u16(p, a->packet_id);
    if (with_reason) *p++ = a->reason;
    if (with_props) put_props(p, &a->props.raw);
    *written = total;
    return MQTT_OK;
}

/* Would the decoder accept this options byte for this filter? */
static bool subopts_ok(const mqtt_str *f, uint8_t o)
{
    if ((o & 0xc0) || (o & 3) == 3 || ((o >> 4) & 3) == 3) return false;
    return !((o & 4) && f->len >= 7 && memcmp(f->ptr, "$share/", 7) == 0);
}

/* SUBSCRIBE (options != NULL means per-filter options, else 0) or
 * UNSUBSCRIBE at level 5. */
static int encode_sublist5(uint8_t *buf, size_t cap, uint8_t type, uint16_t packet_id,
                           const mqtt_bytes *props, const mqtt_str *filters, const uint8_t *options,
                           unsigned count, size_t *written)
{
    *written = 0;
    bool opt_bytes = type == MQTT_SUBSCRIBE;
    if (packet_id == 0 || count == 0 || filters == NULL) return MQTT_ERR_ARG;
    uint64_t rem;
    int rc = props_size(props, type, &rem);
    if (rc != MQTT_OK) return rc;
    rem += 2;
    for (unsigned i = 0; i < count; i++) {
        if (filters[i].len == 0) return MQTT_ERR_ARG;
        if (opt_bytes && options && !subopts_ok(&filters[i], options[i])) return MQTT_ERR_ARG;
        rem += 2u + filters[i].len + (opt_bytes ? 1u : 0u);
        if (rem > MQTT_MAX_REMAINING_LENGTH) return MQTT_ERR_ARG;
    }
    uint8_t *p;
    size_t total;
    if ((rc = mqtt_encode_begin(buf, cap, (uint8_t)(type << 4 | 0x2), rem, &p, &total)) != MQTT_OK)
        return rc;
    p = mqtt_put_u16(p, packet_id);
    p = put_props(p, props);
    for (unsigned i = 0; i < count; i++) {
        p = mqtt_put_str(p, filters[i].ptr, filters[i].len);
        if (opt_bytes) *p++ = options ? options[i] : 0;
    }
    *written = total;
    return MQTT_OK;
}

/* mqtt5_encode_subscribe -- spec 3.8; options may be NULL (all 0). */
int mqtt5_encode_subscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_bytes *props,
                           const mqtt_str *filters, const uint8_t *options, unsigned count,
                           size_t *written)
{
    return encode_sublist5(buf, cap, MQTT_SUBSCRIBE, packet_id, props, filters, options, count,
                           written);
}

/* mqtt5_encode_unsubscribe -- spec 3.10. */
int mqtt5_encode_unsubscribe(uint8_t *buf, size_t cap, uint16_t packet_id, const mqtt_bytes *props,
                             const mqtt_str *filters, unsigned count, size_t *written)
{
    return encode_sublist5(buf, cap, MQTT_UNSUBSCRIBE, packet_id, props, filters, NULL, count,
                           written);
}

/*
 * mqtt5_encode_suback -- SUBACK (3.9) or UNSUBACK (3.11) with one reason
 * code per filter from that packet's table; MQTT_ERR_ARG otherwise.
 */
int mqtt5_encode_suback(uint8_t *buf, size_t cap, const mqtt5_suback *s, size_t *written)
{
    *written = 0;
    if (s->type != MQTT_SUBACK && s->type != MQTT_UNSUBACK) return MQTT_ERR_ARG;
    if (s->packet_id == 0 || s->count == 0 || s->codes == NULL) return MQTT_ERR_ARG;
    for (unsigned i = 0; i < s->count; i++)
        if (!mqtt5_reason_allowed(s->type, s->codes[i])) return MQTT_ERR_ARG;
    uint64_t ps;
    int rc = props_size(&s->props.raw, s->type, &ps);
    if (rc != MQTT_OK) return rc;
    uint8_t *p;
    size_t total;
    rc = mqtt_encode_begin(buf, cap, (uint8_t)(s->type << 4), 2u + ps + s->count, &p, &total);
    if (rc != MQTT_OK) return rc;
    p = mqtt_put_u16(p, s->packet_id);
    p = put_props(p, &s->props.raw);
    memcpy(p, s->codes, s->count);
    *written = total;
    return MQTT_OK;
}
