/*
 * rules.c -- Mosquitto ACL files: load once, check per message.
 *
 * Grammar (Mosquitto 2.0): blank lines and lines starting with '#' are
 * ignored; leading and trailing blanks are trimmed.
 *   topic   [read|write|readwrite|deny] TOPIC    no access word = readwrite
 *   pattern [read|write|readwrite|deny] TOPIC    %c / %u as a whole level
 *   user    NAME                                 rest of the line, trimmed
 * TOPIC is the rest of the line after the access word (it may contain
 * spaces) and must be a valid MQTT topic filter (mqtt_topic_filter_validate).
 * `topic` lines before the first `user` line belong to anonymous clients,
 * later ones to the last named user (a user named twice gets both groups);
 * `pattern` lines apply to everybody wherever they appear.
 *
 * Meaning: what no applicable rule grants is denied, and a matching deny rule
 * (topic or pattern) wins over any grant. Mosquitto 2.0 lets a user's topic
 * grant short-circuit before pattern denies are seen; we do not.
 *
 * Matching and covering are mqtt/'s topic engine (mqtt_match_level), fed
 * the rule's levels one by one with %c/%u replaced.
 *
 * Layout for the hot path (acl_check per message per subscriber): rules are
 * split into levels at load time; each owner (anonymous, each user, the
 * pattern list) owns a contiguous slice of one array with its deny rules
 * first; users are sorted for binary search. A check allocates nothing and
 * walks the topic once per candidate rule.
 */
#include "acl/acl.h"
#include "acl/acl_int.h"
#include "mqtt/mqtt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The first three are mqtt/'s level kinds; %c and %u levels are text once
 * substituted. */
enum lvl_kind {
    LV_LIT = MQTT_LEVEL_TEXT,
    LV_PLUS = MQTT_LEVEL_PLUS,
    LV_HASH = MQTT_LEVEL_HASH,
    LV_CID,
    LV_UID
};

struct acl_level {
    uint32_t off; /* into pool; LV_LIT only */
    uint32_t len;
    uint8_t kind;
};

struct acl_rule {
    uint32_t first; /* index into levels */
    uint32_t nlevels;
    uint8_t access; /* ACL_READ|ACL_WRITE, 0 = deny */
    uint8_t subst;  /* bit 1: uses %c, bit 2: uses %u */
    int32_t owner;  /* load time: -2 patterns, -1 anonymous, >= 0 user index */
    uint32_t seq;   /* load time: file order, keeps the sort stable */
};

struct acl_slice {
    uint32_t start, ndeny, end; /* rules[start, start+ndeny) deny, then grants to end */
};

struct acl_user {
    char *name;
    struct acl_slice sl;
};

struct acl_rules {
    char *pool;
    struct acl_level *levels;
    struct acl_rule *rules;
    struct acl_user *users; /* sorted by name */
    size_t nusers;
    struct acl_slice anon;
    struct acl_slice patterns;
};

#define SUBST_CID 1
#define SUBST_UID 2

/* ---- loading ------------------------------------------------------------ */

struct loader {
    const char *path;
    char *err;
    size_t errlen;
    char *pool;
    size_t npool, cpool;
    struct acl_level *levels;
    size_t nlevels, clevels;
    struct acl_rule *rules;
    size_t nrules, crules;
    struct acl_user *users; /* in first-appearance order while loading */
    size_t nusers, cusers;
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return false;
    *p = np;
    *cap = nc;
    return true;
}

static int loader_user(struct loader *ld, const char *name, size_t len, int32_t *owner)
{
    for (size_t i = 0; i < ld->nusers; i++)
        if (strlen(ld->users[i].name) == len && memcmp(ld->users[i].name, name, len) == 0) {
            *owner = (int32_t)i;
            return ACL_OK;
        }
    if (ld->nusers >= INT32_MAX ||
        !grow((void **)&ld->users, &ld->cusers, ld->nusers + 1, sizeof *ld->users))
        return ACL_ERR_ALLOC;
    char *copy = malloc(len + 1);
    if (!copy) return ACL_ERR_ALLOC;
    memcpy(copy, name, len);
    copy[len] = '\0';
    memset(&ld->users[ld->nusers], 0, sizeof ld->users[0]);
    ld->users[ld->nusers].name = copy;
    *owner = (int32_t)ld->nusers++;
    return ACL_OK;
}

/* One level of a rule: a wildcard, a whole-level %c/%u of a pattern, or
 * literal text copied into the pool. "%c" inside a longer level is literal
 * text, as in Mosquitto. */
static void loader_level(struct loader *ld, struct acl_rule *r, struct acl_level *lv, bool pattern,
                         const char *s, size_t ll)
{
    lv->off = 0;
    lv->len = 0;
    enum mqtt_level_kind k = mqtt_level_kind((const uint8_t *)s, ll);
    if (k == MQTT_LEVEL_PLUS) {
        lv->kind = LV_PLUS;
    } else if (k == MQTT_LEVEL_HASH) {
        lv->kind = LV_HASH;
    } else if (pattern && ll == 2 && s[0] == '%' && (s[1] == 'c' || s[1] == 'u')) {
        lv->kind = s[1] == 'c' ? LV_CID : LV_UID;
        r->subst |= s[1] == 'c' ? SUBST_CID : SUBST_UID;
    } else {
        lv->kind = LV_LIT;
        lv->off = (uint32_t)ld->npool;
        lv->len = (uint32_t)ll;
        memcpy(ld->pool + ld->npool, s, ll);
        ld->npool += ll;
    }
}

static int loader_rule(struct loader *ld, bool pattern, int32_t owner, uint8_t access,
                       const char *t, size_t n)
{
    if (n > UINT32_MAX / 2 || ld->nrules >= UINT32_MAX / 2) return ACL_ERR_ALLOC;
    if (!grow((void **)&ld->rules, &ld->crules, ld->nrules + 1, sizeof *ld->rules))
        return ACL_ERR_ALLOC;
    if (!grow((void **)&ld->pool, &ld->cpool, ld->npool + n, 1)) return ACL_ERR_ALLOC;
    struct acl_rule *r = &ld->rules[ld->nrules];
    memset(r, 0, sizeof *r);
    r->first = (uint32_t)ld->nlevels;
    r->access = access;
    r->owner = pattern ? -2 : owner;
    r->seq = (uint32_t)ld->nrules;
    mqtt_levels it;
    for (mqtt_levels_init(&it, (const uint8_t *)t, n); !it.done; mqtt_levels_next(&it)) {
        if (!grow((void **)&ld->levels, &ld->clevels, ld->nlevels + 1, sizeof *ld->levels))
            return ACL_ERR_ALLOC;
        loader_level(ld, r, &ld->levels[ld->nlevels++], pattern, (const char *)it.ptr, it.len);
        r->nlevels++;
    }
    ld->nrules++;
    return ACL_OK;
}

static bool is_sp(char c)
{
    return c == ' ' || c == '\t';
}

/* The words after `topic`/`pattern`: an optional access word, then the
 * topic (the rest of the line, spaces included). Fills *topic, *tlen and
 * *access, or reports the line as malformed. */
static int loader_access(struct loader *ld, size_t lineno, const char *kw, const char *rest,
                         size_t rlen, const char **topic, size_t *tlen, uint8_t *access)
{
    static const struct {
        const char *word;
        uint8_t access;
    } words[] = {
        {"read", ACL_READ}, {"write", ACL_WRITE}, {"readwrite", ACL_READ | ACL_WRITE}, {"deny", 0}};
    size_t j = 0;
    while (j < rlen && !is_sp(rest[j]))
        j++;
    size_t wlen = j;
    while (j < rlen && is_sp(rest[j]))
        j++;
    int w = -1;
    for (int k = 0; k < 4; k++)
        if (strlen(words[k].word) == wlen && memcmp(rest, words[k].word, wlen) == 0) w = k;
    if (w < 0 && j < rlen) {
        acl_seterr(ld->err, ld->errlen, ld->path, lineno,
                   "unknown access '%.*s' (expected read, write, readwrite or deny; a topic "
                   "with spaces needs an access word)",
                   (int)(wlen > 40 ? 40 : wlen), rest);
        return ACL_ERR_SYNTAX;
    }
    if (w < 0) { /* one word: the topic, readwrite */
        *topic = rest, *tlen = rlen, *access = ACL_READ | ACL_WRITE;
        return ACL_OK;
    }
    *topic = rest + j, *tlen = rlen - j, *access = words[w].access;
    if (*tlen == 0) {
        /* Mosquitto would take the access word itself as the topic; that
         * is never what the author meant */
        acl_seterr(ld->err, ld->errlen, ld->path, lineno, "'%s %s' without a topic", kw,
                   words[w].word);
        return ACL_ERR_SYNTAX;
    }
    return ACL_OK;
}

/* A `topic` or `pattern` line after its keyword: the rule's filter must be
 * a valid MQTT topic filter (mqtt/'s validator: UTF-8, wildcards whole
 * levels, '#' last). */
static int loader_topic_line(struct loader *ld, size_t lineno, bool pattern, const char *rest,
                             size_t rlen, int32_t owner)
{
    const char *kw = pattern ? "pattern" : "topic";
    if (rlen == 0) {
        acl_seterr(ld->err, ld->errlen, ld->path, lineno, "'%s' without a topic", kw);
        return ACL_ERR_SYNTAX;
    }
    const char *topic;
    size_t tlen;
    uint8_t access;
    int rc = loader_access(ld, lineno, kw, rest, rlen, &topic, &tlen, &access);
    if (rc != ACL_OK) return rc;
    rc = mqtt_topic_filter_validate((const uint8_t *)topic, tlen);
    if (rc == MQTT_ERR_UTF8) {
        acl_seterr(ld->err, ld->errlen, ld->path, lineno,
                   "invalid topic filter (not valid UTF-8, or a NUL character)");
        return ACL_ERR_SYNTAX;
    }
    if (rc != MQTT_OK) {
        acl_seterr(ld->err, ld->errlen, ld->path, lineno,
                   "invalid topic filter ('+' and '#' must fill a whole level, '#' only last; "
                   "at most 65535 bytes)");
        return ACL_ERR_SYNTAX;
    }
    rc = loader_rule(ld, pattern, owner, access, topic, tlen);
    if (rc) acl_seterr(ld->err, ld->errlen, ld->path, lineno, "out of memory");
    return rc;
}

/* Parse one trimmed, non-empty, non-comment line. */
static int loader_line(struct loader *ld, size_t lineno, char *s, size_t len, int32_t *owner)
{
    size_t i = 0;
    while (i < len && !is_sp(s[i]))
        i++;
    size_t kwlen = i;
    while (i < len && is_sp(s[i]))
        i++;
    char *rest = s + i;
    size_t rlen = len - i;

    if (kwlen == 4 && memcmp(s, "user", 4) == 0) {
        if (rlen == 0) {
            acl_seterr(ld->err, ld->errlen, ld->path, lineno, "'user' without a user name");
            return ACL_ERR_SYNTAX;
        }
        int rc = loader_user(ld, rest, rlen, owner);
        if (rc) acl_seterr(ld->err, ld->errlen, ld->path, lineno, "out of memory");
        return rc;
    }
    bool pattern = kwlen == 7 && memcmp(s, "pattern", 7) == 0;
    if (!pattern && !(kwlen == 5 && memcmp(s, "topic", 5) == 0)) {
        acl_seterr(ld->err, ld->errlen, ld->path, lineno,
                   "unknown keyword '%.*s' (expected topic, pattern or user)",
                   (int)(kwlen > 40 ? 40 : kwlen), s);
        return ACL_ERR_SYNTAX;
    }
    return loader_topic_line(ld, lineno, pattern, rest, rlen, *owner);
}

static int rule_cmp(const void *a, const void *b)
{
    const struct acl_rule *x = a, *y = b;
    if (x->owner != y->owner) return x->owner < y->owner ? -1 : 1;
    bool xd = x->access == 0, yd = y->access == 0;
    if (xd != yd) return xd ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int user_cmp(const void *a, const void *b)
{
    return strcmp(((const struct acl_user *)a)->name, ((const struct acl_user *)b)->name);
}

void acl_rules_free(acl_rules *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nusers; i++)
        free(r->users[i].name);
    free(r->users);
    free(r->rules);
    free(r->levels);
    free(r->pool);
    free(r);
}

int acl_rules_load(const char *path, acl_rules **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!path || !out) return ACL_ERR_ARG;
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        acl_seterr(err, errlen, path, 0, "cannot open ACL file: %s", strerror(errno));
        return ACL_ERR_FILE;
    }
    struct loader ld;
    memset(&ld, 0, sizeof ld);
    ld.path = path;
    ld.err = err;
    ld.errlen = errlen;
    char *buf = NULL;
    size_t cap = 0, len, lineno = 0;
    int has_nul, rc = ACL_OK;
    int32_t owner = -1;
    char *s;
    while ((s = acl_read_line(f, &buf, &cap, &len, &has_nul)) != NULL) {
        lineno++;
        if (has_nul) {
            acl_seterr(err, errlen, path, lineno, "NUL byte in line");
            rc = ACL_ERR_SYNTAX;
            break;
        }
        if (len == 0 || s[0] == '#') continue;
        rc = loader_line(&ld, lineno, s, len, &owner);
        if (rc != ACL_OK) break;
    }
    if (rc == ACL_OK && ferror(f)) {
        acl_seterr(err, errlen, path, 0, "read error: %s", strerror(errno));
        rc = ACL_ERR_FILE;
    }
    free(buf);
    fclose(f);

    acl_rules *r = NULL;
    if (rc == ACL_OK && !(r = calloc(1, sizeof *r))) {
        acl_seterr(err, errlen, path, 0, "out of memory");
        rc = ACL_ERR_ALLOC;
    }
    if (rc != ACL_OK) {
        for (size_t i = 0; i < ld.nusers; i++)
            free(ld.users[i].name);
        free(ld.users);
        free(ld.rules);
        free(ld.levels);
        free(ld.pool);
        return rc;
    }
    if (ld.nrules > 1) qsort(ld.rules, ld.nrules, sizeof *ld.rules, rule_cmp);
    /* slice per owner: owners sort as -2 (patterns), -1 (anonymous), 0.. */
    for (size_t i = 0; i < ld.nrules;) {
        size_t j = i, ndeny = 0;
        while (j < ld.nrules && ld.rules[j].owner == ld.rules[i].owner) {
            if (ld.rules[j].access == 0) ndeny++;
            j++;
        }
        struct acl_slice sl = {(uint32_t)i, (uint32_t)ndeny, (uint32_t)j};
        int32_t o = ld.rules[i].owner;
        if (o == -2)
            r->patterns = sl;
        else if (o == -1)
            r->anon = sl;
        else
            ld.users[o].sl = sl;
        i = j;
    }
    if (ld.nusers > 1) qsort(ld.users, ld.nusers, sizeof *ld.users, user_cmp);
    r->pool = ld.pool;
    r->levels = ld.levels;
    r->rules = ld.rules;
    r->users = ld.users;
    r->nusers = ld.nusers;
    *out = r;
    return ACL_OK;
}

/* ---- checking ----------------------------------------------------------- */

/* The identity a check runs for. A substitution value is NULL when it is
 * missing or empty (the rule simply does not apply) and "bad" when it holds
 * '+', '#' or '/' (see subst_state). */
struct who {
    const char *cid, *uid;
    size_t cidlen, uidlen;
    bool cid_bad, uid_bad;
};

/* The text a rule level stands for, or false if it cannot match anything. */
static bool level_text(const acl_rules *r, const struct acl_level *lv, const struct who *w,
                       const char **p, size_t *n)
{
    switch (lv->kind) {
    case LV_LIT:
        *p = r->pool + lv->off, *n = lv->len;
        return true;
    case LV_CID:
        *p = w->cid, *n = w->cidlen;
        return w->cid != NULL;
    case LV_UID:
        *p = w->uid, *n = w->uidlen;
        return w->uid != NULL;
    default:
        return false;
    }
}

/* Does rule filter match topic name t (is_filter false), or cover
 * subscription filter t (is_filter true)? The rule's levels, with %c/%u
 * replaced by the client's values, are fed one by one to mqtt/'s matcher,
 * which owns the wildcard and '$' rules [MQTT-4.7.1-2..3] [MQTT-4.7.2-1].
 * A substituted level is always text: values holding '+', '#' or '/' never
 * get here (subst_state). */
static bool rule_applies(const acl_rules *r, const struct acl_rule *ru, const struct who *w,
                         const char *t, size_t n, bool is_filter)
{
    mqtt_match m;
    mqtt_match_init(&m, (const uint8_t *)t, n, is_filter);
    const struct acl_level *lv = r->levels + ru->first;
    for (uint32_t i = 0; i < ru->nlevels; i++, lv++) {
        enum mqtt_level_kind k =
            lv->kind > LV_HASH ? MQTT_LEVEL_TEXT : (enum mqtt_level_kind)lv->kind;
        const char *p = NULL;
        size_t pl = 0;
        if (k == MQTT_LEVEL_TEXT && !level_text(r, lv, w, &p, &pl)) return false;
        enum mqtt_match_result res =
            mqtt_match_level(&m, k, (const uint8_t *)p, pl, i + 1 == ru->nlevels);
        if (res != MQTT_MATCH_MORE) return res == MQTT_MATCH_YES;
    }
    return false; /* a rule has at least one level and the last one decides */
}

enum { SUBST_APPLY, SUBST_SKIP, SUBST_POISON };

/* Can this rule be evaluated for w? A value holding '+', '#' or '/' cannot be
 * placed in one level without changing the filter's meaning (Mosquitto
 * refuses such identities in patterns): such a rule never grants, and as a
 * deny rule it denies everything, because we cannot tell what it was meant
 * to keep that client away from. */
static int subst_state(const struct acl_rule *ru, const struct who *w)
{
    if (!ru->subst) return SUBST_APPLY;
    if (((ru->subst & SUBST_CID) && w->cid_bad) || ((ru->subst & SUBST_UID) && w->uid_bad))
        return SUBST_POISON;
    if (((ru->subst & SUBST_CID) && !w->cid) || ((ru->subst & SUBST_UID) && !w->uid))
        return SUBST_SKIP;
    return SUBST_APPLY;
}

/* Does a deny rule of sl apply? A topic name (READ/WRITE) must match it; a
 * subscription filter must be covered by it: a deny that only overlaps the
 * filter is enforced per message by the READ check at delivery. */
static bool slice_denies(const acl_rules *r, const struct acl_slice *sl, const struct who *w,
                         const char *t, size_t n, int access)
{
    bool sub = access == ACL_SUBSCRIBE;
    for (uint32_t i = sl->start; i < sl->start + sl->ndeny; i++) {
        const struct acl_rule *ru = &r->rules[i];
        int st = subst_state(ru, w);
        if (st == SUBST_POISON) return true;
        if (st == SUBST_SKIP) continue;
        if (rule_applies(r, ru, w, t, n, sub)) return true;
    }
    return false;
}

/* Does a grant rule of sl with the needed bit match (READ/WRITE) or cover
 * (SUBSCRIBE needs READ) t? */
static bool slice_grants(const acl_rules *r, const struct acl_slice *sl, const struct who *w,
                         const char *t, size_t n, int access)
{
    bool sub = access == ACL_SUBSCRIBE;
    int bit = sub ? ACL_READ : access;
    for (uint32_t i = sl->start + sl->ndeny; i < sl->end; i++) {
        const struct acl_rule *ru = &r->rules[i];
        if (!(ru->access & bit) || subst_state(ru, w) != SUBST_APPLY) continue;
        if (rule_applies(r, ru, w, t, n, sub)) return true;
    }
    return false;
}

static const struct acl_slice *user_slice(const acl_rules *r, const char *username)
{
    if (!username) return &r->anon;
    size_t lo = 0, hi = r->nusers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(username, r->users[mid].name);
        if (c == 0) return &r->users[mid].sl;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* A whole-level substitution value, or NULL when missing, empty or bad. */
static const char *subst_value(const char *v, size_t *len, bool *bad)
{
    *len = 0;
    *bad = v && strpbrk(v, "+#/") != NULL;
    if (!v || !v[0] || *bad) return NULL;
    *len = strlen(v);
    return v;
}

int acl_check(const acl_rules *r, const char *username, const char *client_id, const char *topic,
              size_t topic_len, int access)
{
    /* fail closed: no rule set means the caller skipped loading */
    if (!r || !topic || topic_len == 0) return ACL_ERR_DENIED;
    if (access == ACL_SUBSCRIBE) {
        if (mqtt_topic_filter_validate((const uint8_t *)topic, topic_len) != MQTT_OK)
            return ACL_ERR_DENIED;
    } else if (access == ACL_READ || access == ACL_WRITE) {
        if (memchr(topic, '+', topic_len) || memchr(topic, '#', topic_len)) return ACL_ERR_DENIED;
    } else {
        return ACL_ERR_DENIED;
    }
    struct who w = {0};
    w.cid = subst_value(client_id, &w.cidlen, &w.cid_bad);
    w.uid = subst_value(username, &w.uidlen, &w.uid_bad);

    const struct acl_slice *own = user_slice(r, username);
    /* every deny, in both lists, before any grant */
    if ((own && slice_denies(r, own, &w, topic, topic_len, access)) ||
        slice_denies(r, &r->patterns, &w, topic, topic_len, access))
        return ACL_ERR_DENIED;
    if ((own && slice_grants(r, own, &w, topic, topic_len, access)) ||
        slice_grants(r, &r->patterns, &w, topic, topic_len, access))
        return ACL_OK;
    return ACL_ERR_DENIED;
}
