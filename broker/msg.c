/* msg.c -- refcounted messages (see msg.h). */
#include <stdlib.h>
#include <string.h>

#include "broker/memlimit.h"
#include "broker/msg.h"

static uint64_t live_count, live_bytes; /* msg_stats */

void msg_stats(uint64_t *count, uint64_t *bytes)
{
    *count = live_count;
    *bytes = live_bytes;
}

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
    m->source = NULL;
    memlimit_add(msg_size(tlen, props_len + plen));
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
    live_count++;
    live_bytes += plen;
    return m;
}

int msg_set_source(msg *m, const char *client_id, const char *username, int listener, uint16_t port)
{
    size_t il = strlen(client_id) + 1, ul = username ? strlen(username) + 1 : 0;
    msg_source *s = malloc(sizeof *s + il + ul);
    if (!s) return BK_ERR_NOMEM;
    memcpy(s->client_id, client_id, il);
    s->username = NULL;
    s->listener = (int16_t)(listener >= 0 && listener < INT16_MAX ? listener : -1);
    s->port = port;
    if (username) {
        memcpy(s->client_id + il, username, ul);
        s->username = s->client_id + il;
    }
    free(m->source);
    m->source = s;
    return BK_OK;
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
        live_count--;
        live_bytes -= m->payload_len;
        memlimit_sub(msg_size(m->topic_len, m->props_len + m->payload_len));
        free(m->source);
        free(m);
    }
}
