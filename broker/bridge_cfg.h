/*
 * bridge_cfg.h -- the configuration of one bridge (`connection NAME` and the
 * lines after it), Mosquitto's keys with Mosquitto's meanings and defaults,
 * its topic/prefix rules, and the reconnect delay schedule.
 *
 * Pure: no sockets, no globals, no logging. The config parser hands every
 * line inside a connection block to bridge_cfg_line(); the bridge (bridge.c)
 * uses the mapping and backoff functions below.
 *
 * Errors: 0 = ok, BRIDGE_CFG_ERR with a sentence in err (without FILE:LINE,
 * which the caller adds), BRIDGE_CFG_NOMEM when out of memory.
 */
#ifndef SECBROKER_BRIDGE_CFG_H
#define SECBROKER_BRIDGE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    BRIDGE_CFG_OK = 0,
    BRIDGE_CFG_ERR = -1,       /* bad key or value; err says which and why */
    BRIDGE_CFG_NOMEM = -2,     /* out of memory */
    BRIDGE_TOPIC_NO_MATCH = 1, /* not an error: no topic line applies */
    BRIDGE_TOPIC_INVALID = -3, /* the mapped topic would be empty or over 65535 bytes */
    BRIDGE_TOPIC_NOSPACE = -4, /* the caller's buffer is too small */
};

typedef enum { BRIDGE_OUT = 1, BRIDGE_IN = 2, BRIDGE_BOTH = 3 } bridge_dir;
typedef enum { BRIDGE_START_AUTOMATIC, BRIDGE_START_LAZY, BRIDGE_START_ONCE } bridge_start;

typedef struct {
    char *host; /* name or address, IPv6 without brackets */
    uint16_t port;
} bridge_addr;

/* One `topic` line. A NULL string stands for Mosquitto's empty marker "". */
typedef struct {
    char *pattern;       /* NULL: "" (remap one topic: both prefixes set) */
    char *local_prefix;  /* valid topic name without wildcards, or NULL */
    char *remote_prefix; /* valid topic name without wildcards, or NULL */
    char *local_filter;  /* local_prefix + pattern: subscribed locally (out/both) */
    char *remote_filter; /* remote_prefix + pattern: subscribed remotely (in/both) */
    bridge_dir dir;      /* default out */
    uint8_t qos;         /* default 0 */
} bridge_topic;

typedef struct {
    char *name; /* `connection NAME` */
    bridge_addr *addrs;
    size_t naddrs; /* address/addresses, required, given once */
    bool round_robin;
    bridge_topic *topics;
    size_t ntopics;
    char *remote_clientid;         /* default "HOSTNAME.NAME" (as Mosquitto sends it) */
    char *local_clientid;          /* default "local." + remote_clientid */
    char *remote_username;         /* also `username` */
    char *remote_password;         /* also `password`; needs remote_username */
    bool cleansession;             /* default false */
    bool local_cleansession;       /* default: cleansession */
    uint16_t keepalive_interval;   /* seconds, default 60, at least 5 */
    bool restart_constant;         /* `restart_timeout N`: a constant delay */
    uint32_t restart_base;         /* seconds; default 5 (jitter) */
    uint32_t restart_cap;          /* seconds; default 30; == base when constant */
    bridge_start start_type;       /* default automatic */
    uint32_t threshold;            /* lazy start: queued messages, default 10 */
    uint32_t idle_timeout;         /* lazy stop: seconds idle, default 60 */
    bool try_private;              /* default true */
    bool notifications;            /* default true */
    bool notifications_local_only; /* default false */
    char *notification_topic;      /* default $SYS/broker/connection/<remote_clientid>/state */
    uint8_t protocol_version;      /* 4 = mqttv311 (default), 3 = mqttv31, 5 = mqttv50 */
    bool outgoing_retain;          /* default true */
    bool attempt_unsubscribe;      /* default true */
    uint32_t max_packet_size;      /* bytes, 0 = unlimited (default) */
    uint32_t
        max_queued_messages;   /* ours: the bridge's queue; 0 = the broker's max_queued_messages */
    uint32_t max_queued_bytes; /* ours: topic + payload bytes queued; default 256 MiB, 0 = none */
    char *cafile, *capath, *certfile, *keyfile, *tls_version, *ciphers, *keylog_file;
    bool insecure; /* default false: the remote's name is checked */
    /* parser state */
    bool local_cleansession_set, restart_set;
} bridge_cfg;

/* Start a block for `connection NAME`: every field gets Mosquitto's default.
 * NAME is one word (the rest of the line must be empty). */
int bridge_cfg_init(bridge_cfg *b, const char *name, char *err, size_t errlen);
/* Free what the struct holds (not the struct). Accepts NULL. */
void bridge_cfg_free(bridge_cfg *b);

/* Does key belong to a bridge block (also the keys refused by name, so the
 * caller routes them here for a precise error)? Mosquitto's other keys stay
 * global even after a `connection` line. */
bool bridge_cfg_is_key(const char *key);

/* One line inside the block: value is the rest of the line, trimmed. */
int bridge_cfg_line(bridge_cfg *b, const char *key, const char *value, char *err, size_t errlen);

/* The block ended: check what needs the whole block (address given,
 * remote_password without remote_username, TLS file pairs, ...) and fill
 * the derived defaults. hostname is this machine's (gethostname()). */
int bridge_cfg_finish(bridge_cfg *b, const char *hostname, char *err, size_t errlen);

/* Checks across all bridges (after each was finished): unique names and
 * unique local_clientid, like Mosquitto. */
int bridge_cfg_check_set(const bridge_cfg *b, size_t n, char *err, size_t errlen);

/* Do a and b (both finished) describe the same bridge, key for key?
 * (SIGHUP: an unchanged bridge is left running.) */
bool bridge_cfg_same(const bridge_cfg *a, const bridge_cfg *b);

/* ---- topic mapping (Mosquitto's rules, prefixes concatenated literally) --
 *
 * bridge_topic_out -- does a local PUBLISH on topic go out over this bridge,
 * and as which remote topic? The first out/both line whose local_filter
 * matches wins: its local prefix is removed (when the topic starts with it)
 * and its remote prefix added. *qos is the highest QoS of all matching
 * out/both lines (overlapping subscriptions deliver once, at the highest).
 * Returns 0 (out holds the remote topic, *outlen its length, NUL-terminated
 * when room), BRIDGE_TOPIC_NO_MATCH (not forwarded), BRIDGE_TOPIC_INVALID or
 * BRIDGE_TOPIC_NOSPACE (cap must exceed the result's length).
 *
 * bridge_topic_in -- an incoming PUBLISH from the remote on topic: the first
 * in/both line whose remote_filter matches maps it (remote prefix removed,
 * local prefix added). *qos is that line's QoS (may be NULL). Same returns.
 * Mosquitto publishes an unmatched incoming topic locally unchanged; the
 * caller decides (NO_MATCH tells it so). */
int bridge_topic_out(const bridge_cfg *b, const char *topic, size_t tlen, char *out, size_t cap,
                     size_t *outlen, uint8_t *qos);
int bridge_topic_in(const bridge_cfg *b, const char *topic, size_t tlen, char *out, size_t cap,
                    size_t *outlen, uint8_t *qos);

/* ---- reconnect delay ------------------------------------------------------
 *
 * A source of uniform random 32-bit values (e.g. the DRBG or a test's
 * sequence). */
typedef uint32_t (*bridge_rand_fn)(void *ctx);

/* Decorrelated jitter: next = min(cap, random_between(base, prev * 3)), with
 * prev = base for the first attempt (prev_ms 0) and after every successful
 * connection (the caller passes 0 again). All in milliseconds; the result is
 * always within [base_ms, max(base_ms, cap_ms)]. */
uint64_t bridge_backoff_next(uint64_t base_ms, uint64_t cap_ms, uint64_t prev_ms,
                             bridge_rand_fn rnd, void *ctx);
/* The delay before the next attempt for b's restart_timeout (constant or
 * jitter), in milliseconds. */
uint64_t bridge_restart_delay_ms(const bridge_cfg *b, uint64_t prev_ms, bridge_rand_fn rnd,
                                 void *ctx);

#endif
