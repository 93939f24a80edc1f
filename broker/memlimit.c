/*
 * memlimit.c -- the whole-broker memory budget (see memlimit.h).
 */
#include "broker/memlimit.h"
#include "broker/log.h"

memlimit g_memlimit;

static void episode_start(double now)
{
    if (g_memlimit.episode_since) return;
    g_memlimit.episode_since = now;
    log_msg(LL_WARNING,
            "memory_limit %llu bytes nearly reached (%llu in use): dropping QoS 0 messages to "
            "slow clients, refusing PUBLISHes that do not fit (publisher disconnected)",
            (unsigned long long)g_memlimit.limit, (unsigned long long)g_memlimit.used);
}

void memlimit_drop_qos0(double now)
{
    episode_start(now);
    g_memlimit.dropped_qos0++;
    g_memlimit.episode_dropped++;
}

void memlimit_refuse(double now)
{
    episode_start(now);
    g_memlimit.refused++;
    g_memlimit.episode_refused++;
}

/* An episode ends under 3/4, not at 7/8 where it starts: memory that hovers
 * at the threshold (drops keep it there) is one episode, logged once. */
void memlimit_tick(double now)
{
    if (!g_memlimit.episode_since || g_memlimit.used > g_memlimit.limit - g_memlimit.limit / 4)
        return;
    log_msg(LL_WARNING,
            "memory back under 3/4 of memory_limit after %.1f s: %llu QoS 0 messages dropped, %llu "
            "PUBLISHes refused",
            now - g_memlimit.episode_since, (unsigned long long)g_memlimit.episode_dropped,
            (unsigned long long)g_memlimit.episode_refused);
    g_memlimit.episode_since = 0;
    g_memlimit.episode_dropped = g_memlimit.episode_refused = 0;
}
