// node pub.js --port P [--ca F --cert F --key F] --topic T --qos Q --message M [--message M2 ...]
// Publishes each message in order, printing {"event":"published",...} when
// MQTT.js calls back (QoS 1: PUBACK, QoS 2: PUBCOMP), then disconnects; exit 0.
'use strict';
const { main, connect, emit, finish } = require('./common');

main((opts) => {
  const client = connect(opts);
  client.on('connect', (connack) => {
    emit({ event: 'connect', sessionPresent: connack.sessionPresent, returnCode: connack.returnCode });
    const next = (i) => {
      if (i >= opts.message.length) return finish(client);
      const po = { qos: opts.qos };
      if (opts.userProperties) po.properties = { userProperties: opts.userProperties };
      client.publish(opts.topic, opts.message[i], po, (err) => {
        if (err) {
          emit({ event: 'error', message: String(err.message) });
          process.exit(2);
        }
        emit({ event: 'published', topic: opts.topic, qos: opts.qos, index: i });
        next(i + 1);
      });
    };
    next(0);
  });
});
