/* dict.c -- see dict.h. */
#include "broker/dict.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_seed = 2166136261u;

void dict_seed(uint32_t seed)
{
    hash_seed = 2166136261u ^ seed;
}

uint32_t dict_hash(const char *key, size_t len)
{
    /* FNV-1a from a random basis: short keys (topic levels, client ids) dominate. */
    uint32_t h = hash_seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)key[i];
        h *= 16777619u;
    }
    return h;
}

void dict_init(dict *d)
{
    d->slots = NULL;
    d->cap = 0;
    d->count = 0;
}

void dict_free(dict *d)
{
    free(d->slots);
    dict_init(d);
}

static dict_entry *find(const dict *d, const char *key, size_t len, uint32_t h)
{
    if (!d->slots) return NULL;
    uint32_t mask = d->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        dict_entry *e = &d->slots[i];
        if (!e->key) return NULL;
        if (e->hash == h && e->klen == len && memcmp(e->key, key, len) == 0) return e;
    }
}

void *dict_get(const dict *d, const char *key, size_t len)
{
    dict_entry *e = find(d, key, len, dict_hash(key, len));
    return e ? e->val : NULL;
}

static void insert_slot(dict_entry *slots, uint32_t cap, const dict_entry *src)
{
    uint32_t mask = cap - 1;
    uint32_t i = src->hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = *src;
}

static int grow(dict *d)
{
    uint32_t ncap = d->cap ? d->cap * 2 : 4;
    dict_entry *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (uint32_t i = 0; i < d->cap; i++)
        if (d->slots[i].key) insert_slot(ns, ncap, &d->slots[i]);
    free(d->slots);
    d->slots = ns;
    d->cap = ncap;
    return 0;
}

int dict_put(dict *d, const char *key, size_t len, void *val)
{
    uint32_t h = dict_hash(key, len);
    dict_entry *e = find(d, key, len, h);
    if (e) {
        e->key = key; /* the new value owns the key storage now */
        e->val = val;
        return 0;
    }
    if ((d->count + 1) * 4 > d->cap * 3 && grow(d) < 0) return -1;
    dict_entry ne = {h, (uint32_t)len, key, val};
    insert_slot(d->slots, d->cap, &ne);
    d->count++;
    return 0;
}

void *dict_del(dict *d, const char *key, size_t len)
{
    uint32_t h = dict_hash(key, len);
    dict_entry *e = find(d, key, len, h);
    if (!e) return NULL;
    void *val = e->val;
    uint32_t mask = d->cap - 1;
    uint32_t i = (uint32_t)(e - d->slots);
    /* Backward-shift: move later entries of the same probe run into the hole. */
    for (uint32_t j = (i + 1) & mask; d->slots[j].key; j = (j + 1) & mask) {
        uint32_t home = d->slots[j].hash & mask;
        /* can entry j move to i? only if its home is not in (i, j] cyclically */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            d->slots[i] = d->slots[j];
            i = j;
        }
    }
    memset(&d->slots[i], 0, sizeof d->slots[i]);
    d->count--;
    return val;
}

dict_entry *dict_next(const dict *d, uint32_t *iter)
{
    while (*iter < d->cap) {
        dict_entry *e = &d->slots[(*iter)++];
        if (e->key) return e;
    }
    return NULL;
}
