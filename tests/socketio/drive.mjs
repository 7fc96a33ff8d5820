// Drives stock Socket.IO clients against a running Switchboard node for the Rust tests
// (tests/api/socketio.rs). Usage: node drive.mjs <scenario>; URL, TOKEN_A, TOKEN_B and
// BAD_TOKEN come from the environment. Exits 0 when every check passed, else prints why.
import assert from "node:assert/strict";
import { io as io4 } from "socket.io-client";
import io2 from "socket.io-client-v2";

const { URL, TOKEN_A, TOKEN_B, BAD_TOKEN } = process.env;
const scenario = process.argv[2];
const timer = setTimeout(() => fail(new Error(`scenario ${scenario} timed out`)), 20000);

function fail(error) {
  console.error(error?.stack ?? String(error));
  process.exit(1);
}

// EIO 4: token in the namespace connect packet's auth payload.
function v4(token) {
  return io4(URL, { transports: ["websocket"], auth: { token }, reconnection: false });
}

// EIO 3: token in the query string.
function v3(token) {
  return io2(URL, { transports: ["websocket"], query: { token }, reconnection: false, forceNew: true });
}

const once = (socket, event) => new Promise((resolve) => socket.once(event, resolve));

// v2 has no emitWithAck: wrap the callback form both versions share.
const request = (socket, event, data) =>
  new Promise((resolve) => socket.emit(event, data, (reply) => resolve(reply)));

async function chat(connect) {
  const alice = connect(TOKEN_A);
  const bob = connect(TOKEN_B);
  await Promise.all([once(alice, "connect"), once(bob, "connect")]);
  const opened = await request(alice, "room.direct", { user_id: "bob" });
  assert.equal(opened.ok, true, JSON.stringify(opened));
  const room = opened.data.room.id;

  const arrived = once(bob, "message.new");
  const sent = await request(alice, "message.send", { room_id: room, body: "hello over socket.io", client_id: "c1" });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.equal(sent.data.message.body, "hello over socket.io");
  const pushed = await arrived;
  assert.deepEqual(pushed.message, sent.data.message);

  const unknown = await request(alice, "no.such.event", {});
  assert.deepEqual(unknown.ok, false);
  assert.equal(unknown.error.code, "unknown_event");
  const forbidden = await request(alice, "message.send", { room_id: room, body: "x", sender_id: "bob" });
  assert.equal(forbidden.error.code, "forbidden");

  // Events without an ack: errors come back as an `error` event.
  const error = once(alice, "error");
  alice.emit("message.send", { room_id: "not-a-uuid", body: "x" });
  assert.equal((await error).code, "bad_request");

  const typing = once(bob, "typing");
  const typed = await request(alice, "typing", { room_id: room, typing: true });
  assert.deepEqual(typed, { ok: true });
  assert.deepEqual(await typing, { room_id: room, user_id: "alice", typing: true });

  const history = await request(bob, "message.history", { room_id: room });
  assert.equal(history.data.messages.length, 1);
  alice.disconnect();
  bob.disconnect();
  return { room };
}

async function refused(connect, event) {
  const socket = connect(BAD_TOKEN);
  const error = await once(socket, event);
  socket.close();
  return error;
}

async function stayConnected(connect, millis) {
  const socket = connect(TOKEN_A);
  await once(socket, "connect");
  let dropped = null;
  socket.on("disconnect", (reason) => (dropped = reason));
  await new Promise((resolve) => setTimeout(resolve, millis));
  assert.equal(dropped, null, `disconnected: ${dropped}`);
  const reply = await request(socket, "presence.query", { user_ids: [] });
  assert.equal(reply.ok, true);
  socket.disconnect();
}

const scenarios = {
  "v4-chat": () => chat(v4),
  "v3-chat": () => chat(v3),
  "v4-refused": async () => {
    const error = await refused(v4, "connect_error");
    assert.equal(error.message, "not authorized");
    assert.ok(error.data.reason.length > 0);
  },
  "v3-refused": async () => {
    const error = await refused(v3, "error");
    assert.equal(error, "not authorized");
  },
  "v4-heartbeat": () => stayConnected(v4, 5000),
  "v3-heartbeat": () => stayConnected(v3, 5000),
  // A Socket.IO user and a native user (driven by the Rust side) in one room.
  "v4-send-to-native": async () => {
    const alice = v4(TOKEN_A);
    await once(alice, "connect");
    const room = (await request(alice, "room.direct", { user_id: "bob" })).data.room.id;
    const sent = await request(alice, "message.send", { room_id: room, body: "from socket.io" });
    assert.equal(sent.ok, true);
    const reply = once(alice, "message.new");
    console.log(JSON.stringify({ room, waiting: true }));
    const answer = await reply;
    assert.equal(answer.message.body, "from native");
    alice.disconnect();
  },
};

try {
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  const result = await run();
  clearTimeout(timer);
  console.log(JSON.stringify({ ok: true, ...(result ?? {}) }));
  process.exit(0);
} catch (error) {
  fail(error);
}
