/* msg.c -- refcounted messages (see msg.h). */
#include <stdlib.h>
#include <string.h>

#include "broker/msg.h"

msg *msg_new(const uint8_t *topic, uint16_t tlen, const uint8_t *payload, size_t plen, uint8_t qos,
             bool retain)
{
    return msg_new_props(topic, tlen, NULL, 0, payload, plen, qos, retain);
}

msg *msg_new_props(const uint8_t *topic, uint16_t tlen, const uint8_t *props, size_t props_len,
                   const uint8_t *payload, size_t plen, uint8_t qos, bool retain)
{
    msg *m = malloc(sizeof *m + tlen + 1 + props_len + plen);
    if (!m) return NULL;
    m->store_id = 0;
    m->refs = 1;
    m->payload_len = (uint32_t)plen;
    m->topic_len = tlen;
    m->qos = qos;
    m->retain = retain;
    m->props_len = (uint32_t)props_len;
    m->payload_off = (uint32_t)(tlen + 1 + props_len);
    m->expire_at = 0;
    memcpy(m->data, topic, tlen);
    m->data[tlen] = 0;
    if (props_len) memcpy(m->data + tlen + 1, props, props_len);
    if (plen) memcpy(m->data + tlen + 1 + props_len, payload, plen);
    return m;
}

static void (*free_hook)(void *ctx, msg *m);
static void *free_hook_ctx;

void msg_set_free_hook(void (*fn)(void *ctx, msg *m), void *ctx)
{
    free_hook = fn;
    free_hook_ctx = ctx;
}

void msg_unref(msg *m)
{
    if (m && --m->refs == 0) {
        if (m->store_id && free_hook) free_hook(free_hook_ctx, m);
        free(m);
    }
}
