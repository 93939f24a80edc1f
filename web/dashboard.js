// secbroker lab dashboard: reads the broker's $SYS JSON topics (docs/sys.md)
// over MQTT over WebSockets with MQTT.js' browser build (mqtt.min.js).
// Every value from the broker is shown with textContent, never as HTML: client
// ids, topics and payloads come from whoever connects.
'use strict';

const SYS = {
  clients: '$SYS/broker/clients/list',
  subs: '$SYS/broker/subscriptions/list',
  rates: '$SYS/broker/rates',
  failures: '$SYS/broker/handshakes/failed',
};
const FEED_MAX = 100;   // rows kept in the live feed
const RATES_MAX = 120;  // points kept in the plot

let client = null;
let feedFilter = null;
const rates = [];

function $(id) { return document.getElementById(id); }

function setStatus(text, on) {
  const s = $('status');
  s.textContent = text;
  s.className = 'status ' + (on ? 'on' : 'off');
}

// One table body from rows of cell values; an empty list says so.
function fillTable(id, rows, emptyText, classes) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = body.insertRow();
    const td = tr.insertCell();
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.className = 'empty';
    td.textContent = emptyText;
    return;
  }
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((v, i) => {
      const td = tr.insertCell();
      td.textContent = v === null || v === undefined ? '–' : String(v);
      if (classes && classes[i]) td.className = classes[i];
    });
  }
}

function countText(d) {
  return d.total > d.shown ? `(${d.shown} of ${d.total} shown)` : `(${d.total})`;
}

function showClients(d) {
  $('clients-count').textContent = countText(d);
  fillTable('clients', d.clients.map((c) => [
    c.id, c.address, c.protocol, c.transport,
    c.tls ? c.tls.version : null, c.tls ? c.tls.cipher : null, c.tls ? c.tls.handshake : null,
    c.tls ? (c.tls.cert_subject || 'none') : null, c.username, c.subscriptions,
  ]), 'no clients connected');
}

function showSubs(d) {
  $('subs-count').textContent = countText(d);
  fillTable('subs', d.subscriptions.map((s) => [s.client, s.filter, s.qos]), 'no subscriptions');
}

function showFailures(d) {
  $('failures-count').textContent = `(${d.total} since start, latest ${d.failures.length} shown)`;
  fillTable('failures', d.failures.map((f) => [
    f.time, f.address, f.port, f.transport,
    f.http_status ? `${f.reason} (HTTP ${f.http_status})` : f.reason, f.alert,
  ]), 'no failed handshakes', [null, null, null, null, 'reason', null]);
}

function drawRates() {
  const cv = $('rates');
  const g = cv.getContext('2d');
  const w = cv.width, h = cv.height, pad = 24;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...rates.map((r) => Math.max(r.rx, r.tx)));
  g.fillStyle = '#667';
  g.font = '11px sans-serif';
  g.fillText(max.toFixed(max < 10 ? 1 : 0) + '/s', 2, 12);
  g.fillText('0', 2, h - 4);
  g.strokeStyle = '#e3e7eb';
  g.beginPath();
  g.moveTo(pad, h - pad / 2);
  g.lineTo(w, h - pad / 2);
  g.stroke();
  for (const [key, color] of [['rx', '#1f6fb2'], ['tx', '#d97706']]) {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    rates.forEach((r, i) => {
      const x = pad + (w - pad) * (rates.length === 1 ? 1 : i / (RATES_MAX - 1));
      const y = (h - pad / 2) - (h - pad) * (r[key] / max);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

function showRates(d) {
  // the first message brings the broker's recent history; later ones add one point
  const fresh = rates.length === 0 && Array.isArray(d.history) ? d.history : [];
  for (const [t, rx, tx] of fresh) rates.push({ t, rx, tx });
  if (fresh.length === 0) rates.push({ t: d.time, rx: d.messages_received_per_s, tx: d.messages_sent_per_s });
  while (rates.length > RATES_MAX) rates.shift();
  $('rates-now').textContent =
    `(now ${d.messages_received_per_s} received/s, ${d.messages_sent_per_s} sent/s, ` +
    `${d.clients} clients, every ${d.interval} s)`;
  drawRates();
}

// MQTT topic matching for the feed ([MQTT-4.7]: wildcards do not match $ topics).
function topicMatches(filter, topic) {
  if (topic.startsWith('$') && (filter.startsWith('#') || filter.startsWith('+'))) return false;
  const f = filter.split('/'), t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function addFeedRow(topic, payload, packet) {
  const body = $('feed').tBodies[0];
  const tr = body.insertRow(0);
  let text = new TextDecoder('utf-8', { fatal: false }).decode(payload);
  if (text.length > 300) text = text.slice(0, 300) + '…';
  for (const v of [new Date().toISOString().slice(11, 23), topic, packet.qos,
                   packet.retain ? 'yes' : '', text]) {
    tr.insertCell().textContent = String(v);
  }
  while (body.rows.length > FEED_MAX) body.deleteRow(body.rows.length - 1);
}

function onMessage(topic, payload, packet) {
  const handlers = { [SYS.clients]: showClients, [SYS.subs]: showSubs,
                     [SYS.rates]: showRates, [SYS.failures]: showFailures };
  if (handlers[topic]) {
    try {
      handlers[topic](JSON.parse(new TextDecoder().decode(payload)));
    } catch (e) {
      console.error('bad JSON on', topic, e);
    }
  }
  if (feedFilter && topicMatches(feedFilter, topic)) addFeedRow(topic, payload, packet);
}

function watch(filter) {
  if (!client || !client.connected) return;
  if (feedFilter && !Object.values(SYS).includes(feedFilter)) client.unsubscribe(feedFilter);
  feedFilter = filter;
  $('feed').tBodies[0].replaceChildren();
  client.subscribe(filter, { qos: 0 }, (err, granted) => {
    const refused = err || !granted || granted.some((g) => g.qos === 128);
    $('feed-state').textContent = refused ? `not allowed to read ${filter}` : `watching ${filter}`;
  });
}

function connect() {
  if (client) client.end(true);
  const url = $('url').value.trim();
  const opts = { protocolVersion: 4, clean: true, reconnectPeriod: 2000, connectTimeout: 10000,
                 clientId: 'dashboard-' + Math.random().toString(16).slice(2, 10) };
  if ($('user').value) {
    opts.username = $('user').value;
    opts.password = $('pass').value;
  }
  setStatus('connecting to ' + url, false);
  client = mqtt.connect(url, opts);
  client.on('connect', () => {
    setStatus('connected to ' + url, true);
    client.subscribe(Object.values(SYS), { qos: 0 }, (err, granted) => {
      if (err || granted.some((g) => g.qos === 128))
        setStatus('connected, but the ACL does not let this user read $SYS', false);
    });
    watch($('feed-filter').value.trim() || '#');
  });
  client.on('reconnect', () => setStatus('reconnecting to ' + url, false));
  client.on('close', () => { if (!client.reconnecting) setStatus('disconnected', false); });
  client.on('error', (e) => setStatus('error: ' + e.message, false));
  client.on('message', onMessage);
}

window.addEventListener('DOMContentLoaded', () => {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  $('url').value = new URLSearchParams(location.search).get('broker') ||
                   `${scheme}://${location.host || '127.0.0.1:8080'}/mqtt`;
  $('conn-form').addEventListener('submit', (e) => { e.preventDefault(); connect(); });
  $('feed-form').addEventListener('submit', (e) => {
    e.preventDefault();
    watch($('feed-filter').value.trim() || '#');
  });
  fillTable('clients', [], 'waiting for $SYS/broker/clients/list');
  fillTable('failures', [], 'waiting for $SYS/broker/handshakes/failed');
  fillTable('subs', [], 'waiting for $SYS/broker/subscriptions/list');
  drawRates();
  if (typeof mqtt === 'undefined') {
    setStatus('mqtt.min.js is missing: run make (it copies MQTT.js into web/)', false);
    return;
  }
  connect();
});
