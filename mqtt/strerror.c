/*
 * strerror.c -- words for codes, ready for one log line.
 */
#include "mqtt/internal.h"

/* Code -> words, one row per code. */
static const struct {
    int code;
    const char *words;
} words_table[] = {
    {MQTT_OK, "ok"},
    {MQTT_NEED_MORE, "incomplete packet, more bytes needed"},
    {MQTT_ERR_TYPE, "reserved packet type 0 or 15 (spec 2.2.1)"},
    {MQTT_ERR_FLAGS, "reserved fixed-header flags are wrong [MQTT-2.2.2-2]"},
    {MQTT_ERR_QOS, "PUBLISH with QoS 3 [MQTT-3.3.1-4]"},
    {MQTT_ERR_REMAINING_LENGTH, "remaining length longer than 4 bytes (spec 2.2.3)"},
    {MQTT_ERR_TOO_LARGE, "packet larger than the configured maximum packet size"},
    {MQTT_ERR_LENGTH, "packet body truncated or has trailing bytes [MQTT-4.8.0-1]"},
    {MQTT_ERR_UTF8,
     "ill-formed UTF-8, surrogate or U+0000 in a string [MQTT-1.5.3-1, MQTT-1.5.3-2]"},
    {MQTT_ERR_PROTOCOL_NAME, "protocol name is not \"MQTT\" or \"MQIsdp\" [MQTT-3.1.2-1]"},
    {MQTT_ERR_PROTOCOL_LEVEL, "unsupported protocol level [MQTT-3.1.2-2]"},
    {MQTT_ERR_CONNECT_FLAGS,
     "invalid CONNECT flags: reserved bit, will QoS/retain or password without "
     "user name [MQTT-3.1.2-3, -11, -14, -22]"},
    {MQTT_ERR_TOPIC, "empty topic name or wildcard in a topic name [MQTT-3.3.2-2, MQTT-4.7.3-1]"},
    {MQTT_ERR_FILTER, "invalid topic filter: empty, or '#'/'+' not alone in its level "
                      "[MQTT-4.7.1-2, MQTT-4.7.1-3]"},
    {MQTT_ERR_EMPTY, "SUBSCRIBE/UNSUBSCRIBE without topic filters [MQTT-3.8.3-3, MQTT-3.10.3-2]"},
    {MQTT_ERR_PACKET_ID, "packet identifier 0 where a non-zero one is required [MQTT-2.3.1-1]"},
    {MQTT_ERR_SUB_QOS, "requested QoS above 2 or reserved bits set [MQTT-3.8.3-4]"},
    {MQTT_ERR_BUFFER, "output buffer too small"},
    {MQTT_ERR_CONNACK, "CONNACK reserved flags set or return code above 5 (spec 3.2.2)"},
    {MQTT_ERR_ARG, "invalid argument to an encoder"},
    {MQTT_ERR_VARINT, "variable byte integer longer than 4 bytes or not in its shortest form "
                      "[MQTT-1.5.5-1]"},
    {MQTT_ERR_PROP_LENGTH, "property length runs past the packet or a property value is truncated "
                           "(MQTT 5 spec 2.2.2.1)"},
    {MQTT_ERR_PROP_ID, "unknown property identifier (MQTT 5 spec 2.2.2.2)"},
    {MQTT_ERR_PROP_NOT_ALLOWED,
     "property not allowed in this packet (MQTT 5 spec 2.2.2.2, table 2-4)"},
    {MQTT_ERR_PROP_DUP, "property included more than once; only User Property (and Subscription "
                        "Identifier in PUBLISH) may repeat (MQTT 5 spec 3.1.2.11 ff.)"},
    {MQTT_ERR_PROP_VALUE,
     "property value out of range: 0 receive maximum, maximum packet size, topic "
     "alias or subscription identifier, a flag other than 0/1, wildcard response "
     "topic [MQTT-3.3.2-8, MQTT-3.3.2-14]"},
    {MQTT_ERR_AUTH_DATA,
     "Authentication Data without Authentication Method (MQTT 5 spec 3.1.2.11.10)"},
    {MQTT_ERR_REASON, "reason code not allowed in this packet [MQTT-3.2.2-8, MQTT-3.4.2-1, "
                      "MQTT-3.5.2-1, MQTT-3.6.2-1, MQTT-3.7.2-1, MQTT-3.9.3-2, MQTT-3.11.3-2, "
                      "MQTT-3.14.2-1, MQTT-3.15.2-1]"},
    {MQTT_ERR_SUB_OPTIONS, "subscription options reserved bits set [MQTT-3.8.3-5]"},
    {MQTT_ERR_RETAIN_HANDLING,
     "subscription option retain handling 3 is a protocol error (MQTT 5 spec "
     "3.8.3.1)"},
    {MQTT_ERR_SHARED_NO_LOCAL, "No Local set on a shared subscription [MQTT-3.8.3-4]"},
    {MQTT_ERR_AUTH_METHOD, "AUTH packet without Authentication Method (MQTT 5 spec 3.15.2.2.2)"},
    {MQTT_ERR_TOPIC_ALIAS,
     "PUBLISH with an empty topic name and no Topic Alias (MQTT 5 spec 3.3.2.3.4)"},
};

/*
 * mqtt_strerror -- what went wrong and which spec rule says so. Never NULL;
 * unknown codes get a generic string.
 */
const char *mqtt_strerror(int err)
{
    for (size_t i = 0; i < sizeof words_table / sizeof words_table[0]; i++)
        if (words_table[i].code == err) return words_table[i].words;
    return "unknown MQTT codec error";
}

static const char *const type_names[16] = {
    [MQTT_CONNECT] = "CONNECT",   [MQTT_CONNACK] = "CONNACK",
    [MQTT_PUBLISH] = "PUBLISH",   [MQTT_PUBACK] = "PUBACK",
    [MQTT_PUBREC] = "PUBREC",     [MQTT_PUBREL] = "PUBREL",
    [MQTT_PUBCOMP] = "PUBCOMP",   [MQTT_SUBSCRIBE] = "SUBSCRIBE",
    [MQTT_SUBACK] = "SUBACK",     [MQTT_UNSUBSCRIBE] = "UNSUBSCRIBE",
    [MQTT_UNSUBACK] = "UNSUBACK", [MQTT_PINGREQ] = "PINGREQ",
    [MQTT_PINGRESP] = "PINGRESP", [MQTT_DISCONNECT] = "DISCONNECT",
};

/* mqtt_type_name -- "PUBLISH" etc.; "RESERVED" for 0, 15 and out of range. */
const char *mqtt_type_name(int type)
{
    if (type < 0 || type > 15 || type_names[type] == NULL) return "RESERVED";
    return type_names[type];
}

/* mqtt_connack_string -- words for a CONNACK return code (spec 3.2.2.3). */
const char *mqtt_connack_string(int rc)
{
    switch (rc) {
    case MQTT_CONNACK_ACCEPTED:
        return "connection accepted";
    case MQTT_CONNACK_PROTOCOL:
        return "unacceptable protocol version";
    case MQTT_CONNACK_IDENTIFIER:
        return "identifier rejected";
    case MQTT_CONNACK_UNAVAILABLE:
        return "server unavailable";
    case MQTT_CONNACK_BAD_CREDENTIALS:
        return "bad user name or password";
    case MQTT_CONNACK_NOT_AUTHORIZED:
        return "not authorized";
    default:
        return "reserved return code";
    }
}
