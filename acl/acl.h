/*
 * acl.h -- password files and access control lists, in Mosquitto's formats.
 * No sockets; mbedTLS (crypto only) for hashing.
 *
 * Return convention: ACL_OK (0) on success / "allowed", negative ACL_ERR_*
 * otherwise. Loaders fill `err` with "FILE:LINE: reason".
 */
#ifndef SECBROKER_ACL_H
#define SECBROKER_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum acl_err {
    ACL_OK = 0,
    ACL_ERR_FILE = -1,         /* cannot open/read the file */
    ACL_ERR_SYNTAX = -2,       /* malformed line */
    ACL_ERR_UNKNOWN_USER = -3, /* pw_check: no such user */
    ACL_ERR_BAD_PASSWORD = -4, /* pw_check: wrong password */
    ACL_ERR_DENIED = -5,       /* acl_check: not allowed */
    ACL_ERR_ALLOC = -6,
    ACL_ERR_ARG = -7, /* invalid argument (e.g. ':' in a user name) */
    ACL_ERR_CRYPTO = -8,
};

/* ---- password file --------------------------------------------------- */

typedef struct pw_file pw_file;

/* Lines "user:$7$ITER$SALT_B64$HASH_B64" (PBKDF2-HMAC-SHA512) and
 * "user:$6$SALT_B64$HASH_B64" (SHA-512(password || salt)); '#' comments and
 * blank lines ignored. */
int pw_file_load(const char *path, pw_file **out, char *err, size_t errlen);
void pw_file_free(pw_file *pf);
size_t pw_file_count(const pw_file *pf);
/* Constant-time comparison of the derived hash. ACL_OK, ACL_ERR_UNKNOWN_USER
 * or ACL_ERR_BAD_PASSWORD. Remembers successful verifications (keyed by a
 * SHA-512 of user and password) so a reconnecting client does not pay the
 * PBKDF2 cost again. */
int pw_file_check(pw_file *pf, const char *user, const uint8_t *password, size_t pwlen);

/* ---- additions (acl/ owner): ------------------------------------------ */
/* Iterations pw_hash_make uses for 0: what Debian's mosquitto_passwd 2.0.11
 * writes, so both tools make the same kind of line. */
#define PW_DEFAULT_ITERATIONS 101u
/* Largest $7$ iteration count the loader (and pw_hash_make) accepts. The
 * broker hashes on its event loop, so one check must stay short: 20,000
 * PBKDF2-SHA512 iterations take about 26 ms on the 2-core development
 * machine (test_pw COST lines); a file with more is refused at load with
 * FILE:LINE and this cap. */
#define PW_MAX_ITERATIONS 20000u
/* Counters since load: checks answered from the cache, and hash
 * computations run (a miss, a wrong password or an unknown user). For tests
 * and $SYS; either pointer may be NULL. */
void pw_file_stats(const pw_file *pf, uint64_t *cache_hits, uint64_t *hash_runs);
/* The work pw_file_check has done since load, for tests that prove every
 * uncached answer costs the same: PBKDF2 iterations run (a $6$ digest counts
 * as 1) and digest bytes compared through pw_ct_equal. A wrong password, an
 * unknown user (checked against a dummy entry) and a missing password each
 * add one entry's iterations and PW_DIGEST_LEN compared bytes. */
#define PW_DIGEST_LEN 64
typedef struct {
    uint64_t iterations;
    uint64_t compared_bytes;
} pw_work;
void pw_file_work(const pw_file *pf, pw_work *out);
/* Constant-time equality of a[0..n) and b[0..n): reads every byte of both
 * and its time depends on n only, never on where they differ (unlike
 * memcmp). Returns true when equal. */
bool pw_ct_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* Make one "$7$ITER$SALT$HASH" string (no "user:") with a random 12-byte
 * salt; iterations 0 = default (see docs). out must hold 256 bytes. */
int pw_hash_make(const uint8_t *password, size_t pwlen, unsigned iterations, char *out,
                 size_t outlen);
/* Like pw_hash_make with the hash chosen: type 7 = "$7$ITER$SALT$HASH"
 * (PBKDF2-HMAC-SHA512), type 6 = "$6$SALT$HASH" (one SHA-512 of password
 * and salt, for Mosquitto 1.6 and older; iterations unused). ACL_ERR_ARG
 * for another type. */
int pw_hash_make_type(int type, const uint8_t *password, size_t pwlen, unsigned iterations,
                      char *out, size_t outlen);
/* Verify password against a "$7$..." or "$6$..." string. */
int pw_hash_verify(const char *hash, const uint8_t *password, size_t pwlen);

/* ---- ACL file -------------------------------------------------------- */

typedef struct acl_rules acl_rules;

enum acl_access {
    ACL_READ = 1,      /* a message on this topic may be delivered to the client */
    ACL_WRITE = 2,     /* the client may publish on this topic */
    ACL_SUBSCRIBE = 4, /* the client may subscribe with this filter */
};

/* Mosquitto grammar: "topic [read|write|readwrite|deny] TOPIC",
 * "user NAME", "pattern [read|write|readwrite|deny] TOPIC" (%c, %u);
 * rules before the first "user" line apply to anonymous clients. */
int acl_rules_load(const char *path, acl_rules **out, char *err, size_t errlen);
void acl_rules_free(acl_rules *r);
/* username NULL = anonymous. topic is a topic name for READ/WRITE and a
 * topic filter for SUBSCRIBE (allowed when a read rule's filter covers it).
 * Returns ACL_OK or ACL_ERR_DENIED. Deny rules win. */
int acl_check(const acl_rules *r, const char *username, const char *client_id, const char *topic,
              size_t topic_len, int access);
/* Details (acl/ owner; no declaration changed):
 * - access is exactly one of ACL_READ, ACL_WRITE, ACL_SUBSCRIBE; anything
 *   else, r == NULL, an empty topic, a wildcard in a READ/WRITE topic name or
 *   an invalid SUBSCRIBE filter is ACL_ERR_DENIED (fail closed). topic need
 *   not be NUL-terminated.
 * - A deny rule (topic or pattern) that applies wins over every grant.
 * - SUBSCRIBE: allowed when a read-granting rule covers the whole filter and
 *   no deny rule covers the whole filter. A deny that only overlaps it (rule
 *   "deny a/secret/#", filter "a/#") does not refuse the subscription; the
 *   READ check the broker makes per message on delivery (retained ones too)
 *   drops what it denies -- as Mosquitto 2.0 does for every deny.
 * - %c/%u substitute whole levels only. A missing or empty client id or user
 *   name makes a pattern that uses it not apply; one containing '+', '#' or
 *   '/' makes such a pattern never grant, and, if it is a deny pattern, deny
 *   everything for that client.
 * - Matching is mqtt/'s (mqtt_match_level, mqtt_filter_covers rules), so
 *   the ACL and the broker's tree agree on every filter/topic pair. A rule's
 *   TOPIC must pass mqtt_topic_filter_validate (valid UTF-8 without NUL,
 *   wildcards filling whole levels, '#' last, at most 65535 bytes); any
 *   other is a load error naming the line.
 * - No allocation; r is immutable after load, so a reload builds a new
 *   object, swaps the pointer and frees the old one. */

const char *acl_strerror(int err);

#endif
