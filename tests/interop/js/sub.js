// node sub.js --port P [--ca F --cert F --key F] --topic T --qos Q --count N [--id ID]
// Subscribes, prints {"event":"suback","granted":[...]}, then one
// {"event":"message",...} per message; exits 0 after --count messages.
'use strict';
const { main, connect, emit, finish } = require('./common');

main((opts) => {
  const client = connect(opts);
  let got = 0;
  let lastAck = false; // the last message came: finish once its ack is sent
  let ending = false;
  client.on('connect', (connack) => {
    emit({ event: 'connect', sessionPresent: connack.sessionPresent, returnCode: connack.returnCode,
           reasonCode: connack.reasonCode, properties: connack.properties || null });
    client.subscribe(opts.topic, { qos: opts.qos }, (err, granted) => {
      if (err) {
        emit({ event: 'error', message: String(err.message) });
        process.exit(2);
      }
      emit({ event: 'suback', granted: granted.map((g) => g.qos) });
    });
  });
  client.on('message', (topic, payload, packet) => {
    got += 1;
    emit({ event: 'message', topic, payload: payload.toString('utf8'), qos: packet.qos,
           retain: packet.retain, properties: packet.properties || null });
    if (got < opts.count || ending) return;
    // QoS 1/2: MQTT.js acknowledges after this event; disconnecting now would
    // put the DISCONNECT before the PUBACK/PUBCOMP and the broker closes on it
    if (packet.qos === 0) {
      ending = true;
      finish(client);
    } else {
      lastAck = true;
    }
  });
  client.on('packetsend', (p) => {
    if (lastAck && !ending && (p.cmd === 'puback' || p.cmd === 'pubcomp')) {
      ending = true;
      finish(client);
    }
  });
});
