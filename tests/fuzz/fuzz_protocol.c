/*
 * fuzz_protocol.c -- libFuzzer target for the broker's protocol layer
 * (broker/protocol.c, session.c, router.c, topic.c) driven through its
 * conn_handler with a fake transport: up to four clients, each a conn whose
 * socket is one end of a socketpair. The input is a sequence of steps:
 *
 *   byte 0: op (bits 0-1: client, bits 2-4: what), then for "data" two
 *   length bytes (big endian) and that many bytes.
 *   what 0-3: bytes from the client (fed to on_data as conn feeds them: the
 *             unconsumed tail is kept and offered again with more)
 *   what 4:   a tick 0.1 to 25.6 s later (next byte: tenths), as the loop
 *             runs them (deadlines, keepalive, held logins, the retained
 *             walk, memory_limit episodes)
 *   what 5:   the client's socket is read empty (its output drains)
 *   what 6:   the client disconnects (the next step for its slot opens a new
 *             connection)
 *   what 7:   the loop's end of iteration: flush, free the closed, flush
 *
 * Small limits (max_packet_size, max_output_buffer, memory_limit, queues)
 * so their edges are reached. Build and run: see docs/ARCHITECTURE.md
 * ("Fuzzing the protocol layer").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/bbuf.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/memlimit.h"
#include "broker/protocol.h"
#include "broker/session.h"
#include "broker/tree.h"

#define NCLIENTS 4

static config *CFG;
static broker B;
static listener L;
static conn_limits LIM;

typedef struct {
    conn *c;
    int peer;  /* the client's end of the socketpair */
    bbuf tail; /* bytes on_data has not consumed yet */
} fake;

static fake F[NCLIENTS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char path[] = "/tmp/secbroker-fuzz-protocol-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) abort();
    dprintf(fd, "allow_anonymous true\nlog_dest none\nmax_packet_size 4096\n"
                "max_output_buffer 65536\noutput_buffer_hard_limit 131072\n"
                "max_inflight_messages 3\nmax_queued_messages 8\nmemory_limit 1048576\n"
                "max_keepalive 60\nhandshake_timeout 5\n");
    close(fd);
    char err[256];
    log_init();
    /* every line formatted (format bugs show), none kept */
    if (log_configure(LOGD_FILE, LL_ALL, "/dev/null") < 0) abort();
    CFG = config_load(path, err, sizeof err);
    unlink(path);
    if (!CFG) {
        fprintf(stderr, "fuzz_protocol: %s\n", err);
        abort();
    }
    return 0;
}

static void broker_setup(void)
{
    memset(&B, 0, sizeof B);
    B.cfg = CFG;
    B.epfd = -1; /* no event loop: epoll_ctl fails harmlessly */
    B.reserve_fd = -1;
    B.now = 1000;
    B.root = tree_new_root();
    session_registry_init(&B.sessions,
                          (session_limits){.max_inflight = CFG->max_inflight_messages,
                                           .max_queued = CFG->max_queued_messages,
                                           .max_inflight_bytes = CFG->max_inflight_bytes,
                                           .max_queued_bytes = CFG->max_queued_bytes});
    B.sessions.clock = &B.now; /* message expiry */
    dict_init(&B.auth_fails);
    memset(&L, 0, sizeof L);
    L.cfg = &CFG->listeners[0];
    L.handler = &proto_conn_handler;
    LIM = (conn_limits){.soft = CFG->max_output_buffer,
                        .hard = CFG->output_buffer_hard_limit,
                        .soft_seconds = CFG->output_buffer_soft_seconds,
                        .slack = CFG->max_packet_size};
    L.limits = &LIM;
    B.listeners = &L;
    B.nlisteners = 1;
    g_memlimit.limit = CFG->memory_limit;
    memset(F, 0, sizeof F);
}

static void client_open(int i)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) abort();
    int small = 4096; /* the broker's output backs up soon: its limits are reached */
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    conn *c = calloc(1, sizeof *c + L.handler->ud_size);
    if (!c) abort();
    c->ud = c + 1; /* as conn_accept does */
    c->fd = sv[0];
    c->listener = &L;
    c->h = L.handler;
    c->state = CS_OPEN;
    c->last_rx = B.now;
    snprintf(c->peer, sizeof c->peer, "fuzz:%d", i);
    if (c->h->on_accept(&B, c) != BK_OK) abort();
    c->next = B.conns;
    if (B.conns) B.conns->prev = c;
    B.conns = c;
    B.nconns++;
    L.nconns++;
    F[i].c = c;
    F[i].peer = sv[1];
}

/* The loop's end of an iteration. */
static void loop_end(void)
{
    conn_flush_all(&B);
    for (int i = 0; i < NCLIENTS; i++)
        if (F[i].c && F[i].c->state == CS_CLOSING) {
            F[i].c = NULL; /* freed below */
            bbuf_free(&F[i].tail);
            close(F[i].peer);
            F[i].peer = -1;
        }
    conn_free_closed(&B);
    conn_flush_all(&B);
}

/* Slot i's connection; a slot whose connection is gone gets a new one. */
static fake *client_at(int i)
{
    if (!F[i].c) client_open(i);
    return &F[i];
}

static void client_drain(fake *f)
{
    uint8_t buf[65536];
    while (recv(f->peer, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    conn_flush_all(&B);
}

/* Bytes from the client, offered as conn offers them. */
static void client_data(fake *f, const uint8_t *p, size_t n)
{
    conn *c = f->c;
    if (c->state == CS_CLOSING) return;
    c->last_rx = B.now;
    if (n == 0) return;
    if (bbuf_append(&f->tail, p, n) != BK_OK) abort();
    size_t used = c->h->on_data(c, f->tail.data + f->tail.off, bbuf_used(&f->tail));
    f->tail.off += used;
    if (!bbuf_used(&f->tail)) bbuf_free(&f->tail);
}

static void broker_teardown(void)
{
    for (int i = 0; i < NCLIENTS; i++)
        if (F[i].c && F[i].c->state != CS_CLOSING) conn_close(&B, F[i].c, "fuzz input over");
    conn_flush_all(&B);
    conn_free_closed(&B);
    for (int i = 0; i < NCLIENTS; i++) {
        if (F[i].c && F[i].peer > 0) close(F[i].peer);
        bbuf_free(&F[i].tail);
    }
    session_registry_free(&B.sessions);
    tree_free(B.root);
    free(B.match_sessions);
    dict_free(&B.auth_fails);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    broker_setup();
    size_t off = 0;
    while (off < size) {
        uint8_t op = data[off++];
        fake *f = client_at(op & 3);
        unsigned what = (op >> 2) & 7;
        if (what <= 3) {
            if (size - off < 2) break;
            size_t n = (size_t)data[off] << 8 | data[off + 1];
            off += 2;
            if (n > size - off) n = size - off;
            client_data(f, data + off, n);
            off += n;
        } else if (what == 4) {
            B.now += 0.1 * (1 + (off < size ? data[off++] : 0));
            B.tick_due = B.now;
            conn_tick(&B);
            memlimit_tick(B.now);
        } else if (what == 5) {
            client_drain(f);
        } else if (what == 6) {
            if (f->c->state != CS_CLOSING) conn_close(&B, f->c, "connection closed by client");
        }
        loop_end();
    }
    broker_teardown();
    return 0;
}
