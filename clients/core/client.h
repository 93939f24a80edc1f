/*
 * client.h -- the small client core shared by secpub, secsub (and secbench):
 * the common mosquitto_pub/mosquitto_sub flags, TCP connect (IPv4/IPv6),
 * optional TLS through tls/tls.h, MQTT packet framing on a non-blocking
 * socket, a poll()-based wait with timeouts and keepalive, and the
 * "-d" debug lines.
 *
 * Return convention: CLI_OK (0) or a positive event code on success,
 * negative CLI_ERR_* on failure; after a failure cli_conn_error() says why in
 * plain words, ready to be printed as one stderr line.
 *
 * Exit status convention of the tools (see docs/clients.md): 0 success,
 * 1..5 the CONNACK return code when the broker refuses, 27 secsub -W timeout,
 * CLI_EXIT_USAGE for bad arguments, CLI_EXIT_NOINPUT for an unreadable input
 * file, CLI_EXIT_FAILURE for any other failure (DNS, TCP, TLS, protocol).
 */
#ifndef SECBROKER_CLIENT_H
#define SECBROKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mqtt/mqtt.h"

/* sysexits.h values: well known, and outside the CONNACK range 1..5 */
#define CLI_EXIT_USAGE 64
#define CLI_EXIT_NOINPUT 66
#define CLI_EXIT_FAILURE 69
#define CLI_EXIT_TIMEOUT 27 /* secsub -W, as mosquitto_sub */

#define CLI_CONNECT_TIMEOUT_MS 30000 /* TCP connect + TLS handshake + CONNACK */

/* --version of the tools; the same number as secbroker's SECBROKER_VERSION
 * (tests/integration/test_clients.py compares them). */
#define CLI_VERSION "0.1.0"

enum cli_err {
    CLI_OK = 0,
    CLI_PACKET = 1,        /* cli_wait: a packet is ready */
    CLI_EXTRA = 2,         /* cli_wait: the extra fd is readable */
    CLI_TIMEOUT = 3,       /* cli_wait: the timeout passed (not an error) */
    CLI_ERR_ARG = -1,      /* bad option / usage */
    CLI_ERR_DNS = -2,      /* getaddrinfo failed */
    CLI_ERR_CONNECT = -3,  /* TCP connect failed on every address */
    CLI_ERR_TLS = -4,      /* TLS setup or handshake failed */
    CLI_ERR_CLOSED = -5,   /* the broker closed the connection */
    CLI_ERR_IO = -6,       /* socket error */
    CLI_ERR_PROTOCOL = -7, /* malformed or unexpected packet from the broker */
    CLI_ERR_REFUSED = -8,  /* CONNACK return code != 0 (see connack_rc) */
    CLI_ERR_TIMEOUT = -9,  /* connect / handshake / CONNACK / keepalive timeout */
    CLI_ERR_ALLOC = -10,
    CLI_ERR_INTR = -11, /* SIGINT / SIGTERM received */
};

/* One -D COMMAND PROPERTY VALUE (MQTT 5). */
typedef struct {
    int where;          /* packet type (MQTT_CONNECT, ...) or MQTT_PROPS_WILL */
    uint8_t id;         /* enum mqtt_prop_id */
    uint32_t num;       /* integer properties */
    const char *value;  /* string properties; a user property's name */
    const char *value2; /* a user property's value */
} cli_prop;

#define CLI_MAX_PROPS 32
#define CLI_PROPS_MAX_BYTES 8192 /* the property block of one packet from -D */

/* Options shared by every tool. Strings point into argv (or are static). */
typedef struct {
    const char *prog;        /* "secpub": prefix of error lines */
    const char *host;        /* -h, default "localhost" */
    int port;                /* -p, 0 = 1883 or 8883 when TLS */
    const char *id;          /* -i, NULL = generated */
    const char *id_prefix;   /* -I */
    const char *username;    /* -u */
    const char *password;    /* -P */
    int keepalive;           /* -k, default 60 */
    int qos;                 /* -q, default 0 */
    bool debug;              /* -d */
    int protocol_level;      /* -V: 4 (3.1.1, default), 3 (3.1) or 5 */
    uint32_t session_expiry; /* -x (MQTT 5 Session Expiry Interval; -1 = 0xFFFFFFFF);
                              * accepted and not sent below 5 */
    bool session_expiry_set;
    cli_prop props[CLI_MAX_PROPS]; /* -D */
    unsigned nprops;
    bool clean_session; /* secsub -c clears it */
    /* TLS */
    bool tls; /* any TLS option given */
    const char *cafile, *capath, *certfile, *keyfile;
    const char *tls_version, *ciphers, *keylog;
    bool insecure;
    /* will */
    const char *will_topic, *will_payload;
    int will_qos;
    bool will_retain;
    /* mosquitto flags of its own */
    const char *bind_address; /* -A: local address of the socket */
    bool quiet;               /* --quiet: no runtime error lines */
    bool nodelay;             /* --nodelay (Nagle is off in any case) */
    const char *url_topic;    /* the topic of -L mqtt://host/TOPIC */
    char id_buf[128];         /* storage for the generated id */
    char url_buf[1024];       /* storage for the parts of -L */
} cli_opts;

/* Set the defaults (cannot fail). prog names the tool in messages. */
void cli_opts_init(cli_opts *o, const char *prog);

/*
 * cli_opts_parse_common -- try argv[*i] as a common flag.
 * Returns 1 when it was one (and *i now points at its last word), 0 when it
 * is not a common flag, CLI_ERR_ARG with a one-line reason in err otherwise.
 */
int cli_opts_parse_common(cli_opts *o, int argc, char **argv, int *i, char *err, size_t errlen);

/* Checks that need every flag (cert without key, will-payload without
 * will-topic, password without user) and fills the defaults that depend on
 * other flags (port, client id, SSLKEYLOGFILE). CLI_OK or CLI_ERR_ARG. */
int cli_opts_finish(cli_opts *o, char *err, size_t errlen);

/* -D COMMAND PROPERTY VALUE (argv[*i] is "-D"): 1, or CLI_ERR_ARG with err. */
int cli_opts_parse_property(cli_opts *o, int argc, char **argv, int *i, char *err, size_t errlen);
/* The property block of the -D definitions for `where` (and -x for
 * CONNECT) in buf. MQTT_OK or the writer's error. */
int cli_props_build(const cli_opts *o, int where, uint8_t *buf, size_t cap, mqtt_bytes *out);
/* A v5 CONNACK reason as the 3.1.1 code of the same meaning (exit status
 * 1..5); other reasons unchanged. */
uint8_t cli_connack_v3_code(uint8_t reason);
/* The broker's packets at the connection's version (-V); props may be
 * NULL and is empty below 5. MQTT_OK or the decoder's error. */
int cli_decode_publish(const cli_opts *o, const mqtt_header *h, mqtt_publish *p, mqtt_props *props);
int cli_decode_ack(const cli_opts *o, const mqtt_header *h, uint16_t *packet_id);
int cli_decode_suback(const cli_opts *o, const mqtt_header *h, mqtt_suback *sa);

/* Help text of the common flags, for the tools' --help. */
void cli_opts_usage_common(FILE *out);

/* "PROG version X (MQTT 3.1.1 and 3.1, TLS library)" on out, for --version. */
void cli_print_version(FILE *out, const char *prog);

/* Parse a non-negative integer option value in [min, max]; false if invalid. */
bool cli_parse_int(const char *s, long min, long max, long *out);

typedef struct cli_conn cli_conn;

/*
 * cli_conn_open -- resolve, connect (each address in turn, IPv4 or IPv6),
 * handshake TLS when opts->tls, send CONNECT and wait for CONNACK, all within
 * CLI_CONNECT_TIMEOUT_MS. On success *out is a connected session and
 * *session_present is the CONNACK flag. On failure returns CLI_ERR_*; *out is
 * still set (so cli_conn_error() and cli_conn_connack_rc() work) and must be
 * freed with cli_conn_free(). opts must outlive the connection.
 */
int cli_conn_open(cli_conn **out, const cli_opts *opts, bool *session_present);

/* Send DISCONNECT (when connected), flush with a bounded wait, send TLS
 * close_notify, close the socket and free everything. Accepts NULL. */
void cli_conn_close(cli_conn *c);
/* Like cli_conn_close without DISCONNECT (a will is then published). */
void cli_conn_free(cli_conn *c);

/* Last error in plain words (never NULL, "" when none). */
const char *cli_conn_error(const cli_conn *c);
/* Record a failure found by the caller (e.g. a malformed packet); returns
 * code, so `return cli_conn_fail(c, CLI_ERR_PROTOCOL, "...")` works. */
int cli_conn_fail(cli_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* CONNACK return code (0 before CONNACK). */
int cli_conn_connack_rc(const cli_conn *c);
/* The client id in use. */
const char *cli_conn_client_id(const cli_conn *c);
/* Exit status for a cli_conn_open/cli_wait error code. */
int cli_exit_code(const cli_conn *c, int err);

/* Next packet identifier (1..65535, never 0). */
uint16_t cli_next_packet_id(cli_conn *c);

/*
 * cli_send -- queue one already encoded packet and try to write it now.
 * Prints the debug line when -d. CLI_OK or a negative error.
 */
int cli_send(cli_conn *c, const uint8_t *pkt, size_t len);
/* Encode and queue a packet. */
int cli_send_publish(cli_conn *c, const char *topic, const uint8_t *payload, size_t len, int qos,
                     bool retain, bool dup, uint16_t packet_id);
int cli_send_ack(cli_conn *c, enum mqtt_type type, uint16_t packet_id);
int cli_send_subscribe(cli_conn *c, uint16_t packet_id, const char *const *filters, unsigned count,
                       int qos);
int cli_send_unsubscribe(cli_conn *c, uint16_t packet_id, const char *const *filters,
                         unsigned count);

/* Bytes queued but not yet written to the socket. */
size_t cli_pending_output(const cli_conn *c);

/*
 * cli_wait -- the event loop step. Writes queued output, keeps the session
 * alive (PINGREQ after keepalive seconds without sending; CLI_ERR_TIMEOUT
 * if no PINGRESP within another keepalive), and waits up to timeout_ms
 * (-1 = no limit) for:
 *   CLI_PACKET  -- *hdr is the next packet from the broker (already printed
 *                  with -d); its body stays valid until the next cli_wait;
 *   CLI_EXTRA   -- extra_fd (>= 0) is readable (not reported while a lot of
 *                  output is still queued, so a fast stdin cannot outrun
 *                  the socket);
 *   CLI_TIMEOUT -- timeout_ms passed;
 * or a negative error (CLI_ERR_CLOSED, _IO, _PROTOCOL, _TLS, _TIMEOUT, _INTR).
 * PINGRESP is consumed here and never returned.
 */
int cli_wait(cli_conn *c, int timeout_ms, int extra_fd, mqtt_header *hdr);

/* Write all queued output. Waits as long as bytes keep moving; fails with
 * CLI_ERR_TIMEOUT after stall_ms without progress. CLI_OK or a negative
 * error. Incoming bytes are kept for later cli_wait calls. */
int cli_flush(cli_conn *c, int stall_ms);
/* Stall limit for the final flush of the tools: 1.5 keepalives, or 60 s. */
int cli_stall_ms(const cli_conn *c);

/* Monotonic milliseconds. */
int64_t cli_now_ms(void);

/* Install SIGINT/SIGTERM handlers that make cli_wait return CLI_ERR_INTR,
 * and ignore SIGPIPE. */
void cli_signals_install(void);
bool cli_interrupted(void);

/* ---- debug lines (-d), mosquitto-style, on stdout ---------------------- */

/* "Client ID sending PUBLISH (d0, q1, r0, m1, 'topic', ... (5 bytes))" */
void cli_debug_packet(const cli_opts *o, const char *dir, const uint8_t *pkt, size_t len);
/* Free-form debug line, prefixed by nothing. */
void cli_debug_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- secsub -F (format.c, json.c) ------------------------------------ */

/* Check a -F format string before connecting: CLI_OK, or CLI_ERR_ARG with
 * the reason in err (an unknown %X, an incomplete or unknown escape). */
int cli_format_check(const char *fmt, char *err, size_t errlen);
/* Print message m with its MQTT 5 properties (NULL = none) as fmt says
 * (mosquitto_sub's -F). 0 printed; 1 when %J met a payload that is not
 * JSON (err says so; the output stops there). */
int cli_format_print(FILE *out, const char *fmt, const mqtt_publish *m, const mqtt_props *props,
                     bool pretty, char *err, size_t errlen);
/* Check JSON text[0..len) and, when out is not NULL, print it again compact
 * or pretty (tabs, depth = current nesting). 0 or -1 if it is not JSON. */
int cli_json_value(FILE *out, const uint8_t *text, size_t len, bool pretty, int depth);
/* s[0..n) as a quoted, escaped JSON string. */
void cli_json_string(FILE *out, const uint8_t *s, size_t n);

#endif
