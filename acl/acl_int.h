/*
 * acl_int.h -- helpers shared by the acl/ sources; not part of the contract.
 */
#ifndef SECBROKER_ACL_INT_H
#define SECBROKER_ACL_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Write "PATH:LINE: reason" (or "PATH: reason" when line is 0) into err.
 * Accepts err == NULL or errlen == 0. Callers never pass secrets. */
void acl_seterr(char *err, size_t errlen, const char *path, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Read one line into *buf (grown as needed), strip the line ending and
 * surrounding blanks (space, tab, CR, LF, VT, FF). Returns the trimmed start
 * and stores its length in *len; NULL at end of file. *has_nul is set when
 * the raw line contained a NUL byte (never valid in our files). */
char *acl_read_line(FILE *f, char **buf, size_t *cap, size_t *len, int *has_nul);

/* Fill buf with len bytes from mbedTLS's entropy + CTR-DRBG. ACL_OK or
 * ACL_ERR_CRYPTO. */
int acl_random(uint8_t *buf, size_t len);

#endif
