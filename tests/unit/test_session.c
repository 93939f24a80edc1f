/* Unit tests for the session state machine (broker/session.c) without
 * sockets: a recording outbox captures every packet a session emits.
 * In-order and out-of-order acks, windows over 64 ids (bitmap), packet-id
 * wraparound at 65535, redelivery with DUP on reconnect, queue limits,
 * QoS downgrade, exactly-once for incoming QoS 2, takeover, subscriptions. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/session.h"
#include "broker/tree.h"

/* ---- a recording outbox ---------------------------------------------------- */
typedef struct {
    enum mqtt_type type; /* MQTT_PUBLISH or an ack type */
    uint16_t pid;
    uint8_t qos;
    bool dup, retain;
    const msg *m;
} pkt;

typedef struct {
    bool ready;
    int publish_result; /* what publish returns (BK_OK unless a test says) */
    pkt *p;
    size_t n, cap;
} fake_out;

static void record(fake_out *o, pkt p)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->p = realloc(o->p, o->cap * sizeof *o->p);
        ck_assert_ptr_nonnull(o->p);
    }
    o->p[o->n++] = p;
}

static bool fo_ready(void *ctx)
{
    return ((fake_out *)ctx)->ready;
}

static int fo_publish(void *ctx, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid)
{
    fake_out *o = ctx;
    if (!o->ready) return BK_ERR_CLOSED; /* the outbox contract */
    record(o, (pkt){MQTT_PUBLISH, pid, qos, dup, retain, m});
    return o->publish_result;
}

static int fo_ack(void *ctx, enum mqtt_type type, uint16_t pid)
{
    record(ctx, (pkt){type, pid, 0, false, false, NULL});
    return BK_OK;
}

static const session_outbox fake_outbox = {fo_ready, fo_publish, fo_ack};

/* ---- fixture ------------------------------------------------------------------- */
static session_registry reg;
static fake_out out, out2;
static msg *m1, *m2; /* QoS 2 messages: deliveries are capped by the test's max_qos */

static void fake_reset(fake_out *o)
{
    free(o->p);
    memset(o, 0, sizeof *o);
    o->ready = true;
}

static session *new_session(uint32_t max_inflight, uint32_t max_queued)
{
    session_registry_init(&reg,
                          (session_limits){.max_inflight = max_inflight, .max_queued = max_queued});
    session *s = session_create(&reg, "c1", 2, false);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void setup(void)
{
    fake_reset(&out);
    fake_reset(&out2);
    m1 = msg_new((const uint8_t *)"t/1", 3, (const uint8_t *)"one", 3, 2, false);
    m2 = msg_new((const uint8_t *)"t/2", 3, (const uint8_t *)"two", 3, 2, false);
    ck_assert_ptr_nonnull(m1);
    ck_assert_ptr_nonnull(m2);
}

static void teardown(void)
{
    session_registry_free(&reg);
    /* every delivery gave its reference back: only ours is left */
    ck_assert_uint_eq(m1->refs, 1);
    ck_assert_uint_eq(m2->refs, 1);
    msg_unref(m1);
    msg_unref(m2);
    free(out.p);
    free(out2.p);
    memset(&out, 0, sizeof out);
    memset(&out2, 0, sizeof out2);
}

static size_t count_type(const fake_out *o, enum mqtt_type t)
{
    size_t n = 0;
    for (size_t i = 0; i < o->n; i++)
        n += o->p[i].type == t;
    return n;
}

/* deliver n QoS 1 copies of m1, all accepted */
static void deliver_n(session *s, int n, uint8_t qos)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(session_deliver(s, m1, qos, false), BK_OK);
}

/* ---- acks -------------------------------------------------------------------------- */
START_TEST(acks_in_order)
{
    session *s = new_session(10, 0);
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 25, 1);
    ck_assert_uint_eq(out.n, 10); /* the window */
    ck_assert_uint_eq(s->queue.count, 15);
    for (uint16_t pid = 1; pid <= 25; pid++) {
        ck_assert_uint_eq(out.p[pid - 1].type, MQTT_PUBLISH);
        ck_assert_uint_eq(out.p[pid - 1].pid, pid);
        ck_assert_uint_eq(out.p[pid - 1].qos, 1);
        ck_assert(!out.p[pid - 1].dup);
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, pid), BK_OK);
        /* each ack lets one queued message in, until the queue is empty */
        ck_assert_uint_eq(out.n, pid + 10 <= 25 ? pid + 10 : 25);
    }
    ck_assert_uint_eq(s->inflight_live, 0);
    ck_assert_uint_eq(s->queue.count, 0);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 1), BK_ERR_UNKNOWN); /* already acked */
}
END_TEST

START_TEST(acks_out_of_order)
{
    session *s = new_session(8, 0);
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 8, 1);
    deliver_n(s, 4, 1); /* queued */
    static const uint16_t order[] = {8, 3, 5, 1};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, order[i]), BK_OK);
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, order[i]), BK_ERR_UNKNOWN);
    }
    ck_assert_uint_eq(out.n, 12);
    /* the refilled window uses fresh ids, none equal to a live one */
    for (size_t i = 8; i < 12; i++)
        for (size_t j = 0; j < i; j++)
            if (j != 7 && j != 2 && j != 4 && j != 0) ck_assert_uint_ne(out.p[i].pid, out.p[j].pid);
    /* ack the rest in reverse */
    for (size_t i = out.n; i-- > 0;) {
        uint16_t pid = out.p[i].pid;
        int r = session_ack(s, MQTT_PUBACK, pid);
        ck_assert(r == BK_OK || r == BK_ERR_UNKNOWN);
    }
    ck_assert_uint_eq(s->inflight_live, 0);
    ck_assert_uint_eq(s->ninflight, 0);
}
END_TEST

START_TEST(qos2_ack_states)
{
    session *s = new_session(0, 0);
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 1, 2);
    ck_assert_uint_eq(out.p[0].qos, 2);
    uint16_t pid = out.p[0].pid;
    ck_assert_int_eq(session_ack(s, MQTT_PUBCOMP, pid), BK_ERR_STATE); /* before PUBREC */
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, pid), BK_ERR_STATE);  /* wrong QoS */
    ck_assert_int_eq(session_ack(s, MQTT_PUBREC, pid), BK_OK);
    ck_assert_uint_eq(out.p[1].type, MQTT_PUBREL);
    ck_assert_uint_eq(out.p[1].pid, pid);
    ck_assert_int_eq(session_ack(s, MQTT_PUBREC, pid), BK_OK); /* a repeated PUBREC: PUBREL again */
    ck_assert_uint_eq(count_type(&out, MQTT_PUBREL), 2);
    ck_assert_int_eq(session_ack(s, MQTT_PUBCOMP, pid), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBCOMP, pid), BK_ERR_UNKNOWN);
    ck_assert_uint_eq(s->inflight_live, 0);
}
END_TEST

/* ---- windows and ids ------------------------------------------------------------- */
START_TEST(window_over_64_ids)
{
    session *s = new_session(200, 0);
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 500, 1);
    ck_assert_uint_eq(out.n, 200);
    ck_assert_ptr_nonnull(s->pid_used); /* the bitmap took over from scanning */
    /* ack every even id first, then the odd ones: the window refills each time */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < 200; i++)
            if (out.p[i].pid % 2 == pass)
                ck_assert_int_eq(session_ack(s, MQTT_PUBACK, out.p[i].pid), BK_OK);
    ck_assert_uint_eq(out.n, 400);
    ck_assert_uint_eq(s->inflight_live, 200);
    /* ids in flight at once are unique */
    static uint8_t seen[65536];
    memset(seen, 0, sizeof seen);
    for (size_t i = 200; i < 400; i++) {
        ck_assert_uint_ne(out.p[i].pid, 0);
        ck_assert_uint_eq(seen[out.p[i].pid]++, 0);
    }
    while (s->inflight_live)
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, s->inflight[s->inflight_head].pid), BK_OK);
    ck_assert_uint_eq(out.n, 500);
}
END_TEST

START_TEST(pid_wraparound)
{
    session *s = new_session(2, 0);
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 1, 1); /* id 1 stays in flight the whole time */
    ck_assert_uint_eq(out.p[0].pid, 1);
    for (uint32_t pid = 2; pid <= 65535; pid++) {
        deliver_n(s, 1, 1);
        ck_assert_uint_eq(out.p[out.n - 1].pid, pid);
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, (uint16_t)pid), BK_OK);
    }
    /* after 65535 comes neither 0 (invalid) nor 1 (in flight) but 2 */
    deliver_n(s, 1, 1);
    ck_assert_uint_eq(out.p[out.n - 1].pid, 2);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 1), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 2), BK_OK);
    ck_assert_uint_eq(s->inflight_live, 0);
}
END_TEST

START_TEST(window_unlimited_capped_at_65535)
{
    session *s = new_session(0, 0); /* 0 = unlimited, but ids are 16-bit */
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 65536, 1);
    ck_assert_uint_eq(out.n, 65535);
    ck_assert_uint_eq(s->queue.count, 1);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 77), BK_OK);
    ck_assert_uint_eq(out.n, 65536);
    ck_assert_uint_eq(out.p[65535].pid, 77); /* the only free id */
}
END_TEST

/* ---- reconnect, takeover --------------------------------------------------------- */
START_TEST(redelivery_with_dup)
{
    session *s = new_session(8, 0);
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 3, 1);                                       /* ids 1..3, QoS 1 */
    ck_assert_int_eq(session_deliver(s, m2, 2, true), BK_OK); /* id 4, QoS 2 */
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 2), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBREC, 4), BK_OK);
    session_detach(s);
    deliver_n(s, 2, 1);                                        /* offline: queued */
    ck_assert_int_eq(session_deliver(s, m1, 0, false), BK_OK); /* QoS 0 offline: not kept */
    ck_assert_uint_eq(s->queue.count, 2);
    session_attach(s, &fake_outbox, &out2);
    session_resend(s);
    /* in order: DUP 1, DUP 3, PUBREL 4, then the queue with fresh ids */
    ck_assert_uint_eq(out2.n, 5);
    ck_assert_uint_eq(out2.p[0].type, MQTT_PUBLISH);
    ck_assert_uint_eq(out2.p[0].pid, 1);
    ck_assert(out2.p[0].dup);
    ck_assert_uint_eq(out2.p[1].pid, 3);
    ck_assert(out2.p[1].dup);
    ck_assert_ptr_eq(out2.p[1].m, m1);
    ck_assert_uint_eq(out2.p[2].type, MQTT_PUBREL);
    ck_assert_uint_eq(out2.p[2].pid, 4);
    for (int i = 3; i < 5; i++) {
        ck_assert_uint_eq(out2.p[i].type, MQTT_PUBLISH);
        ck_assert(!out2.p[i].dup);
        ck_assert_uint_ne(out2.p[i].pid, 1);
        ck_assert_uint_ne(out2.p[i].pid, 3);
        ck_assert_uint_ne(out2.p[i].pid, 4);
    }
    ck_assert_uint_eq(s->queue.count, 0);
}
END_TEST

START_TEST(redelivery_keeps_retain_flag)
{
    session *s = new_session(0, 0);
    session_attach(s, &fake_outbox, &out);
    ck_assert_int_eq(session_deliver(s, m1, 1, true), BK_OK);
    session_detach(s);
    session_attach(s, &fake_outbox, &out2);
    session_resend(s);
    ck_assert_uint_eq(out2.n, 1);
    ck_assert(out2.p[0].retain);
    ck_assert(out2.p[0].dup);
}
END_TEST

START_TEST(takeover)
{
    session *s = new_session(10, 0);
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 2, 1);
    /* the old connection is closing: nothing more goes to it */
    out.ready = false;
    deliver_n(s, 1, 1);
    ck_assert_uint_eq(out.n, 2);
    ck_assert_uint_eq(s->queue.count, 1);
    /* the new connection takes the session over */
    session_detach(s);
    session_attach(s, &fake_outbox, &out2);
    session_resend(s);
    ck_assert_uint_eq(out.n, 2);
    ck_assert_uint_eq(out2.n, 3);
    ck_assert(out2.p[0].dup && out2.p[1].dup && !out2.p[2].dup);
    ck_assert_ptr_eq(s->out_ctx, &out2);
    ck_assert(session_online(s));
    /* acks from the new connection finish the old deliveries */
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, out2.p[i].pid), BK_OK);
}
END_TEST

/* ---- queue limits (table) ---------------------------------------------------------- */
static const struct {
    uint32_t max_queued, max_inflight;
    bool online;
} queue_table[] = {
    {1, 2, false}, {5, 2, false}, {100, 2, false}, {1, 1, true}, {5, 3, true}, {100, 10, true},
};

START_TEST(queue_limit_exact)
{
    uint32_t maxq = queue_table[_i].max_queued, win = queue_table[_i].max_inflight;
    session *s = new_session(win, maxq);
    if (queue_table[_i].online) session_attach(s, &fake_outbox, &out);
    uint32_t window = queue_table[_i].online ? win : 0;
    /* fill the window, then the queue up to max-1 */
    deliver_n(s, (int)(window + maxq - 1), 1);
    ck_assert_uint_eq(s->queue.count, maxq - 1);
    /* a queue holding max-1 still accepts one more */
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK);
    ck_assert_uint_eq(s->queue.count, maxq);
    ck_assert_uint_eq(s->dropped, 0);
    /* the next is dropped and counted */
    ck_assert_int_eq(session_deliver(s, m1, 2, false), BK_ERR_FULL);
    ck_assert_uint_eq(s->queue.count, maxq);
    ck_assert_uint_eq(s->dropped, 1);
    ck_assert(session_queue_full(s, 1));
    ck_assert_uint_eq(out.n, window);
}
END_TEST

/* A bridge's own limits: messages instead of the registry's, and bytes
 * (topic + payload, 6 per message here), freed again as the queue drains. */
START_TEST(own_queue_limits)
{
    session *s = new_session(2, 1000);
    s->own_max_queued = 4;
    deliver_n(s, 4, 1);
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_ERR_FULL);
    ck_assert_uint_eq(s->queue.count, 4);
    ck_assert_uint_eq(s->queued_bytes, 24);
    s->own_max_queued = 0;
    s->own_max_bytes = 30; /* the 5th fits (24 < 30), the 6th does not */
    deliver_n(s, 1, 1);
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_ERR_FULL);
    ck_assert_uint_eq(s->dropped, 2);
    session_attach(s, &fake_outbox, &out);
    session_pump(s); /* two go into the window of 2 */
    ck_assert_uint_eq(s->queue.count, 3);
    ck_assert_uint_eq(s->queued_bytes, 18);
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK);
}
END_TEST

START_TEST(queue_unlimited)
{
    session *s = new_session(1, 0);
    deliver_n(s, 5000, 2);
    ck_assert_uint_eq(s->queue.count, 5000);
    ck_assert(!session_queue_full(s, 1));
    ck_assert(session_queue_full(s, 0)); /* QoS 0 is never queued */
    session_attach(s, &fake_outbox, &out);
    session_resend(s);
    ck_assert_uint_eq(out.n, 1);
    ck_assert_uint_eq(s->queue.count, 4999);
}
END_TEST

/* ---- QoS downgrade (table) ----------------------------------------------------------- */
static const struct {
    uint8_t msg_qos, max_qos, sent_qos;
} downgrade_table[] = {
    {0, 0, 0}, {0, 2, 0}, {1, 0, 0}, {1, 1, 1}, {1, 2, 1}, {2, 0, 0}, {2, 1, 1}, {2, 2, 2},
};

START_TEST(qos_downgrade)
{
    session *s = new_session(0, 0);
    session_attach(s, &fake_outbox, &out);
    msg *m = msg_new((const uint8_t *)"d", 1, (const uint8_t *)"x", 1, downgrade_table[_i].msg_qos,
                     false);
    ck_assert_int_eq(session_deliver(s, m, downgrade_table[_i].max_qos, false), BK_OK);
    ck_assert_uint_eq(out.n, 1);
    ck_assert_uint_eq(out.p[0].qos, downgrade_table[_i].sent_qos);
    ck_assert_uint_eq(out.p[0].pid, downgrade_table[_i].sent_qos ? 1 : 0);
    ck_assert_uint_eq(s->inflight_live, downgrade_table[_i].sent_qos ? 1 : 0);
    session_destroy(s); /* gives the inflight reference back */
    ck_assert_uint_eq(m->refs, 1);
    msg_unref(m);
}
END_TEST

START_TEST(qos0_to_closing_client)
{
    session *s = new_session(0, 0);
    session_attach(s, &fake_outbox, &out);
    out.ready = false;
    ck_assert_int_eq(session_deliver(s, m1, 0, false), BK_ERR_CLOSED);
    ck_assert_uint_eq(out.n, 0);
    ck_assert_uint_eq(s->queue.count, 0); /* QoS 0 is never queued */
}
END_TEST

START_TEST(qos0_dropped_by_transport)
{
    session *s = new_session(0, 0);
    session_attach(s, &fake_outbox, &out);
    out.publish_result = BK_ERR_FULL; /* output over its limit */
    ck_assert_int_eq(session_deliver(s, m1, 0, false), BK_ERR_FULL);
    ck_assert_uint_eq(s->inflight_live, 0);
}
END_TEST

/* ---- incoming QoS 2 -------------------------------------------------------------------- */
START_TEST(qos2_incoming_exactly_once)
{
    session *s = new_session(0, 0);
    /* PUBLISH id 7 arrives: remembered until PUBREL */
    ck_assert(!session_qos2_in_has(s, 7));
    ck_assert_int_eq(session_qos2_in_add(s, 7), BK_OK);
    ck_assert(session_qos2_in_has(s, 7));
    /* a resend of id 7 before PUBREL is recognised (not delivered twice) and
     * not stored twice */
    ck_assert_int_eq(session_qos2_in_add(s, 7), BK_OK);
    ck_assert_uint_eq(s->nqos2_in, 1);
    for (uint16_t pid = 100; pid < 140; pid++)
        ck_assert_int_eq(session_qos2_in_add(s, pid), BK_OK);
    ck_assert_uint_eq(s->nqos2_in, 41);
    /* PUBREL releases; a second PUBREL finds nothing */
    ck_assert(session_qos2_in_del(s, 7));
    ck_assert(!session_qos2_in_del(s, 7));
    ck_assert(!session_qos2_in_has(s, 7));
    for (uint16_t pid = 100; pid < 140; pid++)
        ck_assert(session_qos2_in_has(s, pid));
    /* after release the same id is a new message */
    ck_assert_int_eq(session_qos2_in_add(s, 7), BK_OK);
    ck_assert(session_qos2_in_has(s, 7));
}
END_TEST

/* ---- subscriptions and the registry ------------------------------------------------------ */
START_TEST(subscriptions)
{
    tnode *root = tree_new_root();
    session *s = new_session(0, 0);
    sub_rec *a, *b, *again;
    ck_assert_int_eq(session_subscribe(s, root, "a/+", 3, 1, &a), BK_OK);
    ck_assert_int_eq(session_subscribe(s, root, "b/#", 3, 0, &b), BK_OK);
    ck_assert_int_eq(session_subscribe(s, root, "a/+", 3, 2, &again), BK_OK);
    ck_assert_ptr_eq(a, again); /* [MQTT-3.8.4-3] replace, not add */
    ck_assert_uint_eq(s->nsubs, 2);
    ck_assert_uint_eq(a->where.node->subs[a->where.index].qos, 2);
    ck_assert_ptr_eq(b->where.node->subs[b->where.index].s, s);
    ck_assert_int_eq(session_unsubscribe(s, "b/#", 3), BK_OK);
    ck_assert_int_eq(session_unsubscribe(s, "b/#", 3), BK_ERR_UNKNOWN);
    ck_assert_int_eq(session_unsubscribe(s, "zz", 2), BK_ERR_UNKNOWN);
    session_destroy(s); /* takes its tree entries along */
    ck_assert_uint_eq(root->children.count, 0);
    tree_free(root);
}
END_TEST

START_TEST(registry)
{
    session *s = new_session(0, 0);
    ck_assert_ptr_eq(session_find(&reg, "c1", 2), s);
    ck_assert_ptr_null(session_find(&reg, "c2", 2));
    session *t = session_create(&reg, "c2", 2, true);
    ck_assert_ptr_eq(session_find(&reg, "c2", 2), t);
    ck_assert(t->clean);
    session_destroy(t);
    ck_assert_ptr_null(session_find(&reg, "c2", 2));
    ck_assert(!session_online(s));
    session_attach(s, &fake_outbox, &out);
    ck_assert(session_online(s));
    out.ready = false;
    ck_assert(!session_online(s));
}
END_TEST

/* The registry counts the persistent (not clean) sessions for
 * max_persistent_sessions: creation, a change of kind and destruction. */
START_TEST(registry_counts_persistent)
{
    session *s = new_session(0, 0); /* persistent */
    ck_assert_uint_eq(reg.persistent, 1);
    session *t = session_create(&reg, "c2", 2, true);
    ck_assert_uint_eq(reg.persistent, 1);
    session_set_clean(t, false); /* a v5 session expiry */
    session_set_clean(t, false); /* again: counted once */
    ck_assert_uint_eq(reg.persistent, 2);
    session_set_clean(s, true); /* a v5 DISCONNECT with expiry 0 */
    ck_assert_uint_eq(reg.persistent, 1);
    session_destroy(s);
    ck_assert_uint_eq(reg.persistent, 1);
    session_destroy(t);
    ck_assert_uint_eq(reg.persistent, 0);
}
END_TEST

/* ---- the journal of a durable session (persistence) ------------------------------ */
typedef struct {
    char ev[64][48];
    int n;
} journal_log;

static journal_log jl;

static void jl_add(const char *fmt, unsigned a, unsigned b, unsigned c)
{
    ck_assert_int_lt(jl.n, 64);
    snprintf(jl.ev[jl.n++], sizeof jl.ev[0], fmt, a, b, c);
}

static void jr_delivery(void *ctx, session *s, const outmsg *o, enum journal_delivery what)
{
    static const char *const names[] = {"add", "update", "done"};
    char fmt[48];
    snprintf(fmt, sizeof fmt, "%s seq=%%u state=%%u pid=%%u", names[what]);
    jl_add(fmt, (unsigned)o->seq, o->state, o->pid);
}

static void jr_qos2(void *ctx, session *s, uint16_t pid, bool add)
{
    jl_add(add ? "q2 add %u%.0u%.0u" : "q2 del %u%.0u%.0u", pid, 0, 0);
}

static void jr_sub(void *ctx, session *s, const char *f, size_t flen, uint8_t qos, uint32_t sub_id,
                   bool add)
{
    jl_add(add ? "sub add qos=%u%.0u%.0u" : "sub del%.0u%.0u%.0u", qos, 0, 0);
}

static void jr_destroyed(void *ctx, session *s)
{
    jl_add("destroyed%.0u%.0u%.0u", 0, 0, 0);
}

static const session_journal recording_journal = {jr_delivery, jr_qos2, jr_sub, jr_destroyed};

static void expect_journal(const char *const *want, int n)
{
    ck_assert_int_eq(jl.n, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(strcmp(jl.ev[i], want[i]) == 0, "event %d: '%s', expected '%s'", i, jl.ev[i],
                      want[i]);
    jl.n = 0;
}

/* Every change of a durable session's state is journaled, in order, with
 * the seq that orders its deliveries; a clean session journals nothing. */
START_TEST(journal_of_durable_session)
{
    session *s = new_session(1, 10);
    reg.journal = &recording_journal;
    memset(&jl, 0, sizeof jl);
    session *clean = session_create(&reg, "clean", 5, true);
    session_attach(clean, &fake_outbox, &out2);
    ck_assert_int_eq(session_deliver(clean, m1, 1, false), BK_OK);
    ck_assert_int_eq(jl.n, 0);
    session_destroy(clean);
    ck_assert_int_eq(jl.n, 0);

    s->durable = true;
    sub_rec *r;
    tnode *root = tree_new_root();
    ck_assert_int_eq(session_subscribe(s, root, "t/#", 3, 1, &r), BK_OK);
    ck_assert_int_eq(session_subscribe(s, root, "t/#", 3, 1, &r), BK_OK); /* same QoS: nothing */
    ck_assert_int_eq(session_subscribe(s, root, "t/#", 3, 2, &r), BK_OK);
    static const char *const subs[] = {"sub add qos=1", "sub add qos=2"};
    expect_journal(subs, 2);

    session_attach(s, &fake_outbox, &out);
    ck_assert_int_eq(session_deliver(s, m1, 2, false), BK_OK); /* sent at once: window 1 */
    ck_assert_int_eq(session_deliver(s, m2, 1, false), BK_OK); /* queued behind it */
    ck_assert_int_eq(session_ack(s, MQTT_PUBREC, out.p[0].pid), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBCOMP, out.p[0].pid), BK_OK); /* pumps m2 */
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, out.p[2].pid), BK_OK);
    static const char *const flow[] = {
        "add seq=1 state=2 pid=1",    /* QoS 2 PUBLISH sent: waits for PUBREC */
        "add seq=2 state=0 pid=0",    /* queued */
        "update seq=1 state=3 pid=1", /* PUBREL sent */
        "done seq=1 state=3 pid=1",   /* PUBCOMP */
        "update seq=2 state=1 pid=2", /* sent from the queue */
        "done seq=2 state=1 pid=2",   /* PUBACK */
    };
    expect_journal(flow, 6);

    ck_assert_int_eq(session_qos2_in_add(s, 9), BK_OK);
    ck_assert_int_eq(session_qos2_in_add(s, 9), BK_OK); /* known: nothing */
    ck_assert(session_qos2_in_del(s, 9));
    ck_assert(!session_qos2_in_del(s, 9));
    ck_assert_int_eq(session_unsubscribe(s, "t/#", 3), BK_OK);
    session_destroy(s);
    static const char *const rest[] = {"q2 add 9", "q2 del 9", "sub del", "destroyed"};
    expect_journal(rest, 4);
    tree_free(root);
    reg.journal = NULL;
}
END_TEST

/* Deliveries read back from the store resume where they were: queued ones
 * wait, in-flight ones are resent with DUP (PUBREL for those past PUBREC),
 * and new deliveries continue the seq and packet ids. */
START_TEST(restore_deliveries)
{
    session *s = new_session(10, 10);
    ck_assert_int_eq(session_restore_delivery(s, m1, 4, 1, false, OUT_WAIT_PUBACK, 7), BK_OK);
    ck_assert_int_eq(session_restore_delivery(s, m2, 5, 2, true, OUT_WAIT_PUBCOMP, 8), BK_OK);
    ck_assert_int_eq(session_restore_delivery(s, m1, 6, 1, false, 0, 0), BK_OK);
    session_attach(s, &fake_outbox, &out);
    session_resend(s);
    ck_assert_uint_eq(out.n, 3);
    ck_assert(out.p[0].type == MQTT_PUBLISH && out.p[0].pid == 7 && out.p[0].dup);
    ck_assert(out.p[1].type == MQTT_PUBREL && out.p[1].pid == 8);
    ck_assert(out.p[2].type == MQTT_PUBLISH && !out.p[2].dup && out.p[2].pid == 9);
    ck_assert_uint_eq(s->next_seq, 7);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 7), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBCOMP, 8), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 9), BK_OK);
    ck_assert_uint_eq(s->inflight_live, 0);
}
END_TEST

/* ---- MQTT 5: flow control, expiry, packet size ------------------------------------ */
START_TEST(receive_maximum_caps_window)
{
    /* the client's Receive Maximum (3) is below max_inflight (10): never more
     * than 3 unacknowledged QoS 1/2 PUBLISHes [MQTT-3.3.4-9]; QoS 0 passes */
    session *s = new_session(10, 0);
    s->send_max = 3;
    session_attach(s, &fake_outbox, &out);
    deliver_n(s, 6, 1);
    ck_assert_uint_eq(out.n, 3);
    ck_assert_uint_eq(s->queue.count, 3);
    ck_assert_int_eq(session_deliver(s, m2, 0, false), BK_OK);
    ck_assert_uint_eq(out.n, 4); /* QoS 0 is not counted */
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 2), BK_OK);
    ck_assert_uint_eq(out.n, 5); /* one ack, one more */
    ck_assert_uint_eq(s->inflight_live, 3);
    /* a Receive Maximum above max_inflight leaves max_inflight in charge */
    s->send_max = 50;
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 1), BK_OK);
    ck_assert_uint_eq(s->queue.count, 0); /* both queued ones went out */
    ck_assert_uint_eq(s->inflight_live, 4);
}
END_TEST

START_TEST(expired_messages_not_delivered)
{
    /* queued messages whose Message Expiry Interval ran out are dropped when
     * their turn comes (spec 3.3.2.3.3); the others go out */
    double now = 100;
    session *s = new_session(1, 0);
    reg.clock = &now;
    session_attach(s, &fake_outbox, &out);
    m1->expire_at = 105;
    deliver_n(s, 1, 1);                                        /* in flight */
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK); /* queued */
    ck_assert_int_eq(session_deliver(s, m2, 1, false), BK_OK); /* queued, no expiry */
    ck_assert_uint_eq(out.n, 1);
    now = 106;
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK); /* expired: not even queued */
    ck_assert_uint_eq(s->queue.count, 2);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 1), BK_OK);
    ck_assert_uint_eq(out.n, 2);
    ck_assert_ptr_eq(out.p[1].m, m2); /* the expired copy was skipped */
    ck_assert_uint_eq(s->queue.count, 0);
    m1->expire_at = 0;
}
END_TEST

START_TEST(too_large_for_client_dropped)
{
    /* the client's Maximum Packet Size: a message that cannot fit is dropped
     * as if delivered [MQTT-3.1.2-25]; one that fits goes out */
    session *s = new_session(10, 0);
    s->max_packet = 30; /* "t/1" + "one" + 21 bytes of headers = 27 */
    session_attach(s, &fake_outbox, &out);
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK);
    ck_assert_uint_eq(out.n, 1);
    s->max_packet = 26;
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK);
    ck_assert_uint_eq(out.n, 1);
    ck_assert_uint_eq(s->queue.count, 0);
}
END_TEST

/* A durable session's queued delivery that expires before its turn was
 * journaled as added: dropping it journals it as done, so that a restart
 * does not bring it back. */
START_TEST(expired_queued_delivery_journaled_done)
{
    double now = 100;
    session *s = new_session(1, 0);
    reg.clock = &now;
    reg.journal = &recording_journal;
    memset(&jl, 0, sizeof jl);
    s->durable = true;
    session_attach(s, &fake_outbox, &out);
    m1->expire_at = 105;
    ck_assert_int_eq(session_deliver(s, m2, 1, false), BK_OK); /* in flight */
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK); /* queued */
    now = 106;
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, out.p[0].pid), BK_OK);
    static const char *const want[] = {
        "add seq=1 state=1 pid=1",  /* m2 sent */
        "add seq=2 state=0 pid=0",  /* m1 queued */
        "done seq=1 state=1 pid=1", /* PUBACK */
        "done seq=2 state=0 pid=0", /* m1 expired in the queue */
    };
    expect_journal(want, 4);
    ck_assert_uint_eq(s->queue.count, 0);
    m1->expire_at = 0;
    session_destroy(s);
    jl.n = 0;
    reg.journal = NULL;
    reg.clock = NULL;
}
END_TEST

/* ---- session_filter: a session resumed by another identity ---------------------- */
static bool keep_m1(void *ctx, const msg *m)
{
    (*(int *)ctx)++;
    return m == m1;
}

/* payload / topic+payload bytes of n copies of m1 (both 3 + 3 bytes) */
#define PAYLOAD(n) (3u * (n))
#define QBYTES(n) (6u * (n))

/* m1, m2, m1, m2, ... at qos */
static void deliver_alternating(session *s, int n, uint8_t qos)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(session_deliver(s, i % 2 ? m2 : m1, qos, false), BK_OK);
}

/* every queued and unacknowledged in-flight delivery is m1, seqs rising */
static void expect_only_m1_in_order(const session *s)
{
    uint64_t seq = 0;
    for (uint32_t i = s->inflight_head; i < s->ninflight; i++) {
        const outmsg *o = &s->inflight[i];
        if (o->state != OUT_WAIT_PUBACK && o->state != OUT_WAIT_PUBREC) continue;
        ck_assert_ptr_eq(o->m, m1);
        ck_assert_uint_gt(o->seq, seq);
        seq = o->seq;
    }
    for (uint32_t i = 0; i < s->queue.count; i++) {
        const outmsg *o = &s->queue.items[(s->queue.head + i) % s->queue.cap];
        ck_assert_ptr_eq(o->m, m1);
        ck_assert_uint_gt(o->seq, seq);
        seq = o->seq;
    }
}

START_TEST(filter_queue_only)
{
    session *s = new_session(10, 100);
    deliver_alternating(s, 11, 1); /* offline: all queued, 6 x m1 */
    int calls = 0;
    ck_assert_uint_eq(session_filter(s, keep_m1, &calls), 5);
    ck_assert_int_eq(calls, 11);
    ck_assert_uint_eq(s->queue.count, 6);
    ck_assert_uint_eq(s->queued_payload, PAYLOAD(6));
    ck_assert_uint_eq(s->queued_bytes, QBYTES(6));
    expect_only_m1_in_order(s);
    ck_assert_uint_eq(s->queue.items[s->queue.head].seq, 1);
    /* what is left goes out in order, as m1 only */
    session_attach(s, &fake_outbox, &out);
    session_resend(s);
    ck_assert_uint_eq(out.n, 6);
    for (size_t i = 0; i < out.n; i++)
        ck_assert_ptr_eq(out.p[i].m, m1);
    ck_assert_uint_eq(s->queued_payload, 0);
    ck_assert_uint_eq(s->queued_bytes, 0);
    /* nothing to drop: nothing changes */
    calls = 0;
    ck_assert_uint_eq(session_filter(s, keep_m1, &calls), 0);
    ck_assert_uint_eq(s->inflight_live, 6);
}
END_TEST

/* QoS 1 at PUBACK and QoS 2 at PUBREC are dropped; a QoS 2 past PUBREC
 * (its PUBREL sent) was received by the client and stays. */
START_TEST(filter_inflight_only)
{
    session *s = new_session(10, 10);
    session_attach(s, &fake_outbox, &out);
    ck_assert_int_eq(session_deliver(s, m2, 2, false), BK_OK); /* pid 1, QoS 2 */
    ck_assert_int_eq(session_ack(s, MQTT_PUBREC, 1), BK_OK);   /* -> PUBCOMP stage */
    ck_assert_int_eq(session_deliver(s, m1, 1, false), BK_OK); /* pid 2 */
    ck_assert_int_eq(session_deliver(s, m2, 1, false), BK_OK); /* pid 3 */
    ck_assert_int_eq(session_deliver(s, m2, 2, false), BK_OK); /* pid 4, at PUBREC */
    ck_assert_int_eq(session_deliver(s, m1, 2, false), BK_OK); /* pid 5 */
    ck_assert_uint_eq(s->inflight_live, 5);
    int calls = 0;
    ck_assert_uint_eq(session_filter(s, keep_m1, &calls), 2);
    ck_assert_int_eq(calls, 4); /* the one at PUBCOMP is not even asked about */
    ck_assert_uint_eq(s->inflight_live, 3);
    ck_assert_uint_eq(s->inflight_bytes, PAYLOAD(3));
    ck_assert_uint_eq(s->queue.count, 0);
    expect_only_m1_in_order(s);
    /* the dropped ids are free, the kept ones still acknowledgeable */
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 3), BK_ERR_UNKNOWN);
    ck_assert_int_eq(session_ack(s, MQTT_PUBREC, 4), BK_ERR_UNKNOWN);
    size_t before = out.n;
    session_resend(s);
    ck_assert_uint_eq(out.n - before, 3);
    ck_assert(out.p[before].type == MQTT_PUBREL && out.p[before].pid == 1);
    ck_assert(out.p[before + 1].type == MQTT_PUBLISH && out.p[before + 1].pid == 2);
    ck_assert(out.p[before + 2].type == MQTT_PUBLISH && out.p[before + 2].pid == 5);
    ck_assert_int_eq(session_ack(s, MQTT_PUBCOMP, 1), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBACK, 2), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBREC, 5), BK_OK);
    ck_assert_int_eq(session_ack(s, MQTT_PUBCOMP, 5), BK_OK);
    ck_assert_uint_eq(s->inflight_live, 0);
    ck_assert_uint_eq(s->inflight_bytes, 0);
}
END_TEST

/* A window over 64 (pid bitmap) and a queue behind it: both filtered,
 * dropped ids free, the rest flows in order. */
START_TEST(filter_mixed_wide_window)
{
    session *s = new_session(100, 200);
    session_attach(s, &fake_outbox, &out);
    deliver_alternating(s, 150, 1); /* 100 in flight (pids 1..100), 50 queued */
    ck_assert_ptr_nonnull(s->pid_used);
    ck_assert_uint_eq(s->inflight_live, 100);
    ck_assert_uint_eq(s->queue.count, 50);
    int calls = 0;
    ck_assert_uint_eq(session_filter(s, keep_m1, &calls), 75);
    ck_assert_uint_eq(s->inflight_live, 50);
    ck_assert_uint_eq(s->inflight_bytes, PAYLOAD(50));
    ck_assert_uint_eq(s->queue.count, 25);
    ck_assert_uint_eq(s->queued_payload, PAYLOAD(25));
    ck_assert_uint_eq(s->queued_bytes, QBYTES(25));
    expect_only_m1_in_order(s);
    for (uint16_t pid = 2; pid <= 100; pid += 2) /* m2 had the even ids */
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, pid), BK_ERR_UNKNOWN);
    size_t before = out.n;
    for (uint16_t pid = 1; pid <= 99; pid += 2)
        ck_assert_int_eq(session_ack(s, MQTT_PUBACK, pid), BK_OK);
    ck_assert_uint_eq(out.n - before, 25); /* the queue pumped behind the acks */
    for (size_t i = before; i < out.n; i++)
        ck_assert_ptr_eq(out.p[i].m, m1);
    ck_assert_uint_eq(s->queue.count, 0);
    ck_assert_uint_eq(s->inflight_live, 25);
}
END_TEST

/* Every drop of a durable session is journaled as done (so a restart does
 * not bring it back); kept deliveries are not touched. */
START_TEST(filter_durable_journal)
{
    session *s = new_session(2, 10);
    reg.journal = &recording_journal;
    memset(&jl, 0, sizeof jl);
    s->durable = true;
    session_attach(s, &fake_outbox, &out);
    deliver_alternating(s, 2, 1); /* m1 pid 1, m2 pid 2 in flight */
    session_detach(s);
    deliver_alternating(s, 2, 2); /* m1 seq 3, m2 seq 4 queued */
    jl.n = 0;
    int calls = 0;
    ck_assert_uint_eq(session_filter(s, keep_m1, &calls), 2);
    static const char *const drops[] = {"done seq=2 state=1 pid=2", "done seq=4 state=0 pid=0"};
    expect_journal(drops, 2);
    ck_assert_uint_eq(s->inflight_live, 1);
    ck_assert_uint_eq(s->queue.count, 1);
    reg.journal = NULL;
}
END_TEST

int main(void)
{
    Suite *su = suite_create("session");
    TCase *tc = tcase_create("session");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, acks_in_order);
    tcase_add_test(tc, acks_out_of_order);
    tcase_add_test(tc, qos2_ack_states);
    tcase_add_test(tc, window_over_64_ids);
    tcase_add_test(tc, pid_wraparound);
    tcase_add_test(tc, window_unlimited_capped_at_65535);
    tcase_add_test(tc, redelivery_with_dup);
    tcase_add_test(tc, redelivery_keeps_retain_flag);
    tcase_add_test(tc, takeover);
    tcase_add_loop_test(tc, queue_limit_exact, 0, sizeof queue_table / sizeof queue_table[0]);
    tcase_add_test(tc, queue_unlimited);
    tcase_add_test(tc, own_queue_limits);
    tcase_add_loop_test(tc, qos_downgrade, 0, sizeof downgrade_table / sizeof downgrade_table[0]);
    tcase_add_test(tc, qos0_dropped_by_transport);
    tcase_add_test(tc, qos0_to_closing_client);
    tcase_add_test(tc, qos2_incoming_exactly_once);
    tcase_add_test(tc, subscriptions);
    tcase_add_test(tc, registry);
    tcase_add_test(tc, registry_counts_persistent);
    tcase_add_test(tc, journal_of_durable_session);
    tcase_add_test(tc, restore_deliveries);
    tcase_add_test(tc, receive_maximum_caps_window);
    tcase_add_test(tc, expired_messages_not_delivered);
    tcase_add_test(tc, too_large_for_client_dropped);
    tcase_add_test(tc, expired_queued_delivery_journaled_done);
    tcase_add_test(tc, filter_queue_only);
    tcase_add_test(tc, filter_inflight_only);
    tcase_add_test(tc, filter_mixed_wide_window);
    tcase_add_test(tc, filter_durable_journal);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
