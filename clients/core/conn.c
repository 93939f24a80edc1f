/*
 * conn.c -- one MQTT client connection: TCP (IPv4/IPv6) with optional TLS,
 * CONNECT/CONNACK, buffered non-blocking I/O with MQTT framing, keepalive
 * and a poll()-based wait.
 *
 * The socket is non-blocking from the start; every wait is a poll() with a
 * deadline, so no step can hang forever: connect + handshake + CONNACK share
 * CLI_CONNECT_TIMEOUT_MS, and after CONNACK an unanswered PINGREQ ends the
 * session one keepalive later.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "clients/core/client.h"
#include "clients/core/tls_words.h"
#include "tls/tls.h"

#define IN_CHUNK 16384
#define IN_HIGH_WATER (1024 * 1024) /* stop reading; process what we have */
#define OUT_HIGH_WATER (256 * 1024) /* stop reporting the extra fd */
#define CLOSE_DRAIN_MS 2000         /* wait for the broker's EOF after DISCONNECT */

struct cli_conn {
    const cli_opts *opts;
    int fd;
    tls_client *tcli;
    tls_conn *tls;
    char peer[INET6_ADDRSTRLEN + 16]; /* "1.2.3.4:1883" / "[::1]:1883" */
    bool connected;                   /* CONNACK 0 received */
    bool eof;                         /* no more bytes will come */
    bool write_dead;                  /* the socket refused a write */
    bool write_wants_read;            /* TLS write needs the fd readable */
    bool read_wants_write;            /* TLS read needs the fd writable */
    int connack_rc;
    uint16_t next_id;
    uint8_t *in;
    size_t in_len, in_cap, in_consume;
    uint8_t *out;
    size_t out_len, out_cap, out_off;
    int64_t last_send_ms;
    int64_t ping_sent_ms;
    bool ping_outstanding;
    bool tls_global; /* this connection holds a tls_global_setup */
    char err[768];
};

static volatile sig_atomic_t g_interrupted;
static int g_tls_users;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

void cli_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool cli_interrupted(void)
{
    return g_interrupted != 0;
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Record why we failed; returns code so callers can `return conn_fail(...)`. */
static int conn_fail(cli_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int conn_fail(cli_conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return code;
}

int cli_conn_fail(cli_conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return code;
}

const char *cli_conn_error(const cli_conn *c)
{
    return c ? c->err : "out of memory";
}

int cli_conn_connack_rc(const cli_conn *c)
{
    return c ? c->connack_rc : 0;
}

const char *cli_conn_client_id(const cli_conn *c)
{
    return c->opts->id;
}

int cli_exit_code(const cli_conn *c, int err)
{
    if (err >= 0 || err == CLI_ERR_INTR) return 0;
    if (err == CLI_ERR_REFUSED && c != NULL && c->connack_rc > 0) return c->connack_rc;
    if (err == CLI_ERR_ARG) return CLI_EXIT_USAGE;
    return CLI_EXIT_FAILURE;
}

uint16_t cli_next_packet_id(cli_conn *c)
{
    if (++c->next_id == 0) c->next_id = 1;
    return c->next_id;
}

size_t cli_pending_output(const cli_conn *c)
{
    return c->out_len - c->out_off;
}

/* ---- TCP ----------------------------------------------------------------- */

static void addr_format(const struct sockaddr *sa, char *buf, size_t len, bool with_port)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        if (with_port)
            snprintf(buf, len, "%s:%d", host, port);
        else
            snprintf(buf, len, "%s", host);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        if (with_port)
            snprintf(buf, len, "[%s]:%d", host, port);
        else
            snprintf(buf, len, "%s", host);
    } else {
        snprintf(buf, len, "?");
    }
}

/* Wait for one fd event before the deadline: 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - cli_now_ms();
        struct pollfd p = {.fd = fd, .events = events};
        int n;

        if (left < 0) left = 0;
        if (g_interrupted) return -2;
        n = poll(&p, 1, (int)left);
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* -A: bind fd to the local address of the same family as the broker's.
 * 0, or -1 with the reason in why. */
static int tcp_bind(const cli_opts *o, int fd, int family, char *why, size_t whylen)
{
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(o->bind_address, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(why, whylen, "cannot bind to -A %s: %s", o->bind_address,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    rc = bind(fd, res->ai_addr, res->ai_addrlen);
    if (rc != 0)
        snprintf(why, whylen, "cannot bind to -A %s: %s", o->bind_address, strerror(errno));
    freeaddrinfo(res);
    return rc == 0 ? 0 : -1;
}

/* Connect to one address before the deadline: CLI_OK (c->fd set), 1 when
 * this address failed (why says how; try the next), or a negative error
 * that ends the attempt (timeout, interrupted). */
static int tcp_try(cli_conn *c, const struct addrinfo *ai, int64_t deadline, char *why,
                   size_t whylen)
{
    const cli_opts *o = c->opts;
    int fd, rc, soerr = 0, one = 1;
    socklen_t slen = sizeof(soerr);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return 1;
    }
    if (o->bind_address != NULL && tcp_bind(o, fd, ai->ai_family, why, whylen) != 0) {
        close(fd);
        return 1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            snprintf(why, whylen, "%s", strerror(errno));
            close(fd);
            return 1;
        }
        rc = wait_fd(fd, POLLOUT, deadline);
        if (rc == 0 || rc == -2) {
            close(fd);
            if (rc == -2) return conn_fail(c, CLI_ERR_INTR, "interrupted");
            return conn_fail(c, CLI_ERR_TIMEOUT, "cannot connect to %s port %d: timed out", o->host,
                             o->port);
        }
        if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0 || soerr != 0) {
            snprintf(why, whylen, "%s", strerror(soerr ? soerr : errno));
            close(fd);
            return 1;
        }
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* always, --nodelay or not */
    addr_format(ai->ai_addr, c->peer, sizeof(c->peer), true);
    c->fd = fd;
    return CLI_OK;
}

/* Try each resolved address in turn (IPv6 and IPv4 alike): one that
 * refuses or cannot be reached passes the turn to the next. */
static int conn_tcp(cli_conn *c, int64_t deadline)
{
    const cli_opts *o = c->opts;
    struct addrinfo hints, *res = NULL, *ai;
    char port[16], tried[512] = "", why[256] = "no address";
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", o->port);
    rc = getaddrinfo(o->host, port, &hints, &res);
    if (rc != 0) {
        const char *e = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
        return conn_fail(c, CLI_ERR_DNS, "cannot resolve host '%s': %s", o->host, e);
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        char addr[INET6_ADDRSTRLEN + 16];
        addr_format(ai->ai_addr, addr, sizeof(addr), false);
        if (strlen(tried) + strlen(addr) + 3 < sizeof(tried)) {
            if (tried[0] != '\0') strcat(tried, ", ");
            strcat(tried, addr);
        }
        rc = tcp_try(c, ai, deadline, why, sizeof(why));
        if (rc != 1) {
            freeaddrinfo(res);
            return rc;
        }
        if (o->debug) cli_debug_line("Client %s: %s port %d: %s", o->id, addr, o->port, why);
    }
    freeaddrinfo(res);
    /* "Connection refused" -> "connection refused", in the middle of a sentence */
    if (strncmp(why, "cannot bind", 11) != 0 && why[0] >= 'A' && why[0] <= 'Z')
        why[0] = (char)(why[0] - 'A' + 'a');
    return conn_fail(c, CLI_ERR_CONNECT, "cannot connect to %s port %d: %s (tried %s)", o->host,
                     o->port, why, tried);
}

/* ---- TLS ----------------------------------------------------------------- */

static int conn_tls(cli_conn *c, int64_t deadline)
{
    const cli_opts *o = c->opts;
    tls_client_opts to;
    char err[512] = "";
    int rc;

    if (g_tls_users == 0 && tls_global_setup(err, sizeof(err)) != TLS_OK)
        return conn_fail(c, CLI_ERR_TLS, "TLS setup failed: %s", err);
    g_tls_users++;
    c->tls_global = true;

    memset(&to, 0, sizeof(to));
    to.cafile = o->cafile;
    to.capath = o->capath;
    to.certfile = o->certfile;
    to.keyfile = o->keyfile;
    to.ciphers = o->ciphers;
    to.tls_version = o->tls_version;
    to.keylog_file = o->keylog;
    to.server_name = o->host;
    to.insecure = o->insecure;
    to.opt_names = tls_words_client_opts;
    if (tls_client_setup(&c->tcli, &to, err, sizeof(err)) != TLS_OK)
        return conn_fail(c, CLI_ERR_TLS, "TLS setup failed: %s", err[0] ? err : "unknown reason");
    if (tls_conn_connect(&c->tls, c->tcli, c->fd, c->peer) != TLS_OK)
        return conn_fail(c, CLI_ERR_TLS, "TLS setup failed: %s",
                         c->tls ? tls_words_client_error(c->tls) : "out of memory");
    for (;;) {
        rc = tls_conn_handshake(c->tls);
        if (rc == TLS_OK) break;
        if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE) {
            int w = wait_fd(c->fd, rc == TLS_WANT_READ ? POLLIN : POLLOUT, deadline);
            if (w == 0)
                return conn_fail(c, CLI_ERR_TIMEOUT, "%s: TLS handshake timed out", c->peer);
            if (w == -2) return conn_fail(c, CLI_ERR_INTR, "interrupted");
            if (w < 0) return conn_fail(c, CLI_ERR_IO, "%s: %s", c->peer, strerror(errno));
            continue;
        }
        if (rc == TLS_ERR_IO || rc == TLS_ERR_CLOSED)
            /* no alert to explain it: name the usual causes */
            return conn_fail(c, CLI_ERR_TLS, "%s (the broker hung up: is port %d a TLS port?%s)",
                             tls_words_client_error(c->tls), o->port,
                             o->certfile ? " does it trust our client certificate?"
                                         : " does it require a client certificate (--cert/--key)?");
        return conn_fail(c, CLI_ERR_TLS, "%s", tls_words_client_error(c->tls));
    }
    if (o->debug) {
        char desc[256];
        tls_conn_describe(c->tls, desc, sizeof(desc));
        cli_debug_line("Client %s TLS handshake with %s done: %s", o->id, c->peer, desc);
    }
    return CLI_OK;
}

/* ---- buffered I/O ---------------------------------------------------------- */

/* Read what the socket has: >0 bytes, 0 would block, negative error. */
static ssize_t io_read(cli_conn *c, uint8_t *buf, size_t len)
{
    if (c->tls != NULL) {
        ssize_t n = tls_conn_read(c->tls, buf, len);
        c->read_wants_write = false;
        if (n == TLS_WANT_READ) return 0;
        if (n == TLS_WANT_WRITE) {
            c->read_wants_write = true;
            return 0;
        }
        if (n == 0 || n == TLS_ERR_CLOSED) return CLI_ERR_CLOSED;
        if (n < 0) return conn_fail(c, CLI_ERR_TLS, "%s", tls_words_client_error(c->tls));
        return n;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n > 0) return n;
        if (n == 0) return CLI_ERR_CLOSED;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == ECONNRESET) return CLI_ERR_CLOSED;
        return conn_fail(c, CLI_ERR_IO, "%s: read failed: %s", c->peer, strerror(errno));
    }
}

/* Write: >0 bytes, 0 would block, negative error. */
static ssize_t io_write(cli_conn *c, const uint8_t *buf, size_t len)
{
    if (c->tls != NULL) {
        ssize_t n = tls_conn_write(c->tls, buf, len);
        c->write_wants_read = false;
        if (n == TLS_WANT_WRITE) return 0;
        if (n == TLS_WANT_READ) {
            c->write_wants_read = true;
            return 0;
        }
        if (n == TLS_ERR_CLOSED || n == TLS_ERR_IO) return CLI_ERR_CLOSED;
        if (n < 0) return conn_fail(c, CLI_ERR_TLS, "%s", tls_words_client_error(c->tls));
        return n;
    }
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == EPIPE || errno == ECONNRESET) return CLI_ERR_CLOSED;
        return conn_fail(c, CLI_ERR_IO, "%s: write failed: %s", c->peer, strerror(errno));
    }
}

/* How much input to hold before working on it: IN_HIGH_WATER, or more when
 * the packet at the start of the buffer is bigger than that. */
static size_t conn_in_limit(const cli_conn *c)
{
    uint32_t remaining = 0;
    size_t used = 0;

    if (c->in_len >= 2 &&
        mqtt_varint_decode(c->in + 1, c->in_len - 1, &remaining, &used) == MQTT_OK &&
        1 + used + remaining > IN_HIGH_WATER)
        return 1 + used + remaining;
    return IN_HIGH_WATER;
}

/* Pull bytes into the input buffer until the socket would block (or we hold
 * enough to work on). Sets eof at end of stream. CLI_OK or an error. */
static int conn_fill(cli_conn *c)
{
    while (!c->eof && c->in_len < conn_in_limit(c)) {
        ssize_t n;
        if (c->in_cap - c->in_len < IN_CHUNK) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 4 * IN_CHUNK;
            uint8_t *p = realloc(c->in, cap);
            if (p == NULL) return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
            c->in = p;
            c->in_cap = cap;
        }
        n = io_read(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0) break;
        if (n == CLI_ERR_CLOSED) {
            c->eof = true;
            break;
        }
        if (n < 0) return (int)n;
        c->in_len += (size_t)n;
    }
    return CLI_OK;
}

/* Write queued output until the socket would block. */
static int conn_flush_some(cli_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = io_write(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n == 0) break;
        if (n == CLI_ERR_CLOSED) {
            /* keep whatever the broker said before it hung up */
            c->write_dead = true;
            c->out_off = c->out_len = 0;
            conn_fill(c);
            c->eof = true;
            return CLI_OK;
        }
        if (n < 0) return (int)n;
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    return CLI_OK;
}

/* Room for n more bytes at the end of the output buffer. */
static uint8_t *conn_out_reserve(cli_conn *c, size_t n)
{
    if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_off > 0 && c->out_cap - c->out_len < n) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_cap - c->out_len < n) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap - c->out_len < n)
            cap *= 2;
        uint8_t *p = realloc(c->out, cap);
        if (p == NULL) return NULL;
        c->out = p;
        c->out_cap = cap;
    }
    return c->out + c->out_len;
}

/* The packet at out_len..out_len+len has been encoded: queue it. */
static int conn_out_commit(cli_conn *c, size_t len)
{
    if (c->opts->debug) cli_debug_packet(c->opts, "sending", c->out + c->out_len, len);
    c->out_len += len;
    c->last_send_ms = cli_now_ms();
    if (c->write_dead)
        return conn_fail(c, CLI_ERR_CLOSED, "%s: the broker closed the connection", c->peer);
    return conn_flush_some(c);
}

int cli_send(cli_conn *c, const uint8_t *pkt, size_t len)
{
    uint8_t *dst = conn_out_reserve(c, len);
    if (dst == NULL) return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    memcpy(dst, pkt, len);
    return conn_out_commit(c, len);
}

/* An MQTT 5 PUBLISH with the -D publish properties. */
static int conn_send_publish5(cli_conn *c, const mqtt_publish *p)
{
    uint8_t pbuf[CLI_PROPS_MAX_BYTES];
    mqtt5_publish x = {.p = *p};
    size_t need, written = 0;
    int rc = cli_props_build(c->opts, MQTT_PUBLISH, pbuf, sizeof pbuf, &x.props.raw);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot build the PUBLISH properties: %s",
                         mqtt_strerror(rc));
    need = 5 + 2 + p->topic.len + 2 + 5 + x.props.raw.len + p->payload_len;
    uint8_t *dst = conn_out_reserve(c, need);
    if (dst == NULL) return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    rc = mqtt5_encode_publish(dst, need, &x, &written);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot encode PUBLISH: %s", mqtt_strerror(rc));
    return conn_out_commit(c, written);
}

int cli_send_publish(cli_conn *c, const char *topic, const uint8_t *payload, size_t len, int qos,
                     bool retain, bool dup, uint16_t packet_id)
{
    mqtt_publish p;
    size_t tlen = strlen(topic), need = 5 + 2 + tlen + 2 + len, written = 0;
    uint8_t *dst;
    int rc;

    memset(&p, 0, sizeof(p));
    p.dup = dup;
    p.qos = (uint8_t)qos;
    p.retain = retain;
    p.topic.ptr = (const uint8_t *)topic;
    p.topic.len = (uint16_t)tlen;
    p.packet_id = qos ? packet_id : 0;
    p.payload = payload;
    p.payload_len = len;
    if (tlen > 65535) return conn_fail(c, CLI_ERR_ARG, "topic longer than 65535 bytes");
    if (c->opts->protocol_level == 5) return conn_send_publish5(c, &p);
    dst = conn_out_reserve(c, need);
    if (dst == NULL) return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    rc = mqtt_encode_publish(dst, need, &p, &written);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot encode PUBLISH: %s", mqtt_strerror(rc));
    return conn_out_commit(c, written);
}

int cli_send_ack(cli_conn *c, enum mqtt_type type, uint16_t packet_id)
{
    uint8_t buf[8];
    size_t n = 0;
    int rc = mqtt_encode_ack(buf, sizeof(buf), type, packet_id, &n);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot encode %s: %s", mqtt_type_name(type),
                         mqtt_strerror(rc));
    return cli_send(c, buf, n);
}

static int conn_send_empty(cli_conn *c, enum mqtt_type type)
{
    uint8_t buf[4];
    size_t n = 0;
    int rc = mqtt_encode_empty(buf, sizeof(buf), type, &n);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot encode %s: %s", mqtt_type_name(type),
                         mqtt_strerror(rc));
    return cli_send(c, buf, n);
}

/* SUBSCRIBE at the connection's version (v5: the -D subscribe properties). */
static int conn_encode_subscribe(cli_conn *c, uint8_t *dst, size_t need, uint16_t packet_id,
                                 const mqtt_str *fs, const uint8_t *qs, unsigned count,
                                 size_t *written)
{
    if (c->opts->protocol_level != 5)
        return mqtt_encode_subscribe(dst, need, packet_id, fs, qs, count, written);
    uint8_t pbuf[CLI_PROPS_MAX_BYTES];
    mqtt_bytes props;
    int rc = cli_props_build(c->opts, MQTT_SUBSCRIBE, pbuf, sizeof pbuf, &props);
    if (rc != MQTT_OK) return rc;
    return mqtt5_encode_subscribe(dst, need, packet_id, &props, fs, qs, count, written);
}

int cli_send_subscribe(cli_conn *c, uint16_t packet_id, const char *const *filters, unsigned count,
                       int qos)
{
    mqtt_str *fs = calloc(count ? count : 1, sizeof(*fs));
    uint8_t *qs = calloc(count ? count : 1, 1);
    size_t need = 5 + 2 + 5 + CLI_PROPS_MAX_BYTES, written = 0;
    uint8_t *dst;
    int rc;
    unsigned i;

    if (fs == NULL || qs == NULL) {
        free(fs);
        free(qs);
        return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    }
    for (i = 0; i < count; i++) {
        fs[i].ptr = (const uint8_t *)filters[i];
        fs[i].len = (uint16_t)strlen(filters[i]);
        qs[i] = (uint8_t)qos;
        need += 2 + strlen(filters[i]) + 1;
    }
    dst = conn_out_reserve(c, need);
    if (dst == NULL) {
        rc = conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    } else {
        rc = conn_encode_subscribe(c, dst, need, packet_id, fs, qs, count, &written);
        if (rc != MQTT_OK)
            rc = conn_fail(c, CLI_ERR_ARG, "cannot encode SUBSCRIBE: %s", mqtt_strerror(rc));
        else
            rc = conn_out_commit(c, written);
    }
    free(fs);
    free(qs);
    return rc;
}

int cli_send_unsubscribe(cli_conn *c, uint16_t packet_id, const char *const *filters,
                         unsigned count)
{
    mqtt_str *fs = calloc(count ? count : 1, sizeof(*fs));
    size_t need = 5 + 2, written = 0;
    uint8_t *dst;
    int rc;

    if (fs == NULL) return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    for (unsigned i = 0; i < count; i++) {
        fs[i].ptr = (const uint8_t *)filters[i];
        fs[i].len = (uint16_t)strlen(filters[i]);
        need += 2 + strlen(filters[i]);
    }
    dst = conn_out_reserve(c, need);
    if (dst == NULL) {
        rc = conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    } else {
        rc = mqtt_encode_unsubscribe(dst, need, packet_id, fs, count, &written);
        if (rc != MQTT_OK)
            rc = conn_fail(c, CLI_ERR_ARG, "cannot encode UNSUBSCRIBE: %s", mqtt_strerror(rc));
        else
            rc = conn_out_commit(c, written);
    }
    free(fs);
    return rc;
}

/* ---- the wait ------------------------------------------------------------ */

/* Words for bytes that do not frame as MQTT. */
static int conn_malformed(cli_conn *c, int err)
{
    if (c->in_len > 0 && (c->in[0] == 0x15 || c->in[0] == 0x16))
        return conn_fail(c, CLI_ERR_PROTOCOL,
                         "%s: the broker answered with TLS: this looks like a TLS port "
                         "(give --cafile, or use the plain port)",
                         c->peer);
    return conn_fail(c, CLI_ERR_PROTOCOL, "%s: malformed packet from the broker: %s", c->peer,
                     mqtt_strerror(err));
}

static int conn_closed(cli_conn *c)
{
    if (!c->connected)
        return conn_fail(c, CLI_ERR_CLOSED,
                         "%s: the broker closed the connection before sending CONNACK%s", c->peer,
                         c->tls ? "" : " (a TLS-only port? then give --cafile)");
    return conn_fail(c, CLI_ERR_CLOSED, "%s: the broker closed the connection", c->peer);
}

/* The next packet in the input, framed at the connection's version. */
static int conn_frame(cli_conn *c, mqtt_header *hdr, size_t *plen)
{
    return mqtt_frame_level(c->in, c->in_len, 0, (uint8_t)c->opts->protocol_level, hdr, plen);
}

/* How long cli_wait may sleep: until its deadline (-1 = none) or the next
 * keepalive event, whichever is first, and never more than a day. */
static int conn_wait_ms(const cli_conn *c, int64_t deadline, int64_t now)
{
    const int64_t ka = (int64_t)c->opts->keepalive * 1000;
    int64_t wait = -1;

    if (deadline >= 0) wait = deadline > now ? deadline - now : 0;
    if (c->connected && ka > 0) {
        int64_t next = (c->ping_outstanding ? c->ping_sent_ms : c->last_send_ms) + ka - now;
        if (next < 0) next = 0;
        if (wait < 0 || next < wait) wait = next;
    }
    if (wait > 24 * 3600 * 1000) wait = 24 * 3600 * 1000;
    return (int)wait;
}

/* One poll() of the socket (and extra_fd): read and write what it allows.
 * CLI_OK to look again, CLI_EXTRA when extra_fd is readable and no packet
 * is waiting, or a negative error. */
static int conn_poll(cli_conn *c, int wait, int extra_fd, mqtt_header *hdr)
{
    struct pollfd pfd[2];
    int nfds = 1, n, rc;
    size_t plen = 0;

    pfd[0].fd = c->fd;
    pfd[0].events = POLLIN;
    pfd[0].revents = 0;
    if ((cli_pending_output(c) > 0 && !c->write_wants_read) || c->read_wants_write)
        pfd[0].events |= POLLOUT;
    if (extra_fd >= 0 && cli_pending_output(c) < OUT_HIGH_WATER) {
        pfd[1].fd = extra_fd;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        nfds = 2;
    }
    n = poll(pfd, (nfds_t)nfds, wait);
    if (n < 0) {
        if (errno == EINTR) return CLI_OK;
        return conn_fail(c, CLI_ERR_IO, "poll failed: %s", strerror(errno));
    }
    if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        rc = conn_fill(c);
        if (rc < 0) return rc;
    }
    if (pfd[0].revents & POLLOUT) {
        rc = conn_flush_some(c);
        if (rc < 0) return rc;
    }
    if (nfds == 2 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
        /* hand over the extra fd only when no packet is already waiting */
        if (conn_frame(c, hdr, &plen) == MQTT_NEED_MORE) return CLI_EXTRA;
    }
    return CLI_OK;
}

int cli_wait(cli_conn *c, int timeout_ms, int extra_fd, mqtt_header *hdr)
{
    const int64_t ka = (int64_t)c->opts->keepalive * 1000;
    const int64_t deadline = timeout_ms < 0 ? -1 : cli_now_ms() + timeout_ms;
    bool polled = false;

    if (c->in_consume > 0) {
        memmove(c->in, c->in + c->in_consume, c->in_len - c->in_consume);
        c->in_len -= c->in_consume;
        c->in_consume = 0;
    }
    for (;;) {
        size_t plen = 0;
        int rc = conn_frame(c, hdr, &plen);
        int64_t now;

        /* a PINGREQ is due even while packets keep coming in (a busy QoS 0
         * subscriber sends nothing else) */
        now = cli_now_ms();
        if (c->connected && ka > 0 && !c->ping_outstanding && now - c->last_send_ms >= ka) {
            int prc;
            c->ping_outstanding = true;
            c->ping_sent_ms = now;
            if ((prc = conn_send_empty(c, MQTT_PINGREQ)) < 0) return prc;
        }
        if (rc == MQTT_OK) {
            if (c->opts->debug) cli_debug_packet(c->opts, "received", c->in, plen);
            if (hdr->type == MQTT_PINGRESP && c->connected) {
                c->ping_outstanding = false;
                memmove(c->in, c->in + plen, c->in_len - plen);
                c->in_len -= plen;
                continue;
            }
            c->in_consume = plen;
            return CLI_PACKET;
        }
        if (rc != MQTT_NEED_MORE) return conn_malformed(c, rc);
        if (c->eof) return conn_closed(c);
        if (g_interrupted) return conn_fail(c, CLI_ERR_INTR, "interrupted");

        if (cli_pending_output(c) > 0) {
            rc = conn_flush_some(c);
            if (rc < 0) return rc;
        }
        now = cli_now_ms();
        /* checked only when nothing is buffered: a backlog is not silence */
        if (c->connected && ka > 0 && c->ping_outstanding && now - c->ping_sent_ms >= ka)
            return conn_fail(c, CLI_ERR_TIMEOUT,
                             "%s: no PINGRESP from the broker within the keepalive "
                             "(%d s): connection lost",
                             c->peer, c->opts->keepalive);
        if (c->connected && ka > 0 && !c->ping_outstanding && now - c->last_send_ms >= ka)
            continue; /* sent at the top of the loop */
        if (c->tls != NULL && tls_conn_pending(c->tls) > 0 && c->in_len < conn_in_limit(c)) {
            rc = conn_fill(c);
            if (rc < 0) return rc;
            continue;
        }
        if (deadline >= 0 && now >= deadline && polled) return CLI_TIMEOUT;

        rc = conn_poll(c, conn_wait_ms(c, deadline, now), extra_fd, hdr);
        polled = true;
        if (rc != CLI_OK) return rc;
    }
}

int cli_flush(cli_conn *c, int stall_ms)
{
    int64_t deadline = cli_now_ms() + stall_ms;

    while (cli_pending_output(c) > 0) {
        struct pollfd p;
        size_t before = cli_pending_output(c);
        int rc = conn_flush_some(c);
        int64_t left;

        if (rc < 0) return rc;
        if (cli_pending_output(c) == 0) break;
        if (cli_pending_output(c) < before)
            deadline = cli_now_ms() + stall_ms; /* progress: the broker is reading */
        left = deadline - cli_now_ms();
        if (left <= 0)
            return conn_fail(c, CLI_ERR_TIMEOUT,
                             "%s: the broker stopped reading: %zu bytes could not be sent", c->peer,
                             cli_pending_output(c));
        if (g_interrupted) return conn_fail(c, CLI_ERR_INTR, "interrupted");
        p.fd = c->fd;
        p.events = c->write_wants_read ? POLLIN : POLLOUT;
        if (!c->eof && c->in_len < conn_in_limit(c)) p.events |= POLLIN;
        p.revents = 0;
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
            return conn_fail(c, CLI_ERR_IO, "poll failed: %s", strerror(errno));
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            /* keep what arrives (and let TLS make progress) while we write */
            rc = conn_fill(c);
            if (rc < 0) return rc;
        }
    }
    return c->write_dead ? conn_closed(c) : CLI_OK;
}

int cli_stall_ms(const cli_conn *c)
{
    return c->opts->keepalive > 0 ? c->opts->keepalive * 1500 : 60000;
}

/* ---- open / close ---------------------------------------------------------- */

/* An MQTT 5 CONNECT with the -D connect / will properties and -x. */
static int conn_send_connect5(cli_conn *c, const mqtt_connect *m, size_t need)
{
    uint8_t pbuf[CLI_PROPS_MAX_BYTES], wbuf[CLI_PROPS_MAX_BYTES];
    mqtt5_connect x;
    size_t written = 0;
    memset(&x, 0, sizeof x);
    x.c = *m;
    int rc = cli_props_build(c->opts, MQTT_CONNECT, pbuf, sizeof pbuf, &x.props.raw);
    if (rc == MQTT_OK && m->will_flag)
        rc = cli_props_build(c->opts, MQTT_PROPS_WILL, wbuf, sizeof wbuf, &x.will_props.raw);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot build the CONNECT properties: %s",
                         mqtt_strerror(rc));
    need += 10 + x.props.raw.len + x.will_props.raw.len;
    uint8_t *dst = conn_out_reserve(c, need);
    if (dst == NULL) return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    rc = mqtt5_encode_connect(dst, need, &x, &written);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot encode CONNECT: %s", mqtt_strerror(rc));
    return conn_out_commit(c, written);
}

/* The CONNACK at the connection's version: *rc is the 3.1.1 code (v5:
 * the reason mapped where one fits), *reason the v5 reason. */
static int conn_decode_connack(cli_conn *c, const mqtt_header *h, mqtt_connack *ack,
                               uint8_t *reason)
{
    if (c->opts->protocol_level != 5) {
        int rc = mqtt_decode_connack(h, ack);
        *reason = ack->return_code;
        return rc;
    }
    mqtt5_connack a5;
    int rc = mqtt5_decode_connack(h, &a5);
    ack->session_present = a5.session_present;
    ack->return_code = cli_connack_v3_code(a5.reason);
    *reason = a5.reason;
    return rc;
}

static int conn_send_connect(cli_conn *c)
{
    const cli_opts *o = c->opts;
    mqtt_connect m;
    size_t need = 32, written = 0;
    uint8_t *dst;
    int rc;

    memset(&m, 0, sizeof(m));
    if (o->protocol_level == 3) {
        m.protocol_name.ptr = (const uint8_t *)"MQIsdp";
        m.protocol_name.len = 6;
    } else {
        m.protocol_name.ptr = (const uint8_t *)"MQTT";
        m.protocol_name.len = 4;
    }
    m.protocol_level = (uint8_t)o->protocol_level;
    m.clean_session = o->clean_session;
    m.keepalive = (uint16_t)o->keepalive;
    m.client_id.ptr = (const uint8_t *)o->id;
    m.client_id.len = (uint16_t)strlen(o->id);
    need += strlen(o->id);
    if (o->will_topic != NULL) {
        const char *wp = o->will_payload ? o->will_payload : "";
        m.will_flag = true;
        m.will_qos = (uint8_t)o->will_qos;
        m.will_retain = o->will_retain;
        m.will_topic.ptr = (const uint8_t *)o->will_topic;
        m.will_topic.len = (uint16_t)strlen(o->will_topic);
        m.will_payload.ptr = (const uint8_t *)wp;
        m.will_payload.len = (uint16_t)strlen(wp);
        need += 4 + strlen(o->will_topic) + strlen(wp);
    }
    if (o->username != NULL) {
        m.username_flag = true;
        m.username.ptr = (const uint8_t *)o->username;
        m.username.len = (uint16_t)strlen(o->username);
        need += 2 + strlen(o->username);
    }
    if (o->password != NULL) {
        m.password_flag = true;
        m.password.ptr = (const uint8_t *)o->password;
        m.password.len = (uint16_t)strlen(o->password);
        need += 2 + strlen(o->password);
    }
    if (o->protocol_level == 5) return conn_send_connect5(c, &m, need);
    dst = conn_out_reserve(c, need);
    if (dst == NULL) return conn_fail(c, CLI_ERR_ALLOC, "out of memory");
    rc = mqtt_encode_connect(dst, need, &m, &written);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot encode CONNECT: %s", mqtt_strerror(rc));
    return conn_out_commit(c, written);
}

/* Send CONNECT and wait for CONNACK. */
static int conn_handshake_mqtt(cli_conn *c, int64_t deadline, bool *session_present)
{
    mqtt_header h;
    mqtt_connack ack;
    int64_t left;
    int rc = conn_send_connect(c);

    if (rc < 0) return rc;
    left = deadline - cli_now_ms();
    rc = cli_wait(c, left > 0 ? (int)left : 0, -1, &h);
    if (rc == CLI_TIMEOUT)
        return conn_fail(c, CLI_ERR_TIMEOUT, "%s: timed out waiting for CONNACK", c->peer);
    if (rc < 0) return rc;
    if (h.type != MQTT_CONNACK)
        return conn_fail(c, CLI_ERR_PROTOCOL, "%s: expected CONNACK, the broker sent %s", c->peer,
                         mqtt_type_name(h.type));
    uint8_t reason;
    rc = conn_decode_connack(c, &h, &ack, &reason);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_PROTOCOL, "%s: malformed CONNACK: %s", c->peer,
                         mqtt_strerror(rc));
    c->connack_rc = ack.return_code;
    if (reason != 0 && c->opts->protocol_level == 5)
        return conn_fail(c, CLI_ERR_REFUSED,
                         "the broker refused the connection: %s (CONNACK reason 0x%02x)",
                         mqtt5_reason_string(MQTT_CONNACK, reason), reason);
    if (ack.return_code != 0)
        return conn_fail(c, CLI_ERR_REFUSED, "the broker refused the connection: %s (CONNACK %d)",
                         mqtt_connack_string(ack.return_code), ack.return_code);
    c->connected = true;
    if (session_present != NULL) *session_present = ack.session_present;
    return CLI_OK;
}

int cli_conn_open(cli_conn **out, const cli_opts *opts, bool *session_present)
{
    const int64_t deadline = cli_now_ms() + CLI_CONNECT_TIMEOUT_MS;
    cli_conn *c = calloc(1, sizeof(*c));
    int rc;

    *out = c;
    if (c == NULL) return CLI_ERR_ALLOC;
    c->opts = opts;
    c->fd = -1;
    rc = conn_tcp(c, deadline);
    if (rc == CLI_OK && opts->tls) rc = conn_tls(c, deadline);
    if (rc == CLI_OK) rc = conn_handshake_mqtt(c, deadline, session_present);
    return rc;
}

/* After our last bytes: wait (bounded) for the broker's EOF, so closing with
 * unread bytes never turns into a reset that could drop our DISCONNECT. */
static void conn_drain(cli_conn *c)
{
    const int64_t deadline = cli_now_ms() + CLOSE_DRAIN_MS;
    uint8_t buf[4096];

    shutdown(c->fd, SHUT_WR);
    while (!c->eof) {
        ssize_t n;
        int w = wait_fd(c->fd, POLLIN, deadline);
        if (w <= 0) break;
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
    }
}

/* DISCONNECT (v5: with the -D disconnect properties). */
static int conn_send_disconnect(cli_conn *c)
{
    if (c->opts->protocol_level != 5) return conn_send_empty(c, MQTT_DISCONNECT);
    uint8_t pbuf[CLI_PROPS_MAX_BYTES], buf[CLI_PROPS_MAX_BYTES + 16];
    mqtt5_ack a = {.type = MQTT_DISCONNECT};
    size_t n = 0;
    int rc = cli_props_build(c->opts, MQTT_DISCONNECT, pbuf, sizeof pbuf, &a.props.raw);
    if (rc == MQTT_OK) rc = mqtt5_encode_ack(buf, sizeof buf, &a, &n);
    if (rc != MQTT_OK)
        return conn_fail(c, CLI_ERR_ARG, "cannot encode DISCONNECT: %s", mqtt_strerror(rc));
    return cli_send(c, buf, n);
}

void cli_conn_close(cli_conn *c)
{
    if (c == NULL) return;
    if (c->fd >= 0 && c->connected && !c->eof && !c->write_dead) {
        if (conn_send_disconnect(c) == CLI_OK && cli_flush(c, cli_stall_ms(c)) == CLI_OK) {
            if (c->tls != NULL) tls_conn_close_notify(c->tls);
            conn_drain(c);
        }
    }
    cli_conn_free(c);
}

void cli_conn_free(cli_conn *c)
{
    if (c == NULL) return;
    tls_conn_free(c->tls);
    tls_client_free(c->tcli);
    if (c->tls_global && --g_tls_users == 0) tls_global_free();
    if (c->fd >= 0) close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}
