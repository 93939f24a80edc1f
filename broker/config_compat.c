/* config_compat.c -- the Mosquitto keys kept so that a Mosquitto
 * configuration (Debian's /etc/mosquitto/mosquitto.conf and its conf.d)
 * starts secbroker unchanged, with Mosquitto's meaning; and the Mosquitto
 * keys secbroker does not have, refused by name with what to do instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker/config_int.h"
#include "broker/err.h"
#include "broker/log.h"

static listener_cfg *listener_now(pctx *p, config *c)
{
    return c->nlisteners ? &c->listeners[c->nlisteners - 1] : p->deflt;
}

/* Keys that belong to a listener block (or the default listener). */
static int listener_compat(pctx *p, config *c, const char *key, const char *v)
{
    listener_cfg *l = listener_now(p, c);
    if (l == p->deflt &&
        (!strcmp(key, "request_certificate") || !strcmp(key, "use_subject_as_username")))
        cfg_note_default(p, key);
    if (strcmp(key, "request_certificate") == 0)
        return cfg_bool(p, key, v, &l->request_certificate);
    if (strcmp(key, "use_subject_as_username") == 0)
        return cfg_bool(p, key, v, &l->use_subject_as_username);
    return NOT_MINE;
}

int cfg_duration(pctx *p, const char *key, const char *v, uint32_t *seconds)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    static const struct {
        char unit;
        unsigned long mult;
    } units[] = {{'s', 1}, /* secbroker's addition (tests, labs); the others are Mosquitto's */
                 {'h', 3600},       {'d', 86400},      {'w', 7 * 86400},
                 {'m', 30 * 86400}, {'y', 365 * 86400}};
    unsigned long mult = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (end != v && end[0] == units[i].unit && !end[1]) mult = units[i].mult;
    if (!mult || n == 0 || n > 100)
        return cfg_fail(p,
                        "%s: expected a count (1..100) and a unit s, h, d, w, m or y (as in 2d), "
                        "got '%s'",
                        key, v);
    *seconds = (uint32_t)(n * mult);
    return BK_OK;
}

static int pid_file_key(pctx *p, config *c, const char *v)
{
    char *dir = strdup(v);
    if (!dir) return cfg_fail(p, "out of memory");
    char *slash = strrchr(dir, '/');
    struct stat sb;
    int rc = BK_OK;
    if (slash) {
        *(slash == dir ? slash + 1 : slash) = 0;
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            rc = cfg_fail(p, "pid_file: directory %s does not exist", dir);
    }
    free(dir);
    return rc == BK_OK ? cfg_str(&c->pid_file, v) : rc;
}

/* Global keys: booleans, sizes and strings. */
static int global_compat(pctx *p, config *c, const char *key, const char *v)
{
    static const struct {
        const char *key;
        size_t off;
    } bools[] = {
        {"log_timestamp", offsetof(config, log_timestamp)},
        {"use_username_as_clientid", offsetof(config, use_username_as_clientid)},
        {"set_tcp_nodelay", offsetof(config, set_tcp_nodelay)},
        {"check_retain_source", offsetof(config, check_retain_source)},
    };
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++)
        if (strcmp(key, bools[i].key) == 0)
            return cfg_bool(p, key, v, (bool *)((char *)c + bools[i].off));
    uint64_t n;
    if (strcmp(key, "max_inflight_bytes") == 0 || strcmp(key, "max_queued_bytes") == 0) {
        if (cfg_uint(p, key, v, 0, 1ULL << 40, &n) != BK_OK) return BK_ERR_CONFIG;
        *(key[4] == 'i' ? &c->max_inflight_bytes : &c->max_queued_bytes) = n;
        return BK_OK;
    }
    if (strcmp(key, "retry_interval") == 0) /* obsolete in Mosquitto too: accepted, no effect */
        return cfg_uint(p, key, v, 0, 86400 * 365, &n);
    if (strcmp(key, "log_facility") == 0) {
        if (cfg_uint(p, key, v, 0, 7, &n) != BK_OK) return BK_ERR_CONFIG;
        c->log_facility = (int)n;
        return BK_OK;
    }
    if (strcmp(key, "log_timestamp_format") == 0) return cfg_str(&c->log_timestamp_format, v);
    if (strcmp(key, "clientid_prefixes") == 0) return cfg_str(&c->clientid_prefixes, v);
    if (strcmp(key, "persistent_client_expiration") == 0)
        return cfg_duration(p, key, v, &c->persistent_client_expiration);
    if (strcmp(key, "pid_file") == 0) return pid_file_key(p, c, v);
    if (strcmp(key, "include_dir") == 0) return cfg_include_dir(p, c, v);
    if (strcmp(key, "port") == 0) {
        if (cfg_uint(p, key, v, 1, 65535, &n) != BK_OK) return BK_ERR_CONFIG;
        p->default_port = (int)n;
        return BK_OK;
    }
    if (strcmp(key, "bind_address") == 0) return cfg_str(&p->default_bind, v);
    return NOT_MINE;
}

int cfg_compat_key(pctx *p, config *c, const char *key, const char *v)
{
    int r = listener_compat(p, c, key, v);
    return r == NOT_MINE ? global_compat(p, c, key, v) : r;
}

void cfg_note_default(pctx *p, const char *key)
{
    if (p->deflt_used) return;
    p->deflt_used = true;
    snprintf(p->deflt_key, sizeof p->deflt_key, "%s", key);
    snprintf(p->deflt_path, sizeof p->deflt_path, "%s", p->path);
    p->deflt_line = p->line;
}

int cfg_compat_finish(pctx *p, config *c)
{
    if (p->default_port < 0) {
        if (p->default_bind)
            return cfg_fail(p, "bind_address is the address of the default listener: add "
                               "'port N' (Mosquitto's default listener) or write the address "
                               "on a 'listener PORT ADDRESS' line");
        if (p->deflt_used) {
            const char *path = p->path;
            p->path = p->deflt_path; /* the error names the first such line */
            p->line = p->deflt_line;
            cfg_fail(p,
                     "%s before any 'listener' line configures the default listener (%s): add "
                     "'port N' or move it after a 'listener PORT' line",
                     p->deflt_key,
                     p->deflt_sec ? "per_listener_settings is true" : "it is a listener option");
            p->path = path;
            p->line = 0;
            return BK_ERR_CONFIG;
        }
        return BK_OK;
    }
    listener_cfg *nl = realloc(c->listeners, (c->nlisteners + 1) * sizeof *nl);
    if (!nl) return cfg_fail(p, "out of memory");
    c->listeners = nl;
    /* first, as Mosquitto opens it */
    memmove(nl + 1, nl, c->nlisteners * sizeof *nl);
    c->nlisteners++;
    nl[0] = *p->deflt;
    memset(p->deflt, 0, sizeof *p->deflt);
    nl[0].port = p->default_port;
    nl[0].address = p->default_bind;
    p->default_bind = NULL;
    return BK_OK;
}

/* Mosquitto keys secbroker does not have, and what to do instead (bridge
 * keys are config.c's: bridge_cfg.c knows them). */
static const struct {
    const char *key;
    const char *instead;
} refused[] = {
    {"auth_opt_", "secbroker has no plugins; use password_file and acl_file"},
    {"max_qos", "secbroker grants up to QoS 2; restrict topics with acl_file instead"},
    {"max_topic_alias", "an MQTT 5 option: secbroker speaks MQTT 3.1.1 and 3.1"},
    {"max_topic_alias_broker", "an MQTT 5 option: secbroker speaks MQTT 3.1.1 and 3.1"},
    {"disable_client_cert_date_checks", "expired client certificates are always refused"},
    {"plugin", "secbroker has no plugins; use password_file and acl_file"},
    {"auth_plugin", "secbroker has no plugins; use password_file and acl_file"},
    {"plugin_opt_", "secbroker has no plugins; use password_file and acl_file"},
    {"psk_file", "TLS-PSK is not supported; use certificates (certfile, keyfile, cafile)"},
    {"psk_hint", "TLS-PSK is not supported; use certificates (certfile, keyfile, cafile)"},
    {"socket_domain", "write the address on the listener line: 'listener PORT 127.0.0.1' or '::1'"},
    {"websockets_log_level", "WebSocket events are logged at the log_type levels like the rest"},
    {"bind_interface", "write the interface's address on the 'listener PORT ADDRESS' line"},
    {"mount_point", "give each client its own topics through acl_file patterns"},
    {"queue_qos0_messages", "QoS 0 messages are never queued for offline clients"},
    {"upgrade_outgoing_qos", "subscribers get min(published, granted) QoS"},
    {"message_size_limit", "use max_packet_size (bytes of the whole packet)"},
    {"allow_duplicate_messages", "not needed: a client gets a message once even when several "
                                 "of its subscriptions match"},
    {"keyfile_password", "give an unencrypted keyfile readable only by the broker"},
    {"dhparamfile", "not needed: secbroker uses ECDHE key exchange only"},
    {"ocsp_stapling", "revoke certificates with crlfile"},
    {"tls_engine", "give the key in keyfile"},
    {"tls_engine_kpass_sha1", "give the key in keyfile"},
    {"psk_identity", "TLS-PSK is not supported; use certificates"},
    {"use_identity_as_username_for_psk", "TLS-PSK is not supported; use certificates"},
    {"password_file_format", "not a Mosquitto key; password files use $6$ or $7$ hashes"},
    {"max_keepalive_seconds", "use max_keepalive"},
    {"sys_interval_ms", "use sys_interval (seconds)"},
    {"enable_control_api", "secbroker has no dynamic security; use password_file and acl_file"},
    {"accept_protocol_versions", "secbroker accepts MQTT 3.1 and 3.1.1"},
    {"global_max_clients", "use max_connections on each listener"},
    {"global_max_connections", "use max_connections on each listener"},
    {"global_plugin", "secbroker has no plugins; use password_file and acl_file"},
    {"persistence_autosave", "use autosave_interval"},
    {"http_listener", "serve files with http_dir on a 'protocol websockets' listener"},
    {"websockets", "write 'protocol websockets' in a listener block"},
};

int cfg_refuse_key(pctx *p, const char *key)
{
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        size_t n = strlen(refused[i].key);
        bool prefix = refused[i].key[n - 1] == '_';
        if (prefix ? strncmp(key, refused[i].key, n) == 0 : strcmp(key, refused[i].key) == 0)
            return cfg_fail(p, "'%s' is a Mosquitto option that secbroker does not support: %s",
                            key, refused[i].instead);
    }
    return cfg_fail(p, "unknown option '%s'", key);
}

int config_add_listener(config *c, int port)
{
    if (c->local_only_anonymous) { /* a listener on every address: no longer local only */
        c->local_only_anonymous = false;
        c->sec.allow_anonymous = false;
        c->listeners[0].sec.allow_anonymous = false;
    }
    listener_cfg *nl = realloc(c->listeners, (c->nlisteners + 1) * sizeof *nl);
    if (!nl) return BK_ERR_NOMEM;
    c->listeners = nl;
    listener_cfg_init(&nl[c->nlisteners]);
    nl[c->nlisteners].port = port;
    c->nlisteners++;
    return BK_OK;
}

const char *clientid_refusal(const config *c, const listener_cfg *l, const char *id, size_t len)
{
    if (len == 0 && !config_sec(c, l)->allow_zero_length_clientid)
        return "empty client id and allow_zero_length_clientid is false";
    if (len > 0 && c->clientid_prefixes) {
        size_t n = strlen(c->clientid_prefixes);
        if (len < n || memcmp(id, c->clientid_prefixes, n) != 0)
            return "client id does not start with clientid_prefixes";
    }
    return NULL;
}
