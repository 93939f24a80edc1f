/*
 * conn.h -- connections: accept, read + frame, coalesced output, close.
 * A connection owns its fd, its tls_conn, its input/output buffers and its
 * will message (a msg ref); it points at (does not own) its session.
 */
#ifndef SECBROKER_CONN_H
#define SECBROKER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "broker/bbuf.h"
#include "broker/config.h"
#include "broker/err.h"
#include "broker/msg.h"

struct broker;
struct session;
struct tls_server;
struct tls_conn;

enum conn_state {
    CS_TLS_HANDSHAKE, /* TLS listener, handshake in progress */
    CS_AWAIT_CONNECT, /* transport ready, no CONNECT yet */
    CS_AUTH_DELAY,    /* CONNECT refused for bad credentials; CONNACK held back */
    CS_ACTIVE,
    CS_CLOSING, /* marked; freed before the loop sleeps */
};

typedef struct listener {
    int fd;
    listener_cfg *cfg;
    struct tls_server *tls;
    uint32_t nconns;
} listener;

typedef struct conn {
    struct conn *prev, *next;  /* broker->conns */
    struct conn *pending_next; /* broker->write_pending list */
    struct conn *close_next;   /* broker->closing list */
    struct broker *b;
    int fd;
    enum conn_state state;
    listener *listener;
    struct tls_conn *tls; /* NULL on plain listeners */
    char peer[64];        /* "1.2.3.4:5678" or "[::1]:5678" */
    struct session *session;
    char *client_id;    /* copy for logging after detach */
    char *username;     /* NULL = anonymous */
    bbuf in;            /* partial packet only; empty most of the time */
    bbuf out;           /* coalesced output, flushed before sleep */
    bool write_pending; /* on broker->write_pending */
    bool want_write;    /* EPOLLOUT registered */
    bool read_pending;  /* TLS: decrypted data left inside mbedTLS */
    uint8_t protocol_level;
    uint16_t keepalive;
    time_t connected_at;
    double last_rx;    /* monotonic seconds of the last packet */
    double last_tx;    /* monotonic seconds of the last write */
    double over_since; /* output over max_output_buffer since (0 = not) */
    double deadline;   /* handshake/CONNECT deadline or auth delay end */
    msg *will;         /* NULL when none */
    uint8_t will_qos;
    bool will_retain;
    bool send_will;        /* cleared by DISCONNECT */
    uint8_t *held_connect; /* CS_AUTH_DELAY: copy of the CONNECT packet */
    size_t held_connect_len;
    char *close_reason;    /* set by conn_close (allocated then) */
    uint64_t dropped_qos0; /* QoS 0 messages dropped: output buffer full */
} conn;

void conn_accept(struct broker *b, listener *l);
void conn_on_event(struct broker *b, conn *c, uint32_t events);
void conn_close(struct broker *b, conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conn_free_closed(struct broker *b);
void conn_flush_all(struct broker *b);
void conn_tick(struct broker *b);
void conn_service_read_pending(struct broker *b);
/* Append bytes to the output buffer and schedule a flush. BK_ERR_FULL /
 * BK_ERR_NOMEM / BK_ERR_CLOSED: the connection has been marked closing. */
int conn_write(struct broker *b, conn *c, const uint8_t *data, size_t len);
int conn_send_ack(struct broker *b, conn *c, int type, uint16_t pid);
/* Like conn_write, but when nothing is queued the bytes go to the socket at
 * once and only a remainder is buffered. For the CONNACK: an idle client then
 * never owns an output buffer. */
int conn_write_now(struct broker *b, conn *c, const uint8_t *data, size_t len);
/* Send one PUBLISH (header + payload copy). QoS 0 may be dropped when the
 * output buffer is over its cap: BK_ERR_FULL then. */
int conn_send_publish(struct broker *b, conn *c, const msg *m, uint8_t qos, bool retain, bool dup,
                      uint16_t pid);

#endif
