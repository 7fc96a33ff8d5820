// Tokens: refresh on auth.expiring and after 4001, no reconnect after 4003; the backoff.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { reconnectDelay, Switchboard, tokenExpiresWithin } from "../dist/index.js";
import { Node, nextEvent, sleep, token, user } from "./helpers.mjs";

let node;
const clients = [];

before(async () => {
  node = await new Node().start();
});

after(async () => {
  for (const c of clients) c.close();
  await node.destroy();
});

function client(options) {
  const c = new Switchboard({ url: node.url, keepaliveMs: 0, backoff: { baseMs: 100, maxMs: 400 }, ...options });
  clients.push(c);
  return c;
}

test("auth.expiring: the client gets a fresh token and sends auth.refresh", async () => {
  const a = user("alice");
  let calls = 0;
  // A token valid for less than a minute gets auth.expiring at once.
  const alice = client({
    token: token(a, { ttl: 30 }),
    refreshToken: async () => {
      calls += 1;
      return token(a, { ttl: 7200 });
    },
  });
  const refreshed = nextEvent(alice, "token.refreshed");
  const expiring = nextEvent(alice, "auth.expiring");
  await alice.connect();
  await expiring;
  const { expiresAt } = await refreshed;
  assert.equal(calls, 1);
  assert.ok(Date.parse(expiresAt) > Date.now() + 3600_000, `new expiry ${expiresAt}`);
  assert.equal(alice.state, "connected");
});

test("4001: the client gets a fresh token before reconnecting", async () => {
  const a = user("alice");
  let calls = 0;
  const alice = client({
    token: token(a, { ttl: 2 }),
    refreshToken: async () => {
      calls += 1;
      // The refresh on auth.expiring fails (the app's auth server is down); the next works.
      if (calls === 1) throw new Error("auth server unavailable");
      return token(a, { ttl: 3600 });
    },
  });
  const errors = [];
  alice.on("error", (e) => errors.push(e.code));
  await alice.connect();
  const first = alice.connectionId;
  const closed = await nextEvent(alice, "disconnected", () => true, 10_000);
  assert.equal(closed.code, 4001);
  assert.equal(closed.willReconnect, true);
  const back = await nextEvent(alice, "connected", () => true, 10_000);
  assert.equal(back.reconnected, true);
  assert.equal(back.userId, a);
  assert.notEqual(back.connectionId, first);
  assert.equal(calls, 2);
  assert.deepEqual(errors, ["token_expired"]);
  assert.equal(tokenExpiresWithin(token(a, { ttl: 3600 }), 60), false);
});

test("4003: a revoked token stops the client with an error and no reconnect", async () => {
  const m = user("mallory");
  let refreshes = 0;
  const mallory = client({
    token: token(m),
    refreshToken: async () => {
      refreshes += 1;
      return token(m);
    },
  });
  await mallory.connect();
  let reconnecting = 0;
  mallory.on("reconnecting", () => (reconnecting += 1));
  const error = nextEvent(mallory, "error");
  const closed = nextEvent(mallory, "disconnected");
  await sleep(1100); // tokens issued in the same second as the revocation would survive it
  const res = await node.api("POST", `/users/${encodeURIComponent(m)}/revoke`);
  assert.equal(res.status, 200);
  assert.deepEqual(await closed, { code: 4003, reason: (await closed).reason, willReconnect: false });
  assert.equal((await error).code, "revoked");
  await assert.rejects(mallory.listRooms(), (e) => e.code === "closed");
  await sleep(800);
  assert.equal(reconnecting, 0);
  assert.equal(refreshes, 0);
  assert.equal(mallory.state, "closed");
});

test("backoff: full jitter under an exponential cap, shaped by the close code", () => {
  const opts = { baseMs: 500, maxMs: 30_000 };
  assert.equal(reconnectDelay(1006, 0, opts, () => 1), 500);
  assert.equal(reconnectDelay(1006, 3, opts, () => 1), 4000);
  assert.equal(reconnectDelay(1006, 20, opts, () => 1), 30_000);
  assert.equal(reconnectDelay(1006, 5, opts, () => 0), 0);
  assert.ok(reconnectDelay(1012, 0, opts, () => 1) <= 1000, "a restart: back soon");
  assert.ok(reconnectDelay(1008, 0, opts, () => 0) >= 5000, "rate limited: back off longer");
});
