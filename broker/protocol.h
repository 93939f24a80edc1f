/*
 * protocol.h -- MQTT over a connection: framing, decoding, encoding, and
 * one short handler per packet type (parse -> authorize -> act). It is the
 * conn_handler of every listener; it drives sessions (as their outbox),
 * the router and authorization, and enforces the state rules (CONNECT
 * first and once, [MQTT-3.1.0-1/2]).
 *
 * Ownership: a client owns its client id and username strings, its will
 * message (a msg ref) and a held CONNECT's copy; it points at (does not
 * own) its conn and its session. It is freed in the conn's on_close.
 */
#ifndef SECBROKER_PROTOCOL_H
#define SECBROKER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/conn.h"
#include "broker/msg.h"
#include "mqtt/mqtt.h"

struct backlog;
struct broker;
struct session;

enum client_state {
    CL_AWAIT_CONNECT, /* transport ready, no CONNECT yet */
    CL_AUTH_DELAY,    /* CONNECT held back after recent failed logins */
    CL_ACTIVE,
};

typedef struct client { /* allocated with its conn (conn_handler.ud_size) */
    struct broker *b;
    conn *conn;
    struct session *session;
    struct client5 *v5;       /* MQTT 5 state (protocol5.h), NULL below level 5 */
    char *client_id;          /* copy for logging after detach */
    char *username;           /* NULL = anonymous */
    msg *will;                /* NULL when none */
    uint8_t *held_connect;    /* CL_AUTH_DELAY: copy of the CONNECT packet body */
    double last_rx;           /* monotonic seconds of the last packet */
    double deadline;          /* CONNECT deadline or auth delay end */
    uint64_t dropped_qos0;    /* QoS 0 messages dropped: output buffer full */
    struct backlog *retained; /* retained messages owed to it (SUBSCRIBE), NULL when none */
    struct backlog *owed;     /* PUBLISHes owed while its socket is not writable, or NULL */
    uint64_t auth_ticket;     /* CL_AUTH_DELAY: this attempt's turn (auth.c) */
    uint32_t held_connect_len;
    uint16_t keepalive;
    uint8_t state; /* enum client_state */
    uint8_t protocol_level;
    bool send_will;  /* cleared by DISCONNECT */
    bool bridge;     /* CONNECT level had bit 0x80: a bridge (no echo, retain as published) */
    bool sys_logged; /* its first PUBLISH to $SYS was logged */
} client;

/* The handler listeners give their connections. */
extern const conn_handler proto_conn_handler;

/* Handle one framed packet from cl. */
void proto_handle_packet(client *cl, const mqtt_header *h);
/* Connected clients (CONNACK sent, not closing), for $SYS. */
uint32_t proto_count_active(struct broker *b);
/* The same for one protocol level (3, 4, 5). */
uint32_t proto_count_level(struct broker *b, uint8_t level);
/* Every MQTT 5 client gets DISCONNECT 0x8B (server shutting down). */
void proto_shutdown(struct broker *b);
/* A bridge added by SIGHUP takes client id s over from the client holding
 * s: that client is disconnected as by a new connection with its id
 * [MQTT-3.1.4-2] and s ends, so the bridge starts a session of its own
 * (nothing of the client's, its subscriptions least of all, carries over). */
void proto_evict_session(struct broker *b, struct session *s, const char *why);
/* Delayed wills (MQTT 5 Will Delay Interval) freed unpublished at shutdown. */
void proto_drop_delayed_wills(struct broker *b);
/* Offline sessions whose expiry interval has run out are destroyed (and due
 * delayed wills published); called once a second. */
void proto_expire_sessions(struct broker *b);

#endif
