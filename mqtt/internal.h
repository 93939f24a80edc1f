/*
 * internal.h -- helpers shared by the mqtt/ sources. Not part of the
 * contract: nothing outside mqtt/ includes this file.
 */
#ifndef SECBROKER_MQTT_INTERNAL_H
#define SECBROKER_MQTT_INTERNAL_H

#include <string.h>

#include "mqtt/mqtt.h"

/* A read cursor over [p, end). Every read checks the bound first, so a
 * decoder can never look past the body mqtt_frame handed it. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} mqtt_cursor;

static inline size_t mqtt_cursor_left(const mqtt_cursor *c)
{
    return (size_t)(c->end - c->p);
}

/* One byte; MQTT_ERR_LENGTH if the body ends first. */
static inline int mqtt_cursor_u8(mqtt_cursor *c, uint8_t *v)
{
    if (mqtt_cursor_left(c) < 1) return MQTT_ERR_LENGTH;
    *v = *c->p++;
    return MQTT_OK;
}

/* Big-endian 16-bit integer (spec 1.5.2). */
static inline int mqtt_cursor_u16(mqtt_cursor *c, uint16_t *v)
{
    if (mqtt_cursor_left(c) < 2) return MQTT_ERR_LENGTH;
    *v = (uint16_t)((c->p[0] << 8) | c->p[1]);
    c->p += 2;
    return MQTT_OK;
}

/* Length-prefixed field (spec 1.5.3 strings, 3.1.3 binary data): a view,
 * no validation of the content. */
static inline int mqtt_cursor_str(mqtt_cursor *c, mqtt_str *s)
{
    uint16_t n;
    int rc = mqtt_cursor_u16(c, &n);
    if (rc != MQTT_OK) return rc;
    if (mqtt_cursor_left(c) < n) return MQTT_ERR_LENGTH;
    s->ptr = c->p;
    s->len = n;
    c->p += n;
    return MQTT_OK;
}

/* Fixed-header flag rule for (type, flags): MQTT_OK, MQTT_ERR_TYPE,
 * MQTT_ERR_FLAGS or MQTT_ERR_QOS. Defined in frame.c from its table. */
int mqtt_check_fixed_header(uint8_t type, uint8_t flags);

/* ---- MQTT 5.0 helpers ----------------------------------------------- */

/* Variable byte integer (spec 1.5.5): at most 4 bytes and minimal
 * [MQTT-1.5.5-1], else MQTT_ERR_VARINT; MQTT_ERR_PROP_LENGTH when the
 * cursor ends inside it. */
static inline int mqtt_cursor_varint(mqtt_cursor *c, uint32_t *v)
{
    size_t used;
    int rc = mqtt_varint_decode(c->p, mqtt_cursor_left(c), v, &used);
    if (rc == MQTT_NEED_MORE) return MQTT_ERR_PROP_LENGTH;
    if (rc != MQTT_OK || (size_t)mqtt_varint_size(*v) != used) return MQTT_ERR_VARINT;
    c->p += used;
    return MQTT_OK;
}

/* Fixed-header rule at a protocol level: level 5 admits AUTH (type 15,
 * flags 0 [MQTT-3.15.1-1]); otherwise mqtt_check_fixed_header. */
int mqtt_check_fixed_header_level(uint8_t type, uint8_t flags, uint8_t level);

/* Property length + properties at the cursor, for `where`; advances the
 * cursor past the block (see mqtt_props_decode for the errors). */
int mqtt_props_read(mqtt_cursor *c, int where, mqtt_props *out);

/* Encoder helpers (encode.c). */
static inline uint8_t *mqtt_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

/* Length-prefixed field; no memcpy for empty fields (ptr may be NULL). */
static inline uint8_t *mqtt_put_str(uint8_t *p, const uint8_t *s, uint16_t n)
{
    p = mqtt_put_u16(p, n);
    if (n) memcpy(p, s, n);
    return p + n;
}

/* Check remaining length (MQTT_ERR_ARG) and cap (MQTT_ERR_BUFFER), write
 * the fixed header; *p is where the variable header goes. */
int mqtt_encode_begin(uint8_t *buf, size_t cap, uint8_t byte0, uint64_t remaining, uint8_t **p,
                      size_t *total);

#endif
