/*
 * tree.h -- the topic tree: one node per level, exact children in a hash
 * table, '+' and '#' children apart. It stores subscriber entries on the
 * node of their filter and retained messages on the node of their topic,
 * so matching a PUBLISH costs O(depth x wildcard branches), never
 * O(subscribers). Who subscribed to what is the session's business
 * (session.h); the tree only keeps entries and tells their owner where
 * each one lives through a tree_sub handle it keeps current.
 */
#ifndef SECBROKER_TREE_H
#define SECBROKER_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/dict.h"
#include "broker/err.h"
#include "broker/msg.h"

/* Deepest topic name or filter accepted, in levels (Mosquitto's limit too):
 * the tree's walks recurse once per level, so depth must be bounded. */
#define TOPIC_MAX_LEVELS 200

struct session;
struct tnode;

/* An entry's qos byte: the granted QoS in its low bits, and MQTT 5
 * subscription options above (the bits of the SUBSCRIBE options byte). */
#define SUBOPT_QOS_MASK 0x03
#define SUBOPT_NO_LOCAL 0x04 /* not to the publishing client [MQTT-3.8.3-3] */
#define SUBOPT_RAP 0x08      /* Retain As Published */
#define SUBOPT_SHARED 0x80   /* a shared subscription group's entry (session NULL) */

/* Where one entry lives. Owned by the subscriber (inside its record); the
 * tree updates index when entries move. */
typedef struct tree_sub {
    struct tnode *node;
    uint32_t index; /* position in node->subs */
} tree_sub;

typedef struct {
    struct session *s;
    tree_sub *where;
    uint8_t qos;
} sub_entry;

typedef struct tnode {
    struct tnode *parent;
    dict children;      /* exact levels: name -> tnode */
    struct tnode *plus; /* '+' child */
    struct tnode *hash; /* '#' child */
    sub_entry *subs;
    uint32_t nsubs, cap_subs;
    msg *retained;
    uint16_t name_len;
    char name[]; /* this level, NUL-terminated */
} tnode;

/* An empty root, or NULL when out of memory. */
tnode *tree_new_root(void) BK_MUST_CHECK;
void tree_free(tnode *root);

/* Store an entry (s, qos) under filter; *where is filled in and kept up to
 * date until tree_remove(where). BK_OK or BK_ERR_NOMEM. */
int tree_add(tnode *root, const char *filter, size_t flen, struct session *s, tree_sub *where,
             uint8_t qos) BK_MUST_CHECK;
void tree_set_qos(const tree_sub *where, uint8_t qos);
/* Remove the entry at where and prune nodes left empty. */
void tree_remove(const tree_sub *where);

/* Calls fn for every subscriber entry matching topic (not deduplicated). */
typedef void (*tree_match_fn)(void *ud, sub_entry *e);
void tree_match(tnode *root, const char *topic, size_t tlen, tree_match_fn fn, void *ud);
/* Retained store: m with empty payload clears. *count is the number of
 * retained messages, kept up to date. BK_OK or BK_ERR_NOMEM. */
int tree_retain(tnode *root, msg *m, uint64_t *count);
/* The retained message on topic (no wildcards), or NULL. */
msg *tree_retained_get(tnode *root, const char *topic, size_t tlen);
/* Returns true to go on, false to stop the walk. */
typedef bool (*tree_retained_fn)(void *ud, msg *m);
void tree_retained_match(tnode *root, const char *filter, size_t flen, tree_retained_fn fn,
                         void *ud);

/* More than TOPIC_MAX_LEVELS levels? Only strings of at least that many bytes
 * can be, so ordinary topics are not scanned (this runs per PUBLISH). */
bool topic_too_deep(const char *s, size_t len);

#endif
