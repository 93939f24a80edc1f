/*
 * persist.h -- durable state (issue "persistence"): the broker's side of
 * store/. It journals what durable sessions and the retained store change
 * (as the sessions' journal and through persist_retain), commits once per
 * loop iteration before output is flushed (persistence_sync strict) or every
 * autosave_interval (interval), loads everything back at startup, and holds
 * back acknowledgements while a commit fails.
 *
 * Strict mode's promise: an acknowledgement (PUBACK/PUBREC of a PUBLISH that
 * changed durable state, SUBACK/UNSUBACK of a durable session, the CONNACK
 * that creates one) and every QoS 1/2 PUBLISH or PUBREL to a durable session
 * leave only after the commit that holds the change returned: the protocol
 * marks such output with conn_hold() while changes are pending, and
 * persist_before_flush() releases the holds once the commit succeeded.
 *
 * Every function accepts a broker without persistence (no-op / 0).
 */
#ifndef SECBROKER_PERSIST_H
#define SECBROKER_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/msg.h"

struct broker;
struct session;

/* Open (or create) the database, quarantine a damaged one, load retained
 * messages and durable sessions with their subscriptions, deliveries and
 * QoS 2 ids, and attach the journal. Logs what was loaded. BK_OK, or an
 * error with the reason in err (the database cannot be created at all). */
int persist_open(struct broker *b, char *err, size_t errlen) BK_MUST_CHECK;
/* Commit what is pending and close (before sessions and the tree are freed:
 * it detaches the journal so that freeing them is not journaled). */
void persist_close(struct broker *b);
/* The epoll tag of the sync helper's eventfd: the loop calls
 * persist_on_synced when it is readable. */
#define PERSIST_EVENT (1ULL << 62)

/* Changes journaled but not committed whose acknowledgements must wait
 * (strict mode; 0 in interval mode and without persistence): a handler
 * compares it before and after a packet to know whether its answer waits. */
size_t persist_pending(const struct broker *b);
/* The epoch that gathers the changes being journaled now. */
uint64_t persist_gathering_epoch(const struct broker *b);
/* The epoch output to a durable session must wait for (its latest change
 * may be gathering, being synced, or failed), 0 when nothing is open. */
uint64_t persist_hold_epoch(const struct broker *b);
/* Before the loop flushes output: commit when the policy says so (strict:
 * when no sync is running) and hand the sync to the helper thread. */
void persist_before_flush(struct broker *b);
/* The helper finished a sync: release the output held for it, start the
 * next batch. */
void persist_on_synced(struct broker *b);
/* SIGUSR1: commit at the next iteration whatever the mode. */
void persist_request_save(struct broker *b);
/* The retained slot of m's topic changed (an empty payload clears it). */
void persist_retain(struct broker *b, msg *m);
/* Make s durable (persistence on and not clean: MQTT 5 session expiry
 * > 0) and record it with its username and expiry interval: at CONNECT,
 * after the session is attached, and when DISCONNECT changes the expiry.
 * A durable session that became clean is removed from the store. */
void persist_session_attached(struct broker *b, struct session *s);

#endif
