/*
 * router.c -- one PUBLISH to every matching subscriber (see router.h).
 */
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/log.h"
#include "broker/persist.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/tree.h"

/* First size of the reused matched-sessions array. */
#define MATCH_FIRST_CAP 64

typedef struct {
    broker *b;
    const char *from_id; /* publisher, for No Local */
} match_ctx;

/* First match of s in this PUBLISH. */
static void collect_new(broker *b, session *s, uint8_t q)
{
    if (b->match_cap == 0 || (size_t)b->match_cap <= (size_t)b->match_cap_used) {
        size_t ncap = b->match_cap ? b->match_cap * 2 : MATCH_FIRST_CAP;
        session **n = realloc(b->match_sessions, ncap * sizeof *n);
        if (!n) return; /* this subscriber misses the message; nothing else breaks */
        b->match_sessions = n;
        b->match_cap = ncap;
    }
    s->match_stamp = b->match_seq;
    s->match_qos = q;
    b->match_sessions[b->match_cap_used++] = s;
}

/* The rarer entries: shared groups, No Local, Retain As Published. */
static void collect_options(match_ctx *mc, sub_entry *e)
{
    broker *b = mc->b;
    session *s = e->s;
    if (!s) {
        shared_collect(b, e); /* a shared subscription group */
        return;
    }
    if ((e->qos & SUBOPT_NO_LOCAL) && mc->from_id && strcmp(s->client_id, mc->from_id) == 0)
        return; /* [MQTT-3.8.3-3] */
    uint8_t q = e->qos & (SUBOPT_QOS_MASK | SUBOPT_RAP);
    if (s->match_stamp == b->match_seq) {
        uint8_t mq = s->match_qos;
        if ((q & SUBOPT_QOS_MASK) > (mq & SUBOPT_QOS_MASK))
            mq = (uint8_t)((mq & ~SUBOPT_QOS_MASK) | (q & SUBOPT_QOS_MASK));
        s->match_qos = (uint8_t)(mq | (q & SUBOPT_RAP));
        return;
    }
    collect_new(b, s, q);
}

static void collect(void *ud, sub_entry *e)
{
    match_ctx *mc = ud;
    if (e->qos > SUBOPT_QOS_MASK) { /* options or a group: never a plain 3.1.1 entry */
        collect_options(mc, e);
        return;
    }
    broker *b = mc->b;
    session *s = e->s;
    if (s->match_stamp == b->match_seq) {
        /* keeps any option bits an earlier entry set */
        if (e->qos > (s->match_qos & SUBOPT_QOS_MASK))
            s->match_qos = (uint8_t)((s->match_qos & ~SUBOPT_QOS_MASK) | e->qos);
        return;
    }
    /* collect_new, written out: this is the hot path of every delivery */
    if (b->match_cap == 0 || (size_t)b->match_cap <= (size_t)b->match_cap_used) {
        collect_new(b, s, e->qos);
        return;
    }
    s->match_stamp = b->match_seq;
    s->match_qos = e->qos;
    b->match_sessions[b->match_cap_used++] = s;
}

void router_publish(broker *b, const char *from_id, msg *m)
{
    b->msgs_received++;
    if (topic_too_deep(msg_topic(m), m->topic_len)) {
        log_msg(LL_NOTICE, "Dropped PUBLISH from %s: topic has more than %d levels",
                from_id ? log_esc(from_id) : "(will)", TOPIC_MAX_LEVELS);
        return;
    }
    if (m->retain && b->cfg->retain_available) {
        if (tree_retain(b->root, m, &b->retained_count) != BK_OK)
            log_msg(LL_WARNING, "Out of memory: retained message on '%s' not stored",
                    log_esc(msg_topic(m)));
        else
            persist_retain(b, m);
    }
    b->match_seq++;
    b->match_cap_used = 0;
    match_ctx mc = {b, from_id};
    tree_match(b->root, msg_topic(m), m->topic_len, collect, &mc);
    size_t n = b->match_cap_used;
    for (size_t i = 0; i < n; i++) {
        session *s = b->match_sessions[i];
        if (!auth_may_read(b, s, msg_topic(m), m->topic_len)) continue;
        /* a full queue or a dropped QoS 0 copy is counted and logged by the
         * session and the connection; the other subscribers still get theirs */
        uint8_t q = s->match_qos;
        if (q <= SUBOPT_QOS_MASK)
            (void)session_deliver(s, m, q, false);
        else /* Retain As Published [MQTT-3.3.1-12] */
            (void)session_deliver(s, m, q & SUBOPT_QOS_MASK, (q & SUBOPT_RAP) && m->retain);
    }
    b->match_cap_used = 0;
    shared_deliver_matched(b, m);
}
