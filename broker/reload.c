/* reload.c -- see reload.h. */
#include "broker/reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/bridge.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/err.h"
#include "broker/log.h"
#include "broker/memlimit.h"
#include "broker/protocol.h"

int reload_apply_log(const config *c, bool verbose, char *err, size_t errlen)
{
    int dests = c->log_dests;
    /* -v adds stderr unless the log already goes to the terminal */
    if (verbose && !(dests & (LOGD_STDOUT | LOGD_STDERR))) dests |= LOGD_STDERR;
    int types = verbose ? LL_ALL : c->log_types;
    log_set_format(c->log_timestamp, c->log_timestamp_format, c->log_facility);
    if (log_configure(dests, types, c->log_file) < 0) {
        snprintf(err, errlen, "log_dest file %s: %s", c->log_file, strerror(errno));
        return BK_ERR_IO;
    }
    return BK_OK;
}

static void swap_str(char **a, char **b)
{
    char *t = *a;
    *a = *b;
    *b = t;
}

/* Listener changes need a restart: say so for each differing one. */
static void warn_listeners(const config *old, const config *nw)
{
    bool same = old->nlisteners == nw->nlisteners;
    for (size_t i = 0; same && i < old->nlisteners; i++) {
        const listener_cfg *a = &old->listeners[i], *b = &nw->listeners[i];
        same = a->port == b->port && !a->address == !b->address &&
               (!a->address || strcmp(a->address, b->address) == 0) &&
               !a->certfile == !b->certfile && a->max_connections == b->max_connections &&
               a->websockets == b->websockets;
    }
    if (!same)
        log_msg(LL_WARNING, "SIGHUP: listener changes in %s take effect at the next restart",
                old->path);
}

static void swap_sec(sec_cfg *a, sec_cfg *b)
{
    sec_cfg t = *a;
    *a = *b;
    *b = t;
}

/* The security settings: the broker's, per_listener_settings, and each
 * listener's when the listeners are the same ones (else they wait for the
 * restart with their listeners; warn_listeners said so). auth_load loads
 * the files they name. Swapped, so a second call with the same nw and the
 * old per_listener_settings undoes the first (undo_sec). */
static void apply_sec(config *cur, config *nw, bool per_listener_settings)
{
    swap_sec(&cur->sec, &nw->sec);
    bool same = cur->nlisteners == nw->nlisteners;
    for (size_t i = 0; same && i < cur->nlisteners; i++)
        same = cur->listeners[i].port == nw->listeners[i].port;
    if (!same) return; /* per_listener_settings too: it needs every listener's set */
    cur->per_listener_settings = per_listener_settings;
    for (size_t i = 0; i < cur->nlisteners; i++)
        swap_sec(&cur->listeners[i].sec, &nw->listeners[i].sec);
}

/* The new security settings with their files loaded, or (a file missing or
 * broken) the running ones whole: settings and loaded files together, so a
 * failed reload never pairs new settings with the old sets (e.g. turning
 * per_listener_settings on with the listeners' sets still empty, which
 * would check nobody against any ACL). */
static void reload_sec(broker *b, config *nw)
{
    char err[512];
    bool old = b->cfg->per_listener_settings;
    apply_sec(b->cfg, nw, nw->per_listener_settings);
    if (auth_load(b, err, sizeof err) == BK_OK) {
        auth_log_reloaded(b);
        return;
    }
    apply_sec(b->cfg, nw, old);
    log_msg(LL_ERROR,
            "SIGHUP: reload failed, keeping the previous security settings (allow_anonymous, "
            "password files, ACLs, per_listener_settings): %s",
            err);
}

/* Copy what can change without closing listeners from nw into the running
 * configuration (strings swapped, so freeing nw frees the old ones). */
static void apply(broker *b, config *cur, config *nw)
{
    cur->max_keepalive = nw->max_keepalive;
    cur->max_packet_size = nw->max_packet_size;
    cur->max_inflight_messages = nw->max_inflight_messages;
    cur->max_queued_messages = nw->max_queued_messages;
    cur->max_subscriptions_per_client = nw->max_subscriptions_per_client;
    cur->max_persistent_sessions = nw->max_persistent_sessions;
    cur->max_output_buffer = nw->max_output_buffer;
    cur->output_buffer_hard_limit = nw->output_buffer_hard_limit;
    cur->output_buffer_soft_seconds = nw->output_buffer_soft_seconds;
    cur->retain_available = nw->retain_available;
    cur->log_dests = nw->log_dests;
    cur->log_types = nw->log_types;
    swap_str(&cur->log_file, &nw->log_file);
    cur->log_timestamp = nw->log_timestamp;
    swap_str(&cur->log_timestamp_format, &nw->log_timestamp_format);
    cur->log_facility = nw->log_facility;
    cur->connection_messages = nw->connection_messages;
    cur->sys_interval = nw->sys_interval;
    cur->handshake_timeout = nw->handshake_timeout;
    cur->use_username_as_clientid = nw->use_username_as_clientid;
    swap_str(&cur->clientid_prefixes, &nw->clientid_prefixes);
    cur->persistent_client_expiration = nw->persistent_client_expiration;
    cur->max_inflight_bytes = nw->max_inflight_bytes;
    cur->max_queued_bytes = nw->max_queued_bytes;
    cur->check_retain_source = nw->check_retain_source;
    cur->memory_limit = nw->memory_limit;
    g_memlimit.limit = cur->memory_limit; /* counted always: a new limit applies at once */
    b->sessions.limits.max_inflight = cur->max_inflight_messages;
    b->sessions.limits.max_queued = cur->max_queued_messages;
    b->sessions.limits.max_inflight_bytes = cur->max_inflight_bytes;
    b->sessions.limits.max_queued_bytes = cur->max_queued_bytes;
    b->out_limits.soft = cur->max_output_buffer;
    b->out_limits.hard = cur->output_buffer_hard_limit;
    b->out_limits.soft_seconds = cur->output_buffer_soft_seconds;
    b->out_limits.slack = cur->max_packet_size;
}

void reload_config(broker *b, bool verbose, bool has_file, int extra_port)
{
    static char err[8192];
    config *nw = has_file ? config_load(b->cfg->path, err, sizeof err) : NULL;
    if (!has_file) {
        log_msg(LL_NOTICE, "SIGHUP: started without -c, no configuration file to read again");
        return;
    }
    if (!nw) { /* one line per error, each complete */
        for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
            log_msg(LL_ERROR, "SIGHUP: reload failed, keeping the running configuration: %s", line);
        return;
    }
    if (extra_port && config_add_listener(nw, extra_port) != BK_OK) {
        log_msg(LL_ERROR, "SIGHUP: out of memory; the running configuration is kept");
        config_free(nw);
        return;
    }
    warn_listeners(b->cfg, nw);
    apply(b, b->cfg, nw);
    char lerr[512];
    if (reload_apply_log(b->cfg, verbose, lerr, sizeof lerr) != BK_OK)
        fprintf(stderr, "secbroker: SIGHUP: %s\n", lerr); /* no log file to say it in */
    reload_sec(b, nw);
    bridges_reload(b, nw, proto_evict_session);
    config_free(nw);
    log_msg(LL_NOTICE, "SIGHUP: configuration %s applied, log file reopened", b->cfg->path);
}

void reload_dump_subscriptions(broker *b)
{
    uint32_t it = 0, nsubs = 0;
    dict_entry *e;
    log_msg(LL_NOTICE, "SIGUSR2: subscriptions (client id: filter QoS)");
    while ((e = dict_next(&b->sessions.ids, &it))) {
        session *s = e->val;
        for (sub_rec *r = s->subs; r; r = r->next) {
            log_msg(LL_NOTICE, "  %s%s: %s %u", log_esc(s->client_id), s->out ? "" : " (offline)",
                    log_esc(r->filter), r->qos);
            nsubs++;
        }
    }
    log_msg(LL_NOTICE, "SIGUSR2: %u subscriptions in %u sessions", nsubs, b->sessions.ids.count);
}
