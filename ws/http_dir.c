/*
 * http_dir.c -- static files under one directory, and HTTP response heads.
 *
 * Defence in depth against escaping the directory: the decoded path may not
 * contain NUL, backslash, or any segment starting with '.' (which covers ".."
 * and "." in every encoding, since decoding happens first); then realpath()
 * of the result must still lie under the directory's own realpath (which
 * catches symlinks pointing out); and the file is opened with O_NOFOLLOW.
 */
#include "ws/http_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    default:
        return "Error";
    }
}

size_t http_response_head(char *buf, size_t cap, int status, const char *content_type,
                          uint64_t content_length, const char *extra)
{
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %llu\r\nConnection: close\r\n%s\r\n",
                     status, http_status_text(status), content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "",
                     (unsigned long long)content_length, extra ? extra : "");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

size_t http_error_response(char *buf, size_t cap, int status, const char *extra, const char *reason)
{
    size_t blen = strlen(reason) + 1;
    size_t n = http_response_head(buf, cap, status, "text/plain; charset=utf-8", blen, extra);
    if (!n || cap - n <= blen) return 0;
    memcpy(buf + n, reason, blen - 1);
    buf[n + blen - 1] = '\n';
    return n + blen;
}

const char *http_mime_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"png", "image/png"},
        {"svg", "image/svg+xml"},
        {"ico", "image/vnd.microsoft.icon"},
        {"txt", "text/plain; charset=utf-8"},
    };
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash : name, '.');
    if (!dot) return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    return NULL;
}

int http_dir_root(const char *dir, char *real, size_t cap, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    struct stat st;
    if (!realpath(dir, tmp) || stat(tmp, &st) != 0) {
        snprintf(err, errlen, "http_dir %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "http_dir %s: not a directory", dir);
        return -1;
    }
    if (strlen(tmp) >= cap) {
        snprintf(err, errlen, "http_dir %s: path too long", dir);
        return -1;
    }
    strcpy(real, tmp);
    return 0;
}

static int refuse(http_file *f, int status, const char *why)
{
    f->status = status;
    snprintf(f->reason, sizeof f->reason, "%s", why);
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes the path part of target (up to '?' or '#') into out.
 * Returns the length, or -1 (reason set) on a bad or dangerous path. */
static long decode_path(const char *t, size_t tlen, char *out, size_t cap, http_file *f)
{
    size_t n = 0;
    if (!tlen || t[0] != '/') return refuse(f, 400, "request target does not start with /");
    for (size_t i = 0; i < tlen && t[i] != '?' && t[i] != '#'; i++) {
        char c = t[i];
        if (c == '%') {
            int hi = i + 2 < tlen ? hexval(t[i + 1]) : -1, lo = hi >= 0 ? hexval(t[i + 2]) : -1;
            if (lo < 0) return refuse(f, 400, "bad percent-encoding in the path");
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0') return refuse(f, 400, "NUL in the path");
        if (c == '\\') return refuse(f, 400, "backslash in the path");
        if (n + 1 >= cap) return refuse(f, 404, "path too long");
        out[n++] = c;
    }
    out[n] = '\0';
    return (long)n;
}

/* No segment may start with '.': refuses "..", "." and dot-files. */
static int check_segments(const char *path, http_file *f)
{
    for (const char *p = path; (p = strchr(p, '/')) != NULL; p++)
        if (p[1] == '.') return refuse(f, 403, "path segment starting with '.' (escape attempt?)");
    return 0;
}

/* realpath() of root + path, which must lie under root. */
static int resolve(const char *root, const char *path, char *real, http_file *f)
{
    char joined[PATH_MAX];
    int n = snprintf(joined, sizeof joined, "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof joined) return refuse(f, 404, "path too long");
    if (!realpath(joined, real)) return refuse(f, 404, "no such file");
    size_t rl = strlen(root);
    if (strncmp(real, root, rl) != 0 || (real[rl] != '/' && real[rl] != '\0'))
        return refuse(f, 403, "path resolves outside http_dir (symlink?)");
    return 0;
}

/* Opens real as a regular file; a directory means its index.html. */
static int open_file(const char *root, char *real, http_file *f)
{
    struct stat st;
    if (stat(real, &st) != 0) return refuse(f, 404, "no such file");
    if (S_ISDIR(st.st_mode)) {
        char idx[PATH_MAX];
        int n = snprintf(idx, sizeof idx, "%s/index.html", real);
        if (n < 0 || (size_t)n >= sizeof idx) return refuse(f, 404, "path too long");
        if (resolve(root, idx + strlen(root), real, f) != 0) return -1;
        if (stat(real, &st) != 0) return refuse(f, 404, "directory without index.html");
    }
    if (!S_ISREG(st.st_mode)) return refuse(f, 404, "not a regular file");
    f->mime = http_mime_type(real);
    if (!f->mime) return refuse(f, 404, "file type not served");
    f->fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (f->fd < 0) return refuse(f, 404, "file cannot be opened");
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f->fd);
        f->fd = -1;
        return refuse(f, 404, "not a regular file");
    }
    f->size = (uint64_t)st.st_size;
    return 0;
}

int http_dir_open(const char *root_real, const char *target, size_t target_len, http_file *f)
{
    char path[PATH_MAX], real[PATH_MAX];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (decode_path(target, target_len, path, sizeof path, f) < 0) return -1;
    if (check_segments(path, f) != 0) return -1;
    if (resolve(root_real, path, real, f) != 0) return -1;
    if (open_file(root_real, real, f) != 0) return -1;
    f->status = 200;
    return 0;
}
