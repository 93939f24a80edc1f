/*
 * http_dir.h -- static files on a websockets listener (Mosquitto's http_dir)
 * and the HTTP/1.1 response heads both the handshake and the file server use.
 *
 * No sockets: http_dir_open() maps a request target onto a file under the
 * listener's directory and opens it; the caller sends http_response_head()
 * and the file's bytes, then closes the connection (one request per
 * connection: every response says Connection: close).
 *
 * Refused, in plain words for the log: anything outside the directory (.. or
 * . segments, their percent-encodings, dot-files, symlinks leading out of the
 * directory, NUL), directories without index.html (no listing), files that are
 * not regular, and extensions without a known type.
 */
#ifndef SECBROKER_HTTP_DIR_H
#define SECBROKER_HTTP_DIR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;           /* open file (read-only) on success, -1 otherwise */
    uint64_t size;    /* its size in bytes */
    const char *mime; /* Content-Type, static */
    int status;       /* 200, or the error status to send (400/403/404) */
    char reason[160]; /* plain words for the log on error */
} http_file;

/* Resolves DIR (the http_dir option) once at startup into real (capacity cap,
 * PATH_MAX is enough). Returns 0, or -1 with a reason in err if DIR does not
 * exist or is not a directory. */
int http_dir_root(const char *dir, char *real, size_t cap, char *err, size_t errlen);

/* Opens the file a GET request target (path, optionally ?query) names under
 * root_real (from http_dir_root). "/" and "dir/" mean index.html.
 * Returns 0 with f->fd open (the caller closes it), or -1 with f->status and
 * f->reason set (f->fd = -1). */
int http_dir_open(const char *root_real, const char *target, size_t target_len, http_file *f);

/* Content-Type for a file name by its extension (html htm css js mjs json
 * png svg ico txt), NULL if unknown (not served). */
const char *http_mime_type(const char *name);

/* Writes "HTTP/1.1 <status> <text>" with Content-Type (if not NULL),
 * Content-Length and Connection: close, then extra (zero or more complete
 * "Name: value\r\n" lines, may be NULL) and the blank line. Returns the
 * length, 0 if cap is too small. */
size_t http_response_head(char *buf, size_t cap, int status, const char *content_type,
                          uint64_t content_length, const char *extra);

/* An error response whose text/plain body is reason plus a newline.
 * Returns the length, 0 if cap is too small. */
size_t http_error_response(char *buf, size_t cap, int status, const char *extra,
                           const char *reason);

/* "Not Found" for 404 and so on; "Error" for a status it does not know. */
const char *http_status_text(int status);

#endif
