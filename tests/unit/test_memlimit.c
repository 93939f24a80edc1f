/* Unit tests for broker/memlimit.c: what is counted (messages, I/O
 * buffers) comes back to zero when freed; the thresholds (7/8 of the limit
 * for QoS 0 drops, the limit itself for a PUBLISH); episodes and counters. */
#include <check.h>
#include <stdlib.h>

#include "broker/bbuf.h"
#include "broker/memlimit.h"
#include "broker/msg.h"

static void setup(void)
{
    g_memlimit = (memlimit){0};
}

START_TEST(messages_and_buffers_are_counted_and_given_back)
{
    msg *m = msg_new((const uint8_t *)"a/b", 3, (const uint8_t *)"12345", 5, 1, false);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(g_memlimit.used, msg_size(3, 5));
    msg_ref(m);
    msg_unref(m);
    ck_assert_uint_eq(g_memlimit.used, msg_size(3, 5)); /* still referenced */
    msg_unref(m);
    ck_assert_uint_eq(g_memlimit.used, 0);
    bbuf b = {0};
    ck_assert_int_eq(bbuf_reserve(&b, 1000), BK_OK);
    ck_assert_uint_eq(g_memlimit.used, b.cap);
    ck_assert_int_eq(bbuf_reserve(&b, 100000), BK_OK); /* grows: only the growth is added */
    ck_assert_uint_eq(g_memlimit.used, b.cap);
    bbuf_free(&b);
    ck_assert_uint_eq(g_memlimit.used, 0);
}
END_TEST

START_TEST(thresholds)
{
    ck_assert(!memlimit_over(1ULL << 40)); /* no limit */
    ck_assert(!memlimit_high());
    g_memlimit.limit = 800;
    g_memlimit.used = 700;
    ck_assert(!memlimit_high()); /* 7/8 of 800 */
    ck_assert(!memlimit_over(100));
    ck_assert(memlimit_over(101));
    g_memlimit.used = 701;
    ck_assert(memlimit_high());
}
END_TEST

START_TEST(episode_counts)
{
    g_memlimit.limit = 800;
    g_memlimit.used = 790;
    memlimit_drop_qos0(10.0);
    memlimit_drop_qos0(10.5);
    memlimit_refuse(11.0);
    ck_assert(g_memlimit.episode_since == 10.0);
    ck_assert_uint_eq(g_memlimit.episode_dropped, 2);
    ck_assert_uint_eq(g_memlimit.episode_refused, 1);
    memlimit_tick(12.0); /* still high: the episode goes on */
    ck_assert(g_memlimit.episode_since == 10.0);
    g_memlimit.used = 650; /* under 7/8, over 3/4: hovering, the same episode */
    memlimit_tick(12.5);
    ck_assert(g_memlimit.episode_since == 10.0);
    g_memlimit.used = 100;
    memlimit_tick(13.0);
    ck_assert(g_memlimit.episode_since == 0);
    ck_assert_uint_eq(g_memlimit.episode_dropped, 0);
    ck_assert_uint_eq(g_memlimit.dropped_qos0, 2); /* the totals stay ($SYS) */
    ck_assert_uint_eq(g_memlimit.refused, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memlimit");
    TCase *tc = tcase_create("memlimit");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, messages_and_buffers_are_counted_and_given_back);
    tcase_add_test(tc, thresholds);
    tcase_add_test(tc, episode_counts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
