/*
 * conn.h -- connections as a transport: accept, read into a buffer, write a
 * buffer, TLS (tls/), deadlines, close. It knows no MQTT: what the bytes
 * mean is the business of the handler set at accept time (a small callback
 * table, the aeFileProc pattern), which the listener carries.
 *
 * Reads go into one shared buffer; the handler consumes what it can straight
 * from it and only the tail of an incomplete message is copied into the
 * connection's own buffer. Output is appended to the connection's buffer and
 * written once per loop iteration (before the loop sleeps), so many messages
 * become one send() and, over TLS, as few records as possible. A connection
 * is never freed inside its own callback: conn_close marks it and
 * conn_free_closed frees it before the loop sleeps.
 *
 * Ownership: a conn owns its fd, its tls_conn, its input/output buffers, its
 * close reason and the memory of its handler's object (ud, allocated with
 * it); the handler owns what that object points to (released in on_close).
 */
#ifndef SECBROKER_CONN_H
#define SECBROKER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/bbuf.h"
#include "broker/config.h"
#include "broker/err.h"

struct broker;
struct conn;
struct tls_server;
struct tls_client;
struct tls_conn;

/* What a connection calls up into. Every member but on_open is required. */
typedef struct conn_handler {
    /* Size of the handler's per-connection object: allocated zeroed together
     * with the connection (one allocation), c->ud points at it. */
    size_t ud_size;
    /* A new connection: initialise c->ud. BK_OK, or an error to refuse it. */
    int (*on_accept)(struct broker *b, struct conn *c);
    /* Bytes arrived: data[0..len) holds every byte not consumed yet. Returns
     * how many it consumed; the rest is kept and offered again with more. */
    size_t (*on_data)(struct conn *c, const uint8_t *data, size_t len);
    /* Bytes the message at data[0..len) needs in total, 0 while unknown: so
     * a large message is read in as few calls as possible. */
    size_t (*frame_need)(const uint8_t *data, size_t len);
    /* Periodic check (about 10 times a second) of the handler's deadlines. */
    void (*on_tick)(struct conn *c);
    /* The connection is going away (reason says why): release what ud
     * holds (ud itself goes with the connection). */
    void (*on_close)(struct conn *c, const char *reason);
    /* Outgoing connections only (conn_connect): connected and, over TLS,
     * handshake done; the handler may write now. NULL for listeners. */
    void (*on_open)(struct conn *c);
    /* Optional (NULL: never called). The output buffer was written out
     * while the handler still owes bytes (c->out_owed > 0): append more. */
    void (*on_drain)(struct conn *c);
} conn_handler;

/* An optional transport filter between the socket (after TLS) and the
 * handler: WebSockets (broker/ws_transport.c). It sees the raw bytes and
 * passes what they carry to c->h itself; conn knows nothing of its format.
 * Its per-connection object is allocated with the connection
 * (conn_filter_state). */
typedef struct conn_filter {
    size_t state_size;
    /* Bytes kept free in front of a drained output buffer, so on_flush can
     * put a header there without moving the output. */
    size_t headroom;
    /* Raw bytes in data[0..len) (writable: a filter may decode in place).
     * Returns how many it consumed; the rest is offered again with more. */
    size_t (*on_data)(struct broker *b, struct conn *c, uint8_t *data, size_t len);
    /* Before output goes to the socket: wrap the bytes the handler appended
     * since the last call, c->out[off + out_framed .. len), and set
     * c->out_framed = bbuf_used(&c->out). */
    void (*on_flush)(struct broker *b, struct conn *c);
    /* Replaces c->h->on_tick: the filter's own deadlines, then the handler's. */
    void (*on_tick)(struct broker *b, struct conn *c);
    /* conn_offer_input for the filter's own pending bytes. */
    void (*offer)(struct broker *b, struct conn *c);
    /* The connection is closing: a last message may still be appended to
     * c->out (it is flushed next); release what the state holds. Returns
     * true to linger: the handler is closed (on_close) but the socket stays
     * open, its input going to on_data, until on_data calls conn_close (the
     * peer answered, e.g. a WebSocket Close) or CONN_LINGER_SECONDS pass. */
    bool (*on_close)(struct broker *b, struct conn *c);
} conn_filter;

enum conn_state {
    CS_TLS_HANDSHAKE, /* TLS listener, handshake in progress */
    CS_OPEN,          /* bytes flow */
    CS_CLOSING,       /* marked; freed before the loop sleeps */
    CS_LINGER,        /* handler closed, the filter waits for the peer's goodbye */
    CS_CONNECTING,    /* outgoing (conn_connect): TCP connect in progress */
};

/* Upper bound of CS_LINGER. */
#define CONN_LINGER_SECONDS 2.0

/* The numbers of the output-buffer policy (conn_output_check). */
typedef struct conn_limits {
    uint64_t soft;         /* max_output_buffer */
    uint64_t hard;         /* output_buffer_hard_limit */
    uint32_t soft_seconds; /* output_buffer_soft_seconds */
    uint32_t slack;        /* one write may pass hard by this much (max_packet_size) */
} conn_limits;

typedef struct listener {
    int fd;
    listener_cfg *cfg;
    struct tls_server *tls;
    const conn_handler *handler; /* given to every connection it accepts */
    const conn_limits *limits;   /* for every connection it accepts */
    const conn_filter *filter;   /* NULL: bytes go straight to the handler */
    void *filter_opts;           /* the filter's per-listener options */
    uint32_t nconns;
    uint64_t ev_data; /* its epoll_event data (set by whoever registered it) */
    /* An episode at the open-files limit (EMFILE/ENFILE on accept): pending
     * connections are shed (accepted and closed at once with the reserve
     * descriptor), or the listener is paused until the next tick. */
    double fdlimit_since;  /* start of the episode (0 = none) */
    double fdlimit_last;   /* last time accept hit the limit */
    uint64_t fdlimit_shed; /* connections shed in this episode */
    bool paused;           /* out of epoll until the next tick */
} listener;

typedef struct conn {
    struct conn *prev, *next;  /* broker->conns */
    struct conn *pending_next; /* broker->write_pending list */
    struct conn *close_next;   /* broker->closing list */
    const conn_handler *h;
    void *ud; /* the handler's object (h->ud_size bytes after the conn) */
    int fd;
    enum conn_state state;
    listener *listener;
    struct tls_conn *tls;   /* NULL on plain listeners */
    char peer[64];          /* "1.2.3.4:5678" or "[::1]:5678" */
    bbuf in;                /* partial message only; empty most of the time */
    bbuf out;               /* coalesced output, flushed before sleep */
    uint64_t out_owed;      /* bytes the handler owes beyond out (held as references,
                               written in on_drain); the output policy counts them */
    bool write_pending;     /* on broker->write_pending */
    bool want_write;        /* EPOLLOUT registered */
    bool read_pending;      /* TLS: decrypted data left inside mbedTLS */
    bool lingered;          /* the handler's on_close ran (CS_LINGER) */
    bool outgoing;          /* made by conn_connect (a bridge), not accepted */
    double last_rx;         /* monotonic seconds of the last read */
    double last_tx;         /* monotonic seconds of the last write */
    double over_since;      /* output over the soft limit since (0 = not) */
    double deadline;        /* TLS handshake deadline */
    char *close_reason;     /* set by conn_close (allocated then) */
    size_t out_framed;      /* filter: output bytes from out.off already wrapped */
    bool close_logged;      /* the close was already reported: on_close stays quiet */
    struct conn *held_next; /* broker->held list */
    uint64_t sent_total;    /* output bytes written to the socket so far */
    /* Output from position hold_pos[i] (counted like sent_total) on waits
     * until epoch hold_epoch[i] is released: at most two epochs are open at
     * once (one being made durable, one gathering). */
    uint64_t hold_pos[2], hold_epoch[2];
    uint8_t nholds;
    struct tls_client *tls_client; /* outgoing over TLS: set up at connect */
} conn;

/* The listener's transport filter, NULL if none. */
static inline const conn_filter *conn_filter_of(const conn *c)
{
    return c->listener->filter;
}

/* The filter's state: filter->state_size bytes allocated after the handler's
 * object. */
static inline void *conn_filter_state(conn *c)
{
    return (char *)(c + 1) + c->h->ud_size;
}

/* Output over the soft limit (conn_output_check): messages that may be lost
 * should be dropped. */
#define CONN_OUT_SOFT 1

void conn_accept(struct broker *b, listener *l);
void conn_on_event(struct broker *b, conn *c, uint32_t events);
/* Mark c closing with a reason (formatted); it is freed before the loop
 * sleeps, after its handler's on_close. */
void conn_close(struct broker *b, conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conn_free_closed(struct broker *b);
void conn_flush_all(struct broker *b);
void conn_tick(struct broker *b);
void conn_service_read_pending(struct broker *b);

/* Append bytes to the output buffer and schedule a flush. BK_OK;
 * BK_ERR_FULL / BK_ERR_NOMEM / BK_ERR_CLOSED when c is (now) closing. */
int conn_write(struct broker *b, conn *c, const uint8_t *data, size_t len);
/* Like conn_write, but when nothing is queued the bytes go to the socket at
 * once and only a remainder is buffered: an idle client then never owns an
 * output buffer. */
int conn_write_now(struct broker *b, conn *c, const uint8_t *data, size_t len);
/* Out of line halves of the inline functions below. */
uint8_t *conn_reserve_failed(struct broker *b, conn *c);
void conn_schedule_write(struct broker *b, conn *c);
int conn_output_check_slow(struct broker *b, conn *c, size_t adding);

/* Room for n bytes at the end of the output buffer, written in place and
 * then committed with conn_commit (no intermediate copy). NULL when out of
 * memory (c is then closing). Inline: once per message per recipient. */
static inline uint8_t *conn_reserve(struct broker *b, conn *c, size_t n) BK_MUST_CHECK;
static inline uint8_t *conn_reserve(struct broker *b, conn *c, size_t n)
{
    if (bbuf_reserve(&c->out, n) != BK_OK) return conn_reserve_failed(b, c);
    return c->out.data + c->out.len;
}

static inline void conn_commit(struct broker *b, conn *c, size_t n)
{
    c->out.len += n;
    if (!c->write_pending) conn_schedule_write(b, c);
}

/* The output-buffer policy, in one place (Redis'
 * checkClientOutputBufferLimits), on the buffered plus owed bytes, with the
 * numbers of c's listener's
 * conn_limits: over the hard limit (plus `slack` for `adding` bytes about to
 * be written), or over the soft limit for longer than soft_seconds, closes
 * the connection (BK_ERR_FULL). Over the soft limit: CONN_OUT_SOFT.
 * Otherwise BK_OK. The common case (under the soft limit, no timer running)
 * is decided inline; the rest in conn_output_check_slow. */
static inline int conn_output_check(struct broker *b, conn *c, size_t adding)
{
    if (!c->over_since && bbuf_used(&c->out) + c->out_owed + adding <= c->listener->limits->soft)
        return BK_OK;
    return conn_output_check_slow(b, c, adding);
}

/* An outgoing connection to sa (a bridge): non-blocking connect, then over
 * TLS (cli not NULL) the client handshake, then the handler's on_open.
 * l is the bridge's own listener record (fd -1: handler, limits, cfg).
 * Connect and handshake together must finish within handshake_timeout.
 * On BK_OK *out is the connection (on_accept was called, ud is ready);
 * BK_ERR_IO (errno-based reason in err) or BK_ERR_NOMEM otherwise. */
int conn_connect(struct broker *b, listener *l, const void *sa, unsigned salen,
                 struct tls_client *cli, conn **out, char *err, size_t errlen) BK_MUST_CHECK;

/* Hold back c's output from here on until `epoch` is released: the first
 * `keep` bytes of its buffer may still be written (for acknowledgements
 * that may leave only once a change is durable). While held,
 * conn_write_now buffers too. A hold of the same epoch already in place
 * stays where it is. */
void conn_hold(struct broker *b, conn *c, size_t keep, uint64_t epoch);
/* Let the output held for epochs up to `epoch` go (at the next flush). */
void conn_release_holds(struct broker *b, uint64_t epoch);
/* A filter inserted `added` bytes (a frame header) at `at` bytes from the
 * front of c's unsent output: held positions behind it move with the data. */
void conn_note_inserted(conn *c, size_t at, size_t added);

/* Offer the buffered input to the handler again: after on_data consumed
 * less than it could (it held a message back) and can now go on. */
void conn_offer_input(struct broker *b, conn *c);

#endif
