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
    m->store_id = 0;
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
        memlimit_sub(msg_size(m->topic_len, m->payload_len));
        free(m);
    }
}
