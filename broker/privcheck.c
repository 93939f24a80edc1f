/* privcheck.c -- see privcheck.h. Permission bits are checked the way the
 * kernel will check them for the user (owner, then group, then others),
 * on the file and on each directory above it. */
#include "broker/privcheck.h"

#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/log.h"

#define MAX_GROUPS 256

typedef struct {
    const char *name;
    uid_t uid;
    gid_t groups[MAX_GROUPS];
    int ngroups;
} who;

/* want: 4 read, 2 write, 1 search/execute. */
static bool may(const who *w, const struct stat *st, unsigned want)
{
    unsigned mode = st->st_mode;
    if (st->st_uid == w->uid) return ((mode >> 6) & want) == want;
    for (int i = 0; i < w->ngroups; i++)
        if (st->st_gid == w->groups[i]) return ((mode >> 3) & want) == want;
    return (mode & want) == want;
}

/* The first directory above path (or path itself, for a directory) the
 * user cannot search, copied into out; false when all can be searched. */
static bool blocked_dir(const who *w, const char *path, char *out, size_t len)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf[0] == '/' ? strchr(buf + 1, '/') : strchr(buf, '/'); s;
         s = strchr(s + 1, '/')) {
        *s = 0;
        struct stat st;
        if (buf[0] && stat(buf, &st) == 0 && S_ISDIR(st.st_mode) && !may(w, &st, 1)) {
            snprintf(out, len, "%s", buf);
            return true;
        }
        *s = '/';
    }
    return false;
}

static int check(const who *w, const char *key, const char *path, unsigned want, bool dir)
{
    if (!path) return 0;
    char where[4096];
    struct stat st;
    const char *verb = want & 2 ? "write" : "read";
    if (blocked_dir(w, path, where, sizeof where)) {
        log_msg(LL_WARNING,
                "user %s cannot enter directory %s, so it cannot %s %s %s after dropping "
                "privileges (chmod o+x or chgrp the directory)",
                w->name, where, verb, key, path);
        return 1;
    }
    if (stat(path, &st) != 0) return 0; /* created later, in a directory checked above */
    if (may(w, &st, want | (dir ? 1u : 0u))) return 0;
    log_msg(LL_WARNING,
            "user %s cannot %s %s %s (owner uid %u, mode %04o): it is %s again after "
            "privileges are dropped; chown or chgrp it to %s",
            w->name, verb, key, path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
            dir ? "written" : "used", w->name);
    return 1;
}

int privcheck_warn(const config *c)
{
    if (geteuid() != 0 || !c->user) return 0;
    struct passwd *pw = getpwnam(c->user);
    if (!pw) return 0;
    who w = {.name = c->user, .uid = pw->pw_uid, .ngroups = MAX_GROUPS};
    if (getgrouplist(pw->pw_name, pw->pw_gid, w.groups, &w.ngroups) < 0) {
        w.groups[0] = pw->pw_gid;
        w.ngroups = 1;
    }
    if (w.uid == 0) return 0;
    int n = check(&w, "password_file", c->sec.password_file, 4, false);
    n += check(&w, "acl_file", c->sec.acl_file, 4, false);
    for (size_t i = 0; c->per_listener_settings && i < c->nlisteners; i++) {
        n += check(&w, "password_file", c->listeners[i].sec.password_file, 4, false);
        n += check(&w, "acl_file", c->listeners[i].sec.acl_file, 4, false);
    }
    if (c->persistence)
        n += check(&w, "persistence_location",
                   c->persistence_location ? c->persistence_location : ".", 2, true);
    if (c->log_dests & LOGD_FILE) n += check(&w, "log_dest file", c->log_file, 2, false);
    return n;
}
