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

/* Who published a retained message (check_retain_source): one allocation,
 * client id then username, both NUL-terminated, and the listener it came
 * through (per_listener_settings: whose ACL judges it). */
typedef struct msg_source {
    const char *username; /* NULL: anonymous */
    int16_t listener;     /* index in broker.listeners, -1: unknown */
    uint16_t port;        /* that listener's port (what the store keeps), 0: unknown */
    char client_id[];
} msg_source;

typedef struct msg {
    uint64_t store_id;  /* row in the durable store (persistence), 0 = not stored */
    msg_source *source; /* owned; NULL unless check_retain_source recorded it */
    uint32_t refs;
    uint32_t payload_len;
    uint16_t topic_len;
    uint8_t qos; /* QoS it was published with */
    bool retain; /* as published (for the retained store) */
    /* MQTT 5: the PUBLISH's properties forwarded unchanged (no Topic Alias,
     * Subscription Identifier or Message Expiry Interval: those are written
     * per delivery), stored once with the message; 0 for 3.1.1 publishers */
    uint32_t props_len;
    uint32_t payload_off; /* payload at data + payload_off (after topic, NUL, properties) */
    double expire_at;     /* monotonic seconds when it expires; 0 = never */
    char data[];          /* topic, NUL, properties, payload */
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
/* The same with a property block (props_len bytes, may be 0) kept between
 * topic and payload: still one allocation. */
msg *msg_new_props(const uint8_t *topic, uint16_t tlen, const uint8_t *props, size_t props_len,
                   const uint8_t *payload, size_t plen, uint8_t qos, bool retain) BK_MUST_CHECK;
/* Messages alive now (retained, queued, in flight, being routed) and their
 * payload bytes: $SYS/broker/store/messages/{count,bytes}. */
void msg_stats(uint64_t *count, uint64_t *bytes);
/* Drop one reference (NULL is ignored); the last one frees. */
void msg_unref(msg *m);
/* fn(ctx, m) is called with each message that has a store_id just before
 * it is freed (persistence lets go of its row); NULL to stop. */
void msg_set_free_hook(void (*fn)(void *ctx, msg *m), void *ctx);
/* Record the publisher on m (check_retain_source): client id, username
 * (NULL: anonymous), listener index and port (-1 and 0: unknown). BK_OK or
 * BK_ERR_NOMEM. */
int msg_set_source(msg *m, const char *client_id, const char *username, int listener,
                   uint16_t port) BK_MUST_CHECK;
static inline const char *msg_topic(const msg *m)
{
    return m->data;
}
static inline const uint8_t *msg_payload(const msg *m)
{
    return (const uint8_t *)m->data + m->payload_off;
}
static inline const uint8_t *msg_props(const msg *m)
{
    return (const uint8_t *)m->data + m->topic_len + 1;
}
/* Has m expired at monotonic time now? (Message Expiry Interval) */
static inline bool msg_expired(const msg *m, double now)
{
    return m->expire_at > 0 && now >= m->expire_at;
}

#endif
