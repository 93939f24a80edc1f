/*
 * secbench.c -- load generator for secbroker (and any MQTT 3.1.1 broker).
 *
 * One process, one thread, one epoll instance, thousands of non-blocking
 * connections: the broker under test gets the other core. Built on our own
 * codec (mqtt/mqtt.h) and TLS layer (tls/tls.h) only.
 *
 * Scenarios
 *   fan-in   N publishers -> 1 subscriber on "#"
 *   fan-out  1 publisher  -> M subscribers on one topic
 *   pairs    N publisher/subscriber pairs, one topic each
 *   storm    connections per second: TCP + TLS handshake (full or resumed)
 *            + CONNECT/CONNACK + DISCONNECT, -n attempts in flight
 *   idle     open N connections and hold them; the broker's RSS growth per
 *            connection (needs --pid)
 *   --crypto-bound: in-process TLS handshakes through tls/ (no broker):
 *            the server-side CPU cost of a full and a resumed handshake.
 *
 * Every message carries {run id, publisher index, sequence, send time
 * (CLOCK_MONOTONIC ns)} in its first 20 payload bytes, so each subscriber
 * counts deliveries per publisher sequence: delivered = distinct sequences
 * received, lost = expected - delivered, dup = a sequence seen again (or
 * late). Latency is now - send time, kept in a log-linear histogram (3%).
 *
 * Flow control (so a fast loop does not just flood the broker into
 * dropping): QoS 1 publishers keep at most --window PUBACKs outstanding;
 * at the maximum rate (QoS 0 and 1) a publisher also keeps at most
 * --e2e-window messages not yet seen by every subscriber (end-to-end
 * window: without it a QoS 1 publisher that gets its PUBACKs at once just
 * overflows the broker's per-subscriber queue), and no publisher ever has
 * more than 64 KiB of unflushed output. With --rate the
 * publishers send on schedule and whatever the broker drops is a loss.
 *
 * Output: a human-readable report, then ONE machine-readable line
 * "SECBENCH key=value ..." (always last on stdout) for scripts.
 * Exit status: 0 when the scenario ran (losses are reported, not fatal),
 * 1 when it could not run (connection refused, setup failure), 64 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_TOGGLE_COLLECT
#endif

#include "clients/core/wsc.h"
#include "mqtt/mqtt.h"
#include "tls/tls.h"

#define EXIT_USAGE 64
#define HDR_BYTES 20          /* run id, publisher, sequence, send time */
#define OUT_LIMIT (64 * 1024) /* unflushed output per publisher */
#define READ_BUF (256 * 1024)
#define MAX_EVENTS 1024
#define BATCH 64               /* messages per publisher per loop turn */
#define SETTLE_NS 1000000000LL /* idle: wait before reading RSS */
#define PING_EVERY_NS (100LL * 1000000000LL)
#define KEEPALIVE 300

/* ---- options ---------------------------------------------------------------- */

enum scenario { SC_NONE, SC_FANIN, SC_FANOUT, SC_PAIRS, SC_STORM, SC_IDLE };

static const char *const scenario_names[] = {"none", "fan-in", "fan-out", "pairs", "storm", "idle"};

static struct {
    const char *host;
    int port;
    bool tls;
    const char *cafile, *certfile, *keyfile, *ciphers, *tls_version;
    bool insecure, no_verify;
    const char *username, *password;
    int scenario;
    long n, m; /* 0 = scenario default */
    int qos;
    bool v5;     /* -V 5: MQTT 5.0 instead of 3.1.1 */
    long shared; /* fan-in: this many subscribers in one shared subscription group */
    long size;
    double rate; /* total messages/s over all publishers, 0 = max */
    double duration;
    long count;       /* messages per publisher; 0 = run for duration */
    long window;      /* QoS 1 PUBACK window, 0 = default */
    long e2e_window;  /* end-to-end window at max rate, -1 = default, 0 = off */
    long concurrency; /* connection attempts in flight */
    int pid;
    bool resumed;    /* storm: resumed handshakes */
    bool kind_given; /* --full or --resumed given (crypto-bound: only that kind) */
    int resume_mode; /* TLS_RESUME_TICKET or _SESSION_ID */
    const char *prefix;
    const char *filter; /* fan-in subscriber filter */
    double drain;       /* s without progress before giving up */
    bool crypto_bound;
    bool quiet;
    bool persistent; /* subscribers keep persistent sessions (clean session 0) */
    bool ws;         /* MQTT over WebSockets (ws://, wss:// with --tls) on path /mqtt */
} opt = {
    .host = "127.0.0.1",
    .qos = 0,
    .size = 64,
    .duration = 5,
    .pid = 0,
    .resume_mode = TLS_RESUME_TICKET,
    .prefix = "secbench",
    .filter = "#",
    .drain = 2.0,
    .e2e_window = -1,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: secbench --scenario fan-in|fan-out|pairs|storm|idle [options]\n"
            "       secbench --crypto-bound --cafile CA --cert SERVER.crt --key SERVER.key [-d S]\n"
            "\n"
            "  -h HOST            broker host (default 127.0.0.1)\n"
            "  -p PORT            broker port (default 1883, 8883 with --tls)\n"
            "  --tls              use TLS (also implied by --cafile/--cert/--key)\n"
            "  --ws               MQTT over WebSockets (ws, or wss with TLS) on path /mqtt,\n"
            "                     masked frames, one frame per flush\n"
            "  --cafile FILE      CA that signed the broker's certificate\n"
            "  --cert FILE --key FILE  client certificate (mutual TLS)\n"
            "  --ciphers LIST     e.g. ECDHE-ECDSA-AES128-GCM-SHA256\n"
            "  --tls-version V    tlsv1.2 (default) or tlsv1.3\n"
            "  --insecure         do not check the broker's host name\n"
            "  --no-verify        do not verify the broker's certificate at all\n"
            "                     (cheaper full handshakes for the client side)\n"
            "  -u USER -P PASS    credentials sent in CONNECT\n"
            "  --scenario S       fan-in (N pubs -> 1 sub on '#'), fan-out (1 pub -> M subs),\n"
            "                     pairs (N pub/sub pairs), storm (handshakes/s), idle (RSS/conn)\n"
            "  -n N               publishers (fan-in, pairs), connections (idle),\n"
            "                     attempts in flight (storm); default 10, 1000, 16\n"
            "  -m M               subscribers (fan-out); default 10\n"
            "  -q 0|1             QoS of publishes and subscriptions (default 0)\n"
            "  -V 311|5           MQTT version of every connection (default 311)\n"
            "  -s BYTES           payload size (default 64, at least %d)\n"
            "  --rate R           total publish rate in messages/s over all publishers\n"
            "                     (0 = as fast as the flow control allows; default 0)\n"
            "  -d SECONDS         publishing / storm / hold duration (default 5)\n"
            "  -c, --count K      messages per publisher instead of a duration\n"
            "                     (--crypto-bound: K full and K resumed handshakes;\n"
            "                     --full or --resumed: only that kind)\n"
            "  --window W         QoS 1: PUBACKs outstanding per publisher (default 32)\n"
            "  --e2e-window W     at max rate: messages per publisher not yet delivered\n"
            "                     to every subscriber (default 256, 0 = no limit)\n"
            "  --concurrency C    connection setups in flight (default 64)\n"
            "  --pid PID          broker process: report its RSS and CPU time\n"
            "  --full             storm: full handshakes (default)\n"
            "  --resumed          storm: resumed handshakes (session tickets)\n"
            "  --resume-mode M    ticket (default) or session-id\n"
            "  -t PREFIX          topic prefix (default secbench)\n"
            "  --filter F         fan-in subscriber filter (default '#')\n"
            "  --shared K         fan-in: K subscribers in one shared subscription\n"
            "                     ($share/secbench/FILTER), each message to one of them\n"
            "  --drain S          stop waiting for deliveries after S s without\n"
            "                     progress (default 2)\n"
            "  --quiet            only the SECBENCH summary line\n"
            "  --persistent       subscribers use persistent sessions (clean session 0):\n"
            "                     with persistence on, their deliveries are durable\n"
            "  --crypto-bound     measure tls/'s server-side handshake cost in-process\n"
            "  --help\n"
            "\n"
            "The last stdout line is machine-readable: SECBENCH key=value ...\n",
            HDR_BYTES);
}

/* ---- time, histogram ---------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t cpu_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Log-linear: 32 sub-buckets per power of two, ~3% resolution, max exact. */
#define H_SUB 5
#define H_BUCKETS ((64 - H_SUB + 1) << H_SUB)
typedef struct {
    uint64_t b[H_BUCKETS];
    uint64_t count;
    uint64_t max;
    double sum;
} histo;

static unsigned h_index(uint64_t v)
{
    if (v < (1u << H_SUB)) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned sub = (unsigned)(v >> (e - H_SUB)) & ((1u << H_SUB) - 1);
    return ((e - H_SUB + 1) << H_SUB) + sub;
}

static uint64_t h_value(unsigned idx)
{
    if (idx < (1u << H_SUB)) return idx;
    unsigned e = (idx >> H_SUB) + H_SUB - 1;
    unsigned sub = idx & ((1u << H_SUB) - 1);
    uint64_t lo = (uint64_t)((1u << H_SUB) + sub) << (e - H_SUB);
    uint64_t width = (uint64_t)1 << (e - H_SUB);
    return lo + width / 2;
}

static void h_add(histo *h, int64_t v)
{
    if (v < 0) v = 0;
    h->b[h_index((uint64_t)v)]++;
    h->count++;
    h->sum += (double)v;
    if ((uint64_t)v > h->max) h->max = (uint64_t)v;
}

static uint64_t h_pct(const histo *h, double p)
{
    if (h->count == 0) return 0;
    uint64_t want = (uint64_t)(p * (double)h->count + 0.999999);
    if (want < 1) want = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= want) {
            uint64_t v = h_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- the broker's /proc numbers ------------------------------------------------ */

typedef struct {
    bool ok;
    long rss_kb;
    double cpu_s; /* utime + stime */
} pstat;

static pstat proc_read(int pid)
{
    pstat s = {0};
    char path[64], line[512];
    FILE *f;
    if (pid <= 0) return s;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if ((f = fopen(path, "r")) == NULL) return s;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) s.rss_kb = strtol(line + 6, NULL, 10);
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if ((f = fopen(path, "r")) == NULL) return s;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may contain spaces: fields start after the last ')' */
    char *p = strrchr(buf, ')');
    if (p == NULL) return s;
    p += 2;
    unsigned long long ut = 0, st = 0;
    /* field 3 is the state; utime and stime are fields 14 and 15 */
    int field = 3;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++) {
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    long hz = sysconf(_SC_CLK_TCK);
    s.cpu_s = (double)(ut + st) / (double)(hz > 0 ? hz : 100);
    s.ok = true;
    return s;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- connections ------------------------------------------------------------------ */

enum cstate { CS_NEW, CS_TCP, CS_TLS, CS_WS, CS_CONNACK, CS_SUBACK, CS_READY, CS_DONE };
enum role { R_SUB, R_PUB, R_IDLE, R_STORM };

typedef struct conn conn;
struct conn {
    int fd;
    tls_conn *tls;
    uint8_t state;
    uint8_t role;
    bool tls_unflushed;  /* mbedTLS holds a sealed record not yet sent */
    bool io_wants_write; /* a TLS read/handshake step wants the fd writable */
    bool on_dirty, on_runq, closing;
    uint32_t evmask;
    uint32_t idx;
    conn *next_dirty, *next_runq, *next_close;
    uint8_t *in; /* tail of an incomplete packet */
    size_t in_len;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    int64_t t_begin; /* connection attempt started */
    int64_t last_send;
    /* publisher */
    uint32_t seq;      /* messages published */
    uint32_t inflight; /* QoS 1: PUBACKs outstanding */
    uint16_t next_pid;
    int64_t e2e; /* deliveries not yet seen by our subscribers */
    const char *topic;
    uint16_t topic_len;
    /* subscriber: next expected sequence of publishers [tr_base, tr_base + ntr) */
    uint32_t tr_base, ntr;
    uint32_t *tr_next;
    const char *sub_filter;
    /* --ws: out[ws_framed .. out_len) is MQTT not yet wrapped in a frame */
    size_t ws_framed;
    wsc_in ws_in;
    char ws_key[25];
};

static struct {
    int ep;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char peer[128];
    tls_client *tcli;
    uint32_t run_id;
    uint8_t *rbuf;
    conn *dirty, *runq, *closeq;
    long live;       /* sockets open */
    long connecting; /* attempts not yet READY */
    bool stop;       /* SIGINT/SIGTERM */
    char first_error[512];
    long errors; /* connections that failed or were dropped */
} g;

static struct {
    conn **pubs, **subs, **idles;
    long npubs, nsubs, nidle;
    long fanout; /* subscribers per message */
    long window, e2e;
    uint8_t *payload; /* template */
    size_t plen;
    int phase; /* 0 setup, 1 run, 2 drain, 3 done */
    int64_t t0, t_pub_end, t_last_recv, t_last_progress, t_end;
    double rate_pp; /* per publisher, messages/s */
    long setup_next_sub, setup_next_pub, ready_subs, ready_pubs;
    uint64_t sent, acked, delivered, dups, foreign, gaps;
    histo lat;
    /* storm */
    uint64_t hs_ok, hs_resumed, hs_fail;
    histo setup_lat;
} S;

static volatile sig_atomic_t g_sig;

static void on_signal(int sig)
{
    (void)sig;
    g_sig = 1;
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
    g.errors++;
    if (g.first_error[0] != '\0') return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.first_error, sizeof g.first_error, fmt, ap);
    va_end(ap);
}

static void out_reserve(conn *c, size_t more)
{
    if (c->out_off > 0 && c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        c->ws_framed = 0;
    }
    if (c->out_len + more <= c->out_cap) return;
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->ws_framed -= c->ws_framed >= c->out_off ? c->out_off : c->ws_framed;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap) return;
    }
    size_t cap = c->out_cap ? c->out_cap : 512;
    while (cap < c->out_len + more)
        cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (p == NULL) {
        fprintf(stderr, "secbench: out of memory\n");
        exit(1);
    }
    c->out = p;
    c->out_cap = cap;
}

static void mark_dirty(conn *c)
{
    if (!c->on_dirty && !c->closing) {
        c->on_dirty = true;
        c->next_dirty = g.dirty;
        g.dirty = c;
    }
}

static void wake(conn *c)
{
    if (!c->on_runq && !c->closing) {
        c->on_runq = true;
        c->next_runq = g.runq;
        g.runq = c;
    }
}

static void set_events(conn *c)
{
    uint32_t want;
    if (c->state == CS_TCP)
        want = EPOLLOUT;
    else
        want = EPOLLIN |
               ((c->out_off < c->out_len || c->tls_unflushed || c->io_wants_write) ? EPOLLOUT : 0);
    if (want == c->evmask) return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(g.ep, c->evmask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) == 0)
        c->evmask = want;
}

static void scenario_conn_closed(conn *c, bool failed);

/* Closes the socket now; the struct is reused or freed by the scenario
 * after the loop turn (never inside a callback that still uses it). */
static void conn_close(conn *c, bool failed)
{
    if (c->closing || c->fd < 0) return;
    c->closing = true;
    if (c->tls) {
        tls_conn_free(c->tls);
        c->tls = NULL;
    }
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->evmask = 0;
    g.live--;
    if (c->state != CS_READY && c->state != CS_DONE) g.connecting--;
    c->state = CS_DONE;
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = c->out_cap = 0;
    c->next_close = g.closeq;
    g.closeq = c;
    scenario_conn_closed(c, failed);
}

static void conn_fail(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_fail(conn *c, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    static const char *const roles[] = {"subscriber", "publisher", "idle", "storm"};
    note_error("%s %u: %s", roles[c->role], c->idx, why);
    conn_close(c, true);
}

/* Writes as much queued output as the socket takes. */
static uint32_t ws_mask_key(void)
{
    static uint32_t x = 2463534242u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

/* --ws: wrap the MQTT bytes queued since the last flush in one masked binary
 * frame (a client must mask, RFC 6455 5.3), as a browser's MQTT.js does per
 * write; the masking is part of the client's cost being measured. */
static void ws_wrap_out(conn *c)
{
    if (c->ws_framed < c->out_off) c->ws_framed = c->out_off;
    size_t n = c->out_len - c->ws_framed;
    if (n == 0) return;
    uint8_t hdr[WSC_HEADER_MAX];
    uint32_t mask = ws_mask_key();
    size_t hl = wsc_frame_header(hdr, n, mask);
    size_t start_rel = c->ws_framed - c->out_off;
    out_reserve(c, hl); /* may move the buffer's contents to the front */
    uint8_t *start = c->out + c->out_off + start_rel;
    memmove(start + hl, start, n);
    memcpy(start, hdr, hl);
    wsc_mask(start + hl, n, mask);
    c->out_len += hl;
    c->ws_framed = c->out_len;
}

static void conn_flush(conn *c)
{
    if (c->closing || c->state == CS_TCP) return;
    if (c->tls && !tls_conn_handshake_done(c->tls)) return;
    if (opt.ws && c->state != CS_WS) ws_wrap_out(c);
    while (c->out_off < c->out_len || c->tls_unflushed) {
        ssize_t n;
        size_t len = c->out_len - c->out_off;
        if (c->tls) {
            n = tls_conn_write(c->tls, c->out + c->out_off, len);
            if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
                c->tls_unflushed = true;
                break;
            }
            if (n < 0) {
                conn_fail(c, "%s", tls_conn_error(c->tls));
                return;
            }
            if (len == 0) {
                c->tls_unflushed = false;
                break;
            }
            /* a record may be sealed but still in mbedTLS: push it with len 0 */
            c->tls_unflushed = true;
        } else {
            n = send(c->fd, c->out + c->out_off, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                conn_fail(c, "send: %s", strerror(errno));
                return;
            }
        }
        c->out_off += (size_t)n;
        c->last_send = now_ns();
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        c->ws_framed = 0;
        /* idle and storm connections give their buffer back; busy ones keep
         * it (a large buffer freed and reallocated on every flush costs an
         * mmap, page faults and zeroing each time) */
        if (c->role == R_IDLE || c->role == R_STORM || c->out_cap > 4 * 1024 * 1024) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    }
    set_events(c);
}

static void send_packet_connect(conn *c)
{
    char id[64];
    static const char *const roles[] = {"sub", "pub", "idle", "storm"};
    snprintf(id, sizeof id, "sb%08x-%s-%u", g.run_id, roles[c->role], c->idx);
    mqtt_connect m;
    memset(&m, 0, sizeof m);
    m.protocol_name.ptr = (const uint8_t *)"MQTT";
    m.protocol_name.len = 4;
    m.protocol_level = 4;
    m.clean_session = !(opt.persistent && c->role == R_SUB);
    m.keepalive = KEEPALIVE;
    m.client_id.ptr = (const uint8_t *)id;
    m.client_id.len = (uint16_t)strlen(id);
    if (opt.username) {
        m.username_flag = true;
        m.username.ptr = (const uint8_t *)opt.username;
        m.username.len = (uint16_t)strlen(opt.username);
    }
    if (opt.password) {
        m.password_flag = true;
        m.password.ptr = (const uint8_t *)opt.password;
        m.password.len = (uint16_t)strlen(opt.password);
    }
    size_t w = 0;
    out_reserve(c, 512);
    m.protocol_level = opt.v5 ? 5 : 4;
    mqtt5_connect m5 = {.c = m};
    if ((opt.v5 ? mqtt5_encode_connect(c->out + c->out_len, c->out_cap - c->out_len, &m5, &w)
                : mqtt_encode_connect(c->out + c->out_len, c->out_cap - c->out_len, &m, &w)) !=
        MQTT_OK) {
        conn_fail(c, "cannot encode CONNECT");
        return;
    }
    c->out_len += w;
    c->state = CS_CONNACK;
    conn_flush(c);
}

/* Queues a 2- or 4-byte packet; later=true flushes it with the others
 * before the loop sleeps, false leaves the flush to the caller. */
static void send_simple(conn *c, enum mqtt_type type, uint16_t pid, bool later)
{
    size_t w = 0;
    out_reserve(c, 4);
    if (type == MQTT_PUBACK)
        mqtt_encode_ack(c->out + c->out_len, c->out_cap - c->out_len, type, pid, &w);
    else
        mqtt_encode_empty(c->out + c->out_len, c->out_cap - c->out_len, type, &w);
    c->out_len += w;
    if (later) mark_dirty(c);
}

/* --ws: the HTTP Upgrade request goes first, unframed; CONNECT follows the 101. */
static void send_ws_upgrade(conn *c)
{
    uint8_t nonce[16];
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = ws_mask_key();
        memcpy(nonce + i, &r, 4);
    }
    char req[WSC_REQUEST_MAX];
    size_t n = wsc_request(req, sizeof req, opt.host, opt.port, "/mqtt", nonce, c->ws_key);
    if (n == 0) {
        conn_fail(c, "WebSocket request too long");
        return;
    }
    out_reserve(c, n);
    memcpy(c->out + c->out_len, req, n);
    c->out_len += n;
    c->ws_framed = c->out_len;
    memset(&c->ws_in, 0, sizeof c->ws_in);
    c->state = CS_WS;
    conn_flush(c);
}

/* The transport is up: MQTT's CONNECT, or first the WebSocket upgrade. */
static void send_first(conn *c)
{
    if (opt.ws)
        send_ws_upgrade(c);
    else
        send_packet_connect(c);
}

static void conn_start_tls(conn *c)
{
    int r = tls_conn_connect(&c->tls, g.tcli, c->fd, g.peer);
    if (r != TLS_OK) {
        conn_fail(c, "TLS setup failed (%d)", r);
        return;
    }
    c->state = CS_TLS;
}

static void conn_handshake(conn *c)
{
    int r = tls_conn_handshake(c->tls);
    if (r == TLS_OK) {
        c->io_wants_write = false;
        if (c->role == R_STORM && tls_conn_resumed(c->tls)) S.hs_resumed++;
        send_first(c);
        return;
    }
    if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
        c->io_wants_write = r == TLS_WANT_WRITE;
        set_events(c);
        return;
    }
    conn_fail(c, "%s", tls_conn_error(c->tls));
}

/* Starts a non-blocking TCP connect; the rest follows from events. */
static void conn_start(conn *c)
{
    c->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->closing = false;
    c->evmask = 0;
    c->t_begin = now_ns();
    c->state = CS_TCP;
    g.connecting++;
    if (c->fd < 0) {
        c->state = CS_NEW;
        g.connecting--;
        note_error("socket: %s", strerror(errno));
        scenario_conn_closed(c, true);
        return;
    }
    g.live++;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&g.addr, g.addrlen) == 0) {
        c->state = CS_TLS;
        if (opt.tls) conn_start_tls(c);
        if (c->closing) return;
        if (opt.tls)
            conn_handshake(c);
        else
            send_first(c);
        return;
    }
    if (errno != EINPROGRESS) {
        conn_fail(c, "connect to %s: %s", g.peer, strerror(errno));
        return;
    }
    set_events(c);
}

static void on_tcp_connected(conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        conn_fail(c, "connect to %s: %s", g.peer, strerror(err));
        return;
    }
    if (opt.tls) {
        conn_start_tls(c);
        if (!c->closing) conn_handshake(c);
    } else {
        c->state = CS_CONNACK;
        send_first(c);
    }
}

/* ---- scenario hooks ------------------------------------------------------------- */

static void on_ready(conn *c);
static void on_publish(conn *c, const mqtt_publish *p, int64_t now);

static void send_subscribe(conn *c)
{
    mqtt_str f = {.ptr = (const uint8_t *)c->sub_filter, .len = (uint16_t)strlen(c->sub_filter)};
    uint8_t q = (uint8_t)opt.qos;
    size_t w = 0;
    out_reserve(c, 16 + f.len);
    if ((opt.v5 ? mqtt5_encode_subscribe(c->out + c->out_len, c->out_cap - c->out_len, 1, NULL, &f,
                                         &q, 1, &w)
                : mqtt_encode_subscribe(c->out + c->out_len, c->out_cap - c->out_len, 1, &f, &q, 1,
                                        &w)) != MQTT_OK) {
        conn_fail(c, "cannot encode SUBSCRIBE");
        return;
    }
    c->out_len += w;
    c->state = CS_SUBACK;
    mark_dirty(c);
}

/* The broker's packets at the version in use (-V). */
static int decode_connack(const mqtt_header *h, mqtt_connack *ca)
{
    if (!opt.v5) return mqtt_decode_connack(h, ca);
    mqtt5_connack c5;
    int r = mqtt5_decode_connack(h, &c5);
    ca->session_present = c5.session_present;
    ca->return_code = c5.reason;
    return r;
}

static int decode_suback(const mqtt_header *h, mqtt_suback *sa)
{
    if (!opt.v5) return mqtt_decode_suback(h, sa);
    mqtt5_suback s5;
    int r = mqtt5_decode_suback(h, &s5);
    sa->packet_id = s5.packet_id;
    sa->codes = s5.codes;
    sa->count = s5.count;
    return r;
}

static int decode_publish(const mqtt_header *h, mqtt_publish *p)
{
    if (!opt.v5) return mqtt_decode_publish(h, p);
    mqtt5_publish p5;
    int r = mqtt5_decode_publish(h, &p5);
    *p = p5.p;
    return r;
}

static int decode_ack(const mqtt_header *h, uint16_t *pid)
{
    if (!opt.v5) return mqtt_decode_ack(h, pid);
    mqtt5_ack a;
    int r = mqtt5_decode_ack(h, &a);
    *pid = a.packet_id;
    return r;
}

static void handle_packet(conn *c, const mqtt_header *h, int64_t now)
{
    switch (c->state) {
    case CS_CONNACK: {
        mqtt_connack ca;
        if (h->type != MQTT_CONNACK || decode_connack(h, &ca) != MQTT_OK) {
            conn_fail(c, "expected CONNACK, got %s", mqtt_type_name(h->type));
            return;
        }
        if (ca.return_code != 0) {
            conn_fail(c, "CONNACK refused: %s", mqtt_connack_string(ca.return_code));
            return;
        }
        if (c->role == R_SUB) {
            send_subscribe(c);
            return;
        }
        c->state = CS_READY;
        g.connecting--;
        on_ready(c);
        return;
    }
    case CS_SUBACK: {
        mqtt_suback sa;
        if (h->type != MQTT_SUBACK || decode_suback(h, &sa) != MQTT_OK || sa.count != 1) {
            conn_fail(c, "expected SUBACK, got %s", mqtt_type_name(h->type));
            return;
        }
        if (sa.codes[0] == MQTT_SUBACK_FAILURE) {
            conn_fail(c, "subscription to '%s' refused (SUBACK 0x80)", c->sub_filter);
            return;
        }
        c->state = CS_READY;
        g.connecting--;
        on_ready(c);
        return;
    }
    case CS_READY:
        break;
    default:
        return;
    }
    switch (h->type) {
    case MQTT_PUBLISH: {
        mqtt_publish p;
        if (decode_publish(h, &p) != MQTT_OK) {
            conn_fail(c, "malformed PUBLISH from the broker");
            return;
        }
        if (p.qos == 1) send_simple(c, MQTT_PUBACK, p.packet_id, true);
        on_publish(c, &p, now);
        return;
    }
    case MQTT_PUBACK: {
        uint16_t pid;
        if (decode_ack(h, &pid) != MQTT_OK) return;
        if (c->inflight > 0) {
            c->inflight--;
            S.acked++;
            S.t_last_progress = now;
            wake(c);
        }
        return;
    }
    case MQTT_PINGRESP:
        return;
    default:
        return;
    }
}

/* Frames and handles every complete packet of buf; returns bytes used. */
static size_t process_input(conn *c, const uint8_t *buf, size_t len, int64_t now)
{
    size_t used = 0;
    if (c->state == CS_WS) return 0; /* still the HTTP response: no MQTT yet */
    while (used < len && !c->closing) {
        mqtt_header h;
        size_t plen = 0;
        int r = mqtt_frame_level(buf + used, len - used, 0, opt.v5 ? 5 : 4, &h, &plen);
        if (r == MQTT_NEED_MORE) break;
        if (r != MQTT_OK) {
            conn_fail(c, "malformed packet from the broker: %s", mqtt_strerror(r));
            break;
        }
        handle_packet(c, &h, now);
        used += plen;
    }
    return used;
}

/* --ws: g.rbuf[raw_from .. *have) arrived from the socket: the 101 while
 * upgrading, then frames, decoded in place so that g.rbuf[0 .. *have) is
 * MQTT. 0, or -1 when the connection failed. */
static int ws_input(conn *c, size_t raw_from, size_t *have)
{
    char err[256];
    if (c->state == CS_WS) {
        size_t used = 0;
        int r = wsc_response(g.rbuf, *have, c->ws_key, &used, err, sizeof err);
        if (r > 0) return 0; /* the rest of the response is still to come */
        if (r < 0) {
            conn_fail(c, "%s", err);
            return -1;
        }
        memmove(g.rbuf, g.rbuf + used, *have - used);
        *have -= used;
        raw_from = 0;
        send_packet_connect(c);
        if (c->closing) return -1;
    }
    long m = wsc_unframe(&c->ws_in, g.rbuf + raw_from, *have - raw_from, err, sizeof err);
    if (m < 0) {
        conn_fail(c, "%s", err);
        return -1;
    }
    *have = raw_from + (size_t)m;
    return 0;
}

static void conn_read(conn *c)
{
    size_t have = c->in_len;
    if (have > 0) {
        memcpy(g.rbuf, c->in, have);
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
    }
    for (;;) {
        ssize_t n;
        if (have == READ_BUF) {
            conn_fail(c, "packet larger than %d bytes", READ_BUF);
            return;
        }
        if (c->tls) {
            n = tls_conn_read(c->tls, g.rbuf + have, READ_BUF - have);
            if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
                c->io_wants_write = n == TLS_WANT_WRITE;
                break;
            }
            if (n < 0) {
                if (c->role == R_STORM && c->state == CS_DONE) return;
                conn_fail(c, "%s", tls_conn_error(c->tls));
                return;
            }
            c->io_wants_write = false;
        } else {
            n = recv(c->fd, g.rbuf + have, READ_BUF - have, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                conn_fail(c, "recv: %s", strerror(errno));
                return;
            }
            if (n == 0) {
                conn_fail(c, "the broker closed the connection");
                return;
            }
        }
        size_t raw_from = have;
        have += (size_t)n;
        if (opt.ws && ws_input(c, raw_from, &have) != 0) return;
        size_t used = process_input(c, g.rbuf, have, now_ns());
        if (c->closing) return;
        if (used > 0 && used < have) memmove(g.rbuf, g.rbuf + used, have - used);
        have -= used;
    }
    if (have > 0) {
        c->in = malloc(have);
        if (c->in == NULL) {
            fprintf(stderr, "secbench: out of memory\n");
            exit(1);
        }
        memcpy(c->in, g.rbuf, have);
        c->in_len = have;
    }
    set_events(c);
}

static void conn_event(conn *c, uint32_t ev)
{
    if (c->closing) return;
    if (c->state == CS_TCP) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_tcp_connected(c);
        return;
    }
    if (c->state == CS_TLS) {
        conn_handshake(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(c);
    if (!c->closing && (ev & EPOLLOUT)) {
        conn_flush(c);
        if (c->role == R_PUB) wake(c);
    }
}

/* ---- publishing, delivery ------------------------------------------------------------ */

static void publish_one(conn *c, int64_t now)
{
    /* v5: one more byte, the empty property block (size 0) */
    size_t hl = mqtt_publish_header_size((uint8_t)opt.qos, c->topic_len, S.plen + opt.v5) + opt.v5;
    out_reserve(c, hl + S.plen);
    uint16_t pid = 0;
    if (opt.qos > 0) {
        if (++c->next_pid == 0) c->next_pid = 1;
        pid = c->next_pid;
    }
    size_t w = 0;
    if (opt.v5) {
        mqtt5_publish p5 = {.p = {.qos = (uint8_t)opt.qos,
                                  .topic = {(const uint8_t *)c->topic, c->topic_len},
                                  .packet_id = pid,
                                  .payload_len = S.plen}};
        mqtt5_encode_publish_header(c->out + c->out_len, c->out_cap - c->out_len, &p5, &w);
    } else {
        mqtt_encode_publish_header(c->out + c->out_len, c->out_cap - c->out_len, (uint8_t)opt.qos,
                                   false, false, (const uint8_t *)c->topic, c->topic_len, pid,
                                   S.plen, &w);
    }
    uint8_t *p = c->out + c->out_len + w;
    memcpy(p, S.payload, S.plen);
    uint32_t seq = c->seq;
    memcpy(p + 0, &g.run_id, 4);
    memcpy(p + 4, &c->idx, 4);
    memcpy(p + 8, &seq, 4);
    memcpy(p + 12, &now, 8);
    c->out_len += w + S.plen;
    c->seq++;
    S.sent++;
    c->e2e += S.fanout;
    if (opt.qos > 0) c->inflight++;
}

static bool pub_finished(const conn *c, int64_t now)
{
    if (opt.count > 0) return c->seq >= (uint64_t)opt.count;
    return now >= S.t_pub_end;
}

/* Publishes what the schedule and the flow control allow; true when the
 * publisher could send more right away (the loop must not sleep). */
static bool pump_pub(conn *c, int64_t now)
{
    if (c->state != CS_READY || c->closing || S.phase != 1 || pub_finished(c, now)) return false;
    uint64_t budget = BATCH;
    if (opt.rate > 0) {
        double due = S.rate_pp * (double)(now - S.t0) / 1e9 + 1.0;
        uint64_t allowed = (uint64_t)due;
        budget = allowed > c->seq ? allowed - c->seq : 0;
        if (budget > 4096) budget = 4096;
    }
    bool more = false;
    uint64_t did = 0;
    while (did < budget) {
        if (opt.count > 0 && c->seq >= (uint64_t)opt.count) break;
        if (opt.qos > 0 && c->inflight >= (uint32_t)S.window) break;
        if (S.e2e > 0 && opt.rate == 0 && c->e2e >= S.e2e * S.fanout) break;
        if (c->out_len - c->out_off > OUT_LIMIT) break;
        publish_one(c, now);
        did++;
    }
    if (did > 0) mark_dirty(c);
    if (did == budget && opt.rate == 0) more = true;
    return more;
}

static void on_publish(conn *c, const mqtt_publish *p, int64_t now)
{
    uint32_t rid, pub, seq;
    int64_t ts;
    if (p->payload_len < HDR_BYTES) {
        S.foreign++;
        return;
    }
    memcpy(&rid, p->payload, 4);
    memcpy(&pub, p->payload + 4, 4);
    memcpy(&seq, p->payload + 8, 4);
    memcpy(&ts, p->payload + 12, 8);
    if (rid != g.run_id || pub < c->tr_base || pub - c->tr_base >= c->ntr ||
        pub >= (uint32_t)S.npubs) {
        S.foreign++;
        return;
    }
    uint32_t *next = &c->tr_next[pub - c->tr_base];
    conn *pc = S.pubs[pub];
    S.t_last_recv = now;
    S.t_last_progress = now;
    if (opt.shared) { /* each member sees a part of every stream: no gap accounting */
        S.delivered++;
        pc->e2e--;
        h_add(&S.lat, now - ts);
        if (opt.rate == 0 && S.phase == 1) wake(pc);
        return;
    }
    if (seq >= *next) {
        uint32_t gap = seq - *next;
        S.gaps += gap;
        S.delivered++;
        *next = seq + 1;
        pc->e2e -= (int64_t)gap + 1;
        h_add(&S.lat, now - ts);
        if (opt.rate == 0 && S.phase == 1) wake(pc);
    } else {
        S.dups++;
    }
}

/* ---- scenario driver ------------------------------------------------------------- */

static conn *conn_new(int role, uint32_t idx)
{
    conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        fprintf(stderr, "secbench: out of memory\n");
        exit(1);
    }
    c->fd = -1;
    c->role = (uint8_t)role;
    c->idx = idx;
    return c;
}

static void start_more(void);

static void on_ready(conn *c)
{
    int64_t now = now_ns();
    switch (c->role) {
    case R_SUB:
        S.ready_subs++;
        break;
    case R_PUB:
        S.ready_pubs++;
        break;
    case R_IDLE:
        S.ready_subs++;
        h_add(&S.setup_lat, now - c->t_begin);
        break;
    case R_STORM:
        S.hs_ok++;
        h_add(&S.setup_lat, now - c->t_begin);
        /* DISCONNECT, then close: the broker sees a clean end of session */
        send_simple(c, MQTT_DISCONNECT, 0, false);
        conn_flush(c);
        if (!c->closing) {
            if (c->tls) tls_conn_close_notify(c->tls);
            conn_close(c, false);
        }
        return;
    }
    start_more();
}

static void scenario_conn_closed(conn *c, bool failed)
{
    if (c->role == R_STORM) {
        if (failed) S.hs_fail++;
        return;
    }
    if (S.phase < 3 && c->role != R_IDLE && !g.stop) {
        /* a pub/sub connection lost during the run is fatal for the numbers */
        if (S.phase == 0) g.stop = true;
    }
    if (c->role == R_IDLE) start_more();
}

/* Keeps up to --concurrency connection setups going. */
static void start_more(void)
{
    while (g.connecting < opt.concurrency && !g.stop) {
        if (S.setup_next_sub < S.nsubs) {
            conn_start(S.subs[S.setup_next_sub++]);
        } else if (S.ready_subs < S.nsubs && opt.scenario != SC_IDLE) {
            return; /* publishers only once every subscription is in place */
        } else if (S.setup_next_pub < S.npubs) {
            conn_start(S.pubs[S.setup_next_pub++]);
        } else if (S.setup_next_sub < S.nidle) {
            conn_start(S.idles[S.setup_next_sub++]);
        } else {
            return;
        }
    }
}

static void flush_dirty(void)
{
    while (g.dirty) {
        conn *c = g.dirty;
        g.dirty = c->next_dirty;
        c->on_dirty = false;
        conn_flush(c);
    }
}

static void reap_closed(void)
{
    while (g.closeq) {
        conn *c = g.closeq;
        g.closeq = c->next_close;
        if (c->role == R_STORM && !c->on_dirty && !c->on_runq) free(c);
    }
}

/* One loop turn: wait, dispatch, scenario work, flush. */
static void loop_once(int timeout_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    if (g.dirty || g.runq) timeout_ms = 0;
    int n = epoll_wait(g.ep, evs, MAX_EVENTS, timeout_ms);
    if (n < 0 && errno != EINTR) {
        perror("secbench: epoll_wait");
        exit(1);
    }
    if (g_sig) g.stop = true;
    for (int i = 0; i < n; i++)
        conn_event(evs[i].data.ptr, evs[i].events);
    reap_closed();
}

static void run_pubs(int64_t now)
{
    if (S.phase != 1) return;
    if (opt.rate > 0) {
        for (long i = 0; i < S.npubs; i++)
            pump_pub(S.pubs[i], now);
        return;
    }
    conn *q = g.runq;
    g.runq = NULL;
    while (q) {
        conn *c = q;
        q = c->next_runq;
        c->on_runq = false;
        if (pump_pub(c, now)) wake(c);
    }
}

static void send_pings(int64_t now)
{
    static int64_t last;
    if (now - last < 1000000000LL) return;
    last = now;
    conn **lists[3] = {S.pubs, S.subs, S.idles};
    long counts[3] = {S.npubs, S.nsubs, S.nidle};
    for (int l = 0; l < 3; l++)
        for (long i = 0; i < counts[l]; i++) {
            conn *c = lists[l][i];
            if (c->state == CS_READY && !c->closing && now - c->last_send > PING_EVERY_NS) {
                send_simple(c, MQTT_PINGREQ, 0, true);
                c->last_send = now;
            }
        }
}

static bool all_delivered(void)
{
    uint64_t expected = S.sent * (uint64_t)(opt.scenario == SC_FANOUT ? S.nsubs : 1);
    if (S.delivered + S.gaps < expected) return false;
    return opt.qos == 0 || S.acked >= S.sent;
}

static const char *topic_for(long i)
{
    char buf[256];
    if (opt.scenario == SC_FANIN)
        snprintf(buf, sizeof buf, "%s/in/%ld", opt.prefix, i);
    else if (opt.scenario == SC_FANOUT)
        snprintf(buf, sizeof buf, "%s/out", opt.prefix);
    else
        snprintf(buf, sizeof buf, "%s/pair/%ld", opt.prefix, i);
    char *s = strdup(buf);
    if (s == NULL) exit(1);
    return s;
}

static void print_kv_common(FILE *out)
{
    fprintf(out, "SECBENCH scenario=%s tls=%d", scenario_names[opt.scenario], opt.tls ? 1 : 0);
}

static void report_broker(FILE *out, const pstat *a, const pstat *b, double wall)
{
    if (!a->ok || !b->ok) {
        fprintf(out, " broker_rss_kb=- broker_cpu_s=- broker_cpu_pct=-");
        return;
    }
    double cpu = b->cpu_s - a->cpu_s;
    fprintf(out,
            " broker_rss_kb=%ld broker_rss_before_kb=%ld broker_cpu_s=%.2f broker_cpu_pct=%.1f",
            b->rss_kb, a->rss_kb, cpu, wall > 0 ? 100.0 * cpu / wall : 0.0);
}

/* The fan-in subscribers' filter: --filter, in a $share group with --shared. */
static const char *fanin_filter(void)
{
    static char shared_filter[512];
    if (!opt.shared) return opt.filter;
    snprintf(shared_filter, sizeof shared_filter, "$share/secbench/%s", opt.filter);
    return shared_filter;
}

/* The connections of a messaging scenario: who publishes where, who
 * subscribes to what. 0 or 1 when out of memory. */
static int messaging_plan(void)
{
    long n = opt.n ? opt.n : 10, m = opt.m ? opt.m : 10;
    switch (opt.scenario) {
    case SC_FANIN:
        S.npubs = n;
        S.nsubs = opt.shared ? opt.shared : 1;
        S.fanout = 1;
        break;
    case SC_FANOUT:
        S.npubs = 1;
        S.nsubs = m;
        S.fanout = m;
        break;
    default:
        S.npubs = n;
        S.nsubs = n;
        S.fanout = 1;
        break;
    }
    S.window = opt.window ? opt.window : 32;
    S.e2e = opt.e2e_window >= 0 ? opt.e2e_window : 256;
    S.plen = opt.size < HDR_BYTES ? HDR_BYTES : (size_t)opt.size;
    S.payload = malloc(S.plen);
    if (S.payload == NULL) return 1;
    for (size_t i = 0; i < S.plen; i++)
        S.payload[i] = (uint8_t)('a' + i % 26);
    S.pubs = calloc((size_t)S.npubs, sizeof *S.pubs);
    S.subs = calloc((size_t)S.nsubs, sizeof *S.subs);
    if (!S.pubs || !S.subs) return 1;
    for (long i = 0; i < S.npubs; i++) {
        conn *c = S.pubs[i] = conn_new(R_PUB, (uint32_t)i);
        c->topic = topic_for(i);
        c->topic_len = (uint16_t)strlen(c->topic);
    }
    for (long i = 0; i < S.nsubs; i++) {
        conn *c = S.subs[i] = conn_new(R_SUB, (uint32_t)i);
        if (opt.scenario == SC_FANIN) {
            c->tr_base = 0;
            c->ntr = (uint32_t)S.npubs;
            c->sub_filter = fanin_filter();
        } else if (opt.scenario == SC_FANOUT) {
            c->tr_base = 0;
            c->ntr = 1;
            c->sub_filter = S.pubs[0]->topic;
        } else {
            c->tr_base = (uint32_t)i;
            c->ntr = 1;
            c->sub_filter = S.pubs[i]->topic;
        }
        c->tr_next = calloc(c->ntr, sizeof *c->tr_next);
        if (c->tr_next == NULL) return 1;
    }
    S.rate_pp = opt.rate / (double)S.npubs;
    return 0;
}

/* Connect and subscribe everyone; the seconds it took, or -1. */
static double messaging_connect(void)
{
    int64_t t_setup = now_ns();
    start_more();
    while (!g.stop && (S.ready_subs < S.nsubs || S.ready_pubs < S.npubs)) {
        loop_once(100);
        start_more();
        flush_dirty();
        if (now_ns() - t_setup > 120LL * 1000000000LL) {
            note_error("setup took longer than 120 s");
            g.stop = true;
        }
    }
    if (g.stop) {
        fprintf(stderr, "secbench: setup failed: %s\n",
                g.first_error[0] ? g.first_error : "interrupted");
        return -1;
    }
    return (double)(now_ns() - t_setup) / 1e9;
}

/* Publish for the duration (phase 1), then wait for the deliveries
 * (phase 2). Returns when the drain began (0 if it never did). */
static int64_t messaging_loop(void)
{
    int64_t t_drain = 0;

    S.t0 = now_ns();
    S.t_pub_end = S.t0 + (int64_t)(opt.duration * 1e9);
    S.t_last_progress = S.t0;
    S.phase = 1;
    for (long i = 0; i < S.npubs; i++)
        wake(S.pubs[i]);
    for (;;) {
        int64_t now = now_ns();
        if (S.phase == 1) {
            bool all_done = true;
            for (long i = 0; i < S.npubs && all_done; i++)
                if (S.pubs[i]->state == CS_READY && !pub_finished(S.pubs[i], now)) all_done = false;
            if (all_done || g.stop) {
                S.phase = 2;
                t_drain = now;
                S.t_last_progress = now;
                g.stop = false;
            }
        }
        if (S.phase == 2) {
            if (all_delivered() || g.stop) break;
            if (now - S.t_last_progress > (int64_t)(opt.drain * 1e9)) break;
            if (now - t_drain > 60LL * 1000000000LL) break;
        }
        run_pubs(now);
        send_pings(now);
        flush_dirty();
        /* on a schedule, come back every millisecond; otherwise events
         * (PUBACKs, deliveries, writable sockets) wake the publishers */
        loop_once(S.phase == 1 && opt.rate > 0 ? 1 : 10);
    }
    S.t_end = now_ns();
    return t_drain;
}

/* The figures of one messaging run, as the report prints them. */
typedef struct {
    double setup_s, pub_s, deliv_s, wall, rate, self_cpu;
    uint64_t expected, lost;
    pstat b0, b1;
} msg_figures;

static void messaging_print_text(const msg_figures *f)
{
    printf("scenario %s, %s, QoS %d, payload %zu bytes, %ld publisher(s), %ld subscriber(s)\n",
           scenario_names[opt.scenario], opt.tls ? "TLS" : "plain TCP", opt.qos, S.plen, S.npubs,
           S.nsubs);
    printf("  setup         %.2f s (connect + CONNACK + SUBACK of %ld connections)\n", f->setup_s,
           S.npubs + S.nsubs);
    if (opt.rate > 0)
        printf("  target rate   %.0f msg/s in total\n", opt.rate);
    else if (opt.qos)
        printf("  flow control  PUBACK window %ld, end-to-end window %ld per publisher\n", S.window,
               S.e2e);
    else
        printf("  flow control  end-to-end window %ld per publisher\n", S.e2e);
    printf("  published     %" PRIu64 " in %.2f s (%.0f msg/s)\n", S.sent, f->pub_s,
           S.sent / f->pub_s);
    if (opt.qos) printf("  acknowledged  %" PRIu64 " PUBACKs\n", S.acked);
    printf("  delivered     %" PRIu64 " of %" PRIu64 " expected: %.0f msg/s (%.2f s to the last)\n",
           S.delivered, f->expected, f->rate, f->deliv_s);
    printf("  lost          %" PRIu64 " (%.3f%%), duplicates %" PRIu64 ", foreign %" PRIu64 "\n",
           f->lost, f->expected ? 100.0 * (double)f->lost / (double)f->expected : 0.0, S.dups,
           S.foreign);
    printf("  latency       p50 %.1f us, p99 %.1f us, max %.1f us, mean %.1f us\n",
           h_pct(&S.lat, 0.50) / 1e3, h_pct(&S.lat, 0.99) / 1e3, S.lat.max / 1e3,
           S.lat.count ? S.lat.sum / (double)S.lat.count / 1e3 : 0.0);
    if (f->b0.ok && f->b1.ok)
        printf("  broker        pid %d: CPU %.2f s (%.0f%% of one core), RSS %ld kB (was %ld "
               "kB)\n",
               opt.pid, f->b1.cpu_s - f->b0.cpu_s, 100.0 * (f->b1.cpu_s - f->b0.cpu_s) / f->wall,
               f->b1.rss_kb, f->b0.rss_kb);
    printf("  secbench      CPU %.0f%% of one core\n", 100.0 * f->self_cpu / f->wall);
    if (g.errors)
        printf("  errors        %ld connection(s) failed; first: %s\n", g.errors, g.first_error);
}

static void messaging_print_kv(const msg_figures *f)
{
    print_kv_common(stdout);
    printf(" qos=%d size=%zu pubs=%ld subs=%ld rate=%.0f window=%ld e2e_window=%ld duration_s=%.3f "
           "sent=%" PRIu64 " acked=%" PRIu64 " expected=%" PRIu64 " delivered=%" PRIu64
           " lost=%" PRIu64 " dup=%" PRIu64 " foreign=%" PRIu64
           " msgs_per_s=%.0f pub_per_s=%.0f lat_p50_us=%.1f lat_p99_us=%.1f"
           " lat_max_us=%.1f",
           opt.qos, S.plen, S.npubs, S.nsubs, opt.rate, S.window, S.e2e, f->deliv_s, S.sent,
           S.acked, f->expected, S.delivered, f->lost, S.dups, S.foreign, f->rate,
           S.sent / f->pub_s, h_pct(&S.lat, 0.50) / 1e3, h_pct(&S.lat, 0.99) / 1e3,
           S.lat.max / 1e3);
    report_broker(stdout, &f->b0, &f->b1, f->wall);
    printf(" bench_cpu_pct=%.1f errors=%ld\n", 100.0 * f->self_cpu / f->wall, g.errors);
    fflush(stdout);
}

static int run_messaging(void)
{
    msg_figures f;

    memset(&f, 0, sizeof f);
    if (messaging_plan() != 0) return 1;
    if ((f.setup_s = messaging_connect()) < 0) return 1;
    f.b0 = proc_read(opt.pid);
    double self0 = self_cpu_s();
    int64_t t_drain = messaging_loop();
    f.b1 = proc_read(opt.pid);
    f.self_cpu = self_cpu_s() - self0;
    S.phase = 3;

    f.expected = S.sent * (uint64_t)(opt.scenario == SC_FANOUT ? S.nsubs : 1);
    f.lost = f.expected > S.delivered ? f.expected - S.delivered : 0;
    int64_t t_pub = t_drain ? t_drain - S.t0 : S.t_end - S.t0;
    int64_t t_deliv = S.t_last_recv > S.t0 ? S.t_last_recv - S.t0 : 1;
    f.pub_s = (double)t_pub / 1e9;
    f.deliv_s = (double)t_deliv / 1e9;
    f.wall = (double)(S.t_end - S.t0) / 1e9;
    f.rate = S.delivered / f.deliv_s;
    if (!opt.quiet) messaging_print_text(&f);
    messaging_print_kv(&f);
    return 0;
}

/* ---- storm ------------------------------------------------------------------------ */

static int64_t storm_end;

static void storm_fill(int64_t now)
{
    static uint32_t next_idx;
    while (g.connecting < opt.n && now < storm_end && !g.stop) {
        conn *c = conn_new(R_STORM, next_idx++);
        conn_start(c);
        reap_closed();
    }
}

/* One connection before the storm, so a resumed storm has a session to
 * offer; the counters start again from zero. 0 or 1 if it failed. */
static int storm_warmup(void)
{
    storm_end = now_ns() + 10LL * 1000000000LL;
    long keep_n = opt.n;
    opt.n = 1;
    storm_fill(now_ns());
    while (S.hs_ok + S.hs_fail < 1 && !g.stop) {
        loop_once(100);
        flush_dirty();
    }
    if (S.hs_ok < 1) {
        fprintf(stderr, "secbench: storm: the first connection failed: %s\n", g.first_error);
        return 1;
    }
    opt.n = keep_n;
    memset(&S.setup_lat, 0, sizeof S.setup_lat);
    S.hs_ok = S.hs_resumed = S.hs_fail = 0;
    g.errors = 0;
    g.first_error[0] = '\0';
    return 0;
}

static int run_storm(void)
{
    if (opt.n == 0) opt.n = 16;
    if (opt.tls)
        tls_client_set_resume(g.tcli,
                              opt.resumed ? (enum tls_resume)opt.resume_mode : TLS_RESUME_OFF);
    if (storm_warmup() != 0) return 1;

    pstat b0 = proc_read(opt.pid);
    double self0 = self_cpu_s();
    S.t0 = now_ns();
    storm_end = S.t0 + (int64_t)(opt.duration * 1e9);
    for (;;) {
        int64_t now = now_ns();
        storm_fill(now);
        if ((now >= storm_end && g.connecting == 0) || g.stop) break;
        if (now >= storm_end + 30LL * 1000000000LL) break;
        flush_dirty();
        loop_once(10);
    }
    S.t_end = now_ns();
    pstat b1 = proc_read(opt.pid);
    double self1 = self_cpu_s();
    double wall = (double)(S.t_end - S.t0) / 1e9;
    double rate = S.hs_ok / wall;
    double bcpu = b1.ok && b0.ok ? b1.cpu_s - b0.cpu_s : -1;
    const char *kind = !opt.tls      ? "plain TCP connect"
                       : opt.resumed ? "resumed TLS handshake"
                                     : "full TLS handshake";
    if (!opt.quiet) {
        printf("scenario storm: %s + CONNECT/CONNACK + DISCONNECT, %ld in flight, %.1f s\n", kind,
               opt.n, wall);
        printf("  completed     %" PRIu64 " (%.0f/s), failed %" PRIu64 "\n", S.hs_ok, rate,
               S.hs_fail);
        if (opt.tls) printf("  resumed       %" PRIu64 " of %" PRIu64 "\n", S.hs_resumed, S.hs_ok);
        printf("  setup time    p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
               h_pct(&S.setup_lat, 0.5) / 1e6, h_pct(&S.setup_lat, 0.99) / 1e6,
               S.setup_lat.max / 1e6);
        if (bcpu >= 0 && S.hs_ok)
            printf("  broker        CPU %.2f s (%.0f%% of one core): %.0f us per connection -> at "
                   "most %.0f/s "
                   "on one core\n",
                   bcpu, 100 * bcpu / wall, 1e6 * bcpu / S.hs_ok, bcpu > 0 ? S.hs_ok / bcpu : 0.0);
        printf("  secbench      CPU %.0f%% of one core%s\n", 100.0 * (self1 - self0) / wall,
               (self1 - self0) / wall > 0.9 ? " (the load generator is the bottleneck)" : "");
        if (g.errors) printf("  errors        %ld; first: %s\n", g.errors, g.first_error);
    }
    print_kv_common(stdout);
    printf(" mode=%s inflight=%ld duration_s=%.3f connections=%" PRIu64 " resumed=%" PRIu64
           " failed=%" PRIu64
           " conn_per_s=%.1f setup_p50_ms=%.3f setup_p99_ms=%.3f setup_max_ms=%.3f",
           !opt.tls      ? "plain"
           : opt.resumed ? "resumed"
                         : "full",
           opt.n, wall, S.hs_ok, S.hs_resumed, S.hs_fail, rate, h_pct(&S.setup_lat, 0.5) / 1e6,
           h_pct(&S.setup_lat, 0.99) / 1e6, S.setup_lat.max / 1e6);
    report_broker(stdout, &b0, &b1, wall);
    if (bcpu > 0 && S.hs_ok)
        printf(" broker_us_per_conn=%.1f broker_bound_per_s=%.0f", 1e6 * bcpu / S.hs_ok,
               S.hs_ok / bcpu);
    else
        printf(" broker_us_per_conn=- broker_bound_per_s=-");
    printf(" bench_cpu_pct=%.1f errors=%ld\n", 100.0 * (self1 - self0) / wall, g.errors);
    fflush(stdout);
    return 0;
}

/* ---- idle --------------------------------------------------------------------------- */

static void idle_report(double setup_s, long held, long still, const pstat *b0, const pstat *b1,
                        const pstat *b2)
{
    double per =
        (b0->ok && b1->ok && held) ? (double)(b1->rss_kb - b0->rss_kb) * 1024.0 / held : -1;
    if (!opt.quiet) {
        printf("scenario idle: %ld %s connections, held %.1f s\n", S.nidle,
               opt.tls ? "TLS" : "plain TCP", opt.duration);
        printf("  connected     %ld in %.2f s (%.0f/s), failed %ld, still open at the end %ld\n",
               held, setup_s, held / setup_s, g.errors, still);
        if (b0->ok && b1->ok)
            printf("  broker RSS    %ld kB before, %ld kB with %ld connections, %ld kB at the end: "
                   "%.0f bytes per connection\n",
                   b0->rss_kb, b1->rss_kb, held, b2->rss_kb, per);
        if (g.errors) printf("  errors        first: %s\n", g.first_error);
    }
    print_kv_common(stdout);
    printf(" conns=%ld held=%ld still=%ld failed=%ld setup_s=%.3f conn_per_s=%.1f", S.nidle, held,
           still, g.errors, setup_s, held / setup_s);
    if (b0->ok && b1->ok)
        printf(" rss_before_kb=%ld rss_after_kb=%ld rss_end_kb=%ld bytes_per_conn=%.0f", b0->rss_kb,
               b1->rss_kb, b2->rss_kb, per);
    else
        printf(" rss_before_kb=- rss_after_kb=- rss_end_kb=- bytes_per_conn=-");
    printf(" errors=%ld\n", g.errors);
    fflush(stdout);
}

static int run_idle(void)
{
    S.nidle = opt.n ? opt.n : 1000;
    S.idles = calloc((size_t)S.nidle, sizeof *S.idles);
    if (S.idles == NULL) return 1;
    for (long i = 0; i < S.nidle; i++)
        S.idles[i] = conn_new(R_IDLE, (uint32_t)i);
    if (opt.tls && opt.resumed)
        tls_client_set_resume(g.tcli, (enum tls_resume)opt.resume_mode);
    else if (opt.tls)
        tls_client_set_resume(g.tcli, TLS_RESUME_OFF);

    pstat b0 = proc_read(opt.pid);
    int64_t t0 = now_ns();
    if (opt.tls && opt.resumed) {
        /* one full handshake first, so that every other one can resume */
        long conc = opt.concurrency;
        opt.concurrency = 1;
        start_more();
        while (!g.stop && S.ready_subs == 0 && g.errors == 0) {
            loop_once(100);
            flush_dirty();
        }
        opt.concurrency = conc;
    }
    start_more();
    while (!g.stop && S.setup_next_sub < S.nidle) {
        loop_once(100);
        start_more();
        flush_dirty();
    }
    while (!g.stop && g.connecting > 0) {
        loop_once(100);
        flush_dirty();
        if (now_ns() - t0 > 300LL * 1000000000LL) break;
    }
    int64_t t_conn = now_ns();
    long held = 0;
    for (long i = 0; i < S.nidle; i++)
        if (S.idles[i]->state == CS_READY) held++;
    /* let the broker finish whatever it does after CONNACK (logs, frees) */
    while (!g.stop && now_ns() - t_conn < SETTLE_NS) {
        loop_once(100);
        flush_dirty();
    }
    pstat b1 = proc_read(opt.pid);
    int64_t hold_end = now_ns() + (int64_t)(opt.duration * 1e9);
    while (!g.stop && now_ns() < hold_end) {
        send_pings(now_ns());
        flush_dirty();
        loop_once(100);
    }
    long still = 0;
    for (long i = 0; i < S.nidle; i++)
        if (S.idles[i]->state == CS_READY && !S.idles[i]->closing) still++;
    pstat b2 = proc_read(opt.pid);
    idle_report((double)(t_conn - t0) / 1e9, held, still, &b0, &b1, &b2);
    for (long i = 0; i < S.nidle; i++) {
        conn *c = S.idles[i];
        if (c->state == CS_READY && !c->closing) {
            send_simple(c, MQTT_DISCONNECT, 0, false);
            conn_flush(c);
        }
    }
    return 0;
}

/* ---- crypto bound: in-process handshakes through tls/ ----------------------------- */

/* One application byte from server to client after the handshake: a TLS 1.3
 * server sends its NewSessionTicket then (its cost is part of the server's
 * handshake) and the client takes the ticket in on the way to the byte. */
/* The server side's work in --crypto-bound: its CPU time is added up, and
 * under `valgrind --tool=callgrind --collect-atstart=no` only it is counted
 * (exact instructions per handshake on a noisy machine). */
static bool crypto_counting;
static int64_t srv_t0;
static void srv_begin(void)
{
    if (crypto_counting) CALLGRIND_TOGGLE_COLLECT;
    srv_t0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
}
static void srv_end(int64_t *srv_ns)
{
    *srv_ns += cpu_ns(CLOCK_THREAD_CPUTIME_ID) - srv_t0;
    if (crypto_counting) CALLGRIND_TOGGLE_COLLECT;
}

/* One application byte from server to client after the handshake: a TLS 1.3
 * server sends its NewSessionTicket then (its cost is part of the server's
 * handshake) and the client takes the ticket in on the way to the byte. */
static int crypto_first_byte(tls_conn *s, tls_conn *c, int64_t *srv_ns)
{
    uint8_t b = 'x';
    srv_begin();
    ssize_t w = tls_conn_write(s, &b, 1);
    while (w == TLS_WANT_WRITE)
        w = tls_conn_write(s, NULL, 0);
    srv_end(srv_ns);
    if (w < 0) return -1;
    for (int turns = 0; turns < 100; turns++) {
        ssize_t r = tls_conn_read(c, &b, 1);
        if (r == 1) return 0;
        if (r != TLS_WANT_READ) break;
    }
    fprintf(stderr, "secbench: crypto-bound: no application data after the handshake: %s\n",
            tls_conn_error(c));
    return -1;
}

static int crypto_round(tls_server *srv, tls_client *cli, int64_t *srv_ns, int64_t *cli_ns,
                        bool *resumed)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return -1;
    tls_conn *s = NULL, *c = NULL;
    int rc = -1;
    int64_t setup_ns = 0; /* connection setup and teardown: callgrind only */
    srv_begin();
    int rc_a = tls_conn_accept(&s, srv, sv[0], "server");
    srv_end(&setup_ns);
    if (rc_a != TLS_OK || tls_conn_connect(&c, cli, sv[1], "client") != TLS_OK) goto out;
    for (int turns = 0; turns < 1000; turns++) {
        int64_t a = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
        int rc_c = tls_conn_handshake(c);
        *cli_ns += cpu_ns(CLOCK_THREAD_CPUTIME_ID) - a;
        srv_begin();
        int rc_s = tls_conn_handshake(s);
        srv_end(srv_ns);
        if (rc_c < 0 || rc_s < 0) {
            fprintf(stderr, "secbench: crypto-bound handshake failed: client: %s; server: %s\n",
                    tls_conn_error(c), tls_conn_error(s));
            goto out;
        }
        if (rc_c == TLS_OK && rc_s == TLS_OK) {
            *resumed = tls_conn_resumed(s);
            rc = crypto_first_byte(s, c, srv_ns);
            break;
        }
    }
out:
    tls_conn_free(c);
    srv_begin();
    tls_conn_free(s);
    srv_end(&setup_ns);
    close(sv[0]);
    close(sv[1]);
    return rc;
}

/* res[kind][count, server s, client s] -> the report; a kind not run is "-" */
static void crypto_report(double res[2][3], const char *ciphers)
{
    static const char *const kinds[2] = {"full", "resumed"};
    if (!opt.quiet) {
        printf("crypto bound (%s, %s, in-process through tls/, one core):\n", tls_library_version(),
               ciphers);
        for (int k = 0; k < 2; k++)
            if (res[k][0] > 0)
                printf("  %-7s handshake  server %.0f us -> %.0f handshakes/s per core; "
                       "client %.0f us\n",
                       kinds[k], 1e6 * res[k][1] / res[k][0], res[k][0] / res[k][1],
                       1e6 * res[k][2] / res[k][0]);
    }
    printf("SECBENCH scenario=crypto-bound");
    for (int k = 0; k < 2; k++) {
        if (res[k][0] > 0)
            printf(" %s_srv_us=%.1f %s_srv_per_s=%.0f %s_cli_us=%.1f", kinds[k],
                   1e6 * res[k][1] / res[k][0], kinds[k], res[k][0] / res[k][1], kinds[k],
                   1e6 * res[k][2] / res[k][0]);
        else
            printf(" %s_srv_us=- %s_srv_per_s=- %s_cli_us=-", kinds[k], kinds[k], kinds[k]);
    }
    printf(" handshakes=%.0f full_n=%.0f resumed_n=%.0f\n", res[0][0] + res[1][0], res[0][0],
           res[1][0]);
}

static int run_crypto_bound(void)
{
    char err[512];
    if (!opt.certfile || !opt.keyfile || !opt.cafile) {
        fprintf(stderr,
                "secbench: --crypto-bound needs --cafile CA --cert SERVER_CERT --key SERVER_KEY\n");
        return EXIT_USAGE;
    }
    tls_server_opts so;
    memset(&so, 0, sizeof so);
    so.certfile = opt.certfile;
    so.keyfile = opt.keyfile;
    so.ciphers = opt.ciphers ? opt.ciphers : "ECDHE-ECDSA-AES128-GCM-SHA256";
    so.tls_version = opt.tls_version ? opt.tls_version : "tlsv1.2";
    tls_server *srv = NULL;
    if (tls_server_setup(&srv, &so, NULL, NULL, err, sizeof err) != TLS_OK) {
        fprintf(stderr, "secbench: %s\n", err);
        return 1;
    }
    tls_client_opts co;
    memset(&co, 0, sizeof co);
    co.cafile = opt.cafile;
    co.ciphers = so.ciphers;
    co.tls_version = so.tls_version;
    co.insecure = true; /* the chain is verified, the name is not */
    tls_client *cli = NULL;
    if (tls_client_setup(&cli, &co, err, sizeof err) != TLS_OK) {
        fprintf(stderr, "secbench: %s\n", err);
        tls_server_free(srv);
        return 1;
    }
    double secs = opt.duration > 0 ? opt.duration : 2;
    double res[2][3]; /* [full/resumed][count, server s, client s] */
    memset(res, 0, sizeof res);
    for (int mode = 0; mode < 2; mode++) {
        if (opt.kind_given && mode != (opt.resumed ? 1 : 0)) continue;
        tls_client_set_resume(cli, mode == 0 ? TLS_RESUME_OFF : TLS_RESUME_TICKET);
        int64_t srv_ns = 0, cli_ns = 0;
        bool resumed = false;
        if (mode == 1 && crypto_round(srv, cli, &srv_ns, &cli_ns, &resumed) != 0)
            return 1; /* obtain a ticket */
        srv_ns = cli_ns = 0;
        crypto_counting = true;
        long n = 0, nres = 0;
        int64_t end = now_ns() + (int64_t)(secs / 2 * 1e9);
        /* --count K: exactly K handshakes of each kind (for callgrind) */
        while ((opt.count ? n < opt.count : now_ns() < end) && !g_sig) {
            if (crypto_round(srv, cli, &srv_ns, &cli_ns, &resumed) != 0) return 1;
            n++;
            nres += resumed;
        }
        crypto_counting = false;
        if (mode == 1 && nres != n)
            fprintf(stderr, "secbench: warning: only %ld of %ld handshakes resumed\n", nres, n);
        res[mode][0] = (double)n;
        res[mode][1] = (double)srv_ns / 1e9;
        res[mode][2] = (double)cli_ns / 1e9;
    }
    crypto_report(res, so.ciphers);
    tls_client_free(cli);
    tls_server_free(srv);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = 1 << 20;
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) return; /* root may raise the hard limit too */
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static int resolve(void)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", opt.port);
    int r = getaddrinfo(opt.host, port, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "secbench: cannot resolve '%s': %s\n", opt.host, gai_strerror(r));
        return -1;
    }
    memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
    g.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(g.peer, sizeof g.peer, "%s:%d", opt.host, opt.port);
    return 0;
}

enum {
    O_TLS = 256,
    O_CAFILE,
    O_CERT,
    O_KEY,
    O_CIPHERS,
    O_TLSVER,
    O_INSECURE,
    O_NOVERIFY,
    O_SCENARIO,
    O_RATE,
    O_PID,
    O_FULL,
    O_RESUMED,
    O_RESUME_MODE,
    O_WINDOW,
    O_CONC,
    O_FILTER,
    O_SHARED,
    O_DRAIN,
    O_CRYPTO,
    O_QUIET,
    O_PERSISTENT,
    O_HELP,
    O_E2E,
    O_WS
};

/* The value of a flag that sets a string, a number or a switch of a
 * scenario's run. 0 done, 1 bad value, 2 not one of these flags. */
static int parse_run_opt(int ch, const char *arg)
{
    long v;

    switch (ch) {
    case 'h':
        opt.host = arg;
        return 0;
    case 'p':
        if (!parse_long(arg, 1, 65535, &v)) return 1;
        opt.port = (int)v;
        return 0;
    case 'n':
        return parse_long(arg, 1, 1000000, &opt.n) ? 0 : 1;
    case 'm':
        return parse_long(arg, 1, 1000000, &opt.m) ? 0 : 1;
    case 'q':
        if (!parse_long(arg, 0, 1, &v)) return 1;
        opt.qos = (int)v;
        return 0;
    case 's':
        return parse_long(arg, 0, 200 * 1024, &opt.size) ? 0 : 1;
    case 'd':
        return parse_double(arg, 0, 86400, &opt.duration) ? 0 : 1;
    case 'c':
        return parse_long(arg, 1, 2000000000L, &opt.count) ? 0 : 1;
    case 't':
        opt.prefix = arg;
        return 0;
    case 'u':
        opt.username = arg;
        return 0;
    case 'P':
        opt.password = arg;
        return 0;
    case O_RATE:
        return parse_double(arg, 0, 1e9, &opt.rate) ? 0 : 1;
    case O_WINDOW:
        return parse_long(arg, 1, 65535, &opt.window) ? 0 : 1;
    case O_E2E:
        return parse_long(arg, 0, 1000000, &opt.e2e_window) ? 0 : 1;
    case O_CONC:
        return parse_long(arg, 1, 100000, &opt.concurrency) ? 0 : 1;
    case O_FILTER:
        opt.filter = arg;
        return 0;
    case O_SHARED:
        return parse_long(arg, 1, 1000, &opt.shared) ? 0 : 1;
    case O_DRAIN:
        return parse_double(arg, 0, 3600, &opt.drain) ? 0 : 1;
    case O_QUIET:
        opt.quiet = true;
        return 0;
    case O_PERSISTENT:
        opt.persistent = true;
        return 0;
    case O_WS:
        opt.ws = true;
        return 0;
    default:
        return 2;
    }
}

/* The TLS flags and the ones that pick what to measure; same returns. */
static int parse_mode_opt(int ch, const char *arg)
{
    long v;

    switch (ch) {
    case 'V':
        if (strcmp(arg, "5") && strcmp(arg, "mqttv5") && strcmp(arg, "311") &&
            strcmp(arg, "mqttv311"))
            return 1;
        opt.v5 = strchr(arg, '5') != NULL;
        return 0;
    case O_TLS:
        opt.tls = true;
        return 0;
    case O_CAFILE:
        opt.cafile = arg;
        opt.tls = true;
        return 0;
    case O_CERT:
        opt.certfile = arg;
        opt.tls = true;
        return 0;
    case O_KEY:
        opt.keyfile = arg;
        opt.tls = true;
        return 0;
    case O_CIPHERS:
        opt.ciphers = arg;
        return 0;
    case O_TLSVER:
        opt.tls_version = arg;
        return 0;
    case O_INSECURE:
        opt.insecure = true;
        return 0;
    case O_NOVERIFY:
        opt.no_verify = true;
        opt.tls = true;
        return 0;
    case O_SCENARIO:
        opt.scenario = SC_NONE;
        for (int i = 1; i < (int)(sizeof scenario_names / sizeof *scenario_names); i++)
            if (strcmp(arg, scenario_names[i]) == 0) opt.scenario = i;
        return opt.scenario == SC_NONE ? 1 : 0;
    case O_PID:
        if (!parse_long(arg, 1, 1L << 30, &v)) return 1;
        opt.pid = (int)v;
        return 0;
    case O_FULL:
    case O_RESUMED:
        opt.resumed = ch == O_RESUMED;
        opt.kind_given = true;
        return 0;
    case O_RESUME_MODE:
        if (strcmp(arg, "ticket") == 0)
            opt.resume_mode = TLS_RESUME_TICKET;
        else if (strcmp(arg, "session-id") == 0)
            opt.resume_mode = TLS_RESUME_SESSION_ID;
        else
            return 1;
        return 0;
    case O_CRYPTO:
        opt.crypto_bound = true;
        return 0;
    default:
        return 2;
    }
}

/* Parse the command line into opt: -1 to go on, otherwise the exit status. */
static int parse_args(int argc, char **argv)
{
    static const struct option longs[] = {
        {"tls", no_argument, NULL, O_TLS},
        {"cafile", required_argument, NULL, O_CAFILE},
        {"cert", required_argument, NULL, O_CERT},
        {"key", required_argument, NULL, O_KEY},
        {"ciphers", required_argument, NULL, O_CIPHERS},
        {"tls-version", required_argument, NULL, O_TLSVER},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"no-verify", no_argument, NULL, O_NOVERIFY},
        {"scenario", required_argument, NULL, O_SCENARIO},
        {"rate", required_argument, NULL, O_RATE},
        {"pid", required_argument, NULL, O_PID},
        {"full", no_argument, NULL, O_FULL},
        {"resumed", no_argument, NULL, O_RESUMED},
        {"resume-mode", required_argument, NULL, O_RESUME_MODE},
        {"count", required_argument, NULL, 'c'},
        {"window", required_argument, NULL, O_WINDOW},
        {"e2e-window", required_argument, NULL, O_E2E},
        {"concurrency", required_argument, NULL, O_CONC},
        {"filter", required_argument, NULL, O_FILTER},
        {"shared", required_argument, NULL, O_SHARED},
        {"drain", required_argument, NULL, O_DRAIN},
        {"crypto-bound", no_argument, NULL, O_CRYPTO},
        {"quiet", no_argument, NULL, O_QUIET},
        {"persistent", no_argument, NULL, O_PERSISTENT},
        {"help", no_argument, NULL, O_HELP},
        {"ws", no_argument, NULL, O_WS},
        {NULL, 0, NULL, 0},
    };
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h:p:n:m:q:s:d:c:t:u:P:V:", longs, NULL)) != -1) {
        int r;
        if (ch == O_HELP) {
            usage(stdout);
            return 0;
        }
        if (ch == ':') {
            fprintf(stderr, "secbench: option %s needs a value (see --help)\n", argv[optind - 1]);
            return EXIT_USAGE;
        }
        r = parse_run_opt(ch, optarg);
        if (r == 2) r = parse_mode_opt(ch, optarg);
        if (r == 2) {
            fprintf(stderr, "secbench: unknown option %s (see --help)\n", argv[optind - 1]);
            return EXIT_USAGE;
        }
        if (r == 1) {
            fprintf(stderr, "secbench: bad value '%s' for %s (see --help)\n", optarg,
                    argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "secbench: unexpected argument '%s' (see --help)\n", argv[optind]);
        return EXIT_USAGE;
    }
    return -1;
}

/* Checks that need every flag, and the defaults that depend on others. */
static int check_args(void)
{
    if (opt.scenario == SC_NONE) {
        fprintf(stderr,
                "secbench: --scenario fan-in|fan-out|pairs|storm|idle is required (see --help)\n");
        return EXIT_USAGE;
    }
    if (opt.qos > 0 && opt.scenario != SC_STORM && opt.scenario != SC_IDLE && opt.count == 0 &&
        opt.duration <= 0) {
        fprintf(stderr, "secbench: -d must be > 0 (or give --count)\n");
        return EXIT_USAGE;
    }
    if (opt.port == 0) opt.port = opt.tls ? 8883 : 1883;
    if (opt.concurrency == 0) opt.concurrency = 64;
    return -1;
}

/* The epoll set, the read buffer and (with TLS) the client configuration. */
static int setup_run(void)
{
    g.run_id = (uint32_t)(now_ns() ^ ((int64_t)getpid() << 16));
    g.rbuf = malloc(READ_BUF);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.rbuf == NULL || g.ep < 0) {
        perror("secbench");
        return 1;
    }
    if (opt.tls) {
        char err[512];
        if (tls_global_setup(err, sizeof err) != TLS_OK) {
            fprintf(stderr, "secbench: %s\n", err);
            return 1;
        }
        tls_client_opts co;
        memset(&co, 0, sizeof co);
        co.cafile = opt.no_verify ? NULL : opt.cafile;
        co.certfile = opt.certfile;
        co.keyfile = opt.keyfile;
        co.ciphers = opt.ciphers;
        co.tls_version = opt.tls_version;
        co.server_name = opt.host;
        co.insecure = opt.insecure || opt.no_verify;
        if (tls_client_setup(&g.tcli, &co, err, sizeof err) != TLS_OK) {
            fprintf(stderr, "secbench: %s\n", err);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);

    if (rc >= 0) return rc;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (opt.crypto_bound) return run_crypto_bound();
    if ((rc = check_args()) >= 0) return rc;
    raise_nofile();
    if (resolve() != 0) return 1;
    if (setup_run() != 0) return 1;
    switch (opt.scenario) {
    case SC_STORM:
        rc = run_storm();
        break;
    case SC_IDLE:
        rc = run_idle();
        break;
    default:
        rc = run_messaging();
        break;
    }
    tls_client_free(g.tcli);
    return rc;
}
