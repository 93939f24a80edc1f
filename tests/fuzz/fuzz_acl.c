/*
 * fuzz_acl.c -- libFuzzer target for the ACL and password file loaders and
 * acl_check (acl/).
 *
 * Input layout, parts separated by NUL bytes (seeds stay readable):
 *   ACL file text \0 password file text \0 user name \0 client id \0
 *   topic \0 topic ...
 * Both files are written to scratch files and loaded. When the ACL file
 * loads, every topic is checked for READ, WRITE and SUBSCRIBE, as the user
 * and anonymously. The password file is loaded and freed; a loaded file is
 * queried with the user name only for its $6$ entries and a cheap $7$ cost,
 * so an input cannot make one run take seconds of PBKDF2.
 */
#include "acl/acl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_MAX_PARTS 16

static char acl_path[64], pw_path[64];

static void scratch_init(void)
{
    if (acl_path[0]) return;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(acl_path, sizeof acl_path, "%.40s/fuzz_acl.%ld.acl", dir, (long)getpid());
    snprintf(pw_path, sizeof pw_path, "%.40s/fuzz_acl.%ld.pw", dir, (long)getpid());
}

static void scratch_cleanup(void)
{
    unlink(acl_path);
    unlink(pw_path);
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static char *dup_str(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void check_topics(const acl_rules *r, const char *user, const char *cid, char **t, size_t nt)
{
    static const int access[] = {ACL_READ, ACL_WRITE, ACL_SUBSCRIBE, 0, 7};
    for (size_t i = 0; i < nt; i++)
        for (size_t a = 0; a < sizeof access / sizeof access[0]; a++) {
            int rc = acl_check(r, user, cid, t[i], strlen(t[i]), access[a]);
            if (rc != ACL_OK && rc != ACL_ERR_DENIED) abort();
            if ((access[a] == 0 || access[a] == 7) && rc == ACL_OK) abort(); /* fail closed */
            rc = acl_check(r, NULL, cid, t[i], strlen(t[i]), access[a]);
            if (rc != ACL_OK && rc != ACL_ERR_DENIED) abort();
            (void)acl_strerror(rc);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int registered;
    scratch_init();
    if (!registered) registered = atexit(scratch_cleanup) == 0;
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t plen[FUZZ_MAX_PARTS], np = 0, start = 0;
    for (size_t i = 0; i <= size && np < FUZZ_MAX_PARTS; i++)
        if (i == size || data[i] == 0) {
            part[np] = data + start;
            plen[np++] = i - start;
            start = i + 1;
        }
    char err[512] = "";
    acl_rules *r = NULL;
    int written = write_file(acl_path, part[0], plen[0]);
    int loaded = written == 0 ? acl_rules_load(acl_path, &r, err, sizeof err) : ACL_ERR_FILE;
    if (loaded == ACL_OK) {
        char *user = np > 2 ? dup_str(part[2], plen[2]) : NULL;
        char *cid = np > 3 ? dup_str(part[3], plen[3]) : NULL;
        char *topics[FUZZ_MAX_PARTS];
        size_t nt = 0;
        for (size_t i = 4; i < np; i++)
            topics[nt++] = dup_str(part[i], plen[i]);
        check_topics(r, user, cid, topics, nt);
        for (size_t i = 0; i < nt; i++)
            free(topics[i]);
        free(user);
        free(cid);
        acl_rules_free(r);
    } else if (written == 0 && !strchr(err, ':')) {
        abort(); /* every load error names FILE:... */
    }
    pw_file *pf = NULL;
    if (np > 1 && write_file(pw_path, part[1], plen[1]) == 0 &&
        pw_file_load(pw_path, &pf, err, sizeof err) == ACL_OK) {
        /* queried only when cheap: the user name as the password, once */
        bool cheap = memmem(part[1], plen[1], "$7$", 3) == NULL;
        if (cheap && np > 2) {
            char *user = dup_str(part[2], plen[2]);
            int rc = pw_file_check(pf, user, part[2], plen[2]);
            if (rc != ACL_OK && rc != ACL_ERR_UNKNOWN_USER && rc != ACL_ERR_BAD_PASSWORD) abort();
            free(user);
        }
        pw_file_free(pf);
    }
    return 0;
}
