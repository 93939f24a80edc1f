/*
 * dict.h -- open-addressing hash table from byte-string keys to pointers.
 * The table does not own keys: a key must stay valid while its entry exists
 * (callers point it at a string inside the value). Linear probing with
 * backward-shift deletion, so there are no tombstones.
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
} dict;

uint32_t dict_hash(const char *key, size_t len);
/* Set once at startup from a random source, so clients cannot choose keys
 * that all collide. */
void dict_seed(uint32_t seed);
void dict_init(dict *d);
void dict_free(dict *d); /* frees the table, not keys/values */
void *dict_get(const dict *d, const char *key, size_t len);
/* Inserts or replaces. Returns 0 or -1 on allocation failure. */
int dict_put(dict *d, const char *key, size_t len, void *val);
/* Removes the key if present; returns its value or NULL. */
void *dict_del(dict *d, const char *key, size_t len);
/* Iterate: for (i = 0; (e = dict_next(d, &i)); ) -- do not modify meanwhile. */
dict_entry *dict_next(const dict *d, uint32_t *iter);

#endif
