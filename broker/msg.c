/* msg.c -- refcounted messages and byte buffers (see broker.h). */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

msg *msg_new(const uint8_t *topic, uint16_t tlen, const uint8_t *payload, size_t plen, uint8_t qos,
             bool retain)
{
    msg *m = malloc(sizeof *m + tlen + 1 + plen);
    if (!m) return NULL;
    m->refs = 1;
    m->payload_len = (uint32_t)plen;
    m->topic_len = tlen;
    m->qos = qos;
    m->retain = retain;
    memcpy(m->data, topic, tlen);
    m->data[tlen] = 0;
    if (plen) memcpy(m->data + tlen + 1, payload, plen);
    return m;
}

void msg_unref(msg *m)
{
    if (m && --m->refs == 0) free(m);
}

int bbuf_reserve(bbuf *b, size_t extra)
{
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return 0;
    /* Compact before growing: consumed bytes at the front are dead. */
    if (b->off) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return 0;
    }
    size_t ncap = b->cap ? b->cap : 256; /* most connections only ever hold acks */
    while (ncap < b->len + extra)
        ncap *= 2;
    uint8_t *nd = realloc(b->data, ncap);
    if (!nd) return -1;
    b->data = nd;
    b->cap = ncap;
    return 0;
}

void bbuf_free(bbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
