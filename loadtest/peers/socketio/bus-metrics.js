// What the Redis adapter's clients carry, counted from outside the adapter (BUS_METRICS=1):
// messages and payload bytes its subscriber receives (every channel and pattern, the node's
// own echoes included, before the adapter filters them), and messages and payload bytes its
// publisher sends. Served as Prometheus text on GET /metrics of the peer's port, beside
// Switchboard's `switchboard_redis_*` counters (loadtest/README.md, `cluster-cost`).
//
// Counting wraps the client methods the adapter calls (subscribe, pSubscribe, sSubscribe,
// publish, sPublish) before the adapter is created: each listener is wrapped to add one to a
// counter and the payload's length, then hands the same arguments on. The adapter and
// node-redis do exactly what they do unwrapped; unsubscribe calls that name a listener are
// given its wrapper, so they still find it.
"use strict";

const counts = { received: 0, receivedBytes: 0, published: 0, publishedBytes: 0 };

const size = (payload) => (typeof payload === "string" ? Buffer.byteLength(payload) : payload.length);

// The subscriber: listeners counted.
function countSubscriber(client) {
  const wrappers = new WeakMap();
  const wrap = (listener) => {
    if (typeof listener !== "function") return listener;
    let wrapped = wrappers.get(listener);
    if (!wrapped) {
      wrapped = (message, channel) => {
        counts.received += 1;
        counts.receivedBytes += size(message);
        return listener(message, channel);
      };
      wrappers.set(listener, wrapped);
    }
    return wrapped;
  };
  for (const name of ["subscribe", "pSubscribe", "sSubscribe"]) {
    if (typeof client[name] !== "function") continue;
    const original = client[name].bind(client);
    client[name] = (channels, listener, bufferMode) => original(channels, wrap(listener), bufferMode);
  }
  for (const name of ["unsubscribe", "pUnsubscribe", "sUnsubscribe"]) {
    if (typeof client[name] !== "function") continue;
    const original = client[name].bind(client);
    client[name] = (channels, listener, bufferMode) =>
      original(channels, listener && (wrappers.get(listener) ?? listener), bufferMode);
  }
}

// The publisher: publishes counted.
function countPublisher(client) {
  for (const name of ["publish", "sPublish"]) {
    if (typeof client[name] !== "function") continue;
    const original = client[name].bind(client);
    client[name] = (channel, message, ...rest) => {
      counts.published += 1;
      counts.publishedBytes += size(message);
      return original(channel, message, ...rest);
    };
  }
}

function text() {
  const line = (name, help, value) => `# HELP ${name} ${help}\n# TYPE ${name} counter\n${name} ${value}\n`;
  return (
    line("socketio_redis_received_total", "Messages the adapter's subscriber received", counts.received) +
    line("socketio_redis_received_bytes_total", "Payload bytes the adapter's subscriber received", counts.receivedBytes) +
    line("socketio_redis_published_total", "Messages the adapter published", counts.published) +
    line("socketio_redis_published_bytes_total", "Payload bytes the adapter published", counts.publishedBytes)
  );
}

// The HTTP handler for requests Socket.IO does not take (engine.io passes them on).
function serve(req, res) {
  if (req.method === "GET" && req.url === "/metrics") {
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    res.end(text());
  } else {
    res.writeHead(404);
    res.end();
  }
}

module.exports = { countSubscriber, countPublisher, serve };
