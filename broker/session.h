/*
 * session.h -- an MQTT session as a state machine that needs no socket:
 * the registry (client id -> session), the subscriptions, the outgoing
 * QoS 1/2 window (inflight, bounded by max_inflight_messages, packet ids
 * with a bitmap for windows over 64), the queue behind it (bounded by
 * max_queued_messages) and the incoming QoS 2 packet ids that wait for
 * PUBREL (exactly-once on receipt).
 *
 * A session sends through an outbox (a function table + context) attached
 * while its client is connected; the protocol layer provides it, unit tests
 * provide a recording one.
 *
 * Ownership: a session owns its client id, username, subscription records,
 * inflight and queued deliveries (one msg reference each) and the incoming
 * QoS 2 ids. It does not own its outbox context.
 */
#ifndef SECBROKER_SESSION_H
#define SECBROKER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/dict.h"
#include "broker/err.h"
#include "broker/msg.h"
#include "broker/tree.h"
#include "mqtt/mqtt.h"

/* What a session emits. ctx is the one given to session_attach. */
typedef struct session_outbox {
    /* May packets go out now? (false while the connection is closing) */
    bool (*ready)(void *ctx);
    /* One PUBLISH. BK_OK; BK_ERR_FULL when a QoS 0 copy was dropped (output
     * over its limit); BK_ERR_CLOSED when not ready (closing) or failed. */
    int (*publish)(void *ctx, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid);
    /* One acknowledgement packet (the session sends PUBREL). */
    int (*ack)(void *ctx, enum mqtt_type type, uint16_t pid);
} session_outbox;

typedef struct {
    uint32_t max_inflight;       /* 0 = unlimited (up to the 65535 packet ids) */
    uint32_t max_queued;         /* 0 = unlimited */
    uint64_t max_inflight_bytes; /* payload bytes in the window, 0 = unlimited */
    uint64_t max_queued_bytes;   /* payload bytes queued, 0 = unlimited */
} session_limits;

struct session;
struct outmsg;

/* What happens to a QoS 1/2 delivery of a durable session. */
enum journal_delivery {
    JD_ADD,    /* accepted: queued (pid 0) or sent at once */
    JD_UPDATE, /* sent (pid assigned) or PUBREL sent: o->state says which */
    JD_DONE,   /* acknowledged (PUBACK / PUBCOMP): forget it */
};

/* Where a durable session records its changes (persistence; NULL when off).
 * Called right after the in-memory change, only for sessions marked
 * durable; ctx is the registry's journal_ctx. */
typedef struct session_journal {
    void (*delivery)(void *ctx, struct session *s, const struct outmsg *o,
                     enum journal_delivery what);
    void (*qos2_in)(void *ctx, struct session *s, uint16_t pid, bool add);
    void (*subscription)(void *ctx, struct session *s, const char *filter, size_t flen, uint8_t qos,
                         uint32_t sub_id, bool add);
    /* the session is going away (destroyed, not merely offline) */
    void (*destroyed)(void *ctx, struct session *s);
} session_journal;

typedef struct session_registry {
    dict ids; /* client id -> session */
    session_limits limits;
    uint64_t dropped;               /* messages dropped by full queues, all sessions ($SYS) */
    const session_journal *journal; /* NULL: nothing is durable */
    void *journal_ctx;
    const double *clock; /* monotonic seconds (broker->now) for message expiry; NULL = none */
    uint32_t persistent; /* sessions not clean (they outlive their connection) */
} session_registry;

typedef struct sub_rec {
    struct sub_rec *next, *prev;
    uint64_t retained_stamp; /* SUBSCRIBE that last sent this filter's retained */
    tree_sub where;          /* the tree's entry for it */
    uint32_t sub_id;         /* MQTT 5 Subscription Identifier, 0 = none */
    uint8_t qos;             /* QoS | SUBOPT_NO_LOCAL | SUBOPT_RAP (tree.h) */
    uint16_t filter_len;
    char filter[]; /* NUL-terminated */
} sub_rec;

enum out_state {
    OUT_WAIT_PUBACK = 1, /* QoS 1 sent */
    OUT_WAIT_PUBREC,     /* QoS 2 PUBLISH sent */
    OUT_WAIT_PUBCOMP,    /* QoS 2 PUBREL sent */
};

typedef struct outmsg {
    msg *m;
    uint64_t seq; /* order within the session (durable sessions: the store's key) */
    uint16_t pid;
    uint8_t qos;
    uint8_t state; /* enum out_state; 0 = acked (or queued) */
    bool retain;   /* retain flag to send with */
} outmsg;

typedef struct { /* ring buffer of deliveries waiting for a slot */
    outmsg *items;
    uint32_t head, count, cap;
} outqueue;

typedef struct session {
    session_registry *reg;
    char *client_id; /* owned; dict key */
    uint16_t client_id_len;
    const session_outbox *out; /* NULL while offline */
    void *out_ctx;             /* the protocol's client while attached */
    char *username;            /* owned; for ACL checks while offline */
    bool clean;                /* ends when its client disconnects (expiry 0) */
    bool durable;              /* its state is journaled (persistence on, expiry > 0) */
    uint32_t expiry_interval;  /* seconds after disconnect; 0xFFFFFFFF = never */
    double expires_at;         /* monotonic; set while offline with an interval */
    uint64_t next_seq;         /* seq of the next delivery */
    uint16_t send_max;         /* the client's Receive Maximum, 0 = none (MQTT 5) */
    uint32_t max_packet;       /* the client's Maximum Packet Size, 0 = none (MQTT 5) */
    uint32_t nsub_ids;         /* subscriptions with a Subscription Identifier */
    bool no_local;             /* a bridge's session: what it published is not sent back to it */
    bool pinned;               /* held by one of our bridges: clients may not take it over */
    int16_t listener; /* broker.listeners index of its last connection, -1: none yet (its ACL
                         with per_listener_settings true) */
    sub_rec *subs;
    uint32_t nsubs;
    dict subs_by_filter; /* filter -> sub_rec (keys point into the rec) */
    outmsg *inflight;    /* slots [inflight_head, ninflight); state 0 = acked */
    uint32_t inflight_head, ninflight, cap_inflight;
    uint32_t inflight_live; /* slots still waiting: what max_inflight bounds */
    outqueue queue;
    uint16_t *qos2_in; /* incoming QoS 2 packet ids awaiting PUBREL */
    uint32_t nqos2_in, cap_qos2_in;
    uint16_t next_pid;
    uint8_t *pid_used;    /* bitmap of inflight ids, only for windows > 64 */
    uint64_t match_stamp; /* router: dedup of overlapping subscriptions */
    uint8_t match_qos;
    uint64_t dropped; /* messages dropped because the queue was full */
    /* a bridge's own queue limits (0 = the registry's max_queued / no byte
     * limit) and the topic + payload bytes queued */
    uint32_t own_max_queued;
    uint64_t own_max_bytes, queued_bytes;
    uint64_t queued_payload,
        inflight_bytes;   /* payload bytes (max_queued_bytes, max_inflight_bytes) */
    double offline_since; /* persistent_client_expiration: when first seen offline, 0 = online */
} session;

void session_registry_init(session_registry *r, session_limits limits);
/* Destroys every session (their outboxes must be detached or gone). */
void session_registry_free(session_registry *r);
session *session_find(session_registry *r, const char *id, size_t len);
/* A new offline session registered under id, or NULL when out of memory. */
session *session_create(session_registry *r, const char *id, size_t len, bool clean) BK_MUST_CHECK;
/* Unregister and free s with its subscriptions and deliveries. */
void session_destroy(session *s);
/* Whether s ends with its connection; keeps the registry's count of
 * persistent sessions. */
void session_set_clean(session *s, bool clean);

/* Connect s to its client's outbox / disconnect it (deliveries then queue). */
void session_attach(session *s, const session_outbox *out, void *ctx);
void session_detach(session *s);
bool session_online(const session *s);

/* Deliver m at the lower of m->qos and max_qos. QoS 0 goes out at once (or
 * nowhere while offline); QoS 1/2 enter the window or wait in the queue.
 * BK_OK, BK_ERR_FULL (queue at max_queued: dropped and counted),
 * BK_ERR_NOMEM. */
int session_deliver(session *s, msg *m, uint8_t max_qos, bool retain);
/* Send what fits in the inflight window from the queue. */
void session_pump(session *s);
/* On reconnect: resend inflight (DUP) and PUBRELs, in order, then pump. */
void session_resend(session *s);
/* PUBACK, PUBREC or PUBCOMP from the client. BK_OK, BK_ERR_UNKNOWN (no such
 * id in flight) or BK_ERR_STATE (an ack that does not fit its state). */
int session_ack(session *s, enum mqtt_type type, uint16_t pid);
/* Would every further QoS qos delivery be dropped while the output is over
 * its soft limit? (true for QoS 0, and for QoS 1/2 when the queue is full) */
bool session_queue_full(const session *s, uint8_t qos);

/* Keep only the deliveries keep() accepts: every queued one and every one
 * in flight whose PUBLISH the client has not acknowledged (QoS 1 waiting
 * for PUBACK, QoS 2 waiting for PUBREC); a QoS 2 at the PUBREL stage has
 * been received and stays. Dropped ones free their packet ids and byte
 * counts and are journaled as done; kept ones keep their order. Sends
 * nothing. Returns the number dropped. (Used when a session is resumed
 * by another identity: what the old one was allowed to read.) */
size_t session_filter(session *s, bool (*keep)(void *ctx, const msg *m), void *ctx);

/* Put back a delivery read from the durable store (no journaling): with
 * state 0 it waits in the queue, else it is in flight with pid. Takes a
 * reference of m. Deliveries must come in seq order. BK_OK / BK_ERR_NOMEM. */
int session_restore_delivery(session *s, msg *m, uint64_t seq, uint8_t qos, bool retain,
                             uint8_t state, uint16_t pid) BK_MUST_CHECK;

/* A packet id no PUBLISH of s has in flight, taken from its counter (so it
 * comes round again only after 65,535 more): for a SUBSCRIBE or UNSUBSCRIBE
 * a bridge sends in the same session [MQTT-2.3.1-2]. */
uint16_t session_next_pid(session *s);

/* Incoming QoS 2: has/remember/forget an id awaiting PUBREL. */
bool session_qos2_in_has(const session *s, uint16_t pid);
int session_qos2_in_add(session *s, uint16_t pid) BK_MUST_CHECK; /* BK_OK / BK_ERR_NOMEM */
bool session_qos2_in_del(session *s, uint16_t pid);

/* Add or replace ([MQTT-3.8.4-3]) a subscription; *rec is its record.
 * BK_OK or BK_ERR_NOMEM. */
int session_subscribe(session *s, tnode *root, const char *filter, size_t flen, uint8_t qos,
                      sub_rec **rec) BK_MUST_CHECK;
/* MQTT 5: set r's Subscription Identifier (0 = none), keeping nsub_ids. */
void session_set_sub_id(session *s, sub_rec *r, uint32_t sub_id);
/* BK_OK, or BK_ERR_UNKNOWN when s has no such subscription. */
int session_unsubscribe(session *s, const char *filter, size_t flen);
void session_unsubscribe_all(session *s);
/* Journal a subscription the session does not keep itself (a shared
 * subscription "$share/G/F": shared.c keeps the membership): added with its
 * QoS byte, or removed. Nothing for a session that is not durable. */
void session_journal_subscription(session *s, const char *filter, size_t flen, uint8_t qos,
                                  uint32_t sub_id, bool add);

#endif
