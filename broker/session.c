/*
 * session.c -- MQTT sessions: the registry (client id -> session), the
 * outgoing QoS 1/2 window (inflight, bounded by max_inflight_messages), the
 * queue behind it (bounded by max_queued_messages) and the incoming QoS 2
 * packet ids that wait for PUBREL (exactly-once on receipt).
 */
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/log.h"
#include "mqtt/mqtt.h"

session *session_find(broker *b, const char *id, size_t len)
{
    return dict_get(&b->sessions, id, len);
}

session *session_create(broker *b, const char *id, size_t len, bool clean)
{
    session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->client_id = malloc(len + 1);
    if (!s->client_id) {
        free(s);
        return NULL;
    }
    memcpy(s->client_id, id, len);
    s->client_id[len] = 0;
    s->client_id_len = (uint16_t)len;
    s->clean = clean;
    s->next_pid = 1;
    if (dict_put(&b->sessions, s->client_id, len, s) < 0) {
        free(s->client_id);
        free(s);
        return NULL;
    }
    return s;
}

static outmsg *queue_at(outqueue *q, uint32_t i)
{
    return &q->items[(q->head + i) % q->cap];
}

void session_destroy(broker *b, session *s)
{
    if (!s) return;
    tree_unsubscribe_all(b, s);
    for (uint32_t i = s->inflight_head; i < s->ninflight; i++)
        msg_unref(s->inflight[i].m);
    for (uint32_t i = 0; i < s->queue.count; i++)
        msg_unref(queue_at(&s->queue, i)->m);
    free(s->inflight);
    free(s->pid_used);
    free(s->queue.items);
    free(s->qos2_in);
    dict_del(&b->sessions, s->client_id, s->client_id_len);
    free(s->client_id);
    free(s->username);
    free(s);
}

static bool online(const session *s)
{
    return s->conn && s->conn->state == CS_ACTIVE;
}

static bool window_open(broker *b, const session *s)
{
    /* 0 means "unlimited", but there are only 65535 packet ids */
    uint32_t max = b->cfg->max_inflight_messages;
    if (max == 0 || max > 65535) max = 65535;
    return s->inflight_live < max;
}

#define PID_BITMAP_FROM 64 /* smaller windows are scanned; larger ones use a bitmap */

static bool pid_in_use(const session *s, uint16_t pid)
{
    if (s->pid_used) return (s->pid_used[pid >> 3] >> (pid & 7)) & 1;
    for (uint32_t i = s->inflight_head; i < s->ninflight; i++)
        if (s->inflight[i].state && s->inflight[i].pid == pid) return true;
    return false;
}

static void pid_mark(session *s, uint16_t pid, bool used)
{
    if (!s->pid_used && used && s->inflight_live >= PID_BITMAP_FROM) {
        s->pid_used = calloc(65536 / 8, 1);
        if (s->pid_used)
            for (uint32_t i = s->inflight_head; i < s->ninflight; i++)
                if (s->inflight[i].state)
                    s->pid_used[s->inflight[i].pid >> 3] |=
                        (uint8_t)(1u << (s->inflight[i].pid & 7));
    }
    if (!s->pid_used) return;
    if (used)
        s->pid_used[pid >> 3] |= (uint8_t)(1u << (pid & 7));
    else
        s->pid_used[pid >> 3] &= (uint8_t) ~(1u << (pid & 7));
}

static uint16_t next_pid(session *s)
{
    for (;;) {
        uint16_t pid = s->next_pid++;
        if (s->next_pid == 0) s->next_pid = 1;
        if (pid != 0 && !pid_in_use(s, pid)) return pid;
    }
}

/* Put a delivery into the inflight window and send it. */
static void send_inflight(broker *b, session *s, msg *m, uint8_t qos, bool retain)
{
    if (s->ninflight == s->cap_inflight && s->inflight_live * 2 <= s->cap_inflight) {
        /* full of acked slots: squeeze them out (in order) instead of growing */
        uint32_t j = 0;
        for (uint32_t i = s->inflight_head; i < s->ninflight; i++)
            if (s->inflight[i].state) s->inflight[j++] = s->inflight[i];
        s->inflight_head = 0;
        s->ninflight = j;
    }
    if (s->ninflight == s->cap_inflight) {
        uint32_t ncap = s->cap_inflight ? s->cap_inflight * 2 : 4;
        outmsg *n = realloc(s->inflight, ncap * sizeof *n);
        if (!n) {
            msg_unref(m);
            return;
        }
        s->inflight = n;
        s->cap_inflight = ncap;
    }
    uint16_t pid = next_pid(s); /* before the new slot exists: the scans see only live ones */
    s->inflight[s->ninflight++] = (outmsg){
        .m = m, /* takes the caller's reference */
        .pid = pid,
        .qos = qos,
        .state = qos == 1 ? OUT_WAIT_PUBACK : OUT_WAIT_PUBREC,
        .retain = retain,
    };
    s->inflight_live++;
    pid_mark(s, pid, true);
    conn_send_publish(b, s->conn, m, qos, retain, false, pid);
}

static int queue_push(broker *b, session *s, msg *m, uint8_t qos, bool retain)
{
    outqueue *q = &s->queue;
    uint32_t max = b->cfg->max_queued_messages;
    if (max && q->count >= max) {
        if (s->dropped++ % 1000 == 0)
            log_limited(LL_WARNING,
                        "Client %s: queue full (max_queued_messages %u), dropping "
                        "messages (%llu so far)",
                        log_esc(s->client_id), max, (unsigned long long)s->dropped);
        return -1;
    }
    if (q->count == q->cap) {
        uint32_t ncap = q->cap ? q->cap * 2 : 8;
        outmsg *n = malloc(ncap * sizeof *n);
        if (!n) return -1;
        for (uint32_t i = 0; i < q->count; i++)
            n[i] = *queue_at(q, i);
        free(q->items);
        q->items = n;
        q->cap = ncap;
        q->head = 0;
    }
    outmsg *o = queue_at(q, q->count++);
    o->m = msg_ref(m);
    o->qos = qos;
    o->retain = retain;
    o->pid = 0;
    o->state = 0;
    return 0;
}

void session_deliver(broker *b, session *s, msg *m, uint8_t qos, bool retain)
{
    if (qos == 0) {
        /* QoS 0 is never queued for an offline client (Mosquitto's default) */
        if (online(s)) conn_send_publish(b, s->conn, m, 0, retain, false, 0);
        return;
    }
    if (online(s) && s->queue.count == 0 && window_open(b, s)) {
        send_inflight(b, s, msg_ref(m), qos, retain);
        return;
    }
    queue_push(b, s, m, qos, retain);
}

void session_pump(broker *b, session *s)
{
    outqueue *q = &s->queue;
    while (q->count && online(s) && window_open(b, s)) {
        outmsg o = *queue_at(q, 0);
        q->head = (q->head + 1) % q->cap;
        q->count--;
        send_inflight(b, s, o.m, o.qos, o.retain);
    }
    if (q->count == 0 && q->cap > 64) {
        free(q->items);
        q->items = NULL;
        q->cap = 0;
        q->head = 0;
    }
}

void session_resend(broker *b, session *s)
{
    /* [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (DUP) and PUBREL, in order */
    for (uint32_t i = s->inflight_head; i < s->ninflight && online(s); i++) {
        outmsg *o = &s->inflight[i];
        if (!o->state) continue;
        if (o->state == OUT_WAIT_PUBCOMP)
            conn_send_ack(b, s->conn, MQTT_PUBREL, o->pid);
        else
            conn_send_publish(b, s->conn, o->m, o->qos, o->retain, true, o->pid);
    }
    session_pump(b, s);
}

static int find_inflight(const session *s, uint16_t pid)
{
    if (s->pid_used && !pid_in_use(s, pid)) return -1;
    /* acks mostly come in order, so the match is usually at the head */
    for (uint32_t i = s->inflight_head; i < s->ninflight; i++)
        if (s->inflight[i].state && s->inflight[i].pid == pid) return (int)i;
    return -1;
}

static void remove_inflight(session *s, int i)
{
    pid_mark(s, s->inflight[i].pid, false);
    msg_unref(s->inflight[i].m);
    s->inflight[i].m = NULL;
    s->inflight[i].state = 0;
    s->inflight_live--;
    while (s->inflight_head < s->ninflight && !s->inflight[s->inflight_head].state)
        s->inflight_head++;
    if (s->inflight_head == s->ninflight) s->inflight_head = s->ninflight = 0;
}

int session_ack(broker *b, session *s, int type, uint16_t pid)
{
    int i = find_inflight(s, pid);
    switch (type) {
    case MQTT_PUBACK:
        if (i < 0 || s->inflight[i].state != OUT_WAIT_PUBACK) return -1;
        remove_inflight(s, i);
        session_pump(b, s);
        return 0;
    case MQTT_PUBREC:
        if (i < 0) return -1;
        if (s->inflight[i].state == OUT_WAIT_PUBREC) {
            /* the message itself is no longer needed: only its id is */
            s->inflight[i].state = OUT_WAIT_PUBCOMP;
        } else if (s->inflight[i].state != OUT_WAIT_PUBCOMP) {
            return -1;
        }
        conn_send_ack(b, s->conn, MQTT_PUBREL, pid);
        return 0;
    case MQTT_PUBCOMP:
        if (i < 0 || s->inflight[i].state != OUT_WAIT_PUBCOMP) return -1;
        remove_inflight(s, i);
        session_pump(b, s);
        return 0;
    }
    return -1;
}

bool session_qos2_in_has(session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->nqos2_in; i++)
        if (s->qos2_in[i] == pid) return true;
    return false;
}

int session_qos2_in_add(session *s, uint16_t pid)
{
    if (session_qos2_in_has(s, pid)) return 0;
    if (s->nqos2_in == s->cap_qos2_in) {
        uint32_t ncap = s->cap_qos2_in ? s->cap_qos2_in * 2 : 4;
        uint16_t *n = realloc(s->qos2_in, ncap * sizeof *n);
        if (!n) return -1;
        s->qos2_in = n;
        s->cap_qos2_in = ncap;
    }
    s->qos2_in[s->nqos2_in++] = pid;
    return 0;
}

bool session_qos2_in_del(session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->nqos2_in; i++) {
        if (s->qos2_in[i] == pid) {
            s->qos2_in[i] = s->qos2_in[--s->nqos2_in];
            return true;
        }
    }
    return false;
}
