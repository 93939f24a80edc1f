/* config_include.c -- include_dir, with Mosquitto's rule: every file of the
 * directory whose name ends in ".conf", in byte order of the names, read as
 * if its lines were at the include_dir line. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/config_int.h"
#include "broker/err.h"

/* include_dir inside an included file inside ... stops here (a loop). */
#define INCLUDE_MAX_DEPTH 8

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_conf(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".conf") == 0 && name[0] != '.';
}

/* The sorted "*.conf" names of dir in *out (count in *n). BK_OK or an error. */
static int list_conf(pctx *p, const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d) return cfg_fail(p, "include_dir: cannot open %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    int rc = BK_OK;
    while ((e = readdir(d))) {
        if (!is_conf(e->d_name)) continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if (!(names[cnt] = strdup(e->d_name))) break;
        cnt++;
    }
    if (e) rc = cfg_fail(p, "include_dir %s: out of memory", dir);
    closedir(d);
    qsort(names, cnt, sizeof *names, by_name);
    *out = names;
    *n = cnt;
    return rc;
}

int cfg_include_dir(pctx *p, config *c, const char *dir)
{
    if (p->depth >= INCLUDE_MAX_DEPTH)
        return cfg_fail(p, "include_dir %s: nested more than %d deep (does it include itself?)",
                        dir, INCLUDE_MAX_DEPTH);
    char **names = NULL;
    size_t n = 0;
    int rc = list_conf(p, dir, &names, &n);
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    p->depth++;
    for (size_t i = 0; i < n; i++) {
        size_t len = dlen + strlen(names[i]) + 2;
        char *path = malloc(len);
        if (path) {
            snprintf(path, len, "%.*s/%s", (int)dlen, dir, names[i]);
            if (cfg_parse_path(p, c, path) != BK_OK) rc = BK_ERR_CONFIG;
        } else {
            rc = cfg_fail(p, "include_dir %s: out of memory", dir);
        }
        free(path);
        free(names[i]);
    }
    p->depth--;
    free(names);
    return rc;
}
