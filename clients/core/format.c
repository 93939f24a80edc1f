/*
 * format.c -- secsub -F: mosquitto_sub's output format strings.
 *
 *   %t topic  %p payload  %q QoS  %r retain  %m message id  %l payload length
 *   %x / %X payload in hex  %I ISO-8601 time  %U Unix time with nanoseconds
 *   %j / %J the message as JSON (payload quoted / payload as JSON)  %% a %
 *   %A %C %D %E %F %P %R %S  MQTT 5 properties: topic alias, content type,
 *                            correlation data, message expiry, payload format,
 *                            user properties (NAME:VALUE, space between),
 *                            response topic, subscription identifier; absent
 *                            ones (all with 3.1.1) print nothing
 *   @X  strftime's %X of the current local time, @N nanoseconds, @@ an @
 *   \\ \0 \a \e \n \r \t \v  the usual characters
 * with printf-like flags (- and 0), field width and, for %t and %I, a
 * maximum width (%-10.10t).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clients/core/client.h"

typedef struct {
    bool left, zero;
    int width, prec; /* prec -1 = none */
} fmt_spec;

/* Write s[0..n) within the field of sp (zero padding only for numbers). */
static void fmt_pad(FILE *out, const fmt_spec *sp, const char *s, size_t n, bool numeric,
                    bool may_cut)
{
    size_t w;

    if (may_cut && sp->prec >= 0 && n > (size_t)sp->prec) n = (size_t)sp->prec;
    w = sp->width > 0 && (size_t)sp->width > n ? (size_t)sp->width - n : 0;
    if (!sp->left)
        while (w-- > 0)
            fputc(numeric && sp->zero ? '0' : ' ', out);
    fwrite(s, 1, n, out);
    if (sp->left)
        while (w-- > 0)
            fputc(' ', out);
}

static void fmt_number(FILE *out, const fmt_spec *sp, long v)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld", v);
    fmt_pad(out, sp, buf, (size_t)n, true, false);
}

static void fmt_hex(FILE *out, const fmt_spec *sp, const mqtt_publish *m, bool upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *buf = malloc(m->payload_len * 2 + 1);
    size_t i;

    if (buf == NULL) return;
    for (i = 0; i < m->payload_len; i++) {
        buf[2 * i] = digits[m->payload[i] >> 4];
        buf[2 * i + 1] = digits[m->payload[i] & 15];
    }
    fmt_pad(out, sp, buf, m->payload_len * 2, true, false);
    free(buf);
}

/* mosquitto_sub's "tst": local time, microseconds, then "Z" and the offset. */
static void fmt_json_time(FILE *out, const struct timespec *now)
{
    struct tm tm;
    char date[64], zone[16];

    localtime_r(&now->tv_sec, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof zone, "%z", &tm);
    fprintf(out, "\"%s.%06ldZ%s\"", date, now->tv_nsec / 1000, zone);
}

/* %j (payload as a JSON string) and %J (payload as JSON); -1 if %J and the
 * payload is not JSON (then nothing is written). */
static int fmt_json(FILE *out, const mqtt_publish *m, const struct timespec *now, bool as_json,
                    bool pretty)
{
    const char *sep = pretty ? ",\n\t" : ",", *colon = pretty ? ":\t" : ":";

    if (as_json && cli_json_value(NULL, m->payload, m->payload_len, false, 0) != 0) return -1;
    fputs(pretty ? "{\n\t\"tst\"" : "{\"tst\"", out);
    fputs(colon, out);
    fmt_json_time(out, now);
    fprintf(out, "%s\"topic\"%s", sep, colon);
    cli_json_string(out, m->topic.ptr, m->topic.len);
    fprintf(out, "%s\"qos\"%s%d%s\"retain\"%s%d", sep, colon, m->qos, sep, colon, m->retain);
    fprintf(out, "%s\"payloadlen\"%s%zu", sep, colon, m->payload_len);
    if (m->qos > 0) fprintf(out, "%s\"mid\"%s%u", sep, colon, m->packet_id);
    fprintf(out, "%s\"payload\"%s", sep, colon);
    if (as_json)
        cli_json_value(out, m->payload, m->payload_len, pretty, 1);
    else
        cli_json_string(out, m->payload, m->payload_len);
    fputs(pretty ? "\n}" : "}", out);
    return 0;
}

/* An MQTT 5 property sequence (%A %C %D %E %F %P %R %S) of props (may be
 * NULL): nothing when the message does not carry it. */
static void fmt_prop_field(FILE *out, char c, const fmt_spec *sp, const mqtt_props *props)
{
    static const char seq[] = "ACDEFRS";
    static const uint8_t ids[] = {MQTT_PROP_TOPIC_ALIAS,      MQTT_PROP_CONTENT_TYPE,
                                  MQTT_PROP_CORRELATION_DATA, MQTT_PROP_MESSAGE_EXPIRY,
                                  MQTT_PROP_PAYLOAD_FORMAT,   MQTT_PROP_RESPONSE_TOPIC,
                                  MQTT_PROP_SUBSCRIPTION_ID};
    const char *at = strchr(seq, c);

    if (props == NULL) return;
    if (c == 'P') {
        mqtt_prop_iter it;
        mqtt_str name, value;
        bool first = true;
        mqtt_prop_iter_init(&it, &props->raw);
        while (mqtt_prop_next_user(&it, &name, &value)) {
            fprintf(out, "%s%.*s:%.*s", first ? "" : " ", (int)name.len, (const char *)name.ptr,
                    (int)value.len, (const char *)value.ptr);
            first = false;
        }
        return;
    }
    if (at == NULL || !mqtt_props_has(props, ids[at - seq])) return;
    switch (c) {
    case 'A':
        fmt_number(out, sp, props->topic_alias);
        return;
    case 'C':
        fmt_pad(out, sp, (const char *)props->content_type.ptr, props->content_type.len, false,
                true);
        return;
    case 'D':
        fmt_pad(out, sp, (const char *)props->correlation_data.ptr, props->correlation_data.len,
                false, false);
        return;
    case 'E':
        fmt_number(out, sp, (long)props->message_expiry);
        return;
    case 'F':
        fmt_number(out, sp, props->payload_format);
        return;
    case 'R':
        fmt_pad(out, sp, (const char *)props->response_topic.ptr, props->response_topic.len, false,
                true);
        return;
    default: /* 'S' */
        fmt_number(out, sp, (long)props->subscription_id);
        return;
    }
}

/* One %-sequence for message m; fails only for %J with a non-JSON payload. */
static int fmt_message_field(FILE *out, char c, const fmt_spec *sp, const mqtt_publish *m,
                             const mqtt_props *props, const struct timespec *now, bool pretty)
{
    char buf[64];
    struct tm tm;

    switch (c) {
    case 't':
        fmt_pad(out, sp, (const char *)m->topic.ptr, m->topic.len, false, true);
        return 0;
    case 'p':
        fmt_pad(out, sp, (const char *)m->payload, m->payload_len, false, false);
        return 0;
    case 'q':
        fprintf(out, "%d", m->qos);
        return 0;
    case 'r':
        fprintf(out, "%d", m->retain ? 1 : 0);
        return 0;
    case 'm':
        fmt_number(out, sp, m->packet_id);
        return 0;
    case 'l':
        fmt_number(out, sp, (long)m->payload_len);
        return 0;
    case 'x':
    case 'X':
        fmt_hex(out, sp, m, c == 'X');
        return 0;
    case 'I':
        localtime_r(&now->tv_sec, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
        fmt_pad(out, sp, buf, strlen(buf), false, true);
        return 0;
    case 'U':
        fprintf(out, "%lld.%09ld", (long long)now->tv_sec, now->tv_nsec);
        return 0;
    case 'j':
    case 'J':
        return fmt_json(out, m, now, c == 'J', pretty);
    case '%':
        fputc('%', out);
        return 0;
    default: /* MQTT 5 properties */
        fmt_prop_field(out, c, sp, props);
        return 0;
    }
}

/* Flags, width and precision after a '%'; *p ends on the conversion. */
static void fmt_parse_spec(const char **p, fmt_spec *sp)
{
    const char *s = *p;

    memset(sp, 0, sizeof *sp);
    sp->prec = -1;
    for (; *s == '-' || *s == '0'; s++)
        *(*s == '-' ? &sp->left : &sp->zero) = true;
    for (; *s >= '0' && *s <= '9'; s++)
        sp->width = sp->width < 100000 ? sp->width * 10 + (*s - '0') : sp->width;
    if (*s == '.') {
        sp->prec = 0;
        for (s++; *s >= '0' && *s <= '9'; s++)
            sp->prec = sp->prec < 100000 ? sp->prec * 10 + (*s - '0') : sp->prec;
    }
    *p = s;
}

static int fmt_escape(FILE *out, char c)
{
    static const char from[] = "\\0aenrtv", to[] = "\\\0\a\033\n\r\t\v";
    const char *e = c != '\0' ? strchr(from, c) : NULL;

    if (e == NULL) return -1;
    if (out) fputc(to[e - from], out);
    return 0;
}

static void fmt_time(FILE *out, char c, const struct timespec *now)
{
    char spec[3] = {'%', c, '\0'}, buf[256];
    struct tm tm;

    if (c == 'N') {
        fprintf(out, "%09ld", now->tv_nsec);
        return;
    }
    if (c == '@') {
        fputc('@', out);
        return;
    }
    localtime_r(&now->tv_sec, &tm);
    if (strftime(buf, sizeof buf, spec, &tm) > 0) fputs(buf, out);
}

/* Walk fmt: check it (m == NULL, err says what is wrong) or print m. */
static int fmt_walk(FILE *out, const char *fmt, const mqtt_publish *m, const mqtt_props *props,
                    bool pretty, char *err, size_t errlen)
{
    static const char known[] = "tpqrmlxXIUjJ%ACDEFPRS";
    struct timespec now = {0, 0};
    const char *s;

    if (m != NULL) clock_gettime(CLOCK_REALTIME, &now);
    for (s = fmt; *s; s++) {
        fmt_spec sp;
        if (*s == '%') {
            s++;
            fmt_parse_spec(&s, &sp);
            if (*s == '\0') return snprintf(err, errlen, "-F: incomplete format specifier"), -1;
            if (strchr(known, *s) == NULL)
                return snprintf(err, errlen, "-F: invalid format specifier '%%%c'", *s), -1;
            if (m != NULL && fmt_message_field(out, *s, &sp, m, props, &now, pretty) != 0) {
                snprintf(err, errlen, "message payload is not valid JSON on topic %.*s",
                         (int)m->topic.len, (const char *)m->topic.ptr);
                return 1;
            }
        } else if (*s == '@') {
            if (*++s == '\0') return snprintf(err, errlen, "-F: incomplete format specifier"), -1;
            if (m != NULL) fmt_time(out, *s, &now);
        } else if (*s == '\\') {
            if (*++s == '\0') return snprintf(err, errlen, "-F: incomplete escape specifier"), -1;
            if (fmt_escape(m != NULL ? out : NULL, *s) != 0)
                return snprintf(err, errlen, "-F: invalid escape specifier '\\%c'", *s), -1;
        } else if (m != NULL) {
            fputc(*s, out);
        }
    }
    return 0;
}

int cli_format_check(const char *fmt, char *err, size_t errlen)
{
    return fmt_walk(NULL, fmt, NULL, NULL, false, err, errlen) == 0 ? CLI_OK : CLI_ERR_ARG;
}

int cli_format_print(FILE *out, const char *fmt, const mqtt_publish *m, const mqtt_props *props,
                     bool pretty, char *err, size_t errlen)
{
    return fmt_walk(out, fmt, m, props, pretty, err, errlen);
}
