/*
 * router.c -- one PUBLISH to every matching subscriber (see router.h).
 */
#include <stdlib.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/log.h"
#include "broker/persist.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/tree.h"

/* First size of the reused matched-sessions array. */
#define MATCH_FIRST_CAP 64

static void collect(void *ud, sub_entry *e)
{
    broker *b = ud;
    session *s = e->s;
    if (s->match_stamp == b->match_seq) {
        if (e->qos > s->match_qos) s->match_qos = e->qos;
        return;
    }
    if (b->match_cap == 0 || (size_t)b->match_cap <= (size_t)b->match_cap_used) {
        size_t ncap = b->match_cap ? b->match_cap * 2 : MATCH_FIRST_CAP;
        session **n = realloc(b->match_sessions, ncap * sizeof *n);
        if (!n) return; /* this subscriber misses the message; nothing else breaks */
        b->match_sessions = n;
        b->match_cap = ncap;
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
    tree_match(b->root, msg_topic(m), m->topic_len, collect, b);
    size_t n = b->match_cap_used;
    for (size_t i = 0; i < n; i++) {
        session *s = b->match_sessions[i];
        if (!auth_may_read(b, s, msg_topic(m), m->topic_len)) continue;
        /* a full queue or a dropped QoS 0 copy is counted and logged by the
         * session and the connection; the other subscribers still get theirs */
        (void)session_deliver(s, m, s->match_qos, false);
    }
    b->match_cap_used = 0;
}
