/*
 * privcheck.h -- before dropping privileges to `user`: warn about each file
 * the broker must read or write later (password_file and acl_file on
 * SIGHUP, persistence_location, the log file when reopened) that this user
 * cannot reach.
 */
#ifndef SECBROKER_PRIVCHECK_H
#define SECBROKER_PRIVCHECK_H

#include "broker/config.h"

/* Logs one warning per unreachable file; returns how many. Does nothing
 * (0) unless running as root with a `user` that exists. */
int privcheck_warn(const config *c);

#endif
