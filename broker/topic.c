/*
 * topic.c -- the topic tree (see tree.h): one node per level, exact children
 * in a hash table, '+' and '#' children apart. Subscriber entries live on
 * the node of their filter, retained messages on the node of their topic,
 * so matching a PUBLISH costs O(depth x wildcard branches), never
 * O(subscribers).
 */
#include <stdlib.h>
#include <string.h>

#include "broker/tree.h"

static tnode *node_new(tnode *parent, const char *name, size_t len)
{
    tnode *n = calloc(1, sizeof *n + len + 1);
    if (!n) return NULL;
    n->parent = parent;
    dict_init(&n->children);
    memcpy(n->name, name, len);
    n->name[len] = 0;
    n->name_len = (uint16_t)len;
    return n;
}

tnode *tree_new_root(void)
{
    return node_new(NULL, "", 0);
}

void tree_free(tnode *n)
{
    if (!n) return;
    uint32_t it = 0;
    dict_entry *e;
    while ((e = dict_next(&n->children, &it)))
        tree_free(e->val);
    dict_free(&n->children);
    tree_free(n->plus);
    tree_free(n->hash);
    free(n->subs);
    msg_unref(n->retained);
    free(n);
}

bool topic_too_deep(const char *s, size_t len)
{
    if (len < TOPIC_MAX_LEVELS) return false; /* n levels need n - 1 separators */
    size_t n = 1;
    for (const char *p = s; (p = memchr(p, '/', (size_t)(s + len - p))); p++)
        if (++n > TOPIC_MAX_LEVELS) return true;
    return false;
}

static bool is_plus(const char *p, size_t len)
{
    return len == 1 && p[0] == '+';
}

static bool is_hash(const char *p, size_t len)
{
    return len == 1 && p[0] == '#';
}

/* Child for one level, created on demand (create=true). */
static tnode *child(tnode *n, const char *p, size_t len, bool create, bool wild)
{
    tnode **slot = NULL;
    if (wild && is_plus(p, len))
        slot = &n->plus;
    else if (wild && is_hash(p, len))
        slot = &n->hash;
    if (slot) {
        if (!*slot && create) *slot = node_new(n, p, len);
        return *slot;
    }
    tnode *c = dict_get(&n->children, p, len);
    if (!c && create) {
        c = node_new(n, p, len);
        if (c && dict_put(&n->children, c->name, len, c) < 0) {
            free(c);
            c = NULL;
        }
    }
    return c;
}

/* Walk (and create) the nodes of a filter or topic. */
static tnode *walk(tnode *root, const char *s, size_t len, bool create, bool wild)
{
    tnode *n = root;
    const char *p = s, *end = s + len;
    for (;;) {
        const char *q = memchr(p, '/', (size_t)(end - p));
        if (!q) q = end;
        n = child(n, p, (size_t)(q - p), create, wild);
        if (!n || q == end) return n;
        p = q + 1;
    }
}

/* Remove empty nodes from n upwards. */
static void prune(tnode *n)
{
    while (n && n->parent && n->nsubs == 0 && !n->retained && n->children.count == 0 && !n->plus &&
           !n->hash) {
        tnode *parent = n->parent;
        if (parent->plus == n)
            parent->plus = NULL;
        else if (parent->hash == n)
            parent->hash = NULL;
        else
            dict_del(&parent->children, n->name, n->name_len);
        dict_free(&n->children);
        free(n->subs);
        free(n);
        n = parent;
    }
}

int tree_add(tnode *root, const char *filter, size_t flen, struct session *s, tree_sub *where,
             uint8_t qos)
{
    tnode *n = walk(root, filter, flen, true, true);
    if (!n) return BK_ERR_NOMEM;
    if (n->nsubs == n->cap_subs) {
        uint32_t ncap = n->cap_subs ? n->cap_subs * 2 : 2;
        sub_entry *ns = realloc(n->subs, ncap * sizeof *ns);
        if (!ns) {
            prune(n);
            return BK_ERR_NOMEM;
        }
        n->subs = ns;
        n->cap_subs = ncap;
    }
    where->node = n;
    where->index = n->nsubs;
    n->subs[n->nsubs++] = (sub_entry){s, where, qos};
    return BK_OK;
}

void tree_set_qos(const tree_sub *where, uint8_t qos)
{
    where->node->subs[where->index].qos = qos;
}

void tree_remove(const tree_sub *where)
{
    tnode *n = where->node;
    uint32_t last = --n->nsubs;
    if (where->index != last) {
        n->subs[where->index] = n->subs[last];
        n->subs[where->index].where->index = where->index;
    }
    prune(n);
}

static void deliver_all(tnode *n, tree_match_fn fn, void *ud)
{
    for (uint32_t i = 0; i < n->nsubs; i++)
        fn(ud, &n->subs[i]);
}

static void match_rec(tnode *n, const char *p, const char *end, bool done, bool dollar,
                      tree_match_fn fn, void *ud)
{
    /* '#' matches the parent level and everything below [MQTT-4.7.1-2] */
    if (n->hash && !dollar) deliver_all(n->hash, fn, ud);
    if (done) {
        deliver_all(n, fn, ud);
        return;
    }
    const char *q = memchr(p, '/', (size_t)(end - p));
    if (!q) q = end;
    bool next_done = q == end;
    const char *np = next_done ? end : q + 1;
    tnode *c = dict_get(&n->children, p, (size_t)(q - p));
    if (c) match_rec(c, np, end, next_done, false, fn, ud);
    if (n->plus && !dollar) match_rec(n->plus, np, end, next_done, false, fn, ud);
}

void tree_match(tnode *root, const char *topic, size_t tlen, tree_match_fn fn, void *ud)
{
    /* A leading wildcard never matches a '$' topic [MQTT-4.7.2-1]. */
    match_rec(root, topic, topic + tlen, false, tlen > 0 && topic[0] == '$', fn, ud);
}

int tree_retain(tnode *root, msg *m, uint64_t *count)
{
    tnode *n;
    if (m->payload_len == 0) {
        /* [MQTT-3.3.1-10]: an empty retained message clears the topic */
        n = walk(root, msg_topic(m), m->topic_len, false, false);
        if (n && n->retained) {
            msg_unref(n->retained);
            n->retained = NULL;
            (*count)--;
            prune(n);
        }
        return BK_OK;
    }
    n = walk(root, msg_topic(m), m->topic_len, true, false);
    if (!n) return BK_ERR_NOMEM;
    if (n->retained)
        msg_unref(n->retained);
    else
        (*count)++;
    n->retained = msg_ref(m);
    return BK_OK;
}

static bool retained_all(tnode *n, bool skip_dollar, tree_retained_fn fn, void *ud)
{
    uint32_t it = 0;
    dict_entry *e;
    while ((e = dict_next(&n->children, &it))) {
        tnode *c = e->val;
        if (skip_dollar && c->name[0] == '$') continue;
        if (c->retained && !fn(ud, c->retained)) return false;
        if (!retained_all(c, false, fn, ud)) return false;
    }
    return true;
}

static bool retained_rec(tnode *n, const char *p, const char *end, bool done, bool root,
                         tree_retained_fn fn, void *ud)
{
    if (done) return n->retained ? fn(ud, n->retained) : true;
    const char *q = memchr(p, '/', (size_t)(end - p));
    if (!q) q = end;
    size_t len = (size_t)(q - p);
    bool next_done = q == end;
    const char *np = next_done ? end : q + 1;
    if (is_hash(p, len)) {
        if (n->retained && !fn(ud, n->retained)) return false;
        return retained_all(n, root, fn, ud);
    }
    if (is_plus(p, len)) {
        uint32_t it = 0;
        dict_entry *e;
        while ((e = dict_next(&n->children, &it))) {
            tnode *c = e->val;
            if (root && c->name[0] == '$') continue;
            if (!retained_rec(c, np, end, next_done, false, fn, ud)) return false;
        }
        return true;
    }
    tnode *c = dict_get(&n->children, p, len);
    return c ? retained_rec(c, np, end, next_done, false, fn, ud) : true;
}

void tree_retained_match(tnode *root, const char *filter, size_t flen, tree_retained_fn fn,
                         void *ud)
{
    retained_rec(root, filter, filter + flen, false, true, fn, ud);
}
