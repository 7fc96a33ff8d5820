// The per-room ordering rules, against an injected WebSocket that plays the server: gaps in
// live pushes filled from history, duplicates dropped, pushes buffered during a resync,
// cleared history skipped. (The same rules against a real node: reconnect.test.mjs.)
import assert from "node:assert/strict";
import { test } from "node:test";
import { Switchboard } from "../dist/index.js";
import { until } from "./helpers.mjs";

const ROOM = "0193a7c2-0000-7000-8000-000000000001";

/** A scripted server: records the client's frames, answers history from `messages`. */
function fakeServer({ messages = [], historyDelayMs = 0 } = {}) {
  const server = { sockets: [], frames: [], messages, historyCalls: [] };
  server.WebSocket = class {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      server.sockets.push(this);
      server.current = this;
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.({});
        this.push("hello", { user_id: "me", connection_id: `conn-${server.sockets.length}`, node: "fake" });
      }, 1);
    }
    push(event, data) {
      this.onmessage?.({ data: JSON.stringify({ event, data }) });
    }
    send(text) {
      const frame = JSON.parse(text);
      server.frames.push(frame);
      if (frame.event === "message.history") {
        const { after_seq = 0, limit = 50 } = frame.data;
        server.historyCalls.push(after_seq);
        const above = server.messages.filter((m) => m.seq > after_seq);
        const page = above.slice(0, limit);
        const reply = { ack: frame.id, ok: true, data: { messages: page, has_more: above.length > page.length } };
        setTimeout(() => this.onmessage?.({ data: JSON.stringify(reply) }), historyDelayMs);
      }
    }
    close(code = 1000, reason = "") {
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code, reason }), 0);
    }
    /** The server side drops the connection. */
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: "" });
    }
  };
  return server;
}

const msg = (seq, sender = "bob") => ({
  id: `m-${seq}`,
  room_id: ROOM,
  seq,
  sender_id: sender,
  kind: "text",
  body: `#${seq}`,
  client_id: null,
  created_at: new Date().toISOString(),
});

function collect(client) {
  const seqs = [];
  client.on("message.new", ({ message }) => seqs.push(message.seq));
  return seqs;
}

test("a gap in live pushes is filled from history; duplicates are dropped", async () => {
  const server = fakeServer({ messages: [1, 2, 3, 4, 5].map((s) => msg(s)) });
  const client = new Switchboard({ url: "ws://fake/ws", token: "t", WebSocket: server.WebSocket, keepaliveMs: 0 });
  const seqs = collect(client);
  await client.connect();
  const ws = server.current;
  ws.push("message.new", { message: msg(1) });
  ws.push("message.new", { message: msg(1) });
  ws.push("message.new", { message: msg(4) }); // 2 and 3 missing
  ws.push("message.new", { message: msg(3) });
  assert.deepEqual(seqs, [1]);
  await until(() => seqs.length === 5, 3000, "the gap filled");
  ws.push("message.new", { message: msg(5) });
  ws.push("message.new", { message: msg(2) });
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  assert.deepEqual(server.historyCalls, [1]);
  client.close();
});

test("after a reconnect, missed history comes before the live pushes buffered meanwhile", async () => {
  const server = fakeServer({ messages: [1, 2].map((s) => msg(s)), historyDelayMs: 50 });
  const client = new Switchboard({
    url: "ws://fake/ws",
    token: "t",
    WebSocket: server.WebSocket,
    keepaliveMs: 0,
    backoff: { baseMs: 1, maxMs: 5 },
    resyncPageSize: 3,
  });
  const seqs = collect(client);
  const missed = [];
  client.on("message.new", ({ message, missed: m }) => m && missed.push(message.seq));
  await client.connect();
  server.current.push("message.new", { message: msg(1) });
  server.current.push("message.new", { message: msg(2) });
  assert.deepEqual(seqs, [1, 2]);

  server.current.drop(1012);
  for (let s = 3; s <= 10; s++) server.messages.push(msg(s));
  const resynced = new Promise((ok) => client.once("resynced", ok));
  await until(() => server.sockets.length === 2 && client.state === "connected", 3000, "the reconnect");
  // While the history pages are on their way, live pushes for 9, 10 and 11 arrive.
  server.messages.push(msg(11));
  server.current.push("message.new", { message: msg(9) });
  server.current.push("message.new", { message: msg(11) });
  server.current.push("message.new", { message: msg(10) });
  const summary = await resynced;
  await until(() => seqs.length === 11, 3000, "every message");
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(summary, { rooms: 1, messages: missed.length });
  assert.ok(missed.includes(3) && missed.includes(8));
  assert.equal(server.historyCalls[0], 2, "the resync starts after the highest delivered seq");
  client.close();
});

test("history the user cleared is skipped, not waited for", async () => {
  // Messages 2..4 were cleared by this user on another device: history starts at 5.
  const server = fakeServer({ messages: [5, 6].map((s) => msg(s)) });
  const client = new Switchboard({ url: "ws://fake/ws", token: "t", WebSocket: server.WebSocket, keepaliveMs: 0 });
  const seqs = collect(client);
  await client.connect();
  client.trackRoom(ROOM, 1);
  await until(() => seqs.length === 2, 3000, "the page after the cleared part");
  server.current.push("message.new", { message: msg(7) });
  assert.deepEqual(seqs, [5, 6, 7]);
  assert.deepEqual(client.roomCursors().get(ROOM), 7);
  client.close();
});

test("the token goes in the query string and requests carry increasing ids", async () => {
  const server = fakeServer();
  const client = new Switchboard({ url: "ws://fake/ws?api=native", token: "a.b.c", WebSocket: server.WebSocket, keepaliveMs: 0 });
  await client.connect();
  assert.equal(server.current.url, "ws://fake/ws?api=native&token=a.b.c");
  const p1 = client.request("room.list", { limit: 1 });
  const p2 = client.request("presence.query", { user_ids: ["x"] });
  await new Promise((r) => setImmediate(r));
  const [f1, f2] = server.frames.slice(-2);
  assert.deepEqual([f1.event, f2.event], ["room.list", "presence.query"]);
  assert.ok(f2.id > f1.id);
  server.current.onmessage({ data: JSON.stringify({ ack: f2.id, ok: false, error: { code: "rate_limited", message: "slow down" } }) });
  server.current.onmessage({ data: JSON.stringify({ ack: f1.id, ok: true, data: { rooms: [] } }) });
  assert.deepEqual(await p1, { rooms: [] });
  await assert.rejects(p2, (e) => e.code === "rate_limited" && e.message === "slow down" && e.event === "presence.query");
  client.close();
});
