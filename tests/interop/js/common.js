// Shared by the MQTT.js interop scripts (tests/interop/test_mqttjs.py, test_mqttjs_ws.py):
// command-line options, MQTT.js connect options, one JSON object per stdout line.
'use strict';
const fs = require('fs');
// resolved from the repository root's node_modules (npm ci, package-lock.json)
const mqtt = require('mqtt');
const MQTTJS_VERSION = require('mqtt/package.json').version;

// --name value pairs; repeated names accumulate into arrays where noted
function parseArgs(argv) {
  const opts = { host: '127.0.0.1', qos: 0, count: 1, timeout: 30, message: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (value === undefined) throw new Error('missing value for ' + argv[i]);
    if (name === 'message') opts.message.push(value);
    else if (['port', 'qos', 'count', 'timeout', 'version'].includes(name)) {
      opts[name] = Number(value);
    } else if (name === 'user') { // --user k=v: a v5 User Property on PUBLISH
      const [k, v] = value.split('=');
      opts.userProperties = Object.assign(opts.userProperties || {}, { [k]: v });
    } else opts[name] = value;
  }
  if (!opts.port) throw new Error('--port is required');
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// connect over TLS when --ca is given (server verified; --cert/--key for mutual TLS)
function connect(opts) {
  const o = {
    protocolVersion: opts.version || 4, // MQTT 3.1.1 unless --version 5
    clientId: opts.id || 'mqttjs-' + process.pid,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,            // a refused connection is an error, not a retry loop
    connectTimeout: opts.timeout * 1000,
  };
  let url = 'mqtt://' + opts.host + ':' + opts.port;
  if (opts.ca) {
    url = 'mqtts://' + opts.host + ':' + opts.port;
    o.ca = fs.readFileSync(opts.ca);
    o.rejectUnauthorized = true;
    if (opts.servername) o.servername = opts.servername;
    if (opts.cert) o.cert = fs.readFileSync(opts.cert);
    if (opts.key) o.key = fs.readFileSync(opts.key);
  }
  // --ws 1: MQTT over WebSockets (ws://, or wss:// with --ca) on path /mqtt
  if (opts.ws) url = (opts.ca ? 'wss://' : 'ws://') + opts.host + ':' + opts.port + '/mqtt';
  const client = mqtt.connect(url, o);
  // every MQTT packet in and out, so the test can check the QoS 1/2 handshakes
  client.on('packetsend', (p) => emit({ event: 'packet', dir: 'out', cmd: p.cmd, qos: p.qos }));
  client.on('packetreceive', (p) => emit({ event: 'packet', dir: 'in', cmd: p.cmd, qos: p.qos }));
  client.on('error', (err) => {
    emit({ event: 'error', message: String(err && err.message), code: err && err.code });
    client.end(true, () => process.exit(2));
  });
  // an upper bound so a hung broker never hangs the test run
  const timer = setTimeout(() => {
    emit({ event: 'timeout', seconds: opts.timeout });
    process.exit(3);
  }, opts.timeout * 1000);
  timer.unref();
  return client;
}

function finish(client) {
  client.end(false, {}, () => {
    emit({ event: 'end' });
    process.exit(0);
  });
}

function main(fn) {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    emit({ event: 'usage', message: e.message });
    process.exit(64);
  }
  emit({ event: 'start', mqtt: MQTTJS_VERSION,
         node: process.version });
  fn(opts);
}

module.exports = { main, connect, emit, finish };
