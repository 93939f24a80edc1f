/*
 * secpasswd -- manage Mosquitto-compatible password files.
 *
 *   secpasswd [-H hash] [-c] [-b] [-D] [-I iterations] FILE USER [PASSWORD]
 *   secpasswd [-H hash] [-I iterations] -U FILE
 *
 * Writes "USER:$7$ITER$SALT$HASH" lines (PBKDF2-HMAC-SHA512, 12-byte salt),
 * never clear text, so Mosquitto and secbroker read the same file. The file
 * is rewritten atomically: FILE.tmp.PID in the same directory, fsync, rename,
 * keeping the original mode and owner; other lines (comments too) are kept
 * byte for byte. Exit 0 on success, 1 with one line on stderr otherwise.
 */
#include "acl/acl.h"
#include "mqtt/mqtt.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define MAX_FIELD 65535

static const char usage_text[] =
    "usage: secpasswd [-H hash] [-c] [-b] [-D] [-I iterations] FILE USER [PASSWORD]\n"
    "       secpasswd [-H hash] [-I iterations] -U FILE\n"
    "Add or update USER in the Mosquitto-format password FILE, or delete USER.\n"
    "  -c             create FILE (overwrite it if it exists) with just this user\n"
    "  -b             take PASSWORD from the command line (visible to other users\n"
    "                 through ps and shell history); otherwise prompt twice on the terminal\n"
    "  -D             delete USER from FILE\n"
    "  -I iterations  PBKDF2 iterations (default %u, what mosquitto_passwd writes)\n"
    "  -H hash        sha512-pbkdf2 ($7$, the default) or sha512 ($6$, for Mosquitto\n"
    "                 1.6 and older)\n"
    "  -U             hash every clear-text USER:PASSWORD line of FILE in place (lines\n"
    "                 already hashed are kept and named on stderr)\n"
    "  --help         show this text\n"
    "Lines are written as USER:$7$ITERATIONS$SALT$HASH (PBKDF2-HMAC-SHA512), never\n"
    "in clear text. FILE is replaced atomically and keeps its mode; a new FILE is\n"
    "created with mode 0600 (give the broker's user read access if it needs it).\n";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("secpasswd: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Securely clear a buffer the compiler might otherwise skip clearing. */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* ---- user names --------------------------------------------------------- */

/* NULL if the name can be stored in a password file, else the reason. */
static const char *user_problem(const char *u)
{
    size_t n = strlen(u);
    if (n == 0) return "the user name is empty";
    if (n > MAX_FIELD) return "the user name is longer than 65535 bytes";
    if (strchr(u, ':')) return "the user name contains ':', which separates name and hash";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c < 0x20 || c == 0x7F) return "the user name contains a control character";
    }
    if (u[0] == ' ' || u[n - 1] == ' ')
        return "the user name starts or ends with a space (brokers trim it when loading)";
    if (u[0] == '#') return "the user name starts with '#', which marks a comment line";
    /* mqtt/'s validator: what the broker accepts as a user name [MQTT-1.5.3-1] */
    if (mqtt_utf8_validate((const uint8_t *)u, n) != MQTT_OK)
        return "the user name is not valid UTF-8";
    return NULL;
}

/* ---- password prompt ---------------------------------------------------- */

static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_changed;

static void tty_restore(void)
{
    if (tty_changed) {
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
        tty_changed = 0;
    }
}

/* Put the echo back before dying on ^C, or the user's shell stays blind. */
static void on_signal(int sig)
{
    tty_restore();
    if (tty_fd >= 0) {
        ssize_t w = write(tty_fd, "\n", 1);
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Prompt on /dev/tty (echo already off); returns the length read into buf. */
static size_t tty_read_password(const char *prompt, char *buf, size_t cap)
{
    size_t n = 0;
    bool too_long = false;
    if (write(tty_fd, prompt, strlen(prompt)) < 0)
        die("cannot write to the terminal: %s", strerror(errno));
    for (;;) {
        char c;
        ssize_t r = read(tty_fd, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || c == '\n') break;
        if (n + 1 < cap)
            buf[n++] = c;
        else
            too_long = true;
    }
    if (write(tty_fd, "\n", 1) < 0) die("cannot write to the terminal: %s", strerror(errno));
    if (n > 0 && buf[n - 1] == '\r') n--;
    buf[n] = '\0';
    if (too_long) die("the password is longer than %d bytes", MAX_FIELD);
    return n;
}

static size_t prompt_password(char *buf, size_t cap)
{
    tty_fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty_fd < 0 || tcgetattr(tty_fd, &tty_saved) != 0)
        die("no terminal to read the password from; pass it with -b FILE USER PASSWORD");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);

    /* echo off before the first prompt: TCSAFLUSH drops type-ahead, which
     * must not eat an answer typed after the prompt appeared */
    struct termios t = tty_saved;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    t.c_lflag |= ICANON;
    if (tcsetattr(tty_fd, TCSAFLUSH, &t) != 0)
        die("cannot turn off echo on the terminal: %s", strerror(errno));
    tty_changed = 1;
    atexit(tty_restore); /* die() on the way out leaves the terminal as it was */

    char *again = malloc(cap);
    if (!again) die("out of memory");
    size_t n = tty_read_password("Password: ", buf, cap);
    size_t m = tty_read_password("Reenter password: ", again, cap);
    tty_restore();
    bool same = n == m && memcmp(buf, again, n) == 0;
    wipe(again, cap);
    free(again);
    close(tty_fd);
    tty_fd = -1;
    if (!same) {
        wipe(buf, cap);
        die("the passwords do not match");
    }
    return n;
}

/* ---- the file ----------------------------------------------------------- */

struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t nc = t->cap ? t->cap : 4096;
        while (nc < t->len + n + 1)
            nc *= 2;
        char *np = malloc(nc);
        if (!np) die("out of memory");
        if (t->p) {
            memcpy(np, t->p, t->len);
            wipe(t->p, t->cap);
            free(t->p);
        }
        t->p = np;
        t->cap = nc;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Is line (without its newline) the entry of user? Same rules as the loader:
 * blanks around the name are ignored, comments and blank lines never match. */
static bool line_is_user(const char *line, size_t n, const char *user)
{
    size_t b = 0;
    while (b < n && blank(line[b]))
        b++;
    if (b == n || line[b] == '#') return false;
    const char *colon = memchr(line + b, ':', n - b);
    if (!colon) return false;
    size_t e = (size_t)(colon - line);
    while (e > b && blank(line[e - 1]))
        e--;
    return e - b == strlen(user) && memcmp(line + b, user, e - b) == 0;
}

/* Copy old into out, replacing the first line of user by entry (NULL =
 * delete) and dropping any later duplicates; append entry if absent.
 * Returns the number of lines of user found. */
static size_t rewrite(const char *old, size_t oldlen, const char *user, const char *entry,
                      struct text *out)
{
    size_t found = 0, pos = 0;
    while (pos < oldlen) {
        const char *nl = memchr(old + pos, '\n', oldlen - pos);
        size_t end = nl ? (size_t)(nl - old) + 1 : oldlen;
        size_t body = nl ? end - pos - 1 : end - pos;
        if (line_is_user(old + pos, body, user)) {
            if (found++ == 0 && entry) text_add(out, entry, strlen(entry));
        } else {
            text_add(out, old + pos, end - pos);
            if (!nl) text_add(out, "\n", 1);
        }
        pos = end;
    }
    if (!found && entry) text_add(out, entry, strlen(entry));
    return found;
}

static char *read_all(const char *path, size_t *len, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) die("%s does not exist (use -c to create it)", path);
        die("cannot open %s: %s", path, strerror(errno));
    }
    if (fstat(fd, st) != 0) die("cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st->st_mode)) die("%s is not a regular file", path);
    struct text t = {0};
    char buf[8192];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("cannot read %s: %s", path, strerror(errno));
        if (r == 0) break;
        if (memchr(buf, '\0', (size_t)r)) die("%s contains NUL bytes; not a password file", path);
        text_add(&t, buf, (size_t)r);
    }
    close(fd);
    *len = t.len;
    if (!t.p) text_add(&t, "", 0);
    return t.p;
}

static char *tmp_path;

/* Write data to a temporary file beside path, make it durable, then rename
 * it over path so readers see the old or the new file, never half of one. */
static void replace_file(const char *path, const char *data, size_t len, const struct stat *orig)
{
    size_t n = strlen(path) + 32;
    tmp_path = malloc(n);
    if (!tmp_path) die("out of memory");
    snprintf(tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) die("cannot create %s: %s", tmp_path, strerror(errno));
    const char *why = NULL, *what = tmp_path;
    int saved = 0;
    if (orig) {
        /* keep the mode exactly (umask does not apply to fchmod) and, when
         * we may, the owner: the broker may read the file as another user */
        if (fchown(fd, orig->st_uid, orig->st_gid) != 0) {
            /* not root: the file becomes ours, as with any editor */
        }
        if (fchmod(fd, orig->st_mode & 07777) != 0) why = "cannot set the mode of", saved = errno;
    }
    for (size_t off = 0; !why && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0)
            why = "cannot write", saved = errno;
        else
            off += (size_t)w;
    }
    if (!why && fsync(fd) != 0) why = "cannot flush", saved = errno;
    if (close(fd) != 0 && !why) why = "cannot close", saved = errno;
    if (!why && rename(tmp_path, path) != 0) why = "cannot replace", what = path, saved = errno;
    if (why) {
        unlink(tmp_path);
        die("%s %s: %s", why, what, strerror(saved));
    }
    /* make the rename itself durable */
    char *dcopy = strdup(path);
    if (dcopy) {
        int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dcopy);
    }
    free(tmp_path);
    tmp_path = NULL;
}

/* ---- main --------------------------------------------------------------- */

static void usage_error(const char *fmt, const char *arg)
{
    fputs("secpasswd: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see secpasswd --help)\n", stderr);
    exit(1);
}

typedef struct {
    bool create, batch, del, upgrade;
    int hash_type; /* 7 = sha512-pbkdf2 (default), 6 = sha512 */
    unsigned iterations;
    const char *file, *user, *cmdline_pw;
} pw_args;

/* One option at argv[*i]; exits on a bad one. */
static void parse_option(pw_args *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];

    if (strcmp(a, "-c") == 0) {
        o->create = true;
    } else if (strcmp(a, "-b") == 0) {
        o->batch = true;
    } else if (strcmp(a, "-D") == 0) {
        o->del = true;
    } else if (strcmp(a, "-U") == 0) {
        o->upgrade = true;
    } else if (strcmp(a, "-H") == 0) {
        if (++*i >= argc) usage_error("%s needs sha512-pbkdf2 or sha512", "-H");
        if (strcmp(argv[*i], "sha512-pbkdf2") == 0)
            o->hash_type = 7;
        else if (strcmp(argv[*i], "sha512") == 0)
            o->hash_type = 6;
        else
            usage_error("-H wants sha512-pbkdf2 or sha512, not '%s'", argv[*i]);
    } else if (strcmp(a, "-I") == 0) {
        if (++*i >= argc) usage_error("%s needs a number", "-I");
        char *end;
        errno = 0;
        unsigned long v = strtoul(argv[*i], &end, 10);
        if (errno || *end || end == argv[*i] || argv[*i][0] == '-' || v < 1 ||
            v > PW_MAX_ITERATIONS) {
            char why[128];
            snprintf(why, sizeof why, "-I wants an iteration count from 1 to %u, not '%.40s'",
                     PW_MAX_ITERATIONS, argv[*i]);
            usage_error("%s", why);
        }
        o->iterations = (unsigned)v;
    } else {
        usage_error("unknown option '%s'", a);
    }
}

/* Parse argv into o; exits on --help and on bad usage. */
static void parse_args(pw_args *o, int argc, char **argv)
{
    int i = 1;

    memset(o, 0, sizeof *o);
    o->hash_type = 7;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf(usage_text, PW_DEFAULT_ITERATIONS);
            exit(0);
        }
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') break;
        parse_option(o, argc, argv, &i);
    }
    int npos = argc - i;
    if (o->upgrade) {
        if (o->create || o->del || o->batch)
            usage_error("%s", "-U converts a whole file and cannot be combined with -c, -b or -D");
        if (npos != 1) usage_error("%s", "-U takes just the FILE to convert");
        o->file = argv[i];
        return;
    }
    if (npos < 2) usage_error("%s", "FILE and USER are required");
    if (npos > 3) usage_error("too many arguments starting at '%s'", argv[i + 3]);
    o->file = argv[i];
    o->user = argv[i + 1];
    o->cmdline_pw = npos == 3 ? argv[i + 2] : NULL;
    if (o->create && o->del) usage_error("%s", "-c and -D cannot be combined");
    if (o->del && (o->batch || o->cmdline_pw))
        usage_error("%s", "-D deletes a user and takes no password");
    if (o->batch && !o->cmdline_pw) usage_error("%s", "-b needs the password as the last argument");
    if (!o->batch && o->cmdline_pw) usage_error("%s", "a password on the command line needs -b");
}

/* "USER:HASH\n" for password pw[0..pwlen) into entry (cap bytes). */
static void make_entry(const pw_args *o, const char *user, const char *pw, size_t pwlen,
                       char *entry, size_t cap)
{
    char hash[256];
    int rc;

    if (pwlen == 0) die("the password of '%s' is empty", user);
    rc = pw_hash_make_type(o->hash_type, (const uint8_t *)pw, pwlen, o->iterations, hash,
                           sizeof hash);
    if (rc != ACL_OK) die("cannot hash the password: %s", acl_strerror(rc));
    snprintf(entry, cap, "%s:%s\n", user, hash);
    wipe(hash, sizeof hash);
}

/* Is this password field already a hash secbroker and Mosquitto read? */
static bool already_hashed(const char *pw)
{
    return (strncmp(pw, "$6$", 3) == 0 || strncmp(pw, "$7$", 3) == 0) &&
           pw_hash_verify(pw, (const uint8_t *)"", 0) != ACL_ERR_SYNTAX;
}

/* One line of a clear-text file, hashed into out (comments, blank lines and
 * lines already hashed are kept as they are). */
static void upgrade_line(const pw_args *o, char *line, size_t n, size_t lineno, struct text *out)
{
    char entry[MAX_FIELD + 300];
    size_t b = 0;

    while (b < n && blank(line[b]))
        b++;
    char *colon = memchr(line, ':', n);
    if (b == n || line[b] == '#' || colon == NULL) {
        if (b < n && line[b] != '#')
            die("%s line %zu: no ':' between user name and password", o->file, lineno);
        text_add(out, line, n);
        text_add(out, "\n", 1);
        return;
    }
    size_t pwlen = n - (size_t)(colon + 1 - line);
    if (pwlen > 0 && colon[pwlen] == '\r') pwlen--;
    *colon = '\0';
    colon[1 + pwlen] = '\0';
    const char *why = user_problem(line);
    if (why) die("%s line %zu: %s", o->file, lineno, why);
    if (already_hashed(colon + 1)) {
        fprintf(stderr, "secpasswd: %s line %zu: '%s' is already hashed, kept as it is\n", o->file,
                lineno, line);
        snprintf(entry, sizeof entry, "%s:%s\n", line, colon + 1);
    } else {
        make_entry(o, line, colon + 1, pwlen, entry, sizeof entry);
    }
    text_add(out, entry, strlen(entry));
    wipe(entry, sizeof entry);
}

/* -U: hash every clear-text password of the file in place. */
static void upgrade_file(const pw_args *o, const char *file)
{
    struct stat st;
    size_t len, pos = 0, lineno = 0;
    char *old = read_all(file, &len, &st);
    struct text out = {0};

    while (pos < len) {
        char *nl = memchr(old + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - old) : len;
        upgrade_line(o, old + pos, end - pos, ++lineno, &out);
        pos = nl ? end + 1 : end;
    }
    wipe(old, len);
    free(old);
    if (!out.p) text_add(&out, "", 0);
    replace_file(file, out.p, out.len, &st);
    wipe(out.p, out.cap);
    free(out.p);
}

/* The password of -b or from the terminal, hashed into entry. */
static void user_entry(const pw_args *o, char *entry, size_t cap)
{
    char *pw = malloc(MAX_FIELD + 2);
    size_t pwlen;

    if (!pw) die("out of memory");
    if (o->batch) {
        pwlen = strlen(o->cmdline_pw);
        if (pwlen > MAX_FIELD) die("the password is longer than %d bytes", MAX_FIELD);
        memcpy(pw, o->cmdline_pw, pwlen);
    } else {
        pwlen = prompt_password(pw, MAX_FIELD + 2);
    }
    if (pwlen == 0) die("the password is empty");
    make_entry(o, o->user, pw, pwlen, entry, cap);
    wipe(pw, MAX_FIELD + 2);
    free(pw);
}

int main(int argc, char **argv)
{
    pw_args o;
    parse_args(&o, argc, argv);
    const char *file = o.file;

    /* rewrite the file a symlink points to, not the link itself */
    char resolved[PATH_MAX];
    struct stat lst;
    if (lstat(file, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        if (!realpath(file, resolved)) die("cannot resolve the link %s: %s", file, strerror(errno));
        file = resolved;
    }
    if (o.upgrade) {
        upgrade_file(&o, file);
        return 0;
    }
    const char *why = user_problem(o.user);
    if (why) die("%s", why);

    struct stat st;
    bool have_orig = false;
    char *old = NULL;
    size_t oldlen = 0;
    if (!o.create) {
        old = read_all(file, &oldlen, &st);
        have_orig = true;
    } else if (stat(file, &st) == 0) {
        if (!S_ISREG(st.st_mode)) die("%s is not a regular file", file);
        have_orig = true;
    }

    char entry[MAX_FIELD + 300];
    if (!o.del) user_entry(&o, entry, sizeof entry);

    struct text out = {0};
    if (o.create) {
        text_add(&out, entry, strlen(entry));
    } else {
        size_t found = rewrite(old, oldlen, o.user, o.del ? NULL : entry, &out);
        if (o.del && !found) die("user '%s' is not in %s", o.user, file);
        free(old);
    }
    if (!out.p) text_add(&out, "", 0);
    replace_file(file, out.p, out.len, have_orig ? &st : NULL);
    wipe(out.p, out.cap);
    free(out.p);
    return 0;
}
