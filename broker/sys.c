/* sys.c -- see sys.h. Mosquitto's $SYS tree (docs/sys.md): the same topic
 * names and meanings; load averages are exponentially weighted moving
 * averages of the rate per minute over 1, 5 and 15 minutes, as Mosquitto's. */
#include "broker/sys.h"

#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "broker/log.h"
#include "broker/memlimit.h"
#include "broker/msg.h"
#include "broker/protocol.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "tls/tls.h"

/* One counter's load averages and its value at the last update. */
typedef struct {
    double avg[3]; /* 1, 5, 15 minutes */
    uint64_t last;
} load;

enum {
    L_MSG_RX,
    L_MSG_TX,
    L_BYTES_RX,
    L_BYTES_TX,
    L_PUB_RX,
    L_PUB_TX,
    L_PUB_DROP,
    L_CONNS,
    L_SOCKS,
    L_N
};

static const char *const load_topic[L_N] = {
    "messages/received", "messages/sent",   "bytes/received", "bytes/sent", "publish/received",
    "publish/sent",      "publish/dropped", "connections",    "sockets",
};
static const int load_minutes[3] = {1, 5, 15};

static struct {
    time_t started;
    double last_update; /* monotonic */
    load loads[L_N];
    uint32_t clients_max;
    size_t heap_max;
    uint32_t published; /* topics written by the last sys_publish */
} st;

void sys_init(broker *b)
{
    memset(&st, 0, sizeof st);
    st.started = time(NULL);
    st.last_update = b->now;
}

/* One retained $SYS message; $SYS is not traffic, so the counters of
 * incoming messages are restored. */
static void pub(broker *b, const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pub(broker *b, const char *topic, const char *fmt, ...)
{
    char name[128], val[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    snprintf(name, sizeof name, "$SYS/broker/%s", topic);
    msg *m = msg_new((const uint8_t *)name, (uint16_t)strlen(name), (const uint8_t *)val,
                     strlen(val), 0, true);
    if (!m) return;
    uint64_t rx = b->msgs_received, brx = b->pub_bytes_received;
    router_publish(b, NULL, m);
    b->msgs_received = rx;
    b->pub_bytes_received = brx;
    msg_unref(m);
    st.published++;
}

static void update_loads(broker *b)
{
    const uint64_t now_val[L_N] = {b->packets_received,
                                   b->packets_sent,
                                   b->bytes_received,
                                   b->bytes_sent,
                                   b->msgs_received,
                                   b->msgs_sent,
                                   b->pub_dropped + b->sessions.dropped,
                                   b->connects_accepted,
                                   b->sockets_accepted};
    double dt = b->now - st.last_update;
    if (dt <= 0) return;
    for (int i = 0; i < L_N; i++) {
        double rate = (double)(now_val[i] - st.loads[i].last) * 60.0 / dt; /* per minute */
        for (int k = 0; k < 3; k++) {
            double decay = exp(-dt / (60.0 * load_minutes[k]));
            st.loads[i].avg[k] = rate + decay * (st.loads[i].avg[k] - rate);
        }
        st.loads[i].last = now_val[i];
    }
    st.last_update = b->now;
}

static void publish_clients(broker *b)
{
    uint32_t connected = proto_count_active(b), disconnected = 0, subs = 0, it = 0;
    dict_entry *e;
    while ((e = dict_next(&b->sessions.ids, &it))) {
        const session *s = e->val;
        disconnected += !s->out && !s->clean;
        subs += s->nsubs;
    }
    if (connected > st.clients_max) st.clients_max = connected;
    pub(b, "clients/total", "%u", connected + disconnected);
    pub(b, "clients/connected", "%u", connected);
    pub(b, "clients/active", "%u", connected);
    pub(b, "clients/disconnected", "%u", disconnected);
    pub(b, "clients/inactive", "%u", disconnected);
    pub(b, "clients/maximum", "%u", st.clients_max);
    pub(b, "clients/expired", "%llu", (unsigned long long)b->clients_expired);
    pub(b, "subscriptions/count", "%u", subs);
    pub(b, "shared_subscriptions/count", "%u", shared_count(b));
    /* secbroker's: connected clients per protocol level (5, 4 = 3.1.1, 3 = 3.1) */
    pub(b, "clients/mqtt5", "%u", proto_count_level(b, 5));
    pub(b, "clients/mqtt311", "%u", proto_count_level(b, 4));
    pub(b, "clients/mqtt31", "%u", proto_count_level(b, 3));
}

/* Bytes in use on the heap. Under AddressSanitizer malloc is the
 * sanitizer's own allocator, which glibc's mallinfo2 does not see: its
 * counter is read instead (a weak reference, null in a normal build). */
size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
    if (__sanitizer_get_current_allocated_bytes) return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void publish_totals(broker *b)
{
    uint64_t stored, stored_bytes;
    msg_stats(&stored, &stored_bytes);
    pub(b, "messages/stored", "%llu", (unsigned long long)stored);
    pub(b, "store/messages/count", "%llu", (unsigned long long)stored);
    pub(b, "store/messages/bytes", "%llu", (unsigned long long)stored_bytes);
    pub(b, "retained messages/count", "%llu", (unsigned long long)b->retained_count);
    pub(b, "messages/received", "%llu", (unsigned long long)b->packets_received);
    pub(b, "messages/sent", "%llu", (unsigned long long)b->packets_sent);
    pub(b, "publish/messages/received", "%llu", (unsigned long long)b->msgs_received);
    pub(b, "publish/messages/sent", "%llu", (unsigned long long)b->msgs_sent);
    pub(b, "publish/messages/dropped", "%llu",
        (unsigned long long)(b->pub_dropped + b->sessions.dropped));
    pub(b, "publish/bytes/received", "%llu", (unsigned long long)b->pub_bytes_received);
    pub(b, "publish/bytes/sent", "%llu", (unsigned long long)b->pub_bytes_sent);
    pub(b, "bytes/received", "%llu", (unsigned long long)b->bytes_received);
    pub(b, "bytes/sent", "%llu", (unsigned long long)b->bytes_sent);
    size_t heap = heap_in_use();
    if (heap > st.heap_max) st.heap_max = heap;
    pub(b, "heap/current", "%zu", heap);
    pub(b, "heap/maximum", "%zu", st.heap_max);
    pub(b, "memory_limit/current", "%llu", (unsigned long long)g_memlimit.used);
    pub(b, "memory_limit/qos0 dropped", "%llu", (unsigned long long)g_memlimit.dropped_qos0);
    pub(b, "memory_limit/publishes refused", "%llu", (unsigned long long)g_memlimit.refused);
}

void sys_publish(broker *b)
{
    st.published = 0;
    update_loads(b);
    pub(b, "version", "secbroker version %s", SECBROKER_VERSION);
    pub(b, "uptime", "%lld seconds", (long long)(time(NULL) - st.started));
    publish_clients(b);
    publish_totals(b);
    for (int i = 0; i < L_N; i++)
        for (int k = 0; k < 3; k++) {
            char topic[96];
            snprintf(topic, sizeof topic, "load/%s/%dmin", load_topic[i], load_minutes[k]);
            pub(b, topic, "%.2f", st.loads[i].avg[k]);
        }
}

uint32_t sys_topic_count(void)
{
    return st.published;
}

/* ---- log_dest topic -------------------------------------------------------------- */

/* Lines waiting to be published; more are dropped until the next drain. */
#define LOG_QUEUE 256

static struct {
    char *line[LOG_QUEUE];
    char level[LOG_QUEUE];
    uint32_t n;
    bool draining; /* lines logged while publishing are not published (no loop) */
} lq;

static char level_letter(int level)
{
    switch (level) {
    case LL_ERROR:
        return 'E';
    case LL_WARNING:
        return 'W';
    case LL_NOTICE:
        return 'N';
    case LL_INFO:
        return 'I';
    case LL_SUBSCRIBE:
        return 'M';
    default:
        return 'D';
    }
}

static void log_hook(int level, const char *line)
{
    if (lq.draining || lq.n == LOG_QUEUE) return;
    char *copy = malloc(strlen(line) + 24);
    if (!copy) return;
    sprintf(copy, "%lld: %s", (long long)time(NULL), line); /* Mosquitto's payload */
    lq.line[lq.n] = copy;
    lq.level[lq.n++] = level_letter(level);
}

void sys_log_topic_enable(void)
{
    log_set_topic_hook(log_hook);
}

void sys_publish_log(broker *b)
{
    if (lq.n == 0) return;
    lq.draining = true;
    for (uint32_t i = 0; i < lq.n; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "$SYS/broker/log/%c", lq.level[i]);
        msg *m = msg_new((const uint8_t *)topic, (uint16_t)strlen(topic),
                         (const uint8_t *)lq.line[i], strlen(lq.line[i]), 0, false);
        if (m) {
            uint64_t rx = b->msgs_received, brx = b->pub_bytes_received;
            router_publish(b, NULL, m);
            b->msgs_received = rx;
            b->pub_bytes_received = brx;
            msg_unref(m);
        }
        free(lq.line[i]);
    }
    lq.n = 0;
    lq.draining = false;
}

void sys_free(void)
{
    log_set_topic_hook(NULL);
    for (uint32_t i = 0; i < lq.n; i++)
        free(lq.line[i]);
    lq.n = 0;
}
