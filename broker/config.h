/*
 * config.h -- broker configuration in Mosquitto's syntax: "key value" lines,
 * '#' comments, "listener PORT [ADDRESS]" opens a listener block that the
 * per-listener keys after it apply to.
 */
#ifndef SECBROKER_CONFIG_H
#define SECBROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/bridge_cfg.h"

/* The security keys that Mosquitto's per_listener_settings moves into the
 * listener blocks: the broker's own set (config.sec), or with
 * per_listener_settings true each listener's (listener_cfg.sec). */
typedef struct {
    bool allow_anonymous;            /* default false */
    bool allow_zero_length_clientid; /* default true: the broker generates one */
    char *password_file;             /* NULL: none */
    char *acl_file;                  /* NULL: none */
    char *auto_id_prefix;            /* generated client ids start with it; NULL: "auto-" */
} sec_cfg;

typedef struct {
    int line;   /* where the block starts, for messages */
    char *file; /* the file of that line (an include_dir file or the main one) */
    int port;
    char *address;       /* NULL = every address (IPv4 and IPv6) */
    int max_connections; /* -1 = unlimited */
    char *certfile, *keyfile, *cafile, *capath, *crlfile, *ciphers, *ciphers13, *tls_version;
    char *tls_keylog_file;
    bool require_certificate;
    bool request_certificate; /* ask for a client certificate, verify one if sent */
    bool use_identity_as_username;
    /* WebSockets (protocol websockets): MQTT over RFC 6455, ws or wss */
    bool websockets;
    char *http_dir;    /* static files on this listener, NULL = none */
    char **ws_origins; /* websockets_origin allow-list (empty = any) */
    size_t n_ws_origins;
    uint32_t ws_headers_size;     /* websockets_headers_size, 0 = default (4096) */
    bool use_subject_as_username; /* the certificate's whole subject DN is the username */
    sec_cfg sec;                  /* used only with per_listener_settings true (config_sec) */
} listener_cfg;

typedef struct {
    char *path;
    listener_cfg *listeners;
    size_t nlisteners;
    sec_cfg sec;                    /* security for every listener (per_listener_settings false) */
    uint32_t max_keepalive;         /* 0..65535 */
    uint32_t max_packet_size;       /* bytes, whole packet */
    uint32_t max_inflight_messages; /* 0 = unlimited */
    uint32_t max_queued_messages;   /* 0 = unlimited */
    /* Output-buffer policy per connection (conn_output_check): over
     * max_output_buffer (the soft limit) QoS 0 messages are dropped, and a
     * client over it for output_buffer_soft_seconds is disconnected; over
     * output_buffer_hard_limit it is disconnected at once. */
    uint64_t max_output_buffer;          /* bytes, default 16 MiB */
    uint64_t output_buffer_hard_limit;   /* bytes, default 4 x max_output_buffer */
    uint32_t output_buffer_soft_seconds; /* default 60 */
    /* distinct filters per session (0 = unlimited) */
    uint32_t max_subscriptions_per_client;
    /* sessions that outlive their connection, online or not (0 = unlimited):
     * what bounds the disk the sessions can take */
    uint32_t max_persistent_sessions;
    uint64_t memory_limit; /* bytes for the whole broker (memlimit.h), 0 = none */
    bool retain_available;
    int log_dests;
    int log_types;
    char *log_file;
    bool connection_messages;
    uint32_t sys_interval;      /* seconds, 0 = off */
    uint32_t handshake_timeout; /* seconds */
    bool tls_trace;             /* log_type tls */
    char *user;                 /* drop privileges to this user when root */
    /* Durable state (persist.c): persistence on, where, and when commits happen. */
    bool persistence;
    char *persistence_location; /* directory (NULL: the current one) */
    char *persistence_file;     /* file name in it (default secbroker.db) */
    bool persistence_strict;    /* persistence_sync strict (default) | interval */
    uint32_t autosave_interval; /* interval mode: seconds (or changes) between commits */
    bool autosave_on_changes;   /* autosave_interval counts changes, not seconds */
    /* Mosquitto compatibility keys (config_compat.c) */
    char *pid_file;             /* written after startup, removed at exit */
    bool per_listener_settings; /* sec per listener block (Mosquitto's meaning) */
    /* No listener in the file: the 1883-on-loopback one admits anonymous
     * clients (Mosquitto's default there) as allow_anonymous was not set;
     * config_add_listener (-p, every address) takes that back. */
    bool local_only_anonymous;
    bool log_timestamp;         /* default true */
    char *log_timestamp_format; /* strftime format; NULL = ISO 8601 UTC with ms */
    int log_facility;           /* syslog LOG_LOCAL0..7 as 0..7, -1 = LOG_DAEMON */
    bool use_username_as_clientid;
    char *clientid_prefixes;  /* only client ids starting with this (NULL: any) */
    bool set_tcp_nodelay;     /* TCP_NODELAY on accepted sockets */
    bool check_retain_source; /* retained messages re-checked against the publisher's ACL */
    uint32_t persistent_client_expiration; /* seconds offline before a session goes; 0 = never */
    uint64_t max_inflight_bytes;           /* payload bytes in flight per client, 0 = unlimited */
    uint64_t max_queued_bytes;             /* payload bytes queued per client, 0 = unlimited */
    bridge_cfg *bridges;                   /* `connection` blocks (broker/bridge.c runs them) */
    size_t nbridges;
} config;

/* Parse path (and the include_dir files it names). On error returns NULL and
 * err holds every error found, one "FILE:LINE: reason" per line. A
 * non-NULL shown is the name messages use for path. */
config *config_load_as(const char *path, const char *shown, char *err, size_t errlen);
/* config_load_as(path, NULL, ...) */
config *config_load(const char *path, char *err, size_t errlen);
void config_free(config *c);
/* -p PORT with -c: one more plain listener on every address (Mosquitto's
 * -p). BK_OK or BK_ERR_NOMEM. */
int config_add_listener(config *c, int port);
/* Why a CONNECT's client id on listener l is refused by
 * allow_zero_length_clientid or clientid_prefixes (Mosquitto's rules), or
 * NULL when it is allowed. */
const char *clientid_refusal(const config *c, const listener_cfg *l, const char *id, size_t len);
/* The security settings that apply on listener l: its own with
 * per_listener_settings true, else the broker's (l may be NULL). */
const sec_cfg *config_sec(const config *c, const listener_cfg *l);
/* The start of client ids the broker generates on listener l. */
const char *config_auto_id_prefix(const config *c, const listener_cfg *l);
/* A listener block's defaults (port and address unset). */
void listener_cfg_init(listener_cfg *l);

#endif
