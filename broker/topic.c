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
#include "mqtt/mqtt.h"

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
    return mqtt_topic_deeper_than((const uint8_t *)s, len, TOPIC_MAX_LEVELS);
}

/* Child for one level, created on demand (create=true). With wild, a "+"
 * or "#" level is the node's wildcard child, else an exact child. */
static tnode *child(tnode *n, const char *p, size_t len, bool create, bool wild)
{
    enum mqtt_level_kind k = wild ? mqtt_level_kind((const uint8_t *)p, len) : MQTT_LEVEL_TEXT;
    tnode **slot = k == MQTT_LEVEL_PLUS ? &n->plus : k == MQTT_LEVEL_HASH ? &n->hash : NULL;
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

/* Walk (and create) the nodes of a filter or topic, one level at a time. */
static tnode *walk(tnode *root, const char *s, size_t len, bool create, bool wild)
{
    tnode *n = root;
    mqtt_levels it;
    for (mqtt_levels_init(&it, (const uint8_t *)s, len); n && !it.done; mqtt_levels_next(&it))
        n = child(n, (const char *)it.ptr, it.len, create, wild);
    return n;
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

/* it is at the topic level below n (done: n is the topic's node). dollar:
 * n is the root and the topic starts with '$', so its wildcard children
 * must not match [MQTT-4.7.2-1]. */
static void match_rec(tnode *n, const mqtt_levels *it, bool dollar, tree_match_fn fn, void *ud)
{
    /* '#' matches the parent level and everything below [MQTT-4.7.1-2] */
    if (n->hash && !dollar) deliver_all(n->hash, fn, ud);
    if (it->done) {
        deliver_all(n, fn, ud);
        return;
    }
    tnode *c = dict_get(&n->children, (const char *)it->ptr, it->len);
    tnode *plus = dollar ? NULL : n->plus;
    if (!c && !plus) return;
    mqtt_levels next; /* both children continue one level down */
    mqtt_levels_step(&next, it);
    if (c) match_rec(c, &next, false, fn, ud);
    if (plus) match_rec(plus, &next, false, fn, ud);
}

void tree_match(tnode *root, const char *topic, size_t tlen, tree_match_fn fn, void *ud)
{
    mqtt_levels it;
    mqtt_levels_init(&it, (const uint8_t *)topic, tlen);
    match_rec(root, &it, mqtt_topic_is_dollar((const uint8_t *)topic, tlen), fn, ud);
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

msg *tree_retained_get(tnode *root, const char *topic, size_t tlen)
{
    tnode *n = walk(root, topic, tlen, false, false);
    return n ? n->retained : NULL;
}

/* Is c a '$' child of the root, which a leading wildcard skips [MQTT-4.7.2-1]? */
static bool skip_child(const tnode *c, bool root)
{
    return root && mqtt_topic_is_dollar((const uint8_t *)c->name, c->name_len);
}

static bool retained_all(tnode *n, bool root, tree_retained_fn fn, void *ud)
{
    uint32_t it = 0;
    dict_entry *e;
    while ((e = dict_next(&n->children, &it))) {
        tnode *c = e->val;
        if (skip_child(c, root)) continue;
        if (c->retained && !fn(ud, c->retained)) return false;
        if (!retained_all(c, false, fn, ud)) return false;
    }
    return true;
}

/* it is at the filter level below n (done: n is the filter's node). */
static bool retained_rec(tnode *n, const mqtt_levels *it, bool root, tree_retained_fn fn, void *ud)
{
    if (it->done) return n->retained ? fn(ud, n->retained) : true;
    mqtt_levels next;
    mqtt_levels_step(&next, it);
    switch (mqtt_level_kind(it->ptr, it->len)) {
    case MQTT_LEVEL_HASH:
        if (n->retained && !fn(ud, n->retained)) return false;
        return retained_all(n, root, fn, ud);
    case MQTT_LEVEL_PLUS: {
        uint32_t i = 0;
        dict_entry *e;
        while ((e = dict_next(&n->children, &i)))
            if (!skip_child(e->val, root) && !retained_rec(e->val, &next, false, fn, ud))
                return false;
        return true;
    }
    default: {
        tnode *c = dict_get(&n->children, (const char *)it->ptr, it->len);
        return c ? retained_rec(c, &next, false, fn, ud) : true;
    }
    }
}

void tree_retained_match(tnode *root, const char *filter, size_t flen, tree_retained_fn fn,
                         void *ud)
{
    mqtt_levels it;
    mqtt_levels_init(&it, (const uint8_t *)filter, flen);
    retained_rec(root, &it, true, fn, ud);
}
