/*
 * utf8.c -- UTF-8 validation for MQTT strings (spec 1.5.3).
 */
#include "mqtt/internal.h"

/*
 * mqtt_utf8_validate -- MQTT_OK if p[0..len) is well-formed UTF-8 without
 * U+0000, else MQTT_ERR_UTF8.
 *
 * Follows the well-formed byte sequence table of the Unicode standard
 * (table 3-7, restated in RFC 3629 section 4): the second byte's range
 * depends on the lead byte, which is what excludes overlong forms (C0, C1,
 * E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above
 * U+10FFFF (F4 90.., F5..FF) [MQTT-1.5.3-1]. U+0000 is refused
 * [MQTT-1.5.3-2]. Other control characters and non-characters are only
 * "SHOULD NOT" in the spec, so they pass; the BOM U+FEFF passes too and is
 * never stripped [MQTT-1.5.3-3].
 */
int mqtt_utf8_validate(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = p[i];
        if (b < 0x80) {
            if (b == 0) return MQTT_ERR_UTF8;
            i++;
            continue;
        }

        size_t n;                     /* continuation bytes that follow */
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */
        if (b >= 0xc2 && b <= 0xdf) {
            n = 1;
        } else if (b >= 0xe0 && b <= 0xef) {
            n = 2;
            if (b == 0xe0)
                lo = 0xa0; /* below is overlong */
            else if (b == 0xed)
                hi = 0x9f; /* above is a surrogate */
        } else if (b >= 0xf0 && b <= 0xf4) {
            n = 3;
            if (b == 0xf0)
                lo = 0x90; /* below is overlong */
            else if (b == 0xf4)
                hi = 0x8f; /* above is > U+10FFFF */
        } else {
            return MQTT_ERR_UTF8; /* stray continuation, C0/C1, F5..FF */
        }

        if (len - i - 1 < n) return MQTT_ERR_UTF8; /* truncated sequence */
        if (p[i + 1] < lo || p[i + 1] > hi) return MQTT_ERR_UTF8;
        for (size_t k = 2; k <= n; k++)
            if ((p[i + k] & 0xc0) != 0x80) return MQTT_ERR_UTF8;
        i += n + 1;
    }
    return MQTT_OK;
}
