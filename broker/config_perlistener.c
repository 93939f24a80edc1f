/* config_perlistener.c -- Mosquitto's per_listener_settings. With true,
 * allow_anonymous, password_file and acl_file belong to the listener block
 * they are written in (before any listener line: the default listener of
 * `port`), and a listener without them has the defaults (anonymous refused,
 * no password file, no ACL). secbroker keeps one security setting for the
 * whole broker, so it accepts per_listener_settings true when every listener
 * ends up with the same three values, and otherwise says so. */
#include <stdlib.h>
#include <string.h>

#include "broker/config_int.h"
#include "broker/err.h"

static const char *const sec_keys[3] = {"allow_anonymous", "password_file", "acl_file"};

int cfg_security_key(pctx *p, config *c, const char *key, const char *v)
{
    int k = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(key, sec_keys[i]) == 0) k = i;
    if (k < 0) return NOT_MINE;
    size_t blk = c->nlisteners; /* 0: before any listener line */
    if (blk >= p->nsec) {
        struct sec_block *n = realloc(p->sec, (blk + 1) * sizeof *n);
        if (!n) return cfg_fail(p, "out of memory");
        memset(n + p->nsec, 0, (blk + 1 - p->nsec) * sizeof *n);
        p->sec = n;
        p->nsec = blk + 1;
    }
    char *copy = strdup(v);
    if (!copy) return cfg_fail(p, "out of memory");
    free(p->sec[blk].val[k]);
    p->sec[blk].val[k] = copy;
    return NOT_MINE;
}

void cfg_security_free(pctx *p)
{
    for (size_t i = 0; i < p->nsec; i++)
        for (int k = 0; k < 3; k++)
            free(p->sec[i].val[k]);
    free(p->sec);
    p->sec = NULL;
    p->nsec = 0;
}

static bool same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The block's value of key k ("false" for allow_anonymous when unset). */
static const char *block_val(const pctx *p, size_t blk, int k)
{
    const char *v = blk < p->nsec ? p->sec[blk].val[k] : NULL;
    return v || k ? v : "false";
}

/* With per_listener_settings true: BK_OK when all listeners agree (the
 * global values are then theirs), else an error naming the key. */
int cfg_per_listener_check(pctx *p, config *c)
{
    if (!c->per_listener_settings) return BK_OK;
    /* the blocks that are listeners: 1..n, and 0 when `port` made the default one */
    size_t first = p->default_port >= 0 ? 0 : 1, last = c->nlisteners - (first == 0 ? 1 : 0);
    if (last < first) return BK_OK; /* no listener line: the global values stand */
    for (int k = 0; k < 3; k++)
        for (size_t i = first + 1; i <= last; i++)
            if (!same(block_val(p, first, k), block_val(p, i, k)))
                return cfg_fail(p,
                                "per_listener_settings true with a different %s per listener: "
                                "secbroker has one %s for all listeners; give every listener "
                                "block the same value, or run one broker per setting",
                                sec_keys[k], sec_keys[k]);
    /* what the listeners have, not what a block without a listener said */
    c->allow_anonymous = strcmp(block_val(p, first, 0), "true") == 0;
    const char *pw = block_val(p, first, 1), *acl = block_val(p, first, 2);
    free(c->password_file);
    free(c->acl_file);
    c->password_file = pw ? strdup(pw) : NULL;
    c->acl_file = acl ? strdup(acl) : NULL;
    if ((pw && !c->password_file) || (acl && !c->acl_file)) return cfg_fail(p, "out of memory");
    return BK_OK;
}
