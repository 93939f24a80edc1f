/*
 * bridge.h -- bridges to other brokers (`connection` blocks, bridge_cfg.h):
 * an outgoing connection on the same transport as the listeners (conn.h,
 * conn_connect) with an MQTT client on it, and a local side that is an
 * ordinary session in the registry: subscribed to the local filters of the
 * out/both topics, its outbox is the remote connection. While the remote is
 * away, QoS 1/2 messages wait in that session (max_queued_messages) and go
 * out in order after the next CONNACK; incoming messages are published
 * locally, never back over the bridge they came from (No-Local).
 *
 * Name resolution runs off the loop (getaddrinfo_a, polled each tick);
 * numeric addresses are used directly. Connect, TLS handshake and CONNECT
 * are non-blocking; the TLS session is kept per address for cheap
 * reconnects.
 *
 * Ownership: the broker owns the bridge array (b->bridges, pointers); a
 * bridge owns its configuration (moved out of the config at start or
 * SIGHUP), its TLS client contexts, its resolver requests and points at
 * (does not own) its session (the registry's) and its current conn (the
 * broker's). A bridge stopped by SIGHUP waits in b->bridges_retired until
 * its connection is freed (the conn still uses its listener record and
 * TLS contexts while it closes).
 */
#ifndef SECBROKER_BRIDGE_H
#define SECBROKER_BRIDGE_H

#include <stddef.h>

#include "broker/config.h"

struct broker;
struct session;

/* Set up every configured bridge: TLS client contexts, the local session
 * and its subscriptions, the first attempt for automatic/once. BK_OK or an
 * error with a sentence in err (a TLS file that does not load, out of
 * memory). */
int bridges_start(struct broker *b, char *err, size_t errlen);
/* Each loop tick (about 10 times a second): resolver results, retries,
 * lazy start and stop, queue-drop episodes. */
void bridges_tick(struct broker *b);
/* SIGHUP with a new configuration that loaded without errors: bridges
 * whose block is unchanged keep running untouched; removed ones send
 * DISCONNECT and stop (their local session ends with its queue); changed
 * ones stop and start again with the new settings, keeping the local
 * session and its queue when local_clientid stays the same; new ones start.
 * Takes over nw's bridge blocks it uses (left empty in nw). When a new or
 * changed bridge cannot be set up (a TLS file that does not load), nothing
 * changes and the reason is logged. A client connected with a new
 * bridge's local_clientid is handed to evict first (the id is the
 * bridge's from now on). */
void bridges_reload(struct broker *b, config *nw,
                    void (*evict)(struct broker *b, struct session *s, const char *why));
/* Per-bridge counters under $SYS/broker/bridge/NAME/. */
void bridges_publish_sys(struct broker *b);
/* After every connection is closed and freed: release the bridges. */
void bridges_free(struct broker *b);

#endif
