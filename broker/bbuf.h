/*
 * bbuf.h -- a growable byte buffer with a consumed prefix: data[off..len)
 * is valid, [len..cap) free. Used for a connection's partial input packet
 * and its coalesced output.
 */
#ifndef SECBROKER_BBUF_H
#define SECBROKER_BBUF_H

#include <stddef.h>
#include <stdint.h>

#include "broker/err.h"

typedef struct {
    uint8_t *data;
    size_t off; /* first unsent/unconsumed byte */
    size_t len; /* end of valid data */
    size_t cap;
} bbuf;

/* The slow half of bbuf_reserve: compacts first, then grows. */
int bbuf_grow(bbuf *b, size_t extra) BK_MUST_CHECK;
/* Room for `extra` more bytes after len. BK_OK or BK_ERR_NOMEM. Inline: it
 * runs once per message per recipient. */
static inline int bbuf_reserve(bbuf *b, size_t extra) BK_MUST_CHECK;
static inline int bbuf_reserve(bbuf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return BK_OK;
    return bbuf_grow(b, extra);
}
/* Append len bytes (bbuf_reserve + copy). BK_OK or BK_ERR_NOMEM. */
int bbuf_append(bbuf *b, const uint8_t *p, size_t len) BK_MUST_CHECK;
void bbuf_free(bbuf *b);
static inline size_t bbuf_used(const bbuf *b)
{
    return b->len - b->off;
}

#endif
