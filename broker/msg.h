/*
 * msg.h -- a refcounted message: one allocation per PUBLISH received (topic
 * and payload together); every queue, inflight slot and retained slot holds
 * a reference. Delivery to a socket copies the payload into the
 * connection's output buffer, nothing else.
 */
#ifndef SECBROKER_MSG_H
#define SECBROKER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/err.h"

typedef struct msg {
    uint64_t store_id; /* row in the durable store (persistence), 0 = not stored */
    uint32_t refs;
    uint32_t payload_len;
    uint16_t topic_len;
    uint8_t qos; /* QoS it was published with */
    bool retain; /* as published (for the retained store) */
    char data[]; /* topic, NUL, payload */
} msg;

/* Bytes a message of this topic and payload length takes. */
static inline size_t msg_size(size_t tlen, size_t plen)
{
    return sizeof(msg) + tlen + 1 + plen;
}

/* A new message with one reference, or NULL when out of memory. */
msg *msg_new(const uint8_t *topic, uint16_t tlen, const uint8_t *payload, size_t plen, uint8_t qos,
             bool retain) BK_MUST_CHECK;
static inline msg *msg_ref(msg *m)
{
    m->refs++;
    return m;
}
/* Drop one reference (NULL is ignored); the last one frees. */
void msg_unref(msg *m);
/* fn(ctx, m) is called with each message that has a store_id just before
 * it is freed (persistence lets go of its row); NULL to stop. */
void msg_set_free_hook(void (*fn)(void *ctx, msg *m), void *ctx);
static inline const char *msg_topic(const msg *m)
{
    return m->data;
}
static inline const uint8_t *msg_payload(const msg *m)
{
    return (const uint8_t *)m->data + m->topic_len + 1;
}

#endif
