/*
 * test_acl.c -- ACL files: Mosquitto grammar, matching tables, deny
 * precedence, patterns, subscribe coverage, malformed lines.
 */
#include "acl/acl.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];
static char lastpath[512];

static void setup_dir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_acl.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", tmpdir);
}

static int load_text(const char *text, acl_rules **r, char *err, size_t errlen)
{
    snprintf(lastpath, sizeof lastpath, "%s/acl", tmpdir);
    FILE *f = fopen(lastpath, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return acl_rules_load(lastpath, r, err, errlen);
}

static acl_rules *load_ok(const char *text)
{
    acl_rules *r = NULL;
    char err[512];
    int rc = load_text(text, &r, err, sizeof err);
    ck_assert_msg(rc == ACL_OK, "load failed: %s", err);
    ck_assert_ptr_nonnull(r);
    return r;
}

#define R ACL_READ
#define W ACL_WRITE
#define S ACL_SUBSCRIBE
#define Y 1 /* allowed */
#define N 0 /* denied */

struct row {
    const char *user; /* NULL = anonymous */
    const char *cid;
    const char *topic;
    int access;
    int allowed;
};

static void run_table(const acl_rules *r, const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct row *x = &rows[i];
        int rc = acl_check(r, x->user, x->cid, x->topic, strlen(x->topic), x->access);
        ck_assert_msg(rc == (x->allowed ? ACL_OK : ACL_ERR_DENIED),
                      "row %zu: user=%s cid=%s topic='%s' access=%d: got %d, want %s", i,
                      x->user ? x->user : "(anon)", x->cid ? x->cid : "(null)", x->topic, x->access,
                      rc, x->allowed ? "allowed" : "denied");
    }
}

#define RUN(r, rows) run_table((r), (rows), sizeof(rows) / sizeof((rows)[0]))

/* ---- grammar and basic topic rules ---------------------------------------- */

START_TEST(test_topic_rules_and_sections)
{
    acl_rules *r = load_ok("# anonymous section\n"
                           "topic read public/#\n"
                           "topic   write   anon/in\n"
                           "\n"
                           "user alice\n"
                           "topic readwrite alice/#\n"
                           "topic read sensors/+/temp\n"
                           "topic shared\n" /* no access word = readwrite */
                           "user bob\n"
                           "  topic write bob/out  \n"
                           "\t# indented comment\n"
                           "user alice\n" /* a second section for alice adds to the first */
                           "topic read extra/x\n");
    static const struct row rows[] = {
        /* anonymous */
        {NULL, "c", "public/news", R, Y},
        {NULL, "c", "public", R, Y}, /* '#' also matches the parent level */
        {NULL, "c", "public/news", W, N},
        {NULL, "c", "anon/in", W, Y},
        {NULL, "c", "anon/in", R, N},
        {NULL, "c", "alice/x", R, N},
        {NULL, "c", "shared", R, N},
        /* alice gets only her section, not the anonymous one */
        {"alice", "c", "alice/a/b", R, Y},
        {"alice", "c", "alice/a/b", W, Y},
        {"alice", "c", "alice", W, Y},
        {"alice", "c", "sensors/k/temp", R, Y},
        {"alice", "c", "sensors/k/temp", W, N},
        {"alice", "c", "sensors/k/hum", R, N},
        {"alice", "c", "sensors/k/temp/x", R, N},
        {"alice", "c", "sensors//temp", R, Y}, /* '+' matches an empty level */
        {"alice", "c", "shared", R, Y},
        {"alice", "c", "shared", W, Y},
        {"alice", "c", "shared/x", W, N},
        {"alice", "c", "extra/x", R, Y},
        {"alice", "c", "public/news", R, N},
        {"alice", "c", "bob/out", W, N},
        /* bob */
        {"bob", "c", "bob/out", W, Y},
        {"bob", "c", "bob/out", R, N},
        {"bob", "c", "alice/x", R, N},
        /* a user without a section gets nothing (no patterns here) */
        {"carol", "c", "public/news", R, N},
        {"", "c", "public/news", R, N}, /* empty user name is not anonymous */
        {"Alice", "c", "alice/x", R, N},
    };
    RUN(r, rows);
    acl_rules_free(r);
    acl_rules_free(NULL);
}
END_TEST

START_TEST(test_topic_with_spaces_and_odd_names)
{
    acl_rules *r = load_ok("topic read  my topic/with spaces  \n"
                           "user john doe\n"
                           "topic deny a b\n"
                           "topic readwrite a b/#\n"
                           "user x#y\n"
                           "topic read x/#\n");
    static const struct row rows[] = {
        {NULL, "c", "my topic/with spaces", R, Y},
        {NULL, "c", "my topic/with spaces ", R, N},
        {"john doe", "c", "a b/c", R, Y},
        {"john doe", "c", "a b", R, N}, /* deny wins */
        {"john", "c", "a b/c", R, N},
        /* '#' or '+' in a user name only matters for patterns */
        {"x#y", "c", "x/1", R, Y},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

START_TEST(test_dollar_topics)
{
    acl_rules *r = load_ok("topic read #\n"
                           "topic read +/status\n"
                           "user admin\n"
                           "topic read $SYS/#\n"
                           "topic read #\n");
    static const struct row rows[] = {
        {NULL, "c", "a/b", R, Y},
        {NULL, "c", "$SYS/broker/uptime", R, N}, /* wildcards do not reach $ topics */
        {NULL, "c", "$SYS/status", R, N},
        {NULL, "c", "$SYS/#", S, N},
        {NULL, "c", "#", S, Y},
        {NULL, "c", "+/status", S, Y},
        {"admin", "c", "$SYS/broker/uptime", R, Y},
        {"admin", "c", "$SYS/#", S, Y},
        {"admin", "c", "$SYS", S, Y},
        {"admin", "c", "$other/x", R, N},
        {"admin", "c", "$other/x", S, N},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

/* ---- deny --------------------------------------------------------------- */

START_TEST(test_deny_precedence)
{
    acl_rules *r = load_ok("topic readwrite house/#\n"
                           "topic deny house/secret/#\n"
                           "topic read house/+/lights\n"
                           "user alice\n"
                           "topic readwrite #\n"
                           "topic deny +/private\n"
                           "pattern deny users/%u/locked\n"
                           "pattern readwrite users/%u/#\n");
    static const struct row rows[] = {
        {NULL, "c", "house/kitchen/lights", R, Y},
        {NULL, "c", "house/kitchen", W, Y},
        {NULL, "c", "house/secret", R, N},
        {NULL, "c", "house/secret/door", R, N},
        {NULL, "c", "house/secret/door", W, N},
        {NULL, "c", "house/secretx", R, Y},
        /* a deny written after the grant still wins (order does not matter) */
        {"alice", "c", "x/private", R, N},
        {"alice", "c", "x/private", W, N},
        {"alice", "c", "x/public", W, Y},
        {"alice", "c", "x/private/y", W, Y},
        /* a pattern deny beats the user's own topic grant (stricter than Mosquitto) */
        {"alice", "c", "users/alice/locked", W, N},
        {"alice", "c", "users/alice/open", W, Y},
        {"bob", "c", "users/bob/locked", R, N},
        {"bob", "c", "users/bob/open", R, Y},
        {"bob", "c", "users/alice/open", R, N},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

/* ---- patterns ----------------------------------------------------------- */

START_TEST(test_patterns)
{
    acl_rules *r = load_ok("topic read public/#\n"
                           "user alice\n"
                           "topic read alice-only\n"
                           "pattern readwrite devices/%c/#\n"
                           "pattern write users/%u/out\n"
                           "pattern read both/%u/%c\n"
                           "pattern read lit/dev_%c/x\n"    /* not a whole level: literal */
                           "pattern read nosubst/+/all\n"); /* no %: applies to everybody */
    static const struct row rows[] = {
        /* %c for anonymous and named clients, wherever the pattern line is */
        {NULL, "dev1", "devices/dev1/temp", W, Y},
        {NULL, "dev1", "devices/dev1", R, Y},
        {NULL, "dev1", "devices/dev2/temp", W, N},
        {"alice", "dev1", "devices/dev1/temp", R, Y},
        {"alice", "dev1", "alice-only", R, Y},
        {"zed", "dev9", "devices/dev9/x", W, Y},
        /* %u never matches anonymous clients */
        {NULL, "c", "users//out", W, N},
        {NULL, "%u", "users/%u/out", W, N},
        {"bob", "c", "users/bob/out", W, Y},
        {"bob", "c", "users/bob/out", R, N},
        {"bob", "c", "users/alice/out", W, N},
        {"bob", "k1", "both/bob/k1", R, Y},
        {"bob", "k1", "both/k1/bob", R, N},
        {NULL, "k1", "both//k1", R, N},
        /* substitution only as a whole level */
        {"u", "7", "lit/dev_7/x", R, N},
        {"u", "7", "lit/dev_%c/x", R, Y},
        {NULL, "c", "nosubst/q/all", R, Y},
        {"u", "c", "nosubst/q/all", R, Y},
        /* empty client id never matches %c */
        {NULL, "", "devices//x", W, N},
        {NULL, NULL, "devices//x", W, N},
        {NULL, NULL, "public/x", R, Y},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

/* Usernames or client ids holding '+' or '#' (or '/') never match patterns:
 * substituted, they would turn a one-device rule into a wildcard. */
START_TEST(test_pattern_wildcard_identities)
{
    acl_rules *r = load_ok("topic read public/#\n"
                           "user +\n"
                           "topic read plus-user/x\n"
                           "pattern readwrite devices/%c/#\n"
                           "pattern readwrite users/%u/#\n");
    static const struct row rows[] = {
        {NULL, "+", "devices/+/x", W, N},
        {NULL, "+", "devices/a/x", W, N},
        {NULL, "+", "devices/a/x", R, N},
        {NULL, "#", "devices/a/x", R, N},
        {NULL, "a#", "devices/a#/x", R, N},
        {NULL, "a/b", "devices/a/b/x", W, N},
        {NULL, "+", "devices/+/#", S, N},
        {NULL, "+", "devices/x/#", S, N},
        {"#", "c", "users/#/x", W, N},
        {"#", "c", "users/a/x", W, N},
        {"a+", "c", "users/a+/x", W, N},
        {"a/b", "c", "users/a/b/x", W, N},
        /* their other rules still work */
        {NULL, "+", "public/x", R, Y},
        {"+", "c", "plus-user/x", R, Y},
        {"#", "ok", "devices/ok/x", W, Y}, /* the %c rule is fine for a good client id */
        {"u", "ok", "devices/ok/x", W, Y},
    };
    RUN(r, rows);
    acl_rules_free(r);

    /* a pattern deny that cannot be evaluated for such a client denies everything */
    r = load_ok("topic readwrite #\n"
                "pattern deny devices/%c/config\n");
    static const struct row rows2[] = {
        {NULL, "good", "devices/good/config", W, N},
        {NULL, "good", "devices/good/data", W, Y},
        {NULL, "a/b", "devices/a/b/config", W, N},
        {NULL, "a/b", "anything", W, N},
        {NULL, "+", "anything", R, N},
        {NULL, NULL, "anything", R, Y}, /* no client id: the %c rule does not apply */
    };
    RUN(r, rows2);
    acl_rules_free(r);
}
END_TEST

/* ---- subscribe coverage --------------------------------------------------- */

START_TEST(test_subscribe_coverage)
{
    acl_rules *r = load_ok("topic read sensors/#\n"
                           "topic read rooms/+/temp\n"
                           "topic write cmd/#\n"
                           "topic read a/+/#\n"
                           "topic read exact/topic\n"
                           "pattern read dev/%c/+\n");
    static const struct row rows[] = {
        /* rule sensors/# */
        {NULL, "c", "sensors/#", S, Y},
        {NULL, "c", "sensors/+/temp", S, Y},
        {NULL, "c", "sensors/x/y/z", S, Y},
        {NULL, "c", "sensors", S, Y},
        {NULL, "c", "sensors/+", S, Y},
        {NULL, "c", "#", S, N},
        {NULL, "c", "+/x", S, N},
        {NULL, "c", "+", S, N},
        /* rule rooms/+/temp */
        {NULL, "c", "rooms/+/temp", S, Y},
        {NULL, "c", "rooms/kitchen/temp", S, Y},
        {NULL, "c", "rooms/#", S, N},
        {NULL, "c", "rooms/+/#", S, N},
        {NULL, "c", "rooms/+/+", S, N},
        {NULL, "c", "rooms/+/temp/#", S, N},
        {NULL, "c", "rooms/+", S, N},
        /* write-only grants never allow a subscription */
        {NULL, "c", "cmd/#", S, N},
        {NULL, "c", "cmd/x", S, N},
        /* rule a/+/# */
        {NULL, "c", "a/+", S, Y},
        {NULL, "c", "a/b/#", S, Y},
        {NULL, "c", "a/+/#", S, Y},
        {NULL, "c", "a/#", S, N}, /* a/# also matches "a" */
        {NULL, "c", "a", S, N},
        /* literal rule */
        {NULL, "c", "exact/topic", S, Y},
        {NULL, "c", "exact/+", S, N},
        {NULL, "c", "exact/topic/#", S, N},
        {NULL, "c", "exact", S, N},
        /* pattern */
        {NULL, "d1", "dev/d1/+", S, Y},
        {NULL, "d1", "dev/d1/x", S, Y},
        {NULL, "d1", "dev/+/x", S, N},
        {NULL, "d1", "dev/d2/x", S, N},
        /* invalid filters are refused outright */
        {NULL, "c", "sensors/a#", S, N},
        {NULL, "c", "sensors/#/x", S, N},
        {NULL, "c", "sensors/x+", S, N},
        {NULL, "c", "", S, N},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

/* Deny + subscribe: a subscription is refused when a deny rule covers it
 * entirely; a partial overlap is allowed and the deny is enforced per message
 * by the READ check at delivery (what Mosquitto 2.0 does for every deny). */
START_TEST(test_subscribe_deny)
{
    acl_rules *r = load_ok("topic read sensors/#\n"
                           "topic deny sensors/secret/#\n"
                           "topic deny sensors/+/raw\n");
    static const struct row rows[] = {
        {NULL, "c", "sensors/#", S, Y},
        {NULL, "c", "sensors/+/temp", S, Y},
        {NULL, "c", "sensors/secret/#", S, N},
        {NULL, "c", "sensors/secret/x", S, N},
        {NULL, "c", "sensors/secret", S, N},
        {NULL, "c", "sensors/+/raw", S, N},
        {NULL, "c", "sensors/a/raw", S, N},
        {NULL, "c", "sensors/a/+", S, Y},
        /* delivery after such a subscription still filters */
        {NULL, "c", "sensors/a/temp", R, Y},
        {NULL, "c", "sensors/a/raw", R, N},
        {NULL, "c", "sensors/secret/door", R, N},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

/* %c and %u mean nothing on `topic` lines: there they are plain text. */
START_TEST(test_topic_lines_do_not_substitute)
{
    acl_rules *r = load_ok("topic read lit/%c\n"
                           "user u\n"
                           "topic read lit/%u/x\n");
    static const struct row rows[] = {
        {NULL, "c1", "lit/c1", R, N},
        {NULL, "c1", "lit/%c", R, Y},
        {"u", "c1", "lit/u/x", R, N},
        {"u", "c1", "lit/%u/x", R, Y},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

START_TEST(test_bad_arguments)
{
    acl_rules *r = load_ok("topic readwrite #\n");
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/b", 3, R), ACL_OK);
    ck_assert_int_eq(acl_check(NULL, NULL, "c", "a/b", 3, R), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", NULL, 0, R), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", "", 0, R), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/b", 3, 0), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/b", 3, R | W), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/b", 3, 8), ACL_ERR_DENIED);
    /* wildcards in a topic name (READ/WRITE) are refused */
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/+", 3, W), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/#", 3, R), ACL_ERR_DENIED);
    /* topic_len is honoured: the buffer need not be NUL-terminated */
    acl_rules_free(r);
    r = load_ok("topic read a/b\n");
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/bXYZ", 3, R), ACL_OK);
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/bXYZ", 4, R), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/b/", 4, R), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, NULL, "c", "a/b", 2, R), ACL_ERR_DENIED);
    acl_rules_free(r);
}
END_TEST

START_TEST(test_empty_file_denies_all)
{
    acl_rules *r = load_ok("# nothing granted\n\n");
    ck_assert_int_eq(acl_check(r, NULL, "c", "a", 1, R), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, "u", "c", "a", 1, W), ACL_ERR_DENIED);
    ck_assert_int_eq(acl_check(r, "u", "c", "#", 1, S), ACL_ERR_DENIED);
    acl_rules_free(r);
}
END_TEST

START_TEST(test_crlf_and_blank_lines)
{
    acl_rules *r = load_ok("topic read a/b\r\n\r\n   \r\nuser u\r\ntopic write c/d\r\n");
    static const struct row rows[] = {
        {NULL, "c", "a/b", R, Y},
        {"u", "c", "c/d", W, Y},
        {"u\r", "c", "c/d", W, N},
    };
    RUN(r, rows);
    acl_rules_free(r);
}
END_TEST

/* ---- malformed files -------------------------------------------------------- */

START_TEST(test_malformed)
{
    static const struct {
        const char *text;
        int line;
        const char *reason;
    } cases[] = {
        {"topic\n", 1, "'topic' without a topic"},
        {"# ok\ntopic read a\npattern\n", 3, "'pattern' without a topic"},
        {"topic read\n", 1, "'topic read' without a topic"},
        {"\n\ntopic deny   \n", 3, "'topic deny' without a topic"},
        {"topic reed a/b\n", 1, "unknown access 'reed'"},
        {"topic my topic\n", 1, "unknown access 'my'"},
        {"user\n", 1, "'user' without a user name"},
        {"user   \t \n", 1, "'user' without a user name"},
        {"topics read a\n", 1, "unknown keyword 'topics'"},
        {"allow read a\n", 1, "unknown keyword 'allow'"},
        {"topic read a/b#\n", 1, "invalid topic filter"},
        {"topic read a/#/b\n", 1, "invalid topic filter"},
        {"topic read a+/b\n", 1, "invalid topic filter"},
        {"pattern write +x/%c\n", 1, "invalid topic filter"},
        {"user u\ntopic read ok\n\ntopic write #x\n", 4, "invalid topic filter"},
        /* rule filters go through mqtt_topic_filter_validate [MQTT-1.5.3-1] */
        {"topic read a/\xff\n", 1, "not valid UTF-8"},
        {"topic read caf\xc3\n", 1, "not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        acl_rules *r = (acl_rules *)1;
        char err[512], want[600];
        int rc = load_text(cases[i].text, &r, err, sizeof err);
        ck_assert_msg(rc == ACL_ERR_SYNTAX, "case %zu: rc %d", i, rc);
        ck_assert_ptr_null(r);
        snprintf(want, sizeof want, "%s:%d: ", lastpath, cases[i].line);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "case %zu: err '%s' want '%s'", i, err,
                      want);
        ck_assert_msg(strstr(err, cases[i].reason), "case %zu: err '%s'", i, err);
    }
    acl_rules *r = (acl_rules *)1;
    char err[512];
    ck_assert_int_eq(acl_rules_load("/nonexistent/acl", &r, err, sizeof err), ACL_ERR_FILE);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err, "/nonexistent/acl: ") == err, "%s", err);
}
END_TEST

/* Not a pass/fail timing test: the per-delivery cost the broker pays. */
START_TEST(test_measure_check_cost)
{
    char *text = malloc(400000);
    ck_assert_ptr_nonnull(text);
    size_t off = 0;
    off += (size_t)sprintf(text + off, "topic read public/#\npattern readwrite devices/%%c/#\n");
    for (int u = 0; u < 1000; u++) {
        off += (size_t)sprintf(text + off, "user user%04d\n", u);
        for (int k = 0; k < 10; k++)
            off += (size_t)sprintf(text + off, "topic read area%d/+/room%d/#\n", k, u);
    }
    acl_rules *r = load_ok(text);
    free(text);
    const char *topic = "area9/building/room500/temp";
    size_t tl = strlen(topic);
    struct timespec a, b;
    int n = 200000;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int ok = 0; /* ck_assert in the loop would time Check's IPC, not us */
    for (int i = 0; i < n; i++)
        ok += acl_check(r, "user0500", "dev", topic, tl, ACL_READ) == ACL_OK;
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_int_eq(ok, n);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n;
    printf("COST: acl_check READ, 1000 users x 10 rules, last rule matches: %.0f ns\n", ns);
    acl_rules_free(r);
}
END_TEST

static Suite *acl_suite(void)
{
    Suite *s = suite_create("acl");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup_dir, teardown_dir);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_topic_rules_and_sections);
    tcase_add_test(tc, test_topic_with_spaces_and_odd_names);
    tcase_add_test(tc, test_dollar_topics);
    tcase_add_test(tc, test_deny_precedence);
    tcase_add_test(tc, test_patterns);
    tcase_add_test(tc, test_pattern_wildcard_identities);
    tcase_add_test(tc, test_subscribe_coverage);
    tcase_add_test(tc, test_subscribe_deny);
    tcase_add_test(tc, test_topic_lines_do_not_substitute);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_empty_file_denies_all);
    tcase_add_test(tc, test_crlf_and_blank_lines);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_measure_check_cost);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(acl_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
