/* Unit tests for broker/fdlimit.c: shedding a pending connection with the
 * reserve descriptor, and what it says when it cannot. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/fdlimit.h"

static int listen_fd;
static struct sockaddr_in addr;

static void setup(void)
{
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(listen_fd, 0);
    addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq(getsockname(listen_fd, (struct sockaddr *)&addr, &len), 0);
    ck_assert_int_eq(listen(listen_fd, 8), 0);
}

static void teardown(void)
{
    close(listen_fd);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    return fd;
}

START_TEST(sheds_a_pending_connection_and_keeps_the_reserve)
{
    int reserve = fdlimit_reserve_open();
    ck_assert_int_ge(reserve, 0);
    int client = dial();
    ck_assert_int_eq(fdlimit_shed_one(&reserve, listen_fd), 1);
    ck_assert_int_ge(reserve, 0); /* reopened */
    char c;
    ck_assert_int_eq(read(client, &c, 1), 0); /* the broker's end closed at once */
    ck_assert_int_eq(fdlimit_shed_one(&reserve, listen_fd), 0); /* none pending */
    ck_assert_int_ge(reserve, 0);
    close(client);
    close(reserve);
}
END_TEST

START_TEST(without_a_reserve_says_so_and_gets_one_back)
{
    int reserve = -1;
    int client = dial();
    ck_assert_int_eq(fdlimit_shed_one(&reserve, listen_fd), -1); /* the caller pauses */
    ck_assert_int_ge(reserve, 0);                                /* for the next time */
    ck_assert_int_eq(fdlimit_shed_one(&reserve, listen_fd), 1);
    close(client);
    close(reserve);
}
END_TEST

START_TEST(raise_reports_the_limit_in_force)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    uint64_t now = fdlimit_raise();
    ck_assert_uint_gt(now, 0);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_uint_eq(now, rl.rlim_cur);
    ck_assert_uint_eq(rl.rlim_cur, rl.rlim_max); /* raised to the hard limit */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fdlimit");
    TCase *tc = tcase_create("fdlimit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sheds_a_pending_connection_and_keeps_the_reserve);
    tcase_add_test(tc, without_a_reserve_says_so_and_gets_one_back);
    tcase_add_test(tc, raise_reports_the_limit_in_force);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
