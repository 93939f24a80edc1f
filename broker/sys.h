/*
 * sys.h -- the $SYS topics the lab dashboard (web/) reads, in JSON
 * (docs/sys.md documents each topic and field):
 *
 *   $SYS/broker/clients/list        connected clients with their transport and TLS details
 *   $SYS/broker/subscriptions/list  every subscription (client, filter, QoS)
 *   $SYS/broker/rates               messages and bytes per second since the last one,
 *                                   with the last SYS_RATES_HISTORY samples
 *   $SYS/broker/handshakes/failed   the latest refused TLS and WebSocket handshakes
 *
 * All retained, so a page that subscribes gets the current state at once.
 * The lists are capped (SYS_*_MAX; "total" says how many there were). The
 * client and subscription lists and the failures are published when they
 * change (looked at once a second), the rates every sys_interval. Who may
 * read them is the ACL's business like any topic.
 */
#ifndef SECBROKER_SYS_H
#define SECBROKER_SYS_H

#include <stdint.h>
#include <time.h>

struct broker;
struct conn;

#define SYS_CLIENTS_MAX 100
#define SYS_SUBS_MAX 200
#define SYS_FAILURES_MAX 20
#define SYS_RATES_HISTORY 120 /* samples of the rates kept for the plot */

/* A refused handshake on c: kind "tls" or "websocket", reason in plain words
 * (a TLS error line from tls_conn_error() is split into reason and the alert
 * sent), status the HTTP status sent (0 = none). Kept for
 * $SYS/broker/handshakes/failed. */
void sys_note_failure(struct broker *b, const struct conn *c, const char *kind, const char *reason,
                      int status);

/* Once a second: publishes the lists that changed. */
void sys_tick(struct broker *b);

/* Every sys_interval: the rates (and the lists, whether changed or not). */
void sys_publish_rates(struct broker *b, double interval);

/* "tcp", "tls", "ws" or "wss" for c's listener. */
const char *sys_transport_name(const struct conn *c);

#endif
