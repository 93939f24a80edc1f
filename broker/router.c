/*
 * router.c -- one PUBLISH to every matching subscriber. The message is
 * stored once (refcounted); matching walks the topic tree by level; a
 * session with overlapping subscriptions gets one copy at the highest
 * granted QoS [MQTT-3.3.5-1]; each copy is authorized for reading.
 */
#include <stdlib.h>

#include "broker/broker.h"
#include "broker/log.h"

static void collect(void *ud, sub_entry *e)
{
    broker *b = ud;
    session *s = e->s;
    if (s->match_stamp == b->match_seq) {
        if (e->qos > s->match_qos) s->match_qos = e->qos;
        return;
    }
    if (b->match_cap == 0 || (size_t)b->match_cap <= (size_t)b->match_cap_used) {
        size_t ncap = b->match_cap ? b->match_cap * 2 : 64;
        session **n = realloc(b->match_sessions, ncap * sizeof *n);
        if (!n) return; /* this subscriber misses the message; nothing else breaks */
        b->match_sessions = n;
        b->match_cap = ncap;
    }
    s->match_stamp = b->match_seq;
    s->match_qos = e->qos;
    b->match_sessions[b->match_cap_used++] = s;
}

void router_publish(broker *b, conn *from, msg *m)
{
    b->msgs_received++;
    if (topic_too_deep(msg_topic(m), m->topic_len)) {
        log_msg(LL_NOTICE, "Dropped PUBLISH from %s: topic has more than %d levels",
                from && from->client_id ? log_esc(from->client_id) : "(will)", TOPIC_MAX_LEVELS);
        return;
    }
    if (m->retain && b->cfg->retain_available) tree_retain(b, m);
    b->match_seq++;
    b->match_cap_used = 0;
    tree_match(b->root, msg_topic(m), m->topic_len, collect, b);
    size_t n = b->match_cap_used;
    for (size_t i = 0; i < n; i++) {
        session *s = b->match_sessions[i];
        if (!auth_may_read(b, s, msg_topic(m), m->topic_len)) continue;
        uint8_t qos = m->qos < s->match_qos ? m->qos : s->match_qos;
        session_deliver(b, s, m, qos, false);
    }
    b->match_cap_used = 0;
}
