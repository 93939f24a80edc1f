/*
 * protocol.h -- what the broker does with each decoded packet: the state
 * rules (CONNECT first and once, [MQTT-3.1.0-1/2]), sessions, the router
 * and authorization.
 */
#ifndef SECBROKER_PROTOCOL_H
#define SECBROKER_PROTOCOL_H

#include "mqtt/mqtt.h"

struct broker;
struct conn;

void proto_handle_packet(struct broker *b, struct conn *c, const mqtt_header *h);
void proto_finish_connect(struct broker *b, struct conn *c);
void proto_connection_lost(struct broker *b, struct conn *c);

#endif
