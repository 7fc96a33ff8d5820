// Reconnects: a server restart with everything missed meanwhile resynced in order exactly
// once, an ack lost in a network drop, the offline send queue, request timeouts.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Switchboard, SwitchboardError } from "../dist/index.js";
import { Node, Proxy, nextEvent, token, until, user } from "./helpers.mjs";

let node;
const clients = [];
const proxies = [];

function client(userId, url, options = {}) {
  const c = new Switchboard({
    url,
    token: token(userId),
    keepaliveMs: 0,
    backoff: { baseMs: 100, maxMs: 400 },
    ...options,
  });
  clients.push(c);
  return c;
}

async function proxy() {
  const p = await new Proxy(node.port).listen();
  proxies.push(p);
  return p;
}

before(async () => {
  node = await new Node().start();
});

after(async () => {
  for (const c of clients) c.close();
  for (const p of proxies) await p.close();
  await node.destroy();
});

test("after a server restart every missed message is delivered once, in order, before live ones", async () => {
  const [a, b, c] = [user("alice"), user("bob"), user("carol")];
  const gate = await proxy();
  const bob = client(b, gate.url, { resyncPageSize: 5 });
  const delivered = new Map(); // room id -> seqs delivered as message.new
  const missedFlags = [];
  bob.on("message.new", ({ message, missed }) => {
    const seqs = delivered.get(message.room_id) ?? [];
    seqs.push(message.seq);
    delivered.set(message.room_id, seqs);
    if (missed) missedFlags.push(message.seq);
  });
  await bob.connect();
  let alice = client(a, node.url);
  await alice.connect();
  const direct = await alice.openDirect(b);
  const group = await alice.createGroup("Trip", [b, c]);
  await bob.listRooms(); // bob holds both rooms from here
  for (let i = 1; i <= 3; i++) await alice.send(direct.id, `live ${i}`);
  await until(() => (delivered.get(direct.id) ?? []).length === 3, 5000, "3 live messages");

  // The node restarts; bob cannot come back until the gate opens.
  gate.refuse = true;
  const dropped = nextEvent(bob, "disconnected");
  await node.stop("SIGTERM");
  assert.equal((await dropped).code, 1012);
  alice.close();
  const ownSends = [bob.send(direct.id, "queued while offline 1"), bob.send(direct.id, "queued while offline 2")];
  await node.start();
  alice = client(a, node.url);
  await alice.connect();
  for (let i = 4; i <= 15; i++) await alice.send(direct.id, `missed ${i}`);
  for (let i = 1; i <= 7; i++) await alice.send(group.id, `group missed ${i}`);

  // Open the gate and keep sending while bob resyncs: live pushes race the history pages.
  const resynced = nextEvent(bob, "resynced", () => true, 15_000);
  gate.refuse = false;
  const live = (async () => {
    for (let i = 16; i <= 25; i++) await alice.send(direct.id, `during resync ${i}`);
  })();
  await live;
  const own = await Promise.all(ownSends);
  const summary = await resynced;
  assert.equal(summary.rooms, 2);

  const ownSeqs = own.map((m) => m.seq);
  const total = 25 + own.length;
  await until(() => (delivered.get(direct.id) ?? []).length === total - own.length, 10_000, "every direct message");
  await until(() => (delivered.get(group.id) ?? []).length === 7, 10_000, "every group message");
  const seqs = delivered.get(direct.id);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), "in seq order");
  assert.equal(new Set(seqs).size, seqs.length, "no duplicate");
  assert.deepEqual(
    [...seqs, ...ownSeqs].sort((x, y) => x - y),
    Array.from({ length: total }, (_, i) => i + 1),
    "no gap: what was delivered plus what bob sent is every seq",
  );
  assert.deepEqual(delivered.get(group.id), [1, 2, 3, 4, 5, 6, 7]);
  assert.ok(missedFlags.length >= 12, "the missed ones are flagged");

  // The queued sends were stored once each, with their client_ids.
  const history = await alice.history(direct.id, { limit: 100 });
  assert.equal(history.messages.length, total);
  for (const m of own) assert.equal(history.messages.filter((h) => h.client_id === m.client_id).length, 1);
});

test("a send whose ack is lost in a network drop is resent with its client_id and stored once", async () => {
  const [a, b] = [user("alice"), user("bob")];
  const wire = await proxy();
  const alice = client(a, wire.url);
  await alice.connect();
  const bob = client(b, node.url);
  await bob.connect();
  const room = await alice.openDirect(b);
  const bobGot = [];
  bob.on("message.new", ({ message }) => bobGot.push(message));

  const cut = wire.blackholeAfterNextWrite(500);
  const reconnected = nextEvent(alice, "connected", (e) => e.reconnected);
  const sending = alice.send(room.id, "through the cut");
  await cut;
  await reconnected;
  const stored = await sending;
  assert.equal(stored.body, "through the cut");
  assert.ok(wire.connections >= 2, "the client reconnected");

  const { messages } = await bob.history(room.id);
  assert.equal(messages.length, 1, "stored once");
  assert.equal(messages[0].id, stored.id);
  assert.equal(messages[0].client_id, stored.client_id);
  await until(() => bobGot.length >= 1, 5000, "bob's push");
  const after = await alice.send(room.id, "next");
  assert.equal(after.seq, 2);
  await until(() => bobGot.length === 2, 5000, "bob's second push");
  assert.deepEqual(bobGot.map((m) => m.seq), [1, 2]);
});

test("sends queue while offline, in order and bounded", async () => {
  const [a, b] = [user("alice"), user("bob")];
  const wire = await proxy();
  const alice = client(a, wire.url, { maxQueuedSends: 3 });
  await alice.connect();
  const room = await alice.openDirect(b);
  wire.refuse = true;
  const dropped = nextEvent(alice, "disconnected");
  wire.cutAll();
  await dropped;
  const queued = [1, 2, 3].map((i) => alice.send(room.id, `offline ${i}`));
  await assert.rejects(alice.send(room.id, "one too many"), (e) => e instanceof SwitchboardError && e.code === "queue_full");
  wire.refuse = false;
  const stored = await Promise.all(queued);
  assert.deepEqual(stored.map((m) => [m.seq, m.body]), [
    [1, "offline 1"],
    [2, "offline 2"],
    [3, "offline 3"],
  ]);
});

test("a request with no ack rejects with timeout; requests made while reconnecting wait", async () => {
  const wire = await proxy();
  const alice = client(user("alice"), wire.url, { requestTimeoutMs: 300 });
  await alice.connect();
  const cut = wire.blackholeAfterNextWrite(1000);
  const dropped = nextEvent(alice, "disconnected");
  await assert.rejects(alice.listRooms(), (e) => e instanceof SwitchboardError && e.code === "timeout" && e.event === "room.list");
  await cut;
  await dropped;
  // Cut: the client is reconnecting; this request waits for it.
  const rooms = await alice.request("room.list", {}, { timeoutMs: 5000 });
  assert.deepEqual(rooms, { rooms: [] });
});
