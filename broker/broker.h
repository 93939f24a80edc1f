/*
 * broker.h -- the broker's core data structures. Ownership in one place
 * (docs/ARCHITECTURE.md tells the same story in prose):
 *
 *   broker  owns  listeners[], every conn (list), the session dict, the
 *                 topic tree, the config, the password file and ACL rules.
 *   conn    owns  its fd, its tls_conn, its input/output buffers, its will
 *                 message (a msg ref). It points at (does not own) its session.
 *   session owns  its client id string, its subscription records, its
 *                 inflight/queued deliveries (each holding one msg ref), the
 *                 list of incoming QoS 2 packet ids awaiting PUBREL.
 *   tree    owns  its nodes; a node holds subscriber entries that point back
 *                 at (session, sub record) and at most one retained msg ref.
 *   msg     is refcounted: one allocation per PUBLISH received (topic and
 *                 payload together); every queue, inflight slot and retained
 *                 slot holds a reference. Delivery to a socket copies the
 *                 payload into the connection's output buffer, nothing else.
 */
#ifndef SECBROKER_BROKER_H
#define SECBROKER_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "broker/config.h"
#include "broker/dict.h"
#include "mqtt/mqtt.h"

struct tls_server;
struct tls_conn;
struct pw_file;
struct acl_rules;

#define SECBROKER_VERSION "0.1.0"
/* Deepest topic name or filter accepted, in levels (Mosquitto's limit too):
 * the tree's walks recurse once per level, so depth must be bounded. */
#define TOPIC_MAX_LEVELS 200

/* ---- messages ------------------------------------------------------------ */
typedef struct msg {
    uint32_t refs;
    uint32_t payload_len;
    uint16_t topic_len;
    uint8_t qos; /* QoS it was published with */
    bool retain; /* as published (for the retained store) */
    char data[]; /* topic, NUL, payload */
} msg;

msg *msg_new(const uint8_t *topic, uint16_t tlen, const uint8_t *payload, size_t plen, uint8_t qos,
             bool retain);
static inline msg *msg_ref(msg *m)
{
    m->refs++;
    return m;
}
void msg_unref(msg *m);
static inline const char *msg_topic(const msg *m)
{
    return m->data;
}
static inline const uint8_t *msg_payload(const msg *m)
{
    return (const uint8_t *)m->data + m->topic_len + 1;
}

/* ---- byte buffer ---------------------------------------------------------- */
typedef struct {
    uint8_t *data;
    size_t off; /* first unsent/unconsumed byte */
    size_t len; /* end of valid data */
    size_t cap;
} bbuf;

int bbuf_reserve(bbuf *b, size_t extra); /* room for extra more bytes; 0 / -1 */
void bbuf_free(bbuf *b);
static inline size_t bbuf_used(const bbuf *b)
{
    return b->len - b->off;
}

/* ---- sessions ------------------------------------------------------------- */
struct tnode;
struct conn;

typedef struct sub_rec {
    struct sub_rec *next, *prev;
    uint64_t retained_stamp; /* SUBSCRIBE that last sent this filter's retained */
    struct tnode *node;      /* where the subscriber entry lives */
    uint32_t index;          /* position in node->subs (kept up to date) */
    uint8_t qos;
    uint16_t filter_len;
    char filter[]; /* NUL-terminated */
} sub_rec;

enum out_state {
    OUT_WAIT_PUBACK = 1, /* QoS 1 sent */
    OUT_WAIT_PUBREC,     /* QoS 2 PUBLISH sent */
    OUT_WAIT_PUBCOMP,    /* QoS 2 PUBREL sent */
};

typedef struct {
    msg *m;
    uint16_t pid;
    uint8_t qos;
    uint8_t state; /* enum out_state */
    bool retain;   /* retain flag to send with */
} outmsg;

typedef struct { /* ring buffer of deliveries waiting for a slot */
    outmsg *items;
    uint32_t head, count, cap;
} outqueue;

typedef struct session {
    char *client_id; /* owned; dict key */
    uint16_t client_id_len;
    struct conn *conn; /* NULL while offline */
    char *username;    /* owned; for ACL checks while offline */
    bool clean;
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
    uint64_t match_stamp; /* dedup of overlapping subscriptions */
    uint8_t match_qos;
    bool match_retain;
    uint64_t dropped; /* messages dropped because the queue was full */
} session;

/* ---- topic tree ------------------------------------------------------------- */
typedef struct {
    session *s;
    sub_rec *rec;
    uint8_t qos;
} sub_entry;

typedef struct tnode {
    struct tnode *parent;
    dict children;      /* exact levels: name -> tnode */
    struct tnode *plus; /* '+' child */
    struct tnode *hash; /* '#' child */
    sub_entry *subs;
    uint32_t nsubs, cap_subs;
    msg *retained;
    uint16_t name_len;
    char name[]; /* this level, NUL-terminated */
} tnode;

/* ---- connections ------------------------------------------------------------- */
enum conn_state {
    CS_TLS_HANDSHAKE, /* TLS listener, handshake in progress */
    CS_AWAIT_CONNECT, /* transport ready, no CONNECT yet */
    CS_AUTH_DELAY,    /* CONNECT refused for bad credentials; CONNACK held back */
    CS_ACTIVE,
    CS_CLOSING, /* marked; freed before the loop sleeps */
};

struct listener;

typedef struct conn {
    struct conn *prev, *next;  /* broker->conns */
    struct conn *pending_next; /* broker->write_pending list */
    struct conn *close_next;   /* broker->closing list */
    int fd;
    enum conn_state state;
    struct listener *listener;
    struct tls_conn *tls; /* NULL on plain listeners */
    char peer[64];        /* "1.2.3.4:5678" or "[::1]:5678" */
    session *session;
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
    uint64_t auth_ticket;  /* CS_AUTH_DELAY: this attempt's turn (auth.c) */
} conn;

typedef struct listener {
    int fd;
    listener_cfg *cfg;
    struct tls_server *tls;
    uint32_t nconns;
} listener;

/* Failed-login bookkeeping per remote address (brute-force slow-down). */
typedef struct {
    char addr[48];
    uint32_t failures;
    double last;
} auth_fail;

typedef struct broker {
    config *cfg;
    listener *listeners;
    size_t nlisteners;
    int epfd;
    conn *conns; /* doubly linked, all connections */
    uint32_t nconns;
    conn *write_pending;   /* have output to flush this iteration */
    conn *closing;         /* marked for close */
    uint32_t read_pending; /* count of conns with read_pending set */
    dict sessions;         /* client id -> session */
    tnode *root;
    uint64_t match_seq;
    uint64_t subscribe_seq; /* stamps sub_rec.retained_stamp */
    uint64_t random_base;   /* read once at startup: hash seed, client ids */
    struct pw_file *pw;
    struct acl_rules *acl;
    dict auth_fails;     /* addr -> auth_fail */
    double now;          /* monotonic, updated each iteration */
    volatile int stop;   /* set by signals */
    volatile int reload; /* SIGHUP */
    uint64_t msgs_received, msgs_sent, bytes_received, bytes_sent;
    uint64_t retained_count;
    uint8_t *rbuf; /* shared read buffer */
    size_t rbuf_cap;
    session **match_sessions; /* reused per publish: matched sessions */
    size_t match_cap, match_cap_used;
} broker;

double broker_now(void);

/* conn.c */
void conn_accept(broker *b, listener *l);
void conn_on_event(broker *b, conn *c, uint32_t events);
void conn_close(broker *b, conn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void conn_free_closed(broker *b);
void conn_flush_all(broker *b);
void conn_tick(broker *b);
void conn_service_read_pending(broker *b);
/* Append bytes to the output buffer and schedule a flush. -1 = buffer full
 * (the connection has been marked closing). */
int conn_write(broker *b, conn *c, const uint8_t *data, size_t len);
int conn_send_ack(broker *b, conn *c, int type, uint16_t pid);
/* Like conn_write, but when nothing is queued the bytes go to the socket at
 * once and only a remainder is buffered. For the CONNACK: an idle client then
 * never owns an output buffer. */
int conn_write_now(broker *b, conn *c, const uint8_t *data, size_t len);
/* Send one PUBLISH (header + payload copy). qos0 may be dropped when the
 * output buffer is over its cap: returns 1 then. */
int conn_send_publish(broker *b, conn *c, const msg *m, uint8_t qos, bool retain, bool dup,
                      uint16_t pid);

/* protocol.c */
void proto_handle_packet(broker *b, conn *c, const void *hdr);
void proto_finish_connect(broker *b, conn *c);
void proto_connection_lost(broker *b, conn *c);

/* session.c */
session *session_find(broker *b, const char *id, size_t len);
session *session_create(broker *b, const char *id, size_t len, bool clean);
void session_destroy(broker *b, session *s);
/* Queue or send a delivery to session s. */
void session_deliver(broker *b, session *s, msg *m, uint8_t qos, bool retain);
/* Send what fits in the inflight window from the queue. */
void session_pump(broker *b, session *s);
/* On reconnect: resend inflight (DUP) and PUBRELs, then pump. */
void session_resend(broker *b, session *s);
int session_ack(broker *b, session *s, int type, uint16_t pid);
bool session_qos2_in_has(session *s, uint16_t pid);
int session_qos2_in_add(session *s, uint16_t pid);
bool session_qos2_in_del(session *s, uint16_t pid);

/* topic.c */
tnode *tree_new_root(void);
void tree_free(tnode *root);
/* Add/replace a subscription of s (rec allocated and linked into s->subs).
 * Returns the record, or NULL when out of memory. */
sub_rec *tree_subscribe(broker *b, session *s, const char *filter, size_t flen, uint8_t qos);
int tree_unsubscribe(broker *b, session *s, const char *filter, size_t flen);
void tree_unsubscribe_all(broker *b, session *s);
/* Calls fn for every subscriber entry matching topic (not deduplicated). */
typedef void (*tree_match_fn)(void *ud, sub_entry *e);
void tree_match(tnode *root, const char *topic, size_t tlen, tree_match_fn fn, void *ud);
/* Retained store: m with empty payload clears. */
void tree_retain(broker *b, msg *m);
/* Returns true to go on, false to stop the walk. */
typedef bool (*tree_retained_fn)(void *ud, msg *m);
void tree_retained_match(tnode *root, const char *filter, size_t flen, tree_retained_fn fn,
                         void *ud);

/* More than TOPIC_MAX_LEVELS levels? Only strings of at least that many bytes
 * can be, so ordinary topics are not scanned (this runs per PUBLISH). */
bool topic_too_deep(const char *s, size_t len);

/* router.c */
/* Route a message from `from` (NULL for wills/$SYS) to every matching
 * subscriber; stores it first when retained. */
void router_publish(broker *b, conn *from, msg *m);

/* auth.c */
int auth_load(broker *b, char *err, size_t errlen);
void auth_reload(broker *b);
bool auth_may_write(broker *b, conn *c, const char *topic, size_t len);
bool auth_may_read(broker *b, session *s, const char *topic, size_t len);
bool auth_may_subscribe(broker *b, conn *c, const char *filter, size_t len);
/* CONNACK code for this CONNECT's credentials (0 = accepted). */
int auth_login(broker *b, conn *c, const char *username, const uint8_t *pw, size_t pwlen,
               bool has_password);
/* Brute-force slow-down per (address, username), see auth.c: seconds this
 * CONNECT must be held before its password is checked (0 = check now), or
 * < 0 when a newer attempt for the same key took its turn (answer CONNACK 3).
 * username NULL (anonymous) and certificate listeners: always 0. Call again
 * with after_delay when the hold ends. auth_record_failure counts a failed
 * check of c's (address, username). */
double auth_attempt_delay(broker *b, conn *c, const mqtt_str *username, bool after_delay);
void auth_record_failure(broker *b, conn *c);
void auth_free(broker *b);

extern broker *g_broker;

#endif
