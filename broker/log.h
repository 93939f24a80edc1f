/*
 * log.h -- timestamped log lines to the configured destinations.
 * Mosquitto's log_type names map onto these bits.
 */
#ifndef SECBROKER_LOG_H
#define SECBROKER_LOG_H

#include <stdbool.h>

enum log_level {
    LL_ERROR = 1 << 0,
    LL_WARNING = 1 << 1,
    LL_NOTICE = 1 << 2,
    LL_INFO = 1 << 3,
    LL_DEBUG = 1 << 4,
    LL_TLS = 1 << 5, /* handshake step tracing */
    LL_SUBSCRIBE = 1 << 6,
    LL_ALL = 0x7f,
};

enum log_dest {
    LOGD_STDOUT = 1 << 0,
    LOGD_STDERR = 1 << 1,
    LOGD_FILE = 1 << 2,
    LOGD_SYSLOG = 1 << 3,
    LOGD_TOPIC = 1 << 4, /* $SYS/broker/log/LEVEL, through the hook below */
};

/* Before any config is read: errors and warnings to stderr. */
void log_init(void);
/* Apply the configured destinations/types. file may be NULL. Returns 0 or -1
 * (with errno) when the file cannot be opened. */
int log_configure(int dests, int types, const char *file);
/* Mosquitto's log_timestamp, log_timestamp_format (strftime, local time;
 * NULL = ISO 8601 UTC with milliseconds) and log_facility (0..7 =
 * LOG_LOCAL0..7, -1 = LOG_DAEMON). Call before log_configure. */
void log_set_format(bool timestamp, const char *format, int facility);
void log_close(void);
/* log_dest topic: fn gets each line (without time stamp) while LOGD_TOPIC is on. */
void log_set_topic_hook(void (*fn)(int level, const char *line));
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse one log_type word; returns the bits or -1. */
int log_type_parse(const char *word);

#endif
