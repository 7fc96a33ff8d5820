// Drives stock Socket.IO clients against a running Switchboard node for the Rust tests
// (tests/api/socketio.rs). Usage: node drive.mjs <scenario>; URL, TOKEN_A, TOKEN_B and
// BAD_TOKEN come from the environment. Exits 0 when every check passed, else prints why.
import assert from "node:assert/strict";
import { io as io4 } from "socket.io-client";
import io2 from "socket.io-client-v2";

const { URL, URL2, TOKEN_A, TOKEN_B, BAD_TOKEN } = process.env;
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

// EIO 4 that reconnects by itself after a lost transport, ~1.5 s later, as apps do.
function v4Reconnecting(token) {
  return io4(URL, {
    transports: ["websocket"], auth: { token }, reconnectionDelay: 1500, reconnectionDelayMax: 1500,
    randomizationFactor: 0,
  });
}

const sleep = (millis) => new Promise((resolve) => setTimeout(resolve, millis));

/** Records every `message.new` body and the offset that came with it. */
function recordMessages(socket) {
  const seen = [];
  socket.on("message.new", (data, offset) => seen.push({ body: data.message.body, offset }));
  return seen;
}

/** Waits until `seen` holds a message with `body`. */
async function until(seen, body) {
  while (!seen.some((m) => m.body === body)) await sleep(20);
}

/**
 * Alice loses her transport (to `reconnectTo`, the same node or another); Bob sends meanwhile.
 * Alice's client recovers: every missed message once, in order, before live ones.
 */
async function recover(reconnectTo) {
  const alice = v4Reconnecting(TOKEN_A);
  const bob = v4(TOKEN_B);
  await Promise.all([once(alice, "connect"), once(bob, "connect")]);
  assert.equal(alice.recovered, false);
  const seen = recordMessages(alice);
  const room = (await request(bob, "room.direct", { user_id: "alice" })).data.room.id;
  await request(bob, "message.send", { room_id: room, body: "m1" });
  await until(seen, "m1");
  assert.equal(typeof seen[0].offset, "string", "events carry their offset last");
  const pid = alice._pid;
  assert.ok(pid, "the connect reply carries a pid");

  const dropped = once(alice, "disconnect");
  alice.io.uri = reconnectTo;
  alice.io.engine.close();
  await dropped;
  for (const body of ["m2", "m3", "m4"]) {
    assert.equal((await request(bob, "message.send", { room_id: room, body })).ok, true);
  }
  await once(alice, "connect");
  assert.equal(alice.io.engine.port, new globalThis.URL(reconnectTo).port, "reconnected where asked");
  assert.equal(alice.recovered, true, "the session was recovered");
  assert.equal(alice._pid, pid);
  await request(bob, "message.send", { room_id: room, body: "m5" });
  await until(seen, "m5");
  await sleep(300);
  assert.deepEqual(seen.map((m) => m.body), ["m1", "m2", "m3", "m4", "m5"]);
  alice.disconnect();
  bob.disconnect();
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
  "v4-recover": () => recover(URL),
  "v4-recover-on-another-node": () => recover(URL2),
  // Another user's pid, one made up, or one another connection holds opens a session of
  // one's own: nothing replayed.
  "v4-forged-pid": async () => {
    const bob = v4(TOKEN_B);
    await once(bob, "connect");
    const room = (await request(bob, "room.direct", { user_id: "alice" })).data.room.id;
    const bobPid = bob._pid;
    bob.disconnect();
    const sender = v4(TOKEN_A);
    await once(sender, "connect");
    await request(sender, "message.send", { room_id: room, body: "while bob is away" });
    for (const pid of [bobPid, "made-up"]) {
      const alice = io4(URL, { transports: ["websocket"], auth: { token: TOKEN_A, pid, offset: "1" }, reconnection: false });
      const seen = recordMessages(alice);
      await once(alice, "connect");
      assert.equal(alice.recovered, false);
      assert.ok(alice._pid && alice._pid !== pid, "a session of its own");
      await sleep(300);
      assert.deepEqual(seen, []);
      alice.disconnect();
    }
    sender.disconnect();
    // A session a connection holds is resumed by no other; once let go, by one connection.
    // As the client itself claims its session on a reconnect (`recovered` is its own pid coming back).
    const claim = (pid) => {
      const socket = io4(URL, { transports: ["websocket"], auth: { token: TOKEN_A }, reconnection: false, autoConnect: false });
      socket._pid = pid;
      socket._lastOffset = "";
      return socket.connect();
    };
    const holder = v4(TOKEN_A);
    await once(holder, "connect");
    const held = holder._pid;
    const intruder = claim(held);
    await once(intruder, "connect");
    assert.equal(intruder.recovered, false, "a held session was resumed");
    assert.notEqual(intruder._pid, held);
    intruder.disconnect();
    holder.disconnect();
    await sleep(300);
    const [first, second] = [claim(held), claim(held)];
    await Promise.all([once(first, "connect"), once(second, "connect")]);
    assert.deepEqual([first.recovered, second.recovered].sort(), [false, true], "one resume, not two");
    first.disconnect();
    second.disconnect();
  },
  // Past the recovery window (1 s in this test): a fresh session, nothing replayed.
  "v4-recover-expired": async () => {
    const alice = v4Reconnecting(TOKEN_A);
    const bob = v4(TOKEN_B);
    await Promise.all([once(alice, "connect"), once(bob, "connect")]);
    const seen = recordMessages(alice);
    const room = (await request(bob, "room.direct", { user_id: "alice" })).data.room.id;
    const dropped = once(alice, "disconnect");
    alice.io.engine.close();
    await dropped;
    await request(bob, "message.send", { room_id: room, body: "too late" });
    await once(alice, "connect");
    assert.equal(alice.recovered, false);
    await sleep(300);
    assert.deepEqual(seen, []);
    alice.disconnect();
    bob.disconnect();
  },
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
