/*
 * store.h -- durable broker state on SQLite (WAL mode). No sockets, no broker
 * types: the broker describes its state changes with these calls and decides
 * when they must be durable.
 *
 * What is stored (docs/ARCHITECTURE.md, "Durable state"):
 *   messages       each message body once (topic, payload, qos, retain, MQTT 5
 *                  properties, expiry as wall-clock seconds, 0 = never), with
 *                  a reference count kept by triggers: a row lives while a
 *                  retained slot or a delivery points at it, or while the
 *                  broker still holds the message (store_msg_gc lets go).
 *   retained       topic -> message, and who published it (client id,
 *                  username, listener port; NULL in rows from schema 1).
 *   sessions       persistent sessions: client id, username, expiry, the port
 *                  of the listener it last connected to (0 = unknown).
 *   subscriptions  (client id, filter) -> granted QoS (with the MQTT 5 option
 *                  bits), Subscription Identifier.
 *   deliveries     per session, in order (seq): queued or inflight QoS 1/2
 *                  messages with packet id and state.
 *   qos2_in        incoming QoS 2 packet ids awaiting PUBREL, per session.
 *
 * Group commit: every write call appends an operation to an in-memory journal
 * and returns at once. store_commit() applies the whole journal in one
 * transaction and syncs it (one fsync for a burst). Only after it returns
 * STORE_OK may the caller send the acknowledgements that depend on those
 * changes. When the commit fails (disk full, I/O error) the transaction is
 * rolled back and the journal is kept: the next store_commit() tries again,
 * so nothing the broker has asked for is silently lost, and nothing is
 * acknowledged before it is on disk.
 *
 * Message bodies are not copied: store_msg_add() takes a pointer that the
 * caller keeps valid (it holds a reference) until the release hook set with
 * store_set_release() is called for it, which happens once the operation is
 * committed or the store is closed.
 *
 * Return convention: STORE_OK (0) or a count (>= 0); negative STORE_ERR_*.
 * store_errmsg() says why in words after a failure.
 */
#ifndef SECBROKER_STORE_H
#define SECBROKER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_err {
    STORE_OK = 0,
    STORE_ERR_OPEN = -1,    /* cannot open or create the database */
    STORE_ERR_IO = -2,      /* a write or sync failed (disk full, I/O error): retry later */
    STORE_ERR_CORRUPT = -3, /* the database is damaged (open quarantines it) */
    STORE_ERR_ALLOC = -4,
    STORE_ERR_ARG = -5, /* argument out of range (e.g. a string over 65535 bytes) */
};

/* Delivery states, as the session state machine knows them. */
enum store_dstate {
    STORE_QUEUED = 0,       /* not sent yet (no packet id) */
    STORE_PUBLISH_SENT = 1, /* QoS 1/2 PUBLISH sent, waiting for PUBACK/PUBREC */
    STORE_PUBREL_SENT = 2,  /* QoS 2 PUBREL sent, waiting for PUBCOMP */
};

typedef struct store store;
struct store_msg;

typedef struct {
    bool strict;     /* true: synchronous=FULL (every commit synced); false: NORMAL */
    bool quarantine; /* a damaged database is moved aside and a new one created */
    /* strict, but the caller syncs: store_commit writes without waiting for
     * the disk (synchronous=NORMAL) and store_sync() makes every commit so
     * far durable, from any thread, so a loop need not block in fsync */
    bool external_sync;
} store_opts;

/* What store_open found, for the startup log. */
typedef struct {
    bool created;       /* the file did not exist */
    bool quarantined;   /* a damaged file was moved aside */
    char moved_to[512]; /* where, when quarantined */
    char reason[256];   /* why, when quarantined */
} store_open_info;

/*
 * store_open -- open or create the database at path (WAL mode, schema
 * created or checked). A file that is not a database, fails its integrity
 * check or has a foreign schema is renamed to PATH.corrupt-YYYYmmdd-HHMMSS
 * (with its -wal and -shm files) when opts->quarantine, and a new empty
 * database is created in its place; info says so.
 * Returns STORE_OK, STORE_ERR_OPEN or STORE_ERR_CORRUPT (quarantine off),
 * with the reason in err.
 */
int store_open(store **out, const char *path, const store_opts *opts, store_open_info *info,
               char *err, size_t errlen);
/* Commits what is pending (best effort) and closes. Accepts NULL. */
void store_close(store *st);
const char *store_errmsg(const store *st);

/* Called for each message body handed to store_msg_add once the store no
 * longer needs it (committed, or the store is closed). */
typedef void (*store_release_fn)(void *owner);
void store_set_release(store *st, store_release_fn fn);

/* ---- writes: journaled, applied by store_commit ------------------------- */

/* A new message body (m->id is not read). Returns its id (> 0) in *id: ids
 * are assigned here and never reused. topic/payload/props must stay valid
 * until release(owner). STORE_ERR_ARG for a topic over 65535 bytes or a
 * negative expires. */
int store_msg_add(store *st, uint64_t *id, const struct store_msg *m, void *owner);
/* The broker no longer holds message id in memory: its row goes once no
 * delivery or retained slot points at it. */
int store_msg_gc(store *st, uint64_t id);
/* Who published a retained message (check_retain_source). */
typedef struct {
    const char *client_id; /* never NULL in a store_source */
    const char *username;  /* NULL: anonymous */
    uint16_t port;         /* the listener it came through, 0 = unknown */
} store_source;

/* Retained message for topic (replaces), with its publisher (src NULL: not
 * recorded), or none. */
int store_retain_set(store *st, const char *topic, size_t tlen, uint64_t msg_id,
                     const store_source *src);
int store_retain_clear(store *st, const char *topic, size_t tlen);
/* Persistent session row (insert or update); delete removes the session and
 * everything that hangs off it (subscriptions, deliveries, qos2_in). */
int store_session_put(store *st, const char *client_id, const char *username,
                      uint32_t expiry_interval, uint16_t listener_port);
int store_session_del(store *st, const char *client_id);
/* qos: the QoS byte as the broker keeps it (MQTT 5 option bits included);
 * sub_id: the MQTT 5 Subscription Identifier, 0 = none. */
int store_sub_put(store *st, const char *client_id, const char *filter, size_t flen, uint8_t qos,
                  uint32_t sub_id);
int store_sub_del(store *st, const char *client_id, const char *filter, size_t flen);
/* Deliveries: seq orders them within a session (the caller's counter). */
int store_delivery_add(store *st, const char *client_id, uint64_t seq, uint64_t msg_id, uint8_t qos,
                       bool retain, enum store_dstate state, uint16_t pid);
int store_delivery_update(store *st, const char *client_id, uint64_t seq, enum store_dstate state,
                          uint16_t pid);
int store_delivery_del(store *st, const char *client_id, uint64_t seq);
int store_qos2_in_add(store *st, const char *client_id, uint16_t pid);
int store_qos2_in_del(store *st, const char *client_id, uint16_t pid);

/* external_sync: make every commit returned so far durable (fdatasync of
 * the write-ahead log; checkpoints into the main file are synced by SQLite
 * itself). Touches only a file descriptor, never the database handle, so
 * it may run in another thread while the owner goes on. STORE_OK or
 * STORE_ERR_IO (errno is kept). */
int store_sync(store *st);

/* Operations waiting for store_commit. */
size_t store_pending(const store *st);

/*
 * store_commit -- apply the journal in one transaction and sync it.
 * STORE_OK: everything asked for so far is durable (also when nothing was
 * pending). STORE_ERR_IO: nothing of the journal is durable, the journal is
 * kept for the next call; store_errmsg() says why.
 */
int store_commit(store *st);

/* ---- reads (startup, reconnect) ------------------------------------------ */

typedef struct store_msg {
    uint64_t id;
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
    bool retain;
    const uint8_t *props; /* MQTT 5 property block (NULL, 0 = none) */
    size_t props_len;
    int64_t expires; /* wall-clock seconds (time()) when it expires, 0 = never */
} store_msg;

typedef struct {
    const char *client_id;
    const char *username; /* NULL = anonymous */
    uint32_t expiry_interval;
    uint16_t listener_port; /* its last listener (per_listener_settings), 0 = unknown */
} store_session;

typedef struct {
    const char *client_id;
    uint64_t seq;
    uint8_t qos;
    bool retain;
    enum store_dstate state;
    uint16_t pid;
    store_msg msg;
} store_delivery;

/* Callbacks return 0 to go on, non-zero to stop (that value is returned).
 * Pointers are valid only during the call. */
typedef struct {
    /* src NULL: no publisher recorded (a row from before schema 2) */
    int (*retained)(void *ud, const store_msg *m, const store_source *src);
    int (*session)(void *ud, const store_session *s);
    int (*sub)(void *ud, const char *client_id, const char *filter, uint8_t qos, uint32_t sub_id);
    int (*qos2_in)(void *ud, const char *client_id, uint16_t pid);
} store_load_cbs;

/* Walk everything but the deliveries (those are read per session, so an
 * offline queue does not have to live in memory). NULL callbacks are skipped.
 * Returns STORE_OK, a callback's non-zero value, or STORE_ERR_*. */
int store_load(store *st, const store_load_cbs *cbs, void *ud);

/* Deliveries of one session with seq > after_seq, in seq order, at most max
 * (0 = all). Returns how many were passed to fn (>= 0) or STORE_ERR_*. */
int store_deliveries(store *st, const char *client_id, uint64_t after_seq, size_t max,
                     int (*fn)(void *ud, const store_delivery *d), void *ud);

/* Counts for the startup log and $SYS. */
typedef struct {
    uint64_t messages, retained, sessions, subscriptions, deliveries, qos2_in;
    uint64_t max_seq; /* highest delivery seq in the file (to continue counting) */
} store_counts;
int store_count(store *st, store_counts *out);

#endif
