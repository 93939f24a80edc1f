/*
 * config_int.h -- shared by the configuration parser's files (config.c,
 * config_include.c, config_compat.c); not for the rest of the broker.
 */
#ifndef SECBROKER_CONFIG_INT_H
#define SECBROKER_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"

/* A key handler's answer for a key it does not know (the next one tries). */
#define NOT_MINE 1
/* Errors collected in one run before parsing gives up. */
#define CFG_MAX_ERRORS 50

typedef struct pctx {
    const char *path;  /* the file being read (an include_dir file, or the main one) */
    const char *shown; /* the name used in messages for the main file */
    int line;
    char *err; /* every error, one "FILE:LINE: reason" per line */
    size_t errlen;
    int nerr;
    int depth; /* include_dir nesting */
    bool log_dest_seen, log_type_seen;
    bool in_bridge;   /* the last bridge block is still open (not finished) */
    int bridge_start; /* its `connection` line, for its whole-block errors */
    /* Mosquitto's `port` and `bind_address` make the default listener, which
     * takes the listener keys written before any `listener` line. */
    listener_cfg *deflt;
    bool deflt_used;
    char deflt_path[512]; /* where the first key of the default listener was */
    int deflt_line;
    char deflt_key[40]; /* and which key it was */
    bool deflt_sec;     /* a security key (per_listener_settings true) */
    int default_port;   /* -1: no port line */
    char *default_bind;
    /* a security key was read (per_listener_settings true must come first) */
    bool sec_seen;
    bool anon_set; /* allow_anonymous was written (no local-only default then) */
} pctx;

/* Record one error at the current file and line; returns BK_ERR_CONFIG. */
int cfg_fail(pctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cfg_bool(pctx *p, const char *key, const char *v, bool *out);
int cfg_uint(pctx *p, const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *out);
int cfg_str(char **dst, const char *v);
/* Read one file's lines into c (errors collected in p). BK_OK or BK_ERR_CONFIG. */
int cfg_parse_path(pctx *p, config *c, const char *path);

/* include_dir DIR: every *.conf in DIR in byte order (config_include.c). */
int cfg_include_dir(pctx *p, config *c, const char *dir);
/* The keys kept for Mosquitto compatibility (config_compat.c): NOT_MINE, BK_OK or an error. */
int cfg_compat_key(pctx *p, config *c, const char *key, const char *v);
/* A key secbroker does not have: refused by name, with what to do instead. */
int cfg_refuse_key(pctx *p, const char *key);
/* per_listener_settings and the security keys (allow_anonymous,
 * password_file, acl_file, allow_zero_length_clientid, auto_id_prefix): into the broker's
 * sec, or with per_listener_settings true into the current listener block's
 * (before any listener line: the default listener of `port`). NOT_MINE for
 * other keys, else BK_OK or an error (config_perlistener.c). */
int cfg_security_key(pctx *p, config *c, const char *key, const char *v);
/* A file named by key must be readable now (BK_OK or an error). */
int cfg_need_file(pctx *p, const char *key, const char *v);
/* A listener key before any listener line: it configures the default
 * listener (remembers the first such line and key for the error without
 * `port`). */
void cfg_note_default(pctx *p, const char *key);
/* After all lines: the default listener of port/bind_address (BK_OK or an error). */
int cfg_compat_finish(pctx *p, config *c);
/* Duration like Mosquitto's persistent_client_expiration (1h, 2d, 1w, 1m, 1y). */
int cfg_duration(pctx *p, const char *key, const char *v, uint32_t *seconds);

#endif
