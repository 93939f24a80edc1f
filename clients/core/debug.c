/*
 * debug.c -- the "-d" lines, in the shape mosquitto's clients print them so
 * lab notes and Wireshark walkthroughs written for mosquitto read the same:
 *   Client ID sending CONNECT
 *   Client ID received CONNACK (0)
 *   Client ID sending PUBLISH (d0, q1, r0, m1, 'topic', ... (5 bytes))
 * Lines go to stdout (as mosquitto's do) and are flushed one by one.
 */
#include <stdarg.h>
#include <stdio.h>

#include "clients/core/client.h"

void cli_debug_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* CONNACK's code (MQTT 5: the reason) at the connection's version. */
static int debug_connack(const cli_opts *o, const mqtt_header *h, int *code)
{
    mqtt_connack a;
    mqtt5_connack a5;
    int rc;

    if (o->protocol_level != 5) {
        rc = mqtt_decode_connack(h, &a);
        *code = a.return_code;
        return rc;
    }
    rc = mqtt5_decode_connack(h, &a5);
    *code = a5.reason;
    return rc;
}

/* The packet id of an ack or UNSUBACK at the connection's version. */
static int debug_ack_id(const cli_opts *o, const mqtt_header *h, uint16_t *mid)
{
    mqtt_suback s;
    int rc;

    if (o->protocol_level != 5 || h->type != MQTT_UNSUBACK) return cli_decode_ack(o, h, mid);
    rc = cli_decode_suback(o, h, &s); /* v5 UNSUBACK carries reason codes */
    *mid = s.packet_id;
    return rc;
}

/* The filters of a SUBSCRIBE; a v5 options byte yields its QoS bits. */
static int debug_subscribe(const cli_opts *o, const mqtt_header *h, mqtt_sublist *s)
{
    mqtt5_sublist s5;
    int rc;

    if (o->protocol_level != 5) return mqtt_decode_subscribe(h, s);
    rc = mqtt5_decode_subscribe(h, &s5);
    *s = s5.list;
    return rc;
}

void cli_debug_packet(const cli_opts *o, const char *dir, const uint8_t *pkt, size_t len)
{
    const char *id = o->id;
    mqtt_header h;
    size_t plen = 0;
    const bool sending = dir[0] == 's';

    if (mqtt_frame_level(pkt, len, 0, (uint8_t)o->protocol_level, &h, &plen) != MQTT_OK) {
        cli_debug_line("Client %s %s malformed packet (%zu bytes)", id, dir, len);
        return;
    }
    switch (h.type) {
    case MQTT_CONNACK: {
        int code;
        if (debug_connack(o, &h, &code) == MQTT_OK) {
            cli_debug_line("Client %s %s CONNACK (%d)", id, dir, code);
            return;
        }
        break;
    }
    case MQTT_PUBLISH: {
        mqtt_publish p;
        if (cli_decode_publish(o, &h, &p, NULL) == MQTT_OK) {
            cli_debug_line("Client %s %s PUBLISH (d%d, q%d, r%d, m%u, '%.*s', ... (%zu bytes))", id,
                           dir, p.dup ? 1 : 0, p.qos, p.retain ? 1 : 0, p.packet_id,
                           (int)p.topic.len, (const char *)p.topic.ptr, p.payload_len);
            return;
        }
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK: {
        uint16_t mid;
        if (debug_ack_id(o, &h, &mid) == MQTT_OK) {
            if (sending)
                cli_debug_line("Client %s %s %s (m%u)", id, dir, mqtt_type_name(h.type), mid);
            else
                cli_debug_line("Client %s %s %s (Mid: %u)", id, dir, mqtt_type_name(h.type), mid);
            return;
        }
        break;
    }
    case MQTT_SUBSCRIBE: {
        mqtt_sublist s;
        mqtt_str f;
        uint8_t q = 0;
        if (debug_subscribe(o, &h, &s) == MQTT_OK) {
            while (mqtt_sublist_next(&s, &f, &q))
                cli_debug_line("Client %s %s SUBSCRIBE (Mid: %u, Topic: %.*s, QoS: %d)", id, dir,
                               s.packet_id, (int)f.len, (const char *)f.ptr, q & 3);
            return;
        }
        break;
    }
    case MQTT_SUBACK: {
        mqtt_suback s;
        if (cli_decode_suback(o, &h, &s) == MQTT_OK) {
            char codes[256];
            size_t n = 0;
            unsigned i;
            codes[0] = '\0';
            for (i = 0; i < s.count && n + 8 < sizeof(codes); i++)
                n += (size_t)snprintf(codes + n, sizeof(codes) - n, "%s%d", i ? ", " : "",
                                      s.codes[i]);
            cli_debug_line("Client %s %s SUBACK", id, dir);
            cli_debug_line("Subscribed (mid: %u): %s", s.packet_id, codes);
            return;
        }
        break;
    }
    default:
        break;
    }
    cli_debug_line("Client %s %s %s", id, dir, mqtt_type_name(h.type));
}
