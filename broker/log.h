/*
 * log.h -- timestamped log lines to the configured destinations.
 * Mosquitto's log_type names map onto these bits.
 */
#ifndef SECBROKER_LOG_H
#define SECBROKER_LOG_H

#include <stdbool.h>
#include <stddef.h>

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
};

/* Before any config is read: errors and warnings to stderr. */
void log_init(void);
/* Apply the configured destinations/types. file may be NULL. Returns 0 or -1
 * (with errno) when the file cannot be opened. */
int log_configure(int dests, int types, const char *file);
void log_close(void);
bool log_enabled(int level);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Client-supplied text (client ids, usernames, topics, certificate names)
 * goes through log_escape before it reaches a format: printable ASCII and
 * well-formed UTF-8 stay as they are; control characters, DEL, backslash,
 * and every byte of ill-formed UTF-8 become \xNN (backslash as \\); at most
 * LOG_FIELD_MAX input bytes are shown, then "...(N bytes)". The result lives
 * in one of LOG_ESCAPE_SLOTS rotating buffers: valid until that many more
 * calls, which is enough for one log_msg. s may be NULL ("(null)").
 * log_msg itself escapes any control character left in a finished line, so
 * no caller can ever start a new line.
 */
#define LOG_FIELD_MAX 128
#define LOG_ESCAPE_SLOTS 8
const char *log_escape(const void *s, size_t len);
/* log_escape of a NUL-terminated string. */
const char *log_esc(const char *s);

/*
 * Rate-limited lines for what an attacker can repeat at will (refused
 * CONNECTs, drops, handshake timeouts). A kind is the format string plus an
 * optional key (the peer's address, so one attacker does not silence the
 * lines about everybody else). The first LOG_LIMIT_BURST lines of a kind in
 * a LOG_LIMIT_INTERVAL window are written, further ones are only counted,
 * and when the window ends one line says how many were left out and repeats
 * the last of them. log_flush_limited, called from the broker's periodic
 * tick, writes the counts of kinds that went quiet. LOG_LIMIT_KINDS kinds
 * are tracked; a new kind replaces the one idle longest (its count written
 * first).
 */
#define LOG_LIMIT_INTERVAL 10.0
#define LOG_LIMIT_BURST 5
#define LOG_LIMIT_KINDS 64
void log_limited(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* key: what else tells kinds apart (e.g. "192.0.2.7"); NULL = the format alone.
 * Only the part before the last ':' of an address with a port is used. */
void log_limited_key(int level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_flush_limited(void);
/* Change the window (seconds) from LOG_LIMIT_INTERVAL, open windows
 * included; for tests. */
void log_limit_interval(double seconds);
/* Lines left out by log_limited since start (for tests and $SYS). */
unsigned long long log_suppressed_total(void);

/* Parse one log_type word; returns the bits or -1. */
int log_type_parse(const char *word);

#endif
