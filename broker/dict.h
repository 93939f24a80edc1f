/*
 * dict.h -- open-addressing hash table from byte-string keys to pointers.
 * The table does not own keys: a key must stay valid while its entry exists
 * (callers point it at a string inside the value). Linear probing with
 * backward-shift deletion, so there are no tombstones.
 *
 * Keys are hashed with SipHash-2-4 under a 128-bit secret of the table's
 * own, drawn from getrandom(2) when the table first allocates slots: a
 * client that learns or guesses one table's layout (or a generated client
 * id) learns nothing about another table, so it cannot choose keys that all
 * land in one probe run.
 */
#ifndef SECBROKER_DICT_H
#define SECBROKER_DICT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t hash;
    uint32_t klen;
    const char *key;
    void *val;
} dict_entry;

typedef struct {
    dict_entry *slots; /* NULL until the first insert */
    uint32_t cap;      /* power of two */
    uint32_t count;
    uint64_t sip[2]; /* the table's SipHash key, set with the first slots */
} dict;

/* SipHash-2-4 (Aumasson and Bernstein) of msg[0..len) under the 128-bit
 * key k0 = key[0], k1 = key[1] (the little-endian halves of the 16 key
 * bytes). Exposed for the reference-vector test. */
uint64_t dict_siphash(const uint64_t key[2], const void *msg, size_t len);
/* A zeroed dict is a valid empty table too. */
void dict_init(dict *d);
void dict_free(dict *d); /* frees the table, not keys/values */
void *dict_get(const dict *d, const char *key, size_t len);
/* Inserts or replaces. Returns 0, or -1 when memory (or, for a table's
 * first insert, random bytes for its key) is not available. */
int dict_put(dict *d, const char *key, size_t len, void *val);
/* Removes the key if present; returns its value or NULL. */
void *dict_del(dict *d, const char *key, size_t len);
/* Iterate: for (i = 0; (e = dict_next(d, &i)); ) -- do not modify meanwhile. */
dict_entry *dict_next(const dict *d, uint32_t *iter);

#endif
