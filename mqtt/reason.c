/*
 * reason.c -- MQTT 5.0 reason codes (spec 2.4, table 2-6): which packets
 * may carry each code, its name, and the code a receiver answers a codec
 * error with.
 */
#include "mqtt/internal.h"

#define IN(x) (1u << (x))
#define CACK IN(MQTT_CONNACK)
#define PACK IN(MQTT_PUBACK)
#define PREC IN(MQTT_PUBREC)
#define PREL IN(MQTT_PUBREL)
#define PCOMP IN(MQTT_PUBCOMP)
#define SACK IN(MQTT_SUBACK)
#define UACK IN(MQTT_UNSUBACK)
#define DISC IN(MQTT_DISCONNECT)
#define AUTH IN(MQTT_AUTH)
/* The common "refused by the receiver" set of the 0x80 block. */
#define REFUSE (CACK | PACK | PREC | SACK | UACK | DISC)

struct reason_info {
    uint8_t code;
    uint32_t where;
    const char *name;
};

/* 0x00..0x02 have packet-specific names, see mqtt5_reason_string. */
static const struct reason_info reasons[] = {
    {0x00, CACK | PACK | PREC | PREL | PCOMP | SACK | UACK | DISC | AUTH, "Success"},
    {0x01, SACK, "Granted QoS 1"},
    {0x02, SACK, "Granted QoS 2"},
    {0x04, DISC, "Disconnect with Will Message"},
    {0x10, PACK | PREC, "No matching subscribers"},
    {0x11, UACK, "No subscription existed"},
    {0x18, AUTH, "Continue authentication"},
    {0x19, AUTH, "Re-authenticate"},
    {0x80, REFUSE, "Unspecified error"},
    {0x81, CACK | DISC, "Malformed Packet"},
    {0x82, CACK | DISC, "Protocol Error"},
    {0x83, REFUSE, "Implementation specific error"},
    {0x84, CACK, "Unsupported Protocol Version"},
    {0x85, CACK, "Client Identifier not valid"},
    {0x86, CACK, "Bad User Name or Password"},
    {0x87, REFUSE, "Not authorized"},
    {0x88, CACK, "Server unavailable"},
    {0x89, CACK | DISC, "Server busy"},
    {0x8A, CACK, "Banned"},
    {0x8B, DISC, "Server shutting down"},
    {0x8C, CACK | DISC, "Bad authentication method"},
    {0x8D, DISC, "Keep Alive timeout"},
    {0x8E, DISC, "Session taken over"},
    {0x8F, SACK | UACK | DISC, "Topic Filter invalid"},
    {0x90, CACK | PACK | PREC | DISC, "Topic Name invalid"},
    {0x91, PACK | PREC | SACK | UACK, "Packet Identifier in use"},
    {0x92, PREL | PCOMP, "Packet Identifier not found"},
    {0x93, DISC, "Receive Maximum exceeded"},
    {0x94, DISC, "Topic Alias invalid"},
    {0x95, CACK | DISC, "Packet too large"},
    {0x96, DISC, "Message rate too high"},
    {0x97, CACK | PACK | PREC | SACK | DISC, "Quota exceeded"},
    {0x98, DISC, "Administrative action"},
    {0x99, CACK | PACK | PREC | DISC, "Payload format invalid"},
    {0x9A, CACK | DISC, "Retain not supported"},
    {0x9B, CACK | DISC, "QoS not supported"},
    {0x9C, CACK | DISC, "Use another server"},
    {0x9D, CACK | DISC, "Server moved"},
    {0x9E, SACK | DISC, "Shared Subscriptions not supported"},
    {0x9F, CACK | DISC, "Connection rate exceeded"},
    {0xA0, DISC, "Maximum connect time"},
    {0xA1, SACK | DISC, "Subscription Identifiers not supported"},
    {0xA2, SACK | DISC, "Wildcard Subscriptions not supported"},
};

static const struct reason_info *find(uint8_t rc)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == rc) return &reasons[i];
    return NULL;
}

/* mqtt5_reason_allowed -- is rc in the reason code table of packet type? */
bool mqtt5_reason_allowed(int type, uint8_t rc)
{
    const struct reason_info *r = find(rc);
    return r && type >= 0 && type <= MQTT_AUTH && (r->where & IN(type));
}

/* mqtt5_reason_string -- the name the spec gives rc in that packet. */
const char *mqtt5_reason_string(int type, uint8_t rc)
{
    if (!mqtt5_reason_allowed(type, rc)) return "reserved";
    if (rc == 0 && type == MQTT_DISCONNECT) return "Normal disconnection";
    if (rc == 0 && type == MQTT_SUBACK) return "Granted QoS 0";
    return find(rc)->name;
}

/* mqtt5_reason_for_err -- see mqtt.h. Spec 2.2.2.2 and 4.13: what cannot be
 * parsed (bad lengths, types, reserved bits, unknown or misplaced property)
 * is a Malformed Packet; what parses but breaks a rule is a Protocol Error. */
uint8_t mqtt5_reason_for_err(int err)
{
    switch (err) {
    case MQTT_ERR_TYPE:
    case MQTT_ERR_FLAGS:
    case MQTT_ERR_QOS:
    case MQTT_ERR_REMAINING_LENGTH:
    case MQTT_ERR_LENGTH:
    case MQTT_ERR_UTF8:
    case MQTT_ERR_PROTOCOL_NAME:
    case MQTT_ERR_CONNECT_FLAGS:
    case MQTT_ERR_SUB_QOS:
    case MQTT_ERR_EMPTY:
    case MQTT_ERR_CONNACK:
    case MQTT_ERR_VARINT:
    case MQTT_ERR_PROP_LENGTH:
    case MQTT_ERR_PROP_ID:
    case MQTT_ERR_PROP_NOT_ALLOWED:
    case MQTT_ERR_SUB_OPTIONS:
        return MQTT5_RC_MALFORMED;
    case MQTT_ERR_PACKET_ID:
    case MQTT_ERR_PROP_DUP:
    case MQTT_ERR_PROP_VALUE:
    case MQTT_ERR_AUTH_DATA:
    case MQTT_ERR_REASON:
    case MQTT_ERR_RETAIN_HANDLING:
    case MQTT_ERR_SHARED_NO_LOCAL:
    case MQTT_ERR_TOPIC_ALIAS:
    case MQTT_ERR_AUTH_METHOD:
        return MQTT5_RC_PROTOCOL_ERROR;
    case MQTT_ERR_PROTOCOL_LEVEL:
        return MQTT5_RC_UNSUPPORTED_VERSION;
    case MQTT_ERR_TOO_LARGE:
        return MQTT5_RC_PACKET_TOO_LARGE;
    case MQTT_ERR_TOPIC:
        return MQTT5_RC_TOPIC_NAME_INVALID;
    case MQTT_ERR_FILTER:
        return MQTT5_RC_TOPIC_FILTER_INVALID;
    default:
        return MQTT5_RC_UNSPECIFIED;
    }
}
