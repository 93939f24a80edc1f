/*
 * reload.h -- what the signals do besides stopping: SIGHUP reloads the
 * configuration (the keys that can change without closing listeners) and
 * reopens the log file; SIGUSR2 writes the subscriptions to the log.
 */
#ifndef SECBROKER_RELOAD_H
#define SECBROKER_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "broker/config.h"

struct broker;

/* Apply c's log settings (verbose: -v). BK_OK or BK_ERR_IO with err. */
int reload_apply_log(const config *c, bool verbose, char *err, size_t errlen);
/* SIGHUP: read the configuration file again; a file with errors is logged
 * (every FILE:LINE) and the running configuration kept whole. has_file:
 * false when the broker started without -c (nothing to read); extra_port:
 * the -p listener (0: none), added again as at startup. */
void reload_config(struct broker *b, bool verbose, bool has_file, int extra_port);
/* SIGUSR2: every subscription, one log line per filter with its clients. */
void reload_dump_subscriptions(struct broker *b);

#endif
