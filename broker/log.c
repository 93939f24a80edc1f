/* log.c -- see log.h. One write(2)-sized fprintf per line, flushed at once so
 * a crash or a test reading the file never misses the last line. */
#include "broker/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>

static int log_dests = LOGD_STDERR;
static int log_types = LL_ERROR | LL_WARNING | LL_NOTICE | LL_INFO;
static FILE *log_file;
static bool log_stamp = true;
static char log_stamp_fmt[128]; /* empty: the default ISO 8601 UTC */
static int log_syslog_facility = LOG_DAEMON;
static void (*topic_hook)(int level, const char *line);

void log_set_topic_hook(void (*fn)(int level, const char *line))
{
    topic_hook = fn;
}

void log_set_format(bool timestamp, const char *format, int facility)
{
    static const int local[] = {LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2, LOG_LOCAL3,
                                LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};
    log_stamp = timestamp;
    snprintf(log_stamp_fmt, sizeof log_stamp_fmt, "%s", format ? format : "");
    log_syslog_facility = facility >= 0 && facility < 8 ? local[facility] : LOG_DAEMON;
}

void log_init(void)
{
    log_dests = LOGD_STDERR;
    log_types = LL_ERROR | LL_WARNING | LL_NOTICE | LL_INFO;
}

int log_configure(int dests, int types, const char *file)
{
    if (log_file) {
        fclose(log_file);
        log_file = NULL;
    }
    if ((dests & LOGD_FILE) && file) {
        log_file = fopen(file, "a");
        if (!log_file) return -1;
    }
    if (dests & LOGD_SYSLOG) openlog("secbroker", LOG_PID, log_syslog_facility);
    log_dests = dests;
    log_types = types;
    return 0;
}

void log_close(void)
{
    if (log_file) fclose(log_file);
    log_file = NULL;
}

bool log_enabled(int level)
{
    return (log_types & level) != 0 && log_dests != 0;
}

static const char *level_name(int level)
{
    switch (level) {
    case LL_ERROR:
        return "error";
    case LL_WARNING:
        return "warning";
    case LL_NOTICE:
        return "notice";
    case LL_DEBUG:
        return "debug";
    case LL_TLS:
        return "tls";
    case LL_SUBSCRIBE:
        return "subscribe";
    default:
        return "info";
    }
}

static int syslog_prio(int level)
{
    switch (level) {
    case LL_ERROR:
        return 3; /* LL_ERROR of syslog.h, which our enum shadows */
    case LL_WARNING:
        return 4;
    case LL_NOTICE:
        return 5;
    case LL_DEBUG:
        return 7;
    default:
        return 6;
    }
}

/* The line's time stamp and its separator ("" with log_timestamp false). */
static void stamp(char *ts, size_t len)
{
    ts[0] = 0;
    if (!log_stamp) return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    size_t n;
    if (log_stamp_fmt[0]) {
        localtime_r(&tv.tv_sec, &tm);
        n = strftime(ts, len - 2, log_stamp_fmt, &tm);
    } else {
        gmtime_r(&tv.tv_sec, &tm);
        n = strftime(ts, len, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(ts + n, len - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    }
    snprintf(ts + n, len - n, " ");
}

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);

    char ts[160];
    stamp(ts, sizeof ts);
    if (log_dests & LOGD_STDOUT) {
        fprintf(stdout, "%s%s: %s\n", ts, level_name(level), line);
        fflush(stdout);
    }
    if (log_dests & LOGD_STDERR) {
        fprintf(stderr, "%s%s: %s\n", ts, level_name(level), line);
        fflush(stderr);
    }
    if ((log_dests & LOGD_FILE) && log_file) {
        fprintf(log_file, "%s%s: %s\n", ts, level_name(level), line);
        fflush(log_file);
    }
    if (log_dests & LOGD_SYSLOG) syslog(syslog_prio(level), "%s", line);
    if ((log_dests & LOGD_TOPIC) && topic_hook) topic_hook(level, line);
}

int log_type_parse(const char *w)
{
    static const struct {
        const char *name;
        int bits;
    } names[] = {
        {"error", LL_ERROR},
        {"warning", LL_WARNING},
        {"notice", LL_NOTICE},
        {"information", LL_INFO},
        {"info", LL_INFO},
        {"debug", LL_DEBUG},
        {"subscribe", LL_SUBSCRIBE},
        {"unsubscribe", LL_SUBSCRIBE},
        {"tls", LL_TLS},
        {"websockets", 0},
        {"all", LL_ALL},
        {"none", 0},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(w, names[i].name) == 0) return names[i].bits;
    return -1;
}
