/*
 * auth.h -- the broker side of authentication and authorization: which
 * identity a connection has, the password file and ACL (acl/), reloading
 * them on SIGHUP, and slowing down repeated failed logins per (address,
 * user name).
 */
#ifndef SECBROKER_AUTH_H
#define SECBROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/err.h"
#include "mqtt/mqtt.h"

struct broker;
struct client;
struct session;
struct msg;
struct listener;
struct pw_file;
struct acl_rules;

/* The loaded password file and ACL of one sec_cfg (config.h): broker.auth[0]
 * is the broker's (per_listener_settings false: every listener's),
 * broker.auth[1 + i] listener i's (loaded only with per_listener_settings
 * true). Sets naming the same file share one loaded object: the first set
 * that names a path owns it (loads and frees it), later ones borrow the
 * pointer (own_* false). A reload builds a whole new array and frees the old
 * one, so borrowed pointers never outlive their owner. */
typedef struct auth_set {
    struct pw_file *pw;
    struct acl_rules *acl;
    bool own_pw, own_acl;
} auth_set;

/* Load every set's password_file and acl_file. BK_OK, or BK_ERR_IO with err
 * set (the running sets are kept). */
int auth_load(struct broker *b, char *err, size_t errlen) BK_MUST_CHECK;
/* After a successful auth_load by SIGHUP: one log line per set with files.
 * (A failed one keeps the running sets; reload.c restores the settings.) */
void auth_log_reloaded(const struct broker *b);
/* l's index in broker.listeners, or -1 (a bridge's connection, a test's). */
int auth_listener_index(const struct broker *b, const struct listener *l);
bool auth_may_write(struct broker *b, struct client *c, const char *topic, size_t len);
bool auth_may_read(struct broker *b, struct session *s, const char *topic, size_t len);
/* check_retain_source: may m's recorded publisher still write its topic?
 * true when the option is off, there is no ACL or no publisher was recorded. */
bool auth_source_may_write(struct broker *b, const struct msg *m);
bool auth_may_subscribe(struct broker *b, struct client *c, const char *filter, size_t len);
/* CONNACK code for this CONNECT's credentials (0 = accepted). */
int auth_login(struct broker *b, struct client *c, const char *username, const uint8_t *pw,
               size_t pwlen, bool has_password);
/* Brute-force slow-down per (address, username), see auth.c: seconds this
 * CONNECT must be held before its password is checked (0 = check now), or
 * < 0 when a newer attempt for the same key took its turn (answer CONNACK 3).
 * username NULL (anonymous) and certificate listeners: always 0. Call again
 * with after_delay when the hold ends. auth_record_failure counts a failed
 * check of c's (address, username). */
double auth_attempt_delay(struct broker *b, struct client *c, const mqtt_str *username,
                          bool after_delay);
void auth_record_failure(struct broker *b, struct client *c);
void auth_free(struct broker *b);

#endif
