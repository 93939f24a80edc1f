/*
 * broker.h -- the broker object: what main() owns and every module reaches
 * through its first argument. Ownership (docs/ARCHITECTURE.md tells the same
 * story in prose):
 *
 *   broker  owns  listeners[], every conn (list), the session registry, the
 *                 topic tree, the config, the password files and ACL rules
 *                 (auth.h: one set for the broker, one per listener).
 *   conn    see conn.h;  session  see session.h;  tree  see tree.h;
 *   msg     see msg.h (refcounted, one allocation per PUBLISH received).
 */
#ifndef SECBROKER_BROKER_H
#define SECBROKER_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/conn.h"
#include "broker/dict.h"
#include "broker/session.h"
#include "broker/tree.h"

struct auth_set;

#define SECBROKER_VERSION "0.1.0"

typedef struct broker {
    config *cfg;
    listener *listeners;
    size_t nlisteners;
    int epfd;
    int reserve_fd; /* kept free for shedding connections at EMFILE (fdlimit.h) */
    conn *conns;    /* doubly linked, all connections */
    uint32_t nconns;
    conn *write_pending;       /* have output to flush this iteration */
    conn *closing;             /* marked for close */
    conn *held;                /* output held until a commit (conn_hold) */
    struct persist *persist;   /* durable state (NULL: persistence false) */
    bool buffer_connack;       /* never write a CONNACK through (persistence strict) */
    uint32_t read_pending;     /* count of conns with read_pending set */
    session_registry sessions; /* client id -> session */
    tnode *root;
    uint64_t match_seq;
    uint64_t subscribe_seq; /* stamps sub_rec.retained_stamp */
    struct auth_set
        *auth; /* password files and ACLs (auth.h): [0] the broker's, [1 + i] listener i's */
    size_t nauth;
    dict auth_fails;     /* addr -> auth_fail */
    double now;          /* monotonic, updated each iteration */
    double tick_due;     /* the running tick's due time on the 100 ms grid (0: none yet) */
    volatile int stop;   /* set by signals */
    volatile int reload; /* SIGHUP */
    volatile int save;   /* SIGUSR1 */
    volatile int dump;   /* SIGUSR2 */
    uint64_t msgs_received, msgs_sent, bytes_received, bytes_sent;
    uint64_t retained_count;
    uint64_t clients_expired; /* persistent_client_expiration ($SYS) */
    /* more $SYS counters (sys.c): every MQTT packet in and out, PUBLISH
     * payload bytes, accepted sockets and accepted CONNECTs */
    uint64_t packets_received, packets_sent, pub_bytes_received, pub_bytes_sent;
    uint64_t sockets_accepted, connects_accepted;
    uint64_t pub_dropped;   /* QoS 0 copies dropped for slow subscribers */
    conn_limits out_limits; /* the output-buffer policy, from cfg */
    uint8_t *rbuf;          /* shared read buffer */
    size_t rbuf_cap;
    struct shared_registry *shared;     /* shared subscriptions (shared.h), NULL until used */
    struct delayed_will *delayed_wills; /* MQTT 5 wills waiting for their Will Delay Interval */
    session **match_sessions;           /* reused per publish: matched sessions */
    size_t match_cap, match_cap_used;
    struct bridge **bridges; /* bridge.h: one per `connection` block */
    size_t nbridges;
    struct bridge *bridges_retired; /* stopped by SIGHUP, freed once their connection is gone */
} broker;

/* Monotonic seconds. */
double broker_now(void);

extern broker *g_broker;

#endif
