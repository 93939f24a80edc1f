/* expire.c -- see expire.h. */
#include "broker/expire.h"

#include <stdlib.h>

#include "broker/broker.h"
#include "broker/log.h"
#include "broker/session.h"
#include "broker/shared.h"

/* Sessions destroyed per call at most (the rest wait for the next second). */
#define EXPIRE_BATCH 1024

uint32_t expire_sessions(broker *b)
{
    uint32_t limit = b->cfg->persistent_client_expiration;
    session *doomed[EXPIRE_BATCH];
    uint32_t n = 0, it = 0;
    dict_entry *e;
    while ((e = dict_next(&b->sessions.ids, &it))) {
        session *s = e->val;
        if (s->out || s->clean || s->pinned) { /* pinned: a bridge's own session */
            s->offline_since = 0;
            continue;
        }
        if (s->offline_since == 0) s->offline_since = b->now;
        if (limit && b->now - s->offline_since >= limit && n < EXPIRE_BATCH) doomed[n++] = s;
    }
    for (uint32_t i = 0; i < n; i++) {
        log_msg(LL_NOTICE,
                "Expiring client %s: offline for more than %u s "
                "(persistent_client_expiration)",
                log_esc(doomed[i]->client_id), limit);
        shared_leave_all(b, doomed[i], true);
        session_destroy(doomed[i]);
    }
    b->clients_expired += n;
    return n;
}
