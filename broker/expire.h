/*
 * expire.h -- persistent_client_expiration: a persistent session whose
 * client stays away longer than the configured time is destroyed (its
 * subscriptions and queued messages go; the session journal records it).
 */
#ifndef SECBROKER_EXPIRE_H
#define SECBROKER_EXPIRE_H

#include <stdint.h>

struct broker;

/* Look at every session (call about once a second): note when each went
 * offline, destroy those offline longer than the limit. Returns how many
 * were destroyed. */
uint32_t expire_sessions(struct broker *b);

#endif
