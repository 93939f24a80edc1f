/*
 * internal.h -- helpers shared by the mqtt/ sources. Not part of the
 * contract: nothing outside mqtt/ includes this file.
 */
#ifndef SECBROKER_MQTT_INTERNAL_H
#define SECBROKER_MQTT_INTERNAL_H

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

#endif
