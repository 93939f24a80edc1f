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
    if (dests & LOGD_SYSLOG) openlog("secbroker", LOG_PID, LOG_DAEMON);
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

/* ---- escaping ------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at p[0..n) (2..4), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c < 0xc2 || c > 0xf4 || n < len) return 0;
    unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f; /* no surrogates */
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f; /* <= U+10FFFF */
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* Is the sequence a character a terminal or log viewer acts on: C1
 * controls, the line and paragraph separators, bidirectional overrides? */
static bool utf8_is_control(const unsigned char *p, size_t len)
{
    if (len == 2) return p[0] == 0xc2 && p[1] < 0xa0;
    if (len == 3 && p[0] == 0xe2 && p[1] == 0x80) return p[2] >= 0xa8 && p[2] <= 0xae;
    if (len == 3 && p[0] == 0xe2 && p[1] == 0x81) return p[2] >= 0xa6 && p[2] <= 0xa9;
    return false;
}

/* Copy in[0..n) to out (cap bytes, NUL-terminated), escaping what must not
 * reach a log line raw; with quote_backslash a backslash becomes "\\" so the
 * escapes stay unambiguous. Returns the input bytes consumed. */
static size_t escape_into(char *out, size_t cap, const unsigned char *in, size_t n,
                          bool quote_backslash)
{
    size_t o = 0, i = 0;
    while (i < n) {
        size_t len = in[i] < 0x80 ? 1 : utf8_seq(in + i, n - i);
        bool raw = len > 1 ? !utf8_is_control(in + i, len)
                           : in[i] >= 0x20 && in[i] < 0x7f && (in[i] != '\\' || !quote_backslash);
        if (len == 0) len = 1; /* ill-formed: this byte alone, escaped */
        size_t need = raw ? len : in[i] == '\\' ? 2 : 4 * len;
        if (o + need + 1 > cap) break;
        if (raw) {
            memcpy(out + o, in + i, len);
            o += len;
        } else if (in[i] == '\\') {
            memcpy(out + o, "\\\\", 2);
            o += 2;
        } else {
            for (size_t k = 0; k < len; k++, o += 4)
                snprintf(out + o, 5, "\\x%02x", in[i + k]);
        }
        i += len;
    }
    out[o] = '\0';
    return i;
}

const char *log_escape(const void *s, size_t len)
{
    static char ring[LOG_ESCAPE_SLOTS][4 * LOG_FIELD_MAX + 32];
    static unsigned next;
    char *out = ring[next++ % LOG_ESCAPE_SLOTS];
    if (!s) return "(null)";
    size_t shown = len > LOG_FIELD_MAX ? LOG_FIELD_MAX : len;
    size_t used = escape_into(out, sizeof ring[0] - 24, s, shown, true);
    if (used < len) {
        size_t o = strlen(out);
        snprintf(out + o, sizeof ring[0] - o, "...(%zu bytes)", len);
    }
    return out;
}

const char *log_esc(const char *s)
{
    return s ? log_escape(s, strlen(s)) : "(null)";
}

/* ---- writing ------------------------------------------------------------- */

static void log_write(int level, const char *raw)
{
    /* no caller can start a new line or send a terminal a control sequence */
    char line[4096];
    size_t len = strlen(raw);
    while (len && (raw[len - 1] == '\n' || raw[len - 1] == '\r'))
        len--; /* a line ending of its own (mbedTLS debug lines) is not content */
    escape_into(line, sizeof line, (const unsigned char *)raw, len, false);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

    if (log_dests & LOGD_STDOUT) {
        fprintf(stdout, "%s %s: %s\n", ts, level_name(level), line);
        fflush(stdout);
    }
    if (log_dests & LOGD_STDERR) {
        fprintf(stderr, "%s %s: %s\n", ts, level_name(level), line);
        fflush(stderr);
    }
    if ((log_dests & LOGD_FILE) && log_file) {
        fprintf(log_file, "%s %s: %s\n", ts, level_name(level), line);
        fflush(log_file);
    }
    if (log_dests & LOGD_SYSLOG) syslog(syslog_prio(level), "%s", line);
}

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_write(level, line);
}

/* ---- rate limiting --------------------------------------------------------- */

#define LOG_KEY_MAX 64

typedef struct {
    const char *fmt; /* the kind, with key; NULL = free slot */
    char key[LOG_KEY_MAX];
    int level;
    unsigned written; /* lines written in this window */
    double window_start, window_end, last_used;
    unsigned long long suppressed;
    char last[512];
} limit_slot;

static limit_slot limits[LOG_LIMIT_KINDS];
static unsigned long long suppressed_total;
static double limit_window = LOG_LIMIT_INTERVAL;

void log_limit_interval(double seconds)
{
    limit_window = seconds;
    for (size_t i = 0; i < LOG_LIMIT_KINDS; i++) /* open windows end sooner too */
        if (limits[i].window_end > limits[i].window_start + seconds)
            limits[i].window_end = limits[i].window_start + seconds;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The count line for a slot whose window ended, if it left lines out. */
static void limit_report(limit_slot *l, double now)
{
    if (l->suppressed == 0) return;
    char line[700];
    snprintf(line, sizeof line, "%llu more like this in the last %.0f s, the last: %s",
             l->suppressed, now - l->window_start, l->last);
    log_write(l->level, line);
    l->suppressed = 0;
}

/* The slot of (fmt, key): found, free, or the one idle longest (reported
 * and reused). */
static limit_slot *limit_slot_for(const char *fmt, const char *key, size_t klen, double now)
{
    limit_slot *oldest = &limits[0];
    for (size_t i = 0; i < LOG_LIMIT_KINDS; i++) {
        limit_slot *l = &limits[i];
        if (!l->fmt) return l;
        if (l->fmt == fmt && strlen(l->key) == klen && memcmp(l->key, key, klen) == 0) return l;
        if (l->last_used < oldest->last_used) oldest = l;
    }
    limit_report(oldest, now);
    oldest->fmt = NULL;
    return oldest;
}

static void limited_line(int level, const char *key, const char *line, const char *fmt)
{
    double now = mono_now();
    size_t klen = 0;
    if (key) {
        const char *colon = strrchr(key, ':');
        klen = colon && strchr(key, '.') ? (size_t)(colon - key) : strlen(key);
        if (colon && key[0] == '[') klen = (size_t)(colon - key); /* [v6]:port */
        if (klen >= LOG_KEY_MAX) klen = LOG_KEY_MAX - 1;
    }
    limit_slot *l = limit_slot_for(fmt, key ? key : "", klen, now);
    l->last_used = now;
    if (l->fmt && now < l->window_end && l->written >= LOG_LIMIT_BURST) {
        l->suppressed++;
        suppressed_total++;
        size_t n = strnlen(line, sizeof l->last - 1);
        memcpy(l->last, line, n);
        l->last[n] = '\0';
        return;
    }
    if (l->fmt && now >= l->window_end) {
        limit_report(l, now);
        l->written = 0;
    }
    if (!l->fmt || l->written == 0) {
        l->fmt = fmt;
        memcpy(l->key, key ? key : "", klen);
        l->key[klen] = '\0';
        l->level = level;
        l->written = 0;
        l->suppressed = 0;
        l->window_start = now;
        l->window_end = now + limit_window;
    }
    l->written++;
    log_write(level, line);
}

void log_limited(int level, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    limited_line(level, NULL, line, fmt);
}

void log_limited_key(int level, const char *key, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    limited_line(level, key, line, fmt);
}

void log_flush_limited(void)
{
    double now = mono_now();
    for (size_t i = 0; i < LOG_LIMIT_KINDS; i++)
        if (limits[i].fmt && now >= limits[i].window_end && limits[i].suppressed) {
            limit_report(&limits[i], now);
            /* the next line of this kind opens a new window and is written */
            limits[i].written = 0;
        }
}

unsigned long long log_suppressed_total(void)
{
    return suppressed_total;
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
