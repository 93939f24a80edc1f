/*
 * test_mqtt_topic.c -- UTF-8 validation, topic name and filter validation,
 * topic matching, and the words for codes.
 *
 * Rows that must be refused cite the spec rule next to them. Beware C hex
 * escapes: "\xC2" "abc" is split on purpose, "\xC2abc" would be one escape.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt.h"

/* A byte string with its exact length (may contain NUL). */
#define B(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define BS(lit) lit, sizeof(lit) - 1

/* ---- UTF-8 -------------------------------------------------------------- */

static const struct {
    const char *name;
    const uint8_t *s;
    size_t len;
    int expect;
} utf8_cases[] = {
    {"empty", B(""), MQTT_OK},
    {"ascii", B("hello/world"), MQTT_OK},
    {"U+00A9 2-byte", B("\xc2\xa9"), MQTT_OK},
    {"U+0080 smallest 2-byte", B("\xc2\x80"), MQTT_OK},
    {"U+07FF largest 2-byte", B("\xdf\xbf"), MQTT_OK},
    {"U+0800 smallest 3-byte", B("\xe0\xa0\x80"), MQTT_OK},
    {"U+20AC euro", B("\xe2\x82\xac"), MQTT_OK},
    {"U+D7FF below surrogates", B("\xed\x9f\xbf"), MQTT_OK},
    {"U+E000 above surrogates", B("\xee\x80\x80"), MQTT_OK},
    {"U+FEFF BOM kept [MQTT-1.5.3-3]", B("\xef\xbb\xbf"), MQTT_OK},
    {"U+FFFF non-character allowed", B("\xef\xbf\xbf"), MQTT_OK},
    {"U+10000 smallest 4-byte", B("\xf0\x90\x80\x80"), MQTT_OK},
    {"U+1F600 emoji", B("\xf0\x9f\x98\x80"), MQTT_OK},
    {"U+10FFFF largest", B("\xf4\x8f\xbf\xbf"), MQTT_OK},
    {"C0 controls allowed", B("\x01\x1f\x7f"), MQTT_OK},
    {"C1 control U+0085 allowed", B("\xc2\x85"), MQTT_OK},
    {"mixed",
     B("a\xc3\xa9"
       "b\xe2\x82\xac"
       "c\xf0\x9f\x98\x80"
       "d"),
     MQTT_OK},

    /* [MQTT-1.5.3-2] U+0000 */
    {"U+0000 alone", B("\x00"), MQTT_ERR_UTF8},
    {"U+0000 inside",
     B("a\x00"
       "b"),
     MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-1] overlong encodings are ill-formed */
    {"overlong NUL C0 80", B("\xc0\x80"), MQTT_ERR_UTF8},
    {"overlong C1 BF", B("\xc1\xbf"), MQTT_ERR_UTF8},
    {"overlong 3-byte E0 80 80", B("\xe0\x80\x80"), MQTT_ERR_UTF8},
    {"overlong 3-byte E0 9F BF", B("\xe0\x9f\xbf"), MQTT_ERR_UTF8},
    {"overlong 4-byte F0 80 80 80", B("\xf0\x80\x80\x80"), MQTT_ERR_UTF8},
    {"overlong 4-byte F0 8F BF BF", B("\xf0\x8f\xbf\xbf"), MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-1] surrogates U+D800..U+DFFF */
    {"surrogate U+D800", B("\xed\xa0\x80"), MQTT_ERR_UTF8},
    {"surrogate U+DC00", B("\xed\xb0\x80"), MQTT_ERR_UTF8},
    {"surrogate U+DFFF", B("\xed\xbf\xbf"), MQTT_ERR_UTF8},
    {"CESU-8 surrogate pair", B("\xed\xa0\xbd\xed\xb8\x80"), MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-1] beyond U+10FFFF */
    {"U+110000 F4 90 80 80", B("\xf4\x90\x80\x80"), MQTT_ERR_UTF8},
    {"lead F5", B("\xf5\x80\x80\x80"), MQTT_ERR_UTF8},
    {"lead F8 5-byte form", B("\xf8\x88\x80\x80\x80"), MQTT_ERR_UTF8},
    {"lead FC 6-byte form", B("\xfc\x84\x80\x80\x80\x80"), MQTT_ERR_UTF8},
    {"byte FE", B("\xfe"), MQTT_ERR_UTF8},
    {"byte FF", B("\xff"), MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-1] stray continuation bytes */
    {"lone 80", B("\x80"), MQTT_ERR_UTF8},
    {"lone BF after ascii", B("a\xbf"), MQTT_ERR_UTF8},
    {"extra continuation", B("\xc2\xa9\xa9"), MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-1] truncated sequences */
    {"truncated 2-byte", B("\xc2"), MQTT_ERR_UTF8},
    {"truncated 3-byte after 1", B("\xe2"), MQTT_ERR_UTF8},
    {"truncated 3-byte after 2", B("\xe2\x82"), MQTT_ERR_UTF8},
    {"truncated 4-byte after 3", B("\xf0\x9f\x98"), MQTT_ERR_UTF8},
    {"truncated at end of text", B("abc\xe2\x82"), MQTT_ERR_UTF8},
    /* [MQTT-1.5.3-1] bad continuation bytes */
    {"2-byte then ascii", B("\xc2\x41"), MQTT_ERR_UTF8},
    {"3-byte bad 2nd", B("\xe2\x28\xa1"), MQTT_ERR_UTF8},
    {"3-byte bad 3rd", B("\xe2\x82\x28"), MQTT_ERR_UTF8},
    {"4-byte bad 4th", B("\xf0\x9f\x98\x28"), MQTT_ERR_UTF8},
    {"4-byte bad 3rd", B("\xf0\x9f\xc0\x80"), MQTT_ERR_UTF8},
};

START_TEST(utf8_table)
{
    int rc = mqtt_utf8_validate(utf8_cases[_i].s, utf8_cases[_i].len);
    ck_assert_msg(rc == utf8_cases[_i].expect, "%s: got %d want %d", utf8_cases[_i].name, rc,
                  utf8_cases[_i].expect);
}
END_TEST

START_TEST(utf8_respects_length)
{
    /* The byte after len is never looked at: a valid prefix of a longer,
     * invalid buffer validates; a sequence cut by len does not. */
    const uint8_t buf[] = {'a', 'b', 0xff};
    ck_assert_int_eq(mqtt_utf8_validate(buf, 2), MQTT_OK);
    ck_assert_int_eq(mqtt_utf8_validate(buf, 3), MQTT_ERR_UTF8);
    const uint8_t euro[] = {0xe2, 0x82, 0xac};
    ck_assert_int_eq(mqtt_utf8_validate(euro, 2), MQTT_ERR_UTF8); /* [MQTT-1.5.3-1] */
    ck_assert_int_eq(mqtt_utf8_validate(euro, 3), MQTT_OK);
}
END_TEST

START_TEST(utf8_every_two_byte_lead)
{
    /* Exhaustive over lead/continuation pairs: exactly C2..DF followed by
     * 80..BF is a well-formed 2-byte sequence [MQTT-1.5.3-1]. */
    for (int a = 0x80; a <= 0xff; a++) {
        for (int b = 0x00; b <= 0xff; b++) {
            const uint8_t s[2] = {(uint8_t)a, (uint8_t)b};
            bool want = a >= 0xc2 && a <= 0xdf && b >= 0x80 && b <= 0xbf;
            int rc = mqtt_utf8_validate(s, 2);
            if ((rc == MQTT_OK) != want) ck_abort_msg("%02x %02x: got %d", a, b, rc);
        }
    }
}
END_TEST

START_TEST(utf8_every_code_point)
{
    /* Encode every scalar value the textbook way and check the validator
     * agrees: all accepted except U+0000 [MQTT-1.5.3-2] and surrogates
     * [MQTT-1.5.3-1], which are encoded anyway to prove they are refused. */
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        uint8_t s[4];
        size_t n;
        if (cp < 0x80) {
            s[0] = (uint8_t)cp;
            n = 1;
        } else if (cp < 0x800) {
            s[0] = (uint8_t)(0xc0 | cp >> 6);
            s[1] = (uint8_t)(0x80 | (cp & 0x3f));
            n = 2;
        } else if (cp < 0x10000) {
            s[0] = (uint8_t)(0xe0 | cp >> 12);
            s[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            s[2] = (uint8_t)(0x80 | (cp & 0x3f));
            n = 3;
        } else {
            s[0] = (uint8_t)(0xf0 | cp >> 18);
            s[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
            s[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            s[3] = (uint8_t)(0x80 | (cp & 0x3f));
            n = 4;
        }
        bool want = cp != 0 && (cp < 0xd800 || cp > 0xdfff);
        int rc = mqtt_utf8_validate(s, n);
        if ((rc == MQTT_OK) != want) ck_abort_msg("U+%04X: got %d", (unsigned)cp, rc);
    }
}
END_TEST

/* ---- topic names and filters -------------------------------------------- */

static const struct {
    const char *s;
    size_t len;
    int name_rc;   /* as a topic name */
    int filter_rc; /* as a topic filter */
} topics[] = {
    {BS("a"), MQTT_OK, MQTT_OK},
    {BS("a/b"), MQTT_OK, MQTT_OK},
    {BS("/"), MQTT_OK, MQTT_OK},
    {BS("/a"), MQTT_OK, MQTT_OK},
    {BS("a/"), MQTT_OK, MQTT_OK},
    {BS("a//b"), MQTT_OK, MQTT_OK},
    {BS("//"), MQTT_OK, MQTT_OK},
    {BS("$SYS/broker/uptime"), MQTT_OK, MQTT_OK},
    {BS("sport/tennis player1"), MQTT_OK, MQTT_OK},
    {BS(" "), MQTT_OK, MQTT_OK},
    {BS("\xe2\x82\xac/x"), MQTT_OK, MQTT_OK},
    {BS("\xef\xbb\xbf"
        "a"),
     MQTT_OK, MQTT_OK},
    /* wildcards: fine in filters, never in names [MQTT-3.3.2-2] [MQTT-4.7.1-1] */
    {BS("#"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("+"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("a/#"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("a/+"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("+/+"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("+/#"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("/+"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("/#"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("+/"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("+//+"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("a/+/b"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("+/a/#"), MQTT_ERR_TOPIC, MQTT_OK},
    {BS("$SYS/#"), MQTT_ERR_TOPIC, MQTT_OK},
    /* [MQTT-4.7.1-2] '#' alone in its level and last */
    {BS("a#"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("#a"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("a/#/b"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("##"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("a/b#"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("#/"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("#/a"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("+#"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    /* [MQTT-4.7.1-3] '+' alone in its level */
    {BS("+a"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("a+"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("a/+b"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("a/b+/c"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("++"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    {BS("#+"), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    /* [MQTT-4.7.3-1] at least one character */
    {BS(""), MQTT_ERR_TOPIC, MQTT_ERR_FILTER},
    /* [MQTT-4.7.3-2] no U+0000; [MQTT-1.5.3-1] well-formed */
    {BS("a/\x00"), MQTT_ERR_UTF8, MQTT_ERR_UTF8},
    {BS("\xc0\x80"), MQTT_ERR_UTF8, MQTT_ERR_UTF8},
    {BS("a/\xed\xa0\x80"), MQTT_ERR_UTF8, MQTT_ERR_UTF8},
    {BS("\xff/#"), MQTT_ERR_UTF8, MQTT_ERR_UTF8},
};

START_TEST(topic_table)
{
    const uint8_t *s = (const uint8_t *)topics[_i].s;
    size_t len = topics[_i].len;
    int rc = mqtt_topic_name_validate(s, len);
    ck_assert_msg(rc == topics[_i].name_rc, "name \"%s\": got %d want %d", topics[_i].s, rc,
                  topics[_i].name_rc);
    rc = mqtt_topic_filter_validate(s, len);
    ck_assert_msg(rc == topics[_i].filter_rc, "filter \"%s\": got %d want %d", topics[_i].s, rc,
                  topics[_i].filter_rc);
}
END_TEST

START_TEST(topic_length_limit)
{
    /* [MQTT-4.7.3-3] topic names and filters are at most 65535 bytes */
    uint8_t *buf = malloc(65536);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'x', 65536);
    ck_assert_int_eq(mqtt_topic_name_validate(buf, 65535), MQTT_OK);
    ck_assert_int_eq(mqtt_topic_filter_validate(buf, 65535), MQTT_OK);
    ck_assert_int_eq(mqtt_topic_name_validate(buf, 65536), MQTT_ERR_TOPIC);
    ck_assert_int_eq(mqtt_topic_filter_validate(buf, 65536), MQTT_ERR_FILTER);
    buf[65534] = '#';
    buf[65533] = '/';
    ck_assert_int_eq(mqtt_topic_filter_validate(buf, 65535), MQTT_OK);
    ck_assert_int_eq(mqtt_topic_name_validate(buf, 65535), MQTT_ERR_TOPIC);
    free(buf);
}
END_TEST

/* ---- matching ----------------------------------------------------------- */

static const struct {
    const char *filter, *topic;
    bool match;
} matches[] = {
    /* literal */
    {"a/b", "a/b", true},
    {"a/b", "a/c", false},
    {"a/b", "a/b/c", false},
    {"a/b/c", "a/b", false},
    {"a", "ab", false},
    {"ab", "a", false},
    {"A", "a", false}, /* case sensitive (spec 4.7.3) */
    {"a//b", "a//b", true},
    {"a//b", "a/b", false},
    {"/", "/", true},
    {"/a", "a", false},
    {"a/", "a", false},
    /* '+': exactly one level, possibly empty (spec 4.7.1.3) */
    {"+", "a", true},
    {"+", "a/b", false},
    {"+", "/", false},
    {"+/+", "/x", true},
    {"+/+", "a/", true},
    {"+/+", "/", true},
    {"+/+", "a/b/c", false},
    {"/+", "/x", true},
    {"/+", "x", false},
    {"a/+", "a", false},
    {"a/+", "a/", true},
    {"a/+", "a/b", true},
    {"a/+", "a/b/c", false},
    {"a/+/c", "a/b/c", true},
    {"a/+/c", "a/b/d", false},
    {"a/+/c", "a//c", true},
    {"a/+/+", "a/b", false},
    /* '#': this level and everything below, parent included (spec 4.7.1.2) */
    {"#", "a", true},
    {"#", "a/b/c", true},
    {"#", "/", true},
    {"#", "/a", true},
    {"a/#", "a", true},
    {"a/#", "a/", true},
    {"a/#", "a/b", true},
    {"a/#", "a/b/c", true},
    {"a/#", "ab", false},
    {"a/#", "b/a", false},
    {"a/b/#", "a", false},
    {"a/b/#", "a/b", true},
    {"a/b/#", "a/bc", false},
    {"+/#", "a", true},
    {"+/#", "a/b/c", true},
    {"/#", "/a", true},
    {"/#", "/", true},
    {"/#", "a", false},
    {"a/+/#", "a/b", true},
    {"a/+/#", "a", false},
    /* [MQTT-4.7.2-1] a leading wildcard does not match a '$' topic */
    {"#", "$SYS/broker", false},
    {"#", "$SYS", false},
    {"+", "$SYS", false},
    {"+/broker", "$SYS/broker", false},
    {"+/#", "$SYS/broker", false},
    {"$SYS/#", "$SYS/broker", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/+", "$SYS/uptime", true},
    {"$SYS", "$SYS", true},
    {"a/#", "$a", false},
    /* '$' matters only as the first character of the topic */
    {"#", "a/$SYS", true},
    {"+/$x", "a/$x", true},
    {"a/+", "a/$x", true},
};

START_TEST(match_table)
{
    const char *f = matches[_i].filter, *t = matches[_i].topic;
    /* The table itself must use valid filters and names. */
    ck_assert_int_eq(mqtt_topic_filter_validate((const uint8_t *)f, strlen(f)), MQTT_OK);
    ck_assert_int_eq(mqtt_topic_name_validate((const uint8_t *)t, strlen(t)), MQTT_OK);
    bool got = mqtt_topic_matches((const uint8_t *)f, strlen(f), (const uint8_t *)t, strlen(t));
    ck_assert_msg(got == matches[_i].match, "\"%s\" vs \"%s\": got %d", f, t, got);
}
END_TEST

START_TEST(match_exact_self)
{
    /* Every valid topic name matches itself as a filter, and "#" matches
     * every one that does not start with '$'. */
    for (unsigned i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        if (topics[i].name_rc != MQTT_OK) continue;
        const uint8_t *s = (const uint8_t *)topics[i].s;
        ck_assert(mqtt_topic_matches(s, topics[i].len, s, topics[i].len));
        ck_assert_int_eq(mqtt_topic_matches((const uint8_t *)"#", 1, s, topics[i].len),
                         s[0] != '$');
    }
}
END_TEST

START_TEST(match_uses_lengths)
{
    /* Views are not NUL-terminated: only len bytes count. */
    const uint8_t f[] = "a/bXXX", t[] = "a/bYYY";
    ck_assert(mqtt_topic_matches(f, 3, t, 3));
    ck_assert(!mqtt_topic_matches(f, 4, t, 4));
    ck_assert(!mqtt_topic_matches(f, 0, t, 3));
}
END_TEST

/* ---- words -------------------------------------------------------------- */

START_TEST(strerror_words)
{
    ck_assert_str_eq(mqtt_strerror(MQTT_ERR_QOS), "PUBLISH with QoS 3 [MQTT-3.3.1-4]");
    /* Every code has its own non-empty text; unknown codes still get one. */
    for (int a = MQTT_ERR_ARG; a <= MQTT_NEED_MORE; a++) {
        const char *sa = mqtt_strerror(a);
        ck_assert_ptr_nonnull(sa);
        ck_assert_uint_gt(strlen(sa), 0);
        ck_assert_str_ne(sa, mqtt_strerror(-1000));
        for (int b = a + 1; b <= MQTT_NEED_MORE; b++)
            ck_assert_str_ne(sa, mqtt_strerror(b));
    }
    ck_assert_ptr_nonnull(strstr(mqtt_strerror(MQTT_ERR_UTF8), "[MQTT-1.5.3-1"));
    ck_assert_ptr_nonnull(strstr(mqtt_strerror(MQTT_ERR_PROTOCOL_LEVEL), "[MQTT-3.1.2-2]"));
    ck_assert_ptr_nonnull(strstr(mqtt_strerror(MQTT_ERR_PACKET_ID), "[MQTT-2.3.1-1]"));
    ck_assert_ptr_nonnull(mqtt_strerror(-1000));
    ck_assert_ptr_nonnull(mqtt_strerror(42));
}
END_TEST

START_TEST(type_and_connack_names)
{
    const char *names[] = {"RESERVED",  "CONNECT",  "CONNACK",     "PUBLISH",
                           "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                           "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                           "PINGREQ",   "PINGRESP", "DISCONNECT",  "RESERVED"};
    for (int t = 0; t < 16; t++)
        ck_assert_str_eq(mqtt_type_name(t), names[t]);
    ck_assert_str_eq(mqtt_type_name(-1), "RESERVED");
    ck_assert_str_eq(mqtt_type_name(16), "RESERVED");

    ck_assert_str_eq(mqtt_connack_string(MQTT_CONNACK_ACCEPTED), "connection accepted");
    ck_assert_str_eq(mqtt_connack_string(MQTT_CONNACK_PROTOCOL), "unacceptable protocol version");
    ck_assert_str_eq(mqtt_connack_string(MQTT_CONNACK_IDENTIFIER), "identifier rejected");
    ck_assert_str_eq(mqtt_connack_string(MQTT_CONNACK_UNAVAILABLE), "server unavailable");
    ck_assert_str_eq(mqtt_connack_string(MQTT_CONNACK_BAD_CREDENTIALS),
                     "bad user name or password");
    ck_assert_str_eq(mqtt_connack_string(MQTT_CONNACK_NOT_AUTHORIZED), "not authorized");
    ck_assert_ptr_nonnull(mqtt_connack_string(6));
    ck_assert_ptr_nonnull(mqtt_connack_string(-1));
}
END_TEST

static Suite *topic_suite(void)
{
    Suite *s = suite_create("mqtt_topic");
    TCase *tc;

    tc = tcase_create("utf8");
    tcase_add_loop_test(tc, utf8_table, 0, (int)(sizeof utf8_cases / sizeof utf8_cases[0]));
    tcase_add_test(tc, utf8_respects_length);
    tcase_add_test(tc, utf8_every_two_byte_lead);
    tcase_add_test(tc, utf8_every_code_point);
    suite_add_tcase(s, tc);

    tc = tcase_create("validate");
    tcase_add_loop_test(tc, topic_table, 0, (int)(sizeof topics / sizeof topics[0]));
    tcase_add_test(tc, topic_length_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("match");
    tcase_add_loop_test(tc, match_table, 0, (int)(sizeof matches / sizeof matches[0]));
    tcase_add_test(tc, match_exact_self);
    tcase_add_test(tc, match_uses_lengths);
    suite_add_tcase(s, tc);

    tc = tcase_create("words");
    tcase_add_test(tc, strerror_words);
    tcase_add_test(tc, type_and_connack_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(topic_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
