/*
 * test_client_format.c -- secsub -F (clients/core/format.c) and its JSON
 * printer (clients/core/json.c), without a broker: tables of format strings
 * and payloads with the bytes they must print. The expected JSON layouts are
 * those Debian's mosquitto_sub 2.0.11 printed for the same payloads
 * (tests/integration/test_client_flags.py compares the two programs live).
 */
#include "clients/core/client.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run f over a memory stream; returns the bytes written (malloc'd). */
static char *capture_json(const char *text, bool pretty, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(out);
    *rc = cli_json_value(out, (const uint8_t *)text, strlen(text), pretty, 0);
    fclose(out);
    return buf;
}

static const struct {
    const char *in, *compact, *pretty;
} JSON_OK[] = {
    {"{}", "{}", "{\n}"},
    {"[]", "[]", "[]"},
    {" [1, 2.5 ,\"s\"] ", "[1,2.5,\"s\"]", "[1, 2.5, \"s\"]"},
    {"{\"a\":{\"b\":[{\"c\":null}]}}", "{\"a\":{\"b\":[{\"c\":null}]}}",
     "{\n\t\"a\":\t{\n\t\t\"b\":\t[{\n\t\t\t\t\"c\":\tnull\n\t\t\t}]\n\t}\n}"},
    {"{\"e\":{}}", "{\"e\":{}}", "{\n\t\"e\":\t{\n\t}\n}"},
    {"1e3", "1000", "1000"},
    {"-0.5", "-0.5", "-0.5"},
    {"0.1", "0.1", "0.1"},
    {"12345678901234567890", "1.2345678901234567e+19", "1.2345678901234567e+19"},
    {"2147483648", "2147483648", "2147483648"},
    {"true", "true", "true"},
    {"\"\\u00e9\\n\\ud83d\\ude00\\/\"", "\"\xc3\xa9\\n\xf0\x9f\x98\x80/\"",
     "\"\xc3\xa9\\n\xf0\x9f\x98\x80/\""},
    {"\"tab\there\"", "\"tab\\there\"", "\"tab\\there\""},
};

static const char *const JSON_BAD[] = {
    "",           "not json", "[1,]",    "{\"a\":1,}",  "{\"a\" 1}",   "[1",
    "{\"a\":1}x", "\"open",   "\"\\x\"", "\"\\ud83d\"", "\"\\ude00\"", "nul",
    "[1 2]",      "-",        "{1:2}",   "\"\\u12\"",   "truex",
};

START_TEST(test_json_valid)
{
    for (size_t i = 0; i < sizeof JSON_OK / sizeof JSON_OK[0]; i++) {
        int rc;
        char *got = capture_json(JSON_OK[i].in, false, &rc);
        ck_assert_msg(rc == 0, "%s: rejected", JSON_OK[i].in);
        ck_assert_str_eq(got, JSON_OK[i].compact);
        free(got);
        got = capture_json(JSON_OK[i].in, true, &rc);
        ck_assert_int_eq(rc, 0);
        ck_assert_str_eq(got, JSON_OK[i].pretty);
        free(got);
    }
}
END_TEST

START_TEST(test_json_invalid_prints_nothing)
{
    for (size_t i = 0; i < sizeof JSON_BAD / sizeof JSON_BAD[0]; i++) {
        int rc;
        char *got = capture_json(JSON_BAD[i], false, &rc);
        ck_assert_msg(rc == -1, "'%s' accepted", JSON_BAD[i]);
        ck_assert_msg(got[0] == '\0', "'%s' printed '%s'", JSON_BAD[i], got);
        free(got);
    }
}
END_TEST

START_TEST(test_json_nesting_limit)
{
    size_t n = 5000;
    char *deep = malloc(2 * n + 1);
    ck_assert_ptr_nonnull(deep);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    int rc;
    char *got = capture_json(deep, false, &rc);
    ck_assert_int_eq(rc, -1); /* too deep: refused, not a stack overflow */
    free(got);
    deep[999] = '\0';
    memset(deep + 999, ']', 999);
    deep[1998] = '\0';
    got = capture_json(deep, false, &rc);
    ck_assert_int_eq(rc, 0);
    free(got);
    free(deep);
}
END_TEST

static char *capture_format(const char *fmt, const mqtt_publish *m, bool pretty, int *rc)
{
    char *buf = NULL, err[256] = "";
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(out);
    *rc = cli_format_print(out, fmt, m, NULL, pretty, err, sizeof err);
    fclose(out);
    return buf;
}

static mqtt_publish message(const char *topic, const char *payload, int qos, bool retain,
                            uint16_t id)
{
    mqtt_publish m;
    memset(&m, 0, sizeof m);
    m.topic.ptr = (const uint8_t *)topic;
    m.topic.len = (uint16_t)strlen(topic);
    m.payload = (const uint8_t *)payload;
    m.payload_len = strlen(payload);
    m.qos = (uint8_t)qos;
    m.retain = retain;
    m.packet_id = id;
    return m;
}

START_TEST(test_format_fields)
{
    static const struct {
        const char *fmt, *want;
    } T[] = {
        {"%t %p", "a/b hi"},
        {"%q%r%m%l", "1172"},
        {"%x|%X", "6869|6869"},
        {"[%5t|%-5t|%.1t|%05l|%-3l|%4m|%03m]", "[  a/b|a/b  |a|00002|2  |   7|007]"},
        {"%%|@@|\\t|\\n|\\\\|\\e", "%|@|\t|\n|\\|\033"},
        {"%A%C%D%E%F%P%R%S.", "."},
        {"%6x|%-6X|", "  6869|6869  |"},
    };
    mqtt_publish m = message("a/b", "hi", 1, true, 7);
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        int rc;
        char *got = capture_format(T[i].fmt, &m, false, &rc);
        ck_assert_int_eq(rc, 0);
        ck_assert_msg(strcmp(got, T[i].want) == 0, "%s: got '%s'", T[i].fmt, got);
        free(got);
    }
}
END_TEST

START_TEST(test_format_json)
{
    mqtt_publish m = message("t", "{\"k\":[1]}", 0, false, 0);
    int rc;
    char *got = capture_format("%J", &m, false, &rc);
    ck_assert_int_eq(rc, 0);
    /* "tst" first: ..."Z+hhmm" (mosquitto_sub 2.0.11's layout), then the rest */
    ck_assert_msg(strncmp(got, "{\"tst\":\"", 8) == 0 && strstr(got, "Z") != NULL, "%s", got);
    ck_assert_str_eq(strstr(got, ",\"topic\""),
                     ",\"topic\":\"t\",\"qos\":0,\"retain\":0,\"payloadlen\":9,"
                     "\"payload\":{\"k\":[1]}}");
    free(got);
    m = message("t", "x\"y", 2, true, 9);
    got = capture_format("%j", &m, true, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(strstr(got, ",\n\t\"topic\""),
                     ",\n\t\"topic\":\t\"t\",\n\t\"qos\":\t2,\n\t\"retain\":\t1,\n\t"
                     "\"payloadlen\":\t3,\n\t\"mid\":\t9,\n\t\"payload\":\t\"x\\\"y\"\n}");
    free(got);
    m = message("t", "not json", 0, false, 0);
    got = capture_format("before %J after", &m, false, &rc);
    ck_assert_int_eq(rc, 1);
    ck_assert_str_eq(got, "before ");
    free(got);
}
END_TEST

START_TEST(test_format_check)
{
    static const char *const bad[] = {"%i", "%", "x%-5", "@", "\\", "\\q", "%y"};
    static const char *const good[] = {"%t",     "%-10.10t %I", "@Y-@m-@d @N @@",
                                       "\\0\\v", "%J%j",        "plain text"};
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ck_assert_msg(cli_format_check(bad[i], err, sizeof err) == CLI_ERR_ARG, "%s", bad[i]);
        ck_assert_msg(strncmp(err, "-F: ", 4) == 0, "%s: '%s'", bad[i], err);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(cli_format_check(good[i], err, sizeof err) == CLI_OK, "%s: %s", good[i], err);
}
END_TEST

static Suite *format_suite(void)
{
    Suite *s = suite_create("client_format");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_json_valid);
    tcase_add_test(tc, test_json_invalid_prints_nothing);
    tcase_add_test(tc, test_json_nesting_limit);
    tcase_add_test(tc, test_format_fields);
    tcase_add_test(tc, test_format_json);
    tcase_add_test(tc, test_format_check);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(format_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
