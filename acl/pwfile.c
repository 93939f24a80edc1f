/*
 * pwfile.c -- Mosquitto password files: load, verify, make hashes.
 *
 * Formats (what Debian's mosquitto_passwd 2.0.11 writes and reads):
 *   user:$7$ITER$SALT$HASH   PBKDF2-HMAC-SHA512(password, salt, ITER), 64 bytes
 *   user:$6$SALT$HASH        SHA-512(password || salt)
 * SALT and HASH are standard base64 with padding; the tool uses a 12-byte salt
 * (16 characters) and 101 iterations.
 *
 * Mosquitto skips bad lines with a log notice and keeps the first of two lines
 * for one user; a broker that silently ignores a line of its password file
 * surprises whoever edited it, so we refuse to load such a file and say where.
 */
#include "acl/acl.h"
#include "acl/acl_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha512.h>
#include <mbedtls/version.h>

/* mbedTLS 3.x dropped the _ret suffix (2.28 deprecates the plain names). */
#if MBEDTLS_VERSION_MAJOR >= 3
#define sha512_starts mbedtls_sha512_starts
#define sha512_update mbedtls_sha512_update
#define sha512_finish mbedtls_sha512_finish
#else
#define sha512_starts mbedtls_sha512_starts_ret
#define sha512_update mbedtls_sha512_update_ret
#define sha512_finish mbedtls_sha512_finish_ret
#endif

#define PW_SALT_LEN 12
#define PW_HASH_LEN PW_DIGEST_LEN
#define PW_MAX_SALT 64
#define PW_MAX_USER 65535
/* the cap keeps one check on the event loop short (acl.h) */
_Static_assert(PW_MAX_ITERATIONS == 20000u, "PW_ITER_RANGE names the cap");
#define PW_ITER_RANGE                                                                              \
    "$7$ iteration count out of range (1..20000, the cap that keeps one check under about "        \
    "50 ms on the event loop; rehash with secpasswd -I)"
/* direct-mapped cache of recent successful checks; 512 * 64 bytes = 32 KB */
#define PW_CACHE_SLOTS 512

struct pw_entry {
    char *user;
    size_t line;
    int type; /* 6 or 7 */
    unsigned iterations;
    size_t salt_len;
    uint8_t salt[PW_MAX_SALT];
    uint8_t hash[PW_HASH_LEN];
};

struct pw_file {
    struct pw_entry *v; /* sorted by user */
    size_t n;
    struct pw_entry dummy; /* verified against for unknown users: same cost, never matches */
    /* The cache key is SHA-512(secret || user || 0 || password): the random
     * secret keeps the remembered digests useless outside this process. */
    uint8_t cache_secret[32];
    uint8_t cache_key[PW_CACHE_SLOTS][PW_HASH_LEN];
    uint8_t cache_used[PW_CACHE_SLOTS];
    uint64_t cache_hits;
    uint64_t hash_runs;
    pw_work work;
};

static bool b64_chars_ok(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || c == '=';
        if (!ok) return false;
    }
    return true;
}

/* Decode standard base64 into out (cap bytes); false on bad input or size. */
static bool b64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *olen)
{
    if (!b64_chars_ok(s, n)) return false;
    return mbedtls_base64_decode(out, cap, olen, (const unsigned char *)s, n) == 0;
}

/* Parse "$7$ITER$SALT$HASH" or "$6$SALT$HASH" (s[0..n)) into e. Returns NULL
 * or a reason that never quotes the hash. */
static const char *pw_parse_hash(const char *s, size_t n, struct pw_entry *e)
{
    if (n == 0) return "missing password hash after ':'";
    if (s[0] != '$')
        return "password is not hashed (expected $7$ or $6$; convert with mosquitto_passwd -U or "
               "secpasswd)";
    if (n < 3 || s[2] != '$' || (s[1] != '6' && s[1] != '7'))
        return "unsupported hash type (only $7$ PBKDF2-SHA512 and $6$ SHA-512 are supported)";
    const char *end = s + n;
    const char *p = s + 3;
    e->type = s[1] - '0';
    e->iterations = 0;
    if (e->type == 7) {
        unsigned long v = 0;
        const char *q = p;
        while (q < end && *q >= '0' && *q <= '9') {
            v = v * 10 + (unsigned long)(*q - '0');
            if (v > PW_MAX_ITERATIONS) return PW_ITER_RANGE;
            q++;
        }
        if (q == p || q == end || *q != '$') return "malformed $7$ hash: bad iteration count";
        if (v == 0) return PW_ITER_RANGE;
        e->iterations = (unsigned)v;
        p = q + 1;
    }
    const char *d = memchr(p, '$', (size_t)(end - p));
    if (!d) return "malformed hash: expected $SALT$HASH";
    if (!b64_decode(p, (size_t)(d - p), e->salt, sizeof e->salt, &e->salt_len) || e->salt_len == 0)
        return "malformed hash: salt is not valid base64 (1..64 bytes)";
    size_t hlen = 0;
    uint8_t hbuf[PW_HASH_LEN + 3];
    if (!b64_decode(d + 1, (size_t)(end - d - 1), hbuf, sizeof hbuf, &hlen) || hlen != PW_HASH_LEN)
        return "malformed hash: digest is not 64 bytes of base64";
    memcpy(e->hash, hbuf, PW_HASH_LEN);
    return NULL;
}

/* pw_ct_equal that also counts the bytes it read into *compared (what
 * pw_file_work reports), so a test sees that a login went through it. */
static bool ct_equal_counted(const uint8_t *a, const uint8_t *b, size_t n, uint64_t *compared)
{
    /* OR of every XOR: no branch and no early exit on a difference */
    volatile uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (uint8_t)(acc | (a[i] ^ b[i]));
        (*compared)++;
    }
    return acc == 0;
}

bool pw_ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint64_t ignored = 0;
    return ct_equal_counted(a, b, n, &ignored);
}

/* The digest e's scheme gives for password; ACL_OK or ACL_ERR_CRYPTO.
 * Adds the iterations run to *iterations ($6$ counts 1) when not NULL. */
static int pw_derive(const struct pw_entry *e, const uint8_t *pw, size_t pwlen,
                     uint8_t out[PW_HASH_LEN], uint64_t *iterations)
{
    static const uint8_t empty[1];
    int rc;
    if (!pw) pw = empty;
    if (e->type == 7) {
        mbedtls_md_context_t md;
        mbedtls_md_init(&md);
        rc = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA512), 1);
        if (rc == 0)
            rc = mbedtls_pkcs5_pbkdf2_hmac(&md, pw, pwlen, e->salt, e->salt_len, e->iterations,
                                           PW_HASH_LEN, out);
        mbedtls_md_free(&md);
    } else {
        mbedtls_sha512_context sha;
        mbedtls_sha512_init(&sha);
        rc = sha512_starts(&sha, 0);
        if (rc == 0) rc = sha512_update(&sha, pw, pwlen);
        if (rc == 0) rc = sha512_update(&sha, e->salt, e->salt_len);
        if (rc == 0) rc = sha512_finish(&sha, out);
        mbedtls_sha512_free(&sha);
    }
    if (rc == 0 && iterations) *iterations += e->type == 7 ? e->iterations : 1;
    return rc == 0 ? ACL_OK : ACL_ERR_CRYPTO;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct pw_entry *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    if (c) return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

void pw_file_free(pw_file *pf)
{
    if (!pf) return;
    for (size_t i = 0; i < pf->n; i++)
        free(pf->v[i].user);
    if (pf->v) mbedtls_platform_zeroize(pf->v, pf->n * sizeof *pf->v);
    free(pf->v);
    mbedtls_platform_zeroize(pf, sizeof *pf);
    free(pf);
}

size_t pw_file_count(const pw_file *pf)
{
    return pf ? pf->n : 0;
}

/* Parse one trimmed, non-comment line into e (user allocated). */
static int pw_parse_line(const char *path, size_t lineno, char *s, size_t len, struct pw_entry *e,
                         char *err, size_t errlen)
{
    char *colon = memchr(s, ':', len);
    if (!colon) {
        acl_seterr(err, errlen, path, lineno, "expected USER:HASH (no ':' on the line)");
        return ACL_ERR_SYNTAX;
    }
    size_t ulen = (size_t)(colon - s);
    while (ulen > 0 && (s[ulen - 1] == ' ' || s[ulen - 1] == '\t'))
        ulen--;
    if (ulen == 0) {
        acl_seterr(err, errlen, path, lineno, "empty user name");
        return ACL_ERR_SYNTAX;
    }
    if (ulen > PW_MAX_USER) {
        acl_seterr(err, errlen, path, lineno, "user name longer than 65535 bytes");
        return ACL_ERR_SYNTAX;
    }
    char *h = colon + 1;
    size_t hlen = len - (size_t)(h - s);
    while (hlen > 0 && (*h == ' ' || *h == '\t'))
        h++, hlen--;
    if (memchr(h, ':', hlen)) {
        acl_seterr(err, errlen, path, lineno, "more than one ':' on the line");
        return ACL_ERR_SYNTAX;
    }
    const char *why = pw_parse_hash(h, hlen, e);
    if (why) {
        acl_seterr(err, errlen, path, lineno, "%s", why);
        return ACL_ERR_SYNTAX;
    }
    e->user = malloc(ulen + 1);
    if (!e->user) {
        acl_seterr(err, errlen, path, lineno, "out of memory");
        return ACL_ERR_ALLOC;
    }
    memcpy(e->user, s, ulen);
    e->user[ulen] = '\0';
    e->line = lineno;
    return ACL_OK;
}

/* Sort pf's entries by user; a user defined twice is an error naming the
 * later line (the one that appears first in the file among duplicates). */
static int pw_check_duplicates(pw_file *pf, const char *path, char *err, size_t errlen)
{
    if (pf->n < 2) return ACL_OK;
    qsort(pf->v, pf->n, sizeof *pf->v, entry_cmp);
    size_t bad = 0;
    for (size_t i = 1; i < pf->n; i++)
        if (strcmp(pf->v[i - 1].user, pf->v[i].user) == 0 &&
            (!bad || pf->v[i].line < pf->v[bad].line))
            bad = i;
    if (!bad) return ACL_OK;
    size_t first = bad;
    while (first > 0 && strcmp(pf->v[first - 1].user, pf->v[bad].user) == 0)
        first--;
    acl_seterr(err, errlen, path, pf->v[bad].line,
               "duplicate user '%s' (first defined on line %zu)", pf->v[bad].user,
               pf->v[first].line);
    return ACL_ERR_SYNTAX;
}

/* The dummy entry unknown users are checked against, and the cache secret.
 * The dummy costs what a real entry of this file costs: the first $7$
 * entry's iterations, or one SHA-512 in a $6$-only file. */
static int pw_setup_secrets(pw_file *pf, const char *path, char *err, size_t errlen)
{
    pf->dummy.type = pf->n ? 6 : 7;
    pf->dummy.iterations = PW_DEFAULT_ITERATIONS;
    for (size_t i = 0; i < pf->n; i++)
        if (pf->v[i].type == 7) {
            pf->dummy.type = 7;
            pf->dummy.iterations = pf->v[i].iterations;
            break;
        }
    pf->dummy.salt_len = PW_SALT_LEN;
    if (acl_random(pf->dummy.salt, PW_SALT_LEN) != ACL_OK ||
        acl_random(pf->dummy.hash, PW_HASH_LEN) != ACL_OK ||
        acl_random(pf->cache_secret, sizeof pf->cache_secret) != ACL_OK) {
        acl_seterr(err, errlen, path, 0, "cannot seed the random generator");
        return ACL_ERR_CRYPTO;
    }
    return ACL_OK;
}

int pw_file_load(const char *path, pw_file **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!path || !out) return ACL_ERR_ARG;
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        acl_seterr(err, errlen, path, 0, "cannot open password file: %s", strerror(errno));
        return ACL_ERR_FILE;
    }
    pw_file *pf = calloc(1, sizeof *pf);
    if (!pf) {
        fclose(f);
        acl_seterr(err, errlen, path, 0, "out of memory");
        return ACL_ERR_ALLOC;
    }
    char *buf = NULL;
    size_t cap = 0, len, vcap = 0, lineno = 0;
    int has_nul, rc = ACL_OK;
    char *s;
    while ((s = acl_read_line(f, &buf, &cap, &len, &has_nul)) != NULL) {
        lineno++;
        if (has_nul) {
            acl_seterr(err, errlen, path, lineno, "NUL byte in line");
            rc = ACL_ERR_SYNTAX;
            break;
        }
        if (len == 0 || s[0] == '#') continue;
        if (pf->n == vcap) {
            size_t nc = vcap ? vcap * 2 : 16;
            struct pw_entry *nv = realloc(pf->v, nc * sizeof *nv);
            if (!nv) {
                acl_seterr(err, errlen, path, lineno, "out of memory");
                rc = ACL_ERR_ALLOC;
                break;
            }
            pf->v = nv;
            vcap = nc;
        }
        struct pw_entry *e = &pf->v[pf->n];
        memset(e, 0, sizeof *e);
        rc = pw_parse_line(path, lineno, s, len, e, err, errlen);
        if (rc != ACL_OK) break;
        pf->n++;
    }
    if (rc == ACL_OK && ferror(f)) {
        acl_seterr(err, errlen, path, 0, "read error: %s", strerror(errno));
        rc = ACL_ERR_FILE;
    }
    if (buf) mbedtls_platform_zeroize(buf, cap);
    free(buf);
    fclose(f);
    if (rc == ACL_OK) rc = pw_check_duplicates(pf, path, err, errlen);
    if (rc == ACL_OK) rc = pw_setup_secrets(pf, path, err, errlen);
    if (rc != ACL_OK) {
        pw_file_free(pf);
        return rc;
    }
    *out = pf;
    return ACL_OK;
}

static struct pw_entry *pw_find(const pw_file *pf, const char *user)
{
    size_t lo = 0, hi = pf->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(user, pf->v[mid].user);
        if (c == 0) return &pf->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int pw_cache_key(const pw_file *pf, const char *user, const uint8_t *pw, size_t pwlen,
                        uint8_t key[PW_HASH_LEN])
{
    static const uint8_t zero[1];
    mbedtls_sha512_context sha;
    mbedtls_sha512_init(&sha);
    int rc = sha512_starts(&sha, 0);
    if (rc == 0) rc = sha512_update(&sha, pf->cache_secret, sizeof pf->cache_secret);
    if (rc == 0) rc = sha512_update(&sha, (const uint8_t *)user, strlen(user));
    if (rc == 0) rc = sha512_update(&sha, zero, 1);
    if (rc == 0) rc = sha512_update(&sha, pw, pwlen);
    if (rc == 0) rc = sha512_finish(&sha, key);
    mbedtls_sha512_free(&sha);
    return rc == 0 ? ACL_OK : ACL_ERR_CRYPTO;
}

static size_t pw_cache_slot(const uint8_t key[PW_HASH_LEN])
{
    return ((size_t)key[0] | (size_t)key[1] << 8 | (size_t)key[2] << 16) % PW_CACHE_SLOTS;
}

int pw_file_check(pw_file *pf, const char *user, const uint8_t *password, size_t pwlen)
{
    if (!pf || !user) return ACL_ERR_UNKNOWN_USER;
    static const uint8_t empty[1];
    /* a client that sent no password never matches, even an empty-password
     * entry, but pays the same cost so the answer says nothing more */
    bool no_password = password == NULL;
    if (no_password) password = empty, pwlen = 0;

    uint8_t key[PW_HASH_LEN];
    bool have_key = !no_password && pw_cache_key(pf, user, password, pwlen, key) == ACL_OK;
    size_t slot = have_key ? pw_cache_slot(key) : 0;
    if (have_key && pf->cache_used[slot] && pw_ct_equal(pf->cache_key[slot], key, PW_HASH_LEN)) {
        pf->cache_hits++;
        return ACL_OK;
    }

    const struct pw_entry *e = pw_find(pf, user);
    const struct pw_entry *target = e ? e : &pf->dummy;
    uint8_t got[PW_HASH_LEN];
    pf->hash_runs++;
    if (pw_derive(target, password, pwlen, got, &pf->work.iterations) != ACL_OK) {
        mbedtls_platform_zeroize(got, sizeof got);
        return e ? ACL_ERR_BAD_PASSWORD : ACL_ERR_UNKNOWN_USER;
    }
    /* the same work whatever the answer: one entry's iterations (the dummy
     * costs what a real entry costs) and one full constant-time comparison */
    bool same = ct_equal_counted(got, target->hash, PW_HASH_LEN, &pf->work.compared_bytes);
    mbedtls_platform_zeroize(got, sizeof got);
    if (!e) return ACL_ERR_UNKNOWN_USER;
    if (!same || no_password) return ACL_ERR_BAD_PASSWORD;
    if (have_key) {
        memcpy(pf->cache_key[slot], key, PW_HASH_LEN);
        pf->cache_used[slot] = 1;
    }
    return ACL_OK;
}

void pw_file_work(const pw_file *pf, pw_work *out)
{
    if (!out) return;
    if (pf)
        *out = pf->work;
    else
        memset(out, 0, sizeof *out);
}

void pw_file_stats(const pw_file *pf, uint64_t *cache_hits, uint64_t *hash_runs)
{
    if (cache_hits) *cache_hits = pf ? pf->cache_hits : 0;
    if (hash_runs) *hash_runs = pf ? pf->hash_runs : 0;
}

int pw_hash_make(const uint8_t *password, size_t pwlen, unsigned iterations, char *out,
                 size_t outlen)
{
    return pw_hash_make_type(7, password, pwlen, iterations, out, outlen);
}

int pw_hash_make_type(int type, const uint8_t *password, size_t pwlen, unsigned iterations,
                      char *out, size_t outlen)
{
    if (!out || (!password && pwlen) || (type != 6 && type != 7)) return ACL_ERR_ARG;
    if (iterations == 0) iterations = PW_DEFAULT_ITERATIONS;
    if (iterations > PW_MAX_ITERATIONS) return ACL_ERR_ARG;
    struct pw_entry e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.iterations = iterations;
    e.salt_len = PW_SALT_LEN;
    if (acl_random(e.salt, PW_SALT_LEN) != ACL_OK) return ACL_ERR_CRYPTO;
    int rc = pw_derive(&e, password, pwlen, e.hash, NULL);
    char salt64[32], hash64[96];
    size_t sl = 0, hl = 0;
    if (rc == ACL_OK &&
        (mbedtls_base64_encode((unsigned char *)salt64, sizeof salt64, &sl, e.salt, e.salt_len) ||
         mbedtls_base64_encode((unsigned char *)hash64, sizeof hash64, &hl, e.hash, PW_HASH_LEN)))
        rc = ACL_ERR_CRYPTO;
    if (rc == ACL_OK) {
        int n = type == 7 ? snprintf(out, outlen, "$7$%u$%s$%s", iterations, salt64, hash64)
                          : snprintf(out, outlen, "$6$%s$%s", salt64, hash64);
        if (n < 0 || (size_t)n >= outlen) rc = ACL_ERR_ARG;
    }
    mbedtls_platform_zeroize(&e, sizeof e);
    mbedtls_platform_zeroize(hash64, sizeof hash64);
    return rc;
}

int pw_hash_verify(const char *hash, const uint8_t *password, size_t pwlen)
{
    if (!hash || (!password && pwlen)) return ACL_ERR_ARG;
    struct pw_entry e;
    memset(&e, 0, sizeof e);
    if (pw_parse_hash(hash, strlen(hash), &e)) return ACL_ERR_SYNTAX;
    uint8_t got[PW_HASH_LEN];
    int rc = pw_derive(&e, password, pwlen, got, NULL);
    if (rc == ACL_OK && !pw_ct_equal(got, e.hash, PW_HASH_LEN)) rc = ACL_ERR_BAD_PASSWORD;
    mbedtls_platform_zeroize(got, sizeof got);
    mbedtls_platform_zeroize(&e, sizeof e);
    return rc;
}
