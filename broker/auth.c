/*
 * auth.c -- the broker side of authentication and authorization: which
 * identity a connection has, the password file and ACL (acl/), reloading
 * them on SIGHUP, and slowing down repeated failed logins per address.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"
#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/protocol.h"
#include "broker/session.h"
#include "broker/log.h"
#include "mqtt/mqtt.h"
#include "tls/tls.h"

int auth_load(broker *b, char *err, size_t errlen)
{
    pw_file *pw = NULL;
    acl_rules *acl = NULL;
    if (b->cfg->password_file && pw_file_load(b->cfg->password_file, &pw, err, errlen) != ACL_OK)
        return BK_ERR_IO;
    if (b->cfg->acl_file && acl_rules_load(b->cfg->acl_file, &acl, err, errlen) != ACL_OK) {
        pw_file_free(pw);
        return BK_ERR_IO;
    }
    pw_file_free(b->pw);
    acl_rules_free(b->acl);
    b->pw = pw;
    b->acl = acl;
    return BK_OK;
}

void auth_reload(broker *b)
{
    char err[512];
    /* Both files are parsed before either replaces the old rules, so a broken
     * file keeps the previous state whole. Connections are untouched. */
    if (auth_load(b, err, sizeof err) != BK_OK) {
        log_msg(LL_ERROR, "reload failed, keeping the previous password file and ACL: %s", err);
        return;
    }
    if (!b->cfg->password_file && !b->cfg->acl_file) return;
    log_msg(LL_NOTICE, "reloaded%s%s%s%s", b->cfg->password_file ? " password_file " : "",
            b->cfg->password_file ? b->cfg->password_file : "",
            b->cfg->acl_file ? " acl_file " : "", b->cfg->acl_file ? b->cfg->acl_file : "");
}

void auth_free(broker *b)
{
    pw_file_free(b->pw);
    acl_rules_free(b->acl);
    b->pw = NULL;
    b->acl = NULL;
    uint32_t it = 0;
    dict_entry *e;
    while ((e = dict_next(&b->auth_fails, &it)))
        free(e->val);
    dict_free(&b->auth_fails);
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
    if (!username)
        return b->cfg->allow_anonymous ? MQTT_CONNACK_ACCEPTED : MQTT_CONNACK_NOT_AUTHORIZED;
    if (!b->pw)
        return b->cfg->allow_anonymous ? MQTT_CONNACK_ACCEPTED : MQTT_CONNACK_NOT_AUTHORIZED;
    if (!has_password) {
        /* NULL, not "": no password never matches, not even an empty one */
        pw = NULL;
        pwlen = 0;
    }
    int r = pw_file_check(b->pw, username, pw, pwlen);
    if (r == ACL_OK) return MQTT_CONNACK_ACCEPTED;
    log_msg(LL_NOTICE, "%s: login as '%s' failed: %s", c->conn->peer, username,
            r == ACL_ERR_UNKNOWN_USER ? "unknown user" : "wrong password");
    return MQTT_CONNACK_BAD_CREDENTIALS;
}

bool auth_may_write(broker *b, client *c, const char *topic, size_t len)
{
    if (!b->acl) return true;
    return acl_check(b->acl, c->username, c->client_id, topic, len, ACL_WRITE) == ACL_OK;
}

bool auth_may_read(broker *b, session *s, const char *topic, size_t len)
{
    if (!b->acl) return true;
    return acl_check(b->acl, s->username, s->client_id, topic, len, ACL_READ) == ACL_OK;
}

bool auth_source_may_write(broker *b, const msg *m)
{
    if (!b->cfg->check_retain_source || !b->acl || !m->source) return true;
    if (acl_check(b->acl, m->source->username, m->source->client_id, msg_topic(m), m->topic_len,
                  ACL_WRITE) == ACL_OK)
        return true;
    log_msg(LL_DEBUG,
            "Retained message on '%s' not sent: its publisher %s may no longer write it "
            "(check_retain_source)",
            msg_topic(m), m->source->client_id);
    return false;
}

bool auth_may_subscribe(broker *b, client *c, const char *filter, size_t len)
{
    if (!b->acl) return true;
    return acl_check(b->acl, c->username, c->client_id, filter, len, ACL_SUBSCRIBE) == ACL_OK;
}

/* "1.2.3.4:5678" -> "1.2.3.4", "[::1]:5678" -> "[::1]" */
static size_t addr_len(const char *peer)
{
    const char *colon = strrchr(peer, ':');
    return colon ? (size_t)(colon - peer) : strlen(peer);
}

#define AUTH_FAIL_WINDOW 600.0 /* failures older than this are forgotten */

static double step(uint32_t failures)
{
    /* 0.5 s after the first failure, doubling, at most 8 s between checks */
    double d = 0.5;
    for (uint32_t i = 1; i < failures && d < 8.0; i++)
        d *= 2;
    return d > 8.0 ? 8.0 : d;
}

typedef struct {
    char addr[64];
    uint32_t failures;
    double last;
    double next_slot; /* the next attempt may be checked at this time */
} fail_rec;

static fail_rec *fail_get(broker *b, const char *peer, bool create)
{
    size_t len = addr_len(peer);
    if (len >= sizeof(((fail_rec *)0)->addr)) len = sizeof(((fail_rec *)0)->addr) - 1;
    fail_rec *f = dict_get(&b->auth_fails, peer, len);
    if (f && b->now - f->last > AUTH_FAIL_WINDOW) {
        dict_del(&b->auth_fails, peer, len);
        free(f);
        f = NULL;
    }
    if (!f && create) {
        f = calloc(1, sizeof *f);
        if (!f) return NULL;
        memcpy(f->addr, peer, len);
        if (dict_put(&b->auth_fails, f->addr, len, f) < 0) {
            free(f);
            return NULL;
        }
    }
    return f;
}

double auth_attempt_delay(broker *b, const char *peer)
{
    fail_rec *f = fail_get(b, peer, false);
    if (!f || f->failures == 0) return 0;
    /* Attempts from one address are checked one per step, in order, so
     * parallel connections gain an attacker nothing. */
    double slot = f->next_slot > b->now ? f->next_slot : b->now;
    f->next_slot = slot + step(f->failures);
    return slot - b->now;
}

void auth_record_failure(broker *b, const char *peer)
{
    fail_rec *f = fail_get(b, peer, true);
    if (!f) return;
    f->failures++;
    f->last = b->now;
    if (f->next_slot < b->now + step(f->failures)) f->next_slot = b->now + step(f->failures);
    /* forget stale records now and then so the table stays small */
    if (b->auth_fails.count > 4096) {
        uint32_t it = 0;
        dict_entry *e;
        while ((e = dict_next(&b->auth_fails, &it))) {
            fail_rec *o = e->val;
            if (b->now - o->last > AUTH_FAIL_WINDOW) {
                dict_del(&b->auth_fails, o->addr, strlen(o->addr));
                free(o);
                it = 0; /* the table moved entries: restart */
            }
        }
    }
}
