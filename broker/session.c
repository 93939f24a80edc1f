/*
 * session.c -- MQTT sessions as a state machine (see session.h): the
 * registry, subscriptions, the outgoing QoS 1/2 window and queue, and the
 * incoming QoS 2 ids. Packets leave only through the attached outbox.
 */
#include <stdlib.h>
#include <string.h>

#include "broker/log.h"
#include "broker/session.h"

/* There are only 65535 packet ids: the window can never be wider. */
#define PID_MAX 65535
/* Smaller windows are scanned for a free id; larger ones use a bitmap. */
#define PID_BITMAP_FROM 64
/* A queue drained to empty gives back storage above this many slots. */
#define QUEUE_KEEP_CAP 64
/* Log a queue-full drop once per this many. */
#define DROP_LOG_EVERY 1000

/* ---- the journal of durable sessions ---------------------------------------- */

static bool journaled(const session *s)
{
    return s->durable && s->reg && s->reg->journal;
}

static void journal_delivery(session *s, const outmsg *o, enum journal_delivery what)
{
    if (journaled(s)) s->reg->journal->delivery(s->reg->journal_ctx, s, o, what);
}

static void journal_qos2_in(session *s, uint16_t pid, bool add)
{
    if (journaled(s)) s->reg->journal->qos2_in(s->reg->journal_ctx, s, pid, add);
}

static void journal_sub(session *s, const char *filter, size_t flen, uint8_t qos, uint32_t sub_id,
                        bool add)
{
    if (journaled(s))
        s->reg->journal->subscription(s->reg->journal_ctx, s, filter, flen, qos, sub_id, add);
}

void session_registry_init(session_registry *r, session_limits limits)
{
    dict_init(&r->ids);
    r->limits = limits;
    r->persistent = 0;
}

void session_registry_free(session_registry *r)
{
    /* collect first: destroying edits the dict being iterated */
    uint32_t it = 0;
    dict_entry *e;
    session **all = calloc(r->ids.count + 1, sizeof *all);
    size_t n = 0;
    while (all && (e = dict_next(&r->ids, &it)))
        all[n++] = e->val;
    for (size_t i = 0; i < n; i++)
        session_destroy(all[i]);
    free(all);
    dict_free(&r->ids);
}

session *session_find(session_registry *r, const char *id, size_t len)
{
    return dict_get(&r->ids, id, len);
}

session *session_create(session_registry *r, const char *id, size_t len, bool clean)
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
    s->reg = r;
    s->clean = clean;
    s->next_pid = 1;
    s->next_seq = 1;
    s->listener = -1;
    if (dict_put(&r->ids, s->client_id, len, s) < 0) {
        free(s->client_id);
        free(s);
        return NULL;
    }
    r->persistent += !clean;
    return s;
}

void session_set_clean(session *s, bool clean)
{
    if (s->reg && s->clean != clean) {
        if (clean)
            s->reg->persistent--;
        else
            s->reg->persistent++;
    }
    s->clean = clean;
}

static outmsg *queue_at(outqueue *q, uint32_t i)
{
    return &q->items[(q->head + i) % q->cap];
}

void session_destroy(session *s)
{
    if (!s) return;
    if (journaled(s)) s->reg->journal->destroyed(s->reg->journal_ctx, s);
    session_unsubscribe_all(s);
    for (uint32_t i = s->inflight_head; i < s->ninflight; i++)
        msg_unref(s->inflight[i].m);
    for (uint32_t i = 0; i < s->queue.count; i++)
        msg_unref(queue_at(&s->queue, i)->m);
    free(s->inflight);
    free(s->pid_used);
    free(s->queue.items);
    free(s->qos2_in);
    if (s->reg) {
        dict_del(&s->reg->ids, s->client_id, s->client_id_len);
        s->reg->persistent -= !s->clean;
    }
    free(s->client_id);
    free(s->username);
    free(s);
}

void session_attach(session *s, const session_outbox *out, void *ctx)
{
    s->out = out;
    s->out_ctx = ctx;
}

void session_detach(session *s)
{
    s->out = NULL;
    s->out_ctx = NULL;
}

bool session_online(const session *s)
{
    return s->out && s->out->ready(s->out_ctx);
}

static bool window_open(const session *s)
{
    uint32_t max = s->reg->limits.max_inflight; /* 0 means "unlimited" */
    if (max == 0 || max > PID_MAX) max = PID_MAX;
    if (s->send_max && s->send_max < max) max = s->send_max; /* MQTT 5 flow control */
    uint64_t maxb = s->reg->limits.max_inflight_bytes;       /* 0 means "unlimited" */
    return s->inflight_live < max && (maxb == 0 || s->inflight_bytes < maxb);
}

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
        s->pid_used = calloc((PID_MAX + 1) / 8, 1);
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

uint16_t session_next_pid(session *s)
{
    return next_pid(s);
}

/* Room for one more inflight slot: squeeze out acked slots or grow. */
static int inflight_room(session *s)
{
    if (s->ninflight == s->cap_inflight && s->inflight_live * 2 <= s->cap_inflight) {
        /* full of acked slots: squeeze them out (in order) instead of growing */
        uint32_t j = 0;
        for (uint32_t i = s->inflight_head; i < s->ninflight; i++)
            if (s->inflight[i].state) s->inflight[j++] = s->inflight[i];
        s->inflight_head = 0;
        s->ninflight = j;
    }
    if (s->ninflight < s->cap_inflight) return BK_OK;
    uint32_t ncap = s->cap_inflight ? s->cap_inflight * 2 : 4;
    outmsg *n = realloc(s->inflight, ncap * sizeof *n);
    if (!n) return BK_ERR_NOMEM;
    s->inflight = n;
    s->cap_inflight = ncap;
    return BK_OK;
}

/* Put a delivery into the inflight window (taking the caller's reference)
 * and send it. seq 0: a new delivery (journaled as added), else one that
 * waited in the queue (journaled as sent). */
static int send_inflight(session *s, msg *m, uint8_t qos, bool retain, uint64_t seq)
{
    if (inflight_room(s) != BK_OK) {
        msg_unref(m);
        return BK_ERR_NOMEM;
    }
    uint16_t pid = next_pid(s); /* before the new slot exists: the scans see only live ones */
    outmsg *o = &s->inflight[s->ninflight++];
    *o = (outmsg){
        .m = m,
        .seq = seq ? seq : s->next_seq++,
        .pid = pid,
        .qos = qos,
        .state = qos == 1 ? OUT_WAIT_PUBACK : OUT_WAIT_PUBREC,
        .retain = retain,
    };
    s->inflight_live++;
    s->inflight_bytes += m->payload_len;
    pid_mark(s, pid, true);
    journal_delivery(s, o, seq ? JD_UPDATE : JD_ADD);
    /* a failed send closes the connection; the slot stays for redelivery */
    (void)s->out->publish(s->out_ctx, m, qos, retain, false, pid);
    return BK_OK;
}

static int queue_grow(outqueue *q)
{
    uint32_t ncap = q->cap ? q->cap * 2 : 8;
    outmsg *n = malloc(ncap * sizeof *n);
    if (!n) return BK_ERR_NOMEM;
    for (uint32_t i = 0; i < q->count; i++)
        n[i] = *queue_at(q, i);
    free(q->items);
    q->items = n;
    q->cap = ncap;
    q->head = 0;
    return BK_OK;
}

bool session_queue_full(const session *s, uint8_t qos)
{
    uint32_t max = s->own_max_queued ? s->own_max_queued : s->reg->limits.max_queued;
    uint64_t maxb = s->reg->limits.max_queued_bytes;
    return qos == 0 || (max && s->queue.count >= max) || (maxb && s->queued_payload >= maxb) ||
           (s->own_max_bytes && s->queued_bytes >= s->own_max_bytes);
}

static int queue_push(session *s, msg *m, uint8_t qos, bool retain)
{
    outqueue *q = &s->queue;
    uint64_t maxb = s->reg->limits.max_queued_bytes;
    if (session_queue_full(s, qos) || (maxb && s->queued_payload + m->payload_len > maxb)) {
        s->reg->dropped++;
        if (s->dropped++ % DROP_LOG_EVERY == 0)
            log_limited(LL_WARNING,
                        "Client %s: queue full (max_queued_messages %u, max_queued_bytes %llu), "
                        "dropping messages (%llu so far)",
                        log_esc(s->client_id), s->reg->limits.max_queued, (unsigned long long)maxb,
                        (unsigned long long)s->dropped);
        return BK_ERR_FULL;
    }
    if (q->count == q->cap && queue_grow(q) != BK_OK) return BK_ERR_NOMEM;
    outmsg *o = queue_at(q, q->count++);
    *o = (outmsg){.m = msg_ref(m), .seq = s->next_seq++, .qos = qos, .retain = retain};
    s->queued_payload += m->payload_len;
    journal_delivery(s, o, JD_ADD);
    s->queued_bytes += (uint64_t)m->topic_len + m->payload_len;
    return BK_OK;
}

/* MQTT 5: expired (3.3.2.3.3) or larger than the client allows
 * [MQTT-3.1.2-25]: dropped as if delivered. */
static bool undeliverable_slow(const session *s, const msg *m)
{
    if (m->expire_at > 0 && s->reg->clock && msg_expired(m, *s->reg->clock)) return true;
    /* fixed header 5, topic 2, id 2, properties: length 4, expiry 5,
     * alias 3, subscription ids 5 each */
    return s->max_packet &&
           (uint64_t)m->topic_len + m->props_len + m->payload_len + 21 + 5ull * s->nsub_ids >
               s->max_packet;
}

static inline bool undeliverable(const session *s, const msg *m)
{
    return (s->max_packet || m->expire_at > 0) && undeliverable_slow(s, m);
}

int session_deliver(session *s, msg *m, uint8_t max_qos, bool retain)
{
    uint8_t qos = m->qos < max_qos ? m->qos : max_qos;
    if (qos == 0) {
        /* QoS 0 is never queued for an offline client (Mosquitto's default);
         * a closing connection's publish refuses it (BK_ERR_CLOSED) */
        if (!s->out) return BK_OK;
        return s->out->publish(s->out_ctx, m, 0, retain, false, 0);
    }
    /* (QoS 0 goes out now: the outbox drops what is too large; only retained
     * messages can be old, and the retained walk skips expired ones) */
    if (undeliverable(s, m)) return BK_OK;
    if (session_online(s) && s->queue.count == 0 && window_open(s))
        return send_inflight(s, msg_ref(m), qos, retain, 0);
    return queue_push(s, m, qos, retain);
}

void session_pump(session *s)
{
    outqueue *q = &s->queue;
    while (q->count && session_online(s) && window_open(s)) {
        outmsg o = *queue_at(q, 0);
        q->head = (q->head + 1) % q->cap;
        q->count--;
        s->queued_payload -= o.m->payload_len;
        s->queued_bytes -= (uint64_t)o.m->topic_len + o.m->payload_len;
        if (undeliverable(s, o.m)) {
            journal_delivery(s, &o, JD_DONE); /* journaled when it was queued */
            msg_unref(o.m);
            continue;
        }
        if (send_inflight(s, o.m, o.qos, o.retain, o.seq) != BK_OK) break;
    }
    if (q->count == 0 && q->cap > QUEUE_KEEP_CAP) {
        free(q->items);
        q->items = NULL;
        q->cap = 0;
        q->head = 0;
    }
}

void session_resend(session *s)
{
    /* [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (DUP) and PUBREL, in order */
    for (uint32_t i = s->inflight_head; i < s->ninflight && session_online(s); i++) {
        outmsg *o = &s->inflight[i];
        if (!o->state) continue;
        if (o->state == OUT_WAIT_PUBCOMP)
            (void)s->out->ack(s->out_ctx, MQTT_PUBREL, o->pid);
        else
            (void)s->out->publish(s->out_ctx, o->m, o->qos, o->retain, true, o->pid);
    }
    session_pump(s);
}

/* Index of pid's live inflight slot, or -1 when it has none. */
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
    s->inflight_bytes -= s->inflight[i].m->payload_len;
    msg_unref(s->inflight[i].m);
    s->inflight[i].m = NULL;
    s->inflight[i].state = 0;
    s->inflight_live--;
    while (s->inflight_head < s->ninflight && !s->inflight[s->inflight_head].state)
        s->inflight_head++;
    if (s->inflight_head == s->ninflight) s->inflight_head = s->ninflight = 0;
}

int session_ack(session *s, enum mqtt_type type, uint16_t pid)
{
    int i = find_inflight(s, pid);
    if (i < 0) return BK_ERR_UNKNOWN;
    uint8_t state = s->inflight[i].state;
    switch (type) {
    case MQTT_PUBACK:
    case MQTT_PUBCOMP:
        if (state != (type == MQTT_PUBACK ? OUT_WAIT_PUBACK : OUT_WAIT_PUBCOMP))
            return BK_ERR_STATE;
        journal_delivery(s, &s->inflight[i], JD_DONE);
        remove_inflight(s, i);
        session_pump(s);
        return BK_OK;
    case MQTT_PUBREC:
        if (state == OUT_WAIT_PUBREC) {
            /* the message itself is no longer needed: only its id is */
            s->inflight[i].state = OUT_WAIT_PUBCOMP;
            journal_delivery(s, &s->inflight[i], JD_UPDATE);
        } else if (state != OUT_WAIT_PUBCOMP) {
            return BK_ERR_STATE;
        }
        if (session_online(s)) (void)s->out->ack(s->out_ctx, MQTT_PUBREL, pid);
        return BK_OK;
    default:
        return BK_ERR_STATE;
    }
}

static size_t filter_queue(session *s, bool (*keep)(void *ctx, const msg *m), void *ctx)
{
    outqueue *q = &s->queue;
    uint32_t j = 0, n = q->count;
    for (uint32_t i = 0; i < n; i++) {
        outmsg o = *queue_at(q, i);
        if (keep(ctx, o.m)) {
            *queue_at(q, j++) = o; /* j <= i: order kept, nothing overwritten unread */
            continue;
        }
        s->queued_payload -= o.m->payload_len;
        s->queued_bytes -= (uint64_t)o.m->topic_len + o.m->payload_len;
        journal_delivery(s, &o, JD_DONE); /* journaled when it was queued */
        msg_unref(o.m);
    }
    q->count = j;
    return n - j;
}

static size_t filter_inflight(session *s, bool (*keep)(void *ctx, const msg *m), void *ctx)
{
    size_t dropped = 0;
    /* remove_inflight may move head and reset ninflight to 0: the bound is re-read */
    for (uint32_t i = s->inflight_head; i < s->ninflight; i++) {
        outmsg *o = &s->inflight[i];
        if (o->state != OUT_WAIT_PUBACK && o->state != OUT_WAIT_PUBREC) continue;
        if (keep(ctx, o->m)) continue;
        journal_delivery(s, o, JD_DONE);
        remove_inflight(s, (int)i);
        dropped++;
    }
    return dropped;
}

size_t session_filter(session *s, bool (*keep)(void *ctx, const msg *m), void *ctx)
{
    return filter_inflight(s, keep, ctx) + filter_queue(s, keep, ctx);
}

int session_restore_delivery(session *s, msg *m, uint64_t seq, uint8_t qos, bool retain,
                             uint8_t state, uint16_t pid)
{
    if (seq >= s->next_seq) s->next_seq = seq + 1;
    if (state == 0) {
        outqueue *q = &s->queue;
        if (q->count == q->cap && queue_grow(q) != BK_OK) return BK_ERR_NOMEM;
        *queue_at(q, q->count++) =
            (outmsg){.m = msg_ref(m), .seq = seq, .qos = qos, .retain = retain};
        s->queued_payload += m->payload_len;
        s->queued_bytes += (uint64_t)m->topic_len + m->payload_len;
        return BK_OK;
    }
    if (inflight_room(s) != BK_OK) return BK_ERR_NOMEM;
    s->inflight[s->ninflight++] = (outmsg){
        .m = msg_ref(m), .seq = seq, .pid = pid, .qos = qos, .state = state, .retain = retain};
    s->inflight_live++;
    s->inflight_bytes += m->payload_len;
    pid_mark(s, pid, true);
    if (pid >= s->next_pid) s->next_pid = pid == PID_MAX ? 1 : (uint16_t)(pid + 1);
    return BK_OK;
}

bool session_qos2_in_has(const session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->nqos2_in; i++)
        if (s->qos2_in[i] == pid) return true;
    return false;
}

int session_qos2_in_add(session *s, uint16_t pid)
{
    if (session_qos2_in_has(s, pid)) return BK_OK;
    if (s->nqos2_in == s->cap_qos2_in) {
        uint32_t ncap = s->cap_qos2_in ? s->cap_qos2_in * 2 : 4;
        uint16_t *n = realloc(s->qos2_in, ncap * sizeof *n);
        if (!n) return BK_ERR_NOMEM;
        s->qos2_in = n;
        s->cap_qos2_in = ncap;
    }
    s->qos2_in[s->nqos2_in++] = pid;
    journal_qos2_in(s, pid, true);
    return BK_OK;
}

bool session_qos2_in_del(session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->nqos2_in; i++) {
        if (s->qos2_in[i] == pid) {
            s->qos2_in[i] = s->qos2_in[--s->nqos2_in];
            journal_qos2_in(s, pid, false);
            return true;
        }
    }
    return false;
}

/* ---- subscriptions ------------------------------------------------------- */

int session_subscribe(session *s, tnode *root, const char *filter, size_t flen, uint8_t qos,
                      sub_rec **rec)
{
    sub_rec *r = dict_get(&s->subs_by_filter, filter, flen);
    if (r) {
        /* [MQTT-3.8.4-3]: replace the existing subscription's QoS */
        if (r->qos != qos) journal_sub(s, filter, flen, qos, r->sub_id, true);
        r->qos = qos;
        tree_set_qos(&r->where, qos);
        *rec = r;
        return BK_OK;
    }
    r = calloc(1, sizeof *r + flen + 1);
    if (!r) return BK_ERR_NOMEM;
    memcpy(r->filter, filter, flen);
    r->filter[flen] = 0;
    r->filter_len = (uint16_t)flen;
    r->qos = qos;
    if (dict_put(&s->subs_by_filter, r->filter, flen, r) < 0) {
        free(r);
        return BK_ERR_NOMEM;
    }
    if (tree_add(root, filter, flen, s, &r->where, qos) != BK_OK) {
        dict_del(&s->subs_by_filter, r->filter, flen);
        free(r);
        return BK_ERR_NOMEM;
    }
    r->next = s->subs;
    if (s->subs) s->subs->prev = r;
    s->subs = r;
    s->nsubs++;
    *rec = r;
    journal_sub(s, filter, flen, qos, 0, true);
    return BK_OK;
}

int session_unsubscribe(session *s, const char *filter, size_t flen)
{
    sub_rec *r = dict_del(&s->subs_by_filter, filter, flen);
    if (!r) return BK_ERR_UNKNOWN;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->subs = r->next;
    if (r->next) r->next->prev = r->prev;
    s->nsubs--;
    tree_remove(&r->where);
    journal_sub(s, filter, flen, 0, 0, false);
    free(r);
    return BK_OK;
}

void session_journal_subscription(session *s, const char *filter, size_t flen, uint8_t qos,
                                  uint32_t sub_id, bool add)
{
    journal_sub(s, filter, flen, qos, sub_id, add);
}

void session_set_sub_id(session *s, sub_rec *r, uint32_t sub_id)
{
    if (r->sub_id == sub_id) return;
    if (r->sub_id && !sub_id) s->nsub_ids--;
    if (!r->sub_id && sub_id) s->nsub_ids++;
    r->sub_id = sub_id;
    journal_sub(s, r->filter, r->filter_len, r->qos, sub_id, true);
}

void session_unsubscribe_all(session *s)
{
    while (s->subs) {
        sub_rec *r = s->subs;
        s->subs = r->next;
        tree_remove(&r->where);
        free(r);
    }
    s->nsubs = 0;
    dict_free(&s->subs_by_filter);
}
