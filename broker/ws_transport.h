/*
 * ws_transport.h -- MQTT over WebSockets on a listener with `protocol
 * websockets`: the conn_filter that puts ws/ (RFC 6455, no sockets) between
 * conn (the socket, after TLS for wss) and the protocol handler.
 *
 *   conn reads -> ws_handshake (HTTP Upgrade, or a static file with http_dir)
 *              -> ws_feed (frames in, in place) -> protocol's on_data
 *   protocol's coalesced output -> one binary frame per flush -> conn writes
 *
 * Pongs and Close frames are queued between data frames, never inside one.
 * handshake_timeout (from accept) covers TLS, the Upgrade and CONNECT.
 */
#ifndef SECBROKER_WS_TRANSPORT_H
#define SECBROKER_WS_TRANSPORT_H

#include <stddef.h>

#include "broker/conn.h"

struct broker;

extern const conn_filter ws_conn_filter;

/* Per-listener setup from its listener_cfg: options, origin list, the
 * resolved http_dir. Sets l->filter and l->filter_opts. BK_OK, or an error
 * with "FILE:LINE: ..." in err. */
int ws_transport_setup(struct broker *b, listener *l, char *err, size_t errlen);
/* Releases l->filter_opts (NULL is fine). */
void ws_transport_free(listener *l);

#endif
