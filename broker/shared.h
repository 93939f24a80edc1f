/*
 * shared.h -- MQTT shared subscriptions, `$share/GROUP/FILTER` (spec 4.8.2),
 * for MQTT 5 and 3.1.1 clients alike (as Mosquitto). A group is one entry
 * in the topic tree (session NULL, its tree_sub inside the group), so the
 * router meets it once per PUBLISH; each message goes to one member, round
 * robin, skipping members that cannot take it (offline for QoS 0, queue at
 * max_queued_messages). Retained messages are never sent on a shared
 * subscription [MQTT-3.8.4-?; spec 4.8.2]; No Local is refused by the codec
 * [MQTT-3.8.3-4].
 *
 * Ownership: the broker's registry owns the groups (a dict by
 * "GROUP/FILTER"); a group owns its member array, which points at (does not
 * own) sessions: a session leaves every group (shared_leave_all) before it
 * is destroyed.
 */
#ifndef SECBROKER_SHARED_H
#define SECBROKER_SHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/err.h"
#include "broker/msg.h"
#include "broker/tree.h"

struct broker;
struct session;

/* "$share/G/F": *group = G, *filter = F. true when f is a shared filter
 * at all ("$share/" prefix); *valid says whether G is a non-empty level
 * without wildcards and F a non-empty filter [MQTT-4.8.2-1/2]. */
bool shared_parse(const char *f, size_t flen, const char **group, size_t *glen, const char **filter,
                  size_t *filt_len, bool *valid);

/* Join (or update: QoS, Subscription Identifier) s to group G on filter F.
 * BK_OK or BK_ERR_NOMEM. */
int shared_join(struct broker *b, struct session *s, const char *group, size_t glen,
                const char *filter, size_t flen, uint8_t qos, uint32_t sub_id) BK_MUST_CHECK;
/* BK_OK, or BK_ERR_UNKNOWN when s was not a member. */
int shared_leave(struct broker *b, struct session *s, const char *group, size_t glen,
                 const char *filter, size_t flen);
/* s leaves every group; its unacknowledged QoS 1/2 messages and queued ones
 * of those groups go to another member. Call before destroying s. */
void shared_leave_all(struct broker *b, struct session *s, bool redeliver);
/* fn(ud, id) for the Subscription Identifier of every group s belongs to
 * whose filter matches topic (at most max calls). */
void shared_sub_ids(struct broker *b, const struct session *s, const char *topic, size_t tlen,
                    unsigned max, void (*fn)(void *ud, uint32_t id), void *ud);
/* Does s take part in any group? */
bool shared_is_member(struct broker *b, const struct session *s);

/* Router: e is a group's tree entry (e->s == NULL); remember the group for
 * this PUBLISH (once), then shared_deliver_matched after the match. */
void shared_collect(struct broker *b, sub_entry *e);
void shared_deliver_matched(struct broker *b, msg *m);
/* Messages delivered through groups, for $SYS and tests. */
uint64_t shared_delivered(const struct broker *b);
void shared_free(struct broker *b);

#endif
