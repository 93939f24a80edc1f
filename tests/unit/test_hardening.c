/*
 * test_hardening.c -- the broker's defences against hostile input that can
 * be tested without sockets: keyed hash tables (SipHash-2-4 with a secret
 * per table), log escaping and log rate limiting.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/dict.h"
#include "broker/log.h"
#include "broker/protocol.h"

#include <unistd.h>

/* ---- SipHash-2-4 ---------------------------------------------------------- */

/* The reference vectors of the SipHash paper's implementation: key bytes
 * 00..0f, message i = bytes 00..i-1, output as little-endian bytes. */
static const uint8_t SIP_VECTORS[16][8] = {
    {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72},
    {0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74},
    {0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d},
    {0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85},
    {0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf},
    {0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18},
    {0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb},
    {0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab},
    {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93},
    {0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e},
    {0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a},
    {0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4},
    {0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75},
    {0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14},
    {0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7},
    {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1},
};

START_TEST(test_siphash_reference_vectors)
{
    const uint64_t key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    uint8_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint8_t)i;
    for (int n = 0; n < 16; n++) {
        uint64_t want = 0;
        for (int k = 0; k < 8; k++)
            want |= (uint64_t)SIP_VECTORS[n][k] << (8 * k);
        ck_assert_msg(dict_siphash(key, m, (size_t)n) == want, "length %d", n);
    }
    /* the paper's worked example: 15 bytes -> a129ca6149be45e5 */
    ck_assert(dict_siphash(key, m, 15) == 0xa129ca6149be45e5ULL);
}
END_TEST

/* ---- per-table keys and adversarial keys ----------------------------------- */

/* Longest distance of an entry from its home slot: the probe cost a lookup
 * of the worst key pays. */
static uint32_t max_displacement(const dict *d)
{
    uint32_t worst = 0, mask = d->cap - 1;
    for (uint32_t i = 0; i < d->cap; i++)
        if (d->slots[i].key) {
            uint32_t dist = (i - (d->slots[i].hash & mask)) & mask;
            if (dist > worst) worst = dist;
        }
    return worst;
}

#define ADV_KEYS 300
#define ADV_MASK 4095u

START_TEST(test_dict_tables_have_own_keys)
{
    dict a, b;
    dict_init(&a);
    dict_init(&b);
    ck_assert_int_eq(dict_put(&a, "x", 1, &a), 0);
    ck_assert_int_eq(dict_put(&b, "x", 1, &b), 0);
    /* 128-bit secrets from getrandom: equal only by a bug */
    ck_assert(a.sip[0] != b.sip[0] || a.sip[1] != b.sip[1]);
    ck_assert(a.sip[0] != 0 || a.sip[1] != 0);
    ck_assert_ptr_eq(dict_get(&a, "x", 1), &a);
    dict_free(&a);
    dict_free(&b);
}
END_TEST

/* An attacker who knows table A's hash (here: computes it with A's key)
 * makes ADV_KEYS keys that share one home slot in A. In A they form one
 * long probe run; in table B, with its own secret, they spread out. With a
 * process-wide seed (the old FNV-1a) they collided in B as well. */
START_TEST(test_dict_adversarial_keys)
{
    dict a, b;
    dict_init(&a);
    dict_init(&b);
    ck_assert_int_eq(dict_put(&a, "seed", 4, &a), 0);
    ck_assert_int_eq(dict_put(&b, "seed", 4, &b), 0);
    static char keys[ADV_KEYS][24];
    int found = 0;
    for (unsigned long i = 0; found < ADV_KEYS; i++) {
        char k[24];
        int n = snprintf(k, sizeof k, "f/%lu", i);
        if ((dict_siphash(a.sip, k, (size_t)n) & ADV_MASK) == 0) memcpy(keys[found++], k, 24);
    }
    for (int i = 0; i < ADV_KEYS; i++) {
        ck_assert_int_eq(dict_put(&a, keys[i], strlen(keys[i]), keys[i]), 0);
        ck_assert_int_eq(dict_put(&b, keys[i], strlen(keys[i]), keys[i]), 0);
    }
    ck_assert_uint_eq(a.count, ADV_KEYS + 1);
    ck_assert_uint_eq(b.count, ADV_KEYS + 1);
    /* the attack works on the table whose key it knows ... */
    ck_assert_uint_ge(max_displacement(&a), ADV_KEYS / 2);
    /* ... and not on another: a random table of 301 keys in 512 slots has
     * short runs (a bound far above what chance gives, far below the attack) */
    uint32_t worst_b = max_displacement(&b);
    ck_assert_msg(worst_b < 40, "table B probe run %u", worst_b);
    for (int i = 0; i < ADV_KEYS; i++) {
        ck_assert_ptr_eq(dict_get(&b, keys[i], strlen(keys[i])), keys[i]);
        ck_assert_ptr_eq(dict_del(&b, keys[i], strlen(keys[i])), keys[i]);
    }
    ck_assert_uint_eq(b.count, 1);
    dict_free(&a);
    dict_free(&b);
}
END_TEST

/* ---- log escaping ------------------------------------------------------------ */

START_TEST(test_log_escape_controls)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain/topic-1", 13, "plain/topic-1"},
        {"a\nb\rc", 5, "a\\x0ab\\x0dc"},
        {"x\x1b[31my", 7, "x\\x1b[31my"},
        {"del\x7f", 4, "del\\x7f"},
        {"back\\slash", 10, "back\\\\slash"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
         "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"bad\xff", 4, "bad\\xff"},
        {"over\xc0\xaf", 6, "over\\xc0\\xaf"},          /* overlong '/' */
        {"sur\xed\xa0\x80", 6, "sur\\xed\\xa0\\x80"},   /* a surrogate */
        {"cut\xe2\x82", 5, "cut\\xe2\\x82"},            /* truncated sequence */
        {"c1\xc2\x9b", 4, "c1\\xc2\\x9b"},              /* C1 CSI */
        {"ls\xe2\x80\xa8", 5, "ls\\xe2\\x80\\xa8"},     /* U+2028 line separator */
        {"bidi\xe2\x80\xae", 7, "bidi\\xe2\\x80\\xae"}, /* U+202E override */
        {"nul\0x", 5, "nul\\x00x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(strcmp(log_escape(cases[i].in, cases[i].len), cases[i].out) == 0,
                      "case %zu: '%s'", i, log_escape(cases[i].in, cases[i].len));
    ck_assert_str_eq(log_esc(NULL), "(null)");
    ck_assert_str_eq(log_esc("ok"), "ok");
}
END_TEST

START_TEST(test_log_escape_caps_length)
{
    char big[1000];
    memset(big, 'x', sizeof big);
    const char *e = log_escape(big, sizeof big);
    ck_assert_uint_eq(strspn(e, "x"), LOG_FIELD_MAX);
    ck_assert_str_eq(e + LOG_FIELD_MAX, "...(1000 bytes)");
    /* all escaped: four output bytes per input byte, still capped */
    memset(big, '\n', sizeof big);
    e = log_escape(big, sizeof big);
    ck_assert_uint_le(strlen(e), 4 * LOG_FIELD_MAX + 20);
    ck_assert_ptr_nonnull(strstr(e, "...(1000 bytes)"));
    /* the ring: LOG_ESCAPE_SLOTS results stay valid together */
    const char *r[LOG_ESCAPE_SLOTS];
    char in[LOG_ESCAPE_SLOTS][16];
    for (int i = 0; i < LOG_ESCAPE_SLOTS; i++) {
        snprintf(in[i], sizeof in[i], "id%d", i);
        r[i] = log_esc(in[i]);
    }
    for (int i = 0; i < LOG_ESCAPE_SLOTS; i++)
        ck_assert_str_eq(r[i], in[i]);
}
END_TEST

static char logdir[64], logpath[128];

static void log_setup(void)
{
    snprintf(logdir, sizeof logdir, "/tmp/test_hardening.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(logdir));
    snprintf(logpath, sizeof logpath, "%s/log", logdir);
    ck_assert_int_eq(log_configure(LOGD_FILE, LL_ALL, logpath), 0);
}

static void log_teardown(void)
{
    log_close();
    unlink(logpath);
    rmdir(logdir);
}

/* The lines of the log file so far. */
static int log_lines(char *text, size_t cap)
{
    FILE *f = fopen(logpath, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(text, 1, cap - 1, f);
    fclose(f);
    text[n] = '\0';
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    return lines;
}

/* Whatever a caller forgets to escape, log_msg never starts a new line. */
START_TEST(test_log_msg_one_line)
{
    log_msg(LL_NOTICE, "login as '%s' failed", "x\n2026-01-01T00:00:00.000Z notice: forged");
    char text[4096];
    ck_assert_int_eq(log_lines(text, sizeof text), 1);
    ck_assert_ptr_nonnull(strstr(text, "x\\x0a2026-01-01"));
}
END_TEST

START_TEST(test_log_limited_counts)
{
    log_limit_interval(3600);
    unsigned long long before = log_suppressed_total();
    const int B = LOG_LIMIT_BURST;
    for (int i = 0; i < 500; i++)
        log_limited_key(LL_NOTICE, "10.0.0.1:4242", "refused attempt %d from %s", i, "10.0.0.1");
    /* another address and another kind each have their own allowance */
    log_limited_key(LL_NOTICE, "10.0.0.2:1", "refused attempt %d from %s", 0, "10.0.0.2");
    log_limited(LL_NOTICE, "another kind %d", 1);
    char text[16384];
    ck_assert_int_eq(log_lines(text, sizeof text), B + 2);
    ck_assert_ptr_nonnull(strstr(text, "refused attempt 0 from 10.0.0.1"));
    ck_assert_ptr_null(strstr(text, "refused attempt 5 from"));
    ck_assert_ptr_nonnull(strstr(text, "refused attempt 0 from 10.0.0.2"));
    ck_assert_uint_eq(log_suppressed_total() - before, 500 - B);
    /* the window ends: one line says how many were left out and which */
    log_limit_interval(0);
    log_flush_limited();
    ck_assert_int_eq(log_lines(text, sizeof text), B + 3);
    ck_assert_ptr_nonnull(strstr(text, "495 more like this"));
    ck_assert_ptr_nonnull(strstr(text, "the last: refused attempt 499 from 10.0.0.1"));
    log_flush_limited(); /* nothing new: nothing written */
    ck_assert_int_eq(log_lines(text, sizeof text), B + 3);
    log_limited_key(LL_NOTICE, "10.0.0.1:4243", "refused attempt %d from %s", 500, "10.0.0.1");
    ck_assert_int_eq(log_lines(text, sizeof text), B + 4);
    log_limit_interval(LOG_LIMIT_INTERVAL);
}
END_TEST

/* ---- failed-login slow-down (auth.c), on a broker with a hand-set clock ---- */

typedef struct {
    broker b;
    listener_cfg lcfg;
    listener l;
} auth_rig;

static auth_rig *rig_new(void)
{
    auth_rig *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    dict_init(&r->b.auth_fails);
    r->l.cfg = &r->lcfg;
    r->b.now = 1000.0;
    return r;
}

/* A protocol client (what auth.c sees) on a transport connection from peer,
 * logged in as user (NULL = anonymous). */
static client *rig_conn(auth_rig *r, const char *peer, const char *user)
{
    client *c = calloc(1, sizeof *c);
    conn *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(t);
    t->listener = &r->l;
    snprintf(t->peer, sizeof t->peer, "%s", peer);
    c->b = &r->b;
    c->conn = t;
    c->username = user ? strdup(user) : NULL;
    return c;
}

static void rig_conn_free(client *c)
{
    free(c->conn);
    free(c->username);
    free(c);
}

/* auth_attempt_delay for c's user name (NULL = anonymous). */
static double attempt(auth_rig *r, client *c, bool after)
{
    mqtt_str u = {(const uint8_t *)c->username, (uint16_t)(c->username ? strlen(c->username) : 0)};
    return auth_attempt_delay(&r->b, c, c->username ? &u : NULL, after);
}

static void rig_free(auth_rig *r)
{
    auth_free(&r->b);
    free(r);
}

/* A check at most every step per key, one held attempt per key, refused
 * attempts never push the schedule, other keys untouched. */
START_TEST(test_auth_slowdown_per_key)
{
    auth_rig *r = rig_new();
    client *a1 = rig_conn(r, "10.0.0.1:1000", "alice");
    ck_assert(attempt(r, a1, false) == 0); /* no failures yet */
    auth_record_failure(&r->b, a1);        /* failure 1: step 0.5 s */
    auth_record_failure(&r->b, a1);        /* failure 2: step 1 s */
    auth_record_failure(&r->b, a1);        /* failure 3: step 2 s */
    /* the same key: held until the next check (2 s after the last failure) */
    client *a2 = rig_conn(r, "10.0.0.1:1001", "alice");
    double d2 = attempt(r, a2, false);
    ck_assert(d2 > 1.99 && d2 <= 2.0);
    /* a flood of newer attempts: each takes the turn, none moves the check */
    client *a3 = NULL;
    for (int i = 0; i < 1000; i++) {
        if (a3) rig_conn_free(a3);
        a3 = rig_conn(r, "10.0.0.1:1002", "alice");
        ck_assert(attempt(r, a3, false) == d2);
    }
    /* bob, anonymous and a certificate login at the same address: not held */
    client *bob = rig_conn(r, "10.0.0.1:1003", "bob");
    client *anon = rig_conn(r, "10.0.0.1:1004", NULL);
    ck_assert(attempt(r, bob, false) == 0);
    ck_assert(attempt(r, anon, false) == 0);
    r->lcfg.use_identity_as_username = true;
    client *cert = rig_conn(r, "10.0.0.1:1005", "alice");
    ck_assert(attempt(r, cert, false) == 0);
    r->lcfg.use_identity_as_username = false;
    /* alice from another address: her own key */
    client *other = rig_conn(r, "10.0.0.2:1000", "alice");
    ck_assert(attempt(r, other, false) == 0);
    /* the hold ends: the replaced attempt is refused unchecked, the newest checked */
    r->b.now += d2;
    ck_assert(attempt(r, a2, true) < 0);
    ck_assert(attempt(r, a3, true) == 0);
    /* that check used the turn: the next attempt waits one step (2 s) again */
    client *a4 = rig_conn(r, "10.0.0.1:1006", "alice");
    double d4 = attempt(r, a4, false);
    ck_assert(d4 > 1.99 && d4 <= 2.0);
    rig_conn_free(a1), rig_conn_free(a2), rig_conn_free(a3), rig_conn_free(a4);
    rig_conn_free(bob), rig_conn_free(anon), rig_conn_free(cert), rig_conn_free(other);
    rig_free(r);
}
END_TEST

/* The step doubles to 8 s and stops there, however long the attack. */
START_TEST(test_auth_slowdown_bounded)
{
    auth_rig *r = rig_new();
    client *c = rig_conn(r, "[2001:db8::1]:4000", "alice");
    for (int i = 0; i < 200; i++)
        auth_record_failure(&r->b, c);
    double d = attempt(r, c, false);
    ck_assert(d > 7.99 && d <= 8.0);
    r->b.now += 8.0;
    ck_assert(attempt(r, c, true) == 0);
    /* failures are forgotten after 10 minutes without one */
    r->b.now += 601;
    ck_assert(attempt(r, c, false) == 0);
    rig_conn_free(c);
    rig_free(r);
}
END_TEST

/* Past 8 throttled user names per address, further names share one key. */
START_TEST(test_auth_slowdown_address_ceiling)
{
    auth_rig *r = rig_new();
    char name[32];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "user%d", i);
        client *c = rig_conn(r, "10.0.0.9:1", name);
        auth_record_failure(&r->b, c);
        ck_assert(attempt(r, c, false) > 0); /* its own key is throttled */
        rig_conn_free(c);
    }
    /* a 9th name: not throttled yet (no failure), then fails once */
    client *n9 = rig_conn(r, "10.0.0.9:2", "user8");
    ck_assert(attempt(r, n9, false) == 0);
    auth_record_failure(&r->b, n9);
    /* every other new name from this address now waits on the shared key */
    client *n10 = rig_conn(r, "10.0.0.9:3", "never-failed");
    ck_assert(attempt(r, n10, false) > 0);
    /* another address is not affected */
    client *elsewhere = rig_conn(r, "10.0.0.10:3", "never-failed");
    ck_assert(attempt(r, elsewhere, false) == 0);
    rig_conn_free(n9), rig_conn_free(n10), rig_conn_free(elsewhere);
    rig_free(r);
}
END_TEST

/* IPv6 addresses count by their /64 (one host usually has all of it). */
START_TEST(test_auth_slowdown_ipv6_prefix)
{
    auth_rig *r = rig_new();
    client *a = rig_conn(r, "[2001:db8:0:7::1]:4000", "alice");
    auth_record_failure(&r->b, a);
    client *same64 = rig_conn(r, "[2001:db8:0:7:ffff:1:2:3]:4001", "alice");
    ck_assert(attempt(r, same64, false) > 0);
    client *other64 = rig_conn(r, "[2001:db8:0:8::1]:4002", "alice");
    ck_assert(attempt(r, other64, false) == 0);
    rig_conn_free(a), rig_conn_free(same64), rig_conn_free(other64);
    rig_free(r);
}
END_TEST

/* The table is bounded: past its size, failures from new addresses are not
 * recorded (memory stays bounded); known keys keep their schedule. */
START_TEST(test_auth_slowdown_table_bounded)
{
    auth_rig *r = rig_new();
    client *first = rig_conn(r, "10.200.0.1:1", "alice");
    auth_record_failure(&r->b, first);
    char peer[32];
    for (int i = 0; i < 40000; i++) {
        snprintf(peer, sizeof peer, "10.%d.%d.%d:9", 1 + i / 65536, (i / 256) % 256, i % 256);
        client *c = rig_conn(r, peer, "x");
        auth_record_failure(&r->b, c);
        rig_conn_free(c);
    }
    ck_assert_uint_le(r->b.auth_fails.count, 65536);
    client *again = rig_conn(r, "10.200.0.1:2", "alice");
    ck_assert(attempt(r, again, false) > 0);
    rig_conn_free(first), rig_conn_free(again);
    rig_free(r);
}
END_TEST

static Suite *hardening_suite(void)
{
    Suite *s = suite_create("hardening");
    TCase *tc = tcase_create("dict");
    tcase_add_test(tc, test_siphash_reference_vectors);
    tcase_add_test(tc, test_dict_tables_have_own_keys);
    tcase_add_test(tc, test_dict_adversarial_keys);
    suite_add_tcase(s, tc);
    tc = tcase_create("log");
    tcase_add_test(tc, test_log_escape_controls);
    tcase_add_test(tc, test_log_escape_caps_length);
    tcase_add_checked_fixture(tc, log_setup, log_teardown);
    tcase_add_test(tc, test_log_msg_one_line);
    tcase_add_test(tc, test_log_limited_counts);
    suite_add_tcase(s, tc);
    tc = tcase_create("auth");
    tcase_add_test(tc, test_auth_slowdown_per_key);
    tcase_add_test(tc, test_auth_slowdown_bounded);
    tcase_add_test(tc, test_auth_slowdown_address_ceiling);
    tcase_add_test(tc, test_auth_slowdown_ipv6_prefix);
    tcase_add_test(tc, test_auth_slowdown_table_bounded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hardening_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
