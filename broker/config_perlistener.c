/* config_perlistener.c -- Mosquitto's per_listener_settings and the
 * security keys it moves (allow_anonymous, password_file, acl_file,
 * allow_zero_length_clientid, auto_id_prefix). With false (the default) they are the
 * broker's wherever they are written, after a listener line too. With true
 * each belongs to the listener block it is written in, and a listener that
 * does not set one has the default (anonymous refused, no password file, no
 * ACL, empty client ids allowed); keys before any listener line are the
 * default listener's (`port`). As in Mosquitto, per_listener_settings true
 * must come before the first security key, since the keys read before it
 * would have gone to the broker instead of a listener. */
#include <string.h>

#include "broker/config_int.h"
#include "broker/err.h"

static const char *const sec_keys[] = {"allow_anonymous", "password_file", "acl_file",
                                       "allow_zero_length_clientid", "auto_id_prefix"};

/* Longest auto_id_prefix: generated ids are the prefix and 32 hex digits. */
#define AUTO_ID_PREFIX_MAX 64

static int auto_id_prefix_key(pctx *p, sec_cfg *s, const char *v)
{
    size_t n = strlen(v);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x21 || v[i] == 0x7f || v[i] == '+' || v[i] == '#' || v[i] == '/')
            return cfg_fail(p,
                            "auto_id_prefix: '%s' may not contain blanks, control characters, "
                            "'+', '#' or '/' (it starts client ids that ACL patterns use as %%c)",
                            v);
    if (n > AUTO_ID_PREFIX_MAX)
        return cfg_fail(p, "auto_id_prefix: %zu bytes, at most %d", n, AUTO_ID_PREFIX_MAX);
    return cfg_str(&s->auto_id_prefix, v) == BK_OK ? BK_OK : cfg_fail(p, "out of memory");
}

/* The sec the key goes to: the broker's, the current listener block's, or
 * before any listener line the default listener's (p->deflt). */
static sec_cfg *sec_target(pctx *p, config *c)
{
    if (!c->per_listener_settings) return &c->sec;
    if (c->nlisteners) return &c->listeners[c->nlisteners - 1].sec;
    return &p->deflt->sec;
}

/* A key for the default listener needs `port` (else the error at the end
 * names it), unless its value is the listener default anyway
 * (allow_anonymous false, allow_zero_length_clientid true): Mosquitto
 * ignores those without a default listener, so such files start. */
static void note_default(pctx *p, const char *key, int k, const sec_cfg *s)
{
    if ((k == 0 && !s->allow_anonymous) || (k == 3 && s->allow_zero_length_clientid)) return;
    if (!p->deflt_used) p->deflt_sec = true; /* the error says why */
    cfg_note_default(p, key);
}

static int per_listener_key(pctx *p, config *c, const char *v)
{
    bool on;
    if (cfg_bool(p, "per_listener_settings", v, &on) != BK_OK) return BK_ERR_CONFIG;
    if (on && p->sec_seen && !c->per_listener_settings)
        return cfg_fail(p, "per_listener_settings true must come before allow_anonymous, "
                           "password_file, acl_file and allow_zero_length_clientid (those "
                           "already read were the whole broker's); move it to the top of the "
                           "file, as Mosquitto requires");
    c->per_listener_settings = on;
    return BK_OK;
}

int cfg_security_key(pctx *p, config *c, const char *key, const char *v)
{
    if (strcmp(key, "per_listener_settings") == 0) return per_listener_key(p, c, v);
    int k = -1;
    for (int i = 0; i < (int)(sizeof sec_keys / sizeof sec_keys[0]); i++)
        if (strcmp(key, sec_keys[i]) == 0) k = i;
    if (k < 0) return NOT_MINE;
    p->sec_seen = true;
    p->anon_set |= k == 0;
    sec_cfg *s = sec_target(p, c);
    int rc;
    if (k == 0 || k == 3) {
        rc = cfg_bool(p, key, v, k == 0 ? &s->allow_anonymous : &s->allow_zero_length_clientid);
    } else if (k == 4) {
        rc = auto_id_prefix_key(p, s, v);
    } else {
        rc = cfg_need_file(p, key, v);
        if (rc == BK_OK && cfg_str(k == 1 ? &s->password_file : &s->acl_file, v) != BK_OK)
            rc = cfg_fail(p, "out of memory");
    }
    if (rc == BK_OK && s == &p->deflt->sec) note_default(p, key, k, s);
    return rc;
}
