/*
 * main.c -- `secbroker -c FILE`: configuration, listeners, the event loop
 * and shutdown. One thread; epoll knows only fds and a pointer; the loop
 * does its deferred work (flush output, free closed connections) in one
 * place before it sleeps.
 */
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/err.h"
#include "broker/fdlimit.h"
#include "broker/log.h"
#include "broker/memlimit.h"
#include "broker/persist.h"
#include "broker/protocol.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/sys.h"
#include "broker/tree.h"
#include "broker/ws_transport.h"
#include "tls/tls.h"

broker *g_broker;

#define LISTENER_TAG (1ULL << 63)
/* Events taken per epoll_wait. */
#define EPOLL_BATCH 256
/* Longest sleep of the loop; deadlines are checked every TICK_SECONDS. */
#define LOOP_SLEEP_MS 100
#define TICK_SECONDS 0.1
/* The shared read buffer all connections read into. */
#define READ_BUFFER_SIZE (64 * 1024)

double broker_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int sig)
{
    if (!g_broker) return;
    if (sig == SIGHUP)
        g_broker->reload = 1;
    else if (sig == SIGUSR1)
        g_broker->save = 1;
    else
        g_broker->stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: secbroker [-c CONFIG_FILE] [-v]\n"
               "       secbroker -h | --help | --version\n\n"
               "An MQTT 3.1.1 broker for plain TCP and TLS listeners.\n"
               "  -c FILE     configuration file (Mosquitto syntax; README.md lists every key)\n"
               "  -v          verbose: log everything to stderr, in addition to log_dest\n"
               "  -h, --help  this help\n"
               "  --version   print the version\n"
               "Signals: SIGINT/SIGTERM stop, SIGHUP reloads password_file and acl_file.\n");
}

static void tls_log(void *ud, int level, const char *line)
{
    (void)ud;
    static const int map[] = {LL_ERROR, LL_WARNING, LL_NOTICE, LL_INFO, LL_TLS};
    log_msg(map[level < 0 ? 0 : level > 4 ? 4 : level], "%s", line);
}

static int listener_tls(broker *b, listener *l, char *err, size_t errlen)
{
    listener_cfg *lc = l->cfg;
    tls_server_opts o = {
        .certfile = lc->certfile,
        .keyfile = lc->keyfile,
        .cafile = lc->cafile,
        .capath = lc->capath,
        .crlfile = lc->crlfile,
        .ciphers = lc->ciphers,
        .tls_version = lc->tls_version,
        .keylog_file = lc->tls_keylog_file,
        .require_certificate = lc->require_certificate,
        .request_certificate = lc->cafile || lc->capath,
        .trace = b->cfg->tls_trace,
    };
    char terr[512];
    if (tls_server_setup(&l->tls, &o, tls_log, b, terr, sizeof terr) != TLS_OK) {
        snprintf(err, errlen, "%s:%d: listener %d: %s", b->cfg->path, lc->line, lc->port, terr);
        return BK_ERR_IO;
    }
    return BK_OK;
}

static int open_listener(broker *b, listener *l, char *err, size_t errlen)
{
    listener_cfg *lc = l->cfg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", lc->port);
    /* No address: one IPv6 socket that also takes IPv4 (v6only off). */
    const char *host = lc->address ? lc->address : "::";
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0 && !lc->address) {
        host = "0.0.0.0";
        gai = getaddrinfo(host, port, &hints, &res);
    }
    if (gai != 0) {
        snprintf(err, errlen, "%s:%d: listener %d: cannot resolve '%s': %s", b->cfg->path, lc->line,
                 lc->port, host, gai_strerror(gai));
        return BK_ERR_IO;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s:%d: listener %d: socket: %s", b->cfg->path, lc->line, lc->port,
                 strerror(errno));
        freeaddrinfo(res);
        return BK_ERR_IO;
    }
    int one = 1, zero = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* best effort */
    if (res->ai_family == AF_INET6 && !lc->address)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 too */
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s:%d: listener %d on %s: %s%s", b->cfg->path, lc->line, lc->port,
                 host, strerror(e),
                 e == EADDRINUSE ? " (another broker, e.g. the mosquitto service, may be "
                                   "using the port: stop it or change the port)"
                 : e == EACCES   ? " (ports below 1024 need root)"
                                 : "");
        close(fd);
        freeaddrinfo(res);
        return BK_ERR_IO;
    }
    freeaddrinfo(res);
    l->fd = fd;
    l->ev_data = LISTENER_TAG | (uint64_t)(l - b->listeners);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = l->ev_data};
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
        return BK_ERR_IO;
    }
    if (lc->certfile && listener_tls(b, l, err, errlen) != BK_OK) return BK_ERR_IO;
    if (lc->websockets && ws_transport_setup(b, l, err, errlen) != BK_OK) return BK_ERR_IO;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    int port_now = lc->port;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        port_now = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                     : ((struct sockaddr_in *)&bound)->sin_port);
    log_msg(LL_NOTICE, "Opened %s listener on %s port %d%s%s",
            lc->websockets ? (lc->certfile ? "WebSocket (wss)" : "WebSocket (ws)")
            : lc->certfile ? "TLS"
                           : "plain",
            lc->address ? lc->address : "all addresses", port_now,
            lc->http_dir ? ", http_dir " : "", lc->http_dir ? lc->http_dir : "");
    return BK_OK;
}

static int drop_privileges(broker *b, char *err, size_t errlen)
{
    if (geteuid() != 0 || !b->cfg->user) return BK_OK;
    struct passwd *pw = getpwnam(b->cfg->user);
    if (!pw) {
        log_msg(LL_WARNING, "user %s does not exist: still running as root", b->cfg->user);
        return BK_OK;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot switch to user %s: %s", b->cfg->user, strerror(errno));
        return BK_ERR_IO;
    }
    log_msg(LL_INFO, "running as user %s", b->cfg->user);
    return BK_OK;
}

static void publish_sys(broker *b, time_t started)
{
    static const char *const fmt[] = {
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/heap/current",
        "$SYS/broker/memory_limit/qos0 dropped",
        "$SYS/broker/memory_limit/publishes refused",
    };
    enum { NSYS = sizeof fmt / sizeof fmt[0] };
    char val[NSYS][64];
    uint32_t active = proto_count_active(b);
    snprintf(val[0], 64, "secbroker version %s", SECBROKER_VERSION);
    snprintf(val[1], 64, "%lld seconds", (long long)(time(NULL) - started));
    snprintf(val[2], 64, "%u", active);
    snprintf(val[3], 64, "%llu", (unsigned long long)b->msgs_received);
    snprintf(val[4], 64, "%llu", (unsigned long long)b->msgs_sent);
    snprintf(val[5], 64, "%llu", (unsigned long long)b->retained_count);
    snprintf(val[6], 64, "%llu", (unsigned long long)b->bytes_received);
    snprintf(val[7], 64, "%llu", (unsigned long long)b->bytes_sent);
    snprintf(val[8], 64, "%llu", (unsigned long long)g_memlimit.used);
    snprintf(val[9], 64, "%llu", (unsigned long long)g_memlimit.dropped_qos0);
    snprintf(val[10], 64, "%llu", (unsigned long long)g_memlimit.refused);
    for (int i = 0; i < NSYS; i++) {
        msg *m = msg_new((const uint8_t *)fmt[i], (uint16_t)strlen(fmt[i]), (const uint8_t *)val[i],
                         strlen(val[i]), 0, true);
        if (!m) continue;
        uint64_t rx = b->msgs_received;
        router_publish(b, NULL, m);
        b->msgs_received = rx; /* $SYS is not traffic */
        msg_unref(m);
    }
}

static void broker_free(broker *b)
{
    for (conn *c = b->conns; c; c = c->next)
        if (c->state != CS_CLOSING) conn_close(b, c, "broker shutting down");
    conn_flush_all(b);
    conn_free_closed(b);
    persist_close(b); /* commits; freeing sessions below is not journaled */
    session_registry_free(&b->sessions);
    tree_free(b->root);
    for (size_t i = 0; i < b->nlisteners; i++) {
        if (b->listeners[i].fd > 0) close(b->listeners[i].fd);
        tls_server_free(b->listeners[i].tls);
        ws_transport_free(&b->listeners[i]);
    }
    free(b->listeners);
    auth_free(b);
    free(b->rbuf);
    free(b->match_sessions);
    if (b->epfd >= 0) close(b->epfd);
    if (b->reserve_fd >= 0) close(b->reserve_fd);
    config_free(b->cfg);
}

/* -1 to go on, else the exit code (after --help, --version or a bad argument). */
static int parse_args(int argc, char **argv, const char **conf, bool *verbose)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("secbroker %s (MQTT 3.1.1 and 3.1, %s)\n", SECBROKER_VERSION,
                   tls_library_version());
            return 0;
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            *conf = argv[++i];
        } else if (strcmp(argv[i], "-v") == 0) {
            *verbose = true;
        } else {
            fprintf(stderr, "secbroker: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* The configuration file, or with none Mosquitto's defaults (1883 on
 * loopback, anonymous allowed); then the log destinations. */
static int load_config(broker *b, const char *conf, bool verbose, char *err, size_t errlen)
{
    if (conf) {
        b->cfg = config_load(conf, err, errlen);
    } else {
        char tmpl[] = "/tmp/secbroker-default-XXXXXX";
        int fd = mkstemp(tmpl);
        if (fd < 0) {
            snprintf(err, errlen, "cannot create %s: %s", tmpl, strerror(errno));
            return BK_ERR_IO;
        }
        dprintf(fd, "allow_anonymous true\nlog_dest stderr\n");
        close(fd);
        b->cfg = config_load(tmpl, err, errlen);
        unlink(tmpl);
    }
    if (!b->cfg) return BK_ERR_IO;
    int dests = b->cfg->log_dests | (verbose ? LOGD_STDERR : 0);
    int types = verbose ? LL_ALL : b->cfg->log_types;
    if (log_configure(dests, types, b->cfg->log_file) < 0) {
        snprintf(err, errlen, "%s: log_dest file %s: %s", conf, b->cfg->log_file, strerror(errno));
        return BK_ERR_IO;
    }
    return BK_OK;
}

/* Registries, the tree, the shared read buffer and epoll. Hash tables key
 * themselves and client ids come from getrandom (dict.c, rng.c): there is
 * no process-wide seed. */
static int broker_init(broker *b)
{
    session_registry_init(&b->sessions,
                          (session_limits){.max_inflight = b->cfg->max_inflight_messages,
                                           .max_queued = b->cfg->max_queued_messages});
    dict_init(&b->auth_fails);
    b->out_limits = (conn_limits){.soft = b->cfg->max_output_buffer,
                                  .hard = b->cfg->output_buffer_hard_limit,
                                  .soft_seconds = b->cfg->output_buffer_soft_seconds,
                                  .slack = b->cfg->max_packet_size};
    b->root = tree_new_root();
    b->rbuf_cap = READ_BUFFER_SIZE;
    b->rbuf = malloc(b->rbuf_cap);
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->now = broker_now();
    (void)fdlimit_raise(); /* it logs what it did */
    g_memlimit.limit = b->cfg->memory_limit;
    b->reserve_fd = fdlimit_reserve_open();
    return b->root && b->rbuf && b->epfd >= 0 ? BK_OK : BK_ERR_NOMEM;
}

static int open_listeners(broker *b, char *err, size_t errlen)
{
    b->nlisteners = b->cfg->nlisteners;
    b->listeners = calloc(b->nlisteners, sizeof *b->listeners);
    if (!b->listeners) {
        snprintf(err, errlen, "out of memory");
        return BK_ERR_NOMEM;
    }
    for (size_t i = 0; i < b->nlisteners; i++) {
        b->listeners[i].cfg = &b->cfg->listeners[i];
        b->listeners[i].fd = -1;
        b->listeners[i].handler = &proto_conn_handler;
        b->listeners[i].limits = &b->out_limits;
        if (open_listener(b, &b->listeners[i], err, errlen) < 0) return BK_ERR_IO;
    }
    return BK_OK;
}

static void startup_warnings(const broker *b)
{
    if (!b->cfg->allow_anonymous && !b->cfg->password_file) {
        bool certs = false;
        for (size_t i = 0; i < b->nlisteners; i++)
            certs |= b->cfg->listeners[i].use_identity_as_username;
        if (!certs)
            log_msg(LL_WARNING, "allow_anonymous is false and there is no password_file: every "
                                "client will be refused (CONNACK 5)");
    }
    if (b->cfg->acl_file && !b->cfg->password_file && b->cfg->allow_anonymous)
        log_msg(LL_WARNING, "acl_file without password_file: usernames are not verified, so a "
                            "client can claim any user's ACL rules");
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

typedef struct {
    time_t started;
    double next_tick, next_sys, next_tls_tick, last_sys;
} loop_timers;

/* Ticks fall on an absolute grid (multiples of TICK_SECONDS of the monotonic
 * clock), so they do not drift by the time each iteration takes: the last
 * grid point at or before t, and the first one after it. */
static double tick_at(double t)
{
    return (double)(long long)(t / TICK_SECONDS) * TICK_SECONDS; /* t >= 0 */
}

static double tick_after(double t)
{
    return tick_at(t) + TICK_SECONDS;
}

/* Milliseconds epoll may sleep: until the next tick, at most LOOP_SLEEP_MS. */
static int sleep_ms(const broker *b, double next_tick)
{
    if (b->read_pending) return 0;
    double ms = (next_tick - broker_now()) * 1000.0;
    if (ms <= 0) return 0;
    if (ms >= LOOP_SLEEP_MS) return LOOP_SLEEP_MS;
    return (int)ms + ((double)(int)ms < ms); /* rounded up: never wake before it */
}

/* The periodic work of one iteration: deadlines, TLS session cache, $SYS,
 * SIGHUP. */
static void loop_periodic(broker *b, loop_timers *t)
{
    if (b->now >= t->next_tick) {
        /* deadlines are judged at the tick's due time (a late loop runs one
         * tick, due at the first grid point it missed, for all it missed) */
        b->tick_due = t->next_tick;
        conn_tick(b);
        memlimit_tick(b->now);
        t->next_tick = tick_after(b->now);
    }
    if (b->now >= t->next_tls_tick) {
        for (size_t i = 0; i < b->nlisteners; i++)
            if (b->listeners[i].tls) tls_server_tick(b->listeners[i].tls, time(NULL));
        t->next_tls_tick = b->now + 1;
        if (b->cfg->sys_interval) sys_tick(b); /* the dashboard's lists, on change */
    }
    if (b->cfg->sys_interval && b->now >= t->next_sys) {
        publish_sys(b, t->started);
        sys_publish_rates(b, b->now - t->last_sys);
        t->last_sys = b->now;
        t->next_sys = b->now + b->cfg->sys_interval;
    }
    if (b->save) {
        b->save = 0;
        log_msg(LL_NOTICE, "SIGUSR1: saving persistent state");
        persist_request_save(b);
    }
    if (b->reload) {
        b->reload = 0;
        log_msg(LL_NOTICE, "SIGHUP: reloading password_file and acl_file");
        auth_reload(b);
    }
}

static void run_loop(broker *b)
{
    loop_timers t = {time(NULL), tick_after(b->now), b->now + 1, b->now + 1, b->now};
    struct epoll_event evs[EPOLL_BATCH];
    while (!b->stop) {
        int n = epoll_wait(b->epfd, evs, EPOLL_BATCH, sleep_ms(b, t.next_tick));
        b->now = broker_now();
        if (n < 0 && errno != EINTR) {
            log_msg(LL_ERROR, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t u = evs[i].data.u64;
            if (u == PERSIST_EVENT)
                persist_on_synced(b);
            else if (u & LISTENER_TAG)
                conn_accept(b, &b->listeners[u & ~LISTENER_TAG]);
            else
                conn_on_event(b, evs[i].data.ptr, evs[i].events);
        }
        conn_service_read_pending(b);
        loop_periodic(b, &t);
        /* before sleeping: commit what acknowledgements wait for, output
         * (a refusal's CONNACK must leave before its close), then closes
         * (which may publish wills), then their commit and output */
        persist_before_flush(b);
        conn_flush_all(b);
        conn_free_closed(b);
        persist_before_flush(b);
        conn_flush_all(b);
    }
}

static int fail_start(broker *b, const char *err, bool tls_up)
{
    fprintf(stderr, "secbroker: %s\n", err);
    if (b->cfg) broker_free(b);
    if (tls_up) tls_global_free();
    return 1;
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    bool verbose = false;
    int rc = parse_args(argc, argv, &conf, &verbose);
    if (rc >= 0) return rc;
    log_init();
    /* a file size limit makes writes fail with EFBIG (persistence reports it
     * and holds acknowledgements) instead of killing the broker */
    signal(SIGXFSZ, SIG_IGN);
    char err[1024];
    static broker br;
    broker *b = &br;
    b->epfd = -1;
    b->reserve_fd = -1;
    if (load_config(b, conf, verbose, err, sizeof err) != BK_OK) {
        fprintf(stderr, "secbroker: %s\n", err);
        return 1;
    }
    if (tls_global_setup(err, sizeof err) != TLS_OK) return fail_start(b, err, false);
    g_broker = b;
    if (broker_init(b) != BK_OK) return fail_start(b, "out of memory or no epoll", true);
    if (auth_load(b, err, sizeof err) != BK_OK) return fail_start(b, err, true);
    if (open_listeners(b, err, sizeof err) != BK_OK) {
        log_msg(LL_ERROR, "%s", err);
        return fail_start(b, err, true);
    }
    if (drop_privileges(b, err, sizeof err) != BK_OK) return fail_start(b, err, true);
    /* after dropping privileges: the database belongs to the user that writes it */
    b->buffer_connack = b->cfg->persistence && b->cfg->persistence_strict;
    if (persist_open(b, err, sizeof err) != BK_OK) {
        log_msg(LL_ERROR, "%s", err);
        return fail_start(b, err, true);
    }
    startup_warnings(b);
    install_signals();
    log_msg(LL_NOTICE, "secbroker %s running (%s)", SECBROKER_VERSION, tls_library_version());
    run_loop(b);
    log_msg(LL_NOTICE, "secbroker shutting down");
    broker_free(b);
    tls_global_free();
    log_close();
    return 0;
}
