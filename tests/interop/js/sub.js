// node sub.js --port P [--ca F --cert F --key F] --topic T --qos Q --count N [--id ID]
// Subscribes, prints {"event":"suback","granted":[...]}, then one
// {"event":"message",...} per message; exits 0 after --count messages.
'use strict';
const { main, connect, emit, finish } = require('./common');

main((opts) => {
  const client = connect(opts);
  let got = 0;
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
    if (got >= opts.count) finish(client);
  });
});
