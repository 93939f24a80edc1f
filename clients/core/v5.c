/*
 * v5.c -- MQTT 5.0 for the client tools: the -D COMMAND PROPERTY VALUE
 * definitions (mosquitto_pub/sub's names), the property blocks built from
 * them, and decoding the broker's packets at the connection's version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/core/client.h"

static const struct {
    const char *name;
    uint8_t id;
} prop_names[] = {
    {"payload-format-indicator", MQTT_PROP_PAYLOAD_FORMAT},
    {"message-expiry-interval", MQTT_PROP_MESSAGE_EXPIRY},
    {"content-type", MQTT_PROP_CONTENT_TYPE},
    {"response-topic", MQTT_PROP_RESPONSE_TOPIC},
    {"correlation-data", MQTT_PROP_CORRELATION_DATA},
    {"subscription-identifier", MQTT_PROP_SUBSCRIPTION_ID},
    {"session-expiry-interval", MQTT_PROP_SESSION_EXPIRY},
    {"authentication-method", MQTT_PROP_AUTH_METHOD},
    {"authentication-data", MQTT_PROP_AUTH_DATA},
    {"request-problem-information", MQTT_PROP_REQUEST_PROBLEM_INFO},
    {"will-delay-interval", MQTT_PROP_WILL_DELAY},
    {"request-response-information", MQTT_PROP_REQUEST_RESPONSE_INFO},
    {"reason-string", MQTT_PROP_REASON_STRING},
    {"receive-maximum", MQTT_PROP_RECEIVE_MAXIMUM},
    {"topic-alias-maximum", MQTT_PROP_TOPIC_ALIAS_MAXIMUM},
    {"topic-alias", MQTT_PROP_TOPIC_ALIAS},
    {"user-property", MQTT_PROP_USER},
    {"maximum-packet-size", MQTT_PROP_MAXIMUM_PACKET_SIZE},
};

static const struct {
    const char *name;
    int where; /* packet type or MQTT_PROPS_WILL */
} commands[] = {
    {"connect", MQTT_CONNECT},       {"publish", MQTT_PUBLISH},
    {"subscribe", MQTT_SUBSCRIBE},   {"unsubscribe", MQTT_UNSUBSCRIBE},
    {"disconnect", MQTT_DISCONNECT}, {"will", MQTT_PROPS_WILL},
};

/* -D COMMAND PROPERTY VALUE [VALUE2]: argv[*i] is "-D". */
int cli_opts_parse_property(cli_opts *o, int argc, char **argv, int *i, char *err, size_t errlen)
{
    if (*i + 3 >= argc) {
        snprintf(err, errlen, "-D needs COMMAND PROPERTY VALUE");
        return CLI_ERR_ARG;
    }
    const char *cmd = argv[*i + 1], *name = argv[*i + 2];
    cli_prop p = {0};
    p.where = -1;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(cmd, commands[k].name) == 0) p.where = commands[k].where;
    if (p.where < 0) {
        snprintf(err, errlen,
                 "-D: unknown command '%s' (connect, publish, subscribe, "
                 "unsubscribe, disconnect, will)",
                 cmd);
        return CLI_ERR_ARG;
    }
    for (size_t k = 0; k < sizeof prop_names / sizeof prop_names[0]; k++)
        if (strcmp(name, prop_names[k].name) == 0) p.id = prop_names[k].id;
    if (!p.id) {
        snprintf(err, errlen, "-D: unknown property '%s'", name);
        return CLI_ERR_ARG;
    }
    if (!mqtt_prop_allowed(p.id, p.where)) {
        snprintf(err, errlen, "-D: %s is not allowed in %s", name, cmd);
        return CLI_ERR_ARG;
    }
    int words = p.id == MQTT_PROP_USER ? 2 : 1;
    if (*i + 2 + words >= argc) {
        snprintf(err, errlen, "-D %s %s needs %s", cmd, name,
                 words == 2 ? "NAME VALUE" : "a value");
        return CLI_ERR_ARG;
    }
    p.value = argv[*i + 3];
    p.value2 = words == 2 ? argv[*i + 4] : NULL;
    int type = mqtt_prop_type_of(p.id);
    if (type != MQTT_PTYPE_UTF8 && type != MQTT_PTYPE_BINARY && type != MQTT_PTYPE_PAIR) {
        long max = type == MQTT_PTYPE_BYTE     ? 255
                   : type == MQTT_PTYPE_U16    ? 65535
                   : type == MQTT_PTYPE_VARINT ? 268435455
                                               : 4294967295L;
        long v;
        if (!cli_parse_int(p.value, 0, max, &v)) {
            snprintf(err, errlen, "-D %s %s needs a number 0..%ld, not '%s'", cmd, name, max,
                     p.value);
            return CLI_ERR_ARG;
        }
        p.num = (uint32_t)v;
    }
    if (o->nprops == CLI_MAX_PROPS) {
        snprintf(err, errlen, "-D: at most %d properties", CLI_MAX_PROPS);
        return CLI_ERR_ARG;
    }
    o->props[o->nprops++] = p;
    *i += 2 + words;
    return 1;
}

int cli_props_build(const cli_opts *o, int where, uint8_t *buf, size_t cap, mqtt_bytes *out)
{
    mqtt_props_writer w;
    mqtt_props_writer_init(&w, buf, cap);
    int rc = MQTT_OK;
    if (where == MQTT_CONNECT && o->session_expiry_set)
        rc = mqtt_props_add_int(&w, MQTT_PROP_SESSION_EXPIRY, o->session_expiry);
    for (unsigned k = 0; k < o->nprops && rc == MQTT_OK; k++) {
        const cli_prop *p = &o->props[k];
        if (p->where != where) continue;
        if (where == MQTT_CONNECT && p->id == MQTT_PROP_SESSION_EXPIRY && o->session_expiry_set)
            continue; /* -x wins */
        int type = mqtt_prop_type_of(p->id);
        if (type == MQTT_PTYPE_PAIR)
            rc = mqtt_props_add_user(&w, p->value, strlen(p->value), p->value2, strlen(p->value2));
        else if (type == MQTT_PTYPE_UTF8 || type == MQTT_PTYPE_BINARY)
            rc = mqtt_props_add_str(&w, p->id, p->value, strlen(p->value));
        else
            rc = mqtt_props_add_int(&w, p->id, p->num);
    }
    *out = mqtt_props_writer_bytes(&w);
    return rc;
}

uint8_t cli_connack_v3_code(uint8_t reason)
{
    switch (reason) {
    case MQTT5_RC_UNSUPPORTED_VERSION:
        return 1;
    case MQTT5_RC_CLIENT_ID_INVALID:
        return 2;
    case MQTT5_RC_SERVER_UNAVAILABLE:
    case MQTT5_RC_SERVER_BUSY:
        return 3;
    case MQTT5_RC_BAD_CREDENTIALS:
        return 4;
    case MQTT5_RC_NOT_AUTHORIZED:
        return 5;
    default:
        return reason;
    }
}

int cli_decode_publish(const cli_opts *o, const mqtt_header *h, mqtt_publish *p, mqtt_props *props)
{
    if (o->protocol_level != 5) {
        if (props) memset(props, 0, sizeof *props);
        return mqtt_decode_publish(h, p);
    }
    mqtt5_publish p5;
    int rc = mqtt5_decode_publish(h, &p5);
    *p = p5.p;
    if (props) *props = p5.props;
    return rc;
}

int cli_decode_ack(const cli_opts *o, const mqtt_header *h, uint16_t *packet_id)
{
    if (o->protocol_level != 5) return mqtt_decode_ack(h, packet_id);
    mqtt5_ack a;
    int rc = mqtt5_decode_ack(h, &a);
    *packet_id = a.packet_id;
    return rc;
}

int cli_decode_suback(const cli_opts *o, const mqtt_header *h, mqtt_suback *sa)
{
    if (o->protocol_level != 5) return mqtt_decode_suback(h, sa);
    mqtt5_suback s5;
    int rc = mqtt5_decode_suback(h, &s5);
    sa->packet_id = s5.packet_id;
    sa->codes = s5.codes;
    sa->count = s5.count;
    return rc;
}
