/*
 * test_pw.c -- password files: Mosquitto formats, errors, cache, hash making.
 *
 * Known-answer vectors were computed independently with Python's hashlib
 * (pbkdf2_hmac('sha512', ...) and sha512(password + salt)); lines made by
 * Debian's mosquitto_passwd are generated at test time when it is installed.
 */
#include "acl/acl.h"

#include <check.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MOSQ_PASSWD "/usr/bin/mosquitto_passwd"

/* $6$, salt "0123456789ab", password "hunter2" */
static const char KAT6[] =
    "$6$MDEyMzQ1Njc4OWFi$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
    "zUOFhM8vCQKmMb8nXrQTl7q2T8alUw==";
/* $6$, salt bytes 1..12, password "pässwörd" (UTF-8) */
static const char KAT6U[] =
    "$6$AQIDBAUGBwgJCgsM$UwQYfZGXuNpNtoME5WcuzQ8gc7yCNlAH6UNcnxPJXkWrBAX0a4UWuSdI"
    "gIoiJm7TYq93wmJROlKuM7EhRVKNaA==";
/* $7$, salt "saltsaltsalt", password "correct horse", 101 and 1000 iterations */
static const char KAT7[] =
    "$7$101$c2FsdHNhbHRzYWx0$VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANf"
    "sQBvu9AI3078np6CYOjHbzfz/elQBb7oxkA==";
static const char KAT7K[] =
    "$7$1000$c2FsdHNhbHRzYWx0$oSKce4SGrSKsJabCWZfpe2MmVOPtl4paOjoD1njLdjo3le9sM"
    "Bwq0q7ivJFcrXSTMQ0HjlOn/J48J9WZe4uR0g==";
/* $7$, 101 iterations, empty password */
static const char KAT7E[] =
    "$7$101$c2FsdHNhbHRzYWx0$YGccB43UySWesQJ6JtSy5YCRyaItXPvSxOnYziYKc8edCSw0kU8"
    "ujzY1AkaMSPvVpx1gAHnXKFT0bI1Txql1SA==";

#define P(s) (const uint8_t *)(s), strlen(s)

static char tmpdir[256];

static void setup_dir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pw.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", tmpdir);
}

/* Write text to tmpdir/name; return the path (static buffer per call site use). */
static const char *write_file(const char *name, const char *text)
{
    static char path[2][512];
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof path[which], "%s/%s", tmpdir, name);
    FILE *f = fopen(path[which], "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path[which];
}

static bool have_mosquitto_passwd(void)
{
    if (access(MOSQ_PASSWD, X_OK) == 0) return true;
    printf("SKIP: %s not installed; mosquitto_passwd interop not tested\n", MOSQ_PASSWD);
    return false;
}

/* ---- known answers ------------------------------------------------------ */

START_TEST(test_verify_kat6)
{
    ck_assert_int_eq(pw_hash_verify(KAT6, P("hunter2")), ACL_OK);
    ck_assert_int_eq(pw_hash_verify(KAT6, P("hunter3")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_hash_verify(KAT6, P("")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_hash_verify(KAT6U, P("p\xc3\xa4sswp\xc3\xb6rd")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_hash_verify(KAT6U, P("p\xc3\xa4ssw\xc3\xb6rd")), ACL_OK);
}
END_TEST

START_TEST(test_verify_kat7)
{
    ck_assert_int_eq(pw_hash_verify(KAT7, P("correct horse")), ACL_OK);
    ck_assert_int_eq(pw_hash_verify(KAT7, P("correct horse ")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_hash_verify(KAT7K, P("correct horse")), ACL_OK);
    ck_assert_int_eq(pw_hash_verify(KAT7K, P("Correct horse")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_hash_verify(KAT7E, P("")), ACL_OK);
    ck_assert_int_eq(pw_hash_verify(KAT7E, P("x")), ACL_ERR_BAD_PASSWORD);
}
END_TEST

START_TEST(test_verify_malformed)
{
    static const char *bad[] = {
        "",
        "plaintext",
        "$5$abc$def",
        "$7$",
        "$7$101",
        "$7$101$c2FsdHNhbHRzYWx0",
        "$7$0$c2FsdHNhbHRzYWx0$"
        "VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANfsQBvu9AI3078np6CYOjHbzfz/"
        "elQBb7oxkA==",
        "$7$x1$c2FsdHNhbHRzYWx0$"
        "VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANfsQBvu9AI3078np6CYOjHbzf"
        "z/elQBb7oxkA==",
        "$7$99999999999$c2FsdHNhbHRzYWx0$"
        "VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANfsQBvu9AI3078np6"
        "CYOjHbzfz/elQBb7oxkA==",
        "$7$101$$VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANfsQBvu9AI3078np6CYOjHbzfz/"
        "elQBb7oxkA==",
        "$7$101$c2F*dHNhbHRzYWx0$"
        "VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANfsQBvu9AI3078np6CYOjHbz"
        "fz/elQBb7oxkA==",
        "$7$101$c2FsdHNhbHRzYWx0$"
        "VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANfsQBvu9AI3078np6CYOjH",
        "$6$MDEyMzQ1Njc4OWFi$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
        "zUOFhM8vCQKmMb8nXrQT"
        "l7q2T8alUw==$extra",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(pw_hash_verify(bad[i], P("correct horse")) == ACL_ERR_SYNTAX, "case %zu", i);
}
END_TEST

/* ---- files -------------------------------------------------------------- */

START_TEST(test_load_kat_file)
{
    char text[2048];
    snprintf(text, sizeof text,
             "# users\n"
             "\n"
             "   \t\n"
             "alice:%s\n"
             "  bob : %s  \r\n"
             "carol:%s\n"
             "# trailing comment\n",
             KAT7, KAT6, KAT7E);
    const char *path = write_file("pw", text);
    pw_file *pf = NULL;
    char err[256];
    ck_assert_int_eq(pw_file_load(path, &pf, err, sizeof err), ACL_OK);
    ck_assert_uint_eq(pw_file_count(pf), 3);
    ck_assert_int_eq(pw_file_check(pf, "alice", P("correct horse")), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf, "alice", P("hunter2")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf, "bob", P("hunter2")), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf, "bob", P("correct horse")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf, "carol", P("")), ACL_OK);
    /* no password at all never matches, even an empty-password entry */
    ck_assert_int_eq(pw_file_check(pf, "carol", NULL, 0), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf, "mallory", P("hunter2")), ACL_ERR_UNKNOWN_USER);
    ck_assert_int_eq(pw_file_check(pf, "Alice", P("correct horse")), ACL_ERR_UNKNOWN_USER);
    ck_assert_int_eq(pw_file_check(pf, "", P("x")), ACL_ERR_UNKNOWN_USER);
    ck_assert_int_eq(pw_file_check(pf, NULL, P("x")), ACL_ERR_UNKNOWN_USER);
    /* a password with a NUL byte inside is compared as bytes */
    ck_assert_int_eq(pw_file_check(pf, "bob", (const uint8_t *)"hunter2\0x", 9),
                     ACL_ERR_BAD_PASSWORD);
    pw_file_free(pf);
    pw_file_free(NULL);
}
END_TEST

START_TEST(test_load_empty_and_missing)
{
    pw_file *pf = NULL;
    char err[256];
    const char *path = write_file("empty", "# nothing\n\n");
    ck_assert_int_eq(pw_file_load(path, &pf, err, sizeof err), ACL_OK);
    ck_assert_uint_eq(pw_file_count(pf), 0);
    ck_assert_int_eq(pw_file_check(pf, "alice", P("x")), ACL_ERR_UNKNOWN_USER);
    pw_file_free(pf);

    char missing[512];
    snprintf(missing, sizeof missing, "%s/does-not-exist", tmpdir);
    pf = (pw_file *)1;
    ck_assert_int_eq(pw_file_load(missing, &pf, err, sizeof err), ACL_ERR_FILE);
    ck_assert_ptr_null(pf);
    ck_assert_msg(strstr(err, "does-not-exist") && strstr(err, "No such file"), "err: %s", err);
}
END_TEST

/* Each malformed file fails with "PATH:LINE: reason" and never echoes the
 * secret part of the line. */
START_TEST(test_load_malformed)
{
    static const struct {
        const char *text;
        int line;
        const char *reason;
        const char *secret; /* must not appear in err */
    } cases[] = {
        {"alice\n", 1, "no ':'", NULL},
        {"# c\n\nalice:plaintextsecret\n", 3, "not hashed", "plaintextsecret"},
        {":$6$MDEyMzQ1Njc4OWFi$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
         "zUOFhM8vCQKmMb8nXrQTl7q2T8alUw==\n",
         1, "empty user", "Kgl3Axu"},
        {"bob:\n", 1, "missing password hash", NULL},
        {"bob:$5$abc$def\n", 1, "unsupported hash", "abc$def"},
        {"bob:$7$101$c2FsdHNhbHRzYWx0$VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGr\n", 1, "64 bytes",
         "VT6wIBY"},
        {"bob:$7$abc$c2FsdHNhbHRzYWx0$"
         "VT6wIBYrw6org2c5gu2idDv9QYP0fPEO2YGaoGrYDSKJeYTUANfsQBvu9AI3078np6CY"
         "OjHbzfz/elQBb7oxkA==\n",
         1, "iteration", "VT6wIBY"},
        {"bob:$6$!!!!$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
         "zUOFhM8vCQKmMb8nXrQTl7q2T8alUw==\n",
         1, "salt", "Kgl3Axu"},
        {"bob:$6$MDEyMzQ1Njc4OWFi$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
         "zUOFhM8vCQKmMb8nXrQTl7q2T8alUw==:x\n",
         1, "more than one ':'", "Kgl3Axu"},
        {"bob:$6$MDEyMzQ1Njc4OWFi$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
         "zUOFhM8vCQKmMb8nXrQTl7q2T8alUw==\n"
         "carol:$6$MDEyMzQ1Njc4OWFi$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
         "zUOFhM8vCQKmMb8nXrQTl7q2T8alUw==\n"
         "bob:$6$MDEyMzQ1Njc4OWFi$Kgl3AxuVCetFEGDDZOAh44c3ssh9wvPft10MPC9Tjr1rwsIDmYUEICH/"
         "zUOFhM8vCQKmMb8nXrQTl7q2T8alUw==\n",
         3, "duplicate user 'bob' (first defined on line 1)", "Kgl3Axu"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_file("bad", cases[i].text);
        pw_file *pf = (pw_file *)1;
        char err[512], want[600];
        int rc = pw_file_load(path, &pf, err, sizeof err);
        ck_assert_msg(rc == ACL_ERR_SYNTAX, "case %zu: rc %d", i, rc);
        ck_assert_ptr_null(pf);
        snprintf(want, sizeof want, "%s:%d: ", path, cases[i].line);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "case %zu: err '%s' want '%s'", i, err,
                      want);
        ck_assert_msg(strstr(err, cases[i].reason), "case %zu: err '%s'", i, err);
        if (cases[i].secret)
            ck_assert_msg(!strstr(err, cases[i].secret), "case %zu leaks: %s", i, err);
    }
}
END_TEST

START_TEST(test_load_nul_byte)
{
    char path[512];
    snprintf(path, sizeof path, "%s/nul", tmpdir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite("a\0b:$6$x$y\n", 1, 11, f);
    fclose(f);
    pw_file *pf = NULL;
    char err[512];
    ck_assert_int_eq(pw_file_load(path, &pf, err, sizeof err), ACL_ERR_SYNTAX);
    ck_assert_msg(strstr(err, ":1: NUL"), "%s", err);
}
END_TEST

/* Defect 11: a $7$ line with an absurd iteration count (10 M blocked the
 * event loop for seconds per login) is refused at load, naming file, line
 * and the cap; the cap itself still loads. */
START_TEST(test_load_iteration_cap)
{
    char h[256], text[700], err[512], want[600];
    ck_assert_int_eq(pw_hash_make(P("pw"), PW_MAX_ITERATIONS, h, sizeof h), ACL_OK);
    ck_assert_int_eq(pw_hash_make(P("pw"), PW_MAX_ITERATIONS + 1, h + 128, 128), ACL_ERR_ARG);
    snprintf(text, sizeof text, "# c\nok:%s\n", h);
    const char *path = write_file("cap", text);
    pw_file *pf = NULL;
    ck_assert_int_eq(pw_file_load(path, &pf, err, sizeof err), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf, "ok", P("pw")), ACL_OK);
    pw_file_free(pf);

    const char *rest = strchr(h + 3, '$'); /* "$SALT$HASH" after the count */
    static const char *const counts[] = {"20001", "10000000", "99999999999999999999"};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        snprintf(text, sizeof text, "ok:%s\nbig:$7$%s%s\n", h, counts[i], rest);
        path = write_file("cap", text);
        pf = (pw_file *)1;
        ck_assert_int_eq(pw_file_load(path, &pf, err, sizeof err), ACL_ERR_SYNTAX);
        ck_assert_ptr_null(pf);
        snprintf(want, sizeof want, "%s:2: ", path);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "err '%s'", err);
        ck_assert_msg(strstr(err, "1..20000"), "err does not name the cap: '%s'", err);
    }
    ck_assert_uint_eq(PW_MAX_ITERATIONS, 20000);
}
END_TEST

/* ---- constant time and equal work ---------------------------------------- */

START_TEST(test_ct_equal_answers)
{
    uint8_t a[PW_DIGEST_LEN], b[PW_DIGEST_LEN];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (uint8_t)(i * 7 + 1);
    ck_assert(pw_ct_equal(a, b, sizeof a));
    ck_assert(pw_ct_equal(a, b, 0));
    for (size_t i = 0; i < sizeof a; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1u << bit);
            ck_assert_msg(!pw_ct_equal(a, b, sizeof a), "byte %zu bit %d", i, bit);
            ck_assert(pw_ct_equal(a, b, i)); /* the prefix before it still matches */
            b[i] ^= (uint8_t)(1u << bit);
        }
}
END_TEST

static void segv_exit(int sig)
{
    (void)sig;
    _exit(42);
}

/* A constant-time compare reads every byte even when the first differs:
 * the last byte of b sits on an inaccessible page, so reading it faults
 * (exit 42). memcmp, or any early exit, returns without touching it. */
START_TEST(test_ct_equal_reads_every_byte)
{
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *m =
        mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(m != MAP_FAILED);
    ck_assert_int_eq(mprotect(m + page, (size_t)page, PROT_NONE), 0);
    size_t n = PW_DIGEST_LEN;
    uint8_t *b = m + page - (n - 1); /* b[n - 1] is the first byte of the closed page */
    uint8_t a[PW_DIGEST_LEN];
    memset(a, 'x', sizeof a);
    memset(b, 'y', n - 1); /* differs from the first byte on */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = segv_exit;
    ck_assert_int_eq(sigaction(SIGSEGV, &sa, NULL), 0);
    ck_assert_int_eq(sigaction(SIGBUS, &sa, NULL), 0);
    bool same = pw_ct_equal(a, b, n);
    printf("pw_ct_equal returned %d without reading the last byte\n", same);
    _exit(0);
}
END_TEST

static pw_work work_delta(const pw_file *pf, pw_work *before)
{
    pw_work now, d;
    pw_file_work(pf, &now);
    d.iterations = now.iterations - before->iterations;
    d.compared_bytes = now.compared_bytes - before->compared_bytes;
    *before = now;
    return d;
}

/* Every uncached answer costs one entry's hash and one full comparison:
 * a wrong password, an unknown user (the dummy entry), no password and the
 * right password alike. A memcmp or a skipped dummy hash changes a count. */
START_TEST(test_hash_work_per_login)
{
    char text[600], err[256];
    snprintf(text, sizeof text, "alice:%s\nbob:%s\n", KAT7K, KAT7);
    pw_file *pf = NULL;
    ck_assert_int_eq(pw_file_load(write_file("work", text), &pf, err, sizeof err), ACL_OK);
    pw_work w;
    pw_file_work(pf, &w);
    ck_assert_uint_eq(w.iterations, 0);
    ck_assert_uint_eq(w.compared_bytes, 0);
    static const struct {
        const char *user, *pw;
        int rc;
    } cases[] = {
        {"alice", "wrong", ACL_ERR_BAD_PASSWORD},
        {"mallory", "correct horse", ACL_ERR_UNKNOWN_USER},
        {"alice", NULL, ACL_ERR_BAD_PASSWORD},
        {"", "x", ACL_ERR_UNKNOWN_USER},
        {"alice", "correct horse", ACL_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = cases[i].pw;
        int rc = pw_file_check(pf, cases[i].user, (const uint8_t *)p, p ? strlen(p) : 0);
        ck_assert_msg(rc == cases[i].rc, "case %zu: rc %d", i, rc);
        pw_work d = work_delta(pf, &w);
        /* alice's entry (first $7$ line) has 1000 iterations; so has the dummy */
        ck_assert_msg(d.iterations == 1000, "case %zu: %llu iterations", i,
                      (unsigned long long)d.iterations);
        ck_assert_msg(d.compared_bytes == PW_DIGEST_LEN, "case %zu: %llu bytes compared", i,
                      (unsigned long long)d.compared_bytes);
    }
    ck_assert_int_eq(pw_file_check(pf, "bob", P("correct horse")), ACL_OK);
    ck_assert_uint_eq(work_delta(pf, &w).iterations, 101);
    /* a cache hit does no hash work at all */
    ck_assert_int_eq(pw_file_check(pf, "alice", P("correct horse")), ACL_OK);
    pw_work d = work_delta(pf, &w);
    ck_assert_uint_eq(d.iterations, 0);
    ck_assert_uint_eq(d.compared_bytes, 0);
    pw_file_free(pf);

    /* a $6$-only file: an unknown user costs one SHA-512 too, not PBKDF2 */
    snprintf(text, sizeof text, "carol:%s\n", KAT6);
    ck_assert_int_eq(pw_file_load(write_file("work6", text), &pf, err, sizeof err), ACL_OK);
    pw_file_work(pf, &w);
    ck_assert_int_eq(pw_file_check(pf, "carol", P("nope")), ACL_ERR_BAD_PASSWORD);
    ck_assert_uint_eq(work_delta(pf, &w).iterations, 1);
    ck_assert_int_eq(pw_file_check(pf, "dave", P("nope")), ACL_ERR_UNKNOWN_USER);
    d = work_delta(pf, &w);
    ck_assert_uint_eq(d.iterations, 1);
    ck_assert_uint_eq(d.compared_bytes, PW_DIGEST_LEN);
    pw_file_free(pf);
}
END_TEST

/* ---- cache -------------------------------------------------------------- */

START_TEST(test_cache)
{
    char text[1024];
    snprintf(text, sizeof text, "alice:%s\nbob:%s\n", KAT7K, KAT6);
    const char *path = write_file("pw", text);
    pw_file *pf = NULL;
    char err[256];
    uint64_t hits, runs;
    ck_assert_int_eq(pw_file_load(path, &pf, err, sizeof err), ACL_OK);
    pw_file_stats(pf, &hits, &runs);
    ck_assert(hits == 0 && runs == 0);

    ck_assert_int_eq(pw_file_check(pf, "alice", P("correct horse")), ACL_OK);
    pw_file_stats(pf, &hits, &runs);
    ck_assert(hits == 0 && runs == 1);
    /* the reconnect is answered from the cache */
    ck_assert_int_eq(pw_file_check(pf, "alice", P("correct horse")), ACL_OK);
    pw_file_stats(pf, &hits, &runs);
    ck_assert(hits == 1 && runs == 1);
    /* wrong passwords are never cached and always pay the full cost */
    ck_assert_int_eq(pw_file_check(pf, "alice", P("wrong")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf, "alice", P("wrong")), ACL_ERR_BAD_PASSWORD);
    pw_file_stats(pf, &hits, &runs);
    ck_assert(hits == 1 && runs == 3);
    /* the key binds user and password: bob with alice's password is a miss */
    ck_assert_int_eq(pw_file_check(pf, "bob", P("correct horse")), ACL_ERR_BAD_PASSWORD);
    /* "user\0pass" boundaries cannot be shifted: alic + "e\0..." style */
    ck_assert_int_eq(pw_file_check(pf, "alic", P("ecorrect horse")), ACL_ERR_UNKNOWN_USER);
    pw_file_stats(pf, &hits, &runs);
    ck_assert(hits == 1 && runs == 5);
    /* unknown users cost a hash run too */
    ck_assert_int_eq(pw_file_check(pf, "nobody", P("x")), ACL_ERR_UNKNOWN_USER);
    pw_file_stats(pf, &hits, &runs);
    ck_assert_uint_eq(runs, 6);

    /* a reload is a new object: its cache starts empty */
    pw_file *pf2 = NULL;
    ck_assert_int_eq(pw_file_load(path, &pf2, err, sizeof err), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf2, "alice", P("correct horse")), ACL_OK);
    pw_file_stats(pf2, &hits, &runs);
    ck_assert(hits == 0 && runs == 1);
    pw_file_free(pf);

    /* a reload that changed alice's password must not honour the old one */
    snprintf(text, sizeof text, "alice:%s\n", KAT6);
    path = write_file("pw", text);
    pw_file *pf3 = NULL;
    ck_assert_int_eq(pw_file_load(path, &pf3, err, sizeof err), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf3, "alice", P("correct horse")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf3, "alice", P("hunter2")), ACL_OK);
    pw_file_free(pf2);
    pw_file_free(pf3);
}
END_TEST

/* ---- making hashes ------------------------------------------------------ */

START_TEST(test_make_format)
{
    char a[256], b[256];
    ck_assert_int_eq(pw_hash_make(P("s3cret"), 0, a, sizeof a), ACL_OK);
    ck_assert_int_eq(pw_hash_make(P("s3cret"), 0, b, sizeof b), ACL_OK);
    /* same shape as mosquitto_passwd: $7$101$<16 chars = 12-byte salt>$<88 chars> */
    ck_assert_msg(strncmp(a, "$7$101$", 7) == 0, "%s", a);
    const char *salt = a + 7, *d = strchr(salt, '$');
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq((int)(d - salt), 16);
    ck_assert_uint_eq(strlen(d + 1), 88);
    ck_assert_str_ne(a, b); /* random salt */
    ck_assert_int_eq(pw_hash_verify(a, P("s3cret")), ACL_OK);
    ck_assert_int_eq(pw_hash_verify(b, P("s3cret")), ACL_OK);
    ck_assert_int_eq(pw_hash_verify(a, P("s3creT")), ACL_ERR_BAD_PASSWORD);

    ck_assert_int_eq(pw_hash_make(P("s3cret"), 2000, a, sizeof a), ACL_OK);
    ck_assert_msg(strncmp(a, "$7$2000$", 8) == 0, "%s", a);
    ck_assert_int_eq(pw_hash_verify(a, P("s3cret")), ACL_OK);
    ck_assert_int_eq(pw_hash_make(P(""), 0, a, sizeof a), ACL_OK);
    ck_assert_int_eq(pw_hash_verify(a, P("")), ACL_OK);

    ck_assert_int_eq(pw_hash_make(P("x"), 0, a, 20), ACL_ERR_ARG);
    ck_assert_int_eq(pw_hash_make(P("x"), 20000000, a, sizeof a), ACL_ERR_ARG);
}
END_TEST

/* ---- interoperability with mosquitto_passwd ----------------------------- */

static int run(const char *fmt, const char *a, const char *b, const char *c)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, a, b, c);
    return system(cmd);
}

START_TEST(test_mosquitto_passwd_lines)
{
    if (!have_mosquitto_passwd()) return;
    char path[512];
    snprintf(path, sizeof path, "%s/mosq", tmpdir);
    ck_assert_int_eq(run(MOSQ_PASSWD " -c -b '%s' '%s' '%s' 2>/dev/null", path, "alice", "s3cret"),
                     0);
    ck_assert_int_eq(run(MOSQ_PASSWD " -b '%s' '%s' '%s' 2>/dev/null", path, "bob", "p a s s:w0rd"),
                     0);
    ck_assert_int_eq(
        run(MOSQ_PASSWD " -H sha512 -b '%s' '%s' '%s' 2>/dev/null", path, "carol", "h\xc3\xa9llo"),
        0);
    ck_assert_int_eq(run(MOSQ_PASSWD " -b '%s' '%s' '%s' 2>/dev/null", path, "dave", "x"), 0);
    ck_assert_int_eq(run(MOSQ_PASSWD " -D '%s' '%s'%s 2>/dev/null", path, "dave", ""), 0);

    pw_file *pf = NULL;
    char err[512];
    ck_assert_msg(pw_file_load(path, &pf, err, sizeof err) == ACL_OK, "%s", err);
    ck_assert_uint_eq(pw_file_count(pf), 3);
    ck_assert_int_eq(pw_file_check(pf, "alice", P("s3cret")), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf, "alice", P("s3cret ")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf, "bob", P("p a s s:w0rd")), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf, "bob", P("p a s s")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf, "carol", P("h\xc3\xa9llo")), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf, "carol", P("hello")), ACL_ERR_BAD_PASSWORD);
    ck_assert_int_eq(pw_file_check(pf, "dave", P("x")), ACL_ERR_UNKNOWN_USER);
    pw_file_free(pf);

    /* each line also verifies on its own, and has the shape we write */
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int n7 = 0, n6 = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *h = strchr(line, ':') + 1;
        if (strncmp(line, "alice:", 6) == 0) {
            ck_assert_msg(strncmp(h, "$7$101$", 7) == 0, "mosquitto_passwd wrote %.12s", h);
            ck_assert_int_eq(pw_hash_verify(h, P("s3cret")), ACL_OK);
            n7++;
        } else if (strncmp(line, "carol:", 6) == 0) {
            ck_assert(strncmp(h, "$6$", 3) == 0);
            ck_assert_int_eq(pw_hash_verify(h, P("h\xc3\xa9llo")), ACL_OK);
            n6++;
        }
    }
    fclose(f);
    ck_assert(n7 == 1 && n6 == 1);
}
END_TEST

/* ---- cost --------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Not a pass/fail timing test: prints what one uncached $7$ check costs at
 * the default count (and at a few others) for the docs. */
START_TEST(test_measure_cost)
{
    static const unsigned iters[] = {PW_DEFAULT_ITERATIONS, 1000, 10000, PW_MAX_ITERATIONS};
    for (size_t k = 0; k < sizeof iters / sizeof iters[0]; k++) {
        char h[256];
        ck_assert_int_eq(pw_hash_make(P("measure-me"), iters[k], h, sizeof h), ACL_OK);
        int reps = iters[k] >= 100000 ? 3 : iters[k] >= 10000 ? 20 : 200;
        double t0 = now_s();
        int ok = 0; /* no ck_assert inside timed loops: it talks to the parent process */
        for (int i = 0; i < reps; i++)
            ok += pw_hash_verify(h, P("measure-me")) == ACL_OK;
        double per = (now_s() - t0) / reps;
        ck_assert_int_eq(ok, reps);
        printf("COST: one $7$ verification at %u iterations: %.1f us (%d runs)\n", iters[k],
               per * 1e6, reps);
    }
    /* and the cache hit that replaces it on reconnect */
    char text[512], h[256];
    ck_assert_int_eq(pw_hash_make(P("measure-me"), 0, h, sizeof h), ACL_OK);
    snprintf(text, sizeof text, "u:%s\n", h);
    const char *path = write_file("cost", text);
    pw_file *pf = NULL;
    char err[256];
    ck_assert_int_eq(pw_file_load(path, &pf, err, sizeof err), ACL_OK);
    ck_assert_int_eq(pw_file_check(pf, "u", P("measure-me")), ACL_OK);
    int ok = 0;
    double t0 = now_s();
    for (int i = 0; i < 2000; i++)
        ok += pw_file_check(pf, "u", P("measure-me")) == ACL_OK;
    printf("COST: cached pw_file_check: %.2f us\n", (now_s() - t0) / 2000 * 1e6);
    t0 = now_s();
    for (int i = 0; i < 200; i++)
        ok += pw_file_check(pf, "nobody", P("measure-me")) == ACL_ERR_UNKNOWN_USER;
    printf("COST: unknown-user pw_file_check: %.1f us\n", (now_s() - t0) / 200 * 1e6);
    ck_assert_int_eq(ok, 2200);
    pw_file_free(pf);
}
END_TEST

static Suite *pw_suite(void)
{
    Suite *s = suite_create("pw");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup_dir, teardown_dir);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_verify_kat6);
    tcase_add_test(tc, test_verify_kat7);
    tcase_add_test(tc, test_verify_malformed);
    tcase_add_test(tc, test_load_kat_file);
    tcase_add_test(tc, test_load_empty_and_missing);
    tcase_add_test(tc, test_load_malformed);
    tcase_add_test(tc, test_load_nul_byte);
    tcase_add_test(tc, test_load_iteration_cap);
    tcase_add_test(tc, test_ct_equal_answers);
    tcase_add_exit_test(tc, test_ct_equal_reads_every_byte, 42);
    tcase_add_test(tc, test_hash_work_per_login);
    tcase_add_test(tc, test_cache);
    tcase_add_test(tc, test_make_format);
    tcase_add_test(tc, test_mosquitto_passwd_lines);
    tcase_add_test(tc, test_measure_cost);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pw_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
