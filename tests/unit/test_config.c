/* Unit tests for the configuration parser's per_listener_settings
 * (broker/config_perlistener.c): which sec_cfg each security key lands on
 * (the broker's, a listener block's, the default listener's of `port`),
 * what config_sec and clientid_refusal then use, and the errors with
 * FILE:LINE (per_listener_settings true after a security key, a key for the
 * default listener without `port`, an unreadable file in a listener block). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/config.h"

static char dir[] = "/tmp/secbroker-test-config-XXXXXX";
static char conf_path[128], pw_a[128], pw_b[128];
static char err[2048];

static void setup(void)
{
    strcpy(dir, "/tmp/secbroker-test-config-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(conf_path, sizeof conf_path, "%s/broker.conf", dir);
    snprintf(pw_a, sizeof pw_a, "%s/pw_a", dir);
    snprintf(pw_b, sizeof pw_b, "%s/pw_b", dir);
    FILE *f = fopen(pw_a, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    f = fopen(pw_b, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
}

static void teardown(void)
{
    unlink(conf_path);
    unlink(pw_a);
    unlink(pw_b);
    rmdir(dir);
}

/* Write text (a printf format taking pw_a and pw_b, in that order, as %1$s and
 * %2$s) as the configuration and load it. */
static config *load(const char *fmt)
{
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "log_dest none\n");
    fprintf(f, fmt, pw_a, pw_b);
    fclose(f);
    err[0] = 0;
    return config_load(conf_path, err, sizeof err);
}

START_TEST(false_keys_after_a_listener_are_the_brokers)
{
    config *c = load("listener 1884\nlistener 1885\nallow_anonymous true\npassword_file %1$s\n"
                     "allow_zero_length_clientid false\n");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert(!c->per_listener_settings);
    ck_assert(c->sec.allow_anonymous);
    ck_assert_str_eq(c->sec.password_file, pw_a);
    ck_assert(!c->sec.allow_zero_length_clientid);
    for (size_t i = 0; i < c->nlisteners; i++) {
        ck_assert(!c->listeners[i].sec.allow_anonymous);
        ck_assert_ptr_null(c->listeners[i].sec.password_file);
        ck_assert_ptr_eq(config_sec(c, &c->listeners[i]), &c->sec);
    }
    ck_assert_ptr_nonnull(clientid_refusal(c, &c->listeners[0], "", 0));
    config_free(c);
}
END_TEST

START_TEST(true_keys_land_on_the_listener_they_follow)
{
    config *c = load("per_listener_settings true\n"
                     "listener 1884\nallow_anonymous true\npassword_file %1$s\n"
                     "listener 1885\npassword_file %2$s\nacl_file %2$s\n"
                     "allow_zero_length_clientid false\nauto_id_prefix b-\n"
                     "listener 1886\n");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_int_eq(c->nlisteners, 3);
    const listener_cfg *a = &c->listeners[0], *b = &c->listeners[1], *d = &c->listeners[2];
    ck_assert(a->sec.allow_anonymous);
    ck_assert_str_eq(a->sec.password_file, pw_a);
    ck_assert_ptr_null(a->sec.acl_file);
    ck_assert(!b->sec.allow_anonymous);
    ck_assert_str_eq(b->sec.password_file, pw_b);
    ck_assert_str_eq(b->sec.acl_file, pw_b);
    /* a listener that sets nothing has the defaults, not its neighbour's */
    ck_assert(!d->sec.allow_anonymous);
    ck_assert_ptr_null(d->sec.password_file);
    ck_assert(d->sec.allow_zero_length_clientid);
    /* nothing went to the broker's set */
    ck_assert(!c->sec.allow_anonymous);
    ck_assert_ptr_null(c->sec.password_file);
    ck_assert_ptr_eq(config_sec(c, b), &b->sec);
    ck_assert_ptr_eq(config_sec(c, NULL), &c->sec);
    ck_assert_str_eq(config_auto_id_prefix(c, b), "b-");
    ck_assert_str_eq(config_auto_id_prefix(c, a), "auto-"); /* the default, not b's */
    ck_assert_ptr_null(clientid_refusal(c, a, "", 0));
    ck_assert_ptr_nonnull(clientid_refusal(c, b, "", 0));
    config_free(c);
}
END_TEST

START_TEST(true_keys_before_any_listener_are_the_default_listeners)
{
    config *c = load("per_listener_settings true\nport 1883\nallow_anonymous true\n"
                     "password_file %1$s\nlistener 1884\npassword_file %2$s\n");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_int_eq(c->nlisteners, 2);
    ck_assert_int_eq(c->listeners[0].port, 1883); /* the default listener comes first */
    ck_assert(c->listeners[0].sec.allow_anonymous);
    ck_assert_str_eq(c->listeners[0].sec.password_file, pw_a);
    ck_assert(!c->listeners[1].sec.allow_anonymous);
    ck_assert_str_eq(c->listeners[1].sec.password_file, pw_b);
    config_free(c);
}
END_TEST

START_TEST(true_default_values_before_a_listener_need_no_port)
{
    /* Mosquitto starts this file (there is no default listener to configure) */
    config *c = load("per_listener_settings true\nallow_anonymous false\n"
                     "allow_zero_length_clientid true\nlistener 1884\nallow_anonymous true\n");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_int_eq(c->nlisteners, 1);
    ck_assert(c->listeners[0].sec.allow_anonymous);
    config_free(c);
}
END_TEST

START_TEST(true_key_for_the_default_listener_without_port_is_an_error)
{
    config *c = load("per_listener_settings true\nallow_anonymous true\nlistener 1884\n");
    ck_assert_ptr_null(c);
    char want[300];
    snprintf(want, sizeof want,
             "%s:3: allow_anonymous before any 'listener' line configures the default "
             "listener (per_listener_settings is true)",
             conf_path);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
}
END_TEST

START_TEST(true_after_a_security_key_is_an_error)
{
    config *c = load("listener 1884\npassword_file %1$s\nper_listener_settings true\n");
    ck_assert_ptr_null(c);
    char want[300];
    snprintf(want, sizeof want, "%s:4: per_listener_settings true must come before", conf_path);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
    /* false there is harmless: it is the default */
    c = load("listener 1884\npassword_file %1$s\nper_listener_settings false\n");
    ck_assert_msg(c != NULL, "%s", err);
    config_free(c);
}
END_TEST

START_TEST(no_listener_is_local_and_anonymous_by_default)
{
    /* Mosquitto: without a listener, 1883 on loopback where anonymous
     * clients are allowed unless allow_anonymous says otherwise */
    config *c = load("");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_int_eq(c->nlisteners, 1);
    ck_assert_int_eq(c->listeners[0].port, 1883);
    ck_assert_str_eq(c->listeners[0].address, "127.0.0.1");
    ck_assert(config_sec(c, &c->listeners[0])->allow_anonymous);
    /* -p adds a listener on every address: no longer local only */
    ck_assert_int_eq(config_add_listener(c, 1884), 0);
    ck_assert(!config_sec(c, &c->listeners[0])->allow_anonymous);
    ck_assert(!config_sec(c, &c->listeners[1])->allow_anonymous);
    config_free(c);
    c = load("allow_anonymous false\n");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert(!config_sec(c, &c->listeners[0])->allow_anonymous);
    config_free(c);
    c = load("listener 1885 127.0.0.1\n"); /* a listener: the default (false) stands */
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert(!config_sec(c, &c->listeners[0])->allow_anonymous);
    config_free(c);
}
END_TEST

START_TEST(auto_id_prefix_checked)
{
    config *c = load("auto_id_prefix lab-\n");
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(config_auto_id_prefix(c, &c->listeners[0]), "lab-");
    config_free(c);
    c = load("auto_id_prefix a+b\n");
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "broker.conf:2: auto_id_prefix: 'a+b' may not contain") != NULL, "%s",
                  err);
    c = load("auto_id_prefix "
             "12345678901234567890123456789012345678901234567890123456789012345\n");
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "auto_id_prefix: 65 bytes, at most 64") != NULL, "%s", err);
}
END_TEST

START_TEST(true_unreadable_file_in_a_listener_block_names_the_line)
{
    config *c = load("per_listener_settings true\nlistener 1884\nacl_file %1$s.missing\n");
    ck_assert_ptr_null(c);
    char want[300];
    snprintf(want, sizeof want, "%s:4: acl_file: cannot read %s.missing", conf_path, pw_a);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("per_listener_settings");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, false_keys_after_a_listener_are_the_brokers);
    tcase_add_test(tc, true_keys_land_on_the_listener_they_follow);
    tcase_add_test(tc, true_keys_before_any_listener_are_the_default_listeners);
    tcase_add_test(tc, true_default_values_before_a_listener_need_no_port);
    tcase_add_test(tc, true_key_for_the_default_listener_without_port_is_an_error);
    tcase_add_test(tc, true_after_a_security_key_is_an_error);
    tcase_add_test(tc, true_unreadable_file_in_a_listener_block_names_the_line);
    tcase_add_test(tc, auto_id_prefix_checked);
    tcase_add_test(tc, no_listener_is_local_and_anonymous_by_default);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
