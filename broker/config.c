/* config.c -- see config.h. Every key Mosquitto has keeps Mosquitto's name;
 * an unknown key, a bad value or an unreadable file is an error naming the
 * file and line. */
#include "broker/config.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/config_int.h"
#include "broker/err.h"
#include "broker/log.h"

/* Append one error line to p->err (every error of the run is kept). */
static int vfail(pctx *p, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t used = strlen(p->err);
    if (p->nerr++ >= CFG_MAX_ERRORS) return BK_ERR_CONFIG;
    if (used && used + 1 < p->errlen) p->err[used++] = '\n';
    if (p->line > 0)
        snprintf(p->err + used, p->errlen - used, "%s:%d: %s", p->path, p->line, msg);
    else
        snprintf(p->err + used, p->errlen - used, "%s: %s", p->path, msg);
    return BK_ERR_CONFIG;
}

int cfg_fail(pctx *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail(p, fmt, ap);
    va_end(ap);
    return r;
}

static int fail(pctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(pctx *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail(p, fmt, ap);
    va_end(ap);
    return r;
}

static int parse_bool(pctx *p, const char *key, const char *v, bool *out)
{
    if (strcmp(v, "true") == 0)
        *out = true;
    else if (strcmp(v, "false") == 0)
        *out = false;
    else
        return fail(p, "%s: expected true or false, got '%s'", key, v);
    return BK_OK;
}

static int parse_uint(pctx *p, const char *key, const char *v, uint64_t min, uint64_t max,
                      uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)v[0])) return fail(p, "%s: '%s' is not a number", key, v);
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end) return fail(p, "%s: '%s' is not a number", key, v);
    if (n < min || n > max)
        return fail(p, "%s: %llu is out of range (%llu..%llu)", key, n, (unsigned long long)min,
                    (unsigned long long)max);
    *out = n;
    return BK_OK;
}

static int set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? BK_OK : BK_ERR_NOMEM;
}

int cfg_bool(pctx *p, const char *key, const char *v, bool *out)
{
    return parse_bool(p, key, v, out);
}

int cfg_uint(pctx *p, const char *key, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    return parse_uint(p, key, v, min, max, out);
}

int cfg_str(char **dst, const char *v)
{
    return set_str(dst, v);
}

/* A file named by the config must be readable now, not at first use. */
static int need_file(pctx *p, const char *key, const char *v, bool dir)
{
    if (access(v, R_OK | (dir ? X_OK : 0)) != 0)
        return fail(p, "%s: cannot read %s: %s", key, v, strerror(errno));
    return BK_OK;
}

int cfg_need_file(pctx *p, const char *key, const char *v)
{
    return need_file(p, key, v, false);
}

void listener_cfg_init(listener_cfg *l)
{
    memset(l, 0, sizeof *l);
    l->max_connections = -1;
    l->sec.allow_zero_length_clientid = true; /* Mosquitto's default, per listener too */
}

const sec_cfg *config_sec(const config *c, const listener_cfg *l)
{
    return c->per_listener_settings && l ? &l->sec : &c->sec;
}

const char *config_auto_id_prefix(const config *c, const listener_cfg *l)
{
    const char *p = config_sec(c, l)->auto_id_prefix;
    return p ? p : "auto-"; /* Mosquitto's default */
}

static void listener_free(listener_cfg *l)
{
    free(l->file);
    free(l->address);
    free(l->certfile);
    free(l->keyfile);
    free(l->cafile);
    free(l->capath);
    free(l->crlfile);
    free(l->ciphers);
    free(l->ciphers13);
    free(l->tls_version);
    free(l->tls_keylog_file);
    free(l->http_dir);
    free(l->sec.password_file);
    free(l->sec.acl_file);
    free(l->sec.auto_id_prefix);
    for (size_t i = 0; i < l->n_ws_origins; i++)
        free(l->ws_origins[i]);
    free(l->ws_origins);
}

void config_free(config *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nlisteners; i++)
        listener_free(&c->listeners[i]);
    free(c->listeners);
    free(c->path);
    free(c->sec.password_file);
    free(c->sec.acl_file);
    free(c->sec.auto_id_prefix);
    free(c->log_file);
    free(c->user);
    for (size_t i = 0; i < c->nbridges; i++)
        bridge_cfg_free(&c->bridges[i]);
    free(c->bridges);
    free(c->persistence_location);
    free(c->persistence_file);
    free(c->pid_file);
    free(c->log_timestamp_format);
    free(c->clientid_prefixes);
    free(c);
}

static listener_cfg *cur_listener(config *c)
{
    return c->nlisteners ? &c->listeners[c->nlisteners - 1] : NULL;
}

static int listener_key(pctx *p, config *c, const char *key, const char *v)
{
    static const char *const keys[] = {
        "max_connections",
        "require_certificate",
        "use_identity_as_username",
        "tls_version",
        "ciphers",
        "ciphers_tls1.3",
        "tls_keylog_file",
        "certfile",
        "keyfile",
        "cafile",
        "capath",
        "crlfile",
    };
    bool known = false;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        known |= strcmp(key, keys[i]) == 0;
    if (!known) return NOT_MINE;
    listener_cfg *l = cur_listener(c);
    if (!l) { /* before any listener line: the default listener */
        l = p->deflt;
        cfg_note_default(p, key);
    }
    uint64_t n;
    if (strcmp(key, "max_connections") == 0) {
        if (strcmp(v, "-1") == 0) {
            l->max_connections = -1;
            return BK_OK;
        }
        if (parse_uint(p, key, v, 0, 10000000, &n) != BK_OK) return BK_ERR_CONFIG;
        l->max_connections = (int)n;
        return BK_OK;
    }
    if (strcmp(key, "require_certificate") == 0)
        return parse_bool(p, key, v, &l->require_certificate);
    if (strcmp(key, "use_identity_as_username") == 0)
        return parse_bool(p, key, v, &l->use_identity_as_username);
    if (strcmp(key, "tls_version") == 0) {
        if (strcmp(v, "tlsv1.1") && strcmp(v, "tlsv1.2") && strcmp(v, "tlsv1.3"))
            return fail(p, "tls_version: expected tlsv1.1, tlsv1.2 or tlsv1.3, got '%s'", v);
        return set_str(&l->tls_version, v);
    }
    if (strcmp(key, "ciphers") == 0) return set_str(&l->ciphers, v);
    if (strcmp(key, "ciphers_tls1.3") == 0) return set_str(&l->ciphers13, v);
    if (strcmp(key, "tls_keylog_file") == 0) return set_str(&l->tls_keylog_file, v);
    struct {
        const char *name;
        char **dst;
        bool dir;
    } files[] = {
        {"certfile", &l->certfile, false}, {"keyfile", &l->keyfile, false},
        {"cafile", &l->cafile, false},     {"capath", &l->capath, true},
        {"crlfile", &l->crlfile, false},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (strcmp(key, files[i].name) == 0) {
            if (need_file(p, key, v, files[i].dir) != BK_OK) return BK_ERR_CONFIG;
            return set_str(files[i].dst, v);
        }
    }
    return NOT_MINE;
}

/* The WebSockets keys of a listener block (protocol, http_dir,
 * websockets_origin, websockets_headers_size). NOT_MINE for other keys. */
static int ws_listener_key(pctx *p, config *c, const char *key, const char *v)
{
    bool proto = strcmp(key, "protocol") == 0, dir = strcmp(key, "http_dir") == 0;
    bool origin = strcmp(key, "websockets_origin") == 0;
    bool hsize = strcmp(key, "websockets_headers_size") == 0;
    if (!proto && !dir && !origin && !hsize) return NOT_MINE;
    listener_cfg *l = cur_listener(c);
    if (!l) { /* before any listener line: the default listener */
        l = p->deflt;
        cfg_note_default(p, key);
    }
    if (proto) {
        if (strcmp(v, "websockets") && strcmp(v, "mqtt"))
            return fail(p, "protocol: expected mqtt or websockets, got '%s'", v);
        l->websockets = strcmp(v, "websockets") == 0;
        return BK_OK;
    }
    if (dir) {
        if (need_file(p, key, v, true) != BK_OK) return BK_ERR_CONFIG;
        return set_str(&l->http_dir, v);
    }
    if (hsize) {
        uint64_t n;
        if (parse_uint(p, key, v, 256, 1024 * 1024, &n) != BK_OK) return BK_ERR_CONFIG;
        l->ws_headers_size = (uint32_t)n;
        return BK_OK;
    }
    if (!*v || strchr(v, ' ') || strchr(v, '\t'))
        return fail(p,
                    "websockets_origin: expected one origin such as http://127.0.0.1:8080, "
                    "got '%s'",
                    v);
    char **no = realloc(l->ws_origins, (l->n_ws_origins + 1) * sizeof *no);
    if (!no) return fail(p, "out of memory");
    l->ws_origins = no;
    l->ws_origins[l->n_ws_origins] = NULL;
    if (set_str(&l->ws_origins[l->n_ws_origins], v) != BK_OK) return BK_ERR_CONFIG;
    l->n_ws_origins++;
    return BK_OK;
}

/* Defaults of the output-buffer policy (see conn_output_check): the hard
 * limit is this many times max_output_buffer unless configured, and a
 * client may stay over max_output_buffer this long. */
#define OUTPUT_HARD_FACTOR_DEFAULT 4
#define OUTPUT_SOFT_SECONDS_DEFAULT 60

/* Numeric keys: range and the config field (32 or 64 bits wide). */
typedef struct {
    const char *key;
    uint64_t min, max;
    size_t off;
    size_t size;
} num_key;

#define NUM_KEY(name, lo, hi)                                                                      \
    {                                                                                              \
#name, lo, hi, offsetof(config, name), sizeof(((config *)0)->name)                         \
    }
static const num_key num_keys[] = {
    NUM_KEY(max_keepalive, 0, 65535),
    /* 20 bytes is the smallest size that still admits a CONNECT */
    NUM_KEY(max_packet_size, 20, 268435460ULL),
    NUM_KEY(max_inflight_messages, 0, 65535),
    NUM_KEY(max_queued_messages, 0, 100000000),
    NUM_KEY(max_subscriptions_per_client, 0, 100000000),
    NUM_KEY(max_persistent_sessions, 0, 100000000),
    NUM_KEY(max_output_buffer, 65536, 1ULL << 40),
    NUM_KEY(output_buffer_hard_limit, 65536, 1ULL << 42),
    NUM_KEY(output_buffer_soft_seconds, 1, 86400),
    NUM_KEY(memory_limit, 0, 1ULL << 48),
    NUM_KEY(sys_interval, 0, 86400),
    NUM_KEY(handshake_timeout, 1, 3600),
    NUM_KEY(autosave_interval, 1, 86400 * 365),
};

/* 1 when key is not numeric, else 0 / -1 as handle_line. */
static int num_key_line(pctx *p, config *c, const char *key, const char *v)
{
    for (size_t i = 0; i < sizeof num_keys / sizeof num_keys[0]; i++) {
        const num_key *k = &num_keys[i];
        if (strcmp(key, k->key) != 0) continue;
        uint64_t n;
        if (parse_uint(p, key, v, k->min, k->max, &n) != BK_OK) return BK_ERR_CONFIG;
        if (k->size == sizeof(uint64_t))
            *(uint64_t *)((char *)c + k->off) = n;
        else
            *(uint32_t *)((char *)c + k->off) = (uint32_t)n;
        return BK_OK;
    }
    return NOT_MINE;
}

static int listener_line(pctx *p, config *c, char *v)
{
    uint64_t n;
    char *addr = strchr(v, ' ');
    if (addr) {
        *addr++ = 0;
        while (*addr == ' ' || *addr == '\t')
            addr++;
        if (!*addr) addr = NULL;
    }
    if (parse_uint(p, "listener", v, 0, 65535, &n) != BK_OK) return BK_ERR_CONFIG;
    listener_cfg *nl = realloc(c->listeners, (c->nlisteners + 1) * sizeof *nl);
    if (!nl) return fail(p, "out of memory");
    c->listeners = nl;
    listener_cfg *l = &nl[c->nlisteners++];
    listener_cfg_init(l);
    l->line = p->line;
    l->port = (int)n;
    if (addr && !(l->address = strdup(addr))) return fail(p, "out of memory");
    if (!(l->file = strdup(p->path))) return fail(p, "out of memory");
    return BK_OK;
}

static int log_dest_line(pctx *p, config *c, const char *v, bool *seen)
{
    if (!*seen) c->log_dests = 0; /* the first log_dest replaces the default */
    *seen = true;
    if (strcmp(v, "stdout") == 0)
        c->log_dests |= LOGD_STDOUT;
    else if (strcmp(v, "stderr") == 0)
        c->log_dests |= LOGD_STDERR;
    else if (strcmp(v, "syslog") == 0)
        c->log_dests |= LOGD_SYSLOG;
    else if (strcmp(v, "topic") == 0)
        c->log_dests |= LOGD_TOPIC;
    else if (strcmp(v, "none") == 0)
        c->log_dests = 0;
    else if (strncmp(v, "file ", 5) == 0 || strcmp(v, "file") == 0) {
        const char *f = v + 4;
        while (*f == ' ' || *f == '\t')
            f++;
        if (!*f) return fail(p, "log_dest file: needs a path");
        FILE *probe = fopen(f, "a"); /* fail here, with the line, not at first write */
        if (!probe) return fail(p, "log_dest file %s: %s", f, strerror(errno));
        fclose(probe);
        c->log_dests |= LOGD_FILE;
        return set_str(&c->log_file, f);
    } else
        return fail(
            p, "log_dest: expected stdout, stderr, syslog, topic, file PATH or none, got '%s'", v);
    return BK_OK;
}

static int log_type_line(pctx *p, config *c, const char *v, bool *seen)
{
    int bits = log_type_parse(v);
    if (bits < 0)
        return fail(p,
                    "log_type: unknown type '%s' (error, warning, notice, information, "
                    "debug, subscribe, tls, all, none)",
                    v);
    if (!*seen) c->log_types = 0;
    *seen = true;
    if (strcmp(v, "none") == 0) c->log_types = 0;
    c->log_types |= bits;
    if (bits & LL_TLS) c->tls_trace = true;
    return BK_OK;
}

/* persistence, persistence_location, persistence_file, persistence_sync,
 * autosave_on_changes; NOT_MINE for other keys. */
static int persistence_line(pctx *p, config *c, const char *key, const char *v)
{
    if (strcmp(key, "persistence") == 0) return parse_bool(p, key, v, &c->persistence);
    if (strcmp(key, "autosave_on_changes") == 0)
        return parse_bool(p, key, v, &c->autosave_on_changes);
    if (strcmp(key, "persistence_location") == 0) {
        struct stat sb;
        if (stat(v, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return fail(p, "persistence_location: %s is not a directory", v);
        if (access(v, W_OK | X_OK) != 0)
            return fail(p, "persistence_location: cannot write in %s: %s", v, strerror(errno));
        return set_str(&c->persistence_location, v);
    }
    if (strcmp(key, "persistence_file") == 0) {
        if (strchr(v, '/'))
            return fail(p,
                        "persistence_file: '%s' must be a file name; the directory is "
                        "persistence_location",
                        v);
        return set_str(&c->persistence_file, v);
    }
    if (strcmp(key, "persistence_sync") == 0) {
        if (strcmp(v, "strict") && strcmp(v, "interval"))
            return fail(p, "persistence_sync: expected strict or interval, got '%s'", v);
        c->persistence_strict = strcmp(v, "strict") == 0;
        return BK_OK;
    }
    return NOT_MINE;
}

static int bridge_fail(pctx *p, int r, const char *berr)
{
    if (r == BRIDGE_CFG_NOMEM) return fail(p, "out of memory");
    return fail(p, "%s", berr);
}

/* The open bridge block ended (next `connection` or end of file): check it
 * as a whole and fill its derived defaults. */
static int bridge_close_block(pctx *p, config *c)
{
    if (!p->in_bridge) return BK_OK;
    p->in_bridge = false;
    p->line = p->bridge_start;
    char host[256] = "localhost", berr[256];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    int r = bridge_cfg_finish(&c->bridges[c->nbridges - 1], host, berr, sizeof berr);
    return r == BRIDGE_CFG_OK ? BK_OK : bridge_fail(p, r, berr);
}

/* `connection NAME` opens a bridge block; bridge keys go to the open one. */
static int bridge_line(pctx *p, config *c, const char *key, const char *v)
{
    char berr[256];
    int r;
    if (strcmp(key, "connection") == 0) {
        int line = p->line;
        if (bridge_close_block(p, c) != BK_OK) return BK_ERR_CONFIG;
        p->line = line;
        bridge_cfg *nb = realloc(c->bridges, (c->nbridges + 1) * sizeof *nb);
        if (!nb) return fail(p, "out of memory");
        c->bridges = nb;
        r = bridge_cfg_init(&nb[c->nbridges], v, berr, sizeof berr);
        if (r != BRIDGE_CFG_OK) {
            bridge_cfg_free(&nb[c->nbridges]);
            return bridge_fail(p, r, berr);
        }
        c->nbridges++;
        p->in_bridge = true;
        p->bridge_start = line;
        return BK_OK;
    }
    if (!p->in_bridge) return fail(p, "%s must follow a 'connection' line", key);
    r = bridge_cfg_line(&c->bridges[c->nbridges - 1], key, v, berr, sizeof berr);
    return r == BRIDGE_CFG_OK ? BK_OK : bridge_fail(p, r, berr);
}

/* One "key value" line. 0 or -1 (err set). */
static int handle_line(pctx *p, config *c, char *key, char *v)
{
    bool *log_dest_seen = &p->log_dest_seen, *log_type_seen = &p->log_type_seen;
    if (strcmp(key, "listener") == 0) return listener_line(p, c, v);
    if (strcmp(key, "connection") == 0 || bridge_cfg_is_key(key)) return bridge_line(p, c, key, v);
    int r = cfg_security_key(p, c, key, v);
    if (r <= 0) return r;
    r = listener_key(p, c, key, v);
    if (r == NOT_MINE) r = ws_listener_key(p, c, key, v);
    if (r <= 0) return r;
    if ((r = num_key_line(p, c, key, v)) <= 0) return r;
    if (strcmp(key, "retain_available") == 0) return parse_bool(p, key, v, &c->retain_available);
    if (strcmp(key, "connection_messages") == 0)
        return parse_bool(p, key, v, &c->connection_messages);
    if (strcmp(key, "user") == 0) return set_str(&c->user, v);
    if (strcmp(key, "log_dest") == 0) return log_dest_line(p, c, v, log_dest_seen);
    if (strcmp(key, "log_type") == 0) return log_type_line(p, c, v, log_type_seen);
    if ((r = persistence_line(p, c, key, v)) <= 0) return r;
    if ((r = cfg_compat_key(p, c, key, v)) <= 0) return r;
    return cfg_refuse_key(p, key);
}

static void set_defaults(config *c)
{
    c->sec.allow_anonymous = false;
    c->sec.allow_zero_length_clientid = true;
    c->max_keepalive = 65535;
    c->max_packet_size = 1024 * 1024;
    c->max_inflight_messages = 20;
    c->max_queued_messages = 1000;
    c->max_subscriptions_per_client = 100000;
    c->max_persistent_sessions = 100000;
    c->max_output_buffer = 16 * 1024 * 1024;
    c->output_buffer_hard_limit = 0; /* resolved after parsing: a factor of the soft one */
    c->output_buffer_soft_seconds = OUTPUT_SOFT_SECONDS_DEFAULT;
    c->retain_available = true;
    c->log_dests = LOGD_STDERR;
    c->log_types = LL_ERROR | LL_WARNING | LL_NOTICE | LL_INFO;
    c->connection_messages = true;
    c->sys_interval = 10;
    c->handshake_timeout = 10;
    c->persistence_strict = true;
    c->autosave_interval = 1800; /* Mosquitto's default */
    c->log_timestamp = true;
    c->log_facility = -1;
    c->set_tcp_nodelay = true;     /* Mosquitto: false; secbroker writes whole batches */
    c->check_retain_source = true; /* Mosquitto's default */
}

/* A '#' after a blank ends the value (a trailing comment), except in a
 * bridge `topic` line, where a lone '#' is the topic filter. */
static void strip_comment(const char *key, char *v)
{
    if (strcmp(key, "topic") == 0) return;
    for (char *h = strchr(v, '#'); h; h = strchr(h + 1, '#'))
        if (h > v && (h[-1] == ' ' || h[-1] == '\t')) {
            *h = 0;
            break;
        }
    size_t len = strlen(v);
    while (len && isspace((unsigned char)v[len - 1]))
        v[--len] = 0;
}

/* Split one line into key and value and apply it. 0, or -1 with err set. */
static int parse_line(pctx *p, config *c, char *line)
{
    size_t len = strlen(line);
    while (len && isspace((unsigned char)line[len - 1]))
        line[--len] = 0;
    char *s = line;
    while (isspace((unsigned char)*s))
        s++;
    if (!*s || *s == '#') return BK_OK;
    char *v = s;
    while (*v && !isspace((unsigned char)*v))
        v++;
    if (*v) *v++ = 0;
    while (isspace((unsigned char)*v))
        v++;
    if (*v == '#') *v = 0; /* "key # comment": no value */
    strip_comment(s, v);
    if (!*v) return fail(p, "'%s' needs a value", s);
    return handle_line(p, c, s, v);
}

/* Every line, collecting errors (each bad line is reported, then the next is read). */
static int parse_file(pctx *p, config *c, FILE *f)
{
    char line[4096];
    while (fgets(line, sizeof line, f) && p->nerr < CFG_MAX_ERRORS) {
        p->line++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            fail(p, "line longer than %zu bytes", sizeof line - 2);
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n')
                ;
            continue;
        }
        (void)parse_line(p, c, line);
    }
    if (ferror(f)) return fail(p, "read error: %s", strerror(errno));
    (void)bridge_close_block(p, c); /* a bridge block ends with its file */
    return p->nerr ? BK_ERR_CONFIG : BK_OK;
}

int cfg_parse_path(pctx *p, config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return fail(p, "cannot open %s: %s", path, strerror(errno));
    const char *saved = p->path;
    int saved_line = p->line;
    p->path = path;
    p->line = 0;
    int rc = parse_file(p, c, f);
    fclose(f);
    p->path = saved;
    p->line = saved_line;
    return rc;
}

static int check_listener(pctx *p, const listener_cfg *l)
{
    p->line = l->line;
    if (l->file) p->path = l->file;
    if (!!l->certfile != !!l->keyfile)
        return fail(p, "listener %d: certfile and keyfile must be given together", l->port);
    bool tls = l->certfile != NULL;
    if (!tls && (l->cafile || l->capath || l->require_certificate || l->crlfile ||
                 l->use_identity_as_username || l->ciphers || l->ciphers13 || l->tls_keylog_file))
        return fail(p, "listener %d: TLS options need certfile and keyfile", l->port);
    if (!l->websockets && (l->http_dir || l->n_ws_origins || l->ws_headers_size))
        return fail(p,
                    "listener %d: http_dir, websockets_origin and websockets_headers_size need "
                    "'protocol websockets'",
                    l->port);
    if ((l->require_certificate || l->request_certificate || l->use_identity_as_username ||
         l->use_subject_as_username) &&
        !l->cafile && !l->capath)
        return fail(p,
                    "listener %d: require_certificate/request_certificate/"
                    "use_identity_as_username/use_subject_as_username need cafile or capath",
                    l->port);
    return BK_OK;
}

/* Whole-file rules and derived defaults, after every line is read. */
static int finish(pctx *p, config *c)
{
    p->line = 0;
    if (cfg_compat_finish(p, c) != BK_OK) return BK_ERR_CONFIG;
    const char *main_path = p->path;
    for (size_t i = 0; i < c->nlisteners; i++)
        (void)check_listener(p, &c->listeners[i]);
    p->path = main_path;
    if (p->nerr) return BK_ERR_CONFIG;
    p->line = 0;
    char berr[256];
    if (bridge_cfg_check_set(c->bridges, c->nbridges, berr, sizeof berr) != BRIDGE_CFG_OK)
        return fail(p, "%s", berr);
    if (c->output_buffer_hard_limit == 0)
        c->output_buffer_hard_limit = OUTPUT_HARD_FACTOR_DEFAULT * c->max_output_buffer;
    if (c->output_buffer_hard_limit < c->max_output_buffer)
        return fail(p, "output_buffer_hard_limit %llu is below max_output_buffer %llu",
                    (unsigned long long)c->output_buffer_hard_limit,
                    (unsigned long long)c->max_output_buffer);
    if (c->nlisteners == 0) {
        /* Mosquitto's convention: no listener means 1883 on loopback only,
         * where allow_anonymous defaults to true (Debian's mosquitto.conf) */
        c->listeners = malloc(sizeof *c->listeners);
        if (!c->listeners) return fail(p, "out of memory");
        listener_cfg_init(&c->listeners[0]);
        c->nlisteners = 1;
        c->listeners[0].port = 1883;
        if (!(c->listeners[0].address = strdup("127.0.0.1"))) return fail(p, "out of memory");
        c->local_only_anonymous = !p->anon_set;
        c->sec.allow_anonymous |= c->local_only_anonymous;
        c->listeners[0].sec.allow_anonymous |= c->local_only_anonymous;
    }
    return BK_OK;
}

config *config_load(const char *path, char *err, size_t errlen)
{
    return config_load_as(path, NULL, err, errlen);
}

config *config_load_as(const char *path, const char *shown, char *err, size_t errlen)
{
    listener_cfg deflt;
    listener_cfg_init(&deflt);
    pctx p = {.path = shown ? shown : path,
              .err = err,
              .errlen = errlen,
              .deflt = &deflt,
              .default_port = -1};
    if (errlen) err[0] = 0;
    config *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(shown ? shown : path))) {
        fail(&p, "out of memory");
        free(c);
        return NULL;
    }
    set_defaults(c);
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(&p, "cannot open: %s", strerror(errno));
        config_free(c);
        return NULL;
    }
    int rc = parse_file(&p, c, f);
    fclose(f);
    if (rc != BK_OK || finish(&p, c) != BK_OK || p.nerr) {
        free(p.default_bind);
        listener_free(&deflt);
        config_free(c);
        return NULL;
    }
    listener_free(&deflt); /* cfg_compat_finish moved what it kept */
    return c;
}
