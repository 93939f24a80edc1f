/* bridge_cfg.c -- see bridge_cfg.h. Keys, meanings and defaults follow
 * mosquitto.conf(5) ("CONFIGURING BRIDGES"); where Mosquitto silently
 * corrects a bad value we refuse it with the reason, like every other key. */
#include "broker/bridge_cfg.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mqtt/mqtt.h"

#define BRIDGE_MAX_ADDRS 32
#define BRIDGE_MAX_TOPIC 65535u

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return BRIDGE_CFG_ERR;
}

static bool one_word(const char *v)
{
    if (!*v) return false;
    for (; *v; v++)
        if (isspace((unsigned char)*v)) return false;
    return true;
}

static int parse_bool(const char *key, const char *v, bool *out, char *err, size_t errlen)
{
    if (strcmp(v, "true") == 0)
        *out = true;
    else if (strcmp(v, "false") == 0)
        *out = false;
    else
        return errf(err, errlen, "%s: expected true or false, got '%s'", key, v);
    return 0;
}

static int parse_u32(const char *key, const char *v, uint32_t min, uint32_t max, uint32_t *out,
                     char *err, size_t errlen)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)v[0])) return errf(err, errlen, "%s: '%s' is not a number", key, v);
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end) return errf(err, errlen, "%s: '%s' is not a number", key, v);
    if (n < min || n > max)
        return errf(err, errlen, "%s: %llu is out of range (%u..%u)", key, n, min, max);
    *out = (uint32_t)n;
    return 0;
}

/* A string value: set once (Mosquitto refuses duplicates too), UTF-8. */
static int set_string(const char *key, char **dst, const char *v, char *err, size_t errlen)
{
    if (*dst) return errf(err, errlen, "%s given twice in this connection block", key);
    size_t n = strlen(v);
    if (n > 65535 || mqtt_utf8_validate((const uint8_t *)v, n) != MQTT_OK)
        return errf(err, errlen, "%s: not valid UTF-8 or longer than 65535 bytes", key);
    *dst = strdup(v);
    return *dst ? 0 : BRIDGE_CFG_NOMEM;
}

static int set_file(const char *key, char **dst, const char *v, bool dir, char *err, size_t errlen)
{
    if (access(v, R_OK | (dir ? X_OK : 0)) != 0)
        return errf(err, errlen, "%s: cannot read %s: %s", key, v, strerror(errno));
    return set_string(key, dst, v, err, errlen);
}

int bridge_cfg_init(bridge_cfg *b, const char *name, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    if (!one_word(name))
        return errf(err, errlen, "connection: expected one name without spaces, got '%s'", name);
    if (mqtt_utf8_validate((const uint8_t *)name, strlen(name)) != MQTT_OK)
        return errf(err, errlen, "connection: name '%s' is not valid UTF-8", name);
    if (!(b->name = strdup(name))) return BRIDGE_CFG_NOMEM;
    b->keepalive_interval = 60;
    b->restart_base = 5;
    b->restart_cap = 30;
    b->start_type = BRIDGE_START_AUTOMATIC;
    b->threshold = 10;
    b->idle_timeout = 60;
    b->max_queued_bytes = 256u * 1024 * 1024;
    b->try_private = true;
    b->notifications = true;
    b->protocol_version = 4;
    b->outgoing_retain = true;
    b->attempt_unsubscribe = true;
    return 0;
}

static void topic_free(bridge_topic *t)
{
    free(t->pattern);
    free(t->local_prefix);
    free(t->remote_prefix);
    free(t->local_filter);
    free(t->remote_filter);
}

void bridge_cfg_free(bridge_cfg *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->naddrs; i++)
        free(b->addrs[i].host);
    free(b->addrs);
    for (size_t i = 0; i < b->ntopics; i++)
        topic_free(&b->topics[i]);
    free(b->topics);
    char **strs[] = {&b->name,
                     &b->remote_clientid,
                     &b->local_clientid,
                     &b->remote_username,
                     &b->remote_password,
                     &b->notification_topic,
                     &b->cafile,
                     &b->capath,
                     &b->certfile,
                     &b->keyfile,
                     &b->tls_version,
                     &b->ciphers,
                     &b->keylog_file};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
    memset(b, 0, sizeof *b);
}

/* ---- keys ---------------------------------------------------------------- */

/* Mosquitto's bridge keys that secbroker refuses, with what to use instead. */
static const struct {
    const char *key, *why;
} refused[] = {
    {"bridge_identity", "TLS-PSK is not supported; use bridge_certfile and bridge_keyfile"},
    {"bridge_psk", "TLS-PSK is not supported; use bridge_certfile and bridge_keyfile"},
    {"bridge_alpn", "ALPN is not supported on bridges; connect to the remote's MQTT port"},
    {"bridge_require_ocsp", "OCSP is not supported; use bridge_cafile with a short-lived "
                            "certificate"},
    {"bridge_bind_address", "the bridge connects from the address the routing table picks"},
    {"local_username", "the local side of a bridge is inside the broker; it has no login"},
    {"local_password", "the local side of a bridge is inside the broker; it has no login"},
};

typedef enum { K_BOOL, K_STR, K_FILE, K_DIR, K_SPECIAL } key_kind;

static const struct {
    const char *key;
    key_kind kind;
    size_t off;
} keys[] = {
    {"round_robin", K_BOOL, offsetof(bridge_cfg, round_robin)},
    {"cleansession", K_BOOL, offsetof(bridge_cfg, cleansession)},
    {"try_private", K_BOOL, offsetof(bridge_cfg, try_private)},
    {"notifications", K_BOOL, offsetof(bridge_cfg, notifications)},
    {"notifications_local_only", K_BOOL, offsetof(bridge_cfg, notifications_local_only)},
    {"bridge_outgoing_retain", K_BOOL, offsetof(bridge_cfg, outgoing_retain)},
    {"bridge_attempt_unsubscribe", K_BOOL, offsetof(bridge_cfg, attempt_unsubscribe)},
    {"bridge_insecure", K_BOOL, offsetof(bridge_cfg, insecure)},
    {"remote_clientid", K_STR, offsetof(bridge_cfg, remote_clientid)},
    {"clientid", K_STR, offsetof(bridge_cfg, remote_clientid)},
    {"local_clientid", K_STR, offsetof(bridge_cfg, local_clientid)},
    {"remote_username", K_STR, offsetof(bridge_cfg, remote_username)},
    {"username", K_STR, offsetof(bridge_cfg, remote_username)},
    {"remote_password", K_STR, offsetof(bridge_cfg, remote_password)},
    {"password", K_STR, offsetof(bridge_cfg, remote_password)},
    {"bridge_ciphers", K_STR, offsetof(bridge_cfg, ciphers)},
    {"bridge_keylog_file", K_STR, offsetof(bridge_cfg, keylog_file)},
    {"bridge_cafile", K_FILE, offsetof(bridge_cfg, cafile)},
    {"bridge_certfile", K_FILE, offsetof(bridge_cfg, certfile)},
    {"bridge_keyfile", K_FILE, offsetof(bridge_cfg, keyfile)},
    {"bridge_capath", K_DIR, offsetof(bridge_cfg, capath)},
    {"address", K_SPECIAL, 0},
    {"addresses", K_SPECIAL, 0},
    {"topic", K_SPECIAL, 0},
    {"local_cleansession", K_SPECIAL, 0},
    {"keepalive_interval", K_SPECIAL, 0},
    {"restart_timeout", K_SPECIAL, 0},
    {"start_type", K_SPECIAL, 0},
    {"threshold", K_SPECIAL, 0},
    {"idle_timeout", K_SPECIAL, 0},
    {"bridge_max_queued_messages", K_SPECIAL, 0},
    {"bridge_max_queued_bytes", K_SPECIAL, 0},
    {"notification_topic", K_SPECIAL, 0},
    {"bridge_protocol_version", K_SPECIAL, 0},
    {"bridge_max_packet_size", K_SPECIAL, 0},
    {"bridge_tls_version", K_SPECIAL, 0},
};

bool bridge_cfg_is_key(const char *key)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i].key) == 0) return true;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strcmp(key, refused[i].key) == 0) return true;
    return false;
}

/* ---- address ------------------------------------------------------------- */

/* One "host[:port]" word. As in Mosquitto the last ':' starts the port, so
 * an IPv6 address needs one ("::1:8883"); "[::1]" and "[::1]:8883" work too. */
static int parse_addr(const char *w, size_t len, bridge_addr *a, char *err, size_t errlen)
{
    const char *host = w, *port = NULL;
    size_t hlen = len;
    if (len && w[0] == '[') {
        const char *rb = memchr(w, ']', len);
        if (!rb) return errf(err, errlen, "address: '%.*s' lacks the closing ']'", (int)len, w);
        host = w + 1;
        hlen = (size_t)(rb - host);
        if (rb + 1 < w + len) {
            if (rb[1] != ':')
                return errf(err, errlen, "address: expected ':PORT' after ']' in '%.*s'", (int)len,
                            w);
            port = rb + 2;
        }
    } else {
        const char *c = NULL;
        for (size_t i = 0; i < len; i++)
            if (w[i] == ':') c = w + i;
        if (c) {
            hlen = (size_t)(c - w);
            port = c + 1;
        }
    }
    if (hlen == 0) return errf(err, errlen, "address: no host in '%.*s'", (int)len, w);
    a->port = 1883;
    if (port) {
        unsigned long n = 0;
        size_t plen = (size_t)(w + len - port);
        for (size_t i = 0; i < plen && n <= 65535; i++)
            n = isdigit((unsigned char)port[i]) ? n * 10 + (unsigned long)(port[i] - '0') : 70000;
        if (plen == 0 || n < 1 || n > 65535)
            return errf(err, errlen, "address: invalid port in '%.*s' (1..65535)", (int)len, w);
        a->port = (uint16_t)n;
    }
    a->host = strndup(host, hlen);
    return a->host ? 0 : BRIDGE_CFG_NOMEM;
}

/* address host[:port] [host[:port]...]; a word starting with '#' begins a
 * comment, as in Mosquitto. Given once per connection, like Mosquitto. */
static int key_address(bridge_cfg *b, const char *key, const char *v, char *err, size_t errlen)
{
    if (b->naddrs) return errf(err, errlen, "%s: only one address line per connection", key);
    while (*v) {
        while (isspace((unsigned char)*v))
            v++;
        size_t len = 0;
        while (v[len] && !isspace((unsigned char)v[len]))
            len++;
        if (!len || v[0] == '#') break;
        if (b->naddrs == BRIDGE_MAX_ADDRS)
            return errf(err, errlen, "%s: more than %d addresses", key, BRIDGE_MAX_ADDRS);
        bridge_addr *na = realloc(b->addrs, (b->naddrs + 1) * sizeof *na);
        if (!na) return BRIDGE_CFG_NOMEM;
        b->addrs = na;
        int rc = parse_addr(v, len, &na[b->naddrs], err, errlen);
        if (rc) return rc;
        b->naddrs++;
        v += len;
    }
    if (!b->naddrs) return errf(err, errlen, "%s: expected host[:port] [host[:port]...]", key);
    return 0;
}

/* ---- topic --------------------------------------------------------------- */

/* prefix + pattern (either may be NULL, the empty marker) as a new string;
 * *len gets its length. */
static char *concat(const char *prefix, const char *pattern, size_t *len)
{
    size_t a = prefix ? strlen(prefix) : 0, p = pattern ? strlen(pattern) : 0;
    char *s = malloc(a + p + 1);
    if (!s) return NULL;
    if (a) memcpy(s, prefix, a);
    if (p) memcpy(s + a, pattern, p);
    s[a + p] = 0;
    *len = a + p;
    return s;
}

static int check_prefix(const char *which, const char *prefix, char *err, size_t errlen)
{
    if (!prefix) return 0;
    if (mqtt_topic_name_validate((const uint8_t *)prefix, strlen(prefix)) != MQTT_OK)
        return errf(err, errlen,
                    "topic: %s prefix '%s' must be a valid topic name without + or # "
                    "(use \"\" for none)",
                    which, prefix);
    return 0;
}

/* Both full filters (prefix + pattern) exist and are valid topic filters. */
static int make_filters(bridge_topic *t, char *err, size_t errlen)
{
    size_t ll, rl;
    t->local_filter = concat(t->local_prefix, t->pattern, &ll);
    t->remote_filter = concat(t->remote_prefix, t->pattern, &rl);
    if (!t->local_filter || !t->remote_filter) return BRIDGE_CFG_NOMEM;
    if (mqtt_topic_filter_validate((const uint8_t *)t->local_filter, ll) != MQTT_OK)
        return errf(err, errlen,
                    "topic: local prefix and pattern make '%s', which is not a valid topic filter",
                    t->local_filter);
    if (mqtt_topic_filter_validate((const uint8_t *)t->remote_filter, rl) != MQTT_OK)
        return errf(err, errlen,
                    "topic: remote prefix and pattern make '%s', which is not a valid topic filter",
                    t->remote_filter);
    return 0;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Validate t (its strings owned by t) and append it to b, or free it. */
static int add_topic(bridge_cfg *b, bridge_topic *t, char *err, size_t errlen)
{
    int rc = check_prefix("local", t->local_prefix, err, errlen);
    if (!rc) rc = check_prefix("remote", t->remote_prefix, err, errlen);
    if (!rc && !t->pattern && (!t->local_prefix || !t->remote_prefix))
        rc = errf(err, errlen,
                  "topic: a pattern of \"\" remaps one topic and needs both a local and a remote "
                  "prefix");
    if (!rc) rc = make_filters(t, err, errlen);
    for (size_t i = 0; !rc && i < b->ntopics; i++) {
        const bridge_topic *o = &b->topics[i];
        if (o->dir == t->dir && o->qos == t->qos && same_str(o->pattern, t->pattern) &&
            same_str(o->local_prefix, t->local_prefix) &&
            same_str(o->remote_prefix, t->remote_prefix)) {
            topic_free(t); /* a repeated line changes nothing (Mosquitto skips it too) */
            return 0;
        }
    }
    bridge_topic *nt = rc ? NULL : realloc(b->topics, (b->ntopics + 1) * sizeof *nt);
    if (!rc && !nt) rc = BRIDGE_CFG_NOMEM;
    if (rc) {
        topic_free(t);
        return rc;
    }
    b->topics = nt;
    nt[b->ntopics++] = *t;
    return 0;
}

/* Split v into at most 5 words; a word starting with '#' after the first
 * begins a comment (Mosquitto's rule), the first is the pattern ("#" there
 * is the wildcard). Returns the word count or -1 when there are more. */
static int split_words(char *v, char *w[5])
{
    int n = 0;
    char *save = NULL;
    for (char *s = strtok_r(v, " \t", &save); s; s = strtok_r(NULL, " \t", &save)) {
        if (n > 0 && s[0] == '#') break;
        if (n == 5) return -1;
        w[n++] = s;
    }
    return n;
}

static int dup_marker(const char *w, char **out)
{
    *out = NULL;
    if (strcmp(w, "\"\"") == 0) return 0;
    *out = strdup(w);
    return *out ? 0 : BRIDGE_CFG_NOMEM;
}

/* topic PATTERN [[[out|in|both] QOS] LOCAL_PREFIX REMOTE_PREFIX] */
static int key_topic(bridge_cfg *b, const char *v, char *err, size_t errlen)
{
    char buf[4096], *w[5];
    if (strlen(v) >= sizeof buf) return errf(err, errlen, "topic: line too long");
    strcpy(buf, v);
    int n = split_words(buf, w);
    if (n <= 0)
        return errf(err, errlen,
                    "topic: expected PATTERN [[[out|in|both] QOS] LOCAL_PREFIX "
                    "REMOTE_PREFIX], got too many words");
    if (w[0][0] == '"' && strcmp(w[0], "\"\"") != 0)
        return errf(err, errlen, "topic: quoted patterns (topics with spaces) are not supported");
    bridge_topic t = {.dir = BRIDGE_OUT};
    if (n > 1) {
        if (strcasecmp(w[1], "out") == 0)
            t.dir = BRIDGE_OUT;
        else if (strcasecmp(w[1], "in") == 0)
            t.dir = BRIDGE_IN;
        else if (strcasecmp(w[1], "both") == 0)
            t.dir = BRIDGE_BOTH;
        else
            return errf(err, errlen, "topic: direction must be out, in or both, got '%s'", w[1]);
    }
    if (n > 2) {
        if (strlen(w[2]) != 1 || w[2][0] < '0' || w[2][0] > '2')
            return errf(err, errlen, "topic: QoS must be 0, 1 or 2, got '%s'", w[2]);
        t.qos = (uint8_t)(w[2][0] - '0');
    }
    /* Mosquitto takes a missing remote prefix as the empty one. */
    int rc = dup_marker(w[0], &t.pattern);
    if (!rc && n > 3) rc = dup_marker(w[3], &t.local_prefix);
    if (!rc && n > 4) rc = dup_marker(w[4], &t.remote_prefix);
    if (rc) {
        topic_free(&t);
        return rc;
    }
    return add_topic(b, &t, err, errlen);
}

/* ---- the other keys -------------------------------------------------------- */

/* restart_timeout BASE CAP (decorrelated jitter) or restart_timeout CONSTANT */
static int key_restart(bridge_cfg *b, const char *v, char *err, size_t errlen)
{
    char buf[64], *w[5];
    if (strlen(v) >= sizeof buf) return errf(err, errlen, "restart_timeout: value too long");
    strcpy(buf, v);
    int n = split_words(buf, w);
    if (n < 1 || n > 2)
        return errf(err, errlen, "restart_timeout: expected BASE CAP or one constant, in seconds");
    uint32_t base, cap;
    if (parse_u32("restart_timeout", w[0], 1, 86400, &base, err, errlen)) return BRIDGE_CFG_ERR;
    cap = base;
    if (n == 2 && parse_u32("restart_timeout cap", w[1], 1, 86400, &cap, err, errlen))
        return BRIDGE_CFG_ERR;
    if (cap < base)
        return errf(err, errlen, "restart_timeout: the cap %u is lower than the base %u", cap,
                    base);
    b->restart_constant = n == 1;
    b->restart_base = base;
    b->restart_cap = cap;
    b->restart_set = true;
    return 0;
}

static int key_enum(bridge_cfg *b, const char *key, const char *v, char *err, size_t errlen)
{
    if (strcmp(key, "start_type") == 0) {
        if (strcmp(v, "automatic") == 0)
            b->start_type = BRIDGE_START_AUTOMATIC;
        else if (strcmp(v, "lazy") == 0)
            b->start_type = BRIDGE_START_LAZY;
        else if (strcmp(v, "once") == 0)
            b->start_type = BRIDGE_START_ONCE;
        else if (strcmp(v, "manual") == 0)
            return errf(err, errlen,
                        "start_type manual (an RSMB type) is not supported, by Mosquitto "
                        "either; use automatic, lazy or once");
        else
            return errf(err, errlen, "start_type: expected automatic, lazy or once, got '%s'", v);
        return 0;
    }
    if (strcmp(key, "bridge_protocol_version") == 0) {
        if (strcmp(v, "mqttv311") == 0)
            b->protocol_version = 4;
        else if (strcmp(v, "mqttv31") == 0)
            b->protocol_version = 3;
        else if (strcmp(v, "mqttv50") == 0)
            b->protocol_version = 5;
        else
            return errf(err, errlen,
                        "bridge_protocol_version: expected mqttv50, mqttv311 or mqttv31, got '%s'",
                        v);
        return 0;
    }
    /* bridge_tls_version: the TLS layer says whether this build has 1.3 */
    if (strcmp(v, "tlsv1.1") && strcmp(v, "tlsv1.2") && strcmp(v, "tlsv1.3"))
        return errf(err, errlen, "%s: expected tlsv1.1, tlsv1.2 or tlsv1.3, got '%s'", key, v);
    return set_string(key, &b->tls_version, v, err, errlen);
}

static int key_special(bridge_cfg *b, const char *key, const char *v, char *err, size_t errlen)
{
    uint32_t n;
    if (strcmp(key, "address") == 0 || strcmp(key, "addresses") == 0)
        return key_address(b, key, v, err, errlen);
    if (strcmp(key, "topic") == 0) return key_topic(b, v, err, errlen);
    if (strcmp(key, "restart_timeout") == 0) return key_restart(b, v, err, errlen);
    if (strcmp(key, "local_cleansession") == 0) {
        b->local_cleansession_set = true;
        return parse_bool(key, v, &b->local_cleansession, err, errlen);
    }
    if (strcmp(key, "notification_topic") == 0) {
        if (mqtt_topic_name_validate((const uint8_t *)v, strlen(v)) != MQTT_OK)
            return errf(err, errlen,
                        "notification_topic: '%s' is not a valid topic name (no + or #)", v);
        return set_string(key, &b->notification_topic, v, err, errlen);
    }
    if (strcmp(key, "keepalive_interval") == 0) {
        if (parse_u32(key, v, 5, 65535, &n, err, errlen)) return BRIDGE_CFG_ERR;
        b->keepalive_interval = (uint16_t)n;
        return 0;
    }
    if (strcmp(key, "threshold") == 0)
        return parse_u32(key, v, 1, 100000000, &b->threshold, err, errlen);
    if (strcmp(key, "idle_timeout") == 0)
        return parse_u32(key, v, 1, 31536000, &b->idle_timeout, err, errlen);
    if (strcmp(key, "bridge_max_queued_messages") == 0)
        return parse_u32(key, v, 0, 100000000, &b->max_queued_messages, err, errlen);
    if (strcmp(key, "bridge_max_queued_bytes") == 0)
        return parse_u32(key, v, 0, UINT32_MAX, &b->max_queued_bytes, err, errlen);
    if (strcmp(key, "bridge_max_packet_size") == 0)
        return parse_u32(key, v, 0, 268435460u, &b->max_packet_size, err, errlen);
    return key_enum(b, key, v, err, errlen);
}

int bridge_cfg_line(bridge_cfg *b, const char *key, const char *v, char *err, size_t errlen)
{
    if (!*v) return errf(err, errlen, "'%s' needs a value", key);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strcmp(key, refused[i].key) == 0)
            return errf(err, errlen,
                        "'%s' is a Mosquitto bridge option that secbroker does not "
                        "support: %s",
                        key, refused[i].why);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(key, keys[i].key) != 0) continue;
        void *field = (char *)b + keys[i].off;
        switch (keys[i].kind) {
        case K_BOOL:
            return parse_bool(key, v, field, err, errlen);
        case K_STR:
            return set_string(key, field, v, err, errlen);
        case K_FILE:
        case K_DIR:
            return set_file(key, field, v, keys[i].kind == K_DIR, err, errlen);
        case K_SPECIAL:
            return key_special(b, key, v, err, errlen);
        }
    }
    return errf(err, errlen, "unknown bridge option '%s'", key);
}

/* ---- the end of the block ------------------------------------------------------ */

static int finish_tls(const bridge_cfg *b, char *err, size_t errlen)
{
    if (!!b->certfile != !!b->keyfile)
        return errf(err, errlen,
                    "connection %s: bridge_certfile and bridge_keyfile must be given together",
                    b->name);
    bool tls = b->cafile || b->capath;
    if (!tls && (b->certfile || b->insecure || b->tls_version || b->ciphers || b->keylog_file))
        return errf(err, errlen,
                    "connection %s: TLS options need bridge_cafile or bridge_capath (which turn "
                    "TLS on)",
                    b->name);
    return 0;
}

static int finish_ids(bridge_cfg *b, const char *hostname, char *err, size_t errlen)
{
    size_t n;
    if (!b->remote_clientid) {
        /* what Mosquitto sends: "HOSTNAME.NAME" */
        if (!hostname || !*hostname)
            return errf(err, errlen,
                        "connection %s: no hostname for the default remote_clientid; "
                        "set remote_clientid",
                        b->name);
        if (!(b->remote_clientid = concat(hostname, ".", &n))) return BRIDGE_CFG_NOMEM;
        char *id = concat(b->remote_clientid, b->name, &n);
        free(b->remote_clientid);
        if (!(b->remote_clientid = id)) return BRIDGE_CFG_NOMEM;
    }
    if (b->protocol_version == 3 && strlen(b->remote_clientid) > 23)
        return errf(err, errlen,
                    "connection %s: remote_clientid '%s' is longer than the 23 bytes MQTT 3.1 "
                    "allows; shorten it or use bridge_protocol_version mqttv311",
                    b->name, b->remote_clientid);
    if (!b->local_clientid && !(b->local_clientid = concat("local.", b->remote_clientid, &n)))
        return BRIDGE_CFG_NOMEM;
    if (!b->notification_topic) {
        char *head = concat("$SYS/broker/connection/", b->remote_clientid, &n);
        if (!head) return BRIDGE_CFG_NOMEM;
        b->notification_topic = concat(head, "/state", &n);
        free(head);
        if (!b->notification_topic) return BRIDGE_CFG_NOMEM;
        if (mqtt_topic_name_validate((const uint8_t *)b->notification_topic, n) != MQTT_OK)
            return errf(err, errlen,
                        "connection %s: remote_clientid '%s' makes an invalid notification "
                        "topic; set notification_topic",
                        b->name, b->remote_clientid);
    }
    return 0;
}

int bridge_cfg_finish(bridge_cfg *b, const char *hostname, char *err, size_t errlen)
{
    if (!b->naddrs)
        return errf(err, errlen, "connection %s: no address (address host[:port] ...)", b->name);
    if (!b->ntopics)
        return errf(err, errlen, "connection %s: no topic line, so the bridge would carry nothing",
                    b->name);
    if (b->remote_password && !b->remote_username)
        return errf(err, errlen, "connection %s: remote_password needs remote_username", b->name);
    int rc = finish_tls(b, err, errlen);
    if (rc) return rc;
    if (!b->local_cleansession_set) b->local_cleansession = b->cleansession;
    return finish_ids(b, hostname, err, errlen);
}

int bridge_cfg_check_set(const bridge_cfg *b, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (strcmp(b[i].name, b[j].name) == 0)
                return errf(err, errlen, "connection %s: the name is used twice", b[i].name);
            if (strcmp(b[i].local_clientid, b[j].local_clientid) == 0)
                return errf(err, errlen,
                            "connections %s and %s: local_clientid '%s' is not unique; set "
                            "local_clientid for one of them",
                            b[i].name, b[j].name, b[i].local_clientid);
        }
    }
    return 0;
}

/* ---- mapping ------------------------------------------------------------------- */

/* Remove strip from the front of topic when it is there (it is not when "a/#"
 * matched "a" itself; Mosquitto then keeps the topic whole), prepend add. */
static int remap(const char *topic, size_t tlen, const char *strip, const char *add, char *out,
                 size_t cap, size_t *outlen)
{
    size_t sl = strip ? strlen(strip) : 0, al = add ? strlen(add) : 0;
    if (sl && tlen >= sl && memcmp(topic, strip, sl) == 0) {
        topic += sl;
        tlen -= sl;
    }
    size_t n = al + tlen;
    if (n == 0 || n > BRIDGE_MAX_TOPIC) return BRIDGE_TOPIC_INVALID;
    if (cap <= n) return BRIDGE_TOPIC_NOSPACE;
    if (al) memcpy(out, add, al);
    memcpy(out + al, topic, tlen);
    out[n] = 0;
    *outlen = n;
    return 0;
}

int bridge_topic_out(const bridge_cfg *b, const char *topic, size_t tlen, char *out, size_t cap,
                     size_t *outlen, uint8_t *qos)
{
    const bridge_topic *first = NULL;
    uint8_t q = 0;
    for (size_t i = 0; i < b->ntopics; i++) {
        const bridge_topic *t = &b->topics[i];
        if (!(t->dir & BRIDGE_OUT)) continue;
        if (!mqtt_topic_matches((const uint8_t *)t->local_filter, strlen(t->local_filter),
                                (const uint8_t *)topic, tlen))
            continue;
        if (!first) first = t;
        if (t->qos > q) q = t->qos;
    }
    if (!first) return BRIDGE_TOPIC_NO_MATCH;
    if (qos) *qos = q;
    return remap(topic, tlen, first->local_prefix, first->remote_prefix, out, cap, outlen);
}

int bridge_topic_in(const bridge_cfg *b, const char *topic, size_t tlen, char *out, size_t cap,
                    size_t *outlen, uint8_t *qos)
{
    for (size_t i = 0; i < b->ntopics; i++) {
        const bridge_topic *t = &b->topics[i];
        if (!(t->dir & BRIDGE_IN)) continue;
        if (!mqtt_topic_matches((const uint8_t *)t->remote_filter, strlen(t->remote_filter),
                                (const uint8_t *)topic, tlen))
            continue;
        if (qos) *qos = t->qos;
        return remap(topic, tlen, t->remote_prefix, t->local_prefix, out, cap, outlen);
    }
    return BRIDGE_TOPIC_NO_MATCH;
}

/* ---- reconnect delay ------------------------------------------------------------ */

static uint64_t random_between(uint64_t lo, uint64_t hi, bridge_rand_fn rnd, void *ctx)
{
    if (hi <= lo) return lo;
    uint64_t r = (uint64_t)rnd(ctx) << 32;
    r |= rnd(ctx);
    uint64_t span = hi - lo;
    if (span == UINT64_MAX) return r;
    /* scale, not modulo: the lowest draw gives lo, the highest hi */
    return lo + (uint64_t)(((unsigned __int128)r * (span + 1)) >> 64);
}

uint64_t bridge_backoff_next(uint64_t base_ms, uint64_t cap_ms, uint64_t prev_ms,
                             bridge_rand_fn rnd, void *ctx)
{
    if (cap_ms < base_ms) cap_ms = base_ms;
    if (prev_ms < base_ms) prev_ms = base_ms;
    uint64_t hi = prev_ms > UINT64_MAX / 3 ? UINT64_MAX : prev_ms * 3;
    uint64_t d = random_between(base_ms, hi, rnd, ctx);
    return d < cap_ms ? d : cap_ms;
}

uint64_t bridge_restart_delay_ms(const bridge_cfg *b, uint64_t prev_ms, bridge_rand_fn rnd,
                                 void *ctx)
{
    uint64_t base = (uint64_t)b->restart_base * 1000, cap = (uint64_t)b->restart_cap * 1000;
    if (b->restart_constant) return base;
    return bridge_backoff_next(base, cap, prev_ms, rnd, ctx);
}

/* ---- comparing two configurations (SIGHUP) ------------------------------- */

static bool str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool topics_same(const bridge_cfg *a, const bridge_cfg *b)
{
    if (a->ntopics != b->ntopics) return false;
    for (size_t i = 0; i < a->ntopics; i++) {
        const bridge_topic *x = &a->topics[i], *y = &b->topics[i];
        if (!str_same(x->pattern, y->pattern) || !str_same(x->local_prefix, y->local_prefix) ||
            !str_same(x->remote_prefix, y->remote_prefix) || x->dir != y->dir || x->qos != y->qos)
            return false;
    }
    return true;
}

bool bridge_cfg_same(const bridge_cfg *a, const bridge_cfg *b)
{
    if (a->naddrs != b->naddrs || !topics_same(a, b)) return false;
    for (size_t i = 0; i < a->naddrs; i++)
        if (a->addrs[i].port != b->addrs[i].port || strcmp(a->addrs[i].host, b->addrs[i].host))
            return false;
    const char *sa[] = {a->name,
                        a->remote_clientid,
                        a->local_clientid,
                        a->remote_username,
                        a->remote_password,
                        a->notification_topic,
                        a->cafile,
                        a->capath,
                        a->certfile,
                        a->keyfile,
                        a->tls_version,
                        a->ciphers,
                        a->keylog_file};
    const char *sb[] = {b->name,
                        b->remote_clientid,
                        b->local_clientid,
                        b->remote_username,
                        b->remote_password,
                        b->notification_topic,
                        b->cafile,
                        b->capath,
                        b->certfile,
                        b->keyfile,
                        b->tls_version,
                        b->ciphers,
                        b->keylog_file};
    for (size_t i = 0; i < sizeof sa / sizeof sa[0]; i++)
        if (!str_same(sa[i], sb[i])) return false;
    return a->round_robin == b->round_robin && a->cleansession == b->cleansession &&
           a->local_cleansession == b->local_cleansession &&
           a->keepalive_interval == b->keepalive_interval &&
           a->restart_constant == b->restart_constant && a->restart_base == b->restart_base &&
           a->restart_cap == b->restart_cap && a->start_type == b->start_type &&
           a->threshold == b->threshold && a->idle_timeout == b->idle_timeout &&
           a->try_private == b->try_private && a->notifications == b->notifications &&
           a->notifications_local_only == b->notifications_local_only &&
           a->protocol_version == b->protocol_version && a->outgoing_retain == b->outgoing_retain &&
           a->attempt_unsubscribe == b->attempt_unsubscribe &&
           a->max_packet_size == b->max_packet_size &&
           a->max_queued_messages == b->max_queued_messages &&
           a->max_queued_bytes == b->max_queued_bytes && a->insecure == b->insecure;
}
