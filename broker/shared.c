/*
 * shared.c -- shared subscriptions (see shared.h).
 */
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/log.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "mqtt/mqtt.h"

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7

typedef struct {
    session *s;
    uint32_t sub_id;
    uint8_t qos;
} shared_member;

typedef struct shared_group {
    tree_sub where; /* the group's one entry in the tree (first: the tree points here) */
    uint64_t match_stamp;
    uint32_t next; /* round robin: the member to try first */
    shared_member *members;
    uint32_t n, cap;
    uint16_t glen;
    uint32_t key_len;
    char key[]; /* "GROUP/FILTER", NUL-terminated; the filter starts at key + glen + 1 */
} shared_group;

typedef struct shared_registry {
    dict groups;            /* key -> shared_group */
    shared_group **matched; /* reused per PUBLISH */
    size_t nmatched, cap_matched;
    uint64_t delivered;
} shared_registry;

bool shared_parse(const char *f, size_t flen, const char **group, size_t *glen, const char **filter,
                  size_t *filt_len, bool *valid)
{
    *valid = false;
    if (flen < SHARE_PREFIX_LEN || memcmp(f, SHARE_PREFIX, SHARE_PREFIX_LEN) != 0) return false;
    const char *g = f + SHARE_PREFIX_LEN, *end = f + flen;
    const char *slash = memchr(g, '/', (size_t)(end - g));
    if (!slash || slash == g || slash + 1 >= end) return true; /* [MQTT-4.8.2-2] */
    for (const char *p = g; p < slash; p++)
        if (*p == '+' || *p == '#') return true; /* [MQTT-4.8.2-1] */
    *group = g;
    *glen = (size_t)(slash - g);
    *filter = slash + 1;
    *filt_len = (size_t)(end - slash - 1);
    *valid = mqtt_topic_filter_validate((const uint8_t *)*filter, *filt_len) == MQTT_OK;
    return true;
}

static shared_registry *registry(broker *b, bool create)
{
    if (!b->shared && create) {
        b->shared = calloc(1, sizeof *b->shared);
        if (b->shared) dict_init(&b->shared->groups);
    }
    return b->shared;
}

static shared_group *group_find(broker *b, const char *group, size_t glen, const char *filter,
                                size_t flen, bool create)
{
    shared_registry *r = registry(b, create);
    if (!r || glen + 1 + flen > 65536) return NULL;
    char key[glen + 1 + flen];
    memcpy(key, group, glen);
    key[glen] = '/';
    memcpy(key + glen + 1, filter, flen);
    size_t klen = glen + 1 + flen;
    shared_group *g = dict_get(&r->groups, key, klen);
    if (g || !create) return g;
    g = calloc(1, sizeof *g + klen + 1);
    if (!g) return NULL;
    memcpy(g->key, key, klen);
    g->key_len = (uint32_t)klen;
    g->glen = (uint16_t)glen;
    if (dict_put(&r->groups, g->key, klen, g) < 0) {
        free(g);
        return NULL;
    }
    if (tree_add(b->root, filter, flen, NULL, &g->where, SUBOPT_SHARED) != BK_OK) {
        dict_del(&r->groups, g->key, klen);
        free(g);
        return NULL;
    }
    return g;
}

static void group_drop_if_empty(broker *b, shared_group *g)
{
    if (g->n) return;
    tree_remove(&g->where);
    dict_del(&b->shared->groups, g->key, g->key_len);
    free(g->members);
    free(g);
}

static int member_index(const shared_group *g, const session *s)
{
    for (uint32_t i = 0; i < g->n; i++)
        if (g->members[i].s == s) return (int)i;
    return -1;
}

#define SHARE_PREFIX "$share/"

/* The membership as the session's journal sees it: "$share/G/F". */
static void journal_member(session *s, const char *group, size_t glen, const char *filter,
                           size_t flen, uint8_t qos, uint32_t sub_id, bool add)
{
    size_t plen = sizeof SHARE_PREFIX - 1, n = plen + glen + 1 + flen;
    char *full = malloc(n);
    if (!full) {
        log_msg(LL_ERROR, "Client %s: out of memory: the shared subscription is not durable",
                s->client_id);
        return;
    }
    memcpy(full, SHARE_PREFIX, plen);
    memcpy(full + plen, group, glen);
    full[plen + glen] = '/';
    memcpy(full + plen + glen + 1, filter, flen);
    session_journal_subscription(s, full, n, qos, sub_id, add);
    free(full);
}

int shared_join(broker *b, session *s, const char *group, size_t glen, const char *filter,
                size_t flen, uint8_t qos, uint32_t sub_id)
{
    shared_group *g = group_find(b, group, glen, filter, flen, true);
    if (!g) return BK_ERR_NOMEM;
    int i = member_index(g, s);
    if (i >= 0) { /* [MQTT-3.8.4-3]: replace */
        g->members[i].qos = qos;
        if (g->members[i].sub_id && !sub_id) s->nsub_ids--;
        if (!g->members[i].sub_id && sub_id) s->nsub_ids++;
        g->members[i].sub_id = sub_id;
        if (s->durable) journal_member(s, group, glen, filter, flen, qos, sub_id, true);
        return BK_OK;
    }
    if (g->n == g->cap) {
        uint32_t ncap = g->cap ? g->cap * 2 : 4;
        shared_member *nm = realloc(g->members, ncap * sizeof *nm);
        if (!nm) {
            group_drop_if_empty(b, g);
            return BK_ERR_NOMEM;
        }
        g->members = nm;
        g->cap = ncap;
    }
    g->members[g->n++] = (shared_member){s, sub_id, qos};
    if (sub_id) s->nsub_ids++;
    if (s->durable) journal_member(s, group, glen, filter, flen, qos, sub_id, true);
    return BK_OK;
}

static void member_remove(broker *b, shared_group *g, int i)
{
    if (g->members[i].sub_id) g->members[i].s->nsub_ids--;
    g->members[i] = g->members[--g->n]; /* order does not matter for round robin */
    if (g->next >= g->n) g->next = 0;
    group_drop_if_empty(b, g);
}

int shared_leave(broker *b, session *s, const char *group, size_t glen, const char *filter,
                 size_t flen)
{
    shared_group *g = group_find(b, group, glen, filter, flen, false);
    int i = g ? member_index(g, s) : -1;
    if (i < 0) return BK_ERR_UNKNOWN;
    member_remove(b, g, i);
    if (s->durable) journal_member(s, group, glen, filter, flen, 0, 0, false);
    return BK_OK;
}

void shared_sub_ids(broker *b, const session *s, const char *topic, size_t tlen, unsigned max,
                    void (*fn)(void *ud, uint32_t id), void *ud)
{
    shared_registry *r = b->shared;
    uint32_t it = 0;
    dict_entry *e;
    while (r && max && (e = dict_next(&r->groups, &it))) {
        shared_group *g = e->val;
        int i = member_index(g, s);
        if (i < 0 || !g->members[i].sub_id) continue;
        if (mqtt_topic_matches((const uint8_t *)g->key + g->glen + 1, g->key_len - g->glen - 1U,
                               (const uint8_t *)topic, tlen)) {
            fn(ud, g->members[i].sub_id);
            max--;
        }
    }
}

bool shared_is_member(broker *b, const session *s)
{
    shared_registry *r = b->shared;
    uint32_t it = 0;
    dict_entry *e;
    while (r && (e = dict_next(&r->groups, &it)))
        if (member_index(e->val, s) >= 0) return true;
    return false;
}

/* Can member m take m's copy now (pass 0: online only; pass 1: queue)? */
static bool member_takes(const shared_member *mb, const msg *m, int pass)
{
    uint8_t qos = m->qos < mb->qos ? m->qos : mb->qos;
    bool online = session_online(mb->s);
    if (pass == 0 && !online) return false;
    if (qos == 0) return online;
    uint32_t max = mb->s->reg->limits.max_queued;
    return !max || mb->s->queue.count < max;
}

/* One member of g gets m (not `except`): round robin from g->next. */
static bool group_deliver(broker *b, shared_group *g, msg *m, const session *except)
{
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t k = 0; k < g->n; k++) {
            uint32_t i = (g->next + k) % g->n;
            shared_member *mb = &g->members[i];
            if (mb->s == except || !member_takes(mb, m, pass)) continue;
            if (!auth_may_read(b, mb->s, msg_topic(m), m->topic_len)) continue;
            g->next = (i + 1) % g->n;
            b->shared->delivered++;
            (void)session_deliver(mb->s, m, mb->qos, false);
            return true;
        }
    }
    return false;
}

void shared_collect(broker *b, sub_entry *e)
{
    shared_group *g = (shared_group *)(void *)e->where; /* where is the first member */
    shared_registry *r = b->shared;
    if (g->match_stamp == b->match_seq) return;
    if (r->nmatched == r->cap_matched) {
        size_t ncap = r->cap_matched ? r->cap_matched * 2 : 8;
        shared_group **n = realloc(r->matched, ncap * sizeof *n);
        if (!n) return; /* this group misses the message */
        r->matched = n;
        r->cap_matched = ncap;
    }
    g->match_stamp = b->match_seq;
    r->matched[r->nmatched++] = g;
}

void shared_deliver_matched(broker *b, msg *m)
{
    shared_registry *r = b->shared;
    if (!r) return;
    for (size_t i = 0; i < r->nmatched; i++)
        if (!group_deliver(b, r->matched[i], m, NULL))
            log_msg(LL_INFO, "Shared subscription '%s': no member could take a message on '%s'",
                    r->matched[i]->key, msg_topic(m));
    r->nmatched = 0;
}

/* The unacknowledged (not yet PUBREC'd) and queued messages of s that match
 * g's filter go to another member of g. */
static void redeliver(broker *b, shared_group *g, session *s)
{
    const char *filter = g->key + g->glen + 1;
    size_t flen = g->key_len - g->glen - 1;
    for (uint32_t i = s->inflight_head; i < s->ninflight; i++) {
        outmsg *o = &s->inflight[i];
        if ((o->state == OUT_WAIT_PUBACK || o->state == OUT_WAIT_PUBREC) &&
            mqtt_topic_matches((const uint8_t *)filter, flen, (const uint8_t *)msg_topic(o->m),
                               o->m->topic_len))
            (void)group_deliver(b, g, o->m, s);
    }
    for (uint32_t i = 0; i < s->queue.count; i++) {
        msg *m = s->queue.items[(s->queue.head + i) % s->queue.cap].m;
        if (mqtt_topic_matches((const uint8_t *)filter, flen, (const uint8_t *)msg_topic(m),
                               m->topic_len))
            (void)group_deliver(b, g, m, s);
    }
}

void shared_leave_all(broker *b, session *s, bool redeliver_msgs)
{
    shared_registry *r = b->shared;
    if (!r) return;
    /* collect first: leaving may delete groups from the dict */
    shared_group *mine[64];
    size_t n;
    do {
        n = 0;
        uint32_t it = 0;
        dict_entry *e;
        while (n < 64 && (e = dict_next(&r->groups, &it)))
            if (member_index(e->val, s) >= 0) mine[n++] = e->val;
        for (size_t i = 0; i < n; i++) {
            if (redeliver_msgs) redeliver(b, mine[i], s);
            member_remove(b, mine[i], member_index(mine[i], s));
        }
    } while (n == 64);
}

uint64_t shared_delivered(const broker *b)
{
    return b->shared ? b->shared->delivered : 0;
}

void shared_free(broker *b)
{
    shared_registry *r = b->shared;
    if (!r) return;
    uint32_t it = 0;
    dict_entry *e;
    while ((e = dict_next(&r->groups, &it))) {
        shared_group *g = e->val;
        free(g->members);
        free(g);
    }
    dict_free(&r->groups);
    free(r->matched);
    free(r);
    b->shared = NULL;
}
