/*
 * acl.c -- error strings and small helpers shared by the password file and
 * ACL loaders.
 */
#include "acl/acl.h"
#include "acl/acl_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

const char *acl_strerror(int err)
{
    switch (err) {
    case ACL_OK:
        return "ok";
    case ACL_ERR_FILE:
        return "cannot open or read the file";
    case ACL_ERR_SYNTAX:
        return "malformed line";
    case ACL_ERR_UNKNOWN_USER:
        return "unknown user";
    case ACL_ERR_BAD_PASSWORD:
        return "wrong password";
    case ACL_ERR_DENIED:
        return "not allowed by the ACL";
    case ACL_ERR_ALLOC:
        return "out of memory";
    case ACL_ERR_ARG:
        return "invalid argument";
    case ACL_ERR_CRYPTO:
        return "cryptographic library failure";
    default:
        return "unknown error";
    }
}

void acl_seterr(char *err, size_t errlen, const char *path, size_t line, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    int n;
    if (line)
        n = snprintf(err, errlen, "%s:%zu: ", path ? path : "?", line);
    else
        n = snprintf(err, errlen, "%s: ", path ? path : "?");
    if (n < 0 || (size_t)n >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

char *acl_read_line(FILE *f, char **buf, size_t *cap, size_t *len, int *has_nul)
{
    ssize_t n = getline(buf, cap, f);
    if (n < 0) return NULL;
    char *s = *buf;
    /* getline keeps NUL bytes; strlen would silently cut the line there */
    *has_nul = strlen(s) != (size_t)n;
    size_t e = (size_t)n;
    while (e > 0 && is_blank((unsigned char)s[e - 1]))
        e--;
    s[e] = '\0';
    size_t b = 0;
    while (b < e && is_blank((unsigned char)s[b]))
        b++;
    *len = e - b;
    return s + b;
}

int acl_random(uint8_t *buf, size_t len)
{
    static const char pers[] = "secbroker-acl";
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    int rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)pers,
                                   sizeof pers - 1);
    if (rc == 0) rc = mbedtls_ctr_drbg_random(&drbg, buf, len);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return rc == 0 ? ACL_OK : ACL_ERR_CRYPTO;
}
