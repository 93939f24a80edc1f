/*
 * err.h -- the broker's one error convention, as in mqtt/ and tls/: 0 is
 * success, every failure a negative bk_err. A function whose result must
 * not be dropped is marked BK_MUST_CHECK.
 */
#ifndef SECBROKER_ERR_H
#define SECBROKER_ERR_H

#define BK_MUST_CHECK __attribute__((warn_unused_result))

enum bk_err {
    BK_OK = 0,
    BK_ERR_NOMEM = -1,   /* allocation failed */
    BK_ERR_FULL = -2,    /* a configured limit is reached (queue, buffer) */
    BK_ERR_CLOSED = -3,  /* the connection is closing or gone */
    BK_ERR_UNKNOWN = -4, /* no such packet id / subscription / session */
    BK_ERR_STATE = -5,   /* not valid in the current state (e.g. PUBCOMP before PUBREC) */
    BK_ERR_ENCODE = -6,  /* a packet could not be encoded */
    BK_ERR_IO = -7,      /* socket, file or TLS failure */
    BK_ERR_CONFIG = -8,  /* a bad configuration line (the message says which) */
};

/* A short English name for an error code ("out of memory", ...). */
const char *bk_strerror(int err);

#endif
