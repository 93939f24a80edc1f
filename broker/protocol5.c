/*
 * protocol5.c -- MQTT 5.0 on a connection (see protocol5.h): CONNECT
 * properties, CONNACK, PUBLISH with properties and topic aliases both ways,
 * subscription options and identifiers, shared subscriptions, reason codes
 * on every acknowledgement, DISCONNECT both ways.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/persist.h"
#include "broker/protocol5.h"
#include "broker/router.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "mqtt/mqtt.h"

/* Properties the broker writes per delivery, never forwarded as received. */
#define PER_DELIVERY_PROPS                                                                         \
    ((1ull << MQTT_PROP_TOPIC_ALIAS) | (1ull << MQTT_PROP_SUBSCRIPTION_ID) |                       \
     (1ull << MQTT_PROP_MESSAGE_EXPIRY) | (1ull << MQTT_PROP_WILL_DELAY))
/* Room for the per-delivery properties of one PUBLISH: expiry 5, alias 3,
 * and this many subscription identifiers of up to 5 bytes. */
#define MAX_SUB_IDS_OUT 48
#define NEVER 0xFFFFFFFFu

uint8_t p5_connack_reason(uint8_t v3rc)
{
    static const uint8_t map[] = {0x00,
                                  MQTT5_RC_UNSUPPORTED_VERSION,
                                  MQTT5_RC_CLIENT_ID_INVALID,
                                  MQTT5_RC_SERVER_UNAVAILABLE,
                                  MQTT5_RC_BAD_CREDENTIALS,
                                  MQTT5_RC_NOT_AUTHORIZED};
    return v3rc < sizeof map ? map[v3rc] : v3rc;
}

void p5_free(client *cl)
{
    client5 *v = cl->v5;
    if (!v) return;
    for (int i = 0; i <= P5_ALIAS_MAX_IN; i++)
        free(v->alias_in[i]);
    for (int i = 0; i <= P5_ALIAS_MAX_OUT; i++)
        free(v->alias_out[i]);
    free(v);
    cl->v5 = NULL;
}

/* ---- encoding ------------------------------------------------------------------ */

/* A reason string when the client wants problem information. */
static mqtt_bytes reason_props(client *cl, const char *why, uint8_t *buf, size_t cap, bool always)
{
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, cap);
    if (why && (always || cl->v5->problem_info))
        (void)mqtt_props_add_str(&w, MQTT_PROP_REASON_STRING, why,
                                 strlen(why)); /* too long: none */
    return mqtt_props_writer_bytes(&w);
}

int p5_send_ack(client *cl, enum mqtt_type type, uint16_t pid, uint8_t rc, const char *why)
{
    if (rc == MQTT5_RC_SUCCESS) { /* the shortest form is the 3.1.1 packet (spec 3.4.2.1) */
        uint8_t small[4] = {(uint8_t)(type << 4 | (type == MQTT_PUBREL ? 2 : 0)), 2,
                            (uint8_t)(pid >> 8), (uint8_t)pid};
        return conn_write(cl->b, cl->conn, small, sizeof small);
    }
    uint8_t pbuf[200], buf[240];
    mqtt5_ack a = {.type = (uint8_t)type, .packet_id = pid, .reason = rc};
    a.props.raw = reason_props(cl, rc >= 0x80 ? why : NULL, pbuf, sizeof pbuf, false);
    size_t n;
    if (mqtt5_encode_ack(buf, sizeof buf, &a, &n) != MQTT_OK) return BK_ERR_ENCODE;
    if (cl->v5->max_packet && n > cl->v5->max_packet) { /* drop the reason string */
        a.props.raw.len = 0;
        if (mqtt5_encode_ack(buf, sizeof buf, &a, &n) != MQTT_OK) return BK_ERR_ENCODE;
    }
    return conn_write(cl->b, cl->conn, buf, n);
}

void p5_send_disconnect(client *cl, uint8_t rc, const char *why)
{
    uint8_t pbuf[200], buf[240];
    mqtt5_ack a = {.type = MQTT_DISCONNECT, .reason = rc};
    a.props.raw = reason_props(cl, why, pbuf, sizeof pbuf, false);
    size_t n;
    if (!mqtt5_reason_allowed(MQTT_DISCONNECT, rc)) a.reason = MQTT5_RC_UNSPECIFIED;
    if (mqtt5_encode_ack(buf, sizeof buf, &a, &n) != MQTT_OK) return;
    if (cl->v5->max_packet && n > cl->v5->max_packet) return;
    (void)conn_write(cl->b, cl->conn, buf, n); /* best effort: the connection closes next */
}

/* The CONNACK's properties: what the broker allows and assigns. */
static mqtt_bytes connack_props(client *cl, uint8_t rc, const char *why, uint8_t *buf, size_t cap)
{
    broker *b = cl->b;
    client5 *v = cl->v5;
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, cap);
    if (rc == 0) {
        uint32_t rm = b->cfg->max_inflight_messages;
        if (rm && rm < 65535) (void)mqtt_props_add_int(&w, MQTT_PROP_RECEIVE_MAXIMUM, rm);
        if (b->cfg->max_packet_size && b->cfg->max_packet_size < MQTT_MAX_REMAINING_LENGTH + 5)
            (void)mqtt_props_add_int(&w, MQTT_PROP_MAXIMUM_PACKET_SIZE, b->cfg->max_packet_size);
        (void)mqtt_props_add_int(&w, MQTT_PROP_RETAIN_AVAILABLE, b->cfg->retain_available);
        (void)mqtt_props_add_int(&w, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, P5_ALIAS_MAX_IN);
        (void)mqtt_props_add_int(&w, MQTT_PROP_WILDCARD_SUB_AVAILABLE, 1);
        (void)mqtt_props_add_int(&w, MQTT_PROP_SUB_ID_AVAILABLE, 1);
        (void)mqtt_props_add_int(&w, MQTT_PROP_SHARED_SUB_AVAILABLE, 1);
        if (v->server_keepalive)
            (void)mqtt_props_add_int(&w, MQTT_PROP_SERVER_KEEP_ALIVE, v->server_keepalive);
        if (v->id_assigned && cl->client_id)
            (void)mqtt_props_add_str(&w, MQTT_PROP_ASSIGNED_CLIENT_ID, cl->client_id,
                                     strlen(cl->client_id));
        if (v->response_info && cl->client_id) { /* spec 4.10.2: a topic prefix for replies */
            char ri[300];
            int n = snprintf(ri, sizeof ri, "%s%s/", P5_RESPONSE_PREFIX, cl->client_id);
            if (n > 0 && (size_t)n < sizeof ri)
                (void)mqtt_props_add_str(&w, MQTT_PROP_RESPONSE_INFO, ri, (size_t)n);
        }
    } else if (why) {
        (void)mqtt_props_add_str(&w, MQTT_PROP_REASON_STRING, why, strlen(why));
    }
    return mqtt_props_writer_bytes(&w);
}

int p5_send_connack(client *cl, bool present, uint8_t rc, const char *why)
{
    uint8_t pbuf[400], buf[440];
    mqtt5_connack ca = {.session_present = present && rc == 0, .reason = rc};
    if (!mqtt5_reason_allowed(MQTT_CONNACK, rc)) ca.reason = MQTT5_RC_UNSPECIFIED;
    ca.props.raw = connack_props(cl, ca.reason, why, pbuf, sizeof pbuf);
    size_t n;
    if (mqtt5_encode_connack(buf, sizeof buf, &ca, &n) != MQTT_OK) return BK_ERR_ENCODE;
    if (cl->v5->max_packet && n > cl->v5->max_packet) { /* [MQTT-3.2.2-19]: strings go first */
        ca.props.raw = connack_props(cl, ca.reason, NULL, pbuf, sizeof pbuf);
        if (mqtt5_encode_connack(buf, sizeof buf, &ca, &n) != MQTT_OK) return BK_ERR_ENCODE;
    }
    return conn_write_now(cl->b, cl->conn, buf, n);
}

/* Topic alias towards the client: *alias, and whether the topic must still
 * be sent (a new binding). 0 = no alias. */
static uint16_t alias_out(client5 *v, const msg *m, bool *send_topic)
{
    *send_topic = true;
    uint16_t max = v->alias_max_out < P5_ALIAS_MAX_OUT ? v->alias_max_out : P5_ALIAS_MAX_OUT;
    if (!max) return 0;
    for (uint16_t a = 1; a <= max; a++) {
        const char *t = v->alias_out[a];
        if (!t) {
            v->alias_out[a] = strdup(msg_topic(m));
            return v->alias_out[a] ? a : 0;
        }
        if (strcmp(t, msg_topic(m)) == 0) {
            *send_topic = false;
            return a;
        }
    }
    uint16_t a = (uint16_t)(v->alias_next_out % max + 1); /* table full: rebind one */
    v->alias_next_out = a;
    char *t = strdup(msg_topic(m));
    if (!t) return 0;
    free(v->alias_out[a]);
    v->alias_out[a] = t;
    return a;
}

static void add_sub_id(void *ud, uint32_t id)
{
    (void)mqtt_props_add_int(ud, MQTT_PROP_SUBSCRIPTION_ID, id);
}

/* Per-delivery properties: remaining expiry, topic alias, subscription ids. */
static size_t delivery_props(client *cl, const msg *m, uint16_t alias, uint8_t *buf, size_t cap)
{
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, cap);
    if (m->expire_at > 0) {
        double left = m->expire_at - cl->b->now;
        (void)mqtt_props_add_int(&w, MQTT_PROP_MESSAGE_EXPIRY,
                                 left < 1 ? 1 : (uint32_t)(left + 0.999));
    }
    if (alias) (void)mqtt_props_add_int(&w, MQTT_PROP_TOPIC_ALIAS, alias);
    session *s = cl->session;
    if (s && s->nsub_ids) {
        unsigned n = 0;
        for (sub_rec *r = s->subs; r && n < MAX_SUB_IDS_OUT; r = r->next)
            if (r->sub_id && mqtt_topic_matches((const uint8_t *)r->filter, r->filter_len,
                                                (const uint8_t *)msg_topic(m), m->topic_len)) {
                (void)mqtt_props_add_int(&w, MQTT_PROP_SUBSCRIPTION_ID, r->sub_id);
                n++;
            }
        shared_sub_ids(cl->b, s, msg_topic(m), m->topic_len, MAX_SUB_IDS_OUT - n, add_sub_id, &w);
    }
    return w.len;
}

int p5_send_publish(client *cl, const msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid)
{
    client5 *v = cl->v5;
    uint8_t small[8 + 5 * MAX_SUB_IDS_OUT];
    bool send_topic = true;
    uint16_t alias = 0;
    size_t plen = 0;
    if (v->alias_max_out || m->expire_at > 0 || (cl->session && cl->session->nsub_ids)) {
        alias = alias_out(v, m, &send_topic);
        plen = delivery_props(cl, m, alias, small, sizeof small);
    }
    size_t props = plen + m->props_len;
    size_t tlen = send_topic ? m->topic_len : 0;
    uint64_t rem = 2 + tlen + (qos ? 2 : 0) + (size_t)mqtt_varint_size((uint32_t)props) + props +
                   m->payload_len;
    int rl = mqtt_varint_size((uint32_t)rem);
    uint64_t total = 1 + (uint64_t)rl + rem;
    if (rem > MQTT_MAX_REMAINING_LENGTH || (v->max_packet && total > v->max_packet)) {
        /* [MQTT-3.1.2-24]: never more than the client allows: dropped */
        log_msg(LL_INFO,
                "Client %s: dropped a %llu-byte PUBLISH on '%s' (its maximum packet size %u)",
                cl->client_id, (unsigned long long)total, msg_topic(m), v->max_packet);
        if (alias && send_topic) { /* the binding never reached the client */
            free(v->alias_out[alias]);
            v->alias_out[alias] = NULL;
        }
        return BK_ERR_FULL;
    }
    uint8_t *p = conn_reserve(cl->b, cl->conn, (size_t)total);
    if (!p) return BK_ERR_NOMEM;
    uint8_t *o = p;
    *o++ = (uint8_t)(MQTT_PUBLISH << 4 | (dup ? 8 : 0) | qos << 1 | (retain ? 1 : 0));
    o += mqtt_varint_encode((uint32_t)rem, o);
    *o++ = (uint8_t)(tlen >> 8);
    *o++ = (uint8_t)tlen;
    memcpy(o, msg_topic(m), tlen);
    o += tlen;
    if (qos) {
        *o++ = (uint8_t)(pid >> 8);
        *o++ = (uint8_t)pid;
    }
    o += mqtt_varint_encode((uint32_t)props, o);
    memcpy(o, small, plen);
    o += plen;
    if (m->props_len) memcpy(o, msg_props(m), m->props_len);
    o += m->props_len;
    if (m->payload_len) memcpy(o, msg_payload(m), m->payload_len);
    conn_commit(cl->b, cl->conn, (size_t)total);
    cl->b->msgs_sent++;
    return BK_OK;
}

/* ---- CONNECT ----------------------------------------------------------------------- */

int p5_connect_begin(client *cl, const mqtt5_connect *ck)
{
    client5 *v = calloc(1, sizeof *v);
    if (!v) {
        conn_close(cl->b, cl->conn, "out of memory");
        return BK_ERR_NOMEM;
    }
    cl->v5 = v;
    const mqtt_props *p = &ck->props;
    v->problem_info = !mqtt_props_has(p, MQTT_PROP_REQUEST_PROBLEM_INFO) || p->request_problem_info;
    v->recv_max = mqtt_props_has(p, MQTT_PROP_RECEIVE_MAXIMUM) ? p->receive_maximum : 65535;
    v->max_packet = mqtt_props_has(p, MQTT_PROP_MAXIMUM_PACKET_SIZE) ? p->maximum_packet_size : 0;
    v->alias_max_out = p->topic_alias_maximum;
    v->response_info = p->request_response_info;
    v->session_expiry = p->session_expiry;
    v->will_delay = ck->will_props.will_delay;
    if (mqtt_props_has(p, MQTT_PROP_AUTH_METHOD)) {
        char why[160];
        snprintf(why, sizeof why, "authentication method '%.*s' is not supported",
                 (int)p->auth_method.len, p->auth_method.ptr);
        (void)p5_send_connack(cl, false, MQTT5_RC_BAD_AUTH_METHOD, why);
        conn_close(cl->b, cl->conn, "CONNECT refused (CONNACK 0x8C): %s", why);
        return BK_ERR_STATE;
    }
    return BK_OK;
}

void p5_connect_keepalive(client *cl, uint16_t keepalive)
{
    uint32_t maxka = cl->b->cfg->max_keepalive;
    if (maxka < 65535 && (keepalive == 0 || keepalive > maxka))
        cl->v5->server_keepalive = (uint16_t)maxka; /* [MQTT-3.2.2-21] */
}

void p5_session_setup(client *cl, session *s)
{
    client5 *v = cl->v5;
    s->expiry_interval = v->session_expiry;
    session_set_clean(s, v->session_expiry == 0);
    s->send_max = v->recv_max;
    s->max_packet = v->max_packet;
}

/* props without the per-delivery ones: *out is either the block itself or
 * a copy in buf (cap >= len). Returns the length. */
static size_t forwardable(const mqtt_props *p, uint8_t *buf, const uint8_t **out)
{
    *out = p->raw.ptr;
    if (!(p->present & PER_DELIVERY_PROPS)) return p->raw.len;
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, p->raw.len);
    mqtt_prop_iter it;
    mqtt_prop pr;
    mqtt_prop_iter_init(&it, &p->raw);
    while (mqtt_prop_next(&it, &pr))
        if (!((PER_DELIVERY_PROPS >> pr.id) & 1)) (void)mqtt_props_add(&w, &pr);
    *out = buf;
    return w.len;
}

msg *p5_will_new(client *cl, const mqtt5_connect *ck)
{
    const mqtt_connect *c = &ck->c;
    uint8_t *tmp = malloc(ck->will_props.raw.len + 1);
    if (!tmp) return NULL;
    const uint8_t *props;
    size_t plen = forwardable(&ck->will_props, tmp, &props);
    msg *m = msg_new_props(c->will_topic.ptr, c->will_topic.len, props, plen, c->will_payload.ptr,
                           c->will_payload.len, c->will_qos, c->will_retain);
    free(tmp);
    cl->v5->has_will_expiry = mqtt_props_has(&ck->will_props, MQTT_PROP_MESSAGE_EXPIRY);
    cl->v5->will_expiry = ck->will_props.message_expiry; /* runs from when it is published */
    return m;
}

/* ---- PUBLISH ------------------------------------------------------------------------- */

/* Resolve a Topic Alias from the client (spec 3.3.2.3.4). BK_OK with *topic
 * set, or closed. */
static int alias_in(client *cl, mqtt5_publish *p)
{
    client5 *v = cl->v5;
    if (!mqtt_props_has(&p->props, MQTT_PROP_TOPIC_ALIAS)) return BK_OK;
    uint16_t a = p->props.topic_alias;
    if (a == 0 || a > P5_ALIAS_MAX_IN) {
        proto_close(cl, MQTT5_RC_TOPIC_ALIAS_INVALID,
                    "protocol error: topic alias %u outside 1..%u [MQTT-3.3.2-8/9]", a,
                    P5_ALIAS_MAX_IN);
        return BK_ERR_STATE;
    }
    if (p->p.topic.len) {
        char *t = malloc(p->p.topic.len + 1u);
        if (!t) {
            conn_close(cl->b, cl->conn, "out of memory");
            return BK_ERR_NOMEM;
        }
        memcpy(t, p->p.topic.ptr, p->p.topic.len);
        t[p->p.topic.len] = 0;
        free(v->alias_in[a]);
        v->alias_in[a] = t;
        return BK_OK;
    }
    if (!v->alias_in[a]) {
        proto_close(cl, MQTT5_RC_PROTOCOL_ERROR, "protocol error: topic alias %u was never set", a);
        return BK_ERR_STATE;
    }
    p->p.topic.ptr = (const uint8_t *)v->alias_in[a];
    p->p.topic.len = (uint16_t)strlen(v->alias_in[a]);
    return BK_OK;
}

void p5_handle_publish(client *cl, const mqtt_header *h)
{
    mqtt5_publish p;
    int r = mqtt5_decode_publish(h, &p);
    if (r < 0) {
        proto_close(cl, mqtt5_reason_for_err(r), "protocol error: %s", mqtt_strerror(r));
        return;
    }
    if (alias_in(cl, &p) != BK_OK) return;
    uint32_t rm = cl->b->cfg->max_inflight_messages;
    if (p.p.qos == 2 && rm && cl->session->nqos2_in >= rm &&
        !session_qos2_in_has(cl->session, p.p.packet_id)) {
        proto_close(cl, MQTT5_RC_RECEIVE_MAXIMUM_EXCEEDED,
                    "more than Receive Maximum %u QoS 2 PUBLISHes unacknowledged", rm);
        return;
    }
    uint8_t *tmp = NULL;
    const uint8_t *props = NULL;
    size_t plen = 0;
    if (p.props.raw.len) {
        if (p.props.present & PER_DELIVERY_PROPS) {
            tmp = malloc(p.props.raw.len);
            if (!tmp) {
                conn_close(cl->b, cl->conn, "out of memory");
                return;
            }
        }
        plen = forwardable(&p.props, tmp, &props);
    }
    proto_publish(cl, &p.p, props, plen, p.props.message_expiry,
                  mqtt_props_has(&p.props, MQTT_PROP_MESSAGE_EXPIRY));
    free(tmp);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------ */

/* One shared filter; granted QoS or a failure reason. */
static uint8_t subscribe_shared(client *cl, mqtt_str f, mqtt5_subopts o, uint32_t sub_id)
{
    const char *g, *filter;
    size_t glen, flen;
    bool valid;
    (void)shared_parse((const char *)f.ptr, f.len, &g, &glen, &filter, &flen, &valid);
    if (!valid) return MQTT5_RC_TOPIC_FILTER_INVALID; /* [MQTT-4.8.2-1/2] */
    if (topic_too_deep(filter, flen)) return MQTT5_RC_QUOTA_EXCEEDED;
    if (!auth_may_subscribe(cl->b, cl, filter, flen)) { /* the real filter */
        log_msg(LL_NOTICE, "Denied SUBSCRIBE from %s (user %s) to '%.*s': not allowed by the ACL",
                cl->client_id, cl->username ? cl->username : "anonymous", (int)f.len, f.ptr);
        return MQTT5_RC_NOT_AUTHORIZED;
    }
    uint8_t granted = o.qos > 2 ? 2 : o.qos;
    if (shared_join(cl->b, cl->session, g, glen, filter, flen, granted, sub_id) != BK_OK)
        return MQTT5_RC_UNSPECIFIED;
    if (log_enabled(LL_SUBSCRIBE))
        log_msg(LL_SUBSCRIBE, "%s subscribed to '%.*s' (QoS %u, shared)", cl->client_id, (int)f.len,
                f.ptr, granted);
    return granted;
}

/* One filter of a v5 SUBSCRIBE; *rec set when retained messages are due. */
static uint8_t subscribe_one5(client *cl, mqtt_str f, uint8_t optbyte, uint32_t sub_id,
                              sub_rec **rec, unsigned *over)
{
    mqtt5_subopts o = mqtt5_subopts_parse(optbyte);
    const char *g, *filter;
    size_t glen, flen;
    bool valid;
    *rec = NULL;
    if (shared_parse((const char *)f.ptr, f.len, &g, &glen, &filter, &flen, &valid))
        return subscribe_shared(cl, f, o, sub_id); /* never retained [MQTT-3.8.4-?] */
    session *s = cl->session;
    bool existed = dict_get(&s->subs_by_filter, (const char *)f.ptr, f.len) != NULL;
    uint8_t opts =
        (uint8_t)((o.no_local ? SUBOPT_NO_LOCAL : 0) | (o.retain_as_published ? SUBOPT_RAP : 0));
    sub_rec *r;
    uint8_t code = proto_subscribe_one(cl, f, o.qos, opts, &r, over);
    if (code >= 0x80) return code;
    session_set_sub_id(s, r, sub_id);
    /* retain handling: 0 always, 1 only for a new subscription, 2 never */
    if (o.retain_handling == 0 || (o.retain_handling == 1 && !existed)) *rec = r;
    return code;
}

void p5_handle_subscribe(client *cl, const mqtt_header *h)
{
    mqtt5_sublist sl;
    int r = mqtt5_decode_subscribe(h, &sl);
    if (r < 0) {
        proto_close(cl, mqtt5_reason_for_err(r), "protocol error: %s", mqtt_strerror(r));
        return;
    }
    unsigned count = sl.list.count;
    uint8_t *codes = malloc(count);
    sub_rec **recs = malloc(count * sizeof *recs);
    size_t need = 16 + (size_t)count;
    uint8_t *buf = malloc(need);
    if (!codes || !recs || !buf) {
        conn_close(cl->b, cl->conn, "out of memory for a SUBSCRIBE of %u filters", count);
    } else {
        uint32_t sub_id =
            mqtt_props_has(&sl.props, MQTT_PROP_SUBSCRIPTION_ID) ? sl.props.subscription_id : 0;
        mqtt_sublist it = sl.list;
        mqtt_str f;
        uint8_t q;
        unsigned over = 0;
        for (unsigned i = 0; mqtt_sublist_next(&it, &f, &q); i++)
            codes[i] = subscribe_one5(cl, f, q, sub_id, &recs[i], &over);
        proto_log_subscribe_over(cl, over);
        mqtt5_suback sa = {
            .type = MQTT_SUBACK, .packet_id = sl.list.packet_id, .codes = codes, .count = count};
        size_t n;
        if (mqtt5_encode_suback(buf, need, &sa, &n) != MQTT_OK)
            conn_close(cl->b, cl->conn, "internal error: cannot encode a SUBACK of %u codes",
                       count);
        else if (conn_write(cl->b, cl->conn, buf, n) == BK_OK)
            proto_subscribe_retained(cl, recs, codes, count);
    }
    free(codes);
    free(recs);
    free(buf);
}

static uint8_t unsubscribe_one5(client *cl, mqtt_str f)
{
    const char *g, *filter;
    size_t glen, flen;
    bool valid;
    session *s = cl->session;
    int r;
    if (shared_parse((const char *)f.ptr, f.len, &g, &glen, &filter, &flen, &valid)) {
        r = valid ? shared_leave(cl->b, s, g, glen, filter, flen) : BK_ERR_UNKNOWN;
    } else {
        sub_rec *rec = dict_get(&s->subs_by_filter, (const char *)f.ptr, f.len);
        if (rec && rec->sub_id) s->nsub_ids--;
        r = session_unsubscribe(s, (const char *)f.ptr, f.len);
    }
    if (log_enabled(LL_SUBSCRIBE))
        log_msg(LL_SUBSCRIBE, "%s unsubscribed from '%.*s'", cl->client_id, (int)f.len, f.ptr);
    return r == BK_OK ? MQTT5_RC_SUCCESS : MQTT5_RC_NO_SUBSCRIPTION_EXISTED;
}

void p5_handle_unsubscribe(client *cl, const mqtt_header *h)
{
    mqtt5_sublist sl;
    int r = mqtt5_decode_unsubscribe(h, &sl);
    if (r < 0) {
        proto_close(cl, mqtt5_reason_for_err(r), "protocol error: %s", mqtt_strerror(r));
        return;
    }
    unsigned count = sl.list.count;
    uint8_t *codes = malloc(count), *buf = malloc(16 + (size_t)count);
    if (!codes || !buf) {
        conn_close(cl->b, cl->conn, "out of memory for an UNSUBSCRIBE of %u filters", count);
    } else {
        mqtt_sublist it = sl.list;
        mqtt_str f;
        uint8_t q;
        for (unsigned i = 0; mqtt_sublist_next(&it, &f, &q); i++)
            codes[i] = unsubscribe_one5(cl, f);
        mqtt5_suback sa = {
            .type = MQTT_UNSUBACK, .packet_id = sl.list.packet_id, .codes = codes, .count = count};
        size_t n;
        if (mqtt5_encode_suback(buf, 16 + (size_t)count, &sa, &n) == MQTT_OK)
            (void)conn_write(cl->b, cl->conn, buf, n); /* a failed write closes */
    }
    free(codes);
    free(buf);
}

/* ---- acks, DISCONNECT, AUTH ------------------------------------------------------------ */

static void handle_disconnect(client *cl, const mqtt5_ack *a)
{
    client5 *v = cl->v5;
    if (mqtt_props_has(&a->props, MQTT_PROP_SESSION_EXPIRY)) {
        if (v->session_expiry == 0 && a->props.session_expiry != 0) {
            proto_close(cl, MQTT5_RC_PROTOCOL_ERROR,
                        "protocol error: DISCONNECT sets a session expiry after 0 "
                        "[MQTT-3.14.2-2]");
            return;
        }
        v->session_expiry = a->props.session_expiry;
        if (cl->session) {
            cl->session->expiry_interval = v->session_expiry;
            session_set_clean(cl->session, v->session_expiry == 0);
            persist_session_attached(cl->b, cl->session); /* the stored interval too */
        }
    }
    /* 0x04: the will goes out all the same; any other reason discards it [MQTT-3.14.4-3] */
    cl->send_will = a->reason == MQTT5_RC_DISCONNECT_WITH_WILL;
    conn_close(cl->b, cl->conn, "client sent DISCONNECT (reason 0x%02x %s)", a->reason,
               mqtt5_reason_string(MQTT_DISCONNECT, a->reason));
}

void p5_handle_ack(client *cl, const mqtt_header *h)
{
    if (h->type == MQTT_PUBACK && h->remaining == 2) { /* the common case: success, no properties */
        uint16_t pid = (uint16_t)(h->body[0] << 8 | h->body[1]);
        if (pid) {
            (void)session_ack(cl->session, MQTT_PUBACK, pid);
            return;
        }
    }
    mqtt5_ack a;
    int r = mqtt5_decode_ack(h, &a);
    if (r < 0) {
        proto_close(cl, mqtt5_reason_for_err(r), "protocol error: %s", mqtt_strerror(r));
        return;
    }
    switch (h->type) {
    case MQTT_DISCONNECT:
        handle_disconnect(cl, &a);
        return;
    case MQTT_AUTH: /* no enhanced authentication was started [MQTT-4.12.0-1] */
        proto_close(cl, MQTT5_RC_PROTOCOL_ERROR,
                    "protocol error: AUTH without an authentication "
                    "method in CONNECT");
        return;
    case MQTT_PUBREL: {
        bool known = session_qos2_in_del(cl->session, a.packet_id);
        (void)p5_send_ack(cl, MQTT_PUBCOMP, a.packet_id,
                          known ? MQTT5_RC_SUCCESS : MQTT5_RC_PACKET_ID_NOT_FOUND,
                          "packet identifier not found");
        return;
    }
    case MQTT_PUBREC:
        if (a.reason >= 0x80) { /* the exchange ends here (spec 4.3.3) */
            if (session_ack(cl->session, MQTT_PUBREC, a.packet_id) == BK_OK)
                (void)session_ack(cl->session, MQTT_PUBCOMP, a.packet_id);
            return;
        }
        break;
    default:
        break;
    }
    (void)session_ack(cl->session, h->type, a.packet_id); /* unknown ids are ignored */
}

/* ---- Will Delay Interval ------------------------------------------------------------ */

typedef struct delayed_will {
    struct delayed_will *next;
    msg *will;
    double due;
    char client_id[]; /* NUL-terminated */
} delayed_will;

bool p5_will_defer(client *cl)
{
    client5 *v = cl->v5;
    session *s = cl->session;
    if (!v || !v->will_delay || !s || s->clean) return false; /* the session ends now */
    uint32_t wait = v->will_delay < s->expiry_interval ? v->will_delay : s->expiry_interval;
    size_t idlen = strlen(cl->client_id);
    delayed_will *d = malloc(sizeof *d + idlen + 1);
    if (!d) return false; /* published at once rather than lost */
    memcpy(d->client_id, cl->client_id, idlen + 1);
    d->will = msg_ref(cl->will);
    d->due = cl->b->now + wait;
    d->next = cl->b->delayed_wills;
    cl->b->delayed_wills = d;
    log_msg(LL_INFO, "Will of %s delayed by %u s", cl->client_id, wait);
    return true;
}

void p5_will_cancel(broker *b, const char *client_id)
{
    for (delayed_will **p = &b->delayed_wills; *p;) {
        delayed_will *d = *p;
        if (strcmp(d->client_id, client_id) == 0) {
            *p = d->next;
            log_msg(LL_INFO, "Will of %s cancelled: the client reconnected", client_id);
            msg_unref(d->will);
            free(d);
        } else {
            p = &d->next;
        }
    }
}

void p5_wills_due(broker *b, bool all)
{
    for (delayed_will **p = &b->delayed_wills; *p;) {
        delayed_will *d = *p;
        if (all || b->now >= d->due) {
            *p = d->next;
            if (!all) router_publish(b, NULL, d->will);
            msg_unref(d->will);
            free(d);
        } else {
            p = &d->next;
        }
    }
}
