/*
 * backlog.h -- a FIFO of message references with a QoS each: what a client
 * is still owed but cannot take yet (the retained messages of a SUBSCRIBE
 * while its output is full; the PUBLISHes for a client whose socket is not
 * writable). Holding a reference costs 16 bytes, not a copy of the payload,
 * so the messages are sent as the client drains instead of being dropped,
 * and memory grows with messages, not messages x subscribers.
 *
 * Ownership: the backlog owns one reference per item.
 */
#ifndef SECBROKER_BACKLOG_H
#define SECBROKER_BACKLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/err.h"
#include "broker/msg.h"

/* flags of an item */
#define BACKLOG_RETAIN 1
#define BACKLOG_DUP 2

typedef struct {
    msg *m;
    uint16_t pid;  /* packet id to send with (QoS 1/2), 0 when none */
    uint8_t qos;   /* QoS to send at (or, for a SUBSCRIBE's retained, the granted one) */
    uint8_t flags; /* BACKLOG_RETAIN, BACKLOG_DUP */
} backlog_item;

typedef struct backlog {
    backlog_item *items; /* ring */
    uint32_t head, count, cap;
} backlog;

/* Append it (a new reference to it->m is taken). BK_OK or BK_ERR_NOMEM. */
int backlog_push(backlog *q, backlog_item it) BK_MUST_CHECK;
/* The oldest item, or NULL when empty. */
const backlog_item *backlog_peek(const backlog *q);
/* Remove the oldest item and drop its reference. */
void backlog_pop(backlog *q);
/* Drop every reference and the storage. */
void backlog_free(backlog *q);

#endif
