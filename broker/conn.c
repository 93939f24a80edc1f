/*
 * conn.c -- connections: accept, read + frame, coalesced output, close.
 *
 * Reads go into one shared buffer; complete packets are handled straight
 * from it and only the tail of an incomplete packet is copied into the
 * connection's own buffer. Output is appended to the connection's buffer
 * and written once per loop iteration (before the loop sleeps), so many
 * packets become one send() and, over TLS, as few records as possible.
 * A connection is never freed inside its own callback: conn_close marks it
 * and conn_free_closed frees it before the loop sleeps.
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
#include "broker/log.h"
#include "broker/tls_words.h"
#include "mqtt/mqtt.h"
#include "tls/tls.h"

/* A client whose output stays over max_output_buffer this long is dropped
 * (Redis' soft output-buffer limit); at 4x it is dropped at once. */
#define SLOW_READER_SECONDS 60

static void epoll_set(broker *b, conn *c, bool want_write)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev);
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
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(out, len, "[%s]:%d", host, port);
    } else {
        snprintf(out, len, "unknown");
    }
}

void conn_accept(broker *b, listener *l)
{
    /* Bounded per event so a connection storm cannot starve the others. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == EMFILE || errno == ENFILE)
                log_msg(LL_ERROR, "accept on port %d: %s (raise the open files limit)",
                        l->cfg->port, strerror(errno));
            else if (errno != ECONNABORTED)
                log_msg(LL_WARNING, "accept on port %d: %s", l->cfg->port, strerror(errno));
            return;
        }
        char peer[64];
        format_peer(&ss, peer, sizeof peer);
        if (l->cfg->max_connections >= 0 && l->nconns >= (uint32_t)l->cfg->max_connections) {
            log_msg(LL_NOTICE, "Connection from %s refused: listener %d is at max_connections %d",
                    peer, l->cfg->port, l->cfg->max_connections);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->listener = l;
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        c->state = l->tls ? CS_TLS_HANDSHAKE : CS_AWAIT_CONNECT;
        c->deadline = b->now + b->cfg->handshake_timeout;
        c->last_rx = b->now;
        c->connected_at = time(NULL);
        if (l->tls && tls_conn_accept(&c->tls, l->tls, fd, peer) != TLS_OK) {
            log_msg(LL_ERROR, "Connection from %s: cannot set up TLS state (out of memory)", peer);
            close(fd);
            free(c);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            log_msg(LL_ERROR, "epoll_ctl: %s", strerror(errno));
            tls_conn_free(c->tls);
            close(fd);
            free(c);
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
    c->close_reason = strdup(reason); /* NULL is handled where it is logged */
    c->state = CS_CLOSING;
    c->close_next = b->closing;
    b->closing = c;
}

static void schedule_write(broker *b, conn *c)
{
    if (!c->write_pending) {
        c->write_pending = true;
        c->pending_next = b->write_pending;
        b->write_pending = c;
    }
}

int conn_write(broker *b, conn *c, const uint8_t *data, size_t len)
{
    if (c->state == CS_CLOSING) return -1;
    if (bbuf_used(&c->out) + len > 4 * b->cfg->max_output_buffer + b->cfg->max_packet_size) {
        conn_close(b, c, "output buffer over %llu bytes: client does not read",
                   (unsigned long long)(4 * b->cfg->max_output_buffer));
        return -1;
    }
    if (bbuf_reserve(&c->out, len) < 0) {
        conn_close(b, c, "out of memory for the output buffer");
        return -1;
    }
    memcpy(c->out.data + c->out.len, data, len);
    c->out.len += len;
    schedule_write(b, c);
    return 0;
}

int conn_send_ack(broker *b, conn *c, int type, uint16_t pid)
{
    uint8_t buf[4];
    size_t n;
    if (!c || mqtt_encode_ack(buf, sizeof buf, (enum mqtt_type)type, pid, &n) != MQTT_OK) return -1;
    return conn_write(b, c, buf, n);
}

int conn_send_publish(broker *b, conn *c, const msg *m, uint8_t qos, bool retain, bool dup,
                      uint16_t pid)
{
    if (!c || c->state != CS_ACTIVE) return -1;
    size_t used = bbuf_used(&c->out);
    if (used > 4 * b->cfg->max_output_buffer) {
        conn_close(b, c, "output buffer over %llu bytes: client does not read",
                   (unsigned long long)(4 * b->cfg->max_output_buffer));
        return -1;
    }
    if (used > b->cfg->max_output_buffer && c->over_since == 0) c->over_since = b->now;
    if (qos == 0 && used > b->cfg->max_output_buffer) {
        /* A slow QoS 0 subscriber loses messages, not the broker's memory. */
        if (c->dropped_qos0++ % 10000 == 0)
            log_msg(LL_WARNING,
                    "Client %s: output buffer over %llu bytes, dropping QoS 0 "
                    "messages (%llu so far)",
                    c->client_id ? c->client_id : "?",
                    (unsigned long long)b->cfg->max_output_buffer,
                    (unsigned long long)c->dropped_qos0);
        return 1;
    }
    size_t hsz = mqtt_publish_header_size(qos, m->topic_len, m->payload_len);
    if (bbuf_reserve(&c->out, hsz + m->payload_len) < 0) {
        conn_close(b, c, "out of memory for the output buffer");
        return -1;
    }
    size_t n;
    if (mqtt_encode_publish_header(c->out.data + c->out.len, c->out.cap - c->out.len, qos, dup,
                                   retain, (const uint8_t *)msg_topic(m), m->topic_len, pid,
                                   m->payload_len, &n) != MQTT_OK)
        return -1;
    c->out.len += n;
    if (m->payload_len) memcpy(c->out.data + c->out.len, msg_payload(m), m->payload_len);
    c->out.len += m->payload_len;
    b->msgs_sent++;
    schedule_write(b, c);
    return 0;
}

#define SEND_BLOCKED (-2)

/* One write to the socket (plain) or the TLS layer. Returns the bytes taken
 * (>= 0), SEND_BLOCKED when it would block (EPOLLOUT is then on), or -1 when
 * the connection failed (it has been marked closing). */
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
            return -1;
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
        return -1;
    }
}

/* Over TLS a count from tls_conn_write means "sealed", not "sent": the last
 * record may still sit in mbedTLS. A zero-length write pushes it out.
 * Returns 0 when nothing is left, 1 while bytes remain (EPOLLOUT is on),
 * -1 when the connection failed. */
static int conn_tls_finish(broker *b, conn *c)
{
    ssize_t r = conn_send_some(b, c, (const uint8_t *)"", 0);
    return r == SEND_BLOCKED ? 1 : r < 0 ? -1 : 0;
}

/* Write as much output as the socket takes. */
static void conn_flush(broker *b, conn *c)
{
    while (bbuf_used(&c->out)) {
        ssize_t n = conn_send_some(b, c, c->out.data + c->out.off, bbuf_used(&c->out));
        if (n == SEND_BLOCKED) return;
        if (n < 0) {
            c->out.off = c->out.len = 0;
            return;
        }
        c->out.off += (size_t)n;
        b->bytes_sent += (uint64_t)n;
        c->last_tx = b->now;
        if (c->over_since && bbuf_used(&c->out) <= b->cfg->max_output_buffer) c->over_since = 0;
    }
    c->out.off = c->out.len = 0;
    c->over_since = 0;
    if (c->tls && conn_tls_finish(b, c) != 0) return;
    /* a huge buffer goes at once; an ordinary one waits for the idle sweep, so a
     * steady stream does not pay malloc/free per message */
    if (c->out.cap > 1024 * 1024) bbuf_free(&c->out);
    if (c->want_write && c->state != CS_CLOSING) epoll_set(b, c, false);
}

int conn_write_now(broker *b, conn *c, const uint8_t *data, size_t len)
{
    if (c->state == CS_CLOSING || bbuf_used(&c->out)) return conn_write(b, c, data, len);
    ssize_t n = conn_send_some(b, c, data, len);
    if (n == SEND_BLOCKED) n = 0;
    if (n < 0) return -1;
    b->bytes_sent += (uint64_t)n;
    c->last_tx = b->now;
    if ((size_t)n < len) return conn_write(b, c, data + n, len - (size_t)n);
    if (c->tls) conn_tls_finish(b, c);
    return 0;
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

/* Handle every complete packet in data[0..len); returns bytes consumed. */
static size_t conn_process(broker *b, conn *c, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && c->state != CS_CLOSING) {
        /* CONNECT held: what the client pipelined after it waits for the answer */
        if (c->state == CS_AUTH_DELAY) break;
        mqtt_header h;
        size_t plen;
        int r = mqtt_frame(data + off, len - off, b->cfg->max_packet_size, &h, &plen);
        if (r == MQTT_NEED_MORE) break;
        if (r < 0) {
            conn_close(b, c, "protocol error: %s", mqtt_strerror(r));
            return len;
        }
        c->last_rx = b->now;
        b->bytes_received += plen;
        proto_handle_packet(b, c, &h);
        off += plen;
    }
    return off;
}

/* n > 0 bytes, 0 would block, -1 closed (conn marked). */
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
            conn_close(b, c, "connection closed by client");
        else
            conn_close(b, c, "TLS error: %s", tls_words_server_error(c->tls));
        return -1;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n > 0) return n;
        if (n == 0) {
            conn_close(b, c, "connection closed by client");
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        conn_close(b, c, "socket error: %s", strerror(errno));
        return -1;
    }
}

/* Bytes the packet at the start of the partial buffer needs in total, 0 while
 * its length is not known yet (mqtt_frame says so on MQTT_NEED_MORE). */
static size_t partial_need(const bbuf *in)
{
    mqtt_header h;
    size_t need;
    mqtt_frame(in->data + in->off, bbuf_used(in), 0, &h, &need);
    return need;
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

static void conn_read(broker *b, conn *c)
{
    set_read_pending(b, c, false);
    for (int rounds = 0; c->state != CS_CLOSING; rounds++) {
        if (c->state == CS_AUTH_DELAY && bbuf_used(&c->in) > b->cfg->max_packet_size) {
            conn_close(b, c, "sent more than max_packet_size while its CONNECT was held");
            return;
        }
        if (rounds == 16) {
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
            size_t used = conn_process(b, c, b->rbuf, (size_t)n);
            if (used < (size_t)n && c->state != CS_CLOSING) {
                if (bbuf_reserve(&c->in, (size_t)n - used) < 0) {
                    conn_close(b, c, "out of memory for the input buffer");
                    return;
                }
                memcpy(c->in.data + c->in.len, b->rbuf + used, (size_t)n - used);
                c->in.len += (size_t)n - used;
            }
        } else {
            size_t need = partial_need(&c->in);
            size_t want = need > bbuf_used(&c->in) ? need - bbuf_used(&c->in) : 0;
            if (want < 16384) want = 16384;
            if (bbuf_reserve(&c->in, want) < 0) {
                conn_close(b, c, "out of memory for the input buffer");
                return;
            }
            room = c->in.cap - c->in.len;
            n = conn_recv(b, c, c->in.data + c->in.len, room);
            if (n <= 0) return;
            c->in.len += (size_t)n;
            c->in.off += conn_process(b, c, c->in.data + c->in.off, bbuf_used(&c->in));
            if (bbuf_used(&c->in) == 0) bbuf_free(&c->in);
        }
        /* A short plain read means the socket is drained; epoll is level-triggered. */
        if (!c->tls && (size_t)n < room) return;
    }
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
        log_msg(LL_NOTICE, "%s", tls_words_server_error(c->tls));
        conn_close(b, c, "TLS handshake failed");
        return;
    }
    if (c->want_write) epoll_set(b, c, false);
    char desc[512];
    tls_conn_describe(c->tls, desc, sizeof desc);
    log_msg(LL_INFO, "TLS handshake with %s: %s", c->peer, desc);
    c->state = CS_AWAIT_CONNECT;
    conn_read(b, c); /* the CONNECT may already be inside mbedTLS' buffer */
}

void conn_on_event(broker *b, conn *c, uint32_t events)
{
    if (c->state == CS_CLOSING) return;
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

static const char *conn_name(const conn *c)
{
    return c->client_id ? c->client_id : "(no client id yet)";
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
        /* Best effort: a CONNACK refusal or final ack still goes out. */
        if (bbuf_used(&c->out)) conn_flush(b, c);
        if (c->client_id && b->cfg->connection_messages)
            log_msg(LL_NOTICE, "Client %s (%s) disconnected: %s", conn_name(c), c->peer,
                    c->close_reason ? c->close_reason : "(reason lost: out of memory)");
        else
            log_msg(c->client_id ? LL_NOTICE : LL_INFO, "Connection from %s closed: %s", c->peer,
                    c->close_reason ? c->close_reason : "(reason lost: out of memory)");
        proto_connection_lost(b, c);
        if (c->tls) {
            if (tls_conn_handshake_done(c->tls)) tls_conn_close_notify(c->tls);
            tls_conn_free(c->tls);
        }
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
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
        msg_unref(c->will);
        free(c->client_id);
        free(c->username);
        free(c->held_connect);
        free(c->close_reason);
        free(c);
    }
}

void conn_tick(broker *b)
{
    for (conn *c = b->conns; c; c = c->next) {
        switch (c->state) {
        case CS_TLS_HANDSHAKE:
            if (b->now >= c->deadline) {
                log_msg(LL_NOTICE, "%s: TLS handshake not finished within handshake_timeout %u s",
                        c->peer, b->cfg->handshake_timeout);
                conn_close(b, c, "TLS handshake timeout");
            }
            break;
        case CS_AWAIT_CONNECT:
            if (b->now >= c->deadline)
                conn_close(b, c, "no CONNECT within handshake_timeout %u s",
                           b->cfg->handshake_timeout);
            break;
        case CS_AUTH_DELAY:
            if (b->now >= c->deadline) {
                proto_finish_connect(b, c);
                if (c->state == CS_ACTIVE && bbuf_used(&c->in)) {
                    c->in.off += conn_process(b, c, c->in.data + c->in.off, bbuf_used(&c->in));
                    if (bbuf_used(&c->in) == 0) bbuf_free(&c->in);
                }
            }
            break;
        case CS_ACTIVE:
            /* [MQTT-3.1.2-24]: 1.5 x keepalive without any packet */
            if (c->keepalive && b->now - c->last_rx > 1.5 * c->keepalive)
                conn_close(b, c, "keepalive timeout (no packet for %.1f s, keepalive %u s)",
                           b->now - c->last_rx, c->keepalive);
            else if (c->over_since && b->now - c->over_since > SLOW_READER_SECONDS)
                conn_close(b, c,
                           "slow subscriber: output buffer over max_output_buffer (%llu "
                           "bytes) for %d s",
                           (unsigned long long)b->cfg->max_output_buffer, SLOW_READER_SECONDS);
            else if (!bbuf_used(&c->out) && c->out.cap && b->now - c->last_rx > 0.5 &&
                     b->now - c->last_tx > 0.5)
                bbuf_free(&c->out); /* idle for half a second: give the memory back */
            break;
        case CS_CLOSING:
            break;
        }
    }
}
