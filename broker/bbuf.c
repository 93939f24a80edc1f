/* bbuf.c -- growable byte buffers (see bbuf.h). */
#include <stdlib.h>
#include <string.h>

#include "broker/bbuf.h"
#include "broker/memlimit.h"

/* First allocation: most connections only ever hold acks. */
#define BBUF_FIRST_CAP 256

int bbuf_grow(bbuf *b, size_t extra)
{
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return BK_OK;
    /* Compact before growing: consumed bytes at the front are dead. */
    if (b->off) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return BK_OK;
    }
    size_t ncap = b->cap ? b->cap : BBUF_FIRST_CAP;
    while (ncap < b->len + extra)
        ncap *= 2;
    uint8_t *nd = realloc(b->data, ncap);
    if (!nd) return BK_ERR_NOMEM;
    b->data = nd;
    memlimit_add(ncap - b->cap);
    b->cap = ncap;
    return BK_OK;
}

int bbuf_append(bbuf *b, const uint8_t *p, size_t len)
{
    int r = bbuf_reserve(b, len);
    if (r != BK_OK) return r;
    if (len) memcpy(b->data + b->len, p, len);
    b->len += len;
    return BK_OK;
}

void bbuf_free(bbuf *b)
{
    free(b->data);
    memlimit_sub(b->cap);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
