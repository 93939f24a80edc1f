/*
 * test_topic_engine.c -- the project's topic matchers must agree.
 *
 * One table (topic_cases.h) and a few thousand seeded random filter/topic
 * pairs run through every place that decides whether a filter matches a
 * topic: mqtt/'s mqtt_topic_matches, the ACL (a rule granting exactly that
 * filter, checked for READ on the topic), the broker's subscription tree
 * (tree_subscribe + tree_match) and its retained store (tree_retain +
 * tree_retained_match). The table says what the answer is; the random
 * pairs require the four to give the same one. A third part checks that
 * mqtt_filter_covers (used by the ACL for SUBSCRIBE) is sound: a filter it
 * says covers another matches every topic the other matches.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl/acl.h"
#include "broker/broker.h"
#include "broker/session.h"
#include "broker/tree.h"
#include "mqtt/mqtt.h"
#include "tests/unit/topic_cases.h"

broker *g_broker;

static broker B;
static session S;
static char tmpdir[64];

static void setup(void)
{
    memset(&B, 0, sizeof B);
    memset(&S, 0, sizeof S);
    S.client_id = "engine";
    B.root = tree_new_root();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_topic_engine.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    session_unsubscribe_all(&S);
    tree_free(B.root);
    char path[128];
    snprintf(path, sizeof path, "%s/acl", tmpdir);
    unlink(path);
    rmdir(tmpdir);
}

/* ---- the four matchers ------------------------------------------------------ */

static bool by_mqtt(const char *f, const char *t)
{
    return mqtt_topic_matches((const uint8_t *)f, strlen(f), (const uint8_t *)t, strlen(t));
}

/* An ACL whose only rule grants reading exactly filter f (anonymous). */
static acl_rules *acl_for(const char *f)
{
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/acl", tmpdir);
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "topic read %s\n", f);
    ck_assert_int_eq(fclose(fp), 0);
    acl_rules *r = NULL;
    int rc = acl_rules_load(path, &r, err, sizeof err);
    ck_assert_msg(rc == ACL_OK, "ACL rule '%s': %s", f, err);
    return r;
}

static bool by_acl(const acl_rules *r, const char *t)
{
    return acl_check(r, NULL, "client", t, strlen(t), ACL_READ) == ACL_OK;
}

static void count_entry(void *ud, sub_entry *e)
{
    if (e->s == &S) ++*(int *)ud;
}

/* f must be subscribed (by S) already. */
static bool by_tree(const char *t)
{
    int hits = 0;
    tree_match(B.root, t, strlen(t), count_entry, &hits);
    ck_assert_int_le(hits, 1);
    return hits == 1;
}

static bool count_retained(void *ud, msg *m)
{
    (void)m;
    ++*(int *)ud;
    return true;
}

/* Store t as the only retained message, look it up with f, clear it. */
static bool by_retained(const char *f, const char *t)
{
    msg *m = msg_new((const uint8_t *)t, (uint16_t)strlen(t), (const uint8_t *)"v", 1, 0, true);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(tree_retain(B.root, m, &B.retained_count), BK_OK);
    msg_unref(m);
    int hits = 0;
    tree_retained_match(B.root, f, strlen(f), count_retained, &hits);
    m = msg_new((const uint8_t *)t, (uint16_t)strlen(t), (const uint8_t *)"", 0, 0, true);
    ck_assert_int_eq(tree_retain(B.root, m, &B.retained_count), BK_OK);
    msg_unref(m);
    ck_assert_uint_eq(B.retained_count, 0);
    return hits == 1;
}

static void subscribe(const char *f)
{
    sub_rec *r = NULL;
    ck_assert_int_eq(session_subscribe(&S, B.root, f, strlen(f), 1, &r), BK_OK);
    ck_assert_ptr_nonnull(r);
}

static void unsubscribe(const char *f)
{
    ck_assert_int_eq(session_unsubscribe(&S, f, strlen(f)), BK_OK);
}

/* ---- the table ---------------------------------------------------------------- */

START_TEST(table_row)
{
    const struct topic_case *c = &topic_cases[_i];
    const char *f = c->filter, *t = c->topic;
    ck_assert_int_eq(mqtt_topic_filter_validate((const uint8_t *)f, strlen(f)), MQTT_OK);
    ck_assert_int_eq(mqtt_topic_name_validate((const uint8_t *)t, strlen(t)), MQTT_OK);

    ck_assert_msg(by_mqtt(f, t) == c->match, "mqtt: row %d '%.60s' vs '%.60s'", _i, f, t);
    acl_rules *r = acl_for(f);
    ck_assert_msg(by_acl(r, t) == c->match, "acl: row %d '%.60s' vs '%.60s'", _i, f, t);
    acl_rules_free(r);
    subscribe(f);
    ck_assert_msg(by_tree(t) == c->match, "tree: row %d '%.60s' vs '%.60s'", _i, f, t);
    unsubscribe(f);
    ck_assert_msg(by_retained(f, t) == c->match, "retained: row %d '%.60s' vs '%.60s'", _i, f, t);
    /* nothing left behind in the tree */
    ck_assert_uint_eq(B.root->children.count, 0);
}
END_TEST

/* ---- random pairs -------------------------------------------------------------- */

static uint64_t rng_state;

static unsigned rnd(unsigned n)
{
    /* xorshift64*: reproducible across platforms for one seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (unsigned)((rng_state * 2685821657736338717ULL) >> 33) % n;
}

/* A few short level texts, so random filters and topics often match. */
static const char *const texts[] = {"a", "b", "", "$SYS", "x$"};
#define NTEXTS (sizeof texts / sizeof texts[0])

static void random_topic(char *out, size_t cap)
{
    do {
        out[0] = '\0';
        unsigned n = 1 + rnd(4);
        for (unsigned i = 0; i < n; i++) {
            const char *lv = texts[rnd(NTEXTS)];
            /* '$' texts mostly first, where they matter */
            if (i > 0 && lv[0] == '$' && rnd(2)) lv = "a";
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "/" : "", lv);
        }
    } while (out[0] == '\0'); /* a topic name is not empty [MQTT-4.7.3-1] */
}

static void random_filter(char *out, size_t cap)
{
    out[0] = '\0';
    unsigned n = 1 + rnd(4);
    for (unsigned i = 0; i < n; i++) {
        unsigned k = rnd(10);
        const char *lv = k < 4 ? "+" : texts[rnd(NTEXTS)];
        if (i == n - 1 && k >= 8) lv = "#"; /* '#' only last [MQTT-4.7.1-2] */
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "/" : "", lv);
    }
    if (out[0] == '\0') snprintf(out, cap, "+"); /* a filter is not empty */
}

#define RANDOM_FILTERS 400
#define TOPICS_PER_FILTER 10

START_TEST(random_pairs_agree)
{
    rng_state = 0x5ecb20cc11u; /* fixed seed: a failure names its pair */
    char f[128], t[128];
    unsigned matched = 0, total = 0;
    for (int i = 0; i < RANDOM_FILTERS; i++) {
        random_filter(f, sizeof f);
        ck_assert_int_eq(mqtt_topic_filter_validate((const uint8_t *)f, strlen(f)), MQTT_OK);
        acl_rules *r = acl_for(f);
        subscribe(f);
        for (int j = 0; j < TOPICS_PER_FILTER; j++) {
            random_topic(t, sizeof t);
            bool m = by_mqtt(f, t);
            ck_assert_msg(by_acl(r, t) == m, "acl vs mqtt (%d): '%s' vs '%s'", m, f, t);
            ck_assert_msg(by_tree(t) == m, "tree vs mqtt (%d): '%s' vs '%s'", m, f, t);
            ck_assert_msg(by_retained(f, t) == m, "retained vs mqtt (%d): '%s' vs '%s'", m, f, t);
            matched += m;
            total++;
        }
        unsubscribe(f);
        acl_rules_free(r);
    }
    /* the generator must exercise both answers, or the test proves little */
    ck_assert_uint_gt(matched, total / 20);
    ck_assert_uint_lt(matched, total - total / 20);
    printf("topic engine: %u random pairs, %u matches, all four matchers agree\n", total, matched);
}
END_TEST

/* ---- filter covers filter -------------------------------------------------------- */

static bool covers(const char *outer, const char *inner)
{
    return mqtt_filter_covers((const uint8_t *)outer, strlen(outer), (const uint8_t *)inner,
                              strlen(inner));
}

START_TEST(covers_is_sound)
{
    rng_state = 0xc0ffee;
    char outer[128], inner[128], t[128];
    unsigned yes = 0;
    for (int i = 0; i < 3000; i++) {
        random_filter(outer, sizeof outer);
        random_filter(inner, sizeof inner);
        bool c = covers(outer, inner);
        /* the ACL's SUBSCRIBE check asks the same question */
        acl_rules *r = acl_for(outer);
        ck_assert_msg(
            (acl_check(r, NULL, "client", inner, strlen(inner), ACL_SUBSCRIBE) == ACL_OK) == c,
            "acl subscribe vs covers (%d): '%s' over '%s'", c, outer, inner);
        acl_rules_free(r);
        if (!c) continue;
        yes++;
        for (int j = 0; j < 20; j++) {
            random_topic(t, sizeof t);
            if (by_mqtt(inner, t))
                ck_assert_msg(by_mqtt(outer, t), "'%s' covers '%s' but misses '%s'", outer, inner,
                              t);
        }
    }
    ck_assert_uint_gt(yes, 100);
}
END_TEST

START_TEST(covers_table)
{
    static const struct {
        const char *outer, *inner;
        bool covers;
    } rows[] = {
        {"a/#", "a/#", true},       {"a/#", "a", true},
        {"a/#", "a/+/c", true},     {"a/+", "a/b", true},
        {"a/+", "a/+", true},       {"a/+", "a/#", false},
        {"a/b", "a/+", false},      {"#", "+/x", true},
        {"#", "$SYS/#", false},     {"+/x", "$SYS/x", false},
        {"$SYS/#", "$SYS/x", true}, {"a/+/#", "a/#", false}, /* "a/#" also matches "a" */
        {"+/#", "#", false},                                 /* conservative: level by level only */
        {"a", "", false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        ck_assert_msg(covers(rows[i].outer, rows[i].inner) == rows[i].covers, "'%s' over '%s'",
                      rows[i].outer, rows[i].inner);
}
END_TEST

/* ---- the level cursor ------------------------------------------------------------- */

START_TEST(levels_cursor)
{
    static const struct {
        const char *s;
        const char *levels; /* the levels joined with '|' */
    } rows[] = {
        {"", ""}, {"a", "a"}, {"/", "|"}, {"a/b", "a|b"}, {"//", "||"}, {"a//b/", "a||b|"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char got[64] = "";
        mqtt_levels it;
        const uint8_t *s = (const uint8_t *)rows[i].s;
        bool first = true;
        for (mqtt_levels_init(&it, s, strlen(rows[i].s)); !it.done; mqtt_levels_next(&it)) {
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", first ? "" : "|",
                     (int)it.len, (const char *)it.ptr);
            first = false;
        }
        ck_assert_str_eq(got, rows[i].levels);
        mqtt_levels_next(&it); /* stays done */
        ck_assert(it.done);
    }
    ck_assert_int_eq(mqtt_level_kind((const uint8_t *)"+", 1), MQTT_LEVEL_PLUS);
    ck_assert_int_eq(mqtt_level_kind((const uint8_t *)"#", 1), MQTT_LEVEL_HASH);
    ck_assert_int_eq(mqtt_level_kind((const uint8_t *)"++", 2), MQTT_LEVEL_TEXT);
    ck_assert_int_eq(mqtt_level_kind((const uint8_t *)"", 0), MQTT_LEVEL_TEXT);
    ck_assert(mqtt_topic_is_dollar((const uint8_t *)"$SYS", 4));
    ck_assert(!mqtt_topic_is_dollar((const uint8_t *)"a/$SYS", 6));
    ck_assert(!mqtt_topic_is_dollar((const uint8_t *)"$", 0));
    /* depth: 3 levels */
    ck_assert(!mqtt_topic_deeper_than((const uint8_t *)"a/b/c", 5, 3));
    ck_assert(mqtt_topic_deeper_than((const uint8_t *)"a/b/c/", 6, 3));
    ck_assert(mqtt_topic_deeper_than((const uint8_t *)"///", 3, 3));
    ck_assert(!mqtt_topic_deeper_than((const uint8_t *)"//", 2, 3));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topic_engine");
    TCase *tc = tcase_create("agree");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, table_row, 0, (int)(sizeof topic_cases / sizeof topic_cases[0]));
    tcase_add_test(tc, random_pairs_agree);
    tcase_add_test(tc, covers_is_sound);
    tcase_add_test(tc, covers_table);
    tcase_add_test(tc, levels_cursor);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
