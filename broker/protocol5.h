/*
 * protocol5.h -- MQTT 5.0 on a connection, beside protocol.c's 3.1.1/3.1
 * (internal to the protocol layer: only protocol.c and protocol5.c include
 * it). A level-5 client has a client5 (cl->v5) with what it announced in
 * its CONNECT and both topic-alias tables; 3.1.1 clients pay one NULL
 * pointer. protocol.c frames and dispatches; the packets whose v5 form
 * differs are decoded and encoded here.
 *
 * Ownership: a client5 is owned by its client (freed in p5_free) and owns
 * the alias tables' topic copies.
 */
#ifndef SECBROKER_PROTOCOL5_H
#define SECBROKER_PROTOCOL5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/msg.h"
#include "broker/protocol.h"
#include "broker/session.h"
#include "mqtt/mqtt.h"

/* Topic aliases the broker accepts from a client (Topic Alias Maximum in
 * CONNACK; Mosquitto's max_topic_alias default) and at most how many it
 * assigns towards a client. */
#define P5_ALIAS_MAX_IN 10
#define P5_ALIAS_MAX_OUT 16
/* Response Information for a client that requests it: this prefix, its
 * client id and "/" (a convention, as the spec leaves it to the server; the
 * ACL still decides who may use the topics). */
#define P5_RESPONSE_PREFIX "response/"

typedef struct client5 {
    uint32_t session_expiry; /* seconds, from CONNECT (DISCONNECT may change it) */
    uint32_t max_packet;     /* the client's Maximum Packet Size, 0 = protocol max */
    uint32_t will_delay;     /* Will Delay Interval, seconds */
    uint32_t will_expiry;    /* the will's Message Expiry Interval (has_will_expiry) */
    bool has_will_expiry;
    uint16_t recv_max;                     /* the client's Receive Maximum */
    uint16_t alias_max_out;                /* aliases the broker may use towards the client */
    uint16_t alias_next_out;               /* round robin once the table is full */
    uint16_t server_keepalive;             /* 0 = the client's own keepalive stands */
    bool problem_info;                     /* Request Problem Information (default 1) */
    bool id_assigned;                      /* Assigned Client Identifier goes into CONNACK */
    bool response_info;                    /* Request Response Information: CONNACK answers it */
    char *alias_in[P5_ALIAS_MAX_IN + 1];   /* the client's aliases (1..) */
    char *alias_out[P5_ALIAS_MAX_OUT + 1]; /* ours (1..) */
} client5;

/* ---- protocol.c, for protocol5.c ---- */
bool proto_client_ready(const client *cl);
/* Close cl with reason code rc (v5: a DISCONNECT first, rc >= 0x80) and a
 * log line. */
void proto_close(client *cl, uint8_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The rest of a PUBLISH once decoded (alias resolved): QoS 2 resend, retain,
 * ACL, store and route, acknowledge. props: the block to forward. */
void proto_publish(client *cl, const mqtt_publish *p, const uint8_t *props, size_t props_len,
                   uint32_t expiry, bool has_expiry);
/* One filter of a SUBSCRIBE: the granted QoS, or a v5 failure reason code
 * (>= 0x80) with *rec NULL. opts: SUBOPT_NO_LOCAL | SUBOPT_RAP. A filter
 * refused by max_subscriptions_per_client adds one to *over (not logged). */
uint8_t proto_subscribe_one(client *cl, mqtt_str f, uint8_t qos, uint8_t opts, sub_rec **rec,
                            unsigned *over);
/* The one line for a SUBSCRIBE whose filters max_subscriptions_per_client
 * refused (over of them; nothing when 0), rate-limited per address. */
void proto_log_subscribe_over(client *cl, unsigned over);
/* Retained messages for the filters of a SUBSCRIBE (recs[i] NULL: none). */
void proto_subscribe_retained(client *cl, sub_rec **recs, const uint8_t *codes, unsigned count);

/* ---- protocol5.c ---- */
/* After a level-5 CONNECT decoded: the client5 and its limits. BK_OK, or
 * refused (CONNACK sent, closing). */
int p5_connect_begin(client *cl, const mqtt5_connect *ck);
/* Keepalive the broker imposes (Server Keep Alive) when max_keepalive caps. */
void p5_connect_keepalive(client *cl, uint16_t keepalive);
/* Session fields from the CONNECT (expiry, flow control, packet size). */
void p5_session_setup(client *cl, session *s);
/* The will with its properties (Will Delay kept apart). NULL when out of memory. */
msg *p5_will_new(client *cl, const mqtt5_connect *ck);
int p5_send_connack(client *cl, bool present, uint8_t rc, const char *why);
void p5_send_disconnect(client *cl, uint8_t rc, const char *why);
int p5_send_ack(client *cl, enum mqtt_type type, uint16_t pid, uint8_t rc, const char *why);
/* The PUBLISH to a v5 client, output policy already checked. */
int p5_send_publish(client *cl, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid);
void p5_handle_publish(client *cl, const mqtt_header *h);
void p5_handle_subscribe(client *cl, const mqtt_header *h);
void p5_handle_unsubscribe(client *cl, const mqtt_header *h);
/* PUBACK..PUBCOMP, DISCONNECT, AUTH. */
void p5_handle_ack(client *cl, const mqtt_header *h);
/* v3 CONNACK code -> v5 reason code. */
uint8_t p5_connack_reason(uint8_t v3rc);
void p5_free(client *cl);
/* Will Delay Interval (spec 3.1.3.2.2): keep cl's will back until the
 * earlier of its delay and its session's end. true when kept (the will's
 * reference is taken over). */
bool p5_will_defer(client *cl);
/* A client of that id connected again: its delayed will is dropped
 * [MQTT-3.1.3-9]. */
void p5_will_cancel(struct broker *b, const char *client_id);
/* Publish the delayed wills that are due (all of them when all is true). */
void p5_wills_due(struct broker *b, bool all);

#endif
