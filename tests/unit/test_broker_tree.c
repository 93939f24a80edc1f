/* Unit tests for the broker's hash table and topic tree (broker/dict.c,
 * broker/topic.c): matching tables, $-topic rules [MQTT-4.7.2-1], overlapping
 * subscriptions, unsubscribe with node pruning, retained store and lookup. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "broker/dict.h"
#include "broker/session.h"
#include "broker/tree.h"

broker *g_broker;

START_TEST(dict_basic)
{
    dict d;
    dict_init(&d);
    char keys[2000][16];
    for (int i = 0; i < 2000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        ck_assert_int_eq(dict_put(&d, keys[i], strlen(keys[i]), (void *)(intptr_t)(i + 1)), 0);
    }
    ck_assert_uint_eq(d.count, 2000);
    for (int i = 0; i < 2000; i++)
        ck_assert_ptr_eq(dict_get(&d, keys[i], strlen(keys[i])), (void *)(intptr_t)(i + 1));
    /* delete every other key; the rest must stay reachable (backward shift) */
    for (int i = 0; i < 2000; i += 2)
        ck_assert_ptr_eq(dict_del(&d, keys[i], strlen(keys[i])), (void *)(intptr_t)(i + 1));
    ck_assert_uint_eq(d.count, 1000);
    for (int i = 0; i < 2000; i++) {
        void *v = dict_get(&d, keys[i], strlen(keys[i]));
        if (i % 2)
            ck_assert_ptr_eq(v, (void *)(intptr_t)(i + 1));
        else
            ck_assert_ptr_null(v);
    }
    ck_assert_ptr_null(dict_del(&d, "nope", 4));
    /* empty key is a valid key (empty topic level) */
    ck_assert_int_eq(dict_put(&d, "", 0, (void *)1), 0);
    ck_assert_ptr_eq(dict_get(&d, "", 0), (void *)1);
    dict_free(&d);
}
END_TEST

static broker B;
static session S[8];

static void setup(void)
{
    memset(&B, 0, sizeof B);
    memset(S, 0, sizeof S);
    B.root = tree_new_root();
    for (int i = 0; i < 8; i++) {
        static char ids[8][16];
        snprintf(ids[i], sizeof ids[i], "s%d", i);
        S[i].client_id = ids[i];
    }
}

/* Subscription bookkeeping is the session's; the tree stores its entries. */
static sub_rec *add_sub(session *s, const char *f, size_t len, uint8_t qos)
{
    sub_rec *r = NULL;
    return session_subscribe(s, B.root, f, len, qos, &r) == BK_OK ? r : NULL;
}

static int unsub(session *s, const char *f, size_t len)
{
    return session_unsubscribe(s, f, len) == BK_OK;
}

static void teardown(void)
{
    for (int i = 0; i < 8; i++)
        session_unsubscribe_all(&S[i]);
    tree_free(B.root);
}

typedef struct {
    int hits[8];
    int maxqos[8];
} hits_t;

static void count_hit(void *ud, sub_entry *e)
{
    hits_t *h = ud;
    int i = (int)(e->s - S);
    h->hits[i]++;
    if (e->qos > h->maxqos[i]) h->maxqos[i] = e->qos;
}

static hits_t match(const char *topic)
{
    hits_t h;
    memset(&h, 0, sizeof h);
    tree_match(B.root, topic, strlen(topic), count_hit, &h);
    return h;
}

static void sub(int s, const char *f, int qos)
{
    ck_assert_ptr_nonnull(add_sub(&S[s], f, strlen(f), (uint8_t)qos));
}

static const struct {
    const char *filter, *topic;
    int match;
} match_table[] = {
    {"a/b/c", "a/b/c", 1},
    {"a/b/c", "a/b", 0},
    {"a/b", "a/b/c", 0},
    {"a/+/c", "a/b/c", 1},
    {"a/+/c", "a/b/d", 0},
    {"a/+", "a/", 1},
    {"+", "a", 1},
    {"+", "a/b", 0},
    {"+/+", "/x", 1},
    {"/+", "/x", 1},
    {"+", "/x", 0},
    {"#", "a/b/c", 1},
    {"#", "/", 1},
    {"a/#", "a", 1},
    {"a/#", "a/b/c", 1},
    {"a/#", "ab", 0},
    {"a//b", "a//b", 1},
    {"a/+/b", "a//b", 1},
    {"#", "$SYS/x", 0},
    {"+/x", "$SYS/x", 0},
    {"$SYS/#", "$SYS/x", 1},
    {"$SYS/+", "$SYS/x", 1},
    {"+/+/#", "a/b", 1},
    {"a/+/#", "a/b/c/d", 1},
    {"sport/tennis/#", "sport/tennis", 1},
    {"x", "X", 0},
};

START_TEST(tree_match_table)
{
    const char *f = match_table[_i].filter, *t = match_table[_i].topic;
    sub(0, f, 1);
    hits_t h = match(t);
    ck_assert_msg(h.hits[0] == match_table[_i].match, "filter '%s' topic '%s': got %d", f, t,
                  h.hits[0]);
}
END_TEST

START_TEST(tree_overlap_and_unsubscribe)
{
    sub(0, "a/#", 0);
    sub(0, "a/+", 2);
    sub(1, "a/b", 1);
    sub(2, "#", 1);
    hits_t h = match("a/b");
    ck_assert_int_eq(h.hits[0], 2); /* two entries: the router dedups */
    ck_assert_int_eq(h.maxqos[0], 2);
    ck_assert_int_eq(h.hits[1], 1);
    ck_assert_int_eq(h.hits[2], 1);
    /* resubscribing replaces the QoS, no duplicate entry [MQTT-3.8.4-3] */
    sub(1, "a/b", 0);
    h = match("a/b");
    ck_assert_int_eq(h.hits[1], 1);
    ck_assert_int_eq(h.maxqos[1], 0);
    ck_assert_int_eq(unsub(&S[0], "a/+", 3), 1);
    ck_assert_int_eq(unsub(&S[0], "a/+", 3), 0);
    h = match("a/b");
    ck_assert_int_eq(h.hits[0], 1);
    session_unsubscribe_all(&S[0]);
    session_unsubscribe_all(&S[1]);
    session_unsubscribe_all(&S[2]);
    /* everything pruned: the root has no children left */
    ck_assert_uint_eq(B.root->children.count, 0);
    ck_assert_ptr_null(B.root->hash);
    ck_assert_ptr_null(B.root->plus);
}
END_TEST

START_TEST(tree_many_filters_one_session)
{
    /* subscribe/unsubscribe by filter is O(1): 20000 filters, remove every other */
    char f[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(f, sizeof f, "f/%d", i);
        ck_assert_ptr_nonnull(add_sub(&S[3], f, strlen(f), 1));
    }
    ck_assert_uint_eq(S[3].nsubs, 20000);
    /* resubscribing is a replace, not a second record */
    ck_assert_ptr_eq(add_sub(&S[3], "f/7", 3, 2), add_sub(&S[3], "f/7", 3, 2));
    ck_assert_uint_eq(S[3].nsubs, 20000);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(f, sizeof f, "f/%d", i);
        ck_assert_int_eq(unsub(&S[3], f, strlen(f)), 1);
    }
    ck_assert_uint_eq(S[3].nsubs, 10000);
    hits_t h = match("f/7");
    ck_assert_int_eq(h.hits[3], 1);
    ck_assert_int_eq(h.maxqos[3], 2);
    h = match("f/8");
    ck_assert_int_eq(h.hits[3], 0);
    int n = 0;
    for (sub_rec *r = S[3].subs; r; r = r->next) {
        if (r->next) ck_assert_ptr_eq(r->next->prev, r);
        n++;
    }
    ck_assert_int_eq(n, 10000);
}
END_TEST

START_TEST(tree_many_subscribers_swap_remove)
{
    /* many sessions on one node; removing from the middle keeps indexes right */
    static session many[300];
    memset(many, 0, sizeof many);
    for (int i = 0; i < 300; i++)
        ck_assert_ptr_nonnull(add_sub(&many[i], "x/y", 3, 0));
    for (int i = 0; i < 300; i += 3)
        unsub(&many[i], "x/y", 3);
    for (int i = 0; i < 300; i++) {
        sub_rec *r = many[i].subs;
        if (i % 3 == 0) {
            ck_assert_ptr_null(r);
        } else {
            ck_assert_ptr_nonnull(r);
            ck_assert_ptr_eq(r->where.node->subs[r->where.index].s, &many[i]);
        }
    }
    for (int i = 0; i < 300; i++)
        session_unsubscribe_all(&many[i]);
    ck_assert_uint_eq(B.root->children.count, 0);
}
END_TEST

static bool collect_retained(void *ud, msg *m)
{
    char *out = ud;
    strcat(out, msg_topic(m));
    strcat(out, ";");
    return true;
}

static bool stop_after_one(void *ud, msg *m)
{
    (void)m;
    ++*(int *)ud;
    return false;
}

static void retain(const char *t, const char *payload)
{
    msg *m = msg_new((const uint8_t *)t, (uint16_t)strlen(t), (const uint8_t *)payload,
                     strlen(payload), 1, true);
    ck_assert_int_eq(tree_retain(B.root, m, &B.retained_count), BK_OK);
    msg_unref(m);
}

static int count_retained(const char *filter)
{
    char out[1024] = "";
    tree_retained_match(B.root, filter, strlen(filter), collect_retained, out);
    int n = 0;
    for (char *p = out; *p; p++)
        n += *p == ';';
    return n;
}

START_TEST(tree_retained_store)
{
    retain("a", "1");
    retain("a/b", "2");
    retain("a/b/c", "3");
    retain("a/x", "4");
    retain("$SYS/v", "5");
    ck_assert_uint_eq(B.retained_count, 5);
    ck_assert_int_eq(count_retained("a"), 1);
    ck_assert_int_eq(count_retained("a/#"), 4); /* includes "a" itself */
    ck_assert_int_eq(count_retained("a/+"), 2);
    ck_assert_int_eq(count_retained("+/b"), 1);
    ck_assert_int_eq(count_retained("#"), 4); /* not $SYS [MQTT-4.7.2-1] */
    ck_assert_int_eq(count_retained("+/v"), 0);
    ck_assert_int_eq(count_retained("$SYS/#"), 1);
    ck_assert_int_eq(count_retained("nope/#"), 0);
    /* a walk stops when the callback says so */
    int seen = 0;
    tree_retained_match(B.root, "#", 1, stop_after_one, &seen);
    ck_assert_int_eq(seen, 1);
    /* replace keeps one; empty payload clears [MQTT-3.3.1-10] */
    retain("a/b", "22");
    ck_assert_uint_eq(B.retained_count, 5);
    retain("a/b", "");
    ck_assert_uint_eq(B.retained_count, 4);
    ck_assert_int_eq(count_retained("a/b"), 0);
    ck_assert_int_eq(count_retained("a/b/c"), 1);
    retain("a/b/c", "");
    retain("a/x", "");
    retain("a", "");
    retain("$SYS/v", "");
    ck_assert_uint_eq(B.retained_count, 0);
    ck_assert_uint_eq(B.root->children.count, 0); /* pruned */
}
END_TEST

static void count_only(void *ud, sub_entry *e)
{
    (void)e;
    ++*(long *)ud;
}

/* Not a pass/fail timing test: the per-PUBLISH matching cost the router
 * pays, a 5-level topic against 10000 subscriptions (literal, '+' and '#'
 * filters that share the first levels). */
START_TEST(tree_measure_match_cost)
{
    char f[64];
    for (int i = 0; i < 10000; i++) {
        switch (i % 4) {
        case 0:
            snprintf(f, sizeof f, "s/%d/x/y/z", i);
            break;
        case 1:
            snprintf(f, sizeof f, "s/+/x/%d/z", i);
            break;
        case 2:
            snprintf(f, sizeof f, "s/%d/#", i);
            break;
        default:
            snprintf(f, sizeof f, "+/%d/x/+/z", i);
            break;
        }
        ck_assert_ptr_nonnull(add_sub(&S[4], f, strlen(f), 0));
    }
    const char *topic = "s/40/x/41/z";
    size_t tl = strlen(topic);
    long hits = 0;
    int n = 200000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++)
        tree_match(B.root, topic, tl, count_only, &hits);
    clock_gettime(CLOCK_MONOTONIC, &b);
    /* "s/40/x/y/z" no, "s/+/x/41/z" yes, "s/42/#" no, "+/43/x/+/z" no;
     * 40 = 0 mod 4 is "s/40/x/y/z": only "s/+/x/41/z" matches */
    ck_assert_int_eq(hits, (long)n);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n;
    printf("COST: tree_match, 5-level topic, 10000 subscriptions: %.0f ns\n", ns);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("broker_tree");
    TCase *tc = tcase_create("dict");
    tcase_add_test(tc, dict_basic);
    suite_add_tcase(s, tc);
    tc = tcase_create("tree");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, tree_match_table, 0, sizeof match_table / sizeof match_table[0]);
    tcase_add_test(tc, tree_overlap_and_unsubscribe);
    tcase_add_test(tc, tree_many_subscribers_swap_remove);
    tcase_add_test(tc, tree_many_filters_one_session);
    tcase_add_test(tc, tree_retained_store);
    tcase_add_test(tc, tree_measure_match_cost);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
