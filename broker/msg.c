/* msg.c -- refcounted messages (see msg.h). */
#include <stdlib.h>
#include <string.h>

#include "broker/memlimit.h"
#include "broker/msg.h"

msg *msg_new(const uint8_t *topic, uint16_t tlen, const uint8_t *payload, size_t plen, uint8_t qos,
             bool retain)
{
    msg *m = malloc(sizeof *m + tlen + 1 + plen);
    if (!m) return NULL;
    memlimit_add(msg_size(tlen, plen));
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
    if (m && --m->refs == 0) {
        memlimit_sub(msg_size(m->topic_len, m->payload_len));
        free(m);
    }
}
