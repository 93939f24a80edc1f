/*
 * topic_cases.h -- one table of (filter, topic name, expected match) that
 * every topic matcher of the project must answer the same way: mqtt/'s
 * mqtt_topic_matches, an ACL rule granting exactly the filter (acl_check),
 * and the broker's subscription tree (tree_subscribe + tree_match, and the
 * retained lookup tree_retained_match). See test_topic_engine.c.
 *
 * Every filter is a valid filter and every topic a valid topic name
 * (the test checks that too), so each row is about matching alone. Rules
 * cited: [MQTT-4.7.x-y] are the normative statements of MQTT 3.1.1 section
 * 4.7; "4.7.1.2" etc. are the non-normative text and examples there.
 */
#ifndef SECBROKER_TOPIC_CASES_H
#define SECBROKER_TOPIC_CASES_H

#include <stdbool.h>

/* Long and deep strings, built by the preprocessor. */
#define TC_A10 "a/a/a/a/a/a/a/a/a/a/"
#define TC_A50 TC_A10 TC_A10 TC_A10 TC_A10 TC_A10
#define TC_P10 "+/+/+/+/+/+/+/+/+/+/"
#define TC_P50 TC_P10 TC_P10 TC_P10 TC_P10 TC_P10
#define TC_X50 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define TC_X500 TC_X50 TC_X50 TC_X50 TC_X50 TC_X50 TC_X50 TC_X50 TC_X50 TC_X50 TC_X50
#define TC_X1000 TC_X500 TC_X500

struct topic_case {
    const char *filter;
    const char *topic;
    bool match;
};

static const struct topic_case topic_cases[] = {
    /* literal levels: byte-for-byte, no normalization [MQTT-4.7.3-4],
     * case-sensitive (4.7.3) */
    {"a/b/c", "a/b/c", true},
    {"a/b/c", "a/b", false},
    {"a/b", "a/b/c", false},
    {"a/b", "a/bc", false},
    {"ab", "a", false},
    {"x", "X", false},
    {"caf\xc3\xa9", "caf\xc3\xa9", true},
    {"caf\xc3\xa9", "cafe\xcc\x81", false}, /* NFC vs NFD: no normalization [MQTT-4.7.3-4] */
    {"a b", "a b", true},                   /* spaces are ordinary characters (4.7.3) */

    /* empty levels are levels: "/" separates two empty ones (4.7.3) */
    {"/", "/", true},
    {"a//b", "a//b", true},
    {"a//b", "a/b", false},
    {"/a", "a", false},
    {"a/", "a", false},
    {"a/", "a/", true},
    {"//", "//", true},

    /* '+' is exactly one level [MQTT-4.7.1-3], also an empty one (4.7.1.3) */
    {"+", "a", true},
    {"+", "a/b", false},
    {"+", "/", false},
    {"+/+", "/", true},
    {"+/+", "/x", true},
    {"+/+", "a/", true},
    {"/+", "/x", true},
    {"/+", "/", true},
    {"+", "/x", false},
    {"a/+", "a", false},
    {"a/+", "a/", true},
    {"a/+/c", "a/b/c", true},
    {"a/+/c", "a//c", true},
    {"a/+/c", "a/b/d", false},
    {"a/+/b", "a//b", true},
    {"+/+/+", "a/b", false},
    {"sport/tennis/+", "sport/tennis/player1", true}, /* 4.7.1.3 example */
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false}, /* 4.7.1.3: "sport/+" does not match "sport" */
    {"sport/+", "sport/", true}, /* 4.7.1.3: but it does match "sport/" */

    /* '#' is this level and everything below [MQTT-4.7.1-2], the parent
     * included: "sport/tennis/player1/#" matches "sport/tennis/player1"
     * (4.7.1.2) */
    {"#", "a", true},
    {"#", "a/b/c", true},
    {"#", "/", true},
    {"#", "/a", true},
    {"a/#", "a", true},
    {"a/#", "a/", true},
    {"a/#", "a/b/c", true},
    {"a/#", "ab", false},
    {"a/#", "b/a", false},
    {"a/b/#", "a", false},
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/#", "sport", true}, /* 4.7.1.2: "sport/#" also matches "sport" */
    {"/#", "/", true},
    {"/#", "a", false},
    {"+/#", "a", true},
    {"+/+/#", "a/b", true},
    {"+/+/#", "a", false},
    {"a/+/#", "a/b/c/d", true},

    /* '$' topics: a filter starting with a wildcard does not match a topic
     * starting with '$' [MQTT-4.7.2-1] (4.7.2 examples) */
    {"#", "$SYS/broker/uptime", false},
    {"#", "$SYS", false},
    {"#", "$", false},
    {"+", "$SYS", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"+/#", "$SYS/x", false},
    {"$SYS/#", "$SYS/broker/uptime", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$SYS", "$SYS", true},
    {"$", "$", true},
    {"$SYS/#", "$SYSX", false},
    {"a/#", "$a", false},
    /* only the very first character counts */
    {"#", "a/$SYS", true},
    {"+/$x", "a/$x", true},
    {"a/+", "a/$x", true},
    {"+", "x$", true},
    {"/+", "/$x", true}, /* the topic starts with '/', not '$' */

    /* long and deep */
    {TC_X1000, TC_X1000, true},
    {TC_X1000 "/+", TC_X1000 "/" TC_X1000, true},
    {TC_X1000, TC_X1000 "x", false},
    {"+/#", TC_X1000 "/" TC_X1000, true},
    {TC_A50 TC_A50 "end", TC_A50 TC_A50 "end", true},
    {TC_P50 TC_P50 "end", TC_A50 TC_A50 "end", true},
    {TC_P50 TC_P50 "+", TC_A50 TC_A50 "end", true},
    {TC_P50 TC_P50 "#", TC_A50 TC_A50 "end", true},
    {TC_P50 TC_P50 "+/#", TC_A50 TC_A50 "end", true},
    {TC_P50 TC_P50 "+/+", TC_A50 TC_A50 "end", false},
    {TC_P50 TC_P50 "end", TC_A50 TC_A50 "a/end", false},
    {TC_A50 "#", TC_A50 TC_A50 "end", true},
    {TC_A50 "b/#", TC_A50 TC_A50 "end", false},
    {"#", "$" TC_A50 TC_A50 "end", false},
};

#endif
