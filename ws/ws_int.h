/*
 * ws_int.h -- private to ws/: the connection states behind ws_conn.state.
 */
#ifndef SECBROKER_WS_INT_H
#define SECBROKER_WS_INT_H

enum ws_state {
    WS_ST_HANDSHAKE = 0, /* waiting for the HTTP Upgrade request */
    WS_ST_OPEN,          /* frames both ways */
    WS_ST_CLOSING,       /* we sent a Close; waiting for the peer's */
    WS_ST_CLOSED         /* done (or refused): input is discarded */
};

#endif
