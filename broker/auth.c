/*
 * auth.c -- the broker side of authentication and authorization: which
 * identity a connection has, the password file and ACL (acl/), reloading
 * them on SIGHUP, and slowing down repeated failed logins per address.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"
#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/protocol.h"
#include "broker/session.h"
#include "mqtt/mqtt.h"
#include "tls/tls.h"

/* ---- failed-login slow-down ---------------------------------------------------
 *
 * Keyed by (address, username): failures for one user name slow down only
 * later attempts for that name from that address, so an attack on alice
 * does not delay bob, a certificate login or an anonymous client at the
 * same address. Per key, credentials are checked at most once per step
 * (0.5 s after the first failure, doubling to AUTH_STEP_MAX). An attempt
 * that arrives before the key's next check is held (without blocking the
 * loop) until then; only one attempt per key is held: a newer one takes
 * the place of the older, which is answered CONNACK 3 unchecked when its
 * hold ends and only counted (rate-limited log). So the attacker gets no
 * more checks than before, and the schedule never runs more than one step
 * ahead: a correct password gets through at most AUTH_STEP_MAX seconds
 * after it is sent, unless a newer attempt for the same key follows it.
 * Per-address ceiling: once AUTH_USERS_PER_ADDR user names have failures
 * from one address, every further name from it shares one key (addr, *),
 * so rotating names buys an attacker nothing.
 */

#define AUTH_FAIL_WINDOW 600.0 /* failures older than this are forgotten */
#define AUTH_STEP_MAX 8.0
#define AUTH_USERS_PER_ADDR 8
#define AUTH_PRUNE_AT 4096     /* records before expired ones are swept */
#define AUTH_MAX_RECORDS 65536 /* about 10 MB: memory an attacker can make us spend */
#define AUTH_KEY_USER_MAX 512  /* bytes of a user name that tell keys apart */

static double step(uint32_t failures)
{
    double d = 0.5;
    for (uint32_t i = 1; i < failures && d < AUTH_STEP_MAX; i++)
        d *= 2;
    return d > AUTH_STEP_MAX ? AUTH_STEP_MAX : d;
}

/* One record per key: "ADDR" (the address: how many names it has under
 * throttle), "ADDR\0USER" or "ADDR\0\0" (the shared key past the ceiling;
 * MQTT strings never contain U+0000, so no user name makes that key). */
typedef struct {
    char *key;
    size_t klen;
    uint32_t failures;
    uint32_t users; /* address records: names with failures */
    double last;    /* last failure */
    double next_check;
    uint64_t ticket;  /* the attempt held for this key, 0 = none */
    uint64_t refused; /* attempts replaced by a newer one */
} fail_rec;

static fail_rec *fail_lookup(broker *b, const char *peer, const char *user, size_t ulen);

/* The sec_cfg of set j: 0 the broker's, 1 + i listener i's (NULL when
 * per_listener_settings is false: that set stays empty). */
static const sec_cfg *set_cfg(const config *c, size_t j)
{
    if (j == 0) return &c->sec;
    return c->per_listener_settings && j - 1 < c->nlisteners ? &c->listeners[j - 1].sec : NULL;
}

static bool same_path(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void sets_free(auth_set *sets, size_t n)
{
    for (size_t i = 0; sets && i < n; i++) {
        if (sets[i].own_pw) pw_file_free(sets[i].pw);
        if (sets[i].own_acl) acl_rules_free(sets[i].acl);
    }
    free(sets);
}

/* Fill sets[j]: borrow what an earlier set loaded from the same path, load
 * the rest. BK_OK or BK_ERR_IO with err set. */
static int load_set(const config *c, auth_set *sets, size_t j, char *err, size_t errlen)
{
    const sec_cfg *s = set_cfg(c, j);
    if (!s) return BK_OK;
    for (size_t i = 0; i < j; i++) {
        const sec_cfg *o = set_cfg(c, i);
        if (!o) continue;
        if (!sets[j].pw && same_path(s->password_file, o->password_file)) sets[j].pw = sets[i].pw;
        if (!sets[j].acl && same_path(s->acl_file, o->acl_file)) sets[j].acl = sets[i].acl;
    }
    char why[400];
    if (s->password_file && !sets[j].pw) {
        if (pw_file_load(s->password_file, &sets[j].pw, why, sizeof why) != ACL_OK) goto fail;
        sets[j].own_pw = true;
    }
    if (s->acl_file && !sets[j].acl) {
        if (acl_rules_load(s->acl_file, &sets[j].acl, why, sizeof why) != ACL_OK) goto fail;
        sets[j].own_acl = true;
    }
    return BK_OK;
fail:
    if (j == 0)
        snprintf(err, errlen, "%s", why);
    else
        snprintf(err, errlen, "listener %d: %s", c->listeners[j - 1].port, why);
    return BK_ERR_IO;
}

int auth_load(broker *b, char *err, size_t errlen)
{
    size_t n = 1 + b->cfg->nlisteners;
    auth_set *sets = calloc(n, sizeof *sets);
    if (!sets) {
        snprintf(err, errlen, "out of memory");
        return BK_ERR_NOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        if (load_set(b->cfg, sets, j, err, errlen) != BK_OK) {
            sets_free(sets, n);
            return BK_ERR_IO;
        }
    }
    sets_free(b->auth, b->nauth);
    b->auth = sets;
    b->nauth = n;
    return BK_OK;
}

void auth_log_reloaded(const broker *b)
{
    for (size_t j = 0; j < b->nauth; j++) {
        const sec_cfg *s = set_cfg(b->cfg, j);
        if (!s || (!s->password_file && !s->acl_file)) continue;
        char who[32] = "";
        if (j) snprintf(who, sizeof who, " for listener %d", b->cfg->listeners[j - 1].port);
        log_msg(LL_NOTICE, "reloaded%s%s%s%s%s", who, s->password_file ? " password_file " : "",
                s->password_file ? s->password_file : "", s->acl_file ? " acl_file " : "",
                s->acl_file ? s->acl_file : "");
    }
}

void auth_free(broker *b)
{
    sets_free(b->auth, b->nauth);
    b->auth = NULL;
    b->nauth = 0;
    uint32_t it = 0;
    dict_entry *e;
    while ((e = dict_next(&b->auth_fails, &it))) {
        fail_rec *f = e->val;
        free(f->key);
        free(f);
    }
    dict_free(&b->auth_fails);
}

int auth_listener_index(const broker *b, const struct listener *l)
{
    if (!l || !b->listeners || l < b->listeners || l >= b->listeners + b->nlisteners) return -1;
    return (int)(l - b->listeners);
}

/* The set of listener index li (-1: unknown). With per_listener_settings
 * false every client has the broker's; with true a client whose listener is
 * unknown has none (NULL: refused, as Mosquitto refuses a context without a
 * listener). */
static const auth_set *set_of(const broker *b, int li)
{
    static const auth_set empty;
    if (!b->auth) return &empty; /* before auth_load (unit tests without files) */
    if (!b->cfg->per_listener_settings) return &b->auth[0];
    if (li < 0 || (size_t)li + 1 >= b->nauth) return NULL;
    return &b->auth[li + 1];
}

static const auth_set *client_set(const broker *b, const client *c)
{
    return set_of(b, auth_listener_index(b, c->conn->listener));
}

/* A session's reads: its listener's set; a bridge's own session is not
 * checked with per_listener_settings true (as Mosquitto skips bridges). */
static const auth_set *session_set(const broker *b, const session *s)
{
    static const auth_set empty;
    if (b->cfg->per_listener_settings && s->pinned) return &empty;
    return set_of(b, s->listener);
}

int auth_login(broker *b, client *c, const char *username, const uint8_t *pw, size_t pwlen,
               bool has_password)
{
    const listener_cfg *lc = c->conn->listener->cfg;
    if (lc->use_identity_as_username || lc->use_subject_as_username) {
        /* The certificate is the credential; the CONNECT username is replaced
         * by its CN, or its whole subject (RFC 2253 order, as Mosquitto). */
        const tls_conn *t = c->conn->tls;
        const char *cn = !t                            ? NULL
                         : lc->use_subject_as_username ? tls_conn_peer_subject(t)
                                                       : tls_conn_peer_cn(t);
        free(c->username);
        c->username = cn ? strdup(cn) : NULL;
        return cn ? MQTT_CONNACK_ACCEPTED : MQTT_CONNACK_NOT_AUTHORIZED;
    }
    const auth_set *set = client_set(b, c);
    bool anon = config_sec(b->cfg, lc)->allow_anonymous;
    if (!set) return MQTT_CONNACK_NOT_AUTHORIZED;
    if (!username || !set->pw) return anon ? MQTT_CONNACK_ACCEPTED : MQTT_CONNACK_NOT_AUTHORIZED;
    if (!has_password) {
        /* NULL, not "": no password never matches, not even an empty one */
        pw = NULL;
        pwlen = 0;
    }
    int r = pw_file_check(set->pw, username, pw, pwlen);
    if (r == ACL_OK) return MQTT_CONNACK_ACCEPTED;
    fail_rec *f = fail_lookup(b, c->conn->peer, username, strlen(username));
    log_limited_key(LL_NOTICE, c->conn->peer,
                    "%s: login as '%s' failed: %s (failure %u for this name and address, %llu "
                    "attempts answered unchecked)",
                    c->conn->peer, log_esc(username),
                    r == ACL_ERR_UNKNOWN_USER ? "unknown user" : "wrong password",
                    (f ? f->failures : 0) + 1, (unsigned long long)(f ? f->refused : 0));
    return MQTT_CONNACK_BAD_CREDENTIALS;
}

/* May (username, client_id) have access to topic under set? */
static bool set_allows(const auth_set *set, const char *user, const char *id, const char *topic,
                       size_t len, int access)
{
    if (!set) return false;
    if (!set->acl) return true;
    return acl_check(set->acl, user, id, topic, len, access) == ACL_OK;
}

bool auth_may_write(broker *b, client *c, const char *topic, size_t len)
{
    return set_allows(client_set(b, c), c->username, c->client_id, topic, len, ACL_WRITE);
}

bool auth_may_read(broker *b, session *s, const char *topic, size_t len)
{
    return set_allows(session_set(b, s), s->username, s->client_id, topic, len, ACL_READ);
}

bool auth_source_may_write(broker *b, const msg *m)
{
    if (!b->cfg->check_retain_source || !m->source) return true;
    const msg_source *src = m->source;
    if (set_allows(set_of(b, src->listener), src->username, src->client_id, msg_topic(m),
                   m->topic_len, ACL_WRITE))
        return true;
    log_msg(LL_DEBUG,
            "Retained message on '%s' not sent: its publisher %s may no longer write it "
            "(check_retain_source)",
            log_esc(msg_topic(m)), log_esc(src->client_id));
    return false;
}

bool auth_may_subscribe(broker *b, client *c, const char *filter, size_t len)
{
    return set_allows(client_set(b, c), c->username, c->client_id, filter, len, ACL_SUBSCRIBE);
}

static uint64_t last_ticket;

/* The address part of a key, into out[64]: "1.2.3.4:5678" -> "1.2.3.4";
 * IPv6 by its /64, which one host usually has whole: "[2001:db8::1:2]:5678"
 * -> "2001:db8::/64". Returns the length. */
static size_t addr_key(const char *peer, char *out)
{
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t)(colon - peer) : strlen(peer);
    if (n > 63) n = 63;
    memcpy(out, peer, n);
    out[n] = '\0';
    unsigned char a6[16];
    if (n > 2 && out[0] == '[' && out[n - 1] == ']') {
        out[n - 1] = '\0';
        if (inet_pton(AF_INET6, out + 1, a6) == 1) {
            memset(a6 + 8, 0, 8);
            char txt[INET6_ADDRSTRLEN];
            if (inet_ntop(AF_INET6, a6, txt, sizeof txt))
                return (size_t)snprintf(out, 64, "%s/64", txt);
        }
        out[n - 1] = ']';
    }
    return n;
}

/* Forget f; a user record also leaves its address's count. */
static void fail_forget(broker *b, fail_rec *f)
{
    size_t alen = strnlen(f->key, f->klen);
    bool user_rec = alen < f->klen && !(f->klen == alen + 2 && f->key[alen + 1] == '\0');
    fail_rec *a = user_rec ? dict_get(&b->auth_fails, f->key, alen) : NULL;
    if (a && a->users) a->users--;
    dict_del(&b->auth_fails, f->key, f->klen);
    free(f->key);
    free(f);
}

/* A held attempt whose record expires is answered CONNACK 3 when it wakes;
 * a ticket left by a client that went away must not keep a record alive. */
static bool fail_expired(const broker *b, const fail_rec *f)
{
    return b->now - f->last > AUTH_FAIL_WINDOW;
}

/* The record of key[0..klen), or NULL; an expired one is forgotten. */
static fail_rec *fail_find(broker *b, const char *key, size_t klen)
{
    fail_rec *f = dict_get(&b->auth_fails, key, klen);
    if (f && fail_expired(b, f)) {
        fail_forget(b, f);
        f = NULL;
    }
    return f;
}

static fail_rec *fail_new(broker *b, const char *key, size_t klen)
{
    fail_rec *f = calloc(1, sizeof *f);
    char *k = malloc(klen ? klen : 1);
    if (!f || !k ||
        (memcpy(k, key, klen), f->key = k, f->klen = klen,
         dict_put(&b->auth_fails, f->key, klen, f) < 0)) {
        free(f);
        free(k);
        return NULL;
    }
    return f;
}

/* Build the (address, user) key of peer and user into buf (at least
 * 65 + AUTH_KEY_USER_MAX bytes); returns its length and the address part's
 * length in *alen (the address alone is buf[0..*alen)). */
static size_t fail_key(char *buf, const char *peer, const char *user, size_t ulen, size_t *alen)
{
    *alen = addr_key(peer, buf);
    if (ulen > AUTH_KEY_USER_MAX) ulen = AUTH_KEY_USER_MAX;
    memcpy(buf + *alen + 1, user, ulen);
    return *alen + 1 + ulen;
}

/* The record that governs (peer, user): its own, or the address's shared
 * one once the address is at its ceiling; NULL if none (not throttled). */
static fail_rec *fail_lookup(broker *b, const char *peer, const char *user, size_t ulen)
{
    char key[65 + AUTH_KEY_USER_MAX];
    size_t alen, klen = fail_key(key, peer, user, ulen, &alen);
    fail_rec *f = fail_find(b, key, klen);
    if (f) return f;
    fail_rec *a = fail_find(b, key, alen);
    if (!a || a->users < AUTH_USERS_PER_ADDR) return NULL;
    key[alen + 1] = '\0';
    return fail_find(b, key, alen + 2);
}

double auth_attempt_delay(broker *b, client *c, const mqtt_str *username, bool after_delay)
{
    /* certificate and anonymous logins are never slowed down */
    if (c->conn->listener->cfg->use_identity_as_username || !username) return 0;
    fail_rec *f = fail_lookup(b, c->conn->peer, (const char *)username->ptr, username->len);
    if (after_delay) {
        if (!f || f->ticket != c->auth_ticket) return -1; /* a newer attempt took the turn */
        f->ticket = 0;
        f->next_check = b->now + step(f->failures);
        return 0;
    }
    if (!f || f->failures == 0) return 0;
    if (b->now >= f->next_check) {
        if (f->ticket) f->refused++; /* a held attempt not yet woken loses its turn */
        f->ticket = 0;
        f->next_check = b->now + step(f->failures);
        return 0;
    }
    if (f->ticket) f->refused++;
    c->auth_ticket = f->ticket = ++last_ticket;
    return f->next_check - b->now;
}

/* Sweep expired records (collected first: deleting moves entries). */
static void fail_prune(broker *b)
{
    fail_rec *old[256];
    size_t n;
    do {
        n = 0;
        uint32_t it = 0;
        dict_entry *e;
        while (n < 256 && (e = dict_next(&b->auth_fails, &it))) {
            fail_rec *f = e->val;
            if (fail_expired(b, f)) old[n++] = f;
        }
        for (size_t i = 0; i < n; i++)
            fail_forget(b, old[i]);
    } while (n == 256);
}

void auth_record_failure(broker *b, client *c)
{
    static double last_prune;
    if (b->auth_fails.count > AUTH_PRUNE_AT && b->now - last_prune >= 1.0) {
        last_prune = b->now; /* a sweep is O(records): at most once a second */
        fail_prune(b);
    }
    const char *user = c->username ? c->username : "";
    char key[65 + AUTH_KEY_USER_MAX];
    size_t alen, klen = fail_key(key, c->conn->peer, user, strlen(user), &alen);
    fail_rec *f = fail_find(b, key, klen);
    if (!f && b->auth_fails.count >= AUTH_MAX_RECORDS) {
        log_limited(LL_WARNING,
                    "failed-login table full (%d records): failures from new "
                    "addresses are not slowed down until old ones expire",
                    AUTH_MAX_RECORDS);
        return;
    }
    if (!f) {
        fail_rec *a = fail_find(b, key, alen);
        if (!a && !(a = fail_new(b, key, alen))) return;
        if (a->users >= AUTH_USERS_PER_ADDR) {
            key[alen + 1] = '\0'; /* the address's shared key */
            klen = alen + 2;
            f = fail_find(b, key, klen);
        } else {
            a->users++;
        }
        if (!f && !(f = fail_new(b, key, klen))) return;
    }
    fail_rec *a = dict_get(&b->auth_fails, key, alen);
    if (a) a->last = b->now; /* the address outlives the failures it counts */
    f->failures++;
    f->last = b->now;
    if (f->next_check < b->now + step(f->failures)) f->next_check = b->now + step(f->failures);
}
