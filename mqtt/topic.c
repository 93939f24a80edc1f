/*
 * topic.c -- topic names, topic filters and matching (spec 4.7).
 */
#include "mqtt/internal.h"

/*
 * mqtt_topic_name_validate -- a PUBLISH (or will) topic: 1..65535 bytes
 * [MQTT-4.7.3-1], [MQTT-4.7.3-3], valid UTF-8 [MQTT-3.3.2-1], no wildcard
 * characters [MQTT-3.3.2-2], [MQTT-4.7.1-1].
 * MQTT_OK, MQTT_ERR_TOPIC or MQTT_ERR_UTF8.
 */
int mqtt_topic_name_validate(const uint8_t *p, size_t len)
{
    if (len == 0 || len > 65535) return MQTT_ERR_TOPIC;
    int rc = mqtt_utf8_validate(p, len);
    if (rc != MQTT_OK) return rc;
    for (size_t i = 0; i < len; i++)
        if (p[i] == '+' || p[i] == '#') return MQTT_ERR_TOPIC;
    return MQTT_OK;
}

/*
 * mqtt_topic_filter_validate -- a SUBSCRIBE/UNSUBSCRIBE filter: 1..65535
 * bytes, valid UTF-8 [MQTT-3.8.3-1]; '#' must fill its level and be the
 * last character [MQTT-4.7.1-2]; '+' must fill its level [MQTT-4.7.1-3].
 * Empty levels ("a//b", "/a", "a/") are legal.
 * MQTT_OK, MQTT_ERR_FILTER or MQTT_ERR_UTF8.
 */
int mqtt_topic_filter_validate(const uint8_t *p, size_t len)
{
    if (len == 0 || len > 65535) return MQTT_ERR_FILTER;
    int rc = mqtt_utf8_validate(p, len);
    if (rc != MQTT_OK) return rc;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '+' && p[i] != '#') continue;
        bool starts_level = i == 0 || p[i - 1] == '/';
        bool last = i + 1 == len;
        if (!starts_level) return MQTT_ERR_FILTER;
        if (p[i] == '#' && !last) return MQTT_ERR_FILTER;
        if (p[i] == '+' && !last && p[i + 1] != '/') return MQTT_ERR_FILTER;
    }
    return MQTT_OK;
}

/*
 * mqtt_topic_matches -- one left-to-right walk over both strings, level by
 * level: '+' swallows one topic level (possibly empty), '#' everything that
 * is left, including nothing at all: "a/#" matches "a" because '#' also
 * covers the parent level (spec 4.7.1.2). A filter that starts with a
 * wildcard never matches a topic starting with '$' [MQTT-4.7.2-1], so "#"
 * does not leak $SYS.
 *
 * Inputs are expected to be valid; on invalid ones the answer is
 * unspecified but the walk still stays inside both buffers.
 */
bool mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen)
{
    if (flen == 0) return false;
    if (tlen > 0 && topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;

    size_t f = 0, t = 0;
    for (;;) {
        /* Here f and t are both at the start of a level. */
        if (f < flen && filter[f] == '#') return true;
        if (f < flen && filter[f] == '+') {
            f++;
            while (t < tlen && topic[t] != '/')
                t++;
        } else {
            while (f < flen && filter[f] != '/') {
                if (t >= tlen || topic[t] != filter[f]) return false;
                f++;
                t++;
            }
            if (t < tlen && topic[t] != '/') return false; /* topic level is longer */
        }

        /* Both at the end of a level: '/' or end of string. */
        if (f == flen) return t == tlen;
        if (t == tlen) {
            /* Topic ran out; only a trailing "/#" still matches (parent). */
            return flen - f == 2 && filter[f + 1] == '#';
        }
        f++; /* both are at '/' */
        t++;
    }
}
