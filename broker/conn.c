/*
 * conn.c -- the transport (see conn.h): accept, read, coalesced output,
 * TLS, deadlines, close. No MQTT here: bytes go up through the listener's
 * conn_handler.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/fdlimit.h"
#include "broker/log.h"
#include "broker/sys.h"
#include "broker/tls_words.h"
#include "tls/tls.h"

/* Connections accepted per listener event, so a storm cannot starve the rest. */
#define ACCEPT_BATCH 64
/* Reads per connection per event before the others get their turn. */
#define READ_ROUNDS 16
/* Smallest read into a connection's own (partial message) buffer. */
#define PARTIAL_READ_MIN 16384
/* Output buffers larger than this are freed as soon as they drain. */
#define OUT_KEEP_MAX (1024 * 1024)
/* An empty output buffer of a connection idle this long is freed. */
#define IDLE_FREE_SECONDS 0.5

static void epoll_set(broker *b, conn *c, bool want_write)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        log_msg(LL_WARNING, "%s: epoll_ctl: %s", c->peer, strerror(errno));
    c->want_write = want_write;
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(out, len, "%s:%d", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        port = ntohs(a->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) { /* an IPv4 client on a dual-stack socket */
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof host);
            snprintf(out, len, "%s:%d", host, port);
            return;
        }
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(out, len, "[%s]:%d", host, port);
    } else {
        snprintf(out, len, "unknown");
    }
}

/* An episode at the open-files limit ends after this long without hitting it. */
#define FDLIMIT_QUIET_SECONDS 1.0

static void listener_pause(broker *b, listener *l, bool pause)
{
    struct epoll_event ev = {.events = pause ? 0 : EPOLLIN, .data.u64 = l->ev_data};
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, l->fd, &ev) < 0)
        log_msg(LL_WARNING, "listener %d: epoll_ctl: %s", l->cfg->port, strerror(errno));
    else
        l->paused = pause;
}

/* accept failed with EMFILE/ENFILE. The pending connection keeps the
 * listener readable (level-triggered): shed it with the reserve descriptor,
 * or pause the listener until the next tick. Logged once per episode (the
 * count when it ends, in conn_tick). Returns true to try the next one. */
static bool accept_at_fd_limit(broker *b, listener *l, int err)
{
    if (!l->fdlimit_since) {
        l->fdlimit_since = b->now;
        log_msg(LL_ERROR,
                "accept on port %d: %s: new connections are closed at once until descriptors "
                "come free (raise the open files limit)",
                l->cfg->port, strerror(err));
    }
    l->fdlimit_last = b->now;
    int r = fdlimit_shed_one(&b->reserve_fd, l->fd);
    if (r > 0) l->fdlimit_shed++;
    if (r < 0) listener_pause(b, l, true);
    return r > 0;
}

/* Once a tick: resume a paused listener; end a quiet episode with its count. */
static void listener_tick(broker *b, listener *l)
{
    if (l->paused) listener_pause(b, l, false);
    if (!l->fdlimit_since || b->now - l->fdlimit_last < FDLIMIT_QUIET_SECONDS) return;
    log_msg(LL_WARNING,
            "accept on port %d: open files limit episode over after %.1f s: %llu connections "
            "shed",
            l->cfg->port, l->fdlimit_last - l->fdlimit_since, (unsigned long long)l->fdlimit_shed);
    l->fdlimit_since = 0;
    l->fdlimit_shed = 0;
}

static void accept_undo(conn *c)
{
    tls_conn_free(c->tls);
    close(c->fd);
    free(c);
}

void conn_accept(broker *b, listener *l)
{
    /* Bounded per event so a connection storm cannot starve the others. */
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == EMFILE || errno == ENFILE) {
                if (accept_at_fd_limit(b, l, errno)) continue;
                return;
            }
            if (errno != ECONNABORTED)
                log_msg(LL_WARNING, "accept on port %d: %s", l->cfg->port, strerror(errno));
            return;
        }
        char peer[64];
        format_peer(&ss, peer, sizeof peer);
        b->sockets_accepted++;
        if (l->cfg->max_connections >= 0 && l->nconns >= (uint32_t)l->cfg->max_connections) {
            log_msg(LL_NOTICE, "Connection from %s refused: listener %d is at max_connections %d",
                    peer, l->cfg->port, l->cfg->max_connections);
            close(fd);
            continue;
        }
        int one = 1;
        if (b->cfg->set_tcp_nodelay) /* best effort */
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        size_t fsz = l->filter ? l->filter->state_size : 0;
        conn *c = calloc(1, sizeof *c + l->handler->ud_size + fsz);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->listener = l;
        c->h = l->handler;
        c->ud = c->h->ud_size ? (void *)(c + 1) : NULL;
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        c->state = l->tls ? CS_TLS_HANDSHAKE : CS_OPEN;
        c->deadline = b->now + b->cfg->handshake_timeout;
        c->last_rx = b->now;
        if (l->tls && tls_conn_accept(&c->tls, l->tls, fd, peer) != TLS_OK) {
            log_msg(LL_ERROR, "Connection from %s: cannot set up TLS state (out of memory)", peer);
            close(fd);
            free(c);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            log_msg(LL_ERROR, "epoll_ctl: %s", strerror(errno));
            accept_undo(c);
            continue;
        }
        if (c->h->on_accept(b, c) != BK_OK) {
            log_msg(LL_ERROR, "Connection from %s: refused by its handler", peer);
            (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL); /* the fd closes next */
            accept_undo(c);
            continue;
        }
        c->next = b->conns;
        if (b->conns) b->conns->prev = c;
        b->conns = c;
        b->nconns++;
        l->nconns++;
        log_msg(LL_DEBUG, "New connection from %s on port %d", peer, l->cfg->port);
    }
}

void conn_close(broker *b, conn *c, const char *fmt, ...)
{
    if (c->state == CS_CLOSING) return;
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    free(c->close_reason);            /* a lingering connection had one */
    c->close_reason = strdup(reason); /* NULL is handled where it is logged */
    c->state = CS_CLOSING;
    c->close_next = b->closing;
    b->closing = c;
}

void conn_schedule_write(broker *b, conn *c)
{
    if (!c->write_pending) {
        c->write_pending = true;
        c->pending_next = b->write_pending;
        b->write_pending = c;
    }
}

int conn_output_check_slow(broker *b, conn *c, size_t adding)
{
    const conn_limits *lim = c->listener->limits;
    size_t used = bbuf_used(&c->out) + c->out_owed;
    /* a write may take the buffer past the hard limit by `slack` at most */
    bool hard = adding ? used + adding > lim->hard + lim->slack : used > lim->hard;
    if (hard) {
        conn_close(b, c, "output buffer over %llu bytes: client does not read",
                   (unsigned long long)lim->hard);
        return BK_ERR_FULL;
    }
    if (used <= lim->soft) {
        c->over_since = 0;
        return BK_OK;
    }
    if (c->over_since == 0) {
        c->over_since = b->now;
    } else if (b->now - c->over_since > lim->soft_seconds) {
        conn_close(b, c,
                   "slow subscriber: output buffer over max_output_buffer (%llu "
                   "bytes) for %u s",
                   (unsigned long long)lim->soft, lim->soft_seconds);
        return BK_ERR_FULL;
    }
    return CONN_OUT_SOFT;
}

int conn_write(broker *b, conn *c, const uint8_t *data, size_t len)
{
    if (c->state == CS_CLOSING) return BK_ERR_CLOSED;
    if (conn_output_check(b, c, len) < 0) return BK_ERR_FULL;
    if (bbuf_append(&c->out, data, len) != BK_OK) {
        conn_close(b, c, "out of memory for the output buffer");
        return BK_ERR_NOMEM;
    }
    conn_schedule_write(b, c);
    return BK_OK;
}

uint8_t *conn_reserve_failed(broker *b, conn *c)
{
    conn_close(b, c, "out of memory for the output buffer");
    return NULL;
}

/* Would block: kept apart from the bk_err codes. */
#define SEND_BLOCKED (-100)

/* One write to the socket (plain) or the TLS layer. Returns the bytes taken
 * (>= 0), SEND_BLOCKED when it would block (EPOLLOUT is then on), or
 * BK_ERR_IO when the connection failed (it has been marked closing). */
static ssize_t conn_send_some(broker *b, conn *c, const uint8_t *p, size_t len)
{
    if (c->tls) {
        ssize_t n = tls_conn_write(c->tls, p, len);
        if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
            if (!c->want_write) epoll_set(b, c, true);
            return SEND_BLOCKED;
        }
        if (n < 0) {
            if (c->state != CS_CLOSING)
                conn_close(b, c, "TLS write failed: %s", tls_words_server_error(c->tls));
            return BK_ERR_IO;
        }
        return n;
    }
    for (;;) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!c->want_write) epoll_set(b, c, true);
            return SEND_BLOCKED;
        }
        if (c->state != CS_CLOSING) conn_close(b, c, "socket error: %s", strerror(errno));
        return BK_ERR_IO;
    }
}

/* Over TLS a count from tls_conn_write means "sealed", not "sent": the last
 * record may still sit in mbedTLS. A zero-length write pushes it out.
 * Returns BK_OK when nothing is left, SEND_BLOCKED while bytes remain
 * (EPOLLOUT is on), BK_ERR_IO when the connection failed (it is closing). */
static int conn_tls_finish(broker *b, conn *c)
{
    ssize_t r = conn_send_some(b, c, (const uint8_t *)"", 0);
    return r == SEND_BLOCKED ? SEND_BLOCKED : r < 0 ? BK_ERR_IO : BK_OK;
}

/* Write as much output as the socket takes (a held connection: only what
 * is before its hold). When the buffer is out and the handler owes more, it
 * appends more (on_drain): after any hold point, so that output stays held,
 * and the filter frames it like the rest. */
static void conn_flush(broker *b, conn *c)
{
    for (;;) {
        if (!bbuf_used(&c->out) && c->out_owed && c->h->on_drain && c->state == CS_OPEN)
            c->h->on_drain(c);
        if (conn_filter_of(c) && c->out_framed < bbuf_used(&c->out))
            conn_filter_of(c)->on_flush(b, c);
        if (!bbuf_used(&c->out)) break;
        size_t len = bbuf_used(&c->out);
        if (c->nholds && c->hold_pos[0] - c->sent_total < len)
            len = (size_t)(c->hold_pos[0] - c->sent_total);
        if (len == 0) {
            /* the rest waits for conn_release_holds: stop asking for EPOLLOUT */
            if (c->want_write && c->state != CS_CLOSING) epoll_set(b, c, false);
            return;
        }
        ssize_t n = conn_send_some(b, c, c->out.data + c->out.off, len);
        if (n == SEND_BLOCKED) {
            /* the policy looks at what is left: under the soft limit again, or
             * over it too long (then the connection is closing: nothing to do) */
            if (c->over_since) (void)conn_output_check(b, c, 0);
            return;
        }
        if (n < 0) {
            c->out.off = c->out.len = c->out_framed = 0;
            return;
        }
        c->out.off += (size_t)n;
        c->sent_total += (uint64_t)n;
        c->out_framed -= conn_filter_of(c) ? (size_t)n : 0;
        b->bytes_sent += (uint64_t)n;
        c->last_tx = b->now;
    }
    c->out.off = c->out.len = 0;
    c->out_framed = 0;
    if (conn_filter_of(c) && c->out.cap > conn_filter_of(c)->headroom)
        c->out.off = c->out.len = conn_filter_of(c)->headroom;
    c->over_since = 0; /* nothing buffered */
    if (c->tls && conn_tls_finish(b, c) != BK_OK) return;
    /* a huge buffer goes at once; an ordinary one waits for the idle sweep, so a
     * steady stream does not pay malloc/free per message */
    if (c->out.cap > OUT_KEEP_MAX) bbuf_free(&c->out);
    if (c->want_write && c->state != CS_CLOSING) epoll_set(b, c, false);
}

void conn_hold(broker *b, conn *c, size_t keep, uint64_t epoch)
{
    if (c->state == CS_CLOSING) return;
    if (c->nholds && c->hold_epoch[c->nholds - 1] >= epoch) return; /* already held */
    if (c->nholds == 2) {
        /* a third epoch cannot happen (two are open at most); if it did, the
         * later epoch takes over the earlier mark: holding more is safe */
        c->hold_epoch[1] = epoch;
        return;
    }
    if (c->nholds == 0) {
        c->held_next = b->held;
        b->held = c;
    }
    c->hold_pos[c->nholds] = c->sent_total + keep;
    c->hold_epoch[c->nholds++] = epoch;
}

/* Take c off the held list. */
static void unhold(broker *b, conn *c)
{
    for (conn **pp = &b->held; *pp; pp = &(*pp)->held_next)
        if (*pp == c) {
            *pp = c->held_next;
            break;
        }
    c->held_next = NULL;
    c->nholds = 0;
}

void conn_release_holds(broker *b, uint64_t epoch)
{
    conn **pp = &b->held;
    while (*pp) {
        conn *c = *pp;
        uint8_t keep = 0;
        for (uint8_t i = 0; i < c->nholds; i++)
            if (c->hold_epoch[i] > epoch) {
                c->hold_pos[keep] = c->hold_pos[i];
                c->hold_epoch[keep++] = c->hold_epoch[i];
            }
        if (keep != c->nholds && bbuf_used(&c->out) && !c->write_pending) conn_schedule_write(b, c);
        c->nholds = keep;
        if (keep) {
            pp = &c->held_next;
        } else {
            *pp = c->held_next;
            c->held_next = NULL;
        }
    }
}

void conn_note_inserted(conn *c, size_t at, size_t added)
{
    for (uint8_t i = 0; i < c->nholds; i++)
        if (c->hold_pos[i] >= c->sent_total + at) c->hold_pos[i] += added;
}

int conn_write_now(broker *b, conn *c, const uint8_t *data, size_t len)
{
    /* a filter wraps output at flush time: it always goes through the buffer */
    if (c->state == CS_CLOSING || bbuf_used(&c->out) || c->nholds || b->buffer_connack ||
        conn_filter_of(c))
        return conn_write(b, c, data, len);
    ssize_t n = conn_send_some(b, c, data, len);
    if (n == SEND_BLOCKED) n = 0;
    if (n < 0) return BK_ERR_IO;
    b->bytes_sent += (uint64_t)n;
    c->last_tx = b->now;
    if ((size_t)n < len) return conn_write(b, c, data + n, len - (size_t)n);
    /* a record still inside mbedTLS goes out with the next flush (EPOLLOUT is on) */
    if (c->tls && conn_tls_finish(b, c) == BK_ERR_IO) return BK_ERR_IO;
    return BK_OK;
}

void conn_flush_all(broker *b)
{
    while (b->write_pending) {
        conn *c = b->write_pending;
        b->write_pending = c->pending_next;
        c->pending_next = NULL;
        c->write_pending = false;
        conn_flush(b, c);
    }
}

/* Offer data[0..len) to the filter or the handler; returns bytes consumed. */
static size_t conn_deliver(broker *b, conn *c, uint8_t *data, size_t len)
{
    if (c->state == CS_CLOSING) return len;
    c->last_rx = b->now;
    if (conn_filter_of(c)) return conn_filter_of(c)->on_data(b, c, data, len);
    return c->h->on_data(c, data, len);
}

/* n > 0 bytes, 0 would block, BK_ERR_IO when closed (conn marked). */
static ssize_t conn_recv(broker *b, conn *c, uint8_t *buf, size_t len)
{
    if (c->tls) {
        ssize_t n = tls_conn_read(c->tls, buf, len);
        /* the would-block sentinels are positive: test them before n > 0 */
        if (n == TLS_WANT_READ) return 0;
        if (n == TLS_WANT_WRITE) {
            if (!c->want_write) epoll_set(b, c, true);
            return 0;
        }
        if (n > 0) return n;
        if (n == TLS_ERR_CLOSED || n == 0)
            conn_close(b, c, "connection closed by %s", c->outgoing ? "the remote" : "client");
        else
            conn_close(b, c, "TLS error: %s", tls_words_server_error(c->tls));
        return BK_ERR_IO;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n > 0) return n;
        if (n == 0) {
            conn_close(b, c, "connection closed by %s", c->outgoing ? "the remote" : "client");
            return BK_ERR_IO;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        conn_close(b, c, "socket error: %s", strerror(errno));
        return BK_ERR_IO;
    }
}

static void set_read_pending(broker *b, conn *c, bool on)
{
    if (c->read_pending == on) return;
    c->read_pending = on;
    if (on)
        b->read_pending++;
    else
        b->read_pending--;
}

/* Keep the unconsumed tail of a read from the shared buffer. */
static void keep_tail(broker *b, conn *c, const uint8_t *p, size_t n)
{
    if (n == 0 || c->state == CS_CLOSING) return;
    if (bbuf_append(&c->in, p, n) != BK_OK) conn_close(b, c, "out of memory for the input buffer");
}

/* One read into the connection's partial-message buffer: bytes read, 0
 * would block, BK_ERR_NOMEM / BK_ERR_IO when closed (conn marked). */
static ssize_t read_partial(broker *b, conn *c, size_t *room)
{
    size_t need =
        conn_filter_of(c) ? 0 : c->h->frame_need(c->in.data + c->in.off, bbuf_used(&c->in));
    size_t want = need > bbuf_used(&c->in) ? need - bbuf_used(&c->in) : 0;
    if (want < PARTIAL_READ_MIN) want = PARTIAL_READ_MIN;
    if (bbuf_reserve(&c->in, want) != BK_OK) {
        conn_close(b, c, "out of memory for the input buffer");
        return BK_ERR_NOMEM;
    }
    *room = c->in.cap - c->in.len;
    ssize_t n = conn_recv(b, c, c->in.data + c->in.len, *room);
    if (n <= 0) return n;
    c->in.len += (size_t)n;
    c->in.off += conn_deliver(b, c, c->in.data + c->in.off, bbuf_used(&c->in));
    if (bbuf_used(&c->in) == 0) bbuf_free(&c->in);
    return n;
}

static void conn_read(broker *b, conn *c)
{
    set_read_pending(b, c, false);
    for (int rounds = 0; c->state != CS_CLOSING; rounds++) {
        if (rounds == READ_ROUNDS) {
            /* fairness: come back next iteration for the rest */
            if (c->tls && tls_conn_pending(c->tls)) set_read_pending(b, c, true);
            return;
        }
        ssize_t n;
        size_t room;
        if (bbuf_used(&c->in) == 0) {
            room = b->rbuf_cap;
            n = conn_recv(b, c, b->rbuf, room);
            if (n <= 0) return;
            size_t used = conn_deliver(b, c, b->rbuf, (size_t)n);
            if (used < (size_t)n) keep_tail(b, c, b->rbuf + used, (size_t)n - used);
        } else {
            n = read_partial(b, c, &room);
            if (n <= 0) return;
        }
        /* A short plain read means the socket is drained; epoll is level-triggered. */
        if (!c->tls && (size_t)n < room) return;
    }
}

void conn_offer_input(broker *b, conn *c)
{
    if (c->state == CS_OPEN && conn_filter_of(c)) {
        conn_filter_of(c)->offer(b, c);
        return;
    }
    if (c->state != CS_OPEN || bbuf_used(&c->in) == 0) return;
    c->in.off += c->h->on_data(c, c->in.data + c->in.off, bbuf_used(&c->in));
    if (bbuf_used(&c->in) == 0) bbuf_free(&c->in);
}

static void conn_handshake(broker *b, conn *c)
{
    int r = tls_conn_handshake(c->tls);
    if (r == TLS_WANT_READ) {
        if (c->want_write) epoll_set(b, c, false);
        return;
    }
    if (r == TLS_WANT_WRITE) {
        if (!c->want_write) epoll_set(b, c, true);
        return;
    }
    if (r != TLS_OK) {
        if (c->outgoing) { /* the handler logs the reason with its close */
            conn_close(b, c, "%s", tls_conn_error(c->tls));
            return;
        }
        const char *why = tls_words_server_error(c->tls);
        log_msg(LL_NOTICE, "%s", why); /* the one line of this failure */
        sys_note_failure(b, c, "tls", why, 0);
        c->close_logged = true;
        conn_close(b, c, "TLS handshake failed");
        return;
    }
    if (c->want_write) epoll_set(b, c, false);
    char desc[512];
    tls_conn_describe(c->tls, desc, sizeof desc);
    log_msg(LL_INFO, "TLS handshake with %s: %s", c->peer, desc);
    c->state = CS_OPEN;
    if (c->h->on_open) c->h->on_open(c);
    conn_read(b, c); /* the first message may already be inside mbedTLS' buffer */
}

/* Outgoing: the non-blocking connect finished (or failed). */
static void conn_connected(broker *b, conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr) {
        conn_close(b, c, "connect failed: %s", strerror(soerr));
        return;
    }
    if (!c->tls_client) {
        c->state = CS_OPEN;
        epoll_set(b, c, false);
        c->h->on_open(c);
        return;
    }
    if (tls_conn_connect(&c->tls, c->tls_client, c->fd, c->peer) != TLS_OK) {
        conn_close(b, c, "cannot set up TLS state (out of memory)");
        return;
    }
    c->state = CS_TLS_HANDSHAKE;
    conn_handshake(b, c);
}

int conn_connect(broker *b, listener *l, const void *sa, unsigned salen, struct tls_client *cli,
                 conn **out, char *err, size_t errlen)
{
    const struct sockaddr *addr = sa;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, addr, salen) < 0 && errno != EINPROGRESS)) {
        snprintf(err, errlen, "connect failed: %s", strerror(errno));
        if (fd >= 0) close(fd);
        return BK_ERR_IO;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* best effort */
    conn *c = calloc(1, sizeof *c + l->handler->ud_size);
    if (!c) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return BK_ERR_NOMEM;
    }
    c->fd = fd;
    c->listener = l;
    c->h = l->handler;
    c->ud = c->h->ud_size ? (void *)(c + 1) : NULL;
    c->tls_client = cli;
    c->outgoing = true;
    struct sockaddr_storage ss = {0};
    memcpy(&ss, sa, salen < sizeof ss ? salen : sizeof ss);
    format_peer(&ss, c->peer, sizeof c->peer);
    c->state = CS_CONNECTING;
    c->deadline = b->now + b->cfg->handshake_timeout;
    c->last_rx = c->last_tx = b->now;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 || c->h->on_accept(b, c) != BK_OK) {
        snprintf(err, errlen, "cannot register the connection: %s", strerror(errno));
        (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL); /* the fd closes next */
        accept_undo(c);
        return BK_ERR_IO;
    }
    c->want_write = true;
    c->next = b->conns;
    if (b->conns) b->conns->prev = c;
    b->conns = c;
    b->nconns++;
    l->nconns++;
    *out = c;
    return BK_OK;
}

void conn_on_event(broker *b, conn *c, uint32_t events)
{
    if (c->state == CS_CLOSING) return;
    if (c->state == CS_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) conn_connected(b, c);
        return;
    }
    if (c->state == CS_TLS_HANDSHAKE) {
        if (events & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP)) conn_handshake(b, c);
        return;
    }
    if (events & EPOLLOUT) conn_flush(b, c);
    if (c->state == CS_CLOSING) return;
    /* over TLS a read may have stopped on WANT_WRITE: writable means retry it */
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || (c->tls && (events & EPOLLOUT)))
        conn_read(b, c);
}

void conn_service_read_pending(broker *b)
{
    if (!b->read_pending) return;
    for (conn *c = b->conns; c; c = c->next)
        if (c->read_pending && c->state != CS_CLOSING) conn_read(b, c);
}

void conn_free_closed(broker *b)
{
    while (b->closing) {
        conn *c = b->closing;
        b->closing = c->close_next;
        if (c->write_pending) {
            /* unlink from the write list */
            for (conn **pp = &b->write_pending; *pp; pp = &(*pp)->pending_next)
                if (*pp == c) {
                    *pp = c->pending_next;
                    break;
                }
            c->write_pending = false;
        }
        if (!c->lingered) {
            /* e.g. a WebSocket Close frame, then waiting for the peer's */
            bool linger = conn_filter_of(c) && conn_filter_of(c)->on_close(b, c);
            /* Best effort: a CONNACK refusal or final ack still goes out. */
            if (bbuf_used(&c->out)) conn_flush(b, c);
            c->h->on_close(c, c->close_reason ? c->close_reason : "(reason lost: out of memory)");
            c->ud = NULL;
            c->lingered = true;
            if (c->nholds) unhold(b, c); /* held output was never promised */
            if (linger && c->state == CS_CLOSING && !b->stop) {
                c->state = CS_LINGER;
                c->deadline = b->now + CONN_LINGER_SECONDS;
                continue;
            }
        } else if (bbuf_used(&c->out)) {
            conn_flush(b, c);
        }
        if (c->tls) {
            if (tls_conn_handshake_done(c->tls)) tls_conn_close_notify(c->tls);
            tls_conn_free(c->tls);
        }
        (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL); /* the fd closes next */
        close(c->fd);
        if (c->read_pending) b->read_pending--;
        if (c->prev)
            c->prev->next = c->next;
        else
            b->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        b->nconns--;
        c->listener->nconns--;
        bbuf_free(&c->in);
        bbuf_free(&c->out);
        free(c->close_reason);
        free(c);
    }
}

void conn_tick(broker *b)
{
    log_flush_limited();
    for (size_t i = 0; i < b->nlisteners; i++)
        listener_tick(b, &b->listeners[i]);
    for (conn *c = b->conns; c; c = c->next) {
        if (c->state == CS_CLOSING) continue;
        if (c->state == CS_LINGER) {
            if (b->now >= c->deadline)
                conn_close(b, c, "%s", c->close_reason ? c->close_reason : "");
            continue;
        }
        if (c->state == CS_CONNECTING) {
            if (b->now >= c->deadline)
                conn_close(b, c, "connect timeout (handshake_timeout %u s)",
                           b->cfg->handshake_timeout);
            continue;
        }
        if (c->state == CS_TLS_HANDSHAKE) {
            if (b->now >= c->deadline) {
                if (c->outgoing) {
                    conn_close(b, c, "TLS handshake timeout (handshake_timeout %u s)",
                               b->cfg->handshake_timeout);
                    continue;
                }
                /* what an attacker repeats at will is rate-limited per address */
                log_limited_key(LL_NOTICE, c->peer,
                                "%s: TLS handshake not finished within handshake_timeout %u s",
                                c->peer, b->cfg->handshake_timeout);
                sys_note_failure(b, c, "tls", "TLS handshake not finished within handshake_timeout",
                                 0);
                conn_close(b, c, "TLS handshake timeout");
            }
            continue;
        }
        if (conn_filter_of(c))
            conn_filter_of(c)->on_tick(b, c);
        else
            c->h->on_tick(c);
        if (c->state == CS_CLOSING) continue;
        if (c->over_since && conn_output_check(b, c, 0) < 0) continue;
        if (!bbuf_used(&c->out) && c->out.cap && b->now - c->last_rx > IDLE_FREE_SECONDS &&
            b->now - c->last_tx > IDLE_FREE_SECONDS)
            bbuf_free(&c->out); /* idle: give the memory back */
    }
}
