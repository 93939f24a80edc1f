/*
 * router.h -- one PUBLISH to every matching subscriber: the message is
 * stored once (refcounted), matched in the topic tree, deduplicated per
 * session at the highest granted QoS [MQTT-3.3.5-1] and authorized for
 * reading per copy.
 */
#ifndef SECBROKER_ROUTER_H
#define SECBROKER_ROUTER_H

#include "broker/msg.h"

struct broker;

/* Route m from the client named from_id (NULL for wills and $SYS) to every
 * matching subscriber; stores it first when retained. */
void router_publish(struct broker *b, const char *from_id, msg *m);

#endif
