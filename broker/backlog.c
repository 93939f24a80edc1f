/*
 * backlog.c -- a FIFO of message references (see backlog.h).
 */
#include <stdlib.h>

#include "broker/backlog.h"

int backlog_push(backlog *q, backlog_item it)
{
    if (q->count == q->cap) {
        uint32_t ncap = q->cap ? q->cap * 2 : 16;
        if (ncap <= q->cap) return BK_ERR_NOMEM;
        backlog_item *n = malloc((size_t)ncap * sizeof *n);
        if (!n) return BK_ERR_NOMEM;
        for (uint32_t i = 0; i < q->count; i++)
            n[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = n;
        q->cap = ncap;
        q->head = 0;
    }
    it.m = msg_ref(it.m);
    q->items[(q->head + q->count) % q->cap] = it;
    q->count++;
    return BK_OK;
}

const backlog_item *backlog_peek(const backlog *q)
{
    return q->count ? &q->items[q->head] : NULL;
}

void backlog_pop(backlog *q)
{
    if (!q->count) return;
    msg_unref(q->items[q->head].m);
    q->head = (q->head + 1) % q->cap;
    if (--q->count == 0) backlog_free(q);
}

void backlog_free(backlog *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        msg_unref(q->items[(q->head + i) % q->cap].m);
    free(q->items);
    *q = (backlog){0};
}
