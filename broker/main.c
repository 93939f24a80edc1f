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
#include "broker/bridge.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/daemon.h"
#include "broker/err.h"
#include "broker/expire.h"
#include "broker/fdlimit.h"
#include "broker/log.h"
#include "broker/memlimit.h"
#include "broker/persist.h"
#include "broker/privcheck.h"
#include "broker/protocol.h"
#include "broker/reload.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/sys.h"
#include "broker/tls_words.h"
#include "broker/tree.h"
#include "broker/ws_transport.h"
#include "tls/tls.h"

broker *g_broker;

#define LISTENER_TAG (1ULL << 63)
/* Events taken per epoll_wait. */
#define EPOLL_BATCH 256
/* Fairness under handshake storms: a full TLS handshake step costs the CPU
 * of a signature and a key exchange (0.3-0.7 ms with mbedTLS 3.6), so 256 of
 * them in one loop turn would hold every established connection's output
 * back for ~100 ms (conn_flush_all runs once per turn). At most this many
 * handshake steps run per turn; the other handshaking connections stay
 * ready (level-triggered epoll puts them at the back of its ready list) and
 * come back on the next turns, while established connections are read and
 * flushed on every turn. */
#define HANDSHAKE_STEPS_PER_TURN 8
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
    else if (sig == SIGUSR2)
        g_broker->dump = 1;
    else
        g_broker->stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: secbroker [-c CONFIG_FILE] [-d] [-p PORT] [-v]\n"
            "       secbroker -h | --help | --version\n\n"
            "An MQTT 3.1.1 broker for plain TCP and TLS listeners.\n"
            "  -c FILE     configuration file (Mosquitto syntax; secbroker.conf(5))\n"
            "  -d          run in the background (daemon)\n"
            "  -p PORT     also listen on PORT (without -c: on 127.0.0.1 instead of 1883)\n"
            "  -v          verbose: log everything (to stderr unless log_dest is stdout/stderr)\n"
            "  -h, --help  this help\n"
            "  --version   print the version\n"
            "Signals: SIGINT/SIGTERM stop, SIGHUP reloads the configuration and reopens the\n"
            "log file, SIGUSR1 saves persistent state, SIGUSR2 logs the subscriptions.\n");
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
        .ciphers13 = lc->ciphers13,
        .tls_version = lc->tls_version,
        .keylog_file = lc->tls_keylog_file,
        .require_certificate = lc->require_certificate,
        /* the identity options need a certificate to read, so they ask for one */
        .request_certificate =
            lc->request_certificate || lc->use_identity_as_username || lc->use_subject_as_username,
        .trace = b->cfg->tls_trace,
        .opt_names = tls_words_server_opts,
    };
    char terr[512];
    if (tls_server_setup(&l->tls, &o, tls_log, b, terr, sizeof terr) != TLS_OK) {
        snprintf(err, errlen, "%s:%d: listener %d: %s", lc->file ? lc->file : b->cfg->path,
                 lc->line, lc->port, terr);
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
        snprintf(err, errlen, "%s:%d: listener %d: cannot resolve '%s': %s",
                 lc->file ? lc->file : b->cfg->path, lc->line, lc->port, host, gai_strerror(gai));
        return BK_ERR_IO;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s:%d: listener %d: socket: %s", lc->file ? lc->file : b->cfg->path,
                 lc->line, lc->port, strerror(errno));
        freeaddrinfo(res);
        return BK_ERR_IO;
    }
    int one = 1, zero = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* best effort */
    if (res->ai_family == AF_INET6 && !lc->address)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 too */
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s:%d: listener %d on %s: %s%s", lc->file ? lc->file : b->cfg->path,
                 lc->line, lc->port, host, strerror(e),
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
    if (!pw) { /* checked at startup already (check_user) */
        snprintf(err, errlen, "user %s does not exist", b->cfg->user);
        return BK_ERR_IO;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot switch to user %s: %s", b->cfg->user, strerror(errno));
        return BK_ERR_IO;
    }
    log_msg(LL_INFO, "running as user %s", b->cfg->user);
    return BK_OK;
}

static void broker_free(broker *b)
{
    proto_shutdown(b); /* MQTT 5 clients learn why (DISCONNECT 0x8B) */
    for (conn *c = b->conns; c; c = c->next)
        if (c->state != CS_CLOSING) conn_close(b, c, "broker shutting down");
    conn_flush_all(b);
    conn_free_closed(b);
    bridges_free(b);
    persist_close(b); /* commits; freeing sessions below is not journaled */
    shared_free(b);
    proto_drop_delayed_wills(b);
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

typedef struct {
    const char *conf; /* -c */
    bool verbose;     /* -v */
    bool daemon;      /* -d */
    int port;         /* -p, 0 = none */
} options;

static int bad_arg(const char *fmt, const char *arg)
{
    fprintf(stderr, "secbroker: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

/* -1 to go on, else the exit code (after --help, --version or a bad argument). */
static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc && argv[i + 1][0] != '-';
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "-p") == 0) {
            if (!has_value)
                return bad_arg(argv[i][1] == 'c' ? "%s needs a configuration file: -c FILE"
                                                 : "%s needs a port number: -p PORT",
                               argv[i]);
            if (argv[i][1] == 'c') {
                o->conf = argv[++i];
                continue;
            }
            char *end;
            long port = strtol(argv[++i], &end, 10);
            if (*end || port < 1 || port > 65535)
                return bad_arg("-p: '%s' is not a port number (1..65535)", argv[i]);
            o->port = (int)port;
            continue;
        }
        if (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--daemon") == 0) {
            o->daemon = true;
            continue;
        }
        bool *verbose = &o->verbose;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("secbroker %s (MQTT 5.0, 3.1.1 and 3.1, %s)\n", SECBROKER_VERSION,
                   tls_library_version());
            return 0;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
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
 * loopback, anonymous allowed; -p moves that port); then the log
 * destinations. The defaults go through a private temporary file whose
 * name never appears in a message. */
static int load_config(broker *b, const options *o, char *err, size_t errlen)
{
    if (o->conf) {
        b->cfg = config_load(o->conf, err, errlen);
    } else {
        char tmpl[] = "/tmp/secbroker-default-XXXXXX";
        int fd = mkstemp(tmpl);
        if (fd < 0) {
            snprintf(err, errlen, "cannot write the default configuration in /tmp: %s",
                     strerror(errno));
            return BK_ERR_IO;
        }
        dprintf(fd, "allow_anonymous true\nlog_dest stderr\nlistener %d 127.0.0.1\n",
                o->port ? o->port : 1883);
        close(fd);
        b->cfg = config_load_as(tmpl, "default configuration", err, errlen);
        unlink(tmpl);
    }
    if (!b->cfg) return BK_ERR_IO;
    if (o->conf && o->port && config_add_listener(b->cfg, o->port) != BK_OK) {
        snprintf(err, errlen, "-p %d: out of memory", o->port);
        return BK_ERR_NOMEM;
    }
    char lerr[512];
    if (reload_apply_log(b->cfg, o->verbose, lerr, sizeof lerr) != BK_OK) {
        snprintf(err, errlen, "%s: %s", b->cfg->path, lerr);
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
                                           .max_queued = b->cfg->max_queued_messages,
                                           .max_inflight_bytes = b->cfg->max_inflight_bytes,
                                           .max_queued_bytes = b->cfg->max_queued_bytes});
    b->sessions.clock = &b->now; /* message expiry */
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

/* The warnings of one security set: the broker's (l NULL: every listener
 * with per_listener_settings false) or listener l's. */
static void sec_warnings(const broker *b, const listener_cfg *l)
{
    const sec_cfg *s = config_sec(b->cfg, l);
    char who[48] = "";
    if (l) snprintf(who, sizeof who, "listener %d: ", l->port);
    if (!s->allow_anonymous && !s->password_file) {
        bool certs = false;
        for (size_t i = 0; i < b->nlisteners; i++)
            if (!l || l == &b->cfg->listeners[i])
                certs |= b->cfg->listeners[i].use_identity_as_username ||
                         b->cfg->listeners[i].use_subject_as_username;
        if (!certs)
            log_msg(LL_WARNING,
                    "%sallow_anonymous is false and there is no password_file: every "
                    "client will be refused (CONNACK 5)",
                    who);
    }
    if (s->acl_file && !s->password_file && s->allow_anonymous)
        log_msg(LL_WARNING,
                "%sacl_file without password_file: usernames are not verified, so a "
                "client can claim any user's ACL rules",
                who);
}

static void startup_warnings(const broker *b)
{
    if (!b->cfg->per_listener_settings) {
        sec_warnings(b, NULL);
        return;
    }
    for (size_t i = 0; i < b->cfg->nlisteners; i++)
        sec_warnings(b, &b->cfg->listeners[i]);
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
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

typedef struct {
    const options *opts;
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

/* The periodic work of one iteration: deadlines, TLS session cache,
 * session expiry, $SYS, SIGHUP, SIGUSR1, SIGUSR2. */
static void loop_periodic(broker *b, loop_timers *t)
{
    if (b->now >= t->next_tick) {
        /* deadlines are judged at the tick's due time (a late loop runs one
         * tick, due at the first grid point it missed, for all it missed) */
        b->tick_due = t->next_tick;
        conn_tick(b);
        bridges_tick(b);
        memlimit_tick(b->now);
        t->next_tick = tick_after(b->now);
    }
    if (b->now >= t->next_tls_tick) {
        for (size_t i = 0; i < b->nlisteners; i++)
            if (b->listeners[i].tls) tls_server_tick(b->listeners[i].tls, time(NULL));
        proto_expire_sessions(b);
        (void)expire_sessions(b); /* persistent_client_expiration */
        t->next_tls_tick = b->now + 1;
        if (b->cfg->sys_interval) sys_tick(b); /* the dashboard's lists, on change */
    }
    if (b->cfg->sys_interval && b->now >= t->next_sys) {
        sys_publish(b);
        bridges_publish_sys(b);
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
        reload_config(b, t->opts->verbose, t->opts->conf != NULL, t->opts->port);
    }
    if (b->dump) {
        b->dump = 0;
        reload_dump_subscriptions(b);
    }
}

static void dispatch(broker *b, const struct epoll_event *evs, int n)
{
    int handshakes = 0;
    for (int i = 0; i < n; i++) {
        uint64_t u = evs[i].data.u64;
        if (u == PERSIST_EVENT) {
            persist_on_synced(b);
        } else if (u & LISTENER_TAG) {
            conn_accept(b, &b->listeners[u & ~LISTENER_TAG]);
        } else {
            conn *c = evs[i].data.ptr;
            if (c->state == CS_TLS_HANDSHAKE && ++handshakes > HANDSHAKE_STEPS_PER_TURN)
                continue; /* still ready: reported again on a later turn */
            conn_on_event(b, c, evs[i].events);
        }
    }
}

static void run_loop(broker *b, const options *o)
{
    loop_timers t = {o, tick_after(b->now), b->now + 1, b->now + 1, b->now};
    struct epoll_event evs[EPOLL_BATCH];
    while (!b->stop) {
        int n = epoll_wait(b->epfd, evs, EPOLL_BATCH, sleep_ms(b, t.next_tick));
        b->now = broker_now();
        if (n < 0 && errno != EINTR) {
            log_msg(LL_ERROR, "epoll_wait: %s", strerror(errno));
            break;
        }
        dispatch(b, evs, n);
        conn_service_read_pending(b);
        loop_periodic(b, &t);
        sys_publish_log(b);
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

/* Each line of err ("FILE:LINE: reason" per error) on its own line. */
static void print_errors(const char *err)
{
    for (const char *l = err; *l;) {
        const char *nl = strchr(l, '\n');
        int len = nl ? (int)(nl - l) : (int)strlen(l);
        fprintf(stderr, "secbroker: %.*s\n", len, l);
        l += len + (nl ? 1 : 0);
    }
}

static int fail_start(broker *b, const char *err, bool tls_up)
{
    print_errors(err);
    if (b->cfg) broker_free(b);
    if (tls_up) tls_global_free();
    return 1;
}

/* A `user` that does not exist is a startup error (Mosquitto refuses too). */
static int check_user(const config *c, char *err, size_t errlen)
{
    if (!c->user || getpwnam(c->user)) return BK_OK;
    snprintf(err, errlen,
             "%s: user %s does not exist (create it, e.g. adduser --system %s, or "
             "change the 'user' line)",
             c->path, c->user, c->user);
    return BK_ERR_CONFIG;
}

/* -d and pid_file, after the listeners are open (their errors reach the
 * terminal) and before any thread starts (persistence's). */
static int detach_and_pid(broker *b, const options *o, char *err, size_t errlen)
{
    if (o->daemon && daemon_detach(err, errlen) != BK_OK) return BK_ERR_IO;
    if (b->cfg->pid_file && daemon_write_pid(b->cfg->pid_file, err, errlen) != BK_OK)
        return BK_ERR_IO;
    return BK_OK;
}

int main(int argc, char **argv)
{
    options o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    log_init();
    /* a file size limit makes writes fail with EFBIG (persistence reports it
     * and holds acknowledgements) instead of killing the broker */
    signal(SIGXFSZ, SIG_IGN);
    static char err[8192];
    static broker br;
    broker *b = &br;
    b->epfd = -1;
    b->reserve_fd = -1;
    if (load_config(b, &o, err, sizeof err) != BK_OK) {
        print_errors(err);
        if (b->cfg) config_free(b->cfg);
        return 1;
    }
    if (check_user(b->cfg, err, sizeof err) != BK_OK) return fail_start(b, err, false);
    if (tls_global_setup(err, sizeof err) != TLS_OK) return fail_start(b, err, false);
    g_broker = b;
    if (broker_init(b) != BK_OK) return fail_start(b, "out of memory or no epoll", true);
    if (auth_load(b, err, sizeof err) != BK_OK) return fail_start(b, err, true);
    if (open_listeners(b, err, sizeof err) != BK_OK) {
        log_msg(LL_ERROR, "%s", err);
        return fail_start(b, err, true);
    }
    if (detach_and_pid(b, &o, err, sizeof err) != BK_OK) return fail_start(b, err, true);
    (void)privcheck_warn(b->cfg);
    if (drop_privileges(b, err, sizeof err) != BK_OK) return fail_start(b, err, true);
    /* after dropping privileges: the database belongs to the user that writes it */
    b->buffer_connack = b->cfg->persistence && b->cfg->persistence_strict;
    if (persist_open(b, err, sizeof err) != BK_OK) {
        log_msg(LL_ERROR, "%s", err);
        return fail_start(b, err, true);
    }
    if (bridges_start(b, err, sizeof err) != BK_OK) return fail_start(b, err, true);
    startup_warnings(b);
    install_signals();
    sys_init(b);
    sys_log_topic_enable();
    log_msg(LL_NOTICE, "secbroker %s running (%s)", SECBROKER_VERSION, tls_library_version());
    run_loop(b, &o);
    log_msg(LL_NOTICE, "secbroker shutting down");
    sys_free();
    if (b->cfg->pid_file) daemon_remove_pid(b->cfg->pid_file);
    broker_free(b);
    tls_global_free();
    log_close();
    return 0;
}
