/*
 * topic.c -- the topic engine (spec 4.7): validators, the depth check and
 * whole-string matching. The level cursor, level kinds, the $ rule and
 * mqtt_match_level are inline in mqtt.h: the broker and the ACL run them
 * for every level of every PUBLISH and delivery.
 */
#include "mqtt/internal.h"

#include <string.h>

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
 * mqtt_topic_deeper_than -- n levels need n - 1 separators, so a string
 * shorter than max_levels bytes cannot have more than max_levels levels;
 * only longer ones are counted (this runs per PUBLISH).
 */
bool mqtt_topic_deeper_than(const uint8_t *p, size_t len, size_t max_levels)
{
    if (len < max_levels) return false;
    size_t n = 1;
    const uint8_t *end = p + len;
    for (const uint8_t *q = p; (q = memchr(q, '/', (size_t)(end - q))) != NULL; q++)
        if (++n > max_levels) return true;
    return false;
}

/* ---- matching --------------------------------------------------------------- */

/* Feed every level of filter f to a matcher over the subject. */
static bool match_string(const uint8_t *f, size_t flen, const uint8_t *subject, size_t slen,
                         bool subject_is_filter)
{
    if (flen == 0) return false;
    mqtt_match m;
    mqtt_match_init(&m, subject, slen, subject_is_filter);
    mqtt_levels it;
    for (mqtt_levels_init(&it, f, flen); !it.done; mqtt_levels_next(&it)) {
        enum mqtt_match_result r = mqtt_match_level(&m, mqtt_level_kind(it.ptr, it.len), it.ptr,
                                                    it.len, mqtt_levels_last(&it));
        if (r != MQTT_MATCH_MORE) return r == MQTT_MATCH_YES;
    }
    return false; /* not reached: the last level always decides */
}

bool mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen)
{
    return match_string(filter, flen, topic, tlen, false);
}

bool mqtt_filter_covers(const uint8_t *outer, size_t olen, const uint8_t *inner, size_t ilen)
{
    if (ilen == 0) return false;
    return match_string(outer, olen, inner, ilen, true);
}
