/*
 * memlimit.h -- the whole-broker memory budget (Mosquitto's `memory_limit
 * BYTES`, 0 = none). What grows with traffic is counted here: messages
 * (msg.c, topic and payload) and connection I/O buffers (bbuf.c). Over 7/8
 * of the limit QoS 0 deliveries to slow clients (output not empty) are
 * dropped first; a PUBLISH whose message would not fit is refused: dropped and
 * its publisher disconnected, as Mosquitto does when an allocation for an
 * incoming message is denied. Each decision is counted (for $SYS) and each
 * episode over the limit is logged once when it starts and once, with the
 * counts, when the broker is back under it.
 *
 * One process-wide instance: bbuf and msg have no broker to reach.
 */
#ifndef SECBROKER_MEMLIMIT_H
#define SECBROKER_MEMLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct memlimit {
    uint64_t limit;        /* bytes, 0 = none */
    uint64_t used;         /* counted bytes now */
    uint64_t dropped_qos0; /* QoS 0 deliveries dropped (ever) */
    uint64_t refused;      /* PUBLISHes refused (ever) */
    double episode_since;  /* over the limit since (0 = not) */
    uint64_t episode_dropped, episode_refused;
} memlimit;

extern memlimit g_memlimit;

static inline void memlimit_add(size_t n)
{
    g_memlimit.used += n;
}

static inline void memlimit_sub(size_t n)
{
    g_memlimit.used -= n;
}

/* Would `adding` more bytes take the broker past memory_limit? (a PUBLISH
 * is refused then) */
static inline bool memlimit_over(size_t adding)
{
    return g_memlimit.limit && g_memlimit.used + adding > g_memlimit.limit;
}

/* Over 7/8 of memory_limit: QoS 0 to slow clients is dropped, so that
 * PUBLISHes are refused only when dropping did not keep memory down. */
static inline bool memlimit_high(void)
{
    return g_memlimit.limit && g_memlimit.used > g_memlimit.limit - g_memlimit.limit / 8;
}

/* A QoS 0 delivery dropped / a PUBLISH refused at time now (monotonic s):
 * counted; the first of an episode is logged. */
void memlimit_drop_qos0(double now);
void memlimit_refuse(double now);
/* Periodic: an episode is over once the broker is back under 3/4 of the
 * limit (hysteresis: hovering at 7/8 stays one episode); logs its counts. */
void memlimit_tick(double now);

#endif
