/* dict.c -- see dict.h. */
#include "broker/dict.h"

#include "broker/rng.h"

#include <stdlib.h>
#include <string.h>

/* ---- SipHash-2-4, from the paper's description ------------------------- */

static uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

/* One message word: c = 2 compression rounds. */
static void sip_absorb(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    sip_round(v);
    sip_round(v);
    v[0] ^= m;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t m = 0;
    for (size_t i = 0; i < n; i++)
        m |= (uint64_t)p[i] << (8 * i);
    return m;
}

uint64_t dict_siphash(const uint64_t key[2], const void *msg, size_t len)
{
    const uint8_t *p = msg;
    uint64_t v[4] = {key[0] ^ 0x736f6d6570736575ULL, key[1] ^ 0x646f72616e646f6dULL,
                     key[0] ^ 0x6c7967656e657261ULL, key[1] ^ 0x7465646279746573ULL};
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8)
        sip_absorb(v, load_le(p + i, 8));
    /* last word: the 0..7 remaining bytes, the length's low byte on top */
    sip_absorb(v, load_le(p + whole, len % 8) | (uint64_t)(len & 0xff) << 56);
    v[2] ^= 0xff; /* finalisation: d = 4 rounds */
    for (int r = 0; r < 4; r++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static uint32_t table_hash(const dict *d, const char *key, size_t len)
{
    return (uint32_t)dict_siphash(d->sip, key, len);
}

void dict_init(dict *d)
{
    d->slots = NULL;
    d->cap = 0;
    d->count = 0;
    d->sip[0] = d->sip[1] = 0;
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
    dict_entry *e = find(d, key, len, table_hash(d, key, len));
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
    /* an empty table takes a fresh key: hashes of the old one are gone */
    if (!d->slots && rng_bytes(d->sip, sizeof d->sip) < 0) return -1;
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
    dict_entry *e = find(d, key, len, table_hash(d, key, len));
    if (e) {
        e->key = key; /* the new value owns the key storage now */
        e->val = val;
        return 0;
    }
    if ((d->count + 1) * 4 > d->cap * 3 && grow(d) < 0) return -1;
    /* hashed after grow: the first insert is what picks the table's key */
    dict_entry ne = {table_hash(d, key, len), (uint32_t)len, key, val};
    insert_slot(d->slots, d->cap, &ne);
    d->count++;
    return 0;
}

void *dict_del(dict *d, const char *key, size_t len)
{
    dict_entry *e = find(d, key, len, table_hash(d, key, len));
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
